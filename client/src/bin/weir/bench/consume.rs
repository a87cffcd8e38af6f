//! `weir bench consume`: queue-mode consume throughput with per-message acks.
//!
//! Setup (with progress): create the topic when missing, fill it with
//! `--count` messages of `--size` bytes (the produce load), create a queue
//! subscription that sees exactly those messages. With `--no-fill`, drain an
//! existing subscription instead.
//!
//! Run: `--concurrency` consumers each loop pull(`--batch`, `--wait-ms`) →
//! one ack request with every ack id of the pull, until the backlog is acked
//! (or `--duration` is over). Pull and ack latencies go to separate HDR
//! histograms; empty pulls (end of the backlog) are counted, not timed.
//! `--encoding binary` fills with binary batches and pulls binary
//! responses (acks stay JSON). `--ack batch` acks each pull with its one
//! batch ack id instead of every message's ack id.
//!
//! Teardown: the subscription and topic are deleted when the bench created
//! them, unless `--keep`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use weir_client::{
    Client, Encoding, Error, ErrorCode, Mode, PullRequest, PullResponse, ReceivedMessage, Start,
    StartName, SubscriptionSpec,
};

use super::produce::Load;
use super::report::{latency, ConsumeReport, FillReport};
use super::ws::Ws;
use super::{
    clean_up, counter, ensure_topic, join_all, merge, new_histogram, positive, snapshot, wal_syncs,
    Http, Progress, Transport, TransportKind,
};
use crate::encoding::EncodingArg;
use crate::output::Printer;

/// Pause after a transient failure (a failover) before the next request.
const TRANSIENT_PAUSE: Duration = Duration::from_millis(50);

/// Messages filled when --count is not given.
const DEFAULT_COUNT: u64 = 1_000_000;

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic to fill and consume (created when missing).
    #[arg(long, default_value = "bench-consume")]
    topic: String,
    /// Subscription to create (or to drain, with --no-fill).
    #[arg(long, default_value = "bench")]
    subscription: String,
    /// Partitions of the topic when created.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Payload size in bytes of the filled messages.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Most messages per pull (1..=1000); each pull is acked with one request.
    #[arg(long, default_value_t = 500, value_parser = positive(1000))]
    batch: usize,
    /// Concurrent consumers (each one pull or ack in flight; 1..=10000).
    #[arg(long, default_value_t = 8, value_parser = positive(10_000))]
    concurrency: usize,
    /// Messages to fill and consume [default: 1000000]. With --no-fill:
    /// stop after about this many (default: the whole backlog).
    #[arg(long)]
    count: Option<u64>,
    /// Stop consuming after this many seconds, drained or not.
    #[arg(long)]
    duration: Option<u64>,
    /// Long-poll time of each pull, in ms (matters only once drained).
    #[arg(long, default_value_t = 50)]
    wait_ms: u64,
    /// Lease length of the created subscription, in ms: long enough that
    /// nothing is redelivered during the run.
    #[arg(long, default_value_t = 600_000)]
    ack_timeout_ms: u64,
    /// Messages per produce request while filling (1..=100000).
    #[arg(long, default_value_t = 1000, value_parser = positive(100_000))]
    fill_batch: usize,
    /// Concurrent produce requests while filling (1..=10000).
    #[arg(long, default_value_t = 8, value_parser = positive(10_000))]
    fill_concurrency: usize,
    /// Do not fill: drain the existing --subscription of --topic.
    #[arg(long)]
    no_fill: bool,
    /// Keep the subscription and topic the bench created.
    #[arg(long)]
    keep: bool,
    /// How messages are received and acked: `http` (pull and ack
    /// requests) or `ws` (pushed on subscription sockets, acked over them;
    /// each socket's credit is --batch, so the next batch flows while the
    /// last one's ack is made durable). The fill is produced over HTTP
    /// either way.
    #[arg(long, value_enum, default_value_t = TransportKind::Http)]
    transport: TransportKind,
    /// Encoding of the fill's produce requests and of the deliveries: `json`
    /// or `binary` (application/vnd.weir.batch; raw values): binary pull
    /// responses, or with `--transport ws` binary delivery frames (a run of
    /// messages per frame; acks stay JSON frames).
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    encoding: EncodingArg,
    /// How each pull is acked: `ids` (one ack id per message) or `batch`
    /// (the pull's one batch ack id; `--transport http` only).
    #[arg(long, value_enum, default_value_t = AckForm::Ids)]
    ack: AckForm,
}

