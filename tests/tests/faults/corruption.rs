//! On-disk corruption: write data, stop the server, damage a RocksDB file,
//! start again. The server must either refuse to start with a message
//! naming corruption (and a non-zero exit), or start and never return
//! wrong bytes: every message read back must be the one produced at that
//! offset (errors are acceptable, wrong values are not). A truncated WAL
//! tail is what a crash leaves and must start.
//!
//! SST and blob-file variants stop with SIGTERM (a clean stop flushes the
//! memtables into `*.sst`, the log's record batches into `*.blob`, leaving
//! the WAL empty); WAL variants stop with SIGKILL so the
//! acknowledged data is still in `*.log` (with `--fsync always`).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::{self, Server, Started};
use crate::rng::Rng;

const TOPIC: &str = "precious";
const PARTITIONS: u64 = 2;
const MESSAGES: u64 = 3000;
const ARGS: [&str; 2] = ["--fsync", "always"];
/// A small memtable budget, so the data is flushed into `*.sst` files.
const SST_ARGS: [&str; 4] = ["--fsync", "always", "--write-buffer-bytes", "262144"];

#[derive(Clone, Copy, Debug)]
enum Damage {
    SstBitFlip,
    SstTruncated,
    /// The log's record batches live in blob files (BlobDB).
    BlobBitFlip,
    BlobTruncated,
    WalGarbage,
    WalTailTruncated,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flip_in_an_sst_is_refused_or_never_served() {
    scenario(Damage::SstBitFlip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_sst_is_refused_or_never_served() {
    scenario(Damage::SstTruncated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flip_in_a_blob_file_is_refused_or_never_served() {
    scenario(Damage::BlobBitFlip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_blob_file_is_refused_or_never_served() {
    scenario(Damage::BlobTruncated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_wal_is_refused_or_never_served() {
    scenario(Damage::WalGarbage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_wal_tail_starts_and_serves_only_produced_values() {
    scenario(Damage::WalTailTruncated).await;
}

async fn scenario(damage: Damage) {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let args: &[&str] = match damage {
        Damage::SstBitFlip | Damage::SstTruncated => &SST_ARGS,
        Damage::BlobBitFlip | Damage::BlobTruncated => &SST_ARGS,
        Damage::WalGarbage | Damage::WalTailTruncated => &ARGS,
    };
    let Started::Up(server) = process::start(dir.path(), args) else {
        panic!("a fresh server must start");
    };
    let expected = write_data(&http, &server).await;
    match damage {
        Damage::SstBitFlip | Damage::SstTruncated | Damage::BlobBitFlip | Damage::BlobTruncated => {
            server.stop()
        }
        Damage::WalGarbage | Damage::WalTailTruncated => server.kill9(),
    }
    let damaged = apply(damage, dir.path());
    eprintln!("corruption {damage:?}: damaged {}", damaged.display());

    match process::start(dir.path(), args) {
        Started::Exited { status, output } => {
            assert!(
                !matches!(damage, Damage::WalTailTruncated),
                "a torn WAL tail is the normal crash case, yet the server exited {status}:\n{output}"
            );
            assert!(
                !status.success(),
                "refusing to start must exit non-zero:\n{output}"
            );
            assert!(
                output.to_lowercase().contains("corrupt"),
                "the refusal must name corruption:\n{output}"
            );
            eprintln!("corruption {damage:?}: refused to start ({status})");
            eprintln!("{}", summary(damage, 0));
        }
        Started::Up(server) => {
            let (served, errors, wrong) = read_everything(&http, &server, &expected).await;
            eprintln!(
                "corruption {damage:?}: started; served {served}/{} messages, {errors} read errors",
                expected.len()
            );
            eprintln!("{}", summary(damage, wrong.len()));
            assert!(
                wrong.is_empty(),
                "wrong bytes served after {damage:?}: {:?}\nlog:\n{}",
                &wrong[..wrong.len().min(10)],
                server.output()
            );
            if matches!(damage, Damage::WalTailTruncated) {
                // Only the torn tail may be missing, never the bulk.
                assert!(served * 2 > expected.len(), "served only {served} messages");
            }
        }
    }
}

fn summary(damage: Damage, wrong: usize) -> String {
    format!(
        "FAULT-SUMMARY scenario=corruption-{damage:?} cycles=1 faults=1 acked_lost=0 duplicated=0 \
         reordered=0 dead_lettered_twice=0 lost_from_log={wrong} result={}",
        if wrong == 0 { "ok" } else { "FAIL" }
    )
}

/// Produces distinct, poorly compressible values; returns position → value.
async fn write_data(http: &reqwest::Client, server: &Server) -> HashMap<(u64, u64), String> {
    let put = http
        .put(server.url(&format!("/v1/topics/{TOPIC}")))
        .json(&json!({"partitions": PARTITIONS}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let mut rng = Rng::new(MESSAGES);
    let mut expected = HashMap::new();
    for chunk in 0..MESSAGES / 100 {
        let values: Vec<String> = (0..100)
            .map(|i| {
                let noise: String = (0..6).map(|_| format!("{:016x}", rng.next_u64())).collect();
                format!("m-{}-{noise}", chunk * 100 + i)
            })
            .collect();
        let body = json!({"messages": values.iter().map(|v| json!({"value": v, "key": v})).collect::<Vec<_>>()});
        let answer = produce(http, server, &body).await;
        for (value, result) in values
            .into_iter()
            .zip(answer["results"].as_array().unwrap())
        {
            let at = (
                result["partition"].as_u64().unwrap(),
                result["offset"].as_u64().unwrap(),
            );
            expected.insert(at, value);
        }
    }
    assert_eq!(expected.len() as u64, MESSAGES);
    expected
}

/// Produces one batch, retrying (bounded) while the server answers 503
/// (a small memtable budget stalls writes until flushes catch up).
async fn produce(http: &reqwest::Client, server: &Server, body: &Value) -> Value {
    let url = server.url(&format!("/v1/topics/{TOPIC}/messages"));
    for _ in 0..300 {
        let response = http.post(&url).json(body).send().await.unwrap();
        if response.status() == 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(response.status(), 200, "produce failed");
        return response.json().await.unwrap();
    }
    panic!("produce kept answering 503 for 30 s");
}

/// Reads every expected offset (pages, then one by one around errors).
/// Returns (messages served, read errors, wrong values).
async fn read_everything(
    http: &reqwest::Client,
    server: &Server,
    expected: &HashMap<(u64, u64), String>,
) -> (usize, usize, Vec<String>) {
    let (mut served, mut errors, mut wrong) = (0, 0, Vec::new());
    for partition in 0..PARTITIONS {
        let high = expected.keys().filter(|(p, _)| *p == partition).count() as u64;
        let mut offset = 0;
        while offset < high {
            let url = server.url(&format!(
                "/v1/topics/{TOPIC}/partitions/{partition}/messages?offset={offset}&limit=100"
            ));
            let page = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                _ => None,
            };
            let Some(page) = page else {
                errors += 1;
                offset += 1; // step past the bad record, one offset at a time
                continue;
            };
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            for message in &messages {
                served += 1;
                let at = (
                    message["partition"].as_u64().unwrap_or(u64::MAX),
                    message["offset"].as_u64().unwrap_or(u64::MAX),
                );
                let value = message["value"].as_str();
                if expected.get(&at).map(String::as_str) != value {
                    wrong.push(format!(
                        "{at:?}: served {value:?}, produced {:?}",
                        expected.get(&at)
                    ));
                }
            }
            match page["next_offset"].as_u64() {
                Some(next) if next > offset && !messages.is_empty() => offset = next,
                _ => break, // the rest is gone (e.g. a torn tail)
            }
        }
    }
    (served, errors, wrong)
}

/// Damages one file of the data directory; returns its path.
fn apply(damage: Damage, dir: &Path) -> PathBuf {
    match damage {
        Damage::SstBitFlip => {
            let sst = largest(dir, "sst");
            let len = fs::metadata(&sst).unwrap().len();
            flip_bit(&sst, len / 2);
            sst
        }
        Damage::SstTruncated => {
            let sst = largest(dir, "sst");
            let len = fs::metadata(&sst).unwrap().len();
            truncate(&sst, len / 2);
            sst
        }
        Damage::BlobBitFlip => {
            let blob = largest(dir, "blob");
            let len = fs::metadata(&blob).unwrap().len();
            flip_bit(&blob, len / 2);
            blob
        }
        Damage::BlobTruncated => {
            let blob = largest(dir, "blob");
            let len = fs::metadata(&blob).unwrap().len();
            truncate(&blob, len / 2);
            blob
        }
        Damage::WalGarbage => {
            let wal = largest(dir, "log");
            let len = fs::metadata(&wal).unwrap().len();
            let mut file = OpenOptions::new().write(true).open(&wal).unwrap();
            file.seek(SeekFrom::Start(len / 2)).unwrap();
            file.write_all(&[0xA5; 64]).unwrap();
            file.sync_all().unwrap();
            wal
        }
        Damage::WalTailTruncated => {
            let wal = largest(dir, "log");
            let len = fs::metadata(&wal).unwrap().len();
            truncate(&wal, len.saturating_sub(100));
            wal
        }
    }
}

/// The largest non-empty `*.{ext}` file (RocksDB's own `LOG` is not `*.log`).
fn largest(dir: &Path, ext: &str) -> PathBuf {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (fs::metadata(&p).unwrap().len(), p))
        .filter(|(len, _)| *len > 0)
        .collect();
    files.sort();
    let listing: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    files
        .pop()
        .unwrap_or_else(|| panic!("no non-empty *.{ext} in {}: {listing:?}", dir.display()))
        .1
}

fn flip_bit(path: &Path, at: u64) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0_u8; 1];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    byte[0] ^= 0x10;
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&byte).unwrap();
    file.sync_all().unwrap();
}

fn truncate(path: &Path, len: u64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
    file.sync_all().unwrap();
}
