//! Stream mode: partitions owned by one consumer at a time, delivered in
//! offset order from the committed cursor, acked cumulatively. A failure
//! (nack or expired run) rewinds to the cursor after the backoff; after
//! `max_attempts` the head message is dead-lettered and the cursor passes it.

use super::{
    Change, DeadLetterJob, Delivery, FailKind, Failure, MsgMeta, State, Timer, TimerKind,
    MAX_STREAM_IN_FLIGHT,
};
use crate::storage::SubEntry;

/// Stream-mode state of one partition.
#[derive(Debug, Default, Clone)]
pub struct StreamPart {
    pub owner: Option<String>,
    pub owner_seen: u64,
    /// Token of the current run; a rewind or seek replaces it.
    pub token: u64,
    /// The in-flight run fails at this time.
    pub deadline: u64,
    /// The first message delivered at the cursor, once known.
    pub head: Option<u64>,
    pub head_attempts: u32,
    pub head_due: u64,
    pub head_reason: String,
    pub dead_lettering: bool,
    /// Offsets below this were delivered before the last rewind.
    pub redeliver_mark: u64,
    pub rewinds: u32,
    /// A `StreamLease` timer is pending.
    pub lease_timer: bool,
    /// An `Owner` timer is pending.
    pub owner_timer: bool,
    /// Loaded after a restart: the first message at the cursor was
    /// delivered before it without an outcome; that delivery counts.
    pub interrupted_head: bool,
}

impl StreamPart {
    pub fn floor_moved(&mut self, floor: u64) {
        if self.head.is_some_and(|h| h < floor) {
            self.head = None;
            self.head_attempts = 0;
            self.head_due = 0;
            self.head_reason.clear();
            self.dead_lettering = false;
        }
        if floor >= self.redeliver_mark {
            self.rewinds = 0;
        }
    }

    pub fn reset(&mut self, cursor: u64, token: u64) {
        *self = StreamPart {
            owner: self.owner.take(),
            owner_seen: self.owner_seen,
            lease_timer: self.lease_timer,
            owner_timer: self.owner_timer,
            token,
            redeliver_mark: cursor,
            ..StreamPart::default()
        };
    }
}

/// A range to read for a stream pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    pub partition: u32,
    pub from: u64,
    pub max: usize,
    pub token: u64,
}

impl State {
    pub(super) fn load_stream_head(&mut self, p: u32, offset: u64, stored: &SubEntry, now: u64) {
        let dead = stored.state == crate::storage::EntryState::DeadLettering;
        let part = &mut self.parts[p as usize];
        if part.stream.head.is_some() {
            return;
        }
        part.stream.head = Some(offset);
        part.stream.head_attempts = stored.attempts;
        part.stream.head_reason = stored.reason.clone();
        part.stream.head_due = stored.due_at;
        if dead {
            // The last failure was recorded; its copy may not have been made.
            part.stream.dead_lettering = true;
            self.jobs.push(DeadLetterJob {
                partition: p,
                offset,
                attempts: stored.attempts,
                reason: stored.reason.clone(),
            });
        } else if stored.due_at > now {
            self.push_timer(stored.due_at, TimerKind::HeadDue, p, offset, 0);
        }
    }

    /// Assigns partitions to `consumer` (fair share among consumers seen
    /// within the ack timeout) and returns the partitions it owns.
    pub fn assign(&mut self, consumer: &str, now: u64) -> Vec<u32> {
        let timeout = self.config.ack_timeout_ms;
        self.consumers.insert(consumer.to_owned(), now);
        self.consumers
            .retain(|_, seen| now < seen.saturating_add(timeout));
        let active = self.consumers.len().max(1);
        let total = self.parts.len();
        let fair = total.div_ceil(active);
        let mut mine: Vec<u32> = (0..total as u32)
            .filter(|&p| self.parts[p as usize].stream.owner.as_deref() == Some(consumer))
            .collect();
        // Give back extra partitions that have nothing in flight.
        while mine.len() > fair {
            let Some(pos) = mine.iter().rposition(|&p| {
                let part = &self.parts[p as usize];
                part.next == part.floor
            }) else {
                break;
            };
            let p = mine.remove(pos);
            self.parts[p as usize].stream.owner = None;
        }
        for p in 0..total as u32 {
            if mine.len() >= fair {
                break;
            }
            if self.parts[p as usize].stream.owner.is_none() {
                self.parts[p as usize].stream.owner = Some(consumer.to_owned());
                mine.push(p);
            }
        }
        for &p in &mine {
            self.touch_owner(p, now);
        }
        mine.sort_unstable();
        mine
    }

