//! The timer task of a subscription: fires due timers (lease expiry,
//! retries, delays, idle stream owners) from the state's deadline heap,
//! commits what they change, runs dead-letter jobs, and sleeps until the
//! next deadline or until woken — one task per subscription, no scanning.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::state::DeadLetterJob;
use super::{committed, dead_letter, Subscription};
use crate::broker::Broker;

/// Dead letters moved in one atomic write (one fsync).
const DEAD_LETTER_BATCH: usize = 500;
/// Delay before retrying a dead-letter copy that failed.
const JOB_RETRY_MS: u64 = 1000;
/// How often a subscription served by another cluster node checks whether
/// it is served here now (it then claims it and runs its timers).
const NOT_SERVED_CHECK_MS: u64 = 500;

impl Subscription {
    /// Runs until the subscription or its topic goes away or closes.
    pub async fn run_timers(self: Arc<Self>, broker: Weak<Broker>) {
        let mut retry: Vec<(DeadLetterJob, u64)> = Vec::new();
        loop {
            if self.is_deleted() || self.topic.is_deleted() || self.topic.is_closing() {
                return;
            }
            if !self.served_here() {
                // Another cluster node serves it: nothing is due here.
                tokio::select! {
                    _ = self.timer_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(NOT_SERVED_CHECK_MS)) => {}
                }
                continue;
            }
            let now = self.now();
            let (mut state, changes) = match self.lock(now).await {
                Ok(locked) => locked,
                Err(e) => {
                    // The state could not be reloaded (store unreadable):
                    // try again shortly.
                    tracing::warn!(error = %e, "subscription timers paused");
                    tokio::time::sleep(Duration::from_millis(JOB_RETRY_MS)).await;
                    continue;
                }
            };
            let fired = !changes.is_empty();
            let mut jobs = state.take_jobs();
            let next = state.next_deadline();
            let rx = match self.enqueue(&mut state, changes).await {
                Ok(rx) => rx,
                Err(e) => {
                    // The changes stay in memory but the generation moved:
                    // the next lock reloads the state from the store.
                    tracing::warn!(error = %e, "subscription timer commit failed");
                    None
                }
            };
            drop(state);
            if let Err(e) = committed(rx).await {
                tracing::warn!(error = %e, "subscription timer commit failed");
            }
            let mut retry_unpark_at: Option<u64> = None;
            let unparked = match self.unpark(now).await {
                Ok(changed) => changed,
                Err(e) => {
                    tracing::warn!(error = %e, "bringing back parked messages failed; will retry");
                    retry_unpark_at = Some(now + JOB_RETRY_MS);
                    false
                }
            };
            let (due, later): (Vec<_>, Vec<_>) = retry.drain(..).partition(|(_, at)| *at <= now);
            retry = later;
            jobs.extend(due.into_iter().map(|(job, _)| job));
            let ran = !jobs.is_empty();
            if let Some(broker) = broker.upgrade() {
                for batch in jobs.chunks(DEAD_LETTER_BATCH) {
                    match dead_letter::run_batch(&broker, &self, batch).await {
                        Ok(done) => {
                            for _ in &done {
                                self.note_dead_letter(&broker, self.now()).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, jobs = batch.len(), "dead-lettering failed; will retry");
                            retry.extend(batch.iter().map(|job| (job.clone(), now + JOB_RETRY_MS)));
                        }
                    }
                }
            } else {
                return;
            }
            if fired || ran || unparked {
                // Messages became deliverable (or partitions unblocked).
                self.wake_waiters();
            }
            let parked_due = self.state.lock().await.parked_wake();
            let wake_at = next
                .into_iter()
                .chain(retry.iter().map(|(_, at)| *at))
                .chain(parked_due)
                .chain(retry_unpark_at)
                .min();
            let sleep = match wake_at {
                Some(at) => Duration::from_millis(at.saturating_sub(self.now())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = self.timer_wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}
