//! [`RetryBackoff`]: how long the client waits before it tries again on its
//! own — a producer batch, a pull, a settle, a WebSocket reconnect. One
//! rule for all of them: exponential growth, capped, with random jitter so
//! that many clients cut off at once (a server restart) do not come back
//! in lockstep, and never sooner than the server's `Retry-After`.
//!
//! Pure arithmetic plus one source of randomness; the sleeping is the
//! caller's.

use std::time::Duration;

use crate::Error;

/// Exponential backoff with jitter for the client's automatic retries.
///
/// The pause before retry `n` (1-based) is
/// `min(max, initial × 2^(n-1))`, shortened by a random fraction of up to
/// `jitter` (0 = exact, 1 = anywhere between zero and the full pause),
/// and never shorter than a `Retry-After` the server sent.
///
/// ```
/// use std::time::Duration;
/// use weir_client::RetryBackoff;
/// let backoff = RetryBackoff {
///     initial: Duration::from_millis(50),
///     max: Duration::from_secs(2),
///     jitter: 0.0,
/// };
/// assert_eq!(backoff.delay(3), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    /// The first pause (default 100 ms).
    pub initial: Duration,
    /// The longest pause (default 10 s).
    pub max: Duration,
    /// Fraction of each pause drawn at random, 0..=1 (default 0.5).
    pub jitter: f64,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.5,
        }
    }
}

impl RetryBackoff {
    /// The pause before retry `attempt` (1 = the first retry), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random_unit())
    }

    /// The pause before retrying after `error`: the backoff, or the
    /// server's `Retry-After` when that is longer.
    pub fn delay_after(&self, attempt: u32, error: &Error) -> Duration {
        let backoff = self.delay(attempt);
        error
            .retry_after()
            .map_or(backoff, |after| backoff.max(after))
    }

    /// [`delay`](Self::delay) with the random draw `unit` in `[0, 1)`.
    fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.initial));
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        full.mul_f64(1.0 - jitter)
    }
}

/// A uniform draw from `[0, 1)`; jitter needs no cryptographic quality,
/// and a failing OS source only makes the pause the midpoint.
pub(crate) fn random_unit() -> f64 {
    match getrandom::u64() {
        // 53 random bits: exactly representable in an f64 mantissa.
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weir_protocol::{ErrorCode, Problem};

    use super::*;

    fn exact() -> RetryBackoff {
        RetryBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.0,
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let ms = |n| exact().delay(n).as_millis();
        assert_eq!((ms(1), ms(2), ms(3), ms(4)), (100, 200, 400, 800));
        assert_eq!((ms(5), ms(50), ms(u32::MAX)), (1000, 1000, 1000));
        // Attempt 0 (a caller counting from zero) is the first pause.
        assert_eq!(ms(0), 100);
    }

    #[test]
    fn jitter_only_shortens_and_stays_in_range() {
        let half = RetryBackoff {
            jitter: 0.5,
            ..exact()
        };
        assert_eq!(half.delay_with(2, 0.0), Duration::from_millis(200));
        assert_eq!(half.delay_with(2, 0.999_999).as_millis(), 100);
        for _ in 0..100 {
            let d = half.delay(3);
            assert!(d > Duration::from_millis(199) && d <= Duration::from_millis(400));
        }
        let unit = random_unit();
        assert!((0.0..1.0).contains(&unit));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let problem = Problem::new(ErrorCode::RateLimited, "slow down");
        let later = Error::from_problem(problem.clone(), Some(Duration::from_secs(3)));
        assert_eq!(exact().delay_after(1, &later), Duration::from_secs(3));
        let soon = Error::from_problem(problem, Some(Duration::from_millis(10)));
        assert_eq!(exact().delay_after(2, &soon), Duration::from_millis(200));
        let plain = Error::Local("x".into());
        assert_eq!(exact().delay_after(1, &plain), Duration::from_millis(100));
    }
}
