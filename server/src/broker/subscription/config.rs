//! Subscription configuration rules: defaults, limits, and what may change
//! after creation.

use std::collections::BTreeMap;

use base64::Engine;
use weir_protocol::{
    Mode, Ordering, PushBatch, PushConfig, PushSpec, RetryPolicy, SubscriptionConfig,
    SubscriptionSpec,
};

use super::backoff::MAX_BACKOFF_MS;
use crate::broker::check_name;
use crate::broker::error::{BrokerError, Result};

pub use weir_protocol::limits::{
    default_retry_policy as default_retry, DEFAULT_ACK_TIMEOUT_MS, MAX_ACK_TIMEOUT_MS,
    MAX_MULTIPLIER, MIN_ACK_TIMEOUT_MS,
};

/// Bounds of `message_ttl_ms`: one second to one year.
pub const MIN_MESSAGE_TTL_MS: u64 = 1000;
pub const MAX_MESSAGE_TTL_MS: u64 = 365 * 24 * 3600 * 1000;
pub const DEFAULT_PUSH_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_PUSH_MAX_IN_FLIGHT: u32 = 16;

/// The default dead-letter topic name, `<topic>.<sub>.dlq`.
pub fn default_dead_letter_topic(topic: &str, sub: &str) -> String {
    format!("{topic}.{sub}.dlq")
}

/// The configuration a spec yields on creation (`current = None`) or update.
pub fn apply_spec(
    topic: &str,
    sub: &str,
    spec: &SubscriptionSpec,
    current: Option<&SubscriptionConfig>,
) -> Result<SubscriptionConfig> {
    let mut config = current.cloned().unwrap_or(SubscriptionConfig {
        mode: Mode::Queue,
        ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
        retry: default_retry(),
        dead_letter_topic: Some(default_dead_letter_topic(topic, sub)),
        ordering: Ordering::None,
        message_ttl_ms: None,
        push: None,
    });
    if let Some(mode) = spec.mode {
        if current.is_some_and(|c| c.mode != mode) {
            return Err(BrokerError::Conflict(format!(
                "subscription `{sub}` is in {:?} mode; the mode cannot change (delete and recreate it)",
                config.mode
            ).to_lowercase()));
        }
        config.mode = mode;
    }
    if let Some(t) = spec.ack_timeout_ms {
        if !(MIN_ACK_TIMEOUT_MS..=MAX_ACK_TIMEOUT_MS).contains(&t) {
            return Err(BrokerError::invalid(
                "ack_timeout_ms",
                format!("`ack_timeout_ms` must be between {MIN_ACK_TIMEOUT_MS} and {MAX_ACK_TIMEOUT_MS}"),
            ));
        }
        config.ack_timeout_ms = t;
    }
    if let Some(retry) = &spec.retry {
        let applied = retry.apply(config.retry);
        check_retry(&applied)?;
        config.retry = applied;
    }
    if let Some(ttl) = spec.message_ttl_ms {
        if let Some(t) = ttl {
            if !(MIN_MESSAGE_TTL_MS..=MAX_MESSAGE_TTL_MS).contains(&t) {
                return Err(BrokerError::invalid(
                    "message_ttl_ms",
                    format!("`message_ttl_ms` must be between {MIN_MESSAGE_TTL_MS} and {MAX_MESSAGE_TTL_MS} (one year), or null"),
                ));
            }
        }
        config.message_ttl_ms = ttl;
    }
    if let Some(push) = &spec.push {
        config.push = match push {
            Some(p) => Some(push_config(p, config.push.as_ref())?),
            None => None,
        };
    }
    if let Some(dlq) = &spec.dead_letter_topic {
        config.dead_letter_topic = dlq.clone();
    }
    if let Some(dlq) = &config.dead_letter_topic {
        if check_name("dead-letter topic", dlq).is_err() {
            return Err(BrokerError::invalid(
                "dead_letter_topic",
                format!("`dead_letter_topic` `{}` is not a valid topic name (names match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,199}}$); name one explicitly", dlq.chars().take(240).collect::<String>()),
            ));
        }
        if dlq == topic {
            return Err(BrokerError::invalid(
                "dead_letter_topic",
                "`dead_letter_topic` must differ from the subscription's own topic",
            ));
        }
    }
    if let Some(ordering) = spec.ordering {
        if ordering == Ordering::Key && config.mode == Mode::Stream {
            return Err(BrokerError::invalid(
                "ordering",
                "`ordering: \"key\"` applies to queue mode; stream mode is ordered per partition already",
            ));
        }
        config.ordering = ordering;
    }
    Ok(config)
}

