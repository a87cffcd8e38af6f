//! Push subscriptions (webhooks): one worker task per subscription with
//! `push` configured leases messages exactly like a consumer (`pull` with
//! its own lease holder), POSTs them to the endpoint and settles them with
//! the answer: 2xx acks; anything else nacks under the subscription's retry
//! policy (a `Retry-After` sets the retry delay; 410 Gone dead-letters at
//! once), so attempts, backoff and dead letters work as for any consumer.
//!
//! - At most `max_in_flight` requests at once (one in stream mode, to keep
//!   partition order); `ordering: "key"` already keeps one message per key
//!   leased, so no two requests carry the same key. `rate_per_s` spaces
//!   requests evenly.
//! - While the endpoint fails, the worker pulls nothing for a pause that
//!   doubles from 100 ms to 30 s (at least the `Retry-After` asked for, up
//!   to 30 s) and resets on the first success: the backlog stays queued,
//!   nothing spins.
//! - Deliveries are signed (Standard Webhooks, `sign.rs`) and only reach
//!   addresses the SSRF guard allows (`ssrf.rs`, `deliver.rs`).
//! - The worker starts with the server or when `push` is set, is replaced
//!   (after the old one finished its requests) when `push` changes, drains
//!   and releases its leases when `push` is removed, and stops at once
//!   when the subscription or its topic is deleted or the server stops.
//!   Pause needs nothing: a paused subscription's pulls return nothing.

pub mod deliver;
pub mod sign;
pub mod ssrf;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use weir_protocol::{Message, Mode, PushConfig, ReceivedMessage};

use self::deliver::{Endpoint, Outcome, CLASSES};
use self::sign::Signer;
use super::config::{MAX_ACK_TIMEOUT_MS, MIN_ACK_TIMEOUT_MS};
use super::settle::Settle;
use super::{PullParams, Subscription};
use crate::broker::error::{BrokerError, Result};
use crate::metrics::{name_label, AGGREGATE_LABEL, METRICS, OVERFLOW_LABEL};

/// Consumer name of push pulls (stream mode owns partitions per consumer).
pub const PUSH_CONSUMER: &str = "push";
/// How long one idle pull waits before it is restarted.
/// How often a worker whose subscription another cluster node serves
/// checks whether it is served here now.
const NOT_SERVED_CHECK: Duration = Duration::from_millis(500);
const POLL_WAIT_MS: u64 = 5_000;
/// Lease time beyond the request timeout, for the settle after it.
const LEASE_SLACK_MS: u64 = 2_000;
/// Adaptive back-off while the endpoint fails: first pause and the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a replaced or removed worker waits for its requests in flight
/// before it abandons them (their messages are then delivered again).
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Lease holder ids of push workers: from 2^62, so they never meet the
/// WebSocket holders (counted from 1) or the event streams' (from 2^63).
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1 << 62);

/// Server-wide push settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Networks pushes may reach although the SSRF guard refuses them
    /// (`push_allow_networks`).
    pub allow_networks: Vec<IpNet>,
}

/// How a worker is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// Finish the requests in flight, release the leases, exit.
    Drain,
    /// Exit now (deleted, or the server stops).
    Abort,
}

/// The push worker of one subscription, if any.
#[derive(Default)]
pub struct PushSlot {
    inner: std::sync::Mutex<SlotInner>,
}

#[derive(Default)]
struct SlotInner {
    /// Set by the broker: the subscription itself and the server settings.
    attached: Option<(Weak<Subscription>, Arc<PushOptions>)>,
    running: Option<Running>,
}

struct Running {
    config: PushConfig,
    stop: watch::Sender<Stop>,
    task: Option<JoinHandle<()>>,
}

impl PushSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl Subscription {
    /// Gives the subscription the server's push settings and starts its
    /// worker when `push` is configured (call within the Tokio runtime).
    pub(crate) fn attach_push(self: &Arc<Self>, options: Arc<PushOptions>) {
        self.push.lock().attached = Some((Arc::downgrade(self), options));
        self.sync_push();
    }

