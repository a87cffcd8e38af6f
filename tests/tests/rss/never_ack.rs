//! Scenario 1: a consumer that pulls continuously and never acks, on a
//! queue subscription with a short ack timeout, while 300,000 messages are
//! produced. Leases expire and messages are redelivered over and over; the
//! server's memory must follow its configured budgets (and the fixed cap on
//! unsettled messages per subscription), not the number of messages
//! produced: RSS at 300k produced is compared with RSS at 100k.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::TestServer;
use crate::load::{self, BLOCK_CACHE, WRITE_BUFFERS};
use crate::memory::{self, mib, say, Sampler, MIB};

const TOTAL: u64 = 300_000;
const CHECKPOINT: u64 = 100_000;
const VALUE_BYTES: usize = 64;
/// Pullers that never ack.
const CONSUMERS: usize = 2;
/// Growth allowed between 100k and 300k produced: the memtables and the
/// block cache may still be filling up to their budgets, plus allocator
/// slack. A leak of 100 bytes per message produced (20 MB over 200k) or per
/// redelivery shows up beyond it.
const LATE_MARGIN: u64 = 8 * MIB;
/// Growth allowed over the whole run beyond the budgets: the unsettled
/// window (at most 100,000 leases of the subscription, a built-in cap),
/// request buffers of the producer and consumers, allocator slack.
const TOTAL_MARGIN: u64 = 32 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_acking_consumer_does_not_grow_memory_with_messages_produced() {
    let _serial = crate::serial().await;
    let s = TestServer::start_with(&load::server_args(&[]));
    let pid = s.pid();
    s.create_topic("never", &json!({"partitions": 2})).await;
    let sub = json!({"mode": "queue", "start": "earliest", "ack_timeout_ms": 200,
        "retry": {"max_attempts": null, "backoff": {"initial_ms": 50, "max_ms": 50, "multiplier": 1.0, "jitter": 0.0}}});
    s.put_json("/v1/topics/never/subscriptions/lazy", &sub)
        .await
        .expect_status(201);
    let sub_url = s.url("/v1/topics/never/subscriptions/lazy");

    // Warm-up: every code path once (produce, pull, expiry, redelivery).
    load::produce_many(&s, "never", 5_000, 1_000, VALUE_BYTES, 2, |_| {}).await;
    let warm = load::pull(&s.client(), &sub_url, 1_000, 100).await;
    assert!(!warm.is_empty(), "the warm-up pull got nothing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = memory::rss_bytes(pid);
    let sampler = Sampler::start(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let (delivered, redelivered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (http, url, stop) = (s.client(), sub_url.clone(), stop.clone());
            let (delivered, redelivered) = (delivered.clone(), redelivered.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let got = load::pull(&http, &url, 1_000, 100).await;
                    let again = got.iter().filter(|m| m["attempt"].as_u64() > Some(1));
                    redelivered.fetch_add(again.count() as u64, Ordering::Relaxed);
                    delivered.fetch_add(got.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut at_checkpoint = None;
    load::produce_many(&s, "never", TOTAL, 1_000, VALUE_BYTES, 2, |done| {
        if done >= CHECKPOINT && at_checkpoint.is_none() {
            at_checkpoint = Some((memory::rss_bytes(pid), sampler.peak()));
        }
    })
    .await;
    let produced_in = started.elapsed();
    let (rss_100k, peak_100k) = at_checkpoint.expect("the checkpoint was passed");
    let rss_300k = sampler.now();
    // Let leases expire and messages go round a few more times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for consumer in consumers {
        tokio::time::timeout(Duration::from_secs(30), consumer)
            .await
            .expect("consumer stops")
            .expect("consumer task");
    }
    let last = sampler.now();
    let (peak, samples) = sampler.finish();
    let (delivered, redelivered) = (
        delivered.load(Ordering::Relaxed),
        redelivered.load(Ordering::Relaxed),
    );
    say(&format!(
        "rss never_ack: produced {TOTAL} in {produced_in:.1?}, {delivered} deliveries \
         ({redelivered} redeliveries), {samples} samples; rss at 100k {} (peak {}), at 300k {}",
        mib(rss_100k),
        mib(peak_100k),
        mib(rss_300k),
    ));
    assert!(
        redelivered > 0,
        "no redelivery seen: the scenario did not exercise expiring leases"
    );
    let late = rss_300k.max(peak).saturating_sub(rss_100k.max(peak_100k));
    assert!(
        late <= BLOCK_CACHE + WRITE_BUFFERS + LATE_MARGIN,
        "RSS grew by {} between 100k and 300k produced (peak {} then {}): more than \
         block cache + write buffers + {}",
        mib(late),
        mib(peak_100k),
        mib(peak),
        mib(LATE_MARGIN),
    );
    memory::check_growth(
        "never_ack",
        baseline,
        peak,
        last,
        BLOCK_CACHE + WRITE_BUFFERS + TOTAL_MARGIN,
        "block cache 8 MiB + write buffers 16 MiB + 32 MiB unsettled window and slack",
    );
}
