//! The open database, behind a slot that can be emptied and refilled: after
//! a write failure RocksDB stays read-only until reopened (the crate has no
//! `Resume`), so the health monitor closes it and opens it again while
//! every user holds the handle only for the length of one operation.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rocksdb::DB;

use super::StorageError;

#[derive(Default)]
pub(super) struct DbSlot {
    db: RwLock<Option<Arc<DB>>>,
}

impl DbSlot {
    pub(super) fn new(db: DB) -> DbSlot {
        DbSlot {
            db: RwLock::new(Some(Arc::new(db))),
        }
    }

    /// The open database, or `Reopening` while it is being reopened.
    pub(super) fn get(&self) -> Result<Arc<DB>, StorageError> {
        let guard = match self.db.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard.clone().ok_or(StorageError::Reopening)
    }

    /// Empties the slot and waits (up to `wait`) until nobody else holds
    /// the database, then closes it. False when someone still held it
    /// (it is closed when they let go; opening again then fails on the
    /// lock and is retried).
    pub(super) fn close(&self, wait: Duration) -> bool {
        let taken = match self.db.write() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(db) = taken else {
            return true;
        };
        let deadline = Instant::now() + wait;
        while Arc::strong_count(&db) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let alone = Arc::strong_count(&db) == 1;
        drop(db);
        alone
    }

    /// Puts a freshly opened database in the slot.
    pub(super) fn fill(&self, db: DB) {
        let mut guard = match self.db.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = Some(Arc::new(db));
    }
}
