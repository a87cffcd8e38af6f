//! Reading a partition's log: messages by offset range or by offsets, sizes
//! and timestamps for retention, the first offset at a time. Every read
//! walks record batches (`batch.rs`); a batch holding the first wanted
//! offset is found with one `seek_for_prev`.

use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, DB};

use super::batch::{body_facts, BatchView};
use super::keys::{partition_key, partition_key_position, CF_BATCHES, CF_TIME_INDEX};
use super::record::{RecordError, StoredMessage};
use super::{cf, Result, StorageError, Store};

type RawIter<'a> = DBRawIteratorWithThreadMode<'a, DB>;

/// An iterator over one partition's batches with base offset below `end`.
fn batches<'a>(db: &'a DB, topic: u32, partition: u32, end: u64) -> Result<RawIter<'a>> {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(partition_key(topic, partition, 0).to_vec());
    opts.set_iterate_upper_bound(partition_key(topic, partition, end).to_vec());
    Ok(db.raw_iterator_cf_opt(cf(db, CF_BATCHES)?, opts))
}

/// Positions `iter` on the batch holding `offset`, or else the first batch
/// after it.
fn seek_batch(iter: &mut RawIter<'_>, topic: u32, partition: u32, offset: u64) {
    let key = partition_key(topic, partition, offset);
    iter.seek_for_prev(key);
    if !iter.valid() {
        iter.seek(key);
    }
}

/// The batch under the iterator.
fn current<'a>(iter: &'a RawIter<'_>, verify: bool) -> Result<Option<BatchView<'a>>> {
    let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
        return Ok(None);
    };
    let base =
        partition_key_position(key).ok_or_else(|| StorageError::Corrupt("batch key".into()))?;
    BatchView::parse(base, value, verify)
        .map(Some)
        .map_err(|e| corrupt(base, e))
}

fn corrupt(offset: u64, e: RecordError) -> StorageError {
    tracing::error!(offset, error = %e, "corrupt record batch");
    StorageError::Corrupt(format!("record batch at offset {offset}: {e}"))
}

impl Store {
    /// Like [`Store::read_messages`], from memory only (the tail cache of
    /// recent batches): never blocks, so async code may call it directly.
    /// `None` when the cache does not hold the whole answer; then read the
    /// store (from a blocking context).
    pub fn read_recent(
        &self,
        topic: u32,
        partition: u32,
        from: u64,
        end: u64,
        max_count: usize,
        max_bytes: u64,
    ) -> Option<Vec<StoredMessage>> {
        self.cache
            .read(topic, partition, from, end, max_count, max_bytes)
    }

