//! Lost responses: produce batches with idempotency ids through a proxy
//! that swallows some replies, retrying each batch until it is Ok, then
//! consume through the same proxy (lost pull and ack replies). Each id's
//! value must be stored exactly once, nothing may be missing, and no
//! message may come back after an ack that was answered Ok.

use std::time::{Duration, Instant};

use serde_json::json;
use weir_tests::history::{History, Mode, Outcome, Produce, SubscriptionSpec};

use crate::harness::TestServer;
use crate::ops::{http_client, sub_name, Endpoint, Recorder};
use crate::proxy::DroppingProxy;
use crate::rng::{env_count, seed, Rng};

const TOPIC: &str = "idem";
const SUB: &str = "idem-consumer";
const BATCH: u64 = 8;
/// Share of responses the proxy swallows, in percent.
const DROP_PERCENT: u64 = 30;
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_responses_neither_duplicate_nor_lose() {
    let seed = seed("proxy");
    let batches = env_count("WEIR_PROXY_BATCHES", 150);
    let server = TestServer::start_with(&["--fsync", "always"]);
    server
        .create_topic(
            TOPIC,
            &json!({"partitions": 2, "dedupe_window_ms": 3_600_000}),
        )
        .await;
    server
        .put_json(
            &format!("/v1/topics/{TOPIC}/subscriptions/{SUB}"),
            &json!({"start": "earliest", "ack_timeout_ms": 500, "retry": {"max_attempts": null, "backoff": {"initial_ms": 10, "max_ms": 10, "multiplier": 1.0, "jitter": 0.0}}}),
        )
        .await
        .expect_status(201);
    let proxy = DroppingProxy::start(&server.url(""), Rng::new(seed), DROP_PERCENT).await;
    let history = History::new();
    history.register_subscription(
        sub_name(TOPIC, SUB),
        SubscriptionSpec {
            topic: TOPIC.to_owned(),
            mode: Mode::Queue,
            complete: true,
        },
    );
    let via_proxy = Recorder {
        history: history.clone(),
        http: http_client(Duration::from_secs(5), false),
        endpoint: Endpoint::new(&proxy.url()),
    };

    let mut duplicates = 0;
    for b in 0..batches {
        let batch: Vec<Produce> = (0..BATCH)
            .map(|i| {
                let n = b * BATCH + i;
                Produce::new(TOPIC, format!("idem-{n}"))
                    .key(format!("k{}", n % 5))
                    .id(format!("id-{n}"))
                    .sequence("idem", n)
            })
            .collect();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let answer = via_proxy.produce(&batch).await;
            match answer.outcome {
                Outcome::Ok => {
                    duplicates += answer.duplicates;
                    break;
                }
                Outcome::Failed => panic!("batch {b} refused"),
                Outcome::Unknown => assert!(Instant::now() < deadline, "batch {b} never Ok"),
            }
        }
    }

    // Consume through the proxy too: lost pull replies leave leases that
    // expire (redelivery), lost ack replies leave acks unknown.
    let expected = (batches * BATCH) as usize;
    let pull = json!({"max_messages": 50, "wait_ms": 200, "consumer": "c"});
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let backlog = via_proxy
            .get_ok(&format!("/v1/topics/{TOPIC}/subscriptions/{SUB}"))
            .await["stats"]["backlog"]
            .as_u64();
        if backlog == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: backlog {backlog:?}"
        );
        if let Some(batch) = via_proxy.pull(TOPIC, SUB, &pull).await {
            let all: Vec<_> = batch.iter().collect();
            via_proxy.ack(TOPIC, SUB, &all).await;
        }
    }

    let direct = Recorder {
        endpoint: Endpoint::new(&server.url("")),
        ..via_proxy.clone()
    };
    let stored = direct.read_back(TOPIC).await.len();
    let report = history.check();
    eprintln!(
        "proxy: {} connections, {} responses dropped, {duplicates} duplicate answers; {report}",
        proxy.connections(),
        proxy.dropped()
    );
    eprintln!(
        "{}",
        report.fault_summary("proxy", batches, proxy.dropped())
    );
    report.assert_clean();
    assert_eq!(stored, expected, "each id's value stored exactly once");
    assert!(proxy.dropped() > 0, "the proxy dropped no response");
    assert!(
        duplicates > 0,
        "no retry was answered `duplicate`: the dropped requests were not processed?"
    );
}
