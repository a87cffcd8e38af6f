//! The subscription socket (`/v1/topics/{topic}/subscriptions/{sub}/ws`)
//! against the real server: credit is respected, acks and nacks over the
//! socket settle durably and are confirmed, sockets compete with HTTP
//! pullers, and closing a socket releases its leases for redelivery.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::subs_helpers::*;
use crate::ws::{close_frame, connect, json, send_json, Socket};

/// Asserts no frame arrives for a short while (the server has no credit).
async fn expect_silence(socket: &mut Socket) {
    use futures_util::StreamExt;
    let got = tokio::time::timeout(Duration::from_millis(400), socket.next()).await;
    assert!(got.is_err(), "unexpected frame: {got:?}");
}

async fn messages(socket: &mut Socket, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = json(socket).await;
        assert_eq!(frame["type"], "message", "{frame}");
        out.push(frame);
    }
    out
}

#[tokio::test]
async fn credit_bounds_delivery_and_acks_are_confirmed_when_durable() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(null), 0)}),
        201,
    )
    .await;
    produce_n(&s, "t", 10, false).await;
    let mut ws = connect(&s, "/v1/topics/t/subscriptions/q/ws?consumer=w1").await;
    expect_silence(&mut ws).await;
    send_json(&mut ws, &json!({"type": "credit", "messages": 3})).await;
    let first = messages(&mut ws, 3).await;
    expect_silence(&mut ws).await;
    assert!(first
        .iter()
        .all(|m| m["attempt"] == 1 && m["ack_id"].is_string()));
    // Ack (with an unknown id) and nack, each confirmed with its request id.
    send_json(&mut ws, &json!({"type": "ack", "request_id": "a", "ack_ids": [first[0]["ack_id"], first[1]["ack_id"], "AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"]})).await;
    let acked = json(&mut ws).await;
    assert_eq!(
        acked,
        json!({"type": "acked", "request_id": "a", "count": 2, "unknown": ["AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"]})
    );
    send_json(&mut ws, &json!({"type": "extend", "request_id": "e", "ack_ids": [first[2]["ack_id"]], "ack_timeout_ms": 60000})).await;
    assert_eq!(json(&mut ws).await["type"], "extended");
    send_json(&mut ws, &json!({"type": "nack", "request_id": "n", "ack_ids": [first[2]["ack_id"]], "reason": "later"})).await;
    let nacked = json(&mut ws).await;
    assert_eq!(
        (nacked["type"].as_str(), nacked["count"].as_u64()),
        (Some("nacked"), Some(1))
    );
    // The acks are durable and visible over HTTP.
    let info = sub_info(&s, "t", "q").await;
    assert_eq!(info["stats"]["backlog"], 8, "{info}");
    // More credit: the nacked message comes back (attempt 2) with new ones.
    send_json(&mut ws, &json!({"type": "credit", "messages": 8})).await;
    let rest = messages(&mut ws, 8).await;
    let redelivered: Vec<&Value> = rest
        .iter()
        .filter(|m| m["offset"] == first[2]["offset"])
        .collect();
    assert_eq!(redelivered.len(), 1);
    assert_eq!(redelivered[0]["attempt"], 2);
    expect_silence(&mut ws).await;
    // A malformed frame gets an error frame; the socket stays usable.
    send_json(
        &mut ws,
        &json!({"type": "ack", "request_id": "bad", "ack_ids": ["nope"]}),
    )
    .await;
    let err = json(&mut ws).await;
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["request_id"].as_str()
        ),
        (Some("error"), Some("invalid_request"), Some("bad"))
    );
    send_json(&mut ws, &json!({"type": "credits"})).await;
    assert_eq!(json(&mut ws).await["code"], "invalid_request");
    let ids: Vec<Value> = rest.iter().map(|m| m["ack_id"].clone()).collect();
    send_json(&mut ws, &json!({"type": "ack", "ack_ids": ids})).await;
    assert_eq!(json(&mut ws).await["count"], 8);
    assert_eq!(sub_info(&s, "t", "q").await["stats"]["backlog"], 0);
}

