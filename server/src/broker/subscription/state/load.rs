//! Rebuilding a subscription's state from the store at startup.

use weir_protocol::{Mode, SubscriptionConfig};

use super::{DeadLetterJob, Entry, State, Status};
use crate::storage::{EntryState, LoadedSubState};

impl State {
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
                EntryState::AckedRun { end } => {
                    part.settled.insert(offset, end);
                    part.runs.insert(offset, end);
                }
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
        if state.config.mode == Mode::Stream {
            for part in &mut state.parts {
                // Delivered past the cursor before the restart, with no
                // failure recorded: the head's delivery was interrupted.
                if part.stream.head.is_none() && part.interrupted > part.floor {
                    part.stream.interrupted_head = true;
                }
            }
        }
        state.leased = state.count_tracked();
        state.unscanned = state.count_unscanned();
        state
    }
}
