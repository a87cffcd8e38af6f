//! Domain tests of the state machine with time as an input, over a fake
//! log and a fake store that applies the reported changes (so a "restart"
//! rebuilds the state exactly as the real store would).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use weir_protocol::{Backoff, Mode, Ordering, RetryPolicy, SubscriptionConfig};

use super::*;
use crate::storage::{EntryState, LoadedSubState, Parked, ParkedCounts, SubEntry};

const TIMEOUT: u64 = 1000;

fn config(mode: Mode, max_attempts: Option<u32>, ordering: Ordering) -> SubscriptionConfig {
    SubscriptionConfig {
        mode,
        ack_timeout_ms: TIMEOUT,
        retry: RetryPolicy {
            max_attempts,
            backoff: Backoff {
                initial_ms: 100,
                max_ms: 10_000,
                multiplier: 2.0,
                jitter: 0.0,
            },
            circuit_breaker: None,
        },
        dead_letter_topic: Some("dlq".into()),
        ordering,
        message_ttl_ms: None,
        push: None,
    }
}

/// The log: per partition, messages by offset.
#[derive(Default, Clone)]
struct Log {
    parts: Vec<Vec<MsgMeta>>,
}

impl Log {
    fn new(partitions: usize) -> Log {
        Log {
            parts: vec![Vec::new(); partitions],
        }
    }

    fn push(&mut self, p: usize, key: Option<u64>, deliver_at: u64) -> u64 {
        let offset = self.parts[p].len() as u64;
        self.parts[p].push(MsgMeta {
            offset,
            deliver_at,
            key_hash: key,
        });
        offset
    }

    fn highs(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.len() as u64).collect()
    }
}

/// What the store would hold.
#[derive(Default, Clone, Debug)]
struct FakeStore {
    cursors: BTreeMap<u32, u64>,
    entries: BTreeMap<(u32, u64), SubEntry>,
    dead: BTreeMap<(u32, u64), SubEntry>,
    delivered: BTreeMap<u32, u64>,
    parked: BTreeMap<(u32, u64), Parked>,
}

impl FakeStore {
    fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            match c.clone() {
                Change::Entry {
                    partition,
                    offset,
                    entry,
                } => {
                    self.entries.insert((partition, offset), entry);
                }
                Change::DeleteEntry { partition, offset } => {
                    self.entries.remove(&(partition, offset));
                }
                Change::Cursor {
                    partition,
                    from,
                    to,
                    clear,
                } => {
                    let covered: Vec<(u32, u64)> = match clear {
                        Clear::Nothing => Vec::new(),
                        Clear::Points(points) => {
                            points.into_iter().map(|o| (partition, o)).collect()
                        }
                        Clear::Range => self
                            .entries
                            .range((partition, from)..(partition, to))
                            .map(|(k, _)| *k)
                            .collect(),
                    };
                    for k in covered {
                        self.entries.remove(&k);
                    }
                    // Every stored entry the floor passed must be deleted.
                    let left: Vec<_> = self
                        .entries
                        .range((partition, from)..(partition, to))
                        .collect();
                    assert!(left.is_empty(), "cursor {from}->{to} of partition {partition} leaves stored entries: {left:?}");
                    self.cursors.insert(partition, to);
                }
                Change::Reset { partition, cursor } => {
                    self.entries.retain(|&(p, _), _| p != partition);
                    self.cursors.insert(partition, cursor);
                }
                Change::Dead {
                    partition,
                    offset,
                    entry,
                } => {
                    self.dead.insert((partition, offset), entry);
                }
                Change::Delivered { partition, upto } => {
                    let mark = self.delivered.entry(partition).or_default();
                    *mark = (*mark).max(upto);
                }
                Change::Park { parked } => {
                    self.parked
                        .insert((parked.partition, parked.offset), parked);
                }
                Change::Unpark { parked } => {
                    self.parked.remove(&(parked.partition, parked.offset));
                }
            }
        }
    }

    fn waiting_dead(&self) -> u64 {
        self.dead
            .values()
            .filter(|e| e.state == EntryState::DeadLettered)
            .count() as u64
    }

    fn loaded(&self) -> LoadedSubState {
        LoadedSubState {
            cursors: self.cursors.iter().map(|(&p, &c)| (p, c)).collect(),
            entries: self
                .entries
                .iter()
                .map(|(&(p, o), e)| (p, o, e.clone()))
                .collect(),
            delivered: self.delivered.iter().map(|(&p, &m)| (p, m)).collect(),
            parked: self.parked_counts(),
        }
    }

    fn parked_counts(&self) -> ParkedCounts {
        let mut counts = ParkedCounts::default();
        let mut due: BTreeMap<u32, u64> = BTreeMap::new();
        let mut keys: BTreeMap<u64, u64> = BTreeMap::new();
        for p in self.parked.values() {
            match (p.behind_key, p.key) {
                (true, Some(k)) => *keys.entry(k).or_default() += 1,
                (false, Some(k)) => {
                    counts.holders.push((k, p.partition, p.offset));
                    *due.entry(p.partition).or_default() += 1;
                }
                _ => *due.entry(p.partition).or_default() += 1,
            }
        }
        counts.due = due.into_iter().collect();
        counts.keys = keys.into_iter().collect();
        counts
    }

    /// What `Store::due_parked` answers.
    fn due_parked(&self, now: u64, limit: usize) -> Vec<Parked> {
        let mut due: Vec<Parked> = self
            .parked
            .values()
            .filter(|p| !p.behind_key && p.entry.due_at <= now)
            .cloned()
            .collect();
        due.sort_by_key(|p| (p.entry.due_at, p.partition, p.offset));
        due.truncate(limit);
        due
    }

    /// What `Store::key_parked` answers.
    fn key_parked(&self, key: u64, limit: usize) -> Vec<Parked> {
        self.parked
            .values()
            .filter(|p| p.behind_key && p.key == Some(key))
            .take(limit)
            .cloned()
            .collect()
    }

    fn next_parked_due(&self) -> Option<u64> {
        self.parked
            .values()
            .filter(|p| !p.behind_key)
            .map(|p| p.entry.due_at)
            .min()
    }
}

/// A subscription under test: state + log + store, with helpers that do
/// what the I/O layer does.
struct Harness {
    state: State,
    log: Log,
    store: FakeStore,
    config: SubscriptionConfig,
    /// Dead letters written (partition, offset).
    dead_letters: Vec<(u32, u64)>,
    /// The token of the last pull ([`Lessee::pull`]).
    last_pull: u64,
}

impl Harness {
    /// A queue subscription (no retry limit, no key ordering) of one
    /// partition holding `messages` messages.
    fn queue(messages: usize) -> Harness {
        let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
        for _ in 0..messages {
            h.log.push(0, None, 0);
        }
        h
    }

    fn new(config: SubscriptionConfig, partitions: usize) -> Harness {
        let cursors = vec![0; partitions];
        let mut store = FakeStore::default();
        for p in 0..partitions as u32 {
            store.cursors.insert(p, 0);
        }
        Harness {
            state: State::new(1, config.clone(), &cursors),
            log: Log::new(partitions),
            store,
            config,
            dead_letters: Vec::new(),
            last_pull: 0,
        }
    }

    fn commit(&mut self, changes: Vec<Change>) {
        self.store.apply(&changes);
    }

    fn tick(&mut self, now: u64) {
        let changes = self.state.tick(now);
        self.commit(changes);
        self.unpark(now);
        self.run_jobs(now);
    }

    /// What the timer task does: refill keys, bring back due messages.
    fn unpark(&mut self, now: u64) {
        for key in self.state.take_key_refills() {
            let parked = self.store.key_parked(key, parked::KEY_QUEUE_IN_MEMORY);
            let changes = self.state.unpark_key(key, parked, now);
            self.commit(changes);
        }
        if self.state.unpark_room() > 0 && self.state.parked_due_hint().is_some_and(|h| h <= now) {
            let parked = self.store.due_parked(now, self.state.unpark_room());
            let changes = self.state.unpark_due(parked, now);
            self.commit(changes);
            let next = self.store.next_parked_due();
            self.state.set_parked_due_hint(next);
        }
    }

