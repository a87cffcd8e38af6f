//! One delivery from lease to settlement: run the handler in its own task
//! while the message is held (so the keeper renews its lease), then ack or
//! nack as the handler's [`Outcome`] says; a panicking handler is nacked
//! for a retry with the panic text as reason.
//!
//! Owns the per-message policy only; pulling and concurrency belong to
//! `mod.rs`, batching and renewal to `settle/`.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinError;
use weir_protocol::ReceivedMessage;

use crate::received::{weight, SettleHandle};
use crate::settle::Kind;
use crate::{Error, IntoOutcome, Nack, Outcome};

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

pub(super) async fn process<F, Fut, R>(
    message: ReceivedMessage,
    handler: Arc<F>,
    settle: Arc<SettleHandle>,
    _slot: OwnedSemaphorePermit,
) -> Settled
where
    F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
{
    let ack_id = message.ack_id.clone();
    settle.hold(ack_id.clone(), weight(&message.message));
    // Its own task, so that a panicking handler becomes a nack instead of
    // taking the lease (and the slot) down with it.
    let work = tokio::spawn(async move { (*handler)(message).await.into_outcome() });
    let (kind, success) = match outcome_of(work.await) {
        Outcome::Ack => (Kind::Ack, Settled::Acked),
        Outcome::Nack(nack) => (Kind::Nack(nack), Settled::Nacked),
    };
    match settle.settle(kind, &ack_id).await {
        Ok(()) => success,
        Err(Error::LeaseLost { .. }) => Settled::LeaseLost,
        Err(_) => Settled::Failed,
    }
}

/// The handler's outcome; a panic or cancellation is a nack for a retry.
fn outcome_of(joined: Result<Outcome, JoinError>) -> Outcome {
    match joined {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Outcome::Nack(Nack::retry().with_reason(format!("handler panicked: {text}")))
        }
        Err(_) => Outcome::Nack(Nack::retry().with_reason("handler was cancelled")),
    }
}
