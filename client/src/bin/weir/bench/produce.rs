//! `weir bench produce`: durable produce throughput. `--concurrency`
//! connections each send `--batch`-message requests until `--count`
//! messages are produced or `--duration` is over. The same load fills the
//! topic of `weir bench consume`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use weir_client::{Client, Error};
use weir_protocol::{ProduceMessage, ProduceRequest};

use super::report::{latency, BenchReport};
use super::{counter, join_all, merge, new_histogram, snapshot, wal_syncs, Progress};
use crate::output::Printer;

#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: &Client,
    printer: &Printer,
    topic: &str,
    size: usize,
    batch: usize,
    concurrency: usize,
    count: u64,
    duration: Option<Duration>,
    websocket: bool,
) -> Result<BenchReport, Error> {
    let syncs_before = wal_syncs(client).await;
    let load = Load {
        topic,
        size,
        batch,
        concurrency,
        count,
        duration,
        websocket,
    };
    let outcome = load.run(client, printer, "").await?;
    let syncs = wal_syncs(client).await.saturating_sub(syncs_before);
    let seconds = outcome.seconds;
    Ok(BenchReport {
        workload: "produce",
        messages: outcome.messages,
        requests: outcome.requests,
        seconds,
        msgs_per_sec: outcome.messages as f64 / seconds,
        mb_per_sec: (outcome.messages as f64 * size as f64) / seconds / 1e6,
        batch,
        concurrency,
        message_bytes: size,
        latency_ms: latency(&outcome.histogram),
        wal_syncs: syncs,
        syncs_per_sec: syncs as f64 / seconds,
    })
}

/// The messages of a produce body built by `batch_body`.
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
    /// Publish sockets (`/ws/publish`) instead of HTTP requests.
    pub websocket: bool,
}

/// What a [`Load`] did.
pub struct Outcome {
    pub messages: u64,
    pub requests: u64,
    pub seconds: f64,
    /// Per-request latency, µs.
    pub histogram: Histogram<u64>,
}

impl Load<'_> {
    /// Runs the load, with progress prefixed by `label`.
    pub async fn run(
        &self,
        client: &Client,
        printer: &Printer,
        label: &'static str,
    ) -> Result<Outcome, Error> {
        let (batch, size) = (self.batch.max(1), self.size);
        let body = Arc::new(batch_body(size, batch));
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
        let websocket = self.websocket;
        let mut tasks = Vec::new();
        for _ in 0..self.concurrency.max(1) {
            let (client, body, produced, requests, stop, histogram, budget, topic) = (
                client.clone(),
                body.clone(),
                produced.clone(),
                requests.clone(),
                stop.clone(),
                histogram.clone(),
                budget.clone(),
                self.topic.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                let mut local = new_histogram()?;
                // Over a socket: the full batch is parsed once, then cloned.
                let (publisher, full) = match websocket {
                    true => (
                        Some(client.publisher_ws(&topic).await?),
                        parse_batch(&body)?,
                    ),
                    false => (None, Vec::new()),
                };
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
                    let request = if n == batch {
                        body.to_vec()
                    } else {
                        batch_body(size, n)
                    };
                    let t0 = Instant::now();
                    let sent = match &publisher {
                        Some(p) if n == batch => p.publish(full.clone()).await.map(drop),
                        Some(p) => match parse_batch(&request) {
                            Ok(messages) => p.publish(messages).await.map(drop),
                            Err(e) => Err(e),
                        },
                        None => client.produce_raw(&topic, request).await.map(drop),
                    };
                    if let Err(e) = sent {
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

/// A produce body of `batch` messages whose values are `size`-byte JSON strings.
pub fn batch_body(size: usize, batch: usize) -> Vec<u8> {
    let value = format!("\"{}\"", "x".repeat(size.saturating_sub(2)));
    let one = format!("{{\"value\":{value}}}");
    let mut body = String::with_capacity((one.len() + 1) * batch + 16);
    body.push_str("{\"messages\":[");
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&one);
    }
    body.push_str("]}");
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_body_is_valid_json_with_sized_values() {
        let body = super::batch_body(100, 3);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["value"].to_string().len(), 100);
    }
}
