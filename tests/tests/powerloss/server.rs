//! A `weir-server` process on a data directory the test chooses (the
//! blackbox harness always uses a fresh temporary one): started on
//! `127.0.0.1:0`, its port read from the `weir listening` log line, its
//! log kept for failure messages, stopped by PID. Shared by the power-loss
//! and disk-full scenarios (`diskfull.rs` includes this file).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print its `weir listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a signalled process may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Log lines kept for failure messages.
const LOG_LINES_KEPT: usize = 200;

/// A running `weir-server`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:port`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `weir-server --data-dir DATA_DIR` plus `args`, waiting (bounded)
    /// until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(built_binary(
            "weir-server",
            "WEIR_SERVER_BIN",
            "weir-server",
        ));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "text",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WEIR_") {
                command.env_remove(&name);
            }
        }
        command.env("RUST_LOG", "info").env("NO_COLOR", "1");
        let mut child = command.spawn().expect("start weir-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let (err_log, err_tx) = (log.clone(), tx.clone());
        std::thread::spawn(move || drain(stderr, &err_log, &err_tx, "weir listening"));
        let stdout = child.stdout.take().expect("piped stdout");
        let out_log = log.clone();
        std::thread::spawn(move || drain(stdout, &out_log, &tx, "weir listening"));
        let line = rx.recv_timeout(START_TIMEOUT);
        let mut server = Server {
            child: Some(child),
            base: String::new(),
            log,
        };
        let addr = line.ok().and_then(|line| {
            line.split_whitespace()
                .find_map(|t| t.strip_prefix("listen=").map(str::to_owned))
        });
        match addr {
            Some(addr) => server.base = format!("http://{addr}"),
            None => {
                server.kill9();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "weir-server on {} did not report `weir listening`; log:\n{}",
                    data_dir.display(),
                    server.log_tail()
                );
            }
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The most recent log lines.
    pub fn log_tail(&self) -> String {
        lock(&self.log).join("\n")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (by PID) and wait: the process flushes nothing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let exit = wait_bounded(&mut child, EXIT_TIMEOUT);
            assert!(
                exit.is_some(),
                "weir-server {} survived SIGKILL",
                child.id()
            );
        }
    }

    /// SIGTERM (by PID), wait (bounded) and return the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        signal(child.id(), "TERM");
        match wait_bounded(&mut child, EXIT_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "weir-server did not exit within {EXIT_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log_tail()
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `SIG<name>` to `pid` with `kill(1)`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "`kill -{name} {pid}` failed: {status}");
}

/// The binary `name`: `$env` when set, else `target/<profile>/<name>` next
/// to this test executable (built by `cargo build -p <package>`).
pub fn built_binary(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(name);
    assert!(
        bin.exists(),
        "{name} not found at {}: run `cargo build -p {package}` first (same CARGO_TARGET_DIR), \
         or set {env}",
        bin.display()
    );
    bin
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Reads a pipe to EOF, keeping the last lines and sending the first line
/// containing `marker`.
pub fn drain(pipe: impl Read, log: &Mutex<Vec<String>>, tx: &mpsc::Sender<String>, marker: &str) {
    let mut reader = BufReader::new(pipe);
    let mut raw = Vec::new();
    let mut reported = false;
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
        if !reported && line.contains(marker) {
            reported = true;
            let _ = tx.send(line.clone());
        }
        let mut kept = lock(log);
        if kept.len() >= LOG_LINES_KEPT {
            kept.remove(0);
        }
        kept.push(line);
    }
}

/// Removes ANSI colour sequences (the text log may colour fields).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
