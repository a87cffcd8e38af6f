//! The passthrough itself: every operation done on the backing directory,
//! with the undo log told before anything changes. One `State` behind one
//! mutex serves all requests (tests need correctness, not throughput).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, TimeOrNow};
use rustix::fs::{FallocateFlags, OFlags, StatVfs};

use crate::attr::{file_attr, file_type};
use crate::inodes::{Inodes, ROOT};
use crate::undo::{Dropped, Undo};

/// Every operation answers a value or an errno for the kernel.
pub type Res<T> = Result<T, Errno>;

/// One directory entry as listed by `readdir`.
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileType,
    pub name: OsString,
}

enum Handle {
    File {
        file: File,
        ino: u64,
        /// Opened with `O_SYNC`/`O_DSYNC`: each write is durable at once.
        sync_writes: bool,
    },
    Dir(Vec<DirEntry>),
}

/// The mounted filesystem's state.
pub struct State {
    inodes: Inodes,
    undo: Undo,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
    root: PathBuf,
    /// Set by a power failure: every later request fails with `EIO`.
    pub frozen: bool,
}

impl State {
    /// A passthrough of `root`, stashing removed entries in `stash`.
    pub fn new(root: PathBuf, stash: PathBuf) -> std::io::Result<State> {
        let meta = root.metadata()?;
        Ok(State {
            inodes: Inodes::new(&root, &meta),
            undo: Undo::new(stash),
            handles: HashMap::new(),
            next_handle: 1,
            root,
            frozen: false,
        })
    }

    /// Drops everything not synced (see [`Undo::power_fail`]) and freezes.
    pub fn power_fail(&mut self) -> Dropped {
        self.frozen = true;
        self.handles.clear();
        self.undo.power_fail(&self.inodes)
    }

    fn path(&self, ino: u64) -> Res<PathBuf> {
        self.inodes
            .path(ino)
            .map(Path::to_path_buf)
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Res<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    fn entry(&mut self, path: &Path) -> Res<FileAttr> {
        let meta = path.symlink_metadata()?;
        let ino = self.inodes.register(path, &meta);
        Ok(file_attr(ino, &meta))
    }

    fn add_handle(&mut self, handle: Handle) -> u64 {
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, handle);
        fh
    }

    fn file(&self, fh: u64) -> Res<(&File, u64, bool)> {
        match self.handles.get(&fh) {
            Some(Handle::File {
                file,
                ino,
                sync_writes,
            }) => Ok((file, *ino, *sync_writes)),
            _ => Err(Errno::EBADF),
        }
    }

    // ---- names --------------------------------------------------------

    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> Res<FileAttr> {
        let path = self.child(parent, name)?;
        self.entry(&path)
    }

