//! The store: the only module that names RocksDB.
//!
//! Its API speaks the domain — append messages, read a partition from an
//! offset, save a topic, a cursor — not iterators and column families, so
//! the broker never depends on how bytes are laid out (see `keys.rs`).
//! Writes are collected in a [`WriteSet`] and committed through the
//! group-commit writer (`writer.rs`); reads are synchronous and must be
//! called from blocking contexts (`spawn_blocking`).

pub mod backup;
pub mod batch;
mod health;
pub mod keys;
mod log;
mod meta;
mod migrate;
mod parked;
pub mod raft_log;
mod reclaim;
pub mod record;
mod slot;
mod stats;
mod sub_claim;
mod sub_state;
mod syncer;
mod tail_cache;
mod wal_trim;
mod write_set;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, Direction,
    IteratorMode, Options, ReadOptions, DB,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use batch::BatchBuilder;
pub use health::DiskSpace;
pub use meta::{PartitionMeta, PauseRecord, SubscriptionRecord, TopicRecord};
pub use raft_log::RaftValue;
pub use record::{NewMessage, StoredMessage};
use slot::DbSlot;
pub use stats::{DiskUsage, EngineStats};
pub use sub_state::{EntryState, Parked, ParkedCounts, SubEntry};
pub use write_set::{Fence, WriteSet};
pub use writer::WriterStats;

use keys::*;

/// When the write-ahead log is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Before every answer (group-committed). Nothing acknowledged is lost.
    Always,
    /// Every period; a power loss loses up to one period of acknowledged writes.
    Interval(Duration),
    /// Left to the OS; survives a process crash, not a power loss.
    Never,
}

/// Store tuning.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncMode,
    /// Memtable budget across column families, in bytes.
    pub write_buffer_bytes: usize,
    /// Block cache for reads, in bytes.
    pub block_cache_bytes: usize,
    /// Free bytes to keep on the filesystem (0: no limit).
    pub disk_free_limit_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: FsyncMode::Always,
            write_buffer_bytes: 256 << 20,
            block_cache_bytes: 128 << 20,
            disk_free_limit_bytes: 0,
        }
    }
}

#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("cannot open the store at `{path}`: {detail}")]
    Open { path: String, detail: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store read failed: {0}")]
    Read(String),
    #[error("write stalled by compaction backlog")]
    Stalled,
    #[error("store write failed; the store is read-only")]
    WriteFailed,
    #[error("store is closed")]
    Closed,
    /// The write was built on memory an earlier failed commit made wrong;
    /// its owner reloads from the store (retry).
    #[error("write refused after an earlier failed commit; retry")]
    Fenced,
    /// The disk is (nearly) full: the write was refused before reaching
    /// RocksDB.
    #[error("the disk is full: the write was refused, nothing was written")]
    DiskFull,
    /// Being reopened after a write failure (retry shortly).
    #[error("the store is being reopened after a write failure")]
    Reopening,
}

impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        if e.kind() == rocksdb::ErrorKind::Corruption {
            StorageError::Corrupt(e.into_string())
        } else {
            StorageError::Read(e.into_string())
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A remembered idempotency id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeEntry {
    pub partition: u32,
    pub offset: u64,
    pub expires_at: u64,
}

impl DedupeEntry {
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(DedupeEntry {
            expires_at: u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
            partition: u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?),
            offset: u64::from_be_bytes(bytes.get(12..20)?.try_into().ok()?),
        })
    }
}

/// Everything `open` recovered about topics and subscriptions.
#[derive(Debug, Default)]
pub struct Recovered {
    pub topics: Vec<(TopicRecord, Vec<PartitionMeta>)>,
    pub subscriptions: Vec<SubscriptionRecord>,
    pub next_topic_id: u32,
    pub next_subscription_id: u32,
}

/// The RocksDB store.
pub struct Store {
    slot: Arc<DbSlot>,
    path: PathBuf,
    health: Arc<health::Health>,
    tx: mpsc::Sender<writer::Request>,
    stats: Arc<WriterStats>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop_interval: Arc<AtomicBool>,
    cache: Arc<tail_cache::TailCache>,
}

/// Reserved room in the writer's queue ([`Store::try_reserve`]).
pub struct CommitSlot(mpsc::OwnedPermit<writer::Request>);

impl CommitSlot {
    /// Queues a write set in the reserved room; returns the receiver of
    /// its result.
    pub fn submit(self, set: WriteSet) -> oneshot::Receiver<Result<()>> {
        let (reply, rx) = oneshot::channel();
        self.0.send(writer::Request::Commit(set, reply));
        rx
    }
}

