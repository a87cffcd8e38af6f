//! The typed client (`weir_client::Client`) against a real server: every
//! endpoint method with its results and stable error codes, the batching
//! `Producer` (batches observed through the server's
//! `weir_produce_batch_messages` histogram and through the offsets), and the
//! `consume` loop (ack, nack with the error text as dead-letter reason, lease
//! renewal of a slow handler, shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_client::{
    AtOffsets, AtTimestamp, Backoff, Client, ConsumerConfig, Error, ErrorCode, ExtendRequest,
    Message, Mode, NackRequest, ProduceMessage, ProduceMessageExt, ProducerConfig, PullRequest,
    ReceivedMessage, RetryPolicy, SeekRequest, SeekTarget, Start, StartName, SubscriptionSpec,
    TopicSpec,
};

use crate::harness::{now_ms, TestServer};

// ---- helpers -------------------------------------------------------------

fn client(s: &TestServer) -> Client {
    Client::new(&s.url("")).expect("client for the test server")
}

/// A JSON message `{"i": i}`.
fn msg(i: u64) -> ProduceMessage {
    ProduceMessage::json(&json!({ "i": i })).expect("serialize")
}

/// The JSON value of a stored message (panics for byte payloads).
fn value(m: &Message) -> Value {
    let raw = m
        .value
        .as_ref()
        .unwrap_or_else(|| panic!("no JSON value in {m:?}"));
    serde_json::from_str(raw.get()).expect("stored value is JSON")
}

fn value_i(m: &Message) -> u64 {
    value(m)["i"]
        .as_u64()
        .unwrap_or_else(|| panic!("no value.i in {m:?}"))
}

/// A retry policy with a fixed backoff of `backoff_ms`.
fn retry(max_attempts: Option<u32>, backoff_ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff {
            initial_ms: backoff_ms,
            max_ms: backoff_ms,
            multiplier: 1.0,
            jitter: 0.0,
        },
        circuit_breaker: None,
    }
}

fn queue_spec(ack_timeout_ms: u64, retry: RetryPolicy) -> SubscriptionSpec {
    SubscriptionSpec {
        mode: Some(Mode::Queue),
        start: Some(Start::Named(StartName::Earliest)),
        ack_timeout_ms: Some(ack_timeout_ms),
        // The policy whole; the circuit breaker left as it is.
        retry: Some(weir_protocol::RetrySpec {
            circuit_breaker: None,
            ..retry.into()
        }),
        ..SubscriptionSpec::default()
    }
}

fn pull_req(max: u32, wait_ms: u64) -> PullRequest {
    PullRequest {
        max_messages: Some(max),
        wait_ms: Some(wait_ms),
        consumer: Some("test".into()),
    }
}

/// Asserts that `result` failed with the server's stable `code`.
#[track_caller]
fn expect_code<T: std::fmt::Debug>(result: Result<T, Error>, code: ErrorCode) -> Error {
    let e = result.expect_err("the call must fail");
    assert_eq!(e.code(), Some(code), "error {e:?}");
    assert!(
        e.to_string().contains(code.as_str()),
        "the message names the code: {e}"
    );
    assert!(!e.is_transient(), "{code} is not transient");
    e
}

/// Pulls (bounded) until a message at `offset` arrives; acks nothing.
async fn pull_until_offset(c: &Client, topic: &str, sub: &str, offset: u64) -> ReceivedMessage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let batch = c.pull(topic, sub, &pull_req(10, 500)).await.expect("pull");
        if let Some(m) = batch.into_iter().find(|m| m.message.offset == offset) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "offset {offset} was not delivered again"
        );
    }
}

