//! Failures and dead letters: backoff with jitter, retries, exhausted
//! attempts, and the dead-letter jobs' completion.

use std::hash::BuildHasher;

use super::{Change, DeadLetterJob, FailKind, Failure, State, Status, TimerKind};
use crate::broker::subscription::backoff::backoff_ms;
use crate::storage::{EntryState, SubEntry};

impl State {
    fn jitter_draw(&mut self) -> f64 {
        self.jitter_counter += 1;
        let h = self.tokens.hash_one((u64::MAX, self.jitter_counter));
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    fn backoff(&mut self, attempts: u32) -> u64 {
        let draw = self.jitter_draw();
        backoff_ms(&self.config.retry.backoff, attempts.max(1), draw)
    }

    /// When a failed delivery is retried (the nack's override, else the
    /// backoff), counting the redelivery by reason.
    pub(super) fn schedule_retry(&mut self, failure: &Failure, attempts: u32, now: u64) -> u64 {
        let delay = match failure.delay_ms {
            Some(d) => d,
            None => self.backoff(attempts),
        };
        match failure.kind {
            FailKind::Nack => self.events.redeliveries_nack += 1,
            FailKind::LeaseExpired => self.events.redeliveries_expired += 1,
            FailKind::Disconnect => self.events.redeliveries_disconnect += 1,
            FailKind::Expired => {}
        }
        now.saturating_add(delay)
    }

    pub(super) fn exhausted(&self, attempts: u32) -> bool {
        self.config
            .retry
            .max_attempts
            .is_some_and(|m| attempts >= m)
    }

    /// Applies a failure to a leased entry: retry after
    /// backoff, or dead-letter when attempts are exhausted or permanent.
    pub(super) fn fail_entry(
        &mut self,
        partition: u32,
        offset: u64,
        failure: Failure,
        now: u64,
        changes: &mut Vec<Change>,
    ) {
        let Some(attempts) = self.entry(partition, offset).map(|e| e.attempts) else {
            return;
        };
        match failure.kind {
            FailKind::Nack => self.events.nacks += 1,
            FailKind::LeaseExpired | FailKind::Disconnect | FailKind::Expired => {}
        }
        if failure.permanent || self.exhausted(attempts) {
            if let Some(e) = self.entry_mut(partition, offset) {
                e.status = Status::DeadLettering;
                e.reason = failure.reason.clone();
            }
            // Durable before the answer: after a crash the copy is made
            // from this record (exactly once, with the copy's settle).
            self.persist(
                partition,
                offset,
                SubEntry {
                    state: EntryState::DeadLettering,
                    attempts,
                    due_at: now,
                    reason: failure.reason.clone(),
                },
                changes,
            );
            self.jobs.push(DeadLetterJob {
                partition,
                offset,
                attempts,
                reason: failure.reason,
            });
            return;
        }
        let due = self.schedule_retry(&failure, attempts, now);
        let park = self.should_park_wait(due, now);
        let Some(e) = self.entry_mut(partition, offset) else {
            return;
        };
        e.reason = failure.reason;
        e.holder = None;
        e.due_at = due;
        let durable = e.durable();
        if park {
            // A long backoff waits on disk (its key, if any, stays held).
            self.park(partition, offset, None, changes);
            return;
        }
        if due <= now {
            e.status = Status::Ready;
            self.ready.insert((partition, offset));
        } else {
            e.status = Status::Waiting;
            self.push_timer(due, TimerKind::Due, partition, offset, 0);
        }
        self.persist(partition, offset, durable, changes);
    }

    /// Finishes a dead-letter job: returns the changes that settle the
    /// message, to commit atomically with the copy, or `None` when the job
    /// is stale (the subscription was sought meanwhile).
    /// Whether `job` is still to be done (not made stale by a seek): what
    /// [`State::complete_dead_letter`] would do, without doing it.
    pub fn dead_letter_due(&self, job: &DeadLetterJob) -> bool {
        let is_entry = self
            .entry(job.partition, job.offset)
            .is_some_and(|e| e.status == Status::DeadLettering);
        is_entry
            || self.parts.get(job.partition as usize).is_some_and(|part| {
                part.stream.dead_lettering
                    && part.stream.head == Some(job.offset)
                    && job.offset >= part.floor
            })
    }

    pub fn complete_dead_letter(&mut self, job: &DeadLetterJob, now: u64) -> Option<Vec<Change>> {
        let mut changes = Vec::new();
        let dead = SubEntry {
            state: EntryState::DeadLettered,
            attempts: job.attempts,
            due_at: now,
            reason: job.reason.clone(),
        };
        let is_entry = self
            .entry(job.partition, job.offset)
            .is_some_and(|e| e.status == Status::DeadLettering);
        if is_entry {
            self.settle(job.partition, job.offset, now, &mut changes);
        } else if !self.stream_complete_dead_letter(job, &mut changes) {
            return None;
        }
        changes.insert(
            0,
            Change::Dead {
                partition: job.partition,
                offset: job.offset,
                entry: dead,
            },
        );
        self.dead_letters += 1;
        self.events.dead_lettered += 1;
        Some(changes)
    }
}
