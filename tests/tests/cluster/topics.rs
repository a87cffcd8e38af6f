//! Topics in a cluster: created, changed and deleted from any node through
//! the metadata group, present on every node, also on one that was down.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::nodes::Cluster;

const WITHIN: Duration = Duration::from_secs(30);

/// Waits until node `id` describes `topic` so that `check` holds (or, with
/// `None`, until it has no such topic).
async fn wait_topic(
    cluster: &Cluster,
    id: u64,
    topic: &str,
    check: Option<&dyn Fn(&Value) -> bool>,
) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let reply = cluster.node(id).get(&format!("/v1/topics/{topic}")).await;
        let done = match check {
            Some(check) => reply.status == 200 && check(&reply.json()),
            None => reply.status == 404,
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: topic `{topic}` not as expected within {WITHIN:?}: {} {}",
            reply.status,
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn topics_change_from_any_node_and_reach_every_node() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != follower).unwrap();

    // Created through a follower: 201, default replication factor 3.
    let reply = cluster
        .node(follower)
        .put_json("/v1/topics/orders", &json!({"partitions": 2}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json()["config"]["replication_factor"], 3);
    let again = cluster
        .node(other)
        .put_json("/v1/topics/orders", &json!({"partitions": 2}))
        .await;
    assert_eq!(
        again.status, 200,
        "the same spec changes nothing: {}",
        again.text
    );
    for id in 1..=3 {
        wait_topic(
            &cluster,
            id,
            "orders",
            Some(&|t| t["config"]["partitions"] == 2),
        )
        .await;
    }

    // A node that is down misses a change and catches up when back.
    cluster.nodes.get_mut(&other).unwrap().kill9();
    let grown = cluster
        .node(leader)
        .put_json("/v1/topics/orders", &json!({"partitions": 4}))
        .await;
    assert_eq!(grown.status, 200, "{}", grown.text);
    let created = cluster
        .node(follower)
        .put_json("/v1/topics/audit", &json!({"replication_factor": 2}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let deleted = cluster.node(leader).delete("/v1/topics/orders").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    cluster.restart(other);
    wait_topic(&cluster, other, "orders", None).await;
    wait_topic(
        &cluster,
        other,
        "audit",
        Some(&|t| t["config"]["replication_factor"] == 2),
    )
    .await;
    for id in 1..=3 {
        wait_topic(&cluster, id, "orders", None).await;
    }

    // Refused: more copies than nodes, changing the replication factor,
    // deleting what is not there.
    let too_many = cluster
        .node(leader)
        .put_json("/v1/topics/wide", &json!({"replication_factor": 5}))
        .await;
    assert_eq!(too_many.status, 409, "{}", too_many.text);
    assert_eq!(too_many.json()["code"], "conflict");
    let changed = cluster
        .node(follower)
        .put_json("/v1/topics/audit", &json!({"replication_factor": 3}))
        .await;
    assert_eq!(changed.status, 409, "{}", changed.text);
    let missing = cluster.node(other).delete("/v1/topics/nothing").await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}

#[tokio::test]
async fn a_lone_server_keeps_one_copy() {
    let server = TestServer::start();
    let reply = server
        .put_json("/v1/topics/t", &json!({"replication_factor": 2}))
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.json()["code"], "conflict");
    let reply = server
        .put_json("/v1/topics/t", &json!({"replication_factor": 0}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let reply = server
        .put_json("/v1/topics/t", &json!({"replication_factor": 1}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json()["config"]["replication_factor"], 1);
}