/// Messages of partition 0 of `topic` once it holds `count` (bounded wait;
/// the topic may not exist yet, e.g. a dead-letter topic).
async fn wait_for_partition(c: &Client, topic: &str, count: u64) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.topic(topic).await {
            Ok(info) if info.partitions[0].high_offset >= count => break,
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {}
            Err(e) => panic!("describe {topic}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{topic} did not reach {count} messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = c.read(topic, 0, 0, 1000).await.expect("read");
    assert_eq!(
        page.messages.len() as u64,
        count,
        "exactly {count} in {topic}"
    );
    page.messages
}

/// `(count, sum)` of the server's `weir_produce_batch_messages` histogram.
async fn batch_histogram(s: &TestServer) -> (u64, u64) {
    let reply = s.get("/metrics").await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let metric = |name: &str| -> u64 {
        reply
            .text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().expect("numeric sample") as u64)
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    (
        metric("weir_produce_batch_messages_count"),
        metric("weir_produce_batch_messages_sum"),
    )
}

// ---- topics, produce, read -------------------------------------------------

#[tokio::test]
async fn client_topics_produce_and_read() {
    let s = TestServer::start();
    assert!(matches!(Client::new("localhost:1"), Err(Error::Url(_))));
    let c = Client::new(&format!("{}/", s.url(""))).unwrap();
    assert_eq!(c.base(), s.url(""), "trailing slash trimmed");

    // Topic CRUD.
    let spec = TopicSpec {
        partitions: Some(2),
        dedupe_window_ms: Some(60_000),
        ..TopicSpec::default()
    };
    let created = c.create_topic("orders", &spec).await.unwrap();
    assert_eq!(created.name, "orders");
    assert_eq!(created.config.partitions, 2);
    assert_eq!(created.config.dedupe_window_ms, 60_000);
    assert_eq!(created.partitions.len(), 2);
    // Same body again: accepted, nothing changes.
    let again = c.create_topic("orders", &spec).await.unwrap();
    assert_eq!(again.config, created.config);
    // Partitions never shrink.
    let shrink = TopicSpec {
        partitions: Some(1),
        ..TopicSpec::default()
    };
    expect_code(c.create_topic("orders", &shrink).await, ErrorCode::Conflict);
    expect_code(
        c.create_topic("bad name!", &TopicSpec::default()).await,
        ErrorCode::InvalidName,
    );
    c.create_topic("scratch", &TopicSpec::default())
        .await
        .unwrap();
    let names: Vec<String> = c
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["orders", "scratch"]);
    c.delete_topic("scratch").await.unwrap();
    expect_code(c.topic("scratch").await, ErrorCode::TopicNotFound);
    expect_code(c.delete_topic("scratch").await, ErrorCode::TopicNotFound);
    expect_code(
        c.produce("scratch", vec![msg(0)]).await,
        ErrorCode::TopicNotFound,
    );

    // produce: JSON and bytes, key, headers, explicit partition, idempotency id.
    let mut keyed = msg(0);
    keyed.key = Some("customer-7".into());
    keyed.headers = Some(BTreeMap::from([("trace".into(), "abc".into())]));
    keyed.partition = Some(1);
    let mut bytes = ProduceMessage::bytes(&[0, 1, 2, 255]);
    bytes.partition = Some(1);
    let mut with_id = msg(2);
    with_id.partition = Some(1);
    with_id.id = Some("order-2".into());
    let results = c
        .produce("orders", vec![keyed, bytes, with_id])
        .await
        .unwrap();
    let placed: Vec<(u32, u64, bool)> = results
        .iter()
        .map(|r| (r.partition, r.offset, r.duplicate))
        .collect();
    assert_eq!(placed, vec![(1, 0, false), (1, 1, false), (1, 2, false)]);
    // The same id again: not appended, the first offset repeated.
    let mut dup = msg(99);
    dup.partition = Some(1);
    dup.id = Some("order-2".into());
    let results = c.produce("orders", vec![dup]).await.unwrap();
    assert_eq!((results[0].offset, results[0].duplicate), (2, true));
    // A reserved header is refused, naming the code.
    let mut reserved = msg(0);
    reserved.headers = Some(BTreeMap::from([("weir-attempts".into(), "1".into())]));
    expect_code(
        c.produce("orders", vec![reserved]).await,
        ErrorCode::InvalidRequest,
    );

    // produce_raw: a pre-serialized body, results in request order.
    let raw = br#"{"messages":[{"value":{"i":3},"partition":1},{"value":{"i":4},"partition":1}]}"#;
    let results = c.produce_raw("orders", raw.to_vec()).await.unwrap();
    let offsets: Vec<u64> = results.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![3, 4]);
    expect_code(
        c.produce_raw("orders", b"{\"messages\": 7}".to_vec()).await,
        ErrorCode::InvalidRequest,
    );

    // read: every field comes back as produced.
    let page = c.read("orders", 1, 0, 100).await.unwrap();
    assert_eq!(page.next_offset, 5);
    assert_eq!(page.messages.len(), 5);
    let first = &page.messages[0];
    assert_eq!(
        (first.topic.as_str(), first.partition, first.offset),
        ("orders", 1, 0)
    );
    assert_eq!(first.key.as_deref(), Some("customer-7"));
    assert_eq!(first.headers.get("trace").map(String::as_str), Some("abc"));
    assert_eq!(value(first), json!({"i": 0}));
    assert_eq!(page.messages[1].value_b64.as_deref(), Some("AAEC/w=="));
    assert!(page.messages[1].value.is_none());
    let is: Vec<u64> = [0, 2, 3, 4]
        .iter()
        .map(|&o| value_i(&page.messages[o]))
        .collect();
    assert_eq!(is, vec![0, 2, 3, 4], "the duplicate was not appended");
    let limited = c.read("orders", 1, 1, 2).await.unwrap();
    assert_eq!(limited.messages.len(), 2);
    assert_eq!(limited.next_offset, 3);
    expect_code(
        c.read("orders", 7, 0, 10).await,
        ErrorCode::PartitionNotFound,
    );
    expect_code(c.read("nope", 0, 0, 10).await, ErrorCode::TopicNotFound);

    // read_from_time: the first message at or after a timestamp.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = now_ms();
    let mut late = msg(5);
    late.partition = Some(1);
    c.produce("orders", vec![late]).await.unwrap();
    let page = c.read_from_time("orders", 1, t, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].offset, 5);
    assert!(page.messages[0].timestamp >= t);
    let all = c.read_from_time("orders", 1, 0, 10).await.unwrap();
    assert_eq!(all.messages.len(), 6);

    // read_wait: an empty long poll waits, then returns nothing...
    let started = Instant::now();
    let empty = c
        .read_wait("orders", 0, 0, 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(empty.messages.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
    // ...and returns as soon as a message arrives.
    let producer = c.clone();
    let late_write = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut m = msg(6);
        m.partition = Some(0);
        producer.produce("orders", vec![m]).await.unwrap()
    });
    let started = Instant::now();
    let page = c
        .read_wait("orders", 0, 0, 10, Duration::from_millis(5000))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(page.messages.len(), 1, "{page:?}");
    assert_eq!(value_i(&page.messages[0]), 6);
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(4),
        "returned after {waited:?}"
    );
    late_write.await.unwrap();

    // Describe reflects it all.
    let info = c.topic("orders").await.unwrap();
    let highs: Vec<u64> = info.partitions.iter().map(|p| p.high_offset).collect();
    assert_eq!(highs, vec![1, 6]);
}

