//! Credit accounting of a subscription socket: how much to grant, and when.
//!
//! The server sends a message only against credit, and credit is additive
//! (`{"type":"credit","messages":N}` adds N). [`Credit`] is the pure
//! bookkeeping — no I/O, no clock — and [`SharedCredit`] shares it between
//! the stream (which reports yielded messages), [`WsAcker::add_credit`]
//! and the writer task (which sends what is owed, coalesced into one frame).
//!
//! [`WsAcker::add_credit`]: crate::WsAcker::add_credit

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// How a [`WsSubscription`](crate::WsSubscription) grants credit beyond the
/// initial [`SubscribeOptions::credit`](crate::SubscribeOptions::credit).
///
/// ```no_run
/// use weir_client::{Refill, SubscribeOptions};
/// // Exactly 10 messages, then only what `add_credit` grants.
/// let options = SubscribeOptions {
///     credit: 10,
///     refill: Refill::Manual,
///     ..SubscribeOptions::default()
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Refill {
    /// Keep up to `credit` messages outstanding — granted to the server but
    /// not yet yielded by the stream (in flight, or buffered in the client).
    /// Each message the stream yields is granted again, in batches of at
    /// least half of `credit` (one frame per batch), so a plain
    /// `while let Some(m) = sub.next().await { ...; sub.ack(..).await }`
    /// loop keeps flowing, and a consumer that stops polling stops the
    /// flow after at most `credit` messages. Acks play no part: leases of
    /// yielded but unsettled messages are bounded by the ack timeout, not
    /// by credit.
    #[default]
    OnYield,
    /// Grant nothing beyond the initial credit: the server sends more only
    /// after [`WsAcker::add_credit`](crate::WsAcker::add_credit).
    Manual,
}

/// Credit bookkeeping of one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credit {
    window: u64,
    refill: Refill,
    /// Granted (or about to be) and not yet yielded.
    outstanding: u64,
    /// Granted here but not yet sent to the server.
    unsent: u64,
}

impl Credit {
    /// Starts with `window` messages of credit, to be sent.
    pub fn new(window: u32, refill: Refill) -> Self {
        Credit {
            window: u64::from(window),
            refill,
            outstanding: u64::from(window),
            unsent: u64::from(window),
        }
    }

    /// An explicit grant of `messages` more, on top of any policy.
    pub fn add(&mut self, messages: u32) {
        self.outstanding = self.outstanding.saturating_add(u64::from(messages));
        self.unsent = self.unsent.saturating_add(u64::from(messages));
    }

    /// The stream yielded one message; under [`Refill::OnYield`] this tops
    /// the outstanding credit back up to the window once at least a batch
    /// (half the window) is missing.
    pub fn yielded(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.refill != Refill::OnYield || self.window == 0 {
            return;
        }
        let batch = (self.window / 2).max(1);
        let missing = self.window.saturating_sub(self.outstanding);
        if missing >= batch {
            self.outstanding += missing;
            self.unsent += missing;
        }
    }

    /// The credit to send now, if any (at most `u32::MAX` per frame; the
    /// rest stays owed).
    pub fn take_unsent(&mut self) -> Option<u32> {
        let now = u32::try_from(self.unsent).unwrap_or(u32::MAX);
        self.unsent -= u64::from(now);
        (now > 0).then_some(now)
    }

    #[cfg(test)]
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }
}

/// [`Credit`] shared by the stream, the ackers and the writer task, which
/// is woken whenever there is credit to send.
#[derive(Debug)]
pub(crate) struct SharedCredit {
    credit: Mutex<Credit>,
    owed: Notify,
}

impl SharedCredit {
    pub fn new(credit: Credit) -> Self {
        let shared = SharedCredit {
            credit: Mutex::new(credit),
            owed: Notify::new(),
        };
        // The initial grant is owed too.
        shared.owed.notify_one();
        shared
    }