/// The push settings a spec yields (over the current ones on update).
fn push_config(spec: &PushSpec, current: Option<&PushConfig>) -> Result<PushConfig> {
    let url = spec.url.trim();
    let parsed: axum::http::Uri = url.parse().map_err(|_| {
        BrokerError::invalid("push.url", format!("`push.url` `{url}` is not a URL"))
    })?;
    if !matches!(parsed.scheme_str(), Some("https" | "http")) || parsed.host().is_none() {
        return Err(BrokerError::invalid(
            "push.url",
            "`push.url` must be an absolute http:// or https:// URL",
        ));
    }
    if url.len() > 2048 {
        return Err(BrokerError::invalid(
            "push.url",
            "`push.url` must be at most 2048 bytes",
        ));
    }
    let timeout_ms = spec
        .timeout_ms
        .or(current.map(|c| c.timeout_ms))
        .unwrap_or(DEFAULT_PUSH_TIMEOUT_MS);
    if !(100..=300_000).contains(&timeout_ms) {
        return Err(BrokerError::invalid(
            "push.timeout_ms",
            "`push.timeout_ms` must be between 100 and 300000",
        ));
    }
    let max_in_flight = spec
        .max_in_flight
        .or(current.map(|c| c.max_in_flight))
        .unwrap_or(DEFAULT_PUSH_MAX_IN_FLIGHT);
    if !(1..=1024).contains(&max_in_flight) {
        return Err(BrokerError::invalid(
            "push.max_in_flight",
            "`push.max_in_flight` must be between 1 and 1024",
        ));
    }
    let batch = spec
        .batch
        .or(current.map(|c| c.batch))
        .unwrap_or(PushBatch {
            max_messages: 1,
            max_wait_ms: 0,
        });
    if !(1..=1000).contains(&batch.max_messages) || batch.max_wait_ms > 60_000 {
        return Err(BrokerError::invalid(
            "push.batch",
            "`push.batch.max_messages` must be between 1 and 1000 and `max_wait_ms` at most 60000",
        ));
    }
    if spec.rate_per_s == Some(0) {
        return Err(BrokerError::invalid(
            "push.rate_per_s",
            "`push.rate_per_s` must be positive",
        ));
    }
    for (field, secret) in [
        ("push.secret", &spec.secret),
        ("push.previous_secret", &spec.previous_secret),
    ] {
        if let Some(secret) = secret {
            let key = secret.strip_prefix("whsec_").unwrap_or(secret);
            let ok = base64::engine::general_purpose::STANDARD
                .decode(key)
                .is_ok_and(|k| (16..=256).contains(&k.len()));
            if !ok {
                return Err(BrokerError::invalid(
                    field,
                    format!(
                        "`{field}` must be `whsec_` followed by 16 to 256 bytes in standard base64"
                    ),
                ));
            }
        }
    }
    let headers: BTreeMap<String, String> = spec.headers.clone().unwrap_or_default();
    for (name, value) in &headers {
        let valid = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && axum::http::HeaderValue::from_str(value).is_ok();
        if !valid || name.to_ascii_lowercase().starts_with("webhook-") {
            return Err(BrokerError::invalid(
                "push.headers",
                format!("`push.headers` `{name}` is not a valid header (names starting with `webhook-` are reserved)"),
            ));
        }
    }
    Ok(PushConfig {
        url: url.to_owned(),
        headers,
        timeout_ms,
        max_in_flight,
        rate_per_s: spec.rate_per_s,
        secret: spec.secret.clone(),
        previous_secret: spec.previous_secret.clone(),
        batch,
    })
}

