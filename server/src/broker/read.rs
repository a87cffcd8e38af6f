//! Stateless reads of a partition, with long polling that wakes as soon as
//! a new message is durable (a watch on the partition's high watermark, no
//! polling loop).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
pub use weir_protocol::limits::{MAX_READ_LIMIT, MAX_WAIT_MS};

use base64::Engine;
use serde_json::value::RawValue;
use weir_protocol::{Message, ReadResponse};

use super::error::{BrokerError, Result};
use super::topic::Topic;
use crate::storage::{Store, StoredMessage};

/// Soft cap on bytes per read response.
pub const MAX_READ_BYTES: u64 = 8 << 20;

/// Where a read starts.
#[derive(Debug, Clone, Copy)]
pub enum ReadFrom {
    Offset(u64),
    Timestamp(u64),
}

/// Converts a stored message to its wire form.
pub fn to_wire(topic: &str, partition: u32, m: StoredMessage) -> Message {
    let (value, value_b64) = if m.json {
        match String::from_utf8(m.payload) {
            Ok(text) => match RawValue::from_string(text) {
                Ok(raw) => (Some(raw), None),
                Err(_) => (None, None),
            },
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
            ),
        }
    } else {
        (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&m.payload)),
        )
    };
    Message {
        topic: topic.to_owned(),
        partition,
        offset: m.offset,
        timestamp: m.timestamp,
        key: m.key,
        value,
        value_b64,
        headers: m.headers.into_iter().collect::<BTreeMap<_, _>>(),
    }
}

/// Resolves a start position to an offset (clamped to the stored range).
pub async fn resolve_start(
    store: &Arc<Store>,
    topic_id: u32,
    partition: &super::topic::Partition,
    from: ReadFrom,
) -> Result<u64> {
    let low = partition.low();
    let offset = match from {
        ReadFrom::Offset(o) => o,
        ReadFrom::Timestamp(t) => {
            let store = store.clone();
            let pid = partition.id;
            let found =
                tokio::task::spawn_blocking(move || store.offset_for_timestamp(topic_id, pid, t))
                    .await??;
            found.unwrap_or_else(|| partition.committed())
        }
    };
    Ok(offset.max(low))
}

/// Reads messages `[from, end)` of a partition (at most `max_count`, about
/// `max_bytes`): from the tail cache when it holds them (no blocking, the
/// common case for consumers at the head), else from the store on a
/// blocking thread.
pub async fn read_log(
    store: &Arc<Store>,
    topic: u32,
    partition: u32,
    (from, end): (u64, u64),
    max_count: usize,
    max_bytes: u64,
) -> Result<Vec<StoredMessage>> {
    if let Some(recent) = store.read_recent(topic, partition, from, end, max_count, max_bytes) {
        return Ok(recent);
    }
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || {
        store.read_messages(topic, partition, from, end, max_count, max_bytes)
    })
    .await??)
}

/// Reads up to `limit` messages, waiting up to `wait_ms` for the first one.
pub async fn read(
    store: &Arc<Store>,
    topic: &Arc<Topic>,
    partition_id: u32,
    from: ReadFrom,
    limit: u32,
    wait_ms: u64,
) -> Result<ReadResponse> {
    let record = topic.record();
    let partition =
        topic
            .partition(partition_id)
            .ok_or_else(|| BrokerError::PartitionNotFound {
                topic: record.name.clone(),
                partition: partition_id,
            })?;
    let mut watch = partition.watch();
    let mut start = resolve_start(store, record.id, &partition, from).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        if topic.is_deleted() {
            return Err(BrokerError::TopicNotFound(record.name));
        }
        start = start.max(partition.low());
        let committed = *watch.borrow_and_update();
        if start < committed {
            let stored = read_log(
                store,
                record.id,
                partition_id,
                (start, committed),
                limit as usize,
                MAX_READ_BYTES,
            )
            .await?;
            let next_offset = stored.last().map_or(committed, |m| m.offset + 1);
            let messages = stored
                .into_iter()
                .map(|m| to_wire(&record.name, partition_id, m))
                .collect::<Vec<_>>();
            if !messages.is_empty() || wait_ms == 0 {
                return Ok(ReadResponse {
                    messages,
                    next_offset,
                });
            }
            start = next_offset;
        }
        if wait_ms == 0 || topic.is_closing() {
            return Ok(ReadResponse {
                messages: Vec::new(),
                next_offset: start,
            });
        }
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => {
                return Ok(ReadResponse {
                    messages: Vec::new(),
                    next_offset: start,
                })
            }
        }
    }
}
