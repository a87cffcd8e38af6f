//! The binary batch encoding (`application/vnd.weir.batch`) against the
//! real server: produce over HTTP and WebSocket, read and pull with
//! `Accept`, bytes laid out by hand from the documented layout (as another
//! language's client would), and clear errors for damaged bodies.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use weir_protocol::binary::{decode_messages, Encoder, MessageRecord, ProduceRecord, CONTENT_TYPE};

use crate::harness::TestServer;
use crate::ws::{connect, next};

fn records(n: usize) -> Vec<ProduceRecord> {
    (0..n)
        .map(|i| ProduceRecord {
            key: (i % 3 == 0).then(|| format!("k{}", i % 5)),
            json: i % 4 == 0,
            value: if i % 4 == 0 {
                format!("{{\"i\":{i}}}").into_bytes()
            } else {
                vec![i as u8, 0, 0xFF, b'x']
            },
            headers: if i % 2 == 0 {
                vec![("h".into(), i.to_string())]
            } else {
                vec![]
            },
            ..ProduceRecord::default()
        })
        .collect()
}

async fn post_binary(server: &TestServer, topic: &str, body: Vec<u8>) -> (u16, Value) {
    let response = server
        .client()
        .post(server.url(&format!("/v1/topics/{topic}/messages")))
        .header("content-type", CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get_binary(
    server: &TestServer,
    path: &str,
) -> (reqwest::header::HeaderMap, Vec<MessageRecord>) {
    let response = server
        .client()
        .get(server.url(path))
        .header("accept", CONTENT_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    (headers, decode_messages(&body).unwrap())
}

/// A binary produce lands exactly like JSON: readable as JSON (raw bytes as
/// `value_b64`, JSON-flagged values as JSON) and as binary, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_produce_reads_back_as_json_and_binary() {
    let server = TestServer::start();
    server.create_topic("bin", &json!({"partitions": 1})).await;
    let sent = records(50);
    let mut body = Encoder::produce(0);
    for r in &sent {
        body.push_produce(r);
    }
    let (status, reply) = post_binary(&server, "bin", body.finish()).await;
    assert_eq!(status, 200, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["offset"], i as u64, "{r}");
    }
    let json_read = server.read("bin", 0, "offset=0&limit=100").await;
    let messages = json_read["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50);
    for (m, r) in messages.iter().zip(&sent) {
        if r.json {
            let value: Value = serde_json::from_slice(&r.value).unwrap();
            assert_eq!(m["value"], value, "{m}");
        } else {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&r.value);
            assert_eq!(m["value_b64"], b64, "{m}");
        }
        assert_eq!(m["key"], json!(r.key));
    }
    let (headers, read) = get_binary(
        &server,
        "/v1/topics/bin/partitions/0/messages?offset=10&limit=5",
    )
    .await;
    assert_eq!(headers["weir-next-offset"], "15");
    assert_eq!(read.len(), 5);
    for (m, r) in read.iter().zip(&sent[10..15]) {
        assert_eq!((m.offset, m.partition), (m.offset, 0));
        assert_eq!(
            (&m.key, m.json, &m.value, &m.headers),
            (&r.key, r.json, &r.value, &r.headers)
        );
        assert!(m.delivery.is_none());
        assert!(m.timestamp > 0);
    }
}

/// The documented layout, written byte by byte without the library: what
/// a client in another language sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_built_body_is_accepted() {
    let server = TestServer::start();
    server.create_topic("hand", &json!({"partitions": 4})).await;
    let mut body = vec![0x57, 0x42, 1, 1];
    body.extend_from_slice(&2u32.to_le_bytes());
    // Record 0: key "a", partition 2, header x=y, value "hi".
    let mut r = vec![0x01 | 0x04];
    r.extend_from_slice(&2u32.to_le_bytes());
    r.extend_from_slice(&1u32.to_le_bytes());
    r.extend_from_slice(b"a");
    r.extend_from_slice(&1u16.to_le_bytes());
    r.extend_from_slice(&1u16.to_le_bytes());
    r.extend_from_slice(b"x");
    r.extend_from_slice(&1u32.to_le_bytes());
    r.extend_from_slice(b"y");
    r.extend_from_slice(b"hi");
    body.extend_from_slice(&(r.len() as u32).to_le_bytes());
    body.extend_from_slice(&r);
    // Record 1: an idempotency id and a JSON value, nothing else.
    let mut r = vec![0x02 | 0x08];
    r.extend_from_slice(&3u16.to_le_bytes());
    r.extend_from_slice(b"id1");
    r.extend_from_slice(&0u16.to_le_bytes());
    r.extend_from_slice(b"[1,2]");
    body.extend_from_slice(&(r.len() as u32).to_le_bytes());
    body.extend_from_slice(&r);
    let (status, reply) = post_binary(&server, "hand", body.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["partition"], 2);
    let m = &server.read("hand", 2, "offset=0").await["messages"][0];
    assert_eq!((&m["key"], &m["headers"]["x"]), (&json!("a"), &json!("y")));
    assert_eq!(m["value_b64"], "aGk=");
    // The same body again: the id makes the second message a duplicate.
    let (status, again) = post_binary(&server, "hand", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["results"][1]["duplicate"], true, "{again}");
    // Asked for with `Accept`, the results come in the binary form (kind
    // 4), read here byte by byte: per message a length (13), flags
    // (0x01 duplicate), partition and offset.
    let response = server
        .client()
        .post(server.url("/v1/topics/hand/messages"))
        .header("content-type", CONTENT_TYPE)
        .header("accept", format!("application/json;q=0.5, {CONTENT_TYPE}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes[..8], [0x57, 0x42, 1, 4, 2, 0, 0, 0]);
    assert_eq!(bytes.len(), 8 + 2 * 17);
    let result = |i: usize| {
        let r = &bytes[8 + i * 17..8 + (i + 1) * 17];
        assert_eq!(r[..4], 13u32.to_le_bytes());
        let partition = u32::from_le_bytes(r[5..9].try_into().unwrap());
        let offset = u64::from_le_bytes(r[9..17].try_into().unwrap());
        (r[4], partition, offset)
    };
    // Record 0 is appended again (partition 2, its third message), record 1
    // is the duplicate of the first append of its id.
    assert_eq!(result(0), (0, 2, 2));
    let first = &again["results"][1];
    assert_eq!(
        result(1),
        (
            1,
            first["partition"].as_u64().unwrap() as u32,
            first["offset"].as_u64().unwrap()
        )
    );
}

/// Damaged bodies are 400s naming the record, and append nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_bodies_are_clear_errors() {
    let server = TestServer::start();
    server.create_topic("bad", &json!({"partitions": 1})).await;
    let mut good = Encoder::produce(0);
    for r in records(3) {
        good.push_produce(&r);
    }
    let good = good.finish();
    let mut wrong_version = good.clone();
    wrong_version[2] = 7;
    let mut not_json = Encoder::produce(0);
    not_json.push_produce(&ProduceRecord {
        json: true,
        value: b"{nope".to_vec(),
        ..ProduceRecord::default()
    });
    let mut reserved = Encoder::produce(0);
    reserved.push_produce(&ProduceRecord {
        headers: vec![("weir-x".into(), "1".into())],
        value: b"v".to_vec(),
        ..ProduceRecord::default()
    });
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (good[..good.len() - 1].to_vec(), "messages[2]", "truncated"),
        (wrong_version, "body", "version 7"),
        (b"{\"messages\":[]}".to_vec(), "body", "magic"),
        (not_json.finish(), "messages[0].value", "not JSON"),
        (reserved.finish(), "messages[0].headers", "reserved"),
    ];
    for (body, field, detail) in cases {
        let (status, problem) = post_binary(&server, "bad", body).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["code"], "invalid_request", "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
    }
    assert_eq!(server.partition_info("bad", 0).await["high_offset"], 0);
}

