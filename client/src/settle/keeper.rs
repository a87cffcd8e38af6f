//! Messages handed out and not yet settled ([`InHand`]): what flow control
//! counts (messages and bytes) and what the keeper renews. The keeper task
//! ([`spawn_keeper`]) renews all due leases each period as one batched
//! extend through the [`Settler`], stops renewing a message after
//! `max_extension`, and forgets messages whose lease the server no longer
//! knows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::{Kind, Settler};
use crate::Error;

/// How held leases are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Renewal {
    /// Period of the renewal rounds.
    pub every: Duration,
    /// Lease asked for; `None` = the subscription's `ack_timeout_ms`.
    pub lease: Option<Duration>,
    /// A message held longer is no longer renewed; its lease runs out.
    pub max_extension: Duration,
}

/// Called with `(messages, bytes)` whenever held messages are released.
type ReleaseHook = Box<dyn Fn(u64, u64) + Send + Sync>;

/// The messages held (handed out, not settled) by one consumer.
pub(crate) struct InHand {
    state: Mutex<State>,
    on_release: Option<ReleaseHook>,
}

#[derive(Default)]
struct State {
    held: HashMap<String, Held>,
    bytes: u64,
}

struct Held {
    bytes: u64,
    since: Instant,
    renewed: Instant,
}

impl std::fmt::Debug for InHand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("InHand")
            .field("messages", &state.held.len())
            .field("bytes", &state.bytes)
            .finish()
    }
}

impl InHand {
    pub fn new() -> Self {
        InHand {
            state: Mutex::new(State::default()),
            on_release: None,
        }
    }

    /// An `InHand` that tells `hook` what each release frees.
    pub fn with_release_hook(hook: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        InHand {
            on_release: Some(Box::new(hook)),
            ..InHand::new()
        }
    }

    /// Starts holding `ack_id` (a message of `bytes`) from now.
    pub fn hold(&self, ack_id: String, bytes: u64) {
        let now = Instant::now();
        let mut state = self.lock();
        let held = Held {
            bytes,
            since: now,
            renewed: now,
        };
        if let Some(old) = state.held.insert(ack_id, held) {
            state.bytes -= old.bytes;
        }
        state.bytes += bytes;
    }

    /// Stops holding `ack_id` (settled, or its lease is gone); false when
    /// it was not held.
    pub fn release(&self, ack_id: &str) -> bool {
        self.release_all([ack_id]) == 1
    }

    /// Stops holding each of `ack_ids` under one lock, telling the hook
    /// once; returns how many were held.
    pub fn release_all<'a>(&self, ack_ids: impl IntoIterator<Item = &'a str>) -> u64 {
        let (count, bytes) = {
            let mut state = self.lock();
            let (mut count, mut bytes) = (0, 0);
            for id in ack_ids {
                if let Some(held) = state.held.remove(id) {
                    count += 1;
                    bytes += held.bytes;
                }
            }
            state.bytes -= bytes;
            (count, bytes)
        };
        if count > 0 {
            self.released(count, bytes);
        }
        count
    }

    /// Forgets every held message (their socket is gone).
    pub fn clear(&self) {
        let (count, bytes) = {
            let mut state = self.lock();
            let count = state.held.len() as u64;
            let bytes = state.bytes;
            *state = State::default();
            (count, bytes)
        };
        if count > 0 {
            self.released(count, bytes);
        }
    }

    /// `ack_id`'s lease was just renewed by other means.
    pub fn renewed(&self, ack_id: &str) {
        if let Some(held) = self.lock().held.get_mut(ack_id) {
            held.renewed = Instant::now();
        }
    }

    /// Messages and bytes held now.
    pub fn totals(&self) -> (u64, u64) {
        let state = self.lock();
        (state.held.len() as u64, state.bytes)
    }

    /// Tells the hook, if any, what a release freed.
    fn released(&self, count: u64, bytes: u64) {
        if let Some(hook) = &self.on_release {
            hook(count, bytes);
        }
    }

    /// The ids to renew at `now`: renewed at least half a period ago and
    /// held for less than `max_extension`. They count as renewed from now.
    fn due(&self, now: Instant, renewal: &Renewal) -> Vec<String> {
        let half = renewal.every / 2;
        let mut state = self.lock();
        let mut due = Vec::new();
        for (id, held) in &mut state.held {
            if now - held.since < renewal.max_extension && now - held.renewed >= half {
                held.renewed = now;
                due.push(id.clone());
            }
        }
        due
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Aborts the keeper task when dropped, with the consumer that owns it.
#[derive(Debug)]
pub(crate) struct KeeperGuard(JoinHandle<()>);

impl Drop for KeeperGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the leases of `in_hand` every `renewal.every` until the guard is
/// dropped.
pub(crate) fn spawn_keeper(
    in_hand: Arc<InHand>,
    settler: Settler,
    renewal: Renewal,
) -> KeeperGuard {
    let every = renewal.every.max(Duration::from_millis(1));
    KeeperGuard(tokio::spawn(async move {
        let mut tick = interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due = in_hand.due(Instant::now(), &renewal);
            let mut renewing: FuturesUnordered<_> = due
                .into_iter()
                .map(|id| {
                    let settler = settler.clone();
                    async move {
                        let outcome = settler.submit(Kind::Extend(renewal.lease), id).await;
                        outcome.err()
                    }
                })
                .collect();
            while let Some(failed) = renewing.next().await {
                // Lost already: renewing again cannot bring it back.
                if let Some(Error::LeaseLost { ack_id }) = failed {
                    in_hand.release(&ack_id);
                }
            }
        }
    }))
}
