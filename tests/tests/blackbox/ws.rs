//! WebSocket endpoints against the real server: the live tail
//! (`/v1/topics/{topic}/ws`) and publishing over a socket
//! (`/v1/topics/{topic}/ws/publish`), with a plain WebSocket client.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::TestServer;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any one frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn connect(server: &TestServer, path: &str) -> Socket {
    let url = server.url(path).replacen("http://", "ws://", 1);
    let connecting = tokio_tungstenite::connect_async(&url);
    let Ok(connected) = tokio::time::timeout(FRAME_TIMEOUT, connecting).await else {
        panic!("connecting to {url} timed out");
    };
    match connected {
        Ok((socket, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            socket
        }
        Err(e) => panic!("connecting to {url} failed: {e}"),
    }
}

/// The next frame that is not a ping or pong.
pub async fn next(socket: &mut Socket) -> Option<Result<Message, WsError>> {
    loop {
        let frame = tokio::time::timeout(FRAME_TIMEOUT, socket.next())
            .await
            .expect("a frame within the timeout");
        match frame {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return other,
        }
    }
}

/// The next text frame as JSON.
pub async fn json(socket: &mut Socket) -> Value {
    match next(socket).await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).expect("JSON frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub async fn send_json(socket: &mut Socket, frame: &Value) {
    socket
        .send(Message::text(frame.to_string()))
        .await
        .expect("send a frame");
}

