//! Produce requests and the message shape returned to readers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// One message to append. Exactly one of `value` (any JSON) and `value_b64`
/// (bytes, standard base64) must be present.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "customer-7", "value": {"order": 1}, "headers": {"h": "v"}}))]
pub struct ProduceMessage {
    /// Partitioning key: messages with the same key go to the same partition.
    #[serde(default)]
    pub key: Option<String>,
    /// The payload as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Box<RawValue>>,
    /// The payload as standard base64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// String headers. Names starting with `weir-` are reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Explicit partition; overrides the key hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Idempotency key, remembered for the topic's `dedupe_window_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Queue subscriptions do not deliver the message before now + `delay_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Queue subscriptions do not deliver the message before this timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<u64>,
}

/// Body of `POST /v1/topics/{topic}/messages` (JSON form).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    /// Messages to append, atomically: all or none.
    pub messages: Vec<ProduceMessage>,
}

/// Where one produced message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProduceResult {
    /// Partition the message was appended to.
    pub partition: u32,
    /// Offset of the message in that partition.
    pub offset: u64,
    /// True when the `id` was seen within the dedupe window: nothing was
    /// appended and `offset` is the first one.
    pub duplicate: bool,
}

/// Response of a produce: one result per message, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProduceResponse {
    /// Results in request order.
    pub results: Vec<ProduceResult>,
}

/// A stored message as returned to readers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"topic": "orders", "partition": 0, "offset": 42, "timestamp": 1764300000000u64, "key": "customer-7", "value": {"order": 1}, "headers": {"trace-id": "abc"}}))]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Partitioning key.
    pub key: Option<String>,
    /// Payload, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Box<RawValue>>,
    /// Payload, when it is bytes (standard base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Response of a stateless read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadResponse {
    /// Messages in offset order.
    pub messages: Vec<Message>,
    /// Offset to read from next.
    pub next_offset: u64,
}
