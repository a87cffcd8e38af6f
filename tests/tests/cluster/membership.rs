//! Membership at runtime: a fourth node added (learner, then voter),
//! the metadata leadership moved to it, then it is removed again; and what
//! a lone server and bad requests get.

use std::time::Duration;

use serde_json::json;

use crate::harness::TestServer;
use crate::nodes::{state_of, Cluster};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_node_is_added_made_leader_and_removed_at_runtime() {
    let mut cluster = Cluster::start_some(3, 4).await;
    let leader = cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    // Node 4 runs but belongs to no cluster: the others do not list it.
    cluster.start_node(4, &[1, 2, 3, 4]);
    let view = cluster.view(1).await.unwrap();
    assert_eq!(view["nodes"].as_array().unwrap().len(), 3);

    // Added through a follower; others reach node 4 at this address.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let address = cluster.mesh.addr(follower, 4).to_string();
    let added = cluster
        .node(follower)
        .post_json("/v1/cluster/nodes", &json!({"id": 4, "address": address}))
        .await;
    assert_eq!(added.status, 204, "{}", added.text);
    let again = cluster
        .node(leader)
        .post_json("/v1/cluster/nodes", &json!({"id": 4, "address": address}))
        .await;
    assert_eq!(again.status, 204, "adding a member again: {}", again.text);
    for id in 1..=4 {
        cluster
            .wait_view(id, WITHIN, "node 4 a voting member", |v| {
                state_of(v, 4) == "follower" || state_of(v, 4) == "leader"
            })
            .await;
    }
    // A topic created now can be placed on four nodes.
    let wide = cluster
        .node(4)
        .put_json("/v1/topics/wide", &json!({"replication_factor": 4}))
        .await;
    assert_eq!(wide.status, 201, "{}", wide.text);

    // Leadership moves to node 4 on request (asynchronously: the request
    // starts it; a transfer that loses an election race is asked again).
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let moved = cluster
            .node(follower)
            .post_json("/v1/cluster/transfer-leader", &json!({"to": 4}))
            .await;
        assert_eq!(moved.status, 202, "{}", moved.text);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cluster.agreed_leader(&[1, 2, 3, 4], WITHIN).await == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 never took the lead"
        );
    }

    // Node 4 holds replicas of `wide`: refused until the topic is gone.
    let refused = cluster.node(1).delete("/v1/cluster/nodes/4").await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    let deleted = cluster.node(1).delete("/v1/topics/wide").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    // Its own removal: the leader hands over and the others go on.
    let removed = cluster.node(1).delete("/v1/cluster/nodes/4").await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    let leader = cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    assert_ne!(leader, 4);
    cluster
        .wait_view(leader, WITHIN, "node 4 no longer a member", |v| {
            state_of(v, 4) == "absent"
        })
        .await;
    let unknown = cluster.node(2).delete("/v1/cluster/nodes/9").await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
}

#[tokio::test]
async fn a_lone_server_has_no_membership_to_change() {
    let server = TestServer::start();
    let add = server
        .post_json(
            "/v1/cluster/nodes",
            &json!({"id": 2, "address": "127.0.0.1:9"}),
        )
        .await;
    assert_eq!(add.status, 409, "{}", add.text);
    assert_eq!(add.json()["code"], "conflict");
    let bad = server
        .post_json("/v1/cluster/nodes", &json!({"id": 2}))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}

/// Partition copies per node, as node `id`'s view names them.
async fn copies(cluster: &Cluster, id: u64, topic: &str) -> std::collections::BTreeMap<u64, usize> {
    let mut count = std::collections::BTreeMap::new();
    let view = cluster.view(id).await.unwrap();
    for p in view["partitions"].as_array().unwrap() {
        if p["topic"] != topic {
            continue;
        }
        for r in p["replicas"].as_array().unwrap() {
            *count.entry(r.as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    count
}

/// Every message of `topic` read through node `id`: `(partition, value)`.
async fn values(cluster: &Cluster, id: u64, topic: &str, partitions: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let page = cluster
            .node(id)
            .get(&format!(
                "/v1/topics/{topic}/partitions/{p}/messages?offset=0&limit=1000"
            ))
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        for m in page.json()["messages"].as_array().unwrap() {
            out.push((p, m["value"].as_u64().unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn copies_move_to_a_new_node_and_off_a_leaving_one() {
    let mut cluster = Cluster::start_some(3, 4).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let created = cluster
        .node(1)
        .put_json(
            "/v1/topics/spread",
            &json!({"partitions": 4, "replication_factor": 3, "dedupe_window_ms": 3_600_000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let produce = |from: u64, to: u64| {
        let messages: Vec<_> = (from..to)
            .map(|i| json!({"key": format!("k{i}"), "value": i, "id": format!("m{i}")}))
            .collect();
        json!({ "messages": messages })
    };
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let reply = cluster
            .node(1)
            .post_json("/v1/topics/spread/messages", &produce(0, 40))
            .await;
        if reply.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = values(&cluster, 1, "spread", 4).await;
    assert_eq!(before.len(), 40);

    // A fourth node joins: it takes its share of the 12 copies.
    cluster.start_node(4, &[1, 2, 3, 4]);
    let address = cluster.mesh.addr(1, 4).to_string();
    let added = cluster
        .node(1)
        .post_json("/v1/cluster/nodes", &json!({"id": 4, "address": address}))
        .await;
    assert_eq!(added.status, 204, "{}", added.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let placed = copies(&cluster, 1, "spread").await;
        let ready = cluster.node(4).get("/readyz").await.status == 200;
        if placed.get(&4) == Some(&3) && placed.values().all(|n| *n == 3) && ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "copies not spread over four nodes: {placed:?} (node 4 ready: {ready})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Node 4 serves everything, and writes go on through it.
    let through = values(&cluster, 4, "spread", 4).await;
    if through != before {
        let view = cluster.view(4).await;
        let local = cluster.node(4).get("/v1/topics/spread").await.text;
        let log: Vec<String> = cluster
            .node(4)
            .log_tail()
            .lines()
            .filter(|l| l.contains("weir_server"))
            .map(str::to_owned)
            .collect();
        panic!(
            "node 4 reads {through:?}\nview {view:#?}\nlocal {local}\nlog {}",
            log.join("\n")
        );
    }
    let through_4 = cluster
        .node(4)
        .post_json("/v1/topics/spread/messages", &produce(40, 60))
        .await;
    assert_eq!(through_4.status, 200, "{}", through_4.text);

    // It leaves again: refused while its copies move off, then removed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let removed = cluster.node(2).delete("/v1/cluster/nodes/4").await;
        if removed.status == 204 {
            break;
        }
        assert_eq!(removed.status, 409, "{}", removed.text);
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 still holds copies: {}",
            removed.text
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let placed = copies(&cluster, 2, "spread").await;
    assert_eq!(placed.get(&4), None, "{placed:?}");
    let after = values(&cluster, 2, "spread", 4).await;
    assert_eq!(after.len(), 60, "nothing acknowledged lost: {after:?}");
}
