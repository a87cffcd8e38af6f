//! `weir`: the command-line tool for Weir servers.

mod auth;
mod bench;
mod consume;
mod dlq;
mod output;
mod subs;
mod tail;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_client::{Client, Error, ProduceMessage, ProduceMessageExt, TopicSpec};

use output::{Output, Printer};

#[derive(Parser)]
#[command(name = "weir", version, about = "Command-line tool for Weir servers")]
struct Cli {
    /// Server URL (`http://` or `https://`).
    #[arg(
        long,
        env = "WEIR_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Bearer token.
    #[arg(long, env = "WEIR_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA(s) to trust for `https://` instead of the built-in
    /// web roots.
    #[arg(long, env = "WEIR_CA_FILE", global = true, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// PEM certificate (chain) to present for mutual TLS; needs --client-key.
    #[arg(long, env = "WEIR_CLIENT_CERT", global = true, value_name = "PEM")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "WEIR_CLIENT_KEY", global = true, value_name = "PEM")]
    client_key: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Produce messages: from arguments, or one per line from stdin / a file.
    Produce {
        topic: String,
        /// Message values (JSON if they parse as JSON, else strings).
        values: Vec<String>,
        /// Read values from this file (`-` = stdin), one per line.
        #[arg(long, short)]
        file: Option<String>,
        /// Key of every message.
        #[arg(long, short)]
        key: Option<String>,
        /// Header `name=value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Messages per request when reading lines.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Read a partition from an offset or a timestamp.
    Read {
        topic: String,
        #[arg(long, short, default_value_t = 0)]
        partition: u32,
        #[arg(long, short, default_value_t = 0)]
        offset: u64,
        /// Start at the first message at or after this timestamp (ms).
        #[arg(long)]
        timestamp: Option<u64>,
        #[arg(long, short, default_value_t = 100)]
        limit: u32,
    },
    /// Manage subscriptions (named, durable readers of a topic).
    #[command(subcommand)]
    Subs(subs::SubsCommand),
    /// Pull messages of a subscription, print them and ack them.
    Consume(consume::ConsumeArgs),
    /// Print a topic's messages live (WebSocket tail) until Ctrl-C.
    Tail(tail::TailArgs),
    /// Inspect and redrive a subscription's dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Benchmark the server.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Make and hash bearer tokens for the server's tokens file (offline).
    #[command(subcommand)]
    Auth(auth::AuthCommand),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create a topic (or update its settings).
    Create {
        topic: String,
        #[arg(long)]
        partitions: Option<u32>,
        #[arg(long)]
        retention_ms: Option<u64>,
        #[arg(long)]
        max_message_bytes: Option<u32>,
    },
    /// List topics.
    List,
    /// Describe a topic.
    Describe { topic: String },
    /// Delete a topic and its data.
    Delete { topic: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.output);
    // Offline: no server, so no TLS files to read either.
    if let Command::Auth(command) = cli.command {
        return match auth::run(command, &printer) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => printer.fail(&e),
        };
    }
    let client = match connect(&cli) {
        Ok(client) => client,
        Err(e) => return printer.fail(&e),
    };
    match run(cli.command, &client, &printer).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => printer.fail(&e),
    }
}

/// The client the global options describe.
fn connect(cli: &Cli) -> Result<Client, Error> {
    let mut builder = Client::builder(&cli.server).token(cli.token.clone());
    if let Some(ca_file) = &cli.ca_file {
        builder = builder.ca_file(ca_file);
    }
    match (&cli.client_cert, &cli.client_key) {
        (Some(cert), Some(key)) => builder = builder.client_cert(cert, key),
        (None, None) => {}
        // Checked here rather than by clap: values may come from the
        // environment, and one without the other is always a mistake.
        (Some(_), None) => {
            return Err(Error::Local(
                "--client-cert (WEIR_CLIENT_CERT) needs --client-key (WEIR_CLIENT_KEY)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::Local(
                "--client-key (WEIR_CLIENT_KEY) needs --client-cert (WEIR_CLIENT_CERT)".into(),
            ))
        }
    }
    builder.build()
}

