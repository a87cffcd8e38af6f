//! Leases and settling: leasing ready messages to consumers, acks, nacks,
//! lease extensions and releases, and freeing a settled message's key.

use weir_protocol::Mode;

use super::{Change, Delivery, FailKind, Failure, Lessee, State, Status, TimerKind};

/// The offsets one request acked, waiting to be marked settled together
/// (see [`State::ack_into`]).
#[derive(Debug, Default)]
pub struct Acks {
    offsets: Vec<(u32, u64)>,
}

impl State {
    /// Leases an entry (ready or freshly scanned) to a consumer. Every
    /// delivery is counted durably with the pull: a first delivery by the
    /// partition's delivered-up-to mark, a redelivery by its entry. A
    /// message whose attempts a crash used up is dead-lettered instead.
    pub(super) fn lease(
        &mut self,
        partition: u32,
        offset: u64,
        now: u64,
        to: Lessee,
        changes: &mut Vec<Change>,
    ) -> Option<Delivery> {
        let before = self.entry(partition, offset)?.attempts;
        if before > 0 && self.exhausted(before) {
            self.ready.remove(&(partition, offset));
            let failure = Failure {
                kind: FailKind::Disconnect,
                reason: "delivery interrupted by a server restart".to_owned(),
                delay_ms: None,
                permanent: true,
            };
            self.fail_entry(partition, offset, failure, now, changes);
            return None;
        }
        let token = self.delivery_token(to.pull, partition, offset);
        let deadline = now + self.config.ack_timeout_ms;
        let e = self.entry_mut(partition, offset)?;
        e.attempts = e.attempts.saturating_add(1);
        e.due_at = 0;
        e.status = Status::Leased { token, deadline };
        e.holder = to.holder;
        let attempt = e.attempts;
        let durable = e.durable();
        self.ready.remove(&(partition, offset));
        // A first delivery above the mark moves the mark; any other (a
        // redelivery, or a message with a stored entry) writes its entry.
        let stored = self
            .parts
            .get(partition as usize)
            .is_some_and(|p| p.persisted.contains(&offset));
        if before == 0 && !stored {
            if let Some(part) = self.parts.get_mut(partition as usize) {
                if offset >= part.delivered {
                    part.delivered = offset + 1;
                    changes.push(Change::Delivered {
                        partition,
                        upto: offset + 1,
                    });
                }
            }
        } else {
            self.persist(partition, offset, durable, changes);
        }
        self.lease_timer(deadline, partition, offset, to.pull);
        self.events.deliveries += 1;
        Some(Delivery {
            partition,
            offset,
            attempt,
            token,
        })
    }

    /// Leases up to `max` ready messages (redeliveries first, by offset).
    pub fn take_ready(&mut self, now: u64, max: usize, to: Lessee) -> (Vec<Delivery>, Vec<Change>) {
        let picked: Vec<(u32, u64)> = self.ready.iter().take(max).copied().collect();
        let mut out = Vec::with_capacity(picked.len());
        let mut changes = Vec::new();
        for (p, o) in picked {
            if let Some(d) = self.lease(p, o, now, to, &mut changes) {
                out.push(d);
            }
        }
        (out, changes)
    }

    /// Settles one message (ack or dead letter): drops its entry, releases
    /// its key, advances the floor.
    pub(super) fn settle(
        &mut self,
        partition: u32,
        offset: u64,
        now: u64,
        changes: &mut Vec<Change>,
    ) {
        if self.drop_settled(partition, offset, now) {
            self.mark_settled(partition, offset, changes);
        }
    }

