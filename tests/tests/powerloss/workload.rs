//! The load of one power-loss cycle: producers sending ordered batches with
//! idempotency ids, and consumers pulling and acking, every operation
//! recorded in the history; plus the final drain of the subscription.
//!
//! Workers stop at their first failed operation (the server was killed)
//! or when told to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;
use weir_tests::history::{Outcome, Produce};

use crate::ops::{Received, Recorder};
use crate::rng::Rng;

pub const TOPIC: &str = "orders";
pub const SUB: &str = "work";

/// Running workers.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts `producers` producers and `consumers` consumers; names are
    /// unique per `cycle` so that every value is unique in the history.
    pub fn start(
        recorder: &Recorder,
        cycle: u64,
        producers: u64,
        consumers: u64,
        seed: u64,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for p in 0..producers {
            let name = format!("c{cycle}p{p}");
            let rng = Rng::new(seed ^ (cycle << 16) ^ p);
            tasks.push(tokio::spawn(produce(
                recorder.clone(),
                name,
                rng,
                stop.clone(),
            )));
        }
        for c in 0..consumers {
            let name = format!("c{cycle}c{c}");
            tasks.push(tokio::spawn(consume(recorder.clone(), name, stop.clone())));
        }
        Workload { stop, tasks }
    }

    /// Tells the workers to stop and waits for them (bounded).
    pub async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a worker did not stop within 30 s")
                .expect("a worker panicked");
        }
    }
}

/// Sends batches of 1-20 messages, one after the other, keyed by the
/// producer (so one partition, checked for order).
async fn produce(recorder: Recorder, name: String, mut rng: Rng, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let len = rng.range(1, 21);
        let batch: Vec<Produce> = (n..n + len)
            .map(|i| {
                let value = format!("{name}-{i}");
                Produce::new(TOPIC, value.clone())
                    .key(name.clone())
                    .id(value)
                    .sequence(name.clone(), i)
            })
            .collect();
        n += len;
        if recorder.produce(&batch).await.outcome != Outcome::Ok {
            return;
        }
    }
}

/// Pulls and acks until an operation fails or it is told to stop.
async fn consume(recorder: Recorder, name: String, stop: Arc<AtomicBool>) {
    let body = json!({"max_messages": 20, "wait_ms": 100, "consumer": name});
    while !stop.load(Ordering::SeqCst) {
        let Some(batch) = recorder.pull(TOPIC, SUB, &body).await else {
            return;
        };
        let refs: Vec<&Received> = batch.iter().collect();
        if recorder.ack(TOPIC, SUB, &refs).await < refs.len() {
            return;
        }
    }
}

/// Pulls and acks until the subscription has no backlog (bounded).
pub async fn drain(recorder: &Recorder) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = json!({"max_messages": 500, "wait_ms": 200, "consumer": "drain"});
    loop {
        let batch = recorder
            .pull(TOPIC, SUB, &body)
            .await
            .expect("pull while draining");
        if batch.is_empty() {
            let sub = recorder
                .get_ok(&format!("/v1/topics/{TOPIC}/subscriptions/{SUB}"))
                .await;
            if sub["stats"]["backlog"] == 0 {
                return;
            }
        }
        let refs: Vec<&Received> = batch.iter().collect();
        let acked = recorder.ack(TOPIC, SUB, &refs).await;
        assert_eq!(acked, refs.len(), "acks while draining");
        assert!(
            Instant::now() < deadline,
            "the subscription was not drained within 60 s"
        );
    }
}
