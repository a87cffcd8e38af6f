//! The partition groups this node holds a replica of. The reconciler
//! starts one when the metadata assigns this node a replica of a
//! partition, every replica initializes it with the same members (openraft
//! accepts the same first membership from several nodes, so no replica
//! waits for another), and it is stopped and erased when its topic is
//! deleted. A balancer hands each partition's leadership to its preferred
//! replica once that one is caught up, so leaders stay spread over the
//! nodes (also after a failover). Produced batches go through these
//! groups (`produce.rs`); subscription state joins them next
//! (`docs/cluster.md`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use super::log_store::BatchLog;
use super::node::Cluster;
use super::partition::PartitionMachine;
use super::types::{GroupId, NodeId, NodeInfo, Raft};
use crate::broker::topic::Topic;
use crate::storage::{Store, WriteSet};

/// One partition group held here.
pub struct PartitionGroup {
    pub topic: String,
    pub partition: u32,
    /// Its replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    pub raft: Raft,
    /// This node's copy of the topic.
    pub local: Arc<Topic>,
    pub store: Arc<Store>,
    /// Serializes appends carrying idempotency ids on the leader; holds
    /// the term in which the leader last caught up with every committed
    /// entry (see `produce.rs`).
    pub ids: tokio::sync::Mutex<u64>,
    /// The newest timestamp this node stamped as leader.
    last_stamp: AtomicU64,
}

impl PartitionGroup {
    /// The timestamp of a batch proposed now: the wall clock, never
    /// behind any timestamp already in the partition.
    pub fn stamp(&self, wall: u64) -> u64 {
        let applied = self
            .local
            .lock_produce()
            .heads
            .get(self.partition as usize)
            .map_or(0, |h| h.last_timestamp);
        let stamp = wall.max(applied);
        stamp.max(self.last_stamp.fetch_max(stamp, Ordering::AcqRel))
    }
}

/// The partition groups of this node, by group id.
#[derive(Default)]
pub struct Groups {
    partitions: RwLock<HashMap<GroupId, Arc<PartitionGroup>>>,
}

impl Groups {
    pub fn get(&self, group: GroupId) -> Option<Arc<PartitionGroup>> {
        self.read().get(&group).cloned()
    }

    /// The leader (with its term) of every group held here that has one.
    pub fn leaders(&self) -> BTreeMap<GroupId, (u64, NodeId)> {
        self.read()
            .iter()
            .filter_map(|(group, held)| {
                let m = held.raft.metrics().borrow_watched().clone();
                m.current_leader.map(|l| (*group, (m.current_term, l)))
            })
            .collect()
    }

    /// The commit index of every group held here that `me` leads.
    pub fn committed_led_by(&self, me: NodeId) -> BTreeMap<GroupId, u64> {
        self.read()
            .iter()
            .filter_map(|(group, held)| {
                let m = held.raft.metrics().borrow_watched().clone();
                let index = m.local_committed.map_or(0, |l| l.index);
                (m.current_leader == Some(me)).then_some((*group, index))
            })
            .collect()
    }

    pub fn list(&self) -> Vec<(GroupId, Arc<PartitionGroup>)> {
        self.read().iter().map(|(g, p)| (*g, p.clone())).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, Arc<PartitionGroup>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, Arc<PartitionGroup>>> {
        self.partitions.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Period of the leader balancer.
const BALANCE_EVERY: Duration = Duration::from_secs(3);

impl Cluster {
    /// Moves each partition's leadership to its preferred replica (the
    /// first in its replica list, spread over the nodes by the metadata)
    /// when this node leads it instead and the preferred one is caught up:
    /// leaders stay balanced across nodes, also after a failover.
    pub(super) async fn balance(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BALANCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for (group, held) in self.groups().list() {
                let Some(&preferred) = held.replicas.first() else {
                    continue;
                };
                if preferred == self.node_id() {
                    continue;
                }
                let m = held.raft.metrics().borrow_watched().clone();
                if m.current_leader != Some(self.node_id()) {
                    continue;
                }
                let last = m.last_log_index;
                let caught_up = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&preferred))
                    .is_some_and(|matched| matched.map(|l| l.index) == last);
                let alive = self
                    .peers()
                    .last_seen(preferred)
                    .is_some_and(|s| s < self.unreachable_after());
                if !caught_up || !alive {
                    continue;
                }
                tracing::info!(group, topic = %held.topic, partition = held.partition, to = preferred, "moving partition leadership to its preferred replica");
                if let Err(e) = held.raft.trigger().transfer_leader(preferred).await {
                    tracing::warn!(group, error = %e, "leader transfer failed");
                }
            }
        }
    }
}

