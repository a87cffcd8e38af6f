//! A batching producer: sends 10 000 small JSON messages through one
//! `Producer`, which packs them into a few produce requests, then waits for
//! every message to be durable.
//!
//! ```text
//! weir-server --listen 127.0.0.1:8080 --data-dir ./weir-data &
//! cargo run -p weir-client --example producer            # WEIR_SERVER overrides the URL
//! ```

use std::time::{Duration, Instant};

use weir_client::{
    Client, Error, ErrorCode, ProduceMessage, ProduceMessageExt, ProducerConfig, TopicSpec,
};

const TOPIC: &str = "orders";
const MESSAGES: u64 = 10_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let server = std::env::var("WEIR_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::new(&server)?;
    if let Err(e) = client.topic(TOPIC).await {
        if e.code() != Some(ErrorCode::TopicNotFound) {
            return Err(e);
        }
        let spec = TopicSpec {
            partitions: Some(3),
            ..TopicSpec::default()
        };
        client.create_topic(TOPIC, &spec).await?;
    }

    let producer = client.producer(
        TOPIC,
        ProducerConfig {
            linger: Duration::from_millis(10),
            max_batch_messages: 1_000,
            ..ProducerConfig::default()
        },
    )?;
    let started = Instant::now();
    // `send` returns as soon as the message is queued (waiting only when the
    // queue is full); the `Delivery` resolves once its batch is durable.
    let mut deliveries = Vec::with_capacity(MESSAGES as usize);
    for i in 0..MESSAGES {
        let mut message = ProduceMessage::json(&serde_json::json!({"order": i, "amount": 42}))?;
        message.key = Some(format!("customer-{}", i % 100));
        deliveries.push(producer.send(message).await?);
    }
    let mut failed = 0;
    let mut last = None;
    for delivery in deliveries {
        match delivery.await {
            Ok(result) => last = Some(result),
            Err(e) => {
                failed += 1;
                eprintln!("not stored: {e}");
            }
        }
    }
    producer.close().await?;
    println!(
        "{} messages durable, {failed} failed, in {:.2?}; last at {:?}",
        MESSAGES - failed,
        started.elapsed(),
        last.map(|r| (r.partition, r.offset))
    );
    Ok(())
}
