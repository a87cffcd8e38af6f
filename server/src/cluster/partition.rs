//! A partition group's state machine: applying a committed append makes
//! its batch part of the partition. The batch is already in the store (the
//! log store put it there when it appended the entry); applying records
//! the partition's new end, byte count and newest timestamp, indexes the
//! batch's first timestamp and its idempotency ids, all in one write with
//! the id of the last applied entry, and only then publishes the new end
//! to readers and subscriptions. Nothing here reads a clock: the leader
//! stamped every time into the entry.
//!
//! Subscription updates (`Command::Subscriptions`) are applied the same
//! way: the changes the serving node made, as the store records them, in
//! the same write; an update whose claim is older than the newest claim
//! applied for its subscription is refused (a node that lost the right to
//! serve cannot change the state behind its successor's back).
//!
//! The replicated state is small (the partition's end and the group's
//! membership) and is stored after every applied batch of entries. The
//! messages themselves are never in a snapshot: partition groups keep their
//! whole log (`SnapshotPolicy::Never`), so a follower always catches up
//! from entries.

use std::io;
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

use super::codec::{decode, encode};
use super::command::SubUpdate;
use super::command::{Command, Reply};
use super::types::{GroupId, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::broker::subscription::state::Change;
use crate::broker::subscription::to_write_set;
use crate::broker::topic::{PartitionHead, Topic};
use crate::storage::{DedupeEntry, PartitionMeta, RaftValue, Store, WriteSet};

/// Time-index granularity, as on a single node: a batch whose first
/// message starts a new period of this length gets an entry.
const TIME_INDEX_EVERY_MS: u64 = 100;

/// What a partition group has applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// One partition's state machine; cheap to clone (shared).
#[derive(Clone)]
pub struct PartitionMachine {
    store: Arc<Store>,
    group: GroupId,
    topic: Arc<Topic>,
    partition: u32,
    state: Arc<RwLock<Applied>>,
}

impl PartitionMachine {
    /// Loads the applied state of `group`, the replica of `partition` of
    /// `topic` (which exists on this node).
    pub fn load(
        store: Arc<Store>,
        group: GroupId,
        topic: Arc<Topic>,
        partition: u32,
    ) -> io::Result<Self> {
        let state = match store
            .raft_value(group, RaftValue::State)
            .map_err(io::Error::other)?
        {
            Some(bytes) => decode(&bytes)?,
            None => Applied::default(),
        };
        Ok(PartitionMachine {
            store,
            group,
            topic,
            partition,
            state: Arc::new(RwLock::new(state)),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's head as the broker holds it now.
    fn head(&self) -> Option<PartitionHead> {
        let state = self.topic.lock_produce();
        state.heads.get(self.partition as usize).copied()
    }

    /// Makes a durably applied head the broker's: the produce state, then
    /// the published end readers and subscriptions wait on.
    fn publish(&self, head: &PartitionHead, added_bytes: u64) {
        {
            let mut state = self.topic.lock_produce();
            if let Some(h) = state.heads.get_mut(self.partition as usize) {
                h.next_offset = h.next_offset.max(head.next_offset);
                h.bytes += added_bytes;
                h.last_timestamp = h.last_timestamp.max(head.last_timestamp);
            }
        }
        if let Some(p) = self.topic.partition(self.partition) {
            p.add_bytes(added_bytes);
            p.publish(head.next_offset);
        }
        self.topic.notify_produced();
    }
}

/// What the entries of one apply call wrote so far (not in the store yet).
#[derive(Default)]
struct SubsApplied {
    /// Newest claim per subscription.
    claims: std::collections::HashMap<u32, u64>,
    /// Subscriptions given a cursor.
    cursors: std::collections::HashSet<u32>,
}

impl PartitionMachine {
    /// Applies one subscription update into `set`; false when its claim
    /// was superseded.
    fn apply_sub(
        &self,
        update: &SubUpdate,
        applied: &mut SubsApplied,
        set: &mut WriteSet,
    ) -> io::Result<bool> {
        let partition = self.partition;
        let newest = match applied.claims.get(&update.sub) {
            Some(claim) => *claim,
            None => self
                .store
                .sub_epoch(update.sub, partition)
                .map_err(io::Error::other)?,
        };
        if update.claim < newest {
            return Ok(false);
        }
        if update.claim > newest {
            set.put_sub_epoch(update.sub, partition, update.claim);
            applied.claims.insert(update.sub, update.claim);
        }
        if let Some(start) = update.start {
            let has_cursor = applied.cursors.contains(&update.sub)
                || self
                    .store
                    .has_sub_cursor(update.sub, partition)
                    .map_err(io::Error::other)?;
            if !has_cursor {
                set.put_sub_cursor(update.sub, partition, start);
                applied.cursors.insert(update.sub);
            }
        }
        let mine: Vec<Change> = update
            .changes
            .iter()
            .filter(|c| change_partition(c) == partition)
            .cloned()
            .collect();
        if mine
            .iter()
            .any(|c| matches!(c, Change::Cursor { .. } | Change::Reset { .. }))
        {
            applied.cursors.insert(update.sub);
        }
        if !mine.is_empty() {
            set.append(to_write_set(update.sub, mine));
        }
        Ok(true)
    }
}

/// The partition a subscription change is about.
pub fn change_partition(change: &Change) -> u32 {
    match change {
        Change::Entry { partition, .. }
        | Change::DeleteEntry { partition, .. }
        | Change::Cursor { partition, .. }
        | Change::Reset { partition, .. }
        | Change::Delivered { partition, .. }
        | Change::Dead { partition, .. } => *partition,
        Change::Park { parked } | Change::Unpark { parked } => parked.partition,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for PartitionMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    /// Only the group's own state: partition groups never purge their log,
    /// so no follower is ever sent a snapshot instead of entries.
    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let state = self.read().clone();
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
            },
            snapshot: Cursor::new(encode(&state)?),
        })
    }
}

impl RaftStateMachine<TypeConfig> for PartitionMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = PartitionMachine;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let state = self.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        let mut next = self.read().clone();
        let record = self.topic.record();
        let (topic_id, partition) = (record.id, self.partition);
        let window = record.config.dedupe_window_ms;
        let mut head = self.head().unwrap_or(PartitionHead {
            next_offset: 0,
            low: 0,
            bytes: 0,
            last_timestamp: 0,
        });
        let mut added_bytes = 0;
        let mut appended = false;
        let mut set = WriteSet::new();
        let mut answers = Vec::new();
        let mut subs = SubsApplied::default();
        while let Some((entry, responder)) = entries.try_next().await? {
            next.last_applied = Some(entry.log_id);
            let reply = match &entry.payload {
                EntryPayload::Blank => Reply::Done,
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Reply::Done
                }
                EntryPayload::Normal(Command::Append(append)) => match append.base {
                    Some(base) => {
                        let period = |t: u64| t / TIME_INDEX_EVERY_MS;
                        if base <= head.low
                            || period(append.first_timestamp) != period(head.last_timestamp)
                        {
                            set.index_timestamp(topic_id, partition, append.first_timestamp, base);
                        }
                        if window > 0 {
                            for (i, id) in &append.ids {
                                let entry = DedupeEntry {
                                    partition,
                                    offset: base + u64::from(*i),
                                    expires_at: append.ids_expire_at,
                                };
                                set.put_dedupe(topic_id, id, entry);
                            }
                        }
                        head.next_offset = head.next_offset.max(base + u64::from(append.count));
                        head.bytes += append.bytes;
                        head.last_timestamp = head.last_timestamp.max(append.last_timestamp);
                        added_bytes += append.bytes;
                        appended = true;
                        Reply::Appended { base }
                    }
                    None => Reply::Refused("an append entry without its offsets".into()),
                },
                EntryPayload::Normal(Command::Subscriptions(updates)) => {
                    let mut applied = Vec::with_capacity(updates.len());
                    for update in updates {
                        applied.push(self.apply_sub(update, &mut subs, &mut set)?);
                    }
                    Reply::Subscriptions(applied)
                }
                EntryPayload::Normal(command) => {
                    Reply::Refused(format!("a partition group does not apply `{command}`"))
                }
            };
            if let Some(responder) = responder {
                answers.push((responder, reply));
            }
        }
        if appended {
            set.put_partition(
                topic_id,
                partition,
                &PartitionMeta {
                    partition,
                    low: head.low,
                    high: head.next_offset,
                    bytes: head.bytes,
                    last_timestamp: head.last_timestamp,
                },
            );
        }
        set.put_raft_value(self.group, RaftValue::State, encode(&next)?);
        // Durable before anything is visible or answered.
        self.store.commit(set).await.map_err(io::Error::other)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
        if !self.topic.is_deleted() {
            self.publish(&head, added_bytes);
        }
        for (responder, reply) in answers {
            responder.send(reply);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta,
        _snapshot: Self::SnapshotData,
    ) -> io::Result<()> {
        Err(io::Error::other(
            "partition groups keep their whole log and never install snapshots",
        ))
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(None)
    }
}
