//! Background retention: removes whole oldest messages of each partition by
//! age, bytes or count with range deletes; `low_offset` moves up and offsets
//! are never reused. Also forgets expired idempotency ids.

use std::sync::Arc;

use super::error::Result;
use super::topic::Topic;
use crate::metrics::METRICS;
use crate::storage::{PartitionMeta, Store, WriteSet};

/// Most messages one pass removes per partition, so a pass stays short; the
/// next pass continues.
const MAX_SCAN_PER_PASS: u64 = 1_000_000;
const DEDUPE_EXPIRY_BATCH: usize = 10_000;
/// Bounds one pass (100k ids); the next pass goes on.
const DEDUPE_EXPIRY_BATCHES_PER_PASS: usize = 10;

/// Where to cut one partition: offsets below `cut` go.
struct Cut {
    cut: u64,
    removed_bytes: u64,
    /// Timestamp of the first kept message (time-index entries before go).
    keep_from_timestamp: u64,
}

/// Runs one retention pass over a topic. Returns messages removed.
/// Blocking: call from `spawn_blocking`.
pub fn enforce(store: &Store, topic: &Arc<Topic>, now: u64) -> Result<u64> {
    let record = topic.record();
    let retention = &record.config.retention;
    let mut removed_total = 0;
    for partition in topic.partitions() {
        let pid = partition.id;
        let low = partition.low();
        let high = partition.committed();
        let bytes = partition.bytes();
        let mut target = low;
        if let Some(max) = retention.max_messages {
            target = target.max(high.saturating_sub(max));
        }
        if let Some(max_age) = retention.max_age_ms {
            let cutoff = now.saturating_sub(max_age);
            let first_young = store
                .offset_for_timestamp(record.id, pid, cutoff)?
                .unwrap_or(high);
            target = target.max(first_young.min(high));
        }
        let over_bytes = retention
            .max_bytes
            .map_or(0, |max| bytes.saturating_sub(max));
        if target <= low && over_bytes == 0 {
            continue;
        }
        let Some(cut) = find_cut(store, record.id, pid, low, high, target, over_bytes)? else {
            continue;
        };
        if cut.cut <= low {
            continue;
        }
        let mut set = WriteSet::new();
        let (receiver, meta) = {
            let mut state = topic.lock_produce();
            if topic.is_deleted() {
                return Ok(removed_total);
            }
            let Some(head) = state.heads.get_mut(pid as usize) else {
                continue;
            };
            head.low = cut.cut;
            head.bytes = head.bytes.saturating_sub(cut.removed_bytes);
            let meta = PartitionMeta {
                partition: pid,
                low: head.low,
                high: head.next_offset,
                bytes: head.bytes,
                last_timestamp: head.last_timestamp,
            };
            set.truncate_partition(record.id, pid, cut.cut, cut.keep_from_timestamp);
            set.put_partition(record.id, pid, &meta);
            (store.submit_blocking(set)?, meta)
        };
        let outcome = receiver
            .blocking_recv()
            .map_err(|_| crate::storage::StorageError::Closed)?;
        if let Err(e) = outcome {
            // Nothing was deleted: give the range back (readers and
            // subscriptions never saw the new low).
            let mut state = topic.lock_produce();
            if let Some(head) = state.heads.get_mut(pid as usize) {
                if head.low == cut.cut {
                    head.low = low;
                    head.bytes = head.bytes.saturating_add(cut.removed_bytes);
                }
            }
            return Err(e.into());
        }
        // Only now, durable: readers and subscriptions move past the range.
        partition.set_low_and_bytes(meta.low, meta.bytes);
        let removed = cut.cut - low;
        METRICS
            .retention_deleted
            .with_label_values(&[crate::metrics::name_label(&record.name)])
            .inc_by(removed);
        removed_total += removed;
    }
    // Expired idempotency ids, found by expiry time: each pass removes
    // every id expired so far (in bounded batches), however many live ids
    // the topic remembers.
    for _ in 0..DEDUPE_EXPIRY_BATCHES_PER_PASS {
        let expired = store.expired_dedupe_keys(record.id, now, DEDUPE_EXPIRY_BATCH)?;
        if expired.is_empty() {
            break;
        }
        let mut set = WriteSet::new();
        for key in expired {
            set.delete_dedupe_key(key);
        }
        store
            .submit_blocking(set)?
            .blocking_recv()
            .map_err(|_| crate::storage::StorageError::Closed)??;
    }
    Ok(removed_total)
}

/// Scans from `low` until both `target` is reached and `over_bytes` are
/// covered, bounded per pass.
fn find_cut(
    store: &Store,
    topic: u32,
    partition: u32,
    low: u64,
    high: u64,
    target: u64,
    over_bytes: u64,
) -> Result<Option<Cut>> {
    let mut cut = Cut {
        cut: low,
        removed_bytes: 0,
        keep_from_timestamp: 0,
    };
    let limit = low.saturating_add(MAX_SCAN_PER_PASS);
    store.scan_sizes(topic, partition, low, high, |offset, size, ts| {
        if (offset >= target && cut.removed_bytes >= over_bytes) || offset >= limit {
            cut.keep_from_timestamp = ts;
            return false;
        }
        cut.cut = offset + 1;
        cut.removed_bytes += size;
        true
    })?;
    if cut.cut == low {
        return Ok(None);
    }
    if cut.keep_from_timestamp == 0 {
        // Everything up to `high` goes: drop every index entry up to now.
        cut.keep_from_timestamp = u64::MAX;
    }
    Ok(Some(cut))
}
