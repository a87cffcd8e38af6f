//! Subscription configuration, statistics and the pull/ack/nack/extend/seek
//! requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::message::Message;
use crate::push::{PushConfig, PushSpec};
use crate::retry::{RetryPolicy, RetrySpec};

/// How a subscription consumes its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Competing consumers, per-message leases and acks.
    Queue,
    /// Ordered per partition, partitions leased to one consumer, cumulative acks.
    Stream,
}

/// Ordering guarantee of a queue subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Any message may be delivered while others are in flight.
    #[default]
    None,
    /// At most one message per key in flight, each key in offset order.
    Key,
}

/// A timestamp position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, try_from = "maps_only::TimestampMap")]
pub struct AtTimestamp {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// Where a new subscription starts: `"earliest"`, `"latest"` or `{"timestamp": T}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Start {
    /// `"earliest"` or `"latest"`.
    Named(StartName),
    /// The first message at or after a timestamp.
    Timestamp(AtTimestamp),
}

/// Named start positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartName {
    /// The oldest stored message.
    Earliest,
    /// Only messages produced after the operation.
    Latest,
}

/// Body of `PUT /v1/topics/{topic}/subscriptions/{sub}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"mode": "queue", "start": "earliest", "ack_timeout_ms": 30000, "retry": {"max_attempts": 5, "backoff": {"initial_ms": 1000, "max_ms": 60000, "multiplier": 2.0, "jitter": 0.1}}, "ordering": "none"}))]
pub struct SubscriptionSpec {
    /// `queue` (default) or `stream`; cannot change after creation.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Start position, used at creation only (default `latest`).
    #[serde(default)]
    pub start: Option<Start>,
    /// Lease length in milliseconds, 10..=43200000 (default 30000).
    #[serde(default)]
    #[schema(minimum = 10, maximum = 43200000)]
    pub ack_timeout_ms: Option<u64>,
    /// Retry policy; every field optional (an update changes only the
    /// fields it names).
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// Dead-letter topic, other than the subscription's own; default
    /// `<topic>.<sub>.dlq` (name one explicitly when that is not a valid
    /// name). Explicit `null` disables dead-lettering.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]
    pub dead_letter_topic: Option<Option<String>>,
    /// Queue mode ordering (`key` is for queue mode only).
    #[serde(default)]
    pub ordering: Option<Ordering>,
    /// Messages older than this (since they were produced) are never
    /// delivered: they are dead-lettered with reason `expired`. `null`
    /// turns it off (the default).
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>, minimum = 1000, maximum = 31536000000u64)]
    pub message_ttl_ms: Option<Option<u64>>,
    /// Push delivery to an HTTP endpoint (webhook); `null` turns it off.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<PushSpec>)]
    pub push: Option<Option<PushSpec>>,
}

/// The effective configuration of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionConfig {
    /// Delivery mode.
    pub mode: Mode,
    /// Lease length in milliseconds.
    pub ack_timeout_ms: u64,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Dead-letter topic, if any.
    pub dead_letter_topic: Option<String>,
    /// Queue mode ordering.
    pub ordering: Ordering,
    /// Age after which an undelivered message is dead-lettered as `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ttl_ms: Option<u64>,
    /// Push delivery, when configured (secrets are not shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushConfig>,
}

/// Per-partition position of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionCursor {
    /// Partition number.
    pub partition: u32,
    /// Every offset below this is settled (acked or dead-lettered).
    pub cursor: u64,
    /// Next offset to be written in the partition.
    pub high_offset: u64,
    /// Consumer owning the partition (stream mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
}

/// Statistics of a subscription, computed when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionStats {
    /// Messages not yet settled (includes in flight and delayed).
    pub backlog: u64,
    /// Messages leased to consumers now.
    pub in_flight: u64,
    /// Messages waiting for a delivery time or retry backoff.
    pub delayed: u64,
    /// Age of the oldest unsettled message, in milliseconds (0 when none).
    pub oldest_unacked_age_ms: u64,
    /// Dead letters of this subscription that were not redriven.
    pub dead_lettered: u64,
    /// Unsettled messages removed by retention since the server started.
    pub expired_by_retention: u64,
    /// Messages not delivered yet (the consumer lag).
    #[serde(default)]
    pub lag_messages: u64,
    /// Age of the oldest message not delivered yet, in milliseconds.
    #[serde(default)]
    pub lag_ms: u64,
    /// Per-partition cursors.
    pub partitions: Vec<PartitionCursor>,
}

