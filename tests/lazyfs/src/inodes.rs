//! The inode table: the FUSE inode numbers handed to the kernel and the
//! backing path each one currently stands for.
//!
//! Numbers are our own (the root is 1, as FUSE requires); a backing file
//! keeps its number for the life of the mount, keyed by its backing
//! `(st_dev, st_ino)`, so hard links and renames keep one identity.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The inode number FUSE reserves for the root of the mount.
pub const ROOT: u64 = 1;

/// Inode numbers and the absolute backing path of each.
pub struct Inodes {
    by_backing: HashMap<(u64, u64), u64>,
    paths: HashMap<u64, PathBuf>,
    next: u64,
}

impl Inodes {
    /// A table holding only the root, which stands for `root`.
    pub fn new(root: &Path, root_meta: &Metadata) -> Inodes {
        let mut inodes = Inodes {
            by_backing: HashMap::new(),
            paths: HashMap::new(),
            next: ROOT + 1,
        };
        inodes
            .by_backing
            .insert((root_meta.dev(), root_meta.ino()), ROOT);
        inodes.paths.insert(ROOT, root.to_path_buf());
        inodes
    }

    /// The backing path of `ino`, if known.
    pub fn path(&self, ino: u64) -> Option<&Path> {
        self.paths.get(&ino).map(PathBuf::as_path)
    }

    /// The number of the backing file at `path` (described by `meta`),
    /// assigning one on first sight; records `path` as its current name.
    pub fn register(&mut self, path: &Path, meta: &Metadata) -> u64 {
        let key = (meta.dev(), meta.ino());
        let ino = match self.by_backing.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.by_backing.insert(key, ino);
                ino
            }
        };
        self.paths.insert(ino, path.to_path_buf());
        ino
    }

    /// `from` (and everything below it) now lives at `to`.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        for path in self.paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(from) {
                *path = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }
}
