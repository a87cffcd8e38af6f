//! Credit accounting of a subscription socket: how much to grant, and when.
//!
//! The server sends a message only against credit, and credit is additive
//! (`{"type":"credit","messages":N}` adds N). [`Credit`] is the pure
//! bookkeeping — no I/O, no clock — of what was granted and not yet
//! yielded (the window) and of what was yielded and not yet settled (the
//! flow-control limits on unacked messages and bytes). [`SharedCredit`]
//! shares it between the stream (which reports yielded messages), the
//! settles (which release them), [`WsAcker::add_credit`], and the writer
//! task of the current socket (which sends what is owed, coalesced into
//! one frame). After a reconnect, credit granted to the dead socket and
//! never used is granted again to the new one.
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
    /// `while let Some(m) = sub.next().await { ...; m.ack().await }`
    /// loop keeps flowing, and a consumer that stops polling stops the
    /// flow after at most `credit` messages. With
    /// [`max_unacked`](crate::SubscribeOptions::max_unacked) or
    /// [`max_unacked_bytes`](crate::SubscribeOptions::max_unacked_bytes),
    /// messages yielded and not yet acked or nacked count too: credit is
    /// granted only while they are below those limits.
    #[default]
    OnYield,
    /// Grant nothing beyond the initial credit: the server sends more only
    /// after [`WsAcker::add_credit`](crate::WsAcker::add_credit).
    Manual,
}

/// Limits on messages yielded and not yet settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Unacked {
    pub messages: Option<u32>,
    pub bytes: Option<u64>,
}

/// Credit bookkeeping of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credit {
    window: u64,
    refill: Refill,
    limits: Unacked,
    /// Granted (or about to be) and not yet yielded.
    outstanding: u64,
    /// Granted here but not yet sent to the server.
    unsent: u64,
    /// Yielded and not yet settled: messages, bytes.
    held: u64,
    held_bytes: u64,
}

impl Credit {
    /// Starts with `window` messages of credit (fewer under a
    /// `limits.messages` below it), to be sent.
    pub fn new(window: u32, refill: Refill, limits: Unacked) -> Self {
        let window = u64::from(window);
        let initial = match (refill, limits.messages) {
            (Refill::OnYield, Some(most)) => window.min(u64::from(most)),
            _ => window,
        };
        Credit {
            window,
            refill,
            limits,
            outstanding: initial,
            unsent: initial,
            held: 0,
            held_bytes: 0,
        }
    }

    /// An explicit grant of `messages` more, on top of any policy.
    pub fn add(&mut self, messages: u32) {
        self.outstanding = self.outstanding.saturating_add(u64::from(messages));
        self.unsent = self.unsent.saturating_add(u64::from(messages));
    }

