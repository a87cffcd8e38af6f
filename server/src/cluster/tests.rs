//! openraft's storage test suite against the store-backed log and the
//! metadata state machine, alone and next to another group's data.

use std::sync::{Arc, Mutex};

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};

use super::log_store::LogStore;
use super::metadata::MetaStateMachine;
use super::types::TypeConfig;
use crate::storage::{Store, StoreOptions, WriteSet};

/// Builds each case on a fresh store; `neighbour` puts another group's
/// entries around the tested group's key range first. The directories
/// outlive every case's store (they are removed with the builder, after
/// the suite): RocksDB must never lose a directory it still has open.
struct Builder {
    neighbour: bool,
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl Builder {
    fn new(neighbour: bool) -> Self {
        Builder {
            neighbour,
            dirs: Mutex::new(Vec::new()),
        }
    }
}

/// Kept alive by the suite for one case: stops the store's threads.
struct Guard {
    store: Option<Arc<Store>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        // Dropped inside the test's runtime: stop the store on a thread of
        // its own, and wait for it.
        let stopped = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() {
                rt.block_on(store.shutdown());
            }
        });
        let _ = stopped.join();
    }
}

fn read_err(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e)
}

impl StoreBuilder<TypeConfig, LogStore, MetaStateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, MetaStateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(read_err)?;
        let options = StoreOptions {
            write_buffer_bytes: 4 << 20,
            block_cache_bytes: 4 << 20,
            ..StoreOptions::default()
        };
        let store =
            Store::open(dir.path(), &options).map_err(|e| read_err(std::io::Error::other(e)))?;
        self.dirs.lock().unwrap().push(dir);
        let group = 7;
        if self.neighbour {
            let mut set = WriteSet::new();
            for other in [group - 1, group + 1] {
                for i in 0..50 {
                    set.put_raft_entry(other, i, b"not an entry".to_vec());
                }
            }
            store
                .commit(set)
                .await
                .map_err(|e| read_err(std::io::Error::other(e)))?;
        }
        let sm = MetaStateMachine::load(store.clone(), group).map_err(read_err)?;
        let guard = Guard {
            store: Some(store.clone()),
        };
        Ok((guard, LogStore::new(store, group), sm))
    }
}

#[tokio::test]
async fn storage_suite() {
    let builder = Builder::new(false);
    Suite::test_all(builder).await.unwrap();
}

#[tokio::test]
async fn storage_suite_next_to_other_groups() {
    Suite::test_all(Builder::new(true)).await.unwrap();
}