    /// Starts, replaces or stops the worker to match the record (after a
    /// configuration change or a delete).
    pub(super) fn sync_push(&self) {
        let mut slot = self.push.lock();
        let Some((weak, options)) = slot.attached.clone() else {
            return;
        };
        let gone = self.is_deleted() || self.topic.is_deleted();
        let desired = if gone {
            None
        } else {
            self.record().config.push
        };
        if slot.running.as_ref().map(|r| &r.config) == desired.as_ref() {
            return;
        }
        let previous = slot.running.take().and_then(|mut r| {
            r.stop
                .send_replace(if gone { Stop::Abort } else { Stop::Drain });
            r.task.take()
        });
        let Some(config) = desired else {
            return;
        };
        let Some(sub) = weak.upgrade() else {
            return;
        };
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let worker = Worker::new(sub, config.clone(), &options, stop_rx);
        let task = tokio::spawn(worker.run(previous));
        slot.running = Some(Running {
            config,
            stop,
            task: Some(task),
        });
    }
}

/// What the delivery tasks of one worker share.
struct Shared {
    sub: Arc<Subscription>,
    endpoint: Endpoint,
    signer: Signer,
    headers: BTreeMap<String, String>,
    timeout_ms: u64,
    /// `batch.max_messages > 1`: bodies are `{"messages": [...]}`.
    batched: bool,
    limiter: Option<DefaultDirectRateLimiter>,
    labels: [String; 2],
    warned_refused: AtomicBool,
}

/// A message as pushed: the message of a read plus its attempt.
#[derive(Serialize)]
struct Pushed<'a> {
    #[serde(flatten)]
    message: &'a Message,
    attempt: u32,
}

#[derive(Serialize)]
struct PushedBatch<'a> {
    messages: Vec<Pushed<'a>>,
}

struct Worker {
    sub: Arc<Subscription>,
    config: PushConfig,
    options: Arc<PushOptions>,
    stop: watch::Receiver<Stop>,
    holder: u64,
}

/// The worker's pause while the endpoint fails.
#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    fn record(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Delivered => *self = Backoff::default(),
            // A deliberate rejection of one message: the endpoint is up.
            Outcome::Failed(f) if !f.retry => {}
            Outcome::Failed(f) => {
                let asked = f.retry_after_ms.map(Duration::from_millis);
                self.fail(asked);
            }
        }
    }

    fn fail(&mut self, asked: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let doubling = BACKOFF_FIRST.saturating_mul(1 << self.failures.min(20).saturating_sub(1));
        let pause = doubling.max(asked.unwrap_or_default()).min(BACKOFF_MAX);
        self.until = Some(Instant::now() + pause);
    }

    fn waiting(&self) -> bool {
        self.until.is_some_and(|t| t > Instant::now())
    }
}

type PullTask = JoinHandle<Result<Vec<ReceivedMessage>>>;

