//! One delivery from lease to settlement: run the handler in its own task,
//! renew the lease while it runs, then ack (handler succeeded) or nack with
//! the error text as reason (handler failed or panicked).
//!
//! Owns the per-message policy only; pulling and concurrency belong to
//! `mod.rs`.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinError;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use weir_protocol::{AckResponse, ReceivedMessage};

use super::api::SubscriptionApi;
use crate::Error;

/// Longest nack reason sent; the rest of a long error text is cut.
pub(super) const MAX_REASON_BYTES: usize = 1024;
/// Attempts of an ack or nack whose request fails transiently.
const SETTLE_ATTEMPTS: u32 = 3;
/// Pause before the second settle attempt; doubled for each further one.
const SETTLE_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How leases are renewed while a handler runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeasePolicy {
    /// Renew this often (already clamped to a sane minimum).
    pub extend_every: Duration,
    /// Lease length asked for on renewal; `None` = the subscription's.
    pub lease: Option<Duration>,
    /// Stop renewing after this long; the lease then runs out.
    pub max_extension: Duration,
}

/// How one delivery ended, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    Acked,
    Nacked,
    /// The server no longer knew the ack id: the lease ran out first and the
    /// message is (or will be) delivered again.
    LeaseLost,
    /// The ack or nack failed even after retries; the lease will run out.
    Failed,
}

pub(super) async fn process<A, F, Fut, E>(
    api: A,
    message: ReceivedMessage,
    handler: Arc<F>,
    policy: LeasePolicy,
    _slot: OwnedSemaphorePermit,
) -> Settled
where
    A: SubscriptionApi,
    F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let ack_id = message.ack_id.clone();
    // Its own task, so that a panicking handler becomes a nack instead of
    // taking the lease (and the slot) down with it.
    let mut work =
        tokio::spawn(async move { (*handler)(message).await.map_err(|e| e.to_string()) });
    let started = Instant::now();
    let mut renew = interval_at(started + policy.extend_every, policy.extend_every);
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut renewing = true;
    let failure = loop {
        tokio::select! {
            joined = &mut work => break failure_of(joined),
            _ = renew.tick(), if renewing => {
                if started.elapsed() >= policy.max_extension {
                    renewing = false;
                    continue;
                }
                match api.extend(&ack_id, policy.lease).await {
                    // Lost already: renewing again cannot bring it back.
                    Ok(response) if response.unknown.contains(&ack_id) => renewing = false,
                    Ok(_) => {}
                    // Try again at the next tick; the lease may still hold.
                    Err(_) => {}
                }
            }
        }
    };
    match failure {
        None => settle(&ack_id, Settled::Acked, || api.ack(&ack_id)).await,
        Some(reason) => {
            let reason = truncate(reason, MAX_REASON_BYTES);
            settle(&ack_id, Settled::Nacked, || api.nack(&ack_id, &reason)).await
        }
    }
}

/// `None` when the handler succeeded, else the reason to nack with.
fn failure_of(joined: Result<Result<(), String>, JoinError>) -> Option<String> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(reason)) => Some(reason),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Some(format!("handler panicked: {text}"))
        }
        Err(_) => Some("handler was cancelled".to_owned()),
    }
}

/// Sends an ack or nack, retrying transient failures a few times: a lost
/// ack means a duplicate delivery, worth a short wait.
async fn settle<Req, Fut>(ack_id: &str, success: Settled, mut request: Req) -> Settled
where
    Req: FnMut() -> Fut,
    Fut: Future<Output = Result<AckResponse, Error>>,
{
    let mut pause = SETTLE_RETRY_PAUSE;
    for attempt in 1..=SETTLE_ATTEMPTS {
        match request().await {
            Ok(response) if response.unknown.iter().any(|id| id == ack_id) => {
                return Settled::LeaseLost
            }
            Ok(_) => return success,
            Err(e) if e.is_transient() && attempt < SETTLE_ATTEMPTS => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(_) => return Settled::Failed,
        }
    }
    Settled::Failed
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(super) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
