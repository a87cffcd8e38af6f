//! Forming a cluster, electing the metadata group's leader, and failing
//! over when the leader is killed or cut off.

use std::time::{Duration, Instant};

use weir_tests::proxy::Mode;

use crate::harness::{built_binary, server_bin, TestServer};
use crate::nodes::{state_of, Cluster};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn three_nodes_form_one_cluster_and_fail_over_when_the_leader_dies() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    // Every node registers where clients reach it, and every node sees the
    // others (through its probes, not only through its leader).
    for id in 1..=3 {
        let view = cluster
            .wait_view(id, WITHIN, "all nodes registered and seen", |v| {
                let nodes = v["nodes"].as_array().unwrap();
                nodes.len() == 3
                    && nodes
                        .iter()
                        .all(|n| n["api_address"].is_string() && n["state"] != "unreachable")
            })
            .await;
        assert_eq!(view["node_id"], id);
        assert_eq!(state_of(&view, leader), "leader");
    }
    // The CLI shows the same, as a table and as JSON.
    let table = weir_cli(&cluster.node(leader).url(""), &["cluster", "--partitions"]);
    assert!(table.contains("metadata leader"), "{table}");
    assert!(table.matches("127.0.0.1:").count() >= 3, "{table}");
    let json: serde_json::Value = serde_json::from_str(&weir_cli(
        &cluster.node(leader).url(""),
        &["--output", "json", "cluster"],
    ))
    .unwrap();
    assert_eq!(json["metadata"]["leader"], leader);
    assert_eq!(json["nodes"].as_array().unwrap().len(), 3);

    // The leader's followers are caught up.
    cluster
        .wait_view(leader, WITHIN, "followers caught up", |v| {
            let f = v["metadata"]["followers"].as_array().unwrap();
            f.len() == 2 && f.iter().all(|f| f["lag"] == 0)
        })
        .await;

    // kill -9 the leader: the others elect one of themselves.
    let term = cluster.view(leader).await.unwrap()["metadata"]["term"]
        .as_u64()
        .unwrap();
    let killed_at = Instant::now();
    cluster.nodes.get_mut(&leader).unwrap().kill9();
    let rest: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new_leader = cluster.agreed_leader(&rest, WITHIN).await;
    println!(
        "metadata group: leader {leader} killed, {new_leader} elected after {:?}",
        killed_at.elapsed()
    );
    let view = cluster
        .wait_view(
            new_leader,
            WITHIN,
            "the dead leader reported unreachable",
            |v| state_of(v, leader) == "unreachable",
        )
        .await;
    assert!(view["metadata"]["term"].as_u64().unwrap() > term);

    // The old leader comes back as a follower of the new one and catches up.
    cluster.restart(leader);
    cluster
        .wait_view(leader, WITHIN, "rejoined as a follower", |v| {
            v["metadata"]["leader"] == new_leader && state_of(v, leader) == "follower"
        })
        .await;
    cluster
        .wait_view(new_leader, WITHIN, "rejoined node caught up", |v| {
            let f = v["metadata"]["followers"].as_array().unwrap();
            f.len() == 2 && f.iter().all(|f| f["lag"] == 0) && state_of(v, leader) == "follower"
        })
        .await;
}

#[tokio::test]
async fn a_leader_cut_off_from_the_others_is_replaced_and_steps_down() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let rest: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    cluster.mesh.partition(&[leader], &rest);
    let new_leader = cluster.agreed_leader(&rest, WITHIN).await;
    assert_ne!(new_leader, leader);
    // The majority sees the old leader as unreachable.
    cluster
        .wait_view(
            new_leader,
            WITHIN,
            "the cut-off node reported unreachable",
            |v| state_of(v, leader) == "unreachable",
        )
        .await;
    cluster.mesh.heal();
    // Healed: the old leader learns of the newer term and follows.
    let all: Vec<u64> = (1..=3).collect();
    let agreed = cluster.agreed_leader(&all, WITHIN).await;
    assert_ne!(
        agreed, leader,
        "a node cut off from the majority kept leading"
    );
}

#[tokio::test]
async fn a_one_way_partition_does_not_split_the_cluster() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    // The leader's traffic to one follower is black-holed (the follower
    // can still reach the leader): the cluster still has a leader that
    // every node reaching a majority agrees on once the link heals.
    cluster.mesh.set(leader, follower, Mode::Drop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.mesh.heal();
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
}

#[tokio::test]
async fn a_lone_server_reports_itself_leading_every_partition() {
    let server = TestServer::start();
    let reply = server
        .put_json("/v1/topics/orders", &serde_json::json!({"partitions": 2}))
        .await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let view = server.get("/v1/cluster").await.json();
    assert_eq!(view["node_id"], 1);
    assert_eq!(view["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(view["nodes"][0]["state"], "leader");
    assert!(view.get("metadata").is_none());
    let parts = view["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p["topic"] == "orders"
        && p["leader"] == 1
        && p["replicas"] == serde_json::json!([1])));
}

/// Runs `weir --server URL ARGS...` and returns its standard output
/// (asserting success).
fn weir_cli(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(built_binary("weir", "WEIR_CLI_BIN", "weir-client"))
        .args(["--server", url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the server with `args` and returns its exit code and output.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("WEIR_CONFIG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

#[test]
fn cluster_options_are_all_or_nothing_and_checked() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "short").unwrap();
    let secret_path = secret.path().display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["--node-id", "1"], "--peers"),
        (
            &[
                "--node-id",
                "4",
                "--peers",
                "1=127.0.0.1:9001,2=127.0.0.1:9002",
                "--cluster-listen",
                "127.0.0.1:0",
                "--cluster-secret-file",
                &secret_path,
            ],
            "must list this node",
        ),
        (
            &[
                "--node-id",
                "1",
                "--peers",
                "1=nowhere",
                "--cluster-listen",
                "127.0.0.1:0",
                "--cluster-secret-file",
                &secret_path,
            ],
            "host:port",
        ),
        (
            &[
                "--node-id",
                "1",
                "--peers",
                "1=127.0.0.1:9001",
                "--cluster-listen",
                "127.0.0.1:0",
                "--cluster-secret-file",
                &secret_path,
            ],
            "at least 16 bytes",
        ),
    ];
    for (args, expected) in cases {
        let (code, text) = refused(args);
        assert_ne!(code, Some(0), "{args:?} started:\n{text}");
        assert!(
            text.contains(expected),
            "{args:?}: no `{expected}` in:\n{text}"
        );
    }
}
