//! Consuming a subscription over its socket ([`Client::subscribe_ws`],
//! [`Subscriber::subscribe_ws`]): messages pushed against credit as a
//! `Stream` of self-settling [`Received`] messages, with acks, nacks and
//! extends confirmed by the server once durable.
//!
//! This module owns the public types, the per-subscription state shared by
//! the stream, its ackers and its session ([`Shared`]), and the settle
//! transport over the socket. Reconnecting is the session's
//! (`session.rs`), the socket's tasks are in `connection.rs`, the credit
//! arithmetic in `credit.rs`, batching and lease renewal in `settle/`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use weir_protocol::{AckResponse, ExtendRequest, NackRequest, ReceivedMessage};

use super::connect;
use super::connection::{Connection, DecodeBinary, Tagged};
use super::credit::{Credit, Refill, SharedCredit, Unacked};
use super::frames::{self, SettleKind};
use super::session::Session;
use crate::client::{encode_segment, millis, topic_path};
use crate::encoding::convert;
use crate::observe::{Operation, Target};
use crate::received::{weight, SettleHandle};
use crate::settle::{spawn_keeper, InHand, KeeperGuard, Renewal, SettleApi, Settler};
use crate::{Client, Encoding, Error, Nack, Received, RetryBackoff, Subscriber};

/// Most messages the stream's channel holds; beyond, they wait in the
/// reader's queue (bounded by the credit granted).
const MAX_CHANNEL: u32 = 1024;

/// How [`Client::subscribe_ws`] consumes.
///
/// ```no_run
/// use std::time::Duration;
/// use weir_client::{LeaseRenewal, Refill, SubscribeOptions};
/// let options = SubscribeOptions {
///     consumer: Some("worker-1".into()),
///     credit: 50,
///     refill: Refill::OnYield,
///     // At most 200 messages or 16 MiB received and not yet acked.
///     max_unacked: Some(200),
///     max_unacked_bytes: Some(16 << 20),
///     renew: Some(LeaseRenewal {
///         max_extension: Duration::from_secs(600),
///         ..LeaseRenewal::default()
///     }),
///     ..SubscribeOptions::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq)]
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
    /// Most messages yielded and not yet acked or nacked (default `None`:
    /// no limit). Under [`Refill::OnYield`], credit is granted only while
    /// there are fewer, so a consumer that processes messages
    /// concurrently holds at most this many leases.
    pub max_unacked: Option<u32>,
    /// Most bytes (value, key and headers) of messages yielded and not yet
    /// acked or nacked (default `None`: no limit). Under
    /// [`Refill::OnYield`], no credit is granted while they add up to
    /// more; credit already granted may still bring up to `credit`
    /// messages, so this is a soft limit.
    pub max_unacked_bytes: Option<u64>,
    /// Renew the leases of messages yielded and not yet settled (default:
    /// [`LeaseRenewal::default`]); `None`: never, a lease then lasts the
    /// subscription's `ack_timeout_ms`.
    pub renew: Option<LeaseRenewal>,
    /// Reconnect after a transient failure (default:
    /// [`Reconnect::default`]); `None`: the stream ends with the failure.
    pub reconnect: Option<Reconnect>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            consumer: None,
            credit: 100,
            refill: Refill::OnYield,
            max_unacked: None,
            max_unacked_bytes: None,
            renew: Some(LeaseRenewal::default()),
            reconnect: Some(Reconnect::default()),
        }
    }
}

/// Automatic lease renewal of messages a stream yielded and that are not
/// yet settled: one batched extend per period for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// Renewal period; `None` (default): a third of the shorter of `lease`
    /// and the subscription's `ack_timeout_ms`, read from the server when
    /// the stream opens.
    pub every: Option<Duration>,
    /// Lease length asked for; `None` (default): the subscription's
    /// `ack_timeout_ms`.
    pub lease: Option<Duration>,
    /// Stop renewing a message held this long (default one hour), so that
    /// a forgotten or stuck message is delivered again.
    pub max_extension: Duration,
}