/// What an ack request of the run carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AckForm {
    /// Every message's ack id.
    Ids,
    /// The pull's batch ack id.
    Batch,
}

impl AckForm {
    fn name(self) -> &'static str {
        match self {
            AckForm::Ids => "ids",
            AckForm::Batch => "batch",
        }
    }
}

pub async fn run(
    args: ConsumeArgs,
    client: &Client,
    printer: &Printer,
) -> Result<ConsumeReport, Error> {
    let (topic, sub) = (args.topic.as_str(), args.subscription.as_str());
    if args.ack == AckForm::Batch && args.transport == TransportKind::Ws {
        return Err(Error::Local(
            "--ack batch needs --transport http: messages pushed on a socket have no batch ack id"
                .into(),
        ));
    }
    let sub_exists = match client.subscription(topic, sub).await {
        Ok(_) => true,
        Err(e)
            if matches!(
                e.code(),
                Some(ErrorCode::SubscriptionNotFound | ErrorCode::TopicNotFound)
            ) =>
        {
            false
        }
        Err(e) => return Err(e),
    };
    let mut created_topic = false;
    let mut created_sub = false;
    let mut fill = None;
    // Messages the fill added (they stay in a topic that existed before).
    let mut filled_count = 0;
    if args.no_fill {
        if !sub_exists {
            return Err(Error::Local(format!(
                "--no-fill drains an existing subscription: `{sub}` of topic `{topic}` does not exist"
            )));
        }
    } else {
        if sub_exists {
            return Err(Error::Local(format!(
                "subscription `{sub}` of topic `{topic}` exists already: drain it with --no-fill, \
                 delete it (`weir subs delete`), or pick another --subscription"
            )));
        }
        created_topic = ensure_topic(client, topic, args.partitions).await?;
        // On a new topic, fill then subscribe from the earliest message; on
        // an existing one, subscribe at the end first so that the backlog is
        // exactly the filled messages.
        if !created_topic {
            create_subscription(client, &args, StartName::Latest).await?;
            created_sub = true;
        }
        let count = args.count.unwrap_or(DEFAULT_COUNT);
        let load = Load {
            topic,
            size: args.size,
            batch: args.fill_batch,
            concurrency: args.fill_concurrency,
            count,
            duration: None,
            transport: TransportKind::Http,
            encoding: args.encoding.into(),
        };
        let filled = match load.run(client, printer, "fill: ").await {
            Ok(filled) => {
                filled_count = filled.messages;
                filled
            }
            Err(e) => {
                cleanup(client, &args, created_sub, created_topic, filled_count).await;
                return Err(e);
            }
        };
        fill = Some(FillReport {
            messages: filled.messages,
            seconds: filled.seconds,
            msgs_per_sec: filled.messages as f64 / filled.seconds,
            batch: load.batch,
            concurrency: load.concurrency,
        });
        if created_topic {
            if let Err(e) = create_subscription(client, &args, StartName::Earliest).await {
                cleanup(client, &args, created_sub, created_topic, filled_count).await;
                return Err(e);
            }
            created_sub = true;
        }
    }
    let result = match args.transport {
        TransportKind::Http => {
            let http = Http(args.encoding.client(client));
            consume(http, client, printer, &args).await
        }
        TransportKind::Ws => {
            consume(
                Ws::new(
                    args.encoding.client(client),
                    std::time::Duration::from_millis(1),
                ),
                client,
                printer,
                &args,
            )
            .await
        }
    };
    cleanup(client, &args, created_sub, created_topic, filled_count).await;
    let mut report = result?;
    report.fill = fill;
    Ok(report)
}

