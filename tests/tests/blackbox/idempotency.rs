//! Idempotent produce: an `id` seen within the topic's `dedupe_window_ms`
//! is not appended again and its result repeats the first place, within a
//! batch, across requests (also concurrent ones) and across restarts.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TestServer;

fn loc(result: &Value) -> (u64, u64) {
    (
        result["partition"].as_u64().expect("partition"),
        result["offset"].as_u64().expect("offset"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce() {
    let mut server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 3})).await;

    let results = server
        .produce(
            "t",
            json!([
                {"id": "order-1", "value": 1, "key": "a"},
                {"id": "order-2", "value": 2, "key": "b"},
                {"id": "order-1", "value": "changed", "key": "zzz"},
                {"value": 3, "key": "a"},
            ]),
        )
        .await;
    assert_eq!(results[0]["duplicate"], false);
    assert_eq!(results[1]["duplicate"], false);
    assert_eq!(results[2]["duplicate"], true, "duplicate within one batch");
    assert_eq!(loc(&results[2]), loc(&results[0]));
    assert_eq!(results[3]["duplicate"], false);
    let first = loc(&results[0]);

    // A later request, even naming another partition, repeats the first result.
    let again = server
        .produce(
            "t",
            json!([{"id": "order-1", "value": 9, "partition": (first.0 + 1) % 3}]),
        )
        .await;
    assert_eq!(again[0]["duplicate"], true);
    assert_eq!(loc(&again[0]), first);

    let stored = |topic: Value| -> u64 {
        topic["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["high_offset"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        stored(server.topic("t").await),
        3,
        "duplicates append nothing"
    );
    let partition = server.read_all("t", first.0).await;
    let original = partition
        .iter()
        .find(|m| m["offset"] == first.1)
        .expect("first message stored");
    assert_eq!(original["value"], 1, "the first value is kept");

    // Ids survive a restart.
    server.restart();
    let after = server
        .produce(
            "t",
            json!([{"id": "order-2", "value": 2}, {"id": "order-3", "value": 3}]),
        )
        .await;
    assert_eq!(after[0]["duplicate"], true);
    assert_eq!(loc(&after[0]), loc(&results[1]));
    assert_eq!(after[1]["duplicate"], false);
    assert_eq!(stored(server.topic("t").await), 4);

    // Ids are per topic.
    server.create_topic("other", &json!({})).await;
    let other = server
        .produce("other", json!([{"id": "order-1", "value": 1}]))
        .await;
    assert_eq!(other[0]["duplicate"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_window_expires() {
    let server = TestServer::start();
    server
        .create_topic("t", &json!({"dedupe_window_ms": 400}))
        .await;
    let first = server.produce("t", json!([{"id": "x", "value": 1}])).await;
    let started = Instant::now();
    let dup = server.produce("t", json!([{"id": "x", "value": 1}])).await;
    // Only meaningful if the second produce landed inside the window.
    if started.elapsed() < Duration::from_millis(300) {
        assert_eq!(dup[0]["duplicate"], true);
        assert_eq!(loc(&dup[0]), loc(&first[0]));
    }
    // Waiting for the window to pass is what this test is about.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = server.produce("t", json!([{"id": "x", "value": 2}])).await;
    assert_eq!(
        later[0]["duplicate"], false,
        "id remembered past its window"
    );
    assert_eq!(loc(&later[0]), (0, 1));
    let mut values = BTreeMap::new();
    for m in server.read_all("t", 0).await {
        values.insert(m["offset"].as_u64().unwrap(), m["value"].clone());
    }
    assert_eq!(values.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_id_append_once() {
    let server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 4})).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let http = server.client();
            let url = server.url("/v1/topics/t/messages");
            tokio::spawn(async move {
                let body = json!({"messages": [{"id": "same", "value": i}]});
                crate::harness::send(
                    &http,
                    reqwest::Method::POST,
                    &url,
                    Some(("application/json", crate::harness::to_bytes(&body))),
                    &[],
                )
                .await
                .expect_status(200)["results"][0]
                    .clone()
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("producer task"));
    }
    let fresh = results.iter().filter(|r| r["duplicate"] == false).count();
    assert_eq!(fresh, 1, "exactly one request appends: {results:?}");
    let places: HashSet<(u64, u64)> = results.iter().map(loc).collect();
    assert_eq!(
        places.len(),
        1,
        "all answers name the same place: {results:?}"
    );
    let total: u64 = server.topic("t").await["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1);
}
