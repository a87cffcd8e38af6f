//! Fuzzes the JSON text frames clients send on the WebSocket endpoints.
//!
//! - Subscription sockets decode frames exactly as the server does
//!   (`serde_json::from_str::<ClientFrame>`, `api/ws/subscribe.rs`); a
//!   frame that decodes must re-encode to JSON that decodes to the same.
//! - Publish sockets: the server's `parse` (`api/ws/publish.rs`) is
//!   private, so the same steps are taken through public items: the
//!   envelope (`type`, `request_id`), then the `publish` frame through the
//!   server's number rules (`weir_server::api::extract::from_json_slice`),
//!   then each message through the produce validation
//!   (`weir_protocol::limits::check_message`, `broker::produce::prepare`).
//!
//! Never a panic, whatever the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use weir_protocol::ws::ClientFrame;
use weir_protocol::{ProduceMessage, Retention, TopicConfig};
use weir_server::api::extract::from_json_slice;
use weir_server::broker::produce;

/// What the publish socket reads of any frame first.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[allow(dead_code)]
    request_id: Option<serde_json::Value>,
}

/// The fields of a `publish` frame (as `api/ws/publish.rs` declares them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFrame {
    #[serde(rename = "type")]
    _type: String,
    #[allow(dead_code)]
    request_id: String,
    messages: Vec<ProduceMessage>,
}

/// The time `deliver_at` is checked against.
const NOW: u64 = 1_764_300_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // The server closes the socket on a non-UTF-8 text frame (1007).
        return;
    };
    if let Ok(frame) = serde_json::from_str::<ClientFrame>(text) {
        let again = match serde_json::to_string(&frame) {
            Ok(json) => json,
            Err(e) => panic!("a decoded frame does not encode: {e}"),
        };
        match serde_json::from_str::<ClientFrame>(&again) {
            Ok(back) => assert_eq!(
                serde_json::to_value(&back).ok(),
                serde_json::to_value(&frame).ok(),
                "a frame changed through encode and decode"
            ),
            Err(e) => panic!("an encoded frame does not decode: {e}: {again}"),
        }
    }
    let Ok(envelope) = serde_json::from_str::<Envelope>(text) else {
        return;
    };
    if envelope.kind.as_deref() != Some("publish") {
        return;
    }
    let Ok(frame) = from_json_slice::<PublishFrame>(text.as_bytes()) else {
        return;
    };
    for (i, m) in frame.messages.iter().enumerate() {
        let _ = weir_protocol::limits::check_message(m, i, NOW);
    }
    let config = TopicConfig {
        partitions: 4,
        retention: Retention::default(),
        max_message_bytes: 1 << 20,
        dedupe_window_ms: 60_000,
        replication_factor: 1,
    };
    let _ = produce::prepare(frame.messages, &config, NOW);
});
