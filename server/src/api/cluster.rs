//! `GET /v1/cluster`: the nodes, their health, and who leads each
//! partition, as the answering node sees them.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::{Extension, Json};
use weir_protocol::{ClusterInfo, ClusterNode, ClusterPartition, NodeState};

use super::guard::Caller;
use super::openapi::{Errors, TAG_OPS};
use super::AppState;

/// Node id of a server running alone.
const ALONE: u64 = 1;

/// The cluster as this node sees it.
///
/// Nodes with their state in the metadata group (or `unreachable`) and
/// when this node last heard from each; per partition its leader,
/// replicas, commit index and follower lag — only of the topics the caller
/// holds some grant on. A server running alone answers with itself as the
/// only node, leading every partition.
#[utoipa::path(
    get, path = "/v1/cluster", tag = TAG_OPS,
    responses(
        (status = 200, description = "The cluster", body = ClusterInfo),
        Errors,
    )
)]
pub async fn cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<ClusterInfo> {
    let broker = &state.broker;
    Json(match &state.cluster {
        Some(cluster) => cluster.info(|topic| caller.sees_topic(broker, topic)),
        None => ClusterInfo {
            node_id: ALONE,
            nodes: vec![ClusterNode {
                id: ALONE,
                address: state.listen_address.clone(),
                api_address: Some(state.listen_address.clone()),
                state: NodeState::Leader,
                last_seen_ms: Some(0),
            }],
            partitions: local_partitions(&state, &caller),
            metadata: None,
        },
    })
}

/// A lone server's partitions: all its own.
fn local_partitions(state: &AppState, caller: &Caller) -> Vec<ClusterPartition> {
    let me = ALONE;
    let broker = &state.broker;
    broker
        .topic_names()
        .into_iter()
        .filter(|name| caller.sees_topic(broker, name))
        .filter_map(|name| broker.describe_topic(&name).ok())
        .flat_map(|topic| {
            let name = topic.name;
            topic.partitions.into_iter().map(move |p| ClusterPartition {
                topic: name.clone(),
                partition: p.partition,
                leader: Some(me),
                replicas: vec![me],
                commit_index: p.high_offset,
                followers: Vec::new(),
            })
        })
        .collect()
}

/// Header naming the node that leads the partition a request was about.
pub const LEADER_HEADER: &str = "weir-leader";

/// `Weir-Leader: <node id>` for a request about `partition` of `topic`,
/// when this node is in a cluster and knows that partition's leader
/// (clients may send the next request there directly).
pub fn leader_header(state: &AppState, topic: &str, partition: Option<u32>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let leader = state
        .cluster
        .as_ref()
        .zip(partition)
        .and_then(|(cluster, p)| cluster.partition_leader(topic, p));
    if let Some(leader) = leader {
        headers.insert(LEADER_HEADER, HeaderValue::from(leader));
    }
    headers
}
