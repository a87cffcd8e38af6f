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
//!
//! Layout: this file holds the shared types, construction and small
//! accessors; each concern adds its own `impl State` block: `load`
//! (rebuilding from the store), `timers` (the deadline heap), `settle`
//! (leases, acks, nacks), `persist` (stored entries and floor moves),
//! `failures` (retries and dead letters), `redrive` (redrive and purge),
//! `position` (retention and seeks), `stats`, and the mode- and
//! feature-specific `queue`, `stream`, `parked`, `holder` and `leases`.

mod failures;
mod holder;
mod leases;
mod load;
pub mod parked;
mod persist;
mod position;
mod queue;
mod ranges;
mod redrive;
mod settle;
mod stats;
mod stream;
#[cfg(test)]
mod tests;
mod timers;

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasher;

use weir_protocol::{Mode, Ordering, SubscriptionConfig};

use crate::storage::{EntryState, Parked, SubEntry};
pub use ranges::RangeSet;
pub use settle::Acks;
pub use stats::StatsView;

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl Change {
    /// Whether the change only records a delivery: a delivered mark, or
    /// the attempt count of a message leased now (no retry time, not
    /// settled). Losing one costs no message, only an attempt's count.
    pub fn is_delivery_bookkeeping(&self) -> bool {
        match self {
            Change::Delivered { .. } => true,
            Change::Entry { entry, .. } => {
                entry.state == crate::storage::EntryState::Pending && entry.due_at == 0
            }
            _ => false,
        }
    }
}

/// Which stored entries a cursor move deletes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Clear {
    /// None are stored in the range (the common case: in-order acks of
    /// first deliveries write nothing per message).
    Nothing,
    /// These few offsets.
    Points(Vec<u64>),
    /// Many: delete the whole range.
    Range,
}

/// Whom a pull leases to: the socket that holds the leases (released when
/// it closes), if any, and the pull's token, from which each delivery's
/// token is derived (so one batch ack id can name all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lessee {
    pub holder: Option<u64>,
    pub pull: u64,
}

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
    /// A queue lease (entry) ends: one extended with `extend`.
    Lease,
    /// The leases one pull took in one partition with one deadline end:
    /// `offset..=last`, `token` the pull's (see `timers.rs`).
    LeaseRun,
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
    /// `LeaseRun`: the last offset of the run (else unused).
    last: u64,
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
    /// `(partition, offset)`: the refill waits until the scan of the
    /// partition has passed its first parked follower there, at `offset`
    /// (see `unpark_key`). Usually empty.
    waits: Vec<(u32, u64)>,
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
    /// Stored runs of acks above the floor, `start → end` (exclusive):
    /// disjoint, each start in `persisted` (see `persist.rs`).
    runs: BTreeMap<u64, u64>,
    /// Offsets below were delivered at least once (the durable mark).
    delivered: u64,
    /// Messages of this partition parked on disk by due time.
    parked_due: u64,
    /// Loaded from the store: offsets in `[floor, interrupted)` with no
    /// entry were delivered before the restart without an outcome, so that
    /// delivery counts as an attempt when they are met again.
    interrupted: u64,
    /// `(offset, key)`: the refill of `key` waits until the scan of this
    /// partition has passed `offset`, a parked follower (see `unpark_key`).
    key_waits: BTreeSet<(u64, u64)>,
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
    /// The `LeaseRun` timer the current pull is still extending; joins
    /// `timers` when a lease starts another run or the heap is read.
    open_run: Option<Timer>,
    ready: BTreeSet<(u32, u64)>,
    keys: HashMap<u64, KeyState>,
    /// Entries tracked in memory (all statuses); bounds scans (`MAX_TRACKED`)
    /// less `unscanned` (see `tracked`).
    leased: u64,
    /// Of `leased`: entries loaded at startup the scan has not met yet.
    unscanned: u64,
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
    /// Bound of `tracked()` for scans (`MAX_TRACKED`; lower in tests).
    max_tracked: u64,
    /// Settles above the floor stored as runs of acks (`persist.rs`);
    /// off: one `Acked` entry per offset.
    ack_runs: bool,
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
            open_run: None,
            ready: BTreeSet::new(),
            keys: HashMap::new(),
            leased: 0,
            unscanned: 0,
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
            ack_runs: true,
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

    /// The tracking bound.
    pub fn max_tracked(&self) -> u64 {
        self.max_tracked
    }

    /// Sets the tracking bound (`max_unsettled_per_subscription`).
    pub fn set_max_tracked(&mut self, n: u64) {
        self.max_tracked = n.max(1);
    }

    /// Whether settles above the floor are stored as runs of acks. Off for
    /// subscriptions whose state is replicated: a run's entry is rewritten
    /// as it grows, so a commit built on a state that missed an earlier,
    /// still-pending commit would shorten it (one entry per offset cannot
    /// be undone that way); the cluster's fault campaign saw acked messages
    /// come again once with runs on.
    pub fn set_ack_runs(&mut self, on: bool) {
        self.ack_runs = on;
    }

    fn count_tracked(&self) -> u64 {
        self.parts.iter().map(|p| p.entries.len() as u64).sum()
    }

    fn count_unscanned(&self) -> u64 {
        self.parts
            .iter()
            .flat_map(|p| p.entries.values())
            .filter(|e| e.status == Status::Unscanned)
            .count() as u64
    }

    /// Accounts for an entry dropped from memory with `status`.
    fn untrack(&mut self, status: Status) {
        self.leased = self.leased.saturating_sub(1);
        if status == Status::Unscanned {
            self.unscanned = self.unscanned.saturating_sub(1);
        }
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

    /// A new pull's token ([`Lessee::pull`]).
    pub fn new_pull(&mut self) -> u64 {
        self.next_token()
    }

    /// The token of the delivery of `(partition, offset)` by pull `pull`:
    /// unpredictable without the pull's token (itself a keyed hash), never
    /// zero, and different for every delivery of one message (a bijective
    /// mix of the pull's token and the position). Computed for every
    /// delivery and checked for every ack, so it is a few multiplications,
    /// not a second keyed hash.
    pub(super) fn delivery_token(&self, pull: u64, partition: u32, offset: u64) -> u64 {
        let position = mix64(offset.rotate_left(32) ^ u64::from(partition));
        mix64(pull ^ position).max(1)
    }

    fn next_token(&mut self) -> u64 {
        self.token_counter += 1;
        // A keyed hash (SipHash with a random per-process key) of a counter:
        // unpredictable to clients, never zero.
        self.tokens.hash_one(self.token_counter).max(1)
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

    /// Whether key ordering applies.
    fn key_ordering(&self) -> bool {
        self.config.mode == Mode::Queue && self.config.ordering == Ordering::Key
    }
}

/// The finalizer of SplitMix64: a bijection on `u64` that spreads every
/// input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
