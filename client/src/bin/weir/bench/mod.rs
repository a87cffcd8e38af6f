//! `weir bench`: load generators users run to size a deployment.
//!
//! - `produce` (`produce.rs`): durable produce throughput.
//! - `consume` (`consume.rs`): queue-mode pull + per-message ack throughput
//!   of a pre-filled subscription.
//! - `e2e` (`e2e.rs`): end-to-end latency (send → receive) at a fixed rate.
//!
//! Every workload prints progress on stderr each second, a human summary on
//! stdout, or a JSON report with `--output json` (`report.rs`). Latency
//! figures come from HDR histograms at microsecond resolution; WAL syncs
//! are read from the server's `/metrics` before and after the run.
//!
//! The message path of `consume` and `e2e` (produce, pull, ack) goes
//! through a [`Transport`]: [`Http`], or `ws.rs` (`--transport ws`:
//! messages pushed on subscription sockets, acks over the socket, produce
//! over HTTP). `produce` sends its batches over HTTP or publish sockets.
//!
//! `--encoding binary` sends produce requests (and publish frames) in the
//! binary batch encoding and asks for binary pull responses; the bodies of
//! either encoding are built once per batch (`body.rs`).
//!
//! Clean-up: what a workload creates (topic, subscription) is deleted at
//! the end unless `--keep`; what it keeps, or adds to a topic that existed
//! before, is said on stderr.

mod body;
mod consume;
mod e2e;
mod produce;
mod report;
mod ws;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Subcommand;
use hdrhistogram::Histogram;
use weir_client::{AckResponse, Client, Error, ErrorCode, PullRequest, PullResponse, TopicSpec};

use super::encoding::EncodingArg;
use super::output::{errln, stderr_is_terminal, write_stderr, Printer};
use body::Body;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable produce throughput.
    Produce {
        /// Topic to produce to (created when missing, and then deleted at
        /// the end unless --keep).
        #[arg(long, default_value = "bench")]
        topic: String,
        /// Partitions of the topic when created.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per produce request (1..=100000).
        #[arg(long, default_value_t = 500, value_parser = positive(100_000))]
        batch: usize,
        /// Concurrent connections (1..=10000).
        #[arg(long, default_value_t = 8, value_parser = positive(10_000))]
        concurrency: usize,
        /// Total messages (ignored when --duration is given).
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Run for this many seconds instead of a count.
        #[arg(long)]
        duration: Option<u64>,
        /// How batches are sent: `http` (one request per batch per
        /// connection) or `ws` (one publish socket per connection, each
        /// batch a `publish` frame).
        #[arg(long, value_enum, default_value = "http")]
        transport: TransportKind,
        /// Encoding of the batches: `json` or `binary`
        /// (application/vnd.weir.batch; raw values, over HTTP and on
        /// publish sockets alike).
        #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
        encoding: EncodingArg,
        /// Keep the topic (and its messages) when the bench created it.
        #[arg(long)]
        keep: bool,
    },
    /// Queue-mode consume throughput: pull + one ack request per pull, after
    /// filling a topic (or draining an existing subscription with --no-fill).
    Consume(consume::ConsumeArgs),
    /// End-to-end latency (produce → pull) at a fixed message rate.
    E2e(e2e::E2eArgs),
}

/// A `usize` flag in `1..=max`: out of range is an error, not a clamp.
fn positive(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max)
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
            transport,
            encoding,
            keep,
        } => {
            let created = ensure_topic(client, &topic, partitions).await?;
            let load = produce::Load {
                topic: &topic,
                size,
                batch,
                concurrency,
                count,
                duration: duration.map(Duration::from_secs),
                transport,
                encoding: encoding.into(),
            };
            let report = produce::run(client, printer, &load).await;
            let produced = report.as_ref().map_or(0, |r| r.messages);
            clean_up(client, &topic, None, created, keep, Some(produced)).await;
            report::print_produce(printer, &report?);
        }
        BenchCommand::Consume(args) => {
            let report = consume::run(args, client, printer).await?;
            report::print_consume(printer, &report);
        }
        BenchCommand::E2e(args) => {
            let report = e2e::run(args, client, printer).await?;
            report::print_e2e(printer, &report);
        }
    }
    Ok(())
}

/// How messages travel between the bench and the server (each workload's
/// `--transport` help says what goes where).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// HTTP requests.
    Http,
    /// WebSockets.
    Ws,
}

impl TransportKind {
    fn name(self) -> &'static str {
        match self {
            TransportKind::Http => "http",
            TransportKind::Ws => "ws",
        }
    }
}

