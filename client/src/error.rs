//! Client errors; server failures keep their stable `code`.
//!
//! `Error` is `Clone` (non-cloneable causes are held in an `Arc`) so that one
//! failure can be handed to every caller it concerns, e.g. every message of a
//! [`Producer`](crate::Producer) batch that failed.

use std::sync::Arc;

use thiserror::Error;
use weir_protocol::{ErrorCode, Problem};

/// Everything a client call can fail with.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::Error> {
/// use weir_client::{Client, ErrorCode};
/// let client = Client::new("http://127.0.0.1:8080")?;
/// match client.subscription("orders", "billing").await {
///     Ok(info) => println!("backlog {}", info.stats.backlog),
///     Err(e) if e.code() == Some(ErrorCode::SubscriptionNotFound) => println!("no such subscription"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a problem document.
    #[error("{} ({}): {}", .0.title, .0.code, .0.detail)]
    Api(Problem),
    /// The server could not be reached or the connection broke.
    #[error("request failed: {0}")]
    Transport(#[source] Arc<reqwest::Error>),
    /// A response or value could not be (de)serialized.
    #[error("invalid JSON: {0}")]
    Decode(Arc<serde_json::Error>),
    /// The server URL is invalid.
    #[error("invalid server URL `{0}`")]
    Url(String),
    /// A local failure outside the API: bad CLI input, an unreadable file.
    #[error("{0}")]
    Local(String),
    /// The server answered successfully but not with what was asked for
    /// (e.g. fewer produce results than messages).
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// The [`Producer`](crate::Producer) was closed before the message was sent.
    #[error("producer is closed")]
    ProducerClosed,
    /// A WebSocket could not be opened (server unreachable, not a WebSocket
    /// endpoint) or failed while open. A refused upgrade that carries a
    /// problem document is [`Error::Api`] instead, with its code.
    #[error("websocket failed: {0}")]
    WebSocket(#[source] Arc<tokio_tungstenite::tungstenite::Error>),
    /// The WebSocket closed before the answer arrived: the server closed it
    /// (`code` is its close code: 1001 shutting down, 1008 slow consumer,
    /// 1013 store unavailable, ...; `None` when the connection just broke),
    /// or the socket was closed on this side.
    #[error("websocket closed{}: {reason}", close_code_text(*.code))]
    SocketClosed {
        /// The close code the server sent, if any.
        code: Option<u16>,
        /// Why, as the server or this client said.
        reason: String,
    },
}

fn close_code_text(code: Option<u16>) -> String {
    code.map(|c| format!(" with code {c}")).unwrap_or_default()
}

impl Error {
    /// The stable error code, when the server answered with one.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) {
    /// if let Err(e) = client.delete_subscription("orders", "billing").await {
    ///     eprintln!("failed with code {:?}", e.code());
    /// }
    /// # }
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(p) => Some(p.code),
            _ => None,
        }
    }

    /// True when retrying the same request later may succeed: the server was
    /// unreachable, overloaded, shutting down, rate limiting or failed
    /// internally. Client mistakes (bad request, unknown resource, denied)
    /// are not transient.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let messages = loop {
    ///     match client.pull("orders", "billing", &Default::default()).await {
    ///         Err(e) if e.is_transient() => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
    ///         other => break other?,
    ///     }
    /// };
    /// # Ok(()) }
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(p) => matches!(
                p.code,
                ErrorCode::Unavailable
                    | ErrorCode::ShuttingDown
                    | ErrorCode::RateLimited
                    | ErrorCode::Internal
            ),
            Error::Transport(_) | Error::WebSocket(_) => true,
            // Going away, abnormal end, server error, restart, try again.
            Error::SocketClosed { code, .. } => {
                matches!(code, None | Some(1001 | 1006 | 1011 | 1012 | 1013))
            }
            Error::Decode(_)
            | Error::Url(_)
            | Error::Local(_)
            | Error::Protocol(_)
            | Error::ProducerClosed => false,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Transport(Arc::new(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Decode(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_are_retryable_and_client_mistakes_are_not() {
        let api = |code| Error::Api(Problem::new(code, "x"));
        assert!(api(ErrorCode::Unavailable).is_transient());
        assert!(api(ErrorCode::ShuttingDown).is_transient());
        assert!(api(ErrorCode::RateLimited).is_transient());
        assert!(!api(ErrorCode::SubscriptionNotFound).is_transient());
        assert!(!api(ErrorCode::InvalidRequest).is_transient());
        assert!(!api(ErrorCode::Forbidden).is_transient());
        assert!(!Error::ProducerClosed.is_transient());
        let closed = |code| Error::SocketClosed {
            code,
            reason: "x".into(),
        };
        assert!(closed(Some(1001)).is_transient());
        assert!(closed(None).is_transient());
        assert!(
            !closed(Some(1008)).is_transient(),
            "slow consumer: read faster"
        );
        assert_eq!(
            closed(Some(1001)).to_string(),
            "websocket closed with code 1001: x"
        );
    }

    #[test]
    fn clones_keep_the_code() {
        let e = Error::Api(Problem::new(ErrorCode::Conflict, "mode cannot change"));
        assert_eq!(e.clone().code(), Some(ErrorCode::Conflict));
        assert_eq!(e.clone().to_string(), e.to_string());
    }
}
