//! A cluster node: starts the metadata group on the store, serves the
//! node-to-node listener, forms the cluster once with its peers, registers
//! its client address, probes its peers, and reports what it sees.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{Config, ServerState, SnapshotPolicy};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weir_protocol::{
    ClusterInfo, ClusterNode, ClusterPartition, FollowerLag, GroupInfo, NodeState,
};

use super::groups::Groups;
use super::log_store::{BatchLog, LogStore};
use super::machine::GroupMachine;
use super::metadata::{MetaCommand, MetaStateMachine};
use super::network::{Batches, Network, Peers};
use super::partition::PartitionMachine;
use super::rpc::{self, RpcState};
use super::types::{GroupId, NodeId, NodeInfo, Raft, METADATA_GROUP};
use crate::broker::Broker;
use crate::storage::Store;

/// How a node takes part in a cluster (from `--node-id`, `--peers`,
/// `--cluster-listen`, `--cluster-secret-file`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Every member's node-to-node address, this node's included.
    pub peers: BTreeMap<NodeId, String>,
    /// The shared secret every node-to-node request carries.
    pub secret: String,
    /// Where clients reach this node (its API listener).
    pub api_address: String,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
}

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cluster: {0}")]
    Start(String),
    #[error("cluster listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A group's leader, term, progress and (when `me` leads it) how far
/// behind each follower is.
fn group_info(me: NodeId, m: &openraft::RaftMetrics<super::types::TypeConfig>) -> GroupInfo {
    let last = m.last_log_index.unwrap_or(0);
    let followers = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(id, _)| **id != me)
                .map(|(id, matched)| FollowerLag {
                    id: *id,
                    lag: last.saturating_sub(matched.map_or(0, |l| l.index)),
                })
                .collect()
        })
        .unwrap_or_default();
    GroupInfo {
        leader: m.current_leader,
        term: m.current_term,
        commit_index: m.local_committed.map_or(0, |l| l.index),
        last_applied: m.last_applied.map_or(0, |l| l.index),
        followers,
    }
}

/// The figures of the cluster metrics, as this node sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterHealth {
    /// Nodes by state name (`leader`, `follower`, ... `unreachable`).
    pub nodes: BTreeMap<&'static str, u64>,
    pub metadata_leader: bool,
    pub metadata_term: u64,
    pub partitions_led: u64,
    pub partitions_leaderless: u64,
    pub partitions_under_replicated: u64,
    pub follower_lag_max: u64,
}

/// A running cluster node.
pub struct Cluster {
    config: ClusterConfig,
    peers: Arc<Peers>,
    metadata: Raft,
    state_machine: MetaStateMachine,
    broker: Arc<Broker>,
    store: Arc<Store>,
    /// This node's incarnation (`incarnation.rs`).
    incarnation: u64,
    /// Whether the node has reported ready since it started.
    was_ready: std::sync::atomic::AtomicBool,
    /// Whether Raft RPCs are served: at once, or once a new incarnation
    /// was announced to the peers.
    raft_open: Arc<std::sync::atomic::AtomicBool>,
    /// Raft settings of partition groups (the metadata group's, but never
    /// snapshotting).
    partition_config: Arc<Config>,
    groups: Arc<Groups>,
    /// Subscription updates on their way to the partition groups.
    pub(super) subs: super::subscriptions::SubRelay,
    /// Where this node's node-to-node listener is bound (a node reaching
    /// itself, e.g. a piped socket of a subscription served here).
    listen_address: String,
    /// The client API, for requests other nodes forward here (dropped at
    /// shutdown: the API holds the cluster too).
    api: std::sync::RwLock<Option<axum::Router>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The node-to-node listener's task (stopped last: a stopping node
    /// still answers its peers while it hands off its leaderships).
    listener_task: Mutex<Option<JoinHandle<()>>>,
}

/// The Raft settings of the metadata group and of partition groups.
fn raft_configs(config: &ClusterConfig) -> Result<(Config, Config), openraft::ConfigError> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let raft_config = Config {
        cluster_name: "weir".into(),
        heartbeat_interval: millis(config.heartbeat),
        election_timeout_min: millis(config.election_timeout.0),
        election_timeout_max: millis(config.election_timeout.1),
        install_snapshot_timeout: 30_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 1000,
        // A restarted leader wins an election (a new term) before it leads
        // again; openraft would otherwise let it resume the term its
        // previous process led. A term's leadership must belong to one
        // process: the claims under which a node serves subscriptions are
        // numbered from the term of partition 0's group (`subscriptions.rs`),
        // and a process resuming its predecessor's term would make the same
        // claims again, letting updates its predecessor left in flight land
        // after its own.
        enable_leader_restore: Some(false),
        ..Config::default()
    }
    .validate()?;
    // A partition group's log is its partition's messages: it is never
    // purged behind a snapshot (retention removes old batches), so a
    // follower always catches up from entries.
    let partition_config = Config {
        snapshot_policy: SnapshotPolicy::Never,
        ..raft_config.clone()
    }
    .validate()?;
    Ok((raft_config, partition_config))
}

