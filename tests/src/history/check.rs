//! The checker: reads a recorded history and finds the anomalies a
//! [`Report`] counts. Pure functions over [`Events`]; see the fields of
//! [`Report`] for what each anomaly means.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::report::{Anomaly, Counts, Report};
use super::{
    DeliveryOp, Events, Mode, Outcome, Position, ProduceOp, SettleOp, SubscriptionSpec, Tick,
};

/// Counts of what `events` holds.
pub(crate) fn counts(events: &Events) -> Counts {
    let produced = |o: Outcome| events.produces.iter().filter(|p| p.outcome == o).count();
    let acked = |o: Outcome| events.acks.iter().filter(|a| a.outcome == o).count();
    Counts {
        produced_ok: produced(Outcome::Ok),
        produced_failed: produced(Outcome::Failed),
        produced_unknown: produced(Outcome::Unknown),
        deliveries: events.deliveries.len(),
        acked_ok: acked(Outcome::Ok),
        acked_failed: acked(Outcome::Failed),
        acked_unknown: acked(Outcome::Unknown),
        nacks: events.nacks.len(),
        dead_letters: events.dead_letters.len(),
        log_entries: events.log.values().map(HashMap::len).sum(),
    }
}

/// Runs every check.
pub(crate) fn check(events: &Events) -> Report {
    let mut report = Report {
        counts: counts(events),
        ..Report::default()
    };
    check_log(events, &mut report);
    check_sequences(events, &mut report.reordered);
    let mut names: Vec<&String> = events.subscriptions.keys().collect();
    names.sort();
    for name in names {
        if let Some(spec) = events.subscriptions.get(name) {
            check_subscription(events, name, spec, &mut report);
        }
    }
    report
}

/// Values stored per topic: value → positions, from the final read-back.
fn stored_values(events: &Events) -> HashMap<&str, BTreeMap<&str, Vec<Position>>> {
    let mut stored: HashMap<&str, BTreeMap<&str, Vec<Position>>> = HashMap::new();
    for (topic, entries) in &events.log {
        let values = stored.entry(topic.as_str()).or_default();
        for (position, value) in entries {
            if let Some(value) = value {
                values.entry(value.as_str()).or_default().push(*position);
            }
        }
    }
    for values in stored.values_mut() {
        for positions in values.values_mut() {
            positions.sort();
        }
    }
    stored
}

/// `acked_lost` (read-back), `lost_from_log`, stored twice (`duplicated`)
/// and `phantom`.
fn check_log(events: &Events, report: &mut Report) {
    let stored = stored_values(events);
    let produced_topics: BTreeSet<&str> = events
        .produces
        .iter()
        .map(|p| p.message.topic.as_str())
        .collect();
    for topic in &produced_topics {
        for (value, positions) in stored.get(topic).into_iter().flatten() {
            if positions.len() > 1 {
                report.duplicated.push(format!(
                    "`{value}` is stored {} times in `{topic}`: {}",
                    positions.len(),
                    join(positions)
                ));
            }
        }
    }
    let mut seen_lost = HashSet::new();
    let mut seen_moved = HashSet::new();
    for op in events.produces.iter().filter(|p| p.outcome == Outcome::Ok) {
        let topic = op.message.topic.as_str();
        let value = op.message.value.as_str();
        let found = stored.get(topic).and_then(|values| values.get(value));
        if found.is_none() && seen_lost.insert((topic, value)) {
            report.acked_lost.push(format!(
                "`{value}` produced Ok to `{topic}`{} (sent at t{}) is not in the final read-back",
                at(op.position),
                op.invoked
            ));
        }
        let Some(position) = op.position else {
            continue;
        };
        let holds = events
            .log
            .get(topic)
            .and_then(|entries| entries.get(&position));
        if holds.and_then(Option::as_deref) != Some(value)
            && seen_moved.insert((topic, value, position))
        {
            let holds = match holds {
                None => "nothing".to_owned(),
                Some(None) => "an unreadable or non-string value".to_owned(),
                Some(Some(other)) => format!("`{other}`"),
            };
            report.lost_from_log.push(format!(
                "`{value}` produced Ok to `{topic}` at {position}, which holds {holds}"
            ));
        }
    }
    let maybe_sent: HashSet<(&str, &str)> = events
        .produces
        .iter()
        .filter(|p| p.outcome != Outcome::Failed)
        .map(|p| (p.message.topic.as_str(), p.message.value.as_str()))
        .collect();
    let mut seen_phantom = HashSet::new();
    for op in events
        .produces
        .iter()
        .filter(|p| p.outcome == Outcome::Failed)
    {
        let key = (op.message.topic.as_str(), op.message.value.as_str());
        if maybe_sent.contains(&key) || !seen_phantom.insert(key) {
            continue;
        }
        if let Some(positions) = stored.get(key.0).and_then(|values| values.get(key.1)) {
            report.phantom.push(format!(
                "`{}` was refused (4xx) by `{}` but is stored at {}",
                key.1,
                key.0,
                join(positions)
            ));
        }
    }
}

