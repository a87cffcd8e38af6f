//! Retry policies, dead letters, delayed delivery and redrive through HTTP
//! against a real server, including SIGKILL between a failure and its
//! retry and between the last failure and the dead-letter move.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::subs_helpers::*;

#[tokio::test]
async fn max_attempts_then_exactly_one_dead_letter_then_redrive() {
    let s = TestServer::start();
    s.create_topic("orders", &json!({})).await;
    put_sub(
        &s,
        "orders",
        "billing",
        json!({"start": "earliest", "retry": retry(json!(3), 0)}),
        201,
    )
    .await;
    s.produce(
        "orders",
        json!([{"key": "c7", "value": {"n": 1}, "headers": {"trace": "abc"}}]),
    )
    .await;
    for attempt in 1..=3 {
        let b = pull(
            &s,
            "orders",
            "billing",
            json!({"max_messages": 5, "wait_ms": 5000}),
        )
        .await;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["attempt"], attempt);
        let r = nack(
            &s,
            "orders",
            "billing",
            &b,
            json!({"reason": format!("failure {attempt}")}),
        )
        .await;
        assert_eq!(r["acked"], 1);
    }
    assert!(pull(
        &s,
        "orders",
        "billing",
        json!({"max_messages": 5, "wait_ms": 300})
    )
    .await
    .is_empty());
    let dlq = wait_for_messages(&s, "orders.billing.dlq", 1, Duration::from_secs(10)).await;
    assert_eq!(dlq["partitions"][0]["high_offset"], 1);
    let copy = &s.read_all("orders.billing.dlq", 0).await[0];
    assert_eq!(copy["key"], "c7");
    assert_eq!(copy["value"], json!({"n": 1}));
    let h = &copy["headers"];
    assert_eq!(h["trace"], "abc");
    assert_eq!(h["weir-original-topic"], "orders");
    assert_eq!(h["weir-original-partition"], "0");
    assert_eq!(h["weir-original-offset"], "0");
    assert_eq!(h["weir-subscription"], "billing");
    assert_eq!(h["weir-attempts"], "3");
    assert_eq!(h["weir-dead-letter-reason"], "failure 3");
    assert!(h["weir-dead-lettered-at"].as_str().is_some());
    let info = sub_info(&s, "orders", "billing").await;
    assert_eq!(info["stats"]["dead_lettered"], 1);
    assert_eq!(info["stats"]["backlog"], 0);

    // Redrive: deliverable again to this subscription only, attempts reset.
    put_sub(&s, "orders", "other", json!({"start": "earliest"}), 201).await;
    let other = drain(&s, "orders", "other", 1, Duration::from_secs(5)).await;
    assert_eq!(other.len(), 1);
    let r = s
        .post_json(
            &sub_path("orders", "billing", "dead-letters/redrive"),
            &json!({}),
        )
        .await
        .expect_status(200);
    assert_eq!(r["redriven"], 1);
    let r = s
        .post_json(
            &sub_path("orders", "billing", "dead-letters/redrive"),
            &json!({"max_messages": null}),
        )
        .await
        .expect_status(200);
    assert_eq!(r["redriven"], 0, "a second redrive finds nothing");
    let again = pull(
        &s,
        "orders",
        "billing",
        json!({"max_messages": 5, "wait_ms": 5000}),
    )
    .await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["attempt"], 1);
    ack(&s, "orders", "billing", &again).await;
    assert!(
        pull(
            &s,
            "orders",
            "other",
            json!({"max_messages": 5, "wait_ms": 300})
        )
        .await
        .is_empty(),
        "other subscriptions unaffected"
    );
    assert_eq!(
        s.topic("orders.billing.dlq").await["partitions"][0]["high_offset"],
        1,
        "the DLQ keeps its history"
    );
    s.post_json(
        &sub_path("orders", "billing", "dead-letters/redrive"),
        &json!({"max_messages": 0}),
    )
    .await
    .expect_invalid("max_messages");
}

#[tokio::test]
async fn permanent_failure_and_delay_override() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"start": "earliest", "retry": retry(json!(10), 0), "dead_letter_topic": "t-dead"}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": 1}, {"value": 2}])).await;
    let b = pull(&s, "t", "s", json!({"max_messages": 2})).await;
    nack(
        &s,
        "t",
        "s",
        &b[..1],
        json!({"retry": false, "reason": "bad payload"}),
    )
    .await;
    nack(&s, "t", "s", &b[1..], json!({"delay_ms": 60000})).await;
    let dead = wait_for_messages(&s, "t-dead", 1, Duration::from_secs(10)).await;
    assert_eq!(dead["name"], "t-dead");
    let info = sub_info(&s, "t", "s").await;
    assert_eq!(info["stats"]["delayed"], 1, "{info}");
    assert!(
        pull(&s, "t", "s", json!({"max_messages": 5, "wait_ms": 300}))
            .await
            .is_empty()
    );
    s.post_json(
        &sub_path("t", "s", "nack"),
        &json!({"ack_ids": ack_ids(&b), "delay_ms": 31u64 * 24 * 3600 * 1000}),
    )
    .await
    .expect_invalid("delay_ms");
}

