//! `weir bench produce`: durable produce throughput. `--concurrency`
//! connections each send `--batch`-message requests until `--count`
//! messages are produced or `--duration` is over. The same load fills the
//! topic of `weir bench consume`. Batches are JSON or, with `--encoding
//! binary`, binary (values of `--size` raw bytes), over HTTP or publish
//! sockets; a full batch's body is built once and shared (`body.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use weir_client::{Client, Encoding, Error, WsPublisher};
use weir_protocol::{ProduceMessage, ProduceRequest};

use super::body::Body;
use super::report::{latency, BenchReport};
use super::{
    counter, join_all, merge, new_histogram, snapshot, wal_syncs, Progress, TransportKind,
};
use crate::output::Printer;

pub async fn run(
    client: &Client,
    printer: &Printer,
    load: &Load<'_>,
) -> Result<BenchReport, Error> {
    let syncs_before = wal_syncs(client).await;
    let outcome = load.run(client, printer, "").await?;
    let syncs = wal_syncs(client).await.saturating_sub(syncs_before);
    let seconds = outcome.seconds;
    Ok(BenchReport {
        workload: "produce",
        transport: load.transport.name(),
        encoding: load.encoding.as_str(),
        messages: outcome.messages,
        requests: outcome.requests,
        seconds,
        msgs_per_sec: outcome.messages as f64 / seconds,
        mb_per_sec: (outcome.messages as f64 * load.size as f64) / seconds / 1e6,
        batch: load.batch,
        concurrency: load.concurrency,
        message_bytes: load.size,
        latency_ms: latency(&outcome.histogram),
        wal_syncs: syncs,
        syncs_per_sec: syncs as f64 / seconds,
    })
}

/// The messages of a JSON produce body.
fn parse_batch(body: &[u8]) -> Result<Vec<ProduceMessage>, Error> {
    serde_json::from_slice::<ProduceRequest>(body)
        .map(|r| r.messages)
        .map_err(|e| Error::Local(format!("bench body: {e}")))
}

/// A batched produce load.
pub struct Load<'a> {
    pub topic: &'a str,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages per request.
    pub batch: usize,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Messages to produce (ignored with a duration).
    pub count: u64,
    pub duration: Option<Duration>,
    /// HTTP requests, or publish sockets (`/ws/publish`).
    pub transport: TransportKind,
    /// Encoding of the batches.
    pub encoding: Encoding,
}

/// What a [`Load`] did.
pub struct Outcome {
    pub messages: u64,
    pub requests: u64,
    pub seconds: f64,
    /// Per-request latency, µs.
    pub histogram: Histogram<u64>,
}

/// Where one task of a load sends its batches.
enum Sender {
    Http(Client),
    /// A publish socket. JSON batches go as `publish` frames of their
    /// messages: those of a full batch are parsed once (`full`).
    Socket {
        publisher: WsPublisher,
        full: Option<Vec<ProduceMessage>>,
    },
}

impl Sender {
    /// A sender over `transport` for batches like `template` (a full one).
    async fn open(
        client: &Client,
        topic: &str,
        transport: TransportKind,
        template: &Body,
    ) -> Result<Sender, Error> {
        match transport {
            TransportKind::Http => Ok(Sender::Http(client.clone())),
            TransportKind::Ws => {
                let publisher = client.publisher_ws(topic).await?;
                let full = match template {
                    Body::Json(body) => Some(parse_batch(body)?),
                    Body::Binary(_) => None,
                };
                Ok(Sender::Socket { publisher, full })
            }
        }
    }

    /// Sends `body` (a full batch: `full`); returns once it is durable.
    async fn send(&self, topic: &str, body: &Body, full: bool) -> Result<(), Error> {
        let (publisher, parsed) = match self {
            Sender::Http(client) => return body.produce(client, topic).await,
            Sender::Socket { publisher, full } => (publisher, full),
        };
        match (body, parsed) {
            (Body::Binary(batch), _) => publisher.publish_batch(batch).await.map(drop),
            (Body::Json(_), Some(messages)) if full => {
                publisher.publish(messages.clone()).await.map(drop)
            }
            (Body::Json(bytes), _) => publisher.publish(parse_batch(bytes)?).await.map(drop),
        }
    }
}

impl Load<'_> {
    /// Runs the load, with progress prefixed by `label`.
    pub async fn run(
        &self,
        client: &Client,
        printer: &Printer,
        label: &'static str,
    ) -> Result<Outcome, Error> {
        let (batch, size, encoding) = (self.batch.max(1), self.size, self.encoding);
        // Built once: every full batch shares these bytes.
        let template = Body::filler(encoding, size, batch);
        let produced = counter();
        let requests = counter();
        let stop = Arc::new(AtomicBool::new(false));
        let histogram = Arc::new(Mutex::new(new_histogram()?));
        let budget = Arc::new(AtomicU64::new(if self.duration.is_some() {
            u64::MAX
        } else {
            self.count
        }));
        let started = Instant::now();
        let transport = self.transport;
        let mut tasks = Vec::new();
        for _ in 0..self.concurrency.max(1) {
            let (client, template, produced, requests, stop, histogram, budget, topic) = (
                client.clone(),
                template.clone(),
                produced.clone(),
                requests.clone(),
                stop.clone(),
                histogram.clone(),
                budget.clone(),
                self.topic.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                let mut local = new_histogram()?;
                let sender = Sender::open(&client, &topic, transport, &template).await?;
                let result = loop {
                    if stop.load(Ordering::Relaxed) {
                        break Ok(());
                    }
                    // Claim up to a batch from the budget; stop when it is spent.
                    let claimed =
                        budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                            (left > 0).then(|| left - left.min(batch as u64))
                        });
                    let n = match claimed {
                        Ok(left) => left.min(batch as u64) as usize,
                        Err(_) => break Ok(()),
                    };
                    let partial;
                    let request = if n == batch {
                        &template
                    } else {
                        partial = Body::filler(encoding, size, n);
                        &partial
                    };
                    let t0 = Instant::now();
                    if let Err(e) = sender.send(&topic, request, n == batch).await {
                        break Err(e);
                    }
                    local.saturating_record(t0.elapsed().as_micros() as u64);
                    produced.fetch_add(n as u64, Ordering::Relaxed);
                    requests.fetch_add(1, Ordering::Relaxed);
                };
                merge(&histogram, &local);
                result
            }));
        }
        let progress = {
            let (produced, stop, duration) = (produced.clone(), stop.clone(), self.duration);
            let mut last = 0;
            Progress::start(printer, move || {
                let now = produced.load(Ordering::Relaxed);
                let rate = now - last;
                last = now;
                if let Some(d) = duration {
                    if started.elapsed() >= d {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                format!("{label}{now:>10} msgs  {rate:>10.0} msgs/s")
            })
        };
        // The duration is enforced by the progress tick and by this timer,
        // whichever comes first (the display may be off).
        let deadline = self.duration.map(|d| {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                stop.store(true, Ordering::Relaxed);
            })
        });
        let result = join_all(tasks).await;
        progress.finish();
        if let Some(d) = deadline {
            d.abort();
        }
        result?;
        Ok(Outcome {
            messages: produced.load(Ordering::Relaxed),
            requests: requests.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
            histogram: snapshot(&histogram),
        })
    }
}
