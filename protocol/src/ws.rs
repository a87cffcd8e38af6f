//! WebSocket frames: JSON text frames tagged by `type`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::message::{ProduceMessage, ProduceResult};
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
