//! Replicated produce: messages produced to any node go through their
//! partition's Raft group, are answered once a majority stored them, and
//! every replica then holds the same messages at the same offsets — also
//! after the leader of a partition is killed and comes back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nodes::Cluster;

const WITHIN: Duration = Duration::from_secs(30);

/// Produces through node `id` until it is accepted (leaders may still be
/// being elected); returns the results.
async fn produce_through(cluster: &Cluster, id: u64, topic: &str, messages: &Value) -> Vec<Value> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let reply = cluster
            .node(id)
            .post_json(
                &format!("/v1/topics/{topic}/messages"),
                &json!({ "messages": messages }),
            )
            .await;
        if reply.status == 200 {
            return reply.json()["results"].as_array().unwrap().clone();
        }
        assert_eq!(
            reply.status, 503,
            "only `unavailable` is retried: {}",
            reply.text
        );
        assert!(
            Instant::now() < deadline,
            "node {id} refused the produce for too long: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message of `topic` as node `id` serves it: partition →
/// `(offset, key, value)`.
async fn contents(
    cluster: &Cluster,
    id: u64,
    topic: &str,
) -> BTreeMap<u64, Vec<(u64, String, Value)>> {
    let info = cluster.node(id).topic(topic).await;
    let mut out = BTreeMap::new();
    for p in info["partitions"].as_array().unwrap() {
        let partition = p["partition"].as_u64().unwrap();
        let messages = cluster.node(id).read_all(topic, partition).await;
        out.insert(
            partition,
            messages
                .iter()
                .map(|m| {
                    (
                        m["offset"].as_u64().unwrap(),
                        m["key"].as_str().unwrap_or("").to_owned(),
                        m["value"].clone(),
                    )
                })
                .collect(),
        );
    }
    out
}

/// Waits until nodes `among` serve the same contents of `topic`, holding
/// `count` messages in all; returns them.
async fn converged(
    cluster: &Cluster,
    among: &[u64],
    topic: &str,
    count: usize,
) -> BTreeMap<u64, Vec<(u64, String, Value)>> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut views = Vec::new();
        for &id in among {
            views.push(contents(cluster, id, topic).await);
        }
        let total = |v: &BTreeMap<u64, Vec<(u64, String, Value)>>| -> usize {
            v.values().map(Vec::len).sum()
        };
        if total(&views[0]) == count && views.iter().all(|v| v == &views[0]) {
            return views.swap_remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "replicas of `{topic}` did not converge on {count} messages: {:?}; first: {:?}",
            views.iter().map(total).collect::<Vec<_>>(),
            views[0]
                .iter()
                .map(|(p, m)| (
                    p,
                    m.iter()
                        .map(|(_, _, v)| v["n"].as_u64().unwrap_or(0))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Messages `from..to`, each with an idempotency id: a produce answered
/// 503 (its fate unknown, e.g. its leader died mid-request) is sent again,
/// and the ids keep the retry from appending what was already appended.
fn batch(from: u64, to: u64) -> Value {
    (from..to)
        .map(|i| json!({"key": format!("k{}", i % 7), "value": {"n": i}, "id": format!("m{i}")}))
        .collect()
}

#[tokio::test]
async fn produced_messages_reach_every_replica_and_survive_the_leader() {
    let mut cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let created = cluster
        .node(1)
        .put_json(
            "/v1/topics/orders",
            &json!({"partitions": 2, "dedupe_window_ms": 3_600_000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);

    // Through every node: each forwards what it does not lead.
    let mut acked = Vec::new();
    for id in 1..=3 {
        let results =
            produce_through(&cluster, id, "orders", &batch(id * 100, id * 100 + 40)).await;
        acked.extend(results);
    }
    assert_eq!(acked.len(), 120);
    let before = converged(&cluster, &[1, 2, 3], "orders", 120).await;
    // Offsets are dense per partition and match what was acknowledged.
    for (partition, messages) in &before {
        let offsets: Vec<u64> = messages.iter().map(|m| m.0).collect();
        assert_eq!(offsets, (0..messages.len() as u64).collect::<Vec<_>>());
        let acked_here = acked
            .iter()
            .filter(|r| r["partition"] == *partition)
            .count();
        assert_eq!(acked_here, messages.len(), "partition {partition}");
    }

    // The leader of partition 0 dies; writes go on through the others.
    let view = cluster.view(1).await.unwrap();
    let victim = view["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "orders" && p["partition"] == 0)
        .and_then(|p| p["leader"].as_u64())
        .unwrap();
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let rest: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    for &id in &rest {
        produce_through(
            &cluster,
            id,
            "orders",
            &batch(1000 + id * 100, 1000 + id * 100 + 30),
        )
        .await;
    }
    let during = converged(&cluster, &rest, "orders", 180).await;
    // Nothing acknowledged before was lost or moved.
    for (partition, messages) in &before {
        assert_eq!(&during[partition][..messages.len()], &messages[..]);
    }

    // Back: it catches up from its peers and serves the same messages.
    cluster.restart(victim);
    let after = converged(&cluster, &[1, 2, 3], "orders", 180).await;
    assert_eq!(after, during);
}

#[tokio::test]
async fn idempotency_ids_hold_across_nodes_and_answers_name_the_leader() {
    let cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let created = cluster
        .node(2)
        .put_json("/v1/topics/pay", &json!({"partitions": 1}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let message = json!([{"id": "payment-1", "value": 1}, {"id": "payment-2", "value": 2}]);
    let first = produce_through(&cluster, 1, "pay", &message).await;
    assert!(first.iter().all(|r| r["duplicate"] == false), "{first:?}");
    // The same ids through the other nodes: duplicates at the same offsets.
    for id in [2, 3] {
        let again = produce_through(&cluster, id, "pay", &message).await;
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(a["offset"], b["offset"]);
            assert_eq!(b["duplicate"], true, "{again:?}");
        }
    }
    converged(&cluster, &[1, 2, 3], "pay", 2).await;

    // Every answer names the partition's leader.
    let leader = cluster.view(1).await.unwrap()["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "pay")
        .and_then(|p| p["leader"].as_u64())
        .unwrap();
    for id in 1..=3 {
        let reply = cluster
            .node(id)
            .post_json(
                "/v1/topics/pay/messages",
                &json!({"messages": [{"value": 3}]}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply
                .headers
                .get("weir-leader")
                .and_then(|v| v.to_str().ok()),
            Some(leader.to_string().as_str()),
            "node {id}"
        );
    }
}

#[tokio::test]
async fn reads_are_served_by_the_leader_from_any_node() {
    let cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    // One copy: two of the three nodes hold nothing of it.
    let created = cluster
        .node(1)
        .put_json(
            "/v1/topics/solo",
            &json!({"partitions": 1, "replication_factor": 1}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    for round in 0..3u64 {
        for id in 1..=3 {
            // What one node acknowledged, every node reads at once.
            let value = round * 10 + id;
            produce_through(&cluster, id, "solo", &json!([{"value": value}])).await;
            for reader in 1..=3 {
                let reply = cluster
                    .node(reader)
                    .get("/v1/topics/solo/partitions/0/messages?offset=0&limit=100")
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.text);
                assert!(reply.headers.contains_key("weir-leader"));
                let values: Vec<u64> = reply.json()["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["value"].as_u64().unwrap())
                    .collect();
                assert_eq!(values.last(), Some(&value), "read through node {reader}");
            }
        }
    }
}
