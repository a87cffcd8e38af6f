//! The JSON answer of a pull, and a subscription socket's `message`
//! frames, written straight from the leased messages into one buffer: byte
//! for byte what serializing the `PullResponse` (or the
//! `ServerFrame::Message`) that `Delivered::into_wire` builds gives
//! (property tests hold them together), without that detour. Through
//! serde, each delivery was a `Message` built first — the topic copied, a
//! raw value base64-encoded into a `String`, the headers into a map — then
//! written through the generic map path that `#[serde(flatten)]` takes,
//! every string scanned for escapes: ~9 % of the server's time per message
//! in a JSON consume. Base64 text, ack ids (base64url) and numbers need no
//! escaping; only the topic, keys and headers go through [`push_str`].

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::value::RawValue;

use crate::broker::subscription::pull::{Delivered, Pulled};

/// `{"messages":[…],"batch_ack_id":…}` for `pulled`, messages of `topic`.
pub fn pull_body(topic: &str, pulled: &Pulled) -> Vec<u8> {
    let size: usize = pulled
        .delivered
        .iter()
        .map(|d| delivery_size(topic, d))
        .sum();
    let mut out = Vec::with_capacity(32 + size);
    let mut writer = Writer::default();
    out.extend_from_slice(br#"{"messages":["#);
    for (i, d) in pulled.delivered.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        writer.fields(&mut out, topic, d);
        out.push(b'}');
    }
    out.push(b']');
    if let Some(id) = &pulled.batch_ack_id {
        out.extend_from_slice(br#","batch_ack_id":"#);
        push_str(&mut out, id);
    }
    out.push(b'}');
    out
}

/// The `{"type":"message",…}` frame of a subscription socket for one
/// delivery of `topic`: what serializing `ServerFrame::Message` gives.
pub fn message_frame(topic: &str, delivered: &Delivered) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + delivery_size(topic, delivered));
    out.extend_from_slice(br#"{"type":"message","#);
    Writer::default().fields(&mut out, topic, delivered);
    out.push(b'}');
    out
}

/// About the bytes one delivery takes, to size the buffer once.
fn delivery_size(topic: &str, d: &Delivered) -> usize {
    160 + topic.len() + d.message.payload.len() * 4 / 3 + d.ack_id.len()
}

/// Reused between the deliveries of one answer.
#[derive(Default)]
struct Writer {
    numbers: itoa::Buffer,
    scratch: String,
}

