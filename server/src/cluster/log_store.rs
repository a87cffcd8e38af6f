//! One Raft group's log over the store: entries, vote, committed and
//! purged ids under the group's id. Every group appends through the
//! store's single group-commit writer, so one WAL sync covers the entries
//! of every group; an append returns once its entries are readable and
//! tells openraft they are durable only after that sync.
//!
//! A partition group's log is also its partition's message log: appending
//! an [`Append`] entry assigns its offsets (following the last append
//! before it in the log, so every replica assigns the same ones) and moves
//! its record batch into the partition's batches in the same write; the
//! stored entry keeps only the batch's description. Truncating a
//! conflicting tail deletes the batches those entries named. Readers never
//! see a batch until its entry is applied (`partition.rs`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};

use super::codec::{decode, encode};
use super::command::{Append, Command};
use super::types::{Entry, GroupId, LogId, TypeConfig, Vote};
use crate::storage::{RaftValue, StorageError, Store, WriteSet};

/// A group's Raft log in the store.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    group: GroupId,
    /// For a partition group: where its batches go.
    batches: Option<Arc<BatchLog>>,
}

/// Where a partition group's batches live, and the offset its next
/// append gets.
pub struct BatchLog {
    pub topic: u32,
    pub partition: u32,
    /// The offset after the last append in the log; learnt from the log
    /// on first use.
    next: Mutex<Option<u64>>,
}

impl BatchLog {
    pub fn new(topic: u32, partition: u32) -> Arc<Self> {
        Arc::new(BatchLog {
            topic,
            partition,
            next: Mutex::new(None),
        })
    }

    fn next(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The append an entry carries, if any.
pub fn append_of(entry: &Entry) -> Option<&Append> {
    match &entry.payload {
        EntryPayload::Normal(Command::Append(append)) => Some(append),
        _ => None,
    }
}

/// Entries read at a time while looking back through a log.
const SCAN_CHUNK: u64 = 256;

/// The offset after the last append in `group`'s log (0 if it has none).
fn end_offset(store: &Store, group: GroupId) -> Result<u64, StorageError> {
    let Some((last, _)) = store.raft_last_entry(group)? else {
        return Ok(0);
    };
    let mut to = last.saturating_add(1);
    loop {
        let from = to.saturating_sub(SCAN_CHUNK);
        let raw = store.raft_entries(group, from, to, usize::MAX)?;
        for (_, bytes) in raw.iter().rev() {
            let entry: Entry = decode(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            if let Some(Append {
                base: Some(base),
                count,
                ..
            }) = append_of(&entry)
            {
                return Ok(base + u64::from(*count));
            }
        }
        if raw.is_empty() || from == 0 {
            return Ok(0);
        }
        to = from;
    }
}

fn io_err(e: StorageError) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    /// The log of the metadata group.
    pub fn new(store: Arc<Store>, group: GroupId) -> Self {
        LogStore {
            store,
            group,
            batches: None,
        }
    }

    /// The log of a partition group, whose batches go to `batches`.
    pub fn partition(store: Arc<Store>, group: GroupId, batches: Arc<BatchLog>) -> Self {
        LogStore {
            store,
            group,
            batches: Some(batches),
        }
    }

    /// The offset the next append gets.
    async fn next_offset(&self, batches: &BatchLog) -> io::Result<u64> {
        if let Some(next) = *batches.next() {
            return Ok(next);
        }
        let next = self.read(end_offset).await?;
        *batches.next() = Some(next);
        Ok(next)
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
        let mut next = match &self.batches {
            Some(batches) => Some((batches.clone(), self.next_offset(batches).await?)),
            None => None,
        };
        for mut entry in entries {
            if let (Some((batches, next)), EntryPayload::Normal(Command::Append(append))) =
                (next.as_mut(), &mut entry.payload)
            {
                // A follower receives the leader's offsets; they are the
                // ones it would assign itself.
                let base = *append.base.get_or_insert(*next);
                if let Some(body) = append.batch.take() {
                    set.put_replicated_batch(
                        batches.topic,
                        batches.partition,
                        base,
                        append.count,
                        body,
                    )
                    .map_err(io_err)?;
                }
                *next = base + u64::from(append.count);
            }
            set.put_raft_entry(self.group, entry.log_id.index, encode(&entry)?);
        }
        let durable = self.write(set).await?;
        if let Some((batches, next)) = next {
            *batches.next() = Some(next);
        }
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
        let mut next = None;
        if let Some(batches) = &self.batches {
            // The batches of the removed entries go with them: the next
            // appends take their offsets again.
            let raw = self
                .read(move |s, g| s.raft_entries(g, from, u64::MAX, usize::MAX))
                .await?;
            for (_, bytes) in &raw {
                let entry: Entry = decode(bytes)?;
                if let Some(Append {
                    base: Some(base), ..
                }) = append_of(&entry)
                {
                    set.delete_batches_from(batches.topic, batches.partition, *base);
                    next = Some(*base);
                    break;
                }
            }
        }
        self.write(set).await?;
        if let (Some(batches), Some(next)) = (&self.batches, next) {
            *batches.next() = Some(next);
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut set = WriteSet::new();
        set.put_raft_value(self.group, RaftValue::Purged, encode(&log_id)?);
        set.purge_raft_log(self.group, log_id.index);
        self.write(set).await.map(drop)
    }
}
