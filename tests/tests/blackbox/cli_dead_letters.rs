//! The `weir` CLI's subscription control against a real server: `dlq
//! list` through the dead-letter records (states agreeing with the
//! subscription's `dead_lettered`), filtered `dlq redrive` and `dlq purge`
//! with `--dry-run` and confirmation, `subs pause` / `subs resume`, the
//! breaker, TTL and push flags of `subs create` / `subs update`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::weir;
use crate::harness::TestServer;

/// `weir --output json args...`, parsed.
fn json(s: &TestServer, args: &[&str]) -> Value {
    let argv: Vec<&str> = ["--output", "json"].iter().chain(args).copied().collect();
    weir(s, &argv, "").json()
}

/// The subscription's `dead_lettered`.
fn dead_lettered(s: &TestServer, topic: &str, sub: &str) -> u64 {
    json(s, &["subs", "describe", topic, sub])["stats"]["dead_lettered"]
        .as_u64()
        .unwrap()
}

/// `dlq list --state <state>` (all states for `all`), as JSON.
fn listed(s: &TestServer, topic: &str, sub: &str, state: &str) -> Vec<Value> {
    let listing = json(s, &["dlq", "list", topic, sub, "--state", state]);
    listing["dead_letters"].as_array().unwrap().clone()
}

/// Waits (bounded) until the subscription counts `count` dead letters.
fn wait_for_dead_lettered(s: &TestServer, topic: &str, sub: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead_lettered(s, topic, sub) != count {
        assert!(
            Instant::now() < deadline,
            "{count} dead letters not counted: {}",
            dead_lettered(s, topic, sub)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `values` with `key` and nacks them once each with `reason`
/// (max attempts 1: each becomes a dead letter).
fn dead_letter(s: &TestServer, key: &str, values: &[&str], reason: &str) {
    let mut produce = vec!["produce", "orders", "--key", key];
    produce.extend(values);
    weir(s, &produce, "").ok();
    let count = values.len().to_string();
    let args = [
        "consume",
        "orders",
        "billing",
        "--nack",
        "--reason",
        reason,
        "--count",
        &count,
        "--wait-ms",
        "2000",
    ];
    weir(s, &args, "").ok();
}

#[test]
fn cli_dlq_lists_states_and_redrives_and_purges_with_filters() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "orders", "--partitions", "2"], "").ok();
    let args = [
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
    ];
    weir(&s, &args, "").ok();
    dead_letter(&s, "a", &["1", "2", "3"], "timeout: upstream slow");
    dead_letter(&s, "b", &["4", "5", "6"], "invalid payload");
    wait_for_dead_lettered(&s, "orders", "billing", 6);

    // The listing counts what the subscription counts.
    let waiting = listed(&s, "orders", "billing", "waiting");
    assert_eq!(waiting.len(), 6);
    for d in &waiting {
        assert_eq!(d["state"], "waiting");
        assert_eq!(d["attempts"], 1);
        assert!(d["dead_lettered_at"].as_u64().unwrap() > 0);
        assert!(d["message"]["value"].is_number(), "{d}");
    }

    // A dry run counts and samples, and changes nothing.
    let dry = json(
        &s,
        &[
            "dlq",
            "redrive",
            "orders",
            "billing",
            "--reason",
            "timeout",
            "--dry-run",
        ],
    );
    assert_eq!(dry["matched"], 3, "{dry}");
    assert_eq!(dry["redriven"], 0, "{dry}");
    assert_eq!(dry["sample"].as_array().unwrap().len(), 3, "{dry}");
    assert!(dry["sample"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["message"]["key"] == "a"));
    let text = weir(
        &s,
        &[
            "dlq",
            "redrive",
            "orders",
            "billing",
            "--reason-regex",
            "^time",
            "--dry-run",
        ],
        "",
    );
    assert!(
        text.ok()
            .starts_with("would redrive 3 dead letters to subscription billing of topic orders"),
        "{text:?}"
    );
    assert_eq!(dead_lettered(&s, "orders", "billing"), 6);

    // A filtered redrive with --max: two of the three timeouts.
    let text = weir(
        &s,
        &[
            "dlq", "redrive", "orders", "billing", "--reason", "timeout", "--max", "2",
        ],
        "",
    );
    assert_eq!(
        text.ok().trim(),
        "redrove 2 dead letters to subscription billing of topic orders"
    );
    assert_eq!(dead_lettered(&s, "orders", "billing"), 4);
    assert_eq!(listed(&s, "orders", "billing", "waiting").len(), 4);
    let redriven = listed(&s, "orders", "billing", "redriven");
    assert_eq!(redriven.len(), 2);
    assert!(redriven.iter().all(|d| d["message"]["key"] == "a"));
    // Every state by default, each row showing its state.
    let text = weir(&s, &["dlq", "list", "orders", "billing"], "");
    let out = text.ok();
    assert!(out.lines().next().unwrap().contains("STATE"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(" redriven ")).count(), 2);
    assert_eq!(out.lines().filter(|l| l.contains(" waiting ")).count(), 4);
    assert!(
        text.stderr
            .contains("6 dead letters (4 waiting, 2 redriven, 0 purged)"),
        "{text:?}"
    );
    // Time and attempt filters.
    assert_eq!(
        json(
            &s,
            &[
                "dlq",
                "list",
                "orders",
                "billing",
                "--since",
                "2999-01-01T00:00:00Z"
            ]
        )["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        json(
            &s,
            &["dlq", "list", "orders", "billing", "--until", "2999-01-01"]
        )["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        json(
            &s,
            &["dlq", "list", "orders", "billing", "--min-attempts", "2"]
        )["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let page = json(&s, &["dlq", "list", "orders", "billing", "--limit", "4"]);
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), 4);
    let cursor = page["next"].as_str().expect("a cursor after --limit");
    let rest = json(
        &s,
        &["dlq", "list", "orders", "billing", "--cursor", cursor],
    );
    assert_eq!(rest["dead_letters"].as_array().unwrap().len(), 2, "{rest}");

    // purge: a dry run, a refusal, then a confirmed purge of key b.
    let dry = json(
        &s,
        &[
            "dlq",
            "purge",
            "orders",
            "billing",
            "--key",
            "b",
            "--dry-run",
        ],
    );
    assert_eq!(
        (dry["matched"].as_u64(), dry["purged"].as_u64()),
        (Some(3), Some(0))
    );
    let refused = weir(
        &s,
        &["dlq", "purge", "orders", "billing", "--key", "b"],
        "n\n",
    );
    refused.fails_with("not confirmed");
    assert!(
        refused.stderr.contains("purge 3 waiting dead letters"),
        "{refused:?}"
    );
    assert_eq!(dead_lettered(&s, "orders", "billing"), 4);
    let purged = weir(
        &s,
        &["dlq", "purge", "orders", "billing", "--key", "b"],
        "y\n",
    );
    assert_eq!(
        purged.ok().trim(),
        "purged 3 dead letters of subscription billing of topic orders"
    );
    assert_eq!(dead_lettered(&s, "orders", "billing"), 1);
    assert_eq!(listed(&s, "orders", "billing", "purged").len(), 3);
    // --yes asks nothing; then nothing is left waiting.
    let all = json(&s, &["dlq", "purge", "orders", "billing", "--yes"]);
    assert_eq!(all["purged"], 1, "{all}");
    assert_eq!(dead_lettered(&s, "orders", "billing"), 0);
    assert!(listed(&s, "orders", "billing", "waiting").is_empty());
    assert_eq!(listed(&s, "orders", "billing", "all").len(), 6);
    let none = weir(&s, &["dlq", "purge", "orders", "billing"], "");
    none.ok();
    assert!(none.stderr.contains("nothing to purge"), "{none:?}");

    // The redriven ones were delivered again.
    let again = weir(
        &s,
        &[
            "--output",
            "json",
            "consume",
            "orders",
            "billing",
            "--until-empty",
            "--wait-ms",
            "500",
        ],
        "",
    )
    .json_lines();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|m| m["key"] == "a" && m["attempt"] == 1));
}

