//! The consumer loop ([`Client::consume`], [`Subscriber::consume`]): pull,
//! run a handler per message with bounded concurrency, renew leases while
//! handlers run, ack or nack as the handler decided, stop on a shutdown
//! signal and report what happened.
//!
//! This module owns the pull loop, its configuration and its statistics.
//! What happens to one message is in `lease.rs`; the pull is behind the
//! trait in `api.rs`. Acks, nacks and renewals of all running handlers
//! are batched by the [`Settler`] and renewed by one keeper (`settle/`).

mod api;
mod lease;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use weir_protocol::{PullRequest, ReceivedMessage};

use crate::client::millis;
use crate::received::SettleHandle;
use crate::settle::{spawn_keeper, InHand, Renewal, Settler};
use crate::{Client, Error, IntoOutcome, RetryBackoff, Subscriber};
use api::SubscriptionApi;
use lease::Settled;

/// Lease renewals are never more frequent than this.
pub(crate) const MIN_EXTEND_EVERY: Duration = Duration::from_millis(100);
/// Pause after an empty pull that did not wait (`wait` = 0).
const IDLE_PAUSE: Duration = Duration::from_millis(200);
/// Pauses between pull attempts after transient failures (at least the
/// server's `Retry-After`).
pub(crate) const PULL_RETRY: RetryBackoff = RetryBackoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
    jitter: 0.5,
};
/// The server's most messages per pull.
pub(crate) const MAX_PULL: u32 = weir_protocol::limits::MAX_PULL_MESSAGES;

/// How [`Client::consume`] pulls and leases.
///
/// ```no_run
/// use std::time::Duration;
/// use weir_client::ConsumerConfig;
/// let config = ConsumerConfig {
///     consumer: Some("worker-1".into()),
///     concurrency: 32,
///     wait: Duration::from_secs(20),
///     lease: Some(Duration::from_secs(60)),
///     ..ConsumerConfig::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Consumer name sent with pulls; needed to own partitions in stream mode.
    pub consumer: Option<String>,
    /// Most messages per pull (default 10, 1..=1000); a pull never asks for
    /// more than there are free handler slots.
    pub max_messages: u32,
    /// Long-poll time of a pull (default 10 s, at most 60 s).
    pub wait: Duration,
    /// Handlers running at once (default 10, at least 1). In stream mode
    /// acks are cumulative per partition: use 1 to keep order.
    pub concurrency: usize,
    /// Renew each lease this often while its handler runs (at least
    /// 100 ms). `None` (default): a third of the shorter of `lease` and the
    /// subscription's `ack_timeout_ms`, read from the server at start.
    pub extend_every: Option<Duration>,
    /// Lease length asked for on renewal; `None` (default) = the
    /// subscription's `ack_timeout_ms`.
    pub lease: Option<Duration>,
    /// Stop renewing a lease after its handler has run this long (default
    /// one hour), so that a stuck handler does not hold a message forever:
    /// the message is then delivered again.
    pub max_extension: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            consumer: None,
            max_messages: 10,
            wait: Duration::from_secs(10),
            concurrency: 10,
            extend_every: None,
            lease: None,
            max_extension: Duration::from_secs(3600),
        }
    }
}

/// What a [`Client::consume`] run did.
///
/// ```no_run
/// # fn demo(stats: weir_client::ConsumerStats) {
/// println!("{} handled: {} acked, {} nacked", stats.handled, stats.acked, stats.nacked);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Messages leased by pulls.
    pub received: u64,
    /// Handlers that finished (succeeded, failed or panicked).
    pub handled: u64,
    /// Messages acked after their handler succeeded.
    pub acked: u64,
    /// Messages nacked after their handler failed, panicked or chose a nack.
    pub nacked: u64,
    /// Acks or nacks the server refused as unknown: the lease had run out
    /// and the message is (or will be) delivered again.
    pub lease_lost: u64,
    /// Acks or nacks that failed even after retries; the lease runs out.
    pub settle_failed: u64,
    /// Pulls that failed transiently and were retried.
    pub pull_errors: u64,
}

impl ConsumerStats {
    fn record(&mut self, joined: Result<Settled, JoinError>) {
        self.handled += 1;
        match joined {
            Ok(Settled::Acked) => self.acked += 1,
            Ok(Settled::Nacked) => self.nacked += 1,
            Ok(Settled::LeaseLost) => self.lease_lost += 1,
            // A lease task cannot panic; if it was aborted, its message
            // was not settled either.
            Ok(Settled::Failed) | Err(_) => self.settle_failed += 1,
        }
    }
}

