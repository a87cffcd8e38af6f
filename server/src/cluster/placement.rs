//! Where partition copies live as nodes come and go. The metadata leader
//! looks at the placement every few seconds and proposes at most one move
//! at a time (`MoveReplicas`): first copies on nodes that left or are being
//! emptied (`Drain`), then — when one node holds at least two copies more
//! than another — one copy from the fullest node to the emptiest, so a node
//! that joins takes its share. Each partition's leader then changes its
//! group's membership to match (`groups.rs`): the new copy joins as a
//! learner, catches up from the log, and the voters are replaced in one
//! joint-consensus change; the old copy leaves once it is out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use super::metadata::{MetaCommand, MetaData};
use super::node::Cluster;
use super::types::NodeId;

/// Period of the placement check (and so the pace of moves).
const PLACE_EVERY: Duration = Duration::from_secs(3);

/// One proposed move: partition `partition` of `topic` to `replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<NodeId>,
}

/// The next move the placement needs, if any. `voters` are the metadata
/// group's voters; copies go only to voters that are not draining.
pub fn plan(data: &MetaData, voters: &[NodeId]) -> Option<Move> {
    let targets: BTreeSet<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| !data.draining.contains(v))
        .collect();
    if targets.is_empty() {
        return None;
    }
    let mut load: BTreeMap<NodeId, usize> = targets.iter().map(|t| (*t, 0)).collect();
    for topic in data.topics.values() {
        for a in &topic.partitions {
            for r in &a.replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
    }
    let emptiest = |exclude: &[NodeId], load: &BTreeMap<NodeId, usize>| {
        load.iter()
            .filter(|(n, _)| !exclude.contains(n))
            .min_by_key(|(n, l)| (**l, **n))
            .map(|(n, _)| *n)
    };
    // Copies on nodes that left or are leaving.
    for (name, topic) in &data.topics {
        for (a, partition) in topic.partitions.iter().zip(0u32..) {
            if let Some(pos) = a.replicas.iter().position(|r| !targets.contains(r)) {
                let to = emptiest(&a.replicas, &load)?;
                let mut replicas = a.replicas.clone();
                replicas[pos] = to;
                return Some(Move {
                    topic: name.clone(),
                    partition,
                    replicas,
                });
            }
        }
    }
    // Balance: one copy from the fullest node to the emptiest.
    let (&full, &most) = load
        .iter()
        .max_by_key(|(n, l)| (**l, std::cmp::Reverse(**n)))?;
    let (&empty, &least) = load.iter().min_by_key(|(n, l)| (**l, **n))?;
    if most < least + 2 {
        return None;
    }
    for (name, topic) in &data.topics {
        for (a, partition) in topic.partitions.iter().zip(0u32..) {
            if let Some(pos) = a.replicas.iter().position(|r| *r == full) {
                if a.replicas.contains(&empty) {
                    continue;
                }
                let mut replicas = a.replicas.clone();
                replicas[pos] = empty;
                return Some(Move {
                    topic: name.clone(),
                    partition,
                    replicas,
                });
            }
        }
    }
    None
}

impl Cluster {
    /// On the metadata leader: proposes the moves the placement needs, one
    /// per period.
    pub(super) async fn place(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PLACE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let leads =
                self.metadata().metrics().borrow_watched().current_leader == Some(self.node_id());
            if !leads {
                continue;
            }
            let data = self.state_machine().data();
            let Some(next) = plan(&data, &self.state_machine().voters()) else {
                continue;
            };
            tracing::info!(topic = %next.topic, partition = next.partition, replicas = ?next.replicas, "moving a partition's copies");
            let command = MetaCommand::MoveReplicas {
                topic: next.topic,
                partition: next.partition,
                replicas: next.replicas,
            };
            if let Err(e) = self.propose(command).await {
                tracing::warn!(error = %e, "could not move a partition's copies");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::{Assignment, MetaTopic};
    use weir_protocol::{Retention, TopicConfig};

    fn data(placements: &[&[NodeId]]) -> MetaData {
        let mut data = MetaData::default();
        let config = TopicConfig {
            partitions: placements.len() as u32,
            retention: Retention::default(),
            max_message_bytes: 1024,
            dedupe_window_ms: 0,
            replication_factor: placements[0].len() as u32,
        };
        let partitions = placements
            .iter()
            .zip(1u64..)
            .map(|(r, group)| Assignment {
                group,
                replicas: r.to_vec(),
                initial: Vec::new(),
            })
            .collect();
        data.topics.insert(
            "t".into(),
            MetaTopic {
                config,
                created_at: 0,
                partitions,
                subscriptions: Default::default(),
            },
        );
        data
    }

    /// Applies moves until the plan is done; returns the final placement.
    fn settle(mut data: MetaData, voters: &[NodeId]) -> Vec<Vec<NodeId>> {
        for _ in 0..100 {
            let Some(m) = plan(&data, voters) else {
                break;
            };
            let a = &mut data.topics.get_mut(&m.topic).unwrap().partitions[m.partition as usize];
            assert_eq!(a.replicas.len(), m.replicas.len());
            a.replicas = m.replicas;
        }
        assert_eq!(plan(&data, voters), None, "the plan must settle");
        data.topics["t"]
            .partitions
            .iter()
            .map(|a| a.replicas.clone())
            .collect()
    }

    #[test]
    fn a_balanced_placement_needs_no_move() {
        let d = data(&[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]);
        assert_eq!(plan(&d, &[1, 2, 3]), None);
    }

    #[test]
    fn a_new_node_takes_its_share() {
        let d = data(&[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[1, 2, 3]]);
        let placed = settle(d, &[1, 2, 3, 4]);
        let on_4 = placed.iter().filter(|r| r.contains(&4)).count();
        assert_eq!(on_4, 3, "12 copies over 4 nodes: {placed:?}");
        for r in &placed {
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 3, "{placed:?}");
        }
    }

    #[test]
    fn a_draining_or_departed_node_is_emptied() {
        let mut d = data(&[&[1, 2, 3], &[2, 3, 4], &[3, 4, 1], &[4, 1, 2]]);
        d.draining.insert(4);
        let placed = settle(d.clone(), &[1, 2, 3, 4]);
        assert!(placed.iter().all(|r| !r.contains(&4)), "{placed:?}");
        // Gone from the voters altogether: the same.
        d.draining.clear();
        let placed = settle(d, &[1, 2, 3]);
        assert!(placed.iter().all(|r| !r.contains(&4)), "{placed:?}");
    }

    #[test]
    fn no_move_without_a_node_to_take_the_copy() {
        let mut d = data(&[&[1, 2, 3]]);
        d.draining.insert(3);
        assert_eq!(plan(&d, &[1, 2, 3]), None);
    }
}
