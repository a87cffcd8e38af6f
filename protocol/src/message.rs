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
    /// The payload as JSON: any JSON value (`null` counts as absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = any_json_schema)]
    pub value: Option<Box<RawValue>>,
    /// The payload as standard base64 bytes (canonical, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    pub value_b64: Option<String>,
    /// String headers. Names are not empty and must not start with `weir-`
    /// (any case): those are reserved for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = produce_headers_schema)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Explicit partition (below the topic's `partitions`); overrides the key hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 1023)]
    pub partition: Option<u32>,
    /// Idempotency key (1 to 256 bytes), remembered for the topic's `dedupe_window_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub id: Option<String>,
    /// Queue subscriptions do not deliver the message before now +
    /// `delay_ms` (at most one year). Not together with `deliver_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 31536000000u64)]
    pub delay_ms: Option<u64>,
    /// Queue subscriptions do not deliver the message before this
    /// timestamp (at most one year ahead). Not together with `delay_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<u64>,
}

/// Body of `POST /v1/topics/{topic}/messages` (JSON form).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    /// Messages to append, atomically: all or none.
    #[schema(schema_with = produce_messages_schema)]
    pub messages: Vec<ProduceMessage>,
}

/// Any JSON value.
fn any_json_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some("The payload, when it is JSON: any JSON value."))
        .build()
}

/// Header names: not empty, not starting with `weir-` in any case.
fn produce_headers_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .pattern(Some(
                    "^(?:[^Ww]|[Ww](?:$|[^Ee]|[Ee](?:$|[^Ii]|[Ii](?:$|[^Rr]|[Rr](?:$|[^-])))))",
                )),
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .max_properties(Some(65_535))
        .description(Some(
            "String headers. Names are not empty and must not start with `weir-` (any case): \
             those are reserved for the server.",
        ))
        .build()
}

/// The batch: 1 to 100000 messages, each with exactly one of `value` and
/// `value_b64` (not `null`), and not both `delay_ms` and `deliver_at`.
fn produce_messages_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{
        AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type,
    };
    use utoipa::openapi::Ref;
    let only = |name: &str, schema: ObjectBuilder| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .required(name)
            .property(name, schema)
    };
    let null = |name: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(name, ObjectBuilder::new().schema_type(Type::Null))
    };
    let payload = OneOfBuilder::new()
        .item(only(
            "value",
            // Free-form objects: code generators read an object type
            // without properties as "empty object" otherwise.
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([
                    Type::Object,
                    Type::Array,
                    Type::String,
                    Type::Number,
                    Type::Boolean,
                ]))
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
                )),
        ))
        .item(only(
            "value_b64",
            ObjectBuilder::new().schema_type(Type::String),
        ));
    let one_delay = AnyOfBuilder::new()
        .item(null("delay_ms"))
        .item(null("deliver_at"));
    ArrayBuilder::new()
        .items(
            AllOfBuilder::new()
                .item(Ref::from_schema_name("ProduceMessage"))
                .item(payload)
                .item(one_delay),
        )
        .min_items(Some(1))
        .max_items(Some(100_000))
        .description(Some(
            "Messages to append, atomically: all or none. Each has exactly one of `value` and \
             `value_b64` (not `null`), and at most one of `delay_ms` and `deliver_at`.",
        ))
        .build()
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
    /// Payload, when it is JSON: any JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = any_json_schema)]
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
