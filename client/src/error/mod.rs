//! Client errors; server failures keep their stable `code`. Which of them
//! are worth retrying is decided in `transient.rs`.
//!
//! `Error` is `Clone` (non-cloneable causes are held in an `Arc`) so that one
//! failure can be handed to every caller it concerns, e.g. every message of a
//! [`Producer`](crate::Producer) batch that failed.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use weir_protocol::{ErrorCode, Problem};

mod transient;

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
    /// The server refused for now and said when to come back: a problem
    /// document (429 `rate_limited`, 503 `overloaded`, `unavailable`,
    /// `shutting_down`) with a `Retry-After` header. The client's own
    /// retries (producer batches, pulls, reconnects) wait at least that
    /// long; see [`Error::retry_after`].
    #[error("{} ({}): {} (retry after {retry_after:?})", .problem.title, .problem.code, .problem.detail)]
    RetryLater {
        /// The server's problem document.
        problem: Problem,
        /// The server's `Retry-After`.
        retry_after: Duration,
    },
    /// The server could not be reached, the connection broke or timed out,
    /// or TLS failed (e.g. a server certificate no trusted CA signed: see
    /// [`Error::is_transient`] for which of these are worth retrying).
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
    /// An ack, nack or extend named a delivery the server no longer knows:
    /// its lease ran out (or the socket it was leased to closed) before
    /// the request arrived, so the message is, or will be, delivered again.
    #[error("the lease of `{ack_id}` was lost before it was settled; the message will be delivered again")]
    LeaseLost {
        /// The ack id of the lost delivery.
        ack_id: String,
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
        self.problem().map(|p| p.code)
    }

    /// The server's problem document, when it answered with one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Api(p) | Error::RetryLater { problem: p, .. } => Some(p),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again (its
    /// `Retry-After`), when it said.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// if let Err(e) = client.topics().await {
    ///     if let Some(wait) = e.retry_after() {
    ///         tokio::time::sleep(wait).await;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RetryLater { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A problem document, with the server's `Retry-After` when it sent one.
    pub(crate) fn from_problem(problem: Problem, retry_after: Option<Duration>) -> Error {
        match retry_after {
            Some(retry_after) => Error::RetryLater {
                problem,
                retry_after,
            },
            None => Error::Api(problem),
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
    fn clones_keep_the_code() {
        let e = Error::Api(Problem::new(ErrorCode::Conflict, "mode cannot change"));
        assert_eq!(e.clone().code(), Some(ErrorCode::Conflict));
        assert_eq!(e.clone().to_string(), e.to_string());
    }

    #[test]
    fn a_close_code_is_shown_when_there_is_one() {
        let closed = |code| Error::SocketClosed {
            code,
            reason: "x".into(),
        };
        assert_eq!(
            closed(Some(1001)).to_string(),
            "websocket closed with code 1001: x"
        );
        assert_eq!(closed(None).to_string(), "websocket closed: x");
    }

    #[test]
    fn retry_later_keeps_the_code_and_the_wait() {
        let problem = Problem::new(ErrorCode::RateLimited, "slow down");
        let later = Error::from_problem(problem.clone(), Some(Duration::from_secs(2)));
        assert_eq!(later.code(), Some(ErrorCode::RateLimited));
        assert_eq!(later.retry_after(), Some(Duration::from_secs(2)));
        assert!(later.is_transient());
        let plain = Error::from_problem(problem, None);
        assert!(matches!(plain, Error::Api(_)));
        assert_eq!(plain.retry_after(), None);
    }
}