    /// Reads messages of a partition from `from` (inclusive) to `end`
    /// (exclusive), at most `max_count` and about `max_bytes` (always at
    /// least one message when there is one). Verifies every checksum.
    pub fn read_messages(
        &self,
        topic: u32,
        partition: u32,
        from: u64,
        end: u64,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<Vec<StoredMessage>> {
        let mut out = Vec::new();
        if from >= end || max_count == 0 {
            return Ok(out);
        }
        let db = self.db()?;
        let mut iter = batches(&db, topic, partition, end)?;
        seek_batch(&mut iter, topic, partition, from);
        let mut bytes = 0u64;
        'batches: while iter.valid() {
            if let Some(view) = current(&iter, true)? {
                for message in view.messages(from, end) {
                    let message = message.map_err(|e| corrupt(view.base, e))?;
                    bytes += message.stored_bytes;
                    out.push(message);
                    if out.len() >= max_count || bytes >= max_bytes {
                        break 'batches;
                    }
                }
            }
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// Reads the messages at the given offsets of a partition, in the order
    /// given (missing ones are skipped: removed by retention).
    pub fn read_at(
        &self,
        topic: u32,
        partition: u32,
        offsets: &[u64],
    ) -> Result<Vec<StoredMessage>> {
        let db = self.db()?;
        let mut iter = batches(&db, topic, partition, u64::MAX)?;
        let mut out = Vec::with_capacity(offsets.len());
        // The batch last read (its checksum verified once, when read), kept
        // while the offsets stay inside it.
        let mut held: Option<(u64, Vec<u8>)> = None;
        for &offset in offsets {
            let covers = |(base, bytes): &(u64, Vec<u8>)| {
                BatchView::parse(*base, bytes, false)
                    .is_ok_and(|v| v.base <= offset && offset < v.end())
            };
            if !held.as_ref().is_some_and(covers) {
                held = None;
                iter.seek_for_prev(partition_key(topic, partition, offset));
                if iter.valid() {
                    if let (Some(key), Some(value)) = (iter.key(), iter.value()) {
                        let base = partition_key_position(key)
                            .ok_or_else(|| StorageError::Corrupt("batch key".into()))?;
                        BatchView::parse(base, value, true).map_err(|e| corrupt(base, e))?;
                        held = Some((base, value.to_vec()));
                    }
                }
                iter.status()?;
            }
            let Some((base, bytes)) = &held else { continue };
            let view = BatchView::parse(*base, bytes, false).map_err(|e| corrupt(*base, e))?;
            if let Some(message) = view.messages(offset, offset + 1).next() {
                out.push(message.map_err(|e| corrupt(*base, e))?);
            }
        }
        Ok(out)
    }

    /// Walks messages `[from, to)` in offset order, calling
    /// `keep_going(offset, stored_bytes, timestamp)` until it returns false
    /// (retention). Reads only sizes and timestamps, not payloads.
    pub fn scan_sizes(
        &self,
        topic: u32,
        partition: u32,
        from: u64,
        to: u64,
        mut keep_going: impl FnMut(u64, u64, u64) -> bool,
    ) -> Result<()> {
        let db = self.db()?;
        let mut iter = batches(&db, topic, partition, to)?;
        seek_batch(&mut iter, topic, partition, from);
        while iter.valid() {
            if let Some(view) = current(&iter, false)? {
                for body in view.bodies() {
                    let (offset, body) = body.map_err(|e| corrupt(view.base, e))?;
                    if offset < from {
                        continue;
                    }
                    if offset >= to {
                        return Ok(());
                    }
                    let (ts, size) = body_facts(body)
                        .ok_or_else(|| corrupt(view.base, RecordError::Malformed))?;
                    if !keep_going(offset, size, ts) {
                        return Ok(());
                    }
                }
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// The first offset whose timestamp is at or after `timestamp`, if any.
    /// The time index (sparse) gives where to start; batches are walked
    /// from there, skipping any whose last timestamp is earlier.
    pub fn offset_for_timestamp(
        &self,
        topic: u32,
        partition: u32,
        timestamp: u64,
    ) -> Result<Option<u64>> {
        let db = self.db()?;
        let start = {
            let mut opts = ReadOptions::default();
            opts.set_iterate_lower_bound(partition_key(topic, partition, 0).to_vec());
            opts.set_iterate_upper_bound(partition_key(topic, partition + 1, 0).to_vec());
            let mut iter = db.raw_iterator_cf_opt(cf(&db, CF_TIME_INDEX)?, opts);
            iter.seek_for_prev(partition_key(topic, partition, timestamp));
            let start = match iter.value() {
                Some(v) if iter.valid() => {
                    let bytes: [u8; 8] = v
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("time index entry".into()))?;
                    u64::from_be_bytes(bytes)
                }
                _ => 0,
            };
            iter.status()?;
            start
        };
        let mut iter = batches(&db, topic, partition, u64::MAX)?;
        seek_batch(&mut iter, topic, partition, start);
        while iter.valid() {
            if let Some(view) = current(&iter, false)? {
                if view.last_timestamp >= timestamp {
                    for body in view.bodies() {
                        let (offset, body) = body.map_err(|e| corrupt(view.base, e))?;
                        let (ts, _) = body_facts(body)
                            .ok_or_else(|| corrupt(view.base, RecordError::Malformed))?;
                        if offset >= start && ts >= timestamp {
                            return Ok(Some(offset));
                        }
                    }
                }
            }
            iter.next();
        }
        iter.status()?;
        Ok(None)
    }
}

/// The base offset of the batch that holds `offset`, or `offset` when
/// none does: everything below it can be dropped in whole batches.
pub(super) fn batch_floor(db: &DB, topic: u32, partition: u32, offset: u64) -> Result<u64> {
    let mut iter = batches(db, topic, partition, offset.saturating_add(1))?;
    iter.seek_for_prev(partition_key(topic, partition, offset));
    let floor = match current(&iter, false)? {
        Some(view) if view.end() > offset => view.base,
        _ => offset,
    };
    iter.status()?;
    Ok(floor)
}
