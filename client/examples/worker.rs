//! A queue worker: consumes the `billing` subscription of `orders` with up
//! to 8 handlers at once, acks what it processed and nacks what failed (the
//! error text becomes the dead-letter reason after the last attempt).
//! Ctrl-C stops pulling, lets running handlers finish, and prints the stats.
//!
//! ```text
//! cargo run -p weir-client --example producer    # some messages first
//! cargo run -p weir-client --example worker      # WEIR_SERVER overrides the URL
//! weir dlq list orders billing                   # what failed for good
//! ```

use std::time::Duration;

use weir_client::{
    Client, ConsumerConfig, Error, Mode, ReceivedMessage, Start, StartName, SubscriptionSpec,
};

const TOPIC: &str = "orders";
const SUB: &str = "billing";

/// The work: every 10th order "fails", to show nacks and retries.
async fn handle(message: ReceivedMessage) -> Result<(), String> {
    let value = message
        .message
        .value
        .as_ref()
        .ok_or_else(|| "expected a JSON value".to_owned())?;
    let order: serde_json::Value =
        serde_json::from_str(value.get()).map_err(|e| format!("bad JSON: {e}"))?;
    // Pretend to call a slow service; the lease is renewed meanwhile.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match order["order"].as_u64() {
        Some(n) if n % 10 == 0 => Err(format!(
            "order {n}: payment declined (attempt {})",
            message.attempt
        )),
        Some(_) => Ok(()),
        None => Err("no order number".to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let server = std::env::var("WEIR_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::new(&server)?;
    // Idempotent: creates the subscription, or leaves it as it is.
    let spec = SubscriptionSpec {
        mode: Some(Mode::Queue),
        start: Some(Start::Named(StartName::Earliest)),
        ..SubscriptionSpec::default()
    };
    client.create_subscription(TOPIC, SUB, &spec).await?;

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping: finishing running handlers");
            let _ = stop.send(true);
        }
    });
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let config = ConsumerConfig {
        consumer: Some(format!("worker-{}", std::process::id())),
        concurrency: 8,
        max_messages: 8,
        ..ConsumerConfig::default()
    };
    let stats = client.consume(TOPIC, SUB, config, handle, shutdown).await?;
    println!(
        "received {}, acked {}, nacked {}, leases lost {}",
        stats.received, stats.acked, stats.nacked, stats.lease_lost
    );
    Ok(())
}
