//! Raft groups' durable state, for the cluster: each group's log entries
//! by index, its vote, committed and purged ids and its state machine's
//! state, all in the `raft` column family under the group's id (key layout
//! in `keys.rs`). Values are opaque bytes here; `cluster/` encodes them.
//!
//! Writes go through the same group-commit writer as everything else, so
//! one WAL sync covers the appends of every group (and of the single-node
//! log): a [`WriteSet`] carries them, and
//! [`WriteSet::notify_written`] tells an appender when its entries are
//! readable, before the sync that makes them durable.

use rocksdb::{Direction, IteratorMode, ReadOptions};

/// A Raft group's id (the cluster allocates them).
pub type GroupId = u64;

use super::batch::BatchView;
use super::keys::{partition_key, prefix_end, raft_key, CF_BATCHES, CF_RAFT, RAFT_ENTRY};
use super::{cf, Result, StorageError, Store, WriteSet};

/// One of a group's single values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftValue {
    Vote,
    Committed,
    Purged,
    State,
    /// The node's incarnation (see `cluster/node.rs`).
    Incarnation,
}

impl RaftValue {
    fn kind(self) -> u8 {
        use super::keys::{RAFT_COMMITTED, RAFT_INCARNATION, RAFT_PURGED, RAFT_STATE, RAFT_VOTE};
        match self {
            RaftValue::Vote => RAFT_VOTE,
            RaftValue::Committed => RAFT_COMMITTED,
            RaftValue::Purged => RAFT_PURGED,
            RaftValue::State => RAFT_STATE,
            RaftValue::Incarnation => RAFT_INCARNATION,
        }
    }
}

fn entry_key(group: u64, index: u64) -> Vec<u8> {
    raft_key(group, RAFT_ENTRY, Some(index))
}

fn index_of(key: &[u8]) -> Result<u64> {
    key.get(9..17)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt("raft entry key".into()))
}

impl Store {
    /// The entries of `group` with `from <= index < to`, in index order,
    /// stopping after `max_bytes` of values (at least one entry is returned
    /// when one is there).
    pub fn raft_entries(
        &self,
        group: u64,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let db = self.db()?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(entry_key(group, to));
        let start = entry_key(group, from);
        let iter = db.iterator_cf_opt(
            cf(&db, CF_RAFT)?,
            opts,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in iter {
            let (k, v) = item?;
            if !out.is_empty() && bytes + v.len() > max_bytes {
                break;
            }
            bytes += v.len();
            out.push((index_of(&k)?, v.to_vec()));
        }
        Ok(out)
    }

    /// The last entry of `group`, if its log holds any.
    pub fn raft_last_entry(&self, group: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let db = self.db()?;
        let prefix = raft_key(group, RAFT_ENTRY, None);
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(prefix.clone());
        opts.set_iterate_upper_bound(prefix_end(&prefix));
        let mut iter = db.iterator_cf_opt(cf(&db, CF_RAFT)?, opts, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((index_of(&k)?, v.to_vec())))
            }
        }
    }

    /// The stored bytes of the record batch at `base` of a partition, as a
    /// partition group's entry names it (`None`: removed by retention).
    pub fn raw_batch(&self, topic: u32, partition: u32, base: u64) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        Ok(db
            .get_cf(cf(&db, CF_BATCHES)?, partition_key(topic, partition, base))?
            .map(|v| v.to_vec()))
    }

    /// One of `group`'s single values.
    pub fn raft_value(&self, group: u64, which: RaftValue) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        Ok(db
            .get_cf(cf(&db, CF_RAFT)?, raft_key(group, which.kind(), None))?
            .map(|v| v.to_vec()))
    }
}

impl WriteSet {
    /// Writes entry `index` of `group` (replacing one there).
    pub fn put_raft_entry(&mut self, group: u64, index: u64, value: Vec<u8>) {
        self.put(CF_RAFT, entry_key(group, index), value);
    }

    /// Deletes the entries of `group` from `from` on (a conflicting tail).
    pub fn truncate_raft_log(&mut self, group: u64, from: u64) {
        self.delete_range(
            CF_RAFT,
            entry_key(group, from),
            prefix_end(&raft_key(group, RAFT_ENTRY, None)),
        );
    }

