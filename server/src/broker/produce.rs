//! The produce path: validate a batch, assign partitions and offsets under
//! the topic's produce lock, resolve idempotency ids, and commit everything
//! as one atomic write. A rejected batch appends nothing.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use weir_protocol::binary::ProduceRecord;
pub use weir_protocol::limits::{MAX_BATCH_MESSAGES, MAX_DELAY_MS, MAX_ID_BYTES};
use weir_protocol::{ProduceMessage, ProduceResult, TopicConfig};

use super::error::{BrokerError, Result};
use super::partitioner::partition_for_key;
use super::topic::Topic;
use tokio::sync::oneshot;

use crate::storage::{
    BatchBuilder, CommitSlot, DedupeEntry, NewMessage, PartitionMeta, Store, WriteSet,
};

/// A validated message, ready to be placed.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub partition: Option<u32>,
    pub id: Option<String>,
    pub message: NewMessage,
}

/// A batch holds 1 to `MAX_BATCH_MESSAGES` messages, whatever its encoding.
fn check_batch_len(len: usize) -> Result<()> {
    if len == 0 {
        return Err(BrokerError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    if len > MAX_BATCH_MESSAGES {
        return Err(BrokerError::invalid(
            "messages",
            format!("at most {MAX_BATCH_MESSAGES} messages per request"),
        ));
    }
    Ok(())
}

/// Validates and converts a produce batch. `now` is the request time.
pub fn prepare(
    messages: Vec<ProduceMessage>,
    config: &TopicConfig,
    now: u64,
) -> Result<Vec<Prepared>> {
    check_batch_len(messages.len())?;
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| prepare_one(i, m, config, now))
        .collect()
}

fn prepare_one(i: usize, m: ProduceMessage, config: &TopicConfig, now: u64) -> Result<Prepared> {
    // The rules clients check too, from the protocol crate; then what only
    // the server knows (the topic, the bytes behind `value_b64`).
    weir_protocol::limits::check_message(&m, i, now)
        .map_err(|e| BrokerError::invalid(e.field, e.detail))?;
    let field = |name: &str| format!("messages[{i}].{name}");
    let (json, payload) = match (m.value, m.value_b64) {
        (Some(v), None) => (true, v.get().as_bytes().to_vec()),
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| {
                    BrokerError::invalid(
                        field("value_b64"),
                        format!("`value_b64` of message {i} is not valid base64: {e}"),
                    )
                })?;
            (false, bytes)
        }
        (Some(_), Some(_)) => {
            return Err(BrokerError::invalid(
                field("value"),
                format!("message {i} has both `value` and `value_b64`; give one"),
            ))
        }
        (None, None) => {
            return Err(BrokerError::invalid(
                field("value"),
                format!("message {i} needs `value` or `value_b64`"),
            ))
        }
    };
    let record = ProduceRecord {
        key: m.key,
        json,
        value: payload,
        headers: m.headers.unwrap_or_default().into_iter().collect(),
        partition: m.partition,
        id: m.id,
        delay_ms: m.delay_ms,
        deliver_at: m.deliver_at,
    };
    prepare_record(i, record, config, now)
}

/// Validates and converts a batch in the binary encoding (already
/// decoded): the same rules as JSON, and a value flagged as JSON must be
/// JSON text.
pub fn prepare_binary(
    records: Vec<ProduceRecord>,
    config: &TopicConfig,
    now: u64,
) -> Result<Vec<Prepared>> {
    check_batch_len(records.len())?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if r.json && serde_json::from_slice::<serde::de::IgnoredAny>(&r.value).is_err() {
                return Err(BrokerError::invalid(
                    format!("messages[{i}].value"),
                    format!("message {i} is flagged as JSON but its value is not JSON text"),
                ));
            }
            prepare_record(i, r, config, now)
        })
        .collect()
}

/// A share another cluster node forwarded to this partition leader: it was
/// validated where it came in (or made by the server itself: dead-letter
/// copies carry the reserved `weir-` headers), so it is only converted,
/// with each message's delivery time already absolute.
pub fn from_peer(records: Vec<ProduceRecord>) -> Vec<Prepared> {
    records
        .into_iter()
        .map(|r| Prepared {
            partition: r.partition,
            id: r.id,
            message: NewMessage {
                key: r.key,
                headers: r.headers,
                json: r.json,
                payload: r.value,
                deliver_at: r.deliver_at.unwrap_or(0),
            },
        })
        .collect()
}

