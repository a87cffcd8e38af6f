//! Scenario 2: WebSocket consumers that grant credit and then never read
//! (dead: their TCP receive window fills and the server's writes stall) or
//! read very slowly, each on its own queue subscription, plus live tails
//! that never read, while messages are produced. The server must disconnect
//! the consumers that accept nothing (`--ws-slow-consumer-timeout-ms`, code
//! 1008), keep at most `--ws-outbound-buffer-bytes` queued per socket, and
//! its RSS must stay within the budgets plus those per-socket buffers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TestServer;
use crate::load::{self, Socket, BLOCK_CACHE, WRITE_BUFFERS};
use crate::memory::{self, mib, say, Sampler, MIB};

/// Consumers that grant credit and never read.
const DEAD: usize = 16;
/// Consumers that read one frame every `SLOW_READ_EVERY`.
const SLOW: usize = 8;
const SLOW_READ_EVERY: Duration = Duration::from_millis(50);
/// Live tails that never read.
const DEAD_TAILS: usize = 8;
const OUTBOUND_BYTES: u64 = 256 * 1024;
const SLOW_TIMEOUT_MS: u64 = 1_000;
const TOTAL: u64 = 60_000;
const VALUE_BYTES: usize = 512;
/// Per socket beyond its outbound queue: the WebSocket library's write
/// buffer (128 KiB by default) and the frame being written.
const SOCKET_SLACK: u64 = 256 * 1024;
/// Request buffers, allocator slack.
const MARGIN: u64 = 24 * MIB;
/// `--max-unsettled-per-subscription`: the messages a subscription holds
/// in memory (each consumer here grants a million credits and never acks).
const UNSETTLED: u64 = 10_000;
/// Memory per tracked message, generously (entry, lease timer, maps).
const PER_UNSETTLED: u64 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_dead_websocket_consumers_are_cut_off_and_memory_stays_bounded() {
    let _serial = crate::serial().await;
    let outbound = OUTBOUND_BYTES.to_string();
    let slow_ms = SLOW_TIMEOUT_MS.to_string();
    let s = TestServer::start_with(&load::server_args(&[
        "--ws-outbound-buffer",
        "64",
        "--ws-outbound-buffer-bytes",
        &outbound,
        "--ws-slow-consumer-timeout-ms",
        &slow_ms,
        "--max-unsettled-per-subscription",
        &UNSETTLED.to_string(),
    ]));
    let pid = s.pid();
    s.create_topic("flood", &json!({"partitions": 2})).await;
    for n in 0..DEAD + SLOW {
        let spec = json!({"mode": "queue", "start": "earliest", "ack_timeout_ms": 60_000});
        s.put_json(&format!("/v1/topics/flood/subscriptions/s{n}"), &spec)
            .await
            .expect_status(201);
    }
    // Warm-up: produce and tail once.
    let mut warm = load::connect_ws(&s, "/v1/topics/flood/ws?from=earliest", None).await;
    load::produce_many(&s, "flood", 2_000, 500, VALUE_BYTES, 2, |_| {}).await;
    for _ in 0..10 {
        let frame = tokio::time::timeout(Duration::from_secs(10), warm.next()).await;
        assert!(
            matches!(frame, Ok(Some(Ok(_)))),
            "warm-up tail frame: {frame:?}"
        );
    }
    drop(warm);
    // Every subscription's state loaded (a pull and an ack each): the
    // baseline includes what subscriptions cost, the growth is what the
    // sockets and the traffic add.
    let http = s.client();
    for n in 0..DEAD + SLOW {
        let url = s.url(&format!("/v1/topics/flood/subscriptions/s{n}"));
        let got = load::pull(&http, &url, 1, 1_000).await;
        assert_eq!(got.len(), 1, "warm-up pull of s{n}");
        load::ack(&http, &url, &got).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = memory::rss_bytes(pid);
    let cut_before = load::metric(&s, "weir_websocket_slow_consumer_disconnects_total", "").await;
    let sampler = Sampler::start(pid);

    let mut dead = Vec::new();
    for n in 0..DEAD {
        dead.push(subscribe(&s, n).await);
    }
    for _ in 0..DEAD_TAILS {
        dead.push(load::connect_ws(&s, "/v1/topics/flood/ws?from=earliest", Some(4096)).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let slow_read = Arc::new(AtomicU64::new(0));
    let mut slow_tasks = Vec::new();
    for n in DEAD..DEAD + SLOW {
        let mut socket = subscribe(&s, n).await;
        let (stop, read) = (stop.clone(), slow_read.clone());
        slow_tasks.push(tokio::spawn(async move {
            // Until the server closes the socket or the test stops.
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                    Ok(Some(Ok(Message::Text(_)))) => read.fetch_add(1, Ordering::Relaxed),
                    Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                    Ok(Some(Ok(_))) | Err(_) => 0,
                    Ok(None | Some(Err(_))) => return None,
                };
                tokio::time::sleep(SLOW_READ_EVERY).await;
            }
            Some(0)
        }));
    }

    let started = Instant::now();
    load::produce_many(&s, "flood", TOTAL, 500, VALUE_BYTES, 2, |_| {}).await;
    let produced_in = started.elapsed();
    // Every socket that never reads is cut off within the timeout (plus the
    // close handshake); slow readers may be too.
    let cut = load::wait_metric(
        &s,
        "weir_websocket_slow_consumer_disconnects_total",
        "",
        Duration::from_secs(30),
        |v| v - cut_before >= (DEAD + DEAD_TAILS) as f64,
    )
    .await
        - cut_before;
    stop.store(true, Ordering::Relaxed);
    let mut slow_closed = 0;
    for task in slow_tasks {
        let ended = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("slow reader stops")
            .expect("slow reader task");
        if ended != Some(0) {
            slow_closed += 1;
        }
    }
    for socket in &mut dead {
        expect_ended(socket).await;
    }
    drop(dead);
    let last = sampler.now();
    let (peak, samples) = sampler.finish();
    say(&format!(
        "rss slow_consumers: produced {TOTAL} x {VALUE_BYTES} B in {produced_in:.1?}; \
         {cut} slow-consumer disconnects ({DEAD} dead consumers, {DEAD_TAILS} dead tails), \
         {slow_closed}/{SLOW} slow readers saw their socket end after reading {} frames; \
         {samples} samples",
        slow_read.load(Ordering::Relaxed),
    ));
    assert!(
        cut >= (DEAD + DEAD_TAILS) as f64,
        "only {cut} slow-consumer disconnects for {DEAD} dead consumers and {DEAD_TAILS} dead \
         tails; log:\n{}",
        s.log_tail()
    );
    let sockets = (DEAD + SLOW + DEAD_TAILS) as u64;
    let subscriptions = (DEAD + SLOW) as u64;
    memory::check_growth(
        "slow_consumers",
        baseline,
        peak,
        last,
        BLOCK_CACHE
            + WRITE_BUFFERS
            + sockets * (OUTBOUND_BYTES + SOCKET_SLACK)
            + subscriptions * UNSETTLED * PER_UNSETTLED
            + MARGIN,
        &format!(
            "block cache 8 MiB + write buffers 16 MiB + {sockets} sockets x (outbound {} KiB \
             + {} KiB) + {subscriptions} subscriptions x {UNSETTLED} unsettled x \
             {PER_UNSETTLED} B + {}",
            OUTBOUND_BYTES / 1024,
            SOCKET_SLACK / 1024,
            mib(MARGIN)
        ),
    );
}

/// A subscription socket on `s{n}` with a small receive window that has
/// granted a lot of credit.
async fn subscribe(s: &TestServer, n: usize) -> Socket {
    let path = format!("/v1/topics/flood/subscriptions/s{n}/ws?consumer=c{n}");
    let mut socket = load::connect_ws(s, &path, Some(4096)).await;
    let credit = json!({"type": "credit", "messages": 1_000_000}).to_string();
    socket
        .send(Message::text(credit))
        .await
        .expect("send credit");
    socket
}

/// Reads what the server sent before it gave up on the socket, up to the
/// end (a close frame, EOF or a reset), bounded in time.
async fn expect_ended(socket: &mut Socket) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("a socket that never read was not disconnected"),
        }
    }
}