/// Validates a retry policy, naming the offending field.
pub fn check_retry(retry: &RetryPolicy) -> Result<()> {
    if let Some(cb) = &retry.circuit_breaker {
        if !(1..=1_000_000).contains(&cb.max_dead_letters) {
            return Err(BrokerError::invalid(
                "retry.circuit_breaker.max_dead_letters",
                "`retry.circuit_breaker.max_dead_letters` must be between 1 and 1000000",
            ));
        }
        if !(1000..=86_400_000).contains(&cb.window_ms) {
            return Err(BrokerError::invalid(
                "retry.circuit_breaker.window_ms",
                "`retry.circuit_breaker.window_ms` must be between 1000 and 86400000",
            ));
        }
        if cb
            .cooldown_ms
            .is_some_and(|c| !(1000..=604_800_000).contains(&c))
        {
            return Err(BrokerError::invalid(
                "retry.circuit_breaker.cooldown_ms",
                "`retry.circuit_breaker.cooldown_ms` must be between 1000 and 604800000, or null",
            ));
        }
    }
    let b = &retry.backoff;
    if retry.max_attempts == Some(0) {
        return Err(BrokerError::invalid(
            "retry.max_attempts",
            "`retry.max_attempts` must be at least 1, or null for unlimited",
        ));
    }
    if b.max_ms > MAX_BACKOFF_MS {
        return Err(BrokerError::invalid(
            "retry.backoff.max_ms",
            format!("`retry.backoff.max_ms` must be at most {MAX_BACKOFF_MS} (30 days)"),
        ));
    }
    if b.max_ms < b.initial_ms {
        return Err(BrokerError::invalid(
            "retry.backoff.max_ms",
            "`retry.backoff.max_ms` must be at least `retry.backoff.initial_ms`",
        ));
    }
    if !b.multiplier.is_finite() || !(1.0..=MAX_MULTIPLIER).contains(&b.multiplier) {
        return Err(BrokerError::invalid(
            "retry.backoff.multiplier",
            format!("`retry.backoff.multiplier` must be between 1 and {MAX_MULTIPLIER}"),
        ));
    }
    if !b.jitter.is_finite() || !(0.0..=1.0).contains(&b.jitter) {
        return Err(BrokerError::invalid(
            "retry.backoff.jitter",
            "`retry.backoff.jitter` must be between 0 and 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> SubscriptionSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults() {
        let c = apply_spec("orders", "billing", &spec("{}"), None).unwrap();
        assert_eq!(c.mode, Mode::Queue);
        assert_eq!(c.ack_timeout_ms, DEFAULT_ACK_TIMEOUT_MS);
        assert_eq!(c.dead_letter_topic.as_deref(), Some("orders.billing.dlq"));
        let none =
            apply_spec("orders", "b", &spec(r#"{"dead_letter_topic": null}"#), None).unwrap();
        assert_eq!(none.dead_letter_topic, None);
    }

    #[test]
    fn mode_cannot_change() {
        let c = apply_spec("t", "s", &spec(r#"{"mode": "stream"}"#), None).unwrap();
        let err = apply_spec("t", "s", &spec(r#"{"mode": "queue"}"#), Some(&c)).unwrap_err();
        assert!(matches!(err, BrokerError::Conflict(_)));
        assert!(apply_spec(
            "t",
            "s",
            &spec(r#"{"mode": "stream", "ack_timeout_ms": 500}"#),
            Some(&c)
        )
        .is_ok());
    }

    #[test]
    fn retry_fields_are_named() {
        let cases = [
            (
                r#"{"max_attempts": 0, "backoff": {"initial_ms": 1, "max_ms": 2, "multiplier": 2, "jitter": 0}}"#,
                "retry.max_attempts",
            ),
            (
                r#"{"max_attempts": 3, "backoff": {"initial_ms": 10, "max_ms": 2, "multiplier": 2, "jitter": 0}}"#,
                "retry.backoff.max_ms",
            ),
            (
                r#"{"max_attempts": 3, "backoff": {"initial_ms": 1, "max_ms": 2, "multiplier": 0.5, "jitter": 0}}"#,
                "retry.backoff.multiplier",
            ),
            (
                r#"{"max_attempts": 3, "backoff": {"initial_ms": 1, "max_ms": 2, "multiplier": 2, "jitter": 1.5}}"#,
                "retry.backoff.jitter",
            ),
            (
                r#"{"max_attempts": 3, "backoff": {"initial_ms": 1, "max_ms": 2, "multiplier": 2, "jitter": -0.1}}"#,
                "retry.backoff.jitter",
            ),
        ];
        for (retry, field) in cases {
            let s = spec(&format!(r#"{{"retry": {retry}}}"#));
            match apply_spec("t", "s", &s, None) {
                Err(BrokerError::Invalid { field: f, .. }) => assert_eq!(f, field, "{retry}"),
                other => panic!("{retry}: {other:?}"),
            }
        }
    }

    #[test]
    fn dead_letter_topic_rules() {
        let same = spec(r#"{"dead_letter_topic": "t"}"#);
        assert!(
            matches!(apply_spec("t", "s", &same, None), Err(BrokerError::Invalid { field, .. }) if field == "dead_letter_topic")
        );
        let long_topic = "a".repeat(195);
        assert!(apply_spec(&long_topic, "sub", &spec("{}"), None).is_err());
        assert!(apply_spec(
            &long_topic,
            "sub",
            &spec(r#"{"dead_letter_topic": "dlq"}"#),
            None
        )
        .is_ok());
    }

    #[test]
    fn key_ordering_is_queue_only() {
        let s = spec(r#"{"mode": "stream", "ordering": "key"}"#);
        assert!(apply_spec("t", "s", &s, None).is_err());
    }
}