/// The checks every message passes, whatever its encoding.
fn prepare_record(i: usize, r: ProduceRecord, config: &TopicConfig, now: u64) -> Result<Prepared> {
    let field = |name: &str| format!("messages[{i}].{name}");
    let headers = r.headers;
    if headers.len() > weir_protocol::limits::MAX_HEADERS_PER_MESSAGE {
        return Err(BrokerError::invalid(
            field("headers"),
            format!(
                "message {i} has more than {} headers",
                weir_protocol::limits::MAX_HEADERS_PER_MESSAGE
            ),
        ));
    }
    for (name, _) in &headers {
        if name.is_empty() || name.len() > u16::MAX as usize {
            return Err(BrokerError::invalid(
                field("headers"),
                format!("message {i} has an empty or oversized header name"),
            ));
        }
        if name.to_ascii_lowercase().starts_with("weir-") {
            return Err(BrokerError::invalid(
                field("headers"),
                format!("header `{name}` of message {i}: names starting with `weir-` are reserved"),
            ));
        }
    }
    let deliver_at = match (r.delay_ms, r.deliver_at) {
        (Some(_), Some(_)) => {
            return Err(BrokerError::invalid(
                field("delay_ms"),
                format!("message {i} has both `delay_ms` and `deliver_at`; give one"),
            ))
        }
        (Some(d), None) if d > MAX_DELAY_MS => {
            return Err(BrokerError::invalid(
                field("delay_ms"),
                format!("`delay_ms` of message {i} exceeds one year ({MAX_DELAY_MS} ms)"),
            ))
        }
        (Some(0), None) | (None, None) => 0,
        (Some(d), None) => now + d,
        (None, Some(t)) if t > now.saturating_add(MAX_DELAY_MS) => {
            return Err(BrokerError::invalid(
                field("deliver_at"),
                format!("`deliver_at` of message {i} is more than one year ahead"),
            ))
        }
        (None, Some(t)) => t,
    };
    if let Some(id) = &r.id {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(BrokerError::invalid(
                field("id"),
                format!("`id` of message {i} must be 1 to {MAX_ID_BYTES} bytes"),
            ));
        }
    }
    if let Some(p) = r.partition {
        if p >= config.partitions {
            return Err(BrokerError::invalid(
                field("partition"),
                format!(
                    "message {i} names partition {p}; the topic has {}",
                    config.partitions
                ),
            ));
        }
    }
    let message = NewMessage {
        key: r.key,
        headers,
        json: r.json,
        payload: r.value,
        deliver_at,
    };
    let size = message.encoded_len();
    if size > config.max_message_bytes as usize {
        return Err(BrokerError::MessageTooLarge {
            index: i,
            size,
            limit: config.max_message_bytes,
        });
    }
    Ok(Prepared {
        partition: r.partition,
        id: r.id,
        message,
    })
}

/// Time-index granularity: the first message of each such period of a
/// partition gets an entry.
const TIME_INDEX_EVERY_MS: u64 = 100;

/// The messages one request appends to one partition, as one batch.
struct Slice {
    partition: u32,
    first: u64,
    batch: BatchBuilder,
    bytes: u64,
}

/// Per-partition range appended by one request.
#[derive(Debug, Clone, Copy)]
struct Appended {
    partition: u32,
    first: u64,
    end: u64,
    bytes: u64,
}

/// Places and commits a prepared batch. Returns results in request order.
pub async fn produce(
    store: Arc<Store>,
    topic: Arc<Topic>,
    batch: Vec<Prepared>,
    now: u64,
    wall: u64,
) -> Result<Vec<ProduceResult>> {
    produce_with(store, topic, batch, (now, wall), WriteSet::new()).await
}

/// Like [`produce`], committing `extra` changes atomically with the batch
/// (a dead-letter copy and the settling of its original). `at` is broker
/// time and wall-clock time (the messages' timestamps).
pub async fn produce_with(
    store: Arc<Store>,
    topic: Arc<Topic>,
    batch: Vec<Prepared>,
    at: (u64, u64),
    extra: WriteSet,
) -> Result<Vec<ProduceResult>> {
    let done = enqueue_with(store, topic, batch, at, extra).await?;
    done.await.map_err(|_| BrokerError::ShuttingDown)?
}

