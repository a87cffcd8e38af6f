//! `weir-lazyfs BACKING MOUNTPOINT`: mounts a FUSE passthrough of the
//! directory BACKING on MOUNTPOINT that can simulate a power failure, for
//! crash tests (in the spirit of LazyFS).
//!
//! Every write reaches BACKING at once (reads see it), but the filesystem
//! remembers what is not durable yet:
//!
//! - file data (writes, truncations, growth) since the file's last
//!   `fsync`/`fdatasync` (writes through an `O_SYNC`/`O_DSYNC` handle are
//!   durable at once);
//! - directory entries created, removed or renamed since the last `fsync`
//!   of their directory (a rename is durable once either directory is
//!   synced). `fsync` of a file does **not** make its name durable: the
//!   strict POSIX reading, stricter than ext4 in practice.
//!
//! Signals:
//!
//! - `SIGUSR1` — the power fails: every change above that is not durable is
//!   dropped (the worst case a real disk allows), then the filesystem is
//!   unmounted and the program exits 0. Run it only after the processes
//!   using the mount are dead (`kill -9`), as a real power loss would have
//!   them.
//! - `SIGTERM` / `SIGINT` — clean unmount, everything kept; exit 0.
//!
//! The program prints `weir-lazyfs mounted` once the mount serves requests,
//! and `weir-lazyfs power-fail files=N dir_ops=N errors=N` after a power
//! failure. Needs root (or CAP_SYS_ADMIN) and `/dev/fuse`; fuser mounts
//! without `fusermount` or libfuse then. Removed entries wait in
//! `BACKING.lazyfs-stash` (beside BACKING) until their directory is synced.

mod attr;
mod fs;
mod inodes;
mod state;
mod undo;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use fuser::{Config, MountOption};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::fs::{lock, LazyFs};
use crate::state::State;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir-lazyfs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [backing, mountpoint] = args.as_slice() else {
        return Err("usage: weir-lazyfs BACKING_DIR MOUNTPOINT".to_owned());
    };
    let backing = backing
        .canonicalize()
        .map_err(|e| format!("backing directory {}: {e}", backing.display()))?;
    let stash = stash_dir(&backing)?;
    // Before mounting: an early SIGUSR1 must not kill us unhandled.
    let mut signals = Signals::new([SIGUSR1, SIGTERM, SIGINT])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let state = State::new(backing.clone(), stash.clone())
        .map_err(|e| format!("backing directory {}: {e}", backing.display()))?;
    let state = Arc::new(Mutex::new(state));
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("weir-lazyfs".to_owned()),
        MountOption::Subtype("weir-lazyfs".to_owned()),
    ];
    let fs = LazyFs {
        state: state.clone(),
    };
    let session = fuser::spawn_mount(fs, mountpoint, &config)
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    say("weir-lazyfs mounted");

    let mut failed = false;
    if let Some(signal) = signals.forever().next() {
        if signal == SIGUSR1 {
            let dropped = lock(&state).power_fail();
            say(&format!(
                "weir-lazyfs power-fail files={} dir_ops={} errors={}",
                dropped.files, dropped.dir_ops, dropped.errors
            ));
            failed = dropped.errors > 0;
        }
    }
    if let Err(e) = session.umount_and_join() {
        eprintln!("weir-lazyfs: unmount: {e}; detaching lazily");
        rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| format!("cannot unmount {}: {e}", mountpoint.display()))?;
    }
    // What is still stashed was removed durably or is restored already.
    let _ = std::fs::remove_dir_all(&stash);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `BACKING.lazyfs-stash`, emptied: removed entries wait there (it must be
/// on the backing directory's filesystem so that moving is a rename).
fn stash_dir(backing: &Path) -> Result<PathBuf, String> {
    let mut name = backing
        .file_name()
        .ok_or("the backing directory cannot be /")?
        .to_owned();
    name.push(".lazyfs-stash");
    let stash = backing.with_file_name(name);
    let _ = std::fs::remove_dir_all(&stash);
    std::fs::create_dir(&stash).map_err(|e| format!("stash {}: {e}", stash.display()))?;
    Ok(stash)
}

/// One line on stdout, flushed at once (tests wait for these lines).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
