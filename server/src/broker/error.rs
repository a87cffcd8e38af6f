//! Domain errors of the broker. The API maps each variant to a stable
//! `ErrorCode` with an exhaustive match (`api/error.rs`).

use thiserror::Error;

use crate::storage::StorageError;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("invalid {what} name `{name}`: names match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,199}}$")]
    InvalidName { what: &'static str, name: String },
    #[error("{detail}")]
    Invalid { field: String, detail: String },
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    #[error("subscription `{sub}` does not exist on topic `{topic}`")]
    SubscriptionNotFound { topic: String, sub: String },
    #[error("topic `{topic}` has no partition {partition}")]
    PartitionNotFound { topic: String, partition: u32 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("message {index} is {size} bytes; the topic allows at most {limit}")]
    MessageTooLarge {
        index: usize,
        size: usize,
        limit: u32,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the store is temporarily not accepting writes")]
    Unavailable,
    /// A replicated write could not be placed or its outcome is unknown
    /// (no leader, leader changed, peer unreachable): retry.
    #[error("{0}")]
    Replication(String),
    #[error("the data directory's disk has {free} bytes free, below `disk_free_limit_bytes` ({limit}): producing and creating are refused until space frees (acks, nacks and deletes still work)")]
    InsufficientStorage { free: u64, limit: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("internal task failed: {0}")]
    Task(String),
}

impl BrokerError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        BrokerError::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl From<tokio::task::JoinError> for BrokerError {
    fn from(e: tokio::task::JoinError) -> Self {
        BrokerError::Task(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, BrokerError>;
