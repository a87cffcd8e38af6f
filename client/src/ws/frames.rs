//! The frames of the three sockets, as this client reads and writes them:
//! JSON text, except the publish requests of a binary client (binary
//! frames, `weir_protocol::binary`). Client frames are
//! `weir_protocol::ws::ClientFrame`, server frames are read as `ServerFrame` / `TailFrame` — the protocol's own
//! decoders, which turn an error code newer than this client into
//! `ErrorCode::Unknown` instead of failing the frame — and sorted here into
//! pushed messages and answers to requests.

use tokio_tungstenite::tungstenite::Message as WsMessage;
use weir_protocol::ws::{ClientFrame, Confirmation, ServerFrame, TailFrame};
use weir_protocol::{
    AckResponse, ExtendRequest, Message, NackRequest, Problem, ProduceMessage, ProduceResult,
    ReceivedMessage,
};

use crate::encoding::encode_publish;
use crate::{Encoding, Error};

/// Which confirmation answers a settle frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettleKind {
    Ack,
    Nack,
    Extend,
}

impl SettleKind {
    /// The `type` of the server's confirmation.
    fn reply_type(self) -> &'static str {
        match self {
            SettleKind::Ack => "acked",
            SettleKind::Nack => "nacked",
            SettleKind::Extend => "extended",
        }
    }
}

/// A successful answer to a request.
#[derive(Debug)]
pub(crate) enum Reply {
    Settled(SettleKind, AckResponse),
    Published(Vec<ProduceResult>),
}

/// A frame from a server socket; `T` is what the socket pushes.
#[derive(Debug)]
pub(crate) enum Incoming<T> {
    /// A pushed message (a delivery, or a tailed message).
    Message(T),
    /// The answer to the request `request_id`: a reply or an error frame.
    /// An error frame without `request_id` is about the socket itself.
    Answer {
        request_id: Option<String>,
        answer: Result<Reply, Error>,
    },
}

/// Reads a frame of a subscription or publish socket.
pub(crate) fn decode(text: &str) -> Result<Incoming<ReceivedMessage>, Error> {
    let settled = |kind: SettleKind, c: Confirmation| {
        let response = AckResponse {
            acked: c.count,
            unknown: c.unknown,
        };
        Incoming::Answer {
            request_id: c.request_id,
            answer: Ok(Reply::Settled(kind, response)),
        }
    };
    Ok(match serde_json::from_str(text)? {
        ServerFrame::Message(message) => Incoming::Message(message),
        ServerFrame::Acked(c) => settled(SettleKind::Ack, c),
        ServerFrame::Nacked(c) => settled(SettleKind::Nack, c),
        ServerFrame::Extended(c) => settled(SettleKind::Extend, c),
        ServerFrame::Published {
            request_id,
            results,
        } => Incoming::Answer {
            request_id: Some(request_id),
            answer: Ok(Reply::Published(results)),
        },
        ServerFrame::Error {
            code,
            detail,
            request_id,
        } => Incoming::Answer {
            request_id,
            answer: Err(Error::Api(Problem::new(code, detail))),
        },
    })
}

/// Reads a frame of a tail socket: a message, or an error frame (about
/// the socket: a tail has no requests).
pub(crate) fn decode_tail(text: &str) -> Result<Incoming<Message>, Error> {
    Ok(match serde_json::from_str(text)? {
        TailFrame::Message(message) => Incoming::Message(message),
        TailFrame::Error { code, detail } => Incoming::Answer {
            request_id: None,
            answer: Err(Error::Api(Problem::new(code, detail))),
        },
    })
}

/// Checks that `reply` is what a `kind` request expects.
pub(crate) fn settled(kind: SettleKind, reply: Reply) -> Result<AckResponse, Error> {
    match reply {
        Reply::Settled(got, response) if got == kind => Ok(response),
        other => Err(Error::Protocol(format!(
            "expected `{}`, got {other:?}",
            kind.reply_type()
        ))),
    }
}

/// Checks that `reply` answers a publish of `sent` messages.
pub(crate) fn published(reply: Reply, sent: usize) -> Result<Vec<ProduceResult>, Error> {
    match reply {
        Reply::Published(results) if results.len() == sent => Ok(results),
        Reply::Published(results) => Err(Error::Protocol(format!(
            "{} publish results for {sent} messages",
            results.len()
        ))),
        other => Err(Error::Protocol(format!(
            "expected `published`, got {other:?}"
        ))),
    }
}

