//! Consuming with the client against a real server: the [`Subscriber`]
//! handle, messages that settle themselves (`ack`, `nack_with`,
//! `in_progress`, `json`, `bytes`), handlers that choose their nack,
//! batched acks and renewals (counted by a metrics hook), automatic lease
//! renewal, flow control by unacked messages and bytes (WebSocket and HTTP
//! pull streams), a rotating token, and `weir consume --ws`.
//!
//! Subscription specs are written as JSON, as a user of the API would.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use weir_client::{
    Client, ConsumerConfig, Error, LeaseRenewal, MetricsHook, Nack, Operation, OperationEvent,
    Outcome, ProduceMessage, ProduceMessageExt, PullOptions, Received, ReceivedMessage, SeekTarget,
    StartName, SubscribeOptions, SubscriptionSpec, TopicSpec,
};

use crate::harness::{built_binary, TestServer};

/// Longest wait for any one expected event.
const WAIT: Duration = Duration::from_secs(20);
/// How long "nothing more arrives" is watched for.
const SILENCE: Duration = Duration::from_millis(600);

/// A queue subscription from the earliest message: `ack_timeout_ms`, at
/// most `max_attempts` deliveries, redelivery at once.
fn queue(ack_timeout_ms: u64, max_attempts: Option<u32>) -> SubscriptionSpec {
    serde_json::from_value(json!({
        "mode": "queue", "start": "earliest", "ack_timeout_ms": ack_timeout_ms,
        "retry": {"max_attempts": max_attempts,
                  "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}
    }))
    .unwrap()
}

async fn setup(c: &Client, topic: &str, sub: &str, spec: &SubscriptionSpec) {
    c.create_topic(topic, &TopicSpec::default()).await.unwrap();
    c.create_subscription(topic, sub, spec).await.unwrap();
}

fn values(range: std::ops::Range<u64>) -> Vec<ProduceMessage> {
    range
        .map(|i| ProduceMessage::json(&json!({ "i": i })).unwrap())
        .collect()
}

/// The `i` of a `{"i": N}` message.
fn item(message: &Received) -> u64 {
    message.json::<Value>().unwrap()["i"].as_u64().unwrap()
}

/// The next item of `stream`, which must come within [`WAIT`].
async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no item within the timeout")
        .expect("the stream ended")
}

/// Asserts that `stream` yields nothing for [`SILENCE`].
async fn silence<S: Stream + Unpin>(stream: &mut S)
where
    S::Item: std::fmt::Debug,
{
    if let Ok(item) = tokio::time::timeout(SILENCE, stream.next()).await {
        panic!("unexpected item: {item:?}");
    }
}

/// Calls of each kind: requests, and ids they carried; and failures.
#[derive(Default)]
struct Settles {
    seen: Mutex<Vec<(Operation, usize)>>,
    failures: AtomicUsize,
}

impl Settles {
    fn requests(&self, operation: Operation) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        let of_kind: Vec<usize> = seen
            .iter()
            .filter(|(op, _)| *op == operation)
            .map(|(_, n)| *n)
            .collect();
        (of_kind.len(), of_kind.iter().sum())
    }
}

