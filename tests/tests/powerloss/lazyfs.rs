//! A `weir-lazyfs` mount for one test (see `tests/lazyfs`): mounts a
//! backing directory on a mount point, fails the power on demand, and
//! always cleans up (process stopped by PID, mount point detached) when
//! dropped, even after a failed assertion.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::server::{built_binary, drain, signal, wait_bounded};

const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Panics with what is missing unless FUSE mounts can work here: root and
/// `/dev/fuse` (the power-loss tests need both; CI runs as root).
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "the power-loss tests need /dev/fuse (the FUSE kernel module: `modprobe fuse`; in a \
         container, `--device /dev/fuse --cap-add SYS_ADMIN`)"
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "the power-loss tests mount FUSE without fusermount and need root (effective uid {uid})"
    );
}

/// A mounted `weir-lazyfs`.
pub struct LazyMount {
    child: Option<Child>,
    mountpoint: PathBuf,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl LazyMount {
    /// Mounts `backing` on `mountpoint` (both existing directories).
    pub fn mount(backing: &Path, mountpoint: &Path) -> LazyMount {
        let bin = built_binary("weir-lazyfs", "WEIR_LAZYFS_BIN", "weir-lazyfs");
        let mut child = Command::new(&bin)
            .arg(backing)
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let out_log = log.clone();
        let out_reader = std::thread::spawn(move || {
            if let Some(out) = stdout {
                // Every stdout line is a report: forward them all.
                drain_all(out, &out_log, &tx);
            }
        });
        let (err_log, never) = (log.clone(), mpsc::channel().0);
        let err_reader = std::thread::spawn(move || {
            if let Some(err) = stderr {
                drain(err, &err_log, &never, "\u{0}");
            }
        });
        let mount = LazyMount {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            lines,
            log,
            readers: vec![out_reader, err_reader],
        };
        match mount.lines.recv_timeout(MOUNT_TIMEOUT) {
            Ok(line) if line.starts_with("weir-lazyfs mounted") => mount,
            other => panic!(
                "weir-lazyfs did not mount {} on {} ({other:?}); output:\n{}",
                backing.display(),
                mountpoint.display(),
                mount.output()
            ),
        }
    }

    /// The power fails: everything not fsynced is dropped, later requests
    /// fail with EIO, and the mount goes away (detached lazily while
    /// processes still use it). Returns the `weir-lazyfs power-fail ...`
    /// report line; what was dropped, file by file, goes to stderr.
    pub fn power_fail(&mut self) -> String {
        let mut child = self.child.take().expect("weir-lazyfs is running");
        signal(child.id(), "USR1");
        let status = wait_bounded(&mut child, EXIT_TIMEOUT);
        if status.is_some() {
            // The pipes are closed: the readers end.
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
        let report = self.lines.recv_timeout(Duration::from_secs(1));
        for line in self.output().lines().filter(|l| l.contains(": ")) {
            eprintln!("  {line}");
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "weir-lazyfs power failure ended with {status:?}; output:\n{}",
            self.output()
        );
        assert!(
            !is_mounted(&self.mountpoint),
            "{} still mounted after the power failure",
            self.mountpoint.display()
        );
        report.unwrap_or_else(|e| panic!("no power-fail report ({e}); output:\n{}", self.output()))
    }

    fn output(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_quietly(child.id(), "TERM");
            if wait_bounded(&mut child, EXIT_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// Whether something is mounted exactly at `path` (per /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|m| m == wanted)
}

fn signal_quietly(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Forwards every line of `pipe` and keeps it in `log`.
fn drain_all(pipe: impl std::io::Read, log: &Mutex<Vec<String>>, tx: &mpsc::Sender<String>) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(pipe).lines() {
        let Ok(line) = line else { return };
        let _ = tx.send(line.clone());
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}
