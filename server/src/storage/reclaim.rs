//! Giving disk space back after a topic is deleted. A deleted range is only
//! marked (a range tombstone) until RocksDB compacts it, which can take a
//! long while on a quiet store — exactly when a full disk needs the space.
//! So the range's memtables are flushed, files wholly inside it dropped,
//! and the rest compacted, on a background thread.

use std::sync::Arc;

use super::keys::{topic_end, topic_start, CF_BATCHES, CF_DEDUPE, CF_TIME_INDEX};
use super::{cf, Store};

impl Store {
    /// Starts reclaiming the space of a deleted topic (returns at once).
    pub fn reclaim_topic(self: &Arc<Self>, topic: u32) {
        self.cache.forget_topic(topic);
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-reclaim".into())
            .spawn(move || {
                if let Err(e) = store.reclaim_range(topic) {
                    tracing::warn!(topic, error = %e, "reclaiming a deleted topic's space failed; compaction will do it later");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the reclaim thread");
        }
    }

    fn reclaim_range(&self, topic: u32) -> super::Result<()> {
        let db = self.db()?;
        let (start, end) = (topic_start(topic), topic_end(topic));
        for family in [CF_BATCHES, CF_TIME_INDEX, CF_DEDUPE] {
            let handle = cf(&db, family)?;
            db.flush_cf(handle)?;
            db.delete_file_in_range_cf(handle, &start, &end)?;
            db.compact_range_cf(handle, Some(&start), Some(&end));
        }
        tracing::info!(topic, "reclaimed the space of a deleted topic");
        Ok(())
    }
}