impl Writer {
    /// The fields of one delivery, `"topic"` to `"attempt"`, in the wire
    /// form's order.
    fn fields(&mut self, out: &mut Vec<u8>, topic: &str, d: &Delivered) {
        let m = &d.message;
        out.extend_from_slice(br#""topic":"#);
        push_str(out, topic);
        out.extend_from_slice(br#","partition":"#);
        out.extend_from_slice(self.numbers.format(d.partition).as_bytes());
        out.extend_from_slice(br#","offset":"#);
        out.extend_from_slice(self.numbers.format(m.offset).as_bytes());
        out.extend_from_slice(br#","timestamp":"#);
        out.extend_from_slice(self.numbers.format(m.timestamp).as_bytes());
        out.extend_from_slice(br#","key":"#);
        match &m.key {
            Some(key) => push_str(out, key),
            None => out.extend_from_slice(b"null"),
        }
        push_value(out, m.json, &m.payload, &mut self.scratch);
        out.extend_from_slice(br#","headers":{"#);
        if !m.headers.is_empty() {
            // Sorted by name, the last of equal names kept: the map the
            // wire form holds.
            let sorted: BTreeMap<&str, &str> = m
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            for (j, (name, value)) in sorted.into_iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                push_str(out, name);
                out.push(b':');
                push_str(out, value);
            }
        }
        out.extend_from_slice(br#"},"ack_id":"#);
        push_str(out, &d.ack_id);
        out.extend_from_slice(br#","attempt":"#);
        out.extend_from_slice(self.numbers.format(d.attempt).as_bytes());
    }
}

/// `,"value":<JSON>` for a valid JSON payload, `,"value_b64":"…"` for
/// bytes (and for a JSON-flagged payload that is not UTF-8); nothing for a
/// JSON-flagged payload that does not parse — as the wire form does.
fn push_value(out: &mut Vec<u8>, json: bool, payload: &[u8], scratch: &mut String) {
    if json {
        if let Ok(text) = std::str::from_utf8(payload) {
            if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
                out.extend_from_slice(br#","value":"#);
                out.extend_from_slice(raw.get().as_bytes());
            }
            return;
        }
    }
    scratch.clear();
    STANDARD.encode_string(payload, scratch);
    // The base64 alphabet needs no escaping.
    out.extend_from_slice(br#","value_b64":""#);
    out.extend_from_slice(scratch.as_bytes());
    out.push(b'"');
}

/// `s` as a JSON string, escaped as serde_json escapes: `\"`, `\\`, the
/// short forms of backspace, form feed, newline, carriage return and tab,
/// `\u00xx` for the other control characters; everything else as is.
fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use weir_protocol::PullResponse;

    use super::*;
    use crate::storage::record::StoredMessage;

    fn text() -> impl Strategy<Value = String> {
        // Control characters, quotes, backslashes and non-ASCII text.
        proptest::string::string_regex("[\\x00-\\x1f\"\\\\a-zé€😀 ]{0,12}").unwrap()
    }

    fn payload() -> impl Strategy<Value = (bool, Vec<u8>)> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| (false, b)),
            // JSON text, with surrounding whitespace at times.
            (any::<i64>(), text(), " {0,2}").prop_map(|(n, s, pad)| {
                let value = serde_json::json!({"n": n, "s": s, "list": [1, null, true]});
                (true, format!("{pad}{value}{pad}").into_bytes())
            }),
            // Flagged JSON that is not JSON, or not even UTF-8.
            Just((true, b"{not json".to_vec())),
            Just((true, vec![0xff, 0xfe, b'1'])),
        ]
    }

    fn delivered() -> impl Strategy<Value = Delivered> {
        (
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<u32>()),
            proptest::option::of(text()),
            proptest::collection::vec((text(), text()), 0..4),
            payload(),
            "[A-Za-z0-9_-]{0,30}",
        )
            .prop_map(
                |(
                    (partition, offset, timestamp, attempt),
                    key,
                    headers,
                    (json, payload),
                    ack_id,
                )| {
                    Delivered {
                        partition,
                        message: StoredMessage {
                            offset,
                            timestamp,
                            deliver_at: 0,
                            key,
                            headers,
                            json,
                            payload,
                            stored_bytes: 0,
                        },
                        ack_id,
                        attempt,
                    }
                },
            )
    }

    /// What serde writes for the same pull.
    fn through_serde(topic: &str, pulled: Pulled) -> Vec<u8> {
        let response = PullResponse {
            messages: pulled
                .delivered
                .into_iter()
                .map(|d| d.into_wire(topic))
                .collect(),
            batch_ack_id: pulled.batch_ack_id,
        };
        serde_json::to_vec(&response).unwrap()
    }

    proptest! {
        #[test]
        fn the_body_is_what_serde_writes(
            topic in "[a-z0-9._-]{1,20}",
            delivered in proptest::collection::vec(delivered(), 0..6),
            batch_ack_id in proptest::option::of("[A-Za-z0-9_-]{10,40}"),
        ) {
            let pulled = Pulled { delivered, batch_ack_id };
            let written = String::from_utf8(pull_body(&topic, &pulled)).unwrap();
            let expected = String::from_utf8(through_serde(&topic, pulled)).unwrap();
            prop_assert_eq!(written, expected);
        }

        #[test]
        fn the_message_frame_is_what_serde_writes(
            topic in "[a-z0-9._-]{1,20}",
            d in delivered(),
        ) {
            let written = String::from_utf8(message_frame(&topic, &d)).unwrap();
            let frame = weir_protocol::ws::ServerFrame::Message(d.into_wire(&topic));
            prop_assert_eq!(written, serde_json::to_string(&frame).unwrap());
        }

        #[test]
        fn strings_escape_as_serde_does(s in prop_oneof![any::<String>(), text()]) {
            let mut out = Vec::new();
            push_str(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }
}
