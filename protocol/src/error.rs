//! Stable error codes and the RFC 9457 problem document every failure returns.
//!
//! The code → HTTP status table lives here, once, so server and client agree.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stable, machine-readable error code. Clients match on this, never on
/// `title` or `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed or a field is out of range.
    InvalidRequest,
    /// A topic or subscription name does not match the naming rule.
    InvalidName,
    /// The topic does not exist.
    TopicNotFound,
    /// The subscription does not exist.
    SubscriptionNotFound,
    /// The partition does not exist in the topic.
    PartitionNotFound,
    /// No such route.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The change conflicts with the existing configuration.
    Conflict,
    /// The request body exceeds the server's limit.
    PayloadTooLarge,
    /// A message exceeds the topic's `max_message_bytes`.
    MessageTooLarge,
    /// The `Content-Type` is not accepted by this endpoint.
    UnsupportedMediaType,
    /// Missing or invalid credentials.
    Unauthorized,
    /// The credentials do not grant this action.
    Forbidden,
    /// A per-principal rate limit was exceeded; retry after `Retry-After`.
    RateLimited,
    /// A configured limit on resources (topics, subscriptions per topic,
    /// WebSocket connections per principal) would be exceeded.
    LimitExceeded,
    /// The server sheds load (too many concurrent requests, long polls,
    /// connections or request bytes in flight); retry after `Retry-After`.
    Overloaded,
    /// The data directory's disk is below its free-space limit: produce and
    /// creates are refused until space frees (acks and deletes still work);
    /// retry after `Retry-After`.
    InsufficientStorage,
    /// The server cannot accept the operation right now (overload, write
    /// stall, read-only store); retry after `Retry-After`.
    Unavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// Something failed inside the server; the cause is in the server log.
    Internal,
    /// A code this version does not know (sent by a newer server). Never
    /// sent by this server; clients decode unknown codes to it.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status this code is answered with: the one status table.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::InvalidName => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::TopicNotFound
            | ErrorCode::SubscriptionNotFound
            | ErrorCode::PartitionNotFound
            | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::LimitExceeded => 409,
            ErrorCode::PayloadTooLarge | ErrorCode::MessageTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
            ErrorCode::Unavailable | ErrorCode::Overloaded | ErrorCode::ShuttingDown => 503,
            ErrorCode::InsufficientStorage => 507,
        }
    }

    /// The code of an HTTP status when the body carries no problem document
    /// (a proxy's page, a plain-text error): the inverse of [`status`](Self::status)
    /// for the statuses this API uses.
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            400 => ErrorCode::InvalidRequest,
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            429 => ErrorCode::RateLimited,
            502..=504 => ErrorCode::Unavailable,
            507 => ErrorCode::InsufficientStorage,
            _ => ErrorCode::Internal,
        }
    }

    /// True when the same request may succeed later without changes: the
    /// server was overloaded, unavailable, shutting down, rate limiting or
    /// failed internally. Client mistakes and refusals are not retryable.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::Overloaded
                | ErrorCode::InsufficientStorage
                | ErrorCode::ShuttingDown
                | ErrorCode::RateLimited
                | ErrorCode::Internal
        )
    }

    /// The WebSocket close code a socket ends with when this error ends it
    /// (RFC 6455 §7.4): 1001 going away, 1013 try again later, 1011 server
    /// error, 1009 too big, 1008 policy (refused, invalid), 1000 for a
    /// resource deleted while the socket was open.
    pub fn ws_close_code(self) -> u16 {
        match self {
            ErrorCode::ShuttingDown => 1001,
            ErrorCode::Unavailable
            | ErrorCode::Overloaded
            | ErrorCode::RateLimited
            | ErrorCode::InsufficientStorage => 1013,
            ErrorCode::Internal | ErrorCode::Unknown => 1011,
            ErrorCode::PayloadTooLarge | ErrorCode::MessageTooLarge => 1009,
            ErrorCode::UnsupportedMediaType => 1003,
            ErrorCode::TopicNotFound
            | ErrorCode::SubscriptionNotFound
            | ErrorCode::PartitionNotFound
            | ErrorCode::NotFound => 1000,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidName
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Conflict
            | ErrorCode::LimitExceeded
            | ErrorCode::Unauthorized
            | ErrorCode::Forbidden => 1008,
        }
    }

    /// Every code, in table order (for documentation and tests).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidName,
        ErrorCode::TopicNotFound,
        ErrorCode::SubscriptionNotFound,
        ErrorCode::PartitionNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::LimitExceeded,
        ErrorCode::Overloaded,
        ErrorCode::InsufficientStorage,
        ErrorCode::Unavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::Unknown,
    ];

    /// The snake_case string form, as it appears in `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::TopicNotFound => "topic_not_found",
            ErrorCode::SubscriptionNotFound => "subscription_not_found",
            ErrorCode::PartitionNotFound => "partition_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// A short human title for the code (the problem's `title`).
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "Invalid request",
            ErrorCode::InvalidName => "Invalid name",
            ErrorCode::TopicNotFound => "Topic not found",
            ErrorCode::SubscriptionNotFound => "Subscription not found",
            ErrorCode::PartitionNotFound => "Partition not found",
            ErrorCode::NotFound => "Not found",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::MessageTooLarge => "Message too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::RateLimited => "Rate limited",
            ErrorCode::LimitExceeded => "Limit exceeded",
            ErrorCode::Overloaded => "Overloaded",
            ErrorCode::InsufficientStorage => "Insufficient storage",
            ErrorCode::Unavailable => "Service unavailable",
            ErrorCode::ShuttingDown => "Shutting down",
            ErrorCode::Internal => "Internal error",
            ErrorCode::Unknown => "Unknown error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:weir:error:topic_not_found",
    "title": "Topic not found",
    "status": 404,
    "detail": "topic `orders` does not exist",
    "code": "topic_not_found"
}))]
pub struct Problem {
    /// `urn:weir:error:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem class.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request. Never contains server internals.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// The request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// Builds a problem document for `code` with a request-specific detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: format!("urn:weir:error:{}", code.as_str()),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            code,
            field: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_string_matches_serde_form() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::TopicNotFound,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn every_code_round_trips_and_unknown_codes_decode() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            if code != ErrorCode::Unknown && code.status() != 500 && code.status() != 503 {
                assert_eq!(
                    ErrorCode::from_status(code.status()).status(),
                    code.status()
                );
            }
        }
        let later: ErrorCode = serde_json::from_str("\"quota_exhausted_v9\"").unwrap();
        assert_eq!(later, ErrorCode::Unknown);
        assert!(ErrorCode::Overloaded.is_retryable());
        assert!(!ErrorCode::Unauthorized.is_retryable());
        assert_eq!(ErrorCode::Unauthorized.ws_close_code(), 1008);
        assert_eq!(ErrorCode::ShuttingDown.ws_close_code(), 1001);
    }

    #[test]
    fn problem_has_rfc9457_fields() {
        let p = Problem::new(ErrorCode::Conflict, "partitions cannot shrink");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:weir:error:conflict");
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], "conflict");
        assert!(v.get("field").is_none());
    }
}
