//! Controlling a subscription: partial configuration updates, pause and
//! resume, the dead-letter circuit breaker, message TTL, and browsing,
//! redriving and purging selected dead letters (including a crash halfway
//! through a redrive).

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::subs_helpers::{
    nack, produce_n, pull, put_sub, retry, sub_info, sub_path, value_i, wait_for_sub,
};

async fn dead_letters(s: &TestServer, topic: &str, sub: &str, query: &str) -> Value {
    s.get(&format!("{}{query}", sub_path(topic, sub, "dead-letters")))
        .await
        .expect_status(200)
}

/// Pulls everything and nacks it for good with `reason(i)`.
async fn dead_letter_all(
    s: &TestServer,
    topic: &str,
    sub: &str,
    n: usize,
    reason: impl Fn(u64) -> String,
) {
    let mut done = 0;
    for _ in 0..50 {
        let batch = pull(s, topic, sub, json!({"max_messages": 100, "wait_ms": 500})).await;
        for m in &batch {
            nack(
                s,
                topic,
                sub,
                std::slice::from_ref(m),
                json!({"reason": reason(value_i(m)), "retry": false}),
            )
            .await;
        }
        done += batch.len();
        if done >= n {
            break;
        }
    }
    assert_eq!(done, n);
    wait_for_sub(s, topic, sub, Duration::from_secs(10), |i| {
        i["stats"]["dead_lettered"] == n as u64
    })
    .await;
}

#[tokio::test]
async fn nested_fields_are_optional_and_updates_change_only_what_they_name() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    let created = put_sub(&s, "t", "q", json!({"retry": {"max_attempts": 1}}), 201).await;
    assert_eq!(created["config"]["retry"]["max_attempts"], 1);
    assert_eq!(
        created["config"]["retry"]["backoff"]["initial_ms"], 1000,
        "backoff keeps its default"
    );
    let updated = put_sub(
        &s,
        "t",
        "q",
        json!({"retry": {"backoff": {"max_ms": 5000}}}),
        200,
    )
    .await;
    assert_eq!(
        updated["config"]["retry"]["max_attempts"], 1,
        "untouched by the update"
    );
    assert_eq!(updated["config"]["retry"]["backoff"]["max_ms"], 5000);
    assert_eq!(updated["config"]["retry"]["backoff"]["multiplier"], 2.0);
    let unlimited = put_sub(&s, "t", "q", json!({"retry": {"max_attempts": null}}), 200).await;
    assert!(unlimited["config"]["retry"]["max_attempts"].is_null());
    let bad = s
        .put_json(
            &sub_path("t", "q", ""),
            &json!({"retry": {"backoff": {"initial_ms": 9000}}}),
        )
        .await
        .expect_problem(400, "invalid_request");
    assert_eq!(bad["field"], "retry.backoff.max_ms");
}

#[tokio::test]
async fn paused_subscriptions_deliver_nothing_but_settle_and_survive_restarts() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "q", json!({"start": "earliest"}), 201).await;
    produce_n(&s, "t", 4, false).await;
    let leased = pull(&s, "t", "q", json!({"max_messages": 2})).await;
    assert_eq!(leased.len(), 2);
    let paused = s
        .post_json(
            &sub_path("t", "q", "pause"),
            &json!({"reason": "incident 42"}),
        )
        .await
        .expect_status(200);
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["paused_reason"], "incident 42");
    assert!(
        pull(&s, "t", "q", json!({"max_messages": 10, "wait_ms": 300}))
            .await
            .is_empty()
    );
    // Acks of leases already out keep working.
    let acked = s
        .post_json(
            &sub_path("t", "q", "ack"),
            &json!({"ack_ids": [leased[0]["ack_id"]]}),
        )
        .await
        .expect_status(200);
    assert_eq!(acked["acked"], 1);
    let metrics = s.get("/metrics").await.text;
    assert!(
        metrics
            .contains(r#"weir_subscription_paused{cause="manual",subscription="q",topic="t"} 1"#),
        "{metrics}"
    );
    s.restart();
    assert_eq!(
        sub_info(&s, "t", "q").await["paused"],
        true,
        "the pause survives a restart"
    );
    assert!(pull(&s, "t", "q", json!({"max_messages": 10}))
        .await
        .is_empty());
    // A long poll waiting on a paused subscription is woken by the resume.
    let client = s.client();
    let url = s.url(&sub_path("t", "q", "pull"));
    let waiting = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"max_messages": 10, "wait_ms": 10000}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = s
        .post_json(&sub_path("t", "q", "resume"), &json!({}))
        .await
        .expect_status(200);
    assert_eq!(resumed["paused"], false);
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(!got["messages"].as_array().unwrap().is_empty(), "{got}");
}

