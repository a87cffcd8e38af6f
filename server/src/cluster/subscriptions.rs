//! Subscription state through the partition groups. A subscription of a
//! replicated topic is served by one node at a time: the leader of the
//! topic's partition 0 (every subscription of a topic on the same node).
//! That node *claims* a subscription before it serves it: one update per
//! partition group carrying a claim number that grows with every claim (the
//! group's term in the high bits, so a claim is never made twice: a term is
//! led by one process, since a restarted leader must win a new election);
//! each group then refuses updates of older claims, and once the claims are
//! applied on this node its store holds every change committed before, so
//! the state is loaded from it. Every change the serving node makes
//! (delivery marks, acks, nacks, seeks, dead letters) is then committed
//! through the groups of the partitions it is about before the request that
//! made it is answered.
//!
//! Updates for one group leave this node in the order they were made: one
//! relay task per group takes whatever queued since its last proposal as a
//! single entry (grouping concurrent acks into one commit), proposed on the
//! leader here or forwarded to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, Reply, SubUpdate};
use super::network::CallError;
use super::node::Cluster;
use super::partition::change_partition;
use super::types::{GroupId, NodeId, TypeConfig};
use crate::broker::replicate::Committing;
use crate::broker::subscription::state::Change;
use crate::broker::BrokerError;

/// How long an update waits for a leader that takes it.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts while no leader takes it.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Most updates proposed as one entry.
const MAX_UPDATES_PER_ENTRY: usize = 512;
/// Entries of one group proposed here and not answered yet, at most.
const MAX_ENTRIES_IN_FLIGHT: usize = 8;
/// Claims of one term: the term is shifted by this many bits.
const CLAIM_BITS: u32 = 16;

/// Where a topic's subscriptions are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The topic is not replicated: by this node, as on a lone server.
    Locally,
    /// By this node (it leads the topic's partition 0).
    Here,
    /// By that node.
    At(NodeId),
    /// Nobody right now (partition 0 has no leader).
    Nobody,
}

/// An update waiting for its commit: `(applied, index of its entry)`.
type Outcome = Result<(bool, u64), String>;

struct Queued {
    update: SubUpdate,
    done: oneshot::Sender<Outcome>,
}

/// This node's relay of subscription updates to the partition groups.
#[derive(Default)]
pub struct SubRelay {
    queues: Mutex<HashMap<GroupId, mpsc::UnboundedSender<Queued>>>,
    /// The last claim made per subscription (claims never repeat).
    claims: Mutex<HashMap<u32, u64>>,
}

/// A node's answer to forwarded updates.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardedSubsReply {
    Applied {
        applied: Vec<bool>,
        index: u64,
    },
    /// It does not lead the group (nothing proposed).
    NotLeader,
    /// Failed or unknown (why).
    Failed(String),
}

impl Cluster {
    /// Where the subscriptions of `topic` are served.
    pub fn subscriptions_served(&self, topic: &str) -> Served {
        let Some(groups) = self.state_machine().groups_of(topic) else {
            return Served::Locally;
        };
        match groups.first().and_then(|g| self.leader_of(*g)) {
            Some(leader) if leader == self.node_id() => Served::Here,
            Some(leader) => Served::At(leader),
            None => Served::Nobody,
        }
    }

    /// The claim base under which this node may serve the subscriptions
    /// of `topic` now: the term of partition 0's group while this node
    /// leads it.
    pub(super) fn serving_base(&self, topic: &str) -> Option<u64> {
        let groups = self.state_machine().groups_of(topic)?;
        let held = self.groups().get(*groups.first()?)?;
        let m = held.raft.metrics();
        let m = m.borrow_watched();
        (m.state == ServerState::Leader && m.current_leader == Some(self.node_id()))
            .then(|| m.current_term << CLAIM_BITS)
    }