/// The message path of the workloads.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Appends a produce body built beforehand; returns once the server
    /// answered (the messages are durable).
    fn produce(&self, topic: &str, body: Body) -> impl Future<Output = Result<(), Error>> + Send;
    /// Leases messages of a subscription (with the pull's batch ack id
    /// where the transport has one).
    fn pull(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
    ) -> impl Future<Output = Result<PullResponse, Error>> + Send;
    /// Settles deliveries that `request` (the pull's) leased.
    fn ack(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
        ack_ids: Vec<String>,
    ) -> impl Future<Output = Result<AckResponse, Error>> + Send;
}

/// [`Transport`] over the HTTP API, through the client's connection pool
/// (pulls in the client's encoding).
#[derive(Clone)]
pub struct Http(pub Client);

impl Transport for Http {
    async fn produce(&self, topic: &str, body: Body) -> Result<(), Error> {
        body.produce(&self.0, topic).await
    }

    async fn pull(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
    ) -> Result<PullResponse, Error> {
        self.0.pull_batch(topic, sub, request).await
    }

    async fn ack(
        &self,
        topic: &str,
        sub: &str,
        _request: &PullRequest,
        ack_ids: Vec<String>,
    ) -> Result<AckResponse, Error> {
        self.0.ack(topic, sub, ack_ids).await
    }
}

/// Creates `topic` with `partitions` when missing; true when it was created.
async fn ensure_topic(client: &Client, topic: &str, partitions: u32) -> Result<bool, Error> {
    match client.topic(topic).await {
        Ok(_) => Ok(false),
        Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => {
            let spec = TopicSpec {
                partitions: Some(partitions),
                ..TopicSpec::default()
            };
            client.create_topic(topic, &spec).await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn new_histogram() -> Result<Histogram<u64>, Error> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Error::Local(format!("histogram setup failed: {e}")))
}

/// Adds a task's histogram to the shared one.
fn merge(into: &Mutex<Histogram<u64>>, local: &Histogram<u64>) {
    let mut h = match into.lock() {
        Ok(h) => h,
        Err(poisoned) => poisoned.into_inner(),
    };
    let _ = h.add(local);
}

fn snapshot(h: &Mutex<Histogram<u64>>) -> Histogram<u64> {
    match h.lock() {
        Ok(h) => h.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Reads `weir_wal_syncs_total` from the server's metrics (0 if unavailable).
async fn wal_syncs(client: &Client) -> u64 {
    // Through the client: the server may require its token and TLS trust.
    let Ok(text) = client.metrics().await else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("weir_wal_syncs_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Deletes what a workload created unless `keep` (failures are reported,
/// not fatal), and says on stderr what stays: a kept subscription or
/// topic, or the `added` messages (`None`: a number not counted) in a topic
/// that existed before.
async fn clean_up(
    client: &Client,
    topic: &str,
    sub: Option<&str>,
    created_topic: bool,
    keep: bool,
    added: Option<u64>,
) {
    if let Some(sub) = sub {
        if keep {
            errln!("weir: kept subscription `{sub}` of topic `{topic}` (--keep)");
        } else if let Err(e) = client.delete_subscription(topic, sub).await {
            if e.code() != Some(ErrorCode::SubscriptionNotFound) {
                errln!("weir: cannot delete subscription `{sub}` of topic `{topic}`: {e}");
            }
        }
    }
    if created_topic {
        if keep {
            errln!(
                "weir: kept topic `{topic}` (--keep); delete it with `weir topics delete {topic}`"
            );
        } else if let Err(e) = client.delete_topic(topic).await {
            errln!("weir: cannot delete topic `{topic}` the bench created: {e}");
        }
    } else if added != Some(0) {
        let count = added.map_or("the bench's".to_owned(), |n| n.to_string());
        errln!(
            "weir: {count} messages were added to topic `{topic}`, which existed before the \
             bench; they stay"
        );
    }
}

/// A line of progress on stderr every second, built by `line`: text mode,
/// and only when stderr is a terminal (a log gets no carriage returns).
struct Progress {
    task: tokio::task::JoinHandle<()>,
    shown: bool,
}

impl Progress {
    fn start<F>(printer: &Printer, mut line: F) -> Progress
    where
        F: FnMut() -> String + Send + 'static,
    {
        let shown = !printer.is_json() && stderr_is_terminal();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                if shown {
                    write_stderr(format_args!("\r{}   ", line()));
                }
            }
        });
        Progress { task, shown }
    }

    /// Stops the display and ends its line.
    fn finish(self) {
        self.task.abort();
        if self.shown {
            errln!();
        }
    }
}

/// Waits for every task; returns the first error.
async fn join_all(tasks: Vec<tokio::task::JoinHandle<Result<(), Error>>>) -> Result<(), Error> {
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
    first_error.map_or(Ok(()), Err)
}

/// A counter shared by the tasks of a run.
type Counter = Arc<std::sync::atomic::AtomicU64>;

fn counter() -> Counter {
    Arc::new(std::sync::atomic::AtomicU64::new(0))
}
