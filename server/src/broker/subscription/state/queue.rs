//! Queue mode: the scan over new messages. The caller reads the range
//! `plan_scan` names and hands the messages to `classify`, which leases
//! what it can and remembers only what cannot be delivered yet (delayed,
//! held back by key ordering, ready beyond the batch).

use std::collections::btree_map;

use super::parked::KEY_QUEUE_IN_MEMORY;
use super::{Change, Delivery, Entry, Lessee, MsgMeta, State, Status, TimerKind};

/// A range of the log to read for a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPlan {
    pub partition: u32,
    pub from: u64,
    /// Read at most this many messages.
    pub max: usize,
}

impl State {
    /// The next range to scan for up to `want` new messages, given the
    /// partitions' durable high watermarks; `None` when caught up or when
    /// the tracked window is full.
    pub fn plan_scan(&mut self, highs: &[u64], want: usize) -> Option<ScanPlan> {
        if want == 0 || self.tracked() >= self.max_tracked {
            return None;
        }
        let n = self.parts.len() as u32;
        for i in 0..n {
            let p = (self.scan_start + i) % n;
            let high = highs.get(p as usize).copied().unwrap_or(0);
            let part = &self.parts[p as usize];
            if part.next < high {
                self.scan_start = (p + 1) % n.max(1);
                let room = self.max_tracked - self.tracked();
                let max = (want as u64).min(high - part.next).min(room.max(1)) as usize;
                return Some(ScanPlan {
                    partition: p,
                    from: part.next,
                    max,
                });
            }
        }
        None
    }

    /// Classifies scanned messages of `plan` — all existing offsets in
    /// `[plan.from, covered_to)` — leasing up to `want` of them to
    /// `holder`. Returns the deliveries and the changes to persist.
    pub fn classify(
        &mut self,
        plan: ScanPlan,
        messages: &[MsgMeta],
        covered_to: u64,
        want: usize,
        now: u64,
        to: Lessee,
    ) -> (Vec<Delivery>, Vec<Change>) {
        let mut deliveries = Vec::new();
        let mut changes = Vec::new();
        let p = plan.partition;
        match self.parts.get(p as usize) {
            Some(part) if part.next == plan.from && covered_to >= plan.from => {}
            // The partition moved meanwhile (seek, retention): stale read.
            _ => return (deliveries, changes),
        }
        let mut expected = plan.from;
        for m in messages {
            if m.offset < expected || m.offset >= covered_to {
                continue;
            }
            self.mark_gap(p, expected, m.offset, &mut changes);
            expected = m.offset + 1;
            self.parts[p as usize].next = expected;
            let part = &self.parts[p as usize];
            // Settled, or passed by the floor during this very scan (a
            // parked message let it move over settled ones).
            if part.settled.contains(m.offset) || m.offset < part.floor {
                continue;
            }
            let deliver = deliveries.len() < want;
            if let Some(d) = self.classify_one(p, m, now, deliver, to, &mut changes) {
                deliveries.push(d);
            }
        }
        self.mark_gap(p, expected, covered_to, &mut changes);
        let part = &mut self.parts[p as usize];
        part.next = part.next.max(covered_to);
        self.advance_floor(p, &mut changes);
        self.scan_passed(p, false);
        (deliveries, changes)
    }

    /// Offsets `[from, to)` hold no message (never written or removed):
    /// they are settled.
    fn mark_gap(&mut self, p: u32, from: u64, to: u64, changes: &mut Vec<Change>) {
        if from >= to {
            return;
        }
        let stale: Vec<(u64, Status)> = self.parts[p as usize]
            .entries
            .range(from..to)
            .map(|(&o, e)| (o, e.status))
            .collect();
        for (o, status) in stale {
            self.parts[p as usize].entries.remove(&o);
            self.ready.remove(&(p, o));
            self.untrack(status);
            self.unpersist(p, o, changes);
        }
        self.parts[p as usize].settled.insert(from, to);
    }

