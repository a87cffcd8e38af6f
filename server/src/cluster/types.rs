//! The Raft type configuration shared by every group, and what a node is.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::command::{Command, Reply};
use super::machine::GroupMachine;

/// A node's id, as given by `--node-id` (never reused for another node).
pub type NodeId = u64;

/// A Raft group's id: 0 is the metadata group; partition groups get ids
/// from the metadata group, never reused.
pub use crate::storage::raft_log::GroupId;

/// The metadata group.
pub const METADATA_GROUP: GroupId = 0;

/// How to reach a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its node-to-node listener (`host:port`).
    pub cluster_address: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cluster_address)
    }
}

openraft::declare_raft_types!(
    /// Weir's Raft types: u64 node ids, standard (one leader per term)
    /// leader ids.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = NodeInfo,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
);

/// Any group's Raft handle (metadata or partition).
pub type Raft = openraft::Raft<TypeConfig, GroupMachine>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, std::io::Cursor<Vec<u8>>>;