async fn create_subscription(
    client: &Client,
    args: &ConsumeArgs,
    start: StartName,
) -> Result<(), Error> {
    let spec = SubscriptionSpec {
        mode: Some(Mode::Queue),
        start: Some(Start::Named(start)),
        ack_timeout_ms: Some(args.ack_timeout_ms),
        // No dead-letter topic: nothing should fail, and none is left behind.
        dead_letter_topic: Some(None),
        ..SubscriptionSpec::default()
    };
    client
        .create_subscription(&args.topic, &args.subscription, &spec)
        .await
        .map(drop)
}

/// Deletes what the bench created (unless --keep) and says what stays.
async fn cleanup(client: &Client, args: &ConsumeArgs, sub: bool, topic: bool, added: u64) {
    let sub = sub.then_some(args.subscription.as_str());
    clean_up(client, &args.topic, sub, topic, args.keep, Some(added)).await;
}

/// Payload bytes of a received message (the value as sent).
fn payload_bytes(m: &ReceivedMessage) -> u64 {
    match (&m.message.value, &m.message.value_b64) {
        (Some(v), _) => v.get().len() as u64,
        (None, Some(b64)) => {
            let padding = b64.bytes().rev().take_while(|&b| b == b'=').count();
            (b64.len() / 4 * 3).saturating_sub(padding) as u64
        }
        (None, None) => 0,
    }
}