async fn run(command: Command, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        Command::Topics(TopicsCommand::Create {
            topic,
            partitions,
            retention_ms,
            max_message_bytes,
        }) => {
            let spec = TopicSpec {
                partitions,
                retention: retention_ms.map(|ms| weir_protocol::Retention {
                    max_age_ms: Some(ms),
                    ..Default::default()
                }),
                max_message_bytes,
                dedupe_window_ms: None,
            };
            printer.topic(&client.create_topic(&topic, &spec).await?);
        }
        Command::Topics(TopicsCommand::List) => printer.topics(&client.topics().await?),
        Command::Topics(TopicsCommand::Describe { topic }) => {
            printer.topic(&client.topic(&topic).await?)
        }
        Command::Topics(TopicsCommand::Delete { topic }) => {
            client.delete_topic(&topic).await?;
            printer.done(&format!("deleted topic {topic}"));
        }
        Command::Produce {
            topic,
            values,
            file,
            key,
            headers,
            batch,
        } => {
            let headers = parse_headers(&headers)?;
            let make = |v: &str| -> Result<ProduceMessage, Error> {
                let mut m = match serde_json::from_str::<serde_json::Value>(v) {
                    Ok(json) => ProduceMessage::json(&json)?,
                    Err(_) => ProduceMessage::json(&v)?,
                };
                m.key = key.clone();
                m.headers = (!headers.is_empty()).then(|| headers.clone());
                Ok(m)
            };
            let mut results = Vec::new();
            if !values.is_empty() {
                let msgs = values.iter().map(|v| make(v)).collect::<Result<_, _>>()?;
                results.extend(client.produce(&topic, msgs).await?);
            }
            if let Some(path) = file {
                let reader: Box<dyn BufRead> = if path == "-" {
                    Box::new(std::io::stdin().lock())
                } else {
                    Box::new(std::io::BufReader::new(
                        std::fs::File::open(&path)
                            .map_err(|e| Error::Local(format!("cannot open `{path}`: {e}")))?,
                    ))
                };
                let mut pending = Vec::new();
                let mut sent = 0usize;
                for line in reader.lines() {
                    let line = line.map_err(|e| Error::Local(format!("read failed: {e}")))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    pending.push(make(&line)?);
                    if pending.len() >= batch.max(1) {
                        sent += pending.len();
                        results.extend(client.produce(&topic, std::mem::take(&mut pending)).await?);
                        printer.progress(&format!("{sent} messages produced"));
                    }
                }
                if !pending.is_empty() {
                    results.extend(client.produce(&topic, pending).await?);
                }
            }
            printer.produced(&results);
        }
        Command::Read {
            topic,
            partition,
            offset,
            timestamp,
            limit,
        } => {
            let page = match timestamp {
                Some(t) => client.read_from_time(&topic, partition, t, limit).await?,
                None => client.read(&topic, partition, offset, limit).await?,
            };
            printer.messages(&page);
        }
        Command::Subs(cmd) => subs::run(cmd, client, printer).await?,
        Command::Consume(args) => consume::run(args, client, printer).await?,
        Command::Tail(args) => tail::run(args, client, printer).await?,
        Command::Dlq(cmd) => dlq::run(cmd, client, printer).await?,
        Command::Bench(cmd) => bench::run(cmd, client, printer).await?,
        Command::Auth(cmd) => auth::run(cmd, printer)?,
    }
    Ok(())
}

fn parse_headers(raw: &[String]) -> Result<std::collections::BTreeMap<String, String>, Error> {
    raw.iter()
        .map(|h| {
            h.split_once('=')
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::Local(format!("header `{h}` must be name=value")))
        })
        .collect()
}
