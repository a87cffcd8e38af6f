//! The metadata group's state machine: what every node agrees on about the
//! cluster: the membership (kept by openraft), each node's client-facing
//! address, the topics with their configuration and each partition's
//! group id and replica set, and the subscriptions of each topic with
//! their configuration, cluster-wide id, start position and pause state
//! (their delivery state lives in the partitions' groups).
//!
//! Applying a command is deterministic: it reads no clock (the proposer
//! stamps times) and nothing outside this state.
//!
//! Its state is small: the whole of it is stored as one value after every
//! applied batch (synced before any proposer is answered), and a snapshot
//! is that value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use weir_protocol::{SubscriptionConfig, TopicConfig};

use super::codec::{decode, encode};
use super::command::{Command, Reply};
use super::types::{GroupId, LogId, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::storage::{PauseRecord, RaftValue, Store, WriteSet};

/// A change proposed to the metadata group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A node says where clients reach it.
    RegisterNode {
        id: NodeId,
        api_address: String,
    },
    /// Creates a topic or changes its configuration (validated by the
    /// proposer; `at` is the proposer's clock).
    PutTopic {
        name: String,
        config: TopicConfig,
        at: u64,
    },
    DeleteTopic {
        name: String,
    },
    /// Moves a partition's copies to `replicas` (same count; the
    /// partition's leader then changes its group's membership).
    MoveReplicas {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// Marks a node as leaving (`draining`: no new copies go there and its
    /// copies move to other nodes) or no longer leaving.
    Drain {
        node: NodeId,
        draining: bool,
    },
    /// Creates a subscription (starting at `starts`, one cursor per
    /// partition) or changes its configuration (validated by the
    /// proposer).
    PutSubscription {
        topic: String,
        name: String,
        config: Box<SubscriptionConfig>,
        starts: Vec<u64>,
        at: u64,
    },
    DeleteSubscription {
        topic: String,
        name: String,
    },
    /// Pauses (`Some`) or resumes (`None`) a subscription.
    PauseSubscription {
        topic: String,
        name: String,
        paused: Option<PauseRecord>,
    },
}

impl fmt::Display for MetaCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaCommand::RegisterNode { id, api_address } => {
                write!(f, "register node {id} at {api_address}")
            }
            MetaCommand::PutTopic { name, .. } => write!(f, "put topic {name}"),
            MetaCommand::DeleteTopic { name } => write!(f, "delete topic {name}"),
            MetaCommand::MoveReplicas {
                topic,
                partition,
                replicas,
            } => write!(f, "move partition {partition} of {topic} to {replicas:?}"),
            MetaCommand::Drain { node, draining } => write!(f, "drain node {node}: {draining}"),
            MetaCommand::PutSubscription { topic, name, .. } => {
                write!(f, "put subscription {name} of {topic}")
            }
            MetaCommand::DeleteSubscription { topic, name } => {
                write!(f, "delete subscription {name} of {topic}")
            }
            MetaCommand::PauseSubscription {
                topic,
                name,
                paused,
            } => write!(
                f,
                "pause subscription {name} of {topic}: {}",
                paused.is_some()
            ),
        }
    }
}

/// The result of an applied command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    #[default]
    Done,
    Created,
    Updated,
    Unchanged,
    NotFound,
    /// The command cannot apply to the current state (why).
    Refused(String),
}

/// A command's outcome, with the index of its entry (a proposer waits
/// for its own node to apply that far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposed {
    pub index: u64,
    pub response: MetaResponse,
}

/// One partition's place in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Its Raft group (never reused).
    pub group: GroupId,
    /// Nodes holding a copy; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// The copies the group was created with (they initialize it; copies
    /// added later wait to be brought in by its leader). Empty: `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initial: Vec<NodeId>,
}

impl Assignment {
    /// The members the group was created with.
    pub fn initial_members(&self) -> &[NodeId] {
        if self.initial.is_empty() {
            &self.replicas
        } else {
            &self.initial
        }
    }
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaTopic {
    pub config: TopicConfig,
    pub created_at: u64,
    /// Per partition, in partition order.
    pub partitions: Vec<Assignment>,
    /// Its subscriptions by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, MetaSubscription>,
}

/// A subscription as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaSubscription {
    /// Its id on every node (never reused).
    pub id: u32,
    pub config: SubscriptionConfig,
    pub created_at: u64,
    /// Per partition, the cursor it started from.
    pub starts: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PauseRecord>,
}

