//! The producer's background task: receives messages from the bounded
//! command channel, batches them with the [`Accumulator`], sends closed
//! batches (at most `max_in_flight` at a time) and answers every message and
//! every flush once its batch is settled.
//!
//! It owns the timers, the in-flight requests and their retries; the
//! batching rules belong to `accumulator.rs`, the public handle to
//! `mod.rs`. The transport is the [`BatchSink`] trait so tests can drive
//! the task with a paused clock.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use weir_protocol::ProduceResult;

use super::accumulator::{Accumulator, Batch, Limits};
use crate::{Encoding, Error, RetryBackoff};

/// Where a message's outcome is delivered.
pub(crate) type Reply = oneshot::Sender<Result<ProduceResult, Error>>;

/// What a [`Producer`](super::Producer) handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    /// One message, already serialized in the sink's encoding: a JSON
    /// object, or a one-message binary produce body.
    Send { message: Vec<u8>, reply: Reply },
    /// Send what is pending now; answer once everything before is settled.
    Flush(oneshot::Sender<()>),
    /// Stop accepting messages; drain and end.
    Close,
}

/// Sends one produce body of `messages` messages (`{"messages":[...]}`,
/// or a binary produce body) and returns one result per message, in order.
pub(crate) trait BatchSink: Send + Sync + 'static {
    /// The encoding of the bodies this sink sends.
    fn encoding(&self) -> Encoding {
        Encoding::Json
    }

    fn produce(
        &self,
        body: Bytes,
        messages: usize,
    ) -> impl Future<Output = Result<Vec<ProduceResult>, Error>> + Send;
}

/// How a batch that failed transiently is sent again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retries {
    pub retries: u32,
    pub backoff: RetryBackoff,
}

/// Runs until the channel is closed (by [`Command::Close`] or by dropping
/// every handle) and everything received has been sent and answered.
pub(crate) async fn run<S: BatchSink>(
    sink: Arc<S>,
    limits: Limits,
    max_in_flight: usize,
    retries: Retries,
    mut commands: mpsc::Receiver<Command>,
) {
    let max_in_flight = max_in_flight.max(1);
    let mut open = Accumulator::new(limits, sink.encoding());
    let mut closed = Closed::default();
    let mut in_flight = FuturesUnordered::new();
    let mut receiving = true;
    loop {
        while in_flight.len() < max_in_flight {
            let Some((seq, batch)) = closed.ready.pop_front() else {
                break;
            };
            in_flight.push(deliver(sink.clone(), seq, batch, retries));
        }
        if !receiving && open.is_empty() && closed.ready.is_empty() && in_flight.is_empty() {
            break;
        }
        // Stop taking messages while closed batches wait for a free slot:
        // that is what makes the bounded channel push back on senders.
        let accept = receiving && closed.ready.is_empty();
        // While every slot is busy, the open batch keeps filling past its
        // linger instead of being closed early into a smaller batch.
        let linger = open
            .deadline()
            .filter(|_| closed.ready.is_empty() && in_flight.len() < max_in_flight);

        tokio::select! {
            biased;
            Some(seq) = in_flight.next(), if !in_flight.is_empty() => closed.settled(seq),
            command = commands.recv(), if accept => match command {
                Some(Command::Send { message, reply }) => {
                    closed.push(open.push(&message, reply, Instant::now()));
                    closed.push(open.take_if_full());
                }
                Some(Command::Flush(waiter)) => {
                    closed.push(open.take());
                    closed.flush(waiter);
                }
                Some(Command::Close) => commands.close(),
                None => {
                    receiving = false;
                    closed.push(open.take());
                }
            },
            () = sleep_until(linger.unwrap_or_else(Instant::now)), if linger.is_some() => {
                closed.push(open.take());
            }
        }
    }
}

/// Closed batches: those waiting for a send slot, and the bookkeeping that
/// answers a flush once every batch closed before it is settled.
#[derive(Default)]
struct Closed {
    ready: VecDeque<(u64, Batch<Reply>)>,
    unsettled: BTreeSet<u64>,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    next_seq: u64,
}

impl Closed {
    fn push(&mut self, batch: Option<Batch<Reply>>) {
        if let Some(batch) = batch {
            self.unsettled.insert(self.next_seq);
            self.ready.push_back((self.next_seq, batch));
            self.next_seq += 1;
        }
    }

    /// `waiter` is answered once every batch closed so far is settled.
    fn flush(&mut self, waiter: oneshot::Sender<()>) {
        self.flushes.push((self.next_seq, waiter));
        self.answer_flushes();
    }

    fn settled(&mut self, seq: u64) {
        self.unsettled.remove(&seq);
        self.answer_flushes();
    }

    fn answer_flushes(&mut self) {
        let oldest = self.unsettled.first().copied();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(upto, _)| oldest.is_none_or(|oldest| oldest >= *upto));
        self.flushes = waiting;
        for (_, waiter) in done {
            let _ = waiter.send(());
        }
    }
}

/// Sends one batch, again after transient failures, and answers each of its
/// messages; returns its sequence number.
async fn deliver<S: BatchSink>(
    sink: Arc<S>,
    seq: u64,
    batch: Batch<Reply>,
    retries: Retries,
) -> u64 {
    let expected = batch.tags.len();
    let body = Bytes::from(batch.body);
    let mut attempt = 0;
    let outcome = loop {
        match sink.produce(body.clone(), expected).await {
            Err(e) if e.is_transient() && attempt < retries.retries => {
                attempt += 1;
                tokio::time::sleep(retries.backoff.delay_after(attempt, &e)).await;
            }
            outcome => break outcome,
        }
    };
    match outcome {
        Ok(results) if results.len() == expected => {
            for (reply, result) in batch.tags.into_iter().zip(results) {
                // A dropped `Delivery` only means nobody waits for the result.
                let _ = reply.send(Ok(result));
            }
        }
        Ok(results) => {
            let error = Error::Protocol(format!(
                "{} produce results for a batch of {expected} messages",
                results.len()
            ));
            fail_all(batch.tags, &error);
        }
        Err(error) => fail_all(batch.tags, &error),
    }
    seq
}

fn fail_all(replies: Vec<Reply>, error: &Error) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}
