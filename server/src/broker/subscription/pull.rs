//! Pull: lease messages to a consumer, long-polling until at least one is
//! available. Wakes on new durable messages (the topic's change watch), on
//! state changes (nack, seek, redrive) and on the next timer (a lease
//! expiring, a retry or delay becoming due) — never a sleep loop.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use weir_protocol::{Mode, ReceivedMessage};

use super::ack_id::{AckId, BatchAckId};
use super::read_ahead::{ReadAhead, READ_AHEAD_BYTES, READ_AHEAD_MESSAGES};
use super::state::{Delivery, FailKind, Failure, Lessee, MsgMeta};
use super::{committed, Subscription};
use crate::broker::error::{BrokerError, Result};
use crate::broker::read::{read_log, to_wire};
use crate::storage::StoredMessage;

/// Consumer name used in stream mode when a pull names none.
pub const DEFAULT_CONSUMER: &str = "default";

/// A validated pull.
#[derive(Debug, Clone)]
pub struct PullParams {
    pub max_messages: usize,
    pub wait_ms: u64,
    pub consumer: Option<String>,
    /// The socket holding the leases, so they are released when it closes.
    pub holder: Option<u64>,
}

pub fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn meta(m: &StoredMessage) -> MsgMeta {
    MsgMeta {
        offset: m.offset,
        deliver_at: m.deliver_at,
        key_hash: m.key.as_deref().map(key_hash),
    }
}

/// A leased message as read from the log, with its ack id: converted to
/// the JSON wire form only by the callers that send JSON (the binary
/// encoding takes the stored value as is, with no base64 round trip).
#[derive(Debug)]
pub struct Delivered {
    pub partition: u32,
    pub message: StoredMessage,
    pub ack_id: String,
    pub attempt: u32,
}

impl Delivered {
    pub fn into_wire(self, topic: &str) -> ReceivedMessage {
        ReceivedMessage {
            message: to_wire(topic, self.partition, self.message),
            ack_id: self.ack_id,
            attempt: self.attempt,
        }
    }
}

/// What one pull leased: the deliveries and, in queue mode when there are
/// any, the batch ack id that names all of them.
#[derive(Debug, Default)]
pub struct Pulled {
    pub delivered: Vec<Delivered>,
    pub batch_ack_id: Option<String>,
}

impl Subscription {
    /// Leases up to `max_messages`, waiting up to `wait_ms` for the first.
    pub async fn pull(&self, params: PullParams) -> Result<Vec<ReceivedMessage>> {
        let topic = self.topic.name();
        Ok(self
            .pull_deliveries(params)
            .await?
            .delivered
            .into_iter()
            .map(|d| d.into_wire(&topic))
            .collect())
    }