/// The outcome of a queued produce, once durable and visible.
pub type Produced = oneshot::Receiver<Result<Vec<ProduceResult>>>;

/// Places the batch (offsets, idempotency ids) and queues its commit;
/// returns once it is queued, with the receiver of its outcome. Callers
/// that must order the commit with their own state (a subscription moving
/// dead letters) call this under their lock and wait after releasing it.
///
/// Runs in its own task: once offsets are placed, the commit and the
/// publication of the new high watermark happen even if the caller goes
/// away (a client disconnecting mid-request), so durable messages never
/// stay invisible to readers.
pub async fn enqueue_with(
    store: Arc<Store>,
    topic: Arc<Topic>,
    batch: Vec<Prepared>,
    at: (u64, u64),
    extra: WriteSet,
) -> Result<Produced> {
    let (placed_tx, placed_rx) = oneshot::channel();
    tokio::spawn(async move {
        let placed = match place_now(&store, &topic, batch, at, extra) {
            Ok(placed) => placed,
            Err((batch, extra)) => {
                let placing_topic = topic.clone();
                let placing_store = store.clone();
                tokio::task::spawn_blocking(move || {
                    let submit = Submit::Blocking(&placing_store);
                    let state = placing_topic.lock_produce();
                    place(
                        &placing_store,
                        &placing_topic,
                        state,
                        batch,
                        at,
                        extra,
                        submit,
                    )
                })
                .await
                .map_err(BrokerError::from)
                .and_then(|r| r)
            }
        };
        match placed {
            Err(e) => {
                let _ = placed_tx.send(Err(e));
            }
            Ok((results, appended, ids, receiver)) => {
                let (done_tx, done_rx) = oneshot::channel();
                let _ = placed_tx.send(Ok(done_rx));
                let outcome = finish(&topic, results, appended, ids, receiver).await;
                let _ = done_tx.send(outcome);
            }
        }
    });
    placed_rx.await.map_err(|_| BrokerError::ShuttingDown)?
}

/// Waits for the commit of a placed batch, then publishes it (or gives
/// its offsets back when it failed).
async fn finish(
    topic: &Arc<Topic>,
    results: Vec<ProduceResult>,
    appended: Vec<Appended>,
    ids: Vec<String>,
    receiver: oneshot::Receiver<crate::storage::Result<()>>,
) -> Result<Vec<ProduceResult>> {
    let outcome = receiver.await.map_err(|_| BrokerError::ShuttingDown)?;
    let partitions = topic.partitions();
    if !ids.is_empty() || outcome.is_err() {
        // The produce lock may be held by a placement reading idempotency
        // ids from the store: wait for it on a blocking thread, never on
        // an async worker.
        let (topic, failed) = (topic.clone(), outcome.is_err());
        let appended = appended.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = topic.lock_produce();
            for id in &ids {
                state.pending_ids.remove(id);
            }
            if failed {
                // Give the offsets back when nobody appended after us, so
                // a failed write leaves no gap; otherwise the gap stays
                // (offsets are never reused) and readers skip it.
                for a in &appended {
                    if let Some(head) = state.heads.get_mut(a.partition as usize) {
                        if head.next_offset == a.end {
                            head.next_offset = a.first;
                            head.bytes = head.bytes.saturating_sub(a.bytes);
                        }
                    }
                }
            }
        })
        .await?;
    }
    match outcome {
        Ok(()) => {
            for a in &appended {
                if let Some(p) = partitions.get(a.partition as usize) {
                    p.add_bytes(a.bytes);
                    p.publish(a.end);
                }
            }
            if !appended.is_empty() {
                topic.notify_produced();
            }
            Ok(results)
        }
        Err(crate::storage::StorageError::Stalled) => Err(BrokerError::Unavailable),
        Err(crate::storage::StorageError::Closed) => Err(BrokerError::ShuttingDown),
        Err(e) => Err(e.into()),
    }
}

type Placed = (
    Vec<ProduceResult>,
    Vec<Appended>,
    Vec<String>,
    tokio::sync::oneshot::Receiver<crate::storage::Result<()>>,
);

/// Largest batch placed on the async worker (messages, bytes).
const INLINE_MAX_MESSAGES: usize = 2000;
const INLINE_MAX_BYTES: usize = 1 << 20;

/// How a placed batch reaches the writer.
enum Submit<'a> {
    /// From a blocking thread: waits for room in the writer's queue.
    Blocking(&'a Store),
    /// Room already reserved: never waits.
    Reserved(CommitSlot),
}