/// A subscription with configuration and stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionInfo {
    /// Topic name.
    pub topic: String,
    /// Subscription name.
    pub name: String,
    /// Effective configuration.
    pub config: SubscriptionConfig,
    /// Statistics.
    pub stats: SubscriptionStats,
    /// True while no new deliveries are made (acks, nacks and extends
    /// keep working).
    #[serde(default)]
    pub paused: bool,
    /// Why it was paused (by hand, or the circuit breaker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
}

/// A delivery awaiting its ack (stream mode: the run of a partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// Partition.
    pub partition: u32,
    /// First offset leased.
    pub offset: u64,
    /// Messages leased from `offset`: 1 in queue mode, the run in flight in
    /// stream mode.
    pub count: u64,
    /// Delivery attempt (stream mode: of the first message).
    pub attempt: u32,
    /// The consumer that pulled it (the pull's or socket's `consumer`;
    /// stream mode: the partition's owner), when one was named.
    pub consumer: Option<String>,
    /// When the lease expires unless acked or extended (ms since the epoch).
    pub deadline: u64,
}

/// Response of `GET .../leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseList {
    /// Leases in (partition, offset) order.
    pub leases: Vec<Lease>,
    /// True when there were more than `limit`.
    pub truncated: bool,
}

/// Body of `POST .../pause` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Shown in `paused_reason` (at most 1024 bytes).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

/// Body of `POST .../resume` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Also redrive the dead letters of the circuit breaker's window (the
    /// ones that tripped it).
    #[serde(default)]
    pub redrive: Option<bool>,
}

/// Response of the subscription list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    /// Subscriptions of the topic the caller may see, ordered by name (one page).
    pub subscriptions: Vec<SubscriptionInfo>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[serde(default)]
    pub next: Option<String>,
}

/// Body of `POST .../pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Most messages to lease (1..=1000, default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_messages: Option<u32>,
    /// Long poll: wait up to this long for a first message (max 60000).
    #[serde(default)]
    #[schema(maximum = 60000)]
    pub wait_ms: Option<u64>,
    /// Consumer name (same rule as topic names); required to own
    /// partitions in stream mode.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]
    pub consumer: Option<String>,
}

/// A leased message.
///
/// Serialized flat (the message's fields next to `ack_id` and `attempt`);
/// deserialized through [`FlatReceived`] because serde cannot buffer a raw
/// JSON `value` inside a flattened struct.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(from = "FlatReceived")]
pub struct ReceivedMessage {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Opaque id to ack, nack or extend this delivery.
    pub ack_id: String,
    /// Delivery attempt, from 1.
    pub attempt: u32,
}

/// The wire form of a [`ReceivedMessage`], field by field.
#[derive(Deserialize)]
struct FlatReceived {
    topic: String,
    partition: u32,
    offset: u64,
    timestamp: u64,
    key: Option<String>,
    #[serde(default)]
    value: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    value_b64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    ack_id: String,
    attempt: u32,
}

impl From<FlatReceived> for ReceivedMessage {
    fn from(f: FlatReceived) -> Self {
        ReceivedMessage {
            message: Message {
                topic: f.topic,
                partition: f.partition,
                offset: f.offset,
                timestamp: f.timestamp,
                key: f.key,
                value: f.value,
                value_b64: f.value_b64,
                headers: f.headers,
            },
            ack_id: f.ack_id,
            attempt: f.attempt,
        }
    }
}

/// Response of a pull.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PullResponse {
    /// Leased messages.
    pub messages: Vec<ReceivedMessage>,
    /// Queue mode, when messages were leased: one id that acks, nacks or
    /// extends every message of this response still leased under it (in
    /// place of their `ack_id`s, in the same `ack_ids` lists). Absent in
    /// stream mode, whose acks are cumulative already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_ack_id: Option<String>,
}

