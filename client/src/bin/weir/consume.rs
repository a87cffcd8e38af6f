//! `weir consume`: pull messages of a subscription, print them, then ack
//! (default), nack (`--nack`) or leave them leased (`--no-ack`). Runs until
//! Ctrl-C, `--count` messages, or an empty pull with `--until-empty`.
//! `--ws` consumes over the subscription's WebSocket instead: messages are
//! pushed (at most `--max` ahead), each settled as it is printed, and
//! "empty" means nothing arrived for `--wait-ms`.
//!
//! A debugging and scripting tool: one pull at a time, settled before the
//! next. Programs should use `Client::consume`, which renews leases and
//! runs handlers concurrently.

use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use weir_client::{
    AckResponse, Client, Error, Nack, NackRequest, PullRequest, Received, ReceivedMessage, Refill,
    SubscribeOptions,
};

use super::encoding::EncodingArg;
use super::output::{errln, Printer};

/// The server's most messages per pull.
const MAX_PULL: u32 = weir_protocol::limits::MAX_PULL_MESSAGES;

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic of the subscription.
    topic: String,
    /// Subscription to consume.
    sub: String,
    /// Most messages per pull, 1..=1000 (with --ws: most messages pushed
    /// ahead of the ones printed).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PULL)))]
    max: u32,
    /// Long-poll time of each pull, in ms.
    #[arg(long, default_value_t = 5000)]
    wait_ms: u64,
    /// Consumer name; needed to own partitions in stream mode.
    #[arg(long)]
    consumer: Option<String>,
    /// Nack the messages (redelivered per the retry policy) instead of acking.
    #[arg(long, conflicts_with = "no_ack")]
    nack: bool,
    /// Reason sent with `--nack`; kept as the dead-letter reason.
    #[arg(long, requires = "nack")]
    reason: Option<String>,
    /// Leave the messages leased: they are delivered again after the ack timeout.
    #[arg(long)]
    no_ack: bool,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop at the first pull that returns no message.
    #[arg(long)]
    until_empty: bool,
    /// Consume over the subscription's WebSocket (pushed messages) instead
    /// of HTTP pulls. With `--no-ack`, leases end when the socket closes.
    #[arg(long)]
    ws: bool,
    /// Encoding of the deliveries: `json`, or `binary`
    /// (application/vnd.weir.batch) — binary pull responses, or with --ws
    /// binary delivery frames. What is printed is the same.
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    encoding: EncodingArg,
}

/// What happens to each pulled batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack(Option<String>),
    Leave,
}

impl ConsumeArgs {
    fn settle(&self) -> Settle {
        if self.no_ack {
            Settle::Leave
        } else if self.nack {
            Settle::Nack(self.reason.clone())
        } else {
            Settle::Ack
        }
    }

    /// Messages to ask for when `seen` were received so far.
    fn batch(&self, seen: u64) -> u32 {
        let max = self.max;
        match self.count {
            Some(count) => {
                u32::try_from(count.saturating_sub(seen)).map_or(max, |left| left.min(max))
            }
            None => max,
        }
    }
}

pub async fn run(args: ConsumeArgs, client: &Client, printer: &Printer) -> Result<(), Error> {
    if args.ws {
        return run_ws(args, client, printer).await;
    }
    let client = &args.encoding.client(client);
    let settle = args.settle();
    let (topic, sub) = (args.topic.as_str(), args.sub.as_str());
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut seen = 0u64;
    let mut lost = 0usize;
    loop {
        let batch = args.batch(seen);
        if batch == 0 {
            break;
        }
        let request = PullRequest {
            max_messages: Some(batch),
            wait_ms: Some(args.wait_ms),
            consumer: args.consumer.clone(),
        };
        // Ctrl-C interrupts a waiting pull, never a settle in progress.
        let messages = tokio::select! {
            biased;
            _ = &mut interrupted => break,
            pulled = client.pull(topic, sub, &request) => pulled?,
        };
        if messages.is_empty() {
            if args.until_empty {
                break;
            }
            continue;
        }
        for m in &messages {
            printer.received(m);
        }
        seen += messages.len() as u64;
        if let Some(response) = settle_all(client, topic, sub, &settle, &messages).await? {
            lost += response.unknown.len();
        }
    }
    summary(printer, &settle, seen, lost);
    Ok(())
}

