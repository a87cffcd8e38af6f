//! `weir dlq`: the dead letters of a subscription — list them, redrive
//! them, purge them — through the server's dead-letter records
//! (`GET .../dead-letters`, `POST .../dead-letters/{redrive,purge}`), so
//! every dead letter shows its state (`waiting`, `redriven`, `purged`)
//! whether or not the subscription copies them to a dead-letter topic, and
//! `--state waiting` counts exactly the subscription's `dead_lettered`.
//!
//! The three commands take the same filters ([`FilterArgs`]); `redrive` and
//! `purge` apply to waiting dead letters only, and `--dry-run` counts and
//! samples without changing anything. `purge` asks before it acts.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use weir_client::{
    Client, DeadLetter, DeadLetterFilter, DeadLetterQuery, DeadLetterState, Error, PurgeRequest,
    RedriveRequest,
};

use super::output::{errln, outln, preview, value_text, Printer, Table};
use super::produce::parse_headers;
use super::time::{format_time, parse_time};

/// Dead letters per request while listing.
const PAGE: usize = 1000;
/// Characters of a reason shown in a table.
const REASON_CHARS: usize = 40;
/// Characters of a value shown in a table.
const VALUE_CHARS: usize = 50;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List a subscription's dead letters: state, reason, attempts, time,
    /// partition:offset and a preview of the value.
    List {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
        /// Only dead letters in this state (`waiting` ones are counted in
        /// the subscription's `dead_lettered`).
        #[arg(long, value_enum, default_value_t = StateArg::All)]
        state: StateArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Most dead letters to list.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Continue a listing: the `next` cursor a previous one printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Make waiting dead letters deliverable to the subscription again
    /// (attempts reset; other subscriptions are not affected).
    Redrive {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Most dead letters to redrive (default: every match).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// Redrive at most this many per second.
        #[arg(long, value_name = "PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
        /// Only count the matching dead letters and show a sample; change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark waiting dead letters purged: no longer counted in
    /// `dead_lettered`, never redriven (their records, and the copies in a
    /// dead-letter topic, stay). Asks for confirmation unless --yes.
    Purge {
        /// Topic of the subscription.
        topic: String,
        /// Subscription name.
        sub: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Most dead letters to purge (default: every match).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// Only count the matching dead letters and show a sample; change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

/// `--state`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Every state.
    All,
    /// Dead-lettered, neither redriven nor purged.
    Waiting,
    /// Made deliverable again.
    Redriven,
    /// Purged.
    Purged,
}

/// Which dead letters a command applies to; all given filters must match.
#[derive(Args, Default)]
pub struct FilterArgs {
    /// Only dead letters whose reason contains this text.
    #[arg(long)]
    reason: Option<String>,
    /// Only dead letters whose reason matches this regular expression
    /// (Rust `regex` syntax).
    #[arg(long, value_name = "REGEX")]
    reason_regex: Option<String>,
    /// Only dead letters of messages with this key.
    #[arg(long)]
    key: Option<String>,
    /// Only dead letters of messages with this header `name=value`
    /// (repeatable; all must match).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Only dead letters dead-lettered at or after this time (ms since the
    /// Unix epoch, or RFC 3339 such as `2025-11-28T10:00:00Z`).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    since: Option<u64>,
    /// Only dead letters dead-lettered before this time (ms or RFC 3339).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    until: Option<u64>,
    /// Only dead letters delivered at least this many times.
    #[arg(long)]
    min_attempts: Option<u32>,
}

impl FilterArgs {
    /// The filter of a redrive or purge (`None` when no flag is given).
    fn filter(&self) -> Result<Option<DeadLetterFilter>, Error> {
        let headers = parse_headers(&self.headers)?;
        let filter = DeadLetterFilter {
            reason: self.reason.clone(),
            reason_regex: self.reason_regex.clone(),
            key: self.key.clone(),
            headers: (!headers.is_empty()).then_some(headers),
            from_ms: self.since,
            to_ms: self.until,
            min_attempts: self.min_attempts,
            ..DeadLetterFilter::default()
        };
        Ok((filter != DeadLetterFilter::default()).then_some(filter))
    }

    /// The query of a listing (headers are matched here: the listing
    /// endpoint has no header filter).
    fn query(&self, state: StateArg, cursor: Option<String>) -> DeadLetterQuery {
        DeadLetterQuery {
            limit: None,
            cursor,
            state: match state {
                StateArg::All => None,
                StateArg::Waiting => Some(DeadLetterState::Waiting),
                StateArg::Redriven => Some(DeadLetterState::Redriven),
                StateArg::Purged => Some(DeadLetterState::Purged),
            },
            reason: self.reason.clone(),
            reason_regex: self.reason_regex.clone(),
            key: self.key.clone(),
            from_ms: self.since,
            to_ms: self.until,
            min_attempts: self.min_attempts,
        }
    }
}

/// The JSON document of `dlq list`.
#[derive(Serialize)]
struct Listing<'a> {
    dead_letters: &'a [DeadLetter],
    /// Pass as `--cursor` to go on; `null` when the listing is complete.
    next: Option<&'a str>,
}

pub async fn run(command: DlqCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        DlqCommand::List {
            topic,
            sub,
            state,
            filter,
            limit,
            cursor,
        } => {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let (letters, next) = list(client, &topic, &sub, state, &filter, limit, cursor).await?;
            if printer.is_json() {
                printer.json(&Listing {
                    dead_letters: &letters,
                    next: next.as_deref(),
                });
            } else {
                table(&letters).print();
                errln!("{}", summary(&letters));
                if let Some(next) = next {
                    errln!("more may match: continue with --cursor {next}");
                }
            }
        }
        DlqCommand::Redrive {
            topic,
            sub,
            filter,
            max,
            rate,
            dry_run,
        } => {
            let request = RedriveRequest {
                max,
                max_messages: None,
                dry_run: dry_run.then_some(true),
                rate_per_s: rate,
                filter: filter.filter()?,
            };
            let response = client.redrive_dead_letters(&topic, &sub, &request).await?;
            if printer.is_json() {
                printer.json(&response);
            } else if dry_run {
                outln!(
                    "would redrive {} dead letters to subscription {sub} of topic {topic} (dry run)",
                    response.matched
                );
                sample(&response.sample);
            } else {
                outln!(
                    "redrove {} dead letters to subscription {sub} of topic {topic}",
                    response.redriven
                );
            }
        }
        DlqCommand::Purge {
            topic,
            sub,
            filter,
            max,
            dry_run,
            yes,
        } => {
            let filter = filter.filter()?;
            let mut request = PurgeRequest {
                max,
                dry_run: Some(true),
                filter,
            };
            if !dry_run && !yes {
                let preview = client.purge_dead_letters(&topic, &sub, &request).await?;
                if preview.matched == 0 {
                    printer.note("no waiting dead letters match: nothing to purge");
                    if printer.is_json() {
                        printer.json(&preview);
                    }
                    return Ok(());
                }
                sample_on_stderr(&preview.sample);
                let question = format!(
                    "purge {} waiting dead letters of subscription {sub} of topic {topic}? \
                     They will no longer be counted or redrivable. [y/N] ",
                    preview.matched
                );
                if !confirm(&question) {
                    return Err(Error::Local("not confirmed: nothing purged".into()));
                }
                // Never more than were shown, whatever arrived since.
                request.max = Some(preview.matched);
            }
            request.dry_run = dry_run.then_some(true);
            let response = client.purge_dead_letters(&topic, &sub, &request).await?;
            if printer.is_json() {
                printer.json(&response);
            } else if dry_run {
                outln!(
                    "would purge {} dead letters of subscription {sub} of topic {topic} (dry run)",
                    response.matched
                );
                sample(&response.sample);
            } else {
                outln!(
                    "purged {} dead letters of subscription {sub} of topic {topic}",
                    response.purged
                );
            }
        }
    }
    Ok(())
}

