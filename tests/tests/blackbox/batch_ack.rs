//! Batch ack ids against the real server: a queue-mode pull's
//! `batch_ack_id` (JSON field, or `Weir-Batch-Ack-Id` header on a binary
//! response) acks, nacks and extends exactly the messages of that pull
//! still leased under it — over plain HTTP, through the client library and
//! in `weir bench consume --ack batch`.

use serde_json::{json, Value};
use weir_client::binary::{decode_messages, CONTENT_TYPE};
use weir_client::{Client, Encoding, PullRequest};

use crate::cli::weir;
use crate::harness::TestServer;
use crate::subs_helpers::{ack, produce_n, put_sub, sub_info, sub_path, value_i};

/// Creates subscription `sub` of `topic` in `mode`, from the earliest message.
async fn subscribe(s: &TestServer, topic: &str, sub: &str, mode: &str) {
    let spec = json!({"mode": mode, "start": "earliest"});
    put_sub(s, topic, sub, spec, 201).await;
}

/// Pulls expecting 200; returns the whole response.
async fn pull_reply(s: &TestServer, topic: &str, sub: &str, max: u64) -> Value {
    s.post_json(&sub_path(topic, sub, "pull"), &json!({"max_messages": max}))
        .await
        .expect_status(200)
}

async fn settle(s: &TestServer, topic: &str, sub: &str, op: &str, body: Value) -> Value {
    s.post_json(&sub_path(topic, sub, op), &body)
        .await
        .expect_status(200)
}

fn messages(reply: &Value) -> Vec<Value> {
    reply["messages"].as_array().expect("messages").clone()
}

fn batch_id(reply: &Value) -> String {
    reply["batch_ack_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a batch ack id in {reply}"))
        .to_owned()
}

/// One id per pull settles that pull's messages, only those, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_ack_id_settles_its_pull_and_nothing_else() {
    let s = TestServer::start();
    s.create_topic("jobs", &json!({"partitions": 3})).await;
    subscribe(&s, "jobs", "w", "queue").await;
    produce_n(&s, "jobs", 30, false).await;

    let a = pull_reply(&s, "jobs", "w", 10).await;
    let b = pull_reply(&s, "jobs", "w", 10).await;
    let (a_msgs, b_msgs) = (messages(&a), messages(&b));
    assert_eq!((a_msgs.len(), b_msgs.len()), (10, 10));
    let (a_id, b_id) = (batch_id(&a), batch_id(&b));
    assert_ne!(a_id.len(), 32, "a batch id is not a message's ack id");

    // Pull a's id settles pull a's ten messages, none of pull b's.
    let reply = settle(&s, "jobs", "w", "ack", json!({"ack_ids": [a_id]})).await;
    assert_eq!(reply, json!({"acked": 10, "unknown": []}));
    assert_eq!(sub_info(&s, "jobs", "w").await["stats"]["in_flight"], 10);
    // Twice: nothing left under it.
    let reply = settle(&s, "jobs", "w", "ack", json!({"ack_ids": [a_id]})).await;
    assert_eq!(reply, json!({"acked": 0, "unknown": [a_id]}));
    // Some of pull b acked one by one; its batch id settles the rest.
    assert_eq!(ack(&s, "jobs", "w", &b_msgs[..3]).await["acked"], 3);
    let reply = settle(&s, "jobs", "w", "ack", json!({"ack_ids": [b_id]})).await;
    assert_eq!(reply, json!({"acked": 7, "unknown": []}));

    // Nack by batch: the pull's messages come again, as attempt 2, under a
    // new pull; the old batch id no longer names them.
    let c = pull_reply(&s, "jobs", "w", 10).await;
    let c_id = batch_id(&c);
    let mut first: Vec<u64> = messages(&c).iter().map(value_i).collect();
    let reply = settle(
        &s,
        "jobs",
        "w",
        "nack",
        json!({"ack_ids": [c_id], "delay_ms": 0, "reason": "retry all"}),
    )
    .await;
    assert_eq!(reply["acked"], 10);
    let again = pull_reply(&s, "jobs", "w", 10).await;
    let mut second: Vec<u64> = messages(&again).iter().map(value_i).collect();
    assert!(
        messages(&again).iter().all(|m| m["attempt"] == 2),
        "{again}"
    );
    first.sort_unstable();
    second.sort_unstable();
    assert_eq!(first, second);
    let reply = settle(&s, "jobs", "w", "ack", json!({"ack_ids": [c_id]})).await;
    assert_eq!(reply["acked"], 0);

    // Extend by batch, then ack by batch: the backlog is done.
    let again_id = batch_id(&again);
    let body = json!({"ack_ids": [again_id], "ack_timeout_ms": 60000});
    assert_eq!(settle(&s, "jobs", "w", "extend", body).await["acked"], 10);
    let reply = settle(&s, "jobs", "w", "ack", json!({"ack_ids": [again_id]})).await;
    assert_eq!(reply["acked"], 10);
    let info = sub_info(&s, "jobs", "w").await;
    assert_eq!(
        (&info["stats"]["backlog"], &info["stats"]["in_flight"]),
        (&json!(0), &json!(0)),
        "{info}"
    );
    // An empty pull has no batch id.
    let empty = pull_reply(&s, "jobs", "w", 10).await;
    assert_eq!(empty, json!({"messages": []}));
}