    /// Claims subscription `sub` of `topic` for this node (see the module
    /// docs); answers the claim once every partition's group applied it
    /// here.
    pub(super) async fn claim_subscription(
        self: &Arc<Self>,
        topic: &str,
        sub: u32,
        base: u64,
    ) -> Result<u64, BrokerError> {
        let claim = {
            let mut claims = self
                .sub_relay()
                .claims
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Some(claim) = next_claim(claims.get(&sub).copied(), base) else {
                return Err(BrokerError::Replication(format!(
                    "subscription {sub} was claimed {} times in this term: retry after the next leader change of its partition 0",
                    1u64 << CLAIM_BITS
                )));
            };
            claims.insert(sub, claim);
            claim
        };
        let data = self.state_machine().data();
        let t = data
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_owned()))?;
        let starts = t
            .subscriptions
            .values()
            .find(|s| s.id == sub)
            .map(|s| s.starts.clone())
            .unwrap_or_default();
        let mut waits = Vec::new();
        for (p, assignment) in t.partitions.iter().enumerate() {
            let update = SubUpdate {
                sub,
                claim,
                start: Some(starts.get(p).copied().unwrap_or(0)),
                changes: Vec::new(),
            };
            let group = assignment.group;
            let rx = self.relay(group, update);
            waits.push(async move {
                match rx.await {
                    Ok(Ok((true, index))) => self.applied_here(group, p, index).await,
                    Ok(Ok((false, _))) => Err(superseded()),
                    Ok(Err(why)) => Err(BrokerError::Replication(why)),
                    Err(_) => Err(BrokerError::ShuttingDown),
                }
            });
        }
        futures_util::future::try_join_all(waits).await?;
        Ok(claim)
    }

    /// Waits until this node applied `group` up to `index`.
    async fn applied_here(&self, group: GroupId, p: usize, index: u64) -> Result<(), BrokerError> {
        let Some(held) = self.groups().get(group) else {
            return Err(BrokerError::Replication(format!(
                "this node leads partition 0 but holds no copy of partition {p}: the subscription cannot be served here"
            )));
        };
        held.raft
            .wait(Some(UPDATE_TIMEOUT))
            .applied_index_at_least(Some(index), "subscription claim")
            .await
            .map(|_| ())
            .map_err(|e| {
                BrokerError::Replication(format!(
                    "partition {p} did not catch up here in time ({e}); retry"
                ))
            })
    }

    /// Commits `changes` of `sub` made under `claim`, each through the
    /// group of its partition; queued before this returns.
    pub(super) fn commit_subscription(
        self: &Arc<Self>,
        topic: &str,
        sub: u32,
        claim: u64,
        changes: Vec<Change>,
    ) -> Committing<()> {
        let Some(groups) = self.state_machine().groups_of(topic) else {
            return Box::pin(async { Err(superseded()) });
        };
        let mut by_partition: BTreeMap<u32, Vec<Change>> = BTreeMap::new();
        for change in changes {
            by_partition
                .entry(change_partition(&change))
                .or_default()
                .push(change);
        }
        let mut waits = Vec::new();
        for (p, changes) in by_partition {
            let Some(group) = groups.get(p as usize) else {
                return Box::pin(async move {
                    Err(BrokerError::Replication(format!(
                        "partition {p} is not in the cluster's metadata yet; retry"
                    )))
                });
            };
            // Parked messages are read back from this node's store: wait
            // until it applied them (other changes are only read back
            // after a claim, which waits by itself).
            let parks = changes.iter().any(|c| matches!(c, Change::Park { .. }));
            let update = SubUpdate {
                sub,
                claim,
                start: None,
                changes,
            };
            waits.push((*group, p, parks, self.relay(*group, update)));
        }
        let cluster = self.clone();
        Box::pin(async move {
            for (group, p, parks, rx) in waits {
                match rx.await {
                    Ok(Ok((true, index))) if parks => {
                        cluster.applied_here(group, p as usize, index).await?;
                    }
                    Ok(Ok((true, _))) => {}
                    Ok(Ok((false, _))) => return Err(superseded()),
                    Ok(Err(why)) => return Err(BrokerError::Replication(why)),
                    Err(_) => return Err(BrokerError::ShuttingDown),
                }
            }
            Ok(())
        })
    }

    /// Queues `update` for `group`'s relay task (started on first use).
    fn relay(self: &Arc<Self>, group: GroupId, update: SubUpdate) -> oneshot::Receiver<Outcome> {
        let (done, rx) = oneshot::channel();
        let mut queued = Some(Queued { update, done });
        let mut queues = self
            .sub_relay()
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for _ in 0..2 {
            let sender = queues.entry(group).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(relay_task(Arc::downgrade(self), group, rx));
                tx
            });
            let Some(item) = queued.take() else { break };
            match sender.send(item) {
                Ok(()) => break,
                // Its task ended: start another.
                Err(mpsc::error::SendError(item)) => {
                    queued = Some(item);
                    queues.remove(&group);
                }
            }
        }
        rx
    }

    /// Proposes `updates` as one entry of `group` through its leader,
    /// retrying while nothing was proposed.
    async fn propose_updates(
        &self,
        group: GroupId,
        updates: Vec<SubUpdate>,
    ) -> Result<(Vec<bool>, u64), String> {
        let deadline = Instant::now() + UPDATE_TIMEOUT;
        loop {
            let attempt = match self.leader_of(group) {
                Some(leader) if leader == self.node_id() => {
                    self.propose_here(group, updates.clone()).await
                }
                Some(leader) if !self.recently_seen(leader) => ForwardedSubsReply::NotLeader,
                Some(leader) => self.forward_updates(leader, group, &updates).await,
                None => ForwardedSubsReply::NotLeader,
            };
            match attempt {
                ForwardedSubsReply::Applied { applied, index } => return Ok((applied, index)),
                ForwardedSubsReply::NotLeader if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                ForwardedSubsReply::NotLeader => {
                    return Err("the partition has no leader that takes writes; retry".into())
                }
                ForwardedSubsReply::Failed(why) => return Err(why),
            }
        }
    }

    async fn forward_updates(
        &self,
        leader: NodeId,
        group: GroupId,
        updates: &[SubUpdate],
    ) -> ForwardedSubsReply {
        let Some(address) = self.address_of(leader) else {
            return ForwardedSubsReply::NotLeader;
        };
        let path = format!("/partition/{group}/subscriptions");
        match self
            .peers()
            .call(leader, &address, &path, &updates, UPDATE_TIMEOUT)
            .await
        {
            Ok(reply) => reply,
            Err(CallError::Unreachable(_)) => ForwardedSubsReply::NotLeader,
            Err(e) => ForwardedSubsReply::Failed(format!(
                "the subscription change sent to the partition's leader (node {leader}) has an unknown outcome: {e}; retry"
            )),
        }
    }

    /// Proposes `updates` to a group this node leads.
    pub(super) async fn propose_here(
        &self,
        group: GroupId,
        updates: Vec<SubUpdate>,
    ) -> ForwardedSubsReply {
        let Some(held) = self.groups().get(group) else {
            return ForwardedSubsReply::NotLeader;
        };
        if held.raft.metrics().borrow_watched().current_leader != Some(self.node_id()) {
            return ForwardedSubsReply::NotLeader;
        }
        match held
            .raft
            .client_write(Command::Subscriptions(updates))
            .await
        {
            Ok(answer) => match answer.data {
                Reply::Subscriptions(applied) => ForwardedSubsReply::Applied {
                    applied,
                    index: answer.log_id.index,
                },
                other => {
                    ForwardedSubsReply::Failed(format!("the partition's group answered {other:?}"))
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                ForwardedSubsReply::NotLeader
            }
            Err(e) => {
                ForwardedSubsReply::Failed(format!("the change's outcome is unknown ({e}); retry"))
            }
        }
    }

    /// When this node leads `group`: hands `updates` to it as one entry
    /// (in order with the entries before) and returns its answer to come;
    /// else gives the updates back. Waits while `in_flight` entries are
    /// unanswered.
    async fn pipeline_here(
        &self,
        group: GroupId,
        updates: Vec<SubUpdate>,
        in_flight: &Arc<tokio::sync::Semaphore>,
    ) -> Result<impl std::future::Future<Output = Result<(Vec<bool>, u64), String>>, Vec<SubUpdate>>
    {
        let Some(held) = self.groups().get(group) else {
            return Err(updates);
        };
        if held.raft.metrics().borrow_watched().current_leader != Some(self.node_id()) {
            return Err(updates);
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return Err(updates);
        };
        let (responder, answer) =
            openraft::impls::ProgressResponder::<TypeConfig, _>::complete_only();
        if let Err(e) = held
            .raft
            .client_write_ff(Command::Subscriptions(updates), Some(responder))
            .await
        {
            let why = format!("the partition's group stopped ({e}); retry");
            return Ok(futures_util::future::Either::Left(async move { Err(why) }));
        }
        Ok(futures_util::future::Either::Right(async move {
            let _permit = permit;
            match answer.await {
                Ok(Ok(written)) => match written.data {
                    Reply::Subscriptions(applied) => Ok((applied, written.log_id.index)),
                    other => Err(format!("the partition's group answered {other:?}")),
                },
                Ok(Err(e)) => Err(format!(
                    "the change was not committed ({e}): the partition's leader changed; retry"
                )),
                Err(_) => Err("the partition's group stopped; retry".into()),
            }
        }))
    }

    fn sub_relay(&self) -> &SubRelay {
        &self.subs
    }
}

