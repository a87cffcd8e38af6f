//! `weir-client`: a typed async client for the Weir HTTP API, sharing wire
//! types with the server through `weir-protocol`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::Error> {
//! use weir_client::{Client, ProduceMessage, ProduceMessageExt};
//! let client = Client::new("http://127.0.0.1:8080")?;
//! client.create_topic("orders", &Default::default()).await?;
//! let results = client
//!     .produce("orders", vec![ProduceMessage::json(&serde_json::json!({"order": 1}))?])
//!     .await?;
//! let page = client.read("orders", 0, results[0].offset, 10).await?;
//! assert_eq!(page.messages.len(), 1);
//! # Ok(()) }
//! ```

mod client;
mod error;

pub use client::Client;
pub use error::Error;
pub use weir_protocol::{
    ErrorCode, Message, Problem, ProduceMessage, ProduceResult, ReadResponse, TopicInfo, TopicSpec,
};

/// Extension constructors for [`ProduceMessage`].
pub trait ProduceMessageExt: Sized {
    /// A message whose value is `value` serialized as JSON.
    fn json<T: serde::Serialize>(value: &T) -> Result<Self, Error>;
    /// A message whose value is raw bytes.
    fn bytes(value: &[u8]) -> Self;
}

impl ProduceMessageExt for ProduceMessage {
    fn json<T: serde::Serialize>(value: &T) -> Result<Self, Error> {
        let raw = serde_json::value::to_raw_value(value).map_err(Error::Decode)?;
        Ok(ProduceMessage {
            value: Some(raw),
            ..ProduceMessage::default()
        })
    }

    fn bytes(value: &[u8]) -> Self {
        use base64::Engine;
        ProduceMessage {
            value_b64: Some(base64::engine::general_purpose::STANDARD.encode(value)),
            ..ProduceMessage::default()
        }
    }
}
