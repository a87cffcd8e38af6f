//! What a socket protocol sees of its socket: the [`Protocol`] trait that the
//! tail, publish (and subscription) sockets implement, the [`Inbound`] text
//! frames from the client, the bounded [`Outbox`] towards it, and how a
//! protocol asks for the socket to be closed ([`Stop`], [`Close`]).
//!
//! Protocols never touch the socket itself: pings, idle and size limits,
//! slow consumers, shutdown and close codes are the transport's job
//! (`transport.rs`), so protocols can be tested over plain channels.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use axum::extract::ws::{close_code, CloseFrame, Utf8Bytes};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// One kind of socket: what it does with client frames and what it pushes.
pub trait Protocol: Send + 'static {
    /// The `kind` label of `weir_websocket_connections`.
    const KIND: &'static str;

    /// Whether binary frames reach the protocol ([`Inbound::recv_frame`]);
    /// otherwise a binary frame closes the socket with 1003.
    const ACCEPTS_BINARY: bool = false;

    /// Runs until `inbound` ends (the client left, the server shuts down, a
    /// fatal frame arrived) or the protocol stops on its own. Frames still
    /// queued in the outbox are delivered before the socket closes, so a
    /// protocol should finish the work it accepted before returning.
    fn run(self, inbound: Inbound, outbox: Outbox)
        -> impl Future<Output = Result<(), Stop>> + Send;
}

/// Why a protocol stopped early.
#[derive(Debug, Error)]
pub enum Stop {
    /// The socket is going away (client gone, slow consumer): nothing more
    /// can be sent.
    #[error("the socket is closed")]
    Closed,
    /// Close the socket with this code and reason.
    #[error("closing the socket: {0}")]
    Close(Close),
}

/// A close code and reason, as sent in the close frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code} {reason}")]
pub struct Close {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

/// A close frame's reason may hold at most 123 bytes (125 minus the code).
const MAX_REASON_BYTES: usize = 123;

impl Close {
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Close {
            code,
            reason: reason.into(),
        }
    }

    /// The close code the one error table gives `code` (1001 shutting
    /// down, 1013 retry later, 1011 internal, 1000 resource deleted, ...).
    pub fn for_error(code: weir_protocol::ErrorCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Close::new(code.ws_close_code(), reason)
    }

    /// 1000: the protocol is done.
    pub fn normal(reason: impl Into<Cow<'static, str>>) -> Self {
        Close::new(close_code::NORMAL, reason)
    }

    /// 1011: the server failed (the cause is logged, not sent).
    pub fn internal() -> Self {
        Close::new(close_code::ERROR, "internal error")
    }

    /// The close frame, with the reason cut to what a frame can carry.
    pub fn frame(&self) -> CloseFrame {
        let mut end = self.reason.len().min(MAX_REASON_BYTES);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        CloseFrame {
            code: self.code,
            reason: Utf8Bytes::from(&self.reason[..end]),
        }
    }
}

/// How a socket is ending, decided once by whichever side notices first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client closed or vanished: there is nobody to send a close to.
    PeerLeft,
    /// Close with this frame.
    Close(Close),
}

/// A frame from the client.
#[derive(Debug)]
pub enum InFrame {
    Text(Utf8Bytes),
    /// Only for protocols that accept binary frames.
    Binary(axum::body::Bytes),
}

/// Frames from the client, in order.
pub struct Inbound {
    pub(super) frames: mpsc::Receiver<InFrame>,
}

impl Inbound {
    /// The next text frame; `None` once the socket is closing. (Binary
    /// frames reach only protocols that accept them, through
    /// [`Inbound::recv_frame`].)
    pub async fn recv(&mut self) -> Option<Utf8Bytes> {
        loop {
            match self.frames.recv().await? {
                InFrame::Text(text) => return Some(text),
                InFrame::Binary(_) => continue,
            }
        }
    }

    /// The next frame, text or binary; `None` once the socket is closing.
    pub async fn recv_frame(&mut self) -> Option<InFrame> {
        self.frames.recv().await
    }
}

/// The bounded queue of frames towards the client: at most
/// `ws_outbound_buffer` frames and `ws_outbound_buffer_bytes` bytes. `send`
/// waits while it is full, so a protocol that produces faster than the
/// client reads is slowed down, never buffered without bound (and a client
/// that stops reading altogether is disconnected by the transport).
#[derive(Clone)]
pub struct Outbox {
    pub(super) queue: mpsc::Sender<Queued>,
    pub(super) budget: Arc<Semaphore>,
    pub(super) budget_bytes: usize,
    pub(super) ending: watch::Receiver<Option<Ending>>,
}

/// A frame in the outbound queue, holding its share of the byte budget.
pub(super) struct Queued {
    pub frame: OutFrame,
    pub budget: OwnedSemaphorePermit,
}

/// A frame towards the client.
pub(super) enum OutFrame {
    Text(Utf8Bytes),
    Binary(axum::body::Bytes),
}

impl OutFrame {
    fn len(&self) -> usize {
        match self {
            OutFrame::Text(text) => text.len(),
            OutFrame::Binary(bytes) => bytes.len(),
        }
    }
}

impl Outbox {
    /// Queues one frame as JSON text.
    pub async fn send(&self, frame: &impl Serialize) -> Result<(), Stop> {
        let text = serde_json::to_string(frame).map_err(|e| {
            tracing::error!(error = %e, "cannot serialize a websocket frame");
            Stop::Close(Close::internal())
        })?;
        self.send_text(text).await
    }

    /// Queues one text frame already written (JSON).
    pub async fn send_text(&self, text: String) -> Result<(), Stop> {
        self.queue_frame(OutFrame::Text(Utf8Bytes::from(text)))
            .await
    }

    /// Queues one binary frame.
    pub async fn send_binary(&self, bytes: Vec<u8>) -> Result<(), Stop> {
        self.queue_frame(OutFrame::Binary(bytes.into())).await
    }

    async fn queue_frame(&self, frame: OutFrame) -> Result<(), Stop> {
        // A frame larger than the whole budget takes all of it, so it still
        // goes out, alone.
        let cost = u32::try_from(frame.len().min(self.budget_bytes)).unwrap_or(u32::MAX);
        let budget = self
            .budget
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| Stop::Closed)?;
        self.queue
            .send(Queued { frame, budget })
            .await
            .map_err(|_| Stop::Closed)
    }

    /// Whether the socket is closing: a protocol that streams (a tail)
    /// checks this between frames and stops producing.
    pub fn is_closing(&self) -> bool {
        self.ending.borrow().is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn close_reason_is_cut_to_fit_a_frame_on_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let frame = Close::new(close_code::POLICY, long).frame();
        assert_eq!(frame.code, close_code::POLICY);
        assert!(frame.reason.as_str().len() <= MAX_REASON_BYTES);
        assert_eq!(frame.reason.as_str().len(), 122);
        assert_eq!(Close::normal("done").frame().reason.as_str(), "done");
    }
}
