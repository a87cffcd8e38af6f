//! Changing the cluster's membership at runtime: adding a node (a learner
//! that catches up first, then a voter, through openraft's joint
//! consensus), removing one, and handing the metadata group's leadership to
//! another node. Changes run on the metadata leader; any other node
//! forwards them there.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::metadata::MetaCommand;
use super::node::Cluster;
use super::types::{NodeId, NodeInfo};
use crate::broker::BrokerError;

/// How long a new node may take to catch up before it becomes a voter.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a change may wait for a metadata leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A change of the cluster's membership or leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Adds node `id`, reached at `address` (its `--cluster-listen`).
    Add { id: NodeId, address: String },
    /// Removes node `id` (once its partition copies moved elsewhere).
    Remove { id: NodeId },
    /// Makes node `to` the metadata group's leader.
    TransferLeader { to: NodeId },
}

/// Why a change was refused, as the leader answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The request cannot apply to this cluster (which node, why).
    Invalid(String),
    /// It conflicts with the cluster's state.
    Conflict(String),
    /// Not done in time; retrying is safe.
    Unavailable(String),
}

impl From<Refusal> for BrokerError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(why) => BrokerError::invalid("node", why),
            Refusal::Conflict(why) => BrokerError::Conflict(why),
            Refusal::Unavailable(why) => {
                tracing::warn!(why, "cluster membership change not done");
                BrokerError::Unavailable
            }
        }
    }
}

impl Cluster {
    /// Refuses the removal of `id` while it holds partition copies, after
    /// marking it as draining so that the placement moves them to the
    /// other nodes (the caller retries once they are gone); refuses it for
    /// good when the other nodes could not hold every topic's copies.
    async fn empty_before_removal(
        &self,
        id: NodeId,
        voters: &BTreeSet<NodeId>,
    ) -> Result<(), Refusal> {
        let data = self.state_machine().data();
        let copies = data
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|a| a.replicas.contains(&id))
            .count();
        if copies == 0 {
            return Ok(());
        }
        let others = voters
            .iter()
            .filter(|v| **v != id && !data.draining.contains(v))
            .count();
        if let Some((name, topic)) = data
            .topics
            .iter()
            .find(|(_, t)| t.config.replication_factor as usize > others)
        {
            return Err(Refusal::Conflict(format!(
                "topic `{name}` keeps {} copies of each partition; without node {id} there would be {others} nodes to hold them",
                topic.config.replication_factor
            )));
        }
        let drain = MetaCommand::Drain {
            node: id,
            draining: true,
        };
        self.propose(drain)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Err(Refusal::Conflict(format!(
            "node {id} still holds {copies} partition copies; they are being moved to the other nodes: retry the removal once `weir cluster --partitions` shows none on it"
        )))
    }

    /// Applies `change` through the metadata leader.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), BrokerError> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            let me = self.node_id();
            let outcome = match self.metadata().current_leader().await {
                Some(leader) if leader == me => Some(self.apply_membership(change.clone()).await),
                Some(leader) => match self.address_of(leader) {
                    Some(address) => self
                        .peers()
                        .call::<_, Result<(), Refusal>>(
                            leader,
                            &address,
                            "/meta/membership",
                            &change,
                            CATCH_UP_TIMEOUT + Duration::from_secs(5),
                        )
                        .await
                        .ok(),
                    None => None,
                },
                None => None,
            };
            match outcome {
                Some(result) => return result.map_err(BrokerError::from),
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => return Err(BrokerError::Unavailable),
            }
        }
    }

    /// Applies `change` on this node, which must lead the metadata group.
    pub(super) async fn apply_membership(&self, change: MembershipChange) -> Result<(), Refusal> {
        let voters: BTreeSet<NodeId> = self.state_machine().voters().into_iter().collect();
        match change {
            MembershipChange::Add { id, address } => {
                if id == 0 {
                    return Err(Refusal::Invalid("node ids start at 1".into()));
                }
                if voters.contains(&id) {
                    return Ok(());
                }
                let node = NodeInfo {
                    cluster_address: address,
                };
                let learner = self.metadata().add_learner(id, node, true);
                match tokio::time::timeout(CATCH_UP_TIMEOUT, learner).await {
                    Err(_) => {
                        return Err(Refusal::Unavailable(format!(
                            "node {id} joined as a learner but has not caught up within {CATCH_UP_TIMEOUT:?}; retry to promote it"
                        )))
                    }
                    Ok(Err(e)) => return Err(Refusal::Unavailable(e.to_string())),
                    Ok(Ok(_)) => {}
                }
                self.metadata()
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map(drop)
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                tracing::info!(node = id, "node added to the cluster");
                Ok(())
            }
            MembershipChange::Remove { id } => {
                if !voters.contains(&id) {
                    return Err(Refusal::Invalid(format!("node {id} is not a member")));
                }
                if voters.len() == 1 {
                    return Err(Refusal::Conflict("the last node cannot be removed".into()));
                }
                self.empty_before_removal(id, &voters).await?;
                self.metadata()
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map(drop)
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                // Its draining mark has served its purpose.
                let undrain = MetaCommand::Drain {
                    node: id,
                    draining: false,
                };
                if let Err(e) = self.propose(undrain).await {
                    tracing::warn!(node = id, error = %e, "could not clear a removed node's draining mark");
                }
                tracing::info!(node = id, "node removed from the cluster");
                Ok(())
            }
            MembershipChange::TransferLeader { to } => {
                if !voters.contains(&to) {
                    return Err(Refusal::Invalid(format!("node {to} is not a member")));
                }
                if to == self.node_id() {
                    return Ok(());
                }
                self.metadata()
                    .trigger()
                    .transfer_leader(to)
                    .await
                    .map_err(|e| Refusal::Unavailable(e.to_string()))
            }
        }
    }
}
