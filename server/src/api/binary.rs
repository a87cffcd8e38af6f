//! The binary batch encoding (`application/vnd.weir.batch`, layout in
//! `weir_protocol::binary`) at the HTTP edge: which requests ask for it
//! and how read and pull responses are written in it.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use weir_protocol::binary::{Encoder, BATCH_ACK_ID_HEADER, CONTENT_TYPE};
use weir_protocol::{ErrorCode, Message};

use super::error::{ApiError, ApiResult};
use crate::broker::subscription::pull::{Delivered, Pulled};

/// Whether the request's `Accept` asks for the binary encoding (JSON stays
/// the default: only an explicit `application/vnd.weir.batch` selects it).
pub fn wants_binary(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case(CONTENT_TYPE) && !refused
        })
}

/// A message's value as bytes, and whether it is JSON text.
fn value_of(m: &Message) -> ApiResult<(bool, Vec<u8>)> {
    match (&m.value, &m.value_b64) {
        (Some(v), _) => Ok((true, v.get().as_bytes().to_vec())),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|bytes| (false, bytes))
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("stored value: {e}"))),
        (None, None) => Ok((false, Vec::new())),
    }
}

fn push(out: &mut Encoder, m: &Message, delivery: Option<(&str, u32)>) -> ApiResult<()> {
    let (json, value) = value_of(m)?;
    out.push_message(
        m.partition,
        m.offset,
        m.timestamp,
        m.key.as_deref(),
        json,
        m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        &value,
        delivery,
    );
    Ok(())
}

fn body(bytes: Vec<u8>, extra: Option<(&'static str, u64)>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response();
    if let Some((name, value)) = extra {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// A read response: the messages, and `Weir-Next-Offset` (where the next
/// read starts) as a header.
pub fn read_response(messages: &[Message], next_offset: u64) -> ApiResult<Response> {
    let mut out = Encoder::messages(messages.iter().map(|m| 64 + m.topic.len()).sum());
    for m in messages {
        push(&mut out, m, None)?;
    }
    Ok(body(out.finish(), Some(("weir-next-offset", next_offset))))
}

/// A pull response: the deliveries with their ack ids and attempts, the
/// values as stored (no JSON or base64 form in between), and the batch ack
/// id, when there is one, in the `Weir-Batch-Ack-Id` header.
pub fn pull_response(pulled: &Pulled) -> Response {
    let mut response = body(deliveries_body(&pulled.delivered), None);
    // Base64url text: always a valid header value.
    if let Some(id) = &pulled.batch_ack_id {
        if let Ok(v) = HeaderValue::from_str(id) {
            response.headers_mut().insert(BATCH_ACK_ID_HEADER, v);
        }
    }
    response
}

/// Deliveries as one messages body.
fn deliveries_body(delivered: &[Delivered]) -> Vec<u8> {
    let size = delivered.iter().map(|d| 96 + d.message.payload.len()).sum();
    let mut out = Encoder::messages(size);
    for d in delivered {
        let m = &d.message;
        out.push_message(
            d.partition,
            m.offset,
            m.timestamp,
            m.key.as_deref(),
            m.json,
            m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &m.payload,
            Some((d.ack_id.as_str(), d.attempt)),
        );
    }
    out.finish()
}

/// Deliveries as binary WebSocket frames: messages bodies in delivery
/// order, each closed once it holds about `frame_bytes` of values (a
/// frame holds at least one message, however large).
pub fn delivery_frames(delivered: &[Delivered], frame_bytes: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, d) in delivered.iter().enumerate() {
        bytes += d.message.stored_bytes as usize;
        if bytes >= frame_bytes {
            frames.push(deliveries_body(&delivered[start..=i]));
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < delivered.len() {
        frames.push(deliveries_body(&delivered[start..]));
    }
    frames
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accept_selects_binary_only_when_asked() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            wants_binary(&h)
        };
        assert!(with("application/vnd.weir.batch"));
        assert!(with("application/json;q=0.5, Application/Vnd.Weir.Batch"));
        assert!(!with("application/json"));
        assert!(!with("*/*"));
        assert!(!with("application/vnd.weir.batch;q=0"));
        assert!(!wants_binary(&HeaderMap::new()));
    }

    fn delivered(offset: u64, size: usize) -> Delivered {
        Delivered {
            partition: 1,
            message: crate::storage::StoredMessage {
                offset,
                timestamp: 7,
                deliver_at: 0,
                key: Some("k".into()),
                headers: vec![("h".into(), "v".into())],
                json: false,
                payload: vec![offset as u8; size],
                stored_bytes: size as u64 + 20,
            },
            ack_id: format!("id-{offset}"),
            attempt: 2,
        }
    }

    #[test]
    fn deliveries_are_cut_into_frames_by_size_in_order() {
        use weir_protocol::binary::decode_messages;
        let all: Vec<Delivered> = (0..5).map(|o| delivered(o, 80)).collect();
        // 100 stored bytes each: a frame closes at 250 bytes, so 3 + 2.
        let frames = delivery_frames(&all, 250);
        let decoded: Vec<_> = frames.iter().map(|f| decode_messages(f).unwrap()).collect();
        assert_eq!(decoded.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2]);
        let records: Vec<_> = decoded.into_iter().flatten().collect();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
            assert_eq!(r.delivery, Some((format!("id-{i}"), 2)));
            assert_eq!(r.value, vec![i as u8; 80]);
            assert_eq!(r.key.as_deref(), Some("k"));
        }
        // One message larger than a frame still goes, alone.
        assert_eq!(delivery_frames(&[delivered(9, 1000)], 250).len(), 1);
        assert!(delivery_frames(&[], 250).is_empty());
    }
}