/// Up to `limit` matching dead letters, and the cursor to go on from when
/// more may match.
async fn list(
    client: &Client,
    topic: &str,
    sub: &str,
    state: StateArg,
    filter: &FilterArgs,
    limit: usize,
    cursor: Option<String>,
) -> Result<(Vec<DeadLetter>, Option<String>), Error> {
    let headers = parse_headers(&filter.headers)?;
    let mut query = filter.query(state, cursor);
    if headers.is_empty() {
        query.limit = Some(PAGE);
        let listed = client
            .dead_letters_up_to(topic, sub, &query, Some(limit))
            .await?;
        return Ok((listed.dead_letters, listed.next));
    }
    // Headers are matched here, page by page; a page never asks for more
    // than the room left, so none is cut and the cursor stays exact.
    let mut found = Vec::new();
    loop {
        let room = limit - found.len();
        if room == 0 {
            return Ok((found, query.cursor));
        }
        query.limit = Some(PAGE.min(room));
        let page = client.dead_letters(topic, sub, &query).await?;
        found.extend(
            page.dead_letters
                .into_iter()
                .filter(|d| has_headers(d, &headers)),
        );
        match page.next {
            Some(next) if Some(&next) != query.cursor.as_ref() => query.cursor = Some(next),
            _ => return Ok((found, None)),
        }
    }
}