/// Ids that no pull issued are a 400 naming the entry; a batch id of
/// another subscription matches nothing; stream-mode pulls carry none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ids_are_checked_and_queue_mode_only() {
    let s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 2})).await;
    subscribe(&s, "t", "q1", "queue").await;
    subscribe(&s, "t", "q2", "queue").await;
    subscribe(&s, "t", "st", "stream").await;
    produce_n(&s, "t", 6, false).await;

    let q1 = pull_reply(&s, "t", "q1", 6).await;
    let id = batch_id(&q1);
    let reply = settle(&s, "t", "q2", "ack", json!({"ack_ids": [id]})).await;
    assert_eq!(reply, json!({"acked": 0, "unknown": [id]}));

    // A truncated batch id, and one whose range runs backwards (offsets 5
    // down to 1 of partition 0): malformed, the entry named.
    let mut reversed = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    reversed.extend_from_slice(&5u64.to_be_bytes());
    reversed.extend_from_slice(&1u64.to_be_bytes());
    use base64::Engine;
    let reversed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(reversed);
    for bad in [&id[..id.len() - 3], reversed.as_str()] {
        let problem = s
            .post_json(
                &sub_path("t", "q1", "ack"),
                &json!({"ack_ids": [q1["messages"][0]["ack_id"], bad]}),
            )
            .await
            .expect_status(400);
        assert_eq!(problem["code"], "invalid_request", "{problem}");
        assert_eq!(problem["field"], "ack_ids[1]", "{problem}");
    }
    // Nothing was settled by the refused requests.
    assert_eq!(sub_info(&s, "t", "q1").await["stats"]["in_flight"], 6);

    let stream = s
        .post_json(
            &sub_path("t", "st", "pull"),
            &json!({"max_messages": 6, "consumer": "c"}),
        )
        .await
        .expect_status(200);
    assert_eq!(messages(&stream).len(), 6);
    assert!(stream.get("batch_ack_id").is_none(), "{stream}");
}

/// A binary pull carries its batch id in `Weir-Batch-Ack-Id`; the client
/// library hands it out in either encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_pulls_and_the_client_use_batch_ids() {
    let s = TestServer::start();
    s.create_topic("b", &json!({"partitions": 4})).await;
    subscribe(&s, "b", "w", "queue").await;
    produce_n(&s, "b", 40, false).await;

    let response = s
        .client()
        .post(s.url(&sub_path("b", "w", "pull")))
        .header("accept", CONTENT_TYPE)
        .json(&json!({"max_messages": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let id = response
        .headers()
        .get("weir-batch-ack-id")
        .expect("a batch ack id header")
        .to_str()
        .unwrap()
        .to_owned();
    let deliveries = decode_messages(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(deliveries.len(), 10);
    let reply = settle(&s, "b", "w", "ack", json!({"ack_ids": [id]})).await;
    assert_eq!(reply["acked"], 10);

    for encoding in [Encoding::Json, Encoding::Binary] {
        let client = Client::builder(&s.url(""))
            .encoding(encoding)
            .build()
            .unwrap();
        let request = PullRequest {
            max_messages: Some(15),
            ..PullRequest::default()
        };
        let pulled = client.pull_batch("b", "w", &request).await.unwrap();
        assert_eq!(pulled.messages.len(), 15, "{encoding:?}");
        let id = pulled.batch_ack_id.expect("a batch ack id");
        let reply = client.ack("b", "w", vec![id]).await.unwrap();
        assert_eq!((reply.acked, reply.unknown.len()), (15, 0), "{encoding:?}");
    }
    assert_eq!(sub_info(&s, "b", "w").await["stats"]["backlog"], 0);
}

/// `weir bench consume --ack batch`: one batch id per pull, every message
/// acked; refused over sockets, whose pushed messages have none.
#[test]
fn the_bench_acks_by_batch() {
    let s = TestServer::start();
    let report = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "consume",
            "--ack",
            "batch",
            "--topic",
            "bench-b",
            "--count",
            "500",
            "--batch",
            "50",
            "--concurrency",
            "2",
        ],
        "",
    )
    .json();
    assert_eq!(report["ack"], "batch", "{report}");
    assert_eq!(report["messages"], 500, "{report}");
    assert_eq!(report["acks"], 10, "{report}");
    assert_eq!(report["ack_unknown"], 0, "{report}");
    assert_eq!(report["redeliveries"], 0, "{report}");
    let refused = weir(
        &s,
        &[
            "bench",
            "consume",
            "--ack",
            "batch",
            "--transport",
            "ws",
            "--count",
            "10",
        ],
        "",
    );
    assert!(
        !refused.status.success(),
        "--ack batch over sockets is refused"
    );
    assert!(
        refused.stderr.contains("--transport http"),
        "{}",
        refused.stderr
    );
}
