//! Proposing metadata changes from any node: to the metadata leader (this
//! node, or forwarded over the node-to-node listener), retried while a
//! leader is being elected, then waiting until this node has applied the
//! change too, so that what the caller reads next on this node includes it.

use std::time::{Duration, Instant};

use super::command::Command;
use super::metadata::{MetaCommand, MetaResponse, Proposed};
use super::node::Cluster;
use crate::broker::BrokerError;

/// How long a proposal may wait for a leader and for its commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts while no leader answers.
const RETRY_EVERY: Duration = Duration::from_millis(100);

impl Cluster {
    /// Proposes `command` and returns its outcome once applied here.
    /// Commands are idempotent (a retry after an unknown outcome finds the
    /// change made and answers `Unchanged`).
    pub(super) async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, BrokerError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        loop {
            match self.propose_once(&command).await {
                Ok(proposed) => {
                    self.wait_applied(proposed.index, deadline).await?;
                    return Ok(proposed.response);
                }
                Err(why) if Instant::now() < deadline => {
                    tracing::debug!(%command, why, "metadata proposal not accepted yet; retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Err(why) => {
                    tracing::warn!(%command, why, "metadata proposal failed: no leader answered in time");
                    return Err(BrokerError::Unavailable);
                }
            }
        }
    }

    /// Waits until this node has applied every metadata change committed
    /// before the call (a read barrier: what another node just created is
    /// known here after it).
    pub async fn sync_metadata(&self) -> Result<(), BrokerError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let me = self.node_id();
        let index = match self.metadata().current_leader().await {
            Some(leader) if leader == me => self.metadata_read_index().await,
            Some(leader) => {
                let address = self.address_of(leader).ok_or(BrokerError::Unavailable)?;
                self.peers()
                    .call::<_, Option<u64>>(
                        leader,
                        &address,
                        "/meta/read-index",
                        &(),
                        Duration::from_secs(5),
                    )
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        match index {
            Some(index) => self.wait_applied(index, deadline).await,
            None => Err(BrokerError::Unavailable),
        }
    }

    /// On the metadata leader: the index a read must have applied to see
    /// every committed change (`None` when this node does not lead).
    pub(super) async fn metadata_read_index(&self) -> Option<u64> {
        self.metadata()
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
            .ok()
            .map(|read| read.index())
    }

    async fn propose_once(&self, command: &MetaCommand) -> Result<Proposed, String> {
        let me = self.node_id();
        match self.metadata().current_leader().await {
            Some(leader) if leader == me => self
                .metadata()
                .client_write(Command::Meta(command.clone()))
                .await
                .map(|r| Proposed {
                    index: r.log_id.index,
                    response: r.data.into_meta(),
                })
                .map_err(|e| e.to_string()),
            Some(leader) => {
                let address = self
                    .address_of(leader)
                    .ok_or_else(|| format!("no address for leader {leader}"))?;
                self.peers()
                    .call(
                        leader,
                        &address,
                        "/meta/propose",
                        command,
                        Duration::from_secs(5),
                    )
                    .await
                    .map_err(|e| e.to_string())
            }
            None => Err("no metadata leader elected".into()),
        }
    }

    /// Waits (until `deadline`) for this node to apply entry `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), BrokerError> {
        let mut applied = self.state_machine().applied();
        let reached = tokio::time::timeout_at(deadline.into(), applied.wait_for(|a| *a >= index))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(BrokerError::Unavailable)
        }
    }
}
