//! Dead-lettering: copy a message that exhausted its attempts (or failed
//! permanently) into the dead-letter topic, with `weir-*` headers saying
//! where it came from and why, and settle the original in the same atomic
//! write — after any crash it is either still pending or dead-lettered,
//! never both, never neither.

use weir_protocol::TopicSpec;

use super::state::DeadLetterJob;
use super::{committed, map_storage, to_write_set, Subscription};
use crate::broker::error::Result;
use crate::broker::produce::{produce_with, Prepared};
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

/// Runs one dead-letter job.
pub async fn run(broker: &Broker, sub: &Subscription, job: &DeadLetterJob) -> Result<()> {
    let topic = sub.topic().clone();
    let record = sub.record();
    let store = broker.store().clone();
    let (topic_id, p, o) = (topic.id(), job.partition, job.offset);
    let reader = store.clone();
    let original = tokio::task::spawn_blocking(move || reader.read_at(topic_id, p, &[o]))
        .await??
        .into_iter()
        .next();
    let now = sub.now();
    let wall = sub.clock.wall_at(now);
    let target = match (&record.config.dead_letter_topic, &original) {
        (Some(name), Some(_)) => Some(
            broker
                .topic_or_create(name, &TopicSpec::default(), now)
                .await?,
        ),
        _ => None,
    };
    let mut state = sub.state().await?;
    let Some(changes) = state.complete_dead_letter(job, now) else {
        // Stale: the subscription was sought meanwhile.
        return Ok(());
    };
    sub.flush_events(state.take_events());
    let set = to_write_set(record.id, changes);
    match (target, original) {
        (Some(target), Some(original)) => {
            let copy = dead_letter_copy(original, &topic.name(), &record.name, job, now);
            let copy_bytes = copy.encoded_len() as u64;
            let prepared = Prepared {
                partition: None,
                id: None,
                message: copy,
            };
            let name = target.name();
            // Holding the state lock until durable keeps this commit in
            // order with the subscription's other changes.
            produce_with(store, target, vec![prepared], (now, wall), set).await?;
            let label = [crate::metrics::name_label(&name)];
            METRICS.messages_produced.with_label_values(&label).inc();
            METRICS
                .bytes_produced
                .with_label_values(&label)
                .inc_by(copy_bytes);
        }
        _ => {
            let rx = store.enqueue(set).await.map_err(map_storage)?;
            drop(state);
            committed(Some(rx)).await?;
        }
    }
    Ok(())
}