#[tokio::test]
async fn the_circuit_breaker_pauses_on_a_poison_wave_and_resume_redrives_it() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    let spec = json!({"start": "earliest", "retry": {"max_attempts": 1, "circuit_breaker": {"max_dead_letters": 3, "window_ms": 60000}}});
    put_sub(&s, "t", "q", spec, 201).await;
    produce_n(&s, "t", 10, false).await;
    let batch = pull(&s, "t", "q", json!({"max_messages": 4})).await;
    nack(&s, "t", "q", &batch, json!({"reason": "poison"})).await;
    let info = wait_for_sub(&s, "t", "q", Duration::from_secs(10), |i| {
        i["paused"] == true
    })
    .await;
    assert!(
        info["paused_reason"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "{info}"
    );
    assert_eq!(info["stats"]["dead_lettered"], 4);
    assert!(
        pull(&s, "t", "q", json!({"max_messages": 10}))
            .await
            .is_empty(),
        "tripped: no deliveries"
    );
    let metrics = s.get("/metrics").await.text;
    assert!(
        metrics.contains(
            r#"weir_subscription_circuit_breaker_trips_total{subscription="q",topic="t"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"weir_subscription_paused{cause="circuit_breaker",subscription="q",topic="t"} 1"#
    ));
    s.post_json(&sub_path("t", "q", "resume"), &json!({"redrive": true}))
        .await
        .expect_status(200);
    let info = sub_info(&s, "t", "q").await;
    assert_eq!(info["paused"], false);
    assert_eq!(
        info["stats"]["dead_lettered"], 0,
        "the dead letters that tripped it were redriven"
    );
    let again = pull(&s, "t", "q", json!({"max_messages": 100})).await;
    assert_eq!(again.len(), 10);
}

#[tokio::test]
async fn the_breaker_resumes_by_itself_after_its_cooldown() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    let spec = json!({"start": "earliest", "retry": {"max_attempts": 1, "circuit_breaker": {"max_dead_letters": 1, "window_ms": 60000, "cooldown_ms": 1000}}});
    put_sub(&s, "t", "q", spec, 201).await;
    produce_n(&s, "t", 3, false).await;
    let batch = pull(&s, "t", "q", json!({"max_messages": 2})).await;
    nack(&s, "t", "q", &batch, json!({"retry": false})).await;
    wait_for_sub(&s, "t", "q", Duration::from_secs(10), |i| {
        i["paused"] == true
    })
    .await;
    wait_for_sub(&s, "t", "q", Duration::from_secs(10), |i| {
        i["paused"] == false
    })
    .await;
    assert_eq!(
        pull(&s, "t", "q", json!({"max_messages": 10, "wait_ms": 2000}))
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn messages_past_their_ttl_are_dead_lettered_not_delivered() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "message_ttl_ms": 1000}),
        201,
    )
    .await;
    produce_n(&s, "t", 3, false).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    produce_n(&s, "t", 1, false).await;
    let mut fresh = Vec::new();
    for _ in 0..10 {
        fresh.extend(pull(&s, "t", "q", json!({"max_messages": 10, "wait_ms": 300})).await);
        if !fresh.is_empty() {
            break;
        }
    }
    assert_eq!(fresh.len(), 1, "only the fresh message: {fresh:?}");
    assert_eq!(value_i(&fresh[0]), 0);
    let info = wait_for_sub(&s, "t", "q", Duration::from_secs(10), |i| {
        i["stats"]["dead_lettered"] == 3
    })
    .await;
    assert_eq!(info["config"]["message_ttl_ms"], 1000);
    let dead = dead_letters(&s, "t", "q", "?reason=expired").await;
    assert_eq!(dead["dead_letters"].as_array().unwrap().len(), 3);
    // The copies in the dead-letter topic say why (key-less copies of one
    // batch share a partition: look in each).
    let partitions = s.topic("t.q.dlq").await["partitions"]
        .as_array()
        .unwrap()
        .len();
    let mut copies = Vec::new();
    for p in 0..partitions {
        let read = s
            .get(&format!(
                "/v1/topics/t.q.dlq/partitions/{p}/messages?offset=0&limit=10"
            ))
            .await
            .expect_status(200);
        copies.extend(read["messages"].as_array().unwrap().clone());
    }
    assert_eq!(copies.len(), 3, "{copies:?}");
    for copy in &copies {
        assert_eq!(copy["headers"]["weir-dead-letter-reason"], "expired");
    }
}

