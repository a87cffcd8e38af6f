//! The client side of node-to-node RPCs: openraft's network for every
//! group, over HTTP to the peers' cluster listeners (`rpc.rs` serves
//! them). Each request carries the cluster secret, the sender's id and the
//! id of the node it is meant for. Bodies are JSON.
//!
//! Failures map onto what openraft expects: no connection or no answer in
//! time is `Unreachable` (openraft backs off), a refused or broken answer
//! is a `Network` error.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::command::Command;
use super::log_store::BatchLog;
use super::types::{GroupId, NodeId, NodeInfo, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::storage::Store;

/// Header naming the node that sends a cluster request.
pub const FROM_HEADER: &str = "weir-node-from";
/// Header naming the node a cluster request is meant for.
pub const TO_HEADER: &str = "weir-node-to";

/// What a node shares with every connection to its peers.
pub struct Peers {
    me: NodeId,
    secret: String,
    /// Addresses from this node's own `--peers`: preferred over the ones
    /// in the membership (another node's view, e.g. through a proxy).
    local: BTreeMap<NodeId, String>,
    http: reqwest::Client,
    /// When each peer was last heard from (a request from it, or an
    /// answer to ours).
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// Leaders of groups this node may not hold, as its peers report them
    /// in their status: `group → (term, leader)`, the highest term kept.
    hints: Mutex<HashMap<GroupId, (u64, NodeId)>>,
    /// Commit indexes leaders report for their groups: `group → (leader,
    /// index)`, from the last status of each.
    commits: Mutex<HashMap<GroupId, (NodeId, u64)>>,
}

impl Peers {
    pub fn new(
        me: NodeId,
        secret: String,
        local: BTreeMap<NodeId, String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Peers {
            me,
            secret,
            local,
            http,
            seen: Mutex::new(HashMap::new()),
            hints: Mutex::new(HashMap::new()),
            commits: Mutex::new(HashMap::new()),
        })
    }

    /// Where to reach `node`: this node's `--peers` entry, else `known`.
    pub fn address(&self, node: NodeId, known: &str) -> String {
        self.local
            .get(&node)
            .cloned()
            .unwrap_or_else(|| known.to_owned())
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The HTTP client of node-to-node calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Notes that `node` was just heard from.
    pub fn saw(&self, node: NodeId) {
        if node != self.me {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.insert(node, Instant::now());
        }
    }

    /// How long ago `node` was last heard from, if ever.
    pub fn last_seen(&self, node: NodeId) -> Option<Duration> {
        if node == self.me {
            return Some(Duration::ZERO);
        }
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&node).map(Instant::elapsed)
    }

    /// Keeps the leaders a peer reports where their term is the newest.
    pub fn note_leaders(&self, leaders: &BTreeMap<GroupId, (u64, NodeId)>) {
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        for (group, (term, leader)) in leaders {
            let newer = hints.get(group).is_none_or(|(known, _)| term >= known);
            if newer {
                hints.insert(*group, (*term, *leader));
            }
        }
    }

    /// Keeps the commit indexes `leader` reports for the groups it leads.
    pub fn note_commits(&self, leader: NodeId, committed: &BTreeMap<GroupId, u64>) {
        let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        for (group, index) in committed {
            commits.insert(*group, (leader, *index));
        }
    }

    /// The commit index `leader` last reported for `group`.
    pub fn reported_commit(&self, group: GroupId, leader: NodeId) -> Option<u64> {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        commits
            .get(&group)
            .filter(|(from, _)| *from == leader)
            .map(|(_, index)| *index)
    }

    /// The leader of `group` as last reported by a peer.
    pub fn leader_hint(&self, group: GroupId) -> Option<NodeId> {
        let hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        hints.get(&group).map(|(_, leader)| *leader)
    }

    /// Sends one RPC; `Err` carries whether the peer could not be reached.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        address: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let response = self
            .http
            .post(format!("http://{address}{path}"))
            .bearer_auth(&self.secret)
            .header(FROM_HEADER, self.me.to_string())
            .header(TO_HEADER, target.to_string())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable(e.to_string())
                } else {
                    CallError::Lost(e.to_string())
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(CallError::Refused(format!("{status}: {text}")));
        }
        let out = response
            .json()
            .await
            .map_err(|e| CallError::Refused(format!("unreadable answer: {e}")))?;
        self.saw(target);
        Ok(out)
    }

    /// Asks a peer for its status (forming the cluster).
    pub async fn status(
        &self,
        target: NodeId,
        address: &str,
        timeout: Duration,
    ) -> Result<PeerStatus, CallError> {
        self.call(target, address, "/status", &(), timeout).await
    }
}