    /// Drops a settled message's entry and releases its key; the floor is
    /// left to [`State::mark_settled`]. False for an unknown partition.
    fn drop_settled(&mut self, partition: u32, offset: u64, now: u64) -> bool {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return false;
        };
        let removed = part.entries.remove(&offset);
        self.ready.remove(&(partition, offset));
        if let Some(e) = &removed {
            self.untrack(e.status);
        }
        if let Some(key) = removed.and_then(|e| e.key) {
            self.release_key(key, (partition, offset), now);
        }
        true
    }

    pub(super) fn release_key(&mut self, key: u64, who: (u32, u64), now: u64) {
        let Some(ks) = self.keys.get_mut(&key) else {
            return;
        };
        if ks.holder != Some(who) {
            let before = ks.queue.len();
            ks.queue.retain(|w| *w != who);
            self.key_queued = self
                .key_queued
                .saturating_sub((before - ks.queue.len()) as u64);
            return;
        }
        ks.holder = None;
        self.pass_key_on(key, now);
    }

    /// Acks one delivery. False when it matches no current lease.
    pub fn ack(
        &mut self,
        partition: u32,
        offset: u64,
        token: u64,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        let mut acks = Acks::default();
        let known = self.ack_into(&mut acks, partition, offset, token, now, changes);
        self.finish_acks(acks, changes);
        known
    }

    /// Acks one delivery of a request that acks many: its entry and key go
    /// now, its offset (in queue mode) waits in `acks` for
    /// [`State::finish_acks`]. False when it matches no current lease.
    pub fn ack_into(
        &mut self,
        acks: &mut Acks,
        partition: u32,
        offset: u64,
        token: u64,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if self.is_leased(partition, offset, token) {
            if self.config.mode != Mode::Queue {
                // A stream's acks also move its floor cumulatively
                // (below): its settles keep their order.
                self.settle(partition, offset, now, changes);
            } else if self.drop_settled(partition, offset, now) {
                acks.offsets.push((partition, offset));
            }
            self.events.acks += 1;
            return true;
        }
        if self.config.mode == Mode::Stream {
            let acked = self.stream_ack(partition, offset, token, now, changes);
            if acked {
                self.events.acks += 1;
            }
            return acked;
        }
        false
    }

    /// Marks the offsets acked by [`State::ack_into`] settled, all at once:
    /// each partition's floor moves once and each run of consecutive
    /// offsets left above it is stored as one run of acks.
    pub fn finish_acks(&mut self, acks: Acks, changes: &mut Vec<Change>) {
        self.mark_settled_many(acks.offsets, changes);
    }

    /// Nacks one delivery. False when it matches no current lease.
    pub fn nack(
        &mut self,
        partition: u32,
        offset: u64,
        token: u64,
        failure: Failure,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> bool {
        if self.is_leased(partition, offset, token) {
            self.fail_entry(partition, offset, failure, now, changes);
            return true;
        }
        if self.config.mode == Mode::Stream {
            return self.stream_nack(partition, offset, token, failure, now, changes);
        }
        false
    }

    /// Renews a lease for `lease_ms` from now. False when unknown.
    pub fn extend(
        &mut self,
        partition: u32,
        offset: u64,
        token: u64,
        lease_ms: u64,
        now: u64,
    ) -> bool {
        if self.is_leased(partition, offset, token) {
            let deadline = now + lease_ms;
            if let Some(e) = self.entry_mut(partition, offset) {
                e.status = Status::Leased { token, deadline };
            }
            self.push_timer(deadline, TimerKind::Lease, partition, offset, token);
            return true;
        }
        if self.config.mode == Mode::Stream {
            return self.stream_extend(partition, offset, token, lease_ms, now);
        }
        false
    }

    /// The deliveries of pull `pull` within `ranges` (`(partition, first,
    /// last)`, inclusive) that are still leased under it, as `(partition,
    /// offset, token)`: what a batch ack id names now.
    pub fn leased_by_pull(&self, pull: u64, ranges: &[(u32, u64, u64)]) -> Vec<(u32, u64, u64)> {
        ranges
            .iter()
            .flat_map(|&(p, first, last)| {
                self.pull_leases(p, (first, last), pull)
                    .map(move |(o, token, _)| (p, o, token))
            })
            .collect()
    }

    /// The offsets in `first..=last` of partition `p` leased by pull `pull`
    /// until exactly `deadline`: what a `LeaseRun` timer covers now.
    pub(super) fn leased_in_run(
        &self,
        p: u32,
        range: (u64, u64),
        pull: u64,
        deadline: u64,
    ) -> impl Iterator<Item = u64> + '_ {
        self.pull_leases(p, range, pull)
            .filter(move |&(_, _, until)| until == deadline)
            .map(|(o, _, _)| o)
    }

    /// `(offset, token, deadline)` of the leases pull `pull` still holds in
    /// `first..=last` of partition `p`.
    fn pull_leases(
        &self,
        p: u32,
        (first, last): (u64, u64),
        pull: u64,
    ) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.parts
            .get(p as usize)
            .into_iter()
            .flat_map(move |part| part.entries.range(first..=last))
            .filter_map(move |(&o, e)| match e.status {
                Status::Leased { token, deadline } if token == self.delivery_token(pull, p, o) => {
                    Some((o, token, deadline))
                }
                _ => None,
            })
    }

    pub(super) fn is_leased(&self, partition: u32, offset: u64, token: u64) -> bool {
        self.entry(partition, offset)
            .is_some_and(|e| matches!(e.status, Status::Leased { token: t, .. } if t == token))
    }

    /// Releases every lease held by `holder` (a closed socket) as failures.
    pub fn release_holder(&mut self, holder: u64, now: u64) -> Vec<Change> {
        let mut held = Vec::new();
        for (p, part) in self.parts.iter().enumerate() {
            for (&o, e) in &part.entries {
                if e.holder == Some(holder) && matches!(e.status, Status::Leased { .. }) {
                    held.push((p as u32, o));
                }
            }
        }
        let mut changes = Vec::new();
        for (p, o) in held {
            self.fail_entry(p, o, Failure::of(FailKind::Disconnect), now, &mut changes);
        }
        changes
    }
}