// ---- subscriptions -----------------------------------------------------------

#[tokio::test]
async fn client_subscription_calls() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("orders", &TopicSpec::default())
        .await
        .unwrap();
    c.produce("orders", vec![msg(0), msg(1)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = now_ms();
    // Timestamps are whole milliseconds (the server's reading may round
    // 1 ms below the client's): produce clearly after `t`.
    tokio::time::sleep(Duration::from_millis(3)).await;
    c.produce("orders", vec![msg(2)]).await.unwrap();

    // create / get / list.
    let spec = queue_spec(10_000, retry(Some(2), 0));
    let info = c
        .create_subscription("orders", "billing", &spec)
        .await
        .unwrap();
    assert_eq!(
        (info.topic.as_str(), info.name.as_str()),
        ("orders", "billing")
    );
    assert_eq!(info.config.mode, Mode::Queue);
    assert_eq!(info.config.ack_timeout_ms, 10_000);
    assert_eq!(info.config.retry.max_attempts, Some(2));
    assert_eq!(
        info.config.dead_letter_topic.as_deref(),
        Some("orders.billing.dlq")
    );
    assert_eq!(info.stats.backlog, 3, "start earliest replays history");
    let same = c
        .create_subscription("orders", "billing", &spec)
        .await
        .unwrap();
    assert_eq!(same.config, info.config);
    let to_stream = SubscriptionSpec {
        mode: Some(Mode::Stream),
        ..SubscriptionSpec::default()
    };
    expect_code(
        c.create_subscription("orders", "billing", &to_stream).await,
        ErrorCode::Conflict,
    );
    c.create_subscription("orders", "audit", &to_stream)
        .await
        .unwrap();
    let got = c.subscription("orders", "billing").await.unwrap();
    assert_eq!(got.config, info.config);
    let names: Vec<String> = c
        .subscriptions("orders")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["audit", "billing"]);

    // pull / ack.
    let batch = c
        .pull("orders", "billing", &pull_req(10, 1000))
        .await
        .unwrap();
    let offsets: BTreeSet<u64> = batch.iter().map(|m| m.message.offset).collect();
    assert_eq!(offsets, BTreeSet::from([0, 1, 2]));
    assert!(batch.iter().all(|m| m.attempt == 1 && !m.ack_id.is_empty()));
    let by_offset: BTreeMap<u64, ReceivedMessage> =
        batch.into_iter().map(|m| (m.message.offset, m)).collect();
    let (m0, m1, m2) = (&by_offset[&0], &by_offset[&1], &by_offset[&2]);
    assert_eq!(value_i(&m1.message), 1);
    let acked = c
        .ack("orders", "billing", vec![m0.ack_id.clone()])
        .await
        .unwrap();
    assert_eq!((acked.acked, acked.unknown.len()), (1, 0));
    let again = c
        .ack("orders", "billing", vec![m0.ack_id.clone()])
        .await
        .unwrap();
    assert_eq!(again.acked, 0);
    assert_eq!(again.unknown, vec![m0.ack_id.clone()]);
    expect_code(
        c.ack("orders", "billing", vec![]).await,
        ErrorCode::InvalidRequest,
    );

    // extend: a live lease is renewed, a settled one is unknown.
    let ext = ExtendRequest {
        ack_ids: vec![m1.ack_id.clone(), m0.ack_id.clone()],
        ack_timeout_ms: Some(20_000),
    };
    let extended = c.extend("orders", "billing", &ext).await.unwrap();
    assert_eq!(extended.acked, 1);
    assert_eq!(extended.unknown, vec![m0.ack_id.clone()]);

    // nack: redelivered (backoff 0) as attempt 2.
    let nack = NackRequest {
        ack_ids: vec![m1.ack_id.clone()],
        reason: Some("retry me".into()),
        ..NackRequest::default()
    };
    assert_eq!(c.nack("orders", "billing", &nack).await.unwrap().acked, 1);
    let m1b = pull_until_offset(&c, "orders", "billing", 1).await;
    assert_eq!(m1b.attempt, 2);
    assert_ne!(m1b.ack_id, m1.ack_id, "a new delivery, a new ack id");
    // The old delivery's id is stale now.
    let stale = c.nack("orders", "billing", &nack).await.unwrap();
    assert_eq!(stale.unknown, vec![m1.ack_id.clone()]);

    // nack with retry: false dead-letters at once, with the reason.
    let permanent = NackRequest {
        ack_ids: vec![m1b.ack_id.clone()],
        reason: Some("permanent failure".into()),
        retry: Some(false),
        ..NackRequest::default()
    };
    assert_eq!(
        c.nack("orders", "billing", &permanent).await.unwrap().acked,
        1
    );
    let dead = wait_for_partition(&c, "orders.billing.dlq", 1).await;
    let h = &dead[0].headers;
    assert_eq!(h["weir-dead-letter-reason"], "permanent failure");
    assert_eq!(h["weir-original-offset"], "1");
    assert_eq!(h["weir-subscription"], "billing");
    assert_eq!(value_i(&dead[0]), 1);
    let stats = c.subscription("orders", "billing").await.unwrap().stats;
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.in_flight, 1, "offset 2 is still leased");

    // redrive: deliverable again with attempts reset.
    assert_eq!(
        c.redrive("orders", "billing", None).await.unwrap().redriven,
        1
    );
    let m1c = pull_until_offset(&c, "orders", "billing", 1).await;
    assert_eq!(m1c.attempt, 1);
    let acked = c
        .ack(
            "orders",
            "billing",
            vec![m1c.ack_id.clone(), m2.ack_id.clone()],
        )
        .await
        .unwrap();
    assert_eq!(acked.acked, 2);
    assert_eq!(
        c.redrive("orders", "billing", Some(5))
            .await
            .unwrap()
            .redriven,
        0
    );
    let stats = c.subscription("orders", "billing").await.unwrap().stats;
    assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{stats:?}");
    assert!(c
        .pull("orders", "billing", &pull_req(10, 0))
        .await
        .unwrap()
        .is_empty());

    // seek: offsets, timestamp, earliest, latest.
    let to = |target: SeekTarget| SeekRequest { to: target };
    let offsets = AtOffsets {
        offsets: BTreeMap::from([("0".into(), 1)]),
    };
    let info = c
        .seek("orders", "billing", &to(SeekTarget::Offsets(offsets)))
        .await
        .unwrap();
    assert_eq!(info.stats.backlog, 2);
    assert_eq!(info.stats.partitions[0].cursor, 1);
    let again = c
        .pull("orders", "billing", &pull_req(10, 1000))
        .await
        .unwrap();
    let offsets: BTreeSet<u64> = again.iter().map(|m| m.message.offset).collect();
    assert_eq!(offsets, BTreeSet::from([1, 2]));
    let ids = again.iter().map(|m| m.ack_id.clone()).collect();
    assert_eq!(c.ack("orders", "billing", ids).await.unwrap().acked, 2);
    let at = SeekTarget::Timestamp(AtTimestamp { timestamp: t });
    let info = c.seek("orders", "billing", &to(at)).await.unwrap();
    assert_eq!(info.stats.backlog, 1, "only offset 2 is at or after t");
    let earliest = SeekTarget::Named(StartName::Earliest);
    let info = c.seek("orders", "billing", &to(earliest)).await.unwrap();
    assert_eq!(info.stats.backlog, 3);
    let latest = SeekTarget::Named(StartName::Latest);
    let info = c.seek("orders", "billing", &to(latest)).await.unwrap();
    assert_eq!(info.stats.backlog, 0);

    // delete, and the stable codes of unknown resources.
    c.delete_subscription("orders", "audit").await.unwrap();
    let e = expect_code(
        c.subscription("orders", "audit").await,
        ErrorCode::SubscriptionNotFound,
    );
    match &e {
        Error::Api(problem) => {
            assert_eq!(problem.status, 404);
            assert!(!problem.detail.is_empty());
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    expect_code(
        c.delete_subscription("orders", "audit").await,
        ErrorCode::SubscriptionNotFound,
    );
    expect_code(
        c.pull("orders", "audit", &pull_req(1, 0)).await,
        ErrorCode::SubscriptionNotFound,
    );
    expect_code(
        c.redrive("orders", "audit", None).await,
        ErrorCode::SubscriptionNotFound,
    );
    expect_code(c.subscriptions("nope").await, ErrorCode::TopicNotFound);
    expect_code(
        c.pull("orders", "billing", &pull_req(0, 0)).await,
        ErrorCode::InvalidRequest,
    );
    let names: Vec<String> = c
        .subscriptions("orders")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["billing"]);
}

