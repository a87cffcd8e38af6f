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