pub const COUNTER_TOPIC: &str = "topic";
pub const COUNTER_SUBSCRIPTION: &str = "subscription";

impl Store {
    /// Opens (or creates) the store at `path`, refusing to start on
    /// corruption rather than silently dropping data.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Arc<Store>> {
        let open_err = |detail: String| StorageError::Open {
            path: path.display().to_string(),
            detail,
        };
        let mut db = open_db(path, options)?;
        migrate::upgrade(&mut db, &path.display().to_string())?;
        let slot = Arc::new(DbSlot::new(db));
        let (tx, rx) = mpsc::channel(8192);
        let stats = Arc::new(WriterStats::default());
        let health = Arc::new(health::Health::new(options.disk_free_limit_bytes));
        let stop_interval = Arc::new(AtomicBool::new(false));
        let cache = Arc::new(tail_cache::TailCache::new(
            options.block_cache_bytes / TAIL_CACHE_SHARE,
        ));
        let (writer, syncer) = writer::spawn(
            slot.clone(),
            path.to_path_buf(),
            options.fsync,
            stats.clone(),
            health.clone(),
            cache.clone(),
            rx,
        )
        .map_err(|e| open_err(e.to_string()))?;
        let mut threads = vec![writer, syncer];
        if let FsyncMode::Interval(period) = options.fsync {
            threads.push(
                writer::spawn_interval_sync(
                    slot.clone(),
                    period,
                    stats.clone(),
                    health.clone(),
                    stop_interval.clone(),
                )
                .map_err(|e| open_err(e.to_string()))?,
            );
        }
        threads.push(
            health::spawn(
                slot.clone(),
                path.to_path_buf(),
                options.clone(),
                health.clone(),
                stats.clone(),
                stop_interval.clone(),
            )
            .map_err(|e| open_err(e.to_string()))?,
        );
        threads.push(
            wal_trim::spawn(path.to_path_buf(), stop_interval.clone())
                .map_err(|e| open_err(e.to_string()))?,
        );
        let store = Arc::new(Store {
            slot,
            path: path.to_path_buf(),
            health,
            tx,
            stats,
            threads: Mutex::new(threads),
            stop_interval,
            cache,
        });
        store.index_dedupe_expiry()?;
        Ok(store)
    }

    /// Free space on the data directory's filesystem and its limit.
    pub fn disk_space(&self) -> DiskSpace {
        self.health.disk_space()
    }

    /// Why writes fail now, when they do (for readiness and errors).
    pub fn write_failure(&self) -> Option<String> {
        self.health.failure()
    }

    /// For how long writes have been failing (liveness).
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        self.health.failing_for()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, for one operation (the handle is replaced when
    /// the store reopens after a write failure: do not keep it).
    pub(super) fn db(&self) -> Result<Arc<DB>> {
        self.slot.get()
    }

    pub fn writer_stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Whether the store accepts writes.
    pub fn is_writable(&self) -> bool {
        self.health.failure().is_none() && !self.tx.is_closed()
    }

    /// Commits a write set durably (per the fsync mode) and atomically.
    pub async fn commit(&self, set: WriteSet) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(writer::Request::Commit(set, reply))
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Queues a write set and returns the receiver of its result without
    /// waiting for it: callers that must fix the commit order enqueue while
    /// holding their lock and await the result after releasing it.
    pub async fn enqueue(&self, set: WriteSet) -> Result<oneshot::Receiver<Result<()>>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(writer::Request::Commit(set, reply))
            .await
            .map_err(|_| StorageError::Closed)?;
        Ok(rx)
    }

    /// Queues a write set from a blocking context and returns the receiver
    /// of its result. Callers that must fix the commit order (offsets are
    /// assigned under a lock) submit while holding that lock.
    pub fn submit_blocking(&self, set: WriteSet) -> Result<oneshot::Receiver<Result<()>>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(writer::Request::Commit(set, reply))
            .map_err(|_| StorageError::Closed)?;
        Ok(rx)
    }

    /// Room for one commit in the writer's queue, if there is some now
    /// (never waits: for async code that must not block).
    pub fn try_reserve(&self) -> Option<CommitSlot> {
        self.tx.clone().try_reserve_owned().ok().map(CommitSlot)
    }

    /// Stops the writer after it has committed everything queued, syncs the
    /// WAL and joins the store's threads.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(writer::Request::Stop(done)).await.is_ok() {
            let _ = rx.await;
        }
        self.stop_interval.store(true, Ordering::Relaxed);
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// Loads every topic, partition and subscription record (startup).
    pub fn recover(&self) -> Result<Recovered> {
        let db = self.db()?;
        let meta_cf = cf(&db, CF_META)?;
        let mut out = Recovered {
            next_topic_id: 1,
            next_subscription_id: 1,
            ..Recovered::default()
        };
        for (name, slot) in [
            (COUNTER_TOPIC, &mut out.next_topic_id),
            (COUNTER_SUBSCRIPTION, &mut out.next_subscription_id),
        ] {
            if let Some(v) = db.get_cf(meta_cf, meta_counter_key(name))? {
                let bytes: [u8; 4] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt(format!("counter `{name}`")))?;
                *slot = u32::from_be_bytes(bytes);
            }
        }
        for (_, value) in self.scan_prefix(CF_META, &meta_topic_prefix())? {
            let topic: TopicRecord = meta::decode_json(&value)?;
            let mut partitions = Vec::new();
            for (key, value) in self.scan_prefix(CF_META, &meta_partition_prefix(topic.id))? {
                let meta = PartitionMeta::decode(&value)
                    .ok_or_else(|| StorageError::Corrupt(format!("partition record {key:?}")))?;
                partitions.push(meta);
            }
            for (_, value) in self.scan_prefix(CF_META, &meta_subscription_prefix(topic.id))? {
                out.subscriptions.push(meta::decode_json(&value)?);
            }
            out.topics.push((topic, partitions));
        }
        Ok(out)
    }

    fn scan_prefix(&self, family: &'static str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let db = self.db()?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(prefix_end(prefix));
        let iter = db.iterator_cf_opt(
            cf(&db, family)?,
            opts,
            IteratorMode::From(prefix, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Looks up an idempotency id.
    pub fn get_dedupe(&self, topic: u32, id: &str) -> Result<Option<DedupeEntry>> {
        let db = self.db()?;
        let cf = cf(&db, CF_DEDUPE)?;
        let found = db.get_pinned_cf(cf, dedupe_key(topic, id))?;
        match found {
            Some(v) => DedupeEntry::decode(&v)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt("dedupe entry".into())),
            None => Ok(None),
        }
    }

    /// Raw `dedupe` keys to delete for ids of `topic` that expired before
    /// `now` (each id with its expiry index entry), found through the
    /// expiry index in time order: at most `limit` ids, never a scan of the
    /// live ones.
    pub fn expired_dedupe_keys(&self, topic: u32, now: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
        let db = self.db()?;
        let family = cf(&db, CF_DEDUPE)?;
        let prefix = dedupe_expiry_prefix(topic);
        let mut end = prefix.clone();
        end.extend_from_slice(&now.to_be_bytes());
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        let mut iter = db.raw_iterator_cf_opt(family, opts);
        iter.seek(&prefix);
        let mut out = Vec::new();
        let mut ids = 0;
        while iter.valid() && ids < limit {
            let Some(key) = iter.key() else { break };
            let (at, id) = decode_dedupe_expiry_key(key)
                .ok_or_else(|| StorageError::Corrupt("dedupe expiry key".into()))?;
            let mut id_key = topic.to_be_bytes().to_vec();
            id_key.extend_from_slice(id);
            // The id may have been given again after it expired: its
            // newer entry stays (with its own index entry).
            let current = db
                .get_pinned_cf(family, &id_key)?
                .and_then(|v| DedupeEntry::decode(&v));
            if current.is_some_and(|e| e.expires_at == at) {
                out.push(id_key);
                ids += 1;
            }
            out.push(key.to_vec());
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// Adds expiry index entries for ids stored before the index existed
    /// (run once at startup on an older data directory).
    fn index_dedupe_expiry(&self) -> Result<()> {
        let db = self.db()?;
        let family = cf(&db, CF_META)?;
        let marker = meta_counter_key("dedupe-expiry-index");
        if db.get_cf(family, &marker)?.is_some() {
            return Ok(());
        }
        let dedupe = cf(&db, CF_DEDUPE)?;
        let mut batch = rocksdb::WriteBatch::default();
        let mut n = 0u64;
        let mut iter = db.raw_iterator_cf(dedupe);
        iter.seek_to_first();
        while iter.valid() {
            if let (Some(k), Some(v)) = (iter.key(), iter.value()) {
                if is_dedupe_id_key(k) {
                    if let Some(e) = DedupeEntry::decode(v) {
                        let topic = u32::from_be_bytes(
                            k.get(..4)
                                .and_then(|b| b.try_into().ok())
                                .ok_or_else(|| StorageError::Corrupt("dedupe key".into()))?,
                        );
                        batch.put_cf(dedupe, dedupe_expiry_key(topic, e.expires_at, &k[4..]), []);
                        n += 1;
                    }
                }
            }
            iter.next();
        }
        iter.status()?;
        batch.put_cf(family, marker, 1u32.to_be_bytes());
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)?;
        if n > 0 {
            tracing::info!(
                ids = n,
                "indexed idempotency ids by expiry (one-time upgrade)"
            );
        }
        Ok(())
    }

    /// Loads a subscription's cursors and entries (not its dead letters).
    pub fn load_sub_state(&self, sub: u32) -> Result<sub_state::LoadedSubState> {
        let mut loaded = sub_state::LoadedSubState {
            parked: self.count_parked(sub)?,
            ..sub_state::LoadedSubState::default()
        };
        let mut records = self.scan_prefix(CF_SUB_STATE, &sub_kind_prefix(sub, SUB_CURSOR))?;
        records.extend(self.scan_prefix(CF_SUB_STATE, &sub_kind_prefix(sub, SUB_ENTRY))?);
        records.extend(self.scan_prefix(CF_SUB_STATE, &sub_kind_prefix(sub, SUB_DELIVERED))?);
        for (key, value) in records {
            let (kind, partition, offset) =
                decode_sub_key(&key).ok_or_else(|| StorageError::Corrupt("sub key".into()))?;
            match kind {
                SUB_CURSOR => {
                    let bytes: [u8; 8] = value
                        .as_slice()
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("sub cursor".into()))?;
                    loaded.cursors.push((partition, u64::from_be_bytes(bytes)));
                }
                SUB_DELIVERED => {
                    let bytes: [u8; 8] = value
                        .as_slice()
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("sub delivered mark".into()))?;
                    loaded
                        .delivered
                        .push((partition, u64::from_be_bytes(bytes)));
                }
                SUB_ENTRY => {
                    let entry = SubEntry::decode(&value)
                        .ok_or_else(|| StorageError::Corrupt("sub entry".into()))?;
                    loaded.entries.push((partition, offset, entry));
                }
                _ => return Err(StorageError::Corrupt(format!("sub state kind {kind}"))),
            }
        }
        Ok(loaded)
    }

    /// Up to `limit` dead-letter records of a subscription (every state),
    /// in (partition, offset) order, after `after` when given:
    /// `(partition, offset, record)`.
    pub fn sub_dead_letters(
        &self,
        sub: u32,
        after: Option<(u32, u64)>,
        limit: usize,
    ) -> Result<Vec<(u32, u64, SubEntry)>> {
        let db = self.db()?;
        let prefix = sub_kind_prefix(sub, SUB_DEAD);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(prefix_end(&prefix));
        let mut iter = db.raw_iterator_cf_opt(cf(&db, CF_SUB_STATE)?, opts);
        match after {
            Some((p, o)) => {
                iter.seek(sub_key(sub, SUB_DEAD, p, o));
                if iter.valid()
                    && iter.key().is_some_and(|k| {
                        decode_sub_key(k).is_some_and(|(_, kp, ko)| (kp, ko) == (p, o))
                    })
                {
                    iter.next();
                }
            }
            None => iter.seek(&prefix),
        }
        let mut out = Vec::new();
        while iter.valid() && out.len() < limit {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let (_, partition, offset) =
                decode_sub_key(key).ok_or_else(|| StorageError::Corrupt("sub key".into()))?;
            let entry = SubEntry::decode(value)
                .ok_or_else(|| StorageError::Corrupt("dead letter record".into()))?;
            out.push((partition, offset, entry));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// How many dead letters of a subscription are waiting (startup).
    pub fn count_sub_dead_letters(&self, sub: u32) -> Result<u64> {
        let db = self.db()?;
        let prefix = sub_kind_prefix(sub, SUB_DEAD);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(prefix_end(&prefix));
        let mut iter = db.raw_iterator_cf_opt(cf(&db, CF_SUB_STATE)?, opts);
        iter.seek(&prefix);
        let mut n = 0;
        while iter.valid() {
            let waiting = iter
                .value()
                .and_then(SubEntry::decode)
                .is_some_and(|e| e.state == EntryState::DeadLettered);
            n += u64::from(waiting);
            iter.next();
        }
        iter.status()?;
        Ok(n)
    }
}

/// Opens the RocksDB database of the store (also used to reopen it).
fn open_db(path: &Path, options: &StoreOptions) -> Result<DB> {
    let open_err = |detail: String| StorageError::Open {
        path: path.display().to_string(),
        detail,
    };
    create_dir_durably(path).map_err(|e| open_err(e.to_string()))?;
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    // Tolerates only the torn last record a crash leaves; real corruption
    // refuses to open instead of dropping the record and all after it.
    db_opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    db_opts.set_paranoid_checks(true);
    db_opts.increase_parallelism(2);
    db_opts.set_max_background_jobs(2);
    db_opts.set_atomic_flush(true);
    db_opts.set_max_total_wal_size(512 << 20);
    db_opts.set_db_write_buffer_size(options.write_buffer_bytes);
    db_opts.set_level_compaction_dynamic_level_bytes(true);
    db_opts.set_bytes_per_sync(1 << 20);
    // Obsolete WAL files are archived (renamed), not unlinked whole:
    // `wal_trim.rs` deletes them in small pieces.
    db_opts.set_wal_ttl_seconds(wal_trim::ARCHIVE_TTL_SECS);

    let cache = rocksdb::Cache::new_lru_cache(
        options.block_cache_bytes - options.block_cache_bytes / TAIL_CACHE_SHARE,
    )
    .map_err(|e| open_err(e.to_string()))?;
    // A format-1 directory still has its one-key-per-message column
    // family: opened too, for `migrate.rs` to convert and drop.
    let legacy = DB::list_cf(&db_opts, path)
        .unwrap_or_default()
        .iter()
        .any(|name| name == CF_MESSAGES);
    let names = ALL_CFS.iter().copied().chain(legacy.then_some(CF_MESSAGES));
    let cfs = names.map(|name| {
        let mut cf_opts = Options::default();
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(&cache);
        block.set_bloom_filter(10.0, false);
        cf_opts.set_block_based_table_factory(&block);
        cf_opts.set_level_compaction_dynamic_level_bytes(true);
        // Every restart flushes what the log recovered into new level-0
        // files; a run of crashes can pile them up faster than compaction
        // (which each crash interrupts) merges them. Slow writes down
        // (backpressure) long before stopping them.
        cf_opts.set_level_zero_slowdown_writes_trigger(L0_SLOWDOWN_FILES);
        cf_opts.set_level_zero_stop_writes_trigger(L0_STOP_FILES);
        if name == CF_BATCHES || name == CF_MESSAGES {
            cf_opts.set_compression_type(DBCompressionType::Lz4);
            cf_opts.set_write_buffer_size(64 << 20);
        }
        if name == CF_BATCHES {
            // Batch values go to blob files when a memtable is flushed, and
            // compaction then moves only keys and blob references: an
            // append-only log is not rewritten level by level. Blob files
            // whose batches retention deleted are dropped by blob GC.
            cf_opts.set_enable_blob_files(true);
            cf_opts.set_min_blob_size(BLOB_MIN_BYTES);
            cf_opts.set_blob_compression_type(DBCompressionType::Lz4);
            cf_opts.set_enable_blob_gc(true);
            cf_opts.set_blob_gc_age_cutoff(0.25);
        }
        ColumnFamilyDescriptor::new(name, cf_opts)
    });
    DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock")
            && (text.contains("temporarily unavailable") || text.contains("already held"))
        {
            // RocksDB's LOCK file: another process has this directory open.
            return open_err(
                "the data directory is in use by another process (another weir-server?): \
                 its LOCK file is held. Stop that process or give this one another --data-dir"
                    .to_owned(),
            );
        }
        open_err(format!(
            "{text} (if this reports corruption, the data directory is damaged: \
             restore it from a backup or move it aside; Weir will not guess)"
        ))
    })
}

/// Creates `path` and any missing parents, syncing each parent directory
/// that gained an entry: without it a power loss right after the first
/// start can lose the whole (new) data directory, synced writes and all.
fn create_dir_durably(path: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(dir) = at {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        missing.push(dir.to_path_buf());
        at = dir.parent();
    }
    std::fs::create_dir_all(path)?;
    for dir in missing.iter().rev() {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The share of `block_cache_bytes` (one in this many bytes) that holds
/// the most recent record batches in memory (`tail_cache.rs`); RocksDB's
/// block cache gets the rest.
const TAIL_CACHE_SHARE: usize = 4;

/// Batches of at least this many bytes are stored in blob files.
const BLOB_MIN_BYTES: u64 = 4096;

/// Level-0 files at which RocksDB slows writes down (default 20).
const L0_SLOWDOWN_FILES: i32 = 48;
/// Level-0 files at which RocksDB stops writes (default 36).
const L0_STOP_FILES: i32 = 160;

/// A column family's handle.
fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| StorageError::Read(format!("missing column family `{name}`")))
}

pub use sub_state::LoadedSubState;

#[cfg(test)]
mod tests;