/// One in-order producer's sends to one partition: (topic, producer,
/// partition), mapped to sequence number → (offset, value).
type SendStream<'a> = (&'a str, &'a str, u64);

/// `reordered`: Ok answers of one in-order producer to one partition must
/// have offsets increasing with the producer's sequence numbers.
fn check_sequences(events: &Events, reordered: &mut Anomaly) {
    let mut streams: BTreeMap<SendStream<'_>, BTreeMap<u64, (u64, &str)>> = BTreeMap::new();
    for op in events.produces.iter().filter(|p| p.outcome == Outcome::Ok) {
        let (Some((producer, n)), Some(position)) = (&op.message.sequence, op.position) else {
            continue;
        };
        streams
            .entry((
                op.message.topic.as_str(),
                producer.as_str(),
                position.partition,
            ))
            .or_default()
            .entry(*n)
            .or_insert((position.offset, op.message.value.as_str()));
    }
    for ((topic, producer, partition), sends) in &streams {
        let mut previous: Option<(u64, u64, &str)> = None;
        for (n, (offset, value)) in sends {
            if let Some((pn, poffset, pvalue)) = previous {
                if *offset <= poffset {
                    reordered.push(format!(
                        "producer `{producer}` to `{topic}` partition {partition}: send #{n} \
                         `{value}` got offset {offset}, not after send #{pn} `{pvalue}` at {poffset}"
                    ));
                }
            }
            previous = Some((*n, *offset, value));
        }
    }
}

/// The deliveries, acks and dead letters of one subscription, indexed so
/// every question is a lookup (histories of millions of operations).
struct SubscriptionView<'a> {
    name: &'a str,
    deliveries: Vec<&'a DeliveryOp>,
    /// Queue mode: per value, its earliest completed Ok ack.
    first_ok_by_value: HashMap<&'a str, &'a SettleOp>,
    /// Stream mode: per partition, Ok acks by completion time, with the
    /// running maximum of the offsets they cover.
    ok_by_partition: HashMap<u64, Vec<(&'a SettleOp, u64, u64)>>,
    /// Acks that may have settled (Ok or unknown): values, and per
    /// partition the highest offset covered.
    maybe_values: HashSet<&'a str>,
    maybe_max_offset: HashMap<u64, u64>,
    /// Dead-letter copies: original position → values.
    dead_letters: BTreeMap<Position, Vec<&'a str>>,
    /// Every dead-lettered value.
    dead_values: HashSet<&'a str>,
}

