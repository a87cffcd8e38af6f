//! The producer driven through its public handle over a fake sink, with a
//! paused Tokio clock: timing claims (linger, "without waiting") are exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use weir_protocol::{ErrorCode, Problem};

use super::*;
use crate::ProduceMessageExt;

/// Records every batch; answers with sequential offsets, an error, or a
/// short result list; optionally holds each request until released.
#[derive(Default)]
struct FakeSink {
    batches: Mutex<Vec<(Instant, usize)>>,
    /// The `id` of every message of every attempt, in order.
    ids: Mutex<Vec<Option<String>>>,
    offset: AtomicUsize,
    fail: Option<Error>,
    /// Fail this many attempts (with `fail`), then answer.
    fail_times: AtomicUsize,
    drop_one_result: bool,
    gate: Option<Arc<Semaphore>>,
    latency: Duration,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl BatchSink for Arc<FakeSink> {
    async fn produce(&self, body: Bytes, messages: usize) -> Result<Vec<ProduceResult>, Error> {
        let body: serde_json::Value = serde_json::from_slice(&body).expect("valid body");
        let listed = body["messages"].as_array().expect("messages");
        let count = listed.len();
        assert_eq!(count, messages, "the count handed over matches the body");
        self.batches.lock().unwrap().push((Instant::now(), count));
        let ids = listed.iter().map(|m| m["id"].as_str().map(str::to_owned));
        self.ids.lock().unwrap().extend(ids);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        tokio::time::sleep(self.latency).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Some(e) = &self.fail {
            let left = self.fail_times.load(Ordering::SeqCst);
            if left == usize::MAX {
                return Err(e.clone());
            }
            if left > 0 {
                self.fail_times.fetch_sub(1, Ordering::SeqCst);
                return Err(e.clone());
            }
        }
        let first = self.offset.fetch_add(count, Ordering::SeqCst);
        let returned = if self.drop_one_result {
            count - 1
        } else {
            count
        };
        Ok((first..first + returned)
            .map(|offset| ProduceResult {
                partition: 0,
                offset: offset as u64,
                duplicate: false,
            })
            .collect())
    }
}

impl FakeSink {
    fn sizes(&self) -> Vec<usize> {
        self.batches.lock().unwrap().iter().map(|b| b.1).collect()
    }
}

fn config(linger_ms: u64, max_batch_messages: usize) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(linger_ms),
        max_batch_messages,
        ..ProducerConfig::default()
    }
}

fn msg(i: u64) -> ProduceMessage {
    ProduceMessage::json(&i).unwrap()
}