/// Places a batch right here on the async worker when that cannot block:
/// no idempotency ids to look up in the store, room in the writer's queue
/// and the produce lock free. Otherwise hands the batch back for a blocking
/// thread.
#[allow(clippy::result_large_err)]
fn place_now(
    store: &Store,
    topic: &Topic,
    batch: Vec<Prepared>,
    at: (u64, u64),
    extra: WriteSet,
) -> std::result::Result<Result<Placed>, (Vec<Prepared>, WriteSet)> {
    // Small batches only: encoding a large one is CPU work that belongs on
    // a blocking thread, not on a worker other requests wait for.
    let bytes: usize = batch.iter().map(|p| p.message.encoded_len()).sum();
    if batch.len() > INLINE_MAX_MESSAGES
        || bytes > INLINE_MAX_BYTES
        || batch.iter().any(|p| p.id.is_some())
    {
        return Err((batch, extra));
    }
    let Some(slot) = store.try_reserve() else {
        return Err((batch, extra));
    };
    let Some(state) = topic.try_lock_produce() else {
        return Err((batch, extra));
    };
    Ok(place(
        store,
        topic,
        state,
        batch,
        at,
        extra,
        Submit::Reserved(slot),
    ))
}

/// Places a batch under the produce lock and submits its commit. Reads the
/// store only for idempotency ids (then it runs on a blocking thread).
fn place(
    store: &Store,
    topic: &Topic,
    mut state: std::sync::MutexGuard<'_, super::topic::ProduceState>,
    batch: Vec<Prepared>,
    (now, wall): (u64, u64),
    extra: WriteSet,
    submit: Submit<'_>,
) -> Result<Placed> {
    let record = topic.record();
    let topic_id = record.id;
    let partitions = record.config.partitions;
    let window = record.config.dedupe_window_ms;
    if topic.is_deleted() {
        return Err(BrokerError::TopicNotFound(record.name));
    }
    if topic.is_replicated() {
        // Its offsets are assigned by its partitions' Raft logs: a local
        // append would take offsets the log gives to other batches.
        return Err(BrokerError::Conflict(format!(
            "topic `{}` is replicated: its messages are appended through the cluster",
            record.name
        )));
    }
    let mut set = WriteSet::new();
    let mut results = Vec::with_capacity(batch.len());
    // One record batch per partition the request touches, in the order
    // they are first touched.
    let mut slices: Vec<Slice> = Vec::new();
    let mut batch_ids: HashMap<String, (u32, u64)> = HashMap::new();
    let mut new_ids = Vec::new();
    // Unkeyed messages of one request all go to one partition, the next in
    // turn for each request (as Kafka's sticky partitioner does): a request
    // then costs one batch, however many partitions the topic has.
    let mut sticky = None;
    // The first record batch is sized for the whole request (an unkeyed
    // request lands there whole), so building it never grows and copies
    // the buffer.
    let request_bytes: usize = batch.iter().map(|p| p.message.encoded_len()).sum();
    for prepared in batch {
        if let Some(id) = &prepared.id {
            let seen = match batch_ids.get(id).or_else(|| state.pending_ids.get(id)) {
                Some(&found) => Some(found),
                None if window > 0 => store
                    .get_dedupe(topic_id, id)?
                    .filter(|e| e.expires_at > now)
                    .map(|e| (e.partition, e.offset)),
                None => None,
            };
            if let Some((partition, offset)) = seen {
                results.push(ProduceResult {
                    partition,
                    offset,
                    duplicate: true,
                });
                continue;
            }
        }
        let partition = match (prepared.partition, &prepared.message.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => *sticky.get_or_insert_with(|| {
                state.round_robin = state.round_robin.wrapping_add(1);
                state.round_robin % partitions
            }),
        };
        let Some(head) = state.heads.get_mut(partition as usize) else {
            return Err(BrokerError::invalid(
                "partition",
                format!("no partition {partition}"),
            ));
        };
        let offset = head.next_offset;
        // Timestamps never go backwards within a partition, so "first
        // message at or after T" is a seek in the (sparse) time index and
        // a short walk from there.
        let timestamp = wall.max(head.last_timestamp);
        if offset == head.low
            || timestamp / TIME_INDEX_EVERY_MS != head.last_timestamp / TIME_INDEX_EVERY_MS
        {
            set.index_timestamp(topic_id, partition, timestamp, offset);
        }
        let slice = match slices.iter().position(|s| s.partition == partition) {
            Some(i) => &mut slices[i],
            None => {
                let capacity = if slices.is_empty() {
                    request_bytes
                } else {
                    prepared.message.encoded_len()
                };
                slices.push(Slice {
                    partition,
                    first: offset,
                    batch: BatchBuilder::with_capacity(capacity),
                    bytes: 0,
                });
                let last = slices.len() - 1;
                &mut slices[last]
            }
        };
        let size = slice.batch.push(&prepared.message, timestamp);
        slice.bytes += size;
        head.next_offset += 1;
        head.bytes += size;
        head.last_timestamp = timestamp;
        if let Some(id) = prepared.id {
            if window > 0 {
                set.put_dedupe(
                    topic_id,
                    &id,
                    DedupeEntry {
                        partition,
                        offset,
                        expires_at: now + window,
                    },
                );
            }
            batch_ids.insert(id.clone(), (partition, offset));
            new_ids.push(id);
        }
        results.push(ProduceResult {
            partition,
            offset,
            duplicate: false,
        });
    }
    let mut appended = Vec::with_capacity(slices.len());
    for slice in slices {
        appended.push(Appended {
            partition: slice.partition,
            first: slice.first,
            end: slice.first + u64::from(slice.batch.len()),
            bytes: slice.bytes,
        });
        set.append_batch(topic_id, slice.partition, slice.first, slice.batch);
    }
    for a in &appended {
        let head = state.heads[a.partition as usize];
        set.put_partition(
            topic_id,
            a.partition,
            &PartitionMeta {
                partition: a.partition,
                low: head.low,
                high: head.next_offset,
                bytes: head.bytes,
                last_timestamp: head.last_timestamp,
            },
        );
    }
    for (id, at) in batch_ids {
        state.pending_ids.insert(id, at);
    }
    // Submitted while holding the lock: commit order is offset order. An
    // all-duplicate batch still goes through the writer (an empty set) so
    // its answer waits until the original is durable.
    set.append(extra);
    let receiver = match submit {
        Submit::Blocking(store) => store.submit_blocking(set)?,
        Submit::Reserved(slot) => slot.submit(set),
    };
    Ok((results, appended, new_ids, receiver))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::topic::apply_spec;
    use weir_protocol::TopicSpec;

    fn config() -> TopicConfig {
        let mut c = apply_spec(&TopicSpec::default(), None).unwrap();
        c.partitions = 2;
        c.max_message_bytes = 100;
        c
    }

    fn msg(json: &str) -> ProduceMessage {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rejects_bad_messages_with_field() {
        let c = config();
        let cases = [
            (r#"{}"#, "messages[0].value"),
            (r#"{"value": 1, "value_b64": "AA=="}"#, "messages[0].value"),
            (r#"{"value_b64": "***"}"#, "messages[0].value_b64"),
            (r#"{"value": 1, "partition": 2}"#, "messages[0].partition"),
            (
                r#"{"value": 1, "headers": {"weir-x": "1"}}"#,
                "messages[0].headers",
            ),
            (
                r#"{"value": 1, "delay_ms": 1, "deliver_at": 5}"#,
                "messages[0].delay_ms",
            ),
            (r#"{"value": 1, "id": ""}"#, "messages[0].id"),
        ];
        for (json, want) in cases {
            match prepare(vec![msg(json)], &c, 1000) {
                Err(BrokerError::Invalid { field, .. }) => assert_eq!(field, want, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(prepare(vec![], &c, 0).is_err());
    }

    #[test]
    fn enforces_message_size() {
        let big = format!(r#"{{"value": "{}"}}"#, "x".repeat(200));
        assert!(matches!(
            prepare(vec![msg(&big)], &config(), 0),
            Err(BrokerError::MessageTooLarge { index: 0, .. })
        ));
    }

    #[test]
    fn converts_delay_and_bytes() {
        let p = prepare(
            vec![msg(r#"{"value_b64": "AAEC", "delay_ms": 500}"#)],
            &config(),
            1000,
        )
        .unwrap();
        assert_eq!(p[0].message.payload, vec![0, 1, 2]);
        assert!(!p[0].message.json);
        assert_eq!(p[0].message.deliver_at, 1500);
    }
}
