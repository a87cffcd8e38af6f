//! Online backup and offline restore: `POST /v1/backups` while producers
//! write, `weir-server restore` into a new data directory, and a server on
//! it that has every message acknowledged before the backup request and
//! the acks of a queue subscription; plus the errors (no `backup_dir`, bad
//! or taken names) and a restore that refuses a non-empty directory.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{built_binary, send, to_bytes, Reply, TestServer};

/// Producers writing while the backup is taken.
const PRODUCERS: usize = 4;
/// Messages per produce request.
const BATCH: usize = 20;
/// Upper bound of a restore or of a server start.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

fn server_bin() -> std::path::PathBuf {
    built_binary("weir-server", "WEIR_SERVER_BIN", "weir-server")
}

#[tokio::test]
async fn backups_are_refused_without_backup_dir() {
    let s = TestServer::start();
    let body = s
        .post_json("/v1/backups", &json!({"name": "b1"}))
        .await
        .expect_problem(409, "conflict");
    assert!(
        body["detail"].as_str().unwrap().contains("backup_dir"),
        "the detail says what to set: {body}"
    );
    s.get("/v1/backups").await.expect_problem(409, "conflict");
}

#[tokio::test]
async fn backup_names_are_checked_and_never_reused() {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap();
    let s = TestServer::start_with(&["--backup-dir", dir]);
    let long = "b".repeat(129);
    for bad in [
        "",
        ".hidden",
        "..",
        "a/b",
        "../escape",
        "a b",
        long.as_str(),
    ] {
        s.post_json("/v1/backups", &json!({ "name": bad }))
            .await
            .expect_invalid("name");
    }
    assert_eq!(
        std::fs::read_dir(backups.path()).unwrap().count(),
        0,
        "a refused name writes nothing"
    );
    let created = s
        .post_json("/v1/backups", &json!({"name": "b1"}))
        .await
        .expect_status(201);
    assert_eq!(created["name"], "b1");
    assert!(created["files"].as_u64().unwrap() > 0, "{created}");
    assert!(created["bytes"].as_u64().unwrap() > 0, "{created}");
    assert!(created["took_ms"].is_u64() && created["created_at"].is_u64());
    assert!(Path::new(created["path"].as_str().unwrap()).is_dir());
    let again = s
        .post_json("/v1/backups", &json!({"name": "b1"}))
        .await
        .expect_problem(409, "conflict");
    assert!(again["detail"].as_str().unwrap().contains("b1"), "{again}");
    let list = s.get("/v1/backups").await.expect_status(200);
    let names: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b1"]);
    assert_eq!(list["backups"][0]["bytes"], created["bytes"]);
}

/// One acknowledged message: where it went and what it was.
#[derive(Debug, Clone)]
struct Acked {
    partition: u64,
    offset: u64,
    value: Value,
}