impl Worker {
    fn new(
        sub: Arc<Subscription>,
        config: PushConfig,
        options: &Arc<PushOptions>,
        stop: watch::Receiver<Stop>,
    ) -> Worker {
        Worker {
            sub,
            config,
            options: options.clone(),
            stop,
            holder: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn labels(&self) -> [String; 2] {
        let (topic, sub) = (self.sub.topic.name(), self.sub.name());
        [name_label(&topic).to_owned(), name_label(&sub).to_owned()]
    }

    async fn run(mut self, previous: Option<JoinHandle<()>>) {
        if let Some(previous) = previous {
            // One worker at a time: the replaced one finishes first.
            let _ = previous.await;
        }
        let labels = self.labels();
        let shared = match self.shared(labels.clone()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(topic = %self.sub.topic.name(), subscription = %self.sub.name(), error = %e, "push worker cannot start");
                return;
            }
        };
        let m = &*METRICS;
        for class in CLASSES {
            m.push_requests
                .with_label_values(&[&labels[0], &labels[1], class]);
        }
        m.push_in_flight
            .with_label_values(&[&labels[0], &labels[1]]);
        m.push_duration.with_label_values(&[&labels[0], &labels[1]]);
        tracing::info!(topic = %self.sub.topic.name(), subscription = %self.sub.name(), url = %self.config.url, "push worker started");
        let stop = self.deliver_until_stopped(&shared).await;
        if stop != Stop::Abort {
            // Leases a cancelled pull took, or requests not settled.
            if let Err(e) = self
                .sub
                .release_holder(self.holder, Some(PUSH_CONSUMER))
                .await
            {
                tracing::debug!(error = %e, "releasing the push worker's leases failed");
            }
        }
        let removed = self.sub.is_deleted()
            || self.sub.topic.is_deleted()
            || self.sub.record().config.push.is_none();
        if removed {
            forget_metrics(&labels);
        }
        tracing::info!(topic = %self.sub.topic.name(), subscription = %self.sub.name(), "push worker stopped");
    }

    fn shared(&self, labels: [String; 2]) -> std::result::Result<Shared, String> {
        let c = &self.config;
        let endpoint = Endpoint::new(
            &c.url,
            Duration::from_millis(c.timeout_ms),
            Arc::new(self.options.allow_networks.clone()),
            deliver::tls_config()?,
        )?;
        let limiter = c
            .rate_per_s
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n).allow_burst(NonZeroU32::MIN)));
        Ok(Shared {
            sub: self.sub.clone(),
            endpoint,
            signer: Signer::new(c.secret.as_deref(), c.previous_secret.as_deref()),
            headers: c.headers.clone(),
            timeout_ms: c.timeout_ms,
            batched: c.batch.max_messages > 1,
            limiter,
            labels,
            warned_refused: AtomicBool::new(false),
        })
    }

    /// The delivery loop; returns how it was stopped.
    async fn deliver_until_stopped(&mut self, shared: &Arc<Shared>) -> Stop {
        let max_in_flight = match self.sub.record().config.mode {
            Mode::Stream => 1,
            Mode::Queue => self.config.max_in_flight.max(1) as usize,
        };
        let batch = self.config.batch.max_messages.max(1) as usize;
        let mut in_flight: JoinSet<Option<Outcome>> = JoinSet::new();
        let mut pulling: Option<PullTask> = None;
        let mut backoff = Backoff::default();
        let stop = loop {
            let requested = *self.stop.borrow_and_update();
            if requested != Stop::Run {
                break requested;
            }
            if self.sub.is_deleted() || self.sub.topic.is_deleted() || self.sub.topic.is_closing() {
                break Stop::Abort;
            }
            let free = max_in_flight.saturating_sub(in_flight.len());
            // In a cluster, only the node serving the subscription pushes.
            let served = self.sub.served_here();
            if pulling.is_none() && free > 0 && !backoff.waiting() && served {
                pulling = Some(self.start_pull(free, batch));
            }
            let pause_until = backoff.until.filter(|_| backoff.waiting());
            tokio::select! {
                pulled = async {
                    match pulling.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                }, if pulling.is_some() => {
                    pulling = None;
                    match pulled {
                        Ok(Ok(messages)) => {
                            let pulled_at = Instant::now();
                            let mut messages = messages;
                            while !messages.is_empty() {
                                let rest = messages.split_off(batch.min(messages.len()));
                                let shared = shared.clone();
                                in_flight.spawn(deliver(shared, messages, pulled_at));
                                messages = rest;
                            }
                        }
                        Ok(Err(BrokerError::SubscriptionNotFound { .. } | BrokerError::TopicNotFound(_) | BrokerError::ShuttingDown)) => {
                            break Stop::Abort;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(subscription = %self.sub.name(), error = %e, "push pull failed; backing off");
                            backoff.fail(None);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "push pull task failed");
                            backoff.fail(None);
                        }
                    }
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(Some(outcome)) = done {
                        backoff.record(&outcome);
                    }
                }
                _ = async {
                    match pause_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                }, if pause_until.is_some() => {}
                _ = tokio::time::sleep(NOT_SERVED_CHECK), if !served && pulling.is_none() => {}
                changed = self.stop.changed() => {
                    // A closed channel without a stop asked: the slot is gone.
                    if changed.is_err() && *self.stop.borrow() == Stop::Run {
                        break Stop::Abort;
                    }
                }
            }
        };
        if let Some(pull) = pulling {
            // Whatever it leased carries this worker's holder id: released
            // by the caller (or, when aborting, by recovery and lease expiry).
            pull.abort();
            let _ = pull.await;
        }
        if stop == Stop::Abort {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            return stop;
        }
        // Drain: requests in flight finish and settle (for `DRAIN_MAX` at
        // most), unless an abort comes meanwhile.
        let deadline = Instant::now() + DRAIN_MAX;
        // (The slot drops the sender once it has asked for the drain.)
        let mut watching = true;
        let outcome = loop {
            tokio::select! {
                next = in_flight.join_next() => if next.is_none() { return stop },
                _ = tokio::time::sleep_until(deadline) => break stop,
                changed = self.stop.changed(), if watching => match changed {
                    Err(_) => watching = false,
                    Ok(()) if *self.stop.borrow() == Stop::Abort => break Stop::Abort,
                    Ok(()) => {}
                },
            }
        };
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
        outcome
    }

    /// Pulls up to `free` batches; with `max_wait_ms`, waits (bounded) for
    /// a first batch to fill.
    fn start_pull(&self, free: usize, batch: usize) -> PullTask {
        let sub = self.sub.clone();
        let holder = self.holder;
        let want = free
            .saturating_mul(batch)
            .min(super::MAX_PULL_MESSAGES as usize);
        let ack_timeout = sub.record().config.ack_timeout_ms;
        // Never wait so long that the first leases run out before the POST.
        let fill_ms = self.config.batch.max_wait_ms.min(ack_timeout / 2);
        tokio::spawn(async move {
            let params = |max: usize, wait_ms: u64| PullParams {
                max_messages: max,
                wait_ms,
                consumer: Some(PUSH_CONSUMER.to_owned()),
                holder: Some(holder),
            };
            let mut got = sub.pull(params(want, POLL_WAIT_MS)).await?;
            if got.is_empty() || got.len() >= batch || fill_ms == 0 {
                return Ok(got);
            }
            let deadline = Instant::now() + Duration::from_millis(fill_ms);
            while got.len() < batch {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let wait_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
                match sub.pull(params(want - got.len(), wait_ms)).await {
                    Ok(more) if !more.is_empty() => got.extend(more),
                    // Nothing more in time, or an error: send what we have.
                    _ => break,
                }
            }
            Ok(got)
        })
    }
}

