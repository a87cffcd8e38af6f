//! The order service: takes the lunch orders, then the dinner orders, and
//! produces each as a message of `orders` keyed by customer.
//!
//! - The key sends every order of a customer to the same partition, where
//!   offsets keep them in the order they were produced.
//! - Each message carries the idempotency id `order-<n>`: when a request is
//!   retried (or this program runs twice) the server answers
//!   `duplicate: true` instead of appending the order again.
//! - Between the two waves it notes the time: `analytics --since-ms` replays
//!   from there and finds exactly the dinner orders.
//!
//! ```text
//! order-service --lunch 40 --dinner 20 --customers 7
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use weir_client::{Client, Error, ProduceMessage, ProduceMessageExt, TopicSpec};
use weir_example_pizza::{now_ms, print_summary, Connection, Order};

#[derive(Parser)]
#[command(about = "Produce the lunch and dinner orders of the pizza shop")]
struct Args {
    #[command(flatten)]
    connection: Connection,
    /// Orders of the first wave.
    #[arg(long, default_value_t = 40)]
    lunch: u64,
    /// Orders of the second wave.
    #[arg(long, default_value_t = 20)]
    dinner: u64,
    /// Distinct customers (message keys).
    #[arg(long, default_value_t = 7)]
    customers: u64,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Orders per produce request.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Pause around the moment between the two waves, in milliseconds.
    #[arg(long, default_value_t = 50)]
    gap_ms: u64,
}

/// What producing one wave did.
#[derive(Default)]
struct Produced {
    appended: u64,
    duplicates: u64,
    by_partition: BTreeMap<u32, u64>,
}

async fn produce_wave(
    client: &Client,
    topic: &str,
    orders: &[Order],
    batch: usize,
    produced: &mut Produced,
) -> Result<(), Error> {
    for chunk in orders.chunks(batch.max(1)) {
        let mut messages = Vec::with_capacity(chunk.len());
        for order in chunk {
            messages.push(ProduceMessage {
                key: Some(order.customer.clone()),
                id: Some(order.message_id()),
                ..ProduceMessage::json(order)?
            });
        }
        // One request, appended atomically and durable when answered.
        let results = client.produce(topic, messages).await?;
        for result in results {
            if result.duplicate {
                produced.duplicates += 1;
            } else {
                produced.appended += 1;
            }
            *produced.by_partition.entry(result.partition).or_default() += 1;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let client = args.connection.client()?;
    let topic = args.connection.topic.as_str();

    // PUT creates the topic, or updates an existing one (partitions only
    // grow; retention stays at its default, 7 days). Ids are remembered for
    // 10 minutes: a rerun within that time is recognized as a duplicate.
    let spec = TopicSpec {
        partitions: Some(args.partitions),
        dedupe_window_ms: Some(600_000),
        ..TopicSpec::default()
    };
    let info = client.create_topic(topic, &spec).await?;
    eprintln!("topic {topic}: {} partitions", info.config.partitions);

    // Build both waves; `seq` counts each customer's orders.
    let mut seq: BTreeMap<String, u32> = BTreeMap::new();
    let mut wave = |name: &str, from: u64, count: u64| -> Vec<Order> {
        (from..from + count)
            .map(|n| {
                let customer = weir_example_pizza::customer_of(n, args.customers);
                let next = seq.entry(customer).or_default();
                *next += 1;
                Order::nth(n, args.customers, name, *next)
            })
            .collect()
    };
    let lunch = wave("lunch", 1, args.lunch);
    let dinner = wave("dinner", args.lunch + 1, args.dinner);
    let gift_cards = lunch
        .iter()
        .chain(&dinner)
        .filter(|o| o.payment == "gift-card")
        .count();

    let mut produced = Produced::default();
    produce_wave(&client, topic, &lunch, args.batch, &mut produced).await?;
    eprintln!("lunch: {} orders produced", lunch.len());

    // Message timestamps are the server's append time: a moment strictly
    // between the waves separates them.
    tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    let dinner_from_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;

    produce_wave(&client, topic, &dinner, args.batch, &mut produced).await?;
    eprintln!("dinner: {} orders produced", dinner.len());
    eprintln!(
        "{} appended, {} duplicates (already produced: the server kept the first copy)",
        produced.appended, produced.duplicates
    );

    print_summary(&json!({
        "orders": lunch.len() + dinner.len(),
        "lunch": lunch.len(),
        "dinner": dinner.len(),
        "customers": args.customers,
        "gift_cards": gift_cards,
        "appended": produced.appended,
        "duplicates": produced.duplicates,
        "by_partition": produced.by_partition,
        "dinner_from_ms": dinner_from_ms,
    }));
    Ok(())
}
