//! Read-ahead for a subscription's scans of the log: one read fetches
//! several pulls' worth of messages of a partition, and the next pulls take
//! theirs from memory. Scans are serialized per subscription, so what the
//! scan lock guards is mostly memory work instead of a store read per pull.
//!
//! Log messages never change once committed, so a buffered message is
//! always right; a buffer only answers for the range it was read for
//! (`start..covered_to`, holes included) and is dropped when a scan asks
//! for something else (a seek, a rewind).

use std::collections::{HashMap, VecDeque};

use crate::storage::StoredMessage;

/// Messages one read fetches, at least.
pub(super) const READ_AHEAD_MESSAGES: usize = 1000;
/// Bytes one read fetches, about (at least one message, and never fewer
/// than a pull asked for when they are small).
pub(super) const READ_AHEAD_BYTES: u64 = 1 << 20;
/// Bytes a subscription buffers across its partitions, about.
const MAX_BUFFERED_BYTES: u64 = 2 << 20;

/// What was read of one partition and not yet handed out.
struct Buffered {
    messages: VecDeque<StoredMessage>,
    /// The buffer speaks for offsets `start..covered_to`: every message of
    /// the log in that range is in `messages`.
    start: u64,
    covered_to: u64,
    bytes: u64,
}

/// The read-ahead of one subscription (guarded by its scan lock).
#[derive(Default)]
pub(super) struct ReadAhead {
    parts: HashMap<u32, Buffered>,
    bytes: u64,
}

impl ReadAhead {
    /// Up to `max` messages of `partition` from `from`, and the end of the
    /// range they cover, if the buffer holds that range.
    pub(super) fn take(
        &mut self,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Option<(Vec<StoredMessage>, u64)> {
        let b = self.parts.get_mut(&partition)?;
        if from < b.start || from >= b.covered_to {
            self.drop_partition(partition);
            return None;
        }
        let mut freed = 0;
        while b.messages.front().is_some_and(|m| m.offset < from) {
            if let Some(m) = b.messages.pop_front() {
                freed += m.stored_bytes;
            }
        }
        let n = max.min(b.messages.len());
        let taken: Vec<StoredMessage> = b.messages.drain(..n).collect();
        freed += taken.iter().map(|m| m.stored_bytes).sum::<u64>();
        b.bytes -= freed;
        let covered = match taken.last() {
            Some(last) if taken.len() == max => last.offset + 1,
            _ => b.covered_to,
        };
        b.start = covered;
        let used_up = b.start >= b.covered_to;
        self.bytes -= freed;
        if used_up {
            self.drop_partition(partition);
        }
        Some((taken, covered))
    }

    /// Buffers what one read of `partition` from `start` returned: every
    /// message of `start..covered_to`.
    pub(super) fn fill(
        &mut self,
        partition: u32,
        start: u64,
        messages: Vec<StoredMessage>,
        covered_to: u64,
    ) {
        self.drop_partition(partition);
        let bytes: u64 = messages.iter().map(|m| m.stored_bytes).sum();
        // Room for it: other partitions' buffers go first.
        while self.bytes + bytes > MAX_BUFFERED_BYTES {
            let Some(&other) = self.parts.keys().next() else {
                break;
            };
            self.drop_partition(other);
        }
        self.bytes += bytes;
        self.parts.insert(
            partition,
            Buffered {
                messages: messages.into(),
                start,
                covered_to,
                bytes,
            },
        );
    }

    fn drop_partition(&mut self, partition: u32) {
        if let Some(b) = self.parts.remove(&partition) {
            self.bytes -= b.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn msg(offset: u64) -> StoredMessage {
        StoredMessage {
            offset,
            timestamp: 0,
            deliver_at: 0,
            key: None,
            headers: Vec::new(),
            json: false,
            payload: Vec::new(),
            stored_bytes: 10,
        }
    }

    fn offsets(v: &[StoredMessage]) -> Vec<u64> {
        v.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn hands_out_what_one_read_fetched_with_its_coverage() {
        let mut ra = ReadAhead::default();
        assert!(ra.take(0, 0, 3).is_none());
        // Offsets 0..10 with a hole at 5, read up to the end (covered 12).
        let read: Vec<_> = (0..10).filter(|o| *o != 5).map(msg).collect();
        ra.fill(0, 0, read, 12);
        let (a, c) = ra.take(0, 0, 3).unwrap();
        assert_eq!((offsets(&a), c), (vec![0, 1, 2], 3));
        let (b, c) = ra.take(0, 3, 3).unwrap();
        assert_eq!((offsets(&b), c), (vec![3, 4, 6], 7));
        // Fewer left than asked: the rest, covering to the read's end.
        let (d, c) = ra.take(0, 7, 10).unwrap();
        assert_eq!((offsets(&d), c), (vec![7, 8, 9], 12));
        assert!(ra.take(0, 12, 3).is_none());
        assert_eq!(ra.bytes, 0);
    }

    #[test]
    fn a_scan_elsewhere_drops_the_buffer() {
        let mut ra = ReadAhead::default();
        ra.fill(1, 10, (10..20).map(msg).collect(), 20);
        // Forward inside the range: skips what lies before.
        let (a, _) = ra.take(1, 15, 2).unwrap();
        assert_eq!(offsets(&a), vec![15, 16]);
        // Backwards (a seek): not answered, and forgotten.
        assert!(ra.take(1, 3, 2).is_none());
        assert!(ra.take(1, 17, 2).is_none());
        assert_eq!(ra.bytes, 0);
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let mut ra = ReadAhead::default();
        let per_partition = MAX_BUFFERED_BYTES / 10 / 2;
        for p in 0..10u32 {
            ra.fill(p, 0, (0..per_partition).map(msg).collect(), per_partition);
            assert!(ra.bytes <= MAX_BUFFERED_BYTES);
        }
    }
}