/// Subscription ids the cluster hands out start here, above the ids a node
/// gives the subscriptions of its own unreplicated topics.
pub const FIRST_CLUSTER_SUBSCRIPTION: u32 = 0x8000_0000;

/// What the metadata group knows about one node beyond the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredNode {
    pub api_address: String,
}

/// The replicated metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaData {
    pub nodes: BTreeMap<NodeId, RegisteredNode>,
    #[serde(default)]
    pub topics: BTreeMap<String, MetaTopic>,
    /// Topics deleted (and not created again): a node that was away
    /// deletes its copy when it comes back.
    #[serde(default)]
    pub deleted: BTreeSet<String>,
    /// The next partition group id (0 is the metadata group).
    #[serde(default = "first_group")]
    pub next_group: GroupId,
    /// Nodes being emptied before their removal.
    #[serde(default)]
    pub draining: BTreeSet<NodeId>,
    /// The next subscription id.
    #[serde(default = "first_subscription")]
    pub next_subscription: u32,
}

fn first_group() -> GroupId {
    1
}

fn first_subscription() -> u32 {
    FIRST_CLUSTER_SUBSCRIPTION
}

impl Default for MetaData {
    fn default() -> Self {
        MetaData {
            nodes: BTreeMap::new(),
            topics: BTreeMap::new(),
            deleted: BTreeSet::new(),
            next_group: first_group(),
            draining: BTreeSet::new(),
            next_subscription: first_subscription(),
        }
    }
}

impl MetaData {
    /// Applies `command`; `voters` are the metadata group's voters (the
    /// nodes partitions are placed on).
    fn apply(&mut self, command: &MetaCommand, voters: &[NodeId]) -> MetaResponse {
        match command {
            MetaCommand::RegisterNode { id, api_address } => {
                self.nodes.insert(
                    *id,
                    RegisteredNode {
                        api_address: api_address.clone(),
                    },
                );
                MetaResponse::Done
            }
            MetaCommand::PutTopic { name, config, at } => self.put_topic(name, config, *at, voters),
            MetaCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => {
                    self.deleted.insert(name.clone());
                    MetaResponse::Done
                }
                None => MetaResponse::NotFound,
            },
            MetaCommand::MoveReplicas {
                topic,
                partition,
                replicas,
            } => self.move_replicas(topic, *partition, replicas, voters),
            MetaCommand::PutSubscription {
                topic,
                name,
                config,
                starts,
                at,
            } => self.put_subscription(topic, name, config, starts, *at),
            MetaCommand::DeleteSubscription { topic, name } => {
                match self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.subscriptions.remove(name))
                {
                    Some(_) => MetaResponse::Done,
                    None => MetaResponse::NotFound,
                }
            }
            MetaCommand::PauseSubscription {
                topic,
                name,
                paused,
            } => match self
                .topics
                .get_mut(topic)
                .and_then(|t| t.subscriptions.get_mut(name))
            {
                Some(sub) if sub.paused == *paused => MetaResponse::Unchanged,
                Some(sub) => {
                    sub.paused = paused.clone();
                    MetaResponse::Updated
                }
                None => MetaResponse::NotFound,
            },
            MetaCommand::Drain { node, draining } => {
                let changed = if *draining {
                    self.draining.insert(*node)
                } else {
                    self.draining.remove(node)
                };
                if changed {
                    MetaResponse::Updated
                } else {
                    MetaResponse::Unchanged
                }
            }
        }
    }

    fn put_subscription(
        &mut self,
        topic: &str,
        name: &str,
        config: &SubscriptionConfig,
        starts: &[u64],
        at: u64,
    ) -> MetaResponse {
        let Some(t) = self.topics.get_mut(topic) else {
            return MetaResponse::NotFound;
        };
        if let Some(existing) = t.subscriptions.get_mut(name) {
            if existing.config == *config {
                return MetaResponse::Unchanged;
            }
            if existing.config.mode != config.mode {
                return MetaResponse::Refused("`mode` cannot change".into());
            }
            existing.config = config.clone();
            return MetaResponse::Updated;
        }
        if self.next_subscription == u32::MAX {
            return MetaResponse::Refused("subscription ids exhausted".into());
        }
        let id = self.next_subscription;
        self.next_subscription += 1;
        t.subscriptions.insert(
            name.to_owned(),
            MetaSubscription {
                id,
                config: config.clone(),
                created_at: at,
                starts: starts.to_vec(),
                paused: None,
            },
        );
        MetaResponse::Created
    }

    fn move_replicas(
        &mut self,
        topic: &str,
        partition: u32,
        replicas: &[NodeId],
        voters: &[NodeId],
    ) -> MetaResponse {
        let Some(assignment) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
        else {
            return MetaResponse::NotFound;
        };
        let distinct: BTreeSet<&NodeId> = replicas.iter().collect();
        if distinct.len() != replicas.len()
            || replicas.len() != assignment.replicas.len()
            || replicas.iter().any(|r| !voters.contains(r))
        {
            return MetaResponse::Refused(format!(
                "{replicas:?} is not a set of {} member nodes",
                assignment.replicas.len()
            ));
        }
        if assignment.replicas == replicas {
            return MetaResponse::Unchanged;
        }
        if assignment.initial.is_empty() {
            assignment.initial = assignment.replicas.clone();
        }
        assignment.replicas = replicas.to_vec();
        MetaResponse::Updated
    }

    fn put_topic(
        &mut self,
        name: &str,
        config: &TopicConfig,
        at: u64,
        voters: &[NodeId],
    ) -> MetaResponse {
        // Nodes being emptied get no new copies.
        let voters: Vec<NodeId> = voters
            .iter()
            .copied()
            .filter(|v| !self.draining.contains(v))
            .collect();
        let voters = voters.as_slice();
        let rf = config.replication_factor as usize;
        if rf == 0 || rf > voters.len() {
            return MetaResponse::Refused(format!(
                "`replication_factor` {rf} needs as many nodes; the cluster has {}",
                voters.len()
            ));
        }
        let (response, mut topic) = match self.topics.get(name) {
            Some(existing) => {
                if existing.config == *config {
                    return MetaResponse::Unchanged;
                }
                if existing.config.replication_factor != config.replication_factor
                    || existing.config.partitions > config.partitions
                {
                    return MetaResponse::Refused(
                        "partitions only grow and the replication factor is fixed".into(),
                    );
                }
                let mut topic = existing.clone();
                topic.config = config.clone();
                (MetaResponse::Updated, topic)
            }
            None => (
                MetaResponse::Created,
                MetaTopic {
                    config: config.clone(),
                    created_at: at,
                    partitions: Vec::new(),
                    subscriptions: BTreeMap::new(),
                },
            ),
        };
        // New partitions: consecutive nodes from a rotating start, so the
        // preferred leaders (first replicas) spread over the nodes.
        while topic.partitions.len() < config.partitions as usize {
            let group = self.next_group;
            self.next_group += 1;
            let start = (group as usize) % voters.len();
            let replicas = (0..rf)
                .map(|k| voters[(start + k) % voters.len()])
                .collect();
            topic.partitions.push(Assignment {
                group,
                replicas,
                initial: Vec::new(),
            });
        }
        self.deleted.remove(name);
        self.topics.insert(name.to_owned(), topic);
        response
    }
}