impl Cluster {
    /// Starts the node's groups and its node-to-node listener.
    pub async fn start(
        store: Arc<Store>,
        broker: Arc<Broker>,
        config: ClusterConfig,
        listener: TcpListener,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let start_err = |e: &dyn std::fmt::Display| ClusterError::Start(e.to_string());
        let peers = Arc::new(
            Peers::new(config.node_id, config.secret.clone(), config.peers.clone())
                .map_err(|e| start_err(&e))?,
        );
        let (raft_config, partition_config) = raft_configs(&config).map_err(|e| start_err(&e))?;
        let (incarnation, fresh) = super::incarnation::load_or_create(&store)
            .await
            .map_err(|e| start_err(&e))?;
        let raft_open = Arc::new(std::sync::atomic::AtomicBool::new(!fresh));
        let state_machine = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || MetaStateMachine::load(store, METADATA_GROUP))
                .await
                .map_err(|e| start_err(&e))?
                .map_err(|e| start_err(&e))?
        };
        let metadata = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network {
                peers: peers.clone(),
                group: METADATA_GROUP,
                batches: None,
            },
            LogStore::new(store.clone(), METADATA_GROUP),
            GroupMachine::Meta(state_machine.clone()),
        )
        .await
        .map_err(|e| start_err(&e))?;
        let groups = Arc::new(Groups::default());
        let cluster = Arc::new(Cluster {
            config,
            peers: peers.clone(),
            metadata: metadata.clone(),
            state_machine,
            broker,
            store,
            partition_config: Arc::new(partition_config),
            incarnation,
            was_ready: std::sync::atomic::AtomicBool::new(false),
            raft_open: raft_open.clone(),
            groups: groups.clone(),
            subs: super::subscriptions::SubRelay::default(),
            listen_address: listener
                .local_addr()
                .map(|a| a.to_string())
                .map_err(|e| start_err(&e))?,
            api: std::sync::RwLock::new(None),
            tasks: Mutex::new(Vec::new()),
            listener_task: Mutex::new(None),
        });
        let router = rpc::router(RpcState {
            peers,
            metadata,
            groups,
            cluster: Arc::downgrade(&cluster),
            raft_open,
        });
        let serve = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "cluster listener stopped");
            }
        });
        cluster
            .broker
            .set_replicator(Arc::new(super::produce::ClusterProducer {
                cluster: Arc::downgrade(&cluster),
                round_robin: std::sync::atomic::AtomicU32::new(0),
            }));
        *cluster
            .listener_task
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(serve);
        let mut tasks = vec![
            tokio::spawn(cluster.clone().form()),
            tokio::spawn(cluster.clone().register()),
            tokio::spawn(cluster.clone().probe()),
            tokio::spawn(cluster.clone().reconcile()),
            tokio::spawn(cluster.clone().balance()),
            tokio::spawn(cluster.clone().place()),
        ];
        if fresh {
            tasks.push(tokio::spawn(cluster.clone().announce()));
        }
        cluster
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
        Ok(cluster)
    }

    /// Gives the node the client API (to serve requests other nodes
    /// forward here); set once, when the server built it.
    pub fn set_api(&self, api: axum::Router) {
        *self.api.write().unwrap_or_else(|p| p.into_inner()) = Some(api);
    }

    /// Where this node's node-to-node listener is bound.
    pub(super) fn listen_address(&self) -> &str {
        &self.listen_address
    }

    /// The client API, once set.
    pub(super) fn api(&self) -> Option<axum::Router> {
        self.api.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub(super) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(super) fn raft_open(&self) -> &std::sync::atomic::AtomicBool {
        &self.raft_open
    }

    /// Whether `node` was heard from within the election timeout.
    pub(super) fn recently_seen(&self, node: NodeId) -> bool {
        self.peers
            .last_seen(node)
            .is_some_and(|s| s < self.unreachable_after())
    }

    /// The ids of the other nodes in `--peers`.
    pub(super) fn other_ids(&self) -> Vec<NodeId> {
        self.others().map(|(id, _)| id).collect()
    }

    /// Every Raft group this node runs: the metadata group, then its
    /// partition groups.
    pub(super) fn rafts(&self) -> Vec<(GroupId, Raft)> {
        let mut rafts = vec![(METADATA_GROUP, self.metadata.clone())];
        rafts.extend(
            self.groups
                .list()
                .into_iter()
                .map(|(group, held)| (group, held.raft.clone())),
        );
        rafts
    }

    pub(super) fn metadata(&self) -> &Raft {
        &self.metadata
    }

    pub(super) fn state_machine(&self) -> &MetaStateMachine {
        &self.state_machine
    }

    pub(super) fn peers(&self) -> &Peers {
        &self.peers
    }

    pub(super) fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// A peer not heard from for this long counts as unreachable.
    pub(super) fn unreachable_after(&self) -> Duration {
        self.config.election_timeout.1
    }

    pub(super) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(super) fn groups(&self) -> &Groups {
        &self.groups
    }

    /// A Raft instance of `group` on this node, over the store.
    /// Starts a partition group's Raft over its log and state machine.
    pub(super) async fn new_partition_raft(
        &self,
        group: GroupId,
        state_machine: PartitionMachine,
        batches: Arc<BatchLog>,
    ) -> Result<Raft, ClusterError> {
        Raft::new(
            self.config.node_id,
            self.partition_config.clone(),
            Network {
                peers: self.peers.clone(),
                group,
                batches: Some(Batches {
                    store: self.store.clone(),
                    log: batches.clone(),
                }),
            },
            LogStore::partition(self.store.clone(), group, batches),
            GroupMachine::Partition(state_machine),
        )
        .await
        .map_err(|e| ClusterError::Start(e.to_string()))
    }

    /// The other members and their node-to-node addresses.
    fn others(&self) -> impl Iterator<Item = (NodeId, &String)> {
        let me = self.config.node_id;
        self.config
            .peers
            .iter()
            .filter(move |(id, _)| **id != me)
            .map(|(id, a)| (*id, a))
    }

    /// Forms the cluster once: only the lowest-id node initializes the
    /// metadata group, only when every peer answers and none belongs to a
    /// cluster yet. Every other node waits to be contacted.
    async fn form(self: Arc<Self>) {
        let me = self.config.node_id;
        if self.config.peers.keys().next() != Some(&me) {
            return;
        }
        let mut rounds = 0u64;
        loop {
            match self.metadata.is_initialized().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "metadata group stopped; cluster not formed");
                    return;
                }
            }
            let mut missing = Vec::new();
            for (id, address) in self.others() {
                match self.peers.status(id, address, Duration::from_secs(1)).await {
                    Ok(status) if status.initialized => {
                        tracing::info!(
                            peer = id,
                            "a peer belongs to a cluster already: waiting to be contacted"
                        );
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => missing.push(id),
                }
            }
            if missing.is_empty() {
                let members: BTreeMap<NodeId, NodeInfo> = self
                    .config
                    .peers
                    .iter()
                    .map(|(id, a)| {
                        (
                            *id,
                            NodeInfo {
                                cluster_address: a.clone(),
                            },
                        )
                    })
                    .collect();
                match self.metadata.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(nodes = ?self.config.peers.keys().collect::<Vec<_>>(), "cluster formed")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster not initialized (already formed?)")
                    }
                }
                return;
            }
            if rounds.is_multiple_of(10) {
                tracing::info!(waiting_for = ?missing, "forming the cluster: waiting for every peer to answer");
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Registers this node's client address in the metadata group (through
    /// its leader), until the metadata shows it.
    async fn register(self: Arc<Self>) {
        let me = self.config.node_id;
        let command = MetaCommand::RegisterNode {
            id: me,
            api_address: self.config.api_address.clone(),
        };
        loop {
            let registered = self
                .state_machine
                .data()
                .nodes
                .get(&me)
                .is_some_and(|n| n.api_address == self.config.api_address);
            if registered {
                return;
            }
            // Until the cluster is formed there is no leader to ask.
            if self.metadata.current_leader().await.is_some() {
                if let Err(e) = self.propose(command.clone()).await {
                    tracing::debug!(error = %e, "registration not committed yet");
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Asks every peer for its status once a second, so each node knows
    /// when it last heard from every other (not only from its leader) and
    /// who leads the partitions it holds no replica of.
    async fn probe(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut terms: BTreeMap<GroupId, u64> = BTreeMap::new();
        loop {
            tick.tick().await;
            self.count_elections(&mut terms);
            for (id, address) in self.others() {
                if let Ok(status) = self.peers.status(id, address, Duration::from_secs(1)).await {
                    self.peers.note_leaders(&status.leaders);
                    self.peers.note_commits(id, &status.committed);
                }
            }
        }
    }

    /// Adds the terms started since the last look in every group held
    /// here to `weir_cluster_elections_total` (a group seen for the first
    /// time counts from there).
    fn count_elections(&self, terms: &mut BTreeMap<GroupId, u64>) {
        let mut now = BTreeMap::new();
        now.insert(
            METADATA_GROUP,
            self.metadata.metrics().borrow_watched().current_term,
        );
        for (group, held) in self.groups.list() {
            now.insert(group, held.raft.metrics().borrow_watched().current_term);
        }
        for (group, term) in &now {
            if let Some(before) = terms.get(group) {
                crate::metrics::METRICS
                    .cluster_elections
                    .inc_by(term.saturating_sub(*before));
            }
        }
        *terms = now;
    }

    /// A member's node-to-node address: from the membership, else from
    /// `--peers`.
    pub(super) fn address_of(&self, node: NodeId) -> Option<String> {
        let metrics = self.metadata.metrics().borrow_watched().clone();
        match metrics.membership_config.get_node(&node) {
            Some(n) => Some(self.peers.address(node, &n.cluster_address)),
            None => self.config.peers.get(&node).cloned(),
        }
    }

    /// What this node sees of the cluster: partitions of the topics
    /// `visible` lets through.
    pub fn info(&self, visible: impl Fn(&str) -> bool) -> ClusterInfo {
        let partitions = self.partitions(visible);
        let me = self.config.node_id;
        let m = self.metadata.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut addresses: BTreeMap<NodeId, String> = self.config.peers.clone();
        for (id, node) in membership.nodes() {
            addresses.insert(*id, node.cluster_address.clone());
        }
        let registered = self.state_machine.data().nodes;
        let unreachable_after = self.unreachable_after();
        let nodes = addresses
            .into_iter()
            .map(|(id, address)| {
                let seen = self.peers.last_seen(id);
                let state = if id == me {
                    match m.state {
                        ServerState::Leader => NodeState::Leader,
                        ServerState::Follower => NodeState::Follower,
                        ServerState::Candidate => NodeState::Candidate,
                        ServerState::Learner | ServerState::Shutdown => NodeState::Learner,
                    }
                } else if seen.is_none_or(|s| s > unreachable_after) {
                    NodeState::Unreachable
                } else if m.current_leader == Some(id) {
                    NodeState::Leader
                } else if voters.contains(&id) {
                    NodeState::Follower
                } else {
                    NodeState::Learner
                };
                ClusterNode {
                    id,
                    address,
                    api_address: registered.get(&id).map(|n| n.api_address.clone()),
                    state,
                    last_seen_ms: seen.map(|s| u64::try_from(s.as_millis()).unwrap_or(u64::MAX)),
                }
            })
            .collect();
        ClusterInfo {
            node_id: me,
            nodes,
            partitions,
            metadata: Some(group_info(me, &m)),
        }
    }

    /// The figures of the cluster metrics.
    pub fn health(&self) -> ClusterHealth {
        let me = self.config.node_id;
        let info = self.info(|_| true);
        let mut health = ClusterHealth::default();
        for node in &info.nodes {
            *health.nodes.entry(node.state.as_str()).or_insert(0) += 1;
        }
        if let Some(meta) = &info.metadata {
            health.metadata_leader = meta.leader == Some(me);
            health.metadata_term = meta.term;
            health.follower_lag_max = meta.followers.iter().map(|f| f.lag).max().unwrap_or(0);
        }
        let unreachable = |id: NodeId| !self.recently_seen(id);
        for p in &info.partitions {
            match p.leader {
                None => health.partitions_leaderless += 1,
                Some(leader) if leader == me => {
                    health.partitions_led += 1;
                    let short = p
                        .replicas
                        .iter()
                        .filter(|r| **r != me)
                        .any(|r| unreachable(*r) || !p.followers.iter().any(|f| f.id == *r));
                    health.partitions_under_replicated += u64::from(short);
                    let lag = p.followers.iter().map(|f| f.lag).max().unwrap_or(0);
                    health.follower_lag_max = health.follower_lag_max.max(lag);
                }
                Some(_) => {}
            }
        }
        health
    }

    /// Why this node should not take client traffic yet, if it should
    /// not: the cluster has not formed (no metadata leader known), or this
    /// node is behind: it has not applied the metadata up to the commit
    /// index its leader last reported (probed every second), has not
    /// started every partition group the metadata gives it, or one of
    /// those has no leader or is behind its leader's reported commit. A
    /// node restarted (or wiped) into a running cluster reports ready once
    /// it has caught up.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        let reason = self.lagging();
        if reason.is_none() {
            self.was_ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        reason
    }

    /// What `not_ready_reason` reports. Until the node has been ready once
    /// (a start, a restart), a group that has not heard from a leader, or
    /// whose leader's commit is not known yet, counts as behind; after
    /// that, only a group known to be behind its leader does — a new
    /// topic's groups electing their first leaders, or a partition that
    /// lost its majority, do not take a caught-up node out of service.
    fn lagging(&self) -> Option<&'static str> {
        let me = self.config.node_id;
        let settled = self.was_ready.load(std::sync::atomic::Ordering::Relaxed);
        let behind = |group: GroupId, m: &openraft::RaftMetrics<super::types::TypeConfig>| {
            let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
            match m.current_leader {
                None => !settled,
                Some(leader) if leader == me => false,
                Some(leader) => match self.peers.reported_commit(group, leader) {
                    Some(commit) => applied < commit,
                    None => !settled,
                },
            }
        };
        let meta = self.metadata.metrics().borrow_watched().clone();
        if meta.current_leader.is_none() {
            return Some("cluster_forming");
        }
        if behind(METADATA_GROUP, &meta) {
            return Some("cluster_catching_up");
        }
        let data = self.state_machine.data();
        let missing = data.topics.values().any(|topic| {
            topic
                .partitions
                .iter()
                .any(|a| a.replicas.contains(&me) && self.groups.get(a.group).is_none())
        });
        let lagging = self
            .groups
            .list()
            .iter()
            .any(|(group, held)| behind(*group, &held.raft.metrics().borrow_watched()));
        (missing || lagging).then_some("cluster_catching_up")
    }

    /// Every partition of the visible topics: its replicas from the
    /// metadata, its leader and progress from its group when this node
    /// holds a replica, else its leader as the peers last reported it.
    fn partitions(&self, visible: impl Fn(&str) -> bool) -> Vec<ClusterPartition> {
        let me = self.config.node_id;
        let data = self.state_machine.data();
        let mut out = Vec::new();
        for (name, topic) in data.topics.iter().filter(|(n, _)| visible(n)) {
            for (assignment, partition) in topic.partitions.iter().zip(0u32..) {
                let info = self
                    .groups
                    .get(assignment.group)
                    .map(|held| group_info(me, &held.raft.metrics().borrow_watched().clone()));
                let leader = match &info {
                    Some(i) => i.leader,
                    None => self.peers.leader_hint(assignment.group),
                };
                out.push(ClusterPartition {
                    topic: name.clone(),
                    partition,
                    leader,
                    replicas: assignment.replicas.clone(),
                    commit_index: info.as_ref().map_or(0, |i| i.commit_index),
                    followers: info.map(|i| i.followers).unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Hands off the leadership of the groups this node leads, then stops
    /// the groups and the listener.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
        self.hand_off_leadership().await;
        let listener = self
            .listener_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = listener {
            task.abort();
        }
        for (group, held) in self.groups.list() {
            if let Err(e) = held.raft.shutdown().await {
                tracing::warn!(group, error = %e, "partition group did not stop cleanly");
            }
        }
        if let Err(e) = self.metadata.shutdown().await {
            tracing::warn!(error = %e, "metadata group did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{raft_configs, ClusterConfig};
    use openraft::SnapshotPolicy;
    use std::time::Duration;

    #[test]
    fn no_group_resumes_a_term_after_a_restart() {
        let config = ClusterConfig {
            node_id: 1,
            peers: [(1, "127.0.0.1:1".to_owned())].into(),
            secret: "s".into(),
            api_address: "127.0.0.1:2".into(),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(600), Duration::from_millis(1200)),
        };
        let (metadata, partitions) = raft_configs(&config).expect("valid settings");
        for c in [&metadata, &partitions] {
            assert_eq!(c.enable_leader_restore, Some(false));
            assert_eq!(c.election_timeout_min, 600);
        }
        assert_eq!(partitions.snapshot_policy, SnapshotPolicy::Never);
    }
}
