//! Waiting dead letters: redriven (delivered again) or purged.

use weir_protocol::Mode;

use super::{Change, Entry, State, Status};
use crate::storage::{EntryState, Parked, SubEntry};

impl State {
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
            // `tracked()`, field by field (`part` is borrowed).
            let tracked = self.leased.saturating_sub(self.unscanned);
            if self.config.mode == Mode::Queue && tracked >= self.max_tracked {
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
            self.unsettle(p, o, &mut changes);
            self.parts[p as usize].entries.insert(
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
}