    fn run_jobs(&mut self, now: u64) {
        for job in self.state.take_jobs() {
            if let Some(changes) = self.state.complete_dead_letter(&job, now) {
                self.dead_letters.push((job.partition, job.offset));
                self.commit(changes);
            }
        }
    }

    fn pull(&mut self, now: u64, max: usize, consumer: &str) -> Vec<Delivery> {
        self.tick(now);
        let owned = if self.state.mode() == Mode::Stream {
            self.state.assign(consumer, now)
        } else {
            Vec::new()
        };
        let to = Lessee {
            holder: None,
            pull: self.state.new_pull(),
        };
        self.last_pull = to.pull;
        let (mut out, changes) = self.state.take_ready(now, max, to);
        self.commit(changes);
        let highs = self.log.highs();
        if self.state.mode() == Mode::Queue {
            for _ in 0..64 {
                let want = max - out.len();
                let Some(plan) = self.state.plan_scan(&highs, want) else {
                    break;
                };
                let p = plan.partition as usize;
                let msgs: Vec<MsgMeta> = self.log.parts[p][plan.from as usize..]
                    .iter()
                    .take(plan.max)
                    .copied()
                    .collect();
                let covered = if msgs.len() >= plan.max {
                    msgs.last().unwrap().offset + 1
                } else {
                    highs[p]
                };
                let (ds, changes) = self.state.classify(plan, &msgs, covered, want, now, to);
                self.commit(changes);
                out.extend(ds);
                if out.len() >= max {
                    break;
                }
            }
        } else {
            for p in owned {
                let want = max - out.len();
                let Some(plan) = self.state.plan_stream(p, highs[p as usize], want, now) else {
                    continue;
                };
                let msgs: Vec<MsgMeta> = self.log.parts[p as usize][plan.from as usize..]
                    .iter()
                    .take(plan.max)
                    .copied()
                    .collect();
                let covered = if msgs.len() >= plan.max {
                    msgs.last().unwrap().offset + 1
                } else {
                    highs[p as usize]
                };
                let (ds, changes) = self.state.stream_deliver(plan, &msgs, covered, now);
                self.commit(changes);
                out.extend(ds);
            }
        }
        out
    }

    fn ack(&mut self, d: &Delivery, now: u64) -> bool {
        let mut changes = Vec::new();
        let ok = self
            .state
            .ack(d.partition, d.offset, d.token, now, &mut changes);
        self.commit(changes);
        ok
    }

    /// Acks `ds` as one request does: together. Which of them matched.
    fn ack_all(&mut self, ds: &[Delivery], now: u64) -> Vec<bool> {
        let mut changes = Vec::new();
        let mut acks = Acks::default();
        let known = ds
            .iter()
            .map(|d| {
                self.state
                    .ack_into(&mut acks, d.partition, d.offset, d.token, now, &mut changes)
            })
            .collect();
        self.state.finish_acks(acks, &mut changes);
        self.commit(changes);
        known
    }

    fn nack(&mut self, d: &Delivery, now: u64, delay: Option<u64>, permanent: bool) -> bool {
        let mut changes = Vec::new();
        let failure = Failure {
            kind: FailKind::Nack,
            reason: "boom".into(),
            delay_ms: delay,
            permanent,
        };
        let ok = self
            .state
            .nack(d.partition, d.offset, d.token, failure, now, &mut changes);
        self.commit(changes);
        self.run_jobs(now);
        ok
    }

    fn restart(&mut self, now: u64) {
        let partitions = self.log.parts.len() as u32;
        self.state = State::load(
            1,
            self.config.clone(),
            partitions,
            self.store.loaded(),
            self.store.waiting_dead(),
            now,
        );
        let hint = self.store.next_parked_due();
        self.state.set_parked_due_hint(hint);
        self.run_jobs(now);
    }

    fn redrive(&mut self) -> u64 {
        let dead: Vec<(u32, u64, SubEntry)> = self
            .store
            .dead
            .iter()
            .filter(|(_, e)| e.state == EntryState::DeadLettered)
            .map(|(&(p, o), e)| (p, o, e.clone()))
            .collect();
        let (changes, n) = self.state.redrive(&dead);
        self.commit(changes);
        n
    }

    fn stats(&self, now: u64) -> StatsView {
        self.state.stats(&self.log.highs(), now)
    }
}

fn offsets(ds: &[Delivery]) -> Vec<(u32, u64)> {
    ds.iter().map(|d| (d.partition, d.offset)).collect()
}

#[test]
fn lease_expiry_redelivers_with_next_attempt() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    h.log.push(0, None, 0);
    h.log.push(0, None, 0);
    let first = h.pull(0, 1, "c");
    assert_eq!(offsets(&first), vec![(0, 0)]);
    assert_eq!(first[0].attempt, 1);
    // The other message keeps flowing while the first is out.
    let second = h.pull(10, 10, "c");
    assert_eq!(offsets(&second), vec![(0, 1)]);
    assert!(h.ack(&second[0], 20));
    // Nothing before the lease ends.
    assert!(h.pull(TIMEOUT - 1, 10, "c").is_empty());
    // Expired at TIMEOUT; retry after backoff(1) = 100 ms.
    assert!(h.pull(TIMEOUT, 10, "c").is_empty());
    assert_eq!(h.stats(TIMEOUT).delayed, 1);
    let again = h.pull(TIMEOUT + 100, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 0)]);
    assert_eq!(again[0].attempt, 2);
    // The expired delivery's ack id is stale.
    assert!(!h.ack(&first[0], TIMEOUT + 101));
    assert!(h.ack(&again[0], TIMEOUT + 102));
    assert_eq!(h.state.floor(0), 2);
    assert_eq!(h.stats(TIMEOUT + 102).backlog, 0);
}

#[test]
fn out_of_order_acks_move_the_floor_when_the_gap_closes() {
    let mut h = Harness::queue(5);
    let ds = h.pull(0, 5, "c");
    assert_eq!(ds.len(), 5);
    for d in &ds[1..] {
        assert!(h.ack(d, 1));
    }
    assert_eq!(h.state.floor(0), 0);
    // One stored run of acks covers the four.
    let stored: Vec<_> = h.store.entries.iter().collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(*stored[0].0, (0, 1));
    assert_eq!(stored[0].1.state, EntryState::AckedRun { end: 5 });
    assert_eq!(h.stats(1).backlog, 1);
    assert!(h.ack(&ds[0], 2));
    assert_eq!(h.state.floor(0), 5);
    assert!(
        h.store.entries.is_empty(),
        "settled entries are dropped: {:?}",
        h.store.entries
    );
    assert_eq!(h.store.cursors[&0], 5);
    // Double ack is unknown.
    assert!(!h.ack(&ds[0], 3));
}

