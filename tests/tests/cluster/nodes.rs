//! A cluster of real server processes behind a proxy mesh: starts them,
//! restarts them (their node-to-node port changes; the mesh follows), and
//! waits (bounded) for what `GET /v1/cluster` reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_tests::proxy::Mesh;

use crate::harness::TestServer;

/// Shared secret of the test clusters.
const SECRET: &str = "test-cluster-secret-0123456789";
/// Faster than the defaults, so failover tests take seconds.
const HEARTBEAT_MS: &str = "100";
const ELECTION_MS: &str = "600";

pub struct Cluster {
    pub nodes: BTreeMap<u64, TestServer>,
    pub mesh: Mesh,
    _secret: tempfile::NamedTempFile,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) and routes every link through the mesh.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_some(n, n).await
    }

    /// Reserves the mesh for nodes 1..=`total` but starts only 1..=`members`
    /// (peers of each other); the others can be started later with
    /// [`Cluster::start_node`] and added to the cluster.
    pub async fn start_some(members: u64, total: u64) -> Cluster {
        let ids: Vec<u64> = (1..=total).collect();
        let mesh = Mesh::reserve(&ids).await.expect("reserve the proxy mesh");
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), SECRET).unwrap();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            mesh,
            _secret: secret,
        };
        let member_ids: Vec<u64> = (1..=members).collect();
        for &id in &member_ids {
            cluster.start_node(id, &member_ids);
        }
        cluster
    }

    /// Starts node `id` with `peers` (ids) as its `--peers`.
    pub fn start_node(&mut self, id: u64, peers: &[u64]) {
        let peers: Vec<String> = peers
            .iter()
            .map(|&other| {
                let address = if other == id {
                    // Its own entry only names it in the membership.
                    "127.0.0.1:1".to_owned()
                } else {
                    self.mesh.addr(id, other).to_string()
                };
                format!("{other}={address}")
            })
            .collect();
        let args = [
            "--node-id".to_owned(),
            id.to_string(),
            "--peers".to_owned(),
            peers.join(","),
            "--cluster-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--cluster-secret-file".to_owned(),
            self._secret.path().display().to_string(),
            "--cluster-heartbeat-ms".to_owned(),
            HEARTBEAT_MS.to_owned(),
            "--cluster-election-timeout-ms".to_owned(),
            ELECTION_MS.to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // openraft logs every vote at info: keep the tail for what matters.
        let server = TestServer::start_with_env(&args, &[("RUST_LOG", "info,openraft=warn")]);
        self.mesh
            .set_upstream(id, cluster_address(&server))
            .unwrap();
        self.nodes.insert(id, server);
    }

    pub fn node(&self, id: u64) -> &TestServer {
        &self.nodes[&id]
    }

    /// Starts a stopped (or killed) node again on its data directory.
    pub fn restart(&mut self, id: u64) {
        let server = self.nodes.get_mut(&id).unwrap();
        server.restart();
        let address = cluster_address(server);
        self.mesh.set_upstream(id, address).unwrap();
    }

    /// `GET /v1/cluster` of one node, if it answers.
    pub async fn view(&self, id: u64) -> Option<Value> {
        let reply = self.node(id).get("/v1/cluster").await;
        reply.status.is_success().then(|| reply.json())
    }

    /// Waits until every node in `among` names the same leader (also in
    /// `among`) in the metadata group, and returns it.
    pub async fn agreed_leader(&self, among: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        loop {
            last.clear();
            for &id in among {
                last.push(self.view(id).await);
            }
            let leaders: Vec<Option<u64>> = last
                .iter()
                .map(|v| v.as_ref().and_then(|v| v["metadata"]["leader"].as_u64()))
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                if among.contains(leader) && leaders.iter().all(|l| *l == Some(*leader)) {
                    return *leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nodes {among:?} did not agree on a leader within {within:?}; last views: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `check` holds for node `id`'s view.
    pub async fn wait_view(
        &self,
        id: u64,
        within: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let view = self.view(id).await;
            if let Some(view) = view.as_ref().filter(|v| check(v)) {
                return view.clone();
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: {what} not seen within {within:?}; last view: {view:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The node-to-node address a server reported at start.
fn cluster_address(server: &TestServer) -> SocketAddr {
    let log = server.log_tail();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("joining the cluster"))
        .unwrap_or_else(|| panic!("no `joining the cluster` line in:\n{log}"));
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("cluster_listen="))
        .unwrap_or_else(|| panic!("no cluster_listen in `{line}`"));
    value.parse().unwrap()
}

/// The state node `of` has in `view`.
pub fn state_of(view: &Value, of: u64) -> String {
    view["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"].as_u64() == Some(of)))
        .and_then(|n| n["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}
