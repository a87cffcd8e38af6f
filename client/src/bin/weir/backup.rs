//! `weir backup`: take an online backup of the server (`create NAME`) and
//! list the backups of its `backup_dir` (`list`). Restoring is offline on
//! the server's machine: `weir-server restore --from DIR --data-dir DIR`.

use clap::Subcommand;
use weir_client::{Client, Error};

use super::output::{outln, Printer, Table};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take an online backup into the server's backup_dir/NAME while it
    /// keeps serving (needs the admin grant and a server with backup_dir).
    Create {
        /// Name of the backup: 1 to 128 letters, digits, `.`, `_` or `-`,
        /// not starting with `.`.
        name: String,
    },
    /// List the backups of the server's backup_dir.
    List,
}

pub async fn run(command: BackupCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        BackupCommand::Create { name } => {
            let backup = client.create_backup(&name).await?;
            if printer.is_json() {
                printer.json(&backup);
            } else {
                outln!(
                    "backup `{}` taken: {} files, {} bytes in {} ms at {}",
                    backup.name,
                    backup.files,
                    backup.bytes,
                    backup.took_ms,
                    backup.path
                );
            }
        }
        BackupCommand::List => {
            let backups = client.backups().await?;
            if printer.is_json() {
                printer.json(&serde_json::json!({ "backups": backups }));
                return Ok(());
            }
            let mut table = Table::new(&["NAME", "FILES", "BYTES", "CREATED"]).right(&[1, 2]);
            for b in &backups {
                table.row(vec![
                    b.name.clone(),
                    b.files.to_string(),
                    b.bytes.to_string(),
                    super::time::format_time(b.created_at),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}