impl Client {
    /// Consumes `sub` of `topic` until `shutdown` completes: pulls, runs
    /// `handler` on each message (at most `config.concurrency` at once),
    /// renews the leases of running handlers (one batched extend per
    /// period), then acks or nacks as the handler's result says (see
    /// [`IntoOutcome`]): `Ok(())` acks, `Err(e)` nacks for a retry with
    /// `e` as reason, an [`Outcome`](crate::Outcome) chooses (e.g. a
    /// delayed retry or dead-letter now). A panicking handler is nacked
    /// for a retry. Acks and nacks of concurrent handlers share requests.
    ///
    /// After `shutdown` no new pull starts (a pull in progress is dropped;
    /// messages it had leased come back after their lease), running handlers
    /// finish and are settled, then the stats are returned. Transient pull
    /// failures (server unreachable, overloaded, restarting) are retried
    /// with backoff, waiting at least the server's `Retry-After`; any other
    /// pull failure (unknown subscription, denied) ends the run with that
    /// error once running handlers are settled. Dropping the returned
    /// future instead abandons running handlers unsettled: their messages
    /// are delivered again after the lease.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{ConsumerConfig, Nack, Outcome, ReceivedMessage};
    /// let (stop, mut stopped) = tokio::sync::watch::channel(false);
    /// tokio::spawn(async move {
    ///     let _ = tokio::signal::ctrl_c().await;
    ///     let _ = stop.send(true);
    /// });
    /// let handler = |message: ReceivedMessage| async move {
    ///     if message.message.value.is_none() {
    ///         // Retrying cannot make it JSON: dead-letter it now.
    ///         let nack = Nack::dead_letter().with_reason("not JSON");
    ///         return Ok::<_, String>(Outcome::Nack(nack));
    ///     }
    ///     Ok(Outcome::Ack)
    /// };
    /// let shutdown = async move {
    ///     let _ = stopped.wait_for(|stop| *stop).await;
    /// };
    /// let stats = client
    ///     .consume("orders", "billing", ConsumerConfig::default(), handler, shutdown)
    ///     .await?;
    /// println!("acked {}, nacked {}", stats.acked, stats.nacked);
    /// # Ok(()) }
    /// ```
    pub async fn consume<F, Fut, R, S>(
        &self,
        topic: &str,
        sub: &str,
        config: ConsumerConfig,
        handler: F,
        shutdown: S,
    ) -> Result<ConsumerStats, Error>
    where
        F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoOutcome,
        S: Future<Output = ()>,
    {
        self.subscriber(topic, sub)
            .consume(config, handler, shutdown)
            .await
    }
}

impl Subscriber {
    /// [`Client::consume`] on this subscription.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::ReceivedMessage;
    /// let billing = client.subscriber("orders", "billing");
    /// let handler = |m: ReceivedMessage| async move { Ok::<_, String>(()) };
    /// let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
    /// billing.consume(Default::default(), handler, shutdown).await?;
    /// # Ok(()) }
    /// ```
    pub async fn consume<F, Fut, R, S>(
        &self,
        config: ConsumerConfig,
        handler: F,
        shutdown: S,
    ) -> Result<ConsumerStats, Error>
    where
        F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoOutcome,
        S: Future<Output = ()>,
    {
        let every = match config.extend_every {
            Some(every) => every,
            None => self.default_renewal_period(config.lease).await?,
        };
        let renewal = Renewal {
            every: every.max(MIN_EXTEND_EVERY),
            lease: config.lease,
            max_extension: config.max_extension,
        };
        run(
            self.reference().clone(),
            &config,
            renewal,
            handler,
            shutdown,
        )
        .await
    }
}

async fn run<A, F, Fut, R, S>(
    api: A,
    config: &ConsumerConfig,
    renewal: Renewal,
    handler: F,
    shutdown: S,
) -> Result<ConsumerStats, Error>
where
    A: SubscriptionApi,
    F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
    S: Future<Output = ()>,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let per_pull = config.max_messages.clamp(1, MAX_PULL) as usize;
    let settler = Settler::spawn(api.clone());
    let in_hand = Arc::new(InHand::new());
    let _keeper = spawn_keeper(in_hand.clone(), settler.clone(), renewal);
    let settle = Arc::new(SettleHandle::new(settler, Some(in_hand), renewal.lease));
    let mut leases = JoinSet::new();
    let mut stats = ConsumerStats::default();
    let mut failed_pulls = 0u32;
    tokio::pin!(shutdown);

    let ended = loop {
        while let Some(joined) = leases.try_join_next() {
            stats.record(joined);
        }
        // Pull only for free slots, so leased messages never wait for a
        // handler while their lease runs.
        let first = tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(first) = first else {
            break Ok(()); // The semaphore is never closed.
        };
        let mut held = vec![first];
        while held.len() < per_pull {
            match slots.clone().try_acquire_owned() {
                Ok(slot) => held.push(slot),
                Err(_) => break,
            }
        }
        let request = PullRequest {
            max_messages: u32::try_from(held.len()).ok(),
            wait_ms: Some(millis(config.wait)),
            consumer: config.consumer.clone(),
        };
        let pulled = tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            pulled = api.pull(&request) => pulled,
        };
        let messages = match pulled {
            Ok(messages) => {
                failed_pulls = 0;
                messages
            }
            Err(e) if e.is_transient() => {
                failed_pulls += 1;
                stats.pull_errors += 1;
                drop(held);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break Ok(()),
                    () = tokio::time::sleep(PULL_RETRY.delay_after(failed_pulls, &e)) => continue,
                }
            }
            Err(e) => break Err(e),
        };
        if messages.is_empty() && config.wait.is_zero() {
            drop(held);
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                () = tokio::time::sleep(IDLE_PAUSE) => continue,
            }
        }
        stats.received += messages.len() as u64;
        for message in messages {
            // More messages than asked for would be a server bug; they still
            // get a slot rather than being dropped.
            let slot = match held.pop() {
                Some(slot) => slot,
                None => match slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let lease = lease::process(message, handler.clone(), settle.clone(), slot);
            leases.spawn(lease);
        }
        // Slots asked for but not filled are released here.
    };
    while let Some(joined) = leases.join_next().await {
        stats.record(joined);
    }
    ended.map(|()| stats)
}

#[cfg(test)]
mod tests;
