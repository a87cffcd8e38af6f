//! A set of changes committed together, atomically, by the group-commit
//! writer. Its methods speak the domain (append a message, save a cursor);
//! the key layouts they use are all in `keys.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{WriteBatch, DB};
use tokio::sync::oneshot;

use super::batch::BatchBuilder;
use super::keys::*;
use super::{meta, DedupeEntry, Parked, PartitionMeta, SubEntry, SubscriptionRecord, TopicRecord};

/// The index key of a parked message.
fn parked_index_key(sub: u32, parked: &Parked) -> [u8; 25] {
    let (p, o) = (parked.partition, parked.offset);
    match (parked.behind_key, parked.key) {
        (true, Some(k)) => sub_index_key(sub, SUB_KEYQ, k, p, o),
        _ => sub_index_key(sub, SUB_DUE, parked.entry.due_at, p, o),
    }
}

/// One write operation, with owned bytes.
enum Op {
    Put(&'static str, Vec<u8>, Vec<u8>),
    /// A put whose value is also kept elsewhere (a batch for the tail cache).
    PutShared(&'static str, Vec<u8>, Arc<Vec<u8>>),
    Delete(&'static str, Vec<u8>),
    DeleteRange(&'static str, Vec<u8>, Vec<u8>),
    /// Drops a partition's batches that lie wholly below `keep_from` (the
    /// batch holding it stays; readers start at the partition's low).
    TruncateLog {
        topic: u32,
        partition: u32,
        keep_from: u64,
    },
}

/// A condition on a write set, for an owner whose memory runs ahead of
/// the store (a subscription's state machine): the set commits only while
/// the owner's generation still equals `expected`. When a fenced set fails
/// to commit, the writer bumps the generation before it takes the next
/// request, so every later set built on the same (now wrong) memory is
/// refused too, until the owner reloads from the store and fences with
/// the new generation.
#[derive(Debug, Clone)]
pub struct Fence {
    generation: Arc<AtomicU64>,
    expected: u64,
}

impl Fence {
    pub fn new(generation: Arc<AtomicU64>, expected: u64) -> Fence {
        Fence {
            generation,
            expected,
        }
    }

    /// Whether the owner's memory still matches the store.
    pub(super) fn holds(&self) -> bool {
        self.generation.load(Ordering::SeqCst) == self.expected
    }

    /// The commit failed: the owner must reload before writing again.
    pub(super) fn break_it(&self) {
        let _ = self.generation.compare_exchange(
            self.expected,
            self.expected.wrapping_add(1),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// Changes that become durable together, atomically, in one commit.
#[derive(Default)]
pub struct WriteSet {
    ops: Vec<Op>,
    fences: Vec<Fence>,
    /// Answered once written to the WAL, before its sync (see
    /// [`WriteSet::answer_once_written`]).
    once_written: bool,
    /// Batches appended, for the tail cache once they are durable.
    batches: Vec<CachedBatch>,
    /// Told when the set is written (readable), before its sync.
    written_signals: Vec<oneshot::Sender<super::Result<()>>>,
}

/// `(topic, partition, base offset, value)` of an appended batch.
pub(super) type CachedBatch = (u32, u32, u64, Arc<Vec<u8>>);

impl WriteSet {
    pub fn new() -> Self {
        WriteSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Commits this set only while `fence` holds (see [`Fence`]).
    pub fn fence(&mut self, fence: Fence) {
        self.fences.push(fence);
    }

    /// Appends every change of `other` (applied after this set's), and its
    /// fences: the whole set commits only if all of them hold. The result
    /// waits for the sync unless both sets are answered once written.
    pub fn append(&mut self, other: WriteSet) {
        let only_written = (self.once_written || self.ops.is_empty())
            && (other.once_written || other.ops.is_empty());
        self.ops.extend(other.ops);
        self.fences.extend(other.fences);
        self.batches.extend(other.batches);
        self.written_signals.extend(other.written_signals);
        self.once_written = only_written && !self.ops.is_empty();
    }

    /// Answers this set as soon as it is written to the WAL, without
    /// waiting for the sync that makes it durable (the next sync covers it,
    /// and it already survives a crash of the process; only a power failure
    /// before that sync can lose it; a set nobody waits on starts no sync
    /// of its own, so that sync is at most 100 ms away). For bookkeeping
    /// whose loss costs no message: a pull's delivery marks and attempts.
    pub fn answer_once_written(&mut self) {
        self.once_written = true;
    }

    /// A receiver told when this set is written to the WAL and readable,
    /// before the sync that makes it durable (the set's own answer still
    /// waits for the sync): a Raft append returns once its entries are
    /// readable and reports durability separately.
    pub fn notify_written(&mut self) -> oneshot::Receiver<super::Result<()>> {
        let (tx, rx) = oneshot::channel();
        self.written_signals.push(tx);
        rx
    }

    /// Takes the written signals (the writer answers them).
    pub(super) fn take_written_signals(&mut self) -> Vec<oneshot::Sender<super::Result<()>>> {
        std::mem::take(&mut self.written_signals)
    }

    /// Whether the set is answered before its sync.
    pub(super) fn is_once_written(&self) -> bool {
        self.once_written
    }

    /// Whether the set appends or removes messages of `topic` (test
    /// failpoints).
    #[cfg(test)]
    pub(super) fn appends_to(&self, topic: u32) -> bool {
        let of_topic = |key: &[u8]| key.starts_with(&topic.to_be_bytes());
        self.ops.iter().any(|op| match op {
            Op::Put(cf, key, _)
            | Op::PutShared(cf, key, _)
            | Op::Delete(cf, key)
            | Op::DeleteRange(cf, key, _) => *cf == CF_BATCHES && of_topic(key),
            Op::TruncateLog { topic: t, .. } => *t == topic,
        })
    }

    /// Whether every fence holds.
    pub(super) fn fences_hold(&self) -> bool {
        self.fences.iter().all(Fence::holds)
    }

    /// Takes the fences (the writer breaks them if the commit fails).
    pub(super) fn take_fences(&mut self) -> Vec<Fence> {
        std::mem::take(&mut self.fences)
    }

    pub(super) fn put(&mut self, cf: &'static str, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push(Op::Put(cf, key.into(), value));
    }

    pub(super) fn delete(&mut self, cf: &'static str, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(cf, key.into()));
    }

    pub(super) fn delete_range(&mut self, cf: &'static str, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(Op::DeleteRange(cf, from, to));
    }

    /// Appends a record batch whose first message has offset `base`.
    pub fn append_batch(&mut self, topic: u32, partition: u32, base: u64, batch: BatchBuilder) {
        let value = Arc::new(batch.finish());
        self.ops.push(Op::PutShared(
            CF_BATCHES,
            partition_key(topic, partition, base).to_vec(),
            value.clone(),
        ));
        self.batches.push((topic, partition, base, value));
    }

    /// Takes the appended batches (the writer caches them once durable).
    pub(super) fn take_batches(&mut self) -> Vec<CachedBatch> {
        std::mem::take(&mut self.batches)
    }

    /// Stores raw bytes as a batch (tests: damaged batches).
    #[cfg(test)]
    pub fn put_raw_batch(&mut self, topic: u32, partition: u32, base: u64, bytes: Vec<u8>) {
        self.put(CF_BATCHES, partition_key(topic, partition, base), bytes);
    }

    /// Records that `offset` is the first message stamped `timestamp`
    /// (sparse: lookups start at the last entry at or before a time).
    pub fn index_timestamp(&mut self, topic: u32, partition: u32, timestamp: u64, offset: u64) {
        self.put(
            CF_TIME_INDEX,
            partition_key(topic, partition, timestamp),
            offset.to_be_bytes().to_vec(),
        );
    }

    /// Removes the messages below `to` (in whole batches: the batch holding
    /// `to` stays until every message in it is below the partition's low)
    /// and time-index entries older than `before_timestamp` of one
    /// partition (retention).
    pub fn truncate_partition(
        &mut self,
        topic: u32,
        partition: u32,
        to: u64,
        before_timestamp: u64,
    ) {
        self.ops.push(Op::TruncateLog {
            topic,
            partition,
            keep_from: to,
        });
        self.delete_range(
            CF_TIME_INDEX,
            partition_key(topic, partition, 0).to_vec(),
            partition_key(topic, partition, before_timestamp).to_vec(),
        );
    }

    /// Remembers an idempotency id until `expires_at`.
    pub fn put_dedupe(&mut self, topic: u32, id: &str, entry: DedupeEntry) {
        let mut value = Vec::with_capacity(20);
        value.extend_from_slice(&entry.expires_at.to_be_bytes());
        value.extend_from_slice(&entry.partition.to_be_bytes());
        value.extend_from_slice(&entry.offset.to_be_bytes());
        self.put(CF_DEDUPE, dedupe_key(topic, id), value);
        self.put(
            CF_DEDUPE,
            dedupe_expiry_key(topic, entry.expires_at, id.as_bytes()),
            Vec::new(),
        );
    }

    /// Deletes a raw `dedupe` key (an id or an expiry index entry).
    pub fn delete_dedupe_key(&mut self, raw_key: Vec<u8>) {
        self.delete(CF_DEDUPE, raw_key);
    }

    pub fn put_topic(&mut self, topic: &TopicRecord) {
        self.put(
            CF_META,
            meta_topic_key(&topic.name),
            meta::encode_json(topic),
        );
    }

    pub fn put_partition(&mut self, topic: u32, partition: u32, meta: &PartitionMeta) {
        self.put(CF_META, meta_partition_key(topic, partition), meta.encode());
    }

    pub fn put_counter(&mut self, name: &str, value: u32) {
        self.put(
            CF_META,
            meta_counter_key(name),
            value.to_be_bytes().to_vec(),
        );
    }

    /// Deletes a topic's configuration, data, indexes and dedupe ids.
    pub fn delete_topic(&mut self, topic: &TopicRecord) {
        self.delete(CF_META, meta_topic_key(&topic.name));
        let prefix = meta_partition_prefix(topic.id);
        let end = prefix_end(&prefix);
        self.delete_range(CF_META, prefix, end);
        let prefix = meta_subscription_prefix(topic.id);
        let end = prefix_end(&prefix);
        self.delete_range(CF_META, prefix, end);
        for cf in [CF_BATCHES, CF_TIME_INDEX, CF_DEDUPE] {
            self.delete_range(cf, topic_start(topic.id), topic_end(topic.id));
        }
    }

    pub fn put_subscription(&mut self, sub: &SubscriptionRecord) {
        self.put(
            CF_META,
            meta_subscription_key(sub.topic_id, &sub.name),
            meta::encode_json(sub),
        );
    }

    /// Deletes a subscription's configuration and all its state.
    pub fn delete_subscription(&mut self, sub: &SubscriptionRecord) {
        self.delete(CF_META, meta_subscription_key(sub.topic_id, &sub.name));
        self.delete_sub_state(sub.id);
    }

    /// Deletes all state (cursors, entries, dead letters) of a subscription id.
    pub fn delete_sub_state(&mut self, sub: u32) {
        self.delete_range(CF_SUB_STATE, sub_start(sub), sub_end(sub));
    }

    /// Sets the per-partition cursor (ack floor) of a subscription.
    pub fn put_sub_cursor(&mut self, sub: u32, partition: u32, cursor: u64) {
        self.put(
            CF_SUB_STATE,
            sub_key(sub, SUB_CURSOR, partition, 0),
            cursor.to_be_bytes().to_vec(),
        );
    }

    /// Saves a partition's delivered-up-to mark (offsets below it were
    /// delivered at least once).
    pub fn put_sub_delivered(&mut self, sub: u32, partition: u32, upto: u64) {
        self.put(
            CF_SUB_STATE,
            sub_key(sub, SUB_DELIVERED, partition, 0),
            upto.to_be_bytes().to_vec(),
        );
    }

    /// Parks a message on disk: its record and its index entry (by due
    /// time, or behind its key).
    pub fn put_sub_parked(&mut self, sub: u32, parked: &Parked) {
        let (p, o) = (parked.partition, parked.offset);
        self.put(
            CF_SUB_STATE,
            sub_key(sub, SUB_PARKED, p, o),
            parked.encode_value(),
        );
        self.put(CF_SUB_STATE, parked_index_key(sub, parked), Vec::new());
    }

    /// Removes a parked message's record and index entry.
    pub fn delete_sub_parked(&mut self, sub: u32, parked: &Parked) {
        let (p, o) = (parked.partition, parked.offset);
        self.delete(CF_SUB_STATE, sub_key(sub, SUB_PARKED, p, o));
        self.delete(CF_SUB_STATE, parked_index_key(sub, parked));
    }

    /// Saves the state of one message of a subscription above its cursor.
    pub fn put_sub_entry(&mut self, sub: u32, partition: u32, offset: u64, entry: &SubEntry) {
        self.put(
            CF_SUB_STATE,
            sub_key(sub, SUB_ENTRY, partition, offset),
            entry.encode(),
        );
    }

    pub fn delete_sub_entry(&mut self, sub: u32, partition: u32, offset: u64) {
        self.delete(CF_SUB_STATE, sub_key(sub, SUB_ENTRY, partition, offset));
    }

    /// Deletes a subscription's entries of one partition in `[from, to)`.
    pub fn delete_sub_entries(&mut self, sub: u32, partition: u32, from: u64, to: u64) {
        self.delete_range(
            CF_SUB_STATE,
            sub_key(sub, SUB_ENTRY, partition, from).to_vec(),
            sub_key(sub, SUB_ENTRY, partition, to).to_vec(),
        );
    }

    /// Deletes every entry of one partition of a subscription (seek).
    pub fn delete_sub_partition_entries(&mut self, sub: u32, partition: u32) {
        self.delete_sub_entries(sub, partition, 0, u64::MAX);
        self.delete(CF_SUB_STATE, sub_key(sub, SUB_ENTRY, partition, u64::MAX));
    }

    /// Records a dead letter of a subscription (kept for redrive).
    pub fn put_sub_dead(&mut self, sub: u32, partition: u32, offset: u64, entry: &SubEntry) {
        self.put(
            CF_SUB_STATE,
            sub_key(sub, SUB_DEAD, partition, offset),
            entry.encode(),
        );
    }

    pub fn delete_sub_dead(&mut self, sub: u32, partition: u32, offset: u64) {
        self.delete(CF_SUB_STATE, sub_key(sub, SUB_DEAD, partition, offset));
    }

    /// Returns the bytes this set adds to the batch.
    pub(super) fn apply(self, db: &DB, batch: &mut WriteBatch) -> usize {
        let mut bytes = 0;
        for op in self.ops {
            let op = match op {
                Op::TruncateLog {
                    topic,
                    partition,
                    keep_from,
                } => {
                    // Resolved here, by the only writer: no batch can be
                    // added below `keep_from` meanwhile.
                    let floor = match super::log::batch_floor(db, topic, partition, keep_from) {
                        Ok(floor) => floor,
                        Err(e) => {
                            // Keeping data is always safe; the next pass
                            // retries.
                            tracing::warn!(topic, partition, error = %e, "retention could not find a batch boundary; keeping the batches");
                            continue;
                        }
                    };
                    Op::DeleteRange(
                        CF_BATCHES,
                        partition_key(topic, partition, 0).to_vec(),
                        partition_key(topic, partition, floor).to_vec(),
                    )
                }
                op => op,
            };
            // Every CF in `ALL_CFS` is created at open, so a handle is always
            // found; skipping defensively keeps the writer panic-free.
            let cf_name = match &op {
                Op::Put(cf, ..)
                | Op::PutShared(cf, ..)
                | Op::Delete(cf, _)
                | Op::DeleteRange(cf, ..) => *cf,
                Op::TruncateLog { .. } => continue,
            };
            let Some(cf) = db.cf_handle(cf_name) else {
                tracing::error!(cf = cf_name, "missing column family");
                continue;
            };
            match op {
                Op::Put(_, k, v) => {
                    bytes += k.len() + v.len();
                    batch.put_cf(cf, k, v);
                }
                Op::PutShared(_, k, v) => {
                    bytes += k.len() + v.len();
                    batch.put_cf(cf, k, v.as_slice());
                }
                Op::Delete(_, k) => {
                    bytes += k.len();
                    batch.delete_cf(cf, k);
                }
                Op::DeleteRange(_, from, to) => {
                    bytes += from.len() + to.len();
                    batch.delete_range_cf(cf, from, to);
                }
                Op::TruncateLog { .. } => {}
            }
        }
        bytes
    }
}
