//! What is stored: one message's entry written or deleted, runs of
//! out-of-order acks (one entry per run of consecutive offsets), and floor
//! moves over settled offsets with the stored entries they delete.

use super::{Change, Clear, State};
use crate::storage::{EntryState, SubEntry};

/// Above this many stored entries, a cursor move deletes its range at once.
const MAX_POINT_DELETES: usize = 256;

impl State {
    /// Writes one message's entry (and remembers that it is stored).
    pub(super) fn persist(
        &mut self,
        partition: u32,
        offset: u64,
        entry: SubEntry,
        changes: &mut Vec<Change>,
    ) {
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
    pub(super) fn unpersist(&mut self, partition: u32, offset: u64, changes: &mut Vec<Change>) {
        if let Some(part) = self.parts.get_mut(partition as usize) {
            if part.persisted.remove(&offset) {
                changes.push(Change::DeleteEntry { partition, offset });
            }
        }
    }

    /// The change for a floor move `from → to` of `partition`, deleting
    /// exactly the stored entries in between. A run of acks reaching past
    /// `to` (the floor jumped into it: retention) keeps its tail as a run
    /// starting at `to`.
    pub(super) fn cursor_change(
        &mut self,
        partition: u32,
        from: u64,
        to: u64,
        changes: &mut Vec<Change>,
    ) {
        let clear = match self.parts.get_mut(partition as usize) {
            None => Clear::Nothing,
            Some(part) => {
                let passed: Vec<(u64, u64)> =
                    part.runs.range(from..to).map(|(&s, &e)| (s, e)).collect();
                for (start, end) in passed {
                    part.runs.remove(&start);
                    if end > to {
                        part.runs.insert(to, end);
                        part.persisted.insert(to);
                        changes.push(run_entry(partition, to, end));
                    }
                }
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
        changes.push(Change::Cursor {
            partition,
            from,
            to,
            clear,
        });
    }

    /// Moves the floor over settled offsets; true when it moved.
    pub(super) fn advance_floor(&mut self, partition: u32, changes: &mut Vec<Change>) -> bool {
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
        self.cursor_change(partition, from, to, changes);
        self.scan_passed(partition, false);
        true
    }

    /// Marks `offset` settled (its entry already dropped): below the floor
    /// its stored entry goes, at or above it the floor moves or a run of
    /// acks records it.
    pub(super) fn mark_settled(&mut self, p: u32, offset: u64, changes: &mut Vec<Change>) {
        let Some(part) = self.parts.get(p as usize) else {
            return;
        };
        if offset < part.floor {
            self.unpersist(p, offset, changes);
            return;
        }
        self.settled_above_floor(p, offset, changes);
    }

    /// Marks many offsets settled at once (their entries already dropped),
    /// as [`State::mark_settled`] one by one would leave the state and the
    /// store, in fewer steps: per partition the runs of consecutive offsets
    /// join the settled set, the floor moves once, and each run left above
    /// it is stored as one run of acks.
    pub(super) fn mark_settled_many(
        &mut self,
        mut offsets: Vec<(u32, u64)>,
        changes: &mut Vec<Change>,
    ) {
        if let [(p, offset)] = offsets[..] {
            self.mark_settled(p, offset, changes);
            return;
        }
        offsets.sort_unstable();
        offsets.dedup();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut i = 0;
        while let Some(&(p, _)) = offsets.get(i) {
            runs.clear();
            while let Some(&(q, o)) = offsets.get(i) {
                if q != p {
                    break;
                }
                match runs.last_mut() {
                    Some((_, end)) if *end == o => *end = o + 1,
                    _ => runs.push((o, o + 1)),
                }
                i += 1;
            }
            self.mark_runs_settled(p, &runs, changes);
        }
    }

    /// [`State::mark_settled_many`] for the sorted, disjoint runs
    /// `[start, end)` of one partition.
    fn mark_runs_settled(&mut self, p: u32, runs: &[(u64, u64)], changes: &mut Vec<Change>) {
        let Some(part) = self.parts.get_mut(p as usize) else {
            return;
        };
        let floor = part.floor;
        let mut below = Vec::new();
        for &(start, end) in runs {
            below.extend(start..end.min(floor));
            let start = start.max(floor);
            if start < end {
                part.settled.insert(start, end);
            }
        }
        for offset in below {
            self.unpersist(p, offset, changes);
        }
        self.advance_floor(p, changes);
        let floor = self.floor(p);
        for &(start, end) in runs {
            let start = start.max(floor);
            if start < end {
                self.store_settled(p, start, end, changes);
            }
        }
    }

    /// Marks `offset` (at or above the floor) settled: the floor moves over
    /// it when it can, else a run of acks keeps it settled across a
    /// restart.
    pub(super) fn settled_above_floor(&mut self, p: u32, offset: u64, changes: &mut Vec<Change>) {
        if let Some(part) = self.parts.get_mut(p as usize) {
            part.settled.insert(offset, offset + 1);
        }
        if !self.advance_floor(p, changes) {
            self.store_settled(p, offset, offset + 1, changes);
        }
    }

    /// Stores the consecutive offsets `[start, end)` as settled: they join
    /// the run of acks ending just below them (rewriting that run's one
    /// entry: consecutive acks in one commit are one write) and the run
    /// starting just above them, or start a run. Their own entries (a
    /// redelivery's attempts), if any, go.
    fn store_settled(&mut self, p: u32, start: u64, end: u64, changes: &mut Vec<Change>) {
        if !self.ack_runs {
            for offset in start..end {
                self.persist(p, offset, SubEntry::settled(EntryState::Acked), changes);
            }
            return;
        }
        let Some(part) = self.parts.get_mut(p as usize) else {
            return;
        };
        let overlaps = part
            .runs
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start);
        if overlaps {
            // One offset inside a run is stored as settled already. (A run
            // inside a longer range cannot happen — settled together means
            // leased until then — but offset by offset stays right if it
            // does.)
            if end - start > 1 {
                for offset in start..end {
                    self.store_settled(p, offset, offset + 1, changes);
                }
            }
            return;
        }
        let stored: Vec<u64> = part.persisted.range(start..end).copied().collect();
        for offset in stored {
            part.persisted.remove(&offset);
            changes.push(Change::DeleteEntry {
                partition: p,
                offset,
            });
        }
        let first = match part.runs.range(..start).next_back() {
            Some((&s, &e)) if e == start => s,
            _ => start,
        };
        let mut last = end;
        if let Some(next_end) = part.runs.remove(&end) {
            part.persisted.remove(&end);
            changes.push(Change::DeleteEntry {
                partition: p,
                offset: end,
            });
            last = next_end;
        }
        part.runs.insert(first, last);
        part.persisted.insert(first);
        changes.push(run_entry(p, first, last));
    }

    /// `offset` (at or above the floor) is no longer settled (a message
    /// back from parking, a redriven dead letter): out of its run of acks,
    /// if stored in one, which splits around it.
    pub(super) fn unsettle(&mut self, p: u32, offset: u64, changes: &mut Vec<Change>) {
        let Some(part) = self.parts.get_mut(p as usize) else {
            return;
        };
        part.settled.remove(offset);
        let Some((&start, &end)) = part.runs.range(..=offset).next_back() else {
            return;
        };
        if offset >= end {
            return;
        }
        part.runs.remove(&start);
        if start < offset {
            part.runs.insert(start, offset);
            changes.push(run_entry(p, start, offset));
        } else {
            part.persisted.remove(&start);
            changes.push(Change::DeleteEntry {
                partition: p,
                offset: start,
            });
        }
        if offset + 1 < end {
            part.runs.insert(offset + 1, end);
            part.persisted.insert(offset + 1);
            changes.push(run_entry(p, offset + 1, end));
        }
    }
}

/// The entry of a run of acks `[start, end)`.
fn run_entry(partition: u32, start: u64, end: u64) -> Change {
    Change::Entry {
        partition,
        offset: start,
        entry: SubEntry::settled(EntryState::AckedRun { end }),
    }
}