impl Default for LeaseRenewal {
    fn default() -> Self {
        LeaseRenewal {
            every: None,
            lease: None,
            max_extension: Duration::from_secs(3600),
        }
    }
}

/// How a subscription socket reconnects after a transient failure (server
/// restart or shutdown, broken or half-open connection, overload): after a
/// pause from `backoff` (at least the server's `Retry-After`), again and
/// again up to `max_attempts`. Messages that were leased to the dead
/// socket and not yet yielded are dropped (the server delivers them
/// again); unused credit is granted to the new socket.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reconnect {
    /// Pauses between attempts (default: 100 ms doubling to 10 s, jittered).
    pub backoff: RetryBackoff,
    /// Failed attempts in a row before the stream ends with the last
    /// error (default `None`: never give up).
    pub max_attempts: Option<u32>,
}

/// A subscription consumed over a WebSocket: a `Stream` of the messages the
/// server pushes, leased to this socket as by a pull, each a [`Received`]
/// that settles itself (or settle by id with [`ack`](Self::ack) and
/// friends).
///
/// While the stream is open it renews the leases of the messages it
/// yielded until they are settled ([`SubscribeOptions::renew`]), limits
/// how many are unsettled ([`SubscribeOptions::max_unacked`]), pings the
/// server, and reconnects after transient failures
/// ([`SubscribeOptions::reconnect`]), including a connection that went
/// silent for the client's [`ws_idle_timeout`](crate::ClientBuilder::ws_idle_timeout).
///
/// The stream yields `Err` for an error frame about the socket and, as its
/// last item, for a failure it does not reconnect after (e.g.
/// `subscription_not_found` when the subscription is deleted, a refused
/// reconnect); then it ends. After [`close`](WsSubscription::close) it
/// just ends.
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
///     message.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsSubscription {
    messages: mpsc::Receiver<Tagged<ReceivedMessage>>,
    acker: WsAcker,
    settle: Arc<SettleHandle>,
    session: Option<JoinHandle<()>>,
    _keeper: Option<KeeperGuard>,
}

/// A cloneable handle to settle messages of a [`WsSubscription`] by ack id
/// and grant credit, for tasks that process messages concurrently (the
/// [`Received`] messages themselves settle too). It works while the
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

/// Where a subscription's socket is at.
#[derive(Debug, Clone)]
pub(crate) enum Current {
    Open(Arc<Connection>),
    Reconnecting,
    /// The session is over, for this reason.
    Ended(Error),
}

/// What the stream, its ackers, its settle task and its session share.
#[derive(Debug)]
pub(crate) struct Shared {
    current: Mutex<Current>,
    pub credit: Arc<SharedCredit>,
    pub in_hand: Arc<InHand>,
    /// Set to stop the session (close or drop of the stream).
    pub close: watch::Sender<bool>,
    pub reconnects: AtomicU64,
    client: Client,
    topic: Arc<str>,
    sub: Arc<str>,
}

impl Shared {
    pub fn set_current(&self, current: Current) {
        *self.lock() = current;
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a settle frame on the current socket and checks the answer.
    async fn settle(
        &self,
        kind: SettleKind,
        ids: usize,
        frame: impl FnOnce(String) -> Result<String, Error>,
    ) -> Result<AckResponse, Error> {
        let operation = match kind {
            SettleKind::Ack => Operation::Ack,
            SettleKind::Nack => Operation::Nack,
            SettleKind::Extend => Operation::Extend,
        };
        let target = Target {
            operation,
            topic: &self.topic,
            subscription: Some(&self.sub),
        };
        let current = self.lock().clone();
        let call = async move {
            let connection = match current {
                Current::Open(connection) => connection,
                Current::Reconnecting => {
                    return Err(Error::SocketClosed {
                        code: None,
                        reason: "reconnecting: no socket is open right now".into(),
                    })
                }
                Current::Ended(reason) => return Err(reason),
            };
            frames::settled(kind, connection.request(frame).await?)
        };
        let counted = |r: &AckResponse| usize::try_from(r.acked).unwrap_or(usize::MAX);
        self.client.observe(target, ids, counted, call).await
    }
}

impl Client {
    /// Opens a socket on subscription `sub` of `topic`
    /// (`GET /v1/topics/{topic}/subscriptions/{sub}/ws`) and grants
    /// `options.credit`; see [`Subscriber::subscribe_ws`].
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
    ///     message?.ack().await?;
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
        self.subscriber(topic, sub).subscribe_ws(options).await
    }
}

