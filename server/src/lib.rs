//! Weir server library: durable partitioned topics with queue and stream
//! subscriptions over HTTP and WebSocket, on RocksDB.
//!
//! Layers (one direction of dependency): `api` (axum) → `broker` (domain)
//! → `storage` (the only module that names RocksDB). `server::run` wires
//! them; `main` only parses, binds and calls it.

pub mod api;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod net;
pub mod restore;
pub mod server;
pub mod storage;
pub mod telemetry;