#[tokio::test]
async fn dead_letters_are_browsed_filtered_redriven_and_purged_by_selection() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(1), 10)}),
        201,
    )
    .await;
    let messages: Vec<Value> = (0..6)
        .map(|i| json!({"key": format!("k{}", i % 2), "value": {"i": i}, "headers": {"tenant": if i < 3 { "a" } else { "b" }}}))
        .collect();
    s.produce("t", json!(messages)).await;
    dead_letter_all(&s, "t", "q", 6, |i| {
        if i % 3 == 0 {
            format!("timeout #{i}")
        } else {
            format!("invalid payload #{i}")
        }
    })
    .await;

    let all = dead_letters(&s, "t", "q", "").await;
    let list = all["dead_letters"].as_array().unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(list[0]["state"], "waiting");
    assert_eq!(list[0]["attempts"], 1);
    assert!(list[0]["dead_lettered_at"].as_u64().unwrap() > 0);
    assert_eq!(list[0]["message"]["value"]["i"], 0);
    let page = dead_letters(&s, "t", "q", "?limit=4").await;
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), 4);
    let rest = dead_letters(
        &s,
        "t",
        "q",
        &format!("?limit=4&cursor={}", page["next"].as_str().unwrap()),
    )
    .await;
    assert_eq!(rest["dead_letters"].as_array().unwrap().len(), 2);
    assert_eq!(
        dead_letters(&s, "t", "q", "?reason=timeout").await["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        dead_letters(&s, "t", "q", "?reason_regex=%5Einvalid").await["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        dead_letters(&s, "t", "q", "?key=k1").await["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Dry run: counts and samples, changes nothing.
    let redrive = sub_path("t", "q", "dead-letters/redrive");
    let dry = s
        .post_json(
            &redrive,
            &json!({"dry_run": true, "filter": {"headers": {"tenant": "b"}}}),
        )
        .await
        .expect_status(200);
    assert_eq!(
        (dry["matched"].as_u64(), dry["redriven"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(dry["sample"].as_array().unwrap().len(), 3);
    assert_eq!(sub_info(&s, "t", "q").await["stats"]["dead_lettered"], 6);
    // Redrive tenant b only; a second time finds nothing.
    let done = s
        .post_json(&redrive, &json!({"filter": {"headers": {"tenant": "b"}}}))
        .await
        .expect_status(200);
    assert_eq!(done["redriven"], 3);
    let twice = s
        .post_json(&redrive, &json!({"filter": {"headers": {"tenant": "b"}}}))
        .await
        .expect_status(200);
    assert_eq!(twice["redriven"], 0);
    assert_eq!(sub_info(&s, "t", "q").await["stats"]["dead_lettered"], 3);
    let back = pull(&s, "t", "q", json!({"max_messages": 10, "wait_ms": 2000})).await;
    let mut got: Vec<u64> = back.iter().map(value_i).collect();
    got.sort_unstable();
    assert_eq!(got, [3, 4, 5]);
    assert_eq!(
        dead_letters(&s, "t", "q", "?state=redriven").await["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Purge what times out; the rest stays waiting.
    let purge = sub_path("t", "q", "dead-letters/purge");
    let purged = s
        .post_json(&purge, &json!({"filter": {"reason": "timeout"}}))
        .await
        .expect_status(200);
    assert_eq!(purged["purged"], 1, "timeout #0 (timeout #3 was redriven)");
    assert_eq!(sub_info(&s, "t", "q").await["stats"]["dead_lettered"], 2);
    let waiting = dead_letters(&s, "t", "q", "?state=waiting").await;
    assert_eq!(waiting["dead_letters"].as_array().unwrap().len(), 2);
    // Bad filters are 400s naming the field.
    let bad = s
        .post_json(&redrive, &json!({"filter": {"reason_regex": "("}}))
        .await
        .expect_problem(400, "invalid_request");
    assert_eq!(bad["field"], "reason_regex");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_killed_halfway_never_duplicates_or_drops_a_dead_letter() {
    let mut s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(1), 10)}),
        201,
    )
    .await;
    produce_n(&s, "t", 40, false).await;
    dead_letter_all(&s, "t", "q", 40, |_| "boom".to_owned()).await;
    // Slow redrive (10 per second) killed after its first batches.
    let client = s.client();
    let url = s.url(&sub_path("t", "q", "dead-letters/redrive"));
    let redrive = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"rate_per_s": 10}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.kill9();
    let _ = redrive.await;
    s.restart();
    let waiting = sub_info(&s, "t", "q").await["stats"]["dead_lettered"]
        .as_u64()
        .unwrap();
    let redriven = dead_letters(&s, "t", "q", "?state=redriven&limit=1000").await["dead_letters"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert!(
        redriven > 0 && redriven < 40,
        "the kill came halfway: {redriven}"
    );
    assert_eq!(
        waiting + redriven,
        40,
        "every dead letter is waiting or redriven, once"
    );
    // Finish the redrive: every message comes back exactly once.
    let done = s
        .post_json(&sub_path("t", "q", "dead-letters/redrive"), &json!({}))
        .await
        .expect_status(200);
    assert_eq!(done["redriven"].as_u64(), Some(waiting));
    let mut seen = Vec::new();
    for _ in 0..20 {
        let batch = pull(&s, "t", "q", json!({"max_messages": 100, "wait_ms": 300})).await;
        if batch.is_empty() && seen.len() >= 40 {
            break;
        }
        seen.extend(batch.iter().map(value_i));
        if batch.is_empty() {
            continue;
        }
        s.post_json(
            &sub_path("t", "q", "ack"),
            &json!({"ack_ids": batch.iter().map(|m| m["ack_id"].clone()).collect::<Vec<_>>()}),
        )
        .await;
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<u64>>());
}

#[tokio::test]
async fn delayed_messages_count_before_anyone_pulls() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "q", json!({"start": "earliest"}), 201).await;
    s.produce(
        "t",
        json!([{"value": 1, "delay_ms": 600000}, {"value": 2, "delay_ms": 600000}, {"value": 3}]),
    )
    .await;
    let info = sub_info(&s, "t", "q").await;
    assert_eq!(info["stats"]["delayed"], 2, "{info}");
    assert_eq!(info["stats"]["backlog"], 3);
    let metrics = s.get("/metrics").await.text;
    assert!(
        metrics.contains(r#"weir_subscription_delayed_messages{subscription="q",topic="t"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn leases_are_listed_with_their_consumers_and_deadlines() {
    let s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 2})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "ack_timeout_ms": 60000}),
        201,
    )
    .await;
    put_sub(
        &s,
        "t",
        "st",
        json!({"start": "earliest", "mode": "stream"}),
        201,
    )
    .await;
    produce_n(&s, "t", 6, false).await;
    let leased = pull(
        &s,
        "t",
        "q",
        json!({"max_messages": 3, "consumer": "worker-7"}),
    )
    .await;
    assert_eq!(leased.len(), 3);
    let list = s
        .get(&sub_path("t", "q", "leases"))
        .await
        .expect_status(200);
    let leases = list["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 3, "{list}");
    assert_eq!(leases[0]["consumer"], "worker-7");
    assert_eq!(leases[0]["count"], 1);
    assert!(leases[0]["deadline"].as_u64().unwrap() > leased[0]["timestamp"].as_u64().unwrap());
    assert_eq!(list["truncated"], false);
    let page = s
        .get(&format!("{}?limit=1", sub_path("t", "q", "leases")))
        .await
        .expect_status(200);
    assert_eq!(
        (
            page["leases"].as_array().unwrap().len(),
            page["truncated"].as_bool()
        ),
        (1, Some(true))
    );
    s.post_json(
        &sub_path("t", "q", "ack"),
        &json!({"ack_ids": [leased[0]["ack_id"]]}),
    )
    .await
    .expect_status(200);
    let after = s
        .get(&sub_path("t", "q", "leases"))
        .await
        .expect_status(200);
    assert_eq!(after["leases"].as_array().unwrap().len(), 2);
    // Stream mode: one lease per partition run, named by its owner.
    pull(
        &s,
        "t",
        "st",
        json!({"max_messages": 10, "consumer": "reader-1"}),
    )
    .await;
    let runs = s
        .get(&sub_path("t", "st", "leases"))
        .await
        .expect_status(200);
    let runs = runs["leases"].as_array().unwrap();
    assert!(!runs.is_empty());
    assert!(runs.iter().all(|l| l["consumer"] == "reader-1"), "{runs:?}");
    assert_eq!(
        runs.iter()
            .map(|l| l["count"].as_u64().unwrap())
            .sum::<u64>(),
        6
    );
}