    fn touch_owner(&mut self, p: u32, now: u64) {
        let at = now + self.config.ack_timeout_ms;
        let s = &mut self.parts[p as usize].stream;
        s.owner_seen = now;
        if !s.owner_timer {
            s.owner_timer = true;
            self.push_timer(at, TimerKind::Owner, p, 0, 0);
        }
    }

    /// Sets the run deadline of `p`, scheduling its timer if none is pending.
    fn set_run_deadline(&mut self, p: u32, deadline: u64) {
        let s = &mut self.parts[p as usize].stream;
        s.deadline = deadline;
        if !s.lease_timer {
            s.lease_timer = true;
            self.push_timer(deadline, TimerKind::StreamLease, p, 0, 0);
        }
    }

    /// What to read from partition `p` (owned by the caller) for up to
    /// `want` messages, if anything is deliverable.
    pub fn plan_stream(&self, p: u32, high: u64, want: usize, now: u64) -> Option<StreamPlan> {
        let part = self.parts.get(p as usize)?;
        let s = &part.stream;
        if want == 0 || s.dead_lettering || s.head_due > now || part.next >= high {
            return None;
        }
        let room = MAX_STREAM_IN_FLIGHT.saturating_sub(part.next - part.floor);
        if room == 0 {
            return None;
        }
        Some(StreamPlan {
            partition: p,
            from: part.next,
            max: (want as u64).min(room).min(high - part.next) as usize,
            token: s.token,
        })
    }

    /// Delivers messages read for `plan` (all existing offsets in
    /// `[plan.from, covered_to)`).
    pub fn stream_deliver(
        &mut self,
        plan: StreamPlan,
        messages: &[MsgMeta],
        covered_to: u64,
        now: u64,
    ) -> (Vec<Delivery>, Vec<Change>) {
        let mut deliveries = Vec::new();
        let mut changes = Vec::new();
        let timeout = self.config.ack_timeout_ms;
        let max_attempts = self.config.retry.max_attempts;
        let p = plan.partition;
        let Some(part) = self.parts.get_mut(p as usize) else {
            return (deliveries, changes);
        };
        if part.next != plan.from || part.stream.token != plan.token {
            return (deliveries, changes);
        }
        let mut used_up = None;
        for m in messages {
            if m.offset < part.next || m.offset >= covered_to {
                continue;
            }
            let mut persist_head = None;
            let s = &mut part.stream;
            let attempt = if s.head.is_none() || s.head == Some(m.offset) {
                // The first message at the cursor is the head: every
                // delivery of it is counted durably (the first by the
                // partition's delivered mark, later ones by its entry), so
                // a delivery a crash interrupts still counts.
                if s.head.is_none() {
                    s.head_attempts = u32::from(std::mem::take(&mut s.interrupted_head));
                }
                s.head = Some(m.offset);
                let before = s.head_attempts;
                if before > 0 && max_attempts.is_some_and(|max| before >= max) {
                    // Its attempts were used up by restarts: dead-letter it.
                    used_up = Some(m.offset);
                    break;
                }
                s.head_attempts = before.saturating_add(1);
                s.head_due = 0;
                if before > 0 {
                    persist_head = Some(SubEntry {
                        state: crate::storage::EntryState::Pending,
                        attempts: s.head_attempts,
                        due_at: 0,
                        reason: s.head_reason.clone(),
                    });
                }
                s.head_attempts
            } else if m.offset < s.redeliver_mark {
                1 + s.rewinds
            } else {
                1
            };
            let token = s.token;
            if let Some(entry) = persist_head {
                part.persisted.insert(m.offset);
                changes.push(Change::Entry {
                    partition: p,
                    offset: m.offset,
                    entry,
                });
            }
            deliveries.push(Delivery {
                partition: p,
                offset: m.offset,
                attempt,
                token,
            });
            part.next = m.offset + 1;
        }
        if let Some(head) = used_up {
            part.next = head;
            let failure = Failure {
                kind: FailKind::Disconnect,
                reason: "delivery interrupted by a server restart".to_owned(),
                delay_ms: None,
                permanent: true,
            };
            self.events.deliveries += deliveries.len() as u64;
            self.fail_head(p, failure, now, &mut changes);
            return (deliveries, changes);
        }
        part.next = part.next.max(covered_to);
        if part.next > part.delivered && !deliveries.is_empty() {
            let upto = deliveries.last().map_or(part.next, |d| d.offset + 1);
            if upto > part.delivered {
                part.delivered = upto;
                changes.push(Change::Delivered { partition: p, upto });
            }
        }
        self.events.deliveries += deliveries.len() as u64;
        self.set_run_deadline(p, now + timeout);
        (deliveries, changes)
    }

