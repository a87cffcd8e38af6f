//! Reads of replicated partitions: served by the partition's leader, so a
//! read that follows an acknowledged produce always sees it (a follower's
//! copy can be a heartbeat behind), and a node holding no replica of the
//! partition still answers. The node that takes the request forwards it
//! over the node-to-node listener when another node leads; it serves the
//! read itself when it leads, or — holding a replica — when no leader is
//! known or reachable within a few seconds (committed messages only,
//! possibly not the newest).

use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::ReadPolicy;

use serde::{Deserialize, Serialize};
use weir_protocol::ReadResponse;

use super::node::Cluster;
use super::types::GroupId;
use crate::broker::read::ReadFrom;
use crate::broker::BrokerError;

/// How long a node without a replica waits to learn a partition's leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Time a forwarded read may take beyond its own long-poll wait.
const READ_MARGIN: Duration = Duration::from_secs(5);

/// A read forwarded to a partition's leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedRead {
    pub offset: Option<u64>,
    pub timestamp: Option<u64>,
    pub limit: u32,
    pub wait_ms: u64,
}

/// The leader's answer to a forwarded read.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardedReadReply {
    Read(ReadResponse),
    Failed(String),
}

impl Cluster {
    /// Reads `partition` of `topic` through its leader when another node
    /// leads it; `None` when this node should serve it (not a replicated
    /// topic, this node leads it, or holds a replica and no leader answers).
    pub async fn read_at_leader(
        &self,
        topic: &str,
        partition: u32,
        from: ReadFrom,
        limit: u32,
        wait_ms: u64,
    ) -> Option<Result<ReadResponse, BrokerError>> {
        let group = *self
            .state_machine()
            .groups_of(topic)?
            .get(partition as usize)?;
        let holds_replica = self.groups().get(group).is_some();
        let mut leader = self.leader_of(group).filter(|l| self.recently_seen(*l));
        {
            // Wait a little for a leader to be known: a new topic's leaders
            // reach the other nodes within a probe, and a copy just added
            // to this node hears from its leader within a heartbeat (it is
            // not caught up before that).
            let deadline = std::time::Instant::now() + LEADER_WAIT;
            while leader.is_none() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                leader = self.leader_of(group).filter(|l| self.recently_seen(*l));
            }
        }
        let leader = match leader {
            Some(leader) if leader == self.node_id() => {
                self.ready_to_read(group).await;
                return None;
            }
            Some(leader) => leader,
            None if holds_replica => return None,
            None => {
                return Some(Err(BrokerError::Replication(format!(
                    "partition {partition} of `{topic}` has no leader this node can reach; retry"
                ))))
            }
        };
        let address = self.address_of(leader)?;
        let (offset, timestamp) = match from {
            ReadFrom::Offset(o) => (Some(o), None),
            ReadFrom::Timestamp(t) => (None, Some(t)),
        };
        let body = ForwardedRead {
            offset,
            timestamp,
            limit,
            wait_ms,
        };
        let path = format!("/partition/{group}/read");
        let timeout = Duration::from_millis(wait_ms) + READ_MARGIN;
        match self
            .peers()
            .call::<_, ForwardedReadReply>(leader, &address, &path, &body, timeout)
            .await
        {
            Ok(ForwardedReadReply::Read(response)) => Some(Ok(response)),
            Ok(ForwardedReadReply::Failed(why)) => Some(Err(BrokerError::Replication(why))),
            // The leader went away: a replica serves what it has.
            Err(_) if holds_replica => None,
            Err(e) => Some(Err(BrokerError::Replication(format!(
                "the read could not reach the partition's leader (node {leader}): {e}; retry"
            )))),
        }
    }

    /// On a partition's leader: the first read of its term waits until the
    /// leader has applied every entry committed before it (a node that
    /// just took over may not have yet); later reads see every produce the
    /// leader acknowledged, since it answers only once applied.
    async fn ready_to_read(&self, group: GroupId) {
        let Some(held) = self.groups().get(group) else {
            return;
        };
        let term = held.raft.metrics().borrow_watched().current_term;
        if held.read_term.load(Ordering::Acquire) == term {
            return;
        }
        let ready = tokio::time::timeout(
            LEADER_WAIT,
            held.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await;
        if matches!(ready, Ok(Ok(_))) {
            held.read_term.store(term, Ordering::Release);
        }
    }

    /// A read forwarded by another node: served from this node's replica.
    pub(super) async fn serve_forwarded_read(
        &self,
        group: GroupId,
        body: ForwardedRead,
    ) -> ForwardedReadReply {
        let Some(held) = self.groups().get(group) else {
            return ForwardedReadReply::Failed(format!("no replica of group {group} on this node"));
        };
        self.ready_to_read(group).await;
        let from = match (body.offset, body.timestamp) {
            (_, Some(t)) => ReadFrom::Timestamp(t),
            (o, None) => ReadFrom::Offset(o.unwrap_or(0)),
        };
        match self
            .broker()
            .read(&held.topic, held.partition, from, body.limit, body.wait_ms)
            .await
        {
            Ok(response) => ForwardedReadReply::Read(response),
            Err(e) => ForwardedReadReply::Failed(e.to_string()),
        }
    }
}
