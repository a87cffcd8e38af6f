//! Scenario 3: 10,000 idle WebSockets (live tails of one topic) opened from
//! this process. Each must cost the server little memory (KiB per socket
//! beyond the baseline is reported and bounded), and the server must stay
//! responsive while they are open: a produce is read back over HTTP and
//! pushed to a tail.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TestServer;
use crate::load::{self, Socket};
use crate::memory::{self, mib, say, Sampler};

const SOCKETS: u64 = 10_000;
/// Handshakes in flight at once.
const OPENING_AT_ONCE: usize = 200;
/// Descriptors this process and the server need: the sockets plus files,
/// pipes, RocksDB and HTTP connections.
const FILES_NEEDED: u64 = SOCKETS + 1_024;
/// Average server memory allowed per idle socket.
const MAX_PER_SOCKET: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_websockets_cost_little_and_the_server_stays_responsive() {
    let _serial = crate::serial().await;
    // The server inherits the limit when the harness spawns it.
    raise_open_files(FILES_NEEDED);
    let max = (SOCKETS + 100).to_string();
    let s = TestServer::start_with(&load::server_args(&[
        "--max-connections",
        &max,
        "--max-ws-per-principal",
        &max,
        // No ping during the test (idle clients do not read, so would not
        // answer), and an idle timeout well beyond its length.
        "--ws-ping-interval-ms",
        "600000",
        "--ws-idle-timeout-ms",
        "1200000",
    ]));
    let pid = s.pid();
    s.create_topic("idle", &json!({"partitions": 2})).await;
    // Warm-up: a few sockets opened and closed, one message produced.
    for _ in 0..20 {
        drop(load::connect_ws(&s, "/v1/topics/idle/ws", None).await);
    }
    s.produce("idle", json!([{"value": "warm"}])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = memory::rss_bytes(pid);
    let sampler = Sampler::start(pid);

    let started = Instant::now();
    let mut sockets: Vec<Socket> = futures_util::stream::iter(0..SOCKETS)
        .map(|_| load::connect_ws(&s, "/v1/topics/idle/ws", None))
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    let opened_in = started.elapsed();
    let open = load::wait_metric(
        &s,
        "weir_websocket_connections",
        "kind=\"tail\"",
        Duration::from_secs(10),
        |v| v >= SOCKETS as f64,
    )
    .await;
    assert!(
        open >= SOCKETS as f64,
        "the server counts {open} open tails"
    );
    // Idle for a while: nothing may grow or close.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = sampler.now();

    // Responsive: a produce is read back, and pushed to a tail.
    let round_trip = Instant::now();
    let written = s
        .produce("idle", json!([{"value": "ping", "partition": 0}]))
        .await;
    let offset = written[0]["offset"].as_u64().expect("offset");
    let read = s.read("idle", 0, &format!("offset={offset}&limit=1")).await;
    assert_eq!(read["messages"][0]["value"], "ping", "{read}");
    let http_round_trip = round_trip.elapsed();
    let pushed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match sockets[0].next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => {}
                other => panic!("tail ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the produced message reaches a tail");
    assert!(pushed.contains("\"ping\""), "{pushed}");
    let tail_round_trip = round_trip.elapsed();
    let still_open = load::metric(&s, "weir_websocket_connections", "kind=\"tail\"").await;
    let last = sampler.now();
    let (peak, samples) = sampler.finish();
    sockets.clear();

    let per_socket = idle_rss.saturating_sub(baseline) / SOCKETS;
    say(&format!(
        "rss idle_websockets: {SOCKETS} tails opened in {opened_in:.1?}; rss idle {} = {} KiB \
         per socket beyond baseline; produce+read {http_round_trip:.1?}, pushed to a tail in \
         {tail_round_trip:.1?}; {still_open} still open; {samples} samples",
        mib(idle_rss),
        per_socket / 1024,
    ));
    assert!(
        still_open >= SOCKETS as f64,
        "idle sockets were closed during the test: {still_open} open"
    );
    memory::check_growth(
        "idle_websockets",
        baseline,
        peak,
        last,
        SOCKETS * MAX_PER_SOCKET,
        "10,000 sockets x 64 KiB",
    );
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `needed` (up to
/// the hard limit, which an unprivileged process cannot raise).
fn raise_open_files(needed: u64) {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum;
    assert!(
        hard.is_none_or(|h| h >= needed),
        "the hard open-files limit {hard:?} is below the {needed} this test needs (ulimit -Hn)"
    );
    if limit.current.is_some_and(|soft| soft < needed) {
        let wanted = hard.map_or(needed, |h| h.min(65_536).max(needed));
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: hard,
            },
        )
        .expect("raise RLIMIT_NOFILE");
    }
}
