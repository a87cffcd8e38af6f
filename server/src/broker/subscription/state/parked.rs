//! Parking: messages that wait a long time — a delay or a retry due more
//! than [`PARK_AFTER_MS`] ahead, followers of a key beyond
//! [`KEY_QUEUE_IN_MEMORY`], redriven messages beyond the tracking bound —
//! leave memory for the store (`Change::Park`) and count as settled for
//! the partition's floor. So one delayed or retrying message holds back
//! only itself (or its key), the floor never sticks behind it, and memory
//! follows the messages being worked on, not those waiting.
//!
//! The caller brings them back (it does the reads): due ones by due time
//! (`unpark_due`, as room allows), a key's followers when the key frees
//! (`take_key_refills` → `unpark_key`).

use std::collections::BTreeSet;

use weir_protocol::Mode;

use super::{Change, Entry, State, Status, TimerKind};
use crate::storage::{EntryState, Parked, SubEntry};

/// Waits longer than this go to disk.
pub const PARK_AFTER_MS: u64 = 1_000;
/// Followers of one key kept in memory; later ones are parked.
pub const KEY_QUEUE_IN_MEMORY: usize = 256;

impl State {
    /// Whether a wait until `due` should be parked.
    pub(super) fn should_park_wait(&self, due: u64, now: u64) -> bool {
        self.config.mode == Mode::Queue && due > now.saturating_add(PARK_AFTER_MS)
    }

    /// Moves an in-memory entry to the store. `behind_key`: it waits for
    /// its key (else for its due time).
    pub(super) fn park(
        &mut self,
        p: u32,
        offset: u64,
        behind_key: Option<u64>,
        changes: &mut Vec<Change>,
    ) {
        let Some(part) = self.parts.get_mut(p as usize) else {
            return;
        };
        let Some(e) = part.entries.remove(&offset) else {
            return;
        };
        self.ready.remove(&(p, offset));
        // `untrack`, field by field (`part` is borrowed).
        self.leased = self.leased.saturating_sub(1);
        if e.status == Status::Unscanned {
            self.unscanned = self.unscanned.saturating_sub(1);
        }
        let parked = Parked {
            partition: p,
            offset,
            entry: SubEntry {
                state: EntryState::Pending,
                attempts: e.attempts,
                due_at: e.due_at,
                reason: e.reason,
            },
            key: e.key,
            behind_key: behind_key.is_some(),
        };
        match behind_key {
            Some(k) => self.keys.entry(k).or_default().parked += 1,
            None => {
                part.parked_due += 1;
                self.parked_due_hint = Some(
                    self.parked_due_hint
                        .map_or(parked.entry.due_at, |h| h.min(parked.entry.due_at)),
                );
            }
        }
        self.unpersist(p, offset, changes);
        changes.push(Change::Park { parked });
        if offset >= self.parts[p as usize].floor {
            // Settled as far as the floor is concerned; its fate is on disk.
            self.settled_above_floor(p, offset, changes);
        }
    }

    /// When the earliest message parked by time is due (a hint: the caller
    /// sets it from the store after loading and after each unpark pass).
    pub fn parked_due_hint(&self) -> Option<u64> {
        self.parked_due_hint
    }

    pub fn set_parked_due_hint(&mut self, hint: Option<u64>) {
        self.parked_due_hint = hint;
    }

    /// How many parked-by-time messages may come back now.
    pub fn unpark_room(&self) -> usize {
        self.max_tracked.saturating_sub(self.tracked()) as usize
    }

    /// Whether parked messages are due and wait only for room (an ack that
    /// frees some should wake the timer task).
    pub fn parked_due_waiting(&self, now: u64) -> bool {
        self.parked_due_hint.is_some_and(|due| due <= now)
    }

    /// When the timer task should next look at messages parked by time:
    /// their earliest due time, or never while the tracking bound is full
    /// (an ack that frees room wakes it).
    pub fn parked_wake(&self) -> Option<u64> {
        if self.unpark_room() == 0 {
            return None;
        }
        self.parked_due_hint
    }