/// Without a dead-letter topic, dead letters are still listed, redriven
/// and purged (they are the subscription's records, not copies).
#[test]
fn cli_dlq_works_without_a_dead_letter_topic() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "orders"], "").ok();
    let args = [
        "subs",
        "create",
        "orders",
        "billing",
        "--start",
        "earliest",
        "--max-attempts",
        "1",
        "--no-dead-letter",
    ];
    let created = json(&s, &args);
    assert!(
        created["config"]["dead_letter_topic"].is_null(),
        "{created}"
    );
    let describe = weir(&s, &["subs", "describe", "orders", "billing"], "");
    assert!(describe.ok().contains("no copy"), "{describe:?}");
    dead_letter(&s, "k", &["1", "2"], "broken");
    wait_for_dead_lettered(&s, "orders", "billing", 2);
    assert_eq!(listed(&s, "orders", "billing", "waiting").len(), 2);
    weir(&s, &["topics", "describe", "orders.billing.dlq"], "").fails_with("topic_not_found");
    let r = json(&s, &["dlq", "redrive", "orders", "billing", "--max", "1"]);
    assert_eq!(r["redriven"], 1);
    assert_eq!(dead_lettered(&s, "orders", "billing"), 1);

    // The help says what really happens.
    let help = weir(&s, &["subs", "create", "--help"], "");
    let text = help.ok().replace(char::is_whitespace, " ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("no copy is made"), "{text}");
    assert!(
        text.contains("kept as a dead letter of the subscription"),
        "{text}"
    );
}

