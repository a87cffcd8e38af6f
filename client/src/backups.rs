//! Online backups of [`Client`]: take one (`POST /v1/backups`) and list
//! them (`GET /v1/backups`). Restoring is offline, on the server's machine
//! (`weir-server restore --from DIR --data-dir DIR`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{Client, Error};

/// A backup the server just took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCreated {
    pub name: String,
    /// Its directory on the server (`<backup_dir>/<name>`).
    pub path: String,
    pub files: u64,
    pub bytes: u64,
    /// How long the checkpoint took, in milliseconds.
    pub took_ms: u64,
    /// When the checkpoint started (ms since the Unix epoch): every write
    /// acknowledged before it is in the backup.
    pub created_at: u64,
}

/// One backup of the server's backup directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub name: String,
    pub bytes: u64,
    #[serde(default)]
    pub files: u64,
    /// When the checkpoint started (ms since the Unix epoch).
    pub created_at: u64,
}

#[derive(Serialize)]
struct BackupRequest<'a> {
    name: &'a str,
}

#[derive(Deserialize)]
struct BackupList {
    backups: Vec<BackupSummary>,
}

impl Client {
    /// Takes an online backup named `name` (1 to 128 letters, digits, `.`,
    /// `_` or `-`, not starting with `.`) under the server's `backup_dir`.
    /// Fails with `conflict` when the server has no `backup_dir` or the
    /// name is taken. Needs the `admin` grant.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let backup = client.create_backup("nightly").await?;
    /// println!("{} bytes in {}", backup.bytes, backup.path);
    /// # Ok(()) }
    /// ```
    pub async fn create_backup(&self, name: &str) -> Result<BackupCreated, Error> {
        let body = BackupRequest { name };
        Self::send(self.request(Method::POST, "/v1/backups").json(&body)).await
    }

    /// The backups under the server's `backup_dir`, in name order.
    pub async fn backups(&self) -> Result<Vec<BackupSummary>, Error> {
        let list: BackupList = Self::send(self.request(Method::GET, "/v1/backups")).await?;
        Ok(list.backups)
    }
}
