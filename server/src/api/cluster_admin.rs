//! Cluster membership changes: add and remove nodes, move the metadata
//! group's leadership (admin on every topic). A lone server answers 409.

use axum::extract::State;
use axum::http::StatusCode;
use weir_protocol::{AddNodeRequest, TransferLeaderRequest};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath};
use super::openapi::{Errors, TAG_OPS};
use super::AppState;
use crate::broker::BrokerError;
use crate::cluster::{Cluster, MembershipChange};

fn cluster(state: &AppState) -> Result<&Cluster, BrokerError> {
    state.cluster.as_deref().ok_or_else(|| {
        BrokerError::Conflict(
            "this server runs alone: start it with --node-id and --peers to form a cluster".into(),
        )
    })
}

/// Add a node to the cluster.
///
/// The node (started with `--node-id`, `--peers` and `--cluster-listen`)
/// joins as a learner, catches up with the metadata group, then becomes a
/// voter (joint consensus). Answers once it is a voter; 503 when it has
/// not caught up within 30 s (it stays a learner: retry to promote it).
/// Adding a member again changes nothing.
#[utoipa::path(
    post, path = "/v1/cluster/nodes", tag = TAG_OPS,
    request_body(content = AddNodeRequest, description = "The node and its node-to-node address"),
    responses((status = 204, description = "The node is a voting member"), Errors)
)]
pub async fn add_node(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<AddNodeRequest>,
) -> ApiResult<StatusCode> {
    let change = MembershipChange::Add {
        id: request.id,
        address: request.address,
    };
    cluster(&state)?.change_membership(change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a node from the cluster.
///
/// Never the last one. A node that still holds partition copies is marked
/// draining and the answer is 409 (`conflict`) saying how many it holds:
/// they move to the other nodes, and the same request then succeeds. A 409
/// also when the remaining nodes could not hold every topic's copies.
#[utoipa::path(
    delete, path = "/v1/cluster/nodes/{node}", tag = TAG_OPS,
    params(("node" = u64, Path, description = "Node id")),
    responses((status = 204, description = "The node is no longer a member"), Errors)
)]
pub async fn remove_node(
    State(state): State<AppState>,
    ApiPath(node): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    cluster(&state)?
        .change_membership(MembershipChange::Remove { id: node })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move the metadata group's leadership to another node.
///
/// Answers once the transfer is started; `GET /v1/cluster` shows the new
/// leader within an election.
#[utoipa::path(
    post, path = "/v1/cluster/transfer-leader", tag = TAG_OPS,
    request_body(content = TransferLeaderRequest, description = "The node to lead"),
    responses((status = 202, description = "Transfer started"), Errors)
)]
pub async fn transfer_leader(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TransferLeaderRequest>,
) -> ApiResult<StatusCode> {
    cluster(&state)?
        .change_membership(MembershipChange::TransferLeader { to: request.to })
        .await?;
    Ok(StatusCode::ACCEPTED)
}
