//! Where a partition stands against the log: messages lost to retention
//! and seeks that move the cursor.

use super::{Change, State, Status};

impl State {
    /// A message met at delivery time no longer exists (retention): settle
    /// it and count it.
    pub fn settle_missing(&mut self, partition: u32, offset: u64, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.entry(partition, offset).is_some() {
            self.settle(partition, offset, now, &mut changes);
            self.expired_by_retention += 1;
        }
        changes
    }

    /// Retention removed offsets below `low`: unsettled ones are counted,
    /// the floor moves up to `low`.
    pub fn sync_low(&mut self, partition: u32, low: u64, now: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return changes;
        };
        if part.floor >= low {
            return changes;
        }
        let from = part.floor;
        let settled = part.settled.count_in(from, low);
        // Unsettled = offsets in [from, low) that were not settled; gaps in
        // the unscanned part cannot be told apart from messages and count.
        let lost = (low - from).saturating_sub(settled);
        let dropped: Vec<u64> = part.entries.range(from..low).map(|(&o, _)| o).collect();
        for o in dropped {
            if let Some(e) = self.parts[partition as usize].entries.remove(&o) {
                self.ready.remove(&(partition, o));
                self.untrack(e.status);
                if let Some(k) = e.key {
                    self.release_key(k, (partition, o), now);
                }
            }
        }
        let part = &mut self.parts[partition as usize];
        part.settled.drop_below(low);
        part.floor = low;
        part.next = part.next.max(low);
        part.stream.floor_moved(low);
        self.expired_by_retention += lost;
        self.cursor_change(partition, from, low, &mut changes);
        self.advance_floor(partition, &mut changes);
        self.scan_passed(partition, false);
        changes
    }

    /// Moves a partition to `cursor`: every lease, retry and settle above
    /// and below is forgotten (their ack ids become unknown).
    pub fn seek(&mut self, partition: u32, cursor: u64, now: u64) -> Vec<Change> {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return Vec::new();
        };
        let dropped: Vec<(u64, Option<u64>, Status)> = part
            .entries
            .iter()
            .map(|(&o, e)| (o, e.key, e.status))
            .collect();
        part.entries.clear();
        part.settled.clear();
        part.persisted.clear();
        part.runs.clear();
        part.floor = cursor;
        part.next = cursor;
        part.interrupted = 0;
        for (o, key, status) in dropped {
            self.ready.remove(&(partition, o));
            self.untrack(status);
            if let Some(k) = key {
                self.release_key(k, (partition, o), now);
            }
        }
        // Refills waiting for this partition's scan are asked for again
        // (the caller dropped its parked messages; others are looked at).
        self.scan_passed(partition, true);
        let token = self.next_token();
        let part = &mut self.parts[partition as usize];
        part.stream.reset(cursor, token);
        vec![Change::Reset { partition, cursor }]
    }
}