impl Subscriber {
    /// Opens a socket on this subscription and grants `options.credit`.
    /// The server then pushes messages as they become available, never
    /// more than the credit granted; see [`Refill`] for how more is
    /// granted and [`SubscribeOptions`] for flow control, lease renewal
    /// and reconnects.
    ///
    /// An unknown topic or subscription fails here, with the code of the
    /// server's refusal (`topic_not_found`, `subscription_not_found`); so
    /// does an unreachable server (only an open stream reconnects).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use futures_util::StreamExt;
    /// let mut sub = client.subscriber("orders", "billing").subscribe_ws(Default::default()).await?;
    /// while let Some(message) = sub.next().await {
    ///     let message = message?;
    ///     let order: serde_json::Value = message.json()?;
    ///     println!("{order}");
    ///     message.ack().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_ws(&self, options: SubscribeOptions) -> Result<WsSubscription, Error> {
        let renewal = match options.renew {
            Some(renew) => Some(Renewal {
                every: match renew.every {
                    Some(every) => every,
                    None => self.default_renewal_period(renew.lease).await?,
                }
                .max(crate::consumer::MIN_EXTEND_EVERY),
                lease: renew.lease,
                max_extension: renew.max_extension,
            }),
            None => None,
        };
        let client = self.client();
        let path = format!(
            "{}/subscriptions/{}/ws",
            topic_path(self.topic()),
            encode_segment(self.name())
        );
        let mut query: Vec<(String, String)> = options
            .consumer
            .iter()
            .map(|c| ("consumer".to_owned(), c.clone()))
            .collect();
        // A binary client takes its deliveries in binary frames too: a run
        // of messages per frame, raw values.
        let binary = (client.encoding() == Encoding::Binary).then(|| {
            query.push(("encoding".to_owned(), "binary".to_owned()));
            let topic = self.topic().to_owned();
            let decode: DecodeBinary<ReceivedMessage> =
                Arc::new(move |frame: &[u8]| convert::decode_pull(&topic, frame));
            decode
        });
        let socket = connect::open(client, &path, &borrowed(&query)).await?;

        let limits = Unacked {
            messages: options.max_unacked,
            bytes: options.max_unacked_bytes,
        };
        let credit = Arc::new(SharedCredit::new(Credit::new(
            options.credit,
            options.refill,
            limits,
        )));
        let in_hand = Arc::new(InHand::with_release_hook({
            let credit = credit.clone();
            move |messages, bytes| credit.released(messages, bytes)
        }));
        let (close, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            current: Mutex::new(Current::Reconnecting),
            credit,
            in_hand: in_hand.clone(),
            close,
            reconnects: AtomicU64::new(0),
            client: client.clone(),
            topic: self.topic().into(),
            sub: self.name().into(),
        });
        let (tx, messages) = mpsc::channel(options.credit.clamp(1, MAX_CHANNEL) as usize);
        let session = Session {
            client: client.clone(),
            path,
            query,
            reconnect: options.reconnect,
            shared: shared.clone(),
            tx,
            binary,
        };
        let session = session.start(socket);
        let settler = Settler::spawn(WsSettle {
            shared: shared.clone(),
        });
        let keeper = renewal.map(|r| spawn_keeper(in_hand.clone(), settler.clone(), r));
        let lease = renewal.and_then(|r| r.lease);
        Ok(WsSubscription {
            messages,
            acker: WsAcker { shared },
            settle: Arc::new(SettleHandle::new(settler, Some(in_hand), lease)),
            session: Some(session),
            _keeper: keeper,
        })
    }
}