/// Pull with `Accept` gives deliveries with ack ids that ack as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_pull_deliveries_ack() {
    let server = TestServer::start();
    server.create_topic("jobs", &json!({"partitions": 2})).await;
    server
        .put_json("/v1/topics/jobs/subscriptions/w", &json!({"mode": "queue"}))
        .await
        .expect_status(201);
    let mut body = Encoder::produce(0);
    for r in records(20) {
        body.push_produce(&r);
    }
    assert_eq!(post_binary(&server, "jobs", body.finish()).await.0, 200);
    let mut acked = 0;
    for _ in 0..10 {
        let response = server
            .client()
            .post(server.url("/v1/topics/jobs/subscriptions/w/pull"))
            .header("accept", CONTENT_TYPE)
            .json(&json!({"max_messages": 8}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let deliveries = decode_messages(&response.bytes().await.unwrap()).unwrap();
        if deliveries.is_empty() {
            break;
        }
        let ack_ids: Vec<String> = deliveries
            .iter()
            .map(|d| {
                let (ack_id, attempt) = d.delivery.clone().expect("a delivery");
                assert_eq!(attempt, 1);
                ack_id
            })
            .collect();
        let reply = server
            .post_json(
                "/v1/topics/jobs/subscriptions/w/ack",
                &json!({"ack_ids": ack_ids}),
            )
            .await
            .expect_status(200);
        acked += reply["acked"].as_u64().unwrap();
    }
    assert_eq!(acked, 20);
}

/// A binary frame on the publish socket is a publish request; the reply is
/// the usual `published` text frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_publish_frames() {
    let server = TestServer::start();
    server
        .create_topic("ws-bin", &json!({"partitions": 1}))
        .await;
    let mut socket = connect(&server, "/v1/topics/ws-bin/ws/publish").await;
    for n in 0..3 {
        let mut frame = Encoder::publish(&format!("r{n}"), 0);
        for r in records(10) {
            frame.push_produce(&r);
        }
        socket
            .send(Message::Binary(frame.finish().into()))
            .await
            .unwrap();
    }
    // A damaged frame gets an error frame; the socket stays open.
    socket
        .send(Message::Binary(vec![0x57, 0x42, 1].into()))
        .await
        .unwrap();
    let mut firsts = Vec::new();
    for n in 0..3 {
        let Some(Ok(Message::Text(text))) = next(&mut socket).await else {
            panic!("no reply");
        };
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["type"], "published", "{reply}");
        assert_eq!(reply["request_id"], format!("r{n}"));
        // Requests commit concurrently: each is one contiguous run.
        let first = reply["results"][0]["offset"].as_u64().unwrap();
        assert_eq!(reply["results"][9]["offset"], first + 9, "{reply}");
        firsts.push(first);
    }
    firsts.sort_unstable();
    assert_eq!(firsts, vec![0, 10, 20]);
    let Some(Ok(Message::Text(text))) = next(&mut socket).await else {
        panic!("no error reply");
    };
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(
        reply["detail"].as_str().unwrap().contains("header"),
        "{reply}"
    );
    let _ = socket.close(None).await;
    let _ = socket.next().await;
    assert_eq!(server.partition_info("ws-bin", 0).await["high_offset"], 30);
}
