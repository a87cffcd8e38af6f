//! `weir read`: read a topic without a subscription (no state on the
//! server, nothing acked).
//!
//! Without `--partition`, every partition is read and the messages are
//! merged by timestamp (ties by partition, then offset), as kcat reads
//! every partition by default; each partition is read lazily, page by
//! page, so the merge is exact however the messages are spread. With
//! `--partition N`, only that one, in offset order. `--follow` then waits
//! for new messages (long polls, one per partition), printing them as they
//! arrive.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use weir_client::{Client, Error, Message, TopicInfo};
use weir_protocol::limits::MAX_READ_LIMIT;

use super::encoding::EncodingArg;
use super::output::{errln, Printer};
use super::time::parse_time;

/// Messages printed without `--limit` (and without `--follow`).
const DEFAULT_LIMIT: u64 = 100;
/// Long poll of each follower request.
const FOLLOW_WAIT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct ReadArgs {
    /// Topic to read.
    topic: String,
    /// Read only this partition [default: every partition, merged by
    /// timestamp].
    #[arg(long, short)]
    partition: Option<u32>,
    /// Start at this offset of each partition read [default: the oldest
    /// stored message].
    #[arg(long, short, conflicts_with = "from")]
    offset: Option<u64>,
    /// Where to start: `earliest` (the oldest stored message, the default),
    /// `latest` (only messages produced from now on: use with --follow), or
    /// the first message at or after a time (ms since the Unix epoch, or
    /// RFC 3339 such as `2025-11-28T10:00:00Z`).
    #[arg(long, alias = "timestamp", value_parser = parse_from, value_name = "POSITION")]
    from: Option<From>,
    /// Most messages to print, 1..=10000 [default: 100; with --follow:
    /// no limit].
    #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_READ_LIMIT)))]
    limit: Option<u32>,
    /// Keep waiting for new messages after the last one (until Ctrl-C or
    /// --limit); they are printed as they arrive.
    #[arg(long, short)]
    follow: bool,
    /// Encoding of the read responses: `json`, or `binary`
    /// (application/vnd.weir.batch). What is printed is the same.
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    encoding: EncodingArg,
}

/// `--from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Earliest,
    Latest,
    Time(u64),
}

fn parse_from(s: &str) -> Result<From, String> {
    match s {
        "earliest" | "beginning" => Ok(From::Earliest),
        "latest" | "end" => Ok(From::Latest),
        _ => parse_time(s.strip_prefix("timestamp:").unwrap_or(s))
            .map(From::Time)
            .map_err(|e| format!("not `earliest`, `latest` or a time: {e}")),
    }
}

/// Where a partition's next read starts.
#[derive(Debug, Clone, Copy)]
enum Position {
    Offset(u64),
    Time(u64),
}

/// One partition being read.
struct Cursor {
    partition: u32,
    position: Position,
    buffer: VecDeque<Message>,
    /// A read found nothing more: the end of the partition (for now).
    at_end: bool,
    /// The next offset to be written when the read started.
    high_offset: Option<u64>,
}

impl Cursor {
    fn next_offset(&self) -> Option<u64> {
        match (self.buffer.front(), self.position) {
            (Some(m), _) => Some(m.offset),
            (None, Position::Offset(o)) => Some(o),
            (None, Position::Time(_)) => None,
        }
    }

    /// Fills the buffer with up to `want` messages if it is empty.
    async fn refill(&mut self, client: &Client, topic: &str, want: u32) -> Result<(), Error> {
        if !self.buffer.is_empty() || self.at_end {
            return Ok(());
        }
        let page = match self.position {
            Position::Offset(o) => client.read(topic, self.partition, o, want).await?,
            Position::Time(t) => {
                client
                    .read_from_time(topic, self.partition, t, want)
                    .await?
            }
        };
        if page.messages.is_empty() {
            self.at_end = true;
        }
        self.position = Position::Offset(page.next_offset);
        self.buffer.extend(page.messages);
        Ok(())
    }
}

/// The JSON document of a read of every partition.
#[derive(Serialize)]
struct Merged<'a> {
    messages: &'a [Message],
    /// Partition → the offset to read from next.
    next_offsets: BTreeMap<String, u64>,
}