    /// Brings back messages parked by time that are due: they become
    /// deliverable (below or above the floor).
    pub fn unpark_due(&mut self, parked: Vec<Parked>, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for parked in parked {
            let p = parked.partition;
            if let Some(part) = self.parts.get_mut(p as usize) {
                part.parked_due = part.parked_due.saturating_sub(1);
            }
            changes.push(Change::Unpark {
                parked: parked.clone(),
            });
            if !self.restore(&parked, &mut changes) {
                continue;
            }
            let key = parked.key.filter(|_| self.key_ordering());
            let holds = match key {
                Some(k) => {
                    let ks = self.keys.entry(k).or_default();
                    match ks.holder {
                        None => {
                            ks.holder = Some((p, parked.offset));
                            true
                        }
                        Some(h) => h == (p, parked.offset),
                    }
                }
                None => true,
            };
            if holds {
                self.make_ready(p, parked.offset);
            } else if let Some(k) = key {
                self.hold_back(p, parked.offset);
                if let Some(ks) = self.keys.get_mut(&k) {
                    ks.queue.push_front((p, parked.offset));
                    self.key_queued += 1;
                }
            }
        }
        let _ = now;
        changes
    }

    /// Asks for a key's followers to be read again (a read failed).
    pub fn request_key_refill(&mut self, key: u64) {
        self.key_refills.insert(key);
    }

    /// Keys whose followers wait on disk while nothing holds the key. A
    /// key something holds (in memory, or parked by time) is left out: its
    /// followers could only wait in memory, taking room of the tracking
    /// bound that a parked holder needs to come back; the holder's settle
    /// passes the key on and asks for the refill again.
    pub fn take_key_refills(&mut self) -> Vec<u64> {
        let keys = &self.keys;
        std::mem::take(&mut self.key_refills)
            .into_iter()
            .filter(|k| keys.get(k).is_none_or(|ks| ks.holder.is_none()))
            .collect()
    }

    /// Whether a key's refill was asked for and not yet taken (the timer
    /// task should run).
    pub fn key_refills_pending(&self) -> bool {
        !self.key_refills.is_empty()
    }

    /// Brings back the first followers of `key` (in offset order), read by
    /// the caller; the first takes the key.
    ///
    /// A follower at offset `o` of partition `p` comes back only once the
    /// scan of `p` has passed `o`: then every earlier message of the key in
    /// `p` has been classified — settled, holding the key, queued in memory
    /// or parked itself (and so read before `o`). Until then (after a
    /// restart the scan starts again at the floor, where the key's earlier
    /// unsettled messages are unclassified again) it and the key's later
    /// followers in `p` stay parked; the key's messages the scan meets
    /// before `o` take the key or queue as if nothing were parked (they
    /// come first), and the refill is asked for again once the scan has
    /// passed `o` (`scan_passed`).
    pub fn unpark_key(&mut self, key: u64, parked: Vec<Parked>, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let n = parked.len() as u64;
        let mut taken = 0u64;
        // Partitions whose followers wait for the scan (the read is in
        // (partition, offset) order).
        let mut waiting: Vec<u32> = Vec::new();
        for parked in &parked {
            let (p, o) = (parked.partition, parked.offset);
            if waiting.contains(&p) {
                continue;
            }
            if self
                .parts
                .get(p as usize)
                .is_some_and(|part| o >= part.next)
            {
                self.wait_for_scan(key, p, o);
                waiting.push(p);
                continue;
            }
            taken += 1;
            changes.push(Change::Unpark {
                parked: parked.clone(),
            });
            if self.restore(parked, &mut changes) {
                self.hold_back(p, o);
                self.keys.entry(key).or_default().queue.push_back((p, o));
                self.key_queued += 1;
            }
        }
        if let Some(ks) = self.keys.get_mut(&key) {
            ks.parked = ks.parked.saturating_sub(taken);
            if n == 0 {
                // The count was stale: nothing is parked behind the key.
                ks.parked = 0;
            }
        }
        if taken > 0 || n == 0 {
            // (Not when all wait for the scan: a free key would ask for
            // the same refill again at once.)
            self.pass_key_on(key, now);
        }
        changes
    }

    /// The refill of `key` waits until the scan of `p` has passed `o`.
    pub(super) fn wait_for_scan(&mut self, key: u64, p: u32, o: u64) {
        let ks = self.keys.entry(key).or_default();
        if let Some(i) = ks.waits.iter().position(|&(wp, _)| wp == p) {
            let (_, old) = ks.waits.swap_remove(i);
            self.parts[p as usize].key_waits.remove(&(old, key));
        }
        ks.waits.push((p, o));
        self.parts[p as usize].key_waits.insert((o, key));
    }

