//! Produce to a replicated topic, from any node. The node that takes the
//! request validates it and picks each message's partition (explicit,
//! by key, or one partition per request for unkeyed messages, as a single
//! node does); each partition's share then goes to that partition's
//! leader: appended here when this node leads it, else forwarded over the
//! node-to-node listener. The leader stamps the timestamps, builds the
//! record batch, checks idempotency ids and proposes one append entry;
//! the answer comes once the entry is committed by a majority and applied
//! here, so the offsets it carries are final.
//!
//! A share that never reached a leader (none elected yet, or the one
//! asked says it no longer leads before appending) is retried until
//! `APPEND_TIMEOUT`; one whose fate is unknown (leader lost after
//! appending, connection lost mid-request) fails with 503: the client
//! retries it, with idempotency ids when duplicates matter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ReadPolicy;
use serde::{Deserialize, Serialize};
use weir_protocol::binary::{decode_produce, Encoder, ProduceRecord};
use weir_protocol::ProduceResult;

use super::command::{Append, Command, Reply};
use super::groups::PartitionGroup;
use super::network::CallError;
use super::node::Cluster;
use super::types::{GroupId, NodeId};
use crate::broker::partitioner::partition_for_key;
use crate::broker::produce::{from_peer, Prepared};
use crate::broker::replicate::{Committing, Replicated, Replicator};
use crate::broker::subscription::state::Change;
use crate::broker::topic::Topic;
use crate::broker::BrokerError;
use crate::storage::BatchBuilder;
use crate::storage::PauseRecord;

/// How long a share waits for a leader that can take it.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts while no leader takes it.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// A partition's share of a request, with each message's request index.
type Share = Vec<(usize, Prepared)>;

/// Why an append did not happen here.
pub enum AppendError {
    /// This node does not lead the group: nothing was appended.
    NotLeader,
    /// Failed, or its outcome is unknown.
    Failed(BrokerError),
}

/// The broker's seam to the cluster (weak: the broker must not keep the
/// cluster alive).
pub struct ClusterProducer {
    pub cluster: Weak<Cluster>,
    /// Picks the partition of each request's unkeyed messages in turn.
    pub round_robin: AtomicU32,
}

impl Replicator for ClusterProducer {
    fn produce(
        &self,
        topic: &Arc<Topic>,
        batch: Vec<Prepared>,
        at: (u64, u64),
    ) -> Result<Replicated, Vec<Prepared>> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Err(batch);
        };
        let Some(groups) = cluster.state_machine().groups_of(&topic.name()) else {
            return Err(batch);
        };
        let turn = self.round_robin.fetch_add(1, Ordering::Relaxed);
        Ok(Box::pin(async move {
            cluster.produce(groups, batch, turn, at).await
        }))
    }

    fn replicates(&self, topic: &str) -> bool {
        self.cluster
            .upgrade()
            .is_some_and(|c| c.state_machine().groups_of(topic).is_some())
    }

    fn serving(&self, topic: &Topic) -> Option<u64> {
        self.cluster.upgrade()?.serving_base(&topic.name())
    }

    fn claim(&self, topic: &Arc<Topic>, sub: u32, claim: u64) -> Committing<u64> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Box::pin(async { Err(BrokerError::ShuttingDown) });
        };
        let topic = topic.name();
        Box::pin(async move { cluster.claim_subscription(&topic, sub, claim).await })
    }

    fn commit(
        &self,
        topic: &Arc<Topic>,
        sub: u32,
        claim: u64,
        changes: Vec<Change>,
    ) -> Committing<()> {
        match self.cluster.upgrade() {
            Some(cluster) => cluster.commit_subscription(&topic.name(), sub, claim, changes),
            None => Box::pin(async { Err(BrokerError::ShuttingDown) }),
        }
    }

    fn create_topic(&self, name: &str, now: u64) -> Committing<()> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Box::pin(async { Err(BrokerError::ShuttingDown) });
        };
        let name = name.to_owned();
        Box::pin(async move {
            cluster
                .put_topic(&name, &weir_protocol::TopicSpec::default(), now)
                .await
                .map(|_| ())
        })
    }

    fn pause(&self, topic: &str, name: &str, paused: Option<PauseRecord>) -> Committing<()> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Box::pin(async { Err(BrokerError::ShuttingDown) });
        };
        let (topic, name) = (topic.to_owned(), name.to_owned());
        Box::pin(async move { cluster.pause_subscription(&topic, &name, paused).await })
    }
}

/// A share forwarded to the partition's leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedAppend {
    /// The messages, in the binary produce encoding (base64).
    pub records: String,
}

