//! The WebSocket side of [`Client`](crate::Client): consume a subscription
//! with credit ([`Client::subscribe_ws`](crate::Client::subscribe_ws) →
//! [`WsSubscription`]), tail a topic live
//! ([`Client::tail_ws`](crate::Client::tail_ws) → [`WsTail`]) and publish
//! with pipelined requests
//! ([`Client::publisher_ws`](crate::Client::publisher_ws) →
//! [`WsPublisher`]).
//!
//! Every socket is opened from the client's base URL (`http` → `ws`,
//! `https` → `wss`) with its bearer token (`connect.rs`), then driven by a
//! reader task and a writer task (`connection.rs`): the reader dispatches
//! each server frame — pushed messages to the stream's bounded channel,
//! answers to the request waiting on that `request_id` (`requests.rs`) —
//! and the writer owns the write half. Frames are read and written in
//! `frames.rs`; the credit arithmetic is a pure struct in `credit.rs`.
//!
//! No HTTP endpoint and no policy beyond credit lives here: retries and
//! reconnects are the caller's, guided by [`Error::is_transient`](crate::Error::is_transient).

mod connect;
mod connection;
mod credit;
mod frames;
mod publisher;
mod requests;
mod subscription;
mod tail;

pub use credit::Refill;
pub use publisher::WsPublisher;
pub use subscription::{SubscribeOptions, WsAcker, WsSubscription};
pub use tail::{TailFrom, WsTail};
