//! Obsolete WAL files deleted in small pieces.
//!
//! Once a memtable is flushed, RocksDB would unlink its WAL file — a
//! memtable's worth of log, 64 MiB and more — in one call. Freeing that
//! many blocks at once makes the filesystem's next journal commit slow
//! (ext4 with online `discard` trims them right then), and the WAL sync
//! every durable answer waits for is such a commit: one 15 ms stall of
//! every request in flight per memtable (measured: publish p99.9 16 ms,
//! 7 ms without these deletes; BENCHMARKS.md). So the store has RocksDB
//! archive obsolete WAL files instead (`archive/` in the data directory, a
//! rename), and this thread cuts each one down by [`CHUNK_BYTES`] per step,
//! oldest first, and unlinks it once little is left: each journal commit
//! frees a few MiB at most. A step every [`STEP`] keeps up with 800 MB/s of
//! log. RocksDB's own purge of archived files older than
//! [`ARCHIVE_TTL_SECS`] is only a backstop.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Archived WAL files older than this are deleted by RocksDB itself.
pub(super) const ARCHIVE_TTL_SECS: u64 = 3600;

/// Bytes freed per step.
const CHUNK_BYTES: u64 = 4 << 20;

/// Pause between steps while files wait.
const STEP: Duration = Duration::from_millis(5);

/// Pause when the archive is empty.
const IDLE: Duration = Duration::from_millis(100);

/// The directory RocksDB archives WAL files into.
pub(super) fn archive_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("archive")
}

pub(super) fn spawn(data_dir: PathBuf, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    let archive = archive_dir(&data_dir);
    std::thread::Builder::new()
        .name("weir-wal-trim".into())
        .spawn(move || {
            let mut warned = false;
            while !stop.load(Ordering::Relaxed) {
                let pause = match step(&archive) {
                    Ok(true) => STEP,
                    Ok(false) => IDLE,
                    Err(e) => {
                        if !warned {
                            tracing::warn!(
                                dir = %archive.display(),
                                error = %e,
                                "cannot trim archived WAL files; RocksDB deletes them after an hour"
                            );
                            warned = true;
                        }
                        IDLE
                    }
                };
                std::thread::sleep(pause);
            }
        })
}

/// Frees one chunk of the oldest archived WAL file, or unlinks it when at
/// most a chunk is left. True when there was a file to work on.
pub(super) fn step(archive: &Path) -> std::io::Result<bool> {
    let Some(oldest) = oldest_log(archive)? else {
        return Ok(false);
    };
    let file = match OpenOptions::new().write(true).open(&oldest) {
        Ok(f) => f,
        // Purged by RocksDB meanwhile.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > CHUNK_BYTES {
        file.set_len(len - CHUNK_BYTES)?;
    } else {
        drop(file);
        match fs::remove_file(&oldest) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(true)
}

/// The archived WAL file with the lowest number (RocksDB names them
/// `NNNNNN.log`, zero-padded, so the name orders them).
fn oldest_log(archive: &Path) -> std::io::Result<Option<PathBuf>> {
    let entries = match fs::read_dir(archive) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut oldest: Option<PathBuf> = None;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "log")
            && oldest
                .as_ref()
                .is_none_or(|o| path.file_name() < o.file_name())
        {
            oldest = Some(path);
        }
    }
    Ok(oldest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trims_the_oldest_file_chunk_by_chunk_then_unlinks_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = archive_dir(dir.path());
        assert!(!step(&archive).unwrap(), "no archive yet: nothing to do");
        fs::create_dir(&archive).unwrap();
        let big = archive.join("000012.log");
        let small = archive.join("000031.log");
        fs::File::create(&big)
            .unwrap()
            .set_len(2 * CHUNK_BYTES + 10)
            .unwrap();
        fs::write(&small, b"tail").unwrap();
        fs::write(archive.join("LOCK"), b"").unwrap();
        assert!(step(&archive).unwrap());
        assert_eq!(fs::metadata(&big).unwrap().len(), CHUNK_BYTES + 10);
        assert!(step(&archive).unwrap());
        assert_eq!(fs::metadata(&big).unwrap().len(), 10);
        assert!(step(&archive).unwrap());
        assert!(!big.exists(), "unlinked once at most a chunk was left");
        assert!(small.exists(), "newer files wait their turn");
        assert!(step(&archive).unwrap());
        assert!(!small.exists());
        assert!(!step(&archive).unwrap(), "done; other files are not logs");
        assert!(archive.join("LOCK").exists());
    }
}
