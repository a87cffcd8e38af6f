//! A Jepsen-style history of client operations against a broker under
//! faults, and the checker that turns it into a [`Report`] of anomalies.
//!
//! Owns the record of what clients did and saw; it knows nothing about HTTP
//! or processes. Fault scenarios (kill -9, dropped responses, power loss,
//! full disks, ...) share it:
//!
//! 1. create one [`History`] (cheap to clone, thread-safe) and
//!    [`History::register_subscription`] each subscription that is consumed;
//! 2. take a [`History::tick`] just before sending a request, and record
//!    its result when the answer (or the error) comes back:
//!    [`History::record_produce`], [`History::record_delivery`] for each
//!    message a pull returned, [`History::record_ack`] /
//!    [`History::record_nack`] for each ack id settled;
//! 3. at the end, read every topic back through the read API and
//!    [`History::record_log`] each stored message, drain every subscription
//!    (recording the deliveries and acks as above) and record each copy found
//!    on the dead-letter topics with [`History::record_dead_letter`];
//! 4. [`History::check`] returns the [`Report`]; scenarios assert
//!    [`Report::assert_clean`] and print [`Report::fault_summary`].
//!
//! Conventions the checker relies on: a message's identity is its value (a
//! unique string the scenario generates); a value is sent more than once
//! only as a retry of the same message with the same idempotency `id`.
//! Outcomes follow Jepsen: [`Outcome::Ok`] (the server said it happened),
//! [`Outcome::Failed`] (it said it did not: a 4xx) and [`Outcome::Unknown`]
//! (timeout, connection error, 5xx: it may or may not have happened).

mod check;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use report::{Anomaly, Counts, Report};

/// A logical time: every recorded event and every [`History::tick`] gets
/// the next one, so ticks order what the clients observed.
pub type Tick = u64;

/// How an operation ended, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The server confirmed it (a 2xx; for acks: the id not in `unknown`).
    Ok,
    /// The server definitely did not do it (a 4xx; for acks: the id came
    /// back in `unknown`).
    Failed,
    /// It may or may not have happened: timeout, connection error, 5xx.
    Unknown,
}

impl Outcome {
    /// The outcome an HTTP status means: 2xx ok, 4xx failed (except 408,
    /// whose request may still have been processed), anything else unknown.
    pub fn from_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            408 => Outcome::Unknown,
            400..=499 => Outcome::Failed,
            _ => Outcome::Unknown,
        }
    }
}

/// Where a message is stored: partition and offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u64,
    pub offset: u64,
}

impl Position {
    pub fn new(partition: u64, offset: u64) -> Position {
        Position { partition, offset }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.partition, self.offset)
    }
}

/// One message a client tried to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Produce {
    pub topic: String,
    /// The message's identity: unique per message (retries reuse it).
    pub value: String,
    pub key: Option<String>,
    /// The idempotency id, when the message was sent with one.
    pub id: Option<String>,
    /// `(producer, n)`: the n-th message of a producer that sends in
    /// order (one request after the other, or in one batch) to one
    /// partition; Ok answers of one producer and partition must then have
    /// increasing offsets in `n` order.
    pub sequence: Option<(String, u64)>,
}

impl Produce {
    pub fn new(topic: impl Into<String>, value: impl Into<String>) -> Produce {
        Produce {
            topic: topic.into(),
            value: value.into(),
            key: None,
            id: None,
            sequence: None,
        }
    }

    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Produce {
        self.key = Some(key.into());
        self
    }

    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Produce {
        self.id = Some(id.into());
        self
    }

    #[must_use]
    pub fn sequence(mut self, producer: impl Into<String>, n: u64) -> Produce {
        self.sequence = Some((producer.into(), n));
        self
    }
}

/// Delivery semantics of a subscription, which decide what an ack settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Acks settle one message each.
    Queue,
    /// Acks are cumulative per partition; deliveries come in offset order.
    Stream,
}

/// A consumed subscription, as the checker needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The topic it consumes.
    pub topic: String,
    pub mode: Mode,
    /// True when the subscription started at the earliest offset and the
    /// scenario drained it to the end: then every Ok produce to `topic`
    /// must have been delivered by it (or dead-lettered) and settled.
    pub complete: bool,
}

/// One message returned by a pull (or pushed over a socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The name the subscription was registered under.
    pub subscription: String,
    pub value: String,
    pub position: Position,
    pub attempt: u32,
}

/// One copy found on a dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The subscription that gave up (registered name).
    pub subscription: String,
    pub value: String,
    /// `weir-original-partition` / `weir-original-offset`.
    pub original: Position,
}

