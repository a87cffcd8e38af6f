//! Retry policies: the backoff between deliveries of a failed message, how
//! many deliveries before dead-lettering, and the circuit breaker that
//! pauses a subscription when dead letters pile up. `RetryPolicy` is the
//! effective policy; `RetrySpec` the request form, every field optional.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::subscription::double_option;

/// Exponential backoff between deliveries of a failed message:
/// `min(max_ms, initial_ms * multiplier^(attempt-1))`, then ± `jitter` share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failure (at most `max_ms`).
    #[schema(maximum = 2592000000u64)]
    pub initial_ms: u64,
    /// Upper bound of the delay, at least `initial_ms` and at most 30 days.
    #[schema(maximum = 2592000000u64)]
    pub max_ms: u64,
    /// Growth factor per attempt, 1..=1000 (1 = fixed delay).
    #[schema(minimum = 1, maximum = 1000)]
    pub multiplier: f64,
    /// Random share of the delay added or removed, 0..=1.
    #[schema(minimum = 0, maximum = 1)]
    pub jitter: f64,
}

/// Pauses the subscription when more than `max_dead_letters` messages are
/// dead-lettered within `window_ms`; it resumes by hand, or by itself after
/// `cooldown_ms` when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Dead letters tolerated within the window (1..=1000000).
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_dead_letters: u32,
    /// The sliding window, in milliseconds (1000..=86400000).
    #[schema(minimum = 1000, maximum = 86400000)]
    pub window_ms: u64,
    /// Resume by itself this long after tripping (1000..=604800000);
    /// absent or `null` = stay paused until resumed by hand.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 604800000)]
    pub cooldown_ms: Option<u64>,
}

/// The effective retry policy of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Deliveries before the message is dead-lettered; `null` = forever.
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    /// Delay between deliveries.
    pub backoff: Backoff,
    /// Circuit breaker, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// Backoff in a request: every field optional (defaults, or the current
/// value on update).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    /// Delay after the first failure (at most `max_ms`; default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2592000000u64)]
    pub initial_ms: Option<u64>,
    /// Upper bound of the delay (at most 30 days; default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2592000000u64)]
    pub max_ms: Option<u64>,
    /// Growth factor per attempt, 1..=1000 (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub multiplier: Option<f64>,
    /// Random share of the delay, 0..=1 (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub jitter: Option<f64>,
}

/// Retry policy in a request: every field optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Deliveries before dead-lettering (default 5); `null` = forever.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub max_attempts: Option<Option<u32>>,
    /// Delay between deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSpec>,
    /// Circuit breaker; `null` removes it.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<CircuitBreaker>)]
    pub circuit_breaker: Option<Option<CircuitBreaker>>,
}

impl From<RetryPolicy> for RetrySpec {
    /// The spec that sets every field of `policy`.
    fn from(policy: RetryPolicy) -> RetrySpec {
        RetrySpec {
            max_attempts: Some(policy.max_attempts),
            backoff: Some(BackoffSpec {
                initial_ms: Some(policy.backoff.initial_ms),
                max_ms: Some(policy.backoff.max_ms),
                multiplier: Some(policy.backoff.multiplier),
                jitter: Some(policy.backoff.jitter),
            }),
            circuit_breaker: Some(policy.circuit_breaker),
        }
    }
}

impl RetrySpec {
    /// `current` with the fields this spec names replaced.
    pub fn apply(&self, current: RetryPolicy) -> RetryPolicy {
        let b = self.backoff.unwrap_or_default();
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(current.max_attempts),
            backoff: Backoff {
                initial_ms: b.initial_ms.unwrap_or(current.backoff.initial_ms),
                max_ms: b.max_ms.unwrap_or(current.backoff.max_ms),
                multiplier: b.multiplier.unwrap_or(current.backoff.multiplier),
                jitter: b.jitter.unwrap_or(current.backoff.jitter),
            },
            circuit_breaker: self.circuit_breaker.unwrap_or(current.circuit_breaker),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
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

    #[test]
    fn a_partial_spec_changes_only_what_it_names() {
        let spec: RetrySpec = serde_json::from_str(r#"{"max_attempts": 1}"#).unwrap();
        let applied = spec.apply(policy());
        assert_eq!(applied.max_attempts, Some(1));
        assert_eq!(applied.backoff, policy().backoff);
        let spec: RetrySpec =
            serde_json::from_str(r#"{"max_attempts": null, "backoff": {"max_ms": 5000}}"#).unwrap();
        let applied = spec.apply(policy());
        assert_eq!(applied.max_attempts, None);
        assert_eq!(applied.backoff.max_ms, 5000);
        assert_eq!(applied.backoff.initial_ms, 1000);
        let full = RetrySpec::from(applied);
        assert_eq!(full.apply(policy()), applied);
    }
}
