//! `GET /v1/cluster`: the nodes of the cluster and who leads what.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    /// The node that answered.
    pub node_id: u64,
    /// Every member node (one, when the server runs alone).
    pub nodes: Vec<ClusterNode>,
    /// Per partition: its leader, replicas, commit index and follower lag.
    pub partitions: Vec<ClusterPartition>,
    /// The metadata group (membership, topics, assignments); absent when
    /// the server runs alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<GroupInfo>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    pub id: u64,
    /// Its node-to-node address (`--peers`), or its client address when
    /// the server runs alone.
    pub address: String,
    /// Where clients reach it, once it has registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_address: Option<String>,
    /// `leader`, `follower`, `learner` or `candidate` in the metadata
    /// group, or `unreachable` when the answering node has not heard from
    /// it within the election timeout.
    pub state: NodeState,
    /// How long ago the answering node last heard from it (0 for itself);
    /// absent if never.
    pub last_seen_ms: Option<u64>,
}

/// A node's state as seen by the answering node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Leader,
    Follower,
    Learner,
    Candidate,
    Unreachable,
}

impl NodeState {
    /// Every state, in a stable order.
    pub const ALL: [NodeState; 5] = [
        NodeState::Leader,
        NodeState::Follower,
        NodeState::Learner,
        NodeState::Candidate,
        NodeState::Unreachable,
    ];

    /// Its wire name (also the `state` label of `weir_cluster_nodes`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Leader => "leader",
            NodeState::Follower => "follower",
            NodeState::Learner => "learner",
            NodeState::Candidate => "candidate",
            NodeState::Unreachable => "unreachable",
        }
    }
}

/// One partition's replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterPartition {
    pub topic: String,
    pub partition: u32,
    /// The node leading it; absent while an election runs.
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    /// Index of the last committed entry (on a single node: the
    /// partition's next offset).
    pub commit_index: u64,
    /// Followers and how many entries each is behind the leader.
    pub followers: Vec<FollowerLag>,
}

/// A Raft group's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupInfo {
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub last_applied: u64,
    /// Known when the answering node leads the group.
    pub followers: Vec<FollowerLag>,
}

/// How far behind its leader a follower is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FollowerLag {
    pub id: u64,
    /// Entries the follower has yet to receive.
    pub lag: u64,
}

/// Body of `POST /v1/cluster/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNodeRequest {
    /// The node's `--node-id` (from 1; never reused for another node).
    #[schema(minimum = 1)]
    pub id: u64,
    /// Where the other nodes reach its node-to-node listener (`host:port`).
    #[schema(min_length = 3, max_length = 255)]
    pub address: String,
}

/// Body of `POST /v1/cluster/transfer-leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderRequest {
    /// The member to lead the metadata group.
    #[schema(minimum = 1)]
    pub to: u64,
}
