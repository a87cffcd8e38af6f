//! Dead-lettering: copy a message that exhausted its attempts (or failed
//! permanently) into the dead-letter topic, with `weir-*` headers saying
//! where it came from and why, and settle the original in the same atomic
//! write — after any crash it is either still pending or dead-lettered,
//! never both, never neither. (When the subscription or the dead-letter
//! topic is replicated, the copy is committed first and the settle second:
//! a failover in between copies it again — at least once, never lost.)

use weir_protocol::TopicSpec;

use std::collections::{BTreeMap, HashMap};

use super::state::DeadLetterJob;
use super::{committed, Subscription};
use crate::broker::error::{BrokerError, Result};
use crate::broker::produce::{enqueue_with, Prepared};
use crate::broker::Broker;
use crate::metrics::METRICS;
use crate::storage::{NewMessage, StoredMessage};

/// Builds the dead-letter copy of `original`.
pub fn dead_letter_copy(
    original: StoredMessage,
    topic: &str,
    subscription: &str,
    job: &DeadLetterJob,
    now: u64,
) -> NewMessage {
    let mut headers: Vec<(String, String)> = original
        .headers
        .into_iter()
        .filter(|(name, _)| !name.to_ascii_lowercase().starts_with("weir-"))
        .collect();
    headers.extend([
        ("weir-original-topic".to_owned(), topic.to_owned()),
        (
            "weir-original-partition".to_owned(),
            job.partition.to_string(),
        ),
        ("weir-original-offset".to_owned(), job.offset.to_string()),
        (
            "weir-original-timestamp".to_owned(),
            original.timestamp.to_string(),
        ),
        ("weir-subscription".to_owned(), subscription.to_owned()),
        ("weir-attempts".to_owned(), job.attempts.to_string()),
        ("weir-dead-letter-reason".to_owned(), job.reason.clone()),
        ("weir-dead-lettered-at".to_owned(), now.to_string()),
    ]);
    NewMessage {
        key: original.key,
        headers,
        json: original.json,
        payload: original.payload,
        deliver_at: 0,
    }
}

/// Copies to produce, their partitions left to the topic's partitioner.
fn unplaced(copies: Vec<NewMessage>) -> Vec<Prepared> {
    copies
        .into_iter()
        .map(|message| Prepared {
            partition: None,
            id: None,
            message,
        })
        .collect()
}

/// Runs a batch of dead-letter jobs as one atomic write: every copy and
/// the settling of every original (one fsync for N dead letters). The
/// subscription's lock is held only while the write is placed and queued
/// — so it stays in order with the subscription's other changes — not
/// while it syncs. Returns the jobs that were done (stale ones, whose
/// subscription was sought meanwhile, are dropped).
pub async fn run_batch(
    broker: &Broker,
    sub: &Subscription,
    jobs: &[DeadLetterJob],
) -> Result<Vec<DeadLetterJob>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let topic = sub.topic().clone();
    let record = sub.record();
    let store = broker.store().clone();
    let topic_id = topic.id();
    let reader = store.clone();
    let wanted: Vec<(u32, u64)> = jobs.iter().map(|j| (j.partition, j.offset)).collect();
    let mut originals: HashMap<(u32, u64), StoredMessage> =
        tokio::task::spawn_blocking(move || {
            let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for (p, o) in wanted {
                by_partition.entry(p).or_default().push(o);
            }
            let mut found = HashMap::new();
            for (p, offsets) in by_partition {
                for m in reader.read_at(topic_id, p, &offsets)? {
                    found.insert((p, m.offset), m);
                }
            }
            Ok::<_, crate::storage::StorageError>(found)
        })
        .await??;
    let now = sub.now();
    let wall = sub.clock.wall_at(now);
    let target = match &record.config.dead_letter_topic {
        Some(name) if !originals.is_empty() => Some(match sub.replication() {
            // In a cluster, a missing dead-letter topic is created
            // cluster-wide (replicated like the subscription's topic).
            Some(replicator) => match broker.topic(name) {
                Ok(topic) => topic,
                Err(_) => {
                    replicator.create_topic(name, now).await?;
                    broker.topic(name)?
                }
            },
            None => {
                broker
                    .topic_or_create(name, &TopicSpec::default(), now)
                    .await?
            }
        }),
        _ => None,
    };
    let mut state = sub.state().await?;
    let replicated = sub.replication().is_some()
        || target
            .as_ref()
            .is_some_and(|t| broker.is_replicated(&t.name()));
    if replicated {
        // Through the cluster the copies and the settles are two commits
        // (the dead-letter topic's groups, then the subscription's): the
        // copies first, while the state is untouched (a failed copy
        // changes nothing and is retried), so a failover in between leaves
        // the originals dead-lettering and copied again (at least once,
        // never lost).
        let due: Vec<&DeadLetterJob> = jobs.iter().filter(|j| state.dead_letter_due(j)).collect();
        if let Some(target) = target {
            let copies: Vec<NewMessage> = due
                .iter()
                .filter_map(|job| {
                    let original = originals.remove(&(job.partition, job.offset))?;
                    Some(dead_letter_copy(
                        original,
                        &topic.name(),
                        &record.name,
                        job,
                        now,
                    ))
                })
                .collect();
            if !copies.is_empty() {
                let name = target.name();
                broker
                    .produce_prepared(&name, target, unplaced(copies), now)
                    .await?;
            }
        }
        let mut changes = Vec::new();
        let mut done = Vec::new();
        for job in due {
            if let Some(settle) = state.complete_dead_letter(job, now) {
                changes.extend(settle);
                done.push(job.clone());
            }
        }
        let pending = sub.enqueue(&mut state, changes).await?;
        drop(state);
        committed(pending).await?;
        return Ok(done);
    }
    let mut changes = Vec::new();
    let mut copies = Vec::new();
    let mut done = Vec::new();
    for job in jobs {
        let Some(settle) = state.complete_dead_letter(job, now) else {
            // Stale: the subscription was sought meanwhile.
            continue;
        };
        changes.extend(settle);
        if let (Some(_), Some(original)) = (&target, originals.remove(&(job.partition, job.offset)))
        {
            copies.push(dead_letter_copy(
                original,
                &topic.name(),
                &record.name,
                job,
                now,
            ));
        }
        done.push(job.clone());
    }
    if done.is_empty() {
        return Ok(done);
    }
    match target.filter(|_| !copies.is_empty()) {
        Some(target) => {
            sub.flush_events(state.take_events());
            let set = sub.fenced_set(&state, changes);
            let bytes: u64 = copies.iter().map(|c| c.encoded_len() as u64).sum();
            let count = copies.len() as u64;
            let prepared = unplaced(copies);
            let name = target.name();
            let produced = enqueue_with(store, target, prepared, (now, wall), set).await?;
            drop(state);
            produced.await.map_err(|_| BrokerError::ShuttingDown)??;
            let label = [crate::metrics::name_label(&name)];
            METRICS
                .messages_produced
                .with_label_values(&label)
                .inc_by(count);
            METRICS
                .bytes_produced
                .with_label_values(&label)
                .inc_by(bytes);
        }
        None => {
            let rx = sub.enqueue(&mut state, changes).await?;
            drop(state);
            committed(rx).await?;
        }
    }
    Ok(done)
}
