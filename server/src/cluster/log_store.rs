//! One Raft group's log over the store: entries, vote, committed and
//! purged ids under the group's id. Every group appends through the
//! store's single group-commit writer, so one WAL sync covers the entries
//! of every group; an append returns once its entries are readable and
//! tells openraft they are durable only after that sync.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::codec::{decode, encode};
use super::types::{Entry, GroupId, LogId, TypeConfig, Vote};
use crate::storage::{RaftValue, StorageError, Store, WriteSet};

/// A group's Raft log in the store.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    group: GroupId,
}

fn io_err(e: StorageError) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    pub fn new(store: Arc<Store>, group: GroupId) -> Self {
        LogStore { store, group }
    }

    /// Runs a store read on the blocking pool.
    async fn read<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store, GroupId) -> Result<T, StorageError> + Send + 'static,
    {
        let (store, group) = (self.store.clone(), self.group);
        tokio::task::spawn_blocking(move || f(&store, group))
            .await
            .map_err(io::Error::other)?
            .map_err(io_err)
    }

    async fn value<T: serde::de::DeserializeOwned>(
        &self,
        which: RaftValue,
    ) -> io::Result<Option<T>> {
        match self.read(move |s, g| s.raft_value(g, which)).await? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Queues `set` and waits until it is written (readable), not synced;
    /// returns the receiver of its durable result.
    async fn write(
        &self,
        mut set: WriteSet,
    ) -> io::Result<tokio::sync::oneshot::Receiver<Result<(), StorageError>>> {
        let written = set.notify_written();
        let durable = self.store.enqueue(set).await.map_err(io_err)?;
        written
            .await
            .map_err(|_| io_err(StorageError::Closed))?
            .map_err(io_err)?;
        Ok(durable)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (from, to) = bounds(&range);
        let raw = self
            .read(move |s, g| s.raft_entries(g, from, to, usize::MAX))
            .await?;
        raw.iter().map(|(_, bytes)| decode(bytes)).collect()
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.value(RaftValue::Vote).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let purged: Option<LogId> = self.value(RaftValue::Purged).await?;
        let last = match self.read(|s, g| s.raft_last_entry(g)).await? {
            Some((_, bytes)) => Some(decode::<Entry>(&bytes)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let mut set = WriteSet::new();
        set.put_raft_value(self.group, RaftValue::Vote, encode(vote)?);
        // Durable before it returns: a vote must never be forgotten.
        self.store.commit(set).await.map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let mut set = WriteSet::new();
        set.put_raft_value(self.group, RaftValue::Committed, encode(&committed)?);
        // Synced by the next sync; losing it only means re-learning the
        // commit point from the leader.
        self.write(set).await.map(drop)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self
            .value::<Option<LogId>>(RaftValue::Committed)
            .await?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut set = WriteSet::new();
        for entry in entries {
            set.put_raft_entry(self.group, entry.log_id.index, encode(&entry)?);
        }
        let durable = self.write(set).await?;
        tokio::spawn(async move {
            let result = match durable.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(io_err(e)),
                Err(_) => Err(io_err(StorageError::Closed)),
            };
            callback.io_completed(result);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> io::Result<()> {
        let from = last.map_or(0, |l| l.index.saturating_add(1));
        let mut set = WriteSet::new();
        set.truncate_raft_log(self.group, from);
        self.write(set).await.map(drop)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut set = WriteSet::new();
        set.put_raft_value(self.group, RaftValue::Purged, encode(&log_id)?);
        set.purge_raft_log(self.group, log_id.index);
        self.write(set).await.map(drop)
    }
}
