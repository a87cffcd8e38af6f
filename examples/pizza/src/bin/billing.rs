//! Billing: charges every order through the **queue** subscription
//! `billing` of `orders`, with `Client::consume` (handlers run
//! concurrently, leases are renewed while they run, `Ok` acks, `Err` nacks).
//!
//! The payment step is flaky on purpose:
//! - the card provider times out on the first attempt of every third order:
//!   the nack schedules a retry after the backoff, and the second attempt
//!   goes through;
//! - the gift-card integration is broken: those charges fail on every
//!   attempt, and after `max_attempts` the server copies the order to the
//!   dead-letter topic `orders.billing.dlq` (with `weir-*` headers saying
//!   why) and settles it, so the queue keeps flowing.
//!
//! Once the integration is fixed, `--fixed --redrive` makes the dead
//! letters deliverable again (attempts reset) and charges them.
//!
//! Charges go to a ledger file. Billing is an idempotent consumer: an order
//! already in the ledger is acked without charging it again, since any
//! queue may deliver a message twice (a lease that ran out, a lost ack).
//!
//! ```text
//! billing                      # charge what can be charged, dead-letter the rest
//! billing --fixed --redrive    # after the fix: redrive and charge the dead letters
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use weir_client::{Client, ConsumerConfig, ReceivedMessage, SubscriptionSpec};
use weir_example_pizza::{print_summary, wait_for_topic, Connection, Order};

const SUB: &str = "billing";

#[derive(Parser)]
#[command(about = "Charge the orders (queue subscription with retries and dead letters)")]
struct Args {
    #[command(flatten)]
    connection: Connection,
    /// The gift-card integration is fixed: gift-card charges go through.
    #[arg(long)]
    fixed: bool,
    /// Redrive the subscription's dead letters before consuming.
    #[arg(long)]
    redrive: bool,
    /// Deliveries of a message before it is dead-lettered.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// The ledger of charged orders (one order id per line).
    #[arg(long, default_value = "pizza-ledger.txt")]
    ledger: PathBuf,
    /// Charges running at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

/// The charged orders, in memory and in the ledger file.
struct Ledger {
    charged: BTreeSet<u64>,
    file: std::fs::File,
}

impl Ledger {
    fn open(path: &PathBuf) -> std::io::Result<Ledger> {
        let charged = match std::fs::read_to_string(path) {
            Ok(text) => text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Ledger { charged, file })
    }
}

/// What the handlers did, shared between them.
#[derive(Default)]
struct Tally {
    charged: AtomicU64,
    already_charged: AtomicU64,
    provider_timeouts: AtomicU64,
    gift_card_failures: AtomicU64,
    paid_after_retry: AtomicU64,
}

/// The payment step: fails as described at the top of this file.
fn charge(order: &Order, attempt: u32, fixed: bool, tally: &Tally) -> Result<(), String> {
    if order.payment == "gift-card" && !fixed {
        tally.gift_card_failures.fetch_add(1, Ordering::Relaxed);
        return Err(format!(
            "gift card service rejected order {} (attempt {attempt})",
            order.order_id
        ));
    }
    if order.order_id.is_multiple_of(3) && attempt == 1 {
        tally.provider_timeouts.fetch_add(1, Ordering::Relaxed);
        return Err(format!(
            "payment provider timed out on order {}",
            order.order_id
        ));
    }
    Ok(())
}

async fn handle(
    received: ReceivedMessage,
    fixed: bool,
    ledger: Arc<Mutex<Ledger>>,
    tally: Arc<Tally>,
) -> Result<(), String> {
    let order = Order::from_message(&received.message)?;
    let mut ledger = ledger
        .lock()
        .map_err(|_| "ledger lock poisoned".to_owned())?;
    if ledger.charged.contains(&order.order_id) {
        // A second delivery of an order charged before: ack, charge nothing.
        tally.already_charged.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    if let Err(reason) = charge(&order, received.attempt, fixed, &tally) {
        eprintln!("FAILED  order {:>3}: {reason}", order.order_id);
        return Err(reason);
    }
    writeln!(ledger.file, "{}", order.order_id).map_err(|e| format!("ledger: {e}"))?;
    ledger.charged.insert(order.order_id);
    tally.charged.fetch_add(1, Ordering::Relaxed);
    if received.attempt > 1 {
        tally.paid_after_retry.fetch_add(1, Ordering::Relaxed);
    }
    eprintln!(
        "charged order {:>3}: {:>5} cents by {} (attempt {})",
        order.order_id, order.amount_cents, order.payment, received.attempt
    );
    Ok(())
}

/// Completes once the subscription has nothing left to settle: every
/// order is charged or dead-lettered (or the deadline passed).
async fn drained(client: Client, topic: String, deadline: tokio::time::Instant) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        match client.subscription(&topic, SUB).await {
            Ok(info) if info.stats.backlog == 0 => return,
            Ok(_) => {}
            Err(e) => eprintln!("stats: {e}"),
        }
    }
}

