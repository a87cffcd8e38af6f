//! Durability end to end: every acknowledged message survives `kill -9` at
//! exactly its acknowledged place, logs stay gap-free, batches stay atomic,
//! and a graceful stop (SIGTERM) exits 0 promptly with everything on disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{to_bytes, try_send, TestServer};

const PRODUCERS: u64 = 4;
const BATCH: u64 = 50;
const PARTITIONS: u64 = 3;

/// What one producer saw: every acknowledged message and how far it got.
struct ProducerLog {
    /// (partition, offset) → value, for messages of acknowledged batches.
    acked: Vec<((u64, u64), Value)>,
    /// Sequence numbers below this were sent (acknowledged or in flight).
    sent_below: u64,
    /// A non-200 answer, which no healthy server should give here.
    unexpected: Option<String>,
}

/// The produce body of one batch; ids make retries after a crash safe.
fn batch_body(producer: u64, first: u64) -> Value {
    let messages: Vec<Value> = (first..first + BATCH)
        .map(
            |seq| json!({"value": {"p": producer, "seq": seq}, "id": format!("p{producer}-{seq}")}),
        )
        .collect();
    json!({ "messages": messages })
}

async fn produce_until_failure(
    http: reqwest::Client,
    url: String,
    producer: u64,
    acked_batches: Arc<AtomicUsize>,
) -> ProducerLog {
    let mut log = ProducerLog {
        acked: Vec::new(),
        sent_below: 0,
        unexpected: None,
    };
    // A backstop only: the test kills the server long before this.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let first = log.sent_below;
        let values: Vec<Value> = (first..first + BATCH)
            .map(|seq| json!({"p": producer, "seq": seq}))
            .collect();
        let body = to_bytes(&batch_body(producer, first));
        log.sent_below = first + BATCH;
        let reply = match try_send(
            &http,
            Method::POST,
            &url,
            Some(("application/json", body)),
            &[],
        )
        .await
        {
            Ok(reply) => reply,
            // The server is gone: this batch is not acknowledged.
            Err(_) => return log,
        };
        if reply.status.as_u16() != 200 {
            log.unexpected = Some(format!("{}: {}", reply.status, reply.text));
            return log;
        }
        let results = reply.json()["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(results.len(), values.len(), "{}", reply.text);
        for (value, result) in values.into_iter().zip(results) {
            let place = (
                result["partition"].as_u64().expect("partition"),
                result["offset"].as_u64().expect("offset"),
            );
            log.acked.push((place, value));
        }
        acked_batches.fetch_add(1, Ordering::SeqCst);
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_kill9() {
    let mut server = TestServer::start();
    server
        .create_topic("crash", &json!({"partitions": PARTITIONS}))
        .await;
    let url = server.url("/v1/topics/crash/messages");
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(produce_until_failure(
                server.client(),
                url.clone(),
                p,
                acked_batches.clone(),
            ))
        })
        .collect();

    // Produce for a while (at least 1.5 s and some acknowledged batches,
    // at most 3 s), then kill the server while requests are in flight.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let elapsed = started.elapsed();
        let enough = elapsed >= Duration::from_millis(1500)
            && acked_batches.load(Ordering::SeqCst) >= PRODUCERS as usize;
        if enough || elapsed >= Duration::from_secs(3) {
            break;
        }
    }
    assert!(
        producers.iter().all(|p| !p.is_finished()),
        "a producer stopped before the crash"
    );
    server.kill9();

    let mut logs = Vec::new();
    for producer in producers {
        let log = tokio::time::timeout(Duration::from_secs(30), producer)
            .await
            .expect("producer did not notice the crash")
            .expect("producer task panicked");
        assert!(
            log.unexpected.is_none(),
            "unexpected answer: {:?}",
            log.unexpected
        );
        logs.push(log);
    }
    let acked_total: usize = logs.iter().map(|l| l.acked.len()).sum();
    assert!(acked_total > 0, "nothing was acknowledged before the crash");

    server.restart();

    // Read every partition back in full.
    let mut stored: HashMap<(u64, u64), Value> = HashMap::new();
    let mut by_partition: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let info = server.partition_info("crash", partition).await;
        assert_eq!(info["low_offset"], 0, "{info}");
        let high = info["high_offset"].as_u64().unwrap();
        let messages = server.read_all("crash", partition).await;
        let offsets: Vec<u64> = messages
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (0..high).collect();
        assert!(
            offsets == want,
            "partition {partition}: offsets are not contiguous 0..{high}"
        );
        assert_eq!(info["messages"], high);
        for m in &messages {
            stored.insert(
                (partition, m["offset"].as_u64().unwrap()),
                m["value"].clone(),
            );
        }
        by_partition.insert(partition, messages);
    }

    // Every acknowledged message is where it was acknowledged, unchanged.
    for log in &logs {
        for (place, value) in &log.acked {
            let found = stored.get(place);
            assert_eq!(
                found,
                Some(value),
                "acknowledged message {value} at partition/offset {place:?} lost or changed"
            );
        }
    }

    // Nothing else: no message twice, nothing never sent, whole batches only,
    // and each producer's messages in send order within a partition.
    let mut batch_sizes: HashMap<(u64, u64), u64> = HashMap::new();
    let mut seen: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    for (partition, messages) in &by_partition {
        let mut last_seq: HashMap<u64, u64> = HashMap::new();
        for m in messages {
            let producer = m["value"]["p"].as_u64().expect("p");
            let seq = m["value"]["seq"].as_u64().expect("seq");
            let offset = m["offset"].as_u64().unwrap();
            assert!(producer < PRODUCERS, "{m}");
            let log = &logs[usize::try_from(producer).unwrap()];
            assert!(seq < log.sent_below, "message never sent: {m}");
            if let Some(other) = seen.insert((producer, seq), (*partition, offset)) {
                panic!("{m} stored twice (also at {other:?})");
            }
            if let Some(prev) = last_seq.insert(producer, seq) {
                assert!(
                    seq > prev,
                    "partition {partition}: producer {producer} seq {seq} after {prev}"
                );
            }
            *batch_sizes.entry((producer, seq / BATCH)).or_default() += 1;
        }
    }
    for ((producer, batch), count) in &batch_sizes {
        assert_eq!(
            *count, BATCH,
            "batch {batch} of producer {producer} is partly stored ({count} of {BATCH})"
        );
    }
    let in_flight_stored = logs
        .iter()
        .enumerate()
        .filter(|(p, log)| {
            log.acked.len() as u64 + BATCH == log.sent_below
                && batch_sizes.contains_key(&(*p as u64, log.sent_below / BATCH - 1))
        })
        .count();
    eprintln!(
        "crash test: {acked_total} messages acknowledged, {} stored, \
         {in_flight_stored} of {PRODUCERS} in-flight batches made it",
        stored.len()
    );

    // Retrying after the crash is safe: the last acknowledged batch and the
    // batch in flight at the crash come back as duplicates where stored,
    // and the in-flight one is appended once if it was lost.
    for (producer, log) in logs.iter().enumerate() {
        let producer = producer as u64;
        let in_flight = log.sent_below - BATCH;
        let mut retry = Vec::new();
        if in_flight >= BATCH {
            retry.push(in_flight - BATCH);
        }
        retry.push(in_flight);
        for first in retry {
            let results = server
                .post_json("/v1/topics/crash/messages", &batch_body(producer, first))
                .await
                .expect_status(200)["results"]
                .as_array()
                .cloned()
                .expect("results");
            for (i, result) in results.iter().enumerate() {
                let seq = first + i as u64;
                let place = (
                    result["partition"].as_u64().unwrap(),
                    result["offset"].as_u64().unwrap(),
                );
                match seen.get(&(producer, seq)) {
                    Some(stored_at) => {
                        assert_eq!(result["duplicate"], true, "p{producer}-{seq}: {result}");
                        assert_eq!(&place, stored_at, "p{producer}-{seq}");
                    }
                    None => assert_eq!(result["duplicate"], false, "p{producer}-{seq}: {result}"),
                }
            }
        }
    }

    // The log goes on where it stopped: offsets are never reused.
    for partition in 0..PARTITIONS {
        let high = server.partition_info("crash", partition).await["high_offset"].clone();
        let results = server
            .produce("crash", json!([{"value": "after", "partition": partition}]))
            .await;
        assert_eq!(results[0]["offset"], high);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_exits_zero_and_keeps_data() {
    let mut server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 2})).await;
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("k{i}"), "value": {"i": i}, "id": format!("id-{i}")}))
        .collect();
    server.produce("t", Value::Array(batch)).await;
    let before = [server.read_all("t", 0).await, server.read_all("t", 1).await];

    // A long poll in flight must not hold the shutdown up.
    let http = server.client();
    let url = server.url("/v1/topics/t/partitions/0/messages?offset=1000&wait_ms=20000");
    let poll = tokio::spawn(async move { try_send(&http, Method::GET, &url, None, &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = server.stop();
    assert!(status.success());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} to exit"
    );
    let polled = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("long poll still pending after shutdown")
        .expect("poll task");
    if let Ok(reply) = polled {
        let status = reply.status.as_u16();
        assert!(
            status == 200 || status == 503,
            "{}: {}",
            reply.status,
            reply.text
        );
        if status == 200 {
            assert_eq!(reply.json()["messages"], json!([]));
        }
    }

    server.restart();
    let after = [server.read_all("t", 0).await, server.read_all("t", 1).await];
    assert_eq!(before, after);
    // Idempotency ids were durable too.
    let dup = server
        .produce("t", json!([{"id": "id-3", "value": "again"}]))
        .await;
    assert_eq!(dup[0]["duplicate"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart() {
    let mut server = TestServer::start();
    server
        .create_topic(
            "kept",
            &json!({"partitions": 2, "max_message_bytes": 4096, "dedupe_window_ms": 60000}),
        )
        .await;
    server
        .put_json(
            "/v1/topics/kept",
            &json!({"partitions": 3, "retention": {"max_messages": 1000}}),
        )
        .await
        .expect_status(200);
    server.create_topic("gone", &json!({})).await;
    server
        .create_topic("empty", &json!({"partitions": 5}))
        .await;
    let batch: Vec<Value> = (0..30)
        .map(|i| {
            json!({
                "key": format!("k{}", i % 5),
                "value": {"n": i},
                "headers": {"n": i.to_string()},
            })
        })
        .collect();
    server.produce("kept", Value::Array(batch)).await;
    server.produce("gone", json!([{"value": "doomed"}])).await;
    let deleted = server.delete("/v1/topics/gone").await;
    assert_eq!(deleted.status.as_u16(), 204);

    let list_before = server.get("/v1/topics").await.expect_status(200);
    let mut data_before = Vec::new();
    for p in 0..3 {
        data_before.push(server.read_all("kept", p).await);
    }

    // Both a graceful restart and a crash keep everything, including the
    // deletion.
    for crash in [false, true] {
        if crash {
            server.kill9();
        }
        server.restart();
        let list_after = server.get("/v1/topics").await.expect_status(200);
        assert_eq!(list_after, list_before, "crash={crash}");
        for (p, before) in data_before.iter().enumerate() {
            let after = server.read_all("kept", p as u64).await;
            assert_eq!(&after, before, "crash={crash} partition {p}");
        }
        server
            .get("/v1/topics/gone")
            .await
            .expect_problem(404, "topic_not_found");
    }
    // A re-created topic does not resurrect the deleted data.
    let gone = server.create_topic("gone", &json!({})).await;
    assert_eq!(gone["partitions"][0]["high_offset"], 0);
    assert!(server.read_all("gone", 0).await.is_empty());
}
