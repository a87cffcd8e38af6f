//! `weir bench e2e`: end-to-end latency at a fixed rate.
//!
//! A producer sends `--rate` messages per second: a ticker fires every
//! `--tick-ms`, and each tick sends the messages due by then (rate ×
//! elapsed − sent) as one produce request, without waiting for the previous
//! requests (at most `--max-in-flight` at once). Every message carries its
//! send time in its JSON value, `{"sent_us": <µs since the Unix epoch>,
//! "pad": "xx…"}`, padded to `--size` bytes.
//!
//! `--concurrency` consumers of a fresh queue subscription (start `latest`)
//! long-poll (`--wait-ms`) with pulls of up to `--batch` messages, record
//! receive time − send time of each message in an HDR histogram (µs), and
//! ack each pull with one request. Messages sent during the first
//! `--warmup` seconds (connection set-up) are consumed but not recorded.
//!
//! `--transport ws` receives on subscription sockets instead of pulls and
//! acks over them; produce stays on HTTP. `--encoding binary` produces
//! binary batches (the stamp stays a JSON value) and receives binary
//! pull responses, or binary delivery frames over sockets.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use weir_client::{
    Client, Encoding, Error, ErrorCode, Mode, PullRequest, ReceivedMessage, Start, StartName,
    SubscriptionSpec,
};

use super::body::Body;
use super::report::{latency, E2eReport};
use super::ws::Ws;
use super::{
    clean_up, counter, ensure_topic, join_all, merge, new_histogram, positive, snapshot, wal_syncs,
    Http, Progress, Transport, TransportKind,
};
use crate::encoding::EncodingArg;
use crate::output::Printer;

/// Most messages in one produce request, however late the producer is.
const MAX_PRODUCE_BATCH: u64 = 1000;

#[derive(Args)]
pub struct E2eArgs {
    /// Topic (created when missing).
    #[arg(long, default_value = "bench-e2e")]
    topic: String,
    /// Subscription, created for the run (must not exist).
    #[arg(long, default_value = "bench-e2e")]
    subscription: String,
    /// Partitions of the topic when created.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Payload size in bytes (at least the ~40-byte timestamp object).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Messages to send in the measured window, instead of rate × duration.
    #[arg(long)]
    count: Option<u64>,
    /// Seconds sent before measuring (not recorded).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Most messages per pull (1..=1000).
    #[arg(long, default_value_t = 100, value_parser = positive(1000))]
    batch: usize,
    /// Concurrent consumers (1..=10000).
    #[arg(long, default_value_t = 4, value_parser = positive(10_000))]
    concurrency: usize,
    /// Long-poll time of each pull, in ms.
    #[arg(long, default_value_t = 1000)]
    wait_ms: u64,
    /// Producer ticker period in ms: each tick sends the messages due.
    #[arg(long, default_value_t = 1)]
    tick_ms: u64,
    /// Most produce requests in flight; past it the producer falls behind
    /// (and catches up with bigger batches).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// How long to wait for the last messages after the producer is done, in ms.
    #[arg(long, default_value_t = 5000)]
    drain_ms: u64,
    /// Keep the subscription (and the topic, when the bench created it).
    #[arg(long)]
    keep: bool,
    /// How messages are received and acked: `http` (pull and ack
    /// requests) or `ws` (pushed on subscription sockets, acked over them).
    /// Produce is over HTTP either way.
    #[arg(long, value_enum, default_value_t = TransportKind::Http)]
    transport: TransportKind,
    /// Encoding of the produce requests and of the deliveries (pull
    /// responses, or socket frames with `--transport ws`): `json` or
    /// `binary` (application/vnd.weir.batch).
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    encoding: EncodingArg,
}