/// A replica this node should hold: `(topic, partition, replicas)`.
type Wanted = (String, u32, Vec<NodeId>);

impl Cluster {
    /// Starts the partition groups the metadata assigns to this node and
    /// stops (and erases) those it no longer does.
    pub(super) async fn reconcile_groups(&self) {
        let me = self.node_id();
        let data = self.state_machine().data();
        let wanted: HashMap<GroupId, Wanted> = data
            .topics
            .iter()
            .flat_map(|(name, topic)| {
                topic
                    .partitions
                    .iter()
                    .zip(0u32..)
                    .filter(|(a, _)| a.replicas.contains(&me))
                    .map(|(a, p)| (a.group, (name.clone(), p, a.replicas.clone())))
            })
            .collect();
        for (group, held) in self.groups().list() {
            if !wanted.contains_key(&group) {
                self.groups().write().remove(&group);
                if let Err(e) = held.raft.shutdown().await {
                    tracing::warn!(group, error = %e, "partition group did not stop cleanly");
                }
                let mut set = WriteSet::new();
                set.delete_raft_group(group);
                if let Err(e) = self.store().commit(set).await {
                    tracing::warn!(group, error = %e, "could not erase a removed partition group");
                }
                tracing::info!(group, topic = %held.topic, partition = held.partition, "partition group removed");
            }
        }
        for (group, (topic, partition, replicas)) in wanted {
            if self.groups().get(group).is_some() {
                continue;
            }
            match self.start_group(group, &topic, partition, &replicas).await {
                Ok((raft, local)) => {
                    tracing::info!(group, %topic, partition, ?replicas, "partition group started");
                    local.mark_replicated();
                    self.groups().write().insert(
                        group,
                        Arc::new(PartitionGroup {
                            topic,
                            partition,
                            replicas,
                            raft,
                            local,
                            store: self.store().clone(),
                            ids: tokio::sync::Mutex::new(0),
                            last_stamp: AtomicU64::new(0),
                        }),
                    );
                }
                Err(e) => {
                    tracing::warn!(group, %topic, partition, error = %e, "could not start a partition group; retrying")
                }
            }
        }
    }

    async fn start_group(
        &self,
        group: GroupId,
        topic: &str,
        partition: u32,
        replicas: &[NodeId],
    ) -> Result<(Raft, Arc<Topic>), String> {
        // The topic exists here: the reconciler creates topics first.
        let local = self.broker().topic(topic).map_err(|e| e.to_string())?;
        let batches = BatchLog::new(local.id(), partition);
        let store = self.store().clone();
        let machine_topic = local.clone();
        let state_machine = tokio::task::spawn_blocking(move || {
            PartitionMachine::load(store, group, machine_topic, partition)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let raft = self
            .new_partition_raft(group, state_machine, batches)
            .await
            .map_err(|e| e.to_string())?;
        if !raft.is_initialized().await.map_err(|e| e.to_string())? {
            let mut members = BTreeMap::new();
            for id in replicas {
                let cluster_address = self
                    .address_of(*id)
                    .ok_or_else(|| format!("no address for node {id}"))?;
                members.insert(*id, NodeInfo { cluster_address });
            }
            if let Err(e) = raft.initialize(members).await {
                // Another replica's entries arrived first: nothing to do.
                tracing::debug!(group, error = %e, "partition group already initialized");
            }
        }
        Ok((raft, local))
    }
}
