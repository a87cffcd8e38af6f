//! Subscriptions a cluster makes real on this node: created with the id,
//! settings and pause state the cluster's metadata gives them, and no
//! delivery state (the partitions' groups write it; the node that serves
//! the subscription loads it when it claims it).

use std::sync::Arc;

use weir_protocol::{Start, SubscriptionConfig};

use super::error::Result;
use super::{Broker, BrokerLimits};
use crate::storage::{PauseRecord, SubscriptionRecord, WriteSet};

impl Broker {
    /// The broker's limits.
    pub fn limits(&self) -> &BrokerLimits {
        &self.limits
    }

    /// Names of the subscriptions of `topic` (none when it does not exist).
    pub fn subscription_names(&self, topic: &str) -> Vec<String> {
        self.topic(topic)
            .map(|t| t.subscription_list().iter().map(|s| s.name()).collect())
            .unwrap_or_default()
    }

    /// Per partition of `topic`, the cursor a subscription starting at
    /// `start` would start from here.
    pub async fn start_positions(&self, topic: &str, start: Start) -> Result<Vec<u64>> {
        let topic = self.topic(topic)?;
        self.start_cursors(&topic, start).await
    }

    /// Makes subscription `name` of `topic_name` the cluster's: created
    /// under `id` when missing (a subscription of the same name and
    /// another id is replaced), else its settings and pause state updated.
    pub async fn adopt_subscription(
        self: &Arc<Self>,
        topic_name: &str,
        name: &str,
        id: u32,
        config: &SubscriptionConfig,
        created_at: u64,
        paused: Option<PauseRecord>,
    ) -> Result<()> {
        let topic = self.topic(topic_name)?;
        if let Some(sub) = topic.subscription(name) {
            if sub.id() == id {
                let mut record = sub.record();
                if record.config == *config && record.paused == paused {
                    return Ok(());
                }
                record.config = config.clone();
                record.paused = paused;
                let _admin = self.admin.lock().await;
                let mut set = WriteSet::new();
                set.put_subscription(&record);
                self.store.commit(set).await?;
                sub.set_record(record).await;
                return Ok(());
            }
            self.delete_subscription(topic_name, name).await?;
        }
        let _admin = self.admin.lock().await;
        let record = SubscriptionRecord {
            id,
            topic_id: topic.id(),
            name: name.to_owned(),
            config: config.clone(),
            created_at,
            paused,
        };
        let mut set = WriteSet::new();
        set.put_subscription(&record);
        self.store.commit(set).await?;
        // Its positions here are never used: the node that serves it loads
        // the state from the store when it claims it.
        self.register_subscription(&topic, record, &vec![0; topic.partitions().len()]);
        Ok(())
    }
}
