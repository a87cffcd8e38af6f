//! The delivery state machine of one subscription: pure, with time passed
//! in. It decides what to deliver, tracks leases, acks, retries and dead
//! letters, and reports every durable change as a [`Change`] for the caller
//! to commit. It never reads the log itself: the caller reads the ranges it
//! plans (`plan_scan`, `plan_stream`) and hands the message metadata back.
//!
//! State is sparse (DESIGN.md): per partition a floor (every offset below it
//! is settled), the settled offsets above it as ranges, and entries only for
//! messages that are leased, waiting (retry backoff or delay), ready for
//! redelivery, held back by key ordering, being dead-lettered, or redriven.
//! Timers live in one deadline heap.

mod holder;
mod leases;
pub mod parked;
mod queue;
mod ranges;
mod stream;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasher;

use weir_protocol::{Mode, Ordering, SubscriptionConfig};

use super::backoff::backoff_ms;
use crate::storage::{EntryState, LoadedSubState, Parked, SubEntry};
pub use ranges::RangeSet;

/// Most unsettled entries a queue subscription tracks; the scan of new
/// messages pauses while this many are leased, waiting or held back.
pub const MAX_TRACKED: usize = 100_000;
/// Most messages of one partition in flight in stream mode.
pub const MAX_STREAM_IN_FLIGHT: u64 = 10_000;

/// Metadata of one message, read from the log by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgMeta {
    pub offset: u64,
    /// Not deliverable before (queue mode); 0 = no delay.
    pub deliver_at: u64,
    /// Hash of the key, for key ordering.
    pub key_hash: Option<u64>,
}

/// A durable change for the caller to commit (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Save one message's state.
    Entry {
        partition: u32,
        offset: u64,
        entry: SubEntry,
    },
    /// Forget one message's state.
    DeleteEntry { partition: u32, offset: u64 },
    /// The floor moved from `from` to `to`; `clear` names the stored
    /// entries in between (all settled) to delete.
    Cursor {
        partition: u32,
        from: u64,
        to: u64,
        clear: Clear,
    },
    /// Seek: forget every entry of the partition, set the cursor.
    Reset { partition: u32, cursor: u64 },
    /// Every offset of the partition below `upto` was delivered at least
    /// once (written with the pull that first delivers them).
    Delivered { partition: u32, upto: u64 },
    /// Park a message on disk (see `parked.rs`).
    Park { parked: Parked },
    /// Delete a parked message's record (it is back in memory, or gone).
    Unpark { parked: Parked },
    /// Record a dead letter (for redrive).
    Dead {
        partition: u32,
        offset: u64,
        entry: SubEntry,
    },
}

/// Which stored entries a cursor move deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clear {
    /// None are stored in the range (the common case: in-order acks of
    /// first deliveries write nothing per message).
    Nothing,
    /// These few offsets.
    Points(Vec<u64>),
    /// Many: delete the whole range.
    Range,
}

/// Above this many stored entries, a cursor move deletes its range at once.
const MAX_POINT_DELETES: usize = 256;

/// One delivery handed to a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub offset: u64,
    pub attempt: u32,
    pub token: u64,
}

/// Why a delivery failed (bounded, for metrics labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Nack,
    LeaseExpired,
    Disconnect,
    /// Older than the subscription's `message_ttl_ms` when met (always
    /// permanent: dead-lettered, never redelivered).
    Expired,
}

impl FailKind {
    pub fn label(self) -> &'static str {
        match self {
            FailKind::Nack => "nack",
            FailKind::LeaseExpired => "lease_expired",
            FailKind::Disconnect => "disconnect",
            FailKind::Expired => "expired",
        }
    }
}

/// A message to copy to the dead-letter topic and then settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterJob {
    pub partition: u32,
    pub offset: u64,
    pub attempts: u32,
    pub reason: String,
}

/// Counters of what happened since the caller last took them (metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    pub deliveries: u64,
    pub acks: u64,
    pub nacks: u64,
    pub redeliveries_nack: u64,
    pub redeliveries_expired: u64,
    pub redeliveries_disconnect: u64,
    pub dead_lettered: u64,
}

/// What a failure leads to.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailKind,
    pub reason: String,
    /// Overrides the backoff.
    pub delay_ms: Option<u64>,
    /// Dead-letter at once.
    pub permanent: bool,
}

