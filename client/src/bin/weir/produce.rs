//! `weir produce`: messages from arguments, or one per line from a file or
//! stdin. Without values and `--file`, stdin is read when it is not a
//! terminal (as kcat does): `seq 3 | weir produce orders` produces three
//! messages. Producing nothing at all is an error, never a silent success.

use std::io::{BufRead, IsTerminal};

use clap::Args;
use weir_client::{Client, Error, ProduceMessage, ProduceMessageExt};

use super::encoding::EncodingArg;
use super::output::Printer;

/// Most messages in one produce request (the server's limit).
const MAX_BATCH: i64 = weir_protocol::limits::MAX_BATCH_MESSAGES as i64;

/// Why a `weir produce` with no value, no --file and a terminal on stdin
/// is refused.
const NOTHING_TO_PRODUCE: &str =
    "nothing to produce: give values (`weir produce TOPIC VALUE...`), \
     --file FILE, or pipe lines on stdin (`seq 3 | weir produce TOPIC`)";

/// A usage error (exit status 2, before any connection): no value, no
/// --file, and stdin is a terminal, so there is nothing to read.
pub fn usage_error(args: &ProduceArgs) -> Option<&'static str> {
    (args.values.is_empty() && args.file.is_none() && std::io::stdin().is_terminal())
        .then_some(NOTHING_TO_PRODUCE)
}

#[derive(Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    topic: String,
    /// Message values (JSON if they parse as JSON, else strings). Without
    /// values and --file, lines are read from stdin when it is not a
    /// terminal.
    values: Vec<String>,
    /// Read values from this file, one per line (`-` = stdin); blank lines
    /// are skipped.
    #[arg(long, short)]
    file: Option<String>,
    /// Key of every message (messages with one key go to one partition).
    #[arg(long, short)]
    key: Option<String>,
    /// Header `name=value` of every message (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Partition of every message, instead of the key's hash.
    #[arg(long, short)]
    partition: Option<u32>,
    /// Messages per request when reading lines (1..=100000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=MAX_BATCH))]
    batch: i64,
    /// Encoding of the produce requests: `json`, or `binary`
    /// (application/vnd.weir.batch). The messages stored are the same.
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    encoding: EncodingArg,
}

pub async fn run(args: ProduceArgs, client: &Client, printer: &Printer) -> Result<(), Error> {
    let client = &args.encoding.client(client);
    let headers = parse_headers(&args.headers)?;
    let make = |v: &str| -> Result<ProduceMessage, Error> {
        let mut m = match serde_json::from_str::<serde_json::Value>(v) {
            Ok(json) => ProduceMessage::json(&json)?,
            Err(_) => ProduceMessage::json(&v)?,
        };
        m.key = args.key.clone();
        m.headers = (!headers.is_empty()).then(|| headers.clone());
        m.partition = args.partition;
        Ok(m)
    };
    let source = match (&args.file, args.values.is_empty()) {
        (Some(path), _) => Some(path.clone()),
        (None, true) if !std::io::stdin().is_terminal() => Some("-".to_owned()),
        (None, true) => return Err(Error::Local(NOTHING_TO_PRODUCE.into())),
        (None, false) => None,
    };
    let mut results = Vec::new();
    if !args.values.is_empty() {
        let msgs = args
            .values
            .iter()
            .map(|v| make(v))
            .collect::<Result<_, _>>()?;
        results.extend(client.produce(&args.topic, msgs).await?);
    }
    if let Some(path) = &source {
        let reader: Box<dyn BufRead> = if path == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(
                |e| Error::Local(format!("cannot open `{path}`: {e}")),
            )?))
        };
        let batch = usize::try_from(args.batch).unwrap_or(1).max(1);
        let mut pending = Vec::new();
        let mut sent = 0usize;
        for line in reader.lines() {
            let line = line.map_err(|e| Error::Local(format!("cannot read `{path}`: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            pending.push(make(&line)?);
            if pending.len() >= batch {
                sent += pending.len();
                let chunk = std::mem::take(&mut pending);
                results.extend(client.produce(&args.topic, chunk).await?);
                printer.progress(&format!("{sent} messages produced"));
            }
        }
        if !pending.is_empty() {
            results.extend(client.produce(&args.topic, pending).await?);
        }
        if sent > 0 {
            printer.end_progress();
        }
        if results.is_empty() {
            let input = if path == "-" { "stdin" } else { path.as_str() };
            return Err(Error::Local(format!(
                "nothing produced: {input} had no non-empty lines"
            )));
        }
    }
    printer.produced(&results);
    Ok(())
}

pub fn parse_headers(raw: &[String]) -> Result<std::collections::BTreeMap<String, String>, Error> {
    raw.iter()
        .map(|h| {
            h.split_once('=')
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::Local(format!("header `{h}` must be name=value")))
        })
        .collect()
}