#[test]
fn a_pull_names_its_own_leases_and_no_others() {
    let mut h = Harness::queue(10);
    let a = h.pull(0, 4, "a");
    let pull_a = h.last_pull;
    let b = h.pull(0, 4, "b");
    let pull_b = h.last_pull;
    let triples = |ds: &[Delivery]| -> Vec<(u32, u64, u64)> {
        ds.iter()
            .map(|d| (d.partition, d.offset, d.token))
            .collect()
    };
    assert_eq!(a.len(), 4);
    assert_eq!(b.len(), 4);
    // A range over both pulls' offsets names pull a's deliveries only.
    assert_eq!(h.state.leased_by_pull(pull_a, &[(0, 0, 9)]), triples(&a));
    assert_eq!(h.state.leased_by_pull(pull_b, &[(0, 0, 9)]), triples(&b));
    assert!(h.state.leased_by_pull(pull_b, &[(0, 0, 3)]).is_empty());
    assert!(h.state.leased_by_pull(pull_a, &[(1, 0, 9)]).is_empty());
    // Tokens differ per delivery, so one ack id never matches another.
    let mut tokens: Vec<u64> = a.iter().chain(&b).map(|d| d.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 8);
    // Settled on its own: no longer named by the pull.
    assert!(h.ack(&a[0], 1));
    assert_eq!(
        h.state.leased_by_pull(pull_a, &[(0, 0, 9)]),
        triples(&a[1..])
    );
    // Expired leases are named by no earlier pull; the pull that delivers
    // them again names them under its own token.
    h.tick(TIMEOUT + 10);
    assert!(h.state.leased_by_pull(pull_a, &[(0, 0, 9)]).is_empty());
    assert!(h.state.leased_by_pull(pull_b, &[(0, 0, 9)]).is_empty());
    let again = h.pull(TIMEOUT + 10_000_000, 10, "c");
    assert!(!again.is_empty());
    let pull_c = h.last_pull;
    assert_eq!(h.state.leased_by_pull(pull_c, &[(0, 0, 9)]), {
        let mut t = triples(&again);
        t.sort_unstable();
        t
    });
}

#[test]
fn seek_replays_and_invalidates_leases() {
    let mut h = Harness::queue(3);
    let ds = h.pull(0, 3, "c");
    for d in &ds {
        h.ack(d, 1);
    }
    assert!(h.pull(2, 3, "c").is_empty());
    let changes = h.state.seek(0, 1, 3);
    h.commit(changes);
    let again = h.pull(4, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 1), (0, 2)]);
    let changes = h.state.seek(0, 3, 5);
    h.commit(changes);
    assert!(!h.ack(&again[0], 6), "leases before a seek are forgotten");
    assert_eq!(h.stats(6).in_flight, 0);
}

#[test]
fn key_ordering_holds_one_message_per_key() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::Key), 1);
    h.log.push(0, Some(7), 0); // 0: key 7
    h.log.push(0, Some(7), 0); // 1: key 7
    h.log.push(0, Some(8), 0); // 2: key 8
    h.log.push(0, None, 0); // 3: no key
    let ds = h.pull(0, 10, "c");
    assert_eq!(offsets(&ds), vec![(0, 0), (0, 2), (0, 3)]);
    // A retrying key holds back only that key.
    assert!(h.nack(&ds[0], 1, Some(500), false));
    h.log.push(0, Some(8), 0); // 4: key 8 (8 is in flight)
    assert!(h.pull(2, 10, "c").is_empty());
    h.ack(&ds[1], 3);
    assert_eq!(offsets(&h.pull(4, 10, "c")), vec![(0, 4)]);
    let retry = h.pull(501, 10, "c");
    assert_eq!(offsets(&retry), vec![(0, 0)]);
    assert_eq!(retry[0].attempt, 2);
    h.ack(&retry[0], 502);
    // Key 7's next message only now.
    assert_eq!(offsets(&h.pull(503, 10, "c")), vec![(0, 1)]);
}

#[test]
fn stream_partitions_hand_over_when_an_owner_goes_idle() {
    let mut h = Harness::new(config(Mode::Stream, None, Ordering::None), 2);
    for p in 0..2 {
        for _ in 0..3 {
            h.log.push(p, None, 0);
        }
    }
    // Alone, `a` owns both partitions and gets them in order.
    let a = h.pull(0, 100, "a");
    assert_eq!(
        offsets(&a),
        vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    );
    // Cumulative ack of partition 0.
    assert!(h.ack(&a[2], 10));
    assert_eq!(h.state.floor(0), 3);
    // `b` arrives: nothing is free while `a` is active.
    assert!(h.pull(20, 100, "b").is_empty());
    // `a` gives back partition 0 (nothing in flight there) when it pulls.
    h.log.push(0, None, 0);
    let _ = h.pull(30, 100, "a");
    assert_eq!(h.state.owner_of(0), None);
    let b = h.pull(40, 100, "b");
    assert_eq!(offsets(&b), vec![(0, 3)]);
    assert_eq!(h.state.owner_of(0), Some("b"));
    // `a` stops: its run on partition 1 expires and `b` takes over from
    // the committed cursor.
    let later = 30 + TIMEOUT;
    h.tick(later);
    assert_eq!(h.state.owner_of(1), None);
    h.ack(&b[0], later);
    let b2 = h.pull(later + 200, 100, "b");
    assert_eq!(offsets(&b2), vec![(1, 0), (1, 1), (1, 2)]);
    assert_eq!(b2[0].attempt, 2, "the head was delivered before");
    assert_eq!(h.state.owner_of(1), Some("b"));
}

#[test]
fn queue_dead_letters_after_exactly_max_attempts() {
    let mut h = Harness::new(config(Mode::Queue, Some(3), Ordering::None), 1);
    h.log.push(0, None, 0);
    h.log.push(0, None, 0);
    let mut now = 0;
    let mut deliveries = 0;
    for _ in 0..20 {
        let ds = h.pull(now, 10, "c");
        for d in &ds {
            if d.offset == 0 {
                deliveries += 1;
                h.nack(d, now, None, false);
            } else {
                h.ack(d, now);
            }
        }
        now += 20_000;
    }
    assert_eq!(deliveries, 3);
    assert_eq!(h.dead_letters, vec![(0, 0)]);
    assert_eq!(h.store.dead.len(), 1);
    assert_eq!(h.store.dead[&(0, 0)].attempts, 3);
    assert_eq!(h.store.dead[&(0, 0)].reason, "boom");
    assert_eq!(h.state.floor(0), 2);
    assert_eq!(h.stats(now).dead_lettered, 1);
}

#[test]
fn nack_override_and_permanent_failure() {
    let mut h = Harness::new(config(Mode::Queue, Some(10), Ordering::None), 1);
    h.log.push(0, None, 0);
    h.log.push(0, None, 0);
    let ds = h.pull(0, 10, "c");
    h.nack(&ds[0], 0, Some(5000), false);
    h.nack(&ds[1], 1, None, true);
    assert_eq!(h.dead_letters, vec![(0, 1)]);
    assert_eq!(h.store.dead[&(0, 1)].attempts, 1);
    assert!(h.pull(4999, 10, "c").is_empty());
    assert_eq!(offsets(&h.pull(5000, 10, "c")), vec![(0, 0)]);
}

#[test]
fn lease_expiry_counts_toward_max_attempts() {
    let mut h = Harness::new(config(Mode::Queue, Some(2), Ordering::None), 1);
    h.log.push(0, None, 0);
    assert_eq!(h.pull(0, 1, "c").len(), 1);
    h.tick(TIMEOUT);
    let again = h.pull(TIMEOUT + 100, 1, "c");
    assert_eq!(again[0].attempt, 2);
    h.tick(2 * TIMEOUT + 100);
    assert_eq!(h.dead_letters, vec![(0, 0)]);
    assert_eq!(h.store.dead[&(0, 0)].reason, "lease_expired");
}

#[test]
fn stream_blocking_retry_keeps_order_then_dead_letters_the_head() {
    let mut h = Harness::new(config(Mode::Stream, Some(2), Ordering::None), 1);
    for _ in 0..3 {
        h.log.push(0, None, 0);
    }
    let ds = h.pull(0, 10, "a");
    assert_eq!(offsets(&ds), vec![(0, 0), (0, 1), (0, 2)]);
    // Nack offset 1: offset 0 is committed, the partition waits.
    h.nack(&ds[1], 0, None, false);
    assert_eq!(h.state.floor(0), 1);
    assert!(h.pull(50, 10, "a").is_empty(), "blocked during backoff");
    let again = h.pull(100, 10, "a");
    assert_eq!(offsets(&again), vec![(0, 1), (0, 2)]);
    assert_eq!(again[0].attempt, 2);
    h.nack(&again[0], 100, None, false);
    assert_eq!(h.dead_letters, vec![(0, 1)]);
    assert_eq!(h.state.floor(0), 2);
    let rest = h.pull(101, 10, "a");
    assert_eq!(offsets(&rest), vec![(0, 2)]);
}

