//! The pizza shop: what the four programs of this example share.
//!
//! - `order-service` produces orders to the topic `orders`, keyed by
//!   customer, with an idempotency id per order.
//! - `kitchen` reads them through the **stream** subscription `kitchen`:
//!   one partition at a time, in offset order, so each customer's pizzas
//!   come out in the order they were ordered.
//! - `billing` charges them through the **queue** subscription `billing`:
//!   a flaky payment provider makes some charges fail once (retried after a
//!   backoff) and the gift-card integration fails every time until it is
//!   fixed, so those orders end up in the dead-letter topic and are
//!   redriven after the fix.
//! - `analytics` replays the whole history with stateless reads, from the
//!   earliest offset and from a timestamp, without any subscription.
//!
//! Every program prints progress on stderr and one JSON summary on stdout,
//! which `run.sh` checks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_client::{Client, ErrorCode, Message};

/// The topic every program uses unless `--topic` says otherwise.
pub const DEFAULT_TOPIC: &str = "orders";

/// Options every program takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Server URL.
    #[arg(long, env = "WEIR_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token, when the server has authentication on.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The orders topic.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,
}

impl Connection {
    /// A client for the server.
    pub fn client(&self) -> Result<Client, weir_client::Error> {
        Client::builder(&self.server)
            .token(self.token.clone())
            .build()
    }
}

/// One order, the JSON value of a message of `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// 1, 2, 3, ... over the whole run; also the idempotency id `order-<n>`.
    pub order_id: u64,
    /// The message key: every order of a customer lands on one partition.
    pub customer: String,
    /// 1, 2, 3, ... per customer: the kitchen checks they come in order.
    pub seq: u32,
    pub pizza: String,
    pub amount_cents: u64,
    /// `card` or `gift-card`.
    pub payment: String,
    /// `lunch` or `dinner`.
    pub wave: String,
}

const PIZZAS: [&str; 5] = [
    "margherita",
    "marinara",
    "quattro formaggi",
    "diavola",
    "funghi",
];

impl Order {
    /// The `n`-th order (from 1) of a shop with `customers` customers. The
    /// sequence is deterministic, so running the order service twice sends
    /// the same orders (and the server drops the duplicates by their id).
    pub fn nth(n: u64, customers: u64, wave: &str, seq: u32) -> Order {
        let customer = customer_of(n, customers);
        let index = usize::try_from(n % 5).unwrap_or(0);
        Order {
            order_id: n,
            customer,
            seq,
            pizza: PIZZAS
                .get(index)
                .copied()
                .unwrap_or("margherita")
                .to_owned(),
            amount_cents: 900 + (n * 37) % 1100,
            payment: if n.is_multiple_of(5) {
                "gift-card"
            } else {
                "card"
            }
            .to_owned(),
            wave: wave.to_owned(),
        }
    }

    /// The idempotency id of the order's message.
    pub fn message_id(&self) -> String {
        format!("order-{}", self.order_id)
    }

    /// Decodes the JSON value of a message.
    pub fn from_message(message: &Message) -> Result<Order, String> {
        let value = message
            .value
            .as_ref()
            .ok_or_else(|| format!("offset {}: not a JSON message", message.offset))?;
        serde_json::from_str(value.get())
            .map_err(|e| format!("offset {}: not an order: {e}", message.offset))
    }
}

/// The customer of order `n`: spread over the customers, not round-robin.
pub fn customer_of(n: u64, customers: u64) -> String {
    format!("customer-{}", (n * 7 + n / 3) % customers.max(1) + 1)
}

/// Milliseconds since the Unix epoch (the unit of message timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs `attempt` until it succeeds, while it fails with `topic_not_found`
/// (a consumer started before the first order created the topic), for at
/// most `patience`.
pub async fn wait_for_topic<T, F, Fut>(
    patience: Duration,
    mut attempt: F,
) -> Result<T, weir_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, weir_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut told = false;
    loop {
        match attempt().await {
            Err(e)
                if e.code() == Some(ErrorCode::TopicNotFound)
                    && tokio::time::Instant::now() < deadline =>
            {
                if !told {
                    eprintln!("waiting for the topic to be created by the order service ...");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Prints the JSON summary of a program on stdout.
pub fn print_summary(summary: &serde_json::Value) {
    println!("{summary}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_deterministic_and_spread_over_customers() {
        let a = Order::nth(10, 7, "lunch", 1);
        assert_eq!(a, Order::nth(10, 7, "lunch", 1));
        assert_eq!(a.payment, "gift-card");
        assert_eq!(a.message_id(), "order-10");
        let customers: std::collections::BTreeSet<String> =
            (1..=40).map(|n| customer_of(n, 7)).collect();
        assert_eq!(customers.len(), 7);
    }
}
