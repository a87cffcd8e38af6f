//! The API's error type: every failure becomes an RFC 9457 problem document
//! with a stable code. Domain errors map to codes by an exhaustive match; a
//! 5xx never carries internals (the cause is logged once, here).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use weir_protocol::{ErrorCode, Problem};

use crate::broker::BrokerError;
use crate::storage::StorageError;

/// An error answered as `application/problem+json`.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Problem,
    /// Seconds for `Retry-After` on 429/503 (default 1).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            problem: Problem::new(code, detail),
            retry_after: None,
        }
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            problem: Problem::new(ErrorCode::InvalidRequest, detail).with_field(field),
            retry_after: None,
        }
    }

    /// Says when to retry, in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let detail = e.to_string();
        match e {
            BrokerError::InvalidName { .. } => ApiError::new(ErrorCode::InvalidName, detail),
            BrokerError::Invalid { field, .. } => ApiError::invalid(field, detail),
            BrokerError::TopicNotFound(_) => ApiError::new(ErrorCode::TopicNotFound, detail),
            BrokerError::SubscriptionNotFound { .. } => {
                ApiError::new(ErrorCode::SubscriptionNotFound, detail)
            }
            BrokerError::PartitionNotFound { .. } => {
                ApiError::new(ErrorCode::PartitionNotFound, detail)
            }
            BrokerError::Conflict(_) => ApiError::new(ErrorCode::Conflict, detail),
            BrokerError::LimitExceeded(_) => ApiError::new(ErrorCode::LimitExceeded, detail),
            BrokerError::MessageTooLarge { .. } => {
                ApiError::new(ErrorCode::MessageTooLarge, detail)
            }
            BrokerError::ShuttingDown => ApiError::new(ErrorCode::ShuttingDown, detail),
            BrokerError::Unavailable | BrokerError::Replication(_) => {
                ApiError::new(ErrorCode::Unavailable, detail)
            }
            BrokerError::InsufficientStorage { .. } => {
                ApiError::new(ErrorCode::InsufficientStorage, detail)
            }
            BrokerError::Storage(storage) => storage.into(),
            BrokerError::Task(cause) => internal(&cause),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Stalled => ApiError::new(
                ErrorCode::Unavailable,
                "the store is stalled by compaction; retry shortly",
            ),
            StorageError::WriteFailed => ApiError::new(
                ErrorCode::Unavailable,
                "the store is not accepting writes (see /readyz)",
            ),
            StorageError::Closed => {
                ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down")
            }
            StorageError::DiskFull => ApiError::new(
                ErrorCode::InsufficientStorage,
                "the data directory's disk is full: nothing was written; retry when space frees",
            ),
            StorageError::Reopening => ApiError::new(
                ErrorCode::Unavailable,
                "the store is being reopened after a write failure (see /readyz); retry shortly",
            ),
            StorageError::Fenced => ApiError::new(
                ErrorCode::Unavailable,
                "an earlier write of this subscription failed and its state is being reloaded; retry",
            ),
            StorageError::Open { .. } | StorageError::Corrupt(_) | StorageError::Read(_) => {
                internal(&e.to_string())
            }
        }
    }
}

fn internal(cause: &str) -> ApiError {
    tracing::error!(cause, "internal error");
    ApiError::new(ErrorCode::Internal, "internal error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The unread rest of the body makes the connection unusable:
            // say so, so clients open a new one instead of failing on it.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::INSUFFICIENT_STORAGE
        {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.unwrap_or(1)),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weir\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
