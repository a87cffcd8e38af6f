//! Statistics of the subscription (backlog, in flight, delayed, lag).

use weir_protocol::Mode;

use super::{State, Status};

impl State {
    /// Statistics; `highs` are the partitions' durable high watermarks.
    pub fn stats(&self, highs: &[u64], now: u64) -> StatsView {
        let mut view = StatsView::default();
        for (p, part) in self.parts.iter().enumerate() {
            let high = highs.get(p).copied().unwrap_or(part.floor);
            let above = high.saturating_sub(part.floor);
            let settled = part.settled.count_in(part.floor, high);
            let below = part.entries.range(..part.floor).count() as u64;
            view.backlog += above.saturating_sub(settled) + below + part.parked_due;
            view.delayed += part.parked_due;
            let mut first_unsettled = if part.floor < high {
                Some(part.floor)
            } else {
                None
            };
            if let Some((&o, _)) = part.entries.range(..part.floor).next() {
                first_unsettled = Some(first_unsettled.map_or(o, |f| f.min(o)));
            }
            view.first_unsettled.push(first_unsettled);
            for e in part.entries.values() {
                match e.status {
                    Status::Leased { .. } => view.in_flight += 1,
                    Status::Waiting if e.due_at > now => view.delayed += 1,
                    _ => {}
                }
            }
            if self.config.mode == Mode::Stream {
                view.in_flight += part.next.saturating_sub(part.floor);
                if part.stream.head_due > now {
                    view.delayed += 1;
                }
            }
            // Not yet delivered: above the scan/delivery position, plus
            // messages ready for redelivery.
            let ready_here = self.ready.range((p as u32, 0)..=(p as u32, u64::MAX));
            let first_ready = ready_here.clone().next().map(|&(_, o)| o);
            view.undelivered += high.saturating_sub(part.next) + ready_here.count() as u64;
            if part.next < high {
                view.unscanned.push((p as u32, part.next));
            }
            let pending_new = if part.next < high {
                Some(part.next)
            } else {
                None
            };
            view.first_undelivered
                .push(match (first_ready, pending_new) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                });
            view.owners.push(part.stream.owner.clone());
            view.cursors.push(part.floor);
        }
        let behind_keys: u64 = self.keys.values().map(|k| k.parked).sum();
        view.backlog += behind_keys;
        view.dead_lettered = self.dead_letters;
        view.expired_by_retention = self.expired_by_retention;
        view
    }
}

/// Stats computed from the state; timestamps are looked up by the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsView {
    pub backlog: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_lettered: u64,
    pub expired_by_retention: u64,
    /// Per partition: the oldest unsettled offset, if any.
    pub first_unsettled: Vec<Option<u64>>,
    /// Messages not delivered yet (consumer lag in messages).
    pub undelivered: u64,
    /// Per partition: the oldest offset not delivered yet, if any.
    pub first_undelivered: Vec<Option<u64>>,
    pub cursors: Vec<u64>,
    pub owners: Vec<Option<String>>,
    /// Queue mode: per partition, where the scan of new messages stands
    /// (`(partition, next)`, only where messages wait beyond it): delayed
    /// messages there are not known to the state yet.
    pub unscanned: Vec<(u32, u64)>,
}