    /// [`Subscription::pull`], the messages as stored, with the batch ack id.
    pub async fn pull_deliveries(&self, params: PullParams) -> Result<Pulled> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(params.wait_ms);
        let mut topic_rx = self.topic.changes();
        let mut sub_rx = self.changed.subscribe();
        loop {
            if self.is_deleted() || self.topic.is_deleted() {
                return Err(self.gone());
            }
            topic_rx.borrow_and_update();
            sub_rx.borrow_and_update();
            if self.is_paused() {
                // Nothing is delivered; a resume (a state change) wakes us.
                if params.wait_ms == 0 || self.topic.is_closing() {
                    return Ok(Pulled::default());
                }
                tokio::select! {
                    _ = sub_rx.changed() => continue,
                    _ = topic_rx.changed() => continue,
                    _ = tokio::time::sleep_until(deadline) => return Ok(Pulled::default()),
                }
            }
            let (pulled, next_timer) = self.pull_once(&params).await?;
            if !pulled.delivered.is_empty() || params.wait_ms == 0 || self.topic.is_closing() {
                return Ok(pulled);
            }
            let now = self.now();
            let wake_at = match next_timer {
                Some(at) if at > now => {
                    let t = tokio::time::Instant::now() + Duration::from_millis(at - now);
                    t.min(deadline)
                }
                Some(_) => tokio::time::Instant::now(),
                None => deadline,
            };
            if tokio::time::Instant::now() >= deadline {
                return Ok(pulled);
            }
            tokio::select! {
                _ = topic_rx.changed() => {}
                _ = sub_rx.changed() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// One pass: redeliveries first, then new messages. Returns the leased
    /// messages (durable attempts) and when the next timer fires.
    async fn pull_once(&self, params: &PullParams) -> Result<(Pulled, Option<u64>)> {
        let topic_id = self.topic.id();
        let sub_id = self.id();
        let max = params.max_messages;
        let mut commits = Vec::new();
        let mut delivered: Vec<(Delivery, StoredMessage)> = Vec::new();

        // Redeliveries (and redriven messages).
        let now = self.now();
        let (mut state, mut changes) = self.lock(now).await?;
        let to = Lessee {
            holder: params.holder,
            pull: state.new_pull(),
        };
        let mode = state.mode();
        let ttl = state.config().message_ttl_ms;
        let owned = match mode {
            Mode::Stream => {
                let consumer = params.consumer.as_deref().unwrap_or(DEFAULT_CONSUMER);
                state.assign(consumer, now)
            }
            Mode::Queue => Vec::new(),
        };
        let (ready, ready_changes) = state.take_ready(now, max, to);
        changes.extend(ready_changes);
        commits.push(self.enqueue_pull(&mut state, changes).await?);
        drop(state);
        if !ready.is_empty() {
            let mut by_partition: HashMap<u32, Vec<Delivery>> = HashMap::new();
            for d in ready {
                by_partition.entry(d.partition).or_default().push(d);
            }
            for (p, ds) in by_partition {
                let offsets: Vec<u64> = ds.iter().map(|d| d.offset).collect();
                let store = self.store.clone();
                let found =
                    tokio::task::spawn_blocking(move || store.read_at(topic_id, p, &offsets))
                        .await??;
                let mut found: HashMap<u64, StoredMessage> =
                    found.into_iter().map(|m| (m.offset, m)).collect();
                let mut missing = Vec::new();
                for d in ds {
                    match found.remove(&d.offset) {
                        Some(m) => delivered.push((d, m)),
                        None => missing.push(d.offset),
                    }
                }
                if !missing.is_empty() {
                    let mut state = self.state().await?;
                    let mut changes = Vec::new();
                    for o in missing {
                        changes.extend(state.settle_missing(p, o, self.now()));
                    }
                    commits.push(self.enqueue(&mut state, changes).await?);
                }
            }
        }

        // New messages from the log.
        if delivered.len() < max {
            let mut ahead = self.scan.lock().await;
            let partitions = self.topic.partitions();
            let highs: Vec<u64> = partitions.iter().map(|p| p.committed()).collect();
            match mode {
                Mode::Queue => {
                    // Bounded: each round reads at least one message or stops.
                    for _ in 0..64 {
                        let want = max - delivered.len();
                        let plan = {
                            let mut state = self.state().await?;
                            state.plan_scan(&highs, want)
                        };
                        let Some(plan) = plan else { break };
                        let high = highs[plan.partition as usize];
                        let (messages, covered_to) = self
                            .read_range(
                                &mut ahead,
                                topic_id,
                                (plan.partition, plan.from, high),
                                plan.max,
                            )
                            .await?;
                        let metas: Vec<MsgMeta> = messages.iter().map(meta).collect();
                        let now = self.now();
                        let mut state = self.state().await?;
                        let (ds, changes) = state.classify(plan, &metas, covered_to, want, now, to);
                        commits.push(self.enqueue_pull(&mut state, changes).await?);
                        drop(state);
                        attach(&mut delivered, ds, messages);
                        if delivered.len() >= max {
                            break;
                        }
                    }
                }
                Mode::Stream => {
                    for p in owned {
                        let want = max - delivered.len();
                        if want == 0 {
                            break;
                        }
                        let high = highs.get(p as usize).copied().unwrap_or(0);
                        let plan = {
                            let state = self.state().await?;
                            state.plan_stream(p, high, want, self.now())
                        };
                        let Some(plan) = plan else { continue };
                        let (messages, covered_to) = self
                            .read_range(&mut ahead, topic_id, (p, plan.from, high), plan.max)
                            .await?;
                        let metas: Vec<MsgMeta> = messages.iter().map(meta).collect();
                        let mut state = self.state().await?;
                        let (ds, changes) =
                            state.stream_deliver(plan, &metas, covered_to, self.now());
                        commits.push(self.enqueue_pull(&mut state, changes).await?);
                        drop(state);
                        attach(&mut delivered, ds, messages);
                    }
                }
            }
        }
        if let Some(ttl) = ttl {
            // Never delivered stale: messages past their age limit are
            // dead-lettered (reason `expired`) instead.
            let now = self.now();
            let is_stale = |m: &StoredMessage| m.timestamp.saturating_add(ttl) <= now;
            let mut expired: Vec<Delivery> = Vec::new();
            if mode == Mode::Stream {
                // A partition's deliveries are in offset order: the first
                // stale one is failed (the partition rewinds to it and moves
                // past it once it is dead-lettered); the rest of that
                // partition is not handed out.
                let mut stale_parts: HashMap<u32, Delivery> = HashMap::new();
                for (d, m) in &delivered {
                    if is_stale(m) {
                        stale_parts.entry(d.partition).or_insert(*d);
                    }
                }
                delivered.retain(|(d, _)| !stale_parts.contains_key(&d.partition));
                expired.extend(stale_parts.into_values());
            } else {
                let (stale, fresh): (Vec<_>, Vec<_>) =
                    delivered.into_iter().partition(|(_, m)| is_stale(m));
                delivered = fresh;
                expired.extend(stale.into_iter().map(|(d, _)| d));
            }
            if !expired.is_empty() {
                let mut state = self.state().await?;
                let mut changes = Vec::new();
                for d in &expired {
                    let failure = Failure {
                        kind: FailKind::Expired,
                        reason: "expired".to_owned(),
                        delay_ms: None,
                        permanent: true,
                    };
                    state.nack(d.partition, d.offset, d.token, failure, now, &mut changes);
                }
                commits.push(self.enqueue(&mut state, changes).await?);
                drop(state);
                self.timer_wake.notify_one();
            }
        }
        if let (Some(consumer), Mode::Queue, false) = (&params.consumer, mode, delivered.is_empty())
        {
            self.note_consumers(
                consumer,
                delivered.iter().map(|(d, _)| (d.partition, d.offset)),
            );
        }
        let (next_timer, refills) = {
            let state = self.state().await?;
            (state.next_deadline(), state.key_refills_pending())
        };
        for rx in commits {
            committed(rx).await?;
        }
        if !delivered.is_empty() || refills {
            // New lease deadlines: the timer task recomputes its wake-up.
            // Or the scan passed parked followers whose key waited for it:
            // the timer task brings them back.
            self.timer_wake.notify_one();
        }
        // Stream mode acks are cumulative per partition already: no batch id.
        let batch_ack_id = match mode {
            Mode::Queue => BatchAckId::covering(
                sub_id,
                to.pull,
                delivered.iter().map(|(d, _)| (d.partition, d.offset)),
            )
            .map(|id| id.encode()),
            Mode::Stream => None,
        };
        let delivered = delivered
            .into_iter()
            .map(|(d, m)| Delivered {
                partition: d.partition,
                message: m,
                ack_id: AckId {
                    subscription: sub_id,
                    partition: d.partition,
                    offset: d.offset,
                    token: d.token,
                }
                .encode(),
                attempt: d.attempt,
            })
            .collect();
        let pulled = Pulled {
            delivered,
            batch_ack_id,
        };
        Ok((pulled, next_timer))
    }

    /// Reads up to `max` messages of `[from, high)` of a partition; returns
    /// them and the end of the range they cover (holes included). Served
    /// from the read-ahead when it holds the range; otherwise one read
    /// fetches several pulls' worth into it.
    async fn read_range(
        &self,
        ahead: &mut ReadAhead,
        topic: u32,
        (partition, from, high): (u32, u64, u64),
        max: usize,
    ) -> Result<(Vec<StoredMessage>, u64)> {
        if let Some(hit) = ahead.take(partition, from, max) {
            return Ok(hit);
        }
        let want = max.max(READ_AHEAD_MESSAGES);
        let messages = read_log(
            &self.store,
            topic,
            partition,
            (from, high),
            want,
            READ_AHEAD_BYTES,
        )
        .await?;
        let bytes: u64 = messages.iter().map(|m| m.stored_bytes).sum();
        // Fewer than asked and under the byte cap: the whole range was read.
        let covered_to = match messages.last() {
            Some(last) if messages.len() >= want || bytes >= READ_AHEAD_BYTES => last.offset + 1,
            _ => high,
        };
        ahead.fill(partition, from, messages, covered_to);
        Ok(ahead
            .take(partition, from, max)
            .unwrap_or((Vec::new(), covered_to)))
    }
}

fn attach(
    out: &mut Vec<(Delivery, StoredMessage)>,
    deliveries: Vec<Delivery>,
    messages: Vec<StoredMessage>,
) {
    if deliveries.is_empty() {
        return;
    }
    // Both in offset order (a scan leases what it meets, in order): one
    // merge pass pairs them.
    debug_assert!(deliveries.windows(2).all(|w| w[0].offset < w[1].offset));
    let mut messages = messages.into_iter().peekable();
    for d in deliveries {
        while messages.next_if(|m| m.offset < d.offset).is_some() {}
        if let Some(m) = messages.next_if(|m| m.offset == d.offset) {
            out.push((d, m));
        }
    }
}

/// Validates a pull request's numbers.
pub fn check_pull(max_messages: Option<u32>, wait_ms: Option<u64>) -> Result<(usize, u64)> {
    let max = max_messages.unwrap_or(super::DEFAULT_PULL_MESSAGES);
    if max == 0 || max > super::MAX_PULL_MESSAGES {
        return Err(BrokerError::invalid(
            "max_messages",
            format!(
                "`max_messages` must be between 1 and {}",
                super::MAX_PULL_MESSAGES
            ),
        ));
    }
    let wait = wait_ms.unwrap_or(0);
    if wait > crate::broker::read::MAX_WAIT_MS {
        return Err(BrokerError::invalid(
            "wait_ms",
            format!(
                "`wait_ms` must be at most {}",
                crate::broker::read::MAX_WAIT_MS
            ),
        ));
    }
    Ok((max as usize, wait))
}
