//! How a delivery is given back: [`Nack`] (retry per policy, retry after a
//! delay, or dead-letter now, with a reason) and the [`Outcome`] a
//! [`Client::consume`](crate::Client::consume) handler chooses, with
//! [`IntoOutcome`] for the handler return types that are accepted.

use std::fmt::Display;
use std::time::Duration;

use weir_protocol::NackRequest;

use crate::client::millis;

/// Longest nack reason sent (the server's limit); longer texts are cut on
/// a character boundary.
pub use weir_protocol::limits::MAX_REASON_BYTES;

/// A nack: what happens to a delivery that was not processed.
///
/// ```
/// use std::time::Duration;
/// use weir_client::Nack;
/// let later = Nack::retry_after(Duration::from_secs(30)).with_reason("rate limited upstream");
/// let poison = Nack::dead_letter().with_reason("not valid JSON");
/// assert!(poison.is_dead_letter());
/// assert_eq!(later.delay(), Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Nack {
    reason: Option<String>,
    delay: Option<Duration>,
    dead_letter: bool,
}

impl Nack {
    /// Redeliver after the subscription's retry backoff; dead-lettered
    /// once `max_attempts` deliveries failed.
    pub fn retry() -> Nack {
        Nack::default()
    }

    /// Redeliver after `delay` instead of the policy's backoff (counted in
    /// whole milliseconds, at most 30 days).
    pub fn retry_after(delay: Duration) -> Nack {
        Nack {
            delay: Some(delay),
            ..Nack::default()
        }
    }

    /// Do not retry: dead-letter the message now, whatever attempts are left.
    pub fn dead_letter() -> Nack {
        Nack {
            dead_letter: true,
            ..Nack::default()
        }
    }

    /// Records why (kept as the dead-letter reason); cut to
    /// [`MAX_REASON_BYTES`].
    pub fn with_reason(mut self, reason: impl Into<String>) -> Nack {
        self.reason = Some(truncate(reason.into(), MAX_REASON_BYTES));
        self
    }

    /// The reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The redelivery delay, when it overrides the policy.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// True for [`Nack::dead_letter`].
    pub fn is_dead_letter(&self) -> bool {
        self.dead_letter
    }

    /// The request body for `ack_ids`.
    pub(crate) fn request(&self, ack_ids: Vec<String>) -> NackRequest {
        NackRequest {
            ack_ids,
            reason: self.reason.clone(),
            delay_ms: self.delay.map(millis),
            retry: self.dead_letter.then_some(false),
        }
    }
}

/// What a [`Client::consume`](crate::Client::consume) handler decided for
/// its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: ack it.
    Ack,
    /// Not processed: nack it as said.
    Nack(Nack),
}

impl From<Nack> for Outcome {
    fn from(nack: Nack) -> Self {
        Outcome::Nack(nack)
    }
}

/// What a consume handler may return:
///
/// - `Result<(), E>`: `Ok` acks, `Err(e)` nacks for a retry per the
///   subscription's policy with `e` as reason (the behaviour of earlier
///   versions);
/// - [`Outcome`] or `Result<Outcome, E>`: the handler chooses, e.g.
///   `Ok(Outcome::Nack(Nack::dead_letter().with_reason("bad input")))`.
///
/// ```
/// use weir_client::{IntoOutcome, Nack, Outcome};
/// assert_eq!(Ok::<(), String>(()).into_outcome(), Outcome::Ack);
/// assert_eq!(
///     Err::<(), _>("boom").into_outcome(),
///     Outcome::Nack(Nack::retry().with_reason("boom"))
/// );
/// ```
pub trait IntoOutcome: Send + 'static {
    /// The outcome this value stands for.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl<E: Display + Send + 'static> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::Ack,
            Err(e) => Outcome::Nack(Nack::retry().with_reason(e.to_string())),
        }
    }
}

impl<E: Display + Send + 'static> IntoOutcome for Result<Outcome, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Nack(Nack::retry().with_reason(e.to_string())),
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nacks_become_their_request() {
        let ids = || vec!["a".to_owned()];
        let retry = Nack::retry().request(ids());
        assert_eq!(
            (retry.delay_ms, retry.retry, retry.reason),
            (None, None, None)
        );
        let later = Nack::retry_after(Duration::from_millis(1500)).request(ids());
        assert_eq!(later.delay_ms, Some(1500));
        let dead = Nack::dead_letter().with_reason("bad").request(ids());
        assert_eq!(
            (dead.retry, dead.reason.as_deref()),
            (Some(false), Some("bad"))
        );
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let long = Nack::retry().with_reason("é".repeat(MAX_REASON_BYTES));
        assert_eq!(long.reason().map(str::len), Some(MAX_REASON_BYTES));
        assert_eq!(truncate("abc".into(), 2), "ab");
        assert_eq!(truncate("é".into(), 1), "");
    }

    #[test]
    fn handler_results_choose_their_outcome() {
        let chosen: Result<Outcome, String> = Ok(Nack::dead_letter().into());
        assert_eq!(chosen.into_outcome(), Outcome::Nack(Nack::dead_letter()));
        let failed: Result<Outcome, &str> = Err("x");
        assert_eq!(
            failed.into_outcome(),
            Outcome::Nack(Nack::retry().with_reason("x"))
        );
        assert_eq!(Outcome::Ack.into_outcome(), Outcome::Ack);
    }
}
