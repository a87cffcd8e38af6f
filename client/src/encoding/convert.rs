//! Conversions between the client's message types and binary records:
//! [`ProduceMessage`]s into produce bodies, and messages bodies (read and
//! pull responses) into [`Message`]s and [`ReceivedMessage`]s — exactly
//! what the JSON path would have returned (a raw value as `value_b64`, a
//! JSON one as `value`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::value::RawValue;
use weir_protocol::binary::{decode_messages, Encoder, MessageRecord, ProduceRecord};
use weir_protocol::{ErrorCode, Message, Problem, ProduceMessage, ReceivedMessage};

use crate::Error;

/// Bytes a record takes besides its value, key and headers (length, flags,
/// partition, delay, key length, id, header count), for capacity guesses.
const RECORD_OVERHEAD: usize = 32;

/// `message` as a binary record; `i` is its index in its request (for the
/// field of an error).
///
/// Callers check messages first (`check_messages`): one with both or
/// neither of `value` and `value_b64` never gets here.
pub(crate) fn produce_record(message: ProduceMessage, i: usize) -> Result<ProduceRecord, Error> {
    let (json, value) = match (message.value, message.value_b64) {
        (Some(raw), _) => (true, Box::<str>::from(raw).into_string().into_bytes()),
        (None, Some(b64)) => (false, STANDARD.decode(b64).map_err(|e| bad_base64(i, &e))?),
        (None, None) => (false, Vec::new()),
    };
    Ok(ProduceRecord {
        key: message.key,
        json,
        value,
        headers: message
            .headers
            .map(|headers| headers.into_iter().collect())
            .unwrap_or_default(),
        partition: message.partition,
        id: message.id,
        delay_ms: message.delay_ms,
        deliver_at: message.deliver_at,
    })
}

/// The server's answer to a `value_b64` that does not decode: same code,
/// field and wording.
fn bad_base64(i: usize, e: &base64::DecodeError) -> Error {
    Error::Api(
        Problem::new(
            ErrorCode::InvalidRequest,
            format!("`value_b64` of message {i} is not valid base64: {e}"),
        )
        .with_field(format!("messages[{i}].value_b64")),
    )
}

/// About the bytes `message` takes in a binary body.
fn approximate_len(message: &ProduceMessage) -> usize {
    let value = match (&message.value, &message.value_b64) {
        (Some(raw), _) => raw.get().len(),
        (None, Some(b64)) => b64.len() / 4 * 3,
        (None, None) => 0,
    };
    let key = message.key.as_ref().map_or(0, String::len);
    let headers = message.headers.as_ref().map_or(0, |headers| {
        headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum()
    });
    RECORD_OVERHEAD + value + key + headers
}

/// A produce body (kind 1) of `messages`.
pub(crate) fn encode_produce(messages: Vec<ProduceMessage>) -> Result<Vec<u8>, Error> {
    let capacity = messages.iter().map(approximate_len).sum();
    let mut body = Encoder::produce(capacity);
    for (i, message) in messages.into_iter().enumerate() {
        body.push_produce(&produce_record(message, i)?);
    }
    Ok(body.finish())
}

/// A WebSocket publish frame (kind 3) of `messages` with `request_id`.
pub(crate) fn encode_publish(
    request_id: &str,
    messages: Vec<ProduceMessage>,
) -> Result<Vec<u8>, Error> {
    let capacity = messages.iter().map(approximate_len).sum();
    let mut frame = Encoder::publish(request_id, capacity);
    for (i, message) in messages.into_iter().enumerate() {
        frame.push_produce(&produce_record(message, i)?);
    }
    Ok(frame.finish())
}

/// A produce body of the one message `message`: the unit the
/// [`Producer`](crate::Producer) batches (its records are appended to a
/// batch's body, the header dropped).
pub(crate) fn encode_message(message: ProduceMessage) -> Result<Vec<u8>, Error> {
    let mut body = Encoder::produce(approximate_len(&message));
    body.push_produce(&produce_record(message, 0)?);
    Ok(body.finish())
}

/// A decoded record as a [`Message`] of `topic`, and its delivery (ack id
/// and attempt), if any.
fn message(topic: &str, record: MessageRecord) -> Result<(Message, Option<(String, u32)>), Error> {
    let (value, value_b64) = if record.json {
        let text = String::from_utf8(record.value).map_err(|_| {
            Error::Protocol(format!(
                "the JSON value of message {}@{} is not UTF-8",
                record.partition, record.offset
            ))
        })?;
        (Some(RawValue::from_string(text)?), None)
    } else {
        (None, Some(STANDARD.encode(&record.value)))
    };
    let message = Message {
        topic: topic.to_owned(),
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key,
        value,
        value_b64,
        headers: record.headers.into_iter().collect(),
    };
    Ok((message, record.delivery))
}

fn records(body: &[u8]) -> Result<Vec<MessageRecord>, Error> {
    decode_messages(body).map_err(|e| Error::Protocol(format!("binary messages body: {e}")))
}

/// The messages of a binary read response of `topic`.
pub(crate) fn decode_read(topic: &str, body: &[u8]) -> Result<Vec<Message>, Error> {
    records(body)?
        .into_iter()
        .map(|record| message(topic, record).map(|(message, _)| message))
        .collect()
}

