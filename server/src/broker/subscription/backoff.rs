//! The retry backoff: a pure function of the policy, the attempt number and
//! a random draw, so it can be property-tested and replayed.

pub use weir_protocol::limits::MAX_BACKOFF_MS;
use weir_protocol::Backoff;

/// Delay before the next delivery after the `attempt`-th delivery failed
/// (`attempt` counts from 1): `min(max_ms, initial_ms * multiplier^(attempt-1))`,
/// then moved by up to `jitter` of itself in either direction using `draw`
/// (uniform in `[0, 1)`), and never above `max_ms`.
pub fn backoff_ms(policy: &Backoff, attempt: u32, draw: f64) -> u64 {
    let exponent = attempt.saturating_sub(1).min(1_000) as i32;
    let max = policy.max_ms as f64;
    let raw = policy.initial_ms as f64 * policy.multiplier.powi(exponent);
    let base = if raw.is_finite() { raw.min(max) } else { max };
    let jitter = policy.jitter.clamp(0.0, 1.0);
    let draw = draw.clamp(0.0, 1.0);
    // Scale in [1 - jitter, 1 + jitter).
    let scaled = base * (1.0 - jitter + 2.0 * jitter * draw);
    scaled.clamp(0.0, max).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(initial_ms: u64, max_ms: u64, multiplier: f64, jitter: f64) -> Backoff {
        Backoff {
            initial_ms,
            max_ms,
            multiplier,
            jitter,
        }
    }

    #[test]
    fn exact_at_zero_jitter() {
        let p = policy(1000, 60_000, 2.0, 0.0);
        let delays: Vec<u64> = (1..=8).map(|a| backoff_ms(&p, a, 0.7)).collect();
        assert_eq!(
            delays,
            vec![1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        let fixed = policy(500, 500, 1.0, 0.0);
        assert_eq!(backoff_ms(&fixed, 1, 0.0), 500);
        assert_eq!(backoff_ms(&fixed, 40, 0.99), 500);
    }

    #[test]
    fn reaches_days_without_overflow() {
        let day = 24 * 3600 * 1000;
        let p = policy(1000, 3 * day, 10.0, 0.0);
        assert_eq!(backoff_ms(&p, 9, 0.0), 3 * day);
        assert_eq!(backoff_ms(&p, u32::MAX, 0.5), 3 * day);
    }

    proptest! {
        #[test]
        fn never_above_max(
            initial in 0u64..1_000_000,
            extra in 0u64..MAX_BACKOFF_MS,
            multiplier in 1.0f64..100.0,
            jitter in 0.0f64..=1.0,
            attempt in 1u32..200,
            draw in 0.0f64..1.0,
        ) {
            let p = policy(initial, initial + extra, multiplier, jitter);
            prop_assert!(backoff_ms(&p, attempt, draw) <= p.max_ms);
        }

        #[test]
        fn non_decreasing_up_to_jitter(
            initial in 1u64..100_000,
            extra in 0u64..10_000_000,
            multiplier in 1.0f64..10.0,
            jitter in 0.0f64..=1.0,
            attempt in 1u32..60,
            d1 in 0.0f64..1.0,
            d2 in 0.0f64..1.0,
        ) {
            let p = policy(initial, initial + extra, multiplier, jitter);
            let exact = policy(initial, initial + extra, multiplier, 0.0);
            let (now, next) = (backoff_ms(&p, attempt, d1), backoff_ms(&p, attempt + 1, d2));
            // Without jitter the sequence never decreases...
            prop_assert!(backoff_ms(&exact, attempt, 0.0) <= backoff_ms(&exact, attempt + 1, 0.0));
            // ...and jitter moves each value by at most its share.
            let base_next = backoff_ms(&exact, attempt + 1, 0.0) as f64;
            let base_now = backoff_ms(&exact, attempt, 0.0) as f64;
            prop_assert!((next as f64) >= base_next * (1.0 - jitter) - 1.0);
            prop_assert!((now as f64) <= (base_now * (1.0 + jitter)).min(p.max_ms as f64) + 1.0);
        }

        #[test]
        fn exact_formula_at_zero_jitter(
            initial in 0u64..10_000,
            extra in 0u64..10_000_000,
            attempt in 1u32..30,
        ) {
            let p = policy(initial, initial + extra, 2.0, 0.0);
            let expected = (initial as f64 * 2f64.powi(attempt as i32 - 1)).min(p.max_ms as f64).round() as u64;
            prop_assert_eq!(backoff_ms(&p, attempt, 0.3), expected);
        }
    }
}