#[tokio::test]
async fn a_backup_under_load_restores_every_acknowledged_message_and_ack() {
    let backups = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_with(&["--backup-dir", backups.path().to_str().unwrap()]);
    s.create_topic("load", &json!({"partitions": 3})).await;
    s.create_topic("work", &json!({"partitions": 1})).await;
    let sub = "/v1/topics/work/subscriptions/billing";
    s.put_json(sub, &json!({"mode": "queue", "start": "earliest"}))
        .await
        .expect_status(201);
    let jobs: Vec<Value> = (0..20).map(|i| json!({ "value": { "job": i } })).collect();
    s.produce("work", Value::Array(jobs)).await;
    let pulled = s
        .post_json(&format!("{sub}/pull"), &json!({"max_messages": 10}))
        .await
        .expect_status(200)["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(pulled.len(), 10);
    let ack_ids: Vec<Value> = pulled.iter().map(|m| m["ack_id"].clone()).collect();
    s.post_json(&format!("{sub}/ack"), &json!({ "ack_ids": ack_ids }))
        .await
        .expect_status(200);
    let acked_jobs: Vec<Value> = pulled.iter().map(|m| m["value"].clone()).collect();

    // Producers record every acknowledged message as soon as it is.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = s.url("/v1/topics/load/messages");
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (http, url, acked, stop) = (s.client(), url.clone(), acked.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let values: Vec<Value> = (0..BATCH)
                    .map(|i| json!({"producer": p, "n": n + i, "pad": "x".repeat((n + i) % 97)}))
                    .collect();
                let messages: Vec<Value> = values
                    .iter()
                    .map(|v| json!({ "key": format!("k{}", (n % 7)), "value": v }))
                    .collect();
                let body = to_bytes(&json!({ "messages": messages }));
                let reply = send(
                    &http,
                    Method::POST,
                    &url,
                    Some(("application/json", body)),
                    &[],
                )
                .await;
                let results = reply.expect_status(200)["results"]
                    .as_array()
                    .unwrap()
                    .clone();
                let mut log = acked.lock().unwrap();
                for (r, value) in results.iter().zip(values) {
                    log.push(Acked {
                        partition: r["partition"].as_u64().unwrap(),
                        offset: r["offset"].as_u64().unwrap(),
                        value,
                    });
                }
                n += BATCH;
            }
        }));
    }
    // Let the load build up, then take the backup in the middle of it.
    wait_until(Duration::from_secs(20), || {
        acked.lock().unwrap().len() >= 400
    })
    .await;
    let before_request: Vec<Acked> = acked.lock().unwrap().clone();
    let created = s
        .post_json("/v1/backups", &json!({"name": "under-load"}))
        .await
        .expect_status(201);
    let during = acked.lock().unwrap().len();
    wait_until(Duration::from_secs(20), || {
        acked.lock().unwrap().len() >= during + 200
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.await.unwrap();
    }
    let total = acked.lock().unwrap().len();
    s.stop();

    let backup = Path::new(created["path"].as_str().unwrap());
    assert_eq!(backup, backups.path().join("under-load"));

    // A non-empty target is refused and left alone.
    let target = tempfile::tempdir().unwrap();
    let occupied = target.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), b"mine").unwrap();
    let refused = restore(backup, &occupied);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(occupied.join("keep.txt")).unwrap(), b"mine");

    let data = target.path().join("restored");
    let started = Instant::now();
    let restored = restore(backup, &data);
    let stdout = String::from_utf8_lossy(&restored.stdout);
    assert!(restored.status.success(), "{restored:?}");
    assert!(stdout.contains("restored"), "final line: {stdout}");
    assert!(
        String::from_utf8_lossy(&restored.stderr).contains("100%"),
        "progress reaches 100%: {restored:?}"
    );
    eprintln!(
        "backup of {} acknowledged messages ({} before the request, {total} in all) restored in {:?}",
        during,
        before_request.len(),
        started.elapsed()
    );

    let r = OwnServer::start(&data);
    let in_use = restore(backup, &data);
    assert_eq!(in_use.status.code(), Some(1), "{in_use:?}");
    assert!(
        String::from_utf8_lossy(&in_use.stderr).contains("in use"),
        "a data directory a server uses is refused as in use: {in_use:?}"
    );
    let mut stored = std::collections::HashMap::new();
    for partition in 0..3u64 {
        for m in r.read_all("load", partition).await {
            stored.insert(
                (partition, m["offset"].as_u64().unwrap()),
                m["value"].clone(),
            );
        }
    }
    for a in &before_request {
        assert_eq!(
            stored.get(&(a.partition, a.offset)),
            Some(&a.value),
            "message acknowledged before the backup at partition {} offset {}",
            a.partition,
            a.offset
        );
    }
    assert!(
        stored.len() < total,
        "the backup is a snapshot: {} messages restored of {total} produced",
        stored.len()
    );

    // The acked jobs are not delivered again; the others are.
    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.len() < 10 && Instant::now() < deadline {
        let page = r
            .post(
                &format!("{sub}/pull"),
                &json!({"max_messages": 20, "wait_ms": 200}),
            )
            .await
            .expect_status(200);
        delivered.extend(
            page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["value"].clone()),
        );
    }
    let extra = r
        .post(
            &format!("{sub}/pull"),
            &json!({"max_messages": 20, "wait_ms": 300}),
        )
        .await
        .expect_status(200);
    delivered.extend(
        extra["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].clone()),
    );
    let expected: Vec<Value> = (10..20).map(|i| json!({ "job": i })).collect();
    for job in &acked_jobs {
        assert!(!delivered.contains(job), "acked {job} delivered again");
    }
    let mut got = delivered.clone();
    got.sort_by_key(|v| v["job"].as_u64());
    assert_eq!(got, expected, "the unacked jobs, each once");
}

/// Runs `weir-server restore --from BACKUP --data-dir DIR` (bounded).
fn restore(from: &Path, data_dir: &Path) -> Output {
    let mut child = Command::new(server_bin())
        .arg("restore")
        .arg("--from")
        .arg(from)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir-server restore");
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    while child.try_wait().expect("wait for restore").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("weir-server restore did not finish within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("restore output")
}

async fn wait_until(timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not reached within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `weir-server` on a data directory of the test's (the harness owns
/// its own temporary one), found the way the harness finds it: the
/// `listen=` field of the `weir listening` log line. Killed when dropped.
struct OwnServer {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl OwnServer {
    fn start(data_dir: &Path) -> OwnServer {
        let mut command = Command::new(server_bin());
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--log-format")
            .arg("text")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WEIR_") {
                command.env_remove(&name);
            }
        }
        let mut child = command.spawn().expect("start weir-server");
        let (tx, rx) = mpsc::channel();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if line.contains("weir listening") {
                        if let Some(addr) = line
                            .split_whitespace()
                            .find_map(|t| t.strip_prefix("listen="))
                        {
                            let _ = tx.send(addr.to_owned());
                        }
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(PROCESS_TIMEOUT) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                panic!("the restored server did not start: {e}");
            }
        };
        OwnServer {
            child,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        send(
            &self.http,
            Method::GET,
            &format!("{}{path}", self.base),
            None,
            &[],
        )
        .await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        let body = Some(("application/json", to_bytes(body)));
        send(
            &self.http,
            Method::POST,
            &format!("{}{path}", self.base),
            body,
            &[],
        )
        .await
    }

    /// Every message of a partition, oldest first.
    async fn read_all(&self, topic: &str, partition: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..10_000 {
            let page = self
                .get(&format!(
                    "/v1/topics/{topic}/partitions/{partition}/messages?offset={offset}&limit=10000"
                ))
                .await
                .expect_status(200);
            let messages = page["messages"].as_array().unwrap();
            if messages.is_empty() {
                return out;
            }
            out.extend(messages.iter().cloned());
            offset = page["next_offset"].as_u64().unwrap();
        }
        panic!("reading {topic}/{partition} did not end");
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
