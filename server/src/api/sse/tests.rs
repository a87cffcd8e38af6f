//! The event streams over a real broker (temporary store), read as the
//! `text/event-stream` body a client receives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::body::BodyDataStream;
use axum::http::Method;
use futures_util::StreamExt;
use serde_json::{json, Value};
use weir_protocol::{ProduceMessage, SubscriptionSpec, TopicSpec};

use super::position::{self, Source, Start};
use super::subscription::Deliveries;
use super::topic::Tail;
use super::{respond, HEARTBEAT};
use crate::api::guard::{need, Need};
use crate::api::limits::{Limits, WebSocketSlot};
use crate::auth::grants::Action;
use crate::broker::subscription::settle::Settle;
use crate::broker::subscription::PullParams;
use crate::broker::Broker;
use crate::storage::{FsyncMode, Store, StoreOptions};

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

struct TestBroker {
    broker: Arc<Broker>,
    shutting_down: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

async fn broker_with_topic(topic: &str, partitions: u32) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        fsync: FsyncMode::Never,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), &options).unwrap();
    let broker = Broker::open(store, Default::default()).unwrap();
    let spec = TopicSpec {
        partitions: Some(partitions),
        ..TopicSpec::default()
    };
    broker.put_topic(topic, &spec, 1).await.unwrap();
    TestBroker {
        broker,
        shutting_down: Arc::new(AtomicBool::new(false)),
        _dir: dir,
    }
}

fn slot() -> WebSocketSlot {
    let config = crate::config::Config::defaults().unwrap().limits;
    Limits::new(config, 1 << 20).websocket("test").unwrap()
}

async fn produce(t: &TestBroker, partition: u32, values: std::ops::Range<u64>) {
    let messages = values
        .map(|v| ProduceMessage {
            value: Some(serde_json::value::to_raw_value(&v).unwrap()),
            partition: Some(partition),
            ..ProduceMessage::default()
        })
        .collect();
    t.broker.produce("t", messages, 1000).await.unwrap();
}

/// One parsed event: its fields, or a comment.
#[derive(Debug, Clone, Default)]
struct Parsed {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: Option<String>,
}

impl Parsed {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// The client end: the response body, parsed event by event.
struct Reader {
    body: BodyDataStream,
    buffer: String,
}

impl Reader {
    fn new(response: axum::response::Response) -> Reader {
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        Reader {
            body: response.into_body().into_data_stream(),
            buffer: String::new(),
        }
    }

    /// The next event or comment; `None` when the stream ended.
    async fn next(&mut self) -> Option<Parsed> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut parsed = Parsed::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        parsed.comment = Some(c.trim().to_owned());
                    } else if let Some((name, value)) = line.split_once(": ") {
                        match name {
                            "id" => parsed.id = Some(value.to_owned()),
                            "event" => parsed.event = Some(value.to_owned()),
                            "data" => data.push(value.to_owned()),
                            other => panic!("unexpected field {other}"),
                        }
                    }
                }
                parsed.data = data.join("\n");
                return Some(parsed);
            }
            let chunk = tokio::time::timeout(EVENT_TIMEOUT, self.body.next())
                .await
                .expect("an event within the timeout")?
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `message` event, skipping heartbeats.
    async fn message(&mut self) -> Parsed {
        loop {
            let parsed = self.next().await.expect("the stream goes on");
            if parsed.comment.is_some() {
                continue;
            }
            assert_eq!(parsed.event.as_deref(), Some("message"), "{parsed:?}");
            return parsed;
        }
    }

    /// Asserts that no event (other than heartbeats) comes for `quiet`.
    async fn nothing_for(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Err(_) => return,
                Ok(Some(p)) if p.comment.is_some() => {}
                Ok(other) => panic!("expected nothing, got {other:?}"),
            }
        }
    }
}

async fn open_tail(t: &TestBroker, start: Start, heartbeat: Duration) -> Reader {
    let reader = t.broker.topic_reader("t").unwrap();
    let cursors = position::resolve(&reader, &start, Source::From)
        .await
        .unwrap();
    let tail = Tail::new(reader, cursors, t.shutting_down.clone());
    Reader::new(respond(tail.events(), slot(), heartbeat))
}

