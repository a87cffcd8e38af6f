//! `weir subs`: create, update, list, describe, delete, seek, pause and
//! resume subscriptions.
//!
//! Owns the flags and their parsing into protocol types (`--start`,
//! `--to`, the retry, breaker, TTL and push flags); printing is in
//! `output.rs`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};
use weir_client::{
    AtOffsets, AtTimestamp, Backoff, CircuitBreaker, Client, Error, ErrorCode, Mode, Ordering,
    PushBatch, PushSpec, RetryPolicy, RetrySpec, SeekRequest, SeekTarget, Start, StartName,
    SubscriptionInfo, SubscriptionSpec,
};

use super::output::{outln, Printer};
use super::produce::parse_headers;

/// The server's retry defaults (one definition, in the protocol crate):
/// the base when a retry flag is given for a subscription that does not
/// exist yet.
fn default_retry() -> RetryPolicy {
    weir_protocol::limits::default_retry_policy()
}

#[derive(Subcommand)]
pub enum SubsCommand {
    /// Create a subscription, or update the settings given when it exists.
    Create(CreateArgs),
    /// Change the settings given of an existing subscription (fails when
    /// it does not exist).
    Update(UpdateArgs),
    /// List the subscriptions of a topic with their state and backlog.
    List {
        /// Topic whose subscriptions to list.
        topic: String,
    },
    /// Describe a subscription: state, configuration, stats and cursors.
    Describe {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
    },
    /// Delete a subscription and its state.
    Delete {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
    },
    /// Move a subscription; messages from the new position are delivered again.
    Seek {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
        /// `earliest`, `latest`, `timestamp:<ms>` or `offsets:<partition>=<offset>,...`.
        #[arg(long, value_parser = parse_seek_target)]
        to: SeekTarget,
    },
    /// Pause deliveries: pulls return nothing, sockets and push send
    /// nothing; acks, nacks and extends keep working. Survives restarts.
    Pause {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
        /// Why, shown by `weir subs describe` (at most 1024 bytes).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume deliveries of a subscription paused by hand or by its
    /// circuit breaker.
    Resume {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
        /// Also redrive the dead letters of the circuit breaker's window
        /// (the ones that tripped it).
        #[arg(long)]
        redrive: bool,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Topic to subscribe to.
    topic: String,
    /// Subscription name.
    sub: String,
    /// Delivery mode; cannot change after creation (server default: queue).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Where a new subscription starts: `earliest`, `latest` or a timestamp
    /// in ms (server default: latest). Ignored when it exists.
    #[arg(long, value_parser = parse_start)]
    start: Option<Start>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Topic of the subscription.
    topic: String,
    /// Subscription name.
    sub: String,
    #[command(flatten)]
    settings: Settings,
}

/// The settings `create` and `update` share.
#[derive(Args, Default)]
pub struct Settings {
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
    /// Circuit breaker: pause the subscription when more than this many
    /// messages are dead-lettered within --breaker-window-ms.
    #[arg(long, requires = "breaker_window_ms", conflicts_with = "no_breaker")]
    breaker_max_dead_letters: Option<u32>,
    /// Circuit breaker: the sliding window, in ms (1000..=86400000).
    #[arg(long, requires = "breaker_max_dead_letters")]
    breaker_window_ms: Option<u64>,
    /// Circuit breaker: resume by itself this long after tripping, in ms
    /// (default: stay paused until `weir subs resume`).
    #[arg(long, requires = "breaker_max_dead_letters")]
    breaker_cooldown_ms: Option<u64>,
    /// Remove the circuit breaker.
    #[arg(long)]
    no_breaker: bool,
    /// Dead-letter topic the failed messages are copied to (server default:
    /// `<topic>.<sub>.dlq`).
    #[arg(long, conflicts_with = "no_dead_letter")]
    dead_letter_topic: Option<String>,
    /// No dead-letter topic: no copy is made. After the last attempt the
    /// message is settled and kept as a dead letter of the subscription
    /// (listed, redrivable and purgeable with `weir dlq`) until retention
    /// removes it.
    #[arg(long)]
    no_dead_letter: bool,
    /// Queue mode ordering: `key` keeps one message per key in flight.
    #[arg(long, value_enum)]
    ordering: Option<OrderingArg>,
    /// Messages older than this many ms (since produced) are never
    /// delivered: they are dead-lettered with reason `expired`. `off`
    /// removes the limit.
    #[arg(long, value_parser = parse_ttl, value_name = "MS|off")]
    message_ttl_ms: Option<Ttl>,
    /// Push delivery: POST messages to this http(s) URL (a webhook)
    /// instead of waiting for pulls. The push settings are sent whole: a
    /// secret, headers or rate not given again are removed.
    #[arg(long, conflicts_with = "no_push", value_name = "URL")]
    push_url: Option<String>,
    /// Push: extra request header `name=value` (repeatable).
    #[arg(long = "push-header", requires = "push_url", value_name = "NAME=VALUE")]
    push_headers: Vec<String>,
    /// Push: signing secret, `whsec_<base64>` (Standard Webhooks); without
    /// it requests are unsigned.
    #[arg(long, requires = "push_url", value_name = "whsec_...")]
    push_secret: Option<String>,
    /// Push: a second signing secret during a rotation (both sign).
    #[arg(long, requires = "push_secret", value_name = "whsec_...")]
    push_previous_secret: Option<String>,
    /// Push: per-request timeout in ms, 100..=300000 (server default 10000).
    #[arg(long, requires = "push_url")]
    push_timeout_ms: Option<u64>,
    /// Push: requests in flight at once, 1..=1024 (server default 16).
    #[arg(long, requires = "push_url")]
    push_max_in_flight: Option<u32>,
    /// Push: most requests per second (default: unlimited).
    #[arg(long, requires = "push_url")]
    push_rate: Option<u32>,
    /// Push: messages per request, 1..=1000 (more than 1: the body is
    /// `{"messages": [...]}`).
    #[arg(long, requires = "push_url")]
    push_batch: Option<u32>,
    /// Push: longest wait for a batch to fill, in ms (default 0: send what
    /// is ready).
    #[arg(long, requires = "push_batch")]
    push_batch_wait_ms: Option<u64>,
    /// Turn push delivery off (consumers pull again).
    #[arg(long)]
    no_push: bool,
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

/// `--message-ttl-ms`: `None` inside means off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ttl(Option<u64>);

pub async fn run(command: SubsCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        SubsCommand::Create(args) => {
            let current = if args.settings.changes_retry() {
                match client.subscription(&args.topic, &args.sub).await {
                    Ok(info) => Some(info.config.retry),
                    Err(e) if e.code() == Some(ErrorCode::SubscriptionNotFound) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            let spec = args.spec(current)?;
            let info = client
                .create_subscription(&args.topic, &args.sub, &spec)
                .await?;
            printer.subscription(&info);
        }
        SubsCommand::Update(args) => {
            // `PUT` would create a missing subscription: look first.
            let current = client.subscription(&args.topic, &args.sub).await?;
            if !args.settings.any() {
                return Err(Error::Local(
                    "nothing to update: give at least one setting (see `weir subs update --help`)"
                        .into(),
                ));
            }
            let spec = args.settings.spec(Some(current.config.retry))?;
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
        SubsCommand::Pause { topic, sub, reason } => {
            let info = client.pause(&topic, &sub, reason.as_deref()).await?;
            paused_or_resumed(printer, &info);
        }
        SubsCommand::Resume {
            topic,
            sub,
            redrive,
        } => {
            let info = client.resume(&topic, &sub, redrive).await?;
            paused_or_resumed(printer, &info);
        }
    }
    Ok(())
}

/// The answer of `pause` and `resume`: the subscription (JSON), or one line.
fn paused_or_resumed(printer: &Printer, info: &SubscriptionInfo) {
    if printer.is_json() {
        return printer.json(info);
    }
    let (sub, topic) = (&info.name, &info.topic);
    if info.paused {
        let reason = info
            .paused_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        outln!("subscription {sub} of topic {topic} is paused{reason}");
    } else {
        outln!("subscription {sub} of topic {topic} is active");
    }
}

impl CreateArgs {
    /// The request body: the settings, plus mode and start.
    fn spec(&self, current: Option<RetryPolicy>) -> Result<SubscriptionSpec, Error> {
        Ok(SubscriptionSpec {
            mode: self.mode.map(|m| match m {
                ModeArg::Queue => Mode::Queue,
                ModeArg::Stream => Mode::Stream,
            }),
            start: self.start,
            ..self.settings.spec(current)?
        })
    }
}

impl Settings {
    /// Whether any setting is given.
    fn any(&self) -> bool {
        self.ack_timeout_ms.is_some()
            || self.changes_retry()
            || self.changes_breaker()
            || self.dead_letter_topic.is_some()
            || self.no_dead_letter
            || self.ordering.is_some()
            || self.message_ttl_ms.is_some()
            || self.push_url.is_some()
            || self.no_push
    }

    fn changes_retry(&self) -> bool {
        self.max_attempts.is_some()
            || self.backoff_initial_ms.is_some()
            || self.backoff_max_ms.is_some()
            || self.backoff_multiplier.is_some()
            || self.jitter.is_some()
    }

    fn changes_breaker(&self) -> bool {
        self.breaker_max_dead_letters.is_some() || self.no_breaker
    }

    /// The request body. Retry flags override `current` (the existing
    /// policy, or the defaults for a new subscription) field by field, so
    /// `--max-attempts 10` alone does not reset the backoff.
    fn spec(&self, current: Option<RetryPolicy>) -> Result<SubscriptionSpec, Error> {
        let breaker = if self.no_breaker {
            Some(None)
        } else {
            match (self.breaker_max_dead_letters, self.breaker_window_ms) {
                (Some(max_dead_letters), Some(window_ms)) => Some(Some(CircuitBreaker {
                    max_dead_letters,
                    window_ms,
                    cooldown_ms: self.breaker_cooldown_ms,
                })),
                _ => None,
            }
        };
        let retry = if self.changes_retry() {
            let base = current.unwrap_or_else(default_retry);
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
            // The breaker changes only with its own flags.
            Some(RetrySpec {
                circuit_breaker: breaker,
                ..RetrySpec::from(merged)
            })
        } else {
            breaker.map(|breaker| RetrySpec {
                circuit_breaker: Some(breaker),
                ..RetrySpec::default()
            })
        };
        let dead_letter_topic = if self.no_dead_letter {
            Some(None)
        } else {
            self.dead_letter_topic.clone().map(Some)
        };
        let push = if self.no_push {
            Some(None)
        } else {
            match &self.push_url {
                Some(url) => Some(Some(self.push_spec(url)?)),
                None => None,
            }
        };
        Ok(SubscriptionSpec {
            ack_timeout_ms: self.ack_timeout_ms,
            retry,
            dead_letter_topic,
            ordering: self.ordering.map(|o| match o {
                OrderingArg::None => Ordering::None,
                OrderingArg::Key => Ordering::Key,
            }),
            message_ttl_ms: self.message_ttl_ms.map(|t| t.0),
            push,
            ..SubscriptionSpec::default()
        })
    }

    fn push_spec(&self, url: &str) -> Result<PushSpec, Error> {
        let headers = parse_headers(&self.push_headers)?;
        Ok(PushSpec {
            url: url.to_owned(),
            headers: (!headers.is_empty()).then_some(headers),
            timeout_ms: self.push_timeout_ms,
            max_in_flight: self.push_max_in_flight,
            rate_per_s: self.push_rate,
            secret: self.push_secret.clone(),
            previous_secret: self.push_previous_secret.clone(),
            batch: self.push_batch.map(|max_messages| PushBatch {
                max_messages,
                max_wait_ms: self.push_batch_wait_ms.unwrap_or(0),
            }),
        })
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

/// `--message-ttl-ms`: milliseconds, or `off` / `none`.
fn parse_ttl(s: &str) -> Result<Ttl, String> {
    match s {
        "off" | "none" => Ok(Ttl(None)),
        _ => match s.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Ttl(Some(ms))),
            _ => Err(format!("`{s}` is not a positive number of ms or `off`")),
        },
    }
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
        .spec(None)
        .unwrap();
        assert_eq!(spec.mode, Some(Mode::Stream));
        assert_eq!(spec.start, Some(Start::Named(StartName::Earliest)));
        assert_eq!(spec.ack_timeout_ms, Some(5000));
        assert_eq!(spec.dead_letter_topic, Some(Some("orders.failed".into())));
        assert_eq!(spec.retry, None, "no retry flag, no retry change");
        assert_eq!(spec.ordering, None);
    }

    #[test]
    fn no_dead_letter_sends_an_explicit_null() {
        let spec = create(&["--no-dead-letter"]).spec(None).unwrap();
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
        let spec = create(&["--max-attempts", "10"])
            .spec(Some(current))
            .unwrap();
        let retry = spec.retry.unwrap().apply(default_retry());
        assert_eq!(retry.max_attempts, Some(10));
        assert_eq!(retry.backoff, current.backoff);

        let spec = create(&["--backoff-max-ms", "90000", "--max-attempts", "unlimited"])
            .spec(None)
            .unwrap();
        let retry = spec.retry.unwrap().apply(current);
        assert_eq!(retry.max_attempts, None);
        assert_eq!(retry.backoff.max_ms, 90_000);
        assert_eq!(retry.backoff.initial_ms, default_retry().backoff.initial_ms);
        assert!(parse_max_attempts("0").is_err());
    }

    #[test]
    fn breaker_ttl_and_push_flags_build_the_spec() {
        let spec = create(&[
            "--breaker-max-dead-letters",
            "10",
            "--breaker-window-ms",
            "60000",
            "--message-ttl-ms",
            "5000",
        ])
        .spec(None)
        .unwrap();
        let retry = spec.retry.unwrap();
        assert_eq!(retry.max_attempts, None, "only the breaker changes");
        assert_eq!(
            retry.circuit_breaker,
            Some(Some(CircuitBreaker {
                max_dead_letters: 10,
                window_ms: 60_000,
                cooldown_ms: None
            }))
        );
        assert_eq!(spec.message_ttl_ms, Some(Some(5000)));
        let body = serde_json::to_value(
            create(&["--no-breaker", "--message-ttl-ms", "off", "--no-push"])
                .spec(None)
                .unwrap(),
        )
        .unwrap();
        assert!(body["retry"]["circuit_breaker"].is_null(), "{body}");
        assert!(body["message_ttl_ms"].is_null(), "{body}");
        assert!(body["push"].is_null(), "{body}");
        assert!(body.get("push").is_some(), "an explicit null: {body}");

        let spec = create(&[
            "--push-url",
            "https://example.com/hook",
            "--push-header",
            "authorization=Bearer x",
            "--push-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--push-batch",
            "50",
            "--push-max-in-flight",
            "4",
        ])
        .spec(None)
        .unwrap();
        let push = spec.push.unwrap().unwrap();
        assert_eq!(push.url, "https://example.com/hook");
        assert_eq!(push.headers.unwrap()["authorization"], "Bearer x");
        assert_eq!(push.batch.unwrap().max_messages, 50);
        assert_eq!(push.max_in_flight, Some(4));

        let refused = |args: &[&str]| {
            let argv = ["weir", "create", "t", "s"].iter().chain(args);
            Cli::try_parse_from(argv).is_err()
        };
        assert!(refused(&["--push-secret", "whsec_x"]), "needs --push-url");
        assert!(refused(&["--push-url", "http://h", "--no-push"]));
        assert!(
            refused(&["--breaker-max-dead-letters", "3"]),
            "needs a window"
        );
        assert!(refused(&["--message-ttl-ms", "0"]));
    }
}
