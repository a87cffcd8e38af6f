//! `weir-client`: a typed async client for the Weir HTTP API, sharing wire
//! types with the server through `weir-protocol`.
//!
//! - [`Client`]: one method per endpoint — topics, produce, read
//!   (`client.rs`) and subscriptions: create, pull, ack, nack, extend, seek,
//!   redrive (`subscriptions.rs`); pause, resume, and the dead letters of a
//!   subscription: browse with filters, redrive, purge (`dead_letters.rs`);
//!   online backups: take one, list them (`backups.rs`).
//! - [`Subscriber`] (`client.subscriber(topic, sub)`, `subscriber.rs`): one
//!   subscription as a handle, with every subscription call and the four
//!   ways to consume it: [`Subscriber::receive`], [`Subscriber::stream`]
//!   (HTTP pull as a `Stream`, `pull_stream.rs`),
//!   [`Subscriber::subscribe_ws`] and [`Subscriber::consume`].
//! - [`Received`] (`received.rs`): a delivered message that settles itself
//!   (`ack`, `nack`, `nack_with(`[`Nack`]`)`, `in_progress`) and decodes its
//!   value (`json::<T>()`, `bytes()`). Settles of many messages share
//!   requests, and the leases of messages held by a stream are renewed in
//!   one batched extend per period (`settle/`).
//! - [`Producer`] (`client.producer(..)`): batches many `send`s into few
//!   produce requests and retries failed batches with generated
//!   idempotency ids, so a retry never stores a message twice (`producer/`).
//! - [`Client::consume`]: a consumer loop that runs a handler per message,
//!   renews leases, acks or nacks as the handler's [`Outcome`] says, and
//!   stops on a signal (`consumer/`).
//! - WebSockets (`ws/`): [`Client::subscribe_ws`] streams a subscription's
//!   messages against credit ([`WsSubscription`]: flow control by unacked
//!   messages and bytes, lease renewal, reconnect with jittered backoff),
//!   [`Client::tail_ws`] tails a topic live ([`WsTail`]),
//!   [`Client::publisher_ws`] publishes with pipelined requests
//!   ([`WsPublisher`]). Every socket pings and notices a silent peer.
//!
//! - Connecting ([`Client::builder`] → [`ClientBuilder`], `builder.rs`):
//!   a bearer token or a [`TokenProvider`], timeouts, the connection pool
//!   (or a `reqwest::Client` of your own), WebSocket keepalive, a
//!   [`MetricsHook`] (`observe.rs`; `tracing` spans with the `tracing`
//!   feature), and TLS with rustls for `https://` and `wss://` alike
//!   (`tls.rs`): the built-in web roots, or a private CA file trusted
//!   instead of them, and a client certificate for mutual TLS.
//! - Encoding ([`Encoding`], `encoding/`): JSON by default, or the binary
//!   batch encoding (`application/vnd.weir.batch`: raw value bytes, no
//!   base64) for produce requests and their results, the [`Producer`],
//!   [`WsPublisher`] frames, reads and pulls —
//!   `ClientBuilder::encoding(Encoding::Binary)`
//!   or [`Client::with_encoding`]. Either way the calls return the same
//!   types. A [`BinaryBatch`] is encoded once and sent as often as needed;
//!   [`binary`] is the codec itself.
//! - Automatic retries back off with jitter ([`RetryBackoff`],
//!   `backoff.rs`) and never come back before the server's `Retry-After`.
//!
//! Conventions: durations are [`std::time::Duration`]; `close` consumes
//! the handle it is called on (for cloneable handles it closes every
//! clone). The `cli` feature (default) builds the `weir` binary; a library
//! user can turn it off (`default-features = false`) and skip compiling
//! clap and hdrhistogram.
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
//! Consuming over a WebSocket, with messages that settle themselves:
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::Error> {
//! use futures_util::StreamExt;
//! use weir_client::{Client, Nack, SubscribeOptions};
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64 }
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let options = SubscribeOptions { max_unacked: Some(100), ..Default::default() };
//! let mut sub = client.subscriber("orders", "billing").subscribe_ws(options).await?;
//! while let Some(message) = sub.next().await {
//!     let message = message?;
//!     match message.json::<Order>() {
//!         Ok(order) => {
//!             // ... process order.id ...
//!             message.ack().await?;
//!         }
//!         Err(e) => message.nack_with(Nack::dead_letter().with_reason(e.to_string())).await?,
//!     }
//! }
//! # Ok(()) }
//! ```

mod backoff;
mod backups;
mod builder;
mod client;
mod cluster;
mod consumer;
mod dead_letters;
mod encoding;
mod error;
mod nack;
mod observe;
mod paging;
mod producer;
mod pull_stream;
mod received;
mod settle;
mod subscriber;
mod subscriptions;
mod tls;
mod token;
mod ws;

pub use backoff::RetryBackoff;
pub use backups::{BackupCreated, BackupSummary};
pub use builder::{
    ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_WS_IDLE_TIMEOUT, DEFAULT_WS_PING_INTERVAL,
};
pub use client::Client;
pub use consumer::{ConsumerConfig, ConsumerStats};
pub use encoding::{BinaryBatch, Encoding};
pub use error::Error;
pub use nack::{IntoOutcome, Nack, Outcome, MAX_REASON_BYTES};
pub use observe::{MetricsHook, Operation, OperationEvent};
pub use producer::{Delivery, Producer, ProducerConfig};
pub use pull_stream::{PullOptions, PullStream};
pub use received::Received;
pub use subscriber::Subscriber;
pub use token::TokenProvider;
/// The binary batch encoding's codec (`application/vnd.weir.batch`), from
/// `weir-protocol`: its module documentation is the byte layout.
pub use weir_protocol::binary;
pub use weir_protocol::{
    AckResponse, AddNodeRequest, AtOffsets, AtTimestamp, Backoff, BackoffSpec, CircuitBreaker,
    ClusterInfo, ClusterNode, ClusterPartition, DeadLetter, DeadLetterFilter, DeadLetterList,
    DeadLetterQuery, DeadLetterState, ErrorCode, ExtendRequest, FollowerLag, GroupInfo, Message,
    Mode, NackRequest, NodeState, Ordering, PartitionCursor, PartitionInfo, PauseRequest, Problem,
    ProduceMessage, ProduceResult, PullRequest, PullResponse, PurgeRequest, PurgeResponse,
    PushBatch, PushConfig, PushSpec, ReadResponse, ReceivedMessage, RedriveRequest,
    RedriveResponse, ResumeRequest, Retention, RetryPolicy, RetrySpec, SeekRequest, SeekTarget,
    Start, StartName, SubscriptionConfig, SubscriptionInfo, SubscriptionList, SubscriptionSpec,
    SubscriptionStats, TopicConfig, TopicInfo, TopicList, TopicSpec, TransferLeaderRequest,
};
pub use ws::{
    LeaseRenewal, Reconnect, Refill, SubscribeOptions, TailFrom, WsAcker, WsPublisher,
    WsSubscription, WsTail,
};

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