#[tokio::test]
async fn client_extend_keeps_a_short_lease() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("jobs", &TopicSpec::default()).await.unwrap();
    c.create_subscription("jobs", "w", &queue_spec(300, retry(None, 0)))
        .await
        .unwrap();
    c.produce("jobs", vec![msg(0), msg(1)]).await.unwrap();
    let batch = c.pull("jobs", "w", &pull_req(2, 1000)).await.unwrap();
    assert_eq!(batch.len(), 2);
    let (renewed, expiring) = (&batch[0], &batch[1]);
    let ext = ExtendRequest {
        ack_ids: vec![renewed.ack_id.clone()],
        ack_timeout_ms: Some(10_000),
    };
    assert_eq!(c.extend("jobs", "w", &ext).await.unwrap().acked, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Only the lease that was not extended ran out and is delivered again.
    let again = c.pull("jobs", "w", &pull_req(10, 2000)).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].message.offset, expiring.message.offset);
    assert_eq!(again[0].attempt, 2);
    let ids = vec![renewed.ack_id.clone(), again[0].ack_id.clone()];
    let acked = c.ack("jobs", "w", ids).await.unwrap();
    assert_eq!((acked.acked, acked.unknown.len()), (2, 0));
    let stale = c
        .ack("jobs", "w", vec![expiring.ack_id.clone()])
        .await
        .unwrap();
    assert_eq!(stale.unknown, vec![expiring.ack_id.clone()]);
}

