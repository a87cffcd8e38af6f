//! Analytics: replays the history of `orders` with stateless reads — no
//! subscription, no state on the server, as often as it likes.
//!
//! - From the earliest offset: every partition from its `low_offset` (the
//!   oldest message retention kept) to its `high_offset`.
//! - From a timestamp (`--since-ms`): every partition from its first message
//!   appended at or after that time (the server's time index), e.g. "all
//!   orders since dinner service started".
//!
//! ```text
//! analytics                          # the whole history
//! analytics --since-ms 1764300000000 # and what came after that moment
//! ```

use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;
use serde_json::json;
use weir_client::{Client, Message, ReadResponse};
use weir_example_pizza::{print_summary, Connection, Order};

/// Messages per read request.
const PAGE: u32 = 500;

#[derive(Parser)]
#[command(about = "Replay the order history: from the earliest offset and from a timestamp")]
struct Args {
    #[command(flatten)]
    connection: Connection,
    /// Also replay from this time (milliseconds since the Unix epoch).
    #[arg(long)]
    since_ms: Option<u64>,
}

/// Figures over a set of orders.
#[derive(Default)]
struct Figures {
    messages: u64,
    orders: BTreeSet<u64>,
    revenue_cents: u64,
    by_wave: BTreeMap<String, u64>,
    by_pizza: BTreeMap<String, u64>,
    first_timestamp: Option<u64>,
}

impl Figures {
    fn add(&mut self, message: &Message) -> Result<(), String> {
        let order = Order::from_message(message)?;
        self.messages += 1;
        self.orders.insert(order.order_id);
        self.revenue_cents += order.amount_cents;
        *self.by_wave.entry(order.wave).or_default() += 1;
        *self.by_pizza.entry(order.pizza).or_default() += 1;
        let first = self.first_timestamp.get_or_insert(message.timestamp);
        *first = (*first).min(message.timestamp);
        Ok(())
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "messages": self.messages,
            "distinct_orders": self.orders.len(),
            "revenue_cents": self.revenue_cents,
            "by_wave": self.by_wave,
            "by_pizza": self.by_pizza,
            "first_timestamp": self.first_timestamp,
        })
    }
}

/// Counts the messages of `first` and of every page after it, to the end
/// of the partition.
async fn replay_from(
    client: &Client,
    topic: &str,
    partition: u32,
    first: ReadResponse,
    figures: &mut Figures,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut page = first;
    loop {
        if page.messages.is_empty() {
            return Ok(());
        }
        for message in &page.messages {
            figures.add(message)?;
        }
        page = client
            .read(topic, partition, page.next_offset, PAGE)
            .await?;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = args.connection.client()?;
    let topic = args.connection.topic.as_str();
    let info = client.topic(topic).await?;

    // 1. The whole history: each partition from its oldest stored offset.
    let mut history = Figures::default();
    for p in &info.partitions {
        let first = client.read(topic, p.partition, p.low_offset, PAGE).await?;
        replay_from(&client, topic, p.partition, first, &mut history).await?;
        eprintln!(
            "partition {}: offsets {}..{} replayed",
            p.partition, p.low_offset, p.high_offset
        );
    }
    eprintln!(
        "history: {} orders, {} cents",
        history.orders.len(),
        history.revenue_cents
    );

    // 2. From a timestamp: the server finds each partition's first message
    //    at or after it, then reading goes on by offset as above.
    let mut since = None;
    if let Some(ts) = args.since_ms {
        let mut figures = Figures::default();
        for p in &info.partitions {
            let first = client.read_from_time(topic, p.partition, ts, PAGE).await?;
            replay_from(&client, topic, p.partition, first, &mut figures).await?;
        }
        eprintln!("since {ts}: {} orders", figures.orders.len());
        since = Some(json!({"since_ms": ts, "figures": figures.json()}));
    }

    print_summary(&json!({
        "partitions": info.partitions.len(),
        "history": history.json(),
        "since": since,
    }));
    Ok(())
}