impl<'a> SubscriptionView<'a> {
    fn new(events: &'a Events, name: &'a str) -> SubscriptionView<'a> {
        let of_sub = |op: &&DeliveryOp| op.delivery.subscription == name;
        let mut view = SubscriptionView {
            name,
            deliveries: events.deliveries.iter().filter(of_sub).collect(),
            first_ok_by_value: HashMap::new(),
            ok_by_partition: HashMap::new(),
            maybe_values: HashSet::new(),
            maybe_max_offset: HashMap::new(),
            dead_letters: BTreeMap::new(),
            dead_values: HashSet::new(),
        };
        for ack in &events.acks {
            let Some(op) = events.deliveries.get(ack.delivery.index()) else {
                continue;
            };
            if op.delivery.subscription != name {
                continue;
            }
            if ack.outcome == Outcome::Ok {
                let first = view
                    .first_ok_by_value
                    .entry(op.delivery.value.as_str())
                    .or_insert(ack);
                if ack.completed < first.completed {
                    *first = ack;
                }
                view.ok_by_partition
                    .entry(op.delivery.position.partition)
                    .or_default()
                    .push((ack, op.delivery.position.offset, 0));
            }
            if ack.outcome != Outcome::Failed {
                view.maybe_values.insert(op.delivery.value.as_str());
                let max = view
                    .maybe_max_offset
                    .entry(op.delivery.position.partition)
                    .or_insert(0);
                *max = (*max).max(op.delivery.position.offset);
            }
        }
        for acks in view.ok_by_partition.values_mut() {
            acks.sort_by_key(|(ack, _, _)| ack.completed);
            let mut running = 0;
            for entry in acks.iter_mut() {
                running = running.max(entry.1);
                entry.2 = running;
            }
        }
        for copy in events
            .dead_letters
            .iter()
            .filter(|d| d.subscription == name)
        {
            view.dead_letters
                .entry(copy.original)
                .or_default()
                .push(copy.value.as_str());
            view.dead_values.insert(copy.value.as_str());
        }
        view
    }

    fn dead_lettered(&self, value: &str) -> bool {
        self.dead_values.contains(value)
    }

    /// The first Ok ack completed before `tick` that settles `op`.
    fn acked_before(&self, mode: Mode, op: &DeliveryOp, tick: Tick) -> Option<&'a SettleOp> {
        match mode {
            Mode::Queue => self
                .first_ok_by_value
                .get(op.delivery.value.as_str())
                .copied()
                .filter(|ack| ack.completed < tick),
            Mode::Stream => {
                // The earliest ack (by completion) covering the offset is
                // the first whose running maximum reaches it.
                let acks = self.ok_by_partition.get(&op.delivery.position.partition)?;
                let offset = op.delivery.position.offset;
                let i = acks.partition_point(|(_, _, max)| *max < offset);
                acks.get(i)
                    .map(|(ack, _, _)| *ack)
                    .filter(|ack| ack.completed < tick)
            }
        }
    }

    /// Whether an Ok or unknown ack may have settled `op`.
    fn maybe_settled(&self, mode: Mode, op: &DeliveryOp) -> bool {
        match mode {
            Mode::Queue => self.maybe_values.contains(op.delivery.value.as_str()),
            Mode::Stream => self
                .maybe_max_offset
                .get(&op.delivery.position.partition)
                .is_some_and(|max| *max >= op.delivery.position.offset),
        }
    }
}

fn check_subscription(events: &Events, name: &str, spec: &SubscriptionSpec, report: &mut Report) {
    let view = SubscriptionView::new(events, name);
    // Delivered again after an Ok ack.
    for op in &view.deliveries {
        if let Some(ack) = view.acked_before(spec.mode, op, op.pulled) {
            report.duplicated.push(format!(
                "`{name}` delivered `{}` ({}, attempt {}) by a pull sent at t{} after an ack \
                 covering it (sent at t{}) was Ok at t{}",
                op.delivery.value,
                op.delivery.position,
                op.delivery.attempt,
                op.pulled,
                ack.invoked,
                ack.completed
            ));
        }
    }
    // Dead-lettered twice, or both dead-lettered and acked.
    for (original, values) in &view.dead_letters {
        if values.len() > 1 {
            report.dead_lettered_twice.push(format!(
                "`{name}` dead-lettered {original} {} times: {values:?}",
                values.len()
            ));
        }
        for value in values {
            if view.first_ok_by_value.contains_key(value) {
                report.duplicated.push(format!(
                    "`{name}` dead-lettered `{value}` ({original}) after an ack of it was Ok"
                ));
            }
        }
    }
    if spec.mode == Mode::Stream {
        check_stream_order(events, &view, spec, &mut report.reordered);
    }
    if spec.complete {
        check_complete(events, &view, spec, report);
    }
}

