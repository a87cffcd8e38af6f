//! Partition groups: every partition of a topic gets a Raft group on its
//! replicas, which elects a leader, and a new one when the leader dies;
//! leadership returns to each partition's preferred replica, so leaders
//! stay spread over the nodes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nodes::Cluster;

const WITHIN: Duration = Duration::from_secs(30);

/// `(partition → (leader, replicas))` of `topic` as node `id` reports it.
fn leaders(view: &Value, topic: &str) -> BTreeMap<u64, (Option<u64>, Vec<u64>)> {
    view["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["topic"] == topic)
        .map(|p| {
            let replicas = p["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_u64().unwrap())
                .collect();
            (
                p["partition"].as_u64().unwrap(),
                (p["leader"].as_u64(), replicas),
            )
        })
        .collect()
}

/// Waits until every node in `among` reports a leader (one of `among`)
/// for each of `count` partitions of `topic`, all agreeing; returns them.
async fn agreed_partition_leaders(
    cluster: &Cluster,
    among: &[u64],
    topic: &str,
    count: u64,
) -> BTreeMap<u64, (Option<u64>, Vec<u64>)> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut views = Vec::new();
        for &id in among {
            views.push(cluster.view(id).await.map(|v| leaders(&v, topic)));
        }
        if let Some(Some(first)) = views.first() {
            let complete = first.len() as u64 == count
                && first
                    .values()
                    .all(|(l, _)| l.is_some_and(|l| among.contains(&l)));
            if complete && views.iter().all(|v| v.as_ref() == Some(first)) {
                return first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "partitions of `{topic}` without agreed leaders among {among:?}: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an unlabelled (or fully written) gauge in metrics `text`.
fn gauge(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits until every partition of `topic` is led by its preferred replica
/// (the first listed), all nodes in `among` agreeing.
pub(crate) async fn balanced(
    cluster: &Cluster,
    among: &[u64],
    topic: &str,
    count: u64,
) -> BTreeMap<u64, (Option<u64>, Vec<u64>)> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let agreed = agreed_partition_leaders(cluster, among, topic, count).await;
        if agreed.values().all(|(l, r)| *l == r.first().copied()) {
            return agreed;
        }
        assert!(
            Instant::now() < deadline,
            "leaders of `{topic}` not on their preferred replicas: {agreed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn partitions_elect_leaders_on_their_replicas_and_fail_over() {
    let mut cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let reply = cluster
        .node(2)
        .put_json("/v1/topics/events", &json!({"partitions": 3}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let before = balanced(&cluster, &[1, 2, 3], "events", 3).await;
    for (leader, replicas) in before.values() {
        assert_eq!(replicas.len(), 3);
        assert_eq!(*leader, Some(replicas[0]));
    }
    let leading: std::collections::BTreeSet<u64> =
        before.values().map(|(l, _)| l.unwrap()).collect();
    assert_eq!(
        leading.len(),
        3,
        "one partition led by each node: {before:?}"
    );
    // The metrics say the same: one partition led by each node, none
    // leaderless or short of a replica.
    for id in 1..=3 {
        let text = cluster.node(id).get("/metrics").await.text;
        assert_eq!(gauge(&text, "weir_cluster_partitions_led"), 1, "node {id}");
        assert_eq!(gauge(&text, "weir_cluster_partitions_leaderless"), 0);
        assert_eq!(gauge(&text, "weir_cluster_partitions_under_replicated"), 0);
        assert_eq!(gauge(&text, "weir_cluster_nodes{state=\"unreachable\"}"), 0);
    }

    // One copy: the one replica leads it alone.
    let single = cluster
        .node(1)
        .put_json("/v1/topics/single", &json!({"replication_factor": 1}))
        .await;
    assert_eq!(single.status, 201, "{}", single.text);
    let one = agreed_partition_leaders(&cluster, &[1, 2, 3], "single", 1).await;
    let (leader, replicas) = &one[&0];
    assert_eq!(replicas.len(), 1);
    assert_eq!(*leader, Some(replicas[0]));

    // The leader of partition 0 dies: its partitions get new leaders.
    let victim = before[&0].0.unwrap();
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let rest: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    let after = agreed_partition_leaders(&cluster, &rest, "events", 3).await;
    assert!(after.values().all(|(l, _)| *l != Some(victim)));
    // Every partition now lacks a replica: its leader reports it.
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut short = 0;
        for &id in &rest {
            let text = cluster.node(id).get("/metrics").await.text;
            short += gauge(&text, "weir_cluster_partitions_under_replicated");
        }
        if short == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "under-replicated partitions: {short}, expected 3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Back: it rejoins every group and gets back the leadership of the
    // partitions it is the preferred replica of.
    cluster.restart(victim);
    let healed = balanced(&cluster, &[1, 2, 3], "events", 3).await;
    assert_eq!(healed, before);

    // Deleting the topic removes its groups everywhere.
    let deleted = cluster.node(victim).delete("/v1/topics/events").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    for id in 1..=3 {
        cluster
            .wait_view(id, WITHIN, "no partitions of a deleted topic", |v| {
                leaders(v, "events").is_empty()
            })
            .await;
    }
}

/// `key=<number>` from a log line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no `{key}` in `{line}`"))
        .parse()
        .unwrap()
}

// Several workers: stopping a node blocks one thread while it waits for the
// process, and the proxy mesh must carry the hand-off meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_hands_its_partitions_to_other_replicas_first() {
    let mut cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let reply = cluster
        .node(1)
        .put_json("/v1/topics/orders", &json!({"partitions": 3}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let before = balanced(&cluster, &[1, 2, 3], "orders", 3).await;
    let stopping = before[&0].0.unwrap();
    let led = before
        .values()
        .filter(|(l, _)| *l == Some(stopping))
        .count() as u64;

    // SIGTERM: before its groups stop, the node hands each one it leads to
    // another voter and waits until that one leads.
    cluster.nodes.get_mut(&stopping).unwrap().stop();
    let log = cluster.node(stopping).log_tail();
    let line = log
        .lines()
        .find(|l| l.contains("leadership handed off before stopping"))
        .unwrap_or_else(|| panic!("no hand-off in the stopped node's log:\n{log}"));
    let (groups, moved) = (field(line, "groups"), field(line, "moved"));
    assert!(groups >= led, "{line}: it led {led} partitions");
    assert_eq!(moved, groups, "{line}");
    let rest: Vec<u64> = (1..=3).filter(|&id| id != stopping).collect();
    let after = agreed_partition_leaders(&cluster, &rest, "orders", 3).await;
    assert!(
        after.values().all(|(l, _)| *l != Some(stopping)),
        "{after:?}"
    );

    // Back: it takes the partitions it is the preferred replica of again.
    cluster.restart(stopping);
    assert_eq!(balanced(&cluster, &[1, 2, 3], "orders", 3).await, before);
}
