//! Human-readable and JSON output of the CLI: every command prints through
//! a [`Printer`], which owns both formats. Commands that stream (`consume`,
//! `webhook-receive`) print one compact JSON object per line with
//! `--output json`.
//!
//! Text tables are aligned ([`Table`]). Nothing here writes colour or
//! cursor codes: the only in-place line (`progress`) is drawn when stderr
//! is a terminal, and help and usage errors are coloured by clap only on
//! a terminal (and never with `NO_COLOR`). A closed stdout ends the
//! program quietly; a closed stderr is ignored ([`errln!`]).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use serde::Serialize;
use weir_client::{
    Error, Message, Mode, Ordering, ProduceResult, ReceivedMessage, SubscriptionInfo, TopicInfo,
};

/// Writes one line to stdout. A closed stdout (`weir ... | head`) ends the
/// program quietly instead of panicking as `println!` does.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        write_stderr(format_args!("weir: cannot write to stdout: {e}\n"));
        std::process::exit(1);
    }
}

/// Writes to stderr, ignoring failures: a closed stderr (`2>&-`, or a
/// reader that went away) must not panic as `eprintln!` does.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// `println!` that survives a closed pipe (see [`write_line`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// `eprintln!` that survives a closed stderr (see [`write_stderr`]).
macro_rules! errln {
    () => {
        $crate::output::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use errln;

/// Whether stderr is a terminal (in-place progress lines are drawn only then).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned tables and lines for people.
    Text,
    /// JSON documents (one per line for streams) for programs.
    Json,
}

pub struct Printer {
    format: Output,
    /// The server URL, named in connection errors.
    server: String,
}

impl Printer {
    pub fn new(format: Output) -> Self {
        Printer {
            format,
            server: String::new(),
        }
    }

    /// The same printer, naming `server` in connection errors.
    pub fn with_server(mut self, server: &str) -> Self {
        server.clone_into(&mut self.server);
        self
    }

    pub fn is_json(&self) -> bool {
        self.format == Output::Json
    }

    pub fn json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => errln!("weir: cannot print JSON: {e}"),
        }
    }

    /// One compact JSON document on one line (for streams of results).
    pub fn json_line<T: Serialize>(&self, value: &T) {
        match serde_json::to_string(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => errln!("weir: cannot print JSON: {e}"),
        }
    }

    pub fn fail(&self, e: &Error) -> ExitCode {
        if self.is_json() {
            if let Some(p) = e.problem() {
                self.json(p);
                return ExitCode::FAILURE;
            }
        }
        errln!("weir: {}", describe_error(e, &self.server));
        ExitCode::FAILURE
    }

    pub fn done(&self, text: &str) {
        if self.is_json() {
            self.json(&serde_json::json!({"ok": true}));
        } else {
            outln!("{text}");
        }
    }

    /// A remark on stderr for people (text mode only).
    pub fn note(&self, text: &str) {
        if !self.is_json() {
            errln!("{text}");
        }
    }

    /// Progress on stderr, redrawn in place: text mode, and only when
    /// stderr is a terminal (a log file gets no carriage returns).
    pub fn progress(&self, text: &str) {
        if !self.is_json() && stderr_is_terminal() {
            write_stderr(format_args!("\r{text}   "));
        }
    }

    /// Ends the line of [`progress`](Self::progress), if one was drawn
    /// (the last count stays visible).
    pub fn end_progress(&self) {
        if !self.is_json() && stderr_is_terminal() {
            write_stderr(format_args!("\n"));
        }
    }

    pub fn topic(&self, t: &TopicInfo) {
        if self.is_json() {
            return self.json(t);
        }
        let retention = &t.config.retention;
        let limit = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
        outln!(
            "topic {}  partitions={}  max_message_bytes={}  dedupe_window_ms={}",
            t.name,
            t.config.partitions,
            t.config.max_message_bytes,
            t.config.dedupe_window_ms
        );
        outln!(
            "  retention: max_age_ms={}  max_bytes={}  max_messages={}",
            limit(retention.max_age_ms),
            limit(retention.max_bytes),
            limit(retention.max_messages)
        );
        let mut table = Table::new(&["PARTITION", "LOW", "HIGH", "MESSAGES", "BYTES"])
            .indent("  ")
            .right(&[0, 1, 2, 3, 4]);
        for p in &t.partitions {
            table.row(vec![
                p.partition.to_string(),
                p.low_offset.to_string(),
                p.high_offset.to_string(),
                p.messages.to_string(),
                p.bytes.to_string(),
            ]);
        }
        table.print();
    }

    pub fn topics(&self, topics: &[TopicInfo]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "topics": topics }));
        }
        let mut table = Table::new(&["NAME", "PARTITIONS", "MESSAGES", "BYTES"]).right(&[1, 2, 3]);
        for t in topics {
            let messages: u64 = t.partitions.iter().map(|p| p.messages).sum();
            let bytes: u64 = t.partitions.iter().map(|p| p.bytes).sum();
            table.row(vec![
                t.name.clone(),
                t.config.partitions.to_string(),
                messages.to_string(),
                bytes.to_string(),
            ]);
        }
        table.print();
    }

    pub fn produced(&self, results: &[ProduceResult]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "results": results }));
        }
        for r in results {
            let dup = if r.duplicate { " (duplicate)" } else { "" };
            outln!("partition {} offset {}{dup}", r.partition, r.offset);
        }
    }

    /// One message of a read, as a line.
    pub fn message(&self, m: &Message) {
        if self.is_json() {
            return self.json_line(m);
        }
        let key = m.key.as_deref().unwrap_or("-");
        outln!("{}:{} key={key} {}", m.partition, m.offset, value_text(m));
    }

    pub fn subscription(&self, s: &SubscriptionInfo) {
        if self.is_json() {
            return self.json(s);
        }
        let (c, st) = (&s.config, &s.stats);
        outln!(
            "subscription {} of topic {}  mode={}  ack_timeout_ms={}  ordering={}",
            s.name,
            s.topic,
            mode_name(c.mode),
            c.ack_timeout_ms,
            ordering_name(c.ordering)
        );
        if s.paused {
            let reason = s.paused_reason.as_deref().unwrap_or("no reason given");
            outln!("  state: paused ({reason}): no new deliveries until `weir subs resume`");
        } else {
            outln!("  state: active");
        }
        let attempts = c
            .retry
            .max_attempts
            .map_or("unlimited".to_owned(), |n| n.to_string());
        let b = &c.retry.backoff;
        outln!(
            "  retry: max_attempts={attempts}  backoff {}..{} ms  x{}  jitter {}",
            b.initial_ms,
            b.max_ms,
            b.multiplier,
            b.jitter
        );
        match &c.retry.circuit_breaker {
            Some(cb) => outln!(
                "  circuit breaker: pauses after more than {} dead letters within {} ms; {}",
                cb.max_dead_letters,
                cb.window_ms,
                cb.cooldown_ms
                    .map_or("resumed by hand".to_owned(), |ms| format!(
                        "resumes by itself after {ms} ms"
                    ))
            ),
            None => outln!("  circuit breaker: off"),
        }
        match c.message_ttl_ms {
            Some(ttl) => outln!(
                "  message ttl: {ttl} ms (older undelivered messages are dead-lettered as `expired`)"
            ),
            None => outln!("  message ttl: off"),
        }
        match &c.dead_letter_topic {
            Some(topic) => outln!(
                "  dead letters: dead_lettered={}  copied to topic {topic}",
                st.dead_lettered
            ),
            None => outln!(
                "  dead letters: dead_lettered={}  no copy (kept as dead letters of the subscription: `weir dlq list`)",
                st.dead_lettered
            ),
        }
        match &c.push {
            Some(p) => {
                let set = |s: &Option<String>| if s.is_some() { "set" } else { "unset" };
                outln!(
                    "  push: {}  timeout_ms={}  max_in_flight={}  rate_per_s={}  batch={} (max_wait_ms={})",
                    p.url,
                    p.timeout_ms,
                    p.max_in_flight,
                    p.rate_per_s
                        .map_or("unlimited".to_owned(), |r| r.to_string()),
                    p.batch.max_messages,
                    p.batch.max_wait_ms
                );
                let headers: Vec<&str> = p.headers.keys().map(String::as_str).collect();
                outln!(
                    "        secret={}  previous_secret={}  headers={}",
                    set(&p.secret),
                    set(&p.previous_secret),
                    if headers.is_empty() {
                        "none".to_owned()
                    } else {
                        headers.join(",")
                    }
                );
            }
            None => outln!("  push: off (consumers pull)"),
        }
        outln!(
            "  backlog={}  in_flight={}  delayed={}  oldest_unacked_age_ms={}  expired_by_retention={}",
            st.backlog, st.in_flight, st.delayed, st.oldest_unacked_age_ms, st.expired_by_retention
        );
        let mut table = Table::new(&["PARTITION", "CURSOR", "HIGH", "CONSUMER"])
            .indent("  ")
            .right(&[0, 1, 2]);
        for p in &st.partitions {
            table.row(vec![
                p.partition.to_string(),
                p.cursor.to_string(),
                p.high_offset.to_string(),
                p.consumer.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        table.print();
    }

    pub fn subscriptions(&self, subs: &[SubscriptionInfo]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "subscriptions": subs }));
        }
        let mut table = Table::new(&[
            "NAME",
            "MODE",
            "STATE",
            "BACKLOG",
            "IN_FLIGHT",
            "DELAYED",
            "DEAD_LETTERED",
            "OLDEST_UNACKED_MS",
        ])
        .right(&[3, 4, 5, 6, 7]);
        for s in subs {
            let st = &s.stats;
            table.row(vec![
                s.name.clone(),
                mode_name(s.config.mode).to_owned(),
                if s.paused { "paused" } else { "active" }.to_owned(),
                st.backlog.to_string(),
                st.in_flight.to_string(),
                st.delayed.to_string(),
                st.dead_lettered.to_string(),
                st.oldest_unacked_age_ms.to_string(),
            ]);
        }
        table.print();
    }

    /// One leased message of `weir consume`.
    pub fn received(&self, m: &ReceivedMessage) {
        if self.is_json() {
            return self.json_line(m);
        }
        let msg = &m.message;
        let key = msg.key.as_deref().unwrap_or("-");
        outln!(
            "{}:{} attempt={} key={key} {}",
            msg.partition,
            msg.offset,
            m.attempt,
            value_text(msg)
        );
    }
}

