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

/// A partition group's log: appends get consecutive offsets and their
/// batches land in the partition's batches, the log keeps only stubs,
/// truncation takes the batches back (their offsets go to the next
/// appends), and a restarted log learns its next offset from its entries.
#[tokio::test]
async fn a_partition_log_places_batches_and_truncation_takes_them_back() {
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::testing::{blank_ent, log_id};
    use openraft::RaftLogReader;

    use super::command::{Append, Command};
    use super::log_store::{append_of, BatchLog};
    use super::types::Entry;
    use crate::storage::{BatchBuilder, NewMessage};

    let append = |index: u64, count: u32| -> Entry {
        let mut batch = BatchBuilder::with_capacity(0);
        for i in 0..count {
            let message = NewMessage {
                key: None,
                headers: Vec::new(),
                json: true,
                payload: format!("{i}").into_bytes(),
                deliver_at: 0,
            };
            batch.push(&message, 5);
        }
        Entry::new_normal(
            log_id::<TypeConfig>(1, 1, index),
            Command::Append(Append {
                base: None,
                count,
                bytes: 0,
                first_timestamp: 5,
                last_timestamp: 5,
                ids: Vec::new(),
                ids_expire_at: 0,
                batch: Some(batch.finish()),
            }),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let (topic, group) = (3, 9);
    let mut log = LogStore::partition(store.clone(), group, BatchLog::new(topic, 0));
    let entries = vec![append(1, 3), blank_ent::<TypeConfig>(1, 1, 2), append(3, 2)];
    log.append(entries, IOFlushed::noop()).await.unwrap();
    assert!(store.raw_batch(topic, 0, 0).unwrap().is_some());
    assert!(store.raw_batch(topic, 0, 3).unwrap().is_some());
    let stored = log.try_get_log_entries(1..4).await.unwrap();
    let third = append_of(&stored[2]).unwrap();
    assert_eq!(third.base, Some(3));
    assert_eq!(third.batch, None, "the log keeps a stub");

    // A conflicting tail goes, and its batch with it.
    log.truncate_after(Some(log_id::<TypeConfig>(1, 1, 2)))
        .await
        .unwrap();
    assert!(store.raw_batch(topic, 0, 3).unwrap().is_none());
    log.append(vec![append(3, 4)], IOFlushed::noop())
        .await
        .unwrap();
    let replaced = log.try_get_log_entries(3..4).await.unwrap();
    assert_eq!(append_of(&replaced[0]).unwrap().base, Some(3));

    // After a restart the log finds where it ended.
    let mut again = LogStore::partition(store.clone(), group, BatchLog::new(topic, 0));
    again
        .append(
            vec![blank_ent::<TypeConfig>(1, 1, 4), append(5, 1)],
            IOFlushed::noop(),
        )
        .await
        .unwrap();
    let last = again.try_get_log_entries(5..6).await.unwrap();
    assert_eq!(append_of(&last[0]).unwrap().base, Some(7));
    store.shutdown().await;
}