/// Everything the state machine stores, in one value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    data: MetaData,
}

/// The metadata state machine over the store; cheap to clone (shared).
#[derive(Clone)]
pub struct MetaStateMachine {
    store: Arc<Store>,
    group: GroupId,
    state: Arc<RwLock<Applied>>,
    /// The index of the last applied entry, for waiters.
    applied: watch::Sender<u64>,
}

impl MetaStateMachine {
    /// Loads the metadata group's applied state from the store.
    pub fn load(store: Arc<Store>, group: GroupId) -> io::Result<Self> {
        let state = match store
            .raft_value(group, RaftValue::State)
            .map_err(io::Error::other)?
        {
            Some(bytes) => decode(&bytes)?,
            None => Applied::default(),
        };
        let index = state.last_applied.map_or(0, |l| l.index);
        Ok(MetaStateMachine {
            store,
            group,
            state: Arc::new(RwLock::new(state)),
            applied: watch::Sender::new(index),
        })
    }

    /// Watches the index of the last applied entry.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The metadata group's voters (the nodes partitions are placed on).
    pub fn voters(&self) -> Vec<NodeId> {
        self.read().membership.membership().voter_ids().collect()
    }

    /// The group of each partition of `topic`, in partition order, if the
    /// cluster has that topic.
    pub fn groups_of(&self, topic: &str) -> Option<Vec<GroupId>> {
        self.read()
            .data
            .topics
            .get(topic)
            .map(|t| t.partitions.iter().map(|a| a.group).collect())
    }

