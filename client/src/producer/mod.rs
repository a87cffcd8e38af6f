//! The batching [`Producer`]: many small `send`s become few produce
//! requests, like Kafka's `linger.ms` / `batch.size`, and batches that fail
//! transiently are sent again — without duplicates, because every message
//! carries an idempotency `id` (generated when the caller gave none), like
//! Kafka's idempotent producer.
//!
//! This module owns the public handle, its configuration and the id
//! generator. The batching rules are in `accumulator.rs`, the background
//! loop and its retries in `task.rs`; the handle only serializes messages
//! (in the client's [`Encoding`]: JSON, or binary records) and talks to
//! that loop over a bounded channel, so a slow server slows senders down
//! instead of growing memory.

mod accumulator;
mod task;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use weir_protocol::{ProduceMessage, ProduceResult};

use crate::encoding::encode_message;
use crate::{Client, Encoding, Error, RetryBackoff};
use accumulator::Limits;
use task::{BatchSink, Command, Retries};

/// How a [`Producer`] batches.
///
/// ```no_run
/// use std::time::Duration;
/// use weir_client::ProducerConfig;
/// let config = ProducerConfig {
///     linger: Duration::from_millis(20),
///     max_batch_messages: 5_000,
///     retries: 10,
///     ..ProducerConfig::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    /// How long the first message of a batch waits for others before the
    /// batch is sent (default 5 ms). While `max_in_flight` requests are
    /// outstanding, batches keep filling regardless.
    pub linger: Duration,
    /// Most messages per produce request (default 1000, at least 1).
    pub max_batch_messages: usize,
    /// Most bytes per produce request body (default 1 MiB). A message larger
    /// than this is sent alone.
    pub max_batch_bytes: usize,
    /// Produce requests outstanding at once (default 1, at least 1). With 1,
    /// messages of one producer are appended in `send` order; more requests
    /// raise throughput but batches may then land out of order.
    pub max_in_flight: usize,
    /// Messages buffered between `send` and the batching task (default
    /// 10000, at least 1); when full, `send` waits.
    pub queue_capacity: usize,
    /// Give every message sent without an `id` a generated one, unique to
    /// this producer (default `true`). The server then stores a message
    /// once however often its batch is sent within the topic's
    /// `dedupe_window_ms` (a repeat answers `duplicate: true` with the
    /// first offset), so a retried batch whose first attempt did land —
    /// a timeout after the server committed — adds no duplicates.
    pub idempotent: bool,
    /// How often a batch that failed transiently (server unreachable,
    /// timed out, overloaded, rate limited, restarting) is sent again
    /// before its messages fail (default 5; 0 = never). Without
    /// `idempotent` (or ids of the caller's), a retry after a timeout may
    /// store messages twice.
    pub retries: u32,
    /// Pauses before those retries (default 100 ms doubling to 5 s,
    /// jittered), never shorter than the server's `Retry-After`. While a
    /// batch waits to be retried, later batches wait too (with
    /// `max_in_flight` 1, order is kept).
    pub retry_backoff: RetryBackoff,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            max_batch_messages: 1000,
            max_batch_bytes: 1 << 20,
            max_in_flight: 1,
            queue_capacity: 10_000,
            idempotent: true,
            retries: 5,
            retry_backoff: RetryBackoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                jitter: 0.5,
            },
        }
    }
}

/// A batching producer for one topic. Cheap to clone; clones share the batch.
///
/// A background task sends a batch when `linger` has passed since its first
/// message or it is full. A batch is one produce request, so it is appended
/// all or nothing: if the server rejects it (for instance because one of its
/// messages exceeds the topic's `max_message_bytes`), every message of the
/// batch receives that error. A batch that fails transiently is sent again
/// (`retries`, `retry_backoff`); with `idempotent` (the default) every
/// message carries an `id`, so a retry never stores a message twice.
///
/// Dropping every handle without [`close`](Producer::close) still sends what
/// was accepted, as long as the runtime keeps running.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::Error> {
/// use weir_client::{Client, ProduceMessage, ProduceMessageExt, ProducerConfig};
/// let client = Client::new("http://127.0.0.1:8080")?;
/// let producer = client.producer("orders", ProducerConfig::default())?;
/// let mut deliveries = Vec::new();
/// for i in 0..100 {
///     deliveries.push(producer.send(ProduceMessage::json(&i)?).await?);
/// }
/// for delivery in deliveries {
///     let result = delivery.await?;
///     println!("partition {} offset {}", result.partition, result.offset);
/// }
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    commands: mpsc::Sender<Command>,
    finished: watch::Receiver<bool>,
    /// Present when messages without an id get one.
    ids: Option<Arc<IdGenerator>>,
    /// How `send` serializes messages: the sink's encoding.
    encoding: Encoding,
}

/// Idempotency ids unique to one producer: a random prefix (64 bits from
/// the OS) and a sequence number.
#[derive(Debug)]
struct IdGenerator {
    prefix: String,
    next: AtomicU64,
}

