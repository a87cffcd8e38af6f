//! HTTP pull as a `Stream` ([`Subscriber::stream`] → [`PullStream`]): a
//! background task long-polls ahead of the consumer, and the stream yields
//! self-settling [`Received`] messages whose acks, nacks and renewals are
//! batched (`settle/`).
//!
//! Flow control: the task pulls only while fewer than half of a pull's
//! messages wait unyielded, and — with the unacked limits — while the
//! messages pulled and not yet settled stay below them. Those messages
//! are held from the pull on, so their leases are renewed even while they
//! wait in the buffer.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use weir_protocol::{PullRequest, ReceivedMessage};

use crate::client::millis;
use crate::consumer::{MAX_PULL, MIN_EXTEND_EVERY, PULL_RETRY};
use crate::received::{weight, SettleHandle};
use crate::settle::{spawn_keeper, InHand, KeeperGuard, Renewal, Settler};
use crate::subscriber::SubscriptionRef;
use crate::{Error, LeaseRenewal, Received, RetryBackoff, Subscriber};

/// Pause after an empty pull that did not wait.
const IDLE_PAUSE: Duration = Duration::from_millis(200);

/// How [`Subscriber::stream`] pulls.
///
/// ```no_run
/// use std::time::Duration;
/// use weir_client::PullOptions;
/// let options = PullOptions {
///     max_messages: 50,
///     wait: Duration::from_secs(20),
///     max_unacked: Some(200),
///     ..PullOptions::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PullOptions {
    /// Consumer name sent with pulls; needed to own partitions in stream mode.
    pub consumer: Option<String>,
    /// Most messages per pull (default 10, 1..=1000); also the most pulled
    /// ahead of the consumer.
    pub max_messages: u32,
    /// Long-poll time of a pull (default 10 s, at most 60 s).
    pub wait: Duration,
    /// Most messages pulled and not yet acked or nacked (default `None`:
    /// only `max_messages` ahead of the consumer).
    pub max_unacked: Option<u32>,
    /// No pull while the messages pulled and not yet acked or nacked
    /// weigh this many bytes (value, key, headers) or more (default `None`).
    pub max_unacked_bytes: Option<u64>,
    /// Renew the leases of messages pulled and not yet settled (default:
    /// [`LeaseRenewal::default`]); `None`: never.
    pub renew: Option<LeaseRenewal>,
    /// Pauses between pulls after transient failures (default: 100 ms
    /// doubling to 5 s, jittered), at least the server's `Retry-After`.
    pub retry: RetryBackoff,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            consumer: None,
            max_messages: 10,
            wait: Duration::from_secs(10),
            max_unacked: None,
            max_unacked_bytes: None,
            renew: Some(LeaseRenewal::default()),
            retry: PULL_RETRY,
        }
    }
}

/// A subscription consumed by HTTP long polls, as a `Stream` of
/// self-settling [`Received`] messages. Transient pull failures are retried
/// with backoff (honouring `Retry-After`); any other ends the stream with
/// that error as its last item. Dropping it stops pulling: messages pulled
/// and not yet yielded are delivered again after their lease.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use futures_util::StreamExt;
/// let mut messages = client.subscriber("orders", "billing").stream(Default::default()).await?;
/// while let Some(message) = messages.next().await {
///     let message = message?;
///     println!("{}", message.message.offset);
///     message.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PullStream {
    messages: mpsc::Receiver<Result<ReceivedMessage, Error>>,
    flow: Arc<Flow>,
    settle: Arc<SettleHandle>,
    task: JoinHandle<()>,
    _keeper: Option<KeeperGuard>,
}

/// What the stream and its pulling task share.
#[derive(Debug, Default)]
struct Flow {
    /// Pulled and not yet yielded.
    buffered: AtomicU64,
    /// Notified when a message is yielded or released.
    room: Notify,
}

