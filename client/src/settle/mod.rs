//! Settling deliveries in batches: every ack, nack and extend of one id is
//! an [`Op`] handed to a background task ([`Settler`]) that sends many ids
//! per request — all acks waiting at that moment in one request, all nacks
//! with the same options in another, all renewals in a third — and answers
//! each id once its request is answered (`unknown` ids become
//! [`Error::LeaseLost`]).
//!
//! Batching needs no timer: while a request of a kind is in flight, ids of
//! that kind queue up and leave together when it returns, so an idle
//! subscription settles at once and a busy one sends few, large requests.
//!
//! This module owns the handle and the transport trait; which ids wait for
//! which request is in `pending.rs`, the task in `task.rs`, lease renewal
//! of held messages in `keeper.rs`.

mod keeper;
mod pending;
mod task;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use weir_protocol::AckResponse;

use crate::{Error, Nack};

pub(crate) use keeper::{spawn_keeper, InHand, KeeperGuard, Renewal};

/// Ops queued for the task; beyond it, settling callers wait.
const QUEUE: usize = 4096;

/// The three settle requests, each for many ack ids at once.
pub(crate) trait SettleApi: Send + Sync + 'static {
    fn ack(&self, ack_ids: Vec<String>) -> impl Future<Output = Result<AckResponse, Error>> + Send;

    fn nack(
        &self,
        ack_ids: Vec<String>,
        nack: &Nack,
    ) -> impl Future<Output = Result<AckResponse, Error>> + Send;

    fn extend(
        &self,
        ack_ids: Vec<String>,
        lease: Option<Duration>,
    ) -> impl Future<Output = Result<AckResponse, Error>> + Send;
}

/// What to do with an id. Ids of equal kinds share a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Ack,
    Nack(Nack),
    Extend(Option<Duration>),
}

impl Kind {
    /// Requests of one class are sent one at a time (see the module docs).
    fn class(&self) -> usize {
        match self {
            Kind::Ack => 0,
            Kind::Nack(_) => 1,
            Kind::Extend(_) => 2,
        }
    }
}

/// One id to settle, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct Op {
    pub kind: Kind,
    pub ack_id: String,
    pub reply: oneshot::Sender<Result<(), Error>>,
}

/// A cloneable handle to the settling task of one subscription. The task
/// ends once every handle is gone and what they queued is answered.
#[derive(Debug, Clone)]
pub(crate) struct Settler {
    ops: mpsc::Sender<Op>,
}

impl Settler {
    /// Starts the task on the current Tokio runtime.
    pub fn spawn<A: SettleApi>(api: A) -> Settler {
        let (ops, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(task::run(Arc::new(api), receiver));
        Settler { ops }
    }

    /// Queues `ack_id` and waits for its request's answer: `Ok` when the
    /// server applied it, [`Error::LeaseLost`] when it listed the id as
    /// unknown.
    pub async fn submit(&self, kind: Kind, ack_id: String) -> Result<(), Error> {
        let (reply, outcome) = oneshot::channel();
        let op = Op {
            kind,
            ack_id,
            reply,
        };
        self.ops.send(op).await.map_err(|_| stopped())?;
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> Error {
    Error::Local("the settling task has stopped (its runtime is shutting down)".into())
}

#[cfg(test)]
mod tests;
