//! `weir-client`: a typed async client for the Weir HTTP API, sharing wire
//! types with the server through `weir-protocol`.
//!
//! - [`Client`]: one method per endpoint — topics, produce, read
//!   (`client.rs`) and subscriptions: create, pull, ack, nack, extend, seek,
//!   redrive (`subscriptions.rs`).
//! - [`Producer`] (`client.producer(..)`): batches many `send`s into few
//!   produce requests (`producer/`).
//! - [`Client::consume`]: a consumer loop that runs a handler per message,
//!   renews leases, acks or nacks, and stops on a signal (`consumer/`).
//! - WebSockets (`ws/`): [`Client::subscribe_ws`] streams a subscription's
//!   messages against credit ([`WsSubscription`], with acks, nacks and
//!   extends confirmed once durable), [`Client::tail_ws`] tails a topic
//!   live ([`WsTail`]), [`Client::publisher_ws`] publishes with pipelined
//!   requests ([`WsPublisher`]).
//!
//! - Connecting ([`Client::builder`] → [`ClientBuilder`], `builder.rs`):
//!   a bearer token, timeouts, and TLS with rustls for `https://` and
//!   `wss://` alike (`tls.rs`): the built-in web roots, or a private CA
//!   file trusted instead of them, and a client certificate for mutual TLS.
//!
//! Errors are one [`Error`] type; server failures keep their stable
//! [`ErrorCode`] (`error.code()`), and [`Error::is_transient`] tells what is
//! worth retrying (`error/transient.rs`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::Error> {
//! use weir_client::{Client, ProduceMessage, ProduceMessageExt};
//! let client = Client::new("http://127.0.0.1:8080")?;
//! client.create_topic("orders", &Default::default()).await?;
//! let results = client
//!     .produce("orders", vec![ProduceMessage::json(&serde_json::json!({"order": 1}))?])
//!     .await?;
//! let page = client.read("orders", 0, results[0].offset, 10).await?;
//! assert_eq!(page.messages.len(), 1);
//! # Ok(()) }
//! ```
//!
//! Over TLS with a private CA and a token:
//!
//! ```no_run
//! # fn demo() -> Result<(), weir_client::Error> {
//! let client = weir_client::Client::builder("https://weir.internal:8443")
//!     .ca_file("/etc/weir/ca.pem")
//!     .token(Some("weir_...".into()))
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Consuming over a WebSocket:
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::Error> {
//! use futures_util::StreamExt;
//! use weir_client::{Client, SubscribeOptions};
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let mut sub = client
//!     .subscribe_ws("orders", "billing", SubscribeOptions::default())
//!     .await?;
//! while let Some(message) = sub.next().await {
//!     let message = message?;
//!     // ... process ...
//!     sub.ack(vec![message.ack_id]).await?;
//! }
//! # Ok(()) }
//! ```

mod builder;
mod client;
mod consumer;
mod error;
mod paging;
mod producer;
mod subscriptions;
mod tls;
mod ws;

pub use builder::{ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use client::Client;
pub use consumer::{ConsumerConfig, ConsumerStats};
pub use error::Error;
pub use producer::{Delivery, Producer, ProducerConfig};
pub use weir_protocol::{
    AckResponse, AtOffsets, AtTimestamp, Backoff, ErrorCode, ExtendRequest, Message, Mode,
    NackRequest, Ordering, PartitionCursor, Problem, ProduceMessage, ProduceResult, PullRequest,
    ReadResponse, ReceivedMessage, RedriveResponse, RetryPolicy, SeekRequest, SeekTarget, Start,
    StartName, SubscriptionConfig, SubscriptionInfo, SubscriptionList, SubscriptionSpec,
    SubscriptionStats, TopicInfo, TopicList, TopicSpec,
};
pub use ws::{Refill, SubscribeOptions, TailFrom, WsAcker, WsPublisher, WsSubscription, WsTail};

/// Extension constructors for [`ProduceMessage`].
pub trait ProduceMessageExt: Sized {
    /// A message whose value is `value` serialized as JSON.
    fn json<T: serde::Serialize>(value: &T) -> Result<Self, Error>;
    /// A message whose value is raw bytes.
    fn bytes(value: &[u8]) -> Self;
}

impl ProduceMessageExt for ProduceMessage {
    fn json<T: serde::Serialize>(value: &T) -> Result<Self, Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        Ok(ProduceMessage {
            value: Some(raw),
            ..ProduceMessage::default()
        })
    }

    fn bytes(value: &[u8]) -> Self {
        use base64::Engine;
        ProduceMessage {
            value_b64: Some(base64::engine::general_purpose::STANDARD.encode(value)),
            ..ProduceMessage::default()
        }
    }
}
