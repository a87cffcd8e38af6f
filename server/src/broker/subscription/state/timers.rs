//! The deadline heap: lease ends, due retries and delays, and stream
//! timers, removed lazily and fired by `tick`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Change, FailKind, Failure, State, Status, Timer, TimerKind};

impl State {
    /// When the next timer fires, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse(t)| t.at)
    }

    pub(super) fn push_timer(
        &mut self,
        at: u64,
        kind: TimerKind,
        partition: u32,
        offset: u64,
        token: u64,
    ) {
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

    pub(super) fn make_ready(&mut self, partition: u32, offset: u64) {
        if let Some(e) = self.entry_mut(partition, offset) {
            e.status = Status::Ready;
            e.holder = None;
            self.ready.insert((partition, offset));
        }
    }
}