// ---- Producer --------------------------------------------------------------

#[tokio::test]
async fn producer_batches_concurrent_sends() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("events", &TopicSpec::default())
        .await
        .unwrap();

    // Many concurrent senders on clones of one producer.
    let producer = c
        .producer(
            "events",
            ProducerConfig {
                linger: Duration::from_millis(100),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    let (count0, sum0) = batch_histogram(&s).await;
    const TASKS: u64 = 10;
    const PER_TASK: u64 = 30;
    let mut senders = Vec::new();
    for task in 0..TASKS {
        let p = producer.clone();
        senders.push(tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for n in 0..PER_TASK {
                let i = task * PER_TASK + n;
                deliveries.push((i, p.send(msg(i)).await.unwrap()));
            }
            let mut results = Vec::new();
            for (i, delivery) in deliveries {
                results.push((i, delivery.await.unwrap()));
            }
            results
        }));
    }
    let mut offset_of = BTreeMap::new();
    for sender in senders {
        let results = sender.await.unwrap();
        // One producer sending one batch at a time keeps each sender's order.
        let offsets: Vec<u64> = results.iter().map(|(_, r)| r.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        for (i, r) in results {
            assert_eq!((r.partition, r.duplicate), (0, false));
            assert!(
                offset_of.insert(r.offset, i).is_none(),
                "offset {} twice",
                r.offset
            );
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(offset_of.len() as u64, total);
    assert_eq!(
        offset_of.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    // Each result names where that very message is stored.
    let page = c.read("events", 0, 0, 1000).await.unwrap();
    for m in &page.messages {
        assert_eq!(value_i(m), offset_of[&m.offset], "offset {}", m.offset);
    }
    let (count1, sum1) = batch_histogram(&s).await;
    let batches = count1 - count0;
    assert_eq!(sum1 - sum0, total, "every message in some produce request");
    assert!(
        (1..=total / 10).contains(&batches),
        "{total} sends became {batches} produce requests"
    );

    // Batches close at max_batch_messages: 50 sends → ceil(50 / 7) requests.
    let small = c
        .producer(
            "events",
            ProducerConfig {
                linger: Duration::from_secs(5),
                max_batch_messages: 7,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..50 {
        deliveries.push(small.send(msg(1000 + i)).await.unwrap());
    }
    let started = Instant::now();
    small.flush().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "flush does not wait for linger"
    );
    let mut offsets = Vec::new();
    for delivery in deliveries {
        // Flushed: every delivery is already settled.
        let result = tokio::time::timeout(Duration::from_millis(100), delivery)
            .await
            .expect("settled by flush")
            .unwrap();
        offsets.push(result.offset);
    }
    assert_eq!(offsets, (total..total + 50).collect::<Vec<_>>());
    let (count2, sum2) = batch_histogram(&s).await;
    assert_eq!((count2 - count1, sum2 - sum1), (8, 50));

    // Linger: a lone message waits for company until flush or close.
    let mut lone = small.send(msg(2000)).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut lone)
            .await
            .is_err(),
        "a lone message lingers"
    );
    let pending = small.send(msg(2001)).await.unwrap();
    // `close` consumes the handle it is called on and closes every clone.
    small.clone().close().await.unwrap();
    assert_eq!(lone.await.unwrap().offset, total + 50);
    assert_eq!(pending.await.unwrap().offset, total + 51);
    // Closed: for every clone, and closing twice is harmless.
    let clone = small.clone();
    assert!(matches!(
        clone.send(msg(0)).await,
        Err(Error::ProducerClosed)
    ));
    assert!(matches!(small.flush().await, Err(Error::ProducerClosed)));
    small.close().await.unwrap();
    producer.close().await.unwrap();
    assert_eq!(
        c.topic("events").await.unwrap().partitions[0].high_offset,
        total + 52
    );
}

#[tokio::test]
async fn producer_failures_reach_every_send_of_the_batch() {
    let s = TestServer::start();
    let c = client(&s);
    let spec = TopicSpec {
        max_message_bytes: Some(200),
        ..TopicSpec::default()
    };
    c.create_topic("small", &spec).await.unwrap();
    let config = ProducerConfig {
        linger: Duration::from_millis(50),
        ..ProducerConfig::default()
    };
    let producer = c.producer("small", config.clone()).unwrap();

    // A message the server would refuse for its shape fails alone, at once.
    let mut reserved = msg(0);
    reserved.headers = Some(BTreeMap::from([("weir-attempts".into(), "1".into())]));
    // Refused by the same rules as the server's, with its code and field.
    assert!(matches!(
        producer.send(reserved).await,
        Err(Error::Api(ref p)) if p.code == ErrorCode::InvalidRequest
            && p.field.as_deref() == Some("messages[0].headers")
    ));
    let mut both = msg(0);
    both.value_b64 = Some("AA==".into());
    assert!(matches!(
        producer.send(both).await,
        Err(Error::Api(ref p)) if p.code == ErrorCode::InvalidRequest
    ));

    // One oversized message fails its whole batch (all or nothing).
    let good = producer.send(msg(1)).await.unwrap();
    let big = ProduceMessage::json(&"x".repeat(500)).unwrap();
    let bad = producer.send(big).await.unwrap();
    producer.flush().await.unwrap();
    for delivery in [good, bad] {
        let e = delivery.await.expect_err("the batch was refused");
        assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge), "{e}");
    }
    assert_eq!(c.topic("small").await.unwrap().partitions[0].high_offset, 0);
    // The producer keeps working after a failed batch.
    let ok = producer.send(msg(2)).await.unwrap().await.unwrap();
    assert_eq!(ok.offset, 0);
    producer.close().await.unwrap();

    // Unknown topic: each delivery carries the stable code.
    let lost = c.producer("nope", config).unwrap();
    let delivery = lost.send(msg(3)).await.unwrap();
    let e = delivery.await.expect_err("no such topic");
    assert_eq!(e.code(), Some(ErrorCode::TopicNotFound));
    lost.close().await.unwrap();
}

