//! openraft's storage test suite against the store-backed log and the
//! metadata state machine, alone and next to another group's data.

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

impl StoreBuilder<TypeConfig, LogStore, MetaStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, MetaStateMachine), StorageError<TypeConfig>> {
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
        Ok((dir, LogStore::new(store, group), sm))
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
