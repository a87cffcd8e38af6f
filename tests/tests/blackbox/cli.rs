//! The `weir` command-line tool against a real server: a produce → consume
//! → dead-letter → redrive round trip, `--output json` parsed as JSON,
//! `weir bench produce`, and failures (exit status and the stable error code
//! on stderr).
//!
//! The binary is `WEIR_CLI_BIN`, else `weir` next to `weir-server` in the
//! target directory (`cargo build -p weir-client`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{built_binary, TestServer};

/// Upper bound of one CLI run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// One finished `weir` run.
#[derive(Debug)]
pub(crate) struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit status 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "weir failed with {}; stdout: {}; stderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts exit status 0 and parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"))
    }

    /// Asserts exit status 0 and parses each stdout line as JSON.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    }

    /// Asserts a non-zero exit with `code` on stderr.
    #[track_caller]
    pub fn fails_with(&self, code: &str) {
        assert!(
            !self.status.success(),
            "weir must fail; stdout: {}",
            self.stdout
        );
        assert!(
            self.stderr.contains(code),
            "stderr names `{code}`: {:?}",
            self.stderr
        );
    }
}

/// Runs `weir --server <s> args...`, feeding `stdin`.
pub(crate) fn weir(s: &TestServer, args: &[&str], stdin: &str) -> Run {
    weir_at(&s.url(""), args, stdin)
}

pub(crate) fn weir_at(server: &str, args: &[&str], stdin: &str) -> Run {
    let mut command = Command::new(cli_bin());
    command
        .arg("--server")
        .arg(server)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The caller's environment must not redirect the tool.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy().to_ascii_lowercase();
        if name_text.starts_with("weir_") || name_text.ends_with("_proxy") {
            command.env_remove(&name);
        }
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", cli_bin().display()));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for weir") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir {args:?} did not finish within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// `WEIR_CLI_BIN`, else `weir` next to the test executable's `deps/`
/// directory (i.e. `target/debug/weir`).
pub(crate) fn cli_bin() -> PathBuf {
    built_binary("weir", "WEIR_CLI_BIN", "weir-client")
}