/// The JSON document of a read of one partition (the HTTP read's shape).
#[derive(Serialize)]
struct Single<'a> {
    messages: &'a [Message],
    next_offset: u64,
}

pub async fn run(args: ReadArgs, client: &Client, printer: &Printer) -> Result<(), Error> {
    let client = &args.encoding.client(client);
    let topic = args.topic.as_str();
    let info = client.topic(topic).await?;
    let mut cursors = cursors(&args, &info);
    let limit = match (args.limit, args.follow) {
        (Some(l), _) => Some(u64::from(l)),
        (None, false) => Some(DEFAULT_LIMIT),
        (None, true) => None,
    };
    // Streamed when following: one line (or JSON line) per message.
    let stream = args.follow;
    let mut printed: Vec<Message> = Vec::new();
    let mut count = 0u64;
    loop {
        let left = limit.map_or(u64::from(MAX_READ_LIMIT), |l| l - count);
        if left == 0 {
            break;
        }
        let want = u32::try_from(left.min(u64::from(MAX_READ_LIMIT))).unwrap_or(MAX_READ_LIMIT);
        for cursor in &mut cursors {
            cursor.refill(client, topic, want).await?;
        }
        // The oldest message at the front of a buffer is next.
        let next = cursors
            .iter_mut()
            .filter(|c| !c.buffer.is_empty())
            .min_by_key(|c| {
                c.buffer
                    .front()
                    .map(|m| (m.timestamp, m.partition, m.offset))
            });
        let Some(cursor) = next else {
            break;
        };
        let Some(message) = cursor.buffer.pop_front() else {
            break;
        };
        count += 1;
        if stream {
            printer.message(&message);
        } else {
            printed.push(message);
        }
    }
    let next_offsets: BTreeMap<u32, u64> = cursors
        .iter()
        .filter_map(|c| c.next_offset().map(|o| (c.partition, o)))
        .collect();
    if !stream {
        print_read(printer, &args, &printed, &next_offsets);
    }
    report_end(printer, &args, &cursors, limit.is_some_and(|l| count >= l));
    if args.follow && limit.is_none_or(|l| count < l) {
        let left = limit.map(|l| l - count);
        follow(client, printer, topic, &next_offsets, left).await?;
    }
    Ok(())
}

/// The partitions to read and where each starts.
fn cursors(args: &ReadArgs, info: &TopicInfo) -> Vec<Cursor> {
    let chosen: Vec<(u32, Option<(u64, u64)>)> = match args.partition {
        // A partition the topic does not have is the server's to refuse.
        Some(p) => vec![(
            p,
            info.partitions
                .iter()
                .find(|i| i.partition == p)
                .map(|i| (i.low_offset, i.high_offset)),
        )],
        None => info
            .partitions
            .iter()
            .map(|i| (i.partition, Some((i.low_offset, i.high_offset))))
            .collect(),
    };
    chosen
        .into_iter()
        .map(|(partition, bounds)| {
            let position = match (args.offset, args.from) {
                (Some(o), _) => Position::Offset(o),
                (None, Some(From::Time(t))) => Position::Time(t),
                (None, Some(From::Latest)) => Position::Offset(bounds.map_or(0, |b| b.1)),
                (None, Some(From::Earliest) | None) => Position::Offset(bounds.map_or(0, |b| b.0)),
            };
            Cursor {
                partition,
                position,
                buffer: VecDeque::new(),
                at_end: false,
                high_offset: bounds.map(|b| b.1),
            }
        })
        .collect()
}

fn print_read(
    printer: &Printer,
    args: &ReadArgs,
    messages: &[Message],
    next_offsets: &BTreeMap<u32, u64>,
) {
    if printer.is_json() {
        match args.partition {
            Some(p) => printer.json(&Single {
                messages,
                next_offset: next_offsets.get(&p).copied().unwrap_or(0),
            }),
            None => printer.json(&Merged {
                messages,
                next_offsets: next_offsets
                    .iter()
                    .map(|(p, o)| (p.to_string(), *o))
                    .collect(),
            }),
        }
        return;
    }
    for m in messages {
        printer.message(m);
    }
}

