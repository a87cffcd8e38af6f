//! Human-readable and JSON output of the CLI: every command prints through
//! a [`Printer`], which owns both formats. Commands that stream (`consume`)
//! print one compact JSON object per line with `--output json`.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;
use weir_client::{
    Error, Message, Mode, Ordering, ProduceResult, ReadResponse, ReceivedMessage, SubscriptionInfo,
    TopicInfo,
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
        eprintln!("weir: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` that survives a closed pipe (see [`write_line`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub struct Printer {
    format: Output,
}

impl Printer {
    pub fn new(format: Output) -> Self {
        Printer { format }
    }

    pub fn is_json(&self) -> bool {
        self.format == Output::Json
    }

    pub fn json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => eprintln!("weir: cannot print JSON: {e}"),
        }
    }

    /// One compact JSON document on one line (for streams of results).
    pub fn json_line<T: Serialize>(&self, value: &T) {
        match serde_json::to_string(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => eprintln!("weir: cannot print JSON: {e}"),
        }
    }

    pub fn fail(&self, e: &Error) -> ExitCode {
        if self.is_json() {
            if let Error::Api(p) = e {
                self.json(p);
                return ExitCode::FAILURE;
            }
        }
        eprintln!("weir: {e}");
        ExitCode::FAILURE
    }

    pub fn done(&self, text: &str) {
        if self.is_json() {
            self.json(&serde_json::json!({"ok": true}));
        } else {
            outln!("{text}");
        }
    }

    /// Progress on stderr, overwritten in place (text mode only).
    pub fn progress(&self, text: &str) {
        if !self.is_json() {
            eprint!("\r{text}   ");
            let _ = std::io::stderr().flush();
        }
    }

    pub fn topic(&self, t: &TopicInfo) {
        if self.is_json() {
            return self.json(t);
        }
        outln!(
            "topic {}  partitions={}  max_message_bytes={}  dedupe_window_ms={}",
            t.name,
            t.config.partitions,
            t.config.max_message_bytes,
            t.config.dedupe_window_ms
        );
        outln!("  PARTITION  LOW  HIGH  MESSAGES  BYTES");
        for p in &t.partitions {
            outln!(
                "  {:>9}  {}  {}  {}  {}",
                p.partition,
                p.low_offset,
                p.high_offset,
                p.messages,
                p.bytes
            );
        }
    }

    pub fn topics(&self, topics: &[TopicInfo]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "topics": topics }));
        }
        outln!("NAME  PARTITIONS  MESSAGES");
        for t in topics {
            let messages: u64 = t.partitions.iter().map(|p| p.messages).sum();
            outln!("{}  {}  {}", t.name, t.config.partitions, messages);
        }
    }

    pub fn produced(&self, results: &[ProduceResult]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "results": results }));
        }
        eprint!("\r");
        for r in results {
            let dup = if r.duplicate { " (duplicate)" } else { "" };
            outln!("partition {} offset {}{dup}", r.partition, r.offset);
        }
    }

    pub fn messages(&self, page: &ReadResponse) {
        if self.is_json() {
            return self.json(page);
        }
        for m in &page.messages {
            let key = m.key.as_deref().unwrap_or("-");
            outln!("{}:{} key={key} {}", m.partition, m.offset, value_text(m));
        }
        eprintln!("next offset {}", page.next_offset);
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
        outln!(
            "  dead letters: {}  dead_lettered={}",
            c.dead_letter_topic.as_deref().unwrap_or("none (dropped)"),
            st.dead_lettered
        );
        outln!(
            "  backlog={}  in_flight={}  delayed={}  oldest_unacked_age_ms={}  expired_by_retention={}",
            st.backlog, st.in_flight, st.delayed, st.oldest_unacked_age_ms, st.expired_by_retention
        );
        outln!("  PARTITION  CURSOR  HIGH  CONSUMER");
        for p in &st.partitions {
            outln!(
                "  {:>9}  {}  {}  {}",
                p.partition,
                p.cursor,
                p.high_offset,
                p.consumer.as_deref().unwrap_or("-")
            );
        }
    }

    pub fn subscriptions(&self, subs: &[SubscriptionInfo]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "subscriptions": subs }));
        }
        outln!("NAME  MODE  BACKLOG  IN_FLIGHT  DELAYED  DEAD_LETTERED  OLDEST_UNACKED_MS");
        for s in subs {
            let st = &s.stats;
            outln!(
                "{}  {}  {}  {}  {}  {}  {}",
                s.name,
                mode_name(s.config.mode),
                st.backlog,
                st.in_flight,
                st.delayed,
                st.dead_lettered,
                st.oldest_unacked_age_ms
            );
        }
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

    /// Dead letters read from `topic`, each with its `weir-*` headers.
    pub fn dead_letters(&self, topic: &str, messages: &[Message]) {
        if self.is_json() {
            #[derive(Serialize)]
            struct DeadLetters<'a> {
                dead_letter_topic: &'a str,
                messages: &'a [Message],
            }
            return self.json(&DeadLetters {
                dead_letter_topic: topic,
                messages,
            });
        }
        for m in messages {
            outln!("{}:{} {}", m.partition, m.offset, value_text(m));
            for (name, value) in &m.headers {
                if name.starts_with("weir-") {
                    outln!("  {name}: {value}");
                }
            }
        }
        eprintln!("{} dead letters in {topic}", messages.len());
    }
}

/// The payload as printed: JSON as is, bytes as `base64:...`.
fn value_text(m: &Message) -> String {
    m.value
        .as_ref()
        .map(|v| v.get().to_owned())
        .or_else(|| m.value_b64.as_ref().map(|b| format!("base64:{b}")))
        .unwrap_or_default()
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