/// Names a recorded delivery, for its ack or nack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryId(usize);

/// A recorded produce attempt.
#[derive(Clone, Debug)]
pub(crate) struct ProduceOp {
    pub message: Produce,
    pub invoked: Tick,
    pub outcome: Outcome,
    pub position: Option<Position>,
}

/// A recorded delivery, with the tick its pull was sent at.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryOp {
    pub delivery: Delivery,
    pub pulled: Tick,
}

/// A recorded ack or nack of one delivery.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SettleOp {
    pub delivery: DeliveryId,
    pub invoked: Tick,
    pub completed: Tick,
    pub outcome: Outcome,
}

/// Everything recorded so far.
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub clock: Tick,
    pub subscriptions: HashMap<String, SubscriptionSpec>,
    pub produces: Vec<ProduceOp>,
    pub deliveries: Vec<DeliveryOp>,
    pub acks: Vec<SettleOp>,
    pub nacks: Vec<SettleOp>,
    pub dead_letters: Vec<DeadLetter>,
    /// The final read-back: topic → position → value (`None`: the stored
    /// message had no string value, or could not be read).
    pub log: HashMap<String, HashMap<Position, Option<String>>>,
}

impl Events {
    fn next_tick(&mut self) -> Tick {
        self.clock += 1;
        self.clock
    }
}

/// The shared, thread-safe recorder. Clones record into the same history.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: Arc<Mutex<Events>>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// The current logical time; take it just before sending a request.
    pub fn tick(&self) -> Tick {
        self.lock().next_tick()
    }

    /// Declares a subscription (by any unique name, e.g. `"orders/billing"`).
    pub fn register_subscription(&self, name: impl Into<String>, spec: SubscriptionSpec) {
        self.lock().subscriptions.insert(name.into(), spec);
    }

    /// Records one produced message: sent at `invoked`, answered with
    /// `outcome`, stored at `position` (known for Ok answers only). For a
    /// batch, record each message with the batch's outcome.
    pub fn record_produce(
        &self,
        message: Produce,
        invoked: Tick,
        outcome: Outcome,
        position: Option<Position>,
    ) {
        let mut events = self.lock();
        events.next_tick();
        events.produces.push(ProduceOp {
            message,
            invoked,
            outcome,
            position,
        });
    }

    /// Records one message a pull sent at `pulled` returned.
    pub fn record_delivery(&self, delivery: Delivery, pulled: Tick) -> DeliveryId {
        let mut events = self.lock();
        events.next_tick();
        events.deliveries.push(DeliveryOp { delivery, pulled });
        DeliveryId(events.deliveries.len() - 1)
    }

    /// Records the ack of one delivery, sent at `invoked`, completed now.
    pub fn record_ack(&self, delivery: DeliveryId, invoked: Tick, outcome: Outcome) {
        let mut events = self.lock();
        let completed = events.next_tick();
        events.acks.push(SettleOp {
            delivery,
            invoked,
            completed,
            outcome,
        });
    }

    /// Records the nack of one delivery, sent at `invoked`, completed now.
    pub fn record_nack(&self, delivery: DeliveryId, invoked: Tick, outcome: Outcome) {
        let mut events = self.lock();
        let completed = events.next_tick();
        events.nacks.push(SettleOp {
            delivery,
            invoked,
            completed,
            outcome,
        });
    }

    /// Records one copy read from a dead-letter topic.
    pub fn record_dead_letter(&self, dead_letter: DeadLetter) {
        let mut events = self.lock();
        events.next_tick();
        events.dead_letters.push(dead_letter);
    }

    /// Records one message of the final read-back of `topic` (`value`:
    /// `None` when the stored message has no string value).
    pub fn record_log(&self, topic: &str, position: Position, value: Option<String>) {
        let mut events = self.lock();
        events.next_tick();
        events
            .log
            .entry(topic.to_owned())
            .or_default()
            .insert(position, value);
    }

    /// The delivery a [`DeliveryId`] names.
    pub fn delivery(&self, id: DeliveryId) -> Option<Delivery> {
        self.lock()
            .deliveries
            .get(id.0)
            .map(|op| op.delivery.clone())
    }

    /// Counts of what was recorded so far (cheap; for progress lines).
    pub fn counts(&self) -> Counts {
        check::counts(&self.lock())
    }

    /// Runs the checker over everything recorded.
    pub fn check(&self) -> Report {
        check::check(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Events> {
        match self.events.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl DeliveryId {
    pub(crate) fn index(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests;
