//! Scenario 4: acks above a stuck floor. The first message of a queue
//! subscription is delayed by almost a year, so the subscription's
//! committed floor cannot pass it; then 200,000 messages are produced and
//! acked. The acked offsets above the floor must be kept compactly (not one
//! entry per message in memory): RSS stays within the budgets, and after a
//! restart the server starts small and redelivers nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::TestServer;
use crate::load::{self, BLOCK_CACHE, WRITE_BUFFERS};
use crate::memory::{self, mib, say, Sampler, MIB};

const TOTAL: u64 = 200_000;
const WARM_UP: u64 = 2_000;
const VALUE_BYTES: usize = 16;
/// 364 days: `delay_ms` may be up to a year.
const DELAY_MS: u64 = 364 * 24 * 3_600 * 1_000;
/// Growth allowed beyond the budgets: request buffers, allocator slack.
/// Calibrated on the same load without the delayed message (no stuck
/// floor): 28 MiB growth in all, 6 MiB between 100k and 200k acked.
const MARGIN: u64 = 8 * MIB;
/// Growth allowed between 100k and 200k acked (the budgets are mostly
/// filled by then).
const LATE_MARGIN: u64 = 8 * MIB;
/// No ack progress for this long means the subscription stalled.
const STALL: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_above_a_stuck_floor_do_not_pile_up_in_memory() {
    let _serial = crate::serial().await;
    let mut s = TestServer::start_with(&load::server_args(&[]));
    let pid = s.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = memory::rss_bytes(pid);
    s.create_topic("floor", &json!({"partitions": 1})).await;
    let sub = json!({"mode": "queue", "start": "earliest", "ack_timeout_ms": 60_000,
        "retry": {"max_attempts": null}});
    s.put_json("/v1/topics/floor/subscriptions/work", &sub)
        .await
        .expect_status(201);
    let sub_url = s.url("/v1/topics/floor/subscriptions/work");
    let http = s.client();
    s.produce("floor", json!([{"value": "stuck", "delay_ms": DELAY_MS}]))
        .await;
    // Warm-up: produce and ack a first batch.
    load::produce_many(&s, "floor", WARM_UP, 1_000, VALUE_BYTES, 2, |_| {}).await;
    let warm = consume(&http, &sub_url, WARM_UP, &AtomicU64::new(0)).await;
    assert_eq!(warm, WARM_UP, "warm-up messages consumed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = memory::rss_bytes(pid);
    let sampler = Arc::new(Sampler::start(pid));

    let acked = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (http, url, acked) = (http.clone(), sub_url.clone(), acked.clone());
        tokio::spawn(async move { consume(&http, &url, TOTAL, &acked).await })
    };
    let watcher = {
        let (sampler, acked) = (sampler.clone(), acked.clone());
        tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < TOTAL / 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sampler.now(), sampler.peak())
        })
    };
    let started = Instant::now();
    load::produce_many(&s, "floor", TOTAL, 1_000, VALUE_BYTES, 2, |_| {}).await;
    let consumed = consumer.await.expect("consumer task");
    let elapsed = started.elapsed();
    let at_half = if consumed >= TOTAL / 2 {
        Some(watcher.await.expect("watcher task"))
    } else {
        watcher.abort();
        None
    };
    let last = sampler.now();
    let (peak, samples) = Arc::into_inner(sampler).expect("sampler").finish();
    say(&format!(
        "rss stuck_floor: acked {consumed}/{TOTAL} above the delayed message in {elapsed:.1?}; \
         rss at 100k acked {}; {samples} samples",
        at_half.map_or_else(
            || "-".to_owned(),
            |(now, p)| format!("{} (peak {})", mib(now), mib(p))
        ),
    ));
    let mut problems: Vec<String> = memory::growth_problem(
        "stuck_floor",
        baseline,
        peak,
        last,
        BLOCK_CACHE + WRITE_BUFFERS + MARGIN,
        "block cache 8 MiB + write buffers 16 MiB + 8 MiB",
    )
    .into_iter()
    .collect();
    assert_eq!(
        consumed,
        TOTAL,
        "the subscription stalled after {consumed} acks above the stuck floor; log:\n{}",
        s.log_tail()
    );
    let (_, peak_half) = at_half.expect("half-way numbers");
    let late = peak.saturating_sub(peak_half);
    say(&format!(
        "rss stuck_floor: growth between 100k and 200k acked {} bound {}",
        mib(late),
        mib(LATE_MARGIN)
    ));
    if late > LATE_MARGIN {
        problems.push(format!(
            "RSS grew by {} between 100k and 200k acked (peak {} then {})",
            mib(late),
            mib(peak_half),
            mib(peak),
        ));
    }

    // After a restart: small, and nothing acked comes back.
    s.restart();
    let pid = s.pid();
    // A new process listens on a new port.
    let sub_url = s.url("/v1/topics/floor/subscriptions/work");
    let again = load::pull(&http, &sub_url, 1_000, 1_000).await;
    assert!(
        again.is_empty(),
        "redelivered after restart: {:?}",
        again.first()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = memory::rss_bytes(pid);
    let bound = BLOCK_CACHE + WRITE_BUFFERS + LATE_MARGIN;
    say(&format!(
        "rss stuck_floor restart: fresh start {} restarted {} growth {} bound {} \
         (block cache 8 MiB + write buffers 16 MiB + 8 MiB)",
        mib(fresh),
        mib(restarted),
        mib(restarted.saturating_sub(fresh)),
        mib(bound),
    ));
    if restarted.saturating_sub(fresh) > bound {
        problems.push(format!(
            "after a restart RSS is {}, {} above a fresh start",
            mib(restarted),
            mib(restarted.saturating_sub(fresh)),
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
}
/// Pulls and acks until `want` messages were acked (counted in `acked`)
/// or no progress was made for `STALL`; returns the count.
async fn consume(http: &reqwest::Client, sub_url: &str, want: u64, acked: &AtomicU64) -> u64 {
    let mut progress = Instant::now();
    while acked.load(Ordering::Relaxed) < want && progress.elapsed() < STALL {
        let got = load::pull(http, sub_url, 1_000, 200).await;
        if got.is_empty() {
            continue;
        }
        assert!(
            got.iter().all(|m| m["value"] != "stuck"),
            "the delayed message was delivered early"
        );
        load::ack(http, sub_url, &got).await;
        acked.fetch_add(got.len() as u64, Ordering::Relaxed);
        progress = Instant::now();
    }
    acked.load(Ordering::Relaxed)
}
