//! What a power failure takes away: for each file written since its last
//! fsync, its length then and the bytes that were overwritten; for each
//! directory changed since its last fsync, the entries created, removed
//! or renamed in it.
//!
//! Writes go straight to the backing directory (so reads need no merging);
//! this log is what lets [`Undo::power_fail`] put the backing directory
//! back to its state at the last syncs. Removed entries are kept in a stash
//! directory (on the same filesystem, so moving them is a rename) until
//! their directory is synced.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::inodes::Inodes;

/// The unsynced changes of one file's data.
struct FileUndo {
    /// The length at the last sync.
    synced_len: u64,
    /// Bytes below `synced_len` as they were before each overwrite, oldest
    /// first (restored newest first, so the oldest copy wins).
    saved: Vec<(u64, Vec<u8>)>,
}

/// A directory change not yet made durable by a sync of its directory.
enum DirOp {
    /// `path` was created in `dir`.
    Created { dir: u64, path: PathBuf },
    /// `path` was removed from `dir`; its inode waits at `stash`.
    Removed {
        dir: u64,
        path: PathBuf,
        stash: PathBuf,
    },
    /// `from` (in `dirs.0`) was renamed to `to` (in `dirs.1`), replacing
    /// the entry now at `replaced`, if any.
    Renamed {
        dirs: (u64, u64),
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
}

impl DirOp {
    /// Whether a sync of directory `dir` makes this change durable.
    fn synced_by(&self, dir: u64) -> bool {
        match self {
            DirOp::Created { dir: d, .. } | DirOp::Removed { dir: d, .. } => *d == dir,
            DirOp::Renamed { dirs, .. } => dirs.0 == dir || dirs.1 == dir,
        }
    }

    /// The stashed entry this change keeps alive, if any.
    fn stash(&self) -> Option<&Path> {
        match self {
            DirOp::Removed { stash, .. } => Some(stash),
            DirOp::Renamed { replaced, .. } => replaced.as_deref(),
            DirOp::Created { .. } => None,
        }
    }
}

impl std::fmt::Display for DirOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirOp::Created { path, .. } => write!(f, "create {}", path.display()),
            DirOp::Removed { path, .. } => write!(f, "remove {}", path.display()),
            DirOp::Renamed { from, to, .. } => {
                write!(f, "rename {} -> {}", from.display(), to.display())
            }
        }
    }
}

/// What [`Undo::power_fail`] discarded.
#[derive(Debug, Default)]
pub struct Dropped {
    /// Files whose unsynced data was discarded.
    pub files: usize,
    /// Directory changes undone.
    pub dir_ops: usize,
    /// Steps that failed (each also printed to stderr).
    pub errors: usize,
}

/// The log of everything not yet synced.
pub struct Undo {
    files: HashMap<u64, FileUndo>,
    dir_ops: Vec<DirOp>,
    stash_dir: PathBuf,
    next_stash: u64,
}

impl Undo {
    /// An empty log whose removed entries are kept under `stash_dir`
    /// (which must exist, on the backing directory's filesystem).
    pub fn new(stash_dir: PathBuf) -> Undo {
        Undo {
            files: HashMap::new(),
            dir_ops: Vec::new(),
            stash_dir,
            next_stash: 0,
        }
    }

    /// Before `file` (inode `ino`) changes in any way: remembers its
    /// length if this is the first change since its last sync.
    pub fn touch(&mut self, ino: u64, file: &File) -> io::Result<()> {
        if let Entry::Vacant(slot) = self.files.entry(ino) {
            slot.insert(FileUndo {
                synced_len: file.metadata()?.len(),
                saved: Vec::new(),
            });
        }
        Ok(())
    }

    /// Before writing `len` bytes at `offset`: saves the synced bytes the
    /// write will overwrite.
    pub fn before_write(&mut self, ino: u64, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.touch(ino, file)?;
        let current = file.metadata()?.len();
        if let Some(undo) = self.files.get_mut(&ino) {
            let end = offset.saturating_add(len).min(undo.synced_len).min(current);
            save_range(undo, file, offset, end)?;
        }
        Ok(())
    }

    /// Before truncating to `new_len`: saves the synced bytes cut off.
    pub fn before_truncate(&mut self, ino: u64, file: &File, new_len: u64) -> io::Result<()> {
        self.touch(ino, file)?;
        let current = file.metadata()?.len();
        if let Some(undo) = self.files.get_mut(&ino) {
            let end = undo.synced_len.min(current);
            save_range(undo, file, new_len, end)?;
        }
        Ok(())
    }

    /// A new, empty file: none of its data is durable yet.
    pub fn created_file(&mut self, ino: u64) {
        self.files.insert(
            ino,
            FileUndo {
                synced_len: 0,
                saved: Vec::new(),
            },
        );
    }

    /// `fsync`/`fdatasync` of a file: its data is durable.
    pub fn synced_file(&mut self, ino: u64) {
        self.files.remove(&ino);
    }

