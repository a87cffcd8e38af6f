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
//! and notices a silent (half-open) socket; the writer owns the write half
//! and pings. Frames are read and written in `frames.rs`; the credit
//! arithmetic is a pure struct in `credit.rs`.
//!
//! A subscription socket lives in a session (`session.rs`) that
//! reconnects after transient failures with jittered backoff and resumes
//! the stream; tails and publish sockets end with the failure, and
//! [`Error::is_transient`](crate::Error::is_transient) tells the caller
//! whether to open another.

mod connect;
mod connection;
mod credit;
mod frames;
mod publisher;
mod requests;
mod session;
mod subscription;
mod tail;

use std::time::Duration;

pub use credit::Refill;
pub use publisher::WsPublisher;
pub use subscription::{LeaseRenewal, Reconnect, SubscribeOptions, WsAcker, WsSubscription};
pub use tail::{TailFrom, WsTail};

/// Keepalive of every open socket (see
/// [`ClientBuilder::ws_ping_interval`](crate::ClientBuilder::ws_ping_interval)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    /// A ping goes out this often.
    pub ping_interval: Duration,
    /// A socket that received nothing for this long is dead.
    pub idle_timeout: Duration,
}
