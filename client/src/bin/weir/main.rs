//! `weir`: the command-line tool for Weir servers.

mod auth;
mod backup;
mod bench;
mod cluster;
mod consume;
mod dlq;
mod encoding;
mod output;
mod produce;
mod read;
mod subs;
mod tail;
mod time;
mod topics;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_client::{Client, Error};

use output::{Output, Printer};

/// mimalloc: `weir bench` allocates per request and per message on every
/// worker thread while sharing the cores with the server it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage topics: create, update, list, describe, delete.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Produce messages: from arguments, or one per line from a file or
    /// stdin (read when no value is given and stdin is not a terminal).
    Produce(produce::ProduceArgs),
    /// Read a topic without a subscription: every partition merged by
    /// timestamp (or one, with --partition), from the oldest message (or
    /// --offset / --from).
    Read(read::ReadArgs),
    /// Manage subscriptions (named, durable readers of a topic).
    #[command(subcommand)]
    Subs(subs::SubsCommand),
    /// Pull messages of a subscription, print them and ack them.
    Consume(consume::ConsumeArgs),
    /// Print a topic's messages live (WebSocket tail) until Ctrl-C.
    Tail(tail::TailArgs),
    /// List, redrive and purge a subscription's dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Receive a push subscription's webhooks locally: verify their
    /// signatures and print the messages (offline: no server needed).
    WebhookReceive(webhook::WebhookArgs),
    /// Take and list online backups of the server (restore is offline:
    /// `weir-server restore`).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Show the cluster: nodes, their state and when each was last heard
    /// from, the metadata group, and (--partitions) who leads each
    /// partition. A lone server shows itself.
    Cluster(cluster::ClusterArgs),
    /// Benchmark the server.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Make and hash bearer tokens for the server's tokens file (offline).
    #[command(subcommand)]
    Auth(auth::AuthCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.output).with_server(&cli.server);
    // Offline: no server, so no TLS files to read either.
    match cli.command {
        Command::Auth(command) => {
            return match auth::run(command, &printer) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => printer.fail(&e),
            };
        }
        Command::WebhookReceive(args) => {
            return match webhook::run(args, &printer).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => printer.fail(&e),
            };
        }
        Command::Produce(ref args) => {
            if let Some(message) = produce::usage_error(args) {
                output::errln!("weir: {message}");
                return ExitCode::from(2);
            }
        }
        _ => {}
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
        Command::Topics(cmd) => topics::run(cmd, client, printer).await,
        Command::Produce(args) => produce::run(args, client, printer).await,
        Command::Read(args) => read::run(args, client, printer).await,
        Command::Subs(cmd) => subs::run(cmd, client, printer).await,
        Command::Consume(args) => consume::run(args, client, printer).await,
        Command::Tail(args) => tail::run(args, client, printer).await,
        Command::Dlq(cmd) => dlq::run(cmd, client, printer).await,
        Command::Backup(cmd) => backup::run(cmd, client, printer).await,
        Command::Cluster(args) => cluster::run(args, client, printer).await,
        Command::Bench(cmd) => bench::run(cmd, client, printer).await,
        Command::WebhookReceive(args) => webhook::run(args, printer).await,
        Command::Auth(cmd) => auth::run(cmd, printer),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every subcommand, option and argument says what it is for.
    #[test]
    fn every_option_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() && path != " weir" {
                missing.push(path.clone());
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        Cli::command().debug_assert();
    }
}
