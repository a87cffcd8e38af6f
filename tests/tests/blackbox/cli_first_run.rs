//! The `weir` CLI's first-run experience against a real server: the quick
//! start reads back what it produced (every partition by default), produce
//! reads stdin, `topics create` never updates, errors name the cause,
//! out-of-range options are refused, no colour codes in pipes, and a
//! closed stderr is not a panic.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::cli::{cli_bin, weir, weir_at};
use crate::harness::TestServer;

fn json(s: &TestServer, args: &[&str]) -> Value {
    let argv: Vec<&str> = ["--output", "json"].iter().chain(args).copied().collect();
    weir(s, &argv, "").json()
}

#[test]
fn cli_read_finds_a_keyed_message_whatever_its_partition() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "orders", "--partitions", "3"], "").ok();
    // The README's quick start: customer-7 hashes to partition 1, and a
    // plain `weir read` still shows it.
    let produced = json(
        &s,
        &["produce", "orders", "{\"order\": 1}", "--key", "customer-7"],
    );
    let partition = produced["results"][0]["partition"].as_u64().unwrap();
    let page = json(&s, &["read", "orders"]);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["key"], "customer-7");
    assert_eq!(messages[0]["value"], serde_json::json!({"order": 1}));
    assert_eq!(messages[0]["partition"], partition);
    assert_eq!(page["next_offsets"][partition.to_string()], 1, "{page}");
    let text = weir(&s, &["read", "orders"], "");
    assert_eq!(
        text.ok().trim(),
        format!("{partition}:0 key=customer-7 {{\"order\":1}}")
    );
    assert!(text.stderr.contains("end of every partition"), "{text:?}");

    // Many keys over every partition: all read back, merged by timestamp.
    for i in 0..30 {
        let (value, key) = (format!("{{\"n\": {i}}}"), format!("k{i}"));
        weir(&s, &["produce", "orders", &value, "--key", &key], "").ok();
    }
    let page = json(&s, &["read", "orders", "--limit", "1000"]);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 31);
    let partitions: std::collections::BTreeSet<u64> = messages
        .iter()
        .map(|m| m["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(partitions.len(), 3, "keys spread over every partition");
    let times: Vec<u64> = messages
        .iter()
        .map(|m| m["timestamp"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "merged by timestamp"
    );
    let mut ns: Vec<u64> = messages[1..]
        .iter()
        .map(|m| m["value"]["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..30).collect::<Vec<u64>>());
    // --limit stops the merge; the next offsets say where to go on.
    let page = json(&s, &["read", "orders", "--limit", "5"]);
    assert_eq!(page["messages"].as_array().unwrap().len(), 5);
    let next: u64 = page["next_offsets"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(next, 5, "{page}");
    // --partition reads only that one; latest reads nothing.
    let one = json(
        &s,
        &["read", "orders", "--partition", &partition.to_string()],
    );
    assert!(one["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["partition"] == partition));
    assert_eq!(
        json(&s, &["read", "orders", "--from", "latest"])["messages"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Reading past the end says so.
    let past = weir(
        &s,
        &["read", "orders", "--partition", "0", "--offset", "1000"],
        "",
    );
    assert_eq!(past.ok(), "");
    assert!(
        past.stderr.contains("past the end of partition 0"),
        "{past:?}"
    );
    // Out of range is an error, not a clamp.
    weir(&s, &["read", "orders", "--limit", "0"], "").fails_with("--limit");
    weir(&s, &["consume", "orders", "x", "--max", "5000"], "").fails_with("1..=1000");
}

#[test]
fn cli_produce_reads_stdin_when_no_value_is_given() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "t"], "").ok();
    let run = weir(
        &s,
        &["--output", "json", "produce", "t", "--key", "k"],
        "a\n\n{\"n\": 2}\nc\n",
    );
    let results = run.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3, "{run:?}");
    let page = json(&s, &["read", "t", "--partition", "0"]);
    let values: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["value"])
        .collect();
    assert_eq!(
        values,
        [
            &serde_json::json!("a"),
            &serde_json::json!({"n": 2}),
            &serde_json::json!("c")
        ]
    );
    assert!(page["messages"][0]["key"] == "k");
}

#[test]
fn cli_produce_of_nothing_is_an_error() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "t"], "").ok();
    weir(&s, &["produce", "t"], "").fails_with("nothing produced: stdin had no non-empty lines");
    weir(&s, &["produce", "t"], "\n  \n").fails_with("nothing produced");
    let t = json(&s, &["topics", "describe", "t"]);
    assert_eq!(t["partitions"][0]["high_offset"], 0);
}

#[test]
fn cli_topics_create_never_updates_an_existing_topic() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "orders", "--partitions", "3"], "").ok();
    let again = weir(&s, &["topics", "create", "orders", "--partitions", "6"], "");
    again.fails_with("conflict");
    assert!(again.stderr.contains("exists already"), "{again:?}");
    assert!(
        again.stderr.contains("weir topics update orders"),
        "{again:?}"
    );
    let run = weir(
        &s,
        &[
            "--output",
            "json",
            "topics",
            "create",
            "orders",
            "--partitions",
            "6",
        ],
        "",
    );
    assert!(!run.status.success());
    let problem: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (problem["code"].as_str(), problem["status"].as_u64()),
        (Some("conflict"), Some(409))
    );
    assert_eq!(
        json(&s, &["topics", "describe", "orders"])["config"]["partitions"],
        3
    );

    // --if-not-exists: success, unchanged.
    let kept = json(
        &s,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "6",
            "--if-not-exists",
        ],
    );
    assert_eq!(kept["config"]["partitions"], 3);

    // Growing is an explicit update, with a warning about keys.
    let grown = weir(
        &s,
        &[
            "--output",
            "json",
            "topics",
            "update",
            "orders",
            "--partitions",
            "4",
        ],
        "",
    );
    assert_eq!(grown.json()["config"]["partitions"], 4);
    assert!(grown.stderr.contains("keys re-map"), "{grown:?}");
    weir(&s, &["topics", "update", "orders", "--partitions", "2"], "").fails_with("conflict");
    let retention = json(
        &s,
        &["topics", "update", "orders", "--retention-messages", "100"],
    );
    assert_eq!(retention["config"]["retention"]["max_messages"], 100);
    assert_eq!(
        retention["config"]["retention"]["max_age_ms"], 604_800_000u64,
        "the other limits keep their value"
    );
    // update never creates.
    weir(&s, &["topics", "update", "nope", "--partitions", "2"], "").fails_with("topic_not_found");
    weir(&s, &["topics", "describe", "nope"], "").fails_with("topic_not_found");
    weir(&s, &["topics", "update", "orders"], "").fails_with("nothing to update");
}

