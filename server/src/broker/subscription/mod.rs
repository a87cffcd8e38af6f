//! Subscriptions: named, durable readers of one topic (DESIGN.md). The
//! delivery rules live in the pure state machine (`state/`); this module
//! wires it to the log and the store: it reads the ranges the state plans,
//! commits the changes it reports through the group commit — in the order
//! the state made them, by enqueueing under the state lock — and wakes
//! long polls.
//!
//! On a cluster node, a subscription of a replicated topic is served by one
//! node at a time (the replicator says which): that node claims it, loads
//! its state from the store (which the partitions' groups keep current on
//! every replica) and commits every change through the replicator. Other
//! nodes hold the record but never touch the state.

pub mod ack_id;
pub mod backoff;
#[cfg(test)]
mod commit_tests;
pub mod config;
pub mod dead_letter;
mod dead_letters;
mod holder;
mod leases;
mod manage;
mod parking;
pub mod pause;
pub mod pull;
mod pullers;
pub mod push;
mod read_ahead;
pub mod settle;
pub mod state;
mod timers;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};

use tokio::sync::{oneshot, watch, Mutex, MutexGuard, Notify};

use std::collections::BTreeMap;

use self::state::{Change, Clear, Events, State};
use super::clock::Clock;
use super::error::{BrokerError, Result};
use super::replicate::ReplicatorSlot;
use super::topic::Topic;
use crate::metrics::{name_label, METRICS};
use crate::storage::{Fence, StorageError, Store, SubEntry, SubscriptionRecord, WriteSet};

pub use pull::PullParams;
pub use weir_protocol::limits::{
    DEFAULT_PULL_MESSAGES, MAX_ACK_IDS, MAX_PULL_MESSAGES, MAX_REASON_BYTES,
};

/// One subscription: its record, its state machine and its waiters.
pub struct Subscription {
    /// `record.id`, which never changes (read on every pull and ack).
    id: u32,
    record: RwLock<SubscriptionRecord>,
    topic: Arc<Topic>,
    store: Arc<Store>,
    /// The state; also orders commits (changes are enqueued under it).
    state: Mutex<State>,
    /// Commit generation: every write set of the state is fenced with it,
    /// and a failed commit bumps it, so the state is reloaded from the
    /// store before anything else is written (memory never stays ahead of
    /// a commit that failed).
    generation: Arc<AtomicU64>,
    /// Serializes scans of the log so two pulls never read the same range;
    /// holds what the scans read ahead.
    scan: Mutex<read_ahead::ReadAhead>,
    /// Bumped on every change that may make messages deliverable.
    changed: watch::Sender<u64>,
    /// Wakes the timer task (new deadlines, jobs).
    timer_wake: Notify,
    deleted: AtomicBool,
    /// `record.paused.is_some()`, read on every pull.
    paused: AtomicBool,
    /// Who pulled each queue-mode lease, when a consumer was named (for
    /// the leases view; best effort, bounded).
    lease_consumers: std::sync::Mutex<pullers::Pullers>,
    /// Times of recent dead letters, for the circuit breaker.
    breaker_window: std::sync::Mutex<std::collections::VecDeque<u64>>,
    /// The push (webhook) worker, when `config.push` is set.
    push: push::PushSlot,
    /// The broker's clock.
    clock: Clock,
    /// The cluster's seam, when this node is part of one.
    replicator: ReplicatorSlot,
    /// The claim this node loaded the state under (0: none): a replicated
    /// subscription commits under it.
    claimed: AtomicU64,
    /// What the replicator said when the claim was made (a new value means
    /// another claim is due).
    claimed_base: AtomicU64,
}

/// A commit in flight: resolves once the changes are durable (on this
/// node's store, or committed by the partitions' groups).
pub(crate) type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

