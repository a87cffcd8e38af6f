//! Power loss: `weir-server` runs on a `weir-lazyfs` mount (see
//! `tests/lazyfs`), which can drop every write not fsynced, as a power
//! failure of the machine would. Each cycle produces and acks
//! concurrently, then at a random moment kills the server (`kill -9`) and
//! fails the power, remounts and restarts; at the end everything
//! acknowledged must be there with its bytes, and no confirmed ack undone.
//!
//! Needs root and /dev/fuse. Build first:
//! `cargo build -p weir-server -p weir-lazyfs && cargo test -p weir-tests --test powerloss`.
//! `WEIR_POWERLOSS_CYCLES` sets the number of cycles (default 4; `make soak`: 50),
//! `WEIR_FAULT_SEED` replays a schedule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "faults/ops.rs"]
mod ops;
#[allow(dead_code)]
#[path = "faults/rng.rs"]
mod rng;

#[path = "powerloss/lazyfs.rs"]
mod lazyfs;
#[allow(dead_code)]
#[path = "powerloss/server.rs"]
mod server;
#[path = "powerloss/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use weir_tests::history::{History, Mode, Produce, SubscriptionSpec};

use crate::lazyfs::{require_fuse, LazyMount};
use crate::ops::{http_client, sub_name, Endpoint, Recorder};
use crate::rng::{env_count, seed, Rng};
use crate::server::Server;
use crate::workload::{drain, Workload, SUB, TOPIC};

/// A backing directory and a mount point for it, removed at the end (the
/// mount guards are dropped before, as they are declared later).
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("backing")).unwrap();
        std::fs::create_dir(root.path().join("mnt")).unwrap();
        Dirs { root }
    }

    fn backing(&self) -> PathBuf {
        self.root.path().join("backing")
    }

    fn mountpoint(&self) -> PathBuf {
        self.root.path().join("mnt")
    }

    fn data(&self) -> PathBuf {
        self.mountpoint().join("data")
    }

    fn mount(&self) -> LazyMount {
        LazyMount::mount(&self.backing(), &self.mountpoint())
    }

    /// Creates the (empty) data directory durably, as provisioning a
    /// volume would: the server then creates only what is inside it.
    fn provision_data_dir(&self) {
        std::fs::create_dir(self.data()).unwrap();
        std::fs::File::open(self.mountpoint())
            .unwrap()
            .sync_all()
            .unwrap();
    }
}

/// The layer itself: after a power failure, data written since the last
/// fsync is gone, fsynced data stays, and a name created since the last
/// fsync of its directory is gone.
#[test]
fn lazyfs_drops_what_was_not_fsynced() {
    use std::io::Write;
    require_fuse();
    let dirs = Dirs::new();
    let mut mount = dirs.mount();
    let mnt = dirs.mountpoint();
    let sync_dir = |dir: &Path| std::fs::File::open(dir).unwrap().sync_all().unwrap();

    let mut kept = std::fs::File::create(mnt.join("kept")).unwrap();
    kept.write_all(b"durable").unwrap();
    kept.sync_all().unwrap();
    sync_dir(&mnt);
    kept.write_all(b" and lost").unwrap();
    drop(kept);
    let mut fresh = std::fs::File::create(mnt.join("fresh")).unwrap();
    fresh.write_all(b"data synced, name not").unwrap();
    fresh.sync_data().unwrap();
    drop(fresh);
    assert_eq!(
        std::fs::read(mnt.join("kept")).unwrap(),
        b"durable and lost",
        "reads see unsynced writes before the power fails"
    );

    let report = mount.power_fail();
    eprintln!("{report}");
    let backing = dirs.backing();
    assert_eq!(std::fs::read(backing.join("kept")).unwrap(), b"durable");
    assert!(
        !backing.join("fresh").exists(),
        "a file whose directory was never fsynced survived the power failure"
    );

    let _remounted = dirs.mount();
    assert_eq!(std::fs::read(mnt.join("kept")).unwrap(), b"durable");
}

