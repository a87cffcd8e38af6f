//! Observability end to end: produce, consume, nack, let a lease expire and
//! dead-letter against a real server, scrape `/metrics`, check the values,
//! and run `promtool check metrics` on the exposition.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::TestServer;
use crate::subs_helpers::*;

/// The value of the series `name{labels}` (labels in exposition order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn expect(text: &str, series: &str, value: f64) {
    let got =
        sample(text, series).unwrap_or_else(|| panic!("series {series} missing from:\n{text}"));
    assert_eq!(got, value, "{series}");
}

/// Runs `promtool check metrics` on an exposition; panics with its output
/// when it finds problems. Skips (with a note) only when promtool is not
/// installed — `make test` installs it (`make deps`).
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::env::var_os("WEIR_REQUIRE_PROMTOOL").is_none() =>
        {
            eprintln!("promtool not installed: skipping `promtool check metrics`");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn subscription_metrics_match_what_happened_and_pass_promtool() {
    let s = TestServer::start();
    s.create_topic("m", &json!({})).await;
    put_sub(
        &s,
        "m",
        "s",
        json!({"start": "earliest", "ack_timeout_ms": 200, "retry": retry(json!(2), 0)}),
        201,
    )
    .await;
    produce_n(&s, "m", 6, false).await;
    let b = pull(&s, "m", "s", json!({"max_messages": 6})).await;
    assert_eq!(b.len(), 6);
    ack(&s, "m", "s", &b[..3]).await;
    // One nack that retries, one permanent failure, one lease left to expire.
    nack(&s, "m", "s", &b[3..4], json!({"reason": "retry me"})).await;
    nack(
        &s,
        "m",
        "s",
        &b[4..5],
        json!({"retry": false, "reason": "poison"}),
    )
    .await;
    wait_for_messages(&s, "m.s.dlq", 1, Duration::from_secs(10)).await;
    // Redelivered after the nack and after the lease expiry.
    let again = drain(&s, "m", "s", 2, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 2);
    // Leave a backlog of 2 and one message in flight.
    produce_n(&s, "m", 3, false).await;
    let held = pull(&s, "m", "s", json!({"max_messages": 1})).await;
    assert_eq!(held.len(), 1);

    let text = s.get("/metrics").await.text;
    let l = r#"{subscription="s",topic="m"}"#;
    expect(
        &text,
        &format!("weir_subscription_deliveries_total{l}"),
        9.0,
    );
    expect(&text, &format!("weir_subscription_acks_total{l}"), 5.0);
    expect(&text, &format!("weir_subscription_nacks_total{l}"), 2.0);
    expect(
        &text,
        &format!("weir_subscription_dead_lettered_total{l}"),
        1.0,
    );
    expect(
        &text,
        r#"weir_subscription_redeliveries_total{reason="nack",subscription="s",topic="m"}"#,
        1.0,
    );
    expect(
        &text,
        r#"weir_subscription_redeliveries_total{reason="lease_expired",subscription="s",topic="m"}"#,
        1.0,
    );
    expect(
        &text,
        &format!("weir_subscription_backlog_messages{l}"),
        3.0,
    );
    expect(
        &text,
        &format!("weir_subscription_in_flight_messages{l}"),
        1.0,
    );
    expect(&text, &format!("weir_subscription_lag_messages{l}"), 2.0);
    expect(
        &text,
        &format!("weir_subscription_delayed_messages{l}"),
        0.0,
    );
    assert!(sample(
        &text,
        &format!("weir_subscription_oldest_unacked_age_seconds{l}")
    )
    .is_some());
    expect(&text, r#"weir_messages_produced_total{topic="m"}"#, 9.0);
    expect(
        &text,
        r#"weir_messages_produced_total{topic="m.s.dlq"}"#,
        1.0,
    );
    expect(&text, r#"weir_topic_messages{topic="m"}"#, 9.0);
    expect(&text, "weir_ready", 1.0);
    assert!(
        sample(&text, r#"weir_http_requests_total{method="POST",route="/v1/topics/{topic}/subscriptions/{sub}/pull",status_class="2xx"}"#).is_some_and(|v| v >= 3.0),
        "pull requests counted by matched route"
    );
    assert!(sample(&text, "weir_wal_syncs_total").is_some_and(|v| v > 0.0));
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    promtool_check(&text);

    // Deleting the subscription removes its series.
    s.delete(&sub_path("m", "s", "")).await.expect_status(204);
    let text = s.get("/metrics").await.text;
    assert!(
        !text.contains(r#"subscription="s""#),
        "series of a deleted subscription remain"
    );
}

#[tokio::test]
async fn per_topic_labels_can_be_switched_off() {
    let s = TestServer::start_with(&["--metrics-per-topic", "false"]);
    for t in ["a", "b"] {
        s.create_topic(t, &json!({})).await;
        put_sub(&s, t, "s", json!({"start": "earliest"}), 201).await;
        produce_n(&s, t, 2, false).await;
    }
    let text = s.get("/metrics").await.text;
    expect(&text, r#"weir_messages_produced_total{topic="_all"}"#, 4.0);
    expect(
        &text,
        r#"weir_subscription_backlog_messages{subscription="_all",topic="_all"}"#,
        4.0,
    );
    assert!(!text.contains(r#"topic="a""#), "no per-topic series");
    promtool_check(&text);
}

#[tokio::test]
async fn label_names_beyond_the_cap_are_aggregated_under_other() {
    let s = TestServer::start_with(&["--metrics-max-label-names", "2"]);
    for t in ["a", "b", "c", "d"] {
        s.create_topic(t, &json!({})).await;
        produce_n(&s, t, 2, false).await;
    }
    let text = s.get("/metrics").await.text;
    expect(&text, r#"weir_messages_produced_total{topic="a"}"#, 2.0);
    expect(&text, r#"weir_messages_produced_total{topic="b"}"#, 2.0);
    expect(
        &text,
        r#"weir_messages_produced_total{topic="_other"}"#,
        4.0,
    );
    expect(&text, r#"weir_topic_messages{topic="_other"}"#, 4.0);
    assert!(!text.contains(r#"topic="c""#), "no series beyond the cap");
    promtool_check(&text);
}
