//! Replicated subscriptions: created through any node, served by the
//! leader of the topic's partition 0 (every other node forwards), their
//! state (deliveries, acks, seeks) committed through the partitions'
//! groups — so when the serving node is killed, the next one continues
//! where it stopped: nothing acknowledged comes back, everything else does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nodes::Cluster;
use crate::partitions::balanced;

const WITHIN: Duration = Duration::from_secs(30);

/// Sends until a node takes it (503 while leaders are elected or the
/// serving node changes); returns the answer.
async fn until_taken(
    cluster: &Cluster,
    id: u64,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value, Option<String>) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let node = cluster.node(id);
        let reply = match method {
            "PUT" => node.put_json(path, body).await,
            "GET" => node.get(path).await,
            _ => node.post_json(path, body).await,
        };
        if reply.status != 503 {
            let leader = reply
                .headers
                .get("weir-leader")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let json = if reply.text.is_empty() {
                Value::Null
            } else {
                reply.json()
            };
            return (reply.status.as_u16(), json, leader);
        }
        assert!(
            Instant::now() < deadline,
            "node {id} kept answering 503 to {method} {path}: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 3-node cluster with topic `jobs` (`topic`: its settings, created
/// through node 1) whose leaders settled on their preferred nodes (so the
/// serving node stays put), and subscription `work` (`spec`) created
/// through node `via`; returns the cluster and the node serving it.
async fn jobs_cluster(topic: Value, via: u64, spec: Value) -> (Cluster, Option<String>) {
    let cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let (status, body, _) = until_taken(&cluster, 1, "PUT", "/v1/topics/jobs", &topic).await;
    assert_eq!(status, 201, "{body}");
    let partitions = topic["partitions"].as_u64().unwrap();
    balanced(&cluster, &[1, 2, 3], "jobs", partitions).await;
    let (status, body, served_by) = until_taken(
        &cluster,
        via,
        "PUT",
        "/v1/topics/jobs/subscriptions/work",
        &spec,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(served_by.is_some(), "the answer names the serving node");
    (cluster, served_by)
}

/// Pulls through node `id` until `count` messages came or `patience`
/// passed; returns `(value n, ack id)` of each.
async fn pull_n(
    cluster: &Cluster,
    id: u64,
    count: usize,
    patience: Duration,
) -> Vec<(u64, String)> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        let (status, body, _) = until_taken(
            cluster,
            id,
            "POST",
            "/v1/topics/jobs/subscriptions/work/pull",
            &json!({"max_messages": 100, "wait_ms": 300}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for m in body["messages"].as_array().unwrap() {
            got.push((
                m["value"]["n"].as_u64().unwrap(),
                m["ack_id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    got
}

async fn ack(cluster: &Cluster, id: u64, ack_ids: &[String]) -> Value {
    let (status, body, _) = until_taken(
        cluster,
        id,
        "POST",
        "/v1/topics/jobs/subscriptions/work/ack",
        &json!({ "ack_ids": ack_ids }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn acked_stays_acked_and_the_rest_comes_back_after_the_serving_node_dies() {
    // Created through node 2; every node then describes the same one.
    let (mut cluster, served_by) = jobs_cluster(
        json!({"partitions": 2, "dedupe_window_ms": 3_600_000}),
        2,
        json!({"start": "earliest", "ack_timeout_ms": 60_000}),
    )
    .await;
    let messages: Vec<Value> = (0..40)
        .map(|n| json!({"key": format!("k{}", n % 5), "value": {"n": n}, "id": format!("m{n}")}))
        .collect();
    let (status, body, _) = until_taken(
        &cluster,
        3,
        "POST",
        "/v1/topics/jobs/messages",
        &json!({ "messages": messages }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Pulled through node 3, half acked through node 1.
    let first = pull_n(&cluster, 3, 40, WITHIN).await;
    let delivered: BTreeSet<u64> = first.iter().map(|(n, _)| *n).collect();
    assert_eq!(delivered, (0..40).collect(), "every message once");
    let (acked, kept): (Vec<_>, Vec<_>) = first.into_iter().partition(|(n, _)| n % 2 == 0);
    let ids: Vec<String> = acked.iter().map(|(_, id)| id.clone()).collect();
    let answer = ack(&cluster, 1, &ids).await;
    assert_eq!(answer["acked"], 20, "{answer}");
    for id in 1..=3 {
        let (status, info, leader) = until_taken(
            &cluster,
            id,
            "GET",
            "/v1/topics/jobs/subscriptions/work",
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["stats"]["in_flight"], 20, "node {id}: {info}");
        assert_eq!(leader, served_by, "one node serves the subscription");
    }

    // The serving node dies: the next continues where it stopped.
    let victim: u64 = served_by.as_deref().unwrap().parse().unwrap();
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let survivor = (1..=3).find(|&id| id != victim).unwrap();
    let again = pull_n(&cluster, survivor, 20, WITHIN).await;
    let redelivered: BTreeSet<u64> = again.iter().map(|(n, _)| *n).collect();
    let expected: BTreeSet<u64> = kept.iter().map(|(n, _)| *n).collect();
    assert_eq!(redelivered, expected, "the unacked ones, none of the acked");
    let ids: Vec<String> = again.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ack(&cluster, survivor, &ids).await["acked"], 20);
    assert!(
        pull_n(&cluster, survivor, 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "nothing left"
    );

    // Back again, the old node serves nothing twice either.
    cluster.restart(victim);
    let (status, body, _) = until_taken(
        &cluster,
        victim,
        "POST",
        "/v1/topics/jobs/messages",
        &json!({"messages": [{"value": {"n": 100}}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let last = pull_n(&cluster, victim, 1, WITHIN).await;
    assert_eq!(
        last.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![100],
        "only the new message"
    );
}

#[tokio::test]
async fn seeks_and_settings_are_the_clusters() {
    let (cluster, _) =
        jobs_cluster(json!({"partitions": 1}), 3, json!({"start": "earliest"})).await;
    let messages: Vec<Value> = (0..10).map(|n| json!({"value": {"n": n}})).collect();
    let (status, _, _) = until_taken(
        &cluster,
        2,
        "POST",
        "/v1/topics/jobs/messages",
        &json!({ "messages": messages }),
    )
    .await;
    assert_eq!(status, 200);
    let got = pull_n(&cluster, 1, 10, WITHIN).await;
    let ids: Vec<String> = got.iter().map(|(_, id)| id.clone()).collect();
    ack(&cluster, 2, &ids).await;
    // A seek back through another node replays from the start.
    let (status, body, _) = until_taken(
        &cluster,
        3,
        "POST",
        "/v1/topics/jobs/subscriptions/work/seek",
        &json!({"to": "earliest"}),
    )
    .await;
    assert!(status == 200 || status == 204, "{status}: {body}");
    let replay = pull_n(&cluster, 2, 10, WITHIN).await;
    assert_eq!(replay.len(), 10);

    // Settings changed through one node are every node's.
    let (status, body, _) = until_taken(
        &cluster,
        2,
        "PUT",
        "/v1/topics/jobs/subscriptions/work",
        &json!({"ack_timeout_ms": 45_000}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for id in 1..=3 {
        let (status, info, _) = until_taken(
            &cluster,
            id,
            "GET",
            "/v1/topics/jobs/subscriptions",
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(
            info["subscriptions"][0]["config"]["ack_timeout_ms"], 45_000,
            "node {id}: {info}"
        );
    }
    // Deleted through one node: gone everywhere.
    let reply = cluster
        .node(1)
        .delete("/v1/topics/jobs/subscriptions/work")
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    for id in 1..=3 {
        let (status, body, _) = until_taken(
            &cluster,
            id,
            "GET",
            "/v1/topics/jobs/subscriptions/work",
            &Value::Null,
        )
        .await;
        assert_eq!(status, 404, "node {id}: {body}");
    }
}

/// The next frame of `socket` as JSON (pings skipped).
async fn next_frame<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let frame = tokio::time::timeout(WITHIN, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket stays open")
            .expect("a readable frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn a_websocket_subscription_survives_the_serving_node() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let (mut cluster, served_by) = jobs_cluster(
        json!({"partitions": 1}),
        1,
        json!({"start": "earliest", "ack_timeout_ms": 60_000}),
    )
    .await;
    let victim: u64 = served_by.unwrap().parse().unwrap();
    // The client talks to a node that does not serve the subscription.
    let entry = (1..=3).find(|&id| id != victim).unwrap();
    let url = cluster
        .node(entry)
        .url("/v1/topics/jobs/subscriptions/work/ws")
        .replacen("http://", "ws://", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::text(r#"{"type":"credit","messages":100}"#))
        .await
        .unwrap();
    let produce = |from: u64, to: u64| {
        let messages: Vec<Value> = (from..to).map(|n| json!({"value": {"n": n}})).collect();
        json!({ "messages": messages })
    };
    let (status, _, _) = until_taken(
        &cluster,
        entry,
        "POST",
        "/v1/topics/jobs/messages",
        &produce(0, 10),
    )
    .await;
    assert_eq!(status, 200);
    let mut first = Vec::new();
    while first.len() < 10 {
        let frame = next_frame(&mut socket).await;
        assert_eq!(frame["type"], "message", "{frame}");
        first.push((
            frame["value"]["n"].as_u64().unwrap(),
            frame["ack_id"].as_str().unwrap().to_owned(),
        ));
    }
    let acked: Vec<String> = first
        .iter()
        .filter(|(n, _)| n % 2 == 0)
        .map(|(_, id)| id.clone())
        .collect();
    socket
        .send(Message::text(
            json!({"type": "ack", "ack_ids": acked, "request_id": "a1"}).to_string(),
        ))
        .await
        .unwrap();
    // The confirmation (a spontaneous leader change before it would
    // redeliver some messages first, and make their old ids unknown).
    let reply = loop {
        let frame = next_frame(&mut socket).await;
        if frame["type"] == "acked" {
            break frame;
        }
        assert_eq!(frame["type"], "message", "{frame}");
    };
    let unknown: BTreeSet<&str> = reply["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let acked_n: BTreeSet<u64> = first
        .iter()
        .filter(|(n, id)| n % 2 == 0 && !unknown.contains(id.as_str()))
        .map(|(n, _)| *n)
        .collect();
    assert!(!acked_n.is_empty(), "some acks confirmed: {reply}");

    // The serving node dies; the socket stays open and goes on: every
    // message not confirmed acked comes (again), no confirmed one does.
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let (status, _, _) = until_taken(
        &cluster,
        entry,
        "POST",
        "/v1/topics/jobs/messages",
        &produce(10, 15),
    )
    .await;
    assert_eq!(status, 200);
    let expected: BTreeSet<u64> = (0..15).filter(|n| !acked_n.contains(n)).collect();
    let mut after = BTreeSet::new();
    while !expected.is_subset(&after) {
        let frame =
            match tokio::time::timeout(Duration::from_secs(20), next_frame(&mut socket)).await {
                Ok(frame) => frame,
                Err(_) => panic!(
                    "got {after:?} of {expected:?}; entry log:\n{}",
                    cluster.node(entry).log_tail()
                ),
            };
        assert_eq!(frame["type"], "message", "{frame}");
        let n = frame["value"]["n"].as_u64().unwrap();
        assert!(!acked_n.contains(&n), "{n} was acked: {frame}");
        after.insert(n);
    }
}

#[tokio::test]
async fn dead_letters_go_to_a_replicated_topic_from_any_node() {
    let (cluster, _) =
        jobs_cluster(json!({"partitions": 3}), 2, json!({"start": "earliest"})).await;
    let messages: Vec<Value> = (0..6)
        .map(|n| json!({"key": format!("k{n}"), "value": {"n": n}}))
        .collect();
    let (status, _, _) = until_taken(
        &cluster,
        3,
        "POST",
        "/v1/topics/jobs/messages",
        &json!({ "messages": messages }),
    )
    .await;
    assert_eq!(status, 200);
    let got = pull_n(&cluster, 1, 6, WITHIN).await;
    let ids: Vec<String> = got.iter().map(|(_, id)| id.clone()).collect();
    let (status, body, _) = until_taken(
        &cluster,
        3,
        "POST",
        "/v1/topics/jobs/subscriptions/work/nack",
        &json!({"ack_ids": ids, "retry": false, "reason": "poison"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acked"], 6, "{body}");

    // The dead-letter topic is created cluster-wide and holds one copy of
    // each, with the server's headers, on every node.
    let deadline = Instant::now() + WITHIN;
    for id in 1..=3 {
        loop {
            let reply = cluster
                .node(id)
                .get("/v1/topics/jobs.work.dlq/partitions/0/messages?offset=0&limit=100")
                .await;
            let copies = if reply.status == 200 {
                reply.json()["messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            if copies.len() == 6 {
                let reasons: BTreeSet<&str> = copies
                    .iter()
                    .filter_map(|m| m["headers"]["weir-dead-letter-reason"].as_str())
                    .collect();
                assert_eq!(reasons, BTreeSet::from(["poison"]), "node {id}: {copies:?}");
                break;
            }
            assert!(
                copies.len() < 6 && Instant::now() < deadline,
                "node {id}: {} copies: {}",
                copies.len(),
                reply.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The copies commit before the originals are settled as dead letters
    // (two commits through the cluster: at least once, never lost), so the
    // records may trail the copies briefly.
    let deadline = Instant::now() + WITHIN;
    loop {
        let (status, body, _) = until_taken(
            &cluster,
            1,
            "GET",
            "/v1/topics/jobs/subscriptions/work/dead-letters",
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let listed = body["dead_letters"].as_array().unwrap().len();
        if listed == 6 {
            break;
        }
        assert!(listed < 6 && Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn pausing_through_one_node_pauses_it_everywhere_and_across_a_failover() {
    let (mut cluster, served_by) =
        jobs_cluster(json!({"partitions": 1}), 2, json!({"start": "earliest"})).await;
    let (status, body, _) = until_taken(
        &cluster,
        1,
        "POST",
        "/v1/topics/jobs/subscriptions/work/pause",
        &json!({"reason": "maintenance"}),
    )
    .await;
    assert!(status == 200 || status == 204, "{status}: {body}");
    let (status, _, _) = until_taken(
        &cluster,
        3,
        "POST",
        "/v1/topics/jobs/messages",
        &json!({"messages": [{"value": {"n": 1}}, {"value": {"n": 2}}]}),
    )
    .await;
    assert_eq!(status, 200);
    for id in 1..=3 {
        let (status, info, _) = until_taken(
            &cluster,
            id,
            "GET",
            "/v1/topics/jobs/subscriptions/work",
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["paused"], true, "node {id}: {info}");
        assert_eq!(info["paused_reason"], "maintenance", "node {id}: {info}");
    }
    assert!(
        pull_n(&cluster, 2, 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "paused: nothing delivered"
    );

    // Still paused after the serving node dies (the pause is the
    // cluster's), delivering again once resumed through another node.
    let victim: u64 = served_by.unwrap().parse().unwrap();
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let survivor = (1..=3).find(|&id| id != victim).unwrap();
    assert!(
        pull_n(&cluster, survivor, 1, Duration::from_secs(3))
            .await
            .is_empty(),
        "still paused on the new serving node"
    );
    let (status, body, _) = until_taken(
        &cluster,
        survivor,
        "POST",
        "/v1/topics/jobs/subscriptions/work/resume",
        &json!({}),
    )
    .await;
    assert!(status == 200 || status == 204, "{status}: {body}");
    let got = pull_n(&cluster, survivor, 2, WITHIN).await;
    let values: BTreeSet<u64> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(values, BTreeSet::from([1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_waiting_on_a_frozen_serving_node_moves_with_the_failover() {
    let (cluster, served_by) =
        jobs_cluster(json!({"partitions": 2}), 1, json!({"start": "earliest"})).await;
    let victim: u64 = served_by.unwrap().parse().unwrap();
    let via = (1..=3).find(|&id| id != victim).unwrap();

    // A long poll through another node, forwarded to the serving one.
    let url = cluster
        .node(via)
        .url("/v1/topics/jobs/subscriptions/work/pull");
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let answer = reqwest::Client::new()
            .post(url)
            .json(&json!({"max_messages": 10, "wait_ms": 50_000}))
            .send()
            .await
            .expect("the poll is answered");
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.expect("a JSON answer");
        (status, body, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !poll.is_finished(),
        "the poll waits: nothing to deliver yet"
    );

    // The serving node freezes; once another node serves the topic's
    // subscriptions, a new message reaches the waiting poll through it.
    let pid = cluster.node(victim).pid().to_string();
    let frozen = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("run kill");
    assert!(frozen.success());
    let (status, body, _) = until_taken(
        &cluster,
        via,
        "POST",
        "/v1/topics/jobs/messages",
        &json!({"messages": [{"value": {"n": 7}, "partition": 0}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answered = tokio::time::timeout(WITHIN, poll).await;
    let thawed = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("run kill");
    assert!(thawed.success());
    let (status, body, waited) = answered
        .expect("the poll stayed with the frozen node")
        .expect("the poll task");
    assert_eq!(status, 200, "{body}");
    let values: Vec<u64> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(values, vec![7], "{body}");
    assert!(
        waited < Duration::from_secs(45),
        "answered after {waited:?}, not at the end of its wait"
    );
}
