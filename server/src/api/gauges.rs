//! State gauges computed at scrape time from the broker, so they never
//! drift: readiness, topic sizes, subscription backlog, in flight,
//! delayed, oldest unacked age and lag, storage engine and disk figures.
//! With per-name labels off (`metrics_per_topic = false`) topic and
//! subscription series are summed (ages: the maximum) under `_all`.

use std::collections::HashMap;

use super::AppState;
use weir_protocol::NodeState;

use crate::cluster::ClusterHealth;
use crate::metrics::{name_label, METRICS};

/// Sums (or maxima, for ages) per label set.
#[derive(Default)]
struct SubTotals {
    backlog: u64,
    in_flight: u64,
    delayed: u64,
    oldest_ms: u64,
    lag_messages: u64,
    lag_ms: u64,
}

/// Recomputes every state gauge.
pub async fn refresh(state: &AppState) {
    let m = &*METRICS;
    m.ready.set(i64::from(state.not_ready_reason().is_none()));
    m.topic_messages.reset();
    m.topic_bytes.reset();
    for g in [
        &m.sub_backlog,
        &m.sub_in_flight,
        &m.sub_delayed,
        &m.sub_lag_messages,
    ] {
        g.reset();
    }
    m.sub_oldest_unacked_age.reset();
    m.sub_paused.reset();
    m.sub_lag_seconds.reset();
    let mut topics: HashMap<String, (u64, u64)> = HashMap::new();
    let mut subs: HashMap<(String, String), SubTotals> = HashMap::new();
    for topic in state.broker.all_topics() {
        let name = topic.name();
        let t = topics.entry(name_label(&name).to_owned()).or_default();
        for p in topic.partitions() {
            t.0 += p.committed().saturating_sub(p.low());
            t.1 += p.bytes();
        }
        for sub in topic.subscription_list() {
            let record = sub.record();
            for (cause, on) in [
                ("manual", record.paused.as_ref().is_some_and(|p| !p.breaker)),
                (
                    "circuit_breaker",
                    record.paused.as_ref().is_some_and(|p| p.breaker),
                ),
            ] {
                let labels = [name_label(&name), name_label(&record.name), cause];
                let gauge = m.sub_paused.with_label_values(&labels);
                gauge.set(gauge.get().max(i64::from(on)));
            }
            let Ok(snap) = sub.snapshot().await else {
                continue;
            };
            let key = (
                name_label(&name).to_owned(),
                name_label(&sub.name()).to_owned(),
            );
            let s = subs.entry(key).or_default();
            s.backlog += snap.stats.backlog;
            s.in_flight += snap.stats.in_flight;
            s.delayed += snap.stats.delayed;
            s.oldest_ms = s.oldest_ms.max(snap.stats.oldest_unacked_age_ms);
            s.lag_messages += snap.lag_messages;
            s.lag_ms = s.lag_ms.max(snap.lag_ms);
        }
    }
    for (name, (messages, bytes)) in topics {
        m.topic_messages
            .with_label_values(&[&name])
            .set(clamp(messages));
        m.topic_bytes.with_label_values(&[&name]).set(clamp(bytes));
    }
    for ((topic, sub), s) in subs {
        let labels = [topic.as_str(), sub.as_str()];
        m.sub_backlog
            .with_label_values(&labels)
            .set(clamp(s.backlog));
        m.sub_in_flight
            .with_label_values(&labels)
            .set(clamp(s.in_flight));
        m.sub_delayed
            .with_label_values(&labels)
            .set(clamp(s.delayed));
        m.sub_lag_messages
            .with_label_values(&labels)
            .set(clamp(s.lag_messages));
        m.sub_oldest_unacked_age
            .with_label_values(&labels)
            .set(s.oldest_ms as f64 / 1000.0);
        m.sub_lag_seconds
            .with_label_values(&labels)
            .set(s.lag_ms as f64 / 1000.0);
    }
    let engine = state.broker.engine_stats();
    m.storage_live_data.set(clamp(engine.live_data_bytes));
    m.storage_pending_compaction
        .set(clamp(engine.pending_compaction_bytes));
    m.storage_write_stopped
        .set(i64::from(engine.writes_stopped));
    m.storage_delayed_write_rate
        .set(clamp(engine.delayed_write_rate_bytes_per_sec));
    if let Some(disk) = state.broker.disk_usage() {
        m.storage_disk_total.set(clamp(disk.total_bytes));
        m.storage_disk_free.set(clamp(disk.free_bytes));
    }
    refresh_cluster(state);
}

/// The cluster gauges; a lone server is a cluster of one that leads
/// every partition.
fn refresh_cluster(state: &AppState) {
    let m = &*METRICS;
    let health = match &state.cluster {
        Some(cluster) => cluster.health(),
        None => {
            let partitions = state
                .broker
                .all_topics()
                .iter()
                .map(|t| u64::from(t.record().config.partitions))
                .sum();
            ClusterHealth {
                nodes: [("leader", 1)].into_iter().collect(),
                metadata_leader: true,
                partitions_led: partitions,
                ..ClusterHealth::default()
            }
        }
    };
    m.cluster_nodes.reset();
    for state in NodeState::ALL.map(NodeState::as_str) {
        let count = health.nodes.get(state).copied().unwrap_or(0);
        m.cluster_nodes
            .with_label_values(&[state])
            .set(clamp(count));
    }
    m.cluster_metadata_leader
        .set(i64::from(health.metadata_leader));
    m.cluster_metadata_term.set(clamp(health.metadata_term));
    m.cluster_partitions_led.set(clamp(health.partitions_led));
    m.cluster_partitions_leaderless
        .set(clamp(health.partitions_leaderless));
    m.cluster_partitions_under_replicated
        .set(clamp(health.partitions_under_replicated));
    m.cluster_follower_lag_max
        .set(clamp(health.follower_lag_max));
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
