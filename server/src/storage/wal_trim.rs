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
//! log; when more than one file waits (the log grows faster than that, or
//! the filesystem is slow to free), the steps run back to back, so the
//! archive never holds more than a file or two for long. RocksDB's own
//! purge of archived files older than [`ARCHIVE_TTL_SECS`] is only a
//! backstop.

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
                    Ok(0) => IDLE,
                    Ok(1) => STEP,
                    // Falling behind: no pause.
                    Ok(_) => Duration::ZERO,
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
/// most a chunk is left. Returns how many archived WAL files there were.
pub(super) fn step(archive: &Path) -> std::io::Result<usize> {
    let (Some(oldest), files) = oldest_log(archive)? else {
        return Ok(0);
    };
    let file = match OpenOptions::new().write(true).open(&oldest) {
        Ok(f) => f,
        // Purged by RocksDB meanwhile.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(files),
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
    Ok(files)
}

/// The archived WAL file with the lowest number (RocksDB names them
/// `NNNNNN.log`, zero-padded, so the name orders them), and how many
/// there are.
fn oldest_log(archive: &Path) -> std::io::Result<(Option<PathBuf>, usize)> {
    let entries = match fs::read_dir(archive) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((None, 0)),
        Err(e) => return Err(e),
    };
    let mut oldest: Option<PathBuf> = None;
    let mut files = 0;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "log") {
            files += 1;
            if oldest
                .as_ref()
                .is_none_or(|o| path.file_name() < o.file_name())
            {
                oldest = Some(path);
            }
        }
    }
    Ok((oldest, files))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trims_the_oldest_file_chunk_by_chunk_then_unlinks_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = archive_dir(dir.path());
        assert_eq!(step(&archive).unwrap(), 0, "no archive yet: nothing to do");
        fs::create_dir(&archive).unwrap();
        let big = archive.join("000012.log");
        let small = archive.join("000031.log");
        fs::File::create(&big)
            .unwrap()
            .set_len(2 * CHUNK_BYTES + 10)
            .unwrap();
        fs::write(&small, b"tail").unwrap();
        fs::write(archive.join("LOCK"), b"").unwrap();
        assert_eq!(step(&archive).unwrap(), 2, "two files wait");
        assert_eq!(fs::metadata(&big).unwrap().len(), CHUNK_BYTES + 10);
        assert_eq!(step(&archive).unwrap(), 2);
        assert_eq!(fs::metadata(&big).unwrap().len(), 10);
        assert_eq!(step(&archive).unwrap(), 2);
        assert!(!big.exists(), "unlinked once at most a chunk was left");
        assert!(small.exists(), "newer files wait their turn");
        assert_eq!(step(&archive).unwrap(), 1);
        assert!(!small.exists());
        assert_eq!(step(&archive).unwrap(), 0, "done; other files are not logs");
        assert!(archive.join("LOCK").exists());
    }
}
