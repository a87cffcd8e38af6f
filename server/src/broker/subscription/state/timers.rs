//! The deadline heap: lease ends, due retries and delays, and stream
//! timers, removed lazily and fired by `tick`.
//!
//! The leases one pull takes in one partition share a deadline, so they
//! share a timer too (`LeaseRun`: the pull's token and an offset range,
//! checked entry by entry when it fires) instead of one heap entry per
//! message. The run being built stays out of the heap (`open_run`) while
//! the pull extends it, and joins it before anything reads the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Change, FailKind, Failure, State, Status, Timer, TimerKind};

/// Most offsets one `LeaseRun` timer spans (first to last).
const MAX_RUN_SPAN: u64 = 4096;

impl State {
    /// When the next timer fires, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let heap = self.timers.peek().map(|Reverse(t)| t.at);
        let open = self.open_run.map(|t| t.at);
        heap.into_iter().chain(open).min()
    }

    /// Times out a lease pull `pull` took on `(partition, offset)` at
    /// `deadline`: extends the open run when it is that pull's in that
    /// partition with that deadline and the offset follows it closely
    /// (a run spans at most [`MAX_RUN_SPAN`] offsets, so firing or checking
    /// one looks at a bounded number of entries), else starts a new one.
    pub(super) fn lease_timer(&mut self, deadline: u64, partition: u32, offset: u64, pull: u64) {
        if let Some(run) = self.open_run.as_mut() {
            if run.at == deadline
                && run.partition == partition
                && run.token == pull
                && offset > run.last
                && offset - run.offset < MAX_RUN_SPAN
            {
                run.last = offset;
                return;
            }
        }
        self.close_run();
        self.open_run = Some(Timer {
            at: deadline,
            kind: TimerKind::LeaseRun,
            partition,
            offset,
            token: pull,
            last: offset,
        });
    }

    /// Moves the open lease run into the heap.
    fn close_run(&mut self) {
        if let Some(run) = self.open_run.take() {
            self.timers.push(Reverse(run));
            self.compact_timers();
        }
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
            last: 0,
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
            TimerKind::LeaseRun => self.run_is_live(t),
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

    fn run_is_live(&self, t: &Timer) -> bool {
        self.leased_in_run(t.partition, (t.offset, t.last), t.token, t.at)
            .next()
            .is_some()
    }

    /// Timers held (live or stale), for tests and metrics.
    pub fn timer_count(&self) -> usize {
        self.timers.len() + usize::from(self.open_run.is_some())
    }

    /// Fires every timer due at `now`: expired leases fail, waiting
    /// messages become ready, idle stream owners lose their partitions.
    pub fn tick(&mut self, now: u64) -> Vec<Change> {
        self.close_run();
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
                TimerKind::LeaseRun => {
                    let expired: Vec<u64> = self
                        .leased_in_run(t.partition, (t.offset, t.last), t.token, t.at)
                        .collect();
                    for offset in expired {
                        self.fail_entry(
                            t.partition,
                            offset,
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
