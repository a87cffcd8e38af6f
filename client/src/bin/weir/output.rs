//! Human-readable and JSON output of the CLI.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;
use weir_client::{Error, ProduceResult, ReadResponse, TopicInfo};

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
            Ok(s) => println!("{s}"),
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
            println!("{text}");
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
        println!(
            "topic {}  partitions={}  max_message_bytes={}  dedupe_window_ms={}",
            t.name, t.config.partitions, t.config.max_message_bytes, t.config.dedupe_window_ms
        );
        println!("  PARTITION  LOW  HIGH  MESSAGES  BYTES");
        for p in &t.partitions {
            println!(
                "  {:>9}  {}  {}  {}  {}",
                p.partition, p.low_offset, p.high_offset, p.messages, p.bytes
            );
        }
    }

    pub fn topics(&self, topics: &[TopicInfo]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "topics": topics }));
        }
        println!("NAME  PARTITIONS  MESSAGES");
        for t in topics {
            let messages: u64 = t.partitions.iter().map(|p| p.messages).sum();
            println!("{}  {}  {}", t.name, t.config.partitions, messages);
        }
    }

    pub fn produced(&self, results: &[ProduceResult]) {
        if self.is_json() {
            return self.json(&serde_json::json!({ "results": results }));
        }
        eprint!("\r");
        for r in results {
            let dup = if r.duplicate { " (duplicate)" } else { "" };
            println!("partition {} offset {}{dup}", r.partition, r.offset);
        }
    }

    pub fn messages(&self, page: &ReadResponse) {
        if self.is_json() {
            return self.json(page);
        }
        for m in &page.messages {
            let value = m
                .value
                .as_ref()
                .map(|v| v.get().to_owned())
                .or_else(|| m.value_b64.as_ref().map(|b| format!("base64:{b}")))
                .unwrap_or_default();
            let key = m.key.as_deref().unwrap_or("-");
            println!("{}:{} key={key} {value}", m.partition, m.offset);
        }
        eprintln!("next offset {}", page.next_offset);
    }
}