/// `(name, value)` pairs as the connector takes them.
pub(crate) fn borrowed(query: &[(String, String)]) -> Vec<(&str, &str)> {
    query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

impl WsSubscription {
    /// Acks deliveries by id in one frame; resolves once the server
    /// confirms they are durable.
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
        // Stop taking messages: nothing may wait on a full channel.
        self.messages.close();
        self.acker.shared.close.send_replace(true);
        if let Some(session) = self.session.take() {
            let _ = session.await;
        }
    }

    /// How often the socket was replaced after a failure so far.
    ///
    /// ```no_run
    /// # fn demo(sub: &weir_client::WsSubscription) {
    /// println!("reconnected {} times", sub.reconnects());
    /// # }
    /// ```
    pub fn reconnects(&self) -> u64 {
        self.acker.shared.reconnects.load(Ordering::Relaxed)
    }
}

impl Drop for WsSubscription {
    fn drop(&mut self) {
        self.acker.shared.close.send_replace(true);
    }
}

impl Stream for WsSubscription {
    type Item = Result<Received, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let shared = &this.acker.shared;
        loop {
            let Some((generation, item)) = ready!(this.messages.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            // A message read from a socket that has since died: its lease
            // went with it, and the server delivers it again. (An error
            // still counts: it may be why the socket died.)
            if item.is_ok() && generation < shared.credit.generation() {
                continue;
            }
            let item = item.map(|message| {
                let bytes = weight(&message.message);
                shared.credit.yielded(bytes);
                shared.in_hand.hold(message.ack_id.clone(), bytes);
                Received::new(message, this.settle.clone())
            });
            return Poll::Ready(Some(item));
        }
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
        let held = ack_ids.clone();
        let settled = self
            .shared
            .settle(SettleKind::Ack, held.len(), |id| frames::ack(id, ack_ids))
            .await;
        self.release(&held);
        settled
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
        let held = request.ack_ids.clone();
        let settled = self
            .shared
            .settle(SettleKind::Nack, held.len(), |id| frames::nack(id, request))
            .await;
        self.release(&held);
        settled
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
        let ids = request.ack_ids.len();
        let renewed = self
            .shared
            .settle(SettleKind::Extend, ids, |id| frames::extend(id, request))
            .await;
        if let Ok(response) = &renewed {
            self.release(&response.unknown);
        }
        renewed
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

    /// These messages no longer count as held, however their settle went.
    fn release(&self, ack_ids: &[String]) {
        self.shared
            .in_hand
            .release_all(ack_ids.iter().map(String::as_str));
    }
}

/// The settle transport of the batching [`Settler`]: frames on the
/// current socket.
struct WsSettle {
    shared: Arc<Shared>,
}

impl SettleApi for WsSettle {
    async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        let ids = ack_ids.len();
        let frame = |id| frames::ack(id, ack_ids);
        self.shared.settle(SettleKind::Ack, ids, frame).await
    }

    async fn nack(&self, ack_ids: Vec<String>, nack: &Nack) -> Result<AckResponse, Error> {
        let request = nack.request(ack_ids);
        let ids = request.ack_ids.len();
        let frame = |id| frames::nack(id, request);
        self.shared.settle(SettleKind::Nack, ids, frame).await
    }

    async fn extend(
        &self,
        ack_ids: Vec<String>,
        lease: Option<Duration>,
    ) -> Result<AckResponse, Error> {
        let request = ExtendRequest {
            ack_ids,
            ack_timeout_ms: lease.map(millis),
        };
        let ids = request.ack_ids.len();
        let frame = |id| frames::extend(id, request);
        self.shared.settle(SettleKind::Extend, ids, frame).await
    }
}
