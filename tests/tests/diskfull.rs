//! Disk full: `weir-server` on a 200 MiB ext4 image of its own.
//!
//! - Below `--disk-free-limit-bytes`, produce and creating topics or
//!   subscriptions answer 507 `insufficient_storage` with `Retry-After`
//!   (and `/readyz` 503) while acks and deletes keep working; deleting a
//!   topic frees space and produce works again within 10 s.
//! - When another process fills the disk completely, no write is
//!   acknowledged that is not stored (0 false acks), the store recovers
//!   within 10 s once space frees, and a restart loses nothing acknowledged.
//!
//! Needs root, loop devices and mkfs.ext4 (e2fsprogs). Build first:
//! `cargo build -p weir-server && cargo test -p weir-tests --test diskfull`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "faults/rng.rs"]
mod rng;

#[path = "diskfull/client.rs"]
mod client;
#[path = "diskfull/loopfs.rs"]
mod loopfs;
#[allow(dead_code)]
#[path = "powerloss/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{
    http_client, lost, produce_random, produce_recovers, read_back, send, Acked, Answer,
};
use crate::loopfs::{require_loop_mounts, LoopFs};
use crate::rng::{seed, Rng};
use crate::server::Server;

const IMAGE_BYTES: u64 = 200 << 20;
/// Messages per produce batch and bytes per message (random: incompressible).
const BATCH: (usize, usize) = (8, 64 << 10);
const RECOVERY: Duration = Duration::from_secs(10);
/// The server's `--disk-free-limit-bytes` in the limit test.
const FREE_LIMIT: u64 = 60_000_000;

async fn put(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    body: serde_json::Value,
) -> Answer {
    send(http.put(server.url(path)).json(&body)).await.unwrap()
}

fn assert_problem(answer: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert!(
        answer.content_type.starts_with("application/problem+json"),
        "{what}: content type {:?}",
        answer.content_type
    );
    assert_eq!(answer.body["code"], code, "{what}: {:?}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_limit_produce_gets_507_and_deleting_a_topic_recovers() {
    require_loop_mounts();
    let fs = LoopFs::new(IMAGE_BYTES);
    // An 8 MiB memtable: with the default 256 MiB, larger than this whole
    // disk, a flush can never fit under any sensible limit.
    let server = Server::start(
        &fs.path().join("data"),
        &[
            "--disk-free-limit-bytes",
            &FREE_LIMIT.to_string(),
            "--write-buffer-bytes",
            "8388608",
        ],
    );
    let http = http_client();
    for (path, body) in [
        ("/v1/topics/fill", json!({"partitions": 1})),
        ("/v1/topics/small", json!({"partitions": 1})),
        (
            "/v1/topics/fill/subscriptions/work",
            json!({"start": "earliest"}),
        ),
    ] {
        assert_eq!(
            put(&http, &server, path, body).await.status,
            201,
            "PUT {path}"
        );
    }
    let mut rng = Rng::new(seed("diskfull-limit"));
    let mut acked: Vec<Acked> = Vec::new();
    produce_random(&http, &server.base, "fill", &mut rng, (1, 100), &mut acked)
        .await
        .unwrap();
    let pulled = send(
        http.post(server.url("/v1/topics/fill/subscriptions/work/pull"))
            .json(&json!({"max_messages": 1, "wait_ms": 1000})),
    )
    .await
    .unwrap();
    let ack_id = pulled.body["messages"][0]["ack_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let refused = loop {
        let answer = produce_random(&http, &server.base, "fill", &mut rng, BATCH, &mut acked)
            .await
            .unwrap();
        if !answer.is_success() {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "still accepting produce after 180 s; {} bytes free; log:\n{}",
            fs.available(),
            server.log_tail()
        );
    };
    eprintln!(
        "refused after {} acknowledged messages, {} bytes free, {:?}: {refused:?}",
        acked.len(),
        fs.available(),
        started.elapsed()
    );
    assert_problem(
        &refused,
        507,
        "insufficient_storage",
        "produce below the limit",
    );
    assert!(refused.retry_after.is_some(), "507 without Retry-After");

    // Free space moves under an LSM store (a flush, a trimmed WAL file
    // frees megabytes), and readiness measures it at its own moment: when
    // it has risen back above the limit meanwhile, fill again.
    for attempt in 1.. {
        let ready = send(http.get(server.url("/readyz"))).await.unwrap();
        if ready.status == 503 {
            break;
        }
        let free = fs.available();
        assert!(
            attempt < 20 && free >= FREE_LIMIT,
            "/readyz below the limit: {ready:?}; {free} bytes free"
        );
        loop {
            let answer = produce_random(&http, &server.base, "fill", &mut rng, BATCH, &mut acked)
                .await
                .unwrap();
            if !answer.is_success() {
                assert_problem(&answer, 507, "insufficient_storage", "produce refilled");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "still accepting produce after 180 s; {} bytes free",
                fs.available()
            );
        }
    }
    let topic = put(&http, &server, "/v1/topics/other", json!({})).await;
    assert_problem(&topic, 507, "insufficient_storage", "creating a topic");
    let sub = put(
        &http,
        &server,
        "/v1/topics/small/subscriptions/s",
        json!({}),
    )
    .await;
    assert_problem(&sub, 507, "insufficient_storage", "creating a subscription");
    let ack = send(
        http.post(server.url("/v1/topics/fill/subscriptions/work/ack"))
            .json(&json!({ "ack_ids": [ack_id] })),
    )
    .await
    .unwrap();
    assert_eq!(
        ack.status,
        200,
        "ack below the limit: {ack:?}; RocksDB errors:\n{}",
        rocksdb_errors(&fs.path().join("data"))
    );
    assert_eq!(ack.body["acked"], 1, "ack below the limit: {ack:?}");

    let before = fs.available();
    let deleted = send(http.delete(server.url("/v1/topics/fill")))
        .await
        .unwrap();
    assert!(
        deleted.is_success(),
        "delete below the limit: {deleted:?}; log:\n{}\nRocksDB errors:\n{}",
        server.log_tail(),
        rocksdb_errors(&fs.path().join("data"))
    );
    let recovered = produce_recovers(&http, &server.base, "small", RECOVERY).await;
    // Whether the delete gave space back (RocksDB frees it only when
    // compaction drops the deleted range): reported, not asserted.
    let freed_by = Instant::now() + RECOVERY;
    while fs.available() <= before && Instant::now() < freed_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = fs.available();
    eprintln!(
        "delete of the topic: {before} bytes free before, {after} after; produce again: {recovered:?}"
    );
    let took = recovered.unwrap_or_else(|last| {
        panic!(
            "produce still refused {RECOVERY:?} after deleting the topic ({before} -> {after} \
             bytes free): {last}; log:\n{}",
            server.log_tail()
        )
    });
    assert!(took <= RECOVERY);
    let ready = send(http.get(server.url("/readyz"))).await.unwrap();
    assert_eq!(ready.status, 200, "/readyz after recovery: {ready:?}");
}

/// The error lines of RocksDB's own log in `data_dir` (for diagnosis).
fn rocksdb_errors(data_dir: &std::path::Path) -> String {
    let log = std::fs::read_to_string(data_dir.join("LOG")).unwrap_or_default();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["IO error", "No space", "ackground error", "NoSpace"]
                .iter()
                .any(|needle| l.contains(needle))
        })
        .collect();
    errors[errors.len().saturating_sub(10)..].join("\n")
}

