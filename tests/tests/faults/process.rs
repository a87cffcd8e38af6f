//! A `weir-server` process on a data directory the test owns, for
//! scenarios that must see a start *fail* (the harness's `TestServer`
//! treats that as a test failure and keeps its directory private): start
//! reports either a listening server or the exit status and output of one
//! that refused to start. The process is SIGKILLed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::built_binary;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What starting a server led to.
pub enum Started {
    Up(Server),
    /// It exited before listening.
    Exited {
        status: ExitStatus,
        output: String,
    },
}

/// A running server (killed on drop).
pub struct Server {
    child: Option<Child>,
    base: String,
    output: Arc<Mutex<String>>,
}

/// Starts `weir-server --listen 127.0.0.1:0 --data-dir dir args...`.
pub fn start(dir: &Path, args: &[&str]) -> Started {
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
        .arg(dir)
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
    let mut child = command.spawn().unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    let drains: Vec<_> = pipes
        .into_iter()
        .map(|pipe| {
            let (output, tx) = (output.clone(), tx.clone());
            std::thread::spawn(move || drain(pipe, &output, &tx))
        })
        .collect();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(addr) = rx.try_recv() {
            return Started::Up(Server {
                child: Some(child),
                base: format!("http://{addr}"),
                output,
            });
        }
        if let Some(status) = child.try_wait().unwrap() {
            for handle in drains {
                let _ = handle.join();
            }
            let output = output.lock().unwrap().clone();
            return Started::Exited { status, output };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server neither listened nor exited within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// SIGTERM and a bounded wait; asserts a clean exit.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let status = self.wait();
        assert!(
            status.success(),
            "exit {status} after SIGTERM:\n{}",
            self.output()
        );
    }

    /// SIGKILL: nothing is flushed.
    pub fn kill9(mut self) {
        self.signal("-KILL");
        self.wait();
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not exit within {STOP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
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

/// Keeps a pipe drained into `output`; reports the listen address once.
fn drain(pipe: impl Read, output: &Mutex<String>, tx: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(pipe);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.contains("weir listening") {
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|token| token.strip_prefix("listen="))
            {
                let _ = tx.send(addr.trim_matches('"').to_owned());
            }
        }
        output.lock().unwrap().push_str(&line);
    }
}