#[tokio::test]
async fn delayed_messages_are_not_delivered_early_and_survive_restart() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "s", json!({"start": "earliest"}), 201).await;
    s.produce(
        "t",
        json!([{"value": "later", "delay_ms": 2000}, {"value": "now"}]),
    )
    .await;
    let b = pull(&s, "t", "s", json!({"max_messages": 5})).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["value"], "now");
    ack(&s, "t", "s", &b).await;
    assert_eq!(sub_info(&s, "t", "s").await["stats"]["delayed"], 1);
    s.kill9();
    s.restart();
    let early = pull(&s, "t", "s", json!({"max_messages": 5})).await;
    assert!(early.is_empty(), "not before its time: {early:?}");
    let later = pull(&s, "t", "s", json!({"max_messages": 5, "wait_ms": 10000})).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["value"], "later");
}

#[tokio::test]
async fn sigkill_between_a_failure_and_its_retry_keeps_attempts() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"start": "earliest", "retry": retry(json!(5), 1500)}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": 1}])).await;
    let b = pull(&s, "t", "s", json!({"max_messages": 1})).await;
    nack(&s, "t", "s", &b, json!({"reason": "first"})).await;
    s.kill9();
    s.restart();
    assert!(
        pull(&s, "t", "s", json!({"max_messages": 1}))
            .await
            .is_empty(),
        "the retry waits for its backoff after a restart"
    );
    let again = pull(&s, "t", "s", json!({"max_messages": 1, "wait_ms": 10000})).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["attempt"], 2, "attempts survive SIGKILL");
}

/// A delivery in flight when the server dies is delivered again (not
/// counted as an attempt); a last failure is durable before its answer and
/// dead-lettered exactly once even when the process dies right after it.
#[tokio::test]
async fn sigkill_around_the_last_attempt_dead_letters_exactly_once() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(2), 0)}),
        201,
    )
    .await;
    put_sub(
        &s,
        "t",
        "st",
        json!({"mode": "stream", "start": "earliest", "retry": retry(json!(2), 0)}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": 1}, {"value": 2}])).await;
    let q = pull(&s, "t", "q", json!({"max_messages": 1})).await;
    let st = pull(&s, "t", "st", json!({"max_messages": 1, "consumer": "c"})).await;
    assert_eq!(
        (q[0]["attempt"].as_u64(), st[0]["attempt"].as_u64()),
        (Some(1), Some(1))
    );
    // Killed while leased: delivered again, and the interrupted delivery
    // counts (the last allowed attempt is the next one).
    s.kill9();
    s.restart();
    let q = pull(&s, "t", "q", json!({"max_messages": 1, "wait_ms": 5000})).await;
    let st = pull(
        &s,
        "t",
        "st",
        json!({"max_messages": 1, "wait_ms": 5000, "consumer": "c"}),
    )
    .await;
    assert_eq!(q[0]["value"], 1);
    assert_eq!(st[0]["value"], 1);
    assert_eq!(
        (q[0]["attempt"].as_u64(), st[0]["attempt"].as_u64()),
        (Some(2), Some(2))
    );
    // The last failures, then SIGKILL at once: whether or not the copies
    // were made before the kill, each is dead-lettered exactly once.
    nack(&s, "t", "q", &q, json!({"reason": "final"})).await;
    nack(&s, "t", "st", &st, json!({"reason": "final"})).await;
    s.kill9();
    s.restart();
    for dlq in ["t.q.dlq", "t.st.dlq"] {
        wait_for_messages(&s, dlq, 1, Duration::from_secs(10)).await;
    }
    let rest_q = drain(&s, "t", "q", 1, Duration::from_secs(10)).await;
    assert_eq!(
        rest_q
            .iter()
            .map(|m| m["value"].clone())
            .collect::<Vec<_>>(),
        vec![json!(2)]
    );
    let rest_st = drain(&s, "t", "st", 1, Duration::from_secs(10)).await;
    assert_eq!(
        rest_st
            .iter()
            .map(|m| m["value"].clone())
            .collect::<Vec<_>>(),
        vec![json!(2)]
    );
    s.kill9();
    s.restart();
    for (dlq, attempts) in [("t.q.dlq", "2"), ("t.st.dlq", "2")] {
        let copies = s.read_all(dlq, 0).await;
        assert_eq!(
            copies.len(),
            1,
            "exactly one dead letter in {dlq}: {copies:?}"
        );
        assert_eq!(copies[0]["headers"]["weir-dead-letter-reason"], "final");
        assert_eq!(copies[0]["headers"]["weir-attempts"], attempts);
    }
    assert!(
        pull(&s, "t", "q", json!({"max_messages": 5, "wait_ms": 300}))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn stream_retry_blocks_the_partition_in_order() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"mode": "stream", "start": "earliest", "retry": retry(json!(2), 500)}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": 0}, {"value": 1}, {"value": 2}]))
        .await;
    let b = pull(&s, "t", "s", json!({"max_messages": 10, "consumer": "c"})).await;
    assert_eq!(b.len(), 3);
    nack(&s, "t", "s", &b[1..2], json!({"reason": "x"})).await;
    assert!(
        pull(&s, "t", "s", json!({"max_messages": 10, "consumer": "c"}))
            .await
            .is_empty(),
        "the partition waits"
    );
    let again = pull(
        &s,
        "t",
        "s",
        json!({"max_messages": 10, "wait_ms": 5000, "consumer": "c"}),
    )
    .await;
    let values: Vec<Value> = again.iter().map(|m| m["value"].clone()).collect();
    assert_eq!(
        values,
        vec![json!(1), json!(2)],
        "redelivered from the cursor, in order"
    );
    assert_eq!(again[0]["attempt"], 2);
    nack(
        &s,
        "t",
        "s",
        &again[..1],
        json!({"reason": "still failing"}),
    )
    .await;
    let after = pull(
        &s,
        "t",
        "s",
        json!({"max_messages": 10, "wait_ms": 5000, "consumer": "c"}),
    )
    .await;
    assert_eq!(
        after.iter().map(|m| m["value"].clone()).collect::<Vec<_>>(),
        vec![json!(2)],
        "head dead-lettered, cursor moved past it"
    );
    let dlq = wait_for_messages(&s, "t.s.dlq", 1, Duration::from_secs(10)).await;
    assert_eq!(dlq["partitions"][0]["high_offset"], 1);
}

/// A message whose delivery crashes the server is not redelivered forever:
/// each interrupted delivery counts, and after `max_attempts` of them it
/// goes to the dead-letter topic.
#[tokio::test]
async fn deliveries_cut_by_sigkill_count_toward_max_attempts() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(3), 0)}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": "poison"}])).await;
    for attempt in 1..=3u64 {
        let got = pull(&s, "t", "q", json!({"max_messages": 1, "wait_ms": 5000})).await;
        assert_eq!(got.len(), 1, "attempt {attempt}: {got:?}");
        assert_eq!(got[0]["value"], "poison");
        assert_eq!(got[0]["attempt"].as_u64(), Some(attempt));
        s.kill9();
        s.restart();
    }
    wait_for_messages(&s, "t.q.dlq", 1, Duration::from_secs(10)).await;
    let copies = s.read_all("t.q.dlq", 0).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["value"], "poison");
    assert_eq!(copies[0]["headers"]["weir-attempts"], "3");
    let again = pull(&s, "t", "q", json!({"max_messages": 1, "wait_ms": 500})).await;
    assert!(
        again.is_empty(),
        "delivered after its last attempt: {again:?}"
    );
}

