//! Controlled shutdown: before a node stops its groups, it hands the
//! leadership of each group it leads to another voter (the reachable one
//! with the most entries), so a rolling restart costs each group a
//! leadership transfer instead of an election timeout without a leader.
//! Bounded: a node that cannot hand off in time stops anyway, and its
//! groups elect a leader as after a crash.

use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use super::node::Cluster;
use super::types::{NodeId, TypeConfig};

/// Longest a stopping node waits for its groups to name other leaders.
const HAND_OFF_FOR: Duration = Duration::from_secs(3);

impl Cluster {
    /// Hands off the leadership of every group this node leads (see the
    /// module docs); returns once each names another leader or the time
    /// is up.
    pub(super) async fn hand_off_leadership(&self) {
        let me = self.node_id();
        let mut handed = Vec::new();
        for (group, raft) in self.rafts() {
            let m = raft.metrics().borrow_watched().clone();
            if m.current_leader != Some(me) {
                continue;
            }
            let Some(to) = successor(&m, me, |n| self.recently_seen(n)) else {
                continue;
            };
            match raft.trigger().transfer_leader(to).await {
                Ok(()) => handed.push(raft),
                Err(e) => tracing::warn!(group, to, error = %e, "could not hand off leadership"),
            }
        }
        if handed.is_empty() {
            return;
        }
        let deadline = Instant::now() + HAND_OFF_FOR;
        let mut moved = 0usize;
        for raft in &handed {
            let left = deadline.saturating_duration_since(Instant::now());
            let elsewhere = raft
                .wait(Some(left))
                .metrics(
                    |m| m.current_leader.is_some_and(|l| l != me),
                    "leadership handed off",
                )
                .await;
            moved += usize::from(elsewhere.is_ok());
        }
        tracing::info!(
            groups = handed.len(),
            moved,
            "leadership handed off before stopping"
        );
    }
}

/// The voter to hand a group's leadership to: among the other voters this
/// node heard from recently, the one with the most entries.
fn successor(
    m: &openraft::RaftMetrics<TypeConfig>,
    me: NodeId,
    reachable: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    let matched = m.replication.as_ref()?;
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != me && reachable(*v))
        .max_by_key(|v| matched.get(v).cloned().flatten().map(|l| l.index))
}