impl Subscription {
    pub(super) fn new(
        record: SubscriptionRecord,
        topic: Arc<Topic>,
        store: Arc<Store>,
        state: State,
        clock: Clock,
        replicator: ReplicatorSlot,
    ) -> Arc<Self> {
        Arc::new(Subscription {
            id: record.id,
            paused: AtomicBool::new(record.paused.is_some()),
            breaker_window: std::sync::Mutex::new(std::collections::VecDeque::new()),
            lease_consumers: std::sync::Mutex::new(pullers::Pullers::default()),
            record: RwLock::new(record),
            topic,
            store,
            state: Mutex::new(state),
            generation: Arc::new(AtomicU64::new(0)),
            scan: Mutex::new(read_ahead::ReadAhead::default()),
            changed: watch::Sender::new(0),
            timer_wake: Notify::new(),
            deleted: AtomicBool::new(false),
            push: push::PushSlot::default(),
            clock,
            replicator,
            claimed: AtomicU64::new(0),
            claimed_base: AtomicU64::new(0),
        })
    }

    pub fn record(&self) -> SubscriptionRecord {
        match self.record.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// True when this subscription dead-letters into `topic` (read under
    /// the record lock, without copying the record).
    pub fn dead_letters_into(&self, topic: &str) -> bool {
        let read = |r: &SubscriptionRecord| r.config.dead_letter_topic.as_deref() == Some(topic);
        match self.record.read() {
            Ok(r) => read(&r),
            Err(p) => read(&p.into_inner()),
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn name(&self) -> String {
        self.record().name
    }

    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Broker time now.
    fn now(&self) -> u64 {
        self.clock.now()
    }

    pub(super) async fn set_record(&self, record: SubscriptionRecord) {
        self.state.lock().await.set_config(record.config.clone());
        self.paused
            .store(record.paused.is_some(), AtomicOrdering::SeqCst);
        match self.record.write() {
            Ok(mut r) => *r = record,
            Err(p) => *p.into_inner() = record,
        }
        self.wake();
        self.sync_push();
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, AtomicOrdering::SeqCst);
        self.wake();
        self.sync_push();
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(AtomicOrdering::SeqCst)
    }

    fn gone(&self) -> BrokerError {
        if self.topic.is_deleted() {
            BrokerError::TopicNotFound(self.topic.name())
        } else {
            BrokerError::SubscriptionNotFound {
                topic: self.topic.name(),
                sub: self.name(),
            }
        }
    }

    /// Wakes long polls and the timer task.
    fn wake(&self) {
        self.wake_waiters();
        self.timer_wake.notify_one();
    }

    /// Wakes long polls (messages may have become deliverable).
    fn wake_waiters(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The cluster's seam when this subscription's topic is replicated.
    pub(super) fn replication(&self) -> Option<&Arc<dyn super::replicate::Replicator>> {
        self.replicator
            .get()
            .filter(|r| r.replicates(&self.topic.name()))
    }

    /// Whether this node may serve the subscription now (always, unless
    /// its topic is replicated and another node serves it).
    pub fn served_here(&self) -> bool {
        self.replication()
            .is_none_or(|r| r.serving(&self.topic).is_some())
    }

    /// Locks the state, reloading it from the store first when a commit
    /// built on it failed (see `generation`). A replicated subscription is
    /// first claimed (once per claim), then loaded.
    async fn state(&self) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state.lock().await;
        let generation = self.generation.load(AtomicOrdering::SeqCst);
        if let Some(replicator) = self.replication() {
            let Some(base) = replicator.serving(&self.topic) else {
                self.claimed_base.store(0, AtomicOrdering::SeqCst);
                return Err(BrokerError::Replication(format!(
                    "subscription `{}` is served by another node of the cluster now; retry",
                    self.name()
                )));
            };
            if self.claimed_base.load(AtomicOrdering::SeqCst) != base
                || state.generation != generation
            {
                self.claimed_base.store(0, AtomicOrdering::SeqCst);
                let claim = replicator.claim(&self.topic, self.id, base).await?;
                self.reload(&mut state, generation).await?;
                self.claimed.store(claim, AtomicOrdering::SeqCst);
                self.claimed_base.store(base, AtomicOrdering::SeqCst);
                tracing::info!(
                    topic = %self.topic.name(),
                    subscription = %self.name(),
                    claim,
                    "serving the subscription here"
                );
            }
            return Ok(state);
        }
        if state.generation != generation {
            self.reload(&mut state, generation).await?;
            tracing::warn!(
                topic = %self.topic.name(),
                subscription = %self.name(),
                "a commit of this subscription failed: its state was reloaded from the store"
            );
        }
        Ok(state)
    }

    /// Replaces the state by what the store holds: as after a restart,
    /// leases are forgotten (their messages are delivered again) and
    /// nothing committed is lost.
    async fn reload(&self, state: &mut State, generation: u64) -> Result<()> {
        let store = self.store.clone();
        let id = self.id;
        let (loaded, dead, hint) = tokio::task::spawn_blocking(move || {
            Ok::<_, StorageError>((
                store.load_sub_state(id)?,
                store.count_sub_dead_letters(id)?,
                store.next_parked_due(id)?,
            ))
        })
        .await?
        .map_err(map_storage)?;
        let partitions = self.topic.partitions().len() as u32;
        let mut fresh = State::load(
            id,
            state.config().clone(),
            partitions,
            loaded,
            dead,
            self.now(),
        );
        fresh.generation = generation;
        fresh.set_parked_due_hint(hint);
        fresh.set_max_tracked(state.max_tracked());
        fresh.set_ack_runs(self.replication().is_none());
        *state = fresh;
        match self.lease_consumers.lock() {
            Ok(mut m) => m.clear(),
            Err(p) => p.into_inner().clear(),
        }
        self.wake();
        Ok(())
    }

    /// Locks the state, first catching up with the topic: new partitions,
    /// retention below the floor, timers due.
    async fn lock(&self, now: u64) -> Result<(MutexGuard<'_, State>, Vec<Change>)> {
        let mut state = self.state().await?;
        let partitions = self.topic.partitions();
        state.ensure_partitions(partitions.len() as u32);
        let mut changes = state.tick(now);
        for p in &partitions {
            if p.low() > state.floor(p.id) {
                changes.extend(state.sync_low(p.id, p.low(), now));
            }
        }
        Ok((state, changes))
    }

    /// Enqueues `changes` for commit while the state lock is held (so the
    /// store sees them in the order the state made them) and records the
    /// state's events in the metrics. Await the receiver after unlocking.
    async fn enqueue(&self, state: &mut State, changes: Vec<Change>) -> Result<Option<Pending>> {
        self.enqueue_as(state, changes, false).await
    }

    /// Like `enqueue` for the changes a pull makes: when they are only
    /// delivery bookkeeping (delivered marks, attempt counts of leased
    /// messages), the pull is answered once they are written, without
    /// waiting for their sync. They survive a crash of the process; a power
    /// failure before the next sync can lose them, which only means the
    /// attempt is not counted (the message is redelivered either way).
    async fn enqueue_pull(
        &self,
        state: &mut State,
        changes: Vec<Change>,
    ) -> Result<Option<Pending>> {
        let bookkeeping = changes.iter().all(Change::is_delivery_bookkeeping);
        self.enqueue_as(state, changes, bookkeeping).await
    }

    async fn enqueue_as(
        &self,
        state: &mut State,
        changes: Vec<Change>,
        once_written: bool,
    ) -> Result<Option<Pending>> {
        self.flush_events(state.take_events());
        if changes.is_empty() {
            return Ok(None);
        }
        if let Some(replicator) = self.replication() {
            // Every change is waited for here, delivery bookkeeping too:
            // its commit is what proves this node still serves the
            // subscription (a node cut off from the others, or paused, that
            // still believes it leads must not hand out messages from a
            // state its successor has moved past).
            return Ok(Some(self.replicate(replicator, state, changes)));
        }
        let mut set = self.fenced_set(state, changes);
        if once_written {
            set.answer_once_written();
        }
        // The state already holds these changes: if this future is dropped
        // (a client went away) or the store refuses before they are queued,
        // the memory is ahead of the store and must be reloaded.
        let mut unqueued = Unqueued::new(&self.generation, state.generation);
        let rx = self.store.enqueue(set).await.map_err(map_storage)?;
        unqueued.queued();
        Ok(Some(Box::pin(async move {
            match rx.await {
                Ok(result) => result.map_err(map_storage),
                Err(_) => Err(BrokerError::ShuttingDown),
            }
        })))
    }

    /// Commits `changes` through the cluster under this node's claim. The
    /// wait runs in a task of its own, so a failure reaches the generation
    /// (the state is claimed and loaded again) even when the request that
    /// made the changes went away.
    fn replicate(
        &self,
        replicator: &Arc<dyn super::replicate::Replicator>,
        state: &State,
        changes: Vec<Change>,
    ) -> Pending {
        let claim = self.claimed.load(AtomicOrdering::SeqCst);
        let commit = replicator.commit(&self.topic, self.id, claim, changes);
        let generation = self.generation.clone();
        let expected = state.generation;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let result = commit.await;
            if result.is_err() {
                let _ = generation.compare_exchange(
                    expected,
                    expected.wrapping_add(1),
                    AtomicOrdering::SeqCst,
                    AtomicOrdering::SeqCst,
                );
            }
            let _ = tx.send(result);
        });
        Box::pin(async move { rx.await.unwrap_or(Err(BrokerError::ShuttingDown)) })
    }