/// Every Ok produce to the topic was delivered (or dead-lettered), and every
/// delivered one was settled.
fn check_complete(
    events: &Events,
    view: &SubscriptionView<'_>,
    spec: &SubscriptionSpec,
    report: &mut Report,
) {
    let mut delivered: HashMap<&str, Vec<&DeliveryOp>> = HashMap::new();
    for op in &view.deliveries {
        delivered
            .entry(op.delivery.value.as_str())
            .or_default()
            .push(op);
    }
    let produced: BTreeMap<&str, &ProduceOp> = events
        .produces
        .iter()
        .filter(|p| p.outcome == Outcome::Ok && p.message.topic == spec.topic)
        .map(|p| (p.message.value.as_str(), p))
        .collect();
    for (value, op) in produced {
        if view.dead_lettered(value) {
            continue;
        }
        let Some(ops) = delivered.get(value) else {
            report.acked_lost.push(format!(
                "`{}` never delivered `{value}` (produced Ok{})",
                view.name,
                at(op.position)
            ));
            continue;
        };
        if !ops.iter().any(|d| view.maybe_settled(spec.mode, d)) {
            report.skipped.push(format!(
                "`{}` delivered `{value}` {} times but no ack settled it and it was not \
                 dead-lettered",
                view.name,
                ops.len()
            ));
        }
    }
}

/// A stream subscription never delivers an offset before it delivered every
/// stored offset below it (from the first offset it delivered).
fn check_stream_order(
    events: &Events,
    view: &SubscriptionView<'_>,
    spec: &SubscriptionSpec,
    reordered: &mut Anomaly,
) {
    let Some(log) = events.log.get(&spec.topic) else {
        return;
    };
    let mut by_partition: BTreeMap<u64, Vec<&DeliveryOp>> = BTreeMap::new();
    // Deliveries are recorded in pull order within one pull; a stable sort
    // by pull tick keeps that order.
    let mut deliveries = view.deliveries.clone();
    deliveries.sort_by_key(|op| op.pulled);
    for op in deliveries {
        by_partition
            .entry(op.delivery.position.partition)
            .or_default()
            .push(op);
    }
    for (partition, ops) in by_partition {
        let Some(first) = ops.iter().map(|op| op.delivery.position.offset).min() else {
            continue;
        };
        let stored: Vec<u64> = log
            .keys()
            .filter(|p| p.partition == partition && p.offset >= first)
            .map(|p| p.offset)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        let mut delivered = HashSet::new();
        let mut next = 0; // index into `stored` of the lowest undelivered
        for op in ops {
            let offset = op.delivery.position.offset;
            if let Some(expected) = stored.get(next) {
                if offset > *expected {
                    reordered.push(format!(
                        "`{}` partition {partition}: delivered offset {offset} (`{}`) before \
                         ever delivering stored offset {expected}",
                        view.name, op.delivery.value
                    ));
                }
            }
            delivered.insert(offset);
            while stored.get(next).is_some_and(|o| delivered.contains(o)) {
                next += 1;
            }
        }
    }
}

fn at(position: Option<Position>) -> String {
    position.map(|p| format!(" at {p}")).unwrap_or_default()
}

fn join(positions: &[Position]) -> String {
    positions
        .iter()
        .map(Position::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
