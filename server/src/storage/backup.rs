//! Backups of the store: an online checkpoint (RocksDB's consistent
//! snapshot of every column family, hard-linked where the filesystem
//! allows) taken while the server serves writes, the marker file that
//! dates it, the listing of a backup directory, and the offline restore of
//! a backup into a new data directory after checking that it opens as a
//! Weir store.
//!
//! A backup is written under a hidden staging name and renamed into place
//! with its marker, so a backup directory never shows a partial backup; a
//! restore copies into a staging directory beside the data directory, opens
//! the copy, and only then renames it into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{Options, DB};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::keys::{ALL_CFS, REQUIRED_CFS};
use super::{StorageError, Store};

/// The file in a backup saying when it was taken (not copied by restore).
pub const MARKER: &str = "weir-backup.json";

/// Files of a store directory that are never copied by a restore: the
/// process lock and RocksDB's diagnostic logs.
const SKIPPED: [&str; 2] = ["LOCK", MARKER];

/// Bytes copied between two progress reports of a restore.
const PROGRESS_EVERY: u64 = 16 << 20;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("`{}` already exists", .0.display())]
    Exists(PathBuf),
    #[error("cannot {action} `{}`: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("checkpoint of the store failed: {0}")]
    Checkpoint(String),
    #[error("`{}` is not a Weir store: {detail}", .path.display())]
    NotAStore { path: PathBuf, detail: String },
    #[error(
        "the data directory `{}` is in use by a running weir-server (its LOCK file is held): \
         stop that server first",
        .0.display()
    )]
    InUse(PathBuf),
    #[error(
        "the data directory `{}` is not empty: restore only into an empty or new directory \
         (move the old one aside first)",
        .0.display()
    )]
    NotEmpty(PathBuf),
}

pub type Result<T> = std::result::Result<T, BackupError>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a finished checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupInfo {
    /// Files of the backup (the marker excluded).
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// How long the checkpoint took.
    pub took: Duration,
    /// When the checkpoint started, in milliseconds since the Unix epoch:
    /// everything acknowledged before it is in the backup.
    pub created_at_ms: u64,
}

/// One backup of a backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
    pub created_at_ms: u64,
}

/// The marker's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    created_at_ms: u64,
    files: u64,
    bytes: u64,
}

/// Where a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    pub copied_bytes: u64,
    pub total_bytes: u64,
}

/// What a finished restore copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreInfo {
    pub files: u64,
    pub bytes: u64,
    pub took: Duration,
}

impl Store {
    /// Writes a consistent snapshot of the whole store to `dir`, which must
    /// not exist (its parent is created), while writes go on. Blocking:
    /// call it from `spawn_blocking`.
    pub fn checkpoint(&self, dir: &Path) -> Result<BackupInfo> {
        let started = Instant::now();
        let created_at_ms = now_ms();
        if dir.exists() {
            return Err(BackupError::Exists(dir.to_path_buf()));
        }
        let staging = staging_path(dir, "partial")?;
        if let Some(parent) = staging.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let db = self.db()?;
        let taken = Checkpoint::new(&*db)
            .and_then(|c| c.create_checkpoint(&staging))
            .map_err(|e| BackupError::Checkpoint(e.into_string()));
        let finished = taken.and_then(|()| {
            let (files, bytes) = store_files(&staging)?
                .iter()
                .fold((0, 0), |(n, b), (_, size)| (n + 1, b + size));
            let marker = Marker {
                created_at_ms,
                files,
                bytes,
            };
            write_marker(&staging, &marker)?;
            if dir.exists() {
                return Err(BackupError::Exists(dir.to_path_buf()));
            }
            fs::rename(&staging, dir).map_err(io_err("rename into place", dir))?;
            sync_parent(dir)?;
            Ok(BackupInfo {
                files,
                bytes,
                took: started.elapsed(),
                created_at_ms,
            })
        });
        if finished.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        finished
    }
}

