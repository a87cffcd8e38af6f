//! [`Received`]: a delivered message that settles itself — `ack`, `nack`,
//! `nack_with`, `in_progress` — and decodes its value (`json`, `bytes`).
//!
//! Settling goes through the subscription's batching [`Settler`] (one
//! request for many messages), and releases the message from the
//! consumer's [`InHand`] set, which drives flow control and lease renewal.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::de::DeserializeOwned;
use weir_protocol::{Message, ReceivedMessage};

use crate::settle::{InHand, Kind, Settler};
use crate::{Error, Nack};

/// What the messages of one consumer settle through.
#[derive(Debug)]
pub(crate) struct SettleHandle {
    settler: Settler,
    in_hand: Option<Arc<InHand>>,
    /// Lease asked for by `in_progress`; `None` = the subscription's.
    lease: Option<Duration>,
}

impl SettleHandle {
    pub fn new(settler: Settler, in_hand: Option<Arc<InHand>>, lease: Option<Duration>) -> Self {
        SettleHandle {
            settler,
            in_hand,
            lease,
        }
    }

    /// Holds `ack_id` (a message of `bytes`) until it is settled.
    pub fn hold(&self, ack_id: String, bytes: u64) {
        if let Some(in_hand) = &self.in_hand {
            in_hand.hold(ack_id, bytes);
        }
    }

    /// Acks or nacks `ack_id`; the message is no longer held, however the
    /// request ends (a failed settle leaves it to its lease).
    pub async fn settle(&self, kind: Kind, ack_id: &str) -> Result<(), Error> {
        let outcome = self.settler.submit(kind, ack_id.to_owned()).await;
        if let Some(in_hand) = &self.in_hand {
            in_hand.release(ack_id);
        }
        outcome
    }

    /// Renews `ack_id`'s lease now.
    pub async fn extend(&self, ack_id: &str) -> Result<(), Error> {
        let outcome = self
            .settler
            .submit(Kind::Extend(self.lease), ack_id.to_owned())
            .await;
        if let Some(in_hand) = &self.in_hand {
            match &outcome {
                Ok(()) => in_hand.renewed(ack_id),
                Err(Error::LeaseLost { .. }) => {
                    in_hand.release(ack_id);
                }
                Err(_) => {}
            }
        }
        outcome
    }
}

/// A delivered message that settles itself. The fields are those of
/// [`ReceivedMessage`]; the methods ack, nack or renew this delivery
/// through its subscription, batched with other messages' settles.
///
/// Every settle method resolves once the server confirmed the change is
/// durable, and fails with [`Error::LeaseLost`] when the lease had already
/// run out (the message is, or will be, delivered again).
///
/// ```no_run
/// # async fn demo(message: weir_client::Received) -> Result<(), weir_client::Error> {
/// use std::time::Duration;
/// use weir_client::Nack;
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
/// match message.json::<Order>() {
///     Ok(order) => {
///         println!("order {}", order.id);
///         message.ack().await?;
///     }
///     Err(e) => message.nack_with(Nack::dead_letter().with_reason(e.to_string())).await?,
/// }
/// # Ok(()) }
/// ```
pub struct Received {
    /// The message as stored.
    pub message: Message,
    /// Opaque id of this delivery.
    pub ack_id: String,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
    handle: Arc<SettleHandle>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("message", &self.message)
            .field("ack_id", &self.ack_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Received {
    pub(crate) fn new(received: ReceivedMessage, handle: Arc<SettleHandle>) -> Self {
        Received {
            message: received.message,
            ack_id: received.ack_id,
            attempt: received.attempt,
            handle,
        }
    }

    /// Settles the message: done, do not deliver again.
    pub async fn ack(&self) -> Result<(), Error> {
        self.handle.settle(Kind::Ack, &self.ack_id).await
    }

    /// Gives the message back for redelivery per the subscription's retry
    /// policy ([`Nack::retry`]).
    pub async fn nack(&self) -> Result<(), Error> {
        self.nack_with(Nack::retry()).await
    }

    /// Gives the message back as `nack` says: retry per policy, retry
    /// after a delay, or dead-letter now.
    pub async fn nack_with(&self, nack: Nack) -> Result<(), Error> {
        self.handle.settle(Kind::Nack(nack), &self.ack_id).await
    }

    /// Still working on it: renews the lease now (for the stream's lease
    /// length, or the subscription's `ack_timeout_ms`). Streams renew held
    /// messages on their own; this is for work that outlasts them or
    /// wants to say so explicitly.
    pub async fn in_progress(&self) -> Result<(), Error> {
        self.handle.extend(&self.ack_id).await
    }

    /// The value decoded from JSON as `T` (a binary value is parsed as
    /// JSON bytes).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        match (&self.message.value, &self.message.value_b64) {
            (Some(value), _) => Ok(serde_json::from_str(value.get())?),
            (None, Some(_)) => Ok(serde_json::from_slice(&self.bytes()?)?),
            (None, None) => Ok(serde_json::from_str("null")?),
        }
    }

    /// The value as bytes: the JSON text of a JSON value, the decoded
    /// bytes of a binary one.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        value_bytes(&self.message)
    }

    /// The plain delivery, without its settle handle.
    pub fn into_inner(self) -> ReceivedMessage {
        ReceivedMessage {
            message: self.message,
            ack_id: self.ack_id,
            attempt: self.attempt,
        }
    }
}

/// The value of `message` as bytes.
pub(crate) fn value_bytes(message: &Message) -> Result<Vec<u8>, Error> {
    match (&message.value, &message.value_b64) {
        (Some(value), _) => Ok(value.get().as_bytes().to_vec()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| Error::Protocol(format!("`value_b64` is not base64: {e}"))),
        (None, None) => Ok(Vec::new()),
    }
}

/// About what `message` weighs for flow control: value, key and headers.
pub(crate) fn weight(message: &Message) -> u64 {
    let value = match (&message.value, &message.value_b64) {
        (Some(value), _) => value.get().len(),
        (None, Some(b64)) => b64.len() / 4 * 3,
        (None, None) => 0,
    };
    let key = message.key.as_ref().map_or(0, String::len);
    let headers: usize = message.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (value + key + headers) as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn message(value: serde_json::Value) -> Message {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn values_decode_as_json_or_bytes() {
        let json_value = message(
            json!({"topic": "t", "partition": 0, "offset": 1, "timestamp": 2,
            "key": "kk", "value": {"n": 7}, "headers": {"h": "vv"}}),
        );
        assert_eq!(value_bytes(&json_value).unwrap(), br#"{"n":7}"#);
        assert_eq!(weight(&json_value), 7 + 2 + 3);
        let binary = message(
            json!({"topic": "t", "partition": 0, "offset": 1, "timestamp": 2,
            "key": null, "value_b64": "eyJuIjo4fQ==", "headers": {}}),
        );
        assert_eq!(value_bytes(&binary).unwrap(), br#"{"n":8}"#);
        let bad = message(
            json!({"topic": "t", "partition": 0, "offset": 1, "timestamp": 2,
            "key": null, "value_b64": "***", "headers": {}}),
        );
        assert!(matches!(value_bytes(&bad), Err(Error::Protocol(_))));
    }
}