    /// The write set of `changes`, fenced with the generation the state
    /// was loaded at (see `generation`).
    fn fenced_set(&self, state: &State, changes: Vec<Change>) -> WriteSet {
        let mut set = to_write_set(state.subscription, changes);
        set.fence(Fence::new(self.generation.clone(), state.generation));
        set
    }

    fn flush_events(&self, e: Events) {
        if e == Events::default() {
            return;
        }
        let (topic, sub) = (self.topic.name(), self.name());
        let (topic, sub) = (name_label(&topic), name_label(&sub));
        let labels = [topic, sub];
        let m = &*METRICS;
        for (counter, n) in [
            (&m.deliveries, e.deliveries),
            (&m.acks, e.acks),
            (&m.nacks, e.nacks),
            (&m.dead_lettered, e.dead_lettered),
        ] {
            if n > 0 {
                counter.with_label_values(&labels).inc_by(n);
            }
        }
        for (reason, n) in [
            ("nack", e.redeliveries_nack),
            ("lease_expired", e.redeliveries_expired),
            ("disconnect", e.redeliveries_disconnect),
        ] {
            if n > 0 {
                m.redeliveries
                    .with_label_values(&[topic, sub, reason])
                    .inc_by(n);
            }
        }
    }

    /// Removes this subscription's metric series (on delete).
    pub fn forget_metrics(&self) {
        crate::metrics::subscription_deleted(&self.topic.name(), &self.name());
    }
}