/// `--ws`: the same over the subscription socket, one message at a time.
async fn run_ws(args: ConsumeArgs, client: &Client, printer: &Printer) -> Result<(), Error> {
    let settle = args.settle();
    // With `--count`, exactly that many are granted: a message pushed
    // beyond it would be leased for nothing, and released (a failed
    // attempt) when the socket closes.
    let (credit, refill) = match args.count {
        Some(_) => (args.batch(0), Refill::Manual),
        None => (args.max, Refill::OnYield),
    };
    let options = SubscribeOptions {
        consumer: args.consumer.clone(),
        credit,
        refill,
        ..SubscribeOptions::default()
    };
    let mut messages = args
        .encoding
        .client(client)
        .subscribe_ws(&args.topic, &args.sub, options)
        .await?;
    let mut granted = u64::from(credit);
    let wait = Duration::from_millis(args.wait_ms);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let (mut seen, mut lost) = (0u64, 0usize);
    while args.batch(seen) > 0 {
        let next = tokio::select! {
            biased;
            _ = &mut interrupted => break,
            next = tokio::time::timeout(wait, messages.next()) => next,
        };
        let message = match next {
            // Nothing for `--wait-ms`: an empty pull.
            Err(_) if args.until_empty => break,
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(message)) => message?,
        };
        printer.received(&plain(&message));
        seen += 1;
        // `--count` beyond `--max`: one more for each one taken.
        if args.count.is_some_and(|count| granted < count) {
            messages.add_credit(1);
            granted += 1;
        }
        match settle_one(&settle, &message).await {
            Err(Error::LeaseLost { .. }) => lost += 1,
            other => other?,
        }
    }
    messages.close().await;
    summary(printer, &settle, seen, lost);
    Ok(())
}

/// The delivery as the printer shows it.
fn plain(message: &Received) -> ReceivedMessage {
    ReceivedMessage {
        message: message.message.clone(),
        ack_id: message.ack_id.clone(),
        attempt: message.attempt,
    }
}

async fn settle_one(settle: &Settle, message: &Received) -> Result<(), Error> {
    match settle {
        Settle::Ack => message.ack().await,
        Settle::Nack(reason) => {
            let nack = match reason {
                Some(reason) => Nack::retry().with_reason(reason.clone()),
                None => Nack::retry(),
            };
            message.nack_with(nack).await
        }
        Settle::Leave => Ok(()),
    }
}

fn summary(printer: &Printer, settle: &Settle, seen: u64, lost: usize) {
    if !printer.is_json() {
        let done = match settle {
            Settle::Ack => "acked",
            Settle::Nack(_) => "nacked",
            Settle::Leave => "left leased",
        };
        errln!("{seen} messages {done}");
    }
    if lost > 0 {
        errln!(
            "weir: {lost} leases had expired before they were settled; those messages will be delivered again"
        );
    }
}

async fn settle_all(
    client: &Client,
    topic: &str,
    sub: &str,
    settle: &Settle,
    messages: &[ReceivedMessage],
) -> Result<Option<AckResponse>, Error> {
    let ack_ids: Vec<String> = messages.iter().map(|m| m.ack_id.clone()).collect();
    match settle {
        Settle::Ack => Ok(Some(client.ack(topic, sub, ack_ids).await?)),
        Settle::Nack(reason) => {
            let request = NackRequest {
                ack_ids,
                reason: reason.clone(),
                ..NackRequest::default()
            };
            Ok(Some(client.nack(topic, sub, &request).await?))
        }
        Settle::Leave => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn parse(flags: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        let argv = ["weir", "orders", "billing"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn settle_mode_follows_the_flags() {
        assert_eq!(parse(&[]).unwrap().settle(), Settle::Ack);
        assert_eq!(parse(&["--no-ack"]).unwrap().settle(), Settle::Leave);
        assert_eq!(
            parse(&["--nack", "--reason", "bad input"])
                .unwrap()
                .settle(),
            Settle::Nack(Some("bad input".into()))
        );
        assert!(parse(&["--reason", "x"]).is_err(), "--reason needs --nack");
        assert!(parse(&["--nack", "--no-ack"]).is_err());
    }

    #[test]
    fn count_limits_what_each_pull_asks_for() {
        let args = parse(&["--max", "10", "--count", "25"]).unwrap();
        assert_eq!(args.batch(0), 10);
        assert_eq!(args.batch(20), 5);
        assert_eq!(args.batch(25), 0);
        assert_eq!(parse(&["--max", "1000"]).unwrap().batch(0), 1000);
        // Out of range is an error, not a silent clamp.
        assert!(parse(&["--max", "1001"]).is_err());
        assert!(parse(&["--max", "0"]).is_err());
    }
}
