//! Who pulled which queue-mode leases (for the leases view): runs of
//! consecutive offsets of one partition, each with the consumer named by
//! the pull that leased them. A pull of 100 messages is a handful of runs,
//! not 100 entries; where runs overlap (a redelivery) the newest wins.
//! Best effort and bounded: past [`MAX_RUNS`] runs in a partition the
//! lowest half (the oldest, mostly settled) are forgotten.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Most runs remembered per partition.
const MAX_RUNS: usize = 2048;

/// One run: `start → (end, consumer)`, offsets `[start, end)`.
type Runs = BTreeMap<u64, (u64, Arc<str>)>;

#[derive(Debug, Default)]
pub struct Pullers {
    partitions: HashMap<u32, Runs>,
}

impl Pullers {
    /// Records that `consumer` leased `deliveries` (in any order).
    pub fn note(&mut self, consumer: &str, deliveries: impl Iterator<Item = (u32, u64)>) {
        let name: Arc<str> = Arc::from(consumer);
        let mut run: Option<(u32, u64, u64)> = None;
        for (p, o) in deliveries {
            match &mut run {
                Some((rp, _, end)) if *rp == p && *end == o => *end = o + 1,
                _ => {
                    if let Some((rp, start, end)) = run.take() {
                        self.insert(rp, start, end, &name);
                    }
                    run = Some((p, o, o + 1));
                }
            }
        }
        if let Some((p, start, end)) = run {
            self.insert(p, start, end, &name);
        }
    }

    /// Who leased `offset` of `partition` last, if known.
    pub fn get(&self, partition: u32, offset: u64) -> Option<&Arc<str>> {
        let (_, (end, name)) = self
            .partitions
            .get(&partition)?
            .range(..=offset)
            .next_back()?;
        (offset < *end).then_some(name)
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    fn insert(&mut self, partition: u32, start: u64, end: u64, name: &Arc<str>) {
        let runs = self.partitions.entry(partition).or_default();
        // A run starting before `start` and reaching into it keeps its head
        // (and its tail beyond `end`).
        if let Some((&s, (e, n))) = runs.range(..start).next_back() {
            if *e > start {
                let (e, n) = (*e, n.clone());
                runs.insert(s, (start, n.clone()));
                if e > end {
                    runs.insert(end, (e, n));
                }
            }
        }
        // Runs starting inside `[start, end)` keep only their tail.
        let inside: Vec<u64> = runs.range(start..end).map(|(&s, _)| s).collect();
        for s in inside {
            if let Some((e, n)) = runs.remove(&s) {
                if e > end {
                    runs.insert(end, (e, n));
                }
            }
        }
        runs.insert(start, (end, name.clone()));
        if runs.len() > MAX_RUNS {
            let from = nth_key(runs, runs.len() - MAX_RUNS / 2);
            *runs = runs.split_off(&from);
        }
    }
}

/// The `n`th smallest key of `runs` (`n < runs.len()`).
fn nth_key(runs: &Runs, n: usize) -> u64 {
    runs.keys().nth(n).copied().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(p: &Pullers, partition: u32, offset: u64) -> Option<String> {
        p.get(partition, offset).map(|n| n.to_string())
    }

    #[test]
    fn runs_of_a_pull_name_each_offset() {
        let mut p = Pullers::default();
        p.note("a", [(0, 5), (0, 6), (0, 7), (1, 3), (0, 9)].into_iter());
        assert_eq!(who(&p, 0, 5).as_deref(), Some("a"));
        assert_eq!(who(&p, 0, 7).as_deref(), Some("a"));
        assert_eq!(who(&p, 0, 8), None);
        assert_eq!(who(&p, 0, 9).as_deref(), Some("a"));
        assert_eq!(who(&p, 1, 3).as_deref(), Some("a"));
        assert_eq!(who(&p, 1, 4), None);
        assert_eq!(who(&p, 2, 5), None);
    }

    #[test]
    fn the_newest_pull_wins_where_runs_overlap() {
        let mut p = Pullers::default();
        p.note("a", (0..10).map(|o| (0, o)));
        p.note("b", [(0, 4), (0, 5)].into_iter());
        p.note("c", (8..12).map(|o| (0, o)));
        let names: Vec<Option<String>> = (0..13).map(|o| who(&p, 0, o)).collect();
        let expected: Vec<Option<String>> =
            ["a", "a", "a", "a", "b", "b", "a", "a", "c", "c", "c", "c"]
                .iter()
                .map(|s| Some((*s).to_owned()))
                .chain([None])
                .collect();
        assert_eq!(names, expected);
        // A run covering several older ones replaces them.
        p.note("d", (2..9).map(|o| (0, o)));
        assert_eq!(who(&p, 1, 0), None);
        assert_eq!(who(&p, 0, 1).as_deref(), Some("a"));
        for o in 2..9 {
            assert_eq!(who(&p, 0, o).as_deref(), Some("d"), "offset {o}");
        }
        assert_eq!(who(&p, 0, 9).as_deref(), Some("c"));
    }

    #[test]
    fn bounded_by_forgetting_the_oldest_runs() {
        let mut p = Pullers::default();
        for o in 0..(MAX_RUNS as u64 + 10) {
            p.note("a", [(0, o * 2)].into_iter());
        }
        let runs = &p.partitions[&0];
        assert!(runs.len() <= MAX_RUNS, "{}", runs.len());
        assert_eq!(who(&p, 0, 0), None, "the oldest run is forgotten");
        let last = (MAX_RUNS as u64 + 9) * 2;
        assert_eq!(who(&p, 0, last).as_deref(), Some("a"));
    }
}
