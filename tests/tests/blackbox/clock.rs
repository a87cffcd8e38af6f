//! Wall-clock steps: the wall clock of a running server jumps an hour
//! forward and back (an NTP step, an operator) through libfaketime, while
//! the monotonic clock runs on. Leases, retries, delays and retention run
//! on broker time, so no lease expires early, nothing is redelivered or
//! dead-lettered, and retention deletes nothing early; timestamps never go
//! backwards within a partition.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::subs_helpers::*;

/// Where Debian's `faketime` package puts the library (`make deps`).
fn faketime_library() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime is missing: install the `faketime` package (`make deps` does)")
        })
}

/// Moves the server's wall clock to `offset` from the real one.
fn set_offset(file: &Path, offset: &str) {
    std::fs::write(file, offset).expect("write the faketime file");
}

#[tokio::test]
async fn wall_clock_steps_neither_expire_leases_nor_delete_backlog_early() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = dir.path().join("faketime");
    set_offset(&clock, "+0s");
    let lib = faketime_library();
    let env = [
        ("LD_PRELOAD", lib.to_str().expect("utf-8 path")),
        (
            "FAKETIME_TIMESTAMP_FILE",
            clock.to_str().expect("utf-8 path"),
        ),
        ("FAKETIME_NO_CACHE", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let s = TestServer::start_with_env(&["--retention-interval-ms", "200"], &env);
    // Ten minutes of retention: a one-hour step would delete everything if
    // retention used the stepped clock.
    s.create_topic("t", &json!({"retention": {"max_age_ms": 600_000}}))
        .await;
    // One attempt only: a lease that expired early would dead-letter.
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "ack_timeout_ms": 30_000, "retry": retry(json!(1), 0)}),
        201,
    )
    .await;
    s.produce("t", json!([{"value": 1}, {"value": 2}, {"value": 3}]))
        .await;
    let leased = pull(&s, "t", "q", json!({"max_messages": 2})).await;
    assert_eq!(leased.len(), 2);

    // An hour forward.
    set_offset(&clock, "+3600s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rest = pull(&s, "t", "q", json!({"max_messages": 10})).await;
    let values: Vec<Value> = rest.iter().map(|m| m["value"].clone()).collect();
    assert_eq!(values, vec![json!(3)], "leases must not expire on a step");
    let acked = ack(&s, "t", "q", &leased[..1]).await;
    assert_eq!(acked["acked"], 1, "{acked}");
    let stats = sub_info(&s, "t", "q").await["stats"].clone();
    assert_eq!(stats["dead_lettered"], 0, "{stats}");
    assert_eq!(s.read_all("t", 0).await.len(), 3, "retention deleted early");
    s.produce("t", json!([{"value": 4}])).await;

    // And back: two hours backwards relative to the last step.
    set_offset(&clock, "-3600s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.produce("t", json!([{"value": 5}])).await;
    let acked = ack(&s, "t", "q", &leased[1..]).await;
    assert_eq!(acked["acked"], 1, "{acked}");
    let all = s.read_all("t", 0).await;
    assert_eq!(all.len(), 5, "retention deleted early: {all:?}");
    let stamps: Vec<u64> = all
        .iter()
        .map(|m| m["timestamp"].as_u64().expect("timestamp"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps went backwards in a partition: {stamps:?}"
    );
    // The step did reach the server: message 4 is stamped an hour later.
    assert!(
        stamps[3] >= stamps[0] + 3_500_000,
        "the wall clock was not stepped: {stamps:?}"
    );
    let stats = sub_info(&s, "t", "q").await["stats"].clone();
    assert_eq!(stats["dead_lettered"], 0, "{stats}");
    assert_eq!(stats["in_flight"], 1, "value 3 is still leased: {stats}");
}
