//! The store's health: free disk space against the configured limit, and
//! write failures. A write failure (disk full, I/O error) leaves RocksDB
//! read-only; the monitor thread then closes the database and opens it
//! again (recovering from its write-ahead log) every second until that
//! works, so the server becomes writable again on its own once the cause
//! is gone. Nothing answered as written is lost: a failed write is
//! answered as failed, and the reopen replays only what was synced.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::slot::DbSlot;
use super::{open_db, StoreOptions, WriterStats};

/// How often free space is measured and a reopen is tried.
const PERIOD: Duration = Duration::from_millis(500);
/// Free bytes no write may eat into, whatever `disk_free_limit_bytes`
/// says: RocksDB must never meet a full disk in its write-ahead log (the
/// linked build aborts on the write after a failed one) and needs room to
/// flush memtables. Writes that would go below it are refused (507).
pub(super) const HARD_RESERVE_BYTES: u64 = 16 << 20;
/// How long a reopen waits for in-flight operations to let go.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Free space on the data directory's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to the server (`None` until first measured or when
    /// the filesystem cannot say).
    pub free_bytes: Option<u64>,
    /// The configured limit (0: none).
    pub limit_bytes: u64,
}

impl DiskSpace {
    /// True when free space is below the limit (or the built-in reserve
    /// every write keeps, when that is higher).
    pub fn is_low(&self) -> bool {
        let floor = self.limit_bytes.max(HARD_RESERVE_BYTES);
        self.free_bytes.is_some_and(|f| f < floor)
    }
}

/// Shared health state of one store.
pub(super) struct Health {
    limit_bytes: u64,
    /// Free bytes + 1 (0: unknown).
    free_plus_one: AtomicU64,
    failure: Mutex<Option<(String, Instant)>>,
    failed: AtomicBool,
}

impl Health {
    pub(super) fn new(limit_bytes: u64) -> Health {
        Health {
            limit_bytes,
            free_plus_one: AtomicU64::new(0),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    pub(super) fn disk_space(&self) -> DiskSpace {
        let raw = self.free_plus_one.load(Ordering::Relaxed);
        DiskSpace {
            free_bytes: raw.checked_sub(1),
            limit_bytes: self.limit_bytes,
        }
    }

    /// Measures free space now (one `statvfs`, a few microseconds).
    pub(super) fn measure(&self, path: &std::path::Path) -> Option<u64> {
        let free = rustix::fs::statvfs(path)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
        self.free_plus_one
            .store(free.map_or(0, |f| f.saturating_add(1)), Ordering::Relaxed);
        free
    }

    /// Records a write failure (the first cause is kept until recovery).
    pub(super) fn fail(&self, reason: String) {
        let mut guard = match self.failure.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if guard.is_none() {
            *guard = Some((reason, Instant::now()));
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn recovered(&self) {
        let mut guard = match self.failure.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = None;
        self.failed.store(false, Ordering::SeqCst);
    }

    pub(super) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The recorded failure (its first cause and when), while failed.
    fn current_failure(&self) -> Option<(String, Instant)> {
        if !self.is_failed() {
            return None;
        }
        let guard = match self.failure.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard.clone()
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.current_failure().map(|(reason, _)| reason)
    }

    pub(super) fn failing_for(&self) -> Option<Duration> {
        self.current_failure().map(|(_, since)| since.elapsed())
    }
}

/// Starts the monitor: measures free space and reopens a failed store.
pub(super) fn spawn(
    slot: Arc<DbSlot>,
    path: PathBuf,
    options: StoreOptions,
    health: Arc<Health>,
    stats: Arc<WriterStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    health.measure(&path);
    std::thread::Builder::new()
        .name("weir-store-health".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(PERIOD);
                health.measure(&path);
                if health.is_failed() && !stop.load(Ordering::Relaxed) {
                    reopen(&slot, &path, &options, &health, &stats);
                }
            }
        })
}

fn reopen(
    slot: &DbSlot,
    path: &std::path::Path,
    options: &StoreOptions,
    health: &Health,
    stats: &WriterStats,
) {
    if !slot.close(CLOSE_WAIT) {
        tracing::warn!("store still in use; reopening later");
        return;
    }
    match open_db(path, options) {
        Ok(db) => {
            slot.fill(db);
            stats.failed.store(false, Ordering::SeqCst);
            health.recovered();
            tracing::info!("store reopened after a write failure; accepting writes again");
        }
        Err(e) => tracing::warn!(error = %e, "store reopen failed; retrying"),
    }
}
