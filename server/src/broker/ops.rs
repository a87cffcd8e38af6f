//! What the operational endpoints need from the store, as broker calls:
//! its health (liveness, readiness), the engine's and the disk's figures
//! (gauges) and online backups. The API reaches the store only through
//! the broker; the backup logic itself stays in `storage::backup`.

use std::path::Path;
use std::time::Duration;

pub use crate::storage::backup::{BackupEntry, BackupError, BackupInfo};
pub use crate::storage::{DiskUsage, EngineStats};

use super::Broker;

/// The store's condition, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// Whether the store accepts writes now.
    pub writable: bool,
    /// Whether free disk space is below `disk_free_limit_bytes` (or the
    /// built-in reserve): producing and creating are refused meanwhile.
    pub disk_space_low: bool,
    /// For how long writes have been failing, when they are.
    pub failing_for: Option<Duration>,
    /// Why writes fail, when they do.
    pub failure: Option<String>,
}

impl Broker {
    /// The store's health (for liveness and readiness).
    pub fn store_health(&self) -> StoreHealth {
        StoreHealth {
            writable: self.store.is_writable(),
            disk_space_low: self.store.disk_space().is_low(),
            failing_for: self.store.failing_for(),
            failure: self.store.write_failure(),
        }
    }

    /// The storage engine's estimates and write-stall state (for gauges).
    pub fn engine_stats(&self) -> EngineStats {
        self.store.engine_stats()
    }

    /// Size and free space of the data directory's filesystem (for
    /// gauges); `None` when the filesystem cannot say.
    pub fn disk_usage(&self) -> Option<DiskUsage> {
        self.store.disk_usage()
    }

    /// Takes an online backup of the whole store into `dir` (see
    /// `storage::backup`). Blocks for the length of the checkpoint: call it
    /// from `spawn_blocking`.
    pub fn create_backup(&self, dir: &Path) -> Result<BackupInfo, BackupError> {
        self.store.checkpoint(dir)
    }

    /// The finished backups under `backup_dir`, in name order. Blocks on
    /// the filesystem: call it from `spawn_blocking`.
    pub fn list_backups(&self, backup_dir: &Path) -> Result<Vec<BackupEntry>, BackupError> {
        crate::storage::backup::list(backup_dir)
    }
}
