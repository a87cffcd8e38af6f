//! Consuming a subscription over its socket ([`Client::subscribe_ws`]):
//! messages pushed against credit as a `Stream`, and acks, nacks and
//! extends confirmed by the server once durable.
//!
//! This module owns the public types and the credit wiring; the socket's
//! tasks are in `connection.rs`, the frames in `frames.rs`, the credit
//! arithmetic in `credit.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
use weir_protocol::{AckResponse, ExtendRequest, NackRequest, ReceivedMessage};

use super::connect;
use super::connection::{Connection, Push};
use super::credit::{Credit, Refill, SharedCredit};
use super::frames::{self, SettleKind};
use crate::client::{encode_segment, topic_path};
use crate::{Client, Error};

/// Most messages the stream's channel holds; beyond, they wait in the
/// reader's queue (bounded by the credit granted).
const MAX_CHANNEL: u32 = 1024;

/// How [`Client::subscribe_ws`] consumes.
///
/// ```no_run
/// use weir_client::{Refill, SubscribeOptions};
/// let options = SubscribeOptions {
///     consumer: Some("worker-1".into()),
///     credit: 50,
///     refill: Refill::OnYield,
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Consumer name; needed to own partitions in stream mode.
    pub consumer: Option<String>,
    /// Messages the server may send before any more credit is granted: the
    /// initial credit, and with [`Refill::OnYield`] the most messages
    /// outstanding at any time (default 100).
    pub credit: u32,
    /// How credit is granted after the initial `credit` (default
    /// [`Refill::OnYield`]).
    pub refill: Refill,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            consumer: None,
            credit: 100,
            refill: Refill::OnYield,
        }
    }
}

/// A subscription consumed over a WebSocket: a `Stream` of the messages the
/// server pushes, leased to this socket as by a pull.
///
/// The stream yields `Err` for an error frame about the socket and, as its
/// last item, for a socket the server closed or that broke (e.g.
/// [`Error::SocketClosed`] with code 1001 when the server shuts down, or
/// `subscription_not_found` when the subscription is deleted); then it
/// ends. After [`close`](WsSubscription::close) it just ends.
///
/// Closing or dropping it closes the socket: the server answers the
/// settles it already read, then releases the leases of unsettled
/// messages for redelivery.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use futures_util::StreamExt;
/// let mut sub = client
///     .subscribe_ws("orders", "billing", Default::default())
///     .await?;
/// while let Some(message) = sub.next().await {
///     let message = message?;
///     println!("{}", message.message.offset);
///     sub.ack(vec![message.ack_id]).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsSubscription {
    messages: mpsc::Receiver<Result<ReceivedMessage, Error>>,
    acker: WsAcker,
}

/// A cloneable handle to settle messages of a [`WsSubscription`] and grant
/// credit, for tasks that process messages concurrently. It works while the
/// subscription is open; afterwards its calls fail with
/// [`Error::SocketClosed`].
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use futures_util::StreamExt;
/// let mut sub = client.subscribe_ws("orders", "billing", Default::default()).await?;
/// while let Some(message) = sub.next().await {
///     let (message, acker) = (message?, sub.acker());
///     tokio::spawn(async move {
///         // ... process ...
///         let _ = acker.ack(vec![message.ack_id]).await;
///     });
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WsAcker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connection: Connection,
    credit: Arc<SharedCredit>,
}

impl Client {
    /// Opens a socket on subscription `sub` of `topic`
    /// (`GET /v1/topics/{topic}/subscriptions/{sub}/ws`) and grants
    /// `options.credit`. The server then pushes messages as they become
    /// available, never more than the credit granted; see [`Refill`] for
    /// how more is granted.
    ///
    /// An unknown topic or subscription fails here, with the code of the
    /// server's refusal (`topic_not_found`, `subscription_not_found`).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use futures_util::StreamExt;
    /// use weir_client::SubscribeOptions;
    /// let options = SubscribeOptions {
    ///     consumer: Some("worker-1".into()),
    ///     credit: 10,
    ///     ..SubscribeOptions::default()
    /// };
    /// let mut sub = client.subscribe_ws("orders", "billing", options).await?;
    /// if let Some(message) = sub.next().await {
    ///     sub.ack(vec![message?.ack_id]).await?;
    /// }
    /// sub.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_ws(
        &self,
        topic: &str,
        sub: &str,
        options: SubscribeOptions,
    ) -> Result<WsSubscription, Error> {
        let path = format!(
            "{}/subscriptions/{}/ws",
            topic_path(topic),
            encode_segment(sub)
        );
        let query: Vec<(&str, &str)> = options
            .consumer
            .as_deref()
            .map(|c| ("consumer", c))
            .into_iter()
            .collect();
        let socket = connect::open(self, &path, &query).await?;
        let capacity = options.credit.clamp(1, MAX_CHANNEL) as usize;
        let (tx, messages) = mpsc::channel(capacity);
        let credit = Arc::new(SharedCredit::new(Credit::new(
            options.credit,
            options.refill,
        )));
        let connection = Connection::start(
            socket,
            frames::decode,
            Push::Credited(tx),
            Some(credit.clone()),
        );
        Ok(WsSubscription {
            messages,
            acker: WsAcker {
                shared: Arc::new(Shared { connection, credit }),
            },
        })
    }
}