pub async fn run(args: E2eArgs, client: &Client, printer: &Printer) -> Result<E2eReport, Error> {
    let (topic, sub) = (args.topic.as_str(), args.subscription.as_str());
    if args.rate == 0 {
        return Err(Error::Local("--rate must be positive".into()));
    }
    match client.subscription(topic, sub).await {
        Ok(_) => {
            return Err(Error::Local(format!(
                "subscription `{sub}` of topic `{topic}` exists already: delete it \
                 (`weir subs delete`) or pick another --subscription"
            )))
        }
        Err(e)
            if matches!(
                e.code(),
                Some(ErrorCode::SubscriptionNotFound | ErrorCode::TopicNotFound)
            ) => {}
        Err(e) => return Err(e),
    }
    let created_topic = ensure_topic(client, topic, args.partitions).await?;
    let spec = SubscriptionSpec {
        mode: Some(Mode::Queue),
        start: Some(Start::Named(StartName::Latest)),
        ack_timeout_ms: Some(60_000),
        dead_letter_topic: Some(None),
        ..SubscriptionSpec::default()
    };
    let result = match client.create_subscription(topic, sub, &spec).await {
        Ok(_) => match args.transport {
            TransportKind::Http => {
                let http = Http(args.encoding.client(client));
                e2e(http, client, printer, &args).await
            }
            TransportKind::Ws => {
                e2e(
                    Ws::new(args.encoding.client(client), std::time::Duration::ZERO),
                    client,
                    printer,
                    &args,
                )
                .await
            }
        },
        Err(e) => Err(e),
    };
    clean_up(client, topic, Some(sub), created_topic, args.keep, None).await;
    result
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Deserialize)]
struct Stamp {
    sent_us: u64,
}

/// The send time a message carries, if it is a bench message.
fn sent_us(m: &ReceivedMessage) -> Option<u64> {
    let value = m.message.value.as_ref()?;
    serde_json::from_str::<Stamp>(value.get())
        .ok()
        .map(|s| s.sent_us)
}