/// The control: with `--fsync never` a power failure loses acknowledged
/// messages (so the main scenario would notice missing syncs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_never_loses_acknowledged_messages() {
    require_fuse();
    let dirs = Dirs::new();
    let mut mount = dirs.mount();
    let mut server = Server::start(&dirs.data(), &["--fsync", "never"]);
    let history = History::new();
    let recorder = Recorder {
        history: history.clone(),
        http: http_client(Duration::from_secs(10), true),
        endpoint: Endpoint::new(&server.base),
    };
    create_topic(&recorder).await;
    let mut acked = 0;
    for batch in 0..20 {
        let messages: Vec<Produce> = (0..10)
            .map(|i| Produce::new(TOPIC, format!("never-{batch}-{i}")))
            .collect();
        let produced = recorder.produce(&messages).await;
        assert_eq!(produced.outcome, weir_tests::history::Outcome::Ok);
        acked += messages.len();
    }
    server.kill9();
    eprintln!("{}", mount.power_fail());

    let _mount = dirs.mount();
    let server = Server::start(&dirs.data(), &["--fsync", "never"]);
    let reply = recorder
        .http
        .get(server.url(&format!("/v1/topics/{TOPIC}")))
        .send()
        .await
        .unwrap();
    let stored: u64 = if reply.status() == 404 {
        0
    } else {
        let topic: serde_json::Value = reply.json().await.unwrap();
        topic["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["high_offset"].as_u64().unwrap())
            .sum()
    };
    eprintln!("fsync=never: {acked} acknowledged, {stored} stored after the power failure");
    assert!(
        (stored as usize) < acked,
        "with fsync=never all {acked} acknowledged messages survived a power failure: \
         the layer dropped nothing"
    );
}

/// The scenario: cycles of load, `kill -9` + power failure, restart; then
/// every acknowledged produce and ack must still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_keeps_every_acknowledged_write() {
    require_fuse();
    let started = Instant::now();
    let cycles = env_count("WEIR_POWERLOSS_CYCLES", 4);
    let seed = seed("powerloss");
    let mut rng = Rng::new(seed);
    let dirs = Dirs::new();
    let history = History::new();
    history.register_subscription(
        sub_name(TOPIC, SUB),
        SubscriptionSpec {
            topic: TOPIC.to_owned(),
            mode: Mode::Queue,
            complete: true,
        },
    );
    let recorder = Recorder {
        history: history.clone(),
        http: http_client(Duration::from_secs(10), true),
        endpoint: Endpoint::default(),
    };
    let mut faults = 0;
    for cycle in 0..cycles {
        let mut mount = dirs.mount();
        if cycle == 0 {
            dirs.provision_data_dir();
        }
        let mut server = Server::start(&dirs.data(), &["--fsync", "always"]);
        recorder.endpoint.set(&server.base);
        if cycle == 0 {
            create_topic(&recorder).await;
        } else {
            assert_setup_survived(&recorder, &server).await;
        }
        let workload = Workload::start(&recorder, cycle, 3, 2, seed);
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
        // Either order: the power fails under a live server (whose syncs
        // then fail with EIO) or just after it died.
        let report = if rng.chance(50) {
            let report = mount.power_fail();
            server.kill9();
            report
        } else {
            server.kill9();
            mount.power_fail()
        };
        workload.finish().await;
        faults += 1;
        eprintln!(
            "powerloss cycle {}/{cycles}: {report}; {:?}",
            cycle + 1,
            history.counts()
        );
    }

    let _mount = dirs.mount();
    let mut server = Server::start(&dirs.data(), &["--fsync", "always"]);
    recorder.endpoint.set(&server.base);
    assert_setup_survived(&recorder, &server).await;
    drain(&recorder).await;
    recorder.read_back(TOPIC).await;
    let report = history.check();
    println!("{}", report.fault_summary("powerloss", cycles, faults));
    eprintln!("powerloss: {} in {:?}", report, started.elapsed());
    assert!(
        report.counts.produced_ok > 0 && report.counts.acked_ok > 0,
        "the load did nothing: {report}"
    );
    report.assert_clean();
    let status = server.stop();
    assert!(
        status.success(),
        "server exit {status}; log:\n{}",
        server.log_tail()
    );
}

async fn create_topic(recorder: &Recorder) {
    for (path, body) in [
        (format!("/v1/topics/{TOPIC}"), json!({"partitions": 3})),
        (
            format!("/v1/topics/{TOPIC}/subscriptions/{SUB}"),
            json!({"mode": "queue", "start": "earliest"}),
        ),
    ] {
        let reply = recorder
            .http
            .put(recorder.endpoint.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.status(),
            201,
            "PUT {path}: {}",
            reply.text().await.unwrap()
        );
    }
}

/// The topic and subscription created (and acknowledged) in the first
/// cycle exist after every power failure.
async fn assert_setup_survived(recorder: &Recorder, server: &Server) {
    for path in [
        format!("/v1/topics/{TOPIC}"),
        format!("/v1/topics/{TOPIC}/subscriptions/{SUB}"),
    ] {
        let reply = recorder.http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(
            reply.status(),
            200,
            "GET {path} after a power failure: {}",
            reply.text().await.unwrap()
        );
    }
}
