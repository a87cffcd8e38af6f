//! The data directory's format, and the one-time upgrade from format 1
//! (one key per message in `messages`) to format 2 (record batches in
//! `batches`).
//!
//! The upgrade runs at startup before anything is served: it walks the old
//! log in key order, packs runs of consecutive offsets of one partition
//! into batches (the message bodies are copied as they are, after their
//! CRC is verified) and commits each chunk together with a range delete of
//! the keys it converted, so a crash mid-way leaves every message in exactly
//! one of the two places and the next start goes on where it stopped. Then
//! the old column family is dropped and the format recorded. A directory
//! written by a newer format is refused, never guessed at.

use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions, DB};

use super::batch::BatchBuilder;
use super::keys::{
    meta_counter_key, partition_key, partition_key_position, CF_BATCHES, CF_MESSAGES, CF_META,
};
use super::{cf, record, Result, StorageError};

/// The format this build writes.
pub const FORMAT: u32 = 2;
/// Messages per converted batch, at most.
const BATCH_MESSAGES: u32 = 1000;
/// Bytes per converted batch, about.
const BATCH_BYTES: usize = 1 << 20;
/// Bytes per committed chunk of the conversion, about.
const CHUNK_BYTES: usize = 16 << 20;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

fn format_key() -> Vec<u8> {
    meta_counter_key("format")
}

/// Checks the directory's format and upgrades it to [`FORMAT`] if older.
pub(super) fn upgrade(db: &mut DB, path: &str) -> Result<()> {
    let stored = {
        let meta = cf(db, CF_META)?;
        match db.get_cf(meta, format_key())? {
            Some(v) => u32::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("format marker".into()))?,
            ),
            None => 0,
        }
    };
    if stored > FORMAT {
        return Err(StorageError::Open {
            path: path.to_owned(),
            detail: format!(
                "the data directory has format {stored}, written by a newer Weir; this \
                 build reads formats up to {FORMAT}. Run the newer version (or restore a \
                 backup taken before the upgrade)"
            ),
        });
    }
    if db.cf_handle(CF_MESSAGES).is_some() {
        convert(db)?;
        db.flush_wal(true)?;
        db.drop_cf(CF_MESSAGES)?;
        tracing::info!("upgraded the data directory to record batches (format {FORMAT})");
    }
    if stored != FORMAT {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(db, CF_META)?, format_key(), FORMAT.to_be_bytes());
        db.write_opt(batch, &opts)?;
    }
    Ok(())
}

/// The batch being packed: `(topic, partition, base)` and its builder.
struct Packing {
    topic: u32,
    partition: u32,
    base: u64,
    next: u64,
    bytes: usize,
    builder: BatchBuilder,
}

/// Moves every format-1 message into batches, chunk by chunk.
fn convert(db: &DB) -> Result<()> {
    let legacy = cf(db, CF_MESSAGES)?;
    let batches = cf(db, CF_BATCHES)?;
    let estimate = db
        .property_int_value_cf(legacy, "rocksdb.estimate-num-keys")?
        .unwrap_or(0);
    tracing::info!(
        messages = estimate,
        "upgrading the data directory to record batches (one-time; progress follows)"
    );
    let started = Instant::now();
    let mut last_report = started;
    let mut converted = 0u64;
    let mut iter = db.raw_iterator_cf(legacy);
    iter.seek_to_first();
    let mut chunk = WriteBatch::default();
    let mut chunk_bytes = 0usize;
    let mut chunk_first: Option<Vec<u8>> = None;
    let mut packing: Option<Packing> = None;
    let mut opts = WriteOptions::default();
    opts.set_sync(false);
    loop {
        let item = match (iter.valid(), iter.key(), iter.value()) {
            (true, Some(k), Some(v)) => Some((k.to_vec(), v.to_vec())),
            _ => None,
        };
        let Some((key, value)) = item else { break };
        let (topic, partition, offset) = split_key(&key)?;
        let message = record::decode(offset, &value).map_err(|e| {
            StorageError::Corrupt(format!(
                "message at topic {topic}, partition {partition}, offset {offset} cannot be \
                 upgraded: {e}"
            ))
        })?;
        let fits = packing.as_ref().is_some_and(|p| {
            p.topic == topic
                && p.partition == partition
                && p.next == offset
                && p.builder.len() < BATCH_MESSAGES
                && p.bytes < BATCH_BYTES
        });
        if !fits {
            if let Some(done) = packing.take() {
                chunk_bytes += put(&mut chunk, batches, done);
            }
            if chunk_bytes >= CHUNK_BYTES {
                commit(db, &mut chunk, &mut chunk_first, &key, &opts)?;
                chunk_bytes = 0;
            }
            packing = Some(Packing {
                topic,
                partition,
                base: offset,
                next: offset,
                bytes: 0,
                builder: BatchBuilder::with_capacity(BATCH_BYTES.min(value.len() * 64)),
            });
        }
        if chunk_first.is_none() {
            chunk_first = Some(key.clone());
        }
        if let Some(p) = packing.as_mut() {
            p.bytes += p.builder.push(&message.as_new(), message.timestamp) as usize;
            p.next = offset + 1;
        }
        converted += 1;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            tracing::info!(
                converted,
                of_about = estimate,
                elapsed_s = started.elapsed().as_secs(),
                "upgrading to record batches"
            );
        }
        iter.next();
    }
    iter.status()?;
    if let Some(done) = packing.take() {
        put(&mut chunk, batches, done);
    }
    // Past the last key: the final chunk's range delete covers it all.
    let end = vec![0xFF; 17];
    commit(db, &mut chunk, &mut chunk_first, &end, &opts)?;
    tracing::info!(
        converted,
        elapsed_s = started.elapsed().as_secs(),
        "converted every stored message to record batches"
    );
    Ok(())
}

/// Adds a packed batch to the chunk; returns its size.
fn put(chunk: &mut WriteBatch, batches: &rocksdb::ColumnFamily, done: Packing) -> usize {
    let value = done.builder.finish();
    let len = value.len();
    chunk.put_cf(
        batches,
        partition_key(done.topic, done.partition, done.base),
        value,
    );
    len
}

/// Commits a chunk: its batches, and the removal of every old key from the
/// chunk's first key up to (not including) `until`, the first key not in it.
fn commit(
    db: &DB,
    chunk: &mut WriteBatch,
    first: &mut Option<Vec<u8>>,
    until: &[u8],
    opts: &WriteOptions,
) -> Result<()> {
    let Some(from) = first.take() else {
        return Ok(());
    };
    chunk.delete_range_cf(cf(db, CF_MESSAGES)?, from, until.to_vec());
    db.write_opt(std::mem::take(chunk), opts)?;
    Ok(())
}

fn split_key(key: &[u8]) -> Result<(u32, u32, u64)> {
    let bad = || StorageError::Corrupt(format!("message key {key:?}"));
    let topic = u32::from_be_bytes(
        key.get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?,
    );
    let partition = u32::from_be_bytes(
        key.get(4..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?,
    );
    let offset = partition_key_position(key).ok_or_else(bad)?;
    Ok((topic, partition, offset))
}