    /// A copy of the applied metadata.
    pub fn data(&self) -> MetaData {
        self.read().data.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `next` durably, then makes it the state in memory.
    async fn save(&self, next: Applied) -> io::Result<()> {
        let mut set = WriteSet::new();
        set.put_raft_value(self.group, RaftValue::State, encode(&next)?);
        self.store.commit(set).await.map_err(io::Error::other)?;
        let index = next.last_applied.map_or(0, |l| l.index);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.applied.send_replace(index);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetaStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let state = self.read().clone();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(encode(&state)?),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MetaStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = MetaStateMachine;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let state = self.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        let mut next = self.read().clone();
        let mut answers = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            next.last_applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => Reply::Done,
                EntryPayload::Normal(Command::Meta(command)) => {
                    let voters: Vec<NodeId> = next.membership.membership().voter_ids().collect();
                    Reply::Meta(next.data.apply(command, &voters))
                }
                EntryPayload::Normal(command) => {
                    Reply::Refused(format!("the metadata group does not apply `{command}`"))
                }
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Reply::Done
                }
            };
            if let Some(responder) = responder {
                answers.push((responder, response));
            }
        }
        // Proposers hear of their change only once it is stored.
        self.save(next).await?;
        for (responder, response) in answers {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> io::Result<()> {
        let mut state: Applied = decode(snapshot.get_ref())?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.save(state).await
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        // The state is stored after every applied batch, so a snapshot of
        // it is always at hand (and as recent as can be).
        if self.read().last_applied.is_none() {
            return Ok(None);
        }
        self.build_snapshot().await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::Retention;

    fn config(partitions: u32, replication_factor: u32) -> TopicConfig {
        TopicConfig {
            partitions,
            retention: Retention::default(),
            max_message_bytes: 1024,
            dedupe_window_ms: 0,
            replication_factor,
        }
    }

    fn put(name: &str, c: TopicConfig) -> MetaCommand {
        MetaCommand::PutTopic {
            name: name.into(),
            config: c,
            at: 7,
        }
    }

    #[test]
    fn partitions_get_fresh_groups_and_spread_replicas() {
        let voters = [1, 2, 3];
        let mut data = MetaData::default();
        assert_eq!(
            data.apply(&put("a", config(3, 2)), &voters),
            MetaResponse::Created
        );
        let a = &data.topics["a"];
        assert_eq!(a.created_at, 7);
        let groups: Vec<GroupId> = a.partitions.iter().map(|p| p.group).collect();
        assert_eq!(groups, vec![1, 2, 3]);
        let leaders: BTreeSet<NodeId> = a.partitions.iter().map(|p| p.replicas[0]).collect();
        assert_eq!(leaders.len(), 3, "preferred leaders spread over the nodes");
        for p in &a.partitions {
            assert_eq!(p.replicas.len(), 2);
            assert_ne!(p.replicas[0], p.replicas[1]);
        }
        // Growing keeps the existing placement and allocates new groups.
        let before = a.partitions.clone();
        assert_eq!(
            data.apply(&put("a", config(4, 2)), &voters),
            MetaResponse::Updated
        );
        assert_eq!(data.topics["a"].partitions[..3], before[..]);
        assert_eq!(data.topics["a"].partitions[3].group, 4);
        assert_eq!(
            data.apply(&put("a", config(4, 2)), &voters),
            MetaResponse::Unchanged
        );
        // Deleted and created again: new groups, never the old ones.
        let delete = MetaCommand::DeleteTopic { name: "a".into() };
        assert_eq!(data.apply(&delete, &voters), MetaResponse::Done);
        assert!(data.deleted.contains("a"));
        assert_eq!(data.apply(&delete, &voters), MetaResponse::NotFound);
        assert_eq!(
            data.apply(&put("a", config(1, 1)), &voters),
            MetaResponse::Created
        );
        assert_eq!(data.topics["a"].partitions[0].group, 5);
        assert!(!data.deleted.contains("a"));
    }

    #[test]
    fn impossible_changes_are_refused_without_effect() {
        let voters = [1, 2, 3];
        let mut data = MetaData::default();
        let refused = |r: MetaResponse| matches!(r, MetaResponse::Refused(_));
        assert!(refused(data.apply(&put("a", config(1, 4)), &voters)));
        assert!(data.topics.is_empty());
        data.apply(&put("a", config(2, 3)), &voters);
        let snapshot = data.clone();
        assert!(refused(data.apply(&put("a", config(2, 2)), &voters)));
        assert!(refused(data.apply(&put("a", config(1, 3)), &voters)));
        assert_eq!(data, snapshot);
    }
}