    /// The scan of `p` moved on (or was reset, `all`): refills waiting for
    /// it to pass their key's first parked follower are asked for.
    pub(super) fn scan_passed(&mut self, p: u32, all: bool) {
        let Some(part) = self.parts.get_mut(p as usize) else {
            return;
        };
        let waiting = if all {
            BTreeSet::new()
        } else {
            part.key_waits.split_off(&(part.next, 0))
        };
        let passed = std::mem::replace(&mut part.key_waits, waiting);
        for (_, key) in passed {
            if let Some(ks) = self.keys.get_mut(&key) {
                ks.waits.retain(|&(wp, _)| wp != p);
            }
            self.key_refills.insert(key);
        }
    }

    /// Whether the scan meets `o` of partition `p` before the first
    /// parked follower of `key` there whose refill waits for the scan.
    pub(super) fn before_waiting_followers(&self, key: u64, p: u32, o: u64) -> bool {
        self.keys
            .get(&key)
            .is_some_and(|ks| ks.waits.iter().any(|&(wp, wo)| wp == p && o < wo))
    }

    /// Puts a parked message back in memory (as a pending entry, stored so
    /// a crash keeps it). False when the partition no longer exists.
    fn restore(&mut self, parked: &Parked, changes: &mut Vec<Change>) -> bool {
        let (p, o) = (parked.partition, parked.offset);
        let Some(floor) = self.parts.get(p as usize).map(|part| part.floor) else {
            return false;
        };
        if o >= floor {
            self.unsettle(p, o, changes);
        }
        self.parts[p as usize].entries.insert(
            o,
            Entry {
                status: Status::KeyBlocked,
                attempts: parked.entry.attempts,
                due_at: 0,
                key: parked.key,
                reason: parked.entry.reason.clone(),
                holder: None,
            },
        );
        self.leased += 1;
        self.persist(
            p,
            o,
            SubEntry {
                state: EntryState::Pending,
                attempts: parked.entry.attempts,
                due_at: 0,
                reason: parked.entry.reason.clone(),
            },
            changes,
        );
        true
    }

    /// Forgets parked records the caller deletes (a seek of `partition`).
    pub fn drop_parked(&mut self, parked: &[Parked]) -> Vec<Change> {
        let mut changes = Vec::new();
        for parked in parked {
            if parked.behind_key {
                if let Some(k) = parked.key {
                    if let Some(ks) = self.keys.get_mut(&k) {
                        ks.parked = ks.parked.saturating_sub(1);
                    }
                }
            } else if let Some(part) = self.parts.get_mut(parked.partition as usize) {
                part.parked_due = part.parked_due.saturating_sub(1);
            }
            changes.push(Change::Unpark {
                parked: parked.clone(),
            });
        }
        changes
    }

    /// Messages parked on disk (by time, and behind keys).
    pub fn parked_count(&self) -> u64 {
        let by_time: u64 = self.parts.iter().map(|p| p.parked_due).sum();
        let behind_keys: u64 = self.keys.values().map(|k| k.parked).sum();
        by_time + behind_keys
    }

    /// Gives the key to its next follower in memory, if nothing holds it
    /// (the first waits for its due time if it has one).
    pub(super) fn pass_key_on(&mut self, key: u64, now: u64) {
        let Some(ks) = self.keys.get_mut(&key) else {
            return;
        };
        if ks.holder.is_some() {
            return;
        }
        while let Some(next) = ks.queue.pop_front() {
            self.key_queued = self.key_queued.saturating_sub(1);
            let Some(e) = self
                .parts
                .get_mut(next.0 as usize)
                .and_then(|p| p.entries.get_mut(&next.1))
            else {
                continue;
            };
            ks.holder = Some(next);
            if e.due_at > now {
                e.status = Status::Waiting;
                let at = e.due_at;
                self.push_timer(at, TimerKind::Due, next.0, next.1, 0);
            } else {
                e.status = Status::Ready;
                self.ready.insert(next);
            }
            return;
        }
        if ks.parked > 0 {
            self.key_refills.insert(key);
        } else {
            self.keys.remove(&key);
        }
    }
}