/// Reads until the server closes; returns its close frame.
pub async fn close_frame(socket: &mut Socket) -> CloseFrame {
    loop {
        match next(socket).await {
            Some(Ok(Message::Close(Some(frame)))) => return frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// `n` tail frames as (partition, offset, value).
async fn tail_messages(socket: &mut Socket, n: usize) -> Vec<(u64, u64, Value)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let frame = json(socket).await;
        assert_eq!(frame["type"], "message", "{frame}");
        assert!(
            frame.get("ack_id").is_none(),
            "a tail leases nothing: {frame}"
        );
        out.push((
            frame["partition"].as_u64().expect("partition"),
            frame["offset"].as_u64().expect("offset"),
            frame["value"].clone(),
        ));
    }
    out
}

fn partition_of(frames: &[(u64, u64, Value)], partition: u64) -> Vec<(u64, Value)> {
    frames
        .iter()
        .filter(|f| f.0 == partition)
        .map(|f| (f.1, f.2.clone()))
        .collect()
}

/// A counter or gauge of `/metrics` (0 when absent).
async fn metric(server: &TestServer, series: &str) -> f64 {
    let text = server.get("/metrics").await.text;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sees_messages_produced_over_http() {
    let server = TestServer::start();
    server
        .create_topic("orders", &json!({"partitions": 2}))
        .await;
    server
        .produce(
            "orders",
            json!([{"value": "old-0", "partition": 0}, {"value": "old-1", "partition": 1}]),
        )
        .await;

    let mut latest = connect(&server, "/v1/topics/orders/ws").await;
    let mut earliest = connect(&server, "/v1/topics/orders/ws?from=earliest").await;
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({"value": format!("new-{i}"), "partition": i % 2}))
        .collect();
    server.produce("orders", Value::Array(batch)).await;

    let seen = tail_messages(&mut latest, 6).await;
    assert_eq!(
        partition_of(&seen, 0),
        vec![
            (1, json!("new-0")),
            (2, json!("new-2")),
            (3, json!("new-4"))
        ],
        "only new messages, in offset order"
    );
    assert_eq!(
        partition_of(&seen, 1),
        vec![
            (1, json!("new-1")),
            (2, json!("new-3")),
            (3, json!("new-5"))
        ]
    );
    let replayed = tail_messages(&mut earliest, 8).await;
    assert_eq!(partition_of(&replayed, 0)[0], (0, json!("old-0")));
    assert_eq!(partition_of(&replayed, 1)[0], (0, json!("old-1")));
    assert_eq!(partition_of(&replayed, 0).len(), 4);

    // Bytes payloads come as `value_b64`, as in reads.
    server
        .post_raw(
            "/v1/topics/orders/messages",
            "application/octet-stream",
            vec![0u8, 1, 2],
            &[("Weir-Partition", "0")],
        )
        .await
        .expect_status(200);
    let frame = json(&mut latest).await;
    assert_eq!(frame["value_b64"], B64.encode([0u8, 1, 2]), "{frame}");
    assert_eq!(frame["topic"], "orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_problem_documents_before_the_upgrade() {
    let server = TestServer::start();
    server.create_topic("orders", &json!({})).await;

    for (path, status, code) in [
        ("/v1/topics/nope/ws", 404, "topic_not_found"),
        ("/v1/topics/nope/ws/publish", 404, "topic_not_found"),
        (
            "/v1/topics/orders/ws?from=yesterday",
            400,
            "invalid_request",
        ),
        (
            "/v1/topics/orders/ws?start=earliest",
            400,
            "invalid_request",
        ),
    ] {
        let url = server.url(path).replacen("http://", "ws://", 1);
        match tokio_tungstenite::connect_async(&url).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{path}");
                let content_type = response.headers()["content-type"].to_str().unwrap();
                assert_eq!(content_type, "application/problem+json", "{path}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["code"], code, "{path}: {body}");
            }
            other => panic!("{path}: expected an HTTP refusal, got {other:?}"),
        }
    }
    // A plain GET, without the handshake, is a 400 problem too.
    server
        .get("/v1/topics/orders/ws")
        .await
        .expect_problem(400, "invalid_request");
    server
        .get("/v1/topics/orders/ws?from=abc")
        .await
        .expect_invalid("from");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publish_replies_in_order_and_data_is_readable_over_http() {
    let server = TestServer::start_with(&["--ws-publish-max-in-flight", "4"]);
    server
        .create_topic("events", &json!({"partitions": 3}))
        .await;
    let mut socket = connect(&server, "/v1/topics/events/ws/publish").await;

    // Every request goes out before any reply is read.
    let mut requests = Vec::new();
    for i in 0..40u64 {
        let messages: Vec<Value> = (0..=i % 3)
            .map(|j| json!({"key": format!("k{}", (i + j) % 5), "value": {"i": i, "j": j}}))
            .collect();
        let frame = json!({"type": "publish", "request_id": format!("r{i}"), "messages": messages});
        send_json(&mut socket, &frame).await;
        requests.push(frame);
    }
    let mut expected: Vec<((u64, u64), Value)> = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let reply = json(&mut socket).await;
        assert_eq!(reply["type"], "published", "{reply}");
        assert_eq!(
            reply["request_id"],
            format!("r{i}"),
            "replies in request order"
        );
        let results = reply["results"].as_array().expect("results");
        let messages = request["messages"].as_array().expect("messages");
        assert_eq!(results.len(), messages.len());
        for (message, result) in messages.iter().zip(results) {
            let at = (
                result["partition"].as_u64().unwrap(),
                result["offset"].as_u64().unwrap(),
            );
            expected.push((at, message["value"].clone()));
        }
    }
    // Durable before the reply: every result is readable, with its value.
    let mut stored = std::collections::HashMap::new();
    for partition in 0..3 {
        for message in server.read_all("events", partition).await {
            let at = (partition, message["offset"].as_u64().unwrap());
            stored.insert(at, message["value"].clone());
        }
    }
    assert_eq!(stored.len(), expected.len(), "nothing more, nothing less");
    for (at, value) in expected {
        assert_eq!(stored.get(&at), Some(&value), "message at {at:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_error_frames_and_fatal_ones_close_the_socket() {
    let server = TestServer::start_with(&["--ws-max-message-bytes", "4096"]);
    server.create_topic("t", &json!({"partitions": 1})).await;
    let mut socket = connect(&server, "/v1/topics/t/ws/publish").await;

    socket.send(Message::text("{not json")).await.unwrap();
    let reply = json(&mut socket).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "invalid_request", "{reply}");
    // The same validation as the HTTP produce, with the request's id.
    send_json(&mut socket, &json!({"type": "publish", "request_id": "bad", "messages": [{"value": 1, "partition": 5}]})).await;
    let reply = json(&mut socket).await;
    assert_eq!(
        (reply["code"].as_str(), reply["request_id"].as_str()),
        (Some("invalid_request"), Some("bad")),
        "{reply}"
    );
    // The socket is still usable.
    send_json(
        &mut socket,
        &json!({"type": "publish", "request_id": "ok", "messages": [{"value": "v"}]}),
    )
    .await;
    let reply = json(&mut socket).await;
    assert_eq!(reply["type"], "published", "{reply}");
    assert_eq!(reply["results"][0]["offset"], 0);

    // A binary frame that is not a binary batch: an error frame, and the
    // socket stays open.
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let reply = json(&mut socket).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "invalid_request", "{reply}");

    // Fatal: a binary frame on any other socket (1003), a message over
    // `ws_max_message_bytes` (1009).
    let mut tail = connect(&server, "/v1/topics/t/ws").await;
    tail.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(u16::from(close_frame(&mut tail).await.code), 1003);
    let mut socket = connect(&server, "/v1/topics/t/ws/publish").await;
    let big =
        json!({"type": "publish", "request_id": "big", "messages": [{"value": "x".repeat(8192)}]});
    send_json(&mut socket, &big).await;
    let frame = close_frame(&mut socket).await;
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
    assert!(
        frame.reason.as_str().contains("ws_max_message_bytes"),
        "{frame:?}"
    );
    // Nothing of the refused message was stored.
    assert_eq!(server.partition_info("t", 0).await["high_offset"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_disconnected_and_the_server_stays_healthy() {
    let server = TestServer::start_with(&[
        "--fsync",
        "never",
        "--ws-slow-consumer-timeout-ms",
        "500",
        "--ws-outbound-buffer",
        "8",
        "--ws-outbound-buffer-bytes",
        "65536",
    ]);
    server
        .create_topic("firehose", &json!({"max_message_bytes": 1048576}))
        .await;
    let slow_before = metric(&server, "weir_websocket_slow_consumer_disconnects_total").await;
    // Opened, then never read: the kernel buffers fill, then the server's.
    let mut stuck = connect(&server, "/v1/topics/firehose/ws").await;

    let chunk = B64.encode(vec![7u8; 192 * 1024]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut batches = 0;
    while metric(&server, "weir_websocket_slow_consumer_disconnects_total").await <= slow_before {
        assert!(
            Instant::now() < deadline && batches < 400,
            "no slow-consumer disconnect after {batches} batches; log:\n{}",
            server.log_tail()
        );
        let batch: Vec<Value> = (0..4).map(|_| json!({"value_b64": chunk})).collect();
        server.produce("firehose", Value::Array(batch)).await;
        batches += 1;
    }

    // The server is healthy: it answers, accepts writes, and tails anew.
    server.get("/healthz").await.expect_status(200);
    server.get("/readyz").await.expect_status(200);
    let mut fresh = connect(&server, "/v1/topics/firehose/ws").await;
    server
        .produce("firehose", json!([{"value": "after"}]))
        .await;
    let frame = json(&mut fresh).await;
    assert_eq!(frame["value"], "after", "{}", frame["offset"]);

    // The stuck client finds the end of its socket once it reads: what the
    // kernel had buffered, then the 1008 close or the connection's end.
    let mut frames = 0;
    loop {
        match next(&mut stuck).await {
            Some(Ok(Message::Text(_))) => frames += 1,
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                break;
            }
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            Some(Err(_)) | None => break,
        }
        assert!(frames < 100_000, "the stuck socket never ends");
    }
    drop(fresh);
    // One tail socket is left open at most (`fresh` may still be closing).
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "weir_websocket_connections{kind=\"tail\"}").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "tail sockets still counted as open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sockets_with_going_away() {
    let mut server = TestServer::start();
    server.create_topic("t", &json!({})).await;
    let mut tail = connect(&server, "/v1/topics/t/ws").await;
    let mut publish = connect(&server, "/v1/topics/t/ws/publish").await;
    send_json(
        &mut publish,
        &json!({"type": "publish", "request_id": "r", "messages": [{"value": 1}]}),
    )
    .await;
    assert_eq!(json(&mut publish).await["type"], "published");
    assert_eq!(json(&mut tail).await["value"], 1);

    // SIGTERM; the server must exit 0 without waiting out its timeout.
    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sockets held shutdown up"
    );
    for socket in [&mut tail, &mut publish] {
        let frame = close_frame(socket).await;
        assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
    }
}
