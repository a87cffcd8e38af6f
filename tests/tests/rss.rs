//! Memory-bound tests of `weir-server`: its resident set size (`VmRSS`)
//! must be bounded by configuration (block cache, write buffers, WebSocket
//! outbound buffers) and not by backlog, message history or traffic.
//!
//! Each scenario starts the real binary with small budgets (block cache
//! 8 MiB, write buffers 16 MiB), warms it up, measures a baseline, applies
//! its load while sampling RSS, prints one `rss <scenario>: ...` line and
//! asserts the growth stays under a bound derived from those budgets.
//!
//! Build the server first: `cargo build -p weir-server`, then
//! `cargo test -p weir-tests --test rss -- --test-threads=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "blackbox/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "rss/load.rs"]
mod load;
#[path = "rss/memory.rs"]
mod memory;

#[path = "rss/idle_sockets.rs"]
mod idle_sockets;
#[path = "rss/never_ack.rs"]
mod never_ack;
#[path = "rss/slow_consumers.rs"]
mod slow_consumers;
#[path = "rss/stuck_floor.rs"]
mod stuck_floor;

/// Scenarios measure one server process each and must not overlap (their
/// loads would disturb each other's numbers, and `memory::server_pid`
/// expects a single server child): each holds this lock while it runs, even
/// when the binary is run without `--test-threads=1`.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