/// The leader's answer to a forwarded share.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardedReply {
    Appended(Vec<ProduceResult>),
    /// It does not lead the group (nothing appended).
    NotLeader,
    /// Failed or unknown (why).
    Failed(String),
}

impl Cluster {
    /// Produces `batch` through the groups of its topic's partitions
    /// (`groups[p]` is partition `p`'s); `turn` picks the partition of
    /// unkeyed messages. Results come in request order.
    async fn produce(
        self: Arc<Self>,
        groups: Vec<GroupId>,
        batch: Vec<Prepared>,
        turn: u32,
        at: (u64, u64),
    ) -> Result<Vec<ProduceResult>, BrokerError> {
        let count = batch.len();
        let partitions = u32::try_from(groups.len()).unwrap_or(u32::MAX).max(1);
        let mut shares: Vec<(u32, Share)> = Vec::new();
        for (i, prepared) in batch.into_iter().enumerate() {
            let partition = match (prepared.partition, &prepared.message.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, partitions),
                (None, None) => turn % partitions,
            };
            match shares.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, share)) => share.push((i, prepared)),
                None => shares.push((partition, vec![(i, prepared)])),
            }
        }
        let appends = shares.into_iter().map(|(partition, share)| {
            let group = groups.get(partition as usize).copied();
            let cluster = self.clone();
            async move {
                match group {
                    Some(group) => cluster.append_share(group, partition, share, at).await,
                    None => Err(BrokerError::invalid(
                        "partition",
                        format!("no partition {partition}"),
                    )),
                }
            }
        });
        let mut results: Vec<Option<ProduceResult>> = vec![None; count];
        for outcome in futures_util::future::join_all(appends).await {
            for (i, result) in outcome? {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| BrokerError::Task("a message got no result".into())))
            .collect()
    }

    /// The leader of `partition` of `topic` as this node knows it.
    pub fn partition_leader(&self, topic: &str, partition: u32) -> Option<NodeId> {
        let groups = self.state_machine().groups_of(topic)?;
        self.leader_of(*groups.get(partition as usize)?)
    }

    /// The leader of `group` as this node knows it.
    pub(super) fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        match self.groups().get(group) {
            Some(held) => held.raft.metrics().borrow_watched().current_leader,
            None => self.peers().leader_hint(group),
        }
    }

    /// Appends one partition's share through its leader, retrying while
    /// nothing was appended.
    async fn append_share(
        &self,
        group: GroupId,
        partition: u32,
        share: Share,
        at: (u64, u64),
    ) -> Result<Vec<(usize, ProduceResult)>, BrokerError> {
        let deadline = Instant::now() + APPEND_TIMEOUT;
        let indexes: Vec<usize> = share.iter().map(|(i, _)| *i).collect();
        let messages: Vec<Prepared> = share.into_iter().map(|(_, p)| p).collect();
        let mut forwarded = None;
        loop {
            let attempt = match self.leader_of(group) {
                Some(leader) if leader == self.node_id() => {
                    self.append_here(group, &messages, at).await
                }
                // Not heard from lately: wait for the election rather
                // than send it a write whose fate would be unknown.
                Some(leader) if !self.recently_seen(leader) => Err(AppendError::NotLeader),
                Some(leader) => {
                    let body = forwarded.get_or_insert_with(|| encode_share(partition, &messages));
                    self.forward(leader, group, body).await
                }
                None => Err(AppendError::NotLeader),
            };
            match attempt {
                Ok(results) => return Ok(indexes.into_iter().zip(results).collect()),
                Err(AppendError::NotLeader) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Err(AppendError::NotLeader) => {
                    return Err(BrokerError::Replication(format!(
                        "partition {partition} has no leader that takes writes; retry"
                    )))
                }
                Err(AppendError::Failed(e)) => return Err(e),
            }
        }
    }

    /// Sends a share to the leader of its group.
    async fn forward(
        &self,
        leader: NodeId,
        group: GroupId,
        body: &ForwardedAppend,
    ) -> Result<Vec<ProduceResult>, AppendError> {
        let Some(address) = self.address_of(leader) else {
            return Err(AppendError::NotLeader);
        };
        let path = format!("/partition/{group}/append");
        match self
            .peers()
            .call(leader, &address, &path, body, APPEND_TIMEOUT)
            .await
        {
            Ok(ForwardedReply::Appended(results)) => Ok(results),
            Ok(ForwardedReply::NotLeader) | Err(CallError::Unreachable(_)) => {
                Err(AppendError::NotLeader)
            }
            Ok(ForwardedReply::Failed(why)) => {
                Err(AppendError::Failed(BrokerError::Replication(why)))
            }
            Err(e) => Err(AppendError::Failed(BrokerError::Replication(format!(
                "the write to the partition's leader (node {leader}) has an unknown outcome: {e}; retry"
            )))),
        }
    }

    /// A share forwarded by another node: appended here if this node
    /// leads the group, stamped with this node's clock.
    pub(super) async fn take_forwarded(
        &self,
        group: GroupId,
        body: ForwardedAppend,
    ) -> ForwardedReply {
        if self.groups().get(group).is_none() {
            return ForwardedReply::NotLeader;
        }
        let records = match base64::engine::general_purpose::STANDARD
            .decode(body.records.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode_produce(&bytes).map_err(|e| e.detail))
        {
            Ok(records) => records,
            Err(why) => {
                return ForwardedReply::Failed(format!("unreadable forwarded batch: {why}"))
            }
        };
        let now = self.broker().now();
        let at = (now, self.broker().clock().wall_at(now));
        let messages = from_peer(records);
        match self.append_here(group, &messages, at).await {
            Ok(results) => ForwardedReply::Appended(results),
            Err(AppendError::NotLeader) => ForwardedReply::NotLeader,
            Err(AppendError::Failed(e)) => ForwardedReply::Failed(e.to_string()),
        }
    }

    /// Appends `messages` to a group this node leads: duplicates of
    /// committed idempotency ids answered with their first offsets, the
    /// rest as one record batch, answered once committed and applied.
    async fn append_here(
        &self,
        group: GroupId,
        messages: &[Prepared],
        at: (u64, u64),
    ) -> Result<Vec<ProduceResult>, AppendError> {
        let held = self.groups().get(group).ok_or(AppendError::NotLeader)?;
        if held.raft.metrics().borrow_watched().current_leader != Some(self.node_id()) {
            return Err(AppendError::NotLeader);
        }
        // In a task of its own: once the id lock is taken and the entry
        // proposed, the append runs to its end even when the request that
        // asked for it goes away (a client or forwarding node giving up),
        // so the next append with the same ids waits for it and sees them.
        let messages = messages.to_vec();
        tokio::spawn(append_to(held, messages, at))
            .await
            .map_err(|e| AppendError::Failed(e.into()))?
    }
}