/// Sends the updates queued for `group`, one entry at a time, in order.
async fn relay_task(
    cluster: Weak<Cluster>,
    group: GroupId,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_UPDATES_PER_ENTRY {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let (updates, dones): (Vec<SubUpdate>, Vec<oneshot::Sender<Outcome>>) =
            batch.into_iter().map(|q| (q.update, q.done)).unzip();
        // Led here: handed to the group in order and answered when
        // committed, while the next entries are proposed behind it.
        let updates = match cluster.pipeline_here(group, updates, &in_flight).await {
            Ok(answer) => {
                tokio::spawn(async move {
                    let outcome = answer.await;
                    answer_all(dones, outcome);
                });
                continue;
            }
            Err(updates) => updates,
        };
        // Elsewhere (or not led yet): one forwarded entry at a time.
        let outcome = cluster.propose_updates(group, updates).await;
        answer_all(dones, outcome);
    }
}

/// Gives each waiter of an entry its update's outcome.
fn answer_all(dones: Vec<oneshot::Sender<Outcome>>, outcome: Result<(Vec<bool>, u64), String>) {
    match outcome {
        Ok((applied, index)) => {
            for (done, ok) in dones.into_iter().zip(applied) {
                let _ = done.send(Ok((ok, index)));
            }
        }
        Err(why) => {
            for done in dones {
                let _ = done.send(Err(why.clone()));
            }
        }
    }
}