pub(crate) fn ack(request_id: String, ack_ids: Vec<String>) -> Result<String, Error> {
    let frame = ClientFrame::Ack {
        ack_ids,
        request_id: Some(request_id),
    };
    Ok(serde_json::to_string(&frame)?)
}

pub(crate) fn nack(request_id: String, request: NackRequest) -> Result<String, Error> {
    let frame = ClientFrame::Nack {
        ack_ids: request.ack_ids,
        reason: request.reason,
        delay_ms: request.delay_ms,
        retry: request.retry,
        request_id: Some(request_id),
    };
    Ok(serde_json::to_string(&frame)?)
}

pub(crate) fn extend(request_id: String, request: ExtendRequest) -> Result<String, Error> {
    let frame = ClientFrame::Extend {
        ack_ids: request.ack_ids,
        ack_timeout_ms: request.ack_timeout_ms,
        request_id: Some(request_id),
    };
    Ok(serde_json::to_string(&frame)?)
}

pub(crate) fn credit(messages: u32) -> Result<String, Error> {
    Ok(serde_json::to_string(&ClientFrame::Credit { messages })?)
}

/// A publish request in `encoding`: a JSON text frame, or a binary frame
/// (the answer is a JSON `published` frame either way).
pub(crate) fn publish(
    request_id: String,
    messages: Vec<ProduceMessage>,
    encoding: Encoding,
) -> Result<WsMessage, Error> {
    match encoding {
        Encoding::Json => {
            let frame = ClientFrame::Publish {
                request_id,
                messages,
            };
            Ok(WsMessage::text(serde_json::to_string(&frame)?))
        }
        Encoding::Binary => Ok(WsMessage::binary(encode_publish(&request_id, messages)?)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{json, Value};
    use weir_protocol::{ErrorCode, ProduceMessage};

    use super::*;

    fn received() -> ReceivedMessage {
        serde_json::from_value(json!({
            "topic": "orders", "partition": 1, "offset": 7, "timestamp": 5,
            "key": "k", "value": {"a": [1, 2]}, "headers": {"h": "v"},
            "ack_id": "AAAB", "attempt": 2
        }))
        .unwrap()
    }

    #[test]
    fn message_frames_written_by_the_server_type_are_read_back() {
        let text = serde_json::to_string(&ServerFrame::Message(received())).unwrap();
        let Incoming::Message(m) = decode(&text).unwrap() else {
            panic!("not a message: {text}");
        };
        assert_eq!((m.ack_id.as_str(), m.attempt), ("AAAB", 2));
        assert_eq!((m.message.partition, m.message.offset), (1, 7));
        assert_eq!(m.message.value.unwrap().get(), r#"{"a":[1,2]}"#);
        assert_eq!(m.message.headers["h"], "v");
    }

    #[test]
    fn confirmations_and_published_replies_carry_their_request_id() {
        let acked = ServerFrame::Nacked(Confirmation {
            request_id: Some("r4".into()),
            count: 2,
            unknown: vec!["x".into()],
        });
        let Incoming::Answer {
            request_id,
            answer: Ok(reply),
        } = decode(&serde_json::to_string(&acked).unwrap()).unwrap()
        else {
            panic!("not an answer");
        };
        assert_eq!(request_id.as_deref(), Some("r4"));
        assert!(settled(SettleKind::Ack, reply).is_err(), "nacked ≠ acked");

        let text = r#"{"type":"extended","request_id":"r5","count":1,"unknown":[]}"#;
        let Incoming::Answer {
            answer: Ok(reply), ..
        } = decode(text).unwrap()
        else {
            panic!("not an answer");
        };
        assert_eq!(settled(SettleKind::Extend, reply).unwrap().acked, 1);

        let published = ServerFrame::Published {
            request_id: "p1".into(),
            results: vec![ProduceResult {
                partition: 0,
                offset: 3,
                duplicate: false,
            }],
        };
        let Incoming::Answer {
            request_id,
            answer: Ok(reply),
        } = decode(&serde_json::to_string(&published).unwrap()).unwrap()
        else {
            panic!("not an answer");
        };
        assert_eq!(request_id.as_deref(), Some("p1"));
        assert!(published_len_mismatch_fails(reply));
    }

    fn published_len_mismatch_fails(reply: Reply) -> bool {
        let Reply::Published(results) = &reply else {
            return false;
        };
        assert_eq!(results[0].offset, 3);
        published(reply, 2).is_err()
    }

    #[test]
    fn error_frames_become_api_errors_with_their_code() {
        let frame = ServerFrame::Error {
            code: ErrorCode::SubscriptionNotFound,
            detail: "gone".into(),
            request_id: None,
        };
        let Incoming::Answer {
            request_id: None,
            answer: Err(e),
        } = decode(&serde_json::to_string(&frame).unwrap()).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(e.code(), Some(ErrorCode::SubscriptionNotFound));

        // A code newer than this client still makes an error, not an
        // undecodable frame.
        let newer = r#"{"type":"error","code":"brand_new","detail":"d","request_id":"r1"}"#;
        let Incoming::Answer {
            request_id,
            answer: Err(e),
        } = decode(newer).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(request_id.as_deref(), Some("r1"));
        assert_eq!(e.code(), Some(ErrorCode::Unknown));

        assert!(matches!(
            decode(r#"{"type":"surprise"}"#),
            Err(Error::Decode(_))
        ));
        assert!(matches!(decode("not json"), Err(Error::Decode(_))));
    }

    #[test]
    fn tail_frames_are_messages_or_errors() {
        let Incoming::Message(message) = decode_tail(
            r#"{"type":"message","topic":"t","partition":0,"offset":1,"timestamp":2,"key":null,"value_b64":"AAE=","headers":{}}"#,
        )
        .unwrap() else {
            panic!("not a message");
        };
        assert_eq!(message.value_b64.as_deref(), Some("AAE="));
        let Incoming::Answer {
            request_id: None,
            answer: Err(e),
        } = decode_tail(r#"{"type":"error","code":"topic_not_found","detail":"deleted"}"#).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(e.code(), Some(ErrorCode::TopicNotFound));
    }

    #[test]
    fn client_frames_are_the_protocol_frames() {
        let nacked = NackRequest {
            ack_ids: vec!["a".into()],
            reason: Some("bad".into()),
            delay_ms: Some(10),
            retry: Some(false),
        };
        assert_eq!(
            serde_json::from_str::<Value>(&nack("r2".into(), nacked).unwrap()).unwrap(),
            json!({"type": "nack", "ack_ids": ["a"], "reason": "bad", "delay_ms": 10,
                   "retry": false, "request_id": "r2"})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&ack("r1".into(), vec!["a".into()]).unwrap()).unwrap(),
            json!({"type": "ack", "ack_ids": ["a"], "request_id": "r1"})
        );
        let renew = ExtendRequest {
            ack_ids: vec!["a".into()],
            ack_timeout_ms: Some(60_000),
        };
        assert_eq!(
            serde_json::from_str::<Value>(&extend("r3".into(), renew).unwrap()).unwrap(),
            json!({"type": "extend", "ack_ids": ["a"], "ack_timeout_ms": 60000, "request_id": "r3"})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&credit(5).unwrap()).unwrap(),
            json!({"type": "credit", "messages": 5})
        );
        let message = ProduceMessage {
            key: Some("k".into()),
            value: Some(serde_json::value::to_raw_value(&json!({"n": 1})).unwrap()),
            ..ProduceMessage::default()
        };
        let WsMessage::Text(text) =
            publish("p9".into(), vec![message.clone()], Encoding::Json).unwrap()
        else {
            panic!("a JSON publish is a text frame");
        };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"type": "publish", "request_id": "p9", "messages": [{"key": "k", "value": {"n": 1}}]})
        );
        let WsMessage::Binary(bytes) =
            publish("p9".into(), vec![message], Encoding::Binary).unwrap()
        else {
            panic!("a binary publish is a binary frame");
        };
        let (id, records) = weir_protocol::binary::decode_publish(&bytes).unwrap();
        assert_eq!((id.as_str(), records.len()), ("p9", 1));
        assert_eq!(
            (
                records[0].key.as_deref(),
                records[0].json,
                records[0].value.as_slice()
            ),
            (Some("k"), true, &br#"{"n":1}"#[..])
        );
    }
}
