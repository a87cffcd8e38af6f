//! kill -9 at random points under a concurrent produce / consume / ack /
//! nack / dead-letter workload, restart, continue; at the end drain
//! everything, read it all back and check the history: nothing acked is
//! lost, delivered again after an Ok ack, reordered or dead-lettered twice.
//!
//! `WEIR_FAULT_CYCLES` (default 25) sets the number of kills and
//! `WEIR_FAULT_SEED` replays a schedule (the seed is printed).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_tests::history::History;

use crate::harness::TestServer;
use crate::ops::{http_client, Endpoint, Recorder};
use crate::rng::{env_count, seed, Rng};
use crate::workload::{self, Workers, DLQ, TOPIC};

const DEFAULT_CYCLES: u64 = 25;
/// How long a restarted server may take before produce succeeds again.
const LOAD_RESUMES_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_cycles_lose_nothing_acknowledged() {
    let seed = seed("kill9");
    let cycles = env_count("WEIR_FAULT_CYCLES", DEFAULT_CYCLES);
    let mut rng = Rng::new(seed);
    let mut server = TestServer::start_with(&["--fsync", "always"]);
    let recorder = Recorder {
        history: History::new(),
        http: http_client(Duration::from_secs(5), true),
        endpoint: Endpoint::new(&server.url("")),
    };
    workload::setup(&server, &recorder).await;
    let mut workers = Workers::spawn(&recorder);
    let started = Instant::now();
    for cycle in 1..=cycles {
        tokio::time::sleep(Duration::from_millis(rng.range(50, 500))).await;
        // Kill under load: if nothing was acknowledged since the last
        // restart (the server still recovering or compacting after a run
        // of kills), wait for the load to flow again, bounded.
        let since = workers.progress.produced.load(Ordering::Relaxed);
        let wait_until = Instant::now() + LOAD_RESUMES_WITHIN;
        while workers.progress.produced.load(Ordering::Relaxed) == since
            && Instant::now() < wait_until
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::task::block_in_place(|| server.kill9());
        tokio::time::sleep(Duration::from_millis(rng.range(0, 100))).await;
        tokio::task::block_in_place(|| server.restart());
        recorder.endpoint.set(&server.url(""));
        let p = &workers.progress;
        eprintln!(
            "kill9: cycle {cycle}/{cycles} produced={} acked={} nacked={} elapsed={:.0?}",
            p.produced.load(Ordering::Relaxed),
            p.acked.load(Ordering::Relaxed),
            p.nacked.load(Ordering::Relaxed),
            started.elapsed()
        );
    }
    workers.stop_producers().await;
    workload::wait_drained(&recorder, Duration::from_secs(120)).await;
    workers.stop_consumers().await;

    recorder.read_back(TOPIC).await;
    let dead_letters = recorder.read_dead_letters(DLQ).await;
    let report = recorder.history.check();
    eprintln!("kill9: {report}");
    eprintln!("{}", report.fault_summary("kill9", cycles, cycles));
    report.assert_clean();
    let acked = report.counts.acked_ok as u64;
    assert!(
        acked >= 10 * cycles,
        "too little progress: {acked} acks over {cycles} cycles; server log:\n{}",
        server.log_tail()
    );
    assert!(dead_letters > 0, "the workload dead-letters some messages");
}
