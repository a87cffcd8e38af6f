//! Black-box tests of clustering: real `weir-server` processes on loopback,
//! each with its own data directory, every node-to-node link through a
//! fault-injecting proxy (`weir_tests::proxy`), observed only through
//! `GET /v1/cluster` and the processes' exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "blackbox/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "cluster/nodes.rs"]
mod nodes;

#[path = "faults/rng.rs"]
#[allow(dead_code)]
mod rng;

#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/formation.rs"]
mod formation;
#[path = "cluster/membership.rs"]
mod membership;
#[path = "cluster/partitions.rs"]
mod partitions;
#[path = "cluster/replication.rs"]
mod replication;
#[path = "cluster/subscriptions.rs"]
mod subscriptions;
#[path = "cluster/topics.rs"]
mod topics;
