//! The fault-injection suite: a real `weir-server` under kill -9 cycles,
//! dropped responses and on-disk corruption, with every client operation
//! recorded in a history (`weir_tests::history`) that a checker turns into
//! a report of anomalies (acknowledged messages lost, duplicated beyond
//! at-least-once, reordered, dead-lettered twice). Every scenario asserts
//! a clean report and prints a `FAULT-SUMMARY` line for `make soak`.
//!
//! Build the server first: `cargo build -p weir-server`, then
//! `cargo test -p weir-tests --test faults -- --test-threads=2`.
//! `WEIR_FAULT_SEED` replays a printed seed; `WEIR_FAULT_CYCLES` sets the
//! number of kills.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "blackbox/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "faults/ops.rs"]
mod ops;
#[path = "faults/rng.rs"]
mod rng;
#[path = "faults/workload.rs"]
mod workload;

#[path = "faults/kill9.rs"]
mod kill9;
#[path = "faults/proxy.rs"]
mod proxy;

#[path = "faults/idempotent.rs"]
mod idempotent;

#[path = "faults/process.rs"]
mod process;

#[path = "faults/corruption.rs"]
mod corruption;
