//! `weir bench`: load generators users run to size a deployment. Figures
//! come from an HDR histogram of per-request latency; progress is printed
//! every second while the run lasts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Subcommand;
use hdrhistogram::Histogram;
use serde::Serialize;
use weir_client::{Client, Error, ErrorCode, TopicSpec};

use super::output::Printer;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable produce throughput over HTTP.
    Produce {
        /// Topic to produce to (created when missing).
        #[arg(long, default_value = "bench")]
        topic: String,
        /// Partitions of the topic when created.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per produce request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Total messages (ignored when --duration is given).
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Run for this many seconds instead of a count.
        #[arg(long)]
        duration: Option<u64>,
    },
}

/// The result of a run, as printed with `--output json`.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub workload: &'static str,
    pub messages: u64,
    pub requests: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub batch: usize,
    pub concurrency: usize,
    pub message_bytes: usize,
    pub latency_ms: Latency,
    pub wal_syncs: u64,
    pub syncs_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub async fn run(cmd: BenchCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match cmd {
        BenchCommand::Produce {
            topic,
            partitions,
            size,
            batch,
            concurrency,
            count,
            duration,
        } => {
            let report = produce(
                client,
                printer,
                &topic,
                partitions,
                size,
                batch.max(1),
                concurrency.max(1),
                count,
                duration.map(Duration::from_secs),
            )
            .await?;
            print_report(printer, &report);
        }
    }
    Ok(())
}

/// A produce body of `batch` messages whose values are `size`-byte JSON strings.
fn batch_body(size: usize, batch: usize) -> Vec<u8> {
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

#[allow(clippy::too_many_arguments)]
async fn produce(
    client: &Client,
    printer: &Printer,
    topic: &str,
    partitions: u32,
    size: usize,
    batch: usize,
    concurrency: usize,
    count: u64,
    duration: Option<Duration>,
) -> Result<BenchReport, Error> {
    match client.topic(topic).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {
            let spec = TopicSpec {
                partitions: Some(partitions),
                ..TopicSpec::default()
            };
            client.create_topic(topic, &spec).await?;
        }
        Err(e) => return Err(e),
    }
    let syncs_before = wal_syncs(client).await;
    let body = Arc::new(batch_body(size, batch));
    let produced = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let histogram = Arc::new(Mutex::new(new_histogram()?));
    let budget = Arc::new(AtomicU64::new(if duration.is_some() {
        u64::MAX
    } else {
        count
    }));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, body, produced, requests, stop, histogram, budget, topic) = (
            client.clone(),
            body.clone(),
            produced.clone(),
            requests.clone(),
            stop.clone(),
            histogram.clone(),
            budget.clone(),
            topic.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = new_histogram()?;
            let result = loop {
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                // Claim a batch from the budget; stop when it is spent.
                let claimed = budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(batch as u64)
                });
                if claimed.is_err() {
                    break Ok(());
                }
                let t0 = Instant::now();
                if let Err(e) = client.produce_raw(&topic, body.to_vec()).await {
                    break Err(e);
                }
                let _ = local.record(t0.elapsed().as_micros() as u64);
                produced.fetch_add(batch as u64, Ordering::Relaxed);
                requests.fetch_add(1, Ordering::Relaxed);
            };
            if let Ok(mut h) = histogram.lock() {
                let _ = h.add(&local);
            }
            result
        }));
    }
    let progress = {
        let (produced, stop) = (produced.clone(), stop.clone());
        let printer_json = printer.is_json();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = produced.load(Ordering::Relaxed);
                if !printer_json {
                    eprint!(
                        "\r{:>10} msgs  {:>10.0} msgs/s   ",
                        now,
                        (now - last) as f64
                    );
                }
                last = now;
                if let Some(d) = duration {
                    if started.elapsed() >= d {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::Local(format!("bench task failed: {e}")));
            }
        }
    }
    progress.abort();
    if !printer.is_json() {
        eprintln!();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    let messages = produced.load(Ordering::Relaxed);
    let syncs = wal_syncs(client).await.saturating_sub(syncs_before);
    let h = match histogram.lock() {
        Ok(h) => h.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    Ok(BenchReport {
        workload: "produce",
        messages,
        requests: requests.load(Ordering::Relaxed),
        seconds,
        msgs_per_sec: messages as f64 / seconds,
        mb_per_sec: (messages as f64 * size as f64) / seconds / 1e6,
        batch,
        concurrency,
        message_bytes: size,
        latency_ms: latency(&h),
        wal_syncs: syncs,
        syncs_per_sec: syncs as f64 / seconds,
    })
}

fn new_histogram() -> Result<Histogram<u64>, Error> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Error::Local(format!("histogram setup failed: {e}")))
}

fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |v: u64| v as f64 / 1000.0;
    Latency {
        p50: ms(h.value_at_quantile(0.5)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Reads `weir_wal_syncs_total` from the server's metrics (0 if unavailable).
async fn wal_syncs(client: &Client) -> u64 {
    let Ok(response) = reqwest::get(format!("{}/metrics", client.base())).await else {
        return 0;
    };
    let Ok(text) = response.text().await else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("weir_wal_syncs_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn print_report(printer: &Printer, r: &BenchReport) {
    if printer.is_json() {
        return printer.json(r);
    }
    println!(
        "{}: {} msgs in {:.2} s = {:.0} msgs/s, {:.1} MB/s ({} B messages, batch {}, concurrency {})",
        r.workload, r.messages, r.seconds, r.msgs_per_sec, r.mb_per_sec, r.message_bytes, r.batch, r.concurrency
    );
    println!(
        "request latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.p999, r.latency_ms.max
    );
    println!("WAL syncs: {} ({:.0}/s)", r.wal_syncs, r.syncs_per_sec);
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