/// Dead letters of this subscription in the dead-letter topic, counted by
/// their `weir-dead-letter-reason` and `weir-attempts` headers.
async fn dead_letter_report(
    client: &Client,
    dlq: &str,
) -> Result<serde_json::Value, weir_client::Error> {
    let info = client.topic(dlq).await?;
    let mut messages = 0u64;
    let mut orders = BTreeSet::new();
    let mut attempts: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons = BTreeSet::new();
    for partition in &info.partitions {
        let mut offset = partition.low_offset;
        while offset < partition.high_offset {
            let page = client.read(dlq, partition.partition, offset, 500).await?;
            if page.messages.is_empty() {
                break;
            }
            for m in &page.messages {
                if m.headers.get("weir-subscription").map(String::as_str) != Some(SUB) {
                    continue;
                }
                messages += 1;
                if let Ok(order) = Order::from_message(m) {
                    orders.insert(order.order_id);
                }
                if let Some(a) = m.headers.get("weir-attempts") {
                    *attempts.entry(a.clone()).or_default() += 1;
                }
                if let Some(r) = m.headers.get("weir-dead-letter-reason") {
                    // "gift card service rejected order 5 (attempt 3)" -> its cause
                    reasons.insert(r.split(" order").next().unwrap_or(r).to_owned());
                }
            }
            offset = page.next_offset;
        }
    }
    Ok(json!({
        "topic": dlq,
        "messages": messages,
        "orders": orders,
        "attempts": attempts,
        "reasons": reasons,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = args.connection.client()?;
    let topic = args.connection.topic.clone();

    // Retries: 100 ms, then 200 ms, ... (no jitter, so the story is
    // repeatable); dead letters go to the default `<topic>.billing.dlq`.
    // The spec is written as the JSON body of the PUT: fields this example
    // does not name keep their defaults, whatever the client version adds.
    let spec: SubscriptionSpec = serde_json::from_value(json!({
        "mode": "queue",
        "start": "earliest",
        "ack_timeout_ms": 10_000,
        "retry": {
            "max_attempts": args.max_attempts,
            "backoff": {"initial_ms": 100, "max_ms": 400, "multiplier": 2.0, "jitter": 0.0},
        },
    }))?;
    let info = wait_for_topic(Duration::from_secs(args.timeout_s), || {
        client.create_subscription(&topic, SUB, &spec)
    })
    .await?;
    let dlq = info
        .config
        .dead_letter_topic
        .clone()
        .ok_or("the billing subscription has no dead-letter topic")?;

    let mut redriven = None;
    if args.redrive {
        let response = client.redrive(&topic, SUB, None).await?;
        eprintln!("redrove {} dead letters", response.redriven);
        redriven = Some(response.redriven);
    }

    let ledger = Arc::new(Mutex::new(Ledger::open(&args.ledger)?));
    let tally = Arc::new(Tally::default());
    let fixed = args.fixed;
    let handler = {
        let (ledger, tally) = (ledger.clone(), tally.clone());
        move |received: ReceivedMessage| handle(received, fixed, ledger.clone(), tally.clone())
    };
    let config = ConsumerConfig {
        consumer: Some(format!("billing-{}", std::process::id())),
        concurrency: args.concurrency,
        max_messages: 10,
        wait: Duration::from_millis(500),
        ..ConsumerConfig::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    let stats = client
        .consume(
            &topic,
            SUB,
            config,
            handler,
            drained(client.clone(), topic.clone(), deadline),
        )
        .await?;

    let info = client.subscription(&topic, SUB).await?;
    let dead_letters = match dead_letter_report(&client, &dlq).await {
        Ok(report) => report,
        Err(e) if e.code() == Some(weir_client::ErrorCode::TopicNotFound) => {
            json!({"topic": dlq, "messages": 0})
        }
        Err(e) => return Err(e.into()),
    };
    let charged_total = ledger
        .lock()
        .map_err(|_| "ledger lock poisoned")?
        .charged
        .len();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    print_summary(&json!({
        "redriven": redriven,
        "received": stats.received,
        "acked": stats.acked,
        "nacked": stats.nacked,
        "charged": load(&tally.charged),
        "already_charged": load(&tally.already_charged),
        "paid_after_retry": load(&tally.paid_after_retry),
        "provider_timeouts": load(&tally.provider_timeouts),
        "gift_card_failures": load(&tally.gift_card_failures),
        "charged_total": charged_total,
        "backlog": info.stats.backlog,
        "dead_lettered": info.stats.dead_lettered,
        "dead_letter_topic": dead_letters,
    }));
    if info.stats.backlog > 0 {
        return Err(format!(
            "timed out after {} s with a backlog of {}",
            args.timeout_s, info.stats.backlog
        )
        .into());
    }
    Ok(())
}
