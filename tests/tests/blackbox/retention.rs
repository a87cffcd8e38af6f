//! Retention by count, bytes and age: whole oldest messages go, `low_offset`
//! moves up, offsets are never reused, and reads below `low_offset` start
//! at it. The server runs retention every 200 ms; tests poll (bounded).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::harness::TestServer;

const RETENTION_WAIT: Duration = Duration::from_secs(10);

fn start() -> TestServer {
    TestServer::start_with(&["--retention-interval-ms", "200"])
}

fn partition0(topic: &Value) -> &Value {
    &topic["partitions"][0]
}

fn offsets(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_max_messages() {
    let mut server = start();
    server
        .create_topic(
            "t",
            &json!({"partitions": 2, "retention": {"max_messages": 3}}),
        )
        .await;
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"value": i, "partition": 0}))
        .collect();
    server.produce("t", Value::Array(batch)).await;

    let topic = server
        .wait_for_topic("t", RETENTION_WAIT, |t| partition0(t)["low_offset"] == 7)
        .await;
    let p = partition0(&topic);
    assert_eq!(p["high_offset"], 10);
    assert_eq!(p["messages"], 3);

    // Below low_offset: starts at low_offset, never errors.
    let page = server.read("t", 0, "offset=0").await;
    assert_eq!(offsets(&page), [7, 8, 9]);
    assert_eq!(page["messages"][0]["value"], 7);
    assert_eq!(page["next_offset"], 10);
    let by_time = server.read("t", 0, "timestamp=0").await;
    assert_eq!(offsets(&by_time), [7, 8, 9]);

    // What retention removed stays removed across a restart.
    server.restart();
    let restarted = server.topic("t").await;
    assert_eq!(partition0(&restarted), p, "{restarted}");
    assert_eq!(offsets(&server.read("t", 0, "offset=0").await), [7, 8, 9]);

    // Offsets are never reused.
    let results = server
        .produce("t", json!([{"value": 10, "partition": 0}]))
        .await;
    assert_eq!(results[0]["offset"], 10);
    // The untouched partition stays as it was.
    assert_eq!(topic["partitions"][1]["low_offset"], 0);
    assert_eq!(topic["partitions"][1]["high_offset"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_max_bytes() {
    let server = start();
    server.create_topic("t", &json!({})).await;
    let payload = B64.encode([7u8; 100]);
    let batch: Vec<Value> = (0..10).map(|_| json!({"value_b64": payload})).collect();
    server.produce("t", Value::Array(batch)).await;
    let before = server.topic("t").await;
    let total = partition0(&before)["bytes"].as_u64().unwrap();
    assert_eq!(total % 10, 0, "equal messages have equal sizes: {before}");
    let size = total / 10;
    assert!(size >= 100, "a message is at least its payload: {before}");

    // Room for three and a half messages keeps three.
    let max_bytes = size * 3 + size / 2;
    server
        .put_json(
            "/v1/topics/t",
            &json!({"retention": {"max_bytes": max_bytes}}),
        )
        .await
        .expect_status(200);
    let topic = server
        .wait_for_topic("t", RETENTION_WAIT, |t| partition0(t)["low_offset"] == 7)
        .await;
    let p = partition0(&topic);
    assert_eq!(p["bytes"], size * 3, "{topic}");
    assert_eq!(p["messages"], 3);
    assert_eq!(offsets(&server.read("t", 0, "offset=3").await), [7, 8, 9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_max_age() {
    let server = start();
    server
        .create_topic("t", &json!({"retention": {"max_age_ms": 2000}}))
        .await;
    let batch: Vec<Value> = (0..5).map(|i| json!({"value": i})).collect();
    server.produce("t", Value::Array(batch)).await;
    // Young messages stay.
    assert_eq!(partition0(&server.topic("t").await)["low_offset"], 0);
    assert_eq!(server.read_all("t", 0).await.len(), 5);

    let topic = server
        .wait_for_topic("t", RETENTION_WAIT, |t| partition0(t)["low_offset"] == 5)
        .await;
    let p = partition0(&topic);
    assert_eq!(p["high_offset"], 5);
    assert_eq!(p["messages"], 0);
    assert_eq!(p["bytes"], 0);
    assert_eq!(
        server.read("t", 0, "offset=0").await,
        json!({"messages": [], "next_offset": 5})
    );
    let results = server.produce("t", json!([{"value": "new"}])).await;
    assert_eq!(results[0]["offset"], 5);
    let page = server.read("t", 0, "offset=0").await;
    assert_eq!(offsets(&page), [5]);
    let page = server.read("t", 0, "timestamp=0").await;
    assert_eq!(offsets(&page), [5]);
}
