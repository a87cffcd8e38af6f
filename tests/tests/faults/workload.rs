//! The concurrent workload the crash scenarios run against a server that
//! keeps dying: in-order keyed producers with idempotency ids (retrying a
//! batch until it is Ok), a bulk producer without ids, a queue consumer
//! that acks most messages and nacks some deterministically (so they are
//! retried, then dead-lettered), and a stream consumer that acks all.
//!
//! Owns the topic layout and the workers; every operation goes through
//! [`Recorder`], so the history sees all of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;
use weir_tests::history::{Mode, Outcome, Produce, SubscriptionSpec};

use crate::harness::TestServer;
use crate::ops::{sub_name, Recorder};

pub const TOPIC: &str = "events";
/// The queue subscription (nacks some messages; dead-letters after 3).
pub const WORK: &str = "work";
/// The stream subscription (acks everything, in order).
pub const TAIL: &str = "tail";
pub const DLQ: &str = "events.work.dlq";
const PARTITIONS: u64 = 3;
const MAX_ATTEMPTS: u64 = 3;
/// How long one batch is retried before the producer gives up on it.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Creates the topic and its two subscriptions, and registers them.
pub async fn setup(server: &TestServer, recorder: &Recorder) {
    server
        .create_topic(
            TOPIC,
            &json!({"partitions": PARTITIONS, "dedupe_window_ms": 3_600_000}),
        )
        .await;
    let retry = json!({"max_attempts": MAX_ATTEMPTS,
        "backoff": {"initial_ms": 10, "max_ms": 10, "multiplier": 1.0, "jitter": 0.0}});
    let specs = [
        (
            WORK,
            Mode::Queue,
            json!({"mode": "queue", "start": "earliest", "ack_timeout_ms": 5000,
            "retry": retry, "dead_letter_topic": DLQ}),
        ),
        (
            TAIL,
            Mode::Stream,
            json!({"mode": "stream", "start": "earliest", "ack_timeout_ms": 5000}),
        ),
    ];
    for (sub, mode, spec) in specs {
        server
            .put_json(&format!("/v1/topics/{TOPIC}/subscriptions/{sub}"), &spec)
            .await
            .expect_status(201);
        recorder.history.register_subscription(
            sub_name(TOPIC, sub),
            SubscriptionSpec {
                topic: TOPIC.to_owned(),
                mode,
                complete: true,
            },
        );
    }
}

/// What a message's consumer does with it, decided by its value alone so
/// that every redelivery gets the same treatment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    /// Nack for a retry each time: dead-lettered after `MAX_ATTEMPTS`.
    Retry,
    /// Nack with `"retry": false`: dead-lettered at once.
    Reject,
}

pub fn verdict(value: &str) -> Verdict {
    // FNV-1a: stable across runs and platforms.
    let hash = value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    match hash % 20 {
        0 => Verdict::Retry,
        1 => Verdict::Reject,
        _ => Verdict::Ack,
    }
}

/// Shared counters and the stop flags of the workers.
#[derive(Default)]
pub struct Progress {
    pub stop_producers: AtomicBool,
    pub stop_consumers: AtomicBool,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub produced: AtomicU64,
}

/// The running workers.
pub struct Workers {
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
    pub progress: Arc<Progress>,
}

impl Workers {
    pub fn spawn(recorder: &Recorder) -> Workers {
        let progress = Arc::new(Progress::default());
        let producers = vec![
            tokio::spawn(in_order(recorder.clone(), progress.clone(), "seq-a")),
            tokio::spawn(in_order(recorder.clone(), progress.clone(), "seq-b")),
            tokio::spawn(bulk(recorder.clone(), progress.clone())),
        ];
        let consumers = vec![
            tokio::spawn(queue_consumer(recorder.clone(), progress.clone())),
            tokio::spawn(stream_consumer(recorder.clone(), progress.clone())),
        ];
        Workers {
            producers,
            consumers,
            progress,
        }
    }

    pub async fn stop_producers(&mut self) {
        self.progress.stop_producers.store(true, Ordering::SeqCst);
        for handle in self.producers.drain(..) {
            handle.await.unwrap();
        }
    }

