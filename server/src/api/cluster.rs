//! `GET /v1/cluster`: the nodes, their health, and who leads each
//! partition, as the answering node sees them.

use axum::extract::State;
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