#[test]
fn delayed_messages_wait_in_queue_mode() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    h.log.push(0, None, 5000);
    h.log.push(0, None, 0);
    let ds = h.pull(0, 10, "c");
    assert_eq!(offsets(&ds), vec![(0, 1)]);
    assert_eq!(h.stats(0).delayed, 1);
    assert_eq!(h.state.next_deadline(), Some(TIMEOUT));
    h.ack(&ds[0], 1);
    // Survives a restart: the delay is in the message.
    h.restart(2);
    assert!(h.pull(4999, 10, "c").is_empty());
    assert_eq!(offsets(&h.pull(5000, 10, "c")), vec![(0, 0)]);
}

#[test]
fn redrive_delivers_dead_letters_once() {
    let mut h = Harness::new(config(Mode::Queue, Some(1), Ordering::None), 1);
    h.log.push(0, None, 0);
    h.log.push(0, None, 0);
    let ds = h.pull(0, 10, "c");
    h.nack(&ds[0], 0, None, false);
    h.ack(&ds[1], 0);
    assert_eq!(h.state.floor(0), 2);
    assert_eq!(h.redrive(), 1);
    assert_eq!(h.redrive(), 0, "a second redrive finds nothing");
    assert_eq!(h.stats(1).backlog, 1);
    // Survives a restart before delivery.
    h.restart(1);
    let again = h.pull(2, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 0)]);
    assert_eq!(again[0].attempt, 1, "attempts reset");
    h.ack(&again[0], 3);
    assert_eq!(h.stats(3).backlog, 0);
    assert!(h.store.entries.is_empty());
}

/// The only stored entries of partition 0: `(offset, state)`.
fn stored_states(h: &Harness) -> Vec<(u64, EntryState)> {
    h.store
        .entries
        .iter()
        .filter(|((p, _), _)| *p == 0)
        .map(|((_, o), e)| (*o, e.state))
        .collect()
}

#[test]
fn runs_of_acks_join_up_and_survive_a_restart() {
    let mut h = Harness::queue(10);
    let ds = h.pull(0, 10, "c");
    // 0 stays out; 2..5 and 6..9 acked in two runs, 5 last: one run.
    for i in [2, 3, 4, 6, 7, 8, 9] {
        assert!(h.ack(&ds[i], 1));
    }
    assert_eq!(
        stored_states(&h),
        vec![
            (2, EntryState::AckedRun { end: 5 }),
            (6, EntryState::AckedRun { end: 10 })
        ]
    );
    assert!(h.ack(&ds[5], 1));
    assert_eq!(
        stored_states(&h),
        vec![(2, EntryState::AckedRun { end: 10 })]
    );
    // An ack below a run starts its own (runs are keyed by their start).
    assert!(h.ack(&ds[1], 1));
    assert_eq!(
        stored_states(&h),
        vec![(1, EntryState::AckedRun { end: 10 }),],
        "the run above joins the new one"
    );
    // A restart keeps 1..9 settled: only 0 comes again.
    h.restart(2);
    let again = h.pull(TIMEOUT + 10, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 0)]);
    assert!(h.ack(&again[0], TIMEOUT + 11));
    assert_eq!(h.state.floor(0), 10);
    assert!(h.store.entries.is_empty(), "{:?}", h.store.entries);
}

#[test]
fn single_acked_entries_written_before_runs_still_load_as_settled() {
    let mut h = Harness::queue(4);
    // A data directory from before runs: 1 and 2 acked one entry each.
    for o in [1, 2] {
        h.store
            .entries
            .insert((0, o), SubEntry::settled(EntryState::Acked));
    }
    h.restart(0);
    let ds = h.pull(1, 10, "c");
    assert_eq!(offsets(&ds), vec![(0, 0), (0, 3)]);
    assert!(h.ack(&ds[1], 2));
    assert!(h.ack(&ds[0], 3));
    assert_eq!(h.state.floor(0), 4);
    assert!(h.store.entries.is_empty(), "{:?}", h.store.entries);
}

#[test]
fn retention_into_a_run_keeps_its_tail() {
    let mut h = Harness::queue(8);
    let ds = h.pull(0, 8, "c");
    for d in &ds[2..6] {
        assert!(h.ack(d, 1));
    }
    assert_eq!(
        stored_states(&h),
        vec![(2, EntryState::AckedRun { end: 6 })]
    );
    // Retention removes 0..4: the floor lands inside the run, keeps its
    // tail, then moves over it (4 and 5 are settled).
    let changes = h.state.sync_low(0, 4, 2);
    h.commit(changes);
    assert_eq!(h.state.floor(0), 6);
    assert!(h.store.entries.is_empty(), "{:?}", h.store.entries);
    assert_eq!(h.store.cursors[&0], 6);
    h.restart(3);
    let again = h.pull(TIMEOUT + 10, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 6), (0, 7)], "4 and 5 stay acked");
}

#[test]
fn redriving_a_dead_letter_inside_a_run_splits_it() {
    let mut h = Harness::new(config(Mode::Queue, Some(1), Ordering::None), 1);
    for _ in 0..6 {
        h.log.push(0, None, 0);
    }
    let ds = h.pull(0, 6, "c");
    assert!(h.ack(&ds[1], 0));
    assert!(h.ack(&ds[2], 0));
    h.nack(&ds[3], 0, None, false);
    assert!(h.ack(&ds[4], 0));
    assert!(h.ack(&ds[5], 0));
    assert_eq!(
        stored_states(&h),
        vec![(1, EntryState::AckedRun { end: 6 })]
    );
    assert_eq!(h.redrive(), 1);
    assert_eq!(
        stored_states(&h),
        vec![
            (1, EntryState::AckedRun { end: 3 }),
            (3, EntryState::Pending),
            (4, EntryState::AckedRun { end: 6 }),
        ]
    );
    // After a restart the redriven 3 comes again, and nothing acked (0,
    // whose only allowed delivery the restart cut, is dead-lettered).
    h.restart(1);
    let again = h.pull(TIMEOUT + 10, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 3)]);
}

#[test]
fn retention_below_the_floor_is_counted_and_skipped() {
    let mut h = Harness::queue(4);
    let ds = h.pull(0, 1, "c");
    let changes = h.state.sync_low(0, 3, 1);
    h.commit(changes);
    assert_eq!(h.state.expired_by_retention, 3);
    assert!(!h.ack(&ds[0], 2));
    assert_eq!(offsets(&h.pull(3, 10, "c")), vec![(0, 3)]);
}

#[test]
fn a_crash_redelivers_leases_in_flight_and_keeps_failures() {
    let mut h = Harness::new(config(Mode::Queue, Some(3), Ordering::None), 1);
    h.log.push(0, None, 0);
    h.log.push(0, None, 0);
    let ds = h.pull(0, 10, "c");
    h.ack(&ds[1], 1);
    // First deliveries write no entry (only the partition's delivered
    // mark): the store holds only the out-of-order ack.
    assert_eq!(h.store.entries.len(), 1);
    assert_eq!(h.store.delivered.get(&0), Some(&2));
    h.restart(2);
    // Offset 1 stays acked; offset 0, in flight at the crash, comes back
    // at once and its interrupted delivery counts as an attempt.
    let again = h.pull(2, 10, "c");
    assert_eq!(offsets(&again), vec![(0, 0)]);
    assert_eq!(again[0].attempt, 2);
    // A failure is durable: after a restart it is still attempt 3 next.
    h.nack(&again[0], 3, Some(100), false);
    h.restart(4);
    assert!(
        h.pull(4, 10, "c").is_empty(),
        "the retry keeps its due time"
    );
    let second = h.pull(103, 10, "c");
    assert_eq!(second[0].attempt, 3);
    // The last failure is recorded before its dead-letter copy: a crash
    // in between still dead-letters it, exactly once.
    let mut changes = Vec::new();
    let failure = Failure {
        kind: FailKind::Nack,
        reason: "last".into(),
        delay_ms: None,
        permanent: false,
    };
    assert!(h
        .state
        .nack(0, 0, second[0].token, failure, 104, &mut changes));
    h.commit(changes);
    let _lost_with_the_crash = h.state.take_jobs();
    h.restart(105);
    assert_eq!(h.dead_letters, vec![(0, 0)]);
    assert_eq!(h.store.dead[&(0, 0)].reason, "last");
    assert_eq!(h.state.floor(0), 2);
    assert!(h.store.entries.is_empty());
    h.restart(106);
    assert_eq!(h.dead_letters, vec![(0, 0)], "not dead-lettered twice");
}

