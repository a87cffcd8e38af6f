//! The settling task: takes [`Op`]s from the channel, groups them
//! ([`Pending`]), sends one request per group and class at a time, retries
//! a request that fails transiently, and answers every id.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use weir_protocol::AckResponse;

use super::pending::Pending;
use super::{Kind, Op, SettleApi};
use crate::{Error, RetryBackoff};

/// Attempts of a settle request that fails transiently: a lost ack means
/// a duplicate delivery, worth a short wait.
const ATTEMPTS: u32 = 3;
/// Pauses between those attempts.
const RETRY: RetryBackoff = RetryBackoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
    jitter: 0.5,
};

type Reply = oneshot::Sender<Result<(), Error>>;

/// Runs until the channel is closed and every op it carried is answered.
pub(super) async fn run<A: SettleApi>(api: Arc<A>, mut ops: mpsc::Receiver<Op>) {
    let mut pending: Pending<Reply> = Pending::default();
    let mut busy = [false; 3];
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        while let Some((kind, batch)) = pending.take(|kind| busy[kind.class()]) {
            busy[kind.class()] = true;
            in_flight.push(send(api.clone(), kind, batch));
        }
        if !open && pending.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            Some(class) = in_flight.next(), if !in_flight.is_empty() => busy[class] = false,
            op = ops.recv(), if open => match op {
                Some(op) => {
                    pending.push(op.kind, op.ack_id, op.reply);
                    // Everything queued meanwhile joins the same requests.
                    while let Ok(op) = ops.try_recv() {
                        pending.push(op.kind, op.ack_id, op.reply);
                    }
                }
                None => open = false,
            },
        }
    }
}

/// Sends one request for `batch`, answers each id, returns the class.
async fn send<A: SettleApi>(api: Arc<A>, kind: Kind, batch: Vec<(String, Reply)>) -> usize {
    let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let result = match &kind {
            Kind::Ack => api.ack(ids.clone()).await,
            Kind::Nack(nack) => api.nack(ids.clone(), nack).await,
            Kind::Extend(lease) => api.extend(ids.clone(), *lease).await,
        };
        match result {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tokio::time::sleep(RETRY.delay_after(attempt, &e)).await;
            }
            other => break other,
        }
    };
    answer(batch, result);
    kind.class()
}

fn answer(batch: Vec<(String, Reply)>, result: Result<AckResponse, Error>) {
    for (ack_id, reply) in batch {
        let outcome = match &result {
            Ok(response) if response.unknown.contains(&ack_id) => Err(Error::LeaseLost { ack_id }),
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        // A caller that stopped waiting only loses the answer.
        let _ = reply.send(outcome);
    }
}
