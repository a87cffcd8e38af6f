//! What is stored: one message's entry written or deleted, and floor
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
    /// exactly the stored entries in between.
    pub(super) fn cursor_change(&mut self, partition: u32, from: u64, to: u64) -> Change {
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
        changes.push(self.cursor_change(partition, from, to));
        self.scan_passed(partition, false);
        true
    }

    /// Marks `offset` (at or above the floor) settled: the floor moves over
    /// it when it can, else an `Acked` record keeps it settled across a
    /// restart.
    pub(super) fn settled_above_floor(&mut self, p: u32, offset: u64, changes: &mut Vec<Change>) {
        if let Some(part) = self.parts.get_mut(p as usize) {
            part.settled.insert(offset, offset + 1);
        }
        if !self.advance_floor(p, changes) {
            self.persist(
                p,
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
}