#[test]
fn cli_connection_errors_name_the_server_and_the_cause() {
    for args in [&["topics", "list"][..], &["tail", "orders"][..]] {
        let run = weir_at("http://127.0.0.1:1", args, "");
        run.fails_with("connection refused");
        assert!(run.stderr.contains("http://127.0.0.1:1"), "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
}

#[test]
fn cli_prints_no_colour_codes_into_pipes() {
    let s = TestServer::start();
    for args in [
        &["--help"][..],
        &["dlq", "list", "--help"][..],
        &["topics", "list"][..],
        &["read", "--no-such-flag"][..],
        &["topics", "describe", "nope"][..],
    ] {
        let run = weir(&s, args, "");
        assert!(
            !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
            "{args:?}: {run:?}"
        );
    }
}

/// A closed stderr (its reader gone) makes writes fail: the CLI must
/// still finish its work and exit with its own status, not a panic's 101.
#[test]
fn cli_survives_a_closed_stderr() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "t"], "").ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    let lines: String = (0..2000).map(|i| format!("{i}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let run = |args: &[&str]| {
        let mut child = Command::new(cli_bin())
            .arg("--server")
            .arg(s.url(""))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("WEIR_SERVER")
            .spawn()
            .unwrap();
        // Close the read end of stderr at once.
        drop(child.stderr.take());
        let _ = child.stdin.take().unwrap().write_all(b"");
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let path = file.to_str().unwrap();
    let (code, stdout) = run(&["produce", "t", "-f", path, "--batch", "100"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(stdout.lines().count(), 2000);
    let (code, _) = run(&["produce", "nope", "-f", path]);
    assert_eq!(code, Some(1), "an error exit, not a panic");
    let t = json(&s, &["topics", "describe", "t"]);
    assert_eq!(t["partitions"][0]["high_offset"], 2000);
}
