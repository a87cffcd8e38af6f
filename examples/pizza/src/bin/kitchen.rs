//! The kitchen: bakes the orders through the **stream** subscription
//! `kitchen` of `orders`.
//!
//! In stream mode each partition is owned by one consumer at a time and
//! delivered in offset order; the ack is cumulative (it commits the
//! partition's cursor). Since the order service keys orders by customer,
//! every customer's orders are in one partition, so the kitchen sees them in
//! the order they were placed. It checks exactly that: `seq` 1, 2, 3, ...
//! per customer. A redelivered order (a lease that ran out before the ack)
//! has a `seq` already seen and is skipped, not baked twice.
//!
//! ```text
//! kitchen --expect 60            # stop after 60 pizzas
//! kitchen                        # stop at the first empty pull
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use weir_client::{Mode, PullRequest, Start, StartName, SubscriptionSpec};
use weir_example_pizza::{print_summary, wait_for_topic, Connection, Order};

const SUB: &str = "kitchen";

#[derive(Parser)]
#[command(about = "Bake the orders in order, per customer (stream subscription)")]
struct Args {
    #[command(flatten)]
    connection: Connection,
    /// Stop after this many pizzas (default: at the first empty pull).
    #[arg(long)]
    expect: Option<u64>,
    /// Consumer name: in stream mode partitions belong to named consumers.
    #[arg(long, default_value = "oven-1")]
    consumer: String,
    /// Long-poll time of each pull, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    wait_ms: u64,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = args.connection.client()?;
    let topic = args.connection.topic.as_str();

    // From the earliest stored order: the kitchen may start after the first
    // orders came in. Creating an existing subscription changes nothing.
    let spec = SubscriptionSpec {
        mode: Some(Mode::Stream),
        start: Some(Start::Named(StartName::Earliest)),
        ack_timeout_ms: Some(30_000),
        ..SubscriptionSpec::default()
    };
    wait_for_topic(Duration::from_secs(args.timeout_s), || {
        client.create_subscription(topic, SUB, &spec)
    })
    .await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    let mut last_seq: BTreeMap<String, u32> = BTreeMap::new();
    let mut baked = 0u64;
    let mut out_of_order = 0u64;
    let mut redelivered = 0u64;
    let mut partitions: BTreeMap<u32, u64> = BTreeMap::new();
    loop {
        if args.expect.is_some_and(|n| baked >= n) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "timed out after {} s with {baked} pizzas baked",
                args.timeout_s
            )
            .into());
        }
        let request = PullRequest {
            max_messages: Some(100),
            wait_ms: Some(args.wait_ms),
            consumer: Some(args.consumer.clone()),
        };
        let delivered = client.pull(topic, SUB, &request).await?;
        if delivered.is_empty() {
            if args.expect.is_none() {
                break;
            }
            continue;
        }
        let mut ack_ids = Vec::with_capacity(delivered.len());
        for received in delivered {
            let order = Order::from_message(&received.message)?;
            let last = last_seq.entry(order.customer.clone()).or_default();
            if order.seq <= *last {
                redelivered += 1;
            } else {
                if order.seq != *last + 1 {
                    eprintln!(
                        "OUT OF ORDER: {} order seq {} after seq {}",
                        order.customer, order.seq, last
                    );
                    out_of_order += 1;
                }
                *last = order.seq;
                baked += 1;
                *partitions.entry(received.message.partition).or_default() += 1;
                eprintln!(
                    "baked {:<16} for {} (#{}, partition {} offset {})",
                    order.pizza,
                    order.customer,
                    order.seq,
                    received.message.partition,
                    received.message.offset
                );
            }
            ack_ids.push(received.ack_id);
        }
        // Cumulative: acking an offset commits the partition's cursor past it.
        client.ack(topic, SUB, ack_ids).await?;
    }

    let info = client.subscription(topic, SUB).await?;
    print_summary(&json!({
        "baked": baked,
        "out_of_order": out_of_order,
        "redelivered": redelivered,
        "customers": last_seq,
        "by_partition": partitions,
        "backlog": info.stats.backlog,
    }));
    if out_of_order > 0 {
        return Err(format!("{out_of_order} orders came out of order").into());
    }
    Ok(())
}