    fn run_matches(&self, p: u32, offset: u64, token: u64) -> bool {
        self.parts.get(p as usize).is_some_and(|part| {
            part.stream.token == token && offset < part.next && !part.stream.dead_lettering
        })
    }

    pub(super) fn stream_ack(
        &mut self,
        p: u32,
        offset: u64,
        token: u64,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if !self.run_matches(p, offset, token) {
            return false;
        }
        let timeout = self.config.ack_timeout_ms;
        let part = &mut self.parts[p as usize];
        if offset >= part.floor {
            let from = part.floor;
            part.floor = offset + 1;
            part.settled.drop_below(part.floor);
            part.stream.floor_moved(part.floor);
            let to = part.floor;
            self.cursor_change(p, from, to, changes);
            self.set_run_deadline(p, now + timeout);
        }
        if self.parts[p as usize].stream.owner.is_some() {
            self.touch_owner(p, now);
        }
        true
    }

    pub(super) fn stream_nack(
        &mut self,
        p: u32,
        offset: u64,
        token: u64,
        failure: Failure,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if !self.run_matches(p, offset, token) {
            return false;
        }
        let part = &mut self.parts[p as usize];
        if offset < part.floor {
            // Already committed by a later ack: nothing to retry.
            return true;
        }
        if offset > part.floor {
            // In-order processing: everything before the failed message is done.
            let from = part.floor;
            part.floor = offset;
            part.stream.floor_moved(offset);
            self.cursor_change(p, from, offset, changes);
        }
        let part = &mut self.parts[p as usize];
        let s = &mut part.stream;
        if s.head != Some(offset) {
            s.head = Some(offset);
            s.head_attempts = if offset < s.redeliver_mark {
                1 + s.rewinds
            } else {
                1
            };
        }
        self.events.nacks += 1;
        self.fail_head(p, failure, now, changes);
        true
    }

    pub(super) fn stream_extend(
        &mut self,
        p: u32,
        offset: u64,
        token: u64,
        lease_ms: u64,
        now: u64,
    ) -> bool {
        if !self.run_matches(p, offset, token) || offset < self.parts[p as usize].floor {
            return false;
        }
        let deadline = self.parts[p as usize].stream.deadline.max(now + lease_ms);
        self.set_run_deadline(p, deadline);
        if self.parts[p as usize].stream.owner.is_some() {
            self.touch_owner(p, now);
        }
        true
    }