/// `dlq list --output json` until it shows `count` dead letters (bounded:
/// dead-lettering completes shortly after the nack).
fn wait_for_dead_letters(s: &TestServer, topic: &str, sub: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = weir(s, &["--output", "json", "dlq", "list", topic, sub], "").json();
        let found = listed["dead_letters"].as_array().map_or(0, Vec::len);
        if found >= count {
            assert_eq!(found, count, "{listed}");
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "{count} dead letters not listed: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cli_round_trip_through_dead_letters_and_redrive() {
    let s = TestServer::start();
    let j = ["--output", "json"];
    let with_json =
        |args: &[&str]| -> Vec<String> { j.iter().chain(args).map(|a| (*a).to_owned()).collect() };
    let run_json = |args: &[&str], stdin: &str| {
        let argv = with_json(args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        weir(&s, &argv, stdin)
    };

    // topics create / list / describe.
    let created = run_json(&["topics", "create", "orders", "--partitions", "1"], "").json();
    assert_eq!(created["name"], "orders");
    assert_eq!(created["config"]["partitions"], 1);
    let text = weir(&s, &["topics", "list"], "");
    assert!(
        text.ok().lines().any(|l| l.starts_with("orders ")),
        "{text:?}"
    );

    // produce: from arguments (JSON when it parses, else a string)...
    let produced = run_json(&["produce", "orders", "plain", "{\"n\":1}", "7"], "").json();
    let offsets: Vec<&Value> = produced["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["offset"])
        .collect();
    assert_eq!(offsets, [0, 1, 2]);
    // ...and one message per stdin line (blank lines skipped), with key and header.
    let produced = run_json(
        &[
            "produce",
            "orders",
            "--file",
            "-",
            "--key",
            "k1",
            "-H",
            "trace=abc",
            "--batch",
            "2",
        ],
        "line one\n\n{\"n\":2}\nline three\n",
    )
    .json();
    assert_eq!(produced["results"].as_array().unwrap().len(), 3);
    assert_eq!(produced["results"][2]["offset"], 5);
    let text = weir(&s, &["produce", "orders", "eight"], "");
    assert_eq!(text.ok().trim(), "partition 0 offset 6");

    // read: what was produced, in order.
    let page = run_json(&["read", "orders", "--offset", "0", "--limit", "100"], "").json();
    assert_eq!(page["next_offsets"]["0"], 7, "{page}");
    let values: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["value"])
        .collect();
    let expected: Vec<Value> = serde_json::from_str(
        r#"["plain", {"n":1}, 7, "line one", {"n":2}, "line three", "eight"]"#,
    )
    .unwrap();
    assert_eq!(values, expected.iter().collect::<Vec<_>>());
    assert_eq!(page["messages"][3]["key"], "k1");
    assert_eq!(page["messages"][3]["headers"]["trace"], "abc");
    assert!(page["messages"][0]["key"].is_null());
    let from_time = run_json(&["read", "orders", "--timestamp", "0", "--limit", "3"], "").json();
    assert_eq!(from_time["messages"].as_array().unwrap().len(), 3);
    assert_eq!(from_time["next_offsets"]["0"], 3);
    let one = run_json(&["read", "orders", "-p", "0", "--offset", "5"], "").json();
    assert_eq!(one["next_offset"], 7, "{one}");
    assert_eq!(one["messages"].as_array().unwrap().len(), 2, "{one}");
    let text = weir(
        &s,
        &[
            "read",
            "orders",
            "--partition",
            "0",
            "--offset",
            "3",
            "--limit",
            "1",
        ],
        "",
    );
    assert_eq!(text.ok().trim(), "0:3 key=k1 \"line one\"");
    assert!(text.stderr.contains("next offset 4"), "{text:?}");

    // subs create / list / describe.
    let sub = run_json(
        &[
            "subs",
            "create",
            "orders",
            "billing",
            "--start",
            "earliest",
            "--max-attempts",
            "1",
            "--backoff-initial-ms",
            "0",
        ],
        "",
    )
    .json();
    assert_eq!(sub["config"]["retry"]["max_attempts"], 1);
    assert_eq!(sub["config"]["retry"]["backoff"]["initial_ms"], 0);
    assert_eq!(sub["config"]["dead_letter_topic"], "orders.billing.dlq");
    assert_eq!(sub["stats"]["backlog"], 7);
    let list = run_json(&["subs", "list", "orders"], "").json();
    assert_eq!(list["subscriptions"][0]["name"], "billing");

    // consume --nack: each message printed as one JSON line.
    let nacked = run_json(
        &[
            "consume",
            "orders",
            "billing",
            "--nack",
            "--reason",
            "broken",
            "--count",
            "7",
            "--max",
            "3",
            "--wait-ms",
            "2000",
        ],
        "",
    )
    .json_lines();
    assert_eq!(nacked.len(), 7);
    let mut offsets: Vec<u64> = nacked
        .iter()
        .map(|m| {
            assert_eq!(m["attempt"], 1);
            assert!(m["ack_id"].as_str().is_some_and(|a| !a.is_empty()));
            m["offset"].as_u64().unwrap()
        })
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..7).collect::<Vec<u64>>());

    // dlq list: all of them, with the reason, state and original message.
    let listed = wait_for_dead_letters(&s, "orders", "billing", 7);
    assert!(listed["next"].is_null(), "{listed}");
    for d in listed["dead_letters"].as_array().unwrap() {
        assert_eq!(d["reason"], "broken", "{d}");
        assert_eq!(d["state"], "waiting");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["message"]["topic"], "orders");
    }
    let text = weir(&s, &["dlq", "list", "orders", "billing"], "");
    let rows: Vec<&str> = text.ok().lines().skip(1).collect();
    assert_eq!(rows.len(), 7, "{text:?}");
    assert!(
        rows.iter()
            .all(|r| r.contains(" waiting ") && r.contains(" broken ")),
        "{text:?}"
    );
    assert!(
        text.stderr
            .contains("7 dead letters (7 waiting, 0 redriven, 0 purged)"),
        "{text:?}"
    );
    let described = run_json(&["subs", "describe", "orders", "billing"], "").json();
    assert_eq!(described["stats"]["dead_lettered"], 7);
    assert_eq!(described["stats"]["backlog"], 0);

    // dlq redrive reports the count; text form, then JSON with nothing left.
    let text = weir(
        &s,
        &["dlq", "redrive", "orders", "billing", "--max", "2"],
        "",
    );
    assert_eq!(
        text.ok().trim(),
        "redrove 2 dead letters to subscription billing of topic orders"
    );
    let redriven = run_json(&["dlq", "redrive", "orders", "billing"], "").json();
    assert_eq!(redriven["redriven"], 5);

    // consume again: all delivered (attempts reset) and acked.
    let acked = run_json(
        &[
            "consume",
            "orders",
            "billing",
            "--count",
            "7",
            "--max",
            "10",
            "--wait-ms",
            "2000",
        ],
        "",
    )
    .json_lines();
    assert_eq!(acked.len(), 7);
    assert!(acked.iter().all(|m| m["attempt"] == 1), "{acked:?}");
    // Nothing left: --until-empty stops at the first empty pull.
    let rest = weir(
        &s,
        &[
            "consume",
            "orders",
            "billing",
            "--until-empty",
            "--wait-ms",
            "200",
        ],
        "",
    );
    assert_eq!(rest.ok(), "");
    assert!(rest.stderr.contains("0 messages acked"), "{rest:?}");
    let described = run_json(&["subs", "describe", "orders", "billing"], "").json();
    assert_eq!(described["stats"]["backlog"], 0);
    assert_eq!(described["stats"]["in_flight"], 0);

    // seek earliest, then the text form of consume with --until-empty.
    run_json(
        &["subs", "seek", "orders", "billing", "--to", "earliest"],
        "",
    )
    .json();
    let text = weir(
        &s,
        &[
            "consume",
            "orders",
            "billing",
            "--until-empty",
            "--wait-ms",
            "500",
            "--max",
            "100",
        ],
        "",
    );
    assert_eq!(text.ok().lines().count(), 7, "{text:?}");
    assert!(
        text.stdout.starts_with("0:0 attempt=1 key=- \"plain\""),
        "{text:?}"
    );
    assert!(text.stderr.contains("7 messages acked"), "{text:?}");

    // delete.
    assert_eq!(
        run_json(&["subs", "delete", "orders", "billing"], "").json()["ok"],
        true
    );
    weir(&s, &["subs", "describe", "orders", "billing"], "").fails_with("subscription_not_found");
    assert_eq!(
        run_json(&["topics", "delete", "orders"], "").json()["ok"],
        true
    );
    weir(&s, &["topics", "describe", "orders"], "").fails_with("topic_not_found");
}