impl MetricsHook for Settles {
    fn record(&self, event: &OperationEvent<'_>) {
        if event.error.is_some() {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        self.seen
            .lock()
            .unwrap()
            .push((event.operation, event.messages));
    }
}

#[tokio::test]
async fn the_subscriber_handle_names_the_subscription_once() {
    let s = TestServer::start();
    let c = Client::new(&s.url("")).unwrap();
    c.create_topic("orders", &TopicSpec::default())
        .await
        .unwrap();
    let billing = c.subscriber("orders", "billing");
    assert_eq!((billing.topic(), billing.name()), ("orders", "billing"));
    billing.create(&queue(30_000, Some(1))).await.unwrap();
    c.produce("orders", values(0..3)).await.unwrap();
    let received = billing.receive(3, Duration::from_secs(5)).await.unwrap();
    assert_eq!(received.len(), 3);
    let ids: Vec<String> = received.iter().map(|m| m.ack_id.clone()).collect();
    // By id, many per request; `nack` takes the same options as messages.
    assert_eq!(
        billing
            .extend(ids.clone(), Some(Duration::from_secs(60)))
            .await
            .unwrap()
            .acked,
        3
    );
    assert_eq!(billing.ack(ids[..2].to_vec()).await.unwrap().acked, 2);
    let nack = Nack::dead_letter().with_reason("by hand");
    assert_eq!(
        billing.nack(ids[2..].to_vec(), &nack).await.unwrap().acked,
        1
    );
    let deadline = Instant::now() + WAIT;
    while billing.info().await.unwrap().stats.dead_lettered < 1 {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(billing.redrive(None).await.unwrap().redriven, 1);
    let info = billing
        .seek(SeekTarget::Named(StartName::Earliest))
        .await
        .unwrap();
    assert_eq!(info.stats.backlog, 3, "{:?}", info.stats);
    billing.delete().await.unwrap();
    // A `reqwest::Client` of the caller's own works the same.
    let own = Client::builder(&s.url(""))
        .http_client(reqwest::Client::new())
        .build()
        .unwrap();
    let gone = own
        .subscriber("orders", "billing")
        .info()
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        Some(weir_client::ErrorCode::SubscriptionNotFound)
    );
    let gone = billing.info().await.unwrap_err();
    assert_eq!(
        gone.code(),
        Some(weir_client::ErrorCode::SubscriptionNotFound)
    );
}

#[tokio::test]
async fn received_messages_settle_themselves_and_decode_their_value() {
    let s = TestServer::start();
    let c = Client::new(&s.url("")).unwrap();
    setup(&c, "t", "q", &queue(1_000, Some(5))).await;
    let mut binary = ProduceMessage::bytes(br#"{"i": 9}"#);
    binary.key = Some("k".into());
    let mut batch = values(0..4);
    batch.push(binary);
    c.produce("t", batch).await.unwrap();
    let q = c.subscriber("t", "q");
    let mut received = q.receive(5, Duration::from_secs(5)).await.unwrap();
    received.sort_by_key(|m| m.message.offset);
    let [acked, dead, later, renewed, binary] = <[Received; 5]>::try_from(received).unwrap();
    assert_eq!(acked.json::<Value>().unwrap(), json!({"i": 0}));
    assert_eq!(acked.bytes().unwrap(), br#"{"i":0}"#);
    assert_eq!(item(&binary), 9);
    assert_eq!(binary.bytes().unwrap(), br#"{"i": 9}"#);

    acked.ack().await.unwrap();
    dead.nack_with(Nack::dead_letter().with_reason("poison"))
        .await
        .unwrap();
    binary.nack().await.unwrap();
    // Renewed past its 1 s ack timeout, it can still be acked.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        renewed.in_progress().await.unwrap();
        later.in_progress().await.unwrap();
    }
    renewed.ack().await.unwrap();
    // Settled already: the server no longer knows the delivery.
    let again = acked.ack().await.unwrap_err();
    assert!(matches!(again, Error::LeaseLost { .. }), "{again}");

    // The plain nack came back at once, the delayed one after its delay.
    later
        .nack_with(Nack::retry_after(Duration::from_millis(1500)))
        .await
        .unwrap();
    let started = Instant::now();
    let mut back = Vec::new();
    while back.len() < 2 {
        assert!(started.elapsed() < WAIT, "redeliveries missing: {back:?}");
        for m in q.receive(2, Duration::from_secs(2)).await.unwrap() {
            back.push((m.message.offset, m.attempt, started.elapsed()));
            m.ack().await.unwrap();
        }
    }
    back.sort();
    assert_eq!((back[0].0, back[0].1), (2, 2), "{back:?}");
    assert!(
        back[0].2 >= Duration::from_millis(1200),
        "delayed: {back:?}"
    );
    assert_eq!((back[1].0, back[1].1), (4, 2), "{back:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let page = c.read("t.q.dlq", 0, 0, 10).await;
        if let Ok(page) = page.as_ref().map(|p| &p.messages) {
            if let Some(letter) = page.first() {
                assert_eq!(letter.headers["weir-dead-letter-reason"], "poison");
                assert_eq!(
                    letter.headers["weir-attempts"], "1",
                    "dead-lettered at once"
                );
                break;
            }
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn consume_handlers_choose_their_nack_and_settles_are_batched() {
    let s = TestServer::start();
    let settles = Arc::new(Settles::default());
    let c = Client::builder(&s.url(""))
        .metrics(settles.clone())
        .build()
        .unwrap();
    setup(&c, "jobs", "w", &queue(30_000, Some(5))).await;
    c.produce("jobs", values(0..40)).await.unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let handler = move |m: ReceivedMessage| {
        let counter = counter.clone();
        async move {
            let value: Value =
                serde_json::from_str(m.message.value.as_ref().unwrap().get()).unwrap();
            let i = value["i"].as_u64().unwrap();
            // All forty run at once, so their settles meet in the queue.
            tokio::time::sleep(Duration::from_millis(300)).await;
            counter.fetch_add(1, Ordering::SeqCst);
            if i.is_multiple_of(10) {
                let nack = Nack::dead_letter().with_reason(format!("job {i} is poison"));
                return Ok::<_, String>(Outcome::Nack(nack));
            }
            Ok(Outcome::Ack)
        }
    };
    let config = ConsumerConfig {
        concurrency: 40,
        max_messages: 40,
        wait: Duration::from_millis(200),
        ..ConsumerConfig::default()
    };
    let shutdown = {
        let handled = handled.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while handled.load(Ordering::SeqCst) < 40 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let stats = c
        .consume("jobs", "w", config, handler, shutdown)
        .await
        .unwrap();
    assert_eq!((stats.acked, stats.nacked), (36, 4), "{stats:?}");
    let (ack_requests, acked) = settles.requests(Operation::Ack);
    let (nack_requests, nacked) = settles.requests(Operation::Nack);
    assert_eq!((acked, nacked), (36, 4));
    assert!(ack_requests < 36, "{ack_requests} ack requests for 36 acks");
    assert!(nack_requests <= 4, "{nack_requests} nack requests");
    assert_eq!(settles.failures.load(Ordering::SeqCst), 0);
    let deadline = Instant::now() + WAIT;
    while c
        .subscription("jobs", "w")
        .await
        .unwrap()
        .stats
        .dead_lettered
        < 4
    {
        assert!(
            Instant::now() < deadline,
            "poison jobs not dead-lettered at once"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn streams_renew_held_leases_in_batches_until_settled() {
    let s = TestServer::start();
    let settles = Arc::new(Settles::default());
    let c = Client::builder(&s.url(""))
        .metrics(settles.clone())
        .build()
        .unwrap();
    setup(&c, "t", "ws", &queue(600, None)).await;
    c.create_subscription("t", "http", &queue(600, None))
        .await
        .unwrap();
    c.produce("t", values(0..5)).await.unwrap();
    let renew = Some(LeaseRenewal {
        every: Some(Duration::from_millis(200)),
        ..LeaseRenewal::default()
    });
    let ws_options = SubscribeOptions {
        renew,
        ..SubscribeOptions::default()
    };
    let mut ws = c.subscribe_ws("t", "ws", ws_options).await.unwrap();
    let pull_options = PullOptions {
        renew,
        wait: Duration::from_millis(300),
        ..PullOptions::default()
    };
    let mut pulled = c
        .subscriber("t", "http")
        .stream(pull_options)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&mut ws).await.unwrap());
        held.push(next(&mut pulled).await.unwrap());
    }
    // Four ack timeouts later, nothing was delivered again...
    silence(&mut ws).await;
    silence(&mut pulled).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for sub in ["ws", "http"] {
        let stats = c.subscription("t", sub).await.unwrap().stats;
        assert_eq!(stats.in_flight, 5, "{sub}: {stats:?}");
    }
    // ...because every lease was renewed, five at a time per request.
    let (requests, ids) = settles.requests(Operation::Extend);
    assert!(requests >= 4, "{requests} renewals");
    assert!(
        ids > requests * 2,
        "{ids} ids in {requests} requests: batched"
    );
    assert_eq!(settles.failures.load(Ordering::SeqCst), 0);
    for message in &held {
        message.ack().await.unwrap();
    }
    for sub in ["ws", "http"] {
        let stats = c.subscription("t", sub).await.unwrap().stats;
        assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{sub}: {stats:?}");
    }
    ws.close().await;
}

#[tokio::test]
async fn ws_flow_control_holds_back_at_max_unacked_messages_and_bytes() {
    let s = TestServer::start();
    let c = Client::new(&s.url("")).unwrap();
    setup(&c, "t", "count", &queue(30_000, None)).await;
    c.create_subscription("t", "bytes", &queue(30_000, None))
        .await
        .unwrap();
    c.produce("t", values(0..10)).await.unwrap();

    let by_count = SubscribeOptions {
        credit: 100,
        max_unacked: Some(3),
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "count", by_count).await.unwrap();
    let mut held: Vec<Received> = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut sub).await.unwrap());
    }
    silence(&mut sub).await;
    held.remove(0).ack().await.unwrap();
    held.push(next(&mut sub).await.unwrap());
    silence(&mut sub).await;
    held.remove(0).nack().await.unwrap();
    held.push(next(&mut sub).await.unwrap());
    silence(&mut sub).await;
    sub.close().await;

    // `{"i":N}` weighs 7 bytes: at most ~20 bytes unacked means the
    // grants stop after the third message (credit 1: no overshoot).
    let by_bytes = SubscribeOptions {
        credit: 1,
        max_unacked_bytes: Some(20),
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "bytes", by_bytes).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut sub).await.unwrap());
    }
    silence(&mut sub).await;
    held.remove(0).ack().await.unwrap();
    next(&mut sub).await.unwrap();
    sub.close().await;
}

#[tokio::test]
async fn the_pull_stream_holds_back_at_max_unacked() {
    let s = TestServer::start();
    let c = Client::new(&s.url("")).unwrap();
    setup(&c, "t", "q", &queue(30_000, None)).await;
    c.produce("t", values(0..10)).await.unwrap();
    let options = PullOptions {
        max_messages: 2,
        max_unacked: Some(4),
        wait: Duration::from_millis(200),
        ..PullOptions::default()
    };
    let mut stream = c.subscriber("t", "q").stream(options).await.unwrap();
    let mut held: Vec<Received> = Vec::new();
    for _ in 0..4 {
        held.push(next(&mut stream).await.unwrap());
    }
    silence(&mut stream).await;
    let stats = c.subscription("t", "q").await.unwrap().stats;
    assert_eq!(
        stats.in_flight, 4,
        "nothing pulled beyond the limit: {stats:?}"
    );
    for message in held.drain(..) {
        message.ack().await.unwrap();
    }
    let mut seen = BTreeSet::new();
    while seen.len() < 6 {
        let message = next(&mut stream).await.unwrap();
        seen.insert(item(&message));
        message.ack().await.unwrap();
    }
    assert_eq!(c.subscription("t", "q").await.unwrap().stats.backlog, 0);
}

#[tokio::test]
async fn a_token_provider_is_asked_again_for_every_request_and_socket() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let entry = |principal: &str, token: &str| {
        let hash: String = Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "[[tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{hash}\"\ngrants = [{{ actions = [\"admin\"], topics = \"*\" }}]\n"
        )
    };
    let text = entry("first", "weir_first_token") + &entry("second", "weir_second_token");
    std::fs::write(&tokens, text).unwrap();
    let s = TestServer::start_with(&["--auth-tokens-file", tokens.to_str().unwrap()]);
    let current = Arc::new(Mutex::new(Some("weir_first_token".to_owned())));
    let provider = current.clone();
    let c = Client::builder(&s.url(""))
        .token_provider(move || provider.lock().unwrap().clone())
        .build()
        .unwrap();
    setup(&c, "t", "q", &queue(30_000, None)).await;
    // Rotated: the next request and the next socket carry the new token.
    *current.lock().unwrap() = Some("weir_second_token".to_owned());
    c.produce("t", values(0..1)).await.unwrap();
    let mut sub = c
        .subscribe_ws("t", "q", SubscribeOptions::default())
        .await
        .unwrap();
    next(&mut sub).await.unwrap().ack().await.unwrap();
    sub.close().await;
    // Revoked: refused.
    *current.lock().unwrap() = None;
    let refused = c.topics().await.unwrap_err();
    assert_eq!(refused.code(), Some(weir_client::ErrorCode::Unauthorized));
    let refused = c
        .subscribe_ws("t", "q", SubscribeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(weir_client::ErrorCode::Unauthorized));
}