impl IdGenerator {
    fn new() -> Result<Self, Error> {
        let prefix = getrandom::u64()
            .map_err(|e| Error::Local(format!("no randomness for producer ids: {e}")))?;
        Ok(IdGenerator {
            prefix: format!("wp-{prefix:016x}"),
            next: AtomicU64::new(0),
        })
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

impl Client {
    /// A batching [`Producer`] for `topic`, whose batches are sent in the
    /// client's [`Encoding`]. Must be called inside a Tokio runtime, which
    /// runs its background task.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let producer = client.producer("orders", Default::default())?;
    /// # Ok(()) }
    /// ```
    pub fn producer(&self, topic: &str, config: ProducerConfig) -> Result<Producer, Error> {
        let sink = HttpSink {
            client: self.clone(),
            topic: topic.to_owned(),
            encoding: self.encoding(),
        };
        Producer::spawn(sink, &config)
    }
}

impl Producer {
    fn spawn<S: BatchSink>(sink: S, config: &ProducerConfig) -> Result<Producer, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Local("a `Producer` must be created inside a Tokio runtime".to_owned())
        })?;
        let limits = Limits {
            max_messages: config.max_batch_messages,
            max_bytes: config.max_batch_bytes,
            linger: config.linger,
        };
        let retries = Retries {
            retries: config.retries,
            backoff: config.retry_backoff,
        };
        let ids = match config.idempotent {
            true => Some(Arc::new(IdGenerator::new()?)),
            false => None,
        };
        let (commands, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let (done, finished) = watch::channel(false);
        let max_in_flight = config.max_in_flight;
        let encoding = sink.encoding();
        runtime.spawn(async move {
            task::run(Arc::new(sink), limits, max_in_flight, retries, receiver).await;
            done.send_replace(true);
        });
        Ok(Producer {
            commands,
            finished,
            ids,
            encoding,
        })
    }

    /// Queues `message` for the next batch, waiting while the queue is full.
    /// The returned [`Delivery`] resolves once the batch is durable (or
    /// failed); it need not be awaited for the message to be sent.
    ///
    /// Fails at once, without queueing, when the message cannot be valid
    /// (neither or both of `value` and `value_b64`, both `delay_ms` and
    /// `deliver_at`, a reserved `weir-` header), so that one bad message
    /// does not fail a whole batch; or when the producer is closed.
    ///
    /// ```no_run
    /// # async fn demo(producer: weir_client::Producer) -> Result<(), weir_client::Error> {
    /// use weir_client::{ProduceMessage, ProduceMessageExt};
    /// let mut message = ProduceMessage::json(&serde_json::json!({"order": 1}))?;
    /// message.key = Some("customer-7".into());
    /// let result = producer.send(message).await?.await?;
    /// println!("stored at {}:{}", result.partition, result.offset);
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, mut message: ProduceMessage) -> Result<Delivery, Error> {
        check(&message)?;
        if let (None, Some(ids)) = (&message.id, &self.ids) {
            message.id = Some(ids.next());
        }
        let message = match self.encoding {
            Encoding::Json => serde_json::to_vec(&message)?,
            Encoding::Binary => encode_message(message)?,
        };
        let (reply, receiver) = oneshot::channel();
        self.commands
            .send(Command::Send { message, reply })
            .await
            .map_err(|_| Error::ProducerClosed)?;
        Ok(Delivery { receiver })
    }

    /// Sends what is batched now without waiting for `linger`, and returns
    /// once every message sent before the call is settled (durable or
    /// failed; each [`Delivery`] says which).
    ///
    /// ```no_run
    /// # async fn demo(producer: weir_client::Producer) -> Result<(), weir_client::Error> {
    /// producer.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<(), Error> {
        let (waiter, done) = oneshot::channel();
        self.commands
            .send(Command::Flush(waiter))
            .await
            .map_err(|_| Error::ProducerClosed)?;
        done.await.map_err(|_| Error::ProducerClosed)
    }

    /// Stops accepting messages (for every clone), sends everything accepted
    /// and returns when it is settled. Like every `close` of this crate it
    /// consumes the handle; other clones then fail with
    /// [`Error::ProducerClosed`].
    ///
    /// ```no_run
    /// # async fn demo(producer: weir_client::Producer) -> Result<(), weir_client::Error> {
    /// producer.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<(), Error> {
        // Fails only when the task already stopped taking commands.
        let _ = self.commands.send(Command::Close).await;
        let mut finished = self.finished.clone();
        let ended = finished.wait_for(|done| *done).await.map(|_| ());
        // An error means the task ended without finishing: its runtime is
        // shutting down.
        ended.map_err(|_| Error::ProducerClosed)
    }
}

/// The outcome of one [`Producer::send`]: resolves to where the message was
/// stored once its batch is durable, or to the batch's error.
///
/// ```no_run
/// # async fn demo(producer: weir_client::Producer) -> Result<(), weir_client::Error> {
/// use weir_client::{ProduceMessage, ProduceMessageExt};
/// let delivery = producer.send(ProduceMessage::bytes(b"\x00\x01")).await?;
/// match delivery.await {
///     Ok(result) => println!("offset {}", result.offset),
///     Err(e) => eprintln!("not stored: {e} (code {:?})", e.code()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Delivery {
    receiver: oneshot::Receiver<Result<ProduceResult, Error>>,
}

impl Future for Delivery {
    type Output = Result<ProduceResult, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(Error::ProducerClosed)))
    }
}

/// Rejects messages the server would reject for their shape alone.
/// The server's rules for one message (from the protocol crate), checked
/// before it is queued: a bad message fails alone, not its whole batch.
fn check(message: &ProduceMessage) -> Result<(), Error> {
    crate::client::check_messages(std::slice::from_ref(message))
}

/// The real transport: one `POST /v1/topics/{topic}/messages` per batch.
struct HttpSink {
    client: Client,
    topic: String,
    encoding: Encoding,
}

impl BatchSink for HttpSink {
    fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn produce(
        &self,
        body: Bytes,
        messages: usize,
    ) -> impl Future<Output = Result<Vec<ProduceResult>, Error>> + Send {
        self.client
            .produce_body(&self.topic, body, messages, self.encoding)
    }
}

#[cfg(test)]
mod tests;
