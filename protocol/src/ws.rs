//! WebSocket frames: JSON text frames tagged by `type`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::message::{Message, ProduceMessage, ProduceResult};
use crate::subscription::ReceivedMessage;

/// Frames a client sends on a subscription or publish socket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Allow the server to send `messages` more messages.
    Credit {
        /// Messages added to the credit.
        messages: u32,
    },
    /// Settle deliveries.
    Ack {
        /// Ack ids.
        ack_ids: Vec<String>,
        /// Echoed in the confirmation.
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Release deliveries for redelivery per the retry policy.
    Nack {
        /// Ack ids.
        ack_ids: Vec<String>,
        /// Failure reason.
        #[serde(default)]
        reason: Option<String>,
        /// Override of the retry delay.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// `false` dead-letters at once.
        #[serde(default)]
        retry: Option<bool>,
        /// Echoed in the confirmation.
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Renew leases.
    Extend {
        /// Ack ids.
        ack_ids: Vec<String>,
        /// New lease length from now.
        #[serde(default)]
        ack_timeout_ms: Option<u64>,
        /// Echoed in the confirmation.
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Publish messages (publish socket only).
    Publish {
        /// Echoed in the `published` reply.
        request_id: String,
        /// Messages, as in the HTTP produce body.
        messages: Vec<ProduceMessage>,
    },
}

/// Frames the server sends.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A delivered message.
    Message(ReceivedMessage),
    /// Confirmation that acks are durable.
    Acked(Confirmation),
    /// Confirmation that nacks are durable.
    Nacked(Confirmation),
    /// Confirmation that leases were renewed.
    Extended(Confirmation),
    /// Publish results, once durable.
    Published {
        /// The request's id.
        request_id: String,
        /// Results in request order.
        results: Vec<ProduceResult>,
    },
    /// An error; the socket stays open unless the server closes it.
    Error {
        /// Stable error code.
        code: crate::ErrorCode,
        /// What went wrong.
        detail: String,
        /// The request it answers, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
}

/// Reply to an ack, nack or extend frame.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Confirmation {
    /// The frame's `request_id`.
    pub request_id: Option<String>,
    /// Deliveries affected.
    pub count: u64,
    /// Ack ids matching no current delivery.
    pub unknown: Vec<String>,
}

/// Frames the server sends on a tail socket (`GET /v1/topics/{topic}/ws`).
///
/// A tail keeps no state and leases nothing, so its messages are plain
/// [`Message`]s tagged `"type": "message"`: the same shape as a
/// subscription delivery without `ack_id` and `attempt`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TailFrame {
    /// A message, pushed as soon as it is durable.
    Message(Message),
    /// An error; the socket stays open unless the server closes it.
    Error {
        /// Stable error code.
        code: crate::ErrorCode,
        /// What went wrong.
        detail: String,
    },
}

// Not derived: `#[serde(tag)]` buffers the frame, and a buffered frame
// cannot yield the message's `RawValue`. Read the tag, then read the frame
// again as the tagged type (serde_json only, like `RawValue` itself).
// Deserialized by hand: serde's internally tagged enums buffer the frame,
// and a buffered frame cannot yield a message's raw JSON `value`.
impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        struct Published {
            request_id: String,
            results: Vec<ProduceResult>,
        }
        #[derive(Deserialize)]
        struct ErrorFields {
            code: crate::ErrorCode,
            detail: String,
            #[serde(default)]
            request_id: Option<String>,
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        let tag: Tag = serde_json::from_str(text).map_err(D::Error::custom)?;
        let frame = match tag.kind.as_str() {
            "message" => serde_json::from_str(text).map(ServerFrame::Message),
            "acked" => serde_json::from_str(text).map(ServerFrame::Acked),
            "nacked" => serde_json::from_str(text).map(ServerFrame::Nacked),
            "extended" => serde_json::from_str(text).map(ServerFrame::Extended),
            "published" => serde_json::from_str(text).map(|p: Published| ServerFrame::Published {
                request_id: p.request_id,
                results: p.results,
            }),
            "error" => serde_json::from_str(text).map(|e: ErrorFields| ServerFrame::Error {
                code: e.code,
                detail: e.detail,
                request_id: e.request_id,
            }),
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &[
                        "message",
                        "acked",
                        "nacked",
                        "extended",
                        "published",
                        "error",
                    ],
                ))
            }
        };
        frame.map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for TailFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        struct ErrorFields {
            code: crate::ErrorCode,
            detail: String,
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let tag: Tag = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        match tag.kind.as_str() {
            "message" => serde_json::from_str(raw.get())
                .map(TailFrame::Message)
                .map_err(D::Error::custom),
            "error" => serde_json::from_str(raw.get())
                .map(|e: ErrorFields| TailFrame::Error {
                    code: e.code,
                    detail: e.detail,
                })
                .map_err(D::Error::custom),
            other => Err(D::Error::unknown_variant(other, &["message", "error"])),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::ErrorCode;

    #[test]
    fn server_frames_round_trip_including_json_values() {
        let texts = [
            r#"{"type":"message","topic":"t","partition":0,"offset":1,"timestamp":2,"key":null,"value":{"a":1},"headers":{},"ack_id":"x","attempt":1}"#,
            r#"{"type":"acked","request_id":"r","count":2,"unknown":["u"]}"#,
            r#"{"type":"nacked","request_id":null,"count":0,"unknown":[]}"#,
            r#"{"type":"published","request_id":"p","results":[{"partition":0,"offset":3,"duplicate":false}]}"#,
            r#"{"type":"error","code":"invalid_request","detail":"d","request_id":"q"}"#,
        ];
        for text in texts {
            let frame: ServerFrame = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&frame).unwrap(), text);
        }
        assert!(serde_json::from_str::<ServerFrame>(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn tail_message_is_a_tagged_message_and_round_trips() {
        let message = Message {
            topic: "orders".into(),
            partition: 1,
            offset: 7,
            timestamp: 1,
            key: Some("k".into()),
            value: Some(RawValue::from_string("{\"a\":1}".into()).unwrap()),
            value_b64: None,
            headers: Default::default(),
        };
        let text = serde_json::to_string(&TailFrame::Message(message)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"type": "message", "topic": "orders", "partition": 1, "offset": 7,
                   "timestamp": 1, "key": "k", "value": {"a": 1}, "headers": {}})
        );
        let TailFrame::Message(back) = serde_json::from_str(&text).unwrap() else {
            panic!("not a message frame: {text}");
        };
        assert_eq!((back.partition, back.offset), (1, 7));
        assert_eq!(back.value.unwrap().get(), "{\"a\":1}");
    }

    #[test]
    fn tail_error_round_trips_and_unknown_types_fail() {
        let frame = TailFrame::Error {
            code: ErrorCode::InvalidRequest,
            detail: "no".into(),
        };
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({"type": "error", "code": "invalid_request", "detail": "no"})
        );
        assert!(matches!(
            serde_json::from_str(&text).unwrap(),
            TailFrame::Error {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ));
        let err = serde_json::from_str::<TailFrame>(r#"{"type":"acked"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
