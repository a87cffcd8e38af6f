//! The cluster: Raft groups on openraft, their storage, their network and
//! the node that runs them. The design is in `docs/cluster.md`.
//!
//! - `types.rs`: the Raft type configuration, node descriptions, group ids;
//! - `command.rs`: what entries carry (metadata changes, appended batches)
//!   and what applying them answers;
//! - `codec.rs`: how Raft values are stored (versioned envelopes);
//! - `incarnation.rs`: a node starting over on an empty data directory
//!   tells its peers first (so leaders accept its log going back);
//! - `groups.rs`: the partition groups this node holds, started and
//!   removed as the metadata assigns replicas;
//! - `handoff.rs`: a stopping node hands its groups' leadership to other
//!   voters first (controlled shutdown);
//! - `log_store.rs`: a group's Raft log over the store (one WAL sync for
//!   every group's appends);
//! - `metadata.rs`: the metadata group's state machine (membership, the
//!   nodes' addresses, topics and their partitions' placement);
//! - `partition.rs`: a partition group's state machine (committed batches
//!   become the partition's, published to readers);
//! - `machine.rs`: either state machine behind one type;
//! - `placement.rs`: moving partition copies when nodes join or leave;
//! - `produce.rs`: produce through the partition groups: on the leader,
//!   or forwarded to it;
//! - `read.rs`: reads of replicated partitions, served by their leader;
//! - `membership.rs`: adding and removing nodes, moving the metadata
//!   leadership (on the metadata leader, forwarded there);
//! - `propose.rs`: metadata changes from any node, through the leader;
//! - `subscriptions.rs`: subscription state through the partition
//!   groups: which node serves a topic's subscriptions, claims, the
//!   ordered relay of changes;
//! - `sub_meta.rs`: subscriptions created, changed, paused and deleted
//!   through the metadata group, made real on every node;
//! - `forward.rs`: client requests for subscriptions served elsewhere,
//!   forwarded over the node-to-node listener;
//! - `pipe.rs`: subscription WebSockets piped to the serving node, moved to
//!   the next one when it changes;
//! - `topics.rs`: topic changes cluster-wide, and the reconciler that
//!   makes each node's broker match the metadata;
//! - `network.rs`: the client side of node-to-node RPCs;
//! - `rpc.rs`: the node-to-node listener's routes (secret-authenticated);
//! - `node.rs`: starting the groups, forming the cluster, reporting state.
//!
//! Only this module names openraft; it reaches RocksDB only through the
//! store's Raft API (`storage/raft_log.rs`).

mod codec;
mod command;
pub mod forward;
mod groups;
mod handoff;
mod incarnation;
mod log_store;
mod machine;
mod membership;
mod metadata;
mod network;
mod node;
mod partition;
mod pipe;
mod placement;
mod produce;
mod propose;
mod read;
mod rpc;
mod sub_meta;
mod subscriptions;
mod topics;
mod types;

#[cfg(test)]
mod tests;

pub use membership::MembershipChange;
pub use node::{Cluster, ClusterConfig, ClusterError, ClusterHealth};
pub use subscriptions::Served;
pub use types::{NodeId, NodeInfo};
