//! Replicated subscriptions (cluster): per partition, the highest claim of
//! a node serving the subscription, and whether a cursor is stored yet.
//! Only a partition group's state machine writes these, so what it reads
//! back while applying is the same on every replica.

use super::keys::{sub_key, CF_SUB_STATE, SUB_CURSOR, SUB_EPOCH};
use super::{cf, Result, StorageError, Store, WriteSet};

impl Store {
    /// The highest claim recorded for `sub` on `partition` (0: none).
    pub fn sub_epoch(&self, sub: u32, partition: u32) -> Result<u64> {
        let db = self.db()?;
        match db.get_cf(
            cf(&db, CF_SUB_STATE)?,
            sub_key(sub, SUB_EPOCH, partition, 0),
        )? {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("sub epoch".into()))?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    /// Whether `sub` has a cursor stored for `partition`.
    pub fn has_sub_cursor(&self, sub: u32, partition: u32) -> Result<bool> {
        let db = self.db()?;
        Ok(db
            .get_cf(
                cf(&db, CF_SUB_STATE)?,
                sub_key(sub, SUB_CURSOR, partition, 0),
            )?
            .is_some())
    }
}

impl WriteSet {
    /// Records the claim `epoch` of `sub` on `partition`.
    pub fn put_sub_epoch(&mut self, sub: u32, partition: u32, epoch: u64) {
        self.put(
            CF_SUB_STATE,
            sub_key(sub, SUB_EPOCH, partition, 0),
            epoch.to_be_bytes().to_vec(),
        );
    }
}