#[test]
fn acked_leases_do_not_leave_timers_behind() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    for round in 0..20u64 {
        for _ in 0..1000 {
            h.log.push(0, None, 0);
        }
        let ds = h.pull(round, 1000, "c");
        assert_eq!(ds.len(), 1000);
        for d in &ds {
            assert!(h.ack(d, round));
        }
    }
    assert_eq!(h.state.floor(0), 20_000);
    assert!(
        h.state.timer_count() < 10_000,
        "{} timers held",
        h.state.timer_count()
    );
}

#[test]
fn a_pulls_leases_share_one_timer_that_fails_only_what_is_still_leased() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 2);
    for _ in 0..100 {
        h.log.push(0, None, 0);
        h.log.push(1, None, 0);
    }
    let ds = h.pull(0, 200, "c");
    assert_eq!(ds.len(), 200);
    // One run per partition, not one timer per message.
    assert_eq!(h.state.timer_count(), 2);
    assert_eq!(h.state.next_deadline(), Some(TIMEOUT));
    // Acked and extended leases are left alone when the run fires.
    assert!(h.ack(&ds[0], 10));
    let extended = ds[1];
    assert!(h.state.extend(
        extended.partition,
        extended.offset,
        extended.token,
        5000,
        10
    ));
    // A second pull's leases in the same partition range keep their own
    // deadline.
    h.log.push(0, None, 0);
    let later = h.pull(500, 10, "c");
    assert_eq!(offsets(&later), vec![(0, 100)]);
    h.tick(TIMEOUT);
    let expired = 200 - 2;
    assert_eq!(h.stats(TIMEOUT).delayed, expired, "retrying after backoff");
    assert!(h
        .state
        .is_leased(extended.partition, extended.offset, extended.token));
    assert!(h.state.is_leased(0, 100, later[0].token));
    assert!(!h
        .state
        .is_leased(ds[2].partition, ds[2].offset, ds[2].token));
}

#[test]
fn a_lease_run_spans_a_bounded_range() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    for _ in 0..10_000 {
        h.log.push(0, None, 0);
    }
    let ds = h.pull(0, 10_000, "c");
    assert_eq!(ds.len(), 10_000);
    // 4,096 offsets at most per run: three timers, not one, nor 10,000.
    assert_eq!(h.state.timer_count(), 3);
    h.tick(TIMEOUT);
    assert_eq!(h.stats(TIMEOUT).delayed, 10_000, "every lease ended");
}

#[test]
fn delivery_tokens_differ_per_delivery_and_are_never_zero() {
    let h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    let mut seen = HashSet::new();
    for pull in [1u64, 2, u64::MAX, 0x8000_0000_0000_0000] {
        for p in 0..4u32 {
            for o in 0..256u64 {
                let t = h.state.delivery_token(pull, p, o);
                assert_ne!(t, 0);
                assert!(seen.insert(t), "token repeated: pull {pull} {p}@{o}");
            }
        }
    }
}

#[test]
fn memory_follows_messages_in_flight_not_the_backlog() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    h.state.set_max_tracked(50);
    for _ in 0..100_000 {
        h.log.push(0, None, 0);
    }
    // A huge backlog costs nothing until it is delivered.
    assert_eq!(h.state.tracked(), 0);
    assert_eq!(h.stats(0).backlog, 100_000);
    // Consumers that never ack can hold at most the window.
    let mut held = Vec::new();
    for i in 0..10 {
        held.extend(h.pull(i, 20, "c"));
    }
    assert_eq!(held.len(), 50);
    assert_eq!(h.state.tracked(), 50);
    assert!(
        h.pull(11, 20, "c").is_empty(),
        "the scan pauses at the window"
    );
    // Acks free the window and delivery goes on from there.
    for d in &held {
        h.ack(d, 12);
    }
    assert_eq!(h.state.tracked(), 0);
    assert_eq!(h.pull(13, 20, "c").len(), 20);
    assert_eq!(h.stats(13).backlog, 100_000 - 50);
}

#[test]
fn settled_leftovers_below_the_cursor_are_never_delivered() {
    let mut h = Harness::queue(3);
    h.store.cursors.insert(0, 2);
    h.store
        .entries
        .insert((0, 1), SubEntry::settled(EntryState::Acked));
    h.restart(0);
    assert_eq!(offsets(&h.pull(1, 10, "c")), vec![(0, 2)]);
}

#[derive(Debug, Clone)]
enum Op {
    Produce(usize),
    Pull(usize),
    Ack(usize),
    /// Ack, in one request, the outstanding deliveries whose index plus
    /// this is not a multiple of three (runs with gaps between).
    AckMany(usize),
    Nack(usize),
    Advance(u64),
    Restart,
}

/// The indexes of `len` outstanding deliveries an [`Op::AckMany`] acks.
fn ack_many_picks(skip: usize, len: usize) -> Vec<usize> {
    (0..len).filter(|j| !(j + skip).is_multiple_of(3)).collect()
}

/// Removes the picked deliveries from `outstanding`, in order.
fn take_picked(outstanding: &mut Vec<Delivery>, skip: usize) -> Vec<Delivery> {
    let picks = ack_many_picks(skip, outstanding.len());
    let mut taken = Vec::with_capacity(picks.len());
    for (removed, j) in picks.into_iter().enumerate() {
        taken.push(outstanding.remove(j - removed));
    }
    taken
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..2).prop_map(Op::Produce),
        (1usize..5).prop_map(Op::Pull),
        (0usize..8).prop_map(Op::Ack),
        (0usize..3).prop_map(Op::AckMany),
        (0usize..8).prop_map(Op::Nack),
        (1u64..3000).prop_map(Op::Advance),
        Just(Op::Restart),
    ]
}

fn run_model(
    mode: Mode,
    ordering: Ordering,
    ops: Vec<Op>,
) -> std::result::Result<(), TestCaseError> {
    run_model_bounded(mode, ordering, None, ops)
}

