//! Consume a subscription over a WebSocket: decode each message, ack it, or
//! dead-letter what can never be processed, and stop cleanly on Ctrl-C.
//! The stream reconnects on its own when the server goes away (shutdown,
//! restart, a network failure, a half-open connection), renews the leases
//! of messages being processed, and keeps at most 50 unacked.
//!
//! ```text
//! weir topics create orders
//! weir subs create orders billing --start earliest
//! weir produce orders '{"order": 1}' '{"order": 2}' not-an-object
//! cargo run -p weir-client --example ws_consumer -- orders billing
//! ```
//!
//! `WEIR_SERVER` (default `http://127.0.0.1:8080`) and `WEIR_TOKEN` are
//! read as by the `weir` CLI.

use futures_util::StreamExt;
use serde::Deserialize;
use weir_client::{Client, Error, Nack, SubscribeOptions};

/// What an order looks like to this application.
#[derive(Debug, Deserialize)]
struct Order {
    order: u64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let sub = args.next().unwrap_or_else(|| "billing".into());
    let server = std::env::var("WEIR_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::builder(&server)
        .token(std::env::var("WEIR_TOKEN").ok())
        .build()?;
    let options = SubscribeOptions {
        consumer: Some(format!("ws-consumer-{}", std::process::id())),
        // At most 20 messages travel ahead of the handler, and at most 50
        // are received and not yet settled.
        credit: 20,
        max_unacked: Some(50),
        ..SubscribeOptions::default()
    };
    let mut subscription = client
        .subscriber(&topic, &sub)
        .subscribe_ws(options)
        .await?;
    eprintln!("consuming {topic}/{sub}");
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let message = tokio::select! {
            _ = &mut interrupted => break,
            message = subscription.next() => message,
        };
        // The stream ends only on a failure it does not reconnect after
        // (the subscription was deleted, access was revoked).
        let Some(message) = message else { break };
        let message = message?;
        let settled = match message.json::<Order>() {
            Ok(order) => {
                println!("order {} (attempt {})", order.order, message.attempt);
                message.ack().await
            }
            // Retrying cannot make it an order: dead-letter it now.
            Err(e) => {
                let nack = Nack::dead_letter().with_reason(format!("not an order: {e}"));
                message.nack_with(nack).await
            }
        };
        match settled {
            Err(Error::LeaseLost { .. }) => eprintln!(
                "lease of offset {} ran out before it was settled: it will come again",
                message.message.offset
            ),
            other => other?,
        }
    }
    // The server releases the leases of unsettled messages for redelivery.
    subscription.close().await;
    Ok(())
}