/// Says on stderr (text mode) where the read stopped: the next offsets,
/// and whether that is the end of the partitions or the limit; a start
/// past the end of a partition is named as such.
fn report_end(printer: &Printer, args: &ReadArgs, cursors: &[Cursor], limited: bool) {
    if printer.is_json() {
        return;
    }
    if let Some(start) = args.offset {
        for c in cursors {
            if let Some(high) = c.high_offset.filter(|&high| start > high) {
                errln!(
                    "offset {start} is past the end of partition {} (next offset to be written: {high})",
                    c.partition
                );
            }
        }
    }
    let all_at_end = cursors.iter().all(|c| c.at_end && c.buffer.is_empty());
    let why = if all_at_end {
        "end of the partition".to_owned()
    } else if limited {
        format!(
            "stopped at --limit {}",
            args.limit.map_or(DEFAULT_LIMIT, u64::from)
        )
    } else {
        "stopped".to_owned()
    };
    match (args.partition, cursors.first()) {
        (Some(p), Some(c)) => {
            let offset = c.next_offset().unwrap_or(0);
            let why = if all_at_end {
                format!("end of partition {p}")
            } else {
                why
            };
            errln!("next offset {offset} ({why})");
        }
        _ => {
            let offsets: Vec<String> = cursors
                .iter()
                .filter_map(|c| c.next_offset().map(|o| format!("{}={o}", c.partition)))
                .collect();
            let why = match (all_at_end, args.follow) {
                (true, true) => "end of every partition; waiting for more, Ctrl-C stops".to_owned(),
                (true, false) => "end of every partition".to_owned(),
                (false, _) => why,
            };
            errln!("next offsets {} ({why})", offsets.join(" "));
        }
    }
}

/// `--follow`: a long-polling reader per partition from `from`, printing
/// messages as they arrive, until Ctrl-C or `left` more were printed.
async fn follow(
    client: &Client,
    printer: &Printer,
    topic: &str,
    from: &BTreeMap<u32, u64>,
    left: Option<u64>,
) -> Result<(), Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Message>, Error>>(16);
    let mut readers = tokio::task::JoinSet::new();
    for (&partition, &offset) in from {
        let (client, topic, tx) = (client.clone(), topic.to_owned(), tx.clone());
        readers.spawn(async move {
            let mut offset = offset;
            loop {
                let page = client
                    .read_wait(&topic, partition, offset, 1000, FOLLOW_WAIT)
                    .await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                offset = page.next_offset.max(offset);
                if !page.messages.is_empty() && tx.send(Ok(page.messages)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0u64;
    let result = loop {
        let batch = tokio::select! {
            biased;
            _ = &mut interrupted => break Ok(()),
            batch = rx.recv() => batch,
        };
        match batch {
            None => break Ok(()),
            Some(Err(e)) => break Err(e),
            Some(Ok(messages)) => {
                for m in &messages {
                    if left.is_some_and(|l| printed >= l) {
                        break;
                    }
                    printer.message(m);
                    printed += 1;
                }
                if left.is_some_and(|l| printed >= l) {
                    break Ok(());
                }
            }
        }
    };
    readers.abort_all();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReadArgs,
    }

    fn parse(flags: &[&str]) -> Result<ReadArgs, clap::Error> {
        let argv = ["weir", "orders"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn from_takes_names_milliseconds_and_rfc3339() {
        assert_eq!(parse_from("earliest"), Ok(From::Earliest));
        assert_eq!(parse_from("latest"), Ok(From::Latest));
        assert_eq!(parse_from("42"), Ok(From::Time(42)));
        assert_eq!(parse_from("1970-01-01T00:00:01Z"), Ok(From::Time(1000)));
        assert!(parse_from("yesterday").is_err());
        let args = parse(&["--timestamp", "5"]).unwrap();
        assert_eq!(args.from, Some(From::Time(5)));
        assert!(parse(&["--offset", "1", "--from", "earliest"]).is_err());
    }

    #[test]
    fn limits_out_of_range_are_errors() {
        assert!(parse(&["--limit", "0"]).is_err());
        assert!(parse(&["--limit", "10001"]).is_err());
        assert_eq!(parse(&["--limit", "10000"]).unwrap().limit, Some(10_000));
    }
}