/// (partition, offset, value) of a message event.
fn triple(p: &Parsed) -> (u64, u64, Value) {
    let m = p.json();
    assert_eq!(m["topic"], "t", "{m}");
    assert!(m.get("ack_id").is_none(), "{m}");
    (
        m["partition"].as_u64().unwrap(),
        m["offset"].as_u64().unwrap(),
        m["value"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_earliest_replays_in_order_then_follows_and_ids_resume_exactly() {
    let t = broker_with_topic("t", 2).await;
    // More than one batch in partition 0.
    produce(&t, 0, 0..300).await;
    produce(&t, 1, 1000..1005).await;
    let mut first = open_tail(&t, Start::Earliest, HEARTBEAT).await;
    let mut seen = Vec::new();
    for _ in 0..305 {
        seen.push(first.message().await);
    }
    for partition in [0, 1] {
        let offsets: Vec<u64> = seen
            .iter()
            .map(triple)
            .filter(|m| m.0 == partition)
            .map(|m| m.1)
            .collect();
        let expected = if partition == 0 { 300 } else { 5 };
        assert_eq!(offsets, (0..expected).collect::<Vec<_>>());
    }
    // Partition 1 was not starved by partition 0's backlog.
    let first_p1 = seen.iter().position(|p| triple(p).0 == 1).unwrap();
    assert!(first_p1 <= 256, "partition 1 first seen at {first_p1}");
    // Each id is every partition's position after its event.
    let last = triple(&seen[304]);
    assert_eq!(seen[304].id.as_deref(), Some("0=300,1=5"), "{last:?}");

    // Resuming from the id of event 100 yields exactly the events after it.
    let token = seen[100].id.clone().unwrap();
    let start = position::parse_token(&token).unwrap();
    let mut resumed = open_tail(&t, start, HEARTBEAT).await;
    let mut rest = Vec::new();
    for _ in 0..204 {
        rest.push(triple(&resumed.message().await));
    }
    let expected: BTreeSet<(u64, u64)> =
        seen[101..].iter().map(triple).map(|m| (m.0, m.1)).collect();
    let got: BTreeSet<(u64, u64)> = rest.iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(got.len(), rest.len(), "duplicates in {rest:?}");
    assert_eq!(got, expected);
    resumed.nothing_for(Duration::from_millis(200)).await;

    // Both follow new messages.
    produce(&t, 1, 7..8).await;
    assert_eq!(triple(&first.message().await), (1, 5, json!(7)));
    assert_eq!(triple(&resumed.message().await), (1, 5, json!(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_latest_sends_only_new_messages_and_heartbeats_when_idle() {
    let t = broker_with_topic("t", 1).await;
    produce(&t, 0, 0..3).await;
    let mut tail = open_tail(&t, Start::Latest, Duration::from_millis(50)).await;
    let ping = tail.next().await.unwrap();
    assert_eq!(ping.comment.as_deref(), Some("ping"), "{ping:?}");
    produce(&t, 0, 3..4).await;
    let m = tail.message().await;
    assert_eq!(triple(&m), (0, 3, json!(3)));
    assert_eq!(m.id.as_deref(), Some("0=4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_topic_or_shutting_down_ends_the_stream_with_an_error_event() {
    let t = broker_with_topic("t", 1).await;
    let mut tail = open_tail(&t, Start::Latest, HEARTBEAT).await;
    t.broker.delete_topic("t").await.unwrap();
    let end = tail.next().await.unwrap();
    assert_eq!(end.event.as_deref(), Some("error"));
    assert_eq!(end.json()["code"], "topic_not_found", "{end:?}");
    assert!(end.id.is_none());
    assert!(tail.next().await.is_none(), "the stream ends");

    let t = broker_with_topic("t", 1).await;
    let mut tail = open_tail(&t, Start::Latest, HEARTBEAT).await;
    // What the server does at shutdown.
    t.shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    t.broker.wake_all();
    let end = tail.next().await.unwrap();
    assert_eq!(end.event.as_deref(), Some("error"));
    assert_eq!(end.json()["code"], "shutting_down", "{end:?}");
    assert!(tail.next().await.is_none(), "the stream ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_timestamps_start_each_partition_where_named() {
    let t = broker_with_topic("t", 2).await;
    produce(&t, 0, 0..5).await;
    produce(&t, 1, 10..13).await;
    let start = position::parse_from(Some("offsets:0=3")).unwrap();
    let mut tail = open_tail(&t, start, HEARTBEAT).await;
    let mut got = BTreeSet::new();
    for _ in 0..5 {
        let (p, o, _) = triple(&tail.message().await);
        got.insert((p, o));
    }
    let expected: BTreeSet<(u64, u64)> = [(0, 3), (0, 4), (1, 0), (1, 1), (1, 2)].into();
    assert_eq!(got, expected);

    let reader = t.broker.topic_reader("t").unwrap();
    let beyond = position::parse_from(Some("offsets:2=0")).unwrap();
    let e = position::resolve(&reader, &beyond, Source::From)
        .await
        .unwrap_err();
    assert_eq!(e.problem.field.as_deref(), Some("from"));
    let future = position::parse_from(Some("timestamp:999999999999999")).unwrap();
    let cursors = position::resolve(&reader, &future, Source::From)
        .await
        .unwrap();
    assert_eq!(cursors, vec![5, 3]);
}

async fn subscribe(t: &TestBroker, mode: &str) {
    let spec: SubscriptionSpec = serde_json::from_value(json!({
        "mode": mode, "start": "earliest",
        "retry": {"max_attempts": null, "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}
    }))
    .unwrap();
    t.broker.put_subscription("t", "s", &spec, 1).await.unwrap();
}

fn open_deliveries(t: &TestBroker, max_in_flight: usize) -> Reader {
    let subscription = t.broker.subscription("t", "s").unwrap();
    let deliveries = Deliveries::new(subscription, None, max_in_flight, t.shutting_down.clone());
    Reader::new(respond(deliveries.events(), slot(), HEARTBEAT))
}

async fn ack(t: &TestBroker, ack_id: &str) {
    let subscription = t.broker.subscription("t", "s").unwrap();
    let response = subscription
        .settle(&[ack_id.to_owned()], Settle::Ack)
        .await
        .unwrap();
    assert_eq!(response.acked, 1, "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_respect_max_in_flight_and_closing_releases_the_leases() {
    let t = broker_with_topic("t", 1).await;
    subscribe(&t, "queue").await;
    produce(&t, 0, 0..5).await;
    let mut stream = open_deliveries(&t, 2);
    let a = stream.message().await;
    let b = stream.message().await;
    for m in [&a, &b] {
        let data = m.json();
        assert_eq!(m.id.as_deref(), data["ack_id"].as_str(), "{data}");
        assert_eq!(data["attempt"], 1);
    }
    // Two unacked: nothing more comes until one is settled.
    stream.nothing_for(Duration::from_millis(300)).await;
    ack(&t, a.id.as_deref().unwrap()).await;
    let c = stream.message().await;
    assert_eq!(c.json()["offset"], 2);
    stream.nothing_for(Duration::from_millis(300)).await;
    // A nack makes room too (and the message comes back).
    let subscription = t.broker.subscription("t", "s").unwrap();
    let nack = Settle::Nack {
        reason: None,
        delay_ms: None,
        retry: true,
    };
    subscription
        .settle(&[b.id.clone().unwrap()], nack)
        .await
        .unwrap();
    let again = stream.message().await.json();
    assert_eq!(
        (again["offset"].as_u64(), again["attempt"].as_u64()),
        (Some(1), Some(2))
    );
    // Closing releases the two unsettled leases: a pull gets them again,
    // with the two never delivered.
    drop(stream);
    let mut offsets = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while offsets.len() < 4 && tokio::time::Instant::now() < deadline {
        let pulled = subscription
            .pull(PullParams {
                max_messages: 10,
                wait_ms: 500,
                consumer: None,
                holder: None,
            })
            .await
            .unwrap();
        offsets.extend(pulled.iter().map(|m| m.message.offset));
    }
    assert_eq!(offsets, BTreeSet::from([1, 2, 3, 4]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_room_comes_back_with_a_cumulative_ack() {
    let t = broker_with_topic("t", 1).await;
    subscribe(&t, "stream").await;
    produce(&t, 0, 0..4).await;
    let mut stream = open_deliveries(&t, 2);
    let _first = stream.message().await;
    let second = stream.message().await;
    stream.nothing_for(Duration::from_millis(300)).await;
    // Acking offset 1 commits 0 and 1.
    ack(&t, second.id.as_deref().unwrap()).await;
    let offsets = [
        stream.message().await.json()["offset"].as_u64(),
        stream.message().await.json()["offset"].as_u64(),
    ];
    assert_eq!(offsets, [Some(2), Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_subscription_ends_its_stream() {
    let t = broker_with_topic("t", 1).await;
    subscribe(&t, "queue").await;
    let mut stream = open_deliveries(&t, 1);
    t.broker.delete_subscription("t", "s").await.unwrap();
    let end = stream.next().await.unwrap();
    assert_eq!(end.event.as_deref(), Some("error"));
    assert_eq!(end.json()["code"], "subscription_not_found", "{end:?}");
    assert!(stream.next().await.is_none());
}

#[test]
fn routes_need_consume() {
    assert_eq!(
        need(&Method::GET, "/v1/topics/{topic}/events"),
        Need::Topic(Action::Consume)
    );
    assert_eq!(
        need(
            &Method::GET,
            "/v1/topics/{topic}/subscriptions/{sub}/events"
        ),
        Need::Subscription(Action::Consume)
    );
}
