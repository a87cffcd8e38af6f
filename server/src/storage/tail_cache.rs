//! The tail cache: the most recently committed record batches of every
//! partition, kept in memory as they were written, so consumers at the
//! head of a log (the common case) are served without a RocksDB read and
//! without leaving the async worker.
//!
//! Batches enter only once durable (the writer or syncer inserts them
//! before the produce is answered), so the cache never holds bytes the
//! store could lose. It is bounded in bytes; the oldest batches leave
//! first. A read is answered from the cache only when the cache holds the
//! whole answer (every offset from the first wanted to the limit or the
//! end); otherwise the caller reads the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::batch::BatchView;
use super::record::StoredMessage;

/// One cached batch.
type Batch = Arc<Vec<u8>>;

pub struct TailCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per `(topic, partition)`: batches by base offset.
    parts: HashMap<(u32, u32), BTreeMap<u64, Batch>>,
    /// Insertion order, for eviction: `(topic, partition, base, bytes)`.
    order: VecDeque<(u32, u32, u64, usize)>,
    bytes: usize,
}

impl TailCache {
    /// A cache of at most about `budget` bytes (0 disables it).
    pub fn new(budget: usize) -> TailCache {
        TailCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps
        // inconsistent in a way that matters (worst case: a stale entry).
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds durable batches.
    pub fn insert(&self, batches: Vec<(u32, u32, u64, Batch)>) {
        if self.budget == 0 || batches.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (topic, partition, base, bytes) in batches {
            let len = bytes.len();
            if len > self.budget {
                continue;
            }
            if let Some(old) = inner
                .parts
                .entry((topic, partition))
                .or_default()
                .insert(base, bytes)
            {
                inner.bytes -= old.len();
            }
            inner.bytes += len;
            inner.order.push_back((topic, partition, base, len));
        }
        while inner.bytes > self.budget {
            let Some((topic, partition, base, _)) = inner.order.pop_front() else {
                break;
            };
            let mut emptied = false;
            let mut freed = 0;
            if let Some(part) = inner.parts.get_mut(&(topic, partition)) {
                if let Some(b) = part.remove(&base) {
                    freed = b.len();
                }
                emptied = part.is_empty();
            }
            inner.bytes -= freed;
            if emptied {
                inner.parts.remove(&(topic, partition));
            }
        }
    }

    /// Forgets a deleted topic's batches.
    pub fn forget_topic(&self, topic: u32) {
        let mut inner = self.lock();
        let freed: usize = inner
            .parts
            .iter()
            .filter(|((t, _), _)| *t == topic)
            .flat_map(|(_, part)| part.values().map(|b| b.len()))
            .sum();
        inner.parts.retain(|(t, _), _| *t != topic);
        inner.order.retain(|(t, ..)| *t != topic);
        inner.bytes -= freed;
    }

    /// Messages `[from, end)` of a partition, at most `max_count` and about
    /// `max_bytes` (at least one), if the cache holds the whole answer.
    pub fn read(
        &self,
        topic: u32,
        partition: u32,
        from: u64,
        end: u64,
        max_count: usize,
        max_bytes: u64,
    ) -> Option<Vec<StoredMessage>> {
        if from >= end || max_count == 0 || self.budget == 0 {
            return None;
        }
        // Only the batches are taken under the lock (no more than hold
        // `max_count` wanted messages); decoding is outside.
        let batches: Vec<(u64, Batch)> = {
            let inner = self.lock();
            let part = inner.parts.get(&(topic, partition))?;
            let (&first, _) = part.range(..=from).next_back()?;
            let mut taken = Vec::new();
            let mut wanted = 0u64;
            for (base, b) in part.range(first..end) {
                taken.push((*base, b.clone()));
                wanted += BatchView::parse(*base, b, false)
                    .map_or(0, |v| v.end().min(end).saturating_sub((*base).max(from)));
                if wanted >= max_count as u64 {
                    break;
                }
            }
            taken
        };
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next = from;
        for (base, batch) in &batches {
            // Written by this process from memory: no checksum to verify.
            let view = BatchView::parse(*base, batch, false).ok()?;
            if view.end() <= next {
                continue;
            }
            if view.base > next {
                // A gap (or a batch not cached): the store knows better.
                return None;
            }
            for message in view.messages(next, end) {
                let message = message.ok()?;
                next = message.offset + 1;
                bytes += message.stored_bytes;
                out.push(message);
                if out.len() >= max_count || bytes >= max_bytes {
                    return Some(out);
                }
            }
            if next >= end {
                return Some(out);
            }
        }
        // Ran out of cached batches before the end: not the whole answer.
        None
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::batch::BatchBuilder;
    use crate::storage::record::NewMessage;

    fn batch(from: u64, to: u64) -> Batch {
        let mut b = BatchBuilder::with_capacity(0);
        for n in from..to {
            b.push(
                &NewMessage {
                    // Same size for every offset (the budget test counts).
                    payload: format!("{n:06}").into_bytes(),
                    ..NewMessage::default()
                },
                n,
            );
        }
        Arc::new(b.finish())
    }

    fn offsets(m: Option<Vec<StoredMessage>>) -> Option<Vec<u64>> {
        m.map(|v| v.iter().map(|m| m.offset).collect())
    }

    #[test]
    fn answers_only_what_it_holds_whole() {
        let cache = TailCache::new(1 << 20);
        cache.insert(vec![(1, 0, 10, batch(10, 20)), (1, 0, 20, batch(20, 25))]);
        cache.insert(vec![(1, 0, 30, batch(30, 35))]);
        assert_eq!(
            offsets(cache.read(1, 0, 12, 25, 100, u64::MAX)),
            Some((12..25).collect())
        );
        assert_eq!(
            offsets(cache.read(1, 0, 18, 25, 3, u64::MAX)),
            Some(vec![18, 19, 20])
        );
        // Below the first cached batch, across the gap, another partition.
        assert_eq!(cache.read(1, 0, 5, 25, 100, u64::MAX), None);
        assert_eq!(cache.read(1, 0, 22, 35, 100, u64::MAX), None);
        assert_eq!(cache.read(1, 1, 12, 25, 100, u64::MAX), None);
        // The end bounds the answer even when more is cached.
        assert_eq!(
            offsets(cache.read(1, 0, 30, 33, 100, u64::MAX)),
            Some(vec![30, 31, 32])
        );
        // Beyond what is cached: not whole.
        assert_eq!(cache.read(1, 0, 30, 40, 100, u64::MAX), None);
        cache.forget_topic(1);
        assert_eq!(cache.read(1, 0, 12, 25, 100, u64::MAX), None);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn stays_within_its_budget_dropping_the_oldest() {
        let one = batch(0, 10).len();
        let cache = TailCache::new(one * 3);
        for i in 0..10u64 {
            cache.insert(vec![(1, 0, i * 10, batch(i * 10, i * 10 + 10))]);
            assert!(cache.bytes() <= one * 3);
        }
        assert_eq!(cache.read(1, 0, 60, 100, 100, u64::MAX), None);
        assert_eq!(
            offsets(cache.read(1, 0, 75, 100, 100, u64::MAX)),
            Some((75..100).collect())
        );
        let off = TailCache::new(0);
        off.insert(vec![(1, 0, 0, batch(0, 10))]);
        assert_eq!(off.read(1, 0, 0, 10, 100, u64::MAX), None);
    }
}