/// Appends `messages` to `held`, whose group this node leads:
/// duplicates of committed idempotency ids answered with their first
/// offsets, the rest as one record batch, answered once committed and
/// applied.
async fn append_to(
    held: Arc<PartitionGroup>,
    messages: Vec<Prepared>,
    (now, wall): (u64, u64),
) -> Result<Vec<ProduceResult>, AppendError> {
    let with_ids = messages.iter().any(|m| m.id.is_some());
    let window = held.local.record().config.dedupe_window_ms;
    // Appends with ids go one at a time per partition, each checked
    // against every id applied before it.
    let _ids = if with_ids && window > 0 {
        Some(ids_ready(&held).await?)
    } else {
        None
    };
    let seen = if with_ids && window > 0 {
        seen_ids(&held, &messages, now).await?
    } else {
        vec![Seen::New; messages.len()]
    };
    let (append, positions) = build_append(&held, &messages, &seen, now + window, wall);
    let base = match append {
        None => 0,
        Some(append) => match timed(held.raft.client_write(Command::Append(append))).await {
            Ok(answer) => match answer.data {
                Reply::Appended { base } => base,
                other => {
                    return Err(AppendError::Failed(BrokerError::Replication(format!(
                        "the partition's group answered {other:?}"
                    ))))
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                return Err(AppendError::NotLeader)
            }
            Err(e) => {
                return Err(AppendError::Failed(BrokerError::Replication(format!(
                    "the write's outcome is unknown ({e}); retry"
                ))))
            }
        },
    };
    Ok(results_of(held.partition, &seen, &positions, base))
}

/// How long an append with ids waits for the leader to apply its log.
const IDS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes the partition's id lock, once this leader has applied every
/// entry in its log at that moment — committed before its term, or
/// appended by an earlier attempt that its caller gave up on (a node
/// stopping, a client timing out): every id already in the log is then
/// known, and a retry of one is answered as a duplicate.
async fn ids_ready(held: &PartitionGroup) -> Result<tokio::sync::MutexGuard<'_, u64>, AppendError> {
    let mut checked_term = held.ids.lock().await;
    let m = held.raft.metrics().borrow_watched().clone();
    if *checked_term != m.current_term {
        // A committed entry of this term first (a leader's reads are
        // linearizable only then).
        held.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map_err(|_| AppendError::NotLeader)?;
        *checked_term = m.current_term;
    }
    // Nothing of this attempt is proposed yet: giving up is safe.
    held.raft
        .wait(Some(IDS_READY_TIMEOUT))
        .applied_index_at_least(m.last_log_index, "ids known")
        .await
        .map_err(|_| AppendError::NotLeader)?;
    Ok(checked_term)
}