    fn classify_one(
        &mut self,
        p: u32,
        m: &MsgMeta,
        now: u64,
        deliver: bool,
        to: Lessee,
        changes: &mut Vec<Change>,
    ) -> Option<Delivery> {
        let key = if self.key_ordering() {
            m.key_hash
        } else {
            None
        };
        let part = &mut self.parts[p as usize];
        // Delivered before a restart without an outcome: counted.
        let interrupted = m.offset < part.interrupted;
        let entry = match part.entries.entry(m.offset) {
            btree_map::Entry::Occupied(live) if live.get().status != Status::Unscanned => {
                // Already live: loaded and on its way to the dead-letter
                // topic, or back from parking before the scan met it
                // again after a restart (restored with its key, and maybe
                // leased already). Classifying it again would lease it
                // twice, or queue it behind the key it holds.
                return None;
            }
            btree_map::Entry::Occupied(loaded) => {
                // Met by the scan: from now on it counts toward the bound.
                self.unscanned = self.unscanned.saturating_sub(1);
                loaded.into_mut()
            }
            btree_map::Entry::Vacant(slot) => {
                self.leased += 1;
                slot.insert(Entry {
                    status: Status::Unscanned,
                    attempts: u32::from(interrupted),
                    due_at: 0,
                    key: None,
                    reason: String::new(),
                    holder: None,
                })
            }
        };
        entry.key = key;
        if entry.attempts == 0 && m.deliver_at > now {
            entry.due_at = m.deliver_at;
        }
        entry.status = Status::Ready;
        let due = entry.due_at;
        // The key's parked followers come after this message, unless its
        // partition's first one is later (their refill waits for the scan
        // to pass it, see `unpark_key`).
        let before = key.is_some_and(|k| self.before_waiting_followers(k, p, m.offset));
        let holds_key = match key {
            Some(k) => {
                let ks = self.keys.entry(k).or_default();
                let parked_before = ks.parked > 0 && !before;
                if ks.holder.is_none() && !parked_before {
                    ks.holder = Some((p, m.offset));
                    KeyTurn::Holds
                } else if parked_before
                    || ks.queue.len() >= KEY_QUEUE_IN_MEMORY
                    || self.key_queued >= self.max_tracked / 2
                {
                    // A long line behind one key waits on disk: it holds
                    // back that key only, never the tracking bound.
                    KeyTurn::Park(k)
                } else {
                    ks.queue.push_back((p, m.offset));
                    self.key_queued += 1;
                    KeyTurn::Queued
                }
            }
            None => KeyTurn::Holds,
        };
        match holds_key {
            KeyTurn::Holds => {}
            KeyTurn::Queued => {
                self.hold_back(p, m.offset);
                self.persist_undelivered(p, m.offset, changes);
                return None;
            }
            KeyTurn::Park(k) => {
                if before {
                    // Now the first parked follower of the partition: the
                    // key's later messages the scan meets park behind it.
                    self.wait_for_scan(k, p, m.offset);
                }
                self.park(p, m.offset, Some(k), changes);
                return None;
            }
        }
        if self.should_park_wait(due, now) {
            // A long delay waits on disk; the floor moves past it.
            self.park(p, m.offset, None, changes);
            return None;
        }
        if due > now {
            if let Some(e) = self.parts[p as usize].entries.get_mut(&m.offset) {
                e.status = Status::Waiting;
            }
            self.push_timer(due, TimerKind::Due, p, m.offset, 0);
            self.persist_undelivered(p, m.offset, changes);
            return None;
        }
        if deliver {
            self.lease(p, m.offset, now, to, changes)
        } else {
            self.ready.insert((p, m.offset));
            self.persist_undelivered(p, m.offset, changes);
            None
        }
    }
}

/// Where a scanned message stands with its key.
enum KeyTurn {
    Holds,
    Queued,
    Park(u64),
}

impl State {
    /// A scanned message left undelivered (delayed, behind its key, or
    /// beyond what the pull wanted) gets an entry in the store, so the
    /// partition's delivered-up-to mark, which later deliveries move past
    /// it, never counts it as delivered after a restart.
    fn persist_undelivered(&mut self, p: u32, offset: u64, changes: &mut Vec<Change>) {
        let Some(part) = self.parts.get(p as usize) else {
            return;
        };
        if part.persisted.contains(&offset) {
            return;
        }
        if let Some(durable) = part.entries.get(&offset).map(|e| e.durable()) {
            self.persist(p, offset, durable, changes);
        }
    }

    pub(super) fn hold_back(&mut self, p: u32, offset: u64) {
        self.ready.remove(&(p, offset));
        if let Some(e) = self.parts[p as usize].entries.get_mut(&offset) {
            if e.status != Status::DeadLettering {
                e.status = Status::KeyBlocked;
            }
        }
    }

    /// Whether an ack may make other messages deliverable (key ordering,
    /// a full tracking window, stream in-flight limits, redriven messages).
    pub fn acks_unblock(&self) -> bool {
        self.key_ordering()
            || self.tracked() + 1 >= self.max_tracked
            || self.config.mode == weir_protocol::Mode::Stream
    }

    /// Entries tracked in memory (leased, waiting, ready, held back), the
    /// measure the tracking bound applies to. Entries loaded at startup
    /// and not yet met by the scan (`Unscanned`) do not count: only the
    /// scan classifies them (settles them, makes them deliverable), so
    /// counting them would let them fill the bound and stall that very
    /// scan for good. Memory stays bounded: new entries join only while
    /// the others stay under `max_tracked`, and the unscanned ones (no
    /// more than the store held at startup) only ever decrease; a scan
    /// that meets them turns them into counted entries without adding any.
    pub fn tracked(&self) -> u64 {
        #[cfg(test)]
        debug_assert_eq!(self.unscanned, self.count_unscanned());
        self.leased.saturating_sub(self.unscanned)
    }
}