/// Fills the file system from outside: writes `filler` in 1 MiB chunks
/// until a write fails (ENOSPC). Returns the bytes written.
fn fill(path: std::path::PathBuf, stop: &AtomicBool) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut written = 0;
    while !stop.load(Ordering::SeqCst) {
        if file
            .write_all(&chunk)
            .and_then(|()| file.sync_data())
            .is_err()
        {
            break;
        }
        written += chunk.len() as u64;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_acknowledges_a_lost_write() {
    require_loop_mounts();
    let fs = LoopFs::new(IMAGE_BYTES);
    let data = fs.path().join("data");
    let args = ["--disk-free-limit-bytes", "0"];
    let mut server = Server::start(&data, &args);
    let http = http_client();
    let created = put(&http, &server, "/v1/topics/fill", json!({"partitions": 2})).await;
    assert_eq!(created.status, 201, "{created:?}");
    let mut rng = Rng::new(seed("diskfull-filler"));
    let mut acked: Vec<Acked> = Vec::new();

    let stop = Arc::new(AtomicBool::new(false));
    let filler_path = fs.path().join("filler");
    let filler = {
        let (path, stop) = (filler_path.clone(), stop.clone());
        std::thread::spawn(move || fill(path, &stop))
    };
    let started = Instant::now();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_after_full = 0;
    while refused_after_full < 20 && started.elapsed() < Duration::from_secs(60) {
        let outcome = produce_random(
            &http,
            &server.base,
            "fill",
            &mut rng,
            (4, 16 << 10),
            &mut acked,
        )
        .await;
        let key = match &outcome {
            Ok(a) if a.is_success() => a.status.to_string(),
            Ok(a) => format!("{} {}", a.status, a.body["code"].as_str().unwrap_or("?")),
            Err(e) => format!("transport error: {e}"),
        };
        if !outcome.as_ref().is_ok_and(Answer::is_success) && filler.is_finished() {
            refused_after_full += 1;
        }
        *statuses.entry(key).or_default() += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let filled = filler.join().unwrap();
    eprintln!(
        "disk full: filler wrote {filled} bytes, {} bytes free; produce answers: {statuses:?}; \
         {} messages acknowledged",
        fs.available(),
        acked.len()
    );
    assert!(
        refused_after_full > 0,
        "the disk never filled up ({statuses:?}): the test proved nothing"
    );
    let unexpected: Vec<&String> = statuses
        .keys()
        .filter(|k| {
            !k.starts_with('2')
                && k.as_str() != "503 unavailable"
                && k.as_str() != "507 insufficient_storage"
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "a full disk gave other answers than 503 unavailable / 507: {unexpected:?}; log:\n{}",
        server.log_tail()
    );

    std::fs::remove_file(&filler_path).unwrap();
    let recovered = produce_recovers(&http, &server.base, "fill", RECOVERY).await;
    eprintln!(
        "space freed: {} bytes free; produce again: {recovered:?}",
        fs.available()
    );
    let stored = read_back(&http, &server.base, "fill").await;
    let missing = lost(&acked, &stored);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages lost or wrong before the restart: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        recovered.is_ok(),
        "produce still failing {RECOVERY:?} after space was freed: {recovered:?}; log:\n{}",
        server.log_tail()
    );

    let exit = server.stop();
    eprintln!("server stopped: {exit}");
    let server = Server::start(&data, &args);
    let stored = read_back(&http, &server.base, "fill").await;
    let missing = lost(&acked, &stored);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages lost or wrong after the restart: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}