/// Body of `POST .../ack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Ack ids from pulls (1 to 10000).
    #[schema(schema_with = ack_ids_schema)]
    pub ack_ids: Vec<String>,
}

/// Response of ack, nack and extend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// How many deliveries were settled (ack), released (nack) or renewed (extend).
    #[serde(alias = "nacked", alias = "extended")]
    pub acked: u64,
    /// Ack ids that match no current delivery (expired, superseded or already settled).
    pub unknown: Vec<String>,
}

/// Body of `POST .../nack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackRequest {
    /// Ack ids from pulls (1 to 10000).
    #[schema(schema_with = ack_ids_schema)]
    pub ack_ids: Vec<String>,
    /// Why processing failed; kept as the dead-letter reason (at most 1024
    /// bytes of UTF-8).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
    /// Redeliver after this delay instead of the retry backoff (at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2592000000u64)]
    pub delay_ms: Option<u64>,
    /// `false`: permanent failure, dead-letter at once.
    #[serde(default)]
    pub retry: Option<bool>,
}

/// Body of `POST .../extend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Ack ids from pulls (1 to 10000).
    #[schema(schema_with = ack_ids_schema)]
    pub ack_ids: Vec<String>,
    /// New lease length from now, 10..=43200000; default the subscription's
    /// `ack_timeout_ms`.
    #[serde(default)]
    #[schema(minimum = 10, maximum = 43200000)]
    pub ack_timeout_ms: Option<u64>,
}

/// Explicit per-partition offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, try_from = "maps_only::OffsetsMap")]
pub struct AtOffsets {
    /// Partition number (as a string key) → offset; at least one, each a
    /// partition of the topic.
    #[schema(schema_with = offsets_schema)]
    pub offsets: BTreeMap<String, u64>,
}

/// A seek target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SeekTarget {
    /// `"earliest"` or `"latest"`.
    Named(StartName),
    /// First message at or after a timestamp, per partition.
    Timestamp(AtTimestamp),
    /// Explicit offsets per partition; partitions not named are unchanged.
    Offsets(AtOffsets),
}

/// Body of `POST .../seek`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekRequest {
    /// Where to move the subscription.
    pub to: SeekTarget,
}

/// Ack ids as issued by pulls, URL-safe base64 without padding: a
/// message's `ack_id` (24 bytes, 32 characters) or a pull's `batch_ack_id`
/// (12 bytes and 20 per partition, 43 characters or more).
fn ack_ids_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^([A-Za-z0-9_-]{32}|[A-Za-z0-9_-]{43,26683})$")),
        )
        .min_items(Some(1))
        .max_items(Some(10_000))
        .description(Some(
            "Ack ids from pulls (1 to 10000): a message's `ack_id`, or a pull's \
             `batch_ack_id` naming every message of that pull.",
        ))
        .build()
}

/// Partition number → offset, at least one entry.
fn offsets_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]{1,10}$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0)),
        ))
        .min_properties(Some(1))
        .description(Some(
            "Partition number (as a string key) → offset; at least one, each a partition of the topic.",
        ))
        .build()
}

/// `AtTimestamp` and `AtOffsets` read from JSON objects only: a derived
/// struct would also accept an array (`{"to": [5]}` as a timestamp).
mod maps_only {
    use std::collections::BTreeMap;

    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde::Deserialize;

    /// The fields of an object, whatever they are (checked by the caller).
    pub struct Fields(BTreeMap<String, serde_json::Value>);

    impl<'de> Deserialize<'de> for Fields {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Fields;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                    let mut out = BTreeMap::new();
                    while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                        out.insert(k, v);
                    }
                    Ok(Fields(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn only<'a>(fields: &'a Fields, name: &str) -> Result<&'a serde_json::Value, String> {
        if let Some(other) = fields.0.keys().find(|k| k.as_str() != name) {
            return Err(format!("unknown field `{other}`, expected `{name}`"));
        }
        fields
            .0
            .get(name)
            .ok_or_else(|| format!("missing field `{name}`"))
    }

    #[derive(Deserialize)]
    #[serde(transparent)]
    pub struct TimestampMap(Fields);

