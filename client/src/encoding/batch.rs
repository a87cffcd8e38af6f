//! [`BinaryBatch`]: messages encoded once in the binary encoding, to be
//! sent as they are, as often as needed — over HTTP
//! ([`Client::produce_batch`](crate::Client::produce_batch)) or a publish
//! socket ([`WsPublisher::publish_batch`](crate::WsPublisher::publish_batch)).

use bytes::Bytes;
use weir_protocol::binary::{Encoder, ProduceRecord, HEADER_LEN};
use weir_protocol::ProduceMessage;

use super::convert::encode_produce;
use super::COUNT_FIELD;
use crate::client::check_messages;
use crate::Error;

/// A produce batch in the binary encoding (`application/vnd.weir.batch`),
/// encoded once. Cheap to clone (the bytes are shared), so one batch can
/// be sent many times without being encoded or copied again: load
/// generators, replays, the same messages to several topics.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use weir_client::{BinaryBatch, ProduceMessage, ProduceMessageExt};
/// let batch = BinaryBatch::new(vec![ProduceMessage::bytes(b"\x00\x01"); 100])?;
/// for _ in 0..10 {
///     let results = client.produce_batch("orders", &batch).await?;
///     assert_eq!(results.len(), 100);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BinaryBatch {
    body: Bytes,
    len: usize,
}

impl BinaryBatch {
    /// Encodes `messages`, checked against the server's rules first as
    /// [`Client::produce`](crate::Client::produce) checks them.
    pub fn new(messages: Vec<ProduceMessage>) -> Result<BinaryBatch, Error> {
        check_messages(&messages)?;
        let len = messages.len();
        Ok(BinaryBatch {
            body: encode_produce(messages)?.into(),
            len,
        })
    }

    /// Encodes binary records as they are (the server checks them): the
    /// cheapest way to a batch of raw values, with no base64 on the way.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a ProduceRecord>) -> BinaryBatch {
        let mut body = Encoder::produce(0);
        for record in records {
            body.push_produce(record);
        }
        let len = body.len() as usize;
        BinaryBatch {
            body: body.finish().into(),
            len,
        }
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the batch holds no message (the server refuses it).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The produce request body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body, shared.
    pub(crate) fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// The same records as a WebSocket publish frame with `request_id`.
    pub(crate) fn publish_frame(&self, request_id: &str) -> Vec<u8> {
        let records = self.body.get(HEADER_LEN..).unwrap_or_default();
        let mut frame = Encoder::publish(request_id, records.len()).finish();
        // Both headers keep the count in the same place; the records
        // follow the publish frame's request id.
        if let (Some(to), Some(from)) = (frame.get_mut(COUNT_FIELD), self.body.get(COUNT_FIELD)) {
            to.copy_from_slice(from);
        }
        frame.extend_from_slice(records);
        frame
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weir_protocol::binary::{decode_produce, decode_publish};

    use super::*;
    use crate::ProduceMessageExt;

    fn records() -> Vec<ProduceRecord> {
        (0..3u8)
            .map(|i| ProduceRecord {
                key: Some(format!("k{i}")),
                value: vec![i; 10],
                ..ProduceRecord::default()
            })
            .collect()
    }

    #[test]
    fn a_batch_is_a_produce_body_and_a_publish_frame() {
        let batch = BinaryBatch::from_records(&records());
        assert_eq!(batch.len(), 3);
        assert_eq!(decode_produce(batch.as_bytes()).unwrap(), records());
        let (id, published) = decode_publish(&batch.publish_frame("r7")).unwrap();
        assert_eq!((id.as_str(), published), ("r7", records()));
        // Clones share the bytes.
        assert_eq!(batch.clone().body().as_ptr(), batch.body().as_ptr());
    }

    #[test]
    fn messages_are_checked_like_a_produce() {
        let batch = BinaryBatch::new(vec![ProduceMessage::bytes(b"a"); 2]).unwrap();
        assert_eq!(decode_produce(batch.as_bytes()).unwrap()[1].value, b"a");
        let both = ProduceMessage {
            value_b64: Some("AA==".into()),
            ..ProduceMessage::json(&1).unwrap()
        };
        let e = BinaryBatch::new(vec![both]).unwrap_err();
        assert_eq!(e.code(), Some(weir_protocol::ErrorCode::InvalidRequest));
        assert!(BinaryBatch::from_records(&[]).is_empty());
    }
}