#[test]
fn cli_errors_exit_non_zero_with_the_code() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "t"], "").ok();

    weir(&s, &["produce", "nope", "x"], "").fails_with("topic_not_found");
    weir(&s, &["read", "nope"], "").fails_with("topic_not_found");
    weir(&s, &["read", "t", "--partition", "3"], "").fails_with("partition_not_found");
    weir(&s, &["consume", "t", "nope", "--until-empty"], "").fails_with("subscription_not_found");
    weir(&s, &["dlq", "redrive", "t", "nope"], "").fails_with("subscription_not_found");
    weir(&s, &["topics", "create", "bad name!"], "").fails_with("invalid_name");
    weir(&s, &["topics", "create", "u", "--partitions", "0"], "").fails_with("invalid_request");
    weir(&s, &["produce", "t", "x", "-H", "weir-attempts=1"], "").fails_with("invalid_request");
    weir(&s, &["subs", "create", "t", "s", "--mode", "stream"], "").ok();
    weir(&s, &["subs", "create", "t", "s", "--mode", "queue"], "").fails_with("conflict");

    // With --output json the problem document is printed (on stdout) and
    // the exit status is still non-zero.
    let run = weir(&s, &["--output", "json", "topics", "describe", "nope"], "");
    assert!(!run.status.success());
    let problem: Value = serde_json::from_str(&run.stdout).expect("problem JSON");
    assert_eq!(problem["code"], "topic_not_found");
    assert_eq!(problem["status"], 404);

    // Local failures and usage errors also fail.
    weir(&s, &["produce", "t", "-H", "no-equals-sign", "x"], "").fails_with("name=value");
    weir(&s, &["produce", "t", "--file", "/nonexistent/file"], "").fails_with("cannot open");
    weir(&s, &["subs", "seek", "t", "s", "--to", "yesterday"], "").fails_with("yesterday");
    weir_at("localhost:1", &["topics", "list"], "").fails_with("invalid server URL");
    // Nothing listens on port 1: a transport error, not a hang.
    weir_at("http://127.0.0.1:1", &["topics", "list"], "").fails_with("connection refused");

    // None of the failures changed anything.
    let t = weir(&s, &["--output", "json", "topics", "describe", "t"], "").json();
    assert_eq!(t["partitions"][0]["high_offset"], 0);
    let topics = weir(&s, &["--output", "json", "topics", "list"], "").json();
    assert_eq!(topics["topics"].as_array().unwrap().len(), 1, "{topics}");
}

