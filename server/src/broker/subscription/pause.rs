//! Pause and resume, by hand or by the circuit breaker: a paused
//! subscription makes no new deliveries (pulls return nothing, sockets and
//! push send nothing) while acks, nacks and extends keep working. The pause
//! is part of the subscription's record, so it survives restarts. The
//! breaker counts dead letters in a sliding window and pauses the
//! subscription when there are more than the policy allows; with a
//! cool-down it resumes by itself.

use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use weir_protocol::{DeadLetterFilter, RedriveRequest};

use super::Subscription;
use crate::broker::error::{BrokerError, Result};
use crate::broker::Broker;
use crate::metrics::{name_label, METRICS};
use crate::storage::{PauseRecord, WriteSet};

/// Longest pause reason kept, in bytes.
pub const MAX_PAUSE_REASON_BYTES: usize = 1024;

impl Subscription {
    /// True while no new deliveries are made.
    pub fn is_paused(&self) -> bool {
        self.paused.load(AtomicOrdering::SeqCst)
    }

    /// Counts one dead letter in the breaker's window; true when the
    /// breaker trips (more dead letters in the window than allowed).
    fn breaker_counts(&self, now: u64) -> Option<String> {
        let cb = self.record().config.retry.circuit_breaker?;
        let mut window = match self.breaker_window.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        window.push_back(now);
        let start = now.saturating_sub(cb.window_ms);
        while window.front().is_some_and(|t| *t < start) {
            window.pop_front();
        }
        if window.len() as u64 > u64::from(cb.max_dead_letters) && !self.is_paused() {
            let n = window.len();
            window.clear();
            return Some(format!(
                "circuit breaker: {n} dead letters within {} ms (more than {})",
                cb.window_ms, cb.max_dead_letters
            ));
        }
        None
    }

    /// Called after each dead letter: trips the breaker when due.
    pub(super) async fn note_dead_letter(self: &Arc<Self>, broker: &Arc<Broker>, now: u64) {
        let Some(reason) = self.breaker_counts(now) else {
            return;
        };
        let (topic, sub) = (self.topic.name(), self.name());
        METRICS
            .circuit_breaker_trips
            .with_label_values(&[name_label(&topic), name_label(&sub)])
            .inc();
        tracing::warn!(
            topic,
            subscription = sub,
            reason,
            "circuit breaker tripped: subscription paused"
        );
        let pause = PauseRecord {
            reason,
            at: now,
            breaker: true,
        };
        if let Err(e) = broker.set_paused(self, Some(pause.clone())).await {
            tracing::error!(error = %e, "cannot pause the subscription for its circuit breaker");
            return;
        }
        self.schedule_cooldown(broker, &pause);
    }

    /// With a cool-down configured, resumes the subscription once it has
    /// passed (unless it was resumed or paused again meanwhile).
    pub(crate) fn schedule_cooldown(self: &Arc<Self>, broker: &Arc<Broker>, pause: &PauseRecord) {
        let Some(cooldown) = self
            .record()
            .config
            .retry
            .circuit_breaker
            .and_then(|c| c.cooldown_ms)
        else {
            return;
        };
        if !pause.breaker {
            return;
        }
        let due = pause.at.saturating_add(cooldown);
        let (sub, broker): (Weak<Subscription>, Weak<Broker>) =
            (Arc::downgrade(self), Arc::downgrade(broker));
        let tripped_at = pause.at;
        let wait = Duration::from_millis(due.saturating_sub(self.now()));
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let (Some(sub), Some(broker)) = (sub.upgrade(), broker.upgrade()) else {
                return;
            };
            let still = sub
                .record()
                .paused
                .is_some_and(|p| p.breaker && p.at == tripped_at);
            if still && !sub.is_deleted() {
                tracing::info!(subscription = %sub.name(), "circuit breaker cool-down over: resuming");
                if let Err(e) = broker.set_paused(&sub, None).await {
                    tracing::error!(error = %e, "cannot resume after the cool-down");
                }
            }
        });
    }
}

impl Broker {
    /// Pauses a subscription by hand.
    pub async fn pause_subscription(
        &self,
        topic: &str,
        name: &str,
        reason: Option<String>,
    ) -> Result<()> {
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > MAX_PAUSE_REASON_BYTES)
        {
            return Err(BrokerError::invalid(
                "reason",
                format!("`reason` must be at most {MAX_PAUSE_REASON_BYTES} bytes"),
            ));
        }
        let sub = self.subscription(topic, name)?;
        let pause = PauseRecord {
            reason: reason.unwrap_or_else(|| "paused by hand".to_owned()),
            at: self.now(),
            breaker: false,
        };
        self.set_paused(&sub, Some(pause)).await
    }

    /// Resumes a subscription; with `redrive`, also redrives the dead
    /// letters of the breaker window that paused it. Returns how many were
    /// redriven.
    pub async fn resume_subscription(&self, topic: &str, name: &str, redrive: bool) -> Result<u64> {
        let sub = self.subscription(topic, name)?;
        let paused = sub.record().paused;
        self.set_paused(&sub, None).await?;
        let (Some(pause), true) = (paused, redrive) else {
            return Ok(0);
        };
        let window = sub
            .record()
            .config
            .retry
            .circuit_breaker
            .map_or(0, |c| c.window_ms);
        let request = RedriveRequest {
            filter: Some(DeadLetterFilter {
                from_ms: Some(pause.at.saturating_sub(window)),
                ..DeadLetterFilter::default()
            }),
            ..RedriveRequest::default()
        };
        Ok(sub.redrive_filtered(&request).await?.redriven)
    }

    /// Commits the pause state of `sub` and applies it.
    pub(crate) async fn set_paused(
        &self,
        sub: &Subscription,
        pause: Option<PauseRecord>,
    ) -> Result<()> {
        let topic = sub.topic().name();
        if let Some(replicator) = self.replicator.get().filter(|r| r.replicates(&topic)) {
            // Through the cluster's metadata; this node's record follows
            // once applied here.
            if sub.record().paused == pause {
                return Ok(());
            }
            return replicator.pause(&topic, &sub.name(), pause).await;
        }
        let _admin = self.admin.lock().await;
        let mut record = sub.record();
        if record.paused == pause {
            return Ok(());
        }
        record.paused = pause;
        let mut set = WriteSet::new();
        set.put_subscription(&record);
        self.store.commit(set).await?;
        sub.set_record(record).await;
        Ok(())
    }
}
