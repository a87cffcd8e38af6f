//! The test harness: runs the real `weir-server` binary on `127.0.0.1:0`
//! over a temporary data directory and talks to it with plain HTTP, as a
//! user would. `restart`, `kill9` and `stop` drive the process the way an
//! operator or a crash would; the data directory outlives them all and is
//! removed when the `TestServer` is dropped.
//!
//! Owns process management and request plumbing only: assertions about the
//! API belong in the test modules.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long a server may take to print its "weir listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed server may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound of any single HTTP request (longest long poll used is 5 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a pooled connection stays idle before the client drops it.
const IDLE_CONNECTION_REUSE: Duration = Duration::from_secs(5);
/// Log lines kept for failure messages.
const LOG_LINES_KEPT: usize = 400;

/// A running (or stopped) `weir-server` process over one data directory.
pub struct TestServer {
    child: Option<Child>,
    base: String,
    args: Vec<String>,
    /// Extra environment of the server process (e.g. a preloaded library).
    env: Vec<(String, String)>,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
    // Declared last so it is removed after the process is gone.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default options.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra command-line flags (e.g.
    /// `["--retention-interval-ms", "200"]`).
    pub fn start_with(args: &[&str]) -> TestServer {
        TestServer::start_with_env(args, &[])
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            // Below the server's idle keep-alive timeout (10 s): a pooled
            // connection is never reused just as the server closes it.
            .pool_idle_timeout(IDLE_CONNECTION_REUSE)
            .build()
            .expect("build HTTP client");
        let mut server = TestServer {
            child: None,
            base: String::new(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            http,
            log: Arc::new(Mutex::new(Vec::new())),
            dir: tempfile::tempdir().expect("create data dir"),
        };
        server.spawn();
        server
    }

    /// The server's process id (for /proc measurements; used by the `rss`
    /// binary, not every binary that includes this harness).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The data directory (outlives restarts; for fault scenarios).
    #[allow(dead_code)]
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A clone of the HTTP client (cheap; shares the pool), for tasks.
    pub fn client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The most recent server log lines, for failure messages.
    pub fn log_tail(&self) -> String {
        lock(&self.log).join("\n")
    }

    /// Graceful stop (asserting exit status 0), then a new process on the
    /// same data directory. After `kill9` or `stop` it only starts.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("run `kill -9`");
        assert!(status.success(), "`kill -9 {pid}` failed: {status}");
        let exit = wait_bounded(&mut child, STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("server {pid} still alive after SIGKILL"));
        assert!(!exit.success(), "a SIGKILLed server cannot exit 0");
    }

