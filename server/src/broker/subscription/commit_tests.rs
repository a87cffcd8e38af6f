//! A commit that fails never leaves the subscription's memory ahead of the
//! store: the state is reloaded and the work is done again, so a message
//! is neither lost nor stuck (regression tests of the commit rules).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use weir_protocol::{ProduceMessage, SubscriptionSpec, TopicSpec};

use super::pull::PullParams;
use super::settle::Settle;
use crate::broker::error::BrokerError;
use crate::broker::read::ReadFrom;
use crate::broker::Broker;
use crate::storage::{FsyncMode, Store, StoreOptions};

async fn broker() -> (Arc<Broker>, Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        fsync: FsyncMode::Never,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), &options).unwrap();
    let broker = Broker::open(store.clone(), Default::default()).unwrap();
    (broker, store, dir)
}

fn spec(json: &str) -> SubscriptionSpec {
    serde_json::from_str(json).unwrap()
}

fn message(value: &str) -> ProduceMessage {
    serde_json::from_str(&format!(r#"{{"value": "{value}"}}"#)).unwrap()
}

fn pull_params() -> PullParams {
    PullParams {
        max_messages: 10,
        wait_ms: 0,
        consumer: None,
        holder: None,
    }
}

/// The dead-letter move (copy + settle) fails to commit once: the move is
/// done again and lands exactly once; the message is not redelivered.
#[tokio::test]
async fn a_failed_dead_letter_move_is_done_again() {
    let (broker, store, _dir) = broker().await;
    let now = broker.now();
    broker
        .put_topic("t", &TopicSpec::default(), now)
        .await
        .unwrap();
    broker
        .put_topic("dlq", &TopicSpec::default(), now)
        .await
        .unwrap();
    let dlq_id = broker.topic("dlq").unwrap().id();
    broker
        .put_subscription(
            "t",
            "q",
            &spec(r#"{"start": "earliest", "dead_letter_topic": "dlq"}"#),
            now,
        )
        .await
        .unwrap();
    broker
        .produce("t", vec![message("poison")], now)
        .await
        .unwrap();
    let sub = broker.topic("t").unwrap().subscription("q").unwrap();
    let got = sub.pull(pull_params()).await.unwrap();
    assert_eq!(got.len(), 1);
    // The next write that appends to the dead-letter topic fails.
    *store.writer_stats().fail_appends.lock().unwrap() = Some((dlq_id, 1));
    let nack = Settle::Nack {
        reason: Some("bad".into()),
        delay_ms: None,
        retry: false,
    };
    let mut ack_id = got[0].ack_id.clone();
    let mut tries = 0;
    let answer = loop {
        match sub.settle(&[ack_id.clone()], nack.clone()).await {
            Ok(answer) => break answer,
            // The group commit merged the nack with the failing
            // dead-letter append: it failed too, the state was reloaded
            // and the message comes again; nack it again.
            Err(BrokerError::Unavailable) if tries < 5 => {
                tries += 1;
                let mut again = Vec::new();
                for _ in 0..100 {
                    again = sub.pull(pull_params()).await.unwrap();
                    if !again.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ack_id = again.first().expect("redelivered").ack_id.clone();
            }
            Err(e) => panic!("nack failed: {e}"),
        }
    };
    assert_eq!(answer.acked, 1);
    let mut copies = Vec::new();
    for _ in 0..100 {
        copies = broker
            .read("dlq", 0, ReadFrom::Offset(0), 100, 0)
            .await
            .unwrap()
            .messages;
        if !copies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *store.writer_stats().fail_appends.lock().unwrap(),
        Some((dlq_id, 0)),
        "the failure was injected"
    );
    assert_eq!(copies.len(), 1, "the move landed after its failed commit");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copies = broker
        .read("dlq", 0, ReadFrom::Offset(0), 100, 0)
        .await
        .unwrap()
        .messages;
    assert_eq!(copies.len(), 1, "exactly once");
    assert!(sub.pull(pull_params()).await.unwrap().is_empty());
    assert_eq!(sub.info().await.unwrap().stats.dead_lettered, 1);
}

/// Retention whose delete fails to commit moves nothing: readers and
/// subscriptions do not skip the messages it did not delete.
#[tokio::test]
async fn a_failed_retention_delete_skips_nothing() {
    let (broker, store, _dir) = broker().await;
    let now = broker.now();
    let retention: TopicSpec =
        serde_json::from_str(r#"{"retention": {"max_messages": 5}}"#).unwrap();
    broker.put_topic("t", &retention, now).await.unwrap();
    let t_id = broker.topic("t").unwrap().id();
    broker
        .put_subscription("t", "q", &spec(r#"{"start": "earliest"}"#), now)
        .await
        .unwrap();
    let values: Vec<ProduceMessage> = (0..10).map(|i| message(&format!("m{i}"))).collect();
    broker.produce("t", values, now).await.unwrap();
    *store.writer_stats().fail_appends.lock().unwrap() = Some((t_id, 1));
    assert!(broker.enforce_retention(now).await.is_err());
    assert_eq!(broker.topic("t").unwrap().partitions()[0].low(), 0);
    let sub = broker.topic("t").unwrap().subscription("q").unwrap();
    let got = sub
        .pull(PullParams {
            max_messages: 100,
            ..pull_params()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 10, "a failed retention must not skip messages");
    // The next pass deletes for real.
    assert_eq!(broker.enforce_retention(now).await.unwrap(), 5);
    assert_eq!(broker.topic("t").unwrap().partitions()[0].low(), 5);
}

/// N dead letters cost a few commits, not N serial fsyncs: the timer moves
/// them in batches.
#[tokio::test]
async fn dead_letter_moves_are_batched() {
    let (broker, store, _dir) = broker().await;
    let now = broker.now();
    broker
        .put_topic("t", &TopicSpec::default(), now)
        .await
        .unwrap();
    broker
        .put_topic("dlq", &TopicSpec::default(), now)
        .await
        .unwrap();
    broker
        .put_subscription(
            "t",
            "q",
            &spec(r#"{"start": "earliest", "dead_letter_topic": "dlq"}"#),
            now,
        )
        .await
        .unwrap();
    let values: Vec<ProduceMessage> = (0..200).map(|i| message(&format!("m{i}"))).collect();
    broker.produce("t", values, now).await.unwrap();
    let sub = broker.topic("t").unwrap().subscription("q").unwrap();
    let got = sub
        .pull(PullParams {
            max_messages: 1000,
            ..pull_params()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 200);
    let ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
    let before = store
        .writer_stats()
        .batches
        .load(std::sync::atomic::Ordering::SeqCst);
    let nack = Settle::Nack {
        reason: Some("bad".into()),
        delay_ms: None,
        retry: false,
    };
    assert_eq!(sub.settle(&ids, nack).await.unwrap().acked, 200);
    let mut copies = 0;
    for _ in 0..100 {
        copies = broker
            .read("dlq", 0, ReadFrom::Offset(0), 1000, 0)
            .await
            .unwrap()
            .messages
            .len();
        if copies == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(copies, 200);
    let batches = store
        .writer_stats()
        .batches
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert!(batches <= 10, "{batches} commits for 200 dead letters");
}