    /// `path` was created in directory `dir`.
    pub fn created_entry(&mut self, dir: u64, path: PathBuf) {
        self.dir_ops.push(DirOp::Created { dir, path });
    }

    /// Moves `path` (in directory `dir`) into the stash instead of
    /// removing it, and logs the removal. Returns the stash path.
    pub fn remove_entry(&mut self, dir: u64, path: &Path) -> io::Result<PathBuf> {
        let stash = self.stash_path();
        fs::rename(path, &stash)?;
        self.dir_ops.push(DirOp::Removed {
            dir,
            path: path.to_path_buf(),
            stash: stash.clone(),
        });
        Ok(stash)
    }

    /// Renames `from` (in `dirs.0`) to `to` (in `dirs.1`), stashing what
    /// `to` replaces, and logs it. Returns the stash of the replaced entry.
    pub fn rename_entry(
        &mut self,
        dirs: (u64, u64),
        from: &Path,
        to: &Path,
    ) -> io::Result<Option<PathBuf>> {
        let replaced = if to.symlink_metadata().is_ok() {
            let stash = self.stash_path();
            fs::rename(to, &stash)?;
            Some(stash)
        } else {
            None
        };
        if let Err(e) = fs::rename(from, to) {
            if let Some(stash) = &replaced {
                let _ = fs::rename(stash, to);
            }
            return Err(e);
        }
        self.dir_ops.push(DirOp::Renamed {
            dirs,
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            replaced: replaced.clone(),
        });
        Ok(replaced)
    }

    /// `fsync` of directory `dir`: its entries are durable; stashed
    /// entries removed from it are gone for good.
    pub fn synced_dir(&mut self, dir: u64) {
        let (durable, pending): (Vec<DirOp>, Vec<DirOp>) = std::mem::take(&mut self.dir_ops)
            .into_iter()
            .partition(|op| op.synced_by(dir));
        self.dir_ops = pending;
        for op in durable {
            if let Some(stash) = op.stash() {
                let _ = remove_any(stash);
            }
        }
    }

    /// The power fails: puts every unsynced file back to its synced data
    /// and undoes every unsynced directory change, newest first. Afterwards
    /// everything in the backing directory counts as synced.
    pub fn power_fail(&mut self, inodes: &Inodes) -> Dropped {
        let mut dropped = Dropped::default();
        for (ino, undo) in std::mem::take(&mut self.files) {
            let Some(path) = inodes.path(ino) else {
                continue;
            };
            match restore_file(path, &undo) {
                Ok(true) => {
                    eprintln!(
                        "weir-lazyfs: {}: back to its {} synced bytes",
                        path.display(),
                        undo.synced_len
                    );
                    dropped.files += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    eprintln!("weir-lazyfs: cannot restore {}: {e}", path.display());
                    dropped.errors += 1;
                }
            }
        }
        for op in std::mem::take(&mut self.dir_ops).into_iter().rev() {
            match undo_dir_op(&op) {
                Ok(()) => {
                    eprintln!("weir-lazyfs: undone: {op}");
                    dropped.dir_ops += 1;
                }
                Err(e) => {
                    eprintln!("weir-lazyfs: cannot undo a directory change: {e}");
                    dropped.errors += 1;
                }
            }
        }
        dropped
    }

    fn stash_path(&mut self) -> PathBuf {
        self.next_stash += 1;
        self.stash_dir.join(format!("entry-{}", self.next_stash))
    }
}

/// Saves the bytes of `[start, end)` (nothing when empty).
fn save_range(undo: &mut FileUndo, file: &File, start: u64, end: u64) -> io::Result<()> {
    if start >= end {
        return Ok(());
    }
    let len = usize::try_from(end - start).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, start)?;
    undo.saved.push((start, bytes));
    Ok(())
}

/// Puts the file at `path` back to its synced data. `Ok(false)` when the
/// file is gone (a durable removal) or nothing needed changing.
fn restore_file(path: &Path, undo: &FileUndo) -> io::Result<bool> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for (offset, bytes) in undo.saved.iter().rev() {
        file.write_all_at(bytes, *offset)?;
    }
    let changed = !undo.saved.is_empty() || file.metadata()?.len() != undo.synced_len;
    file.set_len(undo.synced_len)?;
    Ok(changed)
}

fn undo_dir_op(op: &DirOp) -> io::Result<()> {
    match op {
        DirOp::Created { path, .. } => match remove_any(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
        DirOp::Removed { path, stash, .. } => fs::rename(stash, path),
        DirOp::Renamed {
            from, to, replaced, ..
        } => {
            match fs::rename(to, from) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            match replaced {
                Some(stash) => fs::rename(stash, to),
                None => Ok(()),
            }
        }
    }
}

/// Removes a file, a symlink or a whole directory tree.
fn remove_any(path: &Path) -> io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}