impl Failure {
    pub fn of(kind: FailKind) -> Failure {
        Failure {
            kind,
            reason: kind.label().to_owned(),
            delay_ms: None,
            permanent: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Loaded from the store above the floor, not yet met by the scan.
    Unscanned,
    /// Deliverable now (in `ready`).
    Ready,
    /// Leased to a consumer.
    Leased { token: u64, deadline: u64 },
    /// Waiting for `due_at` (retry backoff or delayed message).
    Waiting,
    /// Behind an earlier message of the same key.
    KeyBlocked,
    /// Being copied to the dead-letter topic.
    DeadLettering,
}

#[derive(Debug, Clone)]
struct Entry {
    status: Status,
    /// Deliveries so far.
    attempts: u32,
    due_at: u64,
    key: Option<u64>,
    reason: String,
    /// Who holds the lease (for disconnects), if a socket.
    holder: Option<u64>,
}

impl Entry {
    fn durable(&self) -> SubEntry {
        SubEntry {
            state: EntryState::Pending,
            attempts: self.attempts,
            due_at: self.due_at,
            reason: self.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// A queue lease (entry) ends.
    Lease,
    /// A waiting entry becomes due.
    Due,
    /// A stream partition's in-flight run ends.
    StreamLease,
    /// A stream partition's owner goes idle.
    Owner,
    /// A stream partition's head may be retried.
    HeadDue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: u64,
    kind: TimerKind,
    partition: u32,
    offset: u64,
    token: u64,
}

/// Key ordering bookkeeping of one key.
#[derive(Debug, Default)]
struct KeyState {
    /// The message currently holding the key (leased, waiting or ready).
    holder: Option<(u32, u64)>,
    /// Messages behind it, in offset order.
    queue: VecDeque<(u32, u64)>,
    /// Followers parked on disk (after those in `queue`).
    parked: u64,
}

/// Per-partition state.
#[derive(Debug, Default)]
struct Part {
    /// Every offset below is settled.
    floor: u64,
    /// Queue: first offset never classified. Stream: next offset to deliver.
    next: u64,
    /// Settled offsets at or above the floor.
    settled: RangeSet,
    entries: BTreeMap<u64, Entry>,
    /// Offsets with an entry in the store (so cursor moves delete exactly
    /// those, usually none, instead of writing range tombstones).
    persisted: BTreeSet<u64>,
    /// Offsets below were delivered at least once (the durable mark).
    delivered: u64,
    /// Messages of this partition parked on disk by due time.
    parked_due: u64,
    /// Loaded from the store: offsets in `[floor, interrupted)` with no
    /// entry were delivered before the restart without an outcome, so that
    /// delivery counts as an attempt when they are met again.
    interrupted: u64,
    stream: stream::StreamPart,
}

/// The state machine of one subscription.
pub struct State {
    pub subscription: u32,
    /// The owner's commit generation this memory matches (see
    /// `storage::Fence`): set by the owner when it (re)loads the state.
    pub generation: u64,
    config: SubscriptionConfig,
    parts: Vec<Part>,
    timers: BinaryHeap<Reverse<Timer>>,
    ready: BTreeSet<(u32, u64)>,
    keys: HashMap<u64, KeyState>,
    /// Entries tracked in memory (all statuses); bounds scans (`MAX_TRACKED`).
    leased: u64,
    jobs: Vec<DeadLetterJob>,
    events: Events,
    pub dead_letters: u64,
    pub expired_by_retention: u64,
    consumers: HashMap<String, u64>,
    tokens: RandomState,
    token_counter: u64,
    /// Draws for jitter, from the same keyed hash.
    jitter_counter: u64,
    /// Next partition a queue scan starts with (fairness).
    scan_start: u32,
    /// Bound of `leased` for scans (`MAX_TRACKED`; lower in tests).
    max_tracked: u64,
    /// Earliest due time of the messages parked by time (a hint).
    parked_due_hint: Option<u64>,
    /// Keys with followers parked while nothing holds them.
    key_refills: BTreeSet<u64>,
    /// Followers waiting in memory behind their keys (all keys).
    key_queued: u64,
}

impl State {
    /// A new subscription whose partitions start at `cursors`.
    pub fn new(subscription: u32, config: SubscriptionConfig, cursors: &[u64]) -> State {
        let mut state = State {
            subscription,
            config,
            parts: Vec::new(),
            timers: BinaryHeap::new(),
            ready: BTreeSet::new(),
            keys: HashMap::new(),
            leased: 0,
            jobs: Vec::new(),
            events: Events::default(),
            dead_letters: 0,
            expired_by_retention: 0,
            consumers: HashMap::new(),
            tokens: RandomState::new(),
            token_counter: 0,
            jitter_counter: 0,
            scan_start: 0,
            max_tracked: MAX_TRACKED as u64,
            generation: 0,
            parked_due_hint: None,
            key_refills: BTreeSet::new(),
            key_queued: 0,
        };
        for &c in cursors {
            let mut part = Part {
                floor: c,
                next: c,
                ..Part::default()
            };
            part.stream.token = state.next_token();
            state.parts.push(part);
        }
        state
    }

    /// Rebuilds the state from the store (startup). Leases in flight at the
    /// crash count as expired when their messages are next met.
    pub fn load(
        subscription: u32,
        config: SubscriptionConfig,
        partitions: u32,
        loaded: LoadedSubState,
        dead_letters: u64,
        now: u64,
    ) -> State {
        let mut cursors = vec![0u64; partitions as usize];
        for (p, c) in &loaded.cursors {
            if let Some(slot) = cursors.get_mut(*p as usize) {
                *slot = *c;
            }
        }
        let mut state = State::new(subscription, config, &cursors);
        state.dead_letters = dead_letters;
        for (p, mark) in &loaded.delivered {
            if let Some(part) = state.parts.get_mut(*p as usize) {
                part.delivered = *mark;
                part.interrupted = *mark;
            }
        }
        for (p, n) in &loaded.parked.due {
            if let Some(part) = state.parts.get_mut(*p as usize) {
                part.parked_due = *n;
            }
        }
        for (key, n) in &loaded.parked.keys {
            state.keys.entry(*key).or_default().parked = *n;
            state.key_refills.insert(*key);
        }
        if state.key_ordering() {
            for (key, p, o) in &loaded.parked.holders {
                // Its followers wait until it is back and settled.
                state.keys.entry(*key).or_default().holder = Some((*p, *o));
                state.key_refills.remove(key);
            }
        }
        for (p, offset, stored) in loaded.entries {
            let Some(part) = state.parts.get_mut(p as usize) else {
                continue;
            };
            if offset < part.floor && stored.state != EntryState::Pending {
                // Settled below the cursor: nothing to deliver (a leftover
                // the cursor move did not delete; harmless).
                continue;
            }
            part.persisted.insert(offset);
            if offset < part.floor {
                // Redriven: deliverable again, attempts reset.
                part.entries.insert(
                    offset,
                    Entry {
                        status: Status::Ready,
                        attempts: stored.attempts,
                        due_at: 0,
                        key: None,
                        reason: stored.reason,
                        holder: None,
                    },
                );
                state.ready.insert((p, offset));
                continue;
            }
            match stored.state {
                EntryState::Acked
                | EntryState::DeadLettered
                | EntryState::Redriven
                | EntryState::Purged => part.settled.insert(offset, offset + 1),
                EntryState::Pending | EntryState::DeadLettering => {
                    if state.config.mode == Mode::Stream {
                        state.load_stream_head(p, offset, &stored, now);
                    } else {
                        // A last failure whose copy may not have happened
                        // is dead-lettered now (the copy and the settle are
                        // one write, so it happens exactly once). Other
                        // entries wait for the scan (it learns their key).
                        // A delivery of its last allowed attempt was cut by
                        // the restart: it is not delivered again.
                        let used_up = stored.state == EntryState::Pending
                            && stored.attempts > 0
                            && state.exhausted(stored.attempts);
                        let mut stored = stored;
                        if used_up {
                            stored.reason = "delivery interrupted by a server restart".to_owned();
                        }
                        let dead = stored.state == EntryState::DeadLettering || used_up;
                        let status = if dead {
                            state.jobs.push(DeadLetterJob {
                                partition: p,
                                offset,
                                attempts: stored.attempts,
                                reason: stored.reason.clone(),
                            });
                            Status::DeadLettering
                        } else {
                            Status::Unscanned
                        };
                        let part = &mut state.parts[p as usize];
                        part.entries.insert(
                            offset,
                            Entry {
                                status,
                                attempts: stored.attempts,
                                due_at: stored.due_at,
                                key: None,
                                reason: stored.reason,
                                holder: None,
                            },
                        );
                    }
                }
            }
        }
        for p in 0..state.parts.len() {
            state.advance_floor(p as u32, &mut Vec::new());
        }
        state.leased = state.count_tracked();
        state
    }

    /// The tracking bound.
    pub fn max_tracked(&self) -> u64 {
        self.max_tracked
    }

    /// Sets the tracking bound (`max_unsettled_per_subscription`).
    pub fn set_max_tracked(&mut self, n: u64) {
        self.max_tracked = n.max(1);
    }

    fn count_tracked(&self) -> u64 {
        self.parts.iter().map(|p| p.entries.len() as u64).sum()
    }

    pub fn config(&self) -> &SubscriptionConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: SubscriptionConfig) {
        self.config = config;
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    pub fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    /// Adds partitions up to `count` (topics only grow); new ones start at 0.
    pub fn ensure_partitions(&mut self, count: u32) {
        while self.parts.len() < count as usize {
            let token = self.next_token();
            let mut part = Part::default();
            part.stream.token = token;
            self.parts.push(part);
        }
    }

    pub fn floor(&self, partition: u32) -> u64 {
        self.parts.get(partition as usize).map_or(0, |p| p.floor)
    }

    /// Takes the dead-letter jobs to run.
    pub fn take_jobs(&mut self) -> Vec<DeadLetterJob> {
        std::mem::take(&mut self.jobs)
    }

    /// Takes the event counters.
    pub fn take_events(&mut self) -> Events {
        std::mem::take(&mut self.events)
    }

    /// When the next timer fires, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse(t)| t.at)
    }

    fn next_token(&mut self) -> u64 {
        self.token_counter += 1;
        // A keyed hash (SipHash with a random per-process key) of a counter:
        // unpredictable to clients, never zero.
        self.tokens.hash_one(self.token_counter).max(1)
    }

    fn jitter_draw(&mut self) -> f64 {
        self.jitter_counter += 1;
        let h = self.tokens.hash_one((u64::MAX, self.jitter_counter));
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    fn backoff(&mut self, attempts: u32) -> u64 {
        let draw = self.jitter_draw();
        backoff_ms(&self.config.retry.backoff, attempts.max(1), draw)
    }

    /// When a failed delivery is retried (the nack's override, else the
    /// backoff), counting the redelivery by reason.
    fn schedule_retry(&mut self, failure: &Failure, attempts: u32, now: u64) -> u64 {
        let delay = match failure.delay_ms {
            Some(d) => d,
            None => self.backoff(attempts),
        };
        match failure.kind {
            FailKind::Nack => self.events.redeliveries_nack += 1,
            FailKind::LeaseExpired => self.events.redeliveries_expired += 1,
            FailKind::Disconnect => self.events.redeliveries_disconnect += 1,
            FailKind::Expired => {}
        }
        now.saturating_add(delay)
    }

    fn exhausted(&self, attempts: u32) -> bool {
        self.config
            .retry
            .max_attempts
            .is_some_and(|m| attempts >= m)
    }

    fn push_timer(&mut self, at: u64, kind: TimerKind, partition: u32, offset: u64, token: u64) {
        self.timers.push(Reverse(Timer {
            at,
            kind,
            partition,
            offset,
            token,
        }));
        self.compact_timers();
    }

    /// Timers are removed lazily (an acked lease's timer stays until it
    /// would fire). When stale ones dominate the heap, drop them so memory
    /// follows the messages in flight, not the ack rate.
    fn compact_timers(&mut self) {
        let live_bound = 4 * (self.leased as usize + 3 * self.parts.len()) + 4096;
        if self.timers.len() <= live_bound {
            return;
        }
        let timers = std::mem::take(&mut self.timers);
        let kept: Vec<Reverse<Timer>> = timers
            .into_vec()
            .into_iter()
            .filter(|Reverse(t)| self.timer_is_live(t))
            .collect();
        self.timers = BinaryHeap::from(kept);
    }

    fn timer_is_live(&self, t: &Timer) -> bool {
        match t.kind {
            TimerKind::Lease => self.entry(t.partition, t.offset).is_some_and(|e| {
                e.status
                    == Status::Leased {
                        token: t.token,
                        deadline: t.at,
                    }
            }),
            TimerKind::Due => self
                .entry(t.partition, t.offset)
                .is_some_and(|e| e.due_at == t.at),
            TimerKind::HeadDue => self
                .parts
                .get(t.partition as usize)
                .is_some_and(|p| p.stream.head_due == t.at),
            // At most one pending per partition (flags), and they clear
            // their flag when they fire: keep them.
            TimerKind::StreamLease | TimerKind::Owner => true,
        }
    }

    /// Timers held (live or stale), for tests and metrics.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Fires every timer due at `now`: expired leases fail, waiting
    /// messages become ready, idle stream owners lose their partitions.
    pub fn tick(&mut self, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some(Reverse(t)) = self.timers.peek().copied() {
            if t.at > now {
                break;
            }
            self.timers.pop();
            match t.kind {
                TimerKind::Lease => {
                    let valid = self.entry(t.partition, t.offset).is_some_and(|e| {
                        e.status
                            == Status::Leased {
                                token: t.token,
                                deadline: t.at,
                            }
                    });
                    if valid {
                        self.fail_entry(
                            t.partition,
                            t.offset,
                            Failure::of(FailKind::LeaseExpired),
                            now,
                            &mut changes,
                        );
                    }
                }
                TimerKind::Due => {
                    let valid = self
                        .entry(t.partition, t.offset)
                        .is_some_and(|e| e.status == Status::Waiting && e.due_at == t.at);
                    if valid {
                        self.make_ready(t.partition, t.offset);
                    }
                }
                TimerKind::StreamLease | TimerKind::Owner | TimerKind::HeadDue => {
                    self.stream_timer(t, now, &mut changes)
                }
            }
        }
        changes
    }

    fn entry(&self, partition: u32, offset: u64) -> Option<&Entry> {
        self.parts.get(partition as usize)?.entries.get(&offset)
    }

    fn entry_mut(&mut self, partition: u32, offset: u64) -> Option<&mut Entry> {
        self.parts
            .get_mut(partition as usize)?
            .entries
            .get_mut(&offset)
    }

    fn make_ready(&mut self, partition: u32, offset: u64) {
        if let Some(e) = self.entry_mut(partition, offset) {
            e.status = Status::Ready;
            e.holder = None;
            self.ready.insert((partition, offset));
        }
    }

    /// Leases an entry (ready or freshly scanned) to a consumer. Every
    /// delivery is counted durably with the pull: a first delivery by the
    /// partition's delivered-up-to mark, a redelivery by its entry. A
    /// message whose attempts a crash used up is dead-lettered instead.
    fn lease(
        &mut self,
        partition: u32,
        offset: u64,
        now: u64,
        holder: Option<u64>,
        changes: &mut Vec<Change>,
    ) -> Option<Delivery> {
        let before = self.entry(partition, offset)?.attempts;
        if before > 0 && self.exhausted(before) {
            self.ready.remove(&(partition, offset));
            let failure = Failure {
                kind: FailKind::Disconnect,
                reason: "delivery interrupted by a server restart".to_owned(),
                delay_ms: None,
                permanent: true,
            };
            self.fail_entry(partition, offset, failure, now, changes);
            return None;
        }
        let token = self.next_token();
        let deadline = now + self.config.ack_timeout_ms;
        let e = self.entry_mut(partition, offset)?;
        e.attempts = e.attempts.saturating_add(1);
        e.due_at = 0;
        e.status = Status::Leased { token, deadline };
        e.holder = holder;
        let attempt = e.attempts;
        let durable = e.durable();
        self.ready.remove(&(partition, offset));
        // A first delivery above the mark moves the mark; any other (a
        // redelivery, or a message with a stored entry) writes its entry.
        let stored = self
            .parts
            .get(partition as usize)
            .is_some_and(|p| p.persisted.contains(&offset));
        if before == 0 && !stored {
            if let Some(part) = self.parts.get_mut(partition as usize) {
                if offset >= part.delivered {
                    part.delivered = offset + 1;
                    changes.push(Change::Delivered {
                        partition,
                        upto: offset + 1,
                    });
                }
            }
        } else {
            self.persist(partition, offset, durable, changes);
        }
        self.push_timer(deadline, TimerKind::Lease, partition, offset, token);
        self.events.deliveries += 1;
        Some(Delivery {
            partition,
            offset,
            attempt,
            token,
        })
    }

    /// Leases up to `max` ready messages (redeliveries first, by offset).
    pub fn take_ready(
        &mut self,
        now: u64,
        max: usize,
        holder: Option<u64>,
    ) -> (Vec<Delivery>, Vec<Change>) {
        let picked: Vec<(u32, u64)> = self.ready.iter().take(max).copied().collect();
        let mut out = Vec::with_capacity(picked.len());
        let mut changes = Vec::new();
        for (p, o) in picked {
            if let Some(d) = self.lease(p, o, now, holder, &mut changes) {
                out.push(d);
            }
        }
        (out, changes)
    }

    /// Settles one message (ack or dead letter): drops its entry, releases
    /// its key, advances the floor.
    fn settle(&mut self, partition: u32, offset: u64, now: u64, changes: &mut Vec<Change>) {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return;
        };
        let removed = part.entries.remove(&offset);
        self.ready.remove(&(partition, offset));
        if removed.is_some() {
            self.leased = self.leased.saturating_sub(1);
        }
        if let Some(key) = removed.and_then(|e| e.key) {
            self.release_key(key, (partition, offset), now);
        }
        let part = &mut self.parts[partition as usize];
        if offset < part.floor {
            self.unpersist(partition, offset, changes);
            return;
        }
        part.settled.insert(offset, offset + 1);
        if !self.advance_floor(partition, changes) {
            self.persist(
                partition,
                offset,
                SubEntry {
                    state: EntryState::Acked,
                    attempts: 0,
                    due_at: 0,
                    reason: String::new(),
                },
                changes,
            );
        }
    }

    /// Writes one message's entry (and remembers that it is stored).
    fn persist(&mut self, partition: u32, offset: u64, entry: SubEntry, changes: &mut Vec<Change>) {
        if let Some(part) = self.parts.get_mut(partition as usize) {
            part.persisted.insert(offset);
        }
        changes.push(Change::Entry {
            partition,
            offset,
            entry,
        });
    }

    /// Deletes one message's stored entry, if it has one.
    fn unpersist(&mut self, partition: u32, offset: u64, changes: &mut Vec<Change>) {
        if let Some(part) = self.parts.get_mut(partition as usize) {
            if part.persisted.remove(&offset) {
                changes.push(Change::DeleteEntry { partition, offset });
            }
        }
    }

    /// The change for a floor move `from → to` of `partition`, deleting
    /// exactly the stored entries in between.
    fn cursor_change(&mut self, partition: u32, from: u64, to: u64) -> Change {
        let clear = match self.parts.get_mut(partition as usize) {
            None => Clear::Nothing,
            Some(part) => {
                let stored: Vec<u64> = part
                    .persisted
                    .range(from..to)
                    .take(MAX_POINT_DELETES + 1)
                    .copied()
                    .collect();
                if stored.is_empty() {
                    Clear::Nothing
                } else if stored.len() <= MAX_POINT_DELETES {
                    for o in &stored {
                        part.persisted.remove(o);
                    }
                    Clear::Points(stored)
                } else {
                    let mut above = part.persisted.split_off(&to);
                    let _inside = part.persisted.split_off(&from);
                    part.persisted.append(&mut above);
                    Clear::Range
                }
            }
        };
        Change::Cursor {
            partition,
            from,
            to,
            clear,
        }
    }

    /// Moves the floor over settled offsets; true when it moved.
    fn advance_floor(&mut self, partition: u32, changes: &mut Vec<Change>) -> bool {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return false;
        };
        let from = part.floor;
        while let Some(end) = part.settled.take_starting_at(part.floor) {
            part.floor = end;
        }
        if part.floor == from {
            return false;
        }
        part.next = part.next.max(part.floor);
        part.stream.floor_moved(part.floor);
        let to = part.floor;
        changes.push(self.cursor_change(partition, from, to));
        true
    }

    fn release_key(&mut self, key: u64, who: (u32, u64), now: u64) {
        let Some(ks) = self.keys.get_mut(&key) else {
            return;
        };
        if ks.holder != Some(who) {
            let before = ks.queue.len();
            ks.queue.retain(|w| *w != who);
            self.key_queued = self
                .key_queued
                .saturating_sub((before - ks.queue.len()) as u64);
            return;
        }
        ks.holder = None;
        self.pass_key_on(key, now);
    }

    /// Applies a failure to a leased entry: retry after
    /// backoff, or dead-letter when attempts are exhausted or permanent.
    fn fail_entry(
        &mut self,
        partition: u32,
        offset: u64,
        failure: Failure,
        now: u64,
        changes: &mut Vec<Change>,
    ) {
        let Some(attempts) = self.entry(partition, offset).map(|e| e.attempts) else {
            return;
        };
        match failure.kind {
            FailKind::Nack => self.events.nacks += 1,
            FailKind::LeaseExpired | FailKind::Disconnect | FailKind::Expired => {}
        }
        if failure.permanent || self.exhausted(attempts) {
            if let Some(e) = self.entry_mut(partition, offset) {
                e.status = Status::DeadLettering;
                e.reason = failure.reason.clone();
            }
            // Durable before the answer: after a crash the copy is made
            // from this record (exactly once, with the copy's settle).
            self.persist(
                partition,
                offset,
                SubEntry {
                    state: EntryState::DeadLettering,
                    attempts,
                    due_at: now,
                    reason: failure.reason.clone(),
                },
                changes,
            );
            self.jobs.push(DeadLetterJob {
                partition,
                offset,
                attempts,
                reason: failure.reason,
            });
            return;
        }
        let due = self.schedule_retry(&failure, attempts, now);
        let park = self.should_park_wait(due, now);
        let Some(e) = self.entry_mut(partition, offset) else {
            return;
        };
        e.reason = failure.reason;
        e.holder = None;
        e.due_at = due;
        let durable = e.durable();
        if park {
            // A long backoff waits on disk (its key, if any, stays held).
            self.park(partition, offset, None, changes);
            return;
        }
        if due <= now {
            e.status = Status::Ready;
            self.ready.insert((partition, offset));
        } else {
            e.status = Status::Waiting;
            self.push_timer(due, TimerKind::Due, partition, offset, 0);
        }
        self.persist(partition, offset, durable, changes);
    }

    /// Acks one delivery. False when it matches no current lease.
    pub fn ack(
        &mut self,
        partition: u32,
        offset: u64,
        token: u64,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if self.is_leased(partition, offset, token) {
            self.settle(partition, offset, now, changes);
            self.events.acks += 1;
            return true;
        }
        if self.config.mode == Mode::Stream {
            let acked = self.stream_ack(partition, offset, token, now, changes);
            if acked {
                self.events.acks += 1;
            }
            return acked;
        }
        false
    }

    /// Nacks one delivery. False when it matches no current lease.
    pub fn nack(
        &mut self,
        partition: u32,
        offset: u64,
        token: u64,
        failure: Failure,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if self.is_leased(partition, offset, token) {
            self.fail_entry(partition, offset, failure, now, changes);
            return true;
        }
        if self.config.mode == Mode::Stream {
            return self.stream_nack(partition, offset, token, failure, now, changes);
        }
        false
    }

    /// Renews a lease for `lease_ms` from now. False when unknown.
    pub fn extend(
        &mut self,
        partition: u32,
        offset: u64,
        token: u64,
        lease_ms: u64,
        now: u64,
    ) -> bool {
        if self.is_leased(partition, offset, token) {
            let deadline = now + lease_ms;
            if let Some(e) = self.entry_mut(partition, offset) {
                e.status = Status::Leased { token, deadline };
            }
            self.push_timer(deadline, TimerKind::Lease, partition, offset, token);
            return true;
        }
        if self.config.mode == Mode::Stream {
            return self.stream_extend(partition, offset, token, lease_ms, now);
        }
        false
    }

    fn is_leased(&self, partition: u32, offset: u64, token: u64) -> bool {
        self.entry(partition, offset)
            .is_some_and(|e| matches!(e.status, Status::Leased { token: t, .. } if t == token))
    }

    /// Releases every lease held by `holder` (a closed socket) as failures.
    pub fn release_holder(&mut self, holder: u64, now: u64) -> Vec<Change> {
        let mut held = Vec::new();
        for (p, part) in self.parts.iter().enumerate() {
            for (&o, e) in &part.entries {
                if e.holder == Some(holder) && matches!(e.status, Status::Leased { .. }) {
                    held.push((p as u32, o));
                }
            }
        }
        let mut changes = Vec::new();
        for (p, o) in held {
            self.fail_entry(p, o, Failure::of(FailKind::Disconnect), now, &mut changes);
        }
        changes
    }

    /// Finishes a dead-letter job: returns the changes that settle the
    /// message, to commit atomically with the copy, or `None` when the job
    /// is stale (the subscription was sought meanwhile).
    pub fn complete_dead_letter(&mut self, job: &DeadLetterJob, now: u64) -> Option<Vec<Change>> {
        let mut changes = Vec::new();
        let dead = SubEntry {
            state: EntryState::DeadLettered,
            attempts: job.attempts,
            due_at: now,
            reason: job.reason.clone(),
        };
        let is_entry = self
            .entry(job.partition, job.offset)
            .is_some_and(|e| e.status == Status::DeadLettering);
        if is_entry {
            self.settle(job.partition, job.offset, now, &mut changes);
        } else if !self.stream_complete_dead_letter(job, &mut changes) {
            return None;
        }
        changes.insert(
            0,
            Change::Dead {
                partition: job.partition,
                offset: job.offset,
                entry: dead,
            },
        );
        self.dead_letters += 1;
        self.events.dead_lettered += 1;
        Some(changes)
    }

    /// A message met at delivery time no longer exists (retention): settle
    /// it and count it.
    pub fn settle_missing(&mut self, partition: u32, offset: u64, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.entry(partition, offset).is_some() {
            self.settle(partition, offset, now, &mut changes);
            self.expired_by_retention += 1;
        }
        changes
    }

    /// Retention removed offsets below `low`: unsettled ones are counted,
    /// the floor moves up to `low`.
    pub fn sync_low(&mut self, partition: u32, low: u64, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return changes;
        };
        if part.floor >= low {
            return changes;
        }
        let from = part.floor;
        let settled = part.settled.count_in(from, low);
        // Unsettled = offsets in [from, low) that were not settled; gaps in
        // the unscanned part cannot be told apart from messages and count.
        let lost = (low - from).saturating_sub(settled);
        let dropped: Vec<u64> = part.entries.range(from..low).map(|(&o, _)| o).collect();
        for o in dropped {
            if let Some(e) = self.parts[partition as usize].entries.remove(&o) {
                self.ready.remove(&(partition, o));
                self.leased = self.leased.saturating_sub(1);
                if let Some(k) = e.key {
                    self.release_key(k, (partition, o), now);
                }
            }
        }
        let part = &mut self.parts[partition as usize];
        part.settled.drop_below(low);
        part.floor = low;
        part.next = part.next.max(low);
        part.stream.floor_moved(low);
        self.expired_by_retention += lost;
        changes.push(self.cursor_change(partition, from, low));
        self.advance_floor(partition, &mut changes);
        changes
    }

    /// Moves a partition to `cursor`: every lease, retry and settle above
    /// and below is forgotten (their ack ids become unknown).
    pub fn seek(&mut self, partition: u32, cursor: u64, now: u64) -> Vec<Change> {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return Vec::new();
        };
        let dropped: Vec<(u64, Option<u64>)> =
            part.entries.iter().map(|(&o, e)| (o, e.key)).collect();
        part.entries.clear();
        part.settled.clear();
        part.persisted.clear();
        part.floor = cursor;
        part.next = cursor;
        part.interrupted = 0;
        for (o, key) in dropped {
            self.ready.remove(&(partition, o));
            self.leased = self.leased.saturating_sub(1);
            if let Some(k) = key {
                self.release_key(k, (partition, o), now);
            }
        }
        let token = self.next_token();
        let part = &mut self.parts[partition as usize];
        part.stream.reset(cursor, token);
        vec![Change::Reset { partition, cursor }]
    }

