//! Consume a subscription over a WebSocket: handle each message, ack it (or
//! nack it with a reason), stop cleanly on Ctrl-C, and reconnect when the
//! server goes away (shutdown, restart, network failure).
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

use std::time::Duration;

use futures_util::StreamExt;
use weir_client::{Client, Error, NackRequest, ReceivedMessage, Refill, SubscribeOptions};

/// Pause before reconnecting after a transient failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let sub = args.next().unwrap_or_else(|| "billing".into());
    let server = std::env::var("WEIR_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::new(&server)?.with_token(std::env::var("WEIR_TOKEN").ok());
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let ended = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            ended = consume(&client, &topic, &sub) => ended,
        };
        match ended {
            // The stream ended without an error: only a close on this side does that.
            Ok(()) => return Ok(()),
            // Messages that were not acked are delivered again: nothing is lost.
            Err(e) if e.is_transient() => {
                eprintln!("{e}; reconnecting");
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Consumes until the socket ends. Dropping this future (Ctrl-C) drops the
/// subscription, which closes the socket: the server releases the leases
/// of unsettled messages for redelivery.
async fn consume(client: &Client, topic: &str, sub: &str) -> Result<(), Error> {
    let options = SubscribeOptions {
        consumer: Some(format!("ws-consumer-{}", std::process::id())),
        // At most 20 messages travel ahead of the handler; each message
        // the stream yields is granted again (`Refill::OnYield`).
        credit: 20,
        refill: Refill::OnYield,
    };
    let mut subscription = client.subscribe_ws(topic, sub, options).await?;
    eprintln!("consuming {topic}/{sub}");
    while let Some(message) = subscription.next().await {
        let message = message?;
        let ack_id = message.ack_id.clone();
        let settled = match handle(&message) {
            Ok(()) => subscription.ack(vec![ack_id]).await?,
            Err(reason) => {
                let request = NackRequest {
                    ack_ids: vec![ack_id],
                    reason: Some(reason),
                    ..NackRequest::default()
                };
                subscription.nack(request).await?
            }
        };
        if !settled.unknown.is_empty() {
            eprintln!(
                "lease of offset {} ran out before it was settled: it will come again",
                message.message.offset
            );
        }
    }
    Ok(())
}

/// The application's work: here, orders must be JSON objects.
fn handle(message: &ReceivedMessage) -> Result<(), String> {
    let m = &message.message;
    let value = m.value.as_ref().map(|v| v.get()).unwrap_or("null");
    println!(
        "{}:{} attempt {} {value}",
        m.partition, m.offset, message.attempt
    );
    if value.starts_with('{') {
        Ok(())
    } else {
        Err(format!("expected a JSON object, got {value}"))
    }
}
