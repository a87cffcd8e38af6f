//! Reading a subscription socket's client frames. `ClientFrame` is an
//! internally tagged enum, which serde reads by buffering the whole frame
//! into an intermediate tree first; an `ack` frame — the frame a busy
//! consumer sends most, with up to a thousand ack ids — is read straight
//! into its fields instead. Any other frame, and an `ack` frame with a
//! mistake, is read as a `ClientFrame`, whose errors are the ones reported.

use serde::Deserialize;
use weir_protocol::ws::ClientFrame;

/// The fields of an `ack` frame.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckFrame {
    #[serde(rename = "type")]
    _type: AckTag,
    ack_ids: Vec<String>,
    #[serde(default)]
    request_id: Option<String>,
}

/// The one `type` an [`AckFrame`] has.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AckTag {
    Ack,
}

/// Reads one client frame.
pub(super) fn parse(text: &str) -> serde_json::Result<ClientFrame> {
    match serde_json::from_str::<AckFrame>(text) {
        Ok(AckFrame {
            ack_ids,
            request_id,
            ..
        }) => Ok(ClientFrame::Ack {
            ack_ids,
            request_id,
        }),
        Err(_) => serde_json::from_str(text),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every frame reads as serde's `ClientFrame` reads it, and fails where
    /// it fails, with the same error.
    #[test]
    fn frames_read_as_the_client_frame_enum_reads_them() {
        let frames = [
            r#"{"type":"ack","ack_ids":["a","b"]}"#,
            r#"{"ack_ids":["a"],"type":"ack","request_id":"r1"}"#,
            r#"{"type":"ack","ack_ids":[],"request_id":null}"#,
            r#"{"type":"ack","ack_ids":["a"],"extra":1}"#,
            r#"{"type":"ack"}"#,
            r#"{"type":"ack","ack_ids":"a"}"#,
            r#"{"type":"credit","messages":10}"#,
            r#"{"type":"nack","ack_ids":["a"],"retry":false,"reason":"x"}"#,
            r#"{"type":"extend","ack_ids":["a"],"ack_timeout_ms":5000}"#,
            r#"{"type":"publish","request_id":"p","messages":[]}"#,
            r#"{"type":"acks","ack_ids":["a"]}"#,
            r#"{"ack_ids":["a"]}"#,
            r#"not json"#,
        ];
        for text in frames {
            let ours = parse(text).map(|f| serde_json::to_value(f).unwrap());
            let serde =
                serde_json::from_str::<ClientFrame>(text).map(|f| serde_json::to_value(f).unwrap());
            match (ours, serde) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text}: {a:?} against {b:?}"),
            }
        }
    }
}