/// Bumps the generation on drop unless the changes were queued.
struct Unqueued<'a> {
    generation: &'a AtomicU64,
    expected: u64,
    queued: bool,
}

impl<'a> Unqueued<'a> {
    fn new(generation: &'a AtomicU64, expected: u64) -> Self {
        Unqueued {
            generation,
            expected,
            queued: false,
        }
    }

    fn queued(&mut self) {
        self.queued = true;
    }
}

impl Drop for Unqueued<'_> {
    fn drop(&mut self) {
        if !self.queued {
            let _ = self.generation.compare_exchange(
                self.expected,
                self.expected.wrapping_add(1),
                AtomicOrdering::SeqCst,
                AtomicOrdering::SeqCst,
            );
        }
    }
}

/// Waits for a commit in flight.
async fn committed(pending: Option<Pending>) -> Result<()> {
    match pending {
        None => Ok(()),
        Some(pending) => pending.await,
    }
}

pub(super) fn map_storage(e: StorageError) -> BrokerError {
    match e {
        StorageError::Stalled | StorageError::Fenced => BrokerError::Unavailable,
        StorageError::Closed => BrokerError::ShuttingDown,
        e => BrokerError::Storage(e),
    }
}

/// Translates state changes into store writes. Entry writes are merged
/// per key (the last one wins: a run of acks rewritten by every ack of a
/// pull is one write). Cursor moves of a partition are merged per commit (a
/// batch of in-order acks moves the floor once per ack): one cursor write,
/// after the entry writes, deleting the few stored entries passed (point
/// deletes; a range delete only when many are stored, to keep range
/// tombstones rare).
pub fn to_write_set(sub: u32, changes: Vec<Change>) -> WriteSet {
    let mut set = WriteSet::new();
    let mut entries: BTreeMap<(u32, u64), Option<SubEntry>> = BTreeMap::new();
    let mut cursors: BTreeMap<u32, CursorMove> = BTreeMap::new();
    let mut delivered: BTreeMap<u32, u64> = BTreeMap::new();
    for change in changes {
        match change {
            Change::Entry {
                partition,
                offset,
                entry,
            } => {
                entries.insert((partition, offset), Some(entry));
            }
            Change::DeleteEntry { partition, offset } => {
                entries.insert((partition, offset), None);
            }
            Change::Cursor {
                partition,
                from,
                to,
                clear,
            } => {
                let m = cursors.entry(partition).or_insert(CursorMove {
                    from,
                    to,
                    points: Vec::new(),
                    range: false,
                });
                m.from = m.from.min(from);
                m.to = m.to.max(to);
                match clear {
                    Clear::Nothing => {}
                    Clear::Points(points) => m.points.extend(points),
                    Clear::Range => m.range = true,
                }
            }
            Change::Reset { partition, cursor } => {
                flush_entries(sub, &mut set, &mut entries);
                flush_cursors(sub, &mut set, &mut cursors);
                set.delete_sub_partition_entries(sub, partition);
                set.put_sub_cursor(sub, partition, cursor);
            }
            Change::Dead {
                partition,
                offset,
                entry,
            } => set.put_sub_dead(sub, partition, offset, &entry),
            Change::Park { parked } => set.put_sub_parked(sub, &parked),
            Change::Unpark { parked } => set.delete_sub_parked(sub, &parked),
            Change::Delivered { partition, upto } => {
                let mark = delivered.entry(partition).or_insert(upto);
                *mark = (*mark).max(upto);
            }
        }
    }
    flush_entries(sub, &mut set, &mut entries);
    flush_cursors(sub, &mut set, &mut cursors);
    for (partition, upto) in delivered {
        set.put_sub_delivered(sub, partition, upto);
    }
    set
}

fn flush_entries(
    sub: u32,
    set: &mut WriteSet,
    entries: &mut BTreeMap<(u32, u64), Option<SubEntry>>,
) {
    for ((partition, offset), entry) in std::mem::take(entries) {
        match entry {
            Some(entry) => set.put_sub_entry(sub, partition, offset, &entry),
            None => set.delete_sub_entry(sub, partition, offset),
        }
    }
}

/// Cursor moves of one partition within one commit, merged.
struct CursorMove {
    from: u64,
    to: u64,
    points: Vec<u64>,
    range: bool,
}

fn flush_cursors(sub: u32, set: &mut WriteSet, cursors: &mut BTreeMap<u32, CursorMove>) {
    for (partition, m) in std::mem::take(cursors) {
        if m.range {
            set.delete_sub_entries(sub, partition, m.from, m.to);
        } else {
            for offset in m.points {
                set.delete_sub_entry(sub, partition, offset);
            }
        }
        set.put_sub_cursor(sub, partition, m.to);
    }
}
