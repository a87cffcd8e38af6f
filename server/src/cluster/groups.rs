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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

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
    /// The term in which this node, leading, last made sure it had applied
    /// everything committed before serving reads (`read.rs`).
    pub read_term: AtomicU64,
    /// Since when the metadata no longer names this copy (it leaves once
    /// the group's leader took it out).
    unwanted_since: std::sync::Mutex<Option<Instant>>,
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
/// How long a copy the metadata moved away waits to be taken out of its
/// group before it stops anyway.
const LEAVE_AFTER: Duration = Duration::from_secs(30);

impl Cluster {
    /// For every group this node leads: brings its membership to the copies
    /// the metadata names (new copies join as learners, catch up, then the
    /// voters are replaced in one joint change), and once that holds, hands
    /// the leadership to its preferred copy (the first named, spread over
    /// the nodes by the metadata) when that one is caught up: leaders stay
    /// balanced across nodes, also after a failover.
    pub(super) async fn balance(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BALANCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let desired = self.desired_replicas();
            for (group, held) in self.groups().list() {
                let Some(replicas) = desired.get(&group) else {
                    continue;
                };
                let m = held.raft.metrics().borrow_watched().clone();
                if m.current_leader != Some(self.node_id()) {
                    continue;
                }
                if self.converge_membership(group, &held, replicas, &m).await {
                    continue;
                }
                let Some(&preferred) = replicas.first() else {
                    continue;
                };
                if preferred == self.node_id() || !caught_up(&m, preferred) {
                    continue;
                }
                if !self.recently_seen(preferred) {
                    continue;
                }
                tracing::info!(group, topic = %held.topic, partition = held.partition, to = preferred, "moving partition leadership to its preferred replica");
                if let Err(e) = held.raft.trigger().transfer_leader(preferred).await {
                    tracing::warn!(group, error = %e, "leader transfer failed");
                }
            }
        }
    }

    /// The copies the metadata names for every partition group.
    fn desired_replicas(&self) -> HashMap<GroupId, Vec<NodeId>> {
        self.state_machine()
            .data()
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|a| (a.group, a.replicas.clone())))
            .collect()
    }

    /// On a group's leader: moves its membership one step towards
    /// `replicas`. Returns whether a change is under way.
    async fn converge_membership(
        &self,
        group: GroupId,
        held: &PartitionGroup,
        replicas: &[NodeId],
        m: &openraft::RaftMetrics<super::types::TypeConfig>,
    ) -> bool {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let wanted: BTreeSet<NodeId> = replicas.iter().copied().collect();
        if voters == wanted {
            return false;
        }
        for node in wanted.iter().filter(|n| membership.get_node(n).is_none()) {
            let Some(cluster_address) = self.address_of(*node) else {
                continue;
            };
            tracing::info!(group, topic = %held.topic, partition = held.partition, node, "a new copy joins the partition as a learner");
            if let Err(e) = held
                .raft
                .add_learner(*node, NodeInfo { cluster_address }, false)
                .await
            {
                tracing::warn!(group, node, error = %e, "could not add a learner");
            }
        }
        if wanted.iter().all(|n| caught_up(m, *n)) {
            tracing::info!(group, topic = %held.topic, partition = held.partition, ?wanted, "replacing the partition's voters");
            if let Err(e) = held
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(wanted), false)
                .await
            {
                tracing::warn!(group, error = %e, "could not change the partition's voters");
            }
        }
        true
    }
}

/// Whether `node` has every entry the leader has (the leader itself does).
fn caught_up(m: &openraft::RaftMetrics<super::types::TypeConfig>, node: NodeId) -> bool {
    if m.current_leader == Some(node) {
        return true;
    }
    m.replication
        .as_ref()
        .and_then(|r| r.get(&node))
        .is_some_and(|matched| matched.map(|l| l.index) == m.last_log_index)
}

/// A replica this node should hold: `(topic, partition, initial members)`.
type Wanted = (String, u32, Vec<NodeId>);

impl Cluster {
    /// Starts the partition groups the metadata assigns to this node, and
    /// stops (and erases) those it no longer does: at once when the topic
    /// is gone; when a copy was moved elsewhere, once the group's leader
    /// has taken it out (or after `LEAVE_AFTER`).
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
                    .map(|(a, p)| (a.group, (name.clone(), p, a.initial_members().to_vec())))
            })
            .collect();
        for (group, held) in self.groups().list() {
            if wanted.contains_key(&group) {
                held.unwanted_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                continue;
            }
            if data.topics.contains_key(&held.topic) {
                let since = *held
                    .unwanted_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(Instant::now);
                let m = held.raft.metrics().borrow_watched().clone();
                let still_voter = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == me);
                if (still_voter || m.current_leader == Some(me)) && since.elapsed() < LEAVE_AFTER {
                    continue;
                }
            }
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
        for (group, (topic, partition, initial)) in wanted {
            if self.groups().get(group).is_some() {
                continue;
            }
            match self.start_group(group, &topic, partition, &initial).await {
                Ok((raft, local)) => {
                    tracing::info!(group, %topic, partition, "partition group started");
                    local.mark_replicated();
                    self.groups().write().insert(
                        group,
                        Arc::new(PartitionGroup {
                            topic,
                            partition,
                            raft,
                            local,
                            store: self.store().clone(),
                            ids: tokio::sync::Mutex::new(0),
                            last_stamp: AtomicU64::new(0),
                            read_term: AtomicU64::new(0),
                            unwanted_since: std::sync::Mutex::new(None),
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
        // `replicas`: the members the group was created with.
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
        // Copies the group was created with initialize it; a copy added
        // later waits for the leader to bring it in.
        let founder = replicas.contains(&self.node_id());
        if founder && !raft.is_initialized().await.map_err(|e| e.to_string())? {
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
