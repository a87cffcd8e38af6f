//! Unit tests of the checker: a clean history passes, and each kind of
//! anomaly is found when it is planted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const TOPIC: &str = "t";
const SUB: &str = "t/s";

fn history(mode: Mode) -> History {
    let history = History::new();
    history.register_subscription(
        SUB,
        SubscriptionSpec {
            topic: TOPIC.to_owned(),
            mode,
            complete: true,
        },
    );
    history
}

fn produce_ok(h: &History, value: &str, n: u64, at: Position) {
    let t = h.tick();
    let message = Produce::new(TOPIC, value).key("k").sequence("p", n);
    h.record_produce(message, t, Outcome::Ok, Some(at));
    h.record_log(TOPIC, at, Some(value.to_owned()));
}

fn deliver(h: &History, value: &str, at: Position) -> DeliveryId {
    let pulled = h.tick();
    h.record_delivery(
        Delivery {
            subscription: SUB.to_owned(),
            value: value.to_owned(),
            position: at,
            attempt: 1,
        },
        pulled,
    )
}

fn ack(h: &History, id: DeliveryId, outcome: Outcome) {
    let t = h.tick();
    h.record_ack(id, t, outcome);
}

/// Two messages produced, delivered and acked: nothing to report.
fn clean(mode: Mode) -> History {
    let h = history(mode);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    produce_ok(&h, "b", 1, Position::new(0, 1));
    let a = deliver(&h, "a", Position::new(0, 0));
    let b = deliver(&h, "b", Position::new(0, 1));
    ack(&h, a, Outcome::Ok);
    ack(&h, b, Outcome::Ok);
    h
}

#[test]
fn a_clean_history_is_clean() {
    for mode in [Mode::Queue, Mode::Stream] {
        let report = clean(mode).check();
        assert!(report.is_clean(), "{}", report.details());
        assert_eq!(report.counts.produced_ok, 2);
        assert_eq!(report.counts.acked_ok, 2);
        assert_eq!(report.counts.log_entries, 2);
    }
}

#[test]
fn redelivery_after_an_ok_ack_is_a_duplicate() {
    let h = clean(Mode::Queue);
    deliver(&h, "a", Position::new(0, 0));
    let report = h.check();
    assert_eq!(report.duplicated.count, 1, "{}", report.details());
}

#[test]
fn redelivery_after_an_unknown_or_failed_ack_is_allowed() {
    let h = history(Mode::Queue);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    let first = deliver(&h, "a", Position::new(0, 0));
    ack(&h, first, Outcome::Unknown);
    let second = deliver(&h, "a", Position::new(0, 0));
    ack(&h, second, Outcome::Failed);
    let third = deliver(&h, "a", Position::new(0, 0));
    ack(&h, third, Outcome::Ok);
    let report = h.check();
    assert!(report.is_clean(), "{}", report.details());
}

#[test]
fn a_pull_sent_before_the_ack_completed_is_not_a_duplicate() {
    let h = history(Mode::Queue);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    let first = deliver(&h, "a", Position::new(0, 0));
    let pulled = h.tick(); // a concurrent pull, sent before the ack ends
    ack(&h, first, Outcome::Ok);
    h.record_delivery(
        Delivery {
            subscription: SUB.to_owned(),
            value: "a".to_owned(),
            position: Position::new(0, 0),
            attempt: 2,
        },
        pulled,
    );
    assert_eq!(h.check().duplicated.count, 0);
}

#[test]
fn stream_acks_are_cumulative() {
    let h = history(Mode::Stream);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    produce_ok(&h, "b", 1, Position::new(0, 1));
    deliver(&h, "a", Position::new(0, 0));
    let b = deliver(&h, "b", Position::new(0, 1));
    ack(&h, b, Outcome::Ok);
    let report = h.check();
    assert!(report.is_clean(), "{}", report.details());
    deliver(&h, "a", Position::new(0, 0));
    assert_eq!(h.check().duplicated.count, 1);
}

#[test]
fn missing_from_the_read_back_is_acked_lost_and_lost_from_log() {
    let h = clean(Mode::Queue);
    let t = h.tick();
    h.record_produce(
        Produce::new(TOPIC, "c"),
        t,
        Outcome::Ok,
        Some(Position::new(0, 2)),
    );
    let report = h.check();
    // Not in the log, and never delivered by the complete subscription.
    assert_eq!(report.acked_lost.count, 2, "{}", report.details());
    assert_eq!(report.lost_from_log.count, 1, "{}", report.details());
}

