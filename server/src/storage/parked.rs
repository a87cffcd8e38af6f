//! Reads of the messages a subscription parked on disk (see `SUB_PARKED`):
//! the due ones in due-time order, the ones behind a key in offset order,
//! those of one partition (a seek clears them), and their counts.

use std::collections::BTreeMap;

use rocksdb::ReadOptions;

use super::keys::*;
use super::{cf, Parked, ParkedCounts, Result, StorageError, Store};

impl Store {
    /// Parked messages due at or before `due`, earliest first, at most
    /// `limit`.
    pub fn due_parked(&self, sub: u32, due: u64, limit: usize) -> Result<Vec<Parked>> {
        let end = sub_index_key(sub, SUB_DUE, due.saturating_add(1), 0, 0);
        self.parked_by_index(sub, SUB_DUE, &sub_kind_prefix(sub, SUB_DUE), &end, limit)
    }

    /// When the earliest parked message is due, if any is parked by time.
    pub fn next_parked_due(&self, sub: u32) -> Result<Option<u64>> {
        let db = self.db()?;
        let prefix = sub_kind_prefix(sub, SUB_DUE);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(prefix_end(&prefix));
        let mut iter = db.raw_iterator_cf_opt(cf(&db, CF_SUB_STATE)?, opts);
        iter.seek(&prefix);
        let first = match iter.key() {
            Some(k) if iter.valid() => decode_sub_index_key(k).map(|(due, _, _)| due),
            _ => None,
        };
        iter.status()?;
        Ok(first)
    }

    /// The first `limit` messages parked behind `key`, in offset order.
    pub fn key_parked(&self, sub: u32, key: u64, limit: usize) -> Result<Vec<Parked>> {
        let mut start = sub_kind_prefix(sub, SUB_KEYQ);
        start.extend_from_slice(&key.to_be_bytes());
        let end = prefix_end(&start);
        self.parked_by_index(sub, SUB_KEYQ, &start, &end, limit)
    }

    /// Every parked message of one partition.
    pub fn partition_parked(&self, sub: u32, partition: u32) -> Result<Vec<Parked>> {
        let db = self.db()?;
        let start = sub_key(sub, SUB_PARKED, partition, 0);
        let end = sub_key(sub, SUB_PARKED, partition.saturating_add(1), 0);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let mut iter = db.raw_iterator_cf_opt(cf(&db, CF_SUB_STATE)?, opts);
        iter.seek(start);
        let mut out = Vec::new();
        while iter.valid() {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            let (_, p, o) = decode_sub_key(k).ok_or_else(|| corrupt("parked key"))?;
            out.push(Parked::decode_value(p, o, v).ok_or_else(|| corrupt("parked record"))?);
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// How many messages are parked, per partition (by time) and per key.
    pub fn count_parked(&self, sub: u32) -> Result<ParkedCounts> {
        let db = self.db()?;
        let prefix = sub_kind_prefix(sub, SUB_PARKED);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(prefix_end(&prefix));
        let mut iter = db.raw_iterator_cf_opt(cf(&db, CF_SUB_STATE)?, opts);
        iter.seek(&prefix);
        let mut due: BTreeMap<u32, u64> = BTreeMap::new();
        let mut keys: BTreeMap<u64, u64> = BTreeMap::new();
        let mut holders = Vec::new();
        while iter.valid() {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            let (_, p, o) = decode_sub_key(k).ok_or_else(|| corrupt("parked key"))?;
            let parked = Parked::decode_value(p, o, v).ok_or_else(|| corrupt("parked record"))?;
            match (parked.behind_key, parked.key) {
                (true, Some(key)) => *keys.entry(key).or_default() += 1,
                (false, Some(key)) => {
                    holders.push((key, p, o));
                    *due.entry(p).or_default() += 1;
                }
                _ => *due.entry(p).or_default() += 1,
            }
            iter.next();
        }
        iter.status()?;
        Ok(ParkedCounts {
            due: due.into_iter().collect(),
            keys: keys.into_iter().collect(),
            holders,
        })
    }

    /// Parked records found through an index range `[start, end)`.
    fn parked_by_index(
        &self,
        sub: u32,
        kind: u8,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Parked>> {
        let db = self.db()?;
        let family = cf(&db, CF_SUB_STATE)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let mut iter = db.raw_iterator_cf_opt(family, opts);
        iter.seek(start);
        let mut out = Vec::new();
        while iter.valid() && out.len() < limit {
            let Some(k) = iter.key() else { break };
            if k.get(4) != Some(&kind) {
                break;
            }
            let (_, p, o) = decode_sub_index_key(k).ok_or_else(|| corrupt("parked index key"))?;
            let value = db
                .get_pinned_cf(family, sub_key(sub, SUB_PARKED, p, o))?
                .ok_or_else(|| corrupt("parked index without its record"))?;
            out.push(Parked::decode_value(p, o, &value).ok_or_else(|| corrupt("parked record"))?);
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(what.to_owned())
}
