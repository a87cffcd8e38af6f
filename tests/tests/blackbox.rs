//! Black-box tests of `weir-server`: each test starts the real binary on
//! `127.0.0.1:0` over a temporary data directory (see `blackbox/harness.rs`)
//! and talks to it only over HTTP, as a user would.
//!
//! Build the server first: `cargo build -p weir-server && cargo test -p weir-tests`
//! (or point `WEIR_SERVER_BIN` at a binary).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "blackbox/harness.rs"]
mod harness;

#[path = "blackbox/backup.rs"]
mod backup;
#[path = "blackbox/batch_ack.rs"]
mod batch_ack;
#[path = "blackbox/binary.rs"]
mod binary;
#[path = "blackbox/cli.rs"]
mod cli;
#[path = "blackbox/cli_dead_letters.rs"]
mod cli_dead_letters;
#[path = "blackbox/cli_first_run.rs"]
mod cli_first_run;
#[path = "blackbox/cli_stdin.rs"]
mod cli_stdin;
#[path = "blackbox/cli_webhook.rs"]
mod cli_webhook;
#[path = "blackbox/client_api.rs"]
mod client_api;
#[path = "blackbox/client_binary.rs"]
mod client_binary;
#[path = "blackbox/client_proxy.rs"]
mod client_proxy;
#[path = "blackbox/client_resilience.rs"]
mod client_resilience;
#[path = "blackbox/client_settling.rs"]
mod client_settling;
#[path = "blackbox/client_ws.rs"]
mod client_ws;
#[path = "blackbox/clock.rs"]
mod clock;
#[path = "blackbox/control.rs"]
mod control;
#[path = "blackbox/dead_letters.rs"]
mod dead_letters;
#[path = "blackbox/durability.rs"]
mod durability;
#[path = "blackbox/errors.rs"]
mod errors;
#[path = "blackbox/idempotency.rs"]
mod idempotency;
#[path = "blackbox/metrics.rs"]
mod metrics;
#[path = "blackbox/produce_read.rs"]
mod produce_read;
#[path = "blackbox/push.rs"]
mod push;
#[path = "blackbox/retention.rs"]
mod retention;
#[path = "blackbox/security.rs"]
mod security;
#[path = "blackbox/sse.rs"]
mod sse;
#[path = "blackbox/subs_helpers.rs"]
mod subs_helpers;
#[path = "blackbox/subscriptions.rs"]
mod subscriptions;
#[path = "blackbox/topics.rs"]
mod topics;
#[path = "blackbox/ws.rs"]
mod ws;
#[path = "blackbox/ws_subscribe.rs"]
mod ws_subscribe;