/// The backups under `backup_dir` (none when it does not exist), in name
/// order. Directories without a marker (not backups, or partial) are left
/// out.
pub fn list(backup_dir: &Path) -> Result<Vec<BackupEntry>> {
    let entries = match fs::read_dir(backup_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", backup_dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", backup_dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(text) = fs::read(entry.path().join(MARKER)) else {
            continue;
        };
        let Ok(marker) = serde_json::from_slice::<Marker>(&text) else {
            continue;
        };
        out.push(BackupEntry {
            name,
            files: marker.files,
            bytes: marker.bytes,
            created_at_ms: marker.created_at_ms,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Copies the backup `from` into `data_dir`, which must be empty or not
/// exist (and not be in use), reporting progress after every file and
/// every few megabytes. The copy is opened as a Weir store before it is
/// renamed into place, so a failed restore leaves `data_dir` as it was.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    mut progress: impl FnMut(RestoreProgress),
) -> Result<RestoreInfo> {
    let started = Instant::now();
    check_is_store(from)?;
    check_target(data_dir)?;
    let files = store_files(from)?;
    let total_bytes = files.iter().map(|(_, size)| size).sum();
    let staging = staging_path(data_dir, "restoring")?;
    if staging.exists() {
        // Left by an interrupted restore: never a data directory.
        fs::remove_dir_all(&staging).map_err(io_err("remove", &staging))?;
    }
    let copied = copy_all(from, &staging, &files, total_bytes, &mut progress).and_then(|bytes| {
        check_is_store(&staging)?;
        if data_dir.exists() {
            fs::remove_dir(data_dir).map_err(io_err("replace", data_dir))?;
        }
        fs::rename(&staging, data_dir).map_err(io_err("rename into place", data_dir))?;
        sync_parent(data_dir)?;
        Ok(bytes)
    });
    match copied {
        Ok(bytes) => Ok(RestoreInfo {
            files: files.len() as u64,
            bytes,
            took: started.elapsed(),
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// `dir` holds a RocksDB store with every column family of Weir, and opens.
fn check_is_store(dir: &Path) -> Result<()> {
    let not_a_store = |detail: String| BackupError::NotAStore {
        path: dir.to_path_buf(),
        detail,
    };
    if !dir.is_dir() {
        return Err(not_a_store("no such directory".to_owned()));
    }
    let families =
        DB::list_cf(&Options::default(), dir).map_err(|e| not_a_store(e.into_string()))?;
    let missing: Vec<&str> = REQUIRED_CFS
        .iter()
        .copied()
        .filter(|cf| !families.iter().any(|f| f == cf))
        .collect();
    if !missing.is_empty() {
        return Err(not_a_store(format!(
            "column families missing: {}",
            missing.join(", ")
        )));
    }
    let present = ALL_CFS
        .iter()
        .copied()
        .filter(|cf| families.iter().any(|f| f == cf));
    DB::open_cf_for_read_only(&Options::default(), dir, present, false)
        .map(drop)
        .map_err(|e| not_a_store(e.into_string()))
}

/// `data_dir` does not exist, or is an empty directory nobody uses.
fn check_target(data_dir: &Path) -> Result<()> {
    let mut entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", data_dir)(e)),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if lock_is_held(&data_dir.join("LOCK")) {
        return Err(BackupError::InUse(data_dir.to_path_buf()));
    }
    Err(BackupError::NotEmpty(data_dir.to_path_buf()))
}

/// Whether another process holds RocksDB's lock on `lock` (a POSIX record
/// lock, which this process can test by trying to take it). Only for a
/// process that has no store open: POSIX locks belong to the process, so
/// closing the file would release a lock this process held itself.
fn lock_is_held(lock: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(lock) else {
        return false;
    };
    let held = rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .is_err();
    // Closing the file releases the lock if it was taken.
    drop(file);
    held
}

/// The regular files of a store directory to back up or restore, with
/// their sizes, in name order.
fn store_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let meta = entry.metadata().map_err(io_err("stat", &entry.path()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !meta.is_file() || SKIPPED.contains(&name.as_str()) || name.starts_with("LOG") {
            continue;
        }
        files.push((name, meta.len()));
    }
    files.sort();
    Ok(files)
}

fn copy_all(
    from: &Path,
    to: &Path,
    files: &[(String, u64)],
    total_bytes: u64,
    progress: &mut impl FnMut(RestoreProgress),
) -> Result<u64> {
    fs::create_dir_all(to).map_err(io_err("create", to))?;
    let mut copied = 0u64;
    let mut reported = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (name, _) in files {
        let source = from.join(name);
        let target = to.join(name);
        let mut input = File::open(&source).map_err(io_err("open", &source))?;
        let mut output = File::create(&target).map_err(io_err("create", &target))?;
        loop {
            let n = input.read(&mut buf).map_err(io_err("read", &source))?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            output.write_all(chunk).map_err(io_err("write", &target))?;
            copied += n as u64;
            if copied - reported >= PROGRESS_EVERY {
                reported = copied;
                progress(RestoreProgress {
                    copied_bytes: copied,
                    total_bytes,
                });
            }
        }
        output.sync_all().map_err(io_err("sync", &target))?;
        reported = copied;
        progress(RestoreProgress {
            copied_bytes: copied,
            total_bytes,
        });
    }
    File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", to))?;
    Ok(copied)
}

fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    let path = dir.join(MARKER);
    let text = serde_json::to_vec_pretty(marker)
        .map_err(|e| io_err("encode", &path)(io::Error::other(e)))?;
    let mut file = File::create(&path).map_err(io_err("create", &path))?;
    file.write_all(&text).map_err(io_err("write", &path))?;
    file.sync_all().map_err(io_err("sync", &path))
}

/// A hidden sibling of `dir` (`.<name>.<what>-<pid>`): never listed as a
/// backup nor taken for a data directory.
fn staging_path(dir: &Path, what: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BackupError::Io {
            action: "use",
            path: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no name"),
        })?;
    Ok(dir.with_file_name(format!(".{name}.{what}-{}", std::process::id())))
}

/// Makes a rename in `path`'s parent durable.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", parent))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::storage::{StoreOptions, TopicRecord, WriteSet};
    use weir_protocol::{Retention, TopicConfig};

    fn topic() -> TopicRecord {
        TopicRecord {
            id: 1,
            name: "orders".into(),
            config: TopicConfig {
                partitions: 1,
                retention: Retention::default(),
                max_message_bytes: 1024,
                dedupe_window_ms: 1000,
                replication_factor: 1,
            },
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn checkpoint_lists_and_restores_into_a_store_that_opens() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        let mut set = WriteSet::new();
        set.put_topic(&topic());
        store.commit(set).await.unwrap();
        let backups = root.path().join("backups");
        let dir = backups.join("b1");
        let info = {
            let store = store.clone();
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || store.checkpoint(&dir))
                .await
                .unwrap()
                .unwrap()
        };
        assert!(info.files > 0 && info.bytes > 0, "{info:?}");
        let listed = list(&backups).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "b1");
        assert_eq!(listed[0].bytes, info.bytes);
        assert!(matches!(
            store.checkpoint(&dir),
            Err(BackupError::Exists(_))
        ));

        // Refused: a directory that is not empty. (A data directory in use
        // by another process is refused as in use: the black-box test; this
        // process's own lock cannot be seen from here.)
        let full = root.path().join("full");
        fs::create_dir_all(&full).unwrap();
        fs::write(full.join("x"), b"x").unwrap();
        let r = restore(&dir, &full, |_| {});
        assert!(matches!(r, Err(BackupError::NotEmpty(_))), "{r:?}");
        // Not a store.
        let r = restore(&full, &root.path().join("new"), |_| {});
        assert!(matches!(r, Err(BackupError::NotAStore { .. })), "{r:?}");

        let target = root.path().join("restored");
        let mut last = None;
        let restored = restore(&dir, &target, |p| last = Some(p)).unwrap();
        assert_eq!(restored.bytes, info.bytes);
        let last = last.unwrap();
        assert_eq!(last.copied_bytes, last.total_bytes);
        assert!(!target.join(MARKER).exists());
        store.shutdown().await;
        let reopened = Store::open(&target, &StoreOptions::default()).unwrap();
        let recovered = reopened.recover().unwrap();
        assert_eq!(recovered.topics.len(), 1);
        assert_eq!(recovered.topics[0].0.name, "orders");
        reopened.shutdown().await;
    }
}