impl Subscriber {
    /// Consumes this subscription by HTTP long polls as a `Stream` (see
    /// [`PullStream`]). With lease renewal on (the default), reads the
    /// subscription's `ack_timeout_ms` first.
    pub async fn stream(&self, options: PullOptions) -> Result<PullStream, Error> {
        let renewal = match options.renew {
            Some(renew) => Some(Renewal {
                every: match renew.every {
                    Some(every) => every,
                    None => self.default_renewal_period(renew.lease).await?,
                }
                .max(MIN_EXTEND_EVERY),
                lease: renew.lease,
                max_extension: renew.max_extension,
            }),
            None => None,
        };
        let flow = Arc::new(Flow::default());
        let in_hand = Arc::new(InHand::with_release_hook({
            let flow = flow.clone();
            move |_, _| flow.room.notify_one()
        }));
        let per_pull = options.max_messages.clamp(1, MAX_PULL);
        let (tx, messages) = mpsc::channel(per_pull as usize);
        let puller = Puller {
            api: self.reference().clone(),
            options,
            per_pull: u64::from(per_pull),
            flow: flow.clone(),
            in_hand: in_hand.clone(),
            tx,
        };
        let task = tokio::spawn(puller.run());
        let settler = Settler::spawn(self.reference().clone());
        let keeper = renewal.map(|r| spawn_keeper(in_hand.clone(), settler.clone(), r));
        let lease = renewal.and_then(|r| r.lease);
        Ok(PullStream {
            messages,
            flow,
            settle: Arc::new(SettleHandle::new(settler, Some(in_hand), lease)),
            task,
            _keeper: keeper,
        })
    }
}

impl PullStream {
    /// Stops pulling. Messages pulled and not yet yielded are delivered
    /// again after their lease; those yielded can still be settled.
    pub async fn close(self) {
        // Dropping does it all; `close` is here for symmetry with the
        // other consumers.
        drop(self);
    }
}

impl Drop for PullStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for PullStream {
    type Item = Result<Received, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = ready!(this.messages.poll_recv(cx));
        if let Some(Ok(_)) = &item {
            this.flow.buffered.fetch_sub(1, Ordering::Relaxed);
            this.flow.room.notify_one();
        }
        Poll::Ready(item.map(|item| item.map(|m| Received::new(m, this.settle.clone()))))
    }
}

/// The pulling task.
struct Puller {
    api: SubscriptionRef,
    options: PullOptions,
    per_pull: u64,
    flow: Arc<Flow>,
    in_hand: Arc<InHand>,
    tx: mpsc::Sender<Result<ReceivedMessage, Error>>,
}

impl Puller {
    async fn run(self) {
        let mut failures = 0u32;
        loop {
            let Some(ask) = self.room().await else {
                return;
            };
            let request = PullRequest {
                max_messages: u32::try_from(ask).ok(),
                wait_ms: Some(millis(self.options.wait)),
                consumer: self.options.consumer.clone(),
            };
            let (client, topic, sub) = (&self.api.client, &self.api.topic, &self.api.name);
            let pulled = tokio::select! {
                pulled = client.pull(topic, sub, &request) => pulled,
                () = self.tx.closed() => return,
            };
            let pause = match pulled {
                Ok(messages) => {
                    failures = 0;
                    let pause = messages.is_empty() && self.options.wait.is_zero();
                    for message in messages {
                        self.in_hand
                            .hold(message.ack_id.clone(), weight(&message.message));
                        self.flow.buffered.fetch_add(1, Ordering::Relaxed);
                        if self.tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                    pause.then_some(IDLE_PAUSE)
                }
                Err(e) if e.is_transient() => {
                    failures += 1;
                    Some(self.options.retry.delay_after(failures, &e))
                }
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.tx.closed() => return,
                }
            }
        }
    }

    /// Waits until a pull may go out; how many messages it may ask for.
    /// `None` when the stream is gone.
    async fn room(&self) -> Option<u64> {
        loop {
            let buffered = self.flow.buffered.load(Ordering::Relaxed);
            let (held, held_bytes) = self.in_hand.totals();
            let unacked_room = self
                .options
                .max_unacked
                .map_or(u64::MAX, |most| u64::from(most).saturating_sub(held));
            let bytes_ok = self
                .options
                .max_unacked_bytes
                .is_none_or(|most| held_bytes < most);
            let ask = self.per_pull.saturating_sub(buffered).min(unacked_room);
            if bytes_ok && buffered <= self.per_pull / 2 && ask > 0 {
                return Some(ask);
            }
            // `notify_one` keeps a permit: a change between the check and
            // this wait is not missed.
            tokio::select! {
                () = self.flow.room.notified() => {}
                () = self.tx.closed() => return None,
            }
        }
    }
}
