//! Helpers shared by the subscription tests: paths, pull/ack/nack calls and
//! draining loops (bounded). Assertions about semantics stay in the tests.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TestServer;

pub fn sub_path(topic: &str, sub: &str, op: &str) -> String {
    if op.is_empty() {
        format!("/v1/topics/{topic}/subscriptions/{sub}")
    } else {
        format!("/v1/topics/{topic}/subscriptions/{sub}/{op}")
    }
}

/// A retry policy with a fixed delay of `delay_ms` between deliveries.
pub fn retry(max_attempts: Value, delay_ms: u64) -> Value {
    json!({"max_attempts": max_attempts, "backoff": {"initial_ms": delay_ms, "max_ms": delay_ms, "multiplier": 1.0, "jitter": 0.0}})
}

/// `PUT` a subscription expecting `status`.
pub async fn put_sub(s: &TestServer, topic: &str, sub: &str, spec: Value, status: u16) -> Value {
    s.put_json(&sub_path(topic, sub, ""), &spec)
        .await
        .expect_status(status)
}

pub async fn sub_info(s: &TestServer, topic: &str, sub: &str) -> Value {
    s.get(&sub_path(topic, sub, "")).await.expect_status(200)
}

/// Pulls expecting 200; returns the messages.
pub async fn pull(s: &TestServer, topic: &str, sub: &str, body: Value) -> Vec<Value> {
    let reply = s
        .post_json(&sub_path(topic, sub, "pull"), &body)
        .await
        .expect_status(200);
    reply["messages"].as_array().expect("messages").clone()
}

pub fn ack_ids(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["ack_id"].clone()).collect()
}

/// Acks expecting 200; returns the response.
pub async fn ack(s: &TestServer, topic: &str, sub: &str, messages: &[Value]) -> Value {
    s.post_json(
        &sub_path(topic, sub, "ack"),
        &json!({ "ack_ids": ack_ids(messages) }),
    )
    .await
    .expect_status(200)
}

pub async fn nack(
    s: &TestServer,
    topic: &str,
    sub: &str,
    messages: &[Value],
    extra: Value,
) -> Value {
    let mut body = json!({ "ack_ids": ack_ids(messages) });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    s.post_json(&sub_path(topic, sub, "nack"), &body)
        .await
        .expect_status(200)
}

/// Pulls and acks until `count` messages were received or `timeout`
/// passes; returns the messages in delivery order.
pub async fn drain(
    s: &TestServer,
    topic: &str,
    sub: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        let batch = pull(
            s,
            topic,
            sub,
            json!({"max_messages": 100, "wait_ms": 500, "consumer": "drainer"}),
        )
        .await;
        if batch.is_empty() {
            continue;
        }
        let reply = ack(s, topic, sub, &batch).await;
        assert_eq!(reply["unknown"], json!([]), "fresh acks are known: {reply}");
        got.extend(batch);
    }
    got
}

/// Produces `n` JSON values `{"i": i}` (spread over partitions by key).
pub async fn produce_n(s: &TestServer, topic: &str, n: usize, keyed: bool) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let messages: Vec<Value> = chunk
            .iter()
            .map(|i| {
                if keyed {
                    json!({"key": format!("k{}", i % 17), "value": {"i": i}})
                } else {
                    json!({"value": {"i": i}})
                }
            })
            .collect();
        s.produce(topic, json!(messages)).await;
    }
}

pub fn value_i(m: &Value) -> u64 {
    m["value"]["i"]
        .as_u64()
        .unwrap_or_else(|| panic!("no value.i in {m}"))
}

/// Polls the subscription until `done` holds (bounded).
pub async fn wait_for_sub(
    s: &TestServer,
    topic: &str,
    sub: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let info = sub_info(s, topic, sub).await;
        if done(&info) {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {timeout:?}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until topic `name` exists and partition 0 holds `count` messages.
pub async fn wait_for_messages(s: &TestServer, name: &str, count: u64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let reply = s.get(&format!("/v1/topics/{name}")).await;
        if reply.status.as_u16() == 200 {
            let topic = reply.json();
            if topic["partitions"][0]["high_offset"] == count {
                return topic;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {count} messages within {timeout:?}: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