#[tokio::test]
async fn closing_a_socket_releases_its_leases_to_other_consumers() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(null), 0)}),
        201,
    )
    .await;
    produce_n(&s, "t", 4, false).await;
    let mut a = connect(&s, "/v1/topics/t/subscriptions/q/ws").await;
    // More credit than messages: a delivery long poll is still running
    // when the socket closes, and must not hold the release up.
    send_json(&mut a, &json!({"type": "credit", "messages": 100})).await;
    let held = messages(&mut a, 4).await;
    // While `a` holds them, an HTTP puller gets nothing.
    assert!(pull(&s, "t", "q", json!({"max_messages": 10}))
        .await
        .is_empty());
    drop(a);
    // Well within the 5 s delivery long poll of the closed socket.
    let again = drain(&s, "t", "q", 4, Duration::from_secs(3)).await;
    let before: HashSet<u64> = held.iter().map(value_i).collect();
    let after: HashSet<u64> = again.iter().map(value_i).collect();
    assert_eq!(before, after);
    assert!(again.iter().all(|m| m["attempt"] == 2), "{again:?}");
    let metrics = s.get("/metrics").await.text;
    assert!(
        metrics.contains(r#"weir_subscription_redeliveries_total{reason="disconnect",subscription="q",topic="t"} 4"#),
        "disconnect redeliveries counted"
    );
}

#[tokio::test]
async fn sockets_and_http_pullers_compete_without_duplicates() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 2})).await;
    put_sub(&s, "t", "q", json!({"start": "earliest"}), 201).await;
    produce_n(&s, "t", 400, false).await;
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(&s, "/v1/topics/t/subscriptions/q/ws").await;
        send_json(&mut ws, &json!({"type": "credit", "messages": 150})).await;
        // Each socket acks what it gets until it has been idle for a second.
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(Some(Ok(frame))) =
                tokio::time::timeout(Duration::from_secs(1), ws.next()).await
            {
                if let Message::Text(text) = frame {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    if frame["type"] == "message" {
                        got.push(value_i(&frame));
                        send_json(
                            &mut ws,
                            &json!({"type": "ack", "ack_ids": [frame["ack_id"]]}),
                        )
                        .await;
                    }
                }
            }
            got
        }));
    }
    let mut seen: Vec<u64> = Vec::new();
    // HTTP pulls take whatever the sockets' credit leaves.
    for _ in 0..200 {
        let more = pull(&s, "t", "q", json!({"max_messages": 20, "wait_ms": 200})).await;
        if more.is_empty() && seen.len() >= 100 {
            break;
        }
        if !more.is_empty() {
            ack(&s, "t", "q", &more).await;
            seen.extend(more.iter().map(value_i));
        }
    }
    let http_count = seen.len();
    for r in readers {
        let got = r.await.unwrap();
        assert!(!got.is_empty(), "each socket got messages");
        seen.extend(got);
    }
    assert!(http_count > 0, "HTTP pullers got messages too");
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 400, "every message once");
    assert_eq!(seen.len(), 400, "no message delivered twice");
}

#[tokio::test]
async fn deleting_the_subscription_closes_its_sockets() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "q", json!({}), 201).await;
    let mut ws = connect(&s, "/v1/topics/t/subscriptions/q/ws").await;
    send_json(&mut ws, &json!({"type": "credit", "messages": 5})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.delete(&sub_path("t", "q", "")).await.expect_status(204);
    let err = json(&mut ws).await;
    assert_eq!(err["code"], "subscription_not_found", "{err}");
    assert_eq!(u16::from(close_frame(&mut ws).await.code), 1000);
    s.get("/v1/topics/t/subscriptions/q/ws")
        .await
        .expect_problem(404, "subscription_not_found");
}
