//! Push subscriptions (webhooks) against a real HTTP receiver running in
//! the test: acks on 2xx, retries on 5xx, timeouts and 429 (honouring
//! `Retry-After`), 410 dead-letters at once, `max_in_flight` bounds the
//! concurrency, Standard Webhooks signatures verified by an HMAC written
//! here from SHA-256 alone, the SSRF guard, pause and resume, batches.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::TestServer;
use crate::subs_helpers::*;

/// What the receiver answers to its `n`-th request (from 0).
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    delay: Duration,
    retry_after: Option<&'static str>,
}

impl Answer {
    fn ok() -> Answer {
        Answer::status(200)
    }

    fn status(status: u16) -> Answer {
        Answer {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

/// One request the receiver got.
#[derive(Clone)]
struct Hit {
    at: Instant,
    headers: HeaderMap,
    raw: Bytes,
    body: Value,
}

type Script = dyn Fn(usize) -> Answer + Send + Sync;

struct ReceiverState {
    script: Box<Script>,
    hits: Mutex<Vec<Hit>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

/// An HTTP receiver on 127.0.0.1 that records requests and answers as
/// scripted; stops when dropped.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, raw: Bytes) -> Response {
    let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_active.fetch_max(now, Ordering::SeqCst);
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let n = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(Hit {
            at: Instant::now(),
            headers,
            raw,
            body,
        });
        hits.len() - 1
    };
    let answer = (state.script)(n);
    tokio::time::sleep(answer.delay).await;
    state.active.fetch_sub(1, Ordering::SeqCst);
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap(),
        format!("answer {n}: status {}\r\nline two", answer.status),
    )
        .into_response();
    if let Some(v) = answer.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static(v));
    }
    response
}

