//! Subscriptions through HTTP against a real server: configuration and
//! errors, competing queue consumers, ordered streams, seek, two
//! subscriptions on one topic, long polls, and consumption across a
//! restart and a SIGKILL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{now_ms, TestServer};
use crate::subs_helpers::*;

#[tokio::test]
async fn subscription_lifecycle_and_errors() {
    let s = TestServer::start();
    s.create_topic("orders", &json!({"partitions": 2})).await;
    let created = put_sub(
        &s,
        "orders",
        "billing",
        json!({"mode": "queue", "start": "earliest"}),
        201,
    )
    .await;
    assert_eq!(created["config"]["mode"], "queue");
    assert_eq!(created["config"]["dead_letter_topic"], "orders.billing.dlq");
    assert_eq!(created["stats"]["partitions"].as_array().unwrap().len(), 2);
    // Same body again: 200; an update of a mutable field: 200.
    put_sub(&s, "orders", "billing", json!({"mode": "queue"}), 200).await;
    let updated = put_sub(
        &s,
        "orders",
        "billing",
        json!({"ack_timeout_ms": 5000}),
        200,
    )
    .await;
    assert_eq!(updated["config"]["ack_timeout_ms"], 5000);
    // Mode change: 409.
    s.put_json(
        &sub_path("orders", "billing", ""),
        &json!({"mode": "stream"}),
    )
    .await
    .expect_problem(409, "conflict");
    // Unknown subscription / topic: 404 with the right codes.
    s.get(&sub_path("orders", "nope", ""))
        .await
        .expect_problem(404, "subscription_not_found");
    s.post_json(&sub_path("orders", "nope", "pull"), &json!({}))
        .await
        .expect_problem(404, "subscription_not_found");
    s.get(&sub_path("nope", "billing", ""))
        .await
        .expect_problem(404, "topic_not_found");
    // Invalid names and values, each naming the field.
    s.put_json(&sub_path("orders", "bad name!", ""), &json!({}))
        .await
        .expect_problem(400, "invalid_name");
    for (body, field) in [
        (json!({"max_messages": 0}), "max_messages"),
        (json!({"max_messages": 1001}), "max_messages"),
        (json!({"wait_ms": 60001}), "wait_ms"),
    ] {
        s.post_json(&sub_path("orders", "billing", "pull"), &body)
            .await
            .expect_invalid(field);
    }
    s.post_json(
        &sub_path("orders", "billing", "ack"),
        &json!({"ack_ids": ["not-an-ack-id"]}),
    )
    .await
    .expect_invalid("ack_ids[0]");
    s.post_json(
        &sub_path("orders", "billing", "ack"),
        &json!({"ack_ids": []}),
    )
    .await
    .expect_invalid("ack_ids");
    s.post_json(&sub_path("orders", "billing", "pull"), &json!({"max": 3}))
        .await
        .expect_problem(400, "invalid_request");
    for (spec, field) in [
        (
            json!({"retry": {"max_attempts": 3, "backoff": {"initial_ms": 10, "max_ms": 5, "multiplier": 2.0, "jitter": 0.0}}}),
            "retry.backoff.max_ms",
        ),
        (
            json!({"retry": {"max_attempts": 3, "backoff": {"initial_ms": 1, "max_ms": 5, "multiplier": 0.5, "jitter": 0.0}}}),
            "retry.backoff.multiplier",
        ),
        (
            json!({"retry": {"max_attempts": 3, "backoff": {"initial_ms": 1, "max_ms": 5, "multiplier": 2.0, "jitter": 2.0}}}),
            "retry.backoff.jitter",
        ),
        (json!({"dead_letter_topic": "orders"}), "dead_letter_topic"),
        (json!({"ack_timeout_ms": 0}), "ack_timeout_ms"),
    ] {
        s.put_json(&sub_path("orders", "other", ""), &spec)
            .await
            .expect_invalid(field);
    }
    s.put_json(&sub_path("orders", "other", ""), &json!({"retry": {"max_attempts": -1, "backoff": {"initial_ms": 1, "max_ms": 5, "multiplier": 2.0, "jitter": 0.0}}}))
        .await
        .expect_problem(400, "invalid_request");
    // List, delete.
    put_sub(&s, "orders", "audit", json!({"mode": "stream"}), 201).await;
    let list = s
        .get("/v1/topics/orders/subscriptions")
        .await
        .expect_status(200);
    let names: Vec<&str> = list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["audit", "billing"]);
    s.delete(&sub_path("orders", "audit", ""))
        .await
        .expect_status(204);
    s.get(&sub_path("orders", "audit", ""))
        .await
        .expect_problem(404, "subscription_not_found");
    // Deleting the topic deletes its subscriptions.
    s.delete("/v1/topics/orders").await.expect_status(204);
    s.create_topic("orders", &json!({})).await;
    s.get(&sub_path("orders", "billing", ""))
        .await
        .expect_problem(404, "subscription_not_found");
}