    /// The in-flight run of `p` failed: rewind to the cursor, retry the
    /// head after the backoff, or dead-letter it.
    fn fail_head(&mut self, p: u32, failure: Failure, now: u64, changes: &mut Vec<Change>) {
        let token = self.next_token();
        let part = &mut self.parts[p as usize];
        let s = &mut part.stream;
        s.redeliver_mark = s.redeliver_mark.max(part.next);
        s.rewinds = s.rewinds.saturating_add(1);
        part.next = part.floor;
        s.token = token;
        s.deadline = 0;
        let Some(head) = s.head else {
            return;
        };
        let attempts = s.head_attempts;
        s.head_reason = failure.reason.clone();
        if failure.permanent || self.exhausted(attempts) {
            self.parts[p as usize].stream.dead_lettering = true;
            self.persist(
                p,
                head,
                SubEntry {
                    state: crate::storage::EntryState::DeadLettering,
                    attempts,
                    due_at: now,
                    reason: failure.reason.clone(),
                },
                changes,
            );
            self.jobs.push(DeadLetterJob {
                partition: p,
                offset: head,
                attempts,
                reason: failure.reason,
            });
            return;
        }
        let due = self.schedule_retry(&failure, attempts, now);
        let s = &mut self.parts[p as usize].stream;
        s.head_due = due;
        let reason = s.head_reason.clone();
        self.persist(
            p,
            head,
            SubEntry {
                state: crate::storage::EntryState::Pending,
                attempts,
                due_at: due,
                reason,
            },
            changes,
        );
        self.push_timer(due, TimerKind::HeadDue, p, head, 0);
    }

    pub(super) fn stream_timer(&mut self, t: Timer, now: u64, changes: &mut Vec<Change>) {
        let Some(part) = self.parts.get(t.partition as usize) else {
            return;
        };
        match t.kind {
            TimerKind::StreamLease => {
                let in_flight = part.next > part.floor;
                let deadline = part.stream.deadline;
                self.parts[t.partition as usize].stream.lease_timer = false;
                if in_flight && deadline <= now {
                    self.fail_head(
                        t.partition,
                        Failure::of(FailKind::LeaseExpired),
                        now,
                        changes,
                    );
                } else if in_flight {
                    self.set_run_deadline(t.partition, deadline);
                }
            }
            TimerKind::Owner => {
                let timeout = self.config.ack_timeout_ms;
                let s = &part.stream;
                let expires = s.owner_seen.saturating_add(timeout);
                let owned = s.owner.is_some();
                let in_flight = part.next > part.floor;
                self.parts[t.partition as usize].stream.owner_timer = false;
                if !owned {
                    return;
                }
                if expires <= now {
                    if in_flight {
                        self.fail_head(
                            t.partition,
                            Failure::of(FailKind::LeaseExpired),
                            now,
                            changes,
                        );
                    }
                    self.parts[t.partition as usize].stream.owner = None;
                } else {
                    self.parts[t.partition as usize].stream.owner_timer = true;
                    self.push_timer(expires, TimerKind::Owner, t.partition, 0, 0);
                }
            }
            // Only wakes waiters; `plan_stream` checks `head_due`.
            _ => {}
        }
    }

    pub(super) fn stream_complete_dead_letter(
        &mut self,
        job: &DeadLetterJob,
        changes: &mut Vec<Change>,
    ) -> bool {
        let Some(part) = self.parts.get_mut(job.partition as usize) else {
            return false;
        };
        if !part.stream.dead_lettering
            || part.stream.head != Some(job.offset)
            || job.offset < part.floor
        {
            return false;
        }
        let from = part.floor;
        part.floor = job.offset + 1;
        part.next = part.next.max(part.floor);
        part.stream.floor_moved(part.floor);
        let to = part.floor;
        self.cursor_change(job.partition, from, to, changes);
        true
    }

    /// A consumer went away (its socket closed): its partitions' in-flight
    /// runs fail as disconnects and the partitions become free.
    pub fn release_consumer(&mut self, consumer: &str, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        self.consumers.remove(consumer);
        for p in 0..self.parts.len() as u32 {
            let part = &self.parts[p as usize];
            if part.stream.owner.as_deref() != Some(consumer) {
                continue;
            }
            if part.next > part.floor {
                self.fail_head(p, Failure::of(FailKind::Disconnect), now, &mut changes);
            }
            self.parts[p as usize].stream.owner = None;
        }
        changes
    }

    /// Partitions owned by `consumer` and the owner of each (stats).
    pub fn owner_of(&self, p: u32) -> Option<&str> {
        self.parts.get(p as usize)?.stream.owner.as_deref()
    }
}