    impl TryFrom<TimestampMap> for super::AtTimestamp {
        type Error = String;
        fn try_from(m: TimestampMap) -> Result<Self, String> {
            let v = only(&m.0, "timestamp")?;
            let timestamp =
                serde_json::from_value(v.clone()).map_err(|e| format!("`timestamp`: {e}"))?;
            Ok(super::AtTimestamp { timestamp })
        }
    }

    #[derive(Deserialize)]
    #[serde(transparent)]
    pub struct OffsetsMap(Fields);

    impl TryFrom<OffsetsMap> for super::AtOffsets {
        type Error = String;
        fn try_from(m: OffsetsMap) -> Result<Self, String> {
            let v = only(&m.0, "offsets")?;
            let offsets =
                serde_json::from_value(v.clone()).map_err(|e| format!("`offsets`: {e}"))?;
            Ok(super::AtOffsets { offsets })
        }
    }
}

/// Distinguishes an absent field from an explicit `null`: `None` = absent
/// (keep the current value), `Some(None)` = `null` (turn it off).
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_topic_null_differs_from_absent() {
        let absent: SubscriptionSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.dead_letter_topic, None);
        let null: SubscriptionSpec =
            serde_json::from_str(r#"{"dead_letter_topic": null}"#).unwrap();
        assert_eq!(null.dead_letter_topic, Some(None));
        let named: SubscriptionSpec =
            serde_json::from_str(r#"{"dead_letter_topic": "d"}"#).unwrap();
        assert_eq!(named.dead_letter_topic, Some(Some("d".into())));
    }

    #[test]
    fn absent_dead_letter_topic_stays_absent_on_the_wire() {
        let text = serde_json::to_string(&SubscriptionSpec::default()).unwrap();
        assert!(!text.contains("dead_letter_topic"), "{text}");
        let back: SubscriptionSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back.dead_letter_topic, None);
        let none = SubscriptionSpec {
            dead_letter_topic: Some(None),
            ..SubscriptionSpec::default()
        };
        let back: SubscriptionSpec =
            serde_json::from_str(&serde_json::to_string(&none).unwrap()).unwrap();
        assert_eq!(back.dead_letter_topic, Some(None));
    }

    #[test]
    fn received_message_round_trips_with_a_json_value() {
        let text = r#"{"topic":"t","partition":1,"offset":2,"timestamp":3,"key":null,"value":{"a":[1,2]},"headers":{"h":"v"},"ack_id":"x","attempt":2}"#;
        let m: ReceivedMessage = serde_json::from_str(text).unwrap();
        assert_eq!(m.message.value.as_ref().unwrap().get(), r#"{"a":[1,2]}"#);
        assert_eq!(m.attempt, 2);
        assert_eq!(serde_json::to_string(&m).unwrap(), text);
    }

    #[test]
    fn start_and_seek_forms_parse() {
        let s: Start = serde_json::from_str(r#""earliest""#).unwrap();
        assert_eq!(s, Start::Named(StartName::Earliest));
        let s: Start = serde_json::from_str(r#"{"timestamp": 5}"#).unwrap();
        assert_eq!(s, Start::Timestamp(AtTimestamp { timestamp: 5 }));
        let t: SeekRequest = serde_json::from_str(r#"{"to":{"offsets":{"0":10}}}"#).unwrap();
        assert!(matches!(t.to, SeekTarget::Offsets(_)));
        assert!(serde_json::from_str::<Start>(r#""middle""#).is_err());
        // Objects only: an array is not a timestamp or an offsets map.
        assert!(serde_json::from_str::<SeekRequest>(r#"{"to": [5]}"#).is_err());
        assert!(serde_json::from_str::<Start>("[5]").is_err());
        assert!(
            serde_json::from_str::<SeekRequest>(r#"{"to": {"timestamp": 5, "x": 1}}"#).is_err()
        );
        let t: SeekRequest = serde_json::from_str(r#"{"to": {"timestamp": 5}}"#).unwrap();
        assert_eq!(t.to, SeekTarget::Timestamp(AtTimestamp { timestamp: 5 }));
    }
}