/// An error as the user reads it: a connection that could not be made
/// names the server and the cause (`connection refused`, ...) instead of
/// the HTTP library's wording.
pub fn describe_error(e: &Error, server: &str) -> String {
    let cause: Option<&(dyn std::error::Error + 'static)> = match e {
        Error::Transport(cause) => Some(cause.as_ref()),
        Error::WebSocket(cause) => Some(cause.as_ref()),
        _ => None,
    };
    let Some(cause) = cause else {
        return e.to_string();
    };
    let chain = error_chain(cause);
    let server = if server.is_empty() {
        "the server"
    } else {
        server
    };
    let io_kind = io_error_kind(cause);
    let lower = chain.to_ascii_lowercase();
    let hint = "is weir-server running there? Set --server or WEIR_SERVER";
    let reason = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => Some(("connection refused", hint)),
        Some(std::io::ErrorKind::TimedOut) => Some(("connection timed out", hint)),
        Some(std::io::ErrorKind::ConnectionReset) => Some(("connection reset", hint)),
        _ if lower.contains("connection refused") => Some(("connection refused", hint)),
        _ if lower.contains("dns error") || lower.contains("failed to lookup address") => Some((
            "host name not found",
            "check the host of --server or WEIR_SERVER",
        )),
        _ => None,
    };
    match reason {
        Some((reason, hint)) => format!("cannot connect to {server}: {reason} ({hint})"),
        None => format!("request to {server} failed: {chain}"),
    }
}

