//! The checker's verdict: counts of what was recorded and, per kind of
//! anomaly, how many were found with a few examples; its one-line summary
//! and the machine-readable `FAULT-SUMMARY` line `scripts/soak.sh` collects.

use std::fmt;

/// Examples kept per anomaly kind.
pub const EXAMPLES_KEPT: usize = 10;

/// One kind of anomaly: how many, and the first few, described.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Anomaly {
    pub count: usize,
    pub examples: Vec<String>,
}

impl Anomaly {
    pub(crate) fn push(&mut self, example: String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_KEPT {
            self.examples.push(example);
        }
    }
}

/// What the history holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub produced_ok: usize,
    pub produced_failed: usize,
    pub produced_unknown: usize,
    pub deliveries: usize,
    pub acked_ok: usize,
    pub acked_failed: usize,
    pub acked_unknown: usize,
    pub nacks: usize,
    pub dead_letters: usize,
    pub log_entries: usize,
}

/// The checker's result. Every anomaly must be zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub counts: Counts,
    /// An Ok produce never seen again: absent from the final read-back of
    /// its topic, or never delivered by a complete subscription.
    pub acked_lost: Anomaly,
    /// Delivered more than at-least-once allows: again after an Ok ack, or
    /// both Ok-acked and dead-lettered; or stored twice in the topic.
    pub duplicated: Anomaly,
    /// Out of order: a producer's in-order sends stored out of order, or a
    /// stream subscription delivering past an offset it never delivered.
    pub reordered: Anomaly,
    /// One original message copied more than once into the dead-letter
    /// topic by the same subscription.
    pub dead_lettered_twice: Anomaly,
    /// An Ok produce whose offset does not hold its value in the end.
    pub lost_from_log: Anomaly,
    /// Delivered by a complete subscription but never settled: no Ok or
    /// unknown ack covers it and it was not dead-lettered.
    pub skipped: Anomaly,
    /// A definitely failed (4xx) produce that is stored anyway.
    pub phantom: Anomaly,
}

impl Report {
    /// Every anomaly, with its name.
    pub fn anomalies(&self) -> [(&'static str, &Anomaly); 7] {
        [
            ("acked_lost", &self.acked_lost),
            ("duplicated", &self.duplicated),
            ("reordered", &self.reordered),
            ("dead_lettered_twice", &self.dead_lettered_twice),
            ("lost_from_log", &self.lost_from_log),
            ("skipped", &self.skipped),
            ("phantom", &self.phantom),
        ]
    }

    /// No anomaly at all.
    pub fn is_clean(&self) -> bool {
        self.anomalies().iter().all(|(_, a)| a.count == 0)
    }

    /// Panics with every anomaly's examples unless the report is clean.
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "history check failed:\n{}", self.details());
    }

    /// The summary line followed by the examples of each anomaly found.
    pub fn details(&self) -> String {
        let mut out = self.to_string();
        for (name, anomaly) in self.anomalies() {
            if anomaly.count == 0 {
                continue;
            }
            out.push_str(&format!("\n{name} ({}):", anomaly.count));
            for example in &anomaly.examples {
                out.push_str(&format!("\n  - {example}"));
            }
        }
        out
    }

    /// `FAULT-SUMMARY scenario=.. cycles=.. faults=.. acked_lost=.. ...`:
    /// one machine-readable line for `scripts/soak.sh`.
    pub fn fault_summary(&self, scenario: &str, cycles: u64, faults: u64) -> String {
        let mut line = format!("FAULT-SUMMARY scenario={scenario} cycles={cycles} faults={faults}");
        for (name, anomaly) in self.anomalies() {
            line.push_str(&format!(" {name}={}", anomaly.count));
        }
        line.push_str(&format!(
            " acked={} produced={} result={}",
            self.counts.acked_ok,
            self.counts.produced_ok,
            if self.is_clean() { "ok" } else { "FAIL" }
        ));
        line
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "history: produced ok={} failed={} unknown={}, deliveries={}, acks ok={} failed={} \
             unknown={}, nacks={}, dead letters={}, log={}; anomalies:",
            c.produced_ok,
            c.produced_failed,
            c.produced_unknown,
            c.deliveries,
            c.acked_ok,
            c.acked_failed,
            c.acked_unknown,
            c.nacks,
            c.dead_letters,
            c.log_entries
        )?;
        for (name, anomaly) in self.anomalies() {
            write!(f, " {name}={}", anomaly.count)?;
        }
        Ok(())
    }
}