#[test]
fn weir_consume_over_the_websocket() {
    let s = TestServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let c = Client::new(&s.url("")).unwrap();
        setup(&c, "t", "q", &queue(30_000, None)).await;
        c.produce("t", values(0..5)).await.unwrap();
    });
    let weir = |args: &[&str]| {
        let cli = built_binary("weir", "WEIR_CLI_BIN", "weir-client");
        let mut command = Command::new(cli);
        command.arg("--server").arg(s.url("")).args(args);
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_lowercase()
                .starts_with("weir_")
            {
                command.env_remove(&name);
            }
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "weir {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let common = [
        "consume",
        "t",
        "q",
        "--ws",
        "--wait-ms",
        "1000",
        "--output",
        "json",
    ];
    let nacked = weir(&[&common[..], &["--count", "2", "--nack", "--reason", "cli"]].concat());
    let acked = weir(&[&common[..], &["--until-empty"]].concat());
    let deliveries = |out: &str| -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = out
            .lines()
            .map(|l| {
                let m: Value = serde_json::from_str(l).unwrap();
                (
                    m["offset"].as_u64().unwrap(),
                    m["attempt"].as_u64().unwrap(),
                )
            })
            .collect();
        all.sort();
        all
    };
    let nacked = deliveries(&nacked);
    assert_eq!(nacked.len(), 2, "--count 2: {nacked:?}");
    let acked = deliveries(&acked);
    let offsets: Vec<u64> = acked.iter().map(|d| d.0).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4], "{acked:?}");
    for (offset, attempt) in &acked {
        let was_nacked = nacked.iter().any(|n| n.0 == *offset);
        // Only the nacked ones count a failed attempt: the first run took
        // exactly two messages, nothing more was leased to it.
        assert_eq!(*attempt, if was_nacked { 2 } else { 1 }, "{acked:?}");
    }
    runtime.block_on(async {
        let c = Client::new(&s.url("")).unwrap();
        let stats = c.subscription("t", "q").await.unwrap().stats;
        assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{stats:?}");
    });
}