#[test]
fn unknown_produces_may_be_missing() {
    let h = clean(Mode::Queue);
    let t = h.tick();
    h.record_produce(Produce::new(TOPIC, "c"), t, Outcome::Unknown, None);
    assert!(h.check().is_clean());
}

#[test]
fn a_value_stored_twice_is_duplicated() {
    let h = clean(Mode::Queue);
    h.record_log(TOPIC, Position::new(1, 0), Some("a".to_owned()));
    let report = h.check();
    assert_eq!(report.duplicated.count, 1, "{}", report.details());
}

#[test]
fn wrong_bytes_at_an_offset_are_lost_from_log() {
    let h = clean(Mode::Queue);
    h.record_log(TOPIC, Position::new(0, 1), Some("garbage".to_owned()));
    let report = h.check();
    assert_eq!(report.lost_from_log.count, 1, "{}", report.details());
    assert_eq!(report.acked_lost.count, 1, "{}", report.details());
}

#[test]
fn out_of_order_sends_are_reordered() {
    let h = history(Mode::Queue);
    produce_ok(&h, "a", 1, Position::new(0, 0));
    produce_ok(&h, "b", 0, Position::new(0, 1));
    let a = deliver(&h, "a", Position::new(0, 0));
    let b = deliver(&h, "b", Position::new(0, 1));
    ack(&h, a, Outcome::Ok);
    ack(&h, b, Outcome::Ok);
    assert_eq!(h.check().reordered.count, 1);
}

#[test]
fn a_stream_skipping_an_offset_is_reordered() {
    let h = history(Mode::Stream);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    produce_ok(&h, "b", 1, Position::new(0, 1));
    produce_ok(&h, "c", 2, Position::new(0, 2));
    deliver(&h, "a", Position::new(0, 0));
    let c = deliver(&h, "c", Position::new(0, 2));
    let b = deliver(&h, "b", Position::new(0, 1));
    ack(&h, b, Outcome::Ok);
    ack(&h, c, Outcome::Ok);
    let report = h.check();
    assert_eq!(report.reordered.count, 1, "{}", report.details());
}

#[test]
fn dead_letter_copies_are_checked() {
    let h = history(Mode::Queue);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    let a = deliver(&h, "a", Position::new(0, 0));
    let t = h.tick();
    h.record_nack(a, t, Outcome::Ok);
    let copy = DeadLetter {
        subscription: SUB.to_owned(),
        value: "a".to_owned(),
        original: Position::new(0, 0),
    };
    h.record_dead_letter(copy.clone());
    let report = h.check();
    assert!(report.is_clean(), "{}", report.details());
    h.record_dead_letter(copy);
    assert_eq!(h.check().dead_lettered_twice.count, 1);
}

#[test]
fn delivered_but_never_settled_is_skipped() {
    let h = history(Mode::Queue);
    produce_ok(&h, "a", 0, Position::new(0, 0));
    let a = deliver(&h, "a", Position::new(0, 0));
    ack(&h, a, Outcome::Failed);
    let report = h.check();
    assert_eq!(report.skipped.count, 1, "{}", report.details());
}

#[test]
fn a_refused_produce_that_is_stored_is_a_phantom() {
    let h = clean(Mode::Queue);
    let t = h.tick();
    h.record_produce(Produce::new(TOPIC, "z"), t, Outcome::Failed, None);
    h.record_log(TOPIC, Position::new(0, 2), Some("z".to_owned()));
    assert_eq!(h.check().phantom.count, 1);
}

#[test]
fn the_fault_summary_line_names_every_anomaly() {
    let line = clean(Mode::Queue).check().fault_summary("kill9", 3, 3);
    assert!(line.starts_with("FAULT-SUMMARY scenario=kill9 cycles=3 faults=3 acked_lost=0"));
    for name in [
        "duplicated=0",
        "reordered=0",
        "dead_lettered_twice=0",
        "result=ok",
    ] {
        assert!(line.contains(name), "{line}");
    }
}

#[test]
fn outcomes_follow_the_status() {
    assert_eq!(Outcome::from_status(200), Outcome::Ok);
    assert_eq!(Outcome::from_status(404), Outcome::Failed);
    assert_eq!(Outcome::from_status(408), Outcome::Unknown);
    assert_eq!(Outcome::from_status(503), Outcome::Unknown);
}
