//! Subscriptions of replicated topics in the metadata group: created,
//! changed, paused and deleted from any node, then made real on every node
//! by the reconciler (the record and its cluster-wide id; the delivery
//! state is written by the partitions' groups, see `subscriptions.rs`).

use weir_protocol::{Start, StartName, SubscriptionSpec};

use super::metadata::{MetaCommand, MetaResponse, MetaTopic};
use super::node::Cluster;
use crate::broker::subscription::config::apply_spec;
use crate::broker::{check_name, BrokerError, Upsert};
use crate::storage::PauseRecord;

type Result<T> = std::result::Result<T, BrokerError>;

impl Cluster {
    /// Creates a subscription of a replicated topic or changes its
    /// settings, cluster-wide; answers once this node has it.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        spec: &SubscriptionSpec,
        now: u64,
    ) -> Result<Upsert> {
        check_name("subscription", name)?;
        if !self.state_machine().data().topics.contains_key(topic) {
            // Maybe created through another node a moment ago.
            self.sync_metadata().await?;
        }
        let data = self.state_machine().data();
        let t = data
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        let current = t.subscriptions.get(name);
        let config = apply_spec(topic, name, spec, current.map(|s| &s.config))?;
        let starts = match current {
            Some(_) => Vec::new(),
            None => {
                let max = self.broker().limits().max_subscriptions_per_topic;
                if t.subscriptions.len() >= max {
                    return Err(BrokerError::LimitExceeded(format!(
                        "topic `{topic}` already has {max} subscriptions (`max_subscriptions_per_topic`)"
                    )));
                }
                let start = spec.start.unwrap_or(Start::Named(StartName::Latest));
                self.broker().start_positions(topic, start).await?
            }
        };
        let command = MetaCommand::PutSubscription {
            topic: topic.to_owned(),
            name: name.to_owned(),
            config: Box::new(config),
            starts,
            at: now,
        };
        let outcome = match self.propose(command).await? {
            MetaResponse::Created => Upsert::Created,
            MetaResponse::Updated => Upsert::Updated,
            MetaResponse::Unchanged => Upsert::Unchanged,
            MetaResponse::NotFound => return Err(BrokerError::TopicNotFound(topic.to_owned())),
            MetaResponse::Refused(why) => return Err(BrokerError::Conflict(why)),
            other => {
                tracing::error!(?other, "unexpected answer to a subscription change");
                return Err(BrokerError::Unavailable);
            }
        };
        self.reconcile_topic(topic, &self.state_machine().data())
            .await?;
        Ok(outcome)
    }

    /// Deletes a subscription of a replicated topic, cluster-wide.
    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<()> {
        check_name("subscription", name)?;
        let command = MetaCommand::DeleteSubscription {
            topic: topic.to_owned(),
            name: name.to_owned(),
        };
        match self.propose(command).await? {
            MetaResponse::Done => {}
            MetaResponse::NotFound => {
                return Err(BrokerError::SubscriptionNotFound {
                    topic: topic.to_owned(),
                    sub: name.to_owned(),
                })
            }
            other => {
                tracing::error!(?other, "unexpected answer to a subscription deletion");
                return Err(BrokerError::Unavailable);
            }
        }
        self.reconcile_topic(topic, &self.state_machine().data())
            .await
    }

    /// Pauses or resumes a subscription cluster-wide.
    pub(super) async fn pause_subscription(
        &self,
        topic: &str,
        name: &str,
        paused: Option<PauseRecord>,
    ) -> Result<()> {
        let command = MetaCommand::PauseSubscription {
            topic: topic.to_owned(),
            name: name.to_owned(),
            paused,
        };
        match self.propose(command).await? {
            MetaResponse::Updated | MetaResponse::Unchanged => {}
            MetaResponse::NotFound => {
                return Err(BrokerError::SubscriptionNotFound {
                    topic: topic.to_owned(),
                    sub: name.to_owned(),
                })
            }
            other => {
                tracing::error!(?other, "unexpected answer to a pause");
                return Err(BrokerError::Unavailable);
            }
        }
        self.reconcile_topic(topic, &self.state_machine().data())
            .await
    }

    /// Brings this node's subscriptions of topic `name` (which exists
    /// here) in line with `topic`: each with the cluster's id, settings and
    /// pause state; ones the cluster no longer has are deleted.
    pub(super) async fn reconcile_subscriptions(
        &self,
        name: &str,
        topic: &MetaTopic,
    ) -> Result<()> {
        let broker = self.broker();
        for (sub, meta) in &topic.subscriptions {
            broker
                .adopt_subscription(
                    name,
                    sub,
                    meta.id,
                    &meta.config,
                    meta.created_at,
                    meta.paused.clone(),
                )
                .await?;
        }
        for local in broker.subscription_names(name) {
            if !topic.subscriptions.contains_key(&local) {
                broker.delete_subscription(name, &local).await?;
            }
        }
        Ok(())
    }
}