impl Receiver {
    async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Receiver {
        let state = Arc::new(ReceiverState {
            script: Box::new(script),
            hits: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    fn max_concurrent(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests arrived (bounded); returns them all.
    async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests within {timeout:?}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn allowed_server() -> TestServer {
    TestServer::start_with(&["--push-allow-networks", "127.0.0.0/8"])
}

/// Creates topic `t` and push subscription `s` (from the earliest message).
async fn push_sub(s: &TestServer, push: Value, retry_policy: Value) {
    s.create_topic("t", &json!({})).await;
    put_sub(
        s,
        "t",
        "s",
        json!({"start": "earliest", "ack_timeout_ms": 10000, "retry": retry_policy, "push": push}),
        201,
    )
    .await;
}

async fn wait_drained(s: &TestServer) -> Value {
    wait_for_sub(s, "t", "s", Duration::from_secs(20), |i| {
        i["stats"]["backlog"] == 0 && i["stats"]["in_flight"] == 0
    })
    .await
}

fn header(hit: &Hit, name: &str) -> String {
    hit.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A metric sample's value from `/metrics` text (0 when absent).
async fn metric(s: &TestServer, name: &str, labels: &str) -> f64 {
    let text = s.get("/metrics").await.text;
    text.lines()
        .find(|l| l.starts_with(name) && labels.split(',').all(|kv| l.contains(kv)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn delivers_each_message_and_acks_on_2xx() {
    let r = Receiver::start(|_| Answer::ok()).await;
    let s = allowed_server();
    push_sub(
        &s,
        json!({"url": r.url(), "headers": {"authorization": "Bearer abc"}}),
        retry(json!(5), 100),
    )
    .await;
    s.produce(
        "t",
        json!([{"key": "k1", "value": {"n": 0}, "headers": {"trace": "x"}}, {"value": {"n": 1}}, {"value": {"n": 2}}]),
    )
    .await;
    let hits = r.wait_for(3, Duration::from_secs(10)).await;
    wait_drained(&s).await;
    let mut offsets: Vec<u64> = hits
        .iter()
        .map(|h| h.body["offset"].as_u64().unwrap())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, vec![0, 1, 2]);
    let first = hits.iter().find(|h| h.body["offset"] == 0).unwrap();
    assert_eq!(first.body["topic"], "t");
    assert_eq!(first.body["partition"], 0);
    assert_eq!(first.body["key"], "k1");
    assert_eq!(first.body["value"], json!({"n": 0}));
    assert_eq!(first.body["headers"], json!({"trace": "x"}));
    assert_eq!(first.body["attempt"], 1);
    assert!(first.body["timestamp"].as_u64().is_some());
    assert!(first.body.get("ack_id").is_none(), "{}", first.body);
    assert_eq!(header(first, "content-type"), "application/json");
    assert_eq!(header(first, "authorization"), "Bearer abc");
    let id = header(first, "webhook-id");
    assert!(id.ends_with("-0-0"), "webhook-id {id}");
    assert!(
        header(first, "webhook-signature").is_empty(),
        "unsigned without a secret"
    );
    // Nothing is delivered twice once acked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.hits().len(), 3);
    assert_eq!(
        metric(
            &s,
            "weir_push_requests_total",
            "class=\"2xx\",subscription=\"s\""
        )
        .await,
        3.0
    );
    assert_eq!(
        metric(
            &s,
            "weir_push_requests_total",
            "class=\"5xx\",subscription=\"s\""
        )
        .await,
        0.0
    );
    assert_eq!(
        metric(
            &s,
            "weir_push_request_duration_seconds_count",
            "subscription=\"s\""
        )
        .await,
        3.0
    );
    assert_eq!(
        metric(&s, "weir_push_in_flight", "subscription=\"s\"").await,
        0.0
    );
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_webhook_id() {
    let r = Receiver::start(|n| {
        if n == 0 {
            Answer::status(500)
        } else {
            Answer::ok()
        }
    })
    .await;
    let s = allowed_server();
    push_sub(&s, json!({"url": r.url()}), retry(json!(5), 100)).await;
    s.produce("t", json!([{"value": 1}])).await;
    let hits = r.wait_for(2, Duration::from_secs(10)).await;
    wait_drained(&s).await;
    assert_eq!(hits[0].body["attempt"], 1);
    assert_eq!(hits[1].body["attempt"], 2);
    assert_eq!(hits[1].body["offset"], 0);
    assert_eq!(
        header(&hits[0], "webhook-id"),
        header(&hits[1], "webhook-id")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.hits().len(), 2);
    assert_eq!(
        metric(
            &s,
            "weir_push_requests_total",
            "class=\"5xx\",subscription=\"s\""
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let r = Receiver::start(|n| {
        if n == 0 {
            Answer {
                delay: Duration::from_secs(2),
                ..Answer::ok()
            }
        } else {
            Answer::ok()
        }
    })
    .await;
    let s = allowed_server();
    push_sub(
        &s,
        json!({"url": r.url(), "timeout_ms": 300}),
        retry(json!(5), 100),
    )
    .await;
    s.produce("t", json!([{"value": 1}])).await;
    let hits = r.wait_for(2, Duration::from_secs(10)).await;
    wait_drained(&s).await;
    assert_eq!(hits[1].body["attempt"], 2);
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
    assert!(
        gap < Duration::from_secs(2),
        "the timeout cut the request short: {gap:?}"
    );
    assert_eq!(
        metric(
            &s,
            "weir_push_requests_total",
            "class=\"timeout\",subscription=\"s\""
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_410_dead_letters_at_once_with_the_status_as_reason() {
    let r = Receiver::start(|_| Answer::status(410)).await;
    let s = allowed_server();
    push_sub(&s, json!({"url": r.url()}), retry(json!(5), 100)).await;
    s.produce("t", json!([{"key": "c", "value": {"n": 1}}]))
        .await;
    wait_for_messages(&s, "t.s.dlq", 1, Duration::from_secs(10)).await;
    let copy = &s.read_all("t.s.dlq", 0).await[0];
    assert_eq!(copy["value"], json!({"n": 1}));
    let h = &copy["headers"];
    assert_eq!(h["weir-attempts"], "1");
    let reason = h["weir-dead-letter-reason"].as_str().unwrap();
    assert!(
        reason.starts_with("push: HTTP 410 Gone: answer 0: status 410"),
        "{reason}"
    );
    assert!(
        !reason.contains('\n') && !reason.contains('\r'),
        "{reason:?}"
    );
    wait_drained(&s).await;
    assert_eq!(r.hits().len(), 1);
}

#[tokio::test]
async fn a_slow_receiver_never_has_more_than_max_in_flight() {
    let r = Receiver::start(|_| Answer {
        delay: Duration::from_millis(300),
        ..Answer::ok()
    })
    .await;
    let s = allowed_server();
    push_sub(
        &s,
        json!({"url": r.url(), "max_in_flight": 3}),
        retry(json!(5), 100),
    )
    .await;
    produce_n(&s, "t", 12, false).await;
    let started = Instant::now();
    let hits = r.wait_for(12, Duration::from_secs(20)).await;
    wait_drained(&s).await;
    assert_eq!(hits.len(), 12, "each message once");
    let max = r.max_concurrent();
    assert!(max <= 3, "{max} requests at once");
    assert!(max >= 2, "requests were sent in parallel ({max})");
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "12 requests of 300 ms, 3 at a time, took {:?}",
        started.elapsed()
    );
}

/// HMAC-SHA256 from its definition (RFC 2104) over the `sha2` digest: an
/// implementation independent of the server's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Standard Webhooks verification, as a receiver does it.
fn verify(secret: &str, hit: &Hit) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let id = header(hit, "webhook-id");
    let ts = header(hit, "webhook-timestamp");
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&hit.raw);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)));
    header(hit, "webhook-signature")
        .split(' ')
        .any(|sig| sig == expected)
}

#[tokio::test]
async fn deliveries_are_signed_with_both_rotation_secrets() {
    // The specification's example: the test HMAC agrees with it.
    let spec_key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let mac = hmac_sha256(
        &spec_key,
        br#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#,
    );
    assert_eq!(
        STANDARD.encode(mac),
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );

    let new_secret = format!(
        "whsec_{}",
        STANDARD.encode(b"a brand new secret, 32 bytes ok!")
    );
    let old_secret = format!(
        "whsec_{}",
        STANDARD.encode(b"the previous secret of this hook")
    );
    let other = format!(
        "whsec_{}",
        STANDARD.encode(b"some unrelated secret, not used!")
    );
    let r = Receiver::start(|_| Answer::ok()).await;
    let s = allowed_server();
    push_sub(
        &s,
        json!({"url": r.url(), "secret": new_secret, "previous_secret": old_secret}),
        retry(json!(5), 100),
    )
    .await;
    let info = sub_info(&s, "t", "s").await;
    assert_eq!(
        info["config"]["push"]["secret"], "(set)",
        "secrets are not shown: {info}"
    );
    s.produce("t", json!([{"value": {"text": "héllo"}}])).await;
    let hit = &r.wait_for(1, Duration::from_secs(10)).await[0];
    let sigs = header(hit, "webhook-signature");
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    assert!(verify(&new_secret, hit), "new secret verifies");
    assert!(verify(&old_secret, hit), "previous secret verifies");
    assert!(!verify(&other, hit), "another secret does not");
    let ts: u64 = header(hit, "webhook-timestamp").parse().unwrap();
    let now = crate::harness::now_ms() / 1000;
    assert!(ts.abs_diff(now) <= 5, "timestamp {ts} vs now {now}");
    // A tampered body no longer verifies.
    let mut tampered = hit.clone();
    tampered.raw = Bytes::from(hit.raw.iter().rev().copied().collect::<Vec<u8>>());
    assert!(!verify(&new_secret, &tampered));
}

#[tokio::test]
async fn internal_targets_are_refused_without_the_allow_list() {
    let r = Receiver::start(|_| Answer::ok()).await;
    let s = TestServer::start();
    push_sub(&s, json!({"url": r.url()}), retry(json!(2), 100)).await;
    s.produce("t", json!([{"value": 1}])).await;
    wait_for_messages(&s, "t.s.dlq", 1, Duration::from_secs(15)).await;
    let copy = &s.read_all("t.s.dlq", 0).await[0];
    let reason = copy["headers"]["weir-dead-letter-reason"].as_str().unwrap();
    assert!(
        reason.starts_with("push: target refused: 127.0.0.1 is a loopback address"),
        "{reason}"
    );
    assert_eq!(copy["headers"]["weir-attempts"], "2");
    assert!(r.hits().is_empty(), "the receiver was never contacted");
    assert_eq!(
        metric(
            &s,
            "weir_push_requests_total",
            "class=\"refused\",subscription=\"s\""
        )
        .await,
        2.0
    );
    assert!(
        s.log_tail().contains("SSRF guard"),
        "a warning is logged:\n{}",
        s.log_tail()
    );
    // The metadata service too, whatever the allow-list for loopback says.
    let s2 = allowed_server();
    s2.create_topic("t", &json!({})).await;
    put_sub(
        &s2,
        "t",
        "s",
        json!({"start": "earliest", "retry": retry(json!(1), 100), "push": {"url": "http://169.254.169.254/latest/meta-data/"}}),
        201,
    )
    .await;
    s2.produce("t", json!([{"value": 1}])).await;
    wait_for_messages(&s2, "t.s.dlq", 1, Duration::from_secs(15)).await;
    let copy = &s2.read_all("t.s.dlq", 0).await[0];
    let reason = copy["headers"]["weir-dead-letter-reason"].as_str().unwrap();
    assert!(reason.contains("metadata"), "{reason}");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let r = Receiver::start(|n| {
        if n == 0 {
            Answer {
                retry_after: Some("1"),
                ..Answer::status(429)
            }
        } else {
            Answer::ok()
        }
    })
    .await;
    let s = allowed_server();
    // The policy alone would retry after 50 ms.
    push_sub(&s, json!({"url": r.url()}), retry(json!(5), 50)).await;
    s.produce("t", json!([{"value": 1}])).await;
    let hits = r.wait_for(2, Duration::from_secs(10)).await;
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert_eq!(hits[1].body["attempt"], 2);
    wait_drained(&s).await;
}

#[tokio::test]
async fn pause_stops_pushes_and_resume_restarts_them() {
    let r = Receiver::start(|_| Answer::ok()).await;
    let s = allowed_server();
    push_sub(&s, json!({"url": r.url()}), retry(json!(5), 100)).await;
    s.produce("t", json!([{"value": 0}])).await;
    r.wait_for(1, Duration::from_secs(10)).await;
    wait_drained(&s).await;
    s.post_json(&sub_path("t", "s", "pause"), &json!({}))
        .await
        .expect_status(200);
    s.produce("t", json!([{"value": 1}, {"value": 2}])).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.hits().len(), 1, "nothing is pushed while paused");
    s.post_json(&sub_path("t", "s", "resume"), &json!({}))
        .await
        .expect_status(200);
    r.wait_for(3, Duration::from_secs(10)).await;
    wait_drained(&s).await;

    // Removing `push` stops the worker: messages stay for pullers.
    put_sub(&s, "t", "s", json!({"push": null}), 200).await;
    s.produce("t", json!([{"value": 3}])).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(r.hits().len(), 3);
    let pulled = pull(&s, "t", "s", json!({"max_messages": 10, "wait_ms": 2000})).await;
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0]["value"], 3);
}

#[tokio::test]
async fn batches_carry_several_messages() {
    let r = Receiver::start(|_| Answer::ok()).await;
    let s = allowed_server();
    push_sub(
        &s,
        json!({"url": r.url(), "batch": {"max_messages": 5, "max_wait_ms": 1000}}),
        retry(json!(5), 100),
    )
    .await;
    s.produce("t", json!([{"value": 0}, {"value": 1}])).await;
    s.produce("t", json!([{"value": 2}, {"value": 3}, {"value": 4}]))
        .await;
    wait_drained(&s).await;
    let hits = r.hits();
    let mut values = Vec::new();
    for hit in &hits {
        let messages = hit.body["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("a batch body: {}", hit.body));
        assert!(
            header(hit, "webhook-id").contains("-b"),
            "{}",
            header(hit, "webhook-id")
        );
        values.extend(messages.iter().map(|m| m["value"].as_u64().unwrap()));
        assert!(messages.iter().all(|m| m["attempt"] == 1));
    }
    values.sort_unstable();
    assert_eq!(values, vec![0, 1, 2, 3, 4]);
    assert!(hits.len() <= 2, "{} requests for 5 messages", hits.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_follows_url_changes_restarts_and_deletes() {
    let first = Receiver::start(|_| Answer::ok()).await;
    let second = Receiver::start(|_| Answer::ok()).await;
    let mut s = allowed_server();
    push_sub(&s, json!({"url": first.url()}), retry(json!(5), 100)).await;
    s.produce("t", json!([{"value": 0}])).await;
    first.wait_for(1, Duration::from_secs(10)).await;
    wait_drained(&s).await;

    // A new URL: the next messages go there (partial update keeps the rest).
    put_sub(&s, "t", "s", json!({"push": {"url": second.url()}}), 200).await;
    s.produce("t", json!([{"value": 1}])).await;
    let hits = second.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(hits[0].body["value"], 1);
    wait_drained(&s).await;
    assert_eq!(first.hits().len(), 1);

    // After a restart the worker runs again.
    s.restart();
    s.produce("t", json!([{"value": 2}])).await;
    let hits = second.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(hits[1].body["value"], 2);
    wait_drained(&s).await;

    // Deleted: nothing more is pushed, and its series are gone.
    s.delete(&sub_path("t", "s", "")).await.expect_status(204);
    s.produce("t", json!([{"value": 3}])).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(second.hits().len(), 2);
    let text = s.get("/metrics").await.text;
    let stale: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("weir_push_") && l.contains("subscription=\"s\""))
        .collect();
    assert!(
        stale.is_empty(),
        "series of a deleted subscription remain: {stale:?}"
    );
}

#[tokio::test]
async fn stream_mode_pushes_one_at_a_time_in_order() {
    let r = Receiver::start(|n| {
        if n == 1 {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    })
    .await;
    let s = allowed_server();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"mode": "stream", "start": "earliest", "retry": retry(json!(5), 100),
               "push": {"url": r.url(), "max_in_flight": 8}}),
        201,
    )
    .await;
    produce_n(&s, "t", 5, false).await;
    let hits = r.wait_for(6, Duration::from_secs(15)).await;
    let offsets: Vec<u64> = hits
        .iter()
        .map(|h| h.body["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        offsets,
        vec![0, 1, 1, 2, 3, 4],
        "in order, the failed one retried first"
    );
    assert_eq!(r.max_concurrent(), 1);
    wait_drained(&s).await;
}

#[tokio::test]
async fn key_ordering_keeps_one_request_per_key_in_flight() {
    let r = Receiver::start(|_| Answer {
        delay: Duration::from_millis(200),
        ..Answer::ok()
    })
    .await;
    let s = allowed_server();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"start": "earliest", "ordering": "key", "retry": retry(json!(5), 100),
               "push": {"url": r.url(), "max_in_flight": 8}}),
        201,
    )
    .await;
    let messages: Vec<Value> = (0..8)
        .map(|i| json!({"key": if i % 2 == 0 { "a" } else { "b" }, "value": i}))
        .collect();
    s.produce("t", json!(messages)).await;
    let hits = r.wait_for(8, Duration::from_secs(15)).await;
    wait_drained(&s).await;
    assert!(
        r.max_concurrent() <= 2,
        "{} at once for 2 keys",
        r.max_concurrent()
    );
    for key in ["a", "b"] {
        let of_key: Vec<&Hit> = hits.iter().filter(|h| h.body["key"] == key).collect();
        let offsets: Vec<u64> = of_key
            .iter()
            .map(|h| h.body["offset"].as_u64().unwrap())
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, sorted, "key {key} in offset order");
        for pair in of_key.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(190),
                "key {key}: overlapping requests ({gap:?})"
            );
        }
    }
}

#[tokio::test]
async fn rate_per_s_spaces_requests() {
    let r = Receiver::start(|_| Answer::ok()).await;
    let s = allowed_server();
    push_sub(
        &s,
        json!({"url": r.url(), "rate_per_s": 5, "max_in_flight": 8}),
        retry(json!(5), 100),
    )
    .await;
    produce_n(&s, "t", 6, false).await;
    let hits = r.wait_for(6, Duration::from_secs(15)).await;
    let span = hits[5].at - hits[0].at;
    assert!(
        span >= Duration::from_millis(900),
        "6 requests at 5/s within {span:?}"
    );
    wait_drained(&s).await;
}