#[tokio::test(start_paused = true)]
async fn sends_within_linger_share_one_batch() {
    let sink = Arc::new(FakeSink::default());
    let producer = Producer::spawn(sink.clone(), &config(10, 100)).unwrap();
    let t0 = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..5 {
        deliveries.push(producer.send(msg(i)).await.unwrap());
    }
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(d.await.unwrap().offset);
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert_eq!(sink.sizes(), vec![5]);
    let sent_after = sink.batches.lock().unwrap()[0].0 - t0;
    assert_eq!(sent_after, Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_without_waiting_for_linger() {
    let sink = Arc::new(FakeSink::default());
    let producer = Producer::spawn(sink.clone(), &config(3_600_000, 3)).unwrap();
    let t0 = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..7 {
        deliveries.push(producer.send(msg(i)).await.unwrap());
    }
    let seventh = deliveries.pop().unwrap();
    for d in deliveries {
        d.await.unwrap();
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(sink.sizes(), vec![3, 3]);
    producer.flush().await.unwrap();
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(seventh.now_or_never().unwrap().unwrap().offset, 6);
    assert_eq!(sink.sizes(), vec![3, 3, 1]);
}

#[tokio::test(start_paused = true)]
async fn flush_returns_once_earlier_batches_are_settled() {
    let sink = Arc::new(FakeSink {
        latency: Duration::from_millis(50),
        ..FakeSink::default()
    });
    let producer = Producer::spawn(sink.clone(), &config(3_600_000, 100)).unwrap();
    let delivery = producer.send(msg(1)).await.unwrap();
    let t0 = Instant::now();
    producer.flush().await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(50));
    assert!(delivery.now_or_never().unwrap().is_ok());
    // Nothing pending: a flush answers at once.
    producer.flush().await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn while_a_request_is_in_flight_the_next_batch_keeps_filling() {
    let sink = Arc::new(FakeSink {
        latency: Duration::from_millis(50),
        ..FakeSink::default()
    });
    let producer = Producer::spawn(sink.clone(), &config(5, 100)).unwrap();
    let mut deliveries = vec![producer.send(msg(0)).await.unwrap()];
    // The first batch leaves at 5 ms and is answered at 55 ms; these two
    // lingered past 5 ms meanwhile but wait for it, in one batch.
    for i in 1..3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        deliveries.push(producer.send(msg(i)).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    assert_eq!(sink.sizes(), vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_fails_every_message_with_the_server_code() {
    let sink = Arc::new(FakeSink {
        fail: Some(Error::Api(Problem::new(ErrorCode::Unavailable, "stall"))),
        fail_times: AtomicUsize::new(usize::MAX),
        ..FakeSink::default()
    });
    let producer = Producer::spawn(sink.clone(), &config(5, 100)).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..3 {
        deliveries.push(producer.send(msg(i)).await.unwrap());
    }
    for d in deliveries {
        assert_eq!(d.await.unwrap_err().code(), Some(ErrorCode::Unavailable));
    }
    // The first attempt and five retries.
    assert_eq!(sink.sizes(), vec![3; 6]);

    // A refusal that would be refused again is not retried.
    let refused = Arc::new(FakeSink {
        fail: Some(Error::Api(Problem::new(ErrorCode::MessageTooLarge, "big"))),
        fail_times: AtomicUsize::new(usize::MAX),
        ..FakeSink::default()
    });
    let producer = Producer::spawn(refused.clone(), &config(5, 100)).unwrap();
    let d = producer.send(msg(0)).await.unwrap();
    assert_eq!(
        d.await.unwrap_err().code(),
        Some(ErrorCode::MessageTooLarge)
    );
    assert_eq!(refused.sizes(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_the_same_ids_after_a_backoff() {
    let later = Error::from_problem(
        Problem::new(ErrorCode::RateLimited, "slow down"),
        Some(Duration::from_secs(2)),
    );
    let sink = Arc::new(FakeSink {
        fail: Some(later),
        fail_times: AtomicUsize::new(2),
        ..FakeSink::default()
    });
    let producer = Producer::spawn(sink.clone(), &config(0, 100)).unwrap();
    let mut own_id = msg(2);
    own_id.id = Some("mine".into());
    let t0 = Instant::now();
    let a = producer.send(msg(0)).await.unwrap();
    let b = producer.send(msg(1)).await.unwrap();
    let c = producer.send(own_id).await.unwrap();
    for d in [a, b, c] {
        d.await.unwrap();
    }
    // Two failures, each followed by at least the server's Retry-After.
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
    let attempts = sink.batches.lock().unwrap().len();
    let ids = sink.ids.lock().unwrap().clone();
    assert_eq!(
        ids.len(),
        3 * attempts,
        "the batch was sent whole each time"
    );
    let first: Vec<Option<String>> = ids[..3].to_vec();
    assert!(first[0].as_deref().is_some_and(|id| id.starts_with("wp-")));
    assert_ne!(first[0], first[1], "each message has its own id");
    assert_eq!(first[2].as_deref(), Some("mine"), "a caller's id is kept");
    for attempt in ids.chunks(3) {
        assert_eq!(attempt, &first[..], "every attempt carries the same ids");
    }

    // Without idempotence, no ids are invented.
    let plain = Arc::new(FakeSink::default());
    let config = ProducerConfig {
        idempotent: false,
        ..config(0, 100)
    };
    let producer = Producer::spawn(plain.clone(), &config).unwrap();
    producer.send(msg(0)).await.unwrap().await.unwrap();
    assert_eq!(plain.ids.lock().unwrap().clone(), vec![None]);
}

#[tokio::test(start_paused = true)]
async fn a_short_result_list_is_a_protocol_error() {
    let sink = Arc::new(FakeSink {
        drop_one_result: true,
        ..FakeSink::default()
    });
    let producer = Producer::spawn(sink, &config(5, 100)).unwrap();
    let a = producer.send(msg(0)).await.unwrap();
    let b = producer.send(msg(1)).await.unwrap();
    assert!(matches!(a.await, Err(Error::Protocol(_))));
    assert!(matches!(b.await, Err(Error::Protocol(_))));
}

#[tokio::test(start_paused = true)]
async fn close_drains_without_waiting_and_refuses_later_sends() {
    let sink = Arc::new(FakeSink::default());
    let producer = Producer::spawn(sink.clone(), &config(3_600_000, 100)).unwrap();
    let other = producer.clone();
    let a = producer.send(msg(0)).await.unwrap();
    let b = other.send(msg(1)).await.unwrap();
    let t0 = Instant::now();
    producer.close().await.unwrap();
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(a.now_or_never().unwrap().unwrap().offset, 0);
    assert_eq!(b.now_or_never().unwrap().unwrap().offset, 1);
    assert!(matches!(
        other.send(msg(2)).await,
        Err(Error::ProducerClosed)
    ));
    other.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_blocked_server_pushes_back_on_senders() {
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(FakeSink {
        gate: Some(gate.clone()),
        ..FakeSink::default()
    });
    let producer = Producer::spawn(
        sink.clone(),
        &ProducerConfig {
            linger: Duration::ZERO,
            max_batch_messages: 1,
            max_in_flight: 1,
            queue_capacity: 2,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    // 1 in flight, 1 closed and waiting for the slot, 2 in the channel.
    let mut deliveries = Vec::new();
    for i in 0..4 {
        deliveries.push(producer.send(msg(i)).await.unwrap());
        tokio::task::yield_now().await;
    }
    let blocked = tokio::time::timeout(Duration::from_secs(1), producer.send(msg(4))).await;
    assert!(blocked.is_err(), "a fifth send must wait for room");
    gate.add_permits(100);
    deliveries.push(producer.send(msg(4)).await.unwrap());
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, i as u64);
    }
    assert_eq!(sink.most_running.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn messages_that_cannot_be_valid_are_refused_before_batching() {
    let sink = Arc::new(FakeSink::default());
    let producer = Producer::spawn(sink.clone(), &config(1, 100)).unwrap();
    let mut both = msg(1);
    both.value_b64 = Some("AA==".into());
    assert!(
        matches!(producer.send(both).await, Err(Error::Api(ref p)) if p.code == weir_protocol::ErrorCode::InvalidRequest)
    );
    assert!(matches!(
        producer.send(ProduceMessage::default()).await,
        Err(Error::Api(ref p)) if p.code == weir_protocol::ErrorCode::InvalidRequest
    ));
    let mut reserved = msg(1);
    reserved.headers = Some([("Weir-Attempts".to_owned(), "1".to_owned())].into());
    assert!(matches!(
        producer.send(reserved).await,
        Err(Error::Api(ref p)) if p.code == weir_protocol::ErrorCode::InvalidRequest
    ));
    producer.close().await.unwrap();
    assert!(sink.sizes().is_empty());
}

#[test]
fn a_producer_needs_a_runtime() {
    let sink = Arc::new(FakeSink::default());
    assert!(matches!(
        Producer::spawn(sink, &ProducerConfig::default()),
        Err(Error::Local(_))
    ));
}

/// A sink that takes binary bodies and keeps every record it received.
#[derive(Default)]
struct BinarySink {
    records: Mutex<Vec<Vec<weir_protocol::binary::ProduceRecord>>>,
}

impl BatchSink for Arc<BinarySink> {
    fn encoding(&self) -> Encoding {
        Encoding::Binary
    }

    async fn produce(&self, body: Bytes, messages: usize) -> Result<Vec<ProduceResult>, Error> {
        let records = weir_protocol::binary::decode_produce(&body).expect("a binary body");
        assert_eq!(records.len(), messages, "the count handed over matches");
        let mut all = self.records.lock().unwrap();
        let first: usize = all.iter().map(Vec::len).sum();
        all.push(records);
        Ok((first..first + messages)
            .map(|offset| ProduceResult {
                partition: 0,
                offset: offset as u64,
                duplicate: false,
            })
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn a_binary_producer_batches_records_with_their_ids() {
    let sink = Arc::new(BinarySink::default());
    let producer = Producer::spawn(sink.clone(), &config(10, 3)).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..5u8 {
        let mut message = ProduceMessage::bytes(&[i, 0xff]);
        message.key = Some(format!("k{i}"));
        deliveries.push(producer.send(message).await.unwrap());
    }
    deliveries.push(producer.send(msg(5)).await.unwrap());
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(d.await.unwrap().offset);
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5]);
    let batches = sink.records.lock().unwrap().clone();
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3]);
    let records: Vec<_> = batches.into_iter().flatten().collect();
    assert_eq!(records[4].value, vec![4, 0xff]);
    assert_eq!(records[4].key.as_deref(), Some("k4"));
    assert!(!records[4].json);
    assert_eq!(
        (records[5].json, records[5].value.as_slice()),
        (true, &b"5"[..])
    );
    // Idempotent by default: every record carries a generated id.
    assert!(records.iter().all(|r| r.id.is_some()));
    producer.close().await.unwrap();
}