    pub fn getattr(&mut self, ino: u64, fh: Option<u64>) -> Res<FileAttr> {
        if let Some(Ok((file, _, _))) = fh.map(|fh| self.file(fh)) {
            return Ok(file_attr(ino, &file.metadata()?));
        }
        let meta = self.path(ino)?.symlink_metadata()?;
        Ok(file_attr(ino, &meta))
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> Res<FileAttr> {
        let path = self.child(parent, name)?;
        DirBuilder::new().mode(mode).create(&path)?;
        self.undo.created_entry(parent, path.clone());
        self.entry(&path)
    }

    pub fn symlink(&mut self, parent: u64, name: &OsStr, target: &Path) -> Res<FileAttr> {
        let path = self.child(parent, name)?;
        std::os::unix::fs::symlink(target, &path)?;
        self.undo.created_entry(parent, path.clone());
        self.entry(&path)
    }

    pub fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Res<FileAttr> {
        let (from, to) = (self.path(ino)?, self.child(parent, name)?);
        fs::hard_link(&from, &to)?;
        self.undo.created_entry(parent, to);
        let meta = from.symlink_metadata()?;
        Ok(file_attr(ino, &meta))
    }

    pub fn readlink(&self, ino: u64) -> Res<Vec<u8>> {
        use std::os::unix::ffi::OsStringExt;
        Ok(fs::read_link(self.path(ino)?)?.into_os_string().into_vec())
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let path = self.child(parent, name)?;
        if path.symlink_metadata()?.is_dir() {
            return Err(Errno::EISDIR);
        }
        let stash = self.undo.remove_entry(parent, &path)?;
        self.inodes.renamed(&path, &stash);
        Ok(())
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let path = self.child(parent, name)?;
        if !path.symlink_metadata()?.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if fs::read_dir(&path)?.next().is_some() {
            return Err(Errno::ENOTEMPTY);
        }
        let stash = self.undo.remove_entry(parent, &path)?;
        self.inodes.renamed(&path, &stash);
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
    ) -> Res<()> {
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        from.symlink_metadata()?;
        if let Ok(meta) = to.symlink_metadata() {
            if meta.is_dir() && fs::read_dir(&to)?.next().is_some() {
                return Err(Errno::ENOTEMPTY);
            }
        }
        if let Some(stash) = self.undo.rename_entry((parent, new_parent), &from, &to)? {
            self.inodes.renamed(&to, &stash);
        }
        self.inodes.renamed(&from, &to);
        Ok(())
    }

    // ---- attributes ---------------------------------------------------

    pub fn setattr(&mut self, ino: u64, fh: Option<u64>, change: &AttrChange) -> Res<FileAttr> {
        let path = self.path(ino)?;
        if let Some(size) = change.size {
            let file = match fh.map(|fh| self.file(fh)) {
                Some(Ok((file, _, _))) => file.try_clone()?,
                _ => OpenOptions::new().read(true).write(true).open(&path)?,
            };
            self.undo.before_truncate(ino, &file, size)?;
            file.set_len(size)?;
        }
        if let Some(mode) = change.mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if change.uid.is_some() || change.gid.is_some() {
            std::os::unix::fs::lchown(&path, change.uid, change.gid)?;
        }
        if change.atime.is_some() || change.mtime.is_some() {
            let mut times = FileTimes::new();
            if let Some(atime) = change.atime {
                times = times.set_accessed(resolve(atime));
            }
            if let Some(mtime) = change.mtime {
                times = times.set_modified(resolve(mtime));
            }
            File::open(&path)?.set_times(times)?;
        }
        self.getattr(ino, fh)
    }

    pub fn statfs(&self) -> Res<StatVfs> {
        Ok(rustix::fs::statvfs(&self.root).map_err(std::io::Error::from)?)
    }

    // ---- files --------------------------------------------------------

    pub fn open(&mut self, ino: u64, flags: i32) -> Res<u64> {
        let path = self.path(ino)?;
        let flags = open_flags(flags);
        let file = options(flags).open(&path)?;
        if flags.contains(OFlags::TRUNC) {
            self.undo.before_truncate(ino, &file, 0)?;
            file.set_len(0)?;
        }
        Ok(self.add_handle(Handle::File {
            file,
            ino,
            sync_writes: is_sync(flags),
        }))
    }

    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Res<(FileAttr, u64)> {
        let path = self.child(parent, name)?;
        let existed = path.symlink_metadata().is_ok();
        let flags = open_flags(flags);
        let file = options(flags)
            .create(true)
            .create_new(flags.contains(OFlags::EXCL))
            .mode(mode)
            .open(&path)?;
        let attr = self.entry(&path)?;
        let ino = attr.ino.0;
        if existed {
            if flags.contains(OFlags::TRUNC) {
                self.undo.before_truncate(ino, &file, 0)?;
                file.set_len(0)?;
            }
        } else {
            self.undo.created_entry(parent, path);
            self.undo.created_file(ino);
        }
        let fh = self.add_handle(Handle::File {
            file,
            ino,
            sync_writes: is_sync(flags),
        });
        Ok((attr, fh))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Res<Vec<u8>> {
        let (file, _, _) = self.file(fh)?;
        let mut buf = vec![0; usize::try_from(size).map_err(|_| Errno::EINVAL)?];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read_at(&mut buf[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }

    pub fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> Res<u32> {
        let (file, ino, sync_writes) = self.file(fh)?;
        let file = file.try_clone()?;
        self.undo
            .before_write(ino, &file, offset, data.len() as u64)?;
        file.write_all_at(data, offset)?;
        if sync_writes {
            self.undo.synced_file(ino);
        }
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    pub fn fsync(&mut self, fh: u64) -> Res<()> {
        let (_, ino, _) = self.file(fh)?;
        self.undo.synced_file(ino);
        Ok(())
    }

    pub fn fallocate(&mut self, fh: u64, offset: u64, length: u64, mode: i32) -> Res<()> {
        let flags = FallocateFlags::from_bits(u32::try_from(mode).map_err(|_| Errno::EINVAL)?)
            .ok_or(Errno::EOPNOTSUPP)?;
        // Only allocation (what RocksDB preallocates with) keeps data intact;
        // punching or zeroing would need the old bytes saved: not offered.
        if !(flags.is_empty() || flags == FallocateFlags::KEEP_SIZE) {
            return Err(Errno::EOPNOTSUPP);
        }
        let (file, ino, _) = self.file(fh)?;
        let file = file.try_clone()?;
        self.undo.touch(ino, &file)?;
        rustix::fs::fallocate(&file, flags, offset, length).map_err(std::io::Error::from)?;
        Ok(())
    }

    pub fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    // ---- directories --------------------------------------------------

    pub fn opendir(&mut self, ino: u64) -> Res<u64> {
        let path = self.path(ino)?;
        let mut entries = vec![
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: ROOT,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let child = entry.path();
            let meta = child.symlink_metadata()?;
            entries.push(DirEntry {
                ino: self.inodes.register(&child, &meta),
                kind: file_type(meta.file_type()),
                name: entry.file_name(),
            });
        }
        Ok(self.add_handle(Handle::Dir(entries)))
    }

    /// The listing taken at `opendir`, from index `offset` on.
    pub fn readdir(&self, fh: u64, offset: u64) -> Res<&[DirEntry]> {
        match self.handles.get(&fh) {
            Some(Handle::Dir(entries)) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(entries.len());
                Ok(&entries[start..])
            }
            _ => Err(Errno::EBADF),
        }
    }

    pub fn fsyncdir(&mut self, ino: u64) {
        self.undo.synced_dir(ino);
    }
}

/// The attribute changes of one `setattr`.
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

fn resolve(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn open_flags(flags: i32) -> OFlags {
    // The kernel's flags are a C int; the bits are what matter.
    OFlags::from_bits_retain(flags as u32)
}

fn is_sync(flags: OFlags) -> bool {
    flags.intersects(OFlags::SYNC | OFlags::DSYNC)
}

/// Options opening the backing file for the access mode of `flags`.
/// Writable handles can always read too (the undo log saves the bytes a
/// write replaces). `O_APPEND` is left out on purpose: the kernel sends
/// the offset of every write, and `pwrite` on an `O_APPEND` file would
/// ignore it.
fn options(flags: OFlags) -> OpenOptions {
    let mut options = OpenOptions::new();
    let writable = (flags & OFlags::ACCMODE) != OFlags::RDONLY;
    options.read(true).write(writable);
    options
}