#[tokio::test]
async fn competing_consumers_drain_a_queue_exactly_once() {
    let s = TestServer::start();
    s.create_topic("jobs", &json!({"partitions": 3})).await;
    put_sub(
        &s,
        "jobs",
        "workers",
        json!({"start": "earliest", "ack_timeout_ms": 30000}),
        201,
    )
    .await;
    const N: usize = 3000;
    produce_n(&s, "jobs", N, true).await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let http = s.client();
        let pull_url = s.url(&sub_path("jobs", "workers", "pull"));
        let ack_url = s.url(&sub_path("jobs", "workers", "ack"));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut empty = 0;
            // Bounded: stops after three empty long polls in a row.
            for _ in 0..1000 {
                let reply: Value = http
                    .post(&pull_url)
                    .json(&json!({"max_messages": 50, "wait_ms": 300, "consumer": format!("w{w}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let batch = reply["messages"].as_array().unwrap().clone();
                if batch.is_empty() {
                    empty += 1;
                    if empty >= 3 {
                        break;
                    }
                    continue;
                }
                empty = 0;
                let ids: Vec<Value> = batch.iter().map(|m| m["ack_id"].clone()).collect();
                let acked: Value = http
                    .post(&ack_url)
                    .json(&json!({"ack_ids": ids}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(acked["acked"], batch.len(), "{acked}");
                seen.extend(batch.iter().map(|m| {
                    (
                        m["partition"].as_u64().unwrap(),
                        m["offset"].as_u64().unwrap(),
                        m["value"]["i"].as_u64().unwrap(),
                    )
                }));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    let mut per_worker = Vec::new();
    for t in tasks {
        let seen = t.await.unwrap();
        per_worker.push(seen.len());
        all.extend(seen);
    }
    let unique: HashSet<u64> = all.iter().map(|(_, _, i)| *i).collect();
    assert_eq!(
        all.len(),
        N,
        "every message delivered once (no duplicates without failures)"
    );
    assert_eq!(unique.len(), N, "no message lost");
    assert!(
        per_worker.iter().filter(|&&n| n > 0).count() >= 2,
        "work was shared: {per_worker:?}"
    );
    let info = sub_info(&s, "jobs", "workers").await;
    assert_eq!(info["stats"]["backlog"], 0, "{info}");
    assert_eq!(info["stats"]["in_flight"], 0);
    for p in info["stats"]["partitions"].as_array().unwrap() {
        assert_eq!(p["cursor"], p["high_offset"], "{info}");
    }
}

#[tokio::test]
async fn stream_delivers_in_order_with_cumulative_acks_and_seek() {
    let s = TestServer::start();
    s.create_topic("events", &json!({"partitions": 2})).await;
    put_sub(
        &s,
        "events",
        "audit",
        json!({"mode": "stream", "start": "earliest"}),
        201,
    )
    .await;
    produce_n(&s, "events", 200, true).await;
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut total = 0;
    for _ in 0..100 {
        let batch = pull(
            &s,
            "events",
            "audit",
            json!({"max_messages": 30, "consumer": "c1"}),
        )
        .await;
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            let (p, o) = (
                m["partition"].as_u64().unwrap(),
                m["offset"].as_u64().unwrap(),
            );
            if let Some(prev) = last.get(&p) {
                assert_eq!(o, prev + 1, "partition {p} in order");
            }
            last.insert(p, o);
        }
        total += batch.len();
        // Cumulative: acking the last message of each partition is enough.
        let mut lasts: BTreeMap<u64, Value> = BTreeMap::new();
        for m in &batch {
            lasts.insert(m["partition"].as_u64().unwrap(), m.clone());
        }
        let lasts: Vec<Value> = lasts.into_values().collect();
        let reply = ack(&s, "events", "audit", &lasts).await;
        assert_eq!(reply["unknown"], json!([]));
    }
    assert_eq!(total, 200);
    let info = sub_info(&s, "events", "audit").await;
    assert_eq!(info["stats"]["backlog"], 0, "{info}");
    assert!(info["stats"]["partitions"][0]["consumer"] == "c1");

    // Seek to explicit offsets replays from there, in order.
    let high0 = info["stats"]["partitions"][0]["high_offset"]
        .as_u64()
        .unwrap();
    let sought = s
        .post_json(
            &sub_path("events", "audit", "seek"),
            &json!({"to": {"offsets": {"0": high0 - 3}}}),
        )
        .await
        .expect_status(200);
    assert_eq!(sought["stats"]["partitions"][0]["cursor"], high0 - 3);
    let again = pull(
        &s,
        "events",
        "audit",
        json!({"max_messages": 10, "consumer": "c1"}),
    )
    .await;
    let offsets: Vec<u64> = again
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![high0 - 3, high0 - 2, high0 - 1]);
    ack(&s, "events", "audit", &again[2..]).await;
    // Seek earliest / by timestamp / latest.
    s.post_json(
        &sub_path("events", "audit", "seek"),
        &json!({"to": "earliest"}),
    )
    .await
    .expect_status(200);
    assert_eq!(
        sub_info(&s, "events", "audit").await["stats"]["backlog"],
        200
    );
    s.post_json(
        &sub_path("events", "audit", "seek"),
        &json!({"to": {"timestamp": now_ms() + 60_000}}),
    )
    .await
    .expect_status(200);
    assert_eq!(sub_info(&s, "events", "audit").await["stats"]["backlog"], 0);
    s.post_json(
        &sub_path("events", "audit", "seek"),
        &json!({"to": {"offsets": {"7": 1}}}),
    )
    .await
    .expect_invalid("to.offsets");
}

#[tokio::test]
async fn a_queue_and_a_stream_on_one_topic_each_get_every_message() {
    let s = TestServer::start();
    s.create_topic("orders", &json!({"partitions": 2})).await;
    put_sub(
        &s,
        "orders",
        "q",
        json!({"mode": "queue", "start": "earliest"}),
        201,
    )
    .await;
    put_sub(
        &s,
        "orders",
        "st",
        json!({"mode": "stream", "start": "earliest"}),
        201,
    )
    .await;
    produce_n(&s, "orders", 300, false).await;
    let q = drain(&s, "orders", "q", 300, Duration::from_secs(20)).await;
    let st = drain(&s, "orders", "st", 300, Duration::from_secs(20)).await;
    let qi: HashSet<u64> = q.iter().map(value_i).collect();
    let si: HashSet<u64> = st.iter().map(value_i).collect();
    assert_eq!((q.len(), qi.len()), (300, 300));
    assert_eq!((st.len(), si.len()), (300, 300));
    // A subscription created at `latest` sees only what comes after.
    put_sub(&s, "orders", "late", json!({}), 201).await;
    assert!(pull(&s, "orders", "late", json!({"max_messages": 10}))
        .await
        .is_empty());
}

#[tokio::test]
async fn long_poll_wakes_on_new_messages() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "s", json!({}), 201).await;
    let http = s.client();
    let url = s.url(&sub_path("t", "s", "pull"));
    let waiter = tokio::spawn(async move {
        let reply: Value = http
            .post(&url)
            .json(&json!({"max_messages": 5, "wait_ms": 20000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the long poll waits");
    s.produce("t", json!([{"value": "hello"}])).await;
    let reply = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken by the produce")
        .unwrap();
    assert_eq!(reply["messages"][0]["value"], "hello");
    assert_eq!(reply["messages"][0]["attempt"], 1);
}

#[tokio::test]
async fn lease_expiry_redelivers_to_another_consumer_and_stale_acks_are_unknown() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"start": "earliest", "ack_timeout_ms": 300, "retry": retry(json!(null), 0)}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": 1}, {"value": 2}])).await;
    let first = pull(&s, "t", "s", json!({"max_messages": 1, "consumer": "a"})).await;
    assert_eq!(first.len(), 1);
    // The other message flows while the first is out.
    let second = pull(&s, "t", "s", json!({"max_messages": 5, "consumer": "b"})).await;
    assert_eq!(second.len(), 1);
    assert_ne!(first[0]["offset"], second[0]["offset"]);
    ack(&s, "t", "s", &second).await;
    // Extend works while the lease is valid.
    let ext = s
        .post_json(
            &sub_path("t", "s", "extend"),
            &json!({"ack_ids": ack_ids(&first), "ack_timeout_ms": 300}),
        )
        .await
        .expect_status(200);
    assert_eq!(ext["acked"], 1);
    let again = pull(
        &s,
        "t",
        "s",
        json!({"max_messages": 5, "wait_ms": 5000, "consumer": "b"}),
    )
    .await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["offset"], first[0]["offset"]);
    assert_eq!(again[0]["attempt"], 2);
    let stale = ack(&s, "t", "s", &first).await;
    assert_eq!(stale["acked"], 0);
    assert_eq!(stale["unknown"], json!(ack_ids(&first)));
    assert_eq!(ack(&s, "t", "s", &again).await["acked"], 1);
}

#[tokio::test]
async fn key_ordering_keeps_one_message_per_key_in_flight() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "s",
        json!({"start": "earliest", "ordering": "key"}),
        201,
    )
    .await;
    s.produce(
        "t",
        json!([{"key": "a", "value": 1}, {"key": "a", "value": 2}, {"key": "b", "value": 3}]),
    )
    .await;
    let batch = pull(&s, "t", "s", json!({"max_messages": 10})).await;
    let values: Vec<&Value> = batch.iter().map(|m| &m["value"]).collect();
    assert_eq!(values, vec![&json!(1), &json!(3)]);
    ack(&s, "t", "s", &batch[..1]).await;
    let next = pull(&s, "t", "s", json!({"max_messages": 10})).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["value"], 2);
}

/// Consumes with acks, stops the server (gracefully, then with SIGKILL)
/// in the middle, and checks that no acked message comes back and no
/// unacked one is lost.
#[tokio::test]
async fn restart_and_sigkill_in_the_middle_of_consumption() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 2})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "ack_timeout_ms": 500, "retry": retry(json!(null), 0)}),
        201,
    )
    .await;
    put_sub(
        &s,
        "t",
        "st",
        json!({"mode": "stream", "start": "earliest", "ack_timeout_ms": 500}),
        201,
    )
    .await;
    produce_n(&s, "t", 400, false).await;
    let mut acked_q: HashSet<u64> = HashSet::new();
    let mut acked_st: HashSet<u64> = HashSet::new();
    for round in 0..2 {
        // Ack some, leave a batch leased.
        for _ in 0..2 {
            let b = pull(&s, "t", "q", json!({"max_messages": 60})).await;
            ack(&s, "t", "q", &b).await;
            acked_q.extend(b.iter().map(value_i));
            let b = pull(&s, "t", "st", json!({"max_messages": 60, "consumer": "c"})).await;
            ack(&s, "t", "st", &b).await;
            acked_st.extend(b.iter().map(value_i));
        }
        let leased = pull(&s, "t", "q", json!({"max_messages": 30})).await;
        assert!(!leased.is_empty());
        if round == 0 {
            s.restart();
        } else {
            s.kill9();
            s.restart();
        }
        // The old ack ids are gone with the leases.
        let stale = ack(&s, "t", "q", &leased).await;
        assert_eq!(stale["acked"], 0, "leases do not survive a restart");
    }
    let rest_q = drain(&s, "t", "q", 400 - acked_q.len(), Duration::from_secs(30)).await;
    let rest_st = drain(&s, "t", "st", 400 - acked_st.len(), Duration::from_secs(30)).await;
    for m in &rest_q {
        assert!(
            !acked_q.contains(&value_i(m)),
            "acked message {m} delivered again after restart"
        );
    }
    for m in &rest_st {
        assert!(
            !acked_st.contains(&value_i(m)),
            "committed message {m} delivered again after restart"
        );
    }
    let all_q: HashSet<u64> = acked_q
        .iter()
        .copied()
        .chain(rest_q.iter().map(value_i))
        .collect();
    let all_st: HashSet<u64> = acked_st
        .iter()
        .copied()
        .chain(rest_st.iter().map(value_i))
        .collect();
    assert_eq!(all_q.len(), 400, "no unacked message lost (queue)");
    assert_eq!(all_st.len(), 400, "no unacked message lost (stream)");
}

#[tokio::test]
async fn retention_of_unacked_messages_is_counted() {
    let s = TestServer::start_with(&["--retention-interval-ms", "100"]);
    s.create_topic(
        "t",
        &json!({"retention": {"max_age_ms": null, "max_bytes": null, "max_messages": 5}}),
    )
    .await;
    put_sub(&s, "t", "s", json!({"start": "earliest"}), 201).await;
    produce_n(&s, "t", 20, false).await;
    s.wait_for_topic("t", Duration::from_secs(10), |t| {
        t["partitions"][0]["low_offset"].as_u64() >= Some(15)
    })
    .await;
    let info = wait_for_sub(&s, "t", "s", Duration::from_secs(10), |i| {
        i["stats"]["backlog"].as_u64() <= Some(5)
    })
    .await;
    assert!(
        info["stats"]["expired_by_retention"].as_u64().unwrap() >= 15,
        "{info}"
    );
    let rest = drain(&s, "t", "s", 5, Duration::from_secs(10)).await;
    assert!(
        rest.iter().all(|m| value_i(m) >= 15),
        "only stored messages are delivered"
    );
}
