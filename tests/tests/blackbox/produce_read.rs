//! Produce (JSON, NDJSON, raw bytes), partitioning and stateless replay
//! (by offset, by timestamp, long poll).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{now_ms, TestServer};

fn loc(result: &Value) -> (u64, u64) {
    (
        result["partition"].as_u64().expect("partition"),
        result["offset"].as_u64().expect("offset"),
    )
}

fn offsets(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_produce_and_replay_in_order() {
    let server = TestServer::start();
    server
        .create_topic("orders", &json!({"partitions": 3}))
        .await;

    // A mixed batch: keyed, explicitly partitioned and key-less messages.
    let mut batch = Vec::new();
    for i in 0..60 {
        let message = match i % 4 {
            0 => json!({"key": format!("customer-{}", i % 7), "value": {"i": i}}),
            1 => json!({"partition": 2, "key": "ignored-for-placement", "value": {"i": i}}),
            2 => json!({"value": {"i": i}, "headers": {"seq": i.to_string()}}),
            _ => json!({"key": "customer-1", "value": {"i": i}}),
        };
        batch.push(message);
    }
    let results = server.produce("orders", Value::Array(batch.clone())).await;

    let mut sent_at: HashMap<(u64, u64), Value> = HashMap::new();
    let mut key_partition: HashMap<String, u64> = HashMap::new();
    let mut last_offset: HashMap<u64, u64> = HashMap::new();
    let mut keyless_partitions = Vec::new();
    for (message, result) in batch.iter().zip(&results) {
        assert_eq!(result["duplicate"], false, "{result}");
        let (partition, offset) = loc(result);
        assert!(partition < 3, "{result}");
        // Within a partition, a batch is appended in request order.
        if let Some(prev) = last_offset.insert(partition, offset) {
            assert_eq!(offset, prev + 1, "results must follow request order");
        }
        if message.get("partition").is_some() {
            assert_eq!(partition, 2, "explicit partition wins over the key");
        } else if let Some(key) = message["key"].as_str() {
            let first = *key_partition.entry(key.to_owned()).or_insert(partition);
            assert_eq!(
                partition, first,
                "key {key} must always map to one partition"
            );
        } else {
            keyless_partitions.push(partition);
        }
        assert!(sent_at
            .insert((partition, offset), message.clone())
            .is_none());
    }
    // Sticky round-robin: the key-less messages of one request share one
    // partition (one record batch); each request takes the next in turn.
    let distinct: HashSet<_> = keyless_partitions.iter().collect();
    assert_eq!(distinct.len(), 1, "{keyless_partitions:?}");
    let mut per_request = vec![keyless_partitions[0]];
    for _ in 0..3 {
        let r = server
            .produce("orders", json!([{"value": 1}, {"value": 2}]))
            .await;
        assert_eq!(loc(&r[0]).0, loc(&r[1]).0, "{r:?}");
        assert_eq!(loc(&r[1]).1, loc(&r[0]).1 + 1, "{r:?}");
        sent_at.insert(loc(&r[0]), json!({"value": 1}));
        sent_at.insert(loc(&r[1]), json!({"value": 2}));
        per_request.push(loc(&r[0]).0);
    }
    for window in per_request.windows(3) {
        let distinct: HashSet<_> = window.iter().collect();
        assert_eq!(distinct.len(), 3, "{per_request:?}");
    }

    // A second batch keeps keys on their partitions.
    let again = server
        .produce("orders", json!([{"key": "customer-1", "value": "late"}]))
        .await;
    assert_eq!(loc(&again[0]).0, key_partition["customer-1"]);
    sent_at.insert(
        loc(&again[0]),
        json!({"key": "customer-1", "value": "late"}),
    );

    // Replay each partition: contiguous offsets from 0, each message where
    // its result said, with the value, key and headers it was sent with.
    let mut seen = 0;
    for partition in 0..3 {
        let messages = server.read_all("orders", partition).await;
        let want: Vec<u64> = (0..messages.len() as u64).collect();
        assert_eq!(offsets(&messages), want);
        for m in &messages {
            assert_eq!(m["topic"], "orders");
            assert_eq!(m["partition"], partition);
            let sent = &sent_at[&loc(m)];
            assert_eq!(m["value"], sent["value"], "{m}");
            assert_eq!(m["key"], sent.get("key").cloned().unwrap_or(Value::Null));
            assert_eq!(
                m["headers"],
                sent.get("headers").cloned().unwrap_or(json!({})),
                "{m}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, sent_at.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_and_stay_put_across_restart() {
    let mut server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 4})).await;
    let batch: Vec<Value> = (0..40)
        .map(|i| json!({"key": format!("k{i}"), "value": i}))
        .collect();
    let before = server.produce("t", Value::Array(batch.clone())).await;
    let used: HashSet<u64> = before.iter().map(|r| loc(r).0).collect();
    assert!(
        used.len() > 1,
        "40 keys all hashed to one partition: {used:?}"
    );

    let mut per_partition: HashMap<u64, u64> = HashMap::new();
    for r in &before {
        *per_partition.entry(loc(r).0).or_default() += 1;
    }

    server.restart();
    let after = server.produce("t", Value::Array(batch)).await;
    for (a, b) in before.iter().zip(&after) {
        let (partition, offset) = loc(a);
        assert_eq!(loc(b).0, partition, "key placement changed across restart");
        assert_eq!(
            loc(b).1,
            offset + per_partition[&partition],
            "offsets continue after restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_bytes_values_round_trip() {
    let server = TestServer::start();
    server.create_topic("t", &json!({})).await;
    let bytes: Vec<u8> = vec![0, 1, 2, 0xff, 0xfe, b'{', 0x80];
    let values = [
        json!({"nested": {"a": [1, 2.5, "x", true, null]}, "unicode": "żółw ✓"}),
        json!([1, 2, 3]),
        json!("plain string"),
        json!(42),
        json!(-1.5e300),
        json!(false),
        json!({}),
    ];
    let mut batch: Vec<Value> = values.iter().map(|v| json!({"value": v})).collect();
    batch.push(json!({"value_b64": B64.encode(&bytes), "key": "bin", "headers": {"content-type": "application/x-thing", "h2": ""}}));
    batch.push(json!({"value_b64": ""}));
    let before = now_ms();
    server.produce("t", Value::Array(batch)).await;
    let after = now_ms();

    let messages = server.read_all("t", 0).await;
    assert_eq!(messages.len(), values.len() + 2);
    for (m, v) in messages.iter().zip(&values) {
        assert_eq!(&m["value"], v, "{m}");
        assert!(
            m.get("value_b64").is_none(),
            "JSON message has value_b64: {m}"
        );
        assert_eq!(m["key"], Value::Null);
        assert_eq!(m["headers"], json!({}));
        let ts = m["timestamp"].as_u64().expect("timestamp");
        assert!(
            ts >= before && ts <= after,
            "timestamp {ts} outside [{before}, {after}]"
        );
    }
    let bin = &messages[values.len()];
    assert!(bin.get("value").is_none(), "bytes message has value: {bin}");
    assert_eq!(
        B64.decode(bin["value_b64"].as_str().unwrap()).unwrap(),
        bytes
    );
    assert_eq!(bin["key"], "bin");
    assert_eq!(
        bin["headers"],
        json!({"content-type": "application/x-thing", "h2": ""})
    );
    let empty = &messages[values.len() + 1];
    assert_eq!(empty["value_b64"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octet_stream_produce() {
    let server = TestServer::start();
    server.create_topic("raw", &json!({"partitions": 2})).await;
    let body: Vec<u8> = vec![0, 159, 146, 150, 255, b'\n', 0];
    let reply = server
        .post_raw(
            "/v1/topics/raw/messages",
            "application/octet-stream",
            body.clone(),
            &[
                ("Weir-Key", "device-9"),
                ("Weir-Header-Trace-Id", "abc-123"),
                ("Weir-Header-Source", "sensor"),
                ("Weir-Partition", "1"),
                ("Weir-Id", "raw-1"),
                ("Weir-Delay-Ms", "60000"),
            ],
        )
        .await
        .expect_status(200);
    assert_eq!(
        reply,
        json!({"results": [{"partition": 1, "offset": 0, "duplicate": false}]})
    );

    // Delayed messages are still visible to stream readers, in log order.
    let messages = server.read("raw", 1, "offset=0").await["messages"].clone();
    let m = &messages[0];
    assert_eq!(B64.decode(m["value_b64"].as_str().unwrap()).unwrap(), body);
    assert!(m.get("value").is_none(), "{m}");
    assert_eq!(m["key"], "device-9");
    assert_eq!(
        m["headers"],
        json!({"trace-id": "abc-123", "source": "sensor"})
    );

    // The same Weir-Id is a duplicate and appends nothing.
    let dup = server
        .post_raw(
            "/v1/topics/raw/messages",
            "application/octet-stream",
            b"other".to_vec(),
            &[("Weir-Id", "raw-1")],
        )
        .await
        .expect_status(200);
    assert_eq!(
        dup,
        json!({"results": [{"partition": 1, "offset": 0, "duplicate": true}]})
    );
    assert_eq!(server.partition_info("raw", 1).await["high_offset"], 1);

    // Without key or partition: one message, placed somewhere valid; an
    // empty body is an empty value.
    let plain = server
        .post_raw(
            "/v1/topics/raw/messages",
            "application/octet-stream",
            Vec::new(),
            &[],
        )
        .await
        .expect_status(200);
    assert!(plain["results"][0]["partition"].as_u64().unwrap() < 2);

    // Bad headers are rejected with the header named.
    server
        .post_raw(
            "/v1/topics/raw/messages",
            "application/octet-stream",
            b"x".to_vec(),
            &[("Weir-Partition", "7")],
        )
        .await
        .expect_problem(400, "invalid_request");
    server
        .post_raw(
            "/v1/topics/raw/messages",
            "application/octet-stream",
            b"x".to_vec(),
            &[("Weir-Partition", "-1")],
        )
        .await
        .expect_invalid("weir-partition");
    server
        .post_raw(
            "/v1/topics/raw/messages",
            "application/octet-stream",
            b"x".to_vec(),
            &[("Weir-Delay-Ms", "soon")],
        )
        .await
        .expect_invalid("weir-delay-ms");
    let total: u64 = server.topic("raw").await["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2, "rejected raw messages must not be appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_produce() {
    let server = TestServer::start();
    server.create_topic("t", &json!({})).await;
    let body = "{\"value\": {\"n\": 1}}\n\n{\"key\": \"k\", \"value\": 2}\r\n   \n{\"value_b64\": \"AAEC\", \"id\": \"x\"}\n{\"value\": 3, \"id\": \"x\"}\n";
    let reply = server
        .post_raw("/v1/topics/t/messages", "application/x-ndjson", body, &[])
        .await
        .expect_status(200);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{reply}");
    assert_eq!(
        offsets(results),
        [0, 1, 2, 2],
        "blank lines are skipped; the repeated id is a duplicate"
    );
    assert_eq!(results[3]["duplicate"], true);
    let messages = server.read_all("t", 0).await;
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["value"], json!({"n": 1}));
    assert_eq!(messages[1]["key"], "k");
    assert_eq!(messages[1]["value"], 2);
    assert_eq!(messages[2]["value_b64"], "AAEC");

    // No message at all is refused.
    server
        .post_raw(
            "/v1/topics/t/messages",
            "application/x-ndjson",
            "\n \n",
            &[],
        )
        .await
        .expect_invalid("messages");
    // One bad line rejects the whole request, naming the line.
    let bad = "{\"value\": 1}\n{\"value\": \n{\"value\": 3}\n";
    server
        .post_raw("/v1/topics/t/messages", "application/x-ndjson", bad, &[])
        .await
        .expect_invalid("line 2");
    assert_eq!(server.partition_info("t", 0).await["high_offset"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_by_timestamp() {
    let server = TestServer::start();
    server.create_topic("t", &json!({})).await;
    let early: Vec<Value> = (0..3).map(|i| json!({"value": {"early": i}})).collect();
    server.produce("t", Value::Array(early)).await;
    let last_early = server.read_all("t", 0).await[2]["timestamp"]
        .as_u64()
        .unwrap();

    // Let the server's clock pass the early messages' millisecond, so that
    // "at or after `mark`" separates the two groups exactly. The mark is
    // taken from the server's own timestamps: its clock runs at the rate
    // of the monotonic clock, which may drift a little from this process's
    // wall clock while NTP slews it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mark = last_early + 1;
    let late: Vec<Value> = (0..4).map(|i| json!({"value": {"late": i}})).collect();
    server.produce("t", Value::Array(late)).await;

    let page = server.read("t", 0, &format!("timestamp={mark}")).await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(offsets(messages), [3, 4, 5, 6], "{page}");
    assert_eq!(messages[0]["value"], json!({"late": 0}));
    assert!(messages
        .iter()
        .all(|m| m["timestamp"].as_u64().unwrap() >= mark));
    assert_eq!(page["next_offset"], 7);

    // "At or after": the exact timestamp of a message includes it.
    let first_late = messages[0]["timestamp"].as_u64().unwrap();
    let exact = server
        .read("t", 0, &format!("timestamp={first_late}&limit=1"))
        .await;
    assert_eq!(offsets(exact["messages"].as_array().unwrap()), [3]);
    assert_eq!(exact["next_offset"], 4);

    // Before everything → from the start; after everything → empty at the end.
    let all = server.read("t", 0, "timestamp=0").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 7);
    let future = server
        .read("t", 0, &format!("timestamp={}", now_ms() + 3_600_000))
        .await;
    assert_eq!(future["messages"], json!([]));
    assert_eq!(future["next_offset"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_offset_pages_through_a_partition() {
    let server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 2})).await;
    let empty = server.read("t", 0, "").await;
    assert_eq!(empty, json!({"messages": [], "next_offset": 0}));

    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"value": i, "partition": 0}))
        .collect();
    server.produce("t", Value::Array(batch)).await;
    let first = server.read("t", 0, "offset=0&limit=2").await;
    assert_eq!(offsets(first["messages"].as_array().unwrap()), [0, 1]);
    assert_eq!(first["next_offset"], 2);
    let rest = server.read("t", 0, "offset=2&limit=100").await;
    assert_eq!(offsets(rest["messages"].as_array().unwrap()), [2, 3, 4]);
    assert_eq!(rest["next_offset"], 5);
    let caught_up = server.read("t", 0, "offset=5").await;
    assert_eq!(caught_up, json!({"messages": [], "next_offset": 5}));
    // Default read starts at the oldest message with a limit of 100.
    let default = server.read("t", 0, "").await;
    assert_eq!(default["messages"].as_array().unwrap().len(), 5);
    // The other partition is independent.
    assert_eq!(
        server.read("t", 1, "").await,
        json!({"messages": [], "next_offset": 0})
    );
    // The largest limit is accepted.
    let max = server.read("t", 0, "limit=10000").await;
    assert_eq!(max["next_offset"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_produce() {
    let server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 2})).await;

    // Nothing arrives: an empty answer after about wait_ms.
    let started = Instant::now();
    let timed_out = server.read("t", 0, "wait_ms=300").await;
    let waited = started.elapsed();
    assert_eq!(timed_out, json!({"messages": [], "next_offset": 0}));
    assert!(
        waited >= Duration::from_millis(250),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "returned after {waited:?}");

    // A message arrives while the read waits: it returns at once with it.
    let http = server.client();
    let url = server.url("/v1/topics/t/partitions/0/messages?offset=0&wait_ms=5000");
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        let reply = crate::harness::send(&http, reqwest::Method::GET, &url, None, &[]).await;
        (reply.expect_status(200), started.elapsed())
    });
    // Give the read time to park; the result does not depend on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A message on another partition must not end the wait.
    server
        .produce("t", json!([{"value": "other", "partition": 1}]))
        .await;
    server
        .produce("t", json!([{"value": "hello", "partition": 0}]))
        .await;
    let (page, elapsed) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("long poll did not return")
        .expect("reader task");
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["messages"][0]["value"], "hello");
    assert_eq!(page["next_offset"], 1);
    assert!(
        elapsed < Duration::from_secs(3),
        "long poll took {elapsed:?}; it must return once a message is durable"
    );

    // A long poll at an offset with data answers immediately.
    let started = Instant::now();
    let ready = server.read("t", 0, "offset=0&wait_ms=5000").await;
    assert_eq!(ready["messages"].as_array().unwrap().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tailing_reader_sees_every_message_in_order() {
    const TOTAL: u64 = 600;
    let server = TestServer::start();
    server.create_topic("t", &json!({})).await;

    // A reader following the partition with long polls while two producers
    // append concurrently: it must see offsets 0..TOTAL with no gap.
    let http = server.client();
    let base = server.url("/v1/topics/t/partitions/0/messages");
    let reader = tokio::spawn(async move {
        let mut next = 0u64;
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while next < TOTAL && Instant::now() < deadline {
            let url = format!("{base}?offset={next}&wait_ms=2000&limit=37");
            let page = crate::harness::send(&http, reqwest::Method::GET, &url, None, &[])
                .await
                .expect_status(200);
            for m in page["messages"].as_array().unwrap() {
                seen.push((m["offset"].as_u64().unwrap(), m["value"].clone()));
            }
            next = page["next_offset"].as_u64().unwrap();
        }
        seen
    });
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let http = server.client();
            let url = server.url("/v1/topics/t/messages");
            tokio::spawn(async move {
                for batch in 0..(TOTAL / 2 / 10) {
                    let messages: Vec<Value> = (0..10)
                        .map(|i| json!({"value": {"p": p, "n": batch * 10 + i}}))
                        .collect();
                    let body = json!({ "messages": messages });
                    crate::harness::send(
                        &http,
                        reqwest::Method::POST,
                        &url,
                        Some(("application/json", crate::harness::to_bytes(&body))),
                        &[],
                    )
                    .await
                    .expect_status(200);
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("producer task");
    }
    let seen = tokio::time::timeout(Duration::from_secs(40), reader)
        .await
        .expect("reader finished")
        .expect("reader task");
    let offsets: Vec<u64> = seen.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..TOTAL).collect::<Vec<_>>());
    // Each producer's messages appear in the order it sent them.
    let mut last: HashMap<u64, u64> = HashMap::new();
    for (_, value) in &seen {
        let (p, n) = (value["p"].as_u64().unwrap(), value["n"].as_u64().unwrap());
        if let Some(prev) = last.insert(p, n) {
            assert_eq!(n, prev + 1, "producer {p}");
        }
    }
}
