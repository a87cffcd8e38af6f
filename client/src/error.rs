//! Client errors; server failures keep their stable `code`.

use thiserror::Error;
use weir_protocol::{ErrorCode, Problem};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a problem document.
    #[error("{} ({}): {}", .0.title, .0.code, .0.detail)]
    Api(Problem),
    /// The server could not be reached or the connection broke.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// A response or value could not be (de)serialized.
    #[error("invalid JSON: {0}")]
    Decode(serde_json::Error),
    /// The server URL is invalid.
    #[error("invalid server URL `{0}`")]
    Url(String),
    /// A local failure outside the API: bad CLI input, an unreadable file.
    #[error("{0}")]
    Local(String),
}

impl Error {
    /// The stable error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(p) => Some(p.code),
            _ => None,
        }
    }
}