/// Whether the dead letter's message has every one of `headers`.
fn has_headers(d: &DeadLetter, headers: &BTreeMap<String, String>) -> bool {
    let Some(m) = &d.message else {
        return false;
    };
    headers.iter().all(|(n, v)| m.headers.get(n) == Some(v))
}

fn state_name(state: DeadLetterState) -> &'static str {
    match state {
        DeadLetterState::Waiting => "waiting",
        DeadLetterState::Redriven => "redriven",
        DeadLetterState::Purged => "purged",
    }
}

/// The dead letters as an aligned table.
fn table(letters: &[DeadLetter]) -> Table {
    let mut table = Table::new(&[
        "PARTITION:OFFSET",
        "STATE",
        "ATTEMPTS",
        "DEAD_LETTERED_AT",
        "REASON",
        "KEY",
        "VALUE",
    ])
    .right(&[2]);
    for d in letters {
        let (key, value) = match &d.message {
            Some(m) => (
                m.key.clone().unwrap_or_else(|| "-".into()),
                preview(&value_text(m), VALUE_CHARS),
            ),
            None => ("-".into(), "(removed by retention)".into()),
        };
        table.row(vec![
            format!("{}:{}", d.partition, d.offset),
            state_name(d.state).to_owned(),
            d.attempts.to_string(),
            format_time(d.dead_lettered_at),
            preview(&d.reason, REASON_CHARS),
            key,
            value,
        ]);
    }
    table
}

/// `N dead letters (W waiting, R redriven, P purged)`.
fn summary(letters: &[DeadLetter]) -> String {
    let count = |state| letters.iter().filter(|d| d.state == state).count();
    format!(
        "{} dead letters ({} waiting, {} redriven, {} purged)",
        letters.len(),
        count(DeadLetterState::Waiting),
        count(DeadLetterState::Redriven),
        count(DeadLetterState::Purged)
    )
}

/// The sample of a dry run, on stdout.
fn sample(letters: &[DeadLetter]) {
    if !letters.is_empty() {
        outln!("sample:");
        let mut lines = table(letters).lines();
        for line in &mut lines {
            line.insert_str(0, "  ");
        }
        for line in lines {
            outln!("{line}");
        }
    }
}

