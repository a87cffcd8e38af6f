//! Reports of the bench workloads: JSON with `--output json`, a short human
//! summary otherwise. Latencies are in milliseconds with microsecond
//! resolution (HDR histograms of µs, 3 significant digits).

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::output::{outln, Printer};

/// The result of a produce run, as printed with `--output json`.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub workload: &'static str,
    /// `http` or `ws`.
    pub transport: &'static str,
    /// `json` or `binary`.
    pub encoding: &'static str,
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

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Samples in the histogram.
    pub samples: u64,
}

pub fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |v: u64| v as f64 / 1000.0;
    Latency {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        samples: h.len(),
    }
}

/// The setup phase of `bench consume`: filling the topic.
#[derive(Debug, Serialize)]
pub struct FillReport {
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub batch: usize,
    pub concurrency: usize,
}

/// The result of `bench consume`.
#[derive(Debug, Serialize)]
pub struct ConsumeReport {
    pub workload: &'static str,
    pub transport: &'static str,
    /// What each ack request carries: `ids` (every message's) or `batch`
    /// (the pull's batch ack id).
    pub ack: &'static str,
    /// Of the fill and of the pull responses: `json` or `binary`.
    pub encoding: &'static str,
    pub topic: String,
    pub subscription: String,
    /// Filled by the bench before the run (absent with --no-fill).
    pub fill: Option<FillReport>,
    /// Messages acked.
    pub messages: u64,
    /// Pull requests, and those that returned nothing.
    pub pulls: u64,
    pub empty_pulls: u64,
    /// Ack requests (one per non-empty pull).
    pub acks: u64,
    /// Ack ids the server did not know (lease lost): should be 0.
    pub ack_unknown: u64,
    /// Deliveries with attempt > 1: should be 0.
    pub redeliveries: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    /// Payload bytes received per second (values as sent, not JSON framing).
    pub mb_per_sec: f64,
    pub batch: usize,
    pub concurrency: usize,
    pub message_bytes: usize,
    /// One pull + ack cycle.
    pub latency_ms: Latency,
    pub pull_latency_ms: Latency,
    pub ack_latency_ms: Latency,
    pub wal_syncs: u64,
    pub syncs_per_sec: f64,
}

/// The result of `bench e2e`.
#[derive(Debug, Serialize)]
pub struct E2eReport {
    pub workload: &'static str,
    pub transport: &'static str,
    /// Of the produce requests and pull responses: `json` or `binary`.
    pub encoding: &'static str,
    /// Asked rate, msgs/s.
    pub rate: u64,
    /// Sent and received per second over the measured window.
    pub achieved_rate: f64,
    pub received_rate: f64,
    /// Messages sent in the measured window (after the warm-up).
    pub sent: u64,
    /// Of those, received.
    pub received: u64,
    /// Sent but never received before the drain timeout.
    pub missing: u64,
    /// Deliveries with attempt > 1.
    pub redeliveries: u64,
    pub warmup_seconds: f64,
    pub seconds: f64,
    pub mb_per_sec: f64,
    pub message_bytes: usize,
    /// Most messages per pull.
    pub batch: usize,
    /// Consumers.
    pub concurrency: usize,
    pub produce_requests: u64,
    /// Receive time − send time per message.
    pub latency_ms: Latency,
    /// Produce request latency (durable append).
    pub produce_latency_ms: Latency,
    pub wal_syncs: u64,
    pub syncs_per_sec: f64,
}

fn line(name: &str, l: &Latency, decimals: usize) -> String {
    format!(
        "{name} ms: p50 {:.d$}  p90 {:.d$}  p99 {:.d$}  p99.9 {:.d$}  max {:.d$}",
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        d = decimals
    )
}

pub fn print_produce(printer: &Printer, r: &BenchReport) {
    if printer.is_json() {
        return printer.json(r);
    }
    outln!(
        "{}: {} msgs in {:.2} s = {:.0} msgs/s, {:.1} MB/s ({} B messages, batch {}, concurrency {}, {} {})",
        r.workload, r.messages, r.seconds, r.msgs_per_sec, r.mb_per_sec, r.message_bytes, r.batch, r.concurrency, r.transport, r.encoding
    );
    outln!("{}", line("request latency", &r.latency_ms, 2));
    outln!("WAL syncs: {} ({:.0}/s)", r.wal_syncs, r.syncs_per_sec);
}

pub fn print_consume(printer: &Printer, r: &ConsumeReport) {
    if printer.is_json() {
        return printer.json(r);
    }
    if let Some(f) = &r.fill {
        outln!(
            "fill: {} msgs in {:.2} s = {:.0} msgs/s (batch {}, concurrency {})",
            f.messages,
            f.seconds,
            f.msgs_per_sec,
            f.batch,
            f.concurrency
        );
    }
    outln!(
        "consume: {} msgs acked in {:.2} s = {:.0} msgs/s, {:.1} MB/s ({} B messages, pull batch {}, concurrency {}, {} {}, acks by {})",
        r.messages, r.seconds, r.msgs_per_sec, r.mb_per_sec, r.message_bytes, r.batch, r.concurrency, r.transport, r.encoding, r.ack
    );
    outln!(
        "requests: {} pulls ({} empty), {} acks; {} unknown ack ids, {} redeliveries",
        r.pulls,
        r.empty_pulls,
        r.acks,
        r.ack_unknown,
        r.redeliveries
    );
    outln!("{}", line("pull latency", &r.pull_latency_ms, 2));
    outln!("{}", line("ack latency ", &r.ack_latency_ms, 2));
    outln!("{}", line("pull+ack    ", &r.latency_ms, 2));
    outln!("WAL syncs: {} ({:.0}/s)", r.wal_syncs, r.syncs_per_sec);
}

pub fn print_e2e(printer: &Printer, r: &E2eReport) {
    if printer.is_json() {
        return printer.json(r);
    }
    outln!(
        "e2e ({} {}): {} msgs sent at {:.0} msgs/s (asked {}), {} received ({} missing, {} redelivered) in {:.2} s ({} B messages, {} consumers, pull batch {})",
        r.transport,
        r.encoding,
        r.sent,
        r.achieved_rate,
        r.rate,
        r.received,
        r.missing,
        r.redeliveries,
        r.seconds,
        r.message_bytes,
        r.concurrency,
        r.batch
    );
    outln!("{}", line("end-to-end latency", &r.latency_ms, 3));
    outln!("{}", line("produce request   ", &r.produce_latency_ms, 3));
    outln!(
        "produce requests: {}; WAL syncs: {} ({:.0}/s)",
        r.produce_requests,
        r.wal_syncs,
        r.syncs_per_sec
    );
}
