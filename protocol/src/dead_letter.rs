//! Dead letters of a subscription: browsing them with filters, redriving
//! and purging a filtered selection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::message::Message;

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterState {
    /// Dead-lettered, not redriven: counted in `dead_lettered`.
    Waiting,
    /// Made deliverable again to the subscription.
    Redriven,
    /// Removed from the waiting dead letters without redelivery.
    Purged,
}

/// Which dead letters an operation applies to; every field optional, all
/// given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    /// The reason contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reason matches this regular expression (Rust `regex` syntax, at
    /// most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_regex: Option<String>,
    /// The message key equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The message has each of these headers with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Dead-lettered at or after this time (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    /// Dead-lettered before this time (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
    /// Delivered at least this many times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_attempts: Option<u32>,
    /// The original message is in this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// The original message is at this offset (with `partition`: exactly
    /// one dead letter, e.g. to redrive one chosen from a listing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// Query of `GET .../dead-letters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Dead letters per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page (`<partition>:<offset>`).
    #[param(pattern = "^[0-9]{1,10}:[0-9]{1,20}$")]
    pub cursor: Option<String>,
    /// Only this state (default: every state).
    pub state: Option<DeadLetterState>,
    /// The reason contains this text.
    pub reason: Option<String>,
    /// The reason matches this regular expression.
    pub reason_regex: Option<String>,
    /// The message key equals this.
    pub key: Option<String>,
    /// Dead-lettered at or after this time.
    pub from_ms: Option<u64>,
    /// Dead-lettered before this time.
    pub to_ms: Option<u64>,
    /// Delivered at least this many times.
    pub min_attempts: Option<u32>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Partition of the original message.
    pub partition: u32,
    /// Offset of the original message.
    pub offset: u64,
    /// Deliveries made before it was dead-lettered.
    pub attempts: u32,
    /// Why (the last nack's reason, `max attempts reached`, `expired`, ...).
    pub reason: String,
    /// When it was dead-lettered (ms since the epoch).
    pub dead_lettered_at: u64,
    /// Waiting, redriven or purged.
    pub state: DeadLetterState,
    /// The original message; `null` once retention removed it.
    pub message: Option<Message>,
}

/// A page of dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    /// Dead letters in (partition, offset) order.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page; `null` when done.
    pub next: Option<String>,
}

/// Body of `POST .../dead-letters/redrive`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Most dead letters to redrive; `null` = all (`max_messages` is the
    /// same, kept for earlier clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max: Option<u64>,
    /// Alias of `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_messages: Option<u64>,
    /// Count the matching dead letters and return a sample; change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Redrive at most this many per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub rate_per_s: Option<u32>,
    /// Which waiting dead letters (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DeadLetterFilter>,
}

/// Response of a redrive.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RedriveResponse {
    /// Dead letters made deliverable again (0 for a dry run).
    pub redriven: u64,
    /// Waiting dead letters that matched the filter (up to `max`).
    #[serde(default)]
    pub matched: u64,
    /// Up to 10 of the matching dead letters.
    #[serde(default)]
    pub sample: Vec<DeadLetter>,
}

/// Body of `POST .../dead-letters/purge`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Most dead letters to purge; `null` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max: Option<u64>,
    /// Count and sample only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Which waiting dead letters (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DeadLetterFilter>,
}

/// Response of a purge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PurgeResponse {
    /// Dead letters purged (0 for a dry run).
    pub purged: u64,
    /// Waiting dead letters that matched.
    pub matched: u64,
    /// Up to 10 of them.
    pub sample: Vec<DeadLetter>,
}