    /// SIGTERM, wait (bounded) and assert a clean exit with status 0.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run `kill -TERM`");
        assert!(status.success(), "`kill -TERM {pid}` failed: {status}");
        let Some(exit) = wait_bounded(&mut child, STOP_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log_tail()
            );
        };
        assert!(
            exit.success(),
            "server exited with {exit} after SIGTERM; log:\n{}",
            self.log_tail()
        );
        exit
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut command = Command::new(server_bin());
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--log-format")
            .arg("text")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The environment of the test run must not reconfigure the server:
        // flags win over WEIR_* anyway, but a stray WEIR_CONFIG or RUST_LOG
        // (which could hide the "weir listening" line) would not.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WEIR_") {
                command.env_remove(&name);
            }
        }
        command.env("RUST_LOG", "info").env("NO_COLOR", "1");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start {}: {e}", server_bin().display());
        });
        // The log goes to stderr or stdout depending on the server version:
        // watch both for the listen line, and keep both pipes drained.
        let (tx, rx) = mpsc::channel();
        let copy = log_copy(self.dir.path(), child.id());
        let stderr = child.stderr.take().expect("piped stderr");
        let (log, err_tx, err_copy) = (self.log.clone(), tx.clone(), copy.clone());
        std::thread::spawn(move || drain_output(stderr, &log, &err_tx, err_copy.as_ref()));
        let stdout = child.stdout.take().expect("piped stdout");
        let log = self.log.clone();
        std::thread::spawn(move || drain_output(stdout, &log, &tx, copy.as_ref()));
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                self.base = format!("http://{addr}");
                self.child = Some(child);
            }
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                // Give the drain thread a moment to record the last lines.
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "weir-server did not report `weir listening` ({e}); exit: {status:?}; log:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    // ---- plain HTTP -------------------------------------------------------

    /// Any request; `body` is `(content type, bytes)`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = self.url(path);
        match try_send(&self.http, method.clone(), &url, body, headers).await {
            Ok(reply) => reply,
            // Say what the server said last: a crash shows in its log.
            Err(e) => panic!(
                "{method} {url} failed: {e}; the server's log:\n{}",
                self.log_tail()
            ),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None, &[]).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            Method::PUT,
            path,
            Some(("application/json", to_bytes(body))),
            &[],
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            Method::POST,
            path,
            Some(("application/json", to_bytes(body))),
            &[],
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.request(
            Method::POST,
            path,
            Some((content_type, body.into())),
            headers,
        )
        .await
    }

    // ---- domain helpers ---------------------------------------------------

    /// `PUT /v1/topics/{name}` expecting 201; returns the topic description.
    pub async fn create_topic(&self, name: &str, spec: &Value) -> Value {
        self.put_json(&format!("/v1/topics/{name}"), spec)
            .await
            .expect_status(201)
    }

    /// `GET /v1/topics/{name}` expecting 200.
    pub async fn topic(&self, name: &str) -> Value {
        self.get(&format!("/v1/topics/{name}"))
            .await
            .expect_status(200)
    }

    /// One partition's entry of `GET /v1/topics/{name}`.
    pub async fn partition_info(&self, name: &str, partition: u64) -> Value {
        let topic = self.topic(name).await;
        topic["partitions"]
            .as_array()
            .expect("partitions array")
            .iter()
            .find(|p| p["partition"] == partition)
            .cloned()
            .unwrap_or_else(|| panic!("no partition {partition} in {topic}"))
    }

    /// Produces `{"messages": messages}` expecting 200; returns the results.
    pub async fn produce(&self, topic: &str, messages: Value) -> Vec<Value> {
        let count = messages.as_array().map_or(0, Vec::len);
        let body = serde_json::json!({ "messages": messages });
        let reply = self
            .post_json(&format!("/v1/topics/{topic}/messages"), &body)
            .await
            .expect_status(200);
        let results = reply["results"].as_array().expect("results array").clone();
        assert_eq!(results.len(), count, "one result per message: {reply}");
        results
    }

    /// `GET .../partitions/{p}/messages?{query}` expecting 200.
    pub async fn read(&self, topic: &str, partition: u64, query: &str) -> Value {
        self.get(&format!(
            "/v1/topics/{topic}/partitions/{partition}/messages?{query}"
        ))
        .await
        .expect_status(200)
    }

    /// Every stored message of a partition, from `low_offset` to the
    /// `high_offset` seen when the call started.
    pub async fn read_all(&self, topic: &str, partition: u64) -> Vec<Value> {
        let info = self.partition_info(topic, partition).await;
        let high = info["high_offset"].as_u64().expect("high_offset");
        let mut offset = info["low_offset"].as_u64().expect("low_offset");
        let mut all = Vec::new();
        while offset < high {
            let page = self
                .read(topic, partition, &format!("offset={offset}&limit=10000"))
                .await;
            let messages = page["messages"].as_array().expect("messages array");
            let next = page["next_offset"].as_u64().expect("next_offset");
            assert!(
                next > offset && !messages.is_empty(),
                "read from {offset} below high {high} made no progress: {page}"
            );
            all.extend(messages.iter().cloned());
            offset = next;
        }
        all
    }

    /// Polls `GET /v1/topics/{name}` until `done` holds (bounded).
    pub async fn wait_for_topic(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let topic = self.topic(name).await;
            if done(&topic) {
                return topic;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached within {timeout:?}; last topic state: {topic}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "body of a {} response is not JSON ({e}): {:?}",
                self.status, self.text
            )
        })
    }

    /// Asserts the status and returns the JSON body (`null` when empty).
    pub fn expect_status(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        if self.text.is_empty() {
            return Value::Null;
        }
        if self.status.is_success() {
            assert!(
                self.content_type().starts_with("application/json"),
                "a JSON answer with content type {:?}",
                self.content_type()
            );
        }
        self.json()
    }

    /// Asserts an RFC 9457 problem document with this status and code.
    pub fn expect_problem(&self, status: u16, code: &str) -> Value {
        let body = self.expect_status(status);
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "error content type is {:?}, body {}",
            self.content_type(),
            self.text
        );
        assert_eq!(body["code"], code, "problem code; body {body}");
        assert_eq!(body["status"], status, "problem status; body {body}");
        for field in ["type", "title", "detail"] {
            assert!(
                body[field].as_str().is_some_and(|s| !s.is_empty()),
                "problem lacks `{field}`: {body}"
            );
        }
        body
    }

    /// Asserts a 400 `invalid_request` naming `field`.
    pub fn expect_invalid(&self, field: &str) -> Value {
        let body = self.expect_problem(400, "invalid_request");
        assert_eq!(body["field"], field, "problem field; body {body}");
        body
    }
}