/// Runs a proposal, observing how long it took to commit and apply.
async fn timed<T>(proposal: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let outcome = proposal.await;
    crate::metrics::METRICS
        .cluster_commit_duration
        .observe(started.elapsed().as_secs_f64());
    outcome
}

/// Whether a message was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    New,
    /// Its id was appended before, at this partition and offset (a topic's
    /// ids are one namespace, as on a single node).
    Stored(u32, u64),
    /// Its id is the same as that of an earlier message of the request.
    RepeatOf(usize),
}

/// Looks up each message's idempotency id among those applied here.
async fn seen_ids(
    held: &PartitionGroup,
    messages: &[Prepared],
    now: u64,
) -> Result<Vec<Seen>, AppendError> {
    let ids: Vec<Option<String>> = messages.iter().map(|m| m.id.clone()).collect();
    let (store, topic) = (held.store.clone(), held.local.id());
    tokio::task::spawn_blocking(move || {
        let mut first: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            let Some(id) = id else {
                out.push(Seen::New);
                continue;
            };
            if let Some(&j) = first.get(&id) {
                out.push(Seen::RepeatOf(j));
                continue;
            }
            let stored = store
                .get_dedupe(topic, &id)
                .map_err(|e| AppendError::Failed(e.into()))?
                .filter(|e| e.expires_at > now);
            out.push(stored.map_or(Seen::New, |e| Seen::Stored(e.partition, e.offset)));
            first.insert(id, i);
        }
        Ok(out)
    })
    .await
    .map_err(|e| AppendError::Failed(e.into()))?
}

/// Builds the append of the new messages (their batch and ids) and each
/// new message's position in it; `None` when every message was seen.
fn build_append(
    held: &PartitionGroup,
    messages: &[Prepared],
    seen: &[Seen],
    ids_expire_at: u64,
    wall: u64,
) -> (Option<Append>, Vec<u32>) {
    let stamp = held.stamp(wall);
    let mut batch = BatchBuilder::with_capacity(0);
    let mut bytes = 0;
    let mut ids = Vec::new();
    let mut positions = vec![0; messages.len()];
    for (i, (message, seen)) in messages.iter().zip(seen).enumerate() {
        if *seen == Seen::New {
            positions[i] = batch.len();
            bytes += batch.push(&message.message, stamp);
            if let Some(id) = &message.id {
                ids.push((positions[i], id.clone()));
            }
        }
    }
    if batch.is_empty() {
        return (None, positions);
    }
    let append = Append {
        base: None,
        count: batch.len(),
        bytes,
        first_timestamp: stamp,
        last_timestamp: stamp,
        ids,
        ids_expire_at,
        batch: Some(batch.finish()),
    };
    (Some(append), positions)
}

/// The result of each message once the new ones start at `base`.
fn results_of(partition: u32, seen: &[Seen], positions: &[u32], base: u64) -> Vec<ProduceResult> {
    let offset_of = |i: usize| base + u64::from(positions[i]);
    seen.iter()
        .enumerate()
        .map(|(i, this)| {
            let (partition, offset, duplicate) = match *this {
                Seen::New => (partition, offset_of(i), false),
                Seen::Stored(p, offset) => (p, offset, true),
                Seen::RepeatOf(j) => match seen.get(j) {
                    Some(Seen::Stored(p, offset)) => (*p, *offset, true),
                    _ => (partition, offset_of(j), true),
                },
            };
            ProduceResult {
                partition,
                offset,
                duplicate,
            }
        })
        .collect()
}

/// A share in the binary produce encoding, each message naming its
/// partition.
fn encode_share(partition: u32, messages: &[Prepared]) -> ForwardedAppend {
    let mut encoder = Encoder::produce(
        messages
            .iter()
            .map(|m| m.message.encoded_len())
            .sum::<usize>(),
    );
    for m in messages {
        encoder.push_produce(&ProduceRecord {
            key: m.message.key.clone(),
            json: m.message.json,
            value: m.message.payload.clone(),
            headers: m.message.headers.clone(),
            partition: Some(partition),
            id: m.id.clone(),
            delay_ms: None,
            deliver_at: (m.message.deliver_at > 0).then_some(m.message.deliver_at),
        });
    }
    ForwardedAppend {
        records: base64::engine::general_purpose::STANDARD.encode(encoder.finish()),
    }
}
