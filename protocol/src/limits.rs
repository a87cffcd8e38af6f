//! The API's limits and defaults, in one place for the server (which
//! enforces them), the client and the CLI (which check before sending), and
//! the rules a produced message must follow ([`check_message`]), so a
//! client rejects exactly what the server would.

use crate::message::ProduceMessage;
use crate::retry::{Backoff, RetryPolicy};

/// Most messages one pull returns.
pub const MAX_PULL_MESSAGES: u32 = 1000;
/// Messages per pull when the request names none.
pub const DEFAULT_PULL_MESSAGES: u32 = 10;
/// Longest long poll (`wait_ms`) of a pull or read.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Most messages one read returns.
pub const MAX_READ_LIMIT: u32 = 10_000;
/// Most ack ids in one ack, nack or extend.
pub const MAX_ACK_IDS: usize = 10_000;
/// Longest nack or pause reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest idempotency id, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest message delay (`delay_ms`, or `deliver_at` ahead): one year.
pub const MAX_DELAY_MS: u64 = 365 * 24 * 3600 * 1000;
/// Most messages in one produce request.
pub const MAX_BATCH_MESSAGES: usize = 100_000;
/// Longest retry backoff and nack `delay_ms`: 30 days.
pub const MAX_BACKOFF_MS: u64 = 30 * 24 * 3600 * 1000;
/// Lease length bounds and default (`ack_timeout_ms`).
pub const MIN_ACK_TIMEOUT_MS: u64 = 10;
pub const MAX_ACK_TIMEOUT_MS: u64 = 12 * 3600 * 1000;
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 30_000;
/// Largest backoff multiplier.
pub const MAX_MULTIPLIER: f64 = 1000.0;
/// Partitions of a topic, at most.
pub const MAX_PARTITIONS: u32 = 1024;
/// Most copies of a partition (`replication_factor`).
pub const MAX_REPLICATION_FACTOR: u32 = 7;
/// Largest `max_message_bytes` a topic may set.
pub const MAX_MESSAGE_BYTES_LIMIT: u32 = 16 << 20;
/// Headers of one message, at most (servers may configure fewer).
pub const MAX_HEADERS_PER_MESSAGE: usize = 1024;
/// Header names starting with this (any case) are reserved for the server.
pub const RESERVED_HEADER_PREFIX: &str = "weir-";

/// The retry policy of a subscription created without one: 5 deliveries,
/// 1 s backoff doubling to 60 s, 10 % jitter.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: Some(5),
        backoff: Backoff {
            initial_ms: 1000,
            max_ms: 60_000,
            multiplier: 2.0,
            jitter: 0.1,
        },
        circuit_breaker: None,
    }
}

/// A message that breaks a rule: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `messages[i].<field>`.
    pub field: String,
    pub detail: String,
}

/// Checks message `i` of a produce batch against the rules that do not
/// depend on the topic (`now` is the time `deliver_at` is measured from).
/// The server also checks the topic's partitions and size limit, its
/// configured header limit, and that `value_b64` decodes.
pub fn check_message(m: &ProduceMessage, i: usize, now: u64) -> Result<(), Invalid> {
    let invalid = |name: &str, detail: String| Invalid {
        field: format!("messages[{i}].{name}"),
        detail,
    };
    match (&m.value, &m.value_b64) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "value",
                format!("message {i} has both `value` and `value_b64`; give one"),
            ))
        }
        (None, None) => {
            return Err(invalid(
                "value",
                format!("message {i} needs `value` or `value_b64`"),
            ))
        }
        _ => {}
    }
    if let Some(headers) = &m.headers {
        if headers.len() > MAX_HEADERS_PER_MESSAGE {
            return Err(invalid(
                "headers",
                format!("message {i} has more than {MAX_HEADERS_PER_MESSAGE} headers"),
            ));
        }
        for name in headers.keys() {
            if name.is_empty() || name.len() > usize::from(u16::MAX) {
                return Err(invalid(
                    "headers",
                    format!("message {i} has an empty or oversized header name"),
                ));
            }
            if name
                .to_ascii_lowercase()
                .starts_with(RESERVED_HEADER_PREFIX)
            {
                return Err(invalid(
                    "headers",
                    format!(
                        "header `{name}` of message {i}: names starting with `weir-` are reserved"
                    ),
                ));
            }
        }
    }
    match (m.delay_ms, m.deliver_at) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "delay_ms",
                format!("message {i} has both `delay_ms` and `deliver_at`; give one"),
            ))
        }
        (Some(d), None) if d > MAX_DELAY_MS => {
            return Err(invalid(
                "delay_ms",
                format!("`delay_ms` of message {i} exceeds one year ({MAX_DELAY_MS} ms)"),
            ))
        }
        (None, Some(t)) if t > now.saturating_add(MAX_DELAY_MS) => {
            return Err(invalid(
                "deliver_at",
                format!("`deliver_at` of message {i} is more than one year ahead"),
            ))
        }
        _ => {}
    }
    if let Some(id) = &m.id {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(invalid(
                "id",
                format!("`id` of message {i} must be 1 to {MAX_ID_BYTES} bytes"),
            ));
        }
    }
    if let Some(p) = m.partition {
        if p >= MAX_PARTITIONS {
            return Err(invalid(
                "partition",
                format!("message {i} names partition {p}; topics have at most {MAX_PARTITIONS}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> ProduceMessage {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_rules_a_client_checks_before_sending() {
        assert!(check_message(&message(r#"{"value": 1}"#), 0, 0).is_ok());
        let e = check_message(&message(r#"{"value": 1, "value_b64": "AA=="}"#), 3, 0).unwrap_err();
        assert_eq!(e.field, "messages[3].value");
        let e = check_message(
            &message(r#"{"value": 1, "headers": {"Weir-X": "1"}}"#),
            0,
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "messages[0].headers");
        let e = check_message(
            &message(r#"{"value": 1, "delay_ms": 1, "deliver_at": 2}"#),
            0,
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "messages[0].delay_ms");
        let long = format!(
            r#"{{"value": 1, "id": "{}"}}"#,
            "x".repeat(MAX_ID_BYTES + 1)
        );
        assert_eq!(
            check_message(&message(&long), 0, 0).unwrap_err().field,
            "messages[0].id"
        );
        assert!(check_message(&message(r#"{"value": 1, "deliver_at": 5}"#), 0, 0).is_ok());
        assert_eq!(default_retry_policy().max_attempts, Some(5));
    }
}