/// The claim after `last` (this process's previous one) under `base` (the
/// current term, shifted): the base itself in a new term, else one more;
/// `None` once the term's claims are used up (the next would be one of the
/// next term's).
fn next_claim(last: Option<u64>, base: u64) -> Option<u64> {
    let claim = last.map_or(base, |last| last.saturating_add(1).max(base));
    (claim - base < 1 << CLAIM_BITS).then_some(claim)
}

fn superseded() -> BrokerError {
    BrokerError::Replication(
        "another node took over this subscription (its partition 0 has a new leader); retry".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::{next_claim, CLAIM_BITS};

    #[test]
    fn claims_grow_within_a_term_and_jump_to_the_next_terms() {
        let term = |t: u64| t << CLAIM_BITS;
        assert_eq!(next_claim(None, term(4)), Some(term(4)));
        assert_eq!(next_claim(Some(term(4)), term(4)), Some(term(4) + 1));
        assert_eq!(next_claim(Some(term(4) + 7), term(6)), Some(term(6)));
        // A claim of an earlier term is never made again.
        assert_eq!(next_claim(Some(term(6) + 2), term(6)), Some(term(6) + 3));
        // Never one of the next term's.
        let last = term(5) - 1;
        assert_eq!(next_claim(Some(last), term(4)), None);
        assert_eq!(next_claim(Some(last - 1), term(4)), Some(last));
    }
}
