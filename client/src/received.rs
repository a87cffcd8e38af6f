//! Decoding of pull responses.
//!
//! `weir_protocol::ReceivedMessage` flattens `Message` into itself, and
//! serde's `flatten` buffers fields in a way `RawValue` (the JSON `value`)
//! cannot be read from, so deserializing it fails on any JSON payload. This
//! module reads the same wire shape through a flat mirror and converts it.
//! Remove it once the protocol type deserializes directly.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use weir_protocol::{Message, ReceivedMessage};

/// Body of a pull response: `{"messages":[...]}`.
#[derive(Deserialize)]
pub(crate) struct WirePullResponse {
    messages: Vec<WireReceived>,
}

impl WirePullResponse {
    pub(crate) fn into_messages(self) -> Vec<ReceivedMessage> {
        self.messages
            .into_iter()
            .map(ReceivedMessage::from)
            .collect()
    }
}

/// One leased message as sent: the message fields plus `ack_id` and `attempt`.
#[derive(Deserialize)]
struct WireReceived {
    topic: String,
    partition: u32,
    offset: u64,
    timestamp: u64,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<Box<RawValue>>,
    #[serde(default)]
    value_b64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    ack_id: String,
    attempt: u32,
}

impl From<WireReceived> for ReceivedMessage {
    fn from(w: WireReceived) -> Self {
        ReceivedMessage {
            message: Message {
                topic: w.topic,
                partition: w.partition,
                offset: w.offset,
                timestamp: w.timestamp,
                key: w.key,
                value: w.value,
                value_b64: w.value_b64,
                headers: w.headers,
            },
            ack_id: w.ack_id,
            attempt: w.attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use weir_protocol::PullResponse;

    use super::*;

    const BODY: &str = r#"{"messages":[
        {"topic":"orders","partition":1,"offset":42,"timestamp":1764300000000,
         "key":"customer-7","value":{"order":1},"headers":{"h":"v"},
         "ack_id":"AAAB","attempt":2},
        {"topic":"orders","partition":0,"offset":7,"timestamp":1764300000001,
         "key":null,"value_b64":"AAEC","ack_id":"AAAC","attempt":1}
    ]}"#;

    #[test]
    fn pull_responses_with_json_values_decode() {
        // The reason this module exists: the protocol type cannot read it.
        // When this fails, the protocol is fixed: decode `PullResponse`
        // directly and delete this module.
        assert!(serde_json::from_str::<PullResponse>(BODY).is_err());

        let wire: WirePullResponse = serde_json::from_str(BODY).unwrap();
        let messages = wire.into_messages();
        assert_eq!(messages.len(), 2);
        let first = &messages[0];
        assert_eq!(first.ack_id, "AAAB");
        assert_eq!(first.attempt, 2);
        assert_eq!(first.message.offset, 42);
        assert_eq!(first.message.key.as_deref(), Some("customer-7"));
        assert_eq!(
            first.message.value.as_ref().unwrap().get(),
            r#"{"order":1}"#
        );
        assert_eq!(first.message.headers["h"], "v");
        let second = &messages[1];
        assert_eq!(second.message.value_b64.as_deref(), Some("AAEC"));
        assert!(second.message.value.is_none());
        assert!(second.message.headers.is_empty());
    }
}