/// The sample shown before a confirmation, on stderr (stdout stays for
/// the result).
fn sample_on_stderr(letters: &[DeadLetter]) {
    for line in table(letters).lines() {
        errln!("  {line}");
    }
}

/// Asks `question` on stderr and reads the answer from stdin: only `y` or
/// `yes` confirm (end of input does not).
fn confirm(question: &str) -> bool {
    super::output::write_stderr(format_args!("{question}"));
    let mut answer = String::new();
    let read = std::io::stdin().lock().read_line(&mut answer);
    if !std::io::stdin().is_terminal() {
        // The answer came from a pipe: end the question's line.
        errln!("{}", answer.trim());
    }
    read.is_ok() && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;
    use weir_client::Message;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DlqCommand,
    }

    fn letter(state: DeadLetterState, headers: &[(&str, &str)]) -> DeadLetter {
        DeadLetter {
            partition: 1,
            offset: 7,
            attempts: 3,
            reason: "payment\nprovider timed out".into(),
            dead_lettered_at: 1_764_300_000_000,
            state,
            message: Some(Message {
                topic: "orders".into(),
                partition: 1,
                offset: 7,
                timestamp: 0,
                key: Some("customer-7".into()),
                value: serde_json::value::to_raw_value(&serde_json::json!({"order": 1})).ok(),
                value_b64: None,
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            }),
        }
    }

    #[test]
    fn filters_become_the_request_filter_and_the_listing_query() {
        let Cli {
            command: DlqCommand::Redrive { filter, .. },
        } = Cli::try_parse_from([
            "weir",
            "redrive",
            "t",
            "s",
            "--reason",
            "timeout",
            "--header",
            "tenant=a",
            "--since",
            "1970-01-01T00:00:01Z",
            "--min-attempts",
            "2",
        ])
        .unwrap()
        else {
            unreachable!("parsed a redrive")
        };
        let f = filter.filter().unwrap().unwrap();
        assert_eq!(f.reason.as_deref(), Some("timeout"));
        assert_eq!(f.headers.unwrap()["tenant"], "a");
        assert_eq!((f.from_ms, f.min_attempts), (Some(1000), Some(2)));
        let q = filter.query(StateArg::Waiting, None);
        assert_eq!(q.state, Some(DeadLetterState::Waiting));
        assert_eq!(q.from_ms, Some(1000));
        assert!(FilterArgs::default().filter().unwrap().is_none());
    }

    #[test]
    fn listings_show_state_reason_and_a_value_preview() {
        let letters = [
            letter(DeadLetterState::Waiting, &[]),
            letter(DeadLetterState::Redriven, &[]),
        ];
        let lines = table(&letters).lines();
        assert!(lines[0].starts_with("PARTITION:OFFSET  STATE"), "{lines:?}");
        assert!(
            lines[1].starts_with("1:7               waiting"),
            "{lines:?}"
        );
        assert!(lines[1].contains("2025-11-28T03:20:00.000Z"), "{lines:?}");
        assert!(lines[1].contains("payment provider timed out"), "{lines:?}");
        assert!(lines[1].ends_with("customer-7  {\"order\":1}"), "{lines:?}");
        assert_eq!(
            summary(&letters),
            "2 dead letters (1 waiting, 1 redriven, 0 purged)"
        );
        let wanted = BTreeMap::from([("tenant".to_owned(), "a".to_owned())]);
        assert!(has_headers(
            &letter(DeadLetterState::Waiting, &[("tenant", "a")]),
            &wanted
        ));
        assert!(!has_headers(
            &letter(DeadLetterState::Waiting, &[]),
            &wanted
        ));
    }

    #[test]
    fn max_and_rate_must_be_positive() {
        assert!(Cli::try_parse_from(["weir", "redrive", "t", "s", "--max", "0"]).is_err());
        assert!(Cli::try_parse_from(["weir", "redrive", "t", "s", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["weir", "list", "t", "s", "--limit", "0"]).is_err());
    }
}