    /// The stream yielded one message of `bytes`.
    pub fn yielded(&mut self, bytes: u64) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.held += 1;
        self.held_bytes += bytes;
        self.top_up();
    }

    /// `messages` yielded messages of `bytes` in all were settled (or
    /// their leases are gone).
    pub fn released(&mut self, messages: u64, bytes: u64) {
        self.held = self.held.saturating_sub(messages);
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        self.top_up();
    }

    /// A new socket replaced a dead one: it starts with no credit, so what
    /// was granted and not yet yielded is owed again.
    pub fn reconnected(&mut self) {
        self.unsent = self.outstanding;
        self.top_up();
    }

    /// Under [`Refill::OnYield`], tops the outstanding credit back up —
    /// to the window, or to what the unacked limits leave — once at least
    /// a batch (half of that) is missing, or as soon as nothing at all is
    /// outstanding (so that a consumer holding back acks until it has
    /// more messages cannot stall the flow below a batch).
    fn top_up(&mut self) {
        if self.refill != Refill::OnYield || self.window == 0 {
            return;
        }
        let full = self
            .limits
            .messages
            .map_or(self.window, |most| self.window.min(u64::from(most)));
        let room = self
            .limits
            .messages
            .map_or(u64::MAX, |most| u64::from(most).saturating_sub(self.held));
        let over_bytes = self
            .limits
            .bytes
            .is_some_and(|most| self.held_bytes >= most);
        let target = if over_bytes { 0 } else { full.min(room) };
        let missing = target.saturating_sub(self.outstanding);
        let batch = (full / 2).max(1);
        if missing >= batch || (missing > 0 && self.outstanding == 0) {
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

/// [`Credit`] shared by the stream, the settles and the writer task of the
/// current socket, which is woken whenever there is credit to send.
#[derive(Debug)]
pub(crate) struct SharedCredit {
    state: Mutex<State>,
    owed: Notify,
}

#[derive(Debug)]
struct State {
    credit: Credit,
    /// The socket that credit is sent on; writers of older ones get none.
    generation: u64,
}

impl SharedCredit {
    /// Credit for the sockets of one session, the first being generation 1.
    pub fn new(credit: Credit) -> Self {
        SharedCredit {
            state: Mutex::new(State {
                credit,
                generation: 1,
            }),
            owed: Notify::new(),
        }
    }

    /// The current socket's generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub fn add(&self, messages: u32) {
        self.change(|credit| credit.add(messages));
    }

    pub fn yielded(&self, bytes: u64) {
        self.change(|credit| credit.yielded(bytes));
    }

    pub fn released(&self, messages: u64, bytes: u64) {
        self.change(|credit| credit.released(messages, bytes));
    }

    /// The current socket ended: its writer gets no more credit, and its
    /// messages not yet yielded are stale. Returns the next socket's
    /// generation.
    pub fn retire(&self) -> u64 {
        let mut state = self.lock();
        state.generation += 1;
        state.generation
    }

    /// The next socket is open: what the dead one was granted and did not
    /// use is owed to it.
    pub fn reconnected(&self) {
        self.change(Credit::reconnected);
    }

    /// Waits until credit is owed to socket `generation` and takes it.
    /// Never returns for a socket that was replaced.
    pub async fn owed(&self, generation: u64) -> u32 {
        loop {
            let notified = self.owed.notified();
            tokio::pin!(notified);
            // Registered before the check: no grant can slip in between.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.generation == generation {
                    if let Some(messages) = state.credit.take_unsent() {
                        return messages;
                    }
                }
            }
            notified.await;
        }
    }

    fn change(&self, change: impl FnOnce(&mut Credit)) {
        change(&mut self.lock().credit);
        self.owed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `n` messages; returns the credit sent along the way.
    fn yield_n(credit: &mut Credit, n: usize) -> Vec<u32> {
        let mut sent = Vec::new();
        for _ in 0..n {
            credit.yielded(10);
            // Settled at once: only the window matters here.
            credit.released(1, 10);
            sent.extend(credit.take_unsent());
        }
        sent
    }

    fn unlimited(window: u32, refill: Refill) -> Credit {
        Credit::new(window, refill, Unacked::default())
    }

    #[test]
    fn on_yield_keeps_the_window_outstanding_in_half_window_batches() {
        let mut credit = unlimited(10, Refill::OnYield);
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
        let mut one = unlimited(1, Refill::OnYield);
        assert_eq!(one.take_unsent(), Some(1));
        assert_eq!(yield_n(&mut one, 3), vec![1, 1, 1]);
        let mut two = unlimited(2, Refill::OnYield);
        assert_eq!(two.take_unsent(), Some(2));
        assert_eq!(yield_n(&mut two, 2), vec![1, 1]);
    }

    #[test]
    fn manual_grants_only_what_is_added() {
        let mut credit = unlimited(2, Refill::Manual);
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
        let mut credit = unlimited(4, Refill::OnYield);
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
        let mut credit = unlimited(0, Refill::OnYield);
        assert_eq!(credit.take_unsent(), None);
        credit.add(1);
        assert_eq!(credit.take_unsent(), Some(1));
        assert_eq!(yield_n(&mut credit, 1), Vec::<u32>::new());
    }

    #[test]
    fn huge_grants_are_split_across_frames() {
        let mut credit = unlimited(u32::MAX, Refill::Manual);
        credit.add(5);
        assert_eq!(credit.take_unsent(), Some(u32::MAX));
        assert_eq!(credit.take_unsent(), Some(5));
    }

    #[test]
    fn unacked_messages_hold_back_credit_until_they_are_settled() {
        let limits = Unacked {
            messages: Some(4),
            bytes: None,
        };
        let mut credit = Credit::new(100, Refill::OnYield, limits);
        assert_eq!(credit.take_unsent(), Some(4), "no more than may be unacked");
        for _ in 0..4 {
            credit.yielded(1);
        }
        assert_eq!(credit.take_unsent(), None, "four unacked: nothing more");
        credit.released(1, 1);
        // One free, nothing outstanding: granted at once rather than
        // waiting for a batch.
        assert_eq!(credit.take_unsent(), Some(1));
        credit.released(3, 3);
        assert_eq!(credit.take_unsent(), Some(3));
        assert_eq!(credit.outstanding(), 4);
    }

    #[test]
    fn unacked_bytes_stop_the_grants_until_released() {
        let limits = Unacked {
            messages: None,
            bytes: Some(1000),
        };
        let mut credit = Credit::new(2, Refill::OnYield, limits);
        assert_eq!(credit.take_unsent(), Some(2));
        credit.yielded(600);
        assert_eq!(credit.take_unsent(), Some(1), "600 bytes: still below");
        credit.yielded(600);
        assert_eq!(credit.take_unsent(), None, "1200 bytes unacked");
        credit.released(1, 600);
        assert_eq!(credit.take_unsent(), Some(1), "below the byte limit again");
    }

    #[test]
    fn a_reconnect_owes_the_unused_credit_again() {
        let mut credit = unlimited(10, Refill::OnYield);
        assert_eq!(credit.take_unsent(), Some(10));
        for _ in 0..3 {
            credit.yielded(1);
        }
        assert_eq!(credit.take_unsent(), None);
        credit.reconnected();
        assert_eq!(
            credit.take_unsent(),
            Some(7),
            "what the dead socket never used"
        );
    }

    #[tokio::test]
    async fn writers_of_replaced_sockets_get_no_credit() {
        let shared = SharedCredit::new(unlimited(5, Refill::Manual));
        assert_eq!(shared.generation(), 1);
        assert_eq!(shared.owed(1).await, 5);
        assert_eq!(shared.retire(), 2);
        shared.reconnected();
        shared.add(3);
        let stale = tokio::time::timeout(std::time::Duration::from_millis(20), shared.owed(1));
        assert!(stale.await.is_err(), "generation 1 was replaced");
        assert_eq!(shared.owed(2).await, 5 + 3, "unused credit, then the grant");
    }
}
