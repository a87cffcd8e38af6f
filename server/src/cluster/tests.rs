//! openraft's storage test suite against the store-backed log and the
//! metadata state machine, alone and next to another group's data.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};

use super::log_store::LogStore;
use super::metadata::MetaStateMachine;
use super::types::TypeConfig;
use crate::storage::{Store, StoreOptions, WriteSet};

/// Builds each case on a fresh store; `neighbour` puts another group's
/// entries around the tested group's key range first.
struct Builder {
    neighbour: bool,
}

/// Kept alive by the suite for one case: stops the store's threads before
/// its directory is removed (a WAL whose file vanished under a running
/// writer fails, and RocksDB aborts on the next sync).
struct Guard {
    store: Option<Arc<Store>>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (store, dir) = (self.store.take(), self.dir.take());
        // Dropped inside the test's runtime: stop the store on a thread of
        // its own, and wait for it.
        let stopped = std::thread::spawn(move || {
            if let (Some(store), Ok(rt)) =
                (store, tokio::runtime::Builder::new_current_thread().build())
            {
                rt.block_on(store.shutdown());
            }
            drop(dir);
        });
        let _ = stopped.join();
    }
}

impl StoreBuilder<TypeConfig, LogStore, MetaStateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, MetaStateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(read_err)?;
        let store = Store::open(dir.path(), &StoreOptions::default())
            .map_err(|e| read_err(std::io::Error::other(e)))?;
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
            dir: Some(dir),
        };
        Ok((guard, LogStore::new(store, group), sm))
    }
}

fn read_err(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e)
}

#[tokio::test]
async fn storage_suite() {
    Suite::test_all(Builder { neighbour: false }).await.unwrap();
}

#[tokio::test]
async fn storage_suite_next_to_other_groups() {
    Suite::test_all(Builder { neighbour: true }).await.unwrap();
}
