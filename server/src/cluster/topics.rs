//! Topics in a cluster: created, changed and deleted through the metadata
//! group from any node, then made real on every node by the reconciler,
//! which brings the node's broker and its partition groups in line with
//! the metadata (after every applied change, and every few seconds to retry
//! what failed).

use std::sync::Arc;
use std::time::Duration;

use weir_protocol::TopicSpec;

use super::metadata::{MetaCommand, MetaData, MetaResponse};
use super::node::Cluster;
use crate::broker::topic::{apply_spec, spec_of};
use crate::broker::{check_name, BrokerError, Upsert};

/// Replication factor of a topic created without one (fewer nodes: all).
const DEFAULT_REPLICATION_FACTOR: u32 = 3;
/// Period of the reconciler's retries.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

type Result<T> = std::result::Result<T, BrokerError>;

impl Cluster {
    /// Creates a topic or changes its settings, cluster-wide.
    pub async fn put_topic(&self, name: &str, spec: &TopicSpec, now: u64) -> Result<Upsert> {
        check_name("topic", name)?;
        let data = self.state_machine().data();
        let voters = self.state_machine().voters();
        let current = data.topics.get(name).map(|t| &t.config);
        let mut spec = spec.clone();
        if current.is_none() && spec.replication_factor.is_none() {
            let nodes = u32::try_from(voters.len()).unwrap_or(u32::MAX);
            spec.replication_factor = Some(DEFAULT_REPLICATION_FACTOR.min(nodes).max(1));
        }
        let config = apply_spec(&spec, current)?;
        if config.replication_factor as usize > voters.len() {
            return Err(BrokerError::Conflict(format!(
                "`replication_factor` {} needs as many nodes; the cluster has {}",
                config.replication_factor,
                voters.len()
            )));
        }
        let command = MetaCommand::PutTopic {
            name: name.to_owned(),
            config,
            at: now,
        };
        let outcome = match self.propose(command).await? {
            MetaResponse::Created => Upsert::Created,
            MetaResponse::Updated => Upsert::Updated,
            MetaResponse::Unchanged => Upsert::Unchanged,
            MetaResponse::Refused(why) => return Err(BrokerError::Conflict(why)),
            other => {
                tracing::error!(?other, "unexpected answer to a topic change");
                return Err(BrokerError::Unavailable);
            }
        };
        self.reconcile_topic(name, &self.state_machine().data())
            .await?;
        Ok(outcome)
    }

    /// Deletes a topic with its data, cluster-wide.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        check_name("topic", name)?;
        if !self.state_machine().data().topics.contains_key(name) {
            return Err(BrokerError::TopicNotFound(name.to_owned()));
        }
        let command = MetaCommand::DeleteTopic {
            name: name.to_owned(),
        };
        match self.propose(command).await? {
            MetaResponse::Done => {}
            MetaResponse::NotFound => return Err(BrokerError::TopicNotFound(name.to_owned())),
            other => {
                tracing::error!(?other, "unexpected answer to a topic deletion");
                return Err(BrokerError::Unavailable);
            }
        }
        self.reconcile_topic(name, &self.state_machine().data())
            .await
    }

    /// Brings this node's copy of topic `name` in line with `data` (the
    /// applied metadata).
    pub(super) async fn reconcile_topic(&self, name: &str, data: &MetaData) -> Result<()> {
        let broker = self.broker();
        match data.topics.get(name) {
            Some(topic) => {
                let local = broker.describe_topic(name).ok().map(|t| t.config);
                if local.as_ref() != Some(&topic.config) {
                    broker
                        .put_topic(name, &spec_of(&topic.config), topic.created_at)
                        .await?;
                }
                self.reconcile_subscriptions(name, topic).await
            }
            None if data.deleted.contains(name) && broker.topic(name).is_ok() => {
                broker.delete_topic(name).await
            }
            None => Ok(()),
        }
    }

    /// Reconciles every topic the metadata names, after each applied change
    /// and every few seconds; failures are logged and retried.
    pub(super) async fn reconcile(self: Arc<Self>) {
        let mut applied = self.state_machine().applied();
        loop {
            let data = self.state_machine().data();
            for name in data.topics.keys().chain(data.deleted.iter()) {
                if let Err(e) = self.reconcile_topic(name, &data).await {
                    tracing::warn!(topic = %name, error = %e, "could not apply the cluster's topic change here; retrying");
                }
            }
            self.reconcile_groups().await;
            let _ = tokio::time::timeout(RECONCILE_EVERY, applied.changed()).await;
        }
    }
}