/// `max_tracked`: a small tracking bound makes key followers park (also
/// across restarts).
fn run_model_bounded(
    mode: Mode,
    ordering: Ordering,
    max_tracked: Option<u64>,
    ops: Vec<Op>,
) -> std::result::Result<(), TestCaseError> {
    let mut h = Harness::new(config(mode, None, ordering), 2);
    if let Some(n) = max_tracked {
        h.state.set_max_tracked(n);
    }
    let mut now = 0u64;
    let mut outstanding: Vec<Delivery> = Vec::new();
    let mut acked: HashSet<(u32, u64)> = HashSet::new();
    let consumers = ["a", "b"];
    let mut turn = 0;
    for op in ops {
        match op {
            Op::Produce(p) => {
                h.log.push(p, Some(h.log.parts[p].len() as u64 % 3), 0);
            }
            Op::Pull(max) => {
                turn += 1;
                // Leases valid before the pull (not expired at `now`).
                h.tick(now);
                let valid: HashSet<(u32, u64)> = outstanding
                    .iter()
                    .filter(|o| h.state.is_leased(o.partition, o.offset, o.token))
                    .map(|o| (o.partition, o.offset))
                    .collect();
                let ds = h.pull(now, max, consumers[turn % 2]);
                if mode == Mode::Queue {
                    for d in &ds {
                        prop_assert!(
                            !valid.contains(&(d.partition, d.offset)),
                            "leased twice: {:?} at {}",
                            d,
                            now
                        );
                    }
                }
                outstanding.extend(ds);
            }
            Op::Ack(i) if !outstanding.is_empty() => {
                let d = outstanding.remove(i % outstanding.len());
                if h.ack(&d, now) && mode == Mode::Queue {
                    prop_assert!(
                        acked.insert((d.partition, d.offset)),
                        "acked twice: {:?}",
                        d
                    );
                }
            }
            Op::AckMany(skip) => {
                let ds = take_picked(&mut outstanding, skip);
                for (d, known) in ds.iter().zip(h.ack_all(&ds, now)) {
                    if known && mode == Mode::Queue {
                        prop_assert!(
                            acked.insert((d.partition, d.offset)),
                            "acked twice: {:?}",
                            d
                        );
                    }
                }
            }
            Op::Nack(i) if !outstanding.is_empty() => {
                let d = outstanding.remove(i % outstanding.len());
                h.nack(&d, now, None, false);
            }
            Op::Advance(ms) => {
                now += ms;
                h.tick(now);
            }
            Op::Restart => {
                h.restart(now);
                if let Some(n) = max_tracked {
                    // The server sets the bound again after loading.
                    h.state.set_max_tracked(n);
                }
                outstanding.clear();
            }
            _ => {}
        }
    }
    // Drain: a diligent consumer acks everything, eventually.
    for _ in 0..200 {
        now += 20_000;
        let ds = h.pull(now, 50, "a");
        for d in ds {
            if h.ack(&d, now) && mode == Mode::Queue {
                prop_assert!(
                    acked.insert((d.partition, d.offset)),
                    "acked twice: {:?}",
                    d
                );
            }
        }
        if h.stats(now).backlog == 0 {
            break;
        }
    }
    prop_assert_eq!(h.stats(now).backlog, 0);
    let total: usize = h.log.parts.iter().map(Vec::len).sum();
    if mode == Mode::Queue {
        prop_assert_eq!(acked.len(), total, "every message acked exactly once");
    }
    for (p, msgs) in h.log.parts.iter().enumerate() {
        prop_assert_eq!(h.state.floor(p as u32), msgs.len() as u64);
    }
    prop_assert!(
        h.store.entries.is_empty(),
        "no state left: {:?}",
        h.store.entries
    );
    Ok(())
}

/// The same operations on two queue subscriptions, one acking each
/// [`Op::AckMany`]'s deliveries one by one and the other all together:
/// after every step both deliver the same messages and both stores hold
/// the same cursors and entries (runs of acks included).
fn run_acks_together_vs_one_by_one(ops: Vec<Op>) -> std::result::Result<(), TestCaseError> {
    let fresh = || Harness::new(config(Mode::Queue, None, Ordering::Key), 2);
    let (mut single, mut together) = (fresh(), fresh());
    let (mut out_single, mut out_together): (Vec<Delivery>, Vec<Delivery>) =
        (Vec::new(), Vec::new());
    let mut now = 0u64;
    for op in ops {
        match op {
            Op::Produce(p) => {
                for h in [&mut single, &mut together] {
                    let key = h.log.parts[p].len() as u64 % 5;
                    h.log.push(p, Some(key), 0);
                }
            }
            Op::Pull(max) => {
                let a = single.pull(now, max * 4, "c");
                let b = together.pull(now, max * 4, "c");
                prop_assert_eq!(offsets(&a), offsets(&b));
                out_single.extend(a);
                out_together.extend(b);
            }
            Op::Ack(i) | Op::AckMany(i) => {
                let a = take_picked(&mut out_single, i);
                let b = take_picked(&mut out_together, i);
                let known_single: Vec<bool> = a.iter().map(|d| single.ack(d, now)).collect();
                prop_assert_eq!(known_single, together.ack_all(&b, now));
            }
            Op::Nack(i) if !out_single.is_empty() => {
                let j = i % out_single.len();
                single.nack(&out_single.remove(j), now, None, false);
                together.nack(&out_together.remove(j), now, None, false);
            }
            Op::Advance(ms) => {
                now += ms;
                single.tick(now);
                together.tick(now);
            }
            Op::Restart => {
                single.restart(now);
                together.restart(now);
                out_single.clear();
                out_together.clear();
            }
            _ => {}
        }
        prop_assert_eq!(&single.store.cursors, &together.store.cursors);
        prop_assert_eq!(&single.store.entries, &together.store.entries);
        for p in 0..2 {
            prop_assert_eq!(single.state.floor(p), together.state.floor(p));
        }
        prop_assert_eq!(single.stats(now).backlog, together.stats(now).backlog);
    }
    Ok(())
}

/// 200 cases, unless `PROPTEST_CASES` asks for another number (proptest
/// reads it only for a default config, not for `with_cases`).
fn model_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(model_config())]

    #[test]
    fn queue_every_message_acked_exactly_once(ops in proptest::collection::vec(op(), 0..60)) {
        run_model(Mode::Queue, Ordering::None, ops)?;
    }

    #[test]
    fn queue_with_key_ordering_drains(ops in proptest::collection::vec(op(), 0..60)) {
        run_model(Mode::Queue, Ordering::Key, ops)?;
    }

    #[test]
    fn queue_with_key_ordering_and_parked_followers_drains(
        ops in proptest::collection::vec(op(), 0..60)
    ) {
        run_model_bounded(Mode::Queue, Ordering::Key, Some(4), ops)?;
    }

    #[test]
    fn acks_together_store_what_acks_one_by_one_store(
        ops in proptest::collection::vec(op(), 0..80)
    ) {
        run_acks_together_vs_one_by_one(ops)?;
    }

    #[test]
    fn stream_drains_in_order(ops in proptest::collection::vec(op(), 0..60)) {
        run_model(Mode::Stream, Ordering::None, ops)?;
    }
}

/// A delivery a crash interrupts still counts: pull, crash, restart,
/// `max_attempts` times, and the message is dead-lettered instead of being
/// delivered forever (a message that crashes the server is not a loop).
#[test]
fn deliveries_interrupted_by_crashes_count_toward_max_attempts() {
    let mut h = Harness::new(config(Mode::Queue, Some(3), Ordering::None), 1);
    let offset = h.log.push(0, None, 0);
    let mut now = 1_000;
    for attempt in 1..=3u32 {
        let got = h.pull(now, 10, "c");
        assert_eq!(got.len(), 1, "attempt {attempt}: {got:?}");
        assert_eq!(got[0].attempt, attempt);
        // The server dies with the delivery in flight.
        now += 10;
        h.restart(now);
    }
    let got = h.pull(now, 10, "c");
    assert!(got.is_empty(), "delivered a fourth time: {got:?}");
    h.run_jobs(now);
    assert_eq!(h.dead_letters, vec![(0, offset)]);
    // Settled: never delivered again, also after another restart.
    h.restart(now + 10);
    assert!(h.pull(now + 20, 10, "c").is_empty());
}