#[test]
fn cli_bench_produce_reports_throughput_and_latency() {
    let s = TestServer::start();
    let report = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "produce",
            "--topic",
            "bench",
            "--partitions",
            "2",
            "--count",
            "2000",
            "--batch",
            "100",
            "--concurrency",
            "4",
            "--size",
            "64",
            "--keep",
        ],
        "",
    )
    .json();
    assert_eq!(report["workload"], "produce");
    assert_eq!(report["messages"], 2000);
    assert_eq!(report["requests"], 20);
    assert_eq!(report["batch"], 100);
    assert_eq!(report["concurrency"], 4);
    assert_eq!(report["message_bytes"], 64);
    let num = |path: &[&str]| -> f64 {
        let v = path.iter().fold(&report, |v, k| &v[*k]);
        v.as_f64()
            .unwrap_or_else(|| panic!("{path:?} not a number: {report}"))
    };
    assert!(num(&["seconds"]) > 0.0);
    assert!(num(&["msgs_per_sec"]) > 0.0);
    assert!(num(&["mb_per_sec"]) > 0.0);
    let (p50, p99, p999, max) = (
        num(&["latency_ms", "p50"]),
        num(&["latency_ms", "p99"]),
        num(&["latency_ms", "p999"]),
        num(&["latency_ms", "max"]),
    );
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{report}"
    );
    assert!(
        num(&["wal_syncs"]) >= 1.0,
        "durable produces sync the WAL: {report}"
    );

    // The messages are really there, across the two partitions.
    let topic = weir(&s, &["--output", "json", "topics", "describe", "bench"], "").json();
    assert_eq!(topic["config"]["partitions"], 2);
    let stored: u64 = topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 2000);

    // Text form.
    let text = weir(
        &s,
        &[
            "bench", "produce", "--topic", "bench", "--count", "200", "--batch", "50",
        ],
        "",
    );
    let out = text.ok();
    assert!(out.contains("produce: 200 msgs in"), "{out}");
    assert!(out.contains("request latency ms: p50"), "{out}");
    // The topic existed (kept above): the bench says what it left in it.
    assert!(
        text.stderr
            .contains("200 messages were added to topic `bench`, which existed before"),
        "{text:?}"
    );

    // A topic the bench creates is deleted at the end without --keep.
    let run = weir(
        &s,
        &[
            "bench", "produce", "--topic", "scratch", "--count", "100", "--batch", "50",
        ],
        "",
    );
    run.ok();
    weir(&s, &["topics", "describe", "scratch"], "").fails_with("topic_not_found");
}

/// `--count` that is not a multiple of `--batch` is not honoured: each
/// worker claims whole batches from the budget and stops when a whole
/// batch no longer fits, so the remainder is never produced (and a count
/// below the batch size produces nothing, reporting 0 msgs/s).
#[test]
fn cli_bench_produce_honours_a_count_that_is_not_a_multiple_of_the_batch() {
    let s = TestServer::start();
    for (count, batch) in [("250", "100"), ("50", "100")] {
        let report = weir(
            &s,
            &[
                "--output",
                "json",
                "bench",
                "produce",
                "--topic",
                &format!("b{count}"),
                "--count",
                count,
                "--batch",
                batch,
                "--concurrency",
                "2",
            ],
            "",
        )
        .json();
        assert_eq!(report["messages"].to_string(), count, "{report}");
        assert!(report["msgs_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    }
}

/// `weir bench` over WebSockets: produce on publish sockets, consume on
/// subscription sockets; both report their numbers and the data is there.
#[test]
fn cli_bench_over_websockets_reports_numbers() {
    let s = TestServer::start();
    let produce = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "produce",
            "--topic",
            "wsb",
            "--count",
            "1200",
            "--batch",
            "100",
            "--concurrency",
            "2",
            "--transport",
            "ws",
        ],
        "",
    )
    .json();
    assert_eq!(produce["messages"], 1200, "{produce}");
    assert_eq!(produce["requests"], 12, "{produce}");
    assert!(produce["msgs_per_sec"].as_f64().unwrap() > 0.0, "{produce}");
    let consume = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "consume",
            "--topic",
            "wsc",
            "--count",
            "600",
            "--batch",
            "100",
            "--concurrency",
            "2",
            "--transport",
            "ws",
        ],
        "",
    )
    .json();
    assert_eq!(consume["messages"], 600, "{consume}");
    assert!(consume["msgs_per_sec"].as_f64().unwrap() > 0.0, "{consume}");
}