    pub fn add(&self, messages: u32) {
        self.lock().add(messages);
        self.owed.notify_one();
    }

    pub fn yielded(&self) {
        let mut credit = self.lock();
        credit.yielded();
        if credit.unsent > 0 {
            self.owed.notify_one();
        }
    }

    /// Waits until credit may be owed, then takes it (none if another
    /// wake-up already sent it).
    pub async fn owed(&self) -> Option<u32> {
        self.owed.notified().await;
        self.lock().take_unsent()
    }

    fn lock(&self) -> MutexGuard<'_, Credit> {
        self.credit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `n` messages; returns the credit sent along the way.
    fn yield_n(credit: &mut Credit, n: usize) -> Vec<u32> {
        let mut sent = Vec::new();
        for _ in 0..n {
            credit.yielded();
            sent.extend(credit.take_unsent());
        }
        sent
    }

    #[test]
    fn on_yield_keeps_the_window_outstanding_in_half_window_batches() {
        let mut credit = Credit::new(10, Refill::OnYield);
        assert_eq!(credit.take_unsent(), Some(10), "the initial grant");
        assert_eq!(credit.take_unsent(), None);
        assert_eq!(yield_n(&mut credit, 4), Vec::<u32>::new());
        assert_eq!(credit.outstanding(), 6);
        assert_eq!(yield_n(&mut credit, 1), vec![5], "half the window missing");
        assert_eq!(credit.outstanding(), 10);
        assert_eq!(yield_n(&mut credit, 20), vec![5, 5, 5, 5]);
        assert!(credit.outstanding() <= 10);
    }

    #[test]
    fn a_window_of_one_or_two_refills_every_message() {
        let mut one = Credit::new(1, Refill::OnYield);
        assert_eq!(one.take_unsent(), Some(1));
        assert_eq!(yield_n(&mut one, 3), vec![1, 1, 1]);
        let mut two = Credit::new(2, Refill::OnYield);
        assert_eq!(two.take_unsent(), Some(2));
        assert_eq!(yield_n(&mut two, 2), vec![1, 1]);
    }

    #[test]
    fn manual_grants_only_what_is_added() {
        let mut credit = Credit::new(2, Refill::Manual);
        assert_eq!(credit.take_unsent(), Some(2));
        assert_eq!(yield_n(&mut credit, 2), Vec::<u32>::new());
        credit.add(3);
        credit.add(4);
        assert_eq!(credit.take_unsent(), Some(7), "coalesced");
        assert_eq!(yield_n(&mut credit, 7), Vec::<u32>::new());
        assert_eq!(credit.outstanding(), 0);
    }

    #[test]
    fn extra_credit_is_not_refilled_beyond_the_window() {
        let mut credit = Credit::new(4, Refill::OnYield);
        assert_eq!(credit.take_unsent(), Some(4));
        credit.add(6);
        assert_eq!(credit.take_unsent(), Some(6));
        // 10 outstanding: nothing is refilled until half the window (2)
        // is missing, then only up to the window.
        assert_eq!(yield_n(&mut credit, 7), Vec::<u32>::new());
        assert_eq!(yield_n(&mut credit, 1), vec![2]);
        assert_eq!(credit.outstanding(), 4);
    }

    #[test]
    fn zero_credit_on_yield_waits_for_explicit_grants() {
        let mut credit = Credit::new(0, Refill::OnYield);
        assert_eq!(credit.take_unsent(), None);
        credit.add(1);
        assert_eq!(credit.take_unsent(), Some(1));
        assert_eq!(yield_n(&mut credit, 1), Vec::<u32>::new());
    }

    #[test]
    fn huge_grants_are_split_across_frames() {
        let mut credit = Credit::new(u32::MAX, Refill::Manual);
        credit.add(5);
        assert_eq!(credit.take_unsent(), Some(u32::MAX));
        assert_eq!(credit.take_unsent(), Some(5));
    }
}