async fn e2e<T: Transport>(
    transport: T,
    client: &Client,
    printer: &Printer,
    args: &E2eArgs,
) -> Result<E2eReport, Error> {
    let topic = args.topic.as_str();
    let rate = args.rate;
    let measured = args.count.unwrap_or(rate.saturating_mul(args.duration));
    let total = measured + rate.saturating_mul(args.warmup);
    let warmup = Duration::from_secs(args.warmup);
    let concurrency = args.concurrency.max(1);
    let batch = args.batch.max(1);
    let encoding = Encoding::from(args.encoding);

    let latency_hist = Arc::new(Mutex::new(new_histogram()?));
    let produce_hist = Arc::new(Mutex::new(new_histogram()?));
    let sent_all = counter();
    let sent_measured = counter();
    let received_all = counter();
    let received_measured = counter();
    let redeliveries = counter();
    let produce_requests = counter();
    let (stop_tx, stop_rx) = watch::channel(false);

    let start = Instant::now();
    let measure_from = epoch_us() + warmup.as_micros() as u64;
    let syncs_before = wal_syncs(client).await;

    // Consumers first, so that they are polling when the first message lands.
    let mut consumers = Vec::new();
    for i in 0..concurrency {
        let transport = transport.clone();
        let (topic, sub) = (topic.to_owned(), args.subscription.clone());
        let (latency_hist, received_all, received_measured, redeliveries) = (
            latency_hist.clone(),
            received_all.clone(),
            received_measured.clone(),
            redeliveries.clone(),
        );
        let mut stop = stop_rx.clone();
        let request = PullRequest {
            max_messages: Some(u32::try_from(batch).unwrap_or(u32::MAX)),
            wait_ms: Some(args.wait_ms),
            consumer: Some(format!("bench-{i}")),
        };
        consumers.push(tokio::spawn(async move {
            let mut local = new_histogram()?;
            let result = loop {
                if *stop.borrow() {
                    break Ok(());
                }
                let pulled = tokio::select! {
                    biased;
                    _ = stop.changed() => break Ok(()),
                    r = transport.pull(&topic, &sub, &request) => r,
                };
                let messages = match pulled {
                    Ok(p) => p.messages,
                    Err(e) => break Err(e),
                };
                if messages.is_empty() {
                    continue;
                }
                let now = epoch_us();
                let (mut mine, mut again) = (0, 0);
                for m in &messages {
                    if let Some(sent) = sent_us(m) {
                        if sent >= measure_from {
                            local.saturating_record(now.saturating_sub(sent).max(1));
                            mine += 1;
                        }
                    }
                    again += u64::from(m.attempt > 1);
                }
                received_all.fetch_add(messages.len() as u64, Ordering::Relaxed);
                received_measured.fetch_add(mine, Ordering::Relaxed);
                redeliveries.fetch_add(again, Ordering::Relaxed);
                let ids = messages.into_iter().map(|m| m.ack_id).collect();
                if let Err(e) = transport.ack(&topic, &sub, &request, ids).await {
                    break Err(e);
                }
            };
            merge(&latency_hist, &local);
            result
        }));
    }

    let progress = {
        let (sent, received) = (sent_all.clone(), received_all.clone());
        let mut last = (0, 0);
        Progress::start(printer, move || {
            let (s, r) = (
                sent.load(Ordering::Relaxed),
                received.load(Ordering::Relaxed),
            );
            let line = format!(
                "e2e{}: sent {s:>9} ({:>6}/s)  received {r:>9} ({:>6}/s)",
                if start.elapsed() < warmup {
                    " (warm-up)"
                } else {
                    ""
                },
                s - last.0,
                r - last.1
            );
            last = (s, r);
            line
        })
    };

    // The producer: paced by the ticker, requests in flight concurrently.
    let producer = async {
        let permits = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
        let mut requests: JoinSet<Result<(), Error>> = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(args.tick_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        let mut window_start = None;
        while sent < total {
            tick.tick().await;
            while let Some(done) = requests.try_join_next() {
                flatten(done)?;
            }
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            if due <= sent {
                continue;
            }
            let n = (due - sent).min(MAX_PRODUCE_BATCH);
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| Error::Local(format!("producer stopped: {e}")))?;
            let now = epoch_us();
            if now >= measure_from {
                window_start.get_or_insert_with(Instant::now);
                sent_measured.fetch_add(n, Ordering::Relaxed);
            }
            let body = Body::stamped(encoding, now, n as usize, args.size);
            sent += n;
            sent_all.fetch_add(n, Ordering::Relaxed);
            let (transport, topic, hist, count) = (
                transport.clone(),
                topic.to_owned(),
                produce_hist.clone(),
                produce_requests.clone(),
            );
            requests.spawn(async move {
                let t0 = Instant::now();
                let result = transport.produce(&topic, body).await;
                let took = t0.elapsed().as_micros() as u64;
                drop(permit);
                if let Ok(mut h) = hist.lock() {
                    h.saturating_record(took);
                }
                count.fetch_add(1, Ordering::Relaxed);
                result
            });
        }
        while let Some(done) = requests.join_next().await {
            flatten(done)?;
        }
        let window = window_start.map_or(0.0, |w| w.elapsed().as_secs_f64());
        Ok::<f64, Error>(window)
    };
    let produced = producer.await;

    // Drain: wait for the last messages (or give up), then stop the consumers.
    if produced.is_ok() {
        let deadline = Instant::now() + Duration::from_millis(args.drain_ms);
        while received_all.load(Ordering::Relaxed) < sent_all.load(Ordering::Relaxed)
            && Instant::now() < deadline
            && !consumers.iter().any(|c| c.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let seconds = start.elapsed().as_secs_f64() - warmup.as_secs_f64();
    let _ = stop_tx.send(true);
    let consumed = join_all(consumers).await;
    progress.finish();
    let window = produced?;
    consumed?;
    let syncs = wal_syncs(client).await.saturating_sub(syncs_before);
    let all_seconds = start.elapsed().as_secs_f64();

    let sent = sent_measured.load(Ordering::Relaxed);
    let received = received_measured.load(Ordering::Relaxed);
    Ok(E2eReport {
        workload: "e2e",
        transport: args.transport.name(),
        encoding: encoding.as_str(),
        rate,
        achieved_rate: sent as f64 / window.max(f64::EPSILON),
        received_rate: received as f64 / seconds.max(f64::EPSILON),
        sent,
        received,
        missing: sent.saturating_sub(received),
        redeliveries: redeliveries.load(Ordering::Relaxed),
        warmup_seconds: warmup.as_secs_f64(),
        seconds,
        mb_per_sec: received as f64 * args.size as f64 / seconds.max(f64::EPSILON) / 1e6,
        message_bytes: args.size,
        batch,
        concurrency,
        produce_requests: produce_requests.load(Ordering::Relaxed),
        latency_ms: latency(&snapshot(&latency_hist)),
        produce_latency_ms: latency(&snapshot(&produce_hist)),
        wal_syncs: syncs,
        syncs_per_sec: syncs as f64 / all_seconds,
    })
}

fn flatten(done: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    done.map_err(|e| Error::Local(format!("produce task failed: {e}")))?
}
