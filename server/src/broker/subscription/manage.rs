//! Stats, seek and redrive of one subscription.

use weir_protocol::{PartitionCursor, SeekTarget, StartName, SubscriptionInfo, SubscriptionStats};

use super::{committed, map_storage, Subscription};
use crate::broker::error::{BrokerError, Result};

fn first_offsets(firsts: &[Option<u64>]) -> Vec<(u32, u64)> {
    firsts
        .iter()
        .enumerate()
        .filter_map(|(p, o)| o.map(|o| (p as u32, o)))
        .collect()
}

/// Messages past a queue subscription's scan looked at for delays.
const DELAYED_LOOKAHEAD: usize = 256;

/// Stats plus what the metrics need.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stats: SubscriptionStats,
    /// Messages not delivered yet.
    pub lag_messages: u64,
    /// Age of the oldest message not delivered yet, in ms.
    pub lag_ms: u64,
}

impl Subscription {
    /// Configuration and statistics.
    pub async fn info(&self) -> Result<SubscriptionInfo> {
        let snapshot = self.snapshot().await?;
        let record = self.record();
        let mut config = record.config;
        config.push = config.push.map(|p| p.redacted());
        Ok(SubscriptionInfo {
            topic: self.topic.name(),
            name: record.name,
            config,
            stats: snapshot.stats,
            paused: record.paused.is_some(),
            paused_reason: record.paused.map(|p| p.reason),
        })
    }

    /// Statistics computed now from the state and the log.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let now = self.now();
        let partitions = self.topic.partitions();
        let highs: Vec<u64> = partitions.iter().map(|p| p.committed()).collect();
        let (mut state, changes) = self.lock(now).await?;
        let view = state.stats(&highs, now);
        let rx = self.enqueue(&mut state, changes).await?;
        drop(state);
        committed(rx).await?;
        let topic_id = self.topic.id();
        let unsettled = first_offsets(&view.first_unsettled);
        let undelivered = first_offsets(&view.first_undelivered);
        let store = self.store.clone();
        let high_of = highs.clone();
        let (oldest_unsettled, oldest_undelivered) =
            tokio::task::spawn_blocking(move || -> Result<(Option<u64>, Option<u64>)> {
                let oldest = |firsts: &[(u32, u64)]| -> Result<Option<u64>> {
                    let mut oldest: Option<u64> = None;
                    for &(p, o) in firsts {
                        let end = high_of.get(p as usize).copied().unwrap_or(o + 1).max(o + 1);
                        if let Some(m) = store.read_messages(topic_id, p, o, end, 1, 1)?.first() {
                            // A delayed message ages from when it became
                            // deliverable, not from when it was produced.
                            let since = m.timestamp.max(m.deliver_at);
                            oldest = Some(oldest.map_or(since, |t| t.min(since)));
                        }
                    }
                    Ok(oldest)
                };
                Ok((oldest(&unsettled)?, oldest(&undelivered)?))
            })
            .await??;
        let age = oldest_unsettled.map_or(0, |t| now.saturating_sub(t));
        let delayed_ahead = self.delayed_ahead(&view.unscanned, &highs, now).await?;
        let lag_ms = oldest_undelivered.map_or(0, |t| now.saturating_sub(t));
        let stats = SubscriptionStats {
            backlog: view.backlog,
            in_flight: view.in_flight,
            delayed: view.delayed + delayed_ahead,
            oldest_unacked_age_ms: age,
            dead_lettered: view.dead_lettered,
            expired_by_retention: view.expired_by_retention,
            lag_messages: view.undelivered,
            lag_ms,
            partitions: view
                .cursors
                .iter()
                .enumerate()
                .map(|(p, &cursor)| PartitionCursor {
                    partition: p as u32,
                    cursor,
                    high_offset: highs.get(p).copied().unwrap_or(cursor),
                    consumer: view.owners.get(p).cloned().flatten(),
                })
                .collect(),
        };
        Ok(Snapshot {
            stats,
            lag_messages: view.undelivered,
            lag_ms,
        })
    }

    /// Delayed messages the scan has not met yet: a subscription nobody
    /// pulls from still shows its delayed backlog. Looks at most
    /// `DELAYED_LOOKAHEAD` messages past the scan per partition.
    async fn delayed_ahead(
        &self,
        unscanned: &[(u32, u64)],
        highs: &[u64],
        now: u64,
    ) -> Result<u64> {
        if unscanned.is_empty() {
            return Ok(0);
        }
        let store = self.store.clone();
        let topic = self.topic.id();
        let ranges: Vec<(u32, u64, u64)> = unscanned
            .iter()
            .map(|&(p, from)| (p, from, highs.get(p as usize).copied().unwrap_or(from)))
            .collect();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut n = 0;
            for (p, from, high) in ranges {
                let messages =
                    store.read_messages(topic, p, from, high, DELAYED_LOOKAHEAD, 1 << 20)?;
                n += messages.iter().filter(|m| m.deliver_at > now).count() as u64;
            }
            Ok(n)
        })
        .await?
    }

    /// Moves the subscription's cursors; answers once durable.
    pub async fn seek(&self, target: &SeekTarget) -> Result<()> {
        let partitions = self.topic.partitions();
        let topic_id = self.topic.id();
        let mut targets: Vec<(u32, u64)> = Vec::new();
        match target {
            SeekTarget::Named(StartName::Earliest) => {
                targets.extend(partitions.iter().map(|p| (p.id, p.low())));
            }
            SeekTarget::Named(StartName::Latest) => {
                targets.extend(partitions.iter().map(|p| (p.id, p.committed())));
            }
            SeekTarget::Timestamp(at) => {
                for p in &partitions {
                    let store = self.store.clone();
                    let (pid, ts) = (p.id, at.timestamp);
                    let found = tokio::task::spawn_blocking(move || {
                        store.offset_for_timestamp(topic_id, pid, ts)
                    })
                    .await??;
                    let offset = found.unwrap_or_else(|| p.committed());
                    targets.push((p.id, offset.clamp(p.low(), p.committed().max(p.low()))));
                }
            }
            SeekTarget::Offsets(at) => {
                if at.offsets.is_empty() {
                    return Err(BrokerError::invalid(
                        "to.offsets",
                        "`to.offsets` must name at least one partition",
                    ));
                }
                for (key, &offset) in &at.offsets {
                    let p = key
                        .parse::<u32>()
                        .ok()
                        .and_then(|p| partitions.get(p as usize))
                        .ok_or_else(|| {
                            BrokerError::invalid(
                                "to.offsets",
                                format!(
                                    "`to.offsets` key `{}` is not a partition of this topic (0..{})",
                                    key.chars().take(32).collect::<String>(),
                                    partitions.len()
                                ),
                            )
                        })?;
                    targets.push((p.id, offset.clamp(p.low(), p.committed().max(p.low()))));
                }
            }
        }
        // Parked messages of the sought partitions are forgotten with the
        // rest of their state (serialized with unparking by the scan lock).
        let _scan = self.scan.lock().await;
        let mut parked = Vec::new();
        for &(p, _) in &targets {
            let store = self.store.clone();
            let id = self.id();
            parked.extend(
                tokio::task::spawn_blocking(move || store.partition_parked(id, p))
                    .await?
                    .map_err(map_storage)?,
            );
        }
        let now = self.now();
        let (mut state, mut changes) = self.lock(now).await?;
        changes.extend(state.drop_parked(&parked));
        for (p, offset) in targets {
            changes.extend(state.seek(p, offset, now));
        }
        let rx = self.enqueue(&mut state, changes).await?;
        drop(state);
        committed(rx).await?;
        self.wake();
        Ok(())
    }
}
