//! `weir tail`: print a topic's messages live, over the tail WebSocket,
//! until Ctrl-C, `--count` messages, or the server ends the tail.
//!
//! Keeps no state on the server: a tail sees every partition from
//! `--from` on and settles nothing (use `weir consume` for that).

use std::io::Write;

use clap::Args;
use futures_util::StreamExt;
use weir_client::{Client, Error, Message, TailFrom};

use super::output::{errln, Printer};

#[derive(Args)]
pub struct TailArgs {
    /// Topic to tail (every partition).
    topic: String,
    /// Where to start: `latest` (messages produced from now on),
    /// `earliest` (everything stored), or a timestamp in milliseconds.
    #[arg(long, default_value = "latest")]
    from: TailFrom,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
}

pub async fn run(args: TailArgs, client: &Client, printer: &Printer) -> Result<(), Error> {
    let mut tail = client.tail_ws(&args.topic, args.from).await?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut seen = 0u64;
    while args.count.is_none_or(|count| seen < count) {
        let next = tokio::select! {
            biased;
            _ = &mut interrupted => break,
            next = tail.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                if !print(printer, &message) {
                    break;
                }
                seen += 1;
            }
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    tail.close().await;
    if !printer.is_json() {
        errln!("{seen} messages");
    }
    Ok(())
}

/// One message per line: compact JSON, or `partition:offset` with the
/// timestamp, key and value. Written (not `println!`) so that a closed
/// stdout (`weir tail t | head`) ends the tail instead of panicking;
/// returns whether stdout still takes lines.
fn print(printer: &Printer, m: &Message) -> bool {
    let line = if printer.is_json() {
        match serde_json::to_string(m) {
            Ok(line) => line,
            Err(e) => {
                errln!("weir: cannot print JSON: {e}");
                return true;
            }
        }
    } else {
        let key = m.key.as_deref().unwrap_or("-");
        let value = m
            .value
            .as_ref()
            .map(|v| v.get().to_owned())
            .or_else(|| m.value_b64.as_ref().map(|b| format!("base64:{b}")))
            .unwrap_or_default();
        format!(
            "{}:{} ts={} key={key} {value}",
            m.partition, m.offset, m.timestamp
        )
    };
    writeln!(std::io::stdout(), "{line}").is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TailArgs,
    }

    fn parse(flags: &[&str]) -> Result<TailArgs, clap::Error> {
        let argv = ["weir", "orders"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn from_defaults_to_latest_and_takes_names_or_timestamps() {
        assert_eq!(parse(&[]).unwrap().from, TailFrom::Latest);
        assert_eq!(
            parse(&["--from", "earliest"]).unwrap().from,
            TailFrom::Earliest
        );
        let at = parse(&["--from", "1764300000000", "--count", "3"]).unwrap();
        assert_eq!(
            (at.from, at.count),
            (TailFrom::Timestamp(1_764_300_000_000), Some(3))
        );
        assert!(parse(&["--from", "yesterday"]).is_err());
    }
}