/// Decrements the in-flight gauge when the request ends (or is aborted).
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Delivers one request's messages and settles them; `None` when nothing
/// was sent (every lease was lost before the request).
async fn deliver(
    shared: Arc<Shared>,
    mut batch: Vec<ReceivedMessage>,
    pulled_at: Instant,
) -> Option<Outcome> {
    let sub = &shared.sub;
    if let Some(limiter) = &shared.limiter {
        limiter.until_ready().await;
    }
    // The leases must outlive the request and its settle.
    let need = shared.timeout_ms.saturating_add(LEASE_SLACK_MS);
    let ack_timeout = sub.record().config.ack_timeout_ms;
    let elapsed = u64::try_from(pulled_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    if elapsed.saturating_add(need) > ack_timeout {
        let ids: Vec<String> = batch.iter().map(|m| m.ack_id.clone()).collect();
        let lease_ms = need.clamp(MIN_ACK_TIMEOUT_MS, MAX_ACK_TIMEOUT_MS);
        match sub
            .settle(
                &ids,
                Settle::Extend {
                    lease_ms: Some(lease_ms),
                },
            )
            .await
        {
            Ok(r) if !r.unknown.is_empty() => batch.retain(|m| !r.unknown.contains(&m.ack_id)),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "extending push leases failed");
                return None;
            }
        }
        if batch.is_empty() {
            return None;
        }
    }
    let (body, id) = body_and_id(sub.id(), &batch, shared.batched);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = shared.signer.signature(&id, timestamp, &body);
    let headers = deliver::headers(&shared.headers, &id, timestamp, signature);
    let [topic, name] = &shared.labels;
    let m = &*METRICS;
    let (outcome, elapsed) = {
        let gauge = m.push_in_flight.with_label_values(&[topic, name]);
        gauge.inc();
        let _in_flight = InFlight(&gauge);
        shared.endpoint.post(headers, body).await
    };
    m.push_requests
        .with_label_values(&[topic, name, outcome.class()])
        .inc();
    if let Some(elapsed) = elapsed {
        m.push_duration
            .with_label_values(&[topic, name])
            .observe(elapsed.as_secs_f64());
    }
    let what = match &outcome {
        Outcome::Delivered => Settle::Ack,
        Outcome::Failed(f) => {
            if f.class == "refused" && !shared.warned_refused.swap(true, Ordering::Relaxed) {
                tracing::warn!(topic = %sub.topic.name(), subscription = %sub.name(), reason = %f.reason, "push target refused by the SSRF guard; deliveries fail until `push_allow_networks` or the URL changes");
            } else {
                tracing::debug!(subscription = %sub.name(), reason = %f.reason, "push delivery failed");
            }
            Settle::Nack {
                reason: Some(f.reason.clone()),
                delay_ms: f.retry_after_ms,
                retry: f.retry,
            }
        }
    };
    let ids: Vec<String> = batch.iter().map(|m| m.ack_id.clone()).collect();
    match sub.settle(&ids, what).await {
        Ok(r) if !r.unknown.is_empty() => {
            tracing::debug!(
                unknown = r.unknown.len(),
                "push settle after the lease ended"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "push settle failed"),
    }
    Some(outcome)
}