    /// Marks waiting dead letters purged: they stay on record but are no
    /// longer counted or redrivable.
    pub fn purge(&mut self, dead: &[(u32, u64, SubEntry)]) -> Vec<Change> {
        dead.iter()
            .map(|(p, o, entry)| {
                self.dead_letters = self.dead_letters.saturating_sub(1);
                Change::Dead {
                    partition: *p,
                    offset: *o,
                    entry: SubEntry {
                        state: EntryState::Purged,
                        ..entry.clone()
                    },
                }
            })
            .collect()
    }

    /// Makes waiting dead letters deliverable again (attempts reset) and
    /// marks their records redriven. Skips delivering ones already pending.
    /// Returns the changes and how many were redriven.
    pub fn redrive(&mut self, dead: &[(u32, u64, SubEntry)]) -> (Vec<Change>, u64) {
        let mut changes = Vec::new();
        let mut n = 0;
        let stream = self.config.mode == Mode::Stream;
        for (p, o, entry) in dead {
            let (p, o) = (*p, *o);
            changes.push(Change::Dead {
                partition: p,
                offset: o,
                entry: SubEntry {
                    state: EntryState::Redriven,
                    ..entry.clone()
                },
            });
            self.dead_letters = self.dead_letters.saturating_sub(1);
            let Some(part) = self.parts.get_mut(p as usize) else {
                continue;
            };
            // Pending already, or ahead of the cursor after a seek back:
            // it will be delivered anyway.
            let ahead = if stream {
                o >= part.floor
            } else {
                o >= part.next
            };
            if part.entries.contains_key(&o) || ahead {
                continue;
            }
            if self.config.mode == Mode::Queue && self.leased >= self.max_tracked {
                // Beyond the tracking bound: parked, due now; they come
                // back as room frees.
                part.parked_due += 1;
                self.parked_due_hint = Some(0);
                changes.push(Change::Park {
                    parked: Parked {
                        partition: p,
                        offset: o,
                        entry: SubEntry {
                            state: EntryState::Pending,
                            attempts: 0,
                            due_at: 0,
                            reason: String::new(),
                        },
                        key: None,
                        behind_key: false,
                    },
                });
                n += 1;
                continue;
            }
            part.settled.remove(o);
            part.entries.insert(
                o,
                Entry {
                    status: Status::Ready,
                    attempts: 0,
                    due_at: 0,
                    key: None,
                    reason: String::new(),
                    holder: None,
                },
            );
            self.ready.insert((p, o));
            self.leased += 1;
            self.persist(
                p,
                o,
                SubEntry {
                    state: EntryState::Pending,
                    attempts: 0,
                    due_at: 0,
                    reason: String::new(),
                },
                &mut changes,
            );
            n += 1;
        }
        (changes, n)
    }