impl WsSubscription {
    /// Acks deliveries; resolves once the server confirms they are durable.
    /// In queue mode each id settles its message; in stream mode an ack is
    /// cumulative per partition. Ids that match no current delivery (the
    /// lease expired, or they were settled already) come back in `unknown`.
    ///
    /// ```no_run
    /// # async fn demo(sub: weir_client::WsSubscription, ack_id: String) -> Result<(), weir_client::Error> {
    /// let response = sub.ack(vec![ack_id]).await?;
    /// if !response.unknown.is_empty() {
    ///     eprintln!("lease lost: the message will be delivered again");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        self.acker.ack(ack_ids).await
    }

    /// Releases deliveries for redelivery per the retry policy (or after
    /// `delay_ms`); `retry: Some(false)` dead-letters them at once, with
    /// `reason`. Resolves once the server confirms.
    ///
    /// ```no_run
    /// # async fn demo(sub: weir_client::WsSubscription, ack_id: String) -> Result<(), weir_client::Error> {
    /// use weir_client::NackRequest;
    /// sub.nack(NackRequest {
    ///     ack_ids: vec![ack_id],
    ///     reason: Some("payment provider timed out".into()),
    ///     delay_ms: Some(5_000),
    ///     retry: None,
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn nack(&self, request: NackRequest) -> Result<AckResponse, Error> {
        self.acker.nack(request).await
    }

    /// Renews leases for `ack_timeout_ms` from now (default: the
    /// subscription's `ack_timeout_ms`). Resolves once the server confirms.
    ///
    /// ```no_run
    /// # async fn demo(sub: weir_client::WsSubscription, ack_id: String) -> Result<(), weir_client::Error> {
    /// use weir_client::ExtendRequest;
    /// sub.extend(ExtendRequest { ack_ids: vec![ack_id], ack_timeout_ms: Some(60_000) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, request: ExtendRequest) -> Result<AckResponse, Error> {
        self.acker.extend(request).await
    }

    /// Lets the server send `messages` more, on top of any [`Refill`]
    /// policy. Sent at once (coalesced with other grants).
    ///
    /// ```no_run
    /// # fn demo(sub: &weir_client::WsSubscription) {
    /// sub.add_credit(10);
    /// # }
    /// ```
    pub fn add_credit(&self, messages: u32) {
        self.acker.add_credit(messages);
    }

    /// A cloneable handle to ack, nack, extend and grant credit from other
    /// tasks.
    ///
    /// ```no_run
    /// # fn demo(sub: &weir_client::WsSubscription) {
    /// let acker = sub.acker();
    /// tokio::spawn(async move { acker.add_credit(1) });
    /// # }
    /// ```
    pub fn acker(&self) -> WsAcker {
        self.acker.clone()
    }

    /// Closes the socket and waits (a few seconds at most) for the server
    /// to close its side. The server first answers the acks, nacks and
    /// extends it has read, then releases the leases of messages left
    /// unsettled; they are delivered again.
    ///
    /// ```no_run
    /// # async fn demo(sub: weir_client::WsSubscription) {
    /// sub.close().await;
    /// # }
    /// ```
    pub async fn close(mut self) {
        // Stop taking messages: a reader waiting on a full channel
        // must not hold up the close.
        self.messages.close();
        self.acker.shared.connection.close().await;
    }
}

impl Drop for WsSubscription {
    fn drop(&mut self) {
        self.acker.shared.connection.start_close();
    }
}

impl Stream for WsSubscription {
    type Item = Result<ReceivedMessage, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.messages.poll_recv(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            this.acker.shared.credit.yielded();
        }
        polled
    }
}

impl WsAcker {
    /// [`WsSubscription::ack`] from another task.
    ///
    /// ```no_run
    /// # async fn demo(acker: weir_client::WsAcker, ack_id: String) -> Result<(), weir_client::Error> {
    /// let response = acker.ack(vec![ack_id]).await?;
    /// println!("{} acked", response.acked);
    /// # Ok(()) }
    /// ```
    pub async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        self.settle(SettleKind::Ack, |id| frames::ack(id, ack_ids))
            .await
    }

    /// [`WsSubscription::nack`] from another task.
    ///
    /// ```no_run
    /// # async fn demo(acker: weir_client::WsAcker, ack_id: String) -> Result<(), weir_client::Error> {
    /// use weir_client::NackRequest;
    /// acker.nack(NackRequest { ack_ids: vec![ack_id], ..Default::default() }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn nack(&self, request: NackRequest) -> Result<AckResponse, Error> {
        self.settle(SettleKind::Nack, |id| frames::nack(id, request))
            .await
    }

    /// [`WsSubscription::extend`] from another task.
    ///
    /// ```no_run
    /// # async fn demo(acker: weir_client::WsAcker, ack_id: String) -> Result<(), weir_client::Error> {
    /// use weir_client::ExtendRequest;
    /// acker.extend(ExtendRequest { ack_ids: vec![ack_id], ack_timeout_ms: None }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, request: ExtendRequest) -> Result<AckResponse, Error> {
        self.settle(SettleKind::Extend, |id| frames::extend(id, request))
            .await
    }

    /// [`WsSubscription::add_credit`] from another task.
    ///
    /// ```no_run
    /// # fn demo(acker: weir_client::WsAcker) {
    /// acker.add_credit(5);
    /// # }
    /// ```
    pub fn add_credit(&self, messages: u32) {
        self.shared.credit.add(messages);
    }

    async fn settle(
        &self,
        kind: SettleKind,
        frame: impl FnOnce(String) -> Result<String, Error>,
    ) -> Result<AckResponse, Error> {
        let reply = self.shared.connection.request(frame).await?;
        frames::settled(kind, reply)
    }
}