/// A seek back replays messages with fresh attempts (only a crash counts
/// an interrupted delivery).
#[test]
fn a_seek_back_replays_without_counting_earlier_deliveries() {
    let mut h = Harness::new(config(Mode::Queue, Some(1), Ordering::None), 1);
    h.log.push(0, None, 0);
    let got = h.pull(1_000, 10, "c");
    assert!(h.ack(&got[0], 1_001));
    let changes = h.state.seek(0, 0, 1_002);
    h.store.apply(&changes);
    let again = h.pull(1_003, 10, "c");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 1);
}

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// Delayed messages wait on disk: however many there are, they never use
/// up the tracking bound, and other messages flow.
#[test]
fn delayed_messages_do_not_stall_the_queue() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    h.state.set_max_tracked(10);
    for _ in 0..50 {
        h.log.push(0, None, 60_000);
    }
    for _ in 0..5 {
        h.log.push(0, None, 0);
    }
    let got = h.pull(0, 100, "c");
    assert_eq!(
        offsets(&got),
        (50..55).map(|o| (0, o)).collect::<Vec<_>>(),
        "the five undelayed messages"
    );
    assert_eq!(h.state.tracked(), 5, "only the leased are in memory");
    assert_eq!(h.stats(0).delayed, 50);
    assert_eq!(h.store.parked.len(), 50);
    for d in &got {
        assert!(h.ack(d, 1));
    }
    // Due: they come back as room allows (10 at a time here), in order,
    // never beyond the bound.
    let mut seen = Vec::new();
    for round in 0..10 {
        let got = h.pull(60_000 + round, 100, "c");
        assert!(h.state.tracked() <= 10, "tracked {}", h.state.tracked());
        for d in &got {
            assert!(h.ack(d, 60_000 + round));
        }
        seen.extend(offsets(&got));
    }
    assert_eq!(seen, (0..50).map(|o| (0, o)).collect::<Vec<_>>());
    assert!(h.store.parked.is_empty());
    assert!(h.store.entries.is_empty());
    assert_eq!(h.state.floor(0), 55);
}

/// One message delayed a year does not pin the floor: acks above it do
/// not pile up in memory or in the store, also across a restart, and the
/// message is still delivered when due.
#[test]
fn a_far_delay_does_not_pin_the_floor() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 1);
    h.log.push(0, None, YEAR_MS);
    for _ in 0..1000 {
        h.log.push(0, None, 0);
    }
    let mut now = 1;
    loop {
        let got = h.pull(now, 300, "c");
        if got.is_empty() {
            break;
        }
        for d in &got {
            assert!(h.ack(d, now));
        }
        now += 1;
    }
    assert_eq!(h.state.floor(0), 1001);
    assert_eq!(h.state.tracked(), 0);
    assert!(h.store.entries.is_empty(), "{:?}", h.store.entries.len());
    h.restart(now);
    assert_eq!(h.state.tracked(), 0);
    assert_eq!(h.stats(now).backlog, 1);
    assert!(h.pull(YEAR_MS - 1, 10, "c").is_empty());
    let got = h.pull(YEAR_MS, 10, "c");
    assert_eq!(offsets(&got), vec![(0, 0)]);
    assert!(h.ack(&got[0], YEAR_MS));
    assert_eq!(h.stats(YEAR_MS).backlog, 0);
    assert!(h.store.parked.is_empty() && h.store.entries.is_empty());
}

/// A key whose head retries later holds back that key only: its long line
/// of followers waits on disk, other keys are delivered, and the line is
/// delivered in order once the head settles (also across a restart).
#[test]
fn a_retrying_key_holds_back_only_itself() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::Key), 1);
    h.state.set_max_tracked(100);
    let a = Some(1);
    let b = Some(2);
    h.log.push(0, a, 0);
    let head = h.pull(0, 1, "c");
    assert_eq!(offsets(&head), vec![(0, 0)]);
    // The head fails with a long backoff: it waits on disk, holding key A.
    assert!(h.nack(&head[0], 1, Some(3_600_000), false));
    for _ in 0..1000 {
        h.log.push(0, a, 0);
    }
    for _ in 0..20 {
        h.log.push(0, b, 0);
    }
    let mut others = Vec::new();
    for round in 0..50 {
        let got = h.pull(2 + round, 100, "c");
        for d in &got {
            assert!(h.ack(d, 2 + round));
        }
        others.extend(offsets(&got));
    }
    assert_eq!(
        others,
        (1001..1021).map(|o| (0, o)).collect::<Vec<_>>(),
        "key B flows while key A waits"
    );
    assert!(
        h.state.tracked() <= 100 + 1,
        "tracked {}",
        h.state.tracked()
    );
    h.restart(100);
    // The head comes back when due, then A's line in order.
    let mut line = Vec::new();
    for now in 3_600_001..3_602_001 {
        let got = h.pull(now, 100, "c");
        if got.is_empty() && h.stats(now).backlog == 0 {
            break;
        }
        for d in &got {
            assert!(h.ack(d, now));
        }
        line.extend(offsets(&got));
    }
    assert_eq!(line, (0..1001).map(|o| (0, o)).collect::<Vec<_>>());
    assert!(h.store.parked.is_empty() && h.store.entries.is_empty());
}

/// A redrive of more dead letters than the tracking bound parks the rest:
/// they are delivered as room frees, none is lost.
#[test]
fn a_large_redrive_respects_the_tracking_bound() {
    let mut h = Harness::new(config(Mode::Queue, Some(1), Ordering::None), 1);
    for _ in 0..40 {
        h.log.push(0, None, 0);
    }
    let got = h.pull(0, 100, "c");
    for d in &got {
        h.nack(d, 1, None, true);
    }
    assert_eq!(h.dead_letters.len(), 40);
    h.state.set_max_tracked(10);
    assert_eq!(h.redrive(), 40);
    assert!(h.state.tracked() <= 10);
    let mut seen = Vec::new();
    for round in 0..20 {
        let got = h.pull(10 + round, 100, "c");
        for d in &got {
            assert!(h.ack(d, 10 + round));
        }
        seen.extend(offsets(&got));
        assert!(h.state.tracked() <= 10);
    }
    seen.sort();
    assert_eq!(seen, (0..40).map(|o| (0, o)).collect::<Vec<_>>());
    assert!(h.store.parked.is_empty());
}

/// Stream mode counts interrupted deliveries of the head too.
#[test]
fn stream_deliveries_interrupted_by_crashes_count_toward_max_attempts() {
    let mut h = Harness::new(config(Mode::Stream, Some(2), Ordering::None), 1);
    h.log.push(0, None, 0);
    h.log.push(0, None, 0);
    let got = h.pull(1_000, 10, "c");
    assert_eq!(got[0].attempt, 1);
    h.restart(1_010);
    let got = h.pull(1_020, 10, "c");
    assert_eq!(offsets(&got)[0], (0, 0));
    assert_eq!(got[0].attempt, 2, "the interrupted delivery counted");
    h.restart(1_030);
    // Both attempts used: the head is dead-lettered, the next one flows.
    let got = h.pull(1_040, 10, "c");
    h.run_jobs(1_040);
    assert_eq!(h.dead_letters, vec![(0, 0)]);
    let rest = if got.is_empty() {
        h.pull(1_050, 10, "c")
    } else {
        got
    };
    assert_eq!(offsets(&rest), vec![(0, 1)]);
    assert_eq!(rest[0].attempt, 1);
}

/// A message parked by time above the floor (an earlier one of its
/// partition is unsettled), then a restart: the scan starts again at the
/// floor, and the parked message comes back (due) before the scan meets
/// it. Once back it is known (leased here): the scan must leave it alone,
/// not classify it a second time.
fn parked_above_the_floor_then_restart(ordering: Ordering) -> Harness {
    let mut h = Harness::new(config(Mode::Queue, None, ordering), 1);
    h.log.push(0, Some(1), 0); // 0: key 1, stays unsettled (floor 0)
    h.log.push(0, Some(2), 0); // 1: key 2, retried after a long backoff
    let ds = h.pull(0, 10, "c");
    assert_eq!(offsets(&ds), vec![(0, 0), (0, 1)]);
    assert!(h.nack(&ds[1], 1, Some(10 * parked::PARK_AFTER_MS), false));
    assert_eq!(h.store.parked.len(), 1, "the retry waits on disk");
    assert_eq!(h.state.floor(0), 0);
    h.restart(2);
    h
}

