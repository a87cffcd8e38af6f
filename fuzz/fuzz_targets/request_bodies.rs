//! Fuzzes every HTTP request body: the first byte picks a body type, the
//! rest is the body, read by the server's own JSON reader
//! (`weir_server::api::extract::parse_json`, with its integer rules and
//! field-named errors), then put through the validation the server runs
//! that is reachable from a public API: produce (`limits::check_message`,
//! `broker::produce::prepare`), topic and subscription specs (their
//! `apply_spec`, on creation and as an update), pull numbers, ack ids and
//! settle checks, names. Never a panic, whatever the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::{
    AckRequest, ExtendRequest, NackRequest, PauseRequest, ProduceRequest, PullRequest,
    PurgeRequest, RedriveRequest, ResumeRequest, Retention, SeekRequest, SubscriptionSpec,
    TopicConfig, TopicSpec,
};
use weir_server::api::backups::BackupRequest;
use weir_server::api::extract::parse_json;
use weir_server::broker::subscription::config as sub_config;
use weir_server::broker::subscription::pull::check_pull;
use weir_server::broker::subscription::settle::{parse_ack_ids, Settle};
use weir_server::broker::{check_name, produce, topic};

/// The time `deliver_at` is checked against.
const NOW: u64 = 1_764_300_000_000;

fn topic_config() -> TopicConfig {
    TopicConfig {
        partitions: 3,
        retention: Retention::default(),
        max_message_bytes: 1 << 20,
        dedupe_window_ms: 60_000,
        replication_factor: 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 13 {
        0 => {
            if let Ok(r) = parse_json::<ProduceRequest>(body) {
                for (i, m) in r.messages.iter().enumerate() {
                    let _ = weir_protocol::limits::check_message(m, i, NOW);
                }
                let _ = produce::prepare(r.messages, &topic_config(), NOW);
            }
        }
        1 => {
            if let Ok(spec) = parse_json::<TopicSpec>(body) {
                if let Ok(created) = topic::apply_spec(&spec, None) {
                    let _ = topic::apply_spec(&spec, Some(&created));
                }
                let _ = topic::apply_spec(&spec, Some(&topic_config()));
            }
        }
        2 => {
            if let Ok(spec) = parse_json::<SubscriptionSpec>(body) {
                if let Ok(created) = sub_config::apply_spec("orders", "billing", &spec, None) {
                    let _ = sub_config::check_retry(&created.retry);
                    let _ = sub_config::apply_spec("orders", "billing", &spec, Some(&created));
                }
            }
        }
        3 => {
            if let Ok(r) = parse_json::<PullRequest>(body) {
                let _ = check_pull(r.max_messages, r.wait_ms);
            }
        }
        4 => {
            if let Ok(r) = parse_json::<AckRequest>(body) {
                let _ = parse_ack_ids(&r.ack_ids);
                let _ = Settle::Ack.check();
            }
        }
        5 => {
            if let Ok(r) = parse_json::<NackRequest>(body) {
                let _ = parse_ack_ids(&r.ack_ids);
                let _ = Settle::Nack {
                    reason: r.reason,
                    delay_ms: r.delay_ms,
                    retry: r.retry.unwrap_or(true),
                }
                .check();
            }
        }
        6 => {
            if let Ok(r) = parse_json::<ExtendRequest>(body) {
                let _ = parse_ack_ids(&r.ack_ids);
                let _ = Settle::Extend {
                    lease_ms: r.ack_timeout_ms,
                }
                .check();
            }
        }
        7 => {
            let _ = parse_json::<SeekRequest>(body);
        }
        8 => {
            let _ = parse_json::<RedriveRequest>(body);
        }
        9 => {
            let _ = parse_json::<PurgeRequest>(body);
        }
        10 => {
            let _ = parse_json::<PauseRequest>(body);
            let _ = parse_json::<ResumeRequest>(body);
        }
        11 => {
            let _ = parse_json::<BackupRequest>(body);
        }
        _ => {
            // Topic and subscription names arrive in paths.
            if let Ok(name) = std::str::from_utf8(body) {
                let _ = check_name("topic", name);
            }
        }
    }
});
