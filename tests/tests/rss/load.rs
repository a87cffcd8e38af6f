//! Load generation shared by the scenarios: the server flags that set the
//! memory budgets, fast batched produce, plain pull/ack calls, WebSocket
//! connections with a small receive window, and reading a metric.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::harness::{send, TestServer};
use crate::memory::MIB;

/// RocksDB block cache configured for every scenario.
pub const BLOCK_CACHE: u64 = 8 * MIB;
/// RocksDB memtable budget configured for every scenario.
pub const WRITE_BUFFERS: u64 = 16 * MIB;
/// Longest any one produce, pull or ack may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A WebSocket over a plain TCP stream.
pub type Socket = WebSocketStream<TcpStream>;

/// The memory-budget flags plus `extra`. `fsync = never`: durability is
/// not what these tests measure, and syncing would only slow the load.
pub fn server_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--block-cache-bytes",
        "8388608",
        "--write-buffer-bytes",
        "16777216",
        "--fsync",
        "never",
    ];
    args.extend_from_slice(extra);
    args
}

/// A JSON produce body of `count` messages whose values are `value_bytes`
/// long strings tagged with their sequence number from `first`.
pub fn batch_body(first: u64, count: u64, value_bytes: usize, extra: &Value) -> Vec<u8> {
    let pad = "x".repeat(value_bytes);
    let messages: Vec<Value> = (first..first + count)
        .map(|i| {
            let mut m = json!({ "value": format!("{i}:{pad}") });
            if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
                m.extend(extra.clone());
            }
            m
        })
        .collect();
    serde_json::to_vec(&json!({ "messages": messages })).expect("serialize batch")
}

/// Produces `total` messages to `topic` in batches of `batch`, `lanes`
/// requests at a time; `on_progress` is called with the running count.
pub async fn produce_many(
    s: &TestServer,
    topic: &str,
    total: u64,
    batch: u64,
    value_bytes: usize,
    lanes: usize,
    mut on_progress: impl FnMut(u64),
) {
    let url = s.url(&format!("/v1/topics/{topic}/messages"));
    let http = s.client();
    let requests = (0..total.div_ceil(batch)).map(|n| {
        let (url, http) = (url.clone(), http.clone());
        let first = n * batch;
        let count = batch.min(total - first);
        async move {
            let body = batch_body(first, count, value_bytes, &json!({}));
            let reply = tokio::time::timeout(
                CALL_TIMEOUT,
                send(
                    &http,
                    reqwest::Method::POST,
                    &url,
                    Some(("application/json", body)),
                    &[],
                ),
            )
            .await
            .expect("produce within the timeout");
            reply.expect_status(200);
            count
        }
    });
    let mut done = 0;
    let mut replies = futures_util::stream::iter(requests).buffer_unordered(lanes);
    while let Some(count) = replies.next().await {
        done += count;
        on_progress(done);
    }
    assert_eq!(done, total, "every batch produced");
}

/// One pull (`max_messages`, `wait_ms`) expecting 200; the messages.
pub async fn pull(
    http: &reqwest::Client,
    s_url: &str,
    max_messages: u64,
    wait_ms: u64,
) -> Vec<Value> {
    let body = json!({ "max_messages": max_messages, "wait_ms": wait_ms, "consumer": "rss" });
    let reply = send(
        http,
        reqwest::Method::POST,
        &format!("{s_url}/pull"),
        Some(("application/json", serde_json::to_vec(&body).expect("JSON"))),
        &[],
    )
    .await
    .expect_status(200);
    reply["messages"].as_array().expect("messages").clone()
}

/// Acks `messages` expecting 200 and every id known.
pub async fn ack(http: &reqwest::Client, s_url: &str, messages: &[Value]) {
    let ids: Vec<&Value> = messages.iter().map(|m| &m["ack_id"]).collect();
    let body = serde_json::to_vec(&json!({ "ack_ids": ids })).expect("JSON");
    let reply = send(
        http,
        reqwest::Method::POST,
        &format!("{s_url}/ack"),
        Some(("application/json", body)),
        &[],
    )
    .await
    .expect_status(200);
    assert_eq!(reply["unknown"], json!([]), "acks of live leases: {reply}");
}

/// Opens a WebSocket to `path`. `recv_buffer` sets the client's TCP
/// receive buffer (a small one makes a client that never reads stall the
/// server's writes quickly); `None` keeps the system default.
pub async fn connect_ws(s: &TestServer, path: &str, recv_buffer: Option<u32>) -> Socket {
    let url = s.url(path).replacen("http://", "ws://", 1);
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.parse().ok())
        .unwrap_or_else(|| panic!("no socket address in {url}"));
    let connecting = async {
        let socket = TcpSocket::new_v4().expect("TCP socket");
        if let Some(bytes) = recv_buffer {
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        }
        let stream = socket.connect(addr).await?;
        // Small client buffers: 10,000 idle sockets must not cost the test
        // process gigabytes.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .map_err(std::io::Error::other)
    };
    match tokio::time::timeout(CALL_TIMEOUT, connecting).await {
        Ok(Ok((socket, response))) => {
            assert_eq!(response.status().as_u16(), 101, "upgrade of {url}");
            socket
        }
        Ok(Err(e)) => panic!("connecting to {url} failed: {e}"),
        Err(_) => panic!("connecting to {url} timed out"),
    }
}

/// The sum of every sample of `name` whose labels contain `labels` (e.g.
/// `kind="subscribe"`) in `GET /metrics`.
pub async fn metric(s: &TestServer, name: &str, labels: &str) -> f64 {
    let text = s.get("/metrics").await.text;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labelled = series.starts_with(&format!("{name}{{")) && series.contains(labels);
            let matches = labelled || (labels.is_empty() && series == name);
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Polls `metric` until `done` holds or `timeout` passes; the last value.
pub async fn wait_metric(
    s: &TestServer,
    name: &str,
    labels: &str,
    timeout: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let value = metric(s, name, labels).await;
        if done(value) || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