/// One request with an explicit client (for spawned tasks).
pub async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Reply {
    try_send(http, method.clone(), url, body, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
}

/// Like `send` but returns transport errors (for tests that crash the server).
pub async fn try_send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> reqwest::Result<Reply> {
    let mut request = http.request(method, url);
    if let Some((content_type, bytes)) = body {
        request = request.header(CONTENT_TYPE, content_type).body(bytes);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await?;
    Ok(Reply {
        status,
        headers,
        text,
    })
}

pub fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialize JSON")
}

/// Milliseconds since the Unix epoch, as the server measures time.
pub fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("time fits u64")
}

/// `WEIR_SERVER_BIN`, else `weir-server` next to the test executable's
/// `deps/` directory (i.e. `target/debug/weir-server`).
pub fn server_bin() -> PathBuf {
    built_binary("weir-server", "WEIR_SERVER_BIN", "weir-server")
}

/// The binary `name`: the path in the environment variable `env` when set,
/// else the one next to the test executable's `deps/` directory (i.e.
/// `target/debug/<name>`), built by `cargo build -p <package>`.
pub fn built_binary(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{env}={} does not exist", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let deps = exe.parent().expect("directory of the test executable");
    let bin = deps
        .join("..")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{name} binary not found at {}: run `cargo build -p {package}` first \
         (with the same CARGO_TARGET_DIR), or set {env}",
        bin.display()
    );
    bin
}

/// Waits for the child to exit, at most `timeout`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => return None,
            Err(e) => panic!("cannot wait for the server: {e}"),
        }
    }
}

/// Where a server's whole log is copied when `WEIR_TEST_SERVER_LOGS` names
/// a directory (for debugging a failed run; off by default): one file per
/// process, named after its data directory and process id.
fn log_copy(dir: &std::path::Path, pid: u32) -> Option<Arc<Mutex<std::fs::File>>> {
    let into = PathBuf::from(std::env::var_os("WEIR_TEST_SERVER_LOGS")?);
    std::fs::create_dir_all(&into).ok()?;
    let name = dir.file_name()?.to_string_lossy();
    let name = name.trim_start_matches('.');
    let file = std::fs::File::create(into.join(format!("{name}-{pid}.log"))).ok()?;
    Some(Arc::new(Mutex::new(file)))
}

/// Reads one of the server's output pipes until EOF: reports the listen
/// address once, keeps the last lines for failure messages (and copies
/// every line to `copy`, when given), and never lets the pipe fill (a full
/// pipe would block the server's logging).
fn drain_output(
    pipe: impl Read,
    log: &Mutex<Vec<String>>,
    tx: &mpsc::Sender<String>,
    copy: Option<&Arc<Mutex<std::fs::File>>>,
) {
    let mut reader = BufReader::new(pipe);
    let mut raw = Vec::new();
    let mut reported = false;
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = strip_ansi(&String::from_utf8_lossy(&raw));
        let line = line.trim_end().to_owned();
        if let Some(file) = copy {
            use std::io::Write;
            let _ = writeln!(lock(file), "{line}");
        }
        if !reported && line.contains("weir listening") {
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|token| token.strip_prefix("listen="))
            {
                reported = true;
                let _ = tx.send(addr.to_owned());
            }
        }
        let mut kept = lock(log);
        if kept.len() >= LOG_LINES_KEPT {
            kept.remove(0);
        }
        kept.push(line);
    }
}

/// Removes ANSI escape sequences (the text log format may colour fields).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
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
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
