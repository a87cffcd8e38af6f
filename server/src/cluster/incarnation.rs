//! A node's incarnation, and rejoining after losing its data. The
//! incarnation is a random number stored in the node's data directory the
//! first time the node starts on it, so a node whose directory was wiped
//! (or replaced) starts with a new one.
//!
//! openraft's leaders refuse (by stopping the group) a follower whose log
//! went backwards, since that is normally a bug. A wiped follower is the
//! one legitimate case, and the documented procedure is to tell the
//! leader first. So a node on a new incarnation announces itself to every
//! peer before it takes any Raft traffic (`POST /hello`); each peer then
//! allows one log reversion of that node in every group it leads, and the
//! node catches up from entries like a new replica.
//!
//! What this does not repair: a wiped node has also forgotten the votes it
//! cast, so in a term where it already voted it could vote again. Replace
//! a lost disk while the cluster has a stable leader (`docs/cluster.md`).

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::node::Cluster;
use super::types::{NodeId, METADATA_GROUP};
use crate::storage::{RaftValue, Store, WriteSet};

/// How long a new incarnation waits for peers to hear of it before taking
/// Raft traffic anyway (a peer down now learns of it from its leader's
/// fresh replication when it comes back).
const ANNOUNCE_FOR: Duration = Duration::from_secs(10);

/// A node telling its peers it starts over on an empty data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub node: NodeId,
    pub incarnation: u64,
}

/// This node's incarnation, and whether it was created now (an empty
/// data directory: a new node, or one whose data was lost).
pub async fn load_or_create(store: &Arc<Store>) -> io::Result<(u64, bool)> {
    if let Some(bytes) = store
        .raft_value(METADATA_GROUP, RaftValue::Incarnation)
        .map_err(io::Error::other)?
    {
        return Ok((decode(&bytes)?, false));
    }
    let incarnation = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut set = WriteSet::new();
    set.put_raft_value(
        METADATA_GROUP,
        RaftValue::Incarnation,
        encode(&incarnation)?,
    );
    store.commit(set).await.map_err(io::Error::other)?;
    Ok((incarnation, true))
}

impl Cluster {
    /// Tells every peer about this node's new incarnation (retrying until
    /// each answered or `ANNOUNCE_FOR` passed), then opens the node to Raft
    /// traffic.
    pub(super) async fn announce(self: Arc<Self>) {
        let hello = Hello {
            node: self.node_id(),
            incarnation: self.incarnation(),
        };
        let deadline = Instant::now() + ANNOUNCE_FOR;
        let mut waiting: Vec<NodeId> = self.other_ids();
        while !waiting.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for peer in waiting {
                let Some(address) = self.address_of(peer) else {
                    continue;
                };
                let told: Result<(), _> = self
                    .peers()
                    .call(peer, &address, "/hello", &hello, Duration::from_secs(1))
                    .await;
                if told.is_err() {
                    still.push(peer);
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(?waiting, "peers not told of this node's new incarnation");
        }
        tracing::info!(
            incarnation = hello.incarnation,
            "starting on an empty data directory: peers told"
        );
        self.raft_open().store(true, Ordering::SeqCst);
    }

    /// A peer starts over: allow its log to go back in every group this
    /// node leads that it is a member of.
    pub(super) async fn welcome(&self, hello: &Hello) {
        let me = self.node_id();
        for (_, raft) in self.rafts() {
            let m = raft.metrics().borrow_watched().clone();
            let member = m
                .membership_config
                .membership()
                .get_node(&hello.node)
                .is_some();
            if m.current_leader == Some(me) && member {
                if let Err(e) = raft.trigger().allow_next_revert(&hello.node, true).await {
                    tracing::warn!(node = hello.node, error = %e, "could not prepare for a wiped node");
                }
            }
        }
        tracing::info!(
            node = hello.node,
            incarnation = hello.incarnation,
            "a node starts over on an empty data directory"
        );
    }
}