/// The request body and its `webhook-id`. Without batching the body is the
/// message (as read, plus `attempt`) and the id names it,
/// `<subscription id>-<partition>-<offset>`: the same for every attempt,
/// so receivers can deduplicate. With batching (`max_messages > 1`) the
/// body is `{"messages": [...]}` (however many were ready) and the id is
/// the first message's plus `-b<count>`.
fn body_and_id(sub_id: u32, batch: &[ReceivedMessage], batched: bool) -> (Vec<u8>, String) {
    let pushed: Vec<Pushed<'_>> = batch
        .iter()
        .map(|m| Pushed {
            message: &m.message,
            attempt: m.attempt,
        })
        .collect();
    let (first_p, first_o) = batch
        .first()
        .map_or((0, 0), |m| (m.message.partition, m.message.offset));
    let mut id = format!("{sub_id}-{first_p}-{first_o}");
    let body = match pushed.as_slice() {
        [one] if !batched => serde_json::to_vec(one),
        _ => {
            id.push_str(&format!("-b{}", pushed.len()));
            serde_json::to_vec(&PushedBatch { messages: pushed })
        }
    };
    (body.unwrap_or_default(), id)
}

/// Removes a stopped worker's metric series (unless they are shared:
/// aggregated `_all` or overflow `_other` labels).
fn forget_metrics(labels: &[String; 2]) {
    let m = &*METRICS;
    let [topic, sub] = labels;
    if [topic, sub]
        .iter()
        .any(|l| *l == AGGREGATE_LABEL || *l == OVERFLOW_LABEL)
    {
        return;
    }
    for class in CLASSES {
        let _ = m.push_requests.remove_label_values(&[topic, sub, class]);
    }
    let _ = m.push_in_flight.remove_label_values(&[topic, sub]);
    let _ = m.push_duration.remove_label_values(&[topic, sub]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(p: u32, o: u64, attempt: u32) -> ReceivedMessage {
        ReceivedMessage {
            message: Message {
                topic: "orders".into(),
                partition: p,
                offset: o,
                timestamp: 1,
                key: Some("k".into()),
                value: serde_json::value::RawValue::from_string("{\"n\":1}".into()).ok(),
                value_b64: None,
                headers: BTreeMap::new(),
            },
            ack_id: "x".into(),
            attempt,
        }
    }

    #[test]
    fn one_message_is_the_body_a_batch_is_wrapped() {
        let (body, id) = body_and_id(7, &[received(1, 42, 2)], false);
        assert_eq!(id, "7-1-42");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"topic": "orders", "partition": 1, "offset": 42, "timestamp": 1,
                "key": "k", "value": {"n": 1}, "headers": {}, "attempt": 2})
        );
        let (body, id) = body_and_id(7, &[received(0, 1, 1), received(0, 2, 1)], true);
        assert_eq!(id, "7-0-1-b2");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);
        assert_eq!(v["messages"][1]["offset"], 2);
        let (body, id) = body_and_id(7, &[received(0, 1, 1)], true);
        assert_eq!(id, "7-0-1-b1");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"][0]["offset"], 1);
    }

    #[tokio::test]
    async fn backoff_doubles_honours_retry_after_and_resets() {
        let mut b = Backoff::default();
        let fail = |retry_after_ms| {
            Outcome::Failed(deliver::Failure {
                class: "5xx",
                reason: String::new(),
                retry_after_ms,
                retry: true,
            })
        };
        let pause = |b: &Backoff| b.until.unwrap() - Instant::now();
        b.record(&fail(None));
        assert!(pause(&b) <= BACKOFF_FIRST);
        b.record(&fail(None));
        assert!(pause(&b) > BACKOFF_FIRST);
        for _ in 0..40 {
            b.record(&fail(None));
        }
        assert!(pause(&b) <= BACKOFF_MAX && pause(&b) > BACKOFF_MAX / 2);
        b.record(&Outcome::Delivered);
        assert!(!b.waiting());
        b.record(&fail(Some(5000)));
        assert!(pause(&b) > Duration::from_secs(4));
        let mut gone = Backoff::default();
        gone.record(&Outcome::Failed(deliver::Failure {
            class: "4xx",
            reason: String::new(),
            retry_after_ms: None,
            retry: false,
        }));
        assert!(!gone.waiting());
    }
}