    /// Statistics; `highs` are the partitions' durable high watermarks.
    pub fn stats(&self, highs: &[u64], now: u64) -> StatsView {
        let mut view = StatsView::default();
        for (p, part) in self.parts.iter().enumerate() {
            let high = highs.get(p).copied().unwrap_or(part.floor);
            let above = high.saturating_sub(part.floor);
            let settled = part.settled.count_in(part.floor, high);
            let below = part.entries.range(..part.floor).count() as u64;
            view.backlog += above.saturating_sub(settled) + below + part.parked_due;
            view.delayed += part.parked_due;
            let mut first_unsettled = if part.floor < high {
                Some(part.floor)
            } else {
                None
            };
            if let Some((&o, _)) = part.entries.range(..part.floor).next() {
                first_unsettled = Some(first_unsettled.map_or(o, |f| f.min(o)));
            }
            view.first_unsettled.push(first_unsettled);
            for e in part.entries.values() {
                match e.status {
                    Status::Leased { .. } => view.in_flight += 1,
                    Status::Waiting if e.due_at > now => view.delayed += 1,
                    _ => {}
                }
            }
            if self.config.mode == Mode::Stream {
                view.in_flight += part.next.saturating_sub(part.floor);
                if part.stream.head_due > now {
                    view.delayed += 1;
                }
            }
            // Not yet delivered: above the scan/delivery position, plus
            // messages ready for redelivery.
            let ready_here = self.ready.range((p as u32, 0)..=(p as u32, u64::MAX));
            let first_ready = ready_here.clone().next().map(|&(_, o)| o);
            view.undelivered += high.saturating_sub(part.next) + ready_here.count() as u64;
            if part.next < high {
                view.unscanned.push((p as u32, part.next));
            }
            let pending_new = if part.next < high {
                Some(part.next)
            } else {
                None
            };
            view.first_undelivered
                .push(match (first_ready, pending_new) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                });
            view.owners.push(part.stream.owner.clone());
            view.cursors.push(part.floor);
        }
        let behind_keys: u64 = self.keys.values().map(|k| k.parked).sum();
        view.backlog += behind_keys;
        view.dead_lettered = self.dead_letters;
        view.expired_by_retention = self.expired_by_retention;
        view
    }

    /// Whether key ordering applies.
    fn key_ordering(&self) -> bool {
        self.config.mode == Mode::Queue && self.config.ordering == Ordering::Key
    }
}

/// Stats computed from the state; timestamps are looked up by the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsView {
    pub backlog: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_lettered: u64,
    pub expired_by_retention: u64,
    /// Per partition: the oldest unsettled offset, if any.
    pub first_unsettled: Vec<Option<u64>>,
    /// Messages not delivered yet (consumer lag in messages).
    pub undelivered: u64,
    /// Per partition: the oldest offset not delivered yet, if any.
    pub first_undelivered: Vec<Option<u64>>,
    pub cursors: Vec<u64>,
    pub owners: Vec<Option<String>>,
    /// Queue mode: per partition, where the scan of new messages stands
    /// (`(partition, next)`, only where messages wait beyond it): delayed
    /// messages there are not known to the state yet.
    pub unscanned: Vec<(u32, u64)>,
}