#[test]
fn cli_subs_pause_and_resume() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "orders"], "").ok();
    weir(
        &s,
        &["subs", "create", "orders", "billing", "--start", "earliest"],
        "",
    )
    .ok();
    weir(&s, &["produce", "orders", "1", "2"], "").ok();

    let paused = weir(
        &s,
        &[
            "subs",
            "pause",
            "orders",
            "billing",
            "--reason",
            "incident 42",
        ],
        "",
    );
    assert_eq!(
        paused.ok().trim(),
        "subscription billing of topic orders is paused: incident 42"
    );
    let info = json(&s, &["subs", "describe", "orders", "billing"]);
    assert_eq!(info["paused"], true);
    assert_eq!(info["paused_reason"], "incident 42");
    let text = weir(&s, &["subs", "describe", "orders", "billing"], "");
    assert!(
        text.ok().contains("state: paused (incident 42)"),
        "{text:?}"
    );
    let list = weir(&s, &["subs", "list", "orders"], "");
    let row = list.ok().lines().nth(1).unwrap().to_owned();
    assert!(row.contains(" paused "), "{row}");
    // Nothing is delivered while paused.
    let none = weir(
        &s,
        &[
            "consume",
            "orders",
            "billing",
            "--until-empty",
            "--wait-ms",
            "300",
        ],
        "",
    );
    assert_eq!(none.ok(), "");
    assert!(none.stderr.contains("0 messages acked"), "{none:?}");

    let resumed = json(&s, &["subs", "resume", "orders", "billing", "--redrive"]);
    assert_eq!(resumed["paused"], false, "{resumed}");
    let got = weir(
        &s,
        &[
            "--output",
            "json",
            "consume",
            "orders",
            "billing",
            "--count",
            "2",
            "--wait-ms",
            "2000",
        ],
        "",
    )
    .json_lines();
    assert_eq!(got.len(), 2);
    weir(&s, &["subs", "pause", "orders", "nope"], "").fails_with("subscription_not_found");
}

#[test]
fn cli_subs_update_sets_breaker_ttl_and_push() {
    let s = TestServer::start_with(&["--push-allow-networks", "127.0.0.0/8"]);
    weir(&s, &["topics", "create", "orders"], "").ok();
    // update never creates.
    weir(
        &s,
        &[
            "subs",
            "update",
            "orders",
            "billing",
            "--ack-timeout-ms",
            "5000",
        ],
        "",
    )
    .fails_with("subscription_not_found");
    weir(&s, &["subs", "create", "orders", "billing"], "").ok();

    let updated = json(
        &s,
        &[
            "subs",
            "update",
            "orders",
            "billing",
            "--breaker-max-dead-letters",
            "5",
            "--breaker-window-ms",
            "60000",
            "--breaker-cooldown-ms",
            "30000",
            "--message-ttl-ms",
            "3600000",
            "--push-url",
            "http://127.0.0.1:9/hook",
            "--push-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--push-header",
            "x-team=billing",
            "--push-batch",
            "10",
            "--push-timeout-ms",
            "2000",
        ],
    );
    let c = &updated["config"];
    assert_eq!(c["retry"]["circuit_breaker"]["max_dead_letters"], 5, "{c}");
    assert_eq!(c["retry"]["circuit_breaker"]["cooldown_ms"], 30000, "{c}");
    assert_eq!(
        c["retry"]["max_attempts"], 5,
        "the rest of the policy stays: {c}"
    );
    assert_eq!(c["message_ttl_ms"], 3_600_000, "{c}");
    assert_eq!(c["push"]["url"], "http://127.0.0.1:9/hook", "{c}");
    assert_eq!(c["push"]["batch"]["max_messages"], 10, "{c}");
    assert_eq!(c["push"]["timeout_ms"], 2000, "{c}");
    // Pause the push so that nothing is sent to the unused port.
    weir(&s, &["subs", "pause", "orders", "billing"], "").ok();

    let text = weir(&s, &["subs", "describe", "orders", "billing"], "");
    let out = text.ok();
    assert!(
        out.contains("circuit breaker: pauses after more than 5 dead letters within 60000 ms"),
        "{out}"
    );
    assert!(out.contains("message ttl: 3600000 ms"), "{out}");
    assert!(out.contains("push: http://127.0.0.1:9/hook"), "{out}");
    assert!(out.contains("secret=set"), "{out}");
    assert!(out.contains("previous_secret=unset"), "{out}");
    assert!(!out.contains("whsec_"), "the secret is never shown: {out}");

    let off = json(
        &s,
        &[
            "subs",
            "update",
            "orders",
            "billing",
            "--no-breaker",
            "--message-ttl-ms",
            "off",
            "--no-push",
        ],
    );
    let c = &off["config"];
    assert!(c["retry"]["circuit_breaker"].is_null(), "{c}");
    assert!(c["message_ttl_ms"].is_null(), "{c}");
    assert!(c["push"].is_null(), "{c}");
    // Flags that need others are refused before anything is sent.
    weir(
        &s,
        &[
            "subs",
            "update",
            "orders",
            "billing",
            "--push-secret",
            "whsec_x",
        ],
        "",
    )
    .fails_with("--push-url");
    weir(
        &s,
        &[
            "subs",
            "update",
            "orders",
            "billing",
            "--breaker-max-dead-letters",
            "5",
        ],
        "",
    )
    .fails_with("--breaker-window-ms");
}
