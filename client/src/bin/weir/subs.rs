//! `weir subs`: create, list, describe, delete and seek subscriptions.
//!
//! Owns the flags and their parsing into protocol types (`--start`,
//! `--to`, the retry flags); printing is in `output.rs`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};
use weir_client::{
    AtOffsets, AtTimestamp, Backoff, Client, Error, ErrorCode, Mode, Ordering, RetryPolicy,
    RetrySpec, SeekRequest, SeekTarget, Start, StartName, SubscriptionSpec,
};

use super::output::Printer;

/// The server's retry defaults, the base when a retry flag is given for a
/// subscription that does not exist yet (the protocol sends the policy whole).
const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: Some(5),
    backoff: Backoff {
        initial_ms: 1000,
        max_ms: 60_000,
        multiplier: 2.0,
        jitter: 0.1,
    },
    circuit_breaker: None,
};

#[derive(Subcommand)]
pub enum SubsCommand {
    /// Create a subscription, or update the settings given.
    Create(CreateArgs),
    /// List the subscriptions of a topic with their backlog.
    List { topic: String },
    /// Describe a subscription: configuration, stats and cursors.
    Describe { topic: String, sub: String },
    /// Delete a subscription and its state.
    Delete { topic: String, sub: String },
    /// Move a subscription; messages from the new position are delivered again.
    Seek {
        topic: String,
        sub: String,
        /// `earliest`, `latest`, `timestamp:<ms>` or `offsets:<partition>=<offset>,...`.
        #[arg(long, value_parser = parse_seek_target)]
        to: SeekTarget,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    topic: String,
    sub: String,
    /// Delivery mode; cannot change after creation (server default: queue).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Where a new subscription starts: `earliest`, `latest` or a timestamp
    /// in ms (server default: latest).
    #[arg(long, value_parser = parse_start)]
    start: Option<Start>,
    /// Lease length in milliseconds.
    #[arg(long)]
    ack_timeout_ms: Option<u64>,
    /// Deliveries before dead-lettering: a number, or `unlimited`.
    #[arg(long, value_parser = parse_max_attempts)]
    max_attempts: Option<MaxAttempts>,
    /// Delay after the first failure, in ms.
    #[arg(long)]
    backoff_initial_ms: Option<u64>,
    /// Upper bound of the retry delay, in ms.
    #[arg(long)]
    backoff_max_ms: Option<u64>,
    /// Growth of the retry delay per attempt (1 = fixed).
    #[arg(long)]
    backoff_multiplier: Option<f64>,
    /// Random share of the retry delay, 0..=1.
    #[arg(long)]
    jitter: Option<f64>,
    /// Dead-letter topic (server default: `<topic>.<sub>.dlq`).
    #[arg(long, conflicts_with = "no_dead_letter")]
    dead_letter_topic: Option<String>,
    /// Do not dead-letter: drop messages after the last attempt.
    #[arg(long)]
    no_dead_letter: bool,
    /// Queue mode ordering: `key` keeps one message per key in flight.
    #[arg(long, value_enum)]
    ordering: Option<OrderingArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Queue,
    Stream,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderingArg {
    None,
    Key,
}

/// `--max-attempts`: `None` inside means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaxAttempts(Option<u32>);

pub async fn run(command: SubsCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        SubsCommand::Create(args) => {
            let current = if args.changes_retry() {
                match client.subscription(&args.topic, &args.sub).await {
                    Ok(info) => Some(info.config.retry),
                    Err(e) if e.code() == Some(ErrorCode::SubscriptionNotFound) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            let spec = args.spec(current);
            let info = client
                .create_subscription(&args.topic, &args.sub, &spec)
                .await?;
            printer.subscription(&info);
        }
        SubsCommand::List { topic } => printer.subscriptions(&client.subscriptions(&topic).await?),
        SubsCommand::Describe { topic, sub } => {
            printer.subscription(&client.subscription(&topic, &sub).await?)
        }
        SubsCommand::Delete { topic, sub } => {
            client.delete_subscription(&topic, &sub).await?;
            printer.done(&format!("deleted subscription {sub} of topic {topic}"));
        }
        SubsCommand::Seek { topic, sub, to } => {
            let info = client.seek(&topic, &sub, &SeekRequest { to }).await?;
            printer.subscription(&info);
        }
    }
    Ok(())
}

impl CreateArgs {
    fn changes_retry(&self) -> bool {
        self.max_attempts.is_some()
            || self.backoff_initial_ms.is_some()
            || self.backoff_max_ms.is_some()
            || self.backoff_multiplier.is_some()
            || self.jitter.is_some()
    }

    /// The request body. Retry flags override `current` (the existing
    /// policy, or the defaults for a new subscription) field by field, so
    /// `--max-attempts 10` alone does not reset the backoff.
    fn spec(&self, current: Option<RetryPolicy>) -> SubscriptionSpec {
        let retry = self.changes_retry().then(|| {
            let base = current.unwrap_or(DEFAULT_RETRY);
            let merged = RetryPolicy {
                max_attempts: self.max_attempts.map_or(base.max_attempts, |m| m.0),
                backoff: Backoff {
                    initial_ms: self.backoff_initial_ms.unwrap_or(base.backoff.initial_ms),
                    max_ms: self.backoff_max_ms.unwrap_or(base.backoff.max_ms),
                    multiplier: self.backoff_multiplier.unwrap_or(base.backoff.multiplier),
                    jitter: self.jitter.unwrap_or(base.backoff.jitter),
                },
                circuit_breaker: base.circuit_breaker,
            };
            // The circuit breaker has no flag here: leave it as it is.
            RetrySpec {
                circuit_breaker: None,
                ..RetrySpec::from(merged)
            }
        });
        let dead_letter_topic = if self.no_dead_letter {
            Some(None)
        } else {
            self.dead_letter_topic.clone().map(Some)
        };
        SubscriptionSpec {
            mode: self.mode.map(|m| match m {
                ModeArg::Queue => Mode::Queue,
                ModeArg::Stream => Mode::Stream,
            }),
            start: self.start,
            ack_timeout_ms: self.ack_timeout_ms,
            retry,
            dead_letter_topic,
            ordering: self.ordering.map(|o| match o {
                OrderingArg::None => Ordering::None,
                OrderingArg::Key => Ordering::Key,
            }),
            ..SubscriptionSpec::default()
        }
    }
}

/// `earliest`, `latest`, `<ms>` or `timestamp:<ms>`.
fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "earliest" => Ok(Start::Named(StartName::Earliest)),
        "latest" => Ok(Start::Named(StartName::Latest)),
        _ => {
            let ms = s.strip_prefix("timestamp:").unwrap_or(s);
            parse_timestamp(ms)
                .map(|timestamp| Start::Timestamp(AtTimestamp { timestamp }))
                .map_err(|_| format!("`{s}` is not `earliest`, `latest` or a timestamp in ms"))
        }
    }
}

/// `earliest`, `latest`, `timestamp:<ms>` or `offsets:<partition>=<offset>,...`.
fn parse_seek_target(s: &str) -> Result<SeekTarget, String> {
    if let Some(ms) = s.strip_prefix("timestamp:") {
        let timestamp = parse_timestamp(ms)?;
        return Ok(SeekTarget::Timestamp(AtTimestamp { timestamp }));
    }
    if let Some(list) = s.strip_prefix("offsets:") {
        return parse_offsets(list).map(|offsets| SeekTarget::Offsets(AtOffsets { offsets }));
    }
    match s {
        "earliest" => Ok(SeekTarget::Named(StartName::Earliest)),
        "latest" => Ok(SeekTarget::Named(StartName::Latest)),
        _ => Err(format!(
            "`{s}` is not `earliest`, `latest`, `timestamp:<ms>` or `offsets:<partition>=<offset>,...`"
        )),
    }
}

fn parse_timestamp(ms: &str) -> Result<u64, String> {
    ms.parse()
        .map_err(|_| format!("`{ms}` is not a timestamp in milliseconds"))
}

/// `0=10,1=5` → `{"0": 10, "1": 5}`; each partition at most once.
fn parse_offsets(list: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut offsets = BTreeMap::new();
    for pair in list.split(',') {
        let (partition, offset) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not `<partition>=<offset>`"))?;
        let partition: u32 = partition
            .trim()
            .parse()
            .map_err(|_| format!("`{partition}` is not a partition number"))?;
        let offset: u64 = offset
            .trim()
            .parse()
            .map_err(|_| format!("`{offset}` is not an offset"))?;
        if offsets.insert(partition.to_string(), offset).is_some() {
            return Err(format!("partition {partition} is named twice"));
        }
    }
    Ok(offsets)
}

fn parse_max_attempts(s: &str) -> Result<MaxAttempts, String> {
    if s == "unlimited" {
        return Ok(MaxAttempts(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(MaxAttempts(Some(n))),
        _ => Err(format!("`{s}` is not a positive number or `unlimited`")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: SubsCommand,
    }

    fn create(args: &[&str]) -> CreateArgs {
        let argv = ["weir", "create", "orders", "billing"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            SubsCommand::Create(args) => args,
            _ => unreachable!("parsed a create command"),
        }
    }

    #[test]
    fn start_takes_names_and_timestamps() {
        assert_eq!(
            parse_start("earliest"),
            Ok(Start::Named(StartName::Earliest))
        );
        assert_eq!(parse_start("latest"), Ok(Start::Named(StartName::Latest)));
        let at = Start::Timestamp(AtTimestamp {
            timestamp: 1_764_300_000_000,
        });
        assert_eq!(parse_start("1764300000000"), Ok(at));
        assert_eq!(parse_start("timestamp:1764300000000"), Ok(at));
        assert!(parse_start("yesterday").is_err());
        assert!(parse_start("-5").is_err());
    }

    #[test]
    fn seek_targets_parse_every_form() {
        assert_eq!(
            parse_seek_target("earliest"),
            Ok(SeekTarget::Named(StartName::Earliest))
        );
        assert_eq!(
            parse_seek_target("timestamp:42"),
            Ok(SeekTarget::Timestamp(AtTimestamp { timestamp: 42 }))
        );
        let Ok(SeekTarget::Offsets(at)) = parse_seek_target("offsets:0=10,1=5") else {
            panic!("offsets form");
        };
        assert_eq!(
            at.offsets,
            BTreeMap::from([("0".into(), 10), ("1".into(), 5)])
        );
        let body = serde_json::to_string(&SeekRequest {
            to: SeekTarget::Offsets(at),
        })
        .unwrap();
        assert_eq!(body, r#"{"to":{"offsets":{"0":10,"1":5}}}"#);
    }

    #[test]
    fn bad_seek_targets_say_what_is_wrong() {
        for bad in [
            "42",
            "timestamp:",
            "offsets:",
            "offsets:0=1,0=2",
            "offsets:x=1",
            "offsets:0=-1",
            "offsets:0",
        ] {
            assert!(parse_seek_target(bad).is_err(), "{bad} must be refused");
        }
        assert!(parse_seek_target("offsets:0=1,0=2")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn create_flags_build_the_spec() {
        let spec = create(&[
            "--mode",
            "stream",
            "--start",
            "earliest",
            "--ack-timeout-ms",
            "5000",
            "--dead-letter-topic",
            "orders.failed",
        ])
        .spec(None);
        assert_eq!(spec.mode, Some(Mode::Stream));
        assert_eq!(spec.start, Some(Start::Named(StartName::Earliest)));
        assert_eq!(spec.ack_timeout_ms, Some(5000));
        assert_eq!(spec.dead_letter_topic, Some(Some("orders.failed".into())));
        assert_eq!(spec.retry, None, "no retry flag, no retry change");
        assert_eq!(spec.ordering, None);
    }

    #[test]
    fn no_dead_letter_sends_an_explicit_null() {
        let spec = create(&["--no-dead-letter"]).spec(None);
        assert_eq!(spec.dead_letter_topic, Some(None));
        let body = serde_json::to_value(&spec).unwrap();
        assert!(body["dead_letter_topic"].is_null());
        let argv = [
            "weir",
            "create",
            "t",
            "s",
            "--no-dead-letter",
            "--dead-letter-topic",
            "d",
        ];
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn retry_flags_override_the_current_policy_field_by_field() {
        let current = RetryPolicy {
            max_attempts: Some(3),
            backoff: Backoff {
                initial_ms: 10,
                max_ms: 20,
                multiplier: 1.5,
                jitter: 0.0,
            },
            circuit_breaker: None,
        };
        let spec = create(&["--max-attempts", "10"]).spec(Some(current));
        let retry = spec.retry.unwrap().apply(DEFAULT_RETRY);
        assert_eq!(retry.max_attempts, Some(10));
        assert_eq!(retry.backoff, current.backoff);

        let spec = create(&["--backoff-max-ms", "90000", "--max-attempts", "unlimited"]).spec(None);
        let retry = spec.retry.unwrap().apply(current);
        assert_eq!(retry.max_attempts, None);
        assert_eq!(retry.backoff.max_ms, 90_000);
        assert_eq!(retry.backoff.initial_ms, DEFAULT_RETRY.backoff.initial_ms);
        assert!(parse_max_attempts("0").is_err());
    }
}