    pub async fn stop_consumers(&mut self) {
        self.progress.stop_consumers.store(true, Ordering::SeqCst);
        for handle in self.consumers.drain(..) {
            handle.await.unwrap();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for handle in self.producers.iter().chain(&self.consumers) {
            handle.abort();
        }
    }
}

/// One producer sending keyed batches with ids in order, one request at a
/// time; a batch whose outcome is unknown is sent again, same ids, until Ok.
async fn in_order(recorder: Recorder, progress: Arc<Progress>, name: &'static str) {
    let mut n = 0_u64;
    while !progress.stop_producers.load(Ordering::SeqCst) {
        let size = 1 + n % 4;
        let batch: Vec<Produce> = (n..n + size)
            .map(|i| {
                Produce::new(TOPIC, format!("{name}-{i}"))
                    .key(name)
                    .id(format!("{name}-{i}"))
                    .sequence(name, i)
            })
            .collect();
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match recorder.produce(&batch).await.outcome {
                Outcome::Ok => break,
                Outcome::Failed => panic!("{name}: batch from #{n} refused"),
                Outcome::Unknown => {
                    assert!(
                        Instant::now() < deadline,
                        "{name}: batch from #{n} never Ok"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        progress.produced.fetch_add(size, Ordering::Relaxed);
        n += size;
    }
}

/// Unkeyed batches without ids; an unknown outcome is not retried.
async fn bulk(recorder: Recorder, progress: Arc<Progress>) {
    let mut n = 0_u64;
    while !progress.stop_producers.load(Ordering::SeqCst) {
        let batch: Vec<Produce> = (n..n + 5)
            .map(|i| Produce::new(TOPIC, format!("bulk-{i}")))
            .collect();
        n += 5;
        match recorder.produce(&batch).await.outcome {
            Outcome::Ok => {
                progress.produced.fetch_add(5, Ordering::Relaxed);
            }
            Outcome::Failed => panic!("bulk: batch from #{n} refused"),
            Outcome::Unknown => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Pulls from the queue subscription; acks, or nacks by [`verdict`].
async fn queue_consumer(recorder: Recorder, progress: Arc<Progress>) {
    let pull = json!({"max_messages": 20, "wait_ms": 200, "consumer": "worker"});
    while !progress.stop_consumers.load(Ordering::SeqCst) {
        let Some(batch) = recorder.pull(TOPIC, WORK, &pull).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let by = |v: Verdict| {
            batch
                .iter()
                .filter(|r| verdict(&r.value) == v)
                .collect::<Vec<_>>()
        };
        let acked = recorder.ack(TOPIC, WORK, &by(Verdict::Ack)).await;
        let retried = recorder
            .nack(
                TOPIC,
                WORK,
                &by(Verdict::Retry),
                json!({"reason": "poison"}),
            )
            .await;
        let rejected = recorder
            .nack(
                TOPIC,
                WORK,
                &by(Verdict::Reject),
                json!({"reason": "reject", "retry": false}),
            )
            .await;
        progress.acked.fetch_add(acked as u64, Ordering::Relaxed);
        progress
            .nacked
            .fetch_add((retried + rejected) as u64, Ordering::Relaxed);
    }
}

/// Pulls from the stream subscription and acks every delivery.
async fn stream_consumer(recorder: Recorder, progress: Arc<Progress>) {
    let pull = json!({"max_messages": 50, "wait_ms": 200, "consumer": "tailer"});
    while !progress.stop_consumers.load(Ordering::SeqCst) {
        let Some(batch) = recorder.pull(TOPIC, TAIL, &pull).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let all: Vec<_> = batch.iter().collect();
        recorder.ack(TOPIC, TAIL, &all).await;
    }
}

/// Waits until both subscriptions have nothing left to deliver, as long
/// as the backlog keeps going down: fails after `timeout` without progress
/// (a long soak leaves a large backlog that drains at the consumers' pace).
pub async fn wait_drained(recorder: &Recorder, timeout: Duration) {
    let mut deadline = Instant::now() + timeout;
    let mut best = u64::MAX;
    loop {
        let mut backlog = Vec::new();
        for sub in [WORK, TAIL] {
            let info: Value = recorder
                .get_ok(&format!("/v1/topics/{TOPIC}/subscriptions/{sub}"))
                .await;
            backlog.push((sub, info["stats"]["backlog"].as_u64().unwrap_or(u64::MAX)));
        }
        if backlog.iter().all(|(_, b)| *b == 0) {
            return;
        }
        let total = backlog.iter().map(|(_, b)| *b).fold(0, u64::saturating_add);
        if total < best {
            best = total;
            deadline = Instant::now() + timeout;
        }
        assert!(
            Instant::now() < deadline,
            "subscriptions not drained within {timeout:?}: backlog {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