#[test]
fn a_parked_message_back_before_the_scan_meets_it_is_delivered_once() {
    let mut h = parked_above_the_floor_then_restart(Ordering::None);
    let now = 10 * parked::PARK_AFTER_MS + 1;
    let ds = h.pull(now, 10, "c");
    let mut got = offsets(&ds);
    got.sort_unstable();
    assert_eq!(got, vec![(0, 0), (0, 1)], "each delivered once: {ds:?}");
    for d in &ds {
        assert!(h.ack(d, now), "stale delivery {d:?}");
    }
    assert_eq!(h.stats(now).backlog, 0);
    assert_eq!(h.state.floor(0), 2);
    assert!(h.store.entries.is_empty() && h.store.parked.is_empty());
}

#[test]
fn a_parked_key_holder_back_before_the_scan_meets_it_is_not_stuck() {
    let mut h = parked_above_the_floor_then_restart(Ordering::Key);
    let now = 10 * parked::PARK_AFTER_MS + 1;
    let ds = h.pull(now, 10, "c");
    let mut got = offsets(&ds);
    got.sort_unstable();
    assert_eq!(got, vec![(0, 0), (0, 1)], "each delivered once: {ds:?}");
    for d in &ds {
        assert!(h.ack(d, now), "stale delivery {d:?}");
    }
    assert_eq!(h.stats(now).backlog, 0, "nothing stuck behind its key");
    assert_eq!(h.state.floor(0), 2);
    assert!(h.store.entries.is_empty() && h.store.parked.is_empty());
}

/// The case proptest found (see proptest-regressions), kept as a plain
/// test: lease expiries park a key holder above the floor of its
/// partition, then a restart.
#[test]
fn queue_with_key_ordering_drains_after_restarts_regression() {
    use Op::*;
    let ops = vec![
        Produce(1),
        Produce(1),
        Pull(2),
        Restart,
        Pull(2),
        Restart,
        Pull(2),
        Produce(0),
        Restart,
        Pull(2),
        Advance(1000),
        Advance(800),
        Pull(2),
        Advance(1000),
        Restart,
    ];
    run_model(Mode::Queue, Ordering::Key, ops).unwrap();
}

/// Pulls and acks one delivery at a time until nothing is left; returns
/// the deliveries in the order they were made.
fn drain_one_by_one(h: &mut Harness, mut now: u64) -> Vec<(u32, u64)> {
    let mut order = Vec::new();
    for _ in 0..100 {
        let ds = h.pull(now, 1, "c");
        for d in &ds {
            assert!(h.ack(d, now), "stale delivery {d:?}");
        }
        order.extend(offsets(&ds));
        if ds.is_empty() && h.stats(now).backlog == 0 {
            break;
        }
        now += 1;
    }
    order
}

/// A key's followers beyond the line kept in memory are parked; a restart
/// with the key's earlier messages still unsettled (in flight, queued in
/// memory) must not let a parked follower overtake them: the refill from
/// disk waits until the scan has met the key's earlier messages again.
#[test]
fn parked_followers_keep_their_key_order_across_a_restart() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::Key), 1);
    h.state.set_max_tracked(4);
    for _ in 0..4 {
        h.log.push(0, Some(9), 0);
    }
    let got = h.pull(0, 10, "c");
    assert_eq!(offsets(&got), vec![(0, 0)]);
    assert_eq!(h.store.parked.len(), 1, "the last follower waits on disk");
    h.restart(10);
    let order = drain_one_by_one(&mut h, 20);
    assert_eq!(order, (0..4).map(|o| (0, o)).collect::<Vec<_>>());
    assert!(h.store.parked.is_empty() && h.store.entries.is_empty());
    assert_eq!(h.state.floor(0), 4);
}

/// The key's holder was acked and its parked followers not yet brought
/// back when the server stopped, while an earlier message of another key
/// keeps the floor below them: they still come back after the restart
/// (once the scan has passed them), in order.
#[test]
fn parked_followers_of_a_free_key_come_back_after_a_restart() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::Key), 1);
    h.state.set_max_tracked(6);
    h.log.push(0, Some(1), 0); // 0: key 1, stays in flight
    for _ in 0..7 {
        h.log.push(0, Some(9), 0); // 1..=7: key 9
    }
    let got = h.pull(0, 10, "c");
    assert_eq!(offsets(&got), vec![(0, 0), (0, 1)]);
    assert_eq!(h.store.parked.len(), 3, "offsets 5 to 7 wait on disk");
    assert!(h.ack(&got[1], 1));
    let mut now = 2;
    let mut line = vec![(0, 1)];
    for _ in 0..3 {
        let ds = h.pull(now, 10, "c");
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert!(h.ack(&ds[0], now));
        line.extend(offsets(&ds));
        now += 1;
    }
    assert_eq!(line, (1..5).map(|o| (0, o)).collect::<Vec<_>>());
    // Key 9 is free, its refill not done: the server stops.
    assert_eq!(h.store.parked.len(), 3);
    assert_eq!(h.state.floor(0), 0);
    h.restart(now);
    let order = drain_one_by_one(&mut h, now + 1);
    let key9: Vec<_> = order.iter().filter(|d| d.1 > 0).copied().collect();
    assert_eq!(key9, vec![(0, 5), (0, 6), (0, 7)], "{order:?}");
    assert_eq!(order.len(), 4, "each delivered once: {order:?}");
    assert!(h.store.parked.is_empty() && h.store.entries.is_empty());
    assert_eq!(h.state.floor(0), 8);
}

/// Entries loaded at a restart (waiting retries, an out-of-order ack)
/// that fill the tracking bound do not stall the scan that classifies
/// them: the backlog drains, each message acked exactly once.
#[test]
fn entries_loaded_up_to_the_tracking_bound_still_drain() {
    let mut h = Harness::new(config(Mode::Queue, None, Ordering::None), 2);
    h.state.set_max_tracked(4);
    for p in 0..2 {
        for _ in 0..4 {
            h.log.push(p, None, 0);
        }
    }
    let mut acked: HashSet<(u32, u64)> = HashSet::new();
    let ds = h.pull(0, 4, "c");
    assert_eq!(ds.len(), 4, "{ds:?}");
    assert!(h.ack(&ds[1], 0));
    acked.insert((ds[1].partition, ds[1].offset));
    for d in [&ds[0], &ds[2], &ds[3]] {
        assert!(h.nack(d, 0, Some(1_000), false));
    }
    let more = h.pull(1, 4, "c");
    assert_eq!(more.len(), 1, "{more:?}");
    assert!(h.nack(&more[0], 1, Some(1_000), false));
    let pending = h
        .store
        .entries
        .values()
        .filter(|e| e.state == EntryState::Pending)
        .count();
    assert!(pending >= 4, "{:?}", h.store.entries);
    h.restart(2);
    h.state.set_max_tracked(4);
    let mut now = 2;
    for _ in 0..100 {
        now += 2_000;
        for d in h.pull(now, 4, "c") {
            assert!(h.ack(&d, now), "stale delivery {d:?}");
            assert!(acked.insert((d.partition, d.offset)), "acked twice: {d:?}");
        }
        if h.stats(now).backlog == 0 {
            break;
        }
    }
    assert_eq!(h.stats(now).backlog, 0);
    assert_eq!(acked.len(), 8, "{acked:?}");
    assert!(h.store.entries.is_empty(), "{:?}", h.store.entries);
    assert_eq!((h.state.floor(0), h.state.floor(1)), (4, 4));
}

#[test]
fn without_runs_each_out_of_order_ack_is_its_own_entry() {
    let mut h = Harness::queue(4);
    h.state.set_ack_runs(false);
    let ds = h.pull(0, 4, "c");
    assert!(h.ack(&ds[2], 1));
    assert!(h.ack(&ds[3], 1));
    assert_eq!(
        stored_states(&h),
        vec![(2, EntryState::Acked), (3, EntryState::Acked)]
    );
    assert!(h.ack(&ds[1], 2));
    assert!(h.ack(&ds[0], 2));
    assert_eq!(h.state.floor(0), 4);
    assert!(h.store.entries.is_empty(), "{:?}", h.store.entries);
}