/// The deliveries of a binary pull response of `topic`.
pub(crate) fn decode_pull(topic: &str, body: &[u8]) -> Result<Vec<ReceivedMessage>, Error> {
    records(body)?
        .into_iter()
        .map(|record| {
            let (message, delivery) = message(topic, record)?;
            let (ack_id, attempt) = delivery.ok_or_else(|| {
                Error::Protocol(format!(
                    "pulled message {}@{} has no ack id",
                    message.partition, message.offset
                ))
            })?;
            Ok(ReceivedMessage {
                message,
                ack_id,
                attempt,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use serde_json::json;
    use weir_protocol::binary::{decode_produce, decode_publish};

    use super::*;
    use crate::ProduceMessageExt;

    /// What the server stores and sends back for a produce record.
    fn stored(record: &ProduceRecord, offset: u64, delivery: Option<(&str, u32)>) -> MessageRecord {
        MessageRecord {
            partition: record.partition.unwrap_or(0),
            offset,
            timestamp: 1_764_300_000_000 + offset,
            key: record.key.clone(),
            json: record.json,
            value: record.value.clone(),
            headers: record.headers.clone(),
            delivery: delivery.map(|(id, attempt)| (id.to_owned(), attempt)),
        }
    }

    fn messages() -> Vec<ProduceMessage> {
        let mut keyed = ProduceMessage::json(&json!({"order": 7, "items": [1, 2]})).unwrap();
        keyed.key = Some("customer-7".into());
        keyed.headers = Some(BTreeMap::from([("trace".into(), "abc".into())]));
        keyed.partition = Some(2);
        keyed.id = Some("order-7".into());
        keyed.delay_ms = Some(500);
        let mut raw = ProduceMessage::bytes(b"\x00\xffraw bytes");
        raw.deliver_at = Some(1_764_300_000_000);
        vec![keyed, raw, ProduceMessage::bytes(b"")]
    }

    #[test]
    fn produce_bodies_carry_every_field() {
        let body = encode_produce(messages()).unwrap();
        let records = decode_produce(&body).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records[0].json);
        assert_eq!(records[0].value, br#"{"items":[1,2],"order":7}"#);
        assert_eq!(records[0].key.as_deref(), Some("customer-7"));
        assert_eq!(records[0].headers, vec![("trace".into(), "abc".into())]);
        assert_eq!(
            (
                records[0].partition,
                records[0].id.as_deref(),
                records[0].delay_ms
            ),
            (Some(2), Some("order-7"), Some(500))
        );
        assert!(!records[1].json);
        assert_eq!(records[1].value, b"\x00\xffraw bytes");
        assert_eq!(records[1].deliver_at, Some(1_764_300_000_000));
        assert!(records[2].value.is_empty());
        let (id, published) = decode_publish(&encode_publish("r3", messages()).unwrap()).unwrap();
        assert_eq!((id.as_str(), published), ("r3", records.clone()));
        // One message alone: the unit the producer batches.
        let one = encode_message(messages().remove(1)).unwrap();
        assert_eq!(decode_produce(&one).unwrap(), vec![records[1].clone()]);
    }

    /// Produced in binary and read back in binary, a message is what the
    /// JSON path returns: JSON values as `value`, bytes as `value_b64`.
    #[test]
    fn read_back_messages_equal_the_json_forms() {
        let sent = messages();
        let records = decode_produce(&encode_produce(sent.clone()).unwrap()).unwrap();
        let mut body = Encoder::messages(0);
        for (offset, record) in records.iter().enumerate() {
            body.push_message_record(&stored(record, offset as u64, None));
        }
        let read = decode_read("orders", &body.finish()).unwrap();
        assert_eq!(read.len(), 3);
        for (m, s) in read.iter().zip(&sent) {
            assert_eq!(m.topic, "orders");
            assert_eq!(
                m.value.as_ref().map(|v| v.get()),
                s.value.as_ref().map(|v| v.get())
            );
            assert_eq!(m.value_b64, s.value_b64);
            assert_eq!(m.key, s.key);
            assert_eq!(m.headers, s.headers.clone().unwrap_or_default());
        }
        assert_eq!((read[0].partition, read[0].offset), (2, 0));
        assert_eq!(read[2].timestamp, 1_764_300_000_002);
        assert_eq!(
            crate::received::value_bytes(&read[1]).unwrap(),
            b"\x00\xffraw bytes"
        );
    }

    #[test]
    fn pulled_records_become_deliveries() {
        let record = produce_record(ProduceMessage::bytes(b"job"), 0).unwrap();
        let mut body = Encoder::messages(0);
        body.push_message_record(&stored(&record, 41, Some(("ack-1", 3))));
        let pulled = decode_pull("jobs", &body.finish()).unwrap();
        assert_eq!(pulled.len(), 1);
        assert_eq!((pulled[0].ack_id.as_str(), pulled[0].attempt), ("ack-1", 3));
        assert_eq!(pulled[0].message.offset, 41);
        assert_eq!(pulled[0].message.value_b64.as_deref(), Some("am9i"));

        // A pull response without ack ids is not a pull response.
        let mut body = Encoder::messages(0);
        body.push_message_record(&stored(&record, 41, None));
        assert!(matches!(
            decode_pull("jobs", &body.finish()),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn bad_input_and_bad_bodies_are_errors() {
        let bad = ProduceMessage {
            value_b64: Some("***".into()),
            ..ProduceMessage::default()
        };
        let e = encode_produce(vec![ProduceMessage::bytes(b"ok"), bad]).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidRequest));
        assert_eq!(
            e.problem().unwrap().field.as_deref(),
            Some("messages[1].value_b64")
        );

        let mut body = Encoder::messages(0);
        body.push_message_record(&MessageRecord {
            json: true,
            value: b"{not json".to_vec(),
            ..MessageRecord::default()
        });
        assert!(matches!(
            decode_read("t", &body.finish()),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            decode_read("t", br#"{"messages":[]}"#),
            Err(Error::Protocol(_))
        ));
        // A produce body is not a messages body.
        let produce = encode_produce(messages()).unwrap();
        assert!(matches!(
            decode_read("t", &produce),
            Err(Error::Protocol(_))
        ));
    }
}
