//! What the store reports about itself for operators: the storage engine's
//! estimates (live data, compaction debt, write stalls) and the data
//! directory's filesystem. Owns the RocksDB property names, so nothing
//! above storage knows them.

use rocksdb::DB;

use super::keys::ALL_CFS;
use super::Store;

/// Estimated bytes of live data, per column family.
const LIVE_DATA: &str = "rocksdb.estimate-live-data-size";
/// Estimated bytes compaction still has to rewrite, per column family.
const PENDING_COMPACTION: &str = "rocksdb.estimate-pending-compaction-bytes";
/// 1 while RocksDB stops writes, database-wide.
const WRITE_STOPPED: &str = "rocksdb.is-write-stopped";
/// The rate writes are slowed to (0: not slowed), database-wide.
const DELAYED_WRITE_RATE: &str = "rocksdb.actual-delayed-write-rate";

/// The storage engine's view of itself, read at one moment. Every figure
/// is 0 (and `writes_stopped` false) while the store is reopening after a
/// write failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Estimated bytes of live data over every column family: about what
    /// the data directory would hold once fully compacted.
    pub live_data_bytes: u64,
    /// Estimated bytes compaction still has to rewrite. Growing without
    /// bound means compaction cannot keep up with writes: the engine will
    /// slow writes down, then stop them.
    pub pending_compaction_bytes: u64,
    /// Whether the engine has stopped writes (too many level-0 files or too
    /// much compaction debt): produce and settles wait until compaction
    /// catches up.
    pub writes_stopped: bool,
    /// The rate, in bytes per second, the engine currently slows writes to
    /// while compaction catches up; 0 when writes are not slowed.
    pub delayed_write_rate_bytes_per_sec: u64,
}

/// The data directory's filesystem, measured now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Size of the filesystem in bytes.
    pub total_bytes: u64,
    /// Bytes the server may still use on it.
    pub free_bytes: u64,
}

impl Store {
    /// The storage engine's estimates and write-stall state, now.
    pub fn engine_stats(&self) -> EngineStats {
        let Ok(db) = self.db() else {
            return EngineStats::default();
        };
        EngineStats {
            live_data_bytes: summed(&db, LIVE_DATA),
            pending_compaction_bytes: summed(&db, PENDING_COMPACTION),
            writes_stopped: database_wide(&db, WRITE_STOPPED) != 0,
            delayed_write_rate_bytes_per_sec: database_wide(&db, DELAYED_WRITE_RATE),
        }
    }

    /// Size and free space of the data directory's filesystem (one
    /// `statvfs`); `None` when the filesystem cannot say.
    pub fn disk_usage(&self) -> Option<DiskUsage> {
        let stat = rustix::fs::statvfs(self.path()).ok()?;
        Some(DiskUsage {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        })
    }
}

/// An integer property summed over every column family (0 where unknown).
fn summed(db: &DB, name: &str) -> u64 {
    ALL_CFS
        .iter()
        .filter_map(|cf| db.cf_handle(cf))
        .filter_map(|cf| db.property_int_value_cf(cf, name).ok().flatten())
        .sum()
}

/// A database-wide integer property (0 where unknown).
fn database_wide(db: &DB, name: &str) -> u64 {
    db.property_int_value(name).ok().flatten().unwrap_or(0)
}