/// Messages that wait — delayed, or behind a retrying key — never use up
/// the subscription's memory bound (`--max-unsettled-per-subscription`):
/// they wait on disk, and everything else flows.
#[tokio::test]
async fn waiting_messages_do_not_stall_a_bounded_subscription() {
    let s = TestServer::start_with(&["--max-unsettled-per-subscription", "50"]);
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "ordering": "key"}),
        201,
    )
    .await;
    // Key "stuck": its head fails with a one-hour retry; 300 follow it.
    s.produce("t", json!([{"value": "head", "key": "stuck"}]))
        .await;
    let head = pull(&s, "t", "q", json!({"max_messages": 1})).await;
    nack(&s, "t", "q", &head, json!({"delay_ms": 3_600_000})).await;
    let stuck: Vec<Value> = (0..300)
        .map(|i| json!({"value": format!("stuck-{i}"), "key": "stuck"}))
        .collect();
    s.produce("t", Value::Array(stuck)).await;
    // 300 messages delayed by an hour.
    let delayed: Vec<Value> = (0..300)
        .map(|i| json!({"value": format!("later-{i}"), "delay_ms": 3_600_000}))
        .collect();
    s.produce("t", Value::Array(delayed)).await;
    // And 100 that may go now, on other keys.
    let ready: Vec<Value> = (0..100)
        .map(|i| json!({"value": format!("now-{i}"), "key": format!("k{i}")}))
        .collect();
    s.produce("t", Value::Array(ready)).await;
    let mut got = Vec::new();
    for _ in 0..50 {
        let batch = pull(&s, "t", "q", json!({"max_messages": 100, "wait_ms": 200})).await;
        if !batch.is_empty() {
            ack(&s, "t", "q", &batch).await;
        }
        got.extend(
            batch
                .iter()
                .map(|m| m["value"].as_str().unwrap_or("").to_owned()),
        );
        if got.len() >= 100 {
            break;
        }
    }
    got.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("now-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "only the ready messages, all of them");
    let stats = sub_info(&s, "t", "q").await["stats"].clone();
    assert_eq!(stats["backlog"], 601, "{stats}");
}
