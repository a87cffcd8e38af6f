//! `weir produce TOPIC` with no values: one message per stdin line when
//! stdin is not a terminal (in batches, with every flag applied to each
//! line), and a usage error (exit status 2) when it is a terminal.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::{cli_bin, weir};
use crate::harness::TestServer;

/// Upper bound of one terminal run.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn produce_reads_every_stdin_line_in_batches_with_the_flags() {
    let s = TestServer::start();
    s.create_topic("lines", &json!({"partitions": 2})).await;
    // 1234 lines in batches of 100: 13 requests; a JSON line stays JSON.
    let mut input: String = (0..1233).map(|i| format!("line-{i}\n")).collect();
    input.push_str("{\"n\": 1}");
    let run = weir(
        &s,
        &[
            "--output",
            "json",
            "produce",
            "lines",
            "--batch",
            "100",
            "--key",
            "k",
            "-H",
            "source=stdin",
            "--partition",
            "1",
        ],
        &input,
    );
    let results = run.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 1234, "one result per line: {:?}", run.stderr);
    assert!(results.iter().all(|r| r["partition"] == 1));
    let offsets: Vec<u64> = results
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (0..1234).collect::<Vec<u64>>(), "in line order");

    let stored = s.read_all("lines", 1).await;
    assert_eq!(stored.len(), 1234);
    assert_eq!(stored[0]["value"], "line-0");
    assert_eq!(stored[1232]["value"], "line-1232");
    assert_eq!(stored[1233]["value"], json!({"n": 1}));
    for m in [&stored[0], &stored[777]] {
        assert_eq!(m["key"], "k");
        assert_eq!(m["headers"]["source"], "stdin");
    }
    assert_eq!(s.partition_info("lines", 0).await["high_offset"], 0);

    // Text output: one line per produced message, as for values.
    let text = weir(&s, &["produce", "lines", "--partition", "0"], "a\n\nb\n");
    assert_eq!(
        text.ok().lines().collect::<Vec<_>>(),
        ["partition 0 offset 0", "partition 0 offset 1"],
        "blank lines are skipped"
    );
    // Values on the command line win: stdin is not read then.
    let args = weir(
        &s,
        &["--output", "json", "produce", "lines", "x"],
        "ignored\n",
    );
    assert_eq!(args.json()["results"].as_array().map(Vec::len), Some(1));
}

/// With a terminal on stdin there is nothing to read: a usage error, before
/// any connection (the server here does not exist). The terminal is the
/// pseudo-terminal `script(1)` gives its command.
#[test]
fn produce_without_values_on_a_terminal_is_a_usage_error() {
    let Ok(status) = Command::new("script").arg("--version").output() else {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    };
    assert!(status.status.success(), "script --version: {status:?}");
    let bin = cli_bin();
    let command = format!(
        "{} --server http://127.0.0.1:9 produce orders",
        bin.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("WEIR_SERVER")
        .env_remove("WEIR_TOKEN")
        .spawn()
        .expect("start script");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("weir on a terminal did not exit within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    // `script -e` exits with the command's status; the terminal merges
    // the command's stdout and stderr into script's stdout.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "usage error: {text:?}");
    assert!(
        text.contains("nothing to produce") && text.contains("pipe lines"),
        "says to give values or pipe lines: {text:?}"
    );
    assert!(
        !text.contains("connect"),
        "fails before connecting: {text:?}"
    );
}
