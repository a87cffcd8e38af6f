//! A set of disjoint offset ranges: the settled offsets above a
//! subscription's floor (acked out of order, dead-lettered, or holes in the
//! log). Contiguous settles merge, so a long run of out-of-order acks costs
//! one range, not one entry per message.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct RangeSet {
    /// start → end (exclusive), disjoint and non-adjacent.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn contains(&self, offset: u64) -> bool {
        self.ranges
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &end)| offset < end)
    }

    /// Adds `[start, end)`, merging with neighbours.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
            }
        }
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            end = end.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(start, end);
    }

    /// Removes one offset (splitting its range).
    pub fn remove(&mut self, offset: u64) {
        let Some((&s, &e)) = self.ranges.range(..=offset).next_back() else {
            return;
        };
        if offset >= e {
            return;
        }
        self.ranges.remove(&s);
        if s < offset {
            self.ranges.insert(s, offset);
        }
        if offset + 1 < e {
            self.ranges.insert(offset + 1, e);
        }
    }

    /// If a range starts at `offset`, removes it and returns its end.
    pub fn take_starting_at(&mut self, offset: u64) -> Option<u64> {
        self.ranges.remove(&offset)
    }

    /// Drops everything below `offset`.
    pub fn drop_below(&mut self, offset: u64) {
        let keep = self.ranges.split_off(&offset);
        let below = std::mem::replace(&mut self.ranges, keep);
        if let Some((&s, &e)) = below.iter().next_back() {
            if e > offset {
                self.ranges.insert(offset, e);
            }
            let _ = s;
        }
    }

    /// Number of offsets in `[from, to)` covered by the set.
    pub fn count_in(&self, from: u64, to: u64) -> u64 {
        let mut n = 0;
        if let Some((_, &e)) = self.ranges.range(..from).next_back() {
            n += e.min(to).saturating_sub(from);
        }
        for (&s, &e) in self.ranges.range(from..to) {
            n += e.min(to) - s;
        }
        n
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    pub fn len_ranges(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((0u8..4, 0u64..60, 0u64..8), 0..80)) {
            let mut set = RangeSet::default();
            let mut model = BTreeSet::new();
            for (op, a, len) in ops {
                match op {
                    0 | 1 => { set.insert(a, a + len); model.extend(a..a + len); }
                    2 => { set.remove(a); model.remove(&a); }
                    _ => { set.drop_below(a); model.retain(|&x| x >= a); }
                }
                for x in 0..80 {
                    prop_assert_eq!(set.contains(x), model.contains(&x), "offset {}", x);
                }
                prop_assert_eq!(set.count_in(5, 50), model.range(5..50).count() as u64);
            }
        }
    }

    #[test]
    fn merges_adjacent() {
        let mut s = RangeSet::default();
        s.insert(1, 2);
        s.insert(3, 4);
        s.insert(2, 3);
        assert_eq!(s.len_ranges(), 1);
        assert_eq!(s.take_starting_at(1), Some(4));
    }
}
