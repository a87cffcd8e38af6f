//! `weir dlq`: inspect and redrive a subscription's dead letters.
//!
//! `list` reads the subscription's dead-letter topic (from its
//! configuration) with the stateless read API across partitions; it owns no
//! server state and acks nothing. `redrive` calls the redrive endpoint.

use crate::output::outln;
use clap::Subcommand;
use weir_client::{Client, Error, ErrorCode, Message};

use super::output::Printer;

/// Messages per read request while scanning the dead-letter topic.
const PAGE: u32 = 500;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters of a subscription with their `weir-*` headers.
    List {
        topic: String,
        sub: String,
        /// Most dead letters to print (read in partition, then offset order).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Also list dead letters of other subscriptions sharing the dead-letter topic.
        #[arg(long)]
        all: bool,
    },
    /// Make dead letters deliverable to the subscription again (attempts reset).
    Redrive {
        topic: String,
        sub: String,
        /// Most dead letters to redrive (default: all).
        #[arg(long)]
        max: Option<u64>,
    },
}

pub async fn run(command: DlqCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        DlqCommand::List {
            topic,
            sub,
            limit,
            all,
        } => {
            let info = client.subscription(&topic, &sub).await?;
            let Some(dlq) = info.config.dead_letter_topic else {
                return Err(Error::Local(format!(
                    "subscription `{sub}` of topic `{topic}` has no dead-letter topic"
                )));
            };
            let origin = (!all).then_some((topic.as_str(), sub.as_str()));
            let messages = read_dead_letters(client, &dlq, origin, limit).await?;
            printer.dead_letters(&dlq, &messages);
        }
        DlqCommand::Redrive { topic, sub, max } => {
            let response = client.redrive(&topic, &sub, max).await?;
            if printer.is_json() {
                printer.json(&response);
            } else {
                outln!(
                    "redrove {} dead letters to subscription {sub} of topic {topic}",
                    response.redriven
                );
            }
        }
    }
    Ok(())
}

/// Up to `limit` messages of `dlq`, oldest offsets first per partition,
/// keeping only those that came from `origin` (topic, subscription) when
/// given. A dead-letter topic is created with its first dead letter, so a
/// missing one means none yet.
async fn read_dead_letters(
    client: &Client,
    dlq: &str,
    origin: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<Message>, Error> {
    let info = match client.topic(dlq).await {
        Ok(info) => info,
        Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for partition in &info.partitions {
        let mut offset = partition.low_offset;
        while offset < partition.high_offset && found.len() < limit {
            let page = client.read(dlq, partition.partition, offset, PAGE).await?;
            if page.messages.is_empty() || page.next_offset <= offset {
                break;
            }
            offset = page.next_offset;
            found.extend(
                page.messages
                    .into_iter()
                    .filter(|m| origin.is_none_or(|(topic, sub)| came_from(m, topic, sub))),
            );
        }
    }
    found.truncate(limit);
    Ok(found)
}

/// Whether a dead letter came from `sub` of `topic`. A message without the
/// origin headers (written to the topic by hand) is shown rather than hidden.
fn came_from(m: &Message, topic: &str, sub: &str) -> bool {
    let matches = |name: &str, want: &str| m.headers.get(name).is_none_or(|v| v == want);
    matches("weir-original-topic", topic) && matches("weir-subscription", sub)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn dead_letter(headers: &[(&str, &str)]) -> Message {
        Message {
            topic: "orders.billing.dlq".into(),
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: None,
            value: None,
            value_b64: Some("AA==".into()),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn dead_letters_of_other_subscriptions_are_filtered_out() {
        let ours = dead_letter(&[
            ("weir-original-topic", "orders"),
            ("weir-subscription", "billing"),
        ]);
        let other_sub = dead_letter(&[
            ("weir-original-topic", "orders"),
            ("weir-subscription", "shipping"),
        ]);
        let other_topic = dead_letter(&[
            ("weir-original-topic", "refunds"),
            ("weir-subscription", "billing"),
        ]);
        assert!(came_from(&ours, "orders", "billing"));
        assert!(!came_from(&other_sub, "orders", "billing"));
        assert!(!came_from(&other_topic, "orders", "billing"));
        assert!(came_from(&dead_letter(&[]), "orders", "billing"));
    }
}