/// Why an RPC failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No connection: the request was never sent.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// Sent, but no answer came (timeout, connection lost): the peer may
    /// have acted on it.
    #[error("no answer from the peer: {0}")]
    Lost(String),
    #[error("peer refused the request: {0}")]
    Refused(String),
}

impl CallError {
    fn rpc<E: std::error::Error>(self) -> RPCError<TypeConfig, E> {
        match self {
            CallError::Unreachable(m) | CallError::Lost(m) => {
                RPCError::Unreachable(Unreachable::from_string(m))
            }
            CallError::Refused(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }

    fn streaming(self) -> StreamingError<TypeConfig> {
        match self {
            CallError::Unreachable(m) | CallError::Lost(m) => {
                StreamingError::Unreachable(Unreachable::from_string(m))
            }
            CallError::Refused(m) => StreamingError::Network(NetworkError::from_string(m)),
        }
    }
}

/// A node's answer to `/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: NodeId,
    /// Whether its metadata group has state (a vote, a log or a
    /// membership): it belongs to a cluster already.
    pub initialized: bool,
    /// The leaders it knows of the partition groups it holds:
    /// `group → (term, leader)`.
    #[serde(default)]
    pub leaders: BTreeMap<GroupId, (u64, NodeId)>,
    /// The commit index of every group it leads (the metadata group
    /// included): a node catching up compares its progress with these.
    #[serde(default)]
    pub committed: BTreeMap<GroupId, u64>,
}

/// The body of a snapshot sent whole.
#[derive(Serialize, Deserialize)]
pub struct SnapshotBody {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// openraft's network factory for one group.
pub struct Network {
    pub peers: Arc<Peers>,
    pub group: GroupId,
    /// A partition group's batches, which its append requests carry.
    pub batches: Option<Batches>,
}

/// Where a partition group's entries find their batches.
#[derive(Clone)]
pub struct Batches {
    pub store: Arc<Store>,
    pub log: Arc<BatchLog>,
}

impl Batches {
    /// Puts back into `entries` the batches their appends name (the log
    /// keeps them apart). A batch retention already removed travels
    /// without its body: the follower records the same gap.
    async fn attach(
        &self,
        entries: &mut [openraft::alias::EntryOf<TypeConfig>],
    ) -> Result<(), String> {
        let wanted: Vec<(usize, u64)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.payload {
                openraft::EntryPayload::Normal(Command::Append(a)) if a.batch.is_none() => {
                    a.base.map(|base| (i, base))
                }
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let (store, log) = (self.store.clone(), self.log.clone());
        let bodies = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(i, base)| {
                    store
                        .raw_batch(log.topic, log.partition, base)
                        .map(|body| (i, body))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        for (i, body) in bodies {
            if let openraft::EntryPayload::Normal(Command::Append(a)) = &mut entries[i].payload {
                a.batch = body;
            }
        }
        Ok(())
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            peers: self.peers.clone(),
            group: self.group,
            batches: self.batches.clone(),
            target,
            address: self.peers.address(target, &node.cluster_address),
        }
    }
}

/// One group's connection to one peer (connections are pooled across
/// groups by the shared HTTP client).
pub struct PeerClient {
    peers: Arc<Peers>,
    group: GroupId,
    batches: Option<Batches>,
    target: NodeId,
    address: String,
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        what: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let path = format!("/raft/{}/{what}", self.group);
        self.peers
            .call(self.target, &self.address, &path, body, timeout)
            .await
    }

    /// A small RPC (append, vote, transfer) within openraft's budget.
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        what: &str,
        body: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let timeout = budget(option, Duration::from_millis(500));
        self.call(what, body, timeout).await.map_err(CallError::rpc)
    }
}

/// Time for an RPC: openraft's budget, but never under a floor that a
/// loaded loopback or LAN can meet.
fn budget(option: &RPCOption, floor: Duration) -> Duration {
    option.hard_ttl().max(floor)
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        if let Some(batches) = &self.batches {
            batches
                .attach(&mut rpc.entries)
                .await
                .map_err(|e| RPCError::Network(NetworkError::from_string(e)))?;
        }
        self.rpc("append", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("vote", &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let body = SnapshotBody {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let timeout = budget(&option, Duration::from_secs(30));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = self.call("snapshot", &body, timeout) => answer.map_err(CallError::streaming),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc("transfer-leader", &req, &option).await
    }
}