// ---- consume loop ------------------------------------------------------------

/// Completes once `counter` reaches `n`, or panics after a bound.
async fn reached(counter: Arc<AtomicUsize>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "only {counter:?} of {n} handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn consume_acks_successes_and_dead_letters_failures_with_their_error() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("jobs", &TopicSpec::default()).await.unwrap();
    c.create_subscription("jobs", "workers", &queue_spec(10_000, retry(Some(1), 0)))
        .await
        .unwrap();
    c.produce("jobs", (0..6).map(msg).collect()).await.unwrap();

    let done = Arc::new(AtomicUsize::new(0));
    let counted = done.clone();
    let handler = move |m: ReceivedMessage| {
        let counted = counted.clone();
        async move {
            let i = value_i(&m.message);
            assert_eq!(m.attempt, 1);
            counted.fetch_add(1, Ordering::SeqCst);
            match i {
                0 | 3 => Err(format!("job {i} failed")),
                4 => panic!("kaboom"),
                _ => Ok(()),
            }
        }
    };
    let config = ConsumerConfig {
        consumer: Some("worker-1".into()),
        wait: Duration::from_millis(500),
        concurrency: 4,
        ..ConsumerConfig::default()
    };
    let stats = c
        .consume("jobs", "workers", config, handler, reached(done, 6))
        .await
        .unwrap();
    assert_eq!(stats.received, 6, "{stats:?}");
    assert_eq!(stats.handled, 6, "{stats:?}");
    assert_eq!(stats.acked, 3, "{stats:?}");
    assert_eq!(stats.nacked, 3, "{stats:?}");
    assert_eq!((stats.lease_lost, stats.settle_failed), (0, 0), "{stats:?}");

    // max_attempts 1: every failure is in `<topic>.<sub>.dlq`, its reason
    // the handler's error text.
    let dead = wait_for_partition(&c, "jobs.workers.dlq", 3).await;
    let reasons: BTreeMap<u64, String> = dead
        .iter()
        .map(|m| {
            assert_eq!(m.headers["weir-original-topic"], "jobs");
            assert_eq!(m.headers["weir-subscription"], "workers");
            assert_eq!(m.headers["weir-attempts"], "1");
            let offset: u64 = m.headers["weir-original-offset"].parse().unwrap();
            assert_eq!(value_i(m), offset);
            (offset, m.headers["weir-dead-letter-reason"].clone())
        })
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            (0, "job 0 failed".to_owned()),
            (3, "job 3 failed".to_owned()),
            (4, "handler panicked: kaboom".to_owned()),
        ])
    );
    let stats = c.subscription("jobs", "workers").await.unwrap().stats;
    assert_eq!(stats.dead_lettered, 3);
    assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn consume_renews_the_lease_of_a_slow_handler() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("slow", &TopicSpec::default()).await.unwrap();
    c.create_subscription("slow", "s", &queue_spec(400, retry(None, 0)))
        .await
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (flag, counted, seen) = (started.clone(), done.clone(), attempts.clone());
    let handler = move |m: ReceivedMessage| {
        let (flag, counted, seen) = (flag.clone(), counted.clone(), seen.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            assert_eq!(m.attempt, 1, "never redelivered");
            flag.store(true, Ordering::SeqCst);
            // Almost four ack timeouts.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<(), String>(())
        }
    };
    let config = ConsumerConfig {
        wait: Duration::from_millis(300),
        ..ConsumerConfig::default()
    };
    let consumer = {
        let (c, done) = (c.clone(), done.clone());
        tokio::spawn(async move {
            c.consume("slow", "s", config, handler, reached(done, 1))
                .await
        })
    };
    c.produce("slow", vec![msg(0)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the handler never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A competing consumer gets nothing while the handler runs: the loop
    // keeps extending the 400 ms lease.
    let mut stolen = Vec::new();
    while done.load(Ordering::SeqCst) == 0 {
        stolen.extend(c.pull("slow", "s", &pull_req(10, 200)).await.unwrap());
    }
    assert!(
        stolen.is_empty(),
        "redelivered to a second consumer: {stolen:?}"
    );
    let stats = consumer.await.unwrap().unwrap();
    assert_eq!(
        (stats.received, stats.acked, stats.lease_lost),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert!(c
        .pull("slow", "s", &pull_req(10, 600))
        .await
        .unwrap()
        .is_empty());
    let stats = c.subscription("slow", "s").await.unwrap().stats;
    assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn consume_stops_on_shutdown_and_reports_errors() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("t", &TopicSpec::default()).await.unwrap();
    c.create_subscription("t", "s", &queue_spec(10_000, retry(None, 0)))
        .await
        .unwrap();
    let never = |_: ReceivedMessage| async { Err::<(), _>("no message expected") };

    // Unknown subscription: the stable code, with or without the initial
    // describe (which `extend_every: None` needs).
    let e = c
        .consume("t", "nope", ConsumerConfig::default(), never, async {})
        .await
        .expect_err("unknown subscription");
    assert_eq!(e.code(), Some(ErrorCode::SubscriptionNotFound));
    let config = ConsumerConfig {
        extend_every: Some(Duration::from_secs(1)),
        ..ConsumerConfig::default()
    };
    let e = c
        .consume("t", "nope", config, never, std::future::pending())
        .await
        .expect_err("the pull fails");
    assert_eq!(e.code(), Some(ErrorCode::SubscriptionNotFound));

    // An idle loop in a long poll stops promptly on shutdown.
    let config = ConsumerConfig {
        wait: Duration::from_millis(10_000),
        ..ConsumerConfig::default()
    };
    let started = Instant::now();
    let shutdown = tokio::time::sleep(Duration::from_millis(300));
    let stats = c
        .consume("t", "s", config.clone(), never, shutdown)
        .await
        .unwrap();
    assert_eq!((stats.received, stats.handled), (0, 0), "{stats:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );

    // A handler running at shutdown finishes and is settled before return.
    c.produce("t", vec![msg(0)]).await.unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let flag = running.clone();
    let slow = move |_: ReceivedMessage| {
        let flag = flag.clone();
        async move {
            flag.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<(), String>(())
        }
    };
    let started = Instant::now();
    let stats = c
        .consume("t", "s", config, slow, reached(running, 1))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(350));
    assert_eq!(
        (stats.received, stats.handled, stats.acked),
        (1, 1, 1),
        "{stats:?}"
    );
    let info = c.subscription("t", "s").await.unwrap();
    assert_eq!((info.stats.backlog, info.stats.in_flight), (0, 0));
}

#[tokio::test]
async fn consume_a_stream_subscription_in_order() {
    let s = TestServer::start();
    let c = client(&s);
    c.create_topic("log", &TopicSpec::default()).await.unwrap();
    let spec = SubscriptionSpec {
        mode: Some(Mode::Stream),
        ..queue_spec(10_000, retry(Some(1), 0))
    };
    c.create_subscription("log", "reader", &spec).await.unwrap();
    c.produce("log", (0..5).map(msg).collect()).await.unwrap();

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let (log, counted) = (seen.clone(), done.clone());
    let handler = move |m: ReceivedMessage| {
        let (log, counted) = (log.clone(), counted.clone());
        async move {
            let i = value_i(&m.message);
            log.lock().unwrap().push(i);
            counted.fetch_add(1, Ordering::SeqCst);
            if i == 2 {
                return Err(format!("bad record {i}"));
            }
            Ok(())
        }
    };
    let config = ConsumerConfig {
        consumer: Some("reader-1".into()),
        concurrency: 1,
        wait: Duration::from_millis(300),
        ..ConsumerConfig::default()
    };
    let stats = c
        .consume("log", "reader", config, handler, reached(done, 5))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4], "offset order");
    assert_eq!(
        (stats.acked, stats.nacked, stats.lease_lost),
        (4, 1, 0),
        "{stats:?}"
    );
    let dead = wait_for_partition(&c, "log.reader.dlq", 1).await;
    assert_eq!(dead[0].headers["weir-dead-letter-reason"], "bad record 2");
    assert_eq!(dead[0].headers["weir-original-offset"], "2");
    let info = c.subscription("log", "reader").await.unwrap();
    assert_eq!(info.stats.partitions[0].cursor, 5, "{info:?}");
    assert_eq!(info.stats.backlog, 0);
}