    /// Deletes the entries of `group` up to and including `upto`.
    pub fn purge_raft_log(&mut self, group: u64, upto: u64) {
        let end = match upto.checked_add(1) {
            Some(next) => entry_key(group, next),
            None => prefix_end(&raft_key(group, RAFT_ENTRY, None)),
        };
        self.delete_range(CF_RAFT, entry_key(group, 0), end);
    }

    /// Erases everything of `group` (a removed replica).
    pub fn delete_raft_group(&mut self, group: GroupId) {
        let end = match group.checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; 9],
        };
        self.delete_range(CF_RAFT, group.to_be_bytes().to_vec(), end);
    }

    /// Stores a record batch a partition group's entry carries, under the
    /// partition's key at `base` (where a single node keeps its batches),
    /// after checking it is a whole batch of `count` messages: bytes from
    /// a peer are never stored unchecked. It enters no cache: it becomes
    /// readable only once its entry is applied.
    pub fn put_replicated_batch(
        &mut self,
        topic: u32,
        partition: u32,
        base: u64,
        count: u32,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let view = BatchView::parse(base, &bytes, true)
            .map_err(|e| StorageError::Corrupt(format!("replicated batch at {base}: {e}")))?;
        if view.count != count {
            return Err(StorageError::Corrupt(format!(
                "replicated batch at {base} holds {} messages, its entry says {count}",
                view.count
            )));
        }
        self.put(CF_BATCHES, partition_key(topic, partition, base), bytes);
        Ok(())
    }

    /// Deletes a partition's batches from offset `from` on (a conflicting
    /// tail of its group's log that was never committed).
    pub fn delete_batches_from(&mut self, topic: u32, partition: u32, from: u64) {
        self.delete_range(
            CF_BATCHES,
            partition_key(topic, partition, from).to_vec(),
            partition_key(topic, partition, u64::MAX).to_vec(),
        );
    }

    /// Sets one of `group`'s single values.
    pub fn put_raft_value(&mut self, group: u64, which: RaftValue, value: Vec<u8>) {
        self.put(CF_RAFT, raft_key(group, which.kind(), None), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreOptions;

    #[tokio::test]
    async fn entries_values_truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut set = WriteSet::new();
        for i in 1..=10u64 {
            set.put_raft_entry(7, i, vec![i as u8; 3]);
            set.put_raft_entry(8, i, vec![0xff]);
        }
        set.put_raft_value(7, RaftValue::Vote, b"v".to_vec());
        let written = set.notify_written();
        store.commit(set).await.unwrap();
        written.await.unwrap().unwrap();

        let got = store.raft_entries(7, 3, 6, usize::MAX).unwrap();
        assert_eq!(
            got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(got[0].1, vec![3u8; 3]);
        // The byte limit still returns the first entry.
        assert_eq!(store.raft_entries(7, 1, 11, 1).unwrap().len(), 1);
        assert_eq!(store.raft_entries(7, 1, 11, 6).unwrap().len(), 2);
        assert_eq!(store.raft_last_entry(7).unwrap().unwrap().0, 10);
        assert_eq!(
            store.raft_value(7, RaftValue::Vote).unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(store.raft_value(8, RaftValue::Vote).unwrap(), None);

        let mut set = WriteSet::new();
        set.truncate_raft_log(7, 8);
        set.purge_raft_log(7, 2);
        store.commit(set).await.unwrap();
        let left: Vec<u64> = store
            .raft_entries(7, 0, u64::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(left, vec![3, 4, 5, 6, 7]);
        // The other group is untouched.
        assert_eq!(store.raft_last_entry(8).unwrap().unwrap().0, 10);
        assert_eq!(store.raft_entries(8, 0, 100, usize::MAX).unwrap().len(), 10);
        assert_eq!(store.raft_last_entry(9).unwrap(), None);

        // Erasing a group leaves its neighbours alone.
        let mut set = WriteSet::new();
        set.delete_raft_group(7);
        store.commit(set).await.unwrap();
        assert_eq!(store.raft_last_entry(7).unwrap(), None);
        assert_eq!(store.raft_value(7, RaftValue::Vote).unwrap(), None);
        assert_eq!(store.raft_entries(8, 0, 100, usize::MAX).unwrap().len(), 10);
        store.shutdown().await;
    }
}