/// The run phase.
async fn consume<T: Transport>(
    transport: T,
    client: &Client,
    printer: &Printer,
    args: &ConsumeArgs,
) -> Result<ConsumeReport, Error> {
    let (topic, sub) = (args.topic.as_str(), args.subscription.as_str());
    let backlog = client.subscription(topic, sub).await?.stats.backlog;
    let target = match (args.no_fill, args.count) {
        (true, Some(count)) => count.min(backlog),
        _ => backlog,
    };
    let batch = args.batch.max(1);
    let ack = args.ack;
    let concurrency = args.concurrency.max(1);
    let syncs_before = wal_syncs(client).await;
    let acked = counter();
    let pulls = counter();
    let empty_pulls = counter();
    let acks = counter();
    let unknown = counter();
    let redeliveries = counter();
    let bytes = counter();
    let stop = Arc::new(AtomicBool::new(target == 0));
    let pull_hist = Arc::new(Mutex::new(new_histogram()?));
    let ack_hist = Arc::new(Mutex::new(new_histogram()?));
    let cycle_hist = Arc::new(Mutex::new(new_histogram()?));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let transport = transport.clone();
        let (topic, sub) = (topic.to_owned(), sub.to_owned());
        let (acked, pulls, empty_pulls, acks, unknown, redeliveries, bytes, stop) = (
            acked.clone(),
            pulls.clone(),
            empty_pulls.clone(),
            acks.clone(),
            unknown.clone(),
            redeliveries.clone(),
            bytes.clone(),
            stop.clone(),
        );
        let (pull_hist, ack_hist, cycle_hist) =
            (pull_hist.clone(), ack_hist.clone(), cycle_hist.clone());
        let request = PullRequest {
            max_messages: Some(u32::try_from(batch).unwrap_or(u32::MAX)),
            wait_ms: Some(args.wait_ms),
            consumer: Some(format!("bench-{i}")),
        };
        tasks.push(tokio::spawn(async move {
            let (mut pull_h, mut ack_h, mut cycle_h) =
                (new_histogram()?, new_histogram()?, new_histogram()?);
            let result = loop {
                if stop.load(Ordering::Relaxed) || acked.load(Ordering::Relaxed) >= target {
                    break Ok(());
                }
                let t0 = Instant::now();
                let pulled = match transport.pull(&topic, &sub, &request).await {
                    Ok(p) => p,
                    // A failover (a cluster's serving node changing) or an
                    // overloaded server: go on as a consumer would.
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(TRANSIENT_PAUSE).await;
                        continue;
                    }
                    Err(e) => break Err(e),
                };
                pulls.fetch_add(1, Ordering::Relaxed);
                let PullResponse {
                    messages,
                    batch_ack_id,
                } = pulled;
                if messages.is_empty() {
                    empty_pulls.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                pull_h.saturating_record(t0.elapsed().as_micros() as u64);
                let mut size = 0;
                let mut again = 0;
                let mut ids = Vec::with_capacity(messages.len());
                for m in messages {
                    size += payload_bytes(&m);
                    again += u64::from(m.attempt > 1);
                    if ack == AckForm::Ids {
                        ids.push(m.ack_id);
                    }
                }
                if ack == AckForm::Batch {
                    let Some(id) = batch_ack_id else {
                        break Err(Error::Protocol(
                            "a pull of a queue subscription without a batch ack id".into(),
                        ));
                    };
                    ids.push(id);
                }
                let t1 = Instant::now();
                let response = match transport.ack(&topic, &sub, &request, ids).await {
                    Ok(r) => r,
                    // Not acked: the messages come again (counted as
                    // redeliveries when they do).
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(TRANSIENT_PAUSE).await;
                        continue;
                    }
                    Err(e) => break Err(e),
                };
                ack_h.saturating_record(t1.elapsed().as_micros() as u64);
                cycle_h.saturating_record(t0.elapsed().as_micros() as u64);
                acks.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(size, Ordering::Relaxed);
                redeliveries.fetch_add(again, Ordering::Relaxed);
                unknown.fetch_add(response.unknown.len() as u64, Ordering::Relaxed);
                acked.fetch_add(response.acked, Ordering::Relaxed);
            };
            merge(&pull_hist, &pull_h);
            merge(&ack_hist, &ack_h);
            merge(&cycle_hist, &cycle_h);
            result
        }));
    }
    let progress = {
        let acked = acked.clone();
        let mut last = 0;
        Progress::start(printer, move || {
            let now = acked.load(Ordering::Relaxed);
            let rate = now - last;
            last = now;
            format!("consume: {now:>10}/{target} acked  {rate:>10.0} msgs/s")
        })
    };
    // Stops the consumers at the deadline, or when nothing moves and the
    // server says the backlog is gone (acked elsewhere, or retention).
    let watch = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        let (topic, sub) = (topic.to_owned(), sub.to_owned());
        let duration = args.duration.map(Duration::from_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut last = (0, Instant::now());
            loop {
                tick.tick().await;
                if duration.is_some_and(|d| started.elapsed() >= d) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                let now = acked.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() >= Duration::from_secs(2) {
                    last.1 = Instant::now();
                    if let Ok(info) = client.subscription(&topic, &sub).await {
                        if info.stats.backlog == 0 {
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        })
    };
    let result = join_all(tasks).await;
    let seconds = started.elapsed().as_secs_f64();
    watch.abort();
    progress.finish();
    result?;
    let syncs = wal_syncs(client).await.saturating_sub(syncs_before);
    let messages = acked.load(Ordering::Relaxed);
    let received_bytes = bytes.load(Ordering::Relaxed);
    Ok(ConsumeReport {
        workload: "consume",
        transport: args.transport.name(),
        ack: args.ack.name(),
        encoding: Encoding::from(args.encoding).as_str(),
        topic: topic.to_owned(),
        subscription: sub.to_owned(),
        fill: None,
        messages,
        pulls: pulls.load(Ordering::Relaxed),
        empty_pulls: empty_pulls.load(Ordering::Relaxed),
        acks: acks.load(Ordering::Relaxed),
        ack_unknown: unknown.load(Ordering::Relaxed),
        redeliveries: redeliveries.load(Ordering::Relaxed),
        seconds,
        msgs_per_sec: messages as f64 / seconds,
        mb_per_sec: received_bytes as f64 / seconds / 1e6,
        batch,
        concurrency,
        // Average payload of what was received (the filled size, or the
        // existing messages' with --no-fill).
        message_bytes: received_bytes
            .checked_div(messages)
            .map_or(args.size, |b| b as usize),
        latency_ms: latency(&snapshot(&cycle_hist)),
        pull_latency_ms: latency(&snapshot(&pull_hist)),
        ack_latency_ms: latency(&snapshot(&ack_hist)),
        wal_syncs: syncs,
        syncs_per_sec: syncs as f64 / seconds,
    })
}
