//! `weir-server restore --from BACKUP --data-dir DIR`: the offline restore
//! of a backup (`POST /v1/backups`) into a new data directory. Owns the
//! subcommand's arguments and its output (progress on stderr, one final
//! line on stdout); the copy and its checks are `storage::backup::restore`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::storage::backup::{self, RestoreProgress};

/// Command line of `weir-server restore`.
#[derive(Debug, Parser)]
#[command(
    name = "weir-server restore",
    bin_name = "weir-server restore",
    version,
    about = "Restore a backup into a new data directory (offline: no server may use it)"
)]
pub struct RestoreArgs {
    /// The backup: a directory written by `POST /v1/backups`
    /// (`<backup_dir>/<name>`).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The data directory to create: it must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// Whether `args` (the process arguments, program name first) ask for the
/// `restore` subcommand.
pub fn is_restore(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == "restore")
}

/// Runs `weir-server restore` on the process arguments (program name and
/// `restore` first); exits 2 on usage errors, as clap does.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match RestoreArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    run(&args)
}

fn run(args: &RestoreArgs) -> ExitCode {
    let mut last_percent = None;
    let progress = |p: RestoreProgress| {
        let percent = (p.copied_bytes * 100)
            .checked_div(p.total_bytes)
            .unwrap_or(100);
        if last_percent != Some(percent) {
            last_percent = Some(percent);
            eprintln!(
                "restoring: {} of {} bytes copied ({percent}%)",
                p.copied_bytes, p.total_bytes
            );
        }
    };
    match backup::restore(&args.from, &args.data_dir, progress) {
        Ok(info) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "restored `{}` into `{}`: {} files, {} bytes in {} ms; start weir-server with \
                 --data-dir {}",
                args.from.display(),
                args.data_dir.display(),
                info.files,
                info.bytes,
                info.took.as_millis(),
                args.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir-server restore: {e}");
            ExitCode::FAILURE
        }
    }
}