/// `cause: its source: ...`, each distinct text once.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// The kind of the I/O error under `e`, if there is one.
fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

/// A text table with aligned columns: left-aligned text, right-aligned
/// numbers (the columns named in [`right`](Table::right)), two spaces
/// apart, no trailing spaces.
pub struct Table {
    headers: Vec<String>,
    right: Vec<usize>,
    indent: &'static str,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            right: Vec::new(),
            indent: "",
            rows: Vec::new(),
        }
    }

    /// Right-aligns these columns (numbers).
    pub fn right(mut self, columns: &[usize]) -> Table {
        self.right = columns.to_vec();
        self
    }

    /// Starts every line with `indent`.
    pub fn indent(mut self, indent: &'static str) -> Table {
        self.indent = indent;
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The lines of the table, header first.
    pub fn lines(&self) -> Vec<String> {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|row| {
                let mut line = String::from(self.indent);
                for (i, cell) in row.iter().enumerate().take(columns) {
                    let pad = widths[i].saturating_sub(width(cell));
                    let last = i + 1 == columns;
                    if i > 0 {
                        line.push_str("  ");
                    }
                    if self.right.contains(&i) {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    } else {
                        line.push_str(cell);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
                line.trim_end().to_owned()
            })
            .collect()
    }

    pub fn print(&self) {
        for line in self.lines() {
            outln!("{line}");
        }
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// The payload as printed: JSON as is, bytes as `base64:...`.
pub fn value_text(m: &Message) -> String {
    m.value
        .as_ref()
        .map(|v| v.get().to_owned())
        .or_else(|| m.value_b64.as_ref().map(|b| format!("base64:{b}")))
        .unwrap_or_default()
}

/// `text` cut to `max` characters (an ellipsis marks the cut), on one line.
pub fn preview(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Queue => "queue",
        Mode::Stream => "stream",
    }
}

fn ordering_name(ordering: Ordering) -> &'static str {
    match ordering {
        Ordering::None => "none",
        Ordering::Key => "key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "PARTITIONS", "MESSAGES"]).right(&[1, 2]);
        table.row(vec!["orders".into(), "3".into(), "100000".into()]);
        table.row(vec!["a".into(), "1024".into(), "7".into()]);
        assert_eq!(
            table.lines(),
            [
                "NAME    PARTITIONS  MESSAGES",
                "orders           3    100000",
                "a             1024         7",
            ]
        );
        let mut table = Table::new(&["STATE", "REASON"]).indent("  ");
        table.row(vec!["waiting".into(), "".into()]);
        assert_eq!(table.lines(), ["  STATE    REASON", "  waiting"]);
    }

    #[test]
    fn previews_are_one_line_and_bounded() {
        assert_eq!(preview("short", 10), "short");
        assert_eq!(preview("a\nb", 10), "a b");
        assert_eq!(preview("0123456789abc", 5), "0123…");
    }

    #[test]
    fn refused_connections_name_the_server() {
        let text = describe_error(&Error::Local("bad input".into()), "http://h:1");
        assert_eq!(text, "bad input");
    }
}
