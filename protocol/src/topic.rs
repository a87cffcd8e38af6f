//! Topic configuration and description.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Retention limits of a topic. A limit of `null` means unlimited; when
/// several are set, the first one reached removes the oldest messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Remove messages older than this many milliseconds.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_age_ms: Option<u64>,
    /// Keep at most this many bytes of stored messages per partition.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_bytes: Option<u64>,
    /// Keep at most this many messages per partition.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_messages: Option<u64>,
}

/// Body of `PUT /v1/topics/{topic}`: every field optional. On creation the
/// missing fields take their defaults; on update they keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"partitions": 3, "retention": {"max_age_ms": 604800000}, "max_message_bytes": 1048576, "dedupe_window_ms": 120000}))]
pub struct TopicSpec {
    /// Number of partitions (1..=1024). May grow, never shrink.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    pub partitions: Option<u32>,
    /// Retention limits; replaces the whole retention object when given.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Largest accepted message (value + key + headers), in bytes (at most 16 MiB).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 16777216)]
    pub max_message_bytes: Option<u32>,
    /// How long an idempotency `id` is remembered, in milliseconds (at most 7 days).
    #[serde(default)]
    #[schema(maximum = 604800000)]
    pub dedupe_window_ms: Option<u64>,
    /// Copies of every partition, on distinct nodes (1 to 7; more than the
    /// cluster's nodes is a 409). Default: 3 in a cluster (fewer nodes: all
    /// of them), 1 on a server running alone. Fixed at creation.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 7)]
    pub replication_factor: Option<u32>,
}

/// The effective configuration of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: u32,
    /// Retention limits.
    pub retention: Retention,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: u32,
    /// Idempotency window, in milliseconds.
    pub dedupe_window_ms: u64,
    /// Copies of every partition (1 on a server running alone).
    #[serde(default = "one")]
    pub replication_factor: u32,
}

fn one() -> u32 {
    1
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionInfo {
    /// Partition number, from 0.
    pub partition: u32,
    /// Oldest offset still stored (retention moves it up).
    pub low_offset: u64,
    /// Next offset to be written.
    pub high_offset: u64,
    /// Messages stored (`high_offset - low_offset`).
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// A topic with its configuration and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Effective configuration.
    pub config: TopicConfig,
    /// Partitions with their offsets and sizes.
    pub partitions: Vec<PartitionInfo>,
}

/// Response of `GET /v1/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    /// Topics the caller may see, ordered by name (one page).
    pub topics: Vec<TopicInfo>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[serde(default)]
    pub next: Option<String>,
}
