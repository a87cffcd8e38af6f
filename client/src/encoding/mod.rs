//! How messages travel between this client and the server: JSON (the
//! default) or the binary batch encoding, `application/vnd.weir.batch`
//! (layout in `weir_protocol::binary`): raw value bytes, no base64 and no
//! JSON parsing of the batch.
//!
//! This module owns the [`Encoding`] setting and everything binary the
//! client does: the conversions between the public message types and the
//! binary records (`convert.rs`), reading responses that may come in either
//! encoding (`http.rs`), and batches encoded once to be sent many times
//! ([`BinaryBatch`], `batch.rs`). Callers keep the types of the JSON path:
//! a binary read still yields [`Message`](crate::Message)s (a raw value
//! as `value_b64`, a JSON one as `value`).

mod batch;
pub(crate) mod convert;
mod http;

use std::fmt;

pub use batch::BinaryBatch;
pub(crate) use convert::{encode_message, encode_produce, encode_publish};
pub(crate) use http::{produce_response, pull_response, read_response, ACCEPT_BINARY};

/// The media type of JSON bodies.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";

/// Where a binary body's header holds its record count (u32 LE; the
/// layout in `weir_protocol::binary`).
pub(crate) const COUNT_FIELD: std::ops::Range<usize> = 4..8;

/// The encoding of produce requests and of read and pull responses
/// ([`ClientBuilder::encoding`](crate::ClientBuilder::encoding),
/// [`Client::with_encoding`](crate::Client::with_encoding)).
///
/// With [`Encoding::Binary`], `produce`, the [`Producer`](crate::Producer)
/// and [`WsPublisher`](crate::WsPublisher) send binary batches, and `read`,
/// `read_wait`, `pull` and everything built on pulls (streams, the consume
/// loop) ask for binary responses (`Accept`) and decode them into the same
/// types as JSON; [`subscribe_ws`](crate::Client::subscribe_ws) asks for
/// its deliveries in binary frames (`?encoding=binary`: a run of messages
/// per frame). Acks, nacks, credit and the other calls stay JSON. A server
/// that answers a read or pull in JSON anyway is still understood.
///
/// ```no_run
/// # fn demo() -> Result<(), weir_client::Error> {
/// use weir_client::{Client, Encoding};
/// let client = Client::builder("http://127.0.0.1:8080")
///     .encoding(Encoding::Binary)
///     .build()?;
/// assert_eq!(client.encoding(), Encoding::Binary);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON bodies (`application/json`); binary values travel as base64.
    #[default]
    Json,
    /// The binary batch encoding (`application/vnd.weir.batch`).
    Binary,
}

impl Encoding {
    /// `json` or `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Binary => "binary",
        }
    }

    /// The media type of produce bodies in this encoding.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => JSON_CONTENT_TYPE,
            Encoding::Binary => weir_protocol::binary::CONTENT_TYPE,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
