//! Wire types of the Weir HTTP and WebSocket API, shared by the server and
//! the client so that both sides agree on every field by construction.
//!
//! This crate owns serialization shapes and the table of stable error codes
//! (`ErrorCode` → HTTP status). It must not know about storage, axum or
//! reqwest: it is plain serde + utoipa schema types.

pub mod binary;
pub mod cluster;
pub mod dead_letter;
pub mod error;
pub mod limits;
pub mod message;
pub mod names;
pub mod push;
pub mod retry;
pub mod subscription;
pub mod topic;
pub mod ws;

pub use cluster::*;
pub use dead_letter::*;
pub use error::{ErrorCode, Problem};
pub use message::*;
pub use push::*;
pub use retry::*;
pub use subscription::*;
pub use topic::*;
