//! A read handle on one topic for the live tails (WebSocket and
//! Server-Sent Events): where a partition starts for a timestamp, and the
//! next batch from a cursor. It owns the store access, so the API holds
//! this handle and never the store; the tails keep their cursors and their
//! wake-ups (the topic's watches) themselves.

use std::sync::Arc;

use weir_protocol::ReadResponse;

use super::error::Result;
use super::read::{self, ReadFrom};
use super::topic::{Partition, Topic};
use super::Broker;
use crate::storage::Store;

/// Reads one topic, held by its handle: a topic deleted and created again
/// under the same name is another topic, which this one does not read.
#[derive(Clone)]
pub struct TopicReader {
    store: Arc<Store>,
    topic: Arc<Topic>,
}

impl TopicReader {
    /// The topic read: its partitions, watches and state.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// The offset of `partition`'s first message at or after `timestamp`
    /// (ms), or its committed high watermark when there is none; never
    /// below its first stored message.
    pub async fn offset_at(&self, partition: &Partition, timestamp: u64) -> Result<u64> {
        read::resolve_start(
            &self.store,
            self.topic.id(),
            partition,
            ReadFrom::Timestamp(timestamp),
        )
        .await
    }

    /// Up to `limit` durable messages of `partition` from `offset`, without
    /// waiting (offsets removed by retention are skipped).
    pub async fn read_from(&self, partition: u32, offset: u64, limit: u32) -> Result<ReadResponse> {
        read::read(
            &self.store,
            &self.topic,
            partition,
            ReadFrom::Offset(offset),
            limit,
            0,
        )
        .await
    }
}

impl Broker {
    /// A read handle on topic `name` for a live tail.
    pub fn topic_reader(&self, name: &str) -> Result<TopicReader> {
        Ok(TopicReader {
            store: self.store.clone(),
            topic: self.topic(name)?,
        })
    }
}
