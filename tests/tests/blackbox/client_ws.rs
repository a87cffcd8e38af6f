//! The client library's WebSocket API against the real server:
//! `Client::subscribe_ws` (credit, acks, nacks, close), `Client::tail_ws`
//! and `Client::publisher_ws` (pipelined publishes), and errors that keep
//! the server's stable code.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use weir_client::{
    Client, Error, ErrorCode, NackRequest, ProduceMessage, ProduceMessageExt, PullRequest, Refill,
    SubscribeOptions, SubscriptionSpec, TailFrom, TopicSpec,
};

use crate::harness::TestServer;

/// Longest wait for one pushed item.
const ITEM_TIMEOUT: Duration = Duration::from_secs(15);
/// How long "nothing more arrives" is watched for.
const SILENCE: Duration = Duration::from_millis(500);

fn client(s: &TestServer) -> Client {
    Client::new(&s.url("")).unwrap()
}

/// A topic with `partitions`, and a queue subscription `sub` from the
/// earliest message that redelivers a nacked message at once.
async fn topic_and_sub(client: &Client, topic: &str, partitions: u32, sub: Option<&str>) {
    let spec = TopicSpec {
        partitions: Some(partitions),
        ..TopicSpec::default()
    };
    client.create_topic(topic, &spec).await.unwrap();
    if let Some(sub) = sub {
        let spec: SubscriptionSpec = serde_json::from_value(json!({
            "mode": "queue", "start": "earliest",
            "retry": {"max_attempts": null,
                      "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}
        }))
        .unwrap();
        client.create_subscription(topic, sub, &spec).await.unwrap();
    }
}

fn values(range: std::ops::Range<u64>) -> Vec<ProduceMessage> {
    range
        .map(|i| ProduceMessage::json(&json!({ "i": i })).unwrap())
        .collect()
}

fn value_of(message: &weir_client::Message) -> Value {
    serde_json::from_str(message.value.as_ref().unwrap().get()).unwrap()
}

/// The next item of a stream, which must come within `ITEM_TIMEOUT`.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(ITEM_TIMEOUT, stream.next())
        .await
        .expect("no item within the timeout")
}

/// Asserts the stream yields nothing for a while.
async fn expect_silence<S: Stream + Unpin>(stream: &mut S)
where
    S::Item: std::fmt::Debug,
{
    if let Ok(item) = tokio::time::timeout(SILENCE, stream.next()).await {
        panic!("unexpected item: {item:?}");
    }
}

#[tokio::test]
async fn a_subscription_stream_receives_produced_messages_and_acks_them() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 2, Some("q")).await;
    // Credit far below the message count: flowing on depends on refill.
    let options = SubscribeOptions {
        consumer: Some("w1".into()),
        credit: 4,
        refill: Refill::OnYield,
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "q", options).await.unwrap();
    c.produce("t", values(0..30)).await.unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 30 {
        let m = next(&mut sub).await.expect("stream ended").unwrap();
        assert_eq!(m.attempt, 1);
        seen.insert(value_of(&m.message)["i"].as_u64().unwrap());
        let response = sub.ack(vec![m.ack_id]).await.unwrap();
        assert_eq!((response.acked, response.unknown.len()), (1, 0));
    }
    assert_eq!(seen, (0..30).collect());
    // Confirmed acks are durable: the backlog is empty at once.
    let stats = c.subscription("t", "q").await.unwrap().stats;
    assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{stats:?}");
    sub.close().await;
}

#[tokio::test]
async fn without_refill_only_the_granted_credit_arrives() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 1, Some("q")).await;
    c.produce("t", values(0..5)).await.unwrap();
    let options = SubscribeOptions {
        credit: 2,
        refill: Refill::Manual,
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "q", options).await.unwrap();
    let first = [next(&mut sub).await, next(&mut sub).await];
    let mut ids = Vec::new();
    for m in first {
        ids.push(m.unwrap().unwrap().ack_id);
    }
    // Acks do not restore credit.
    assert_eq!(sub.ack(ids).await.unwrap().acked, 2);
    expect_silence(&mut sub).await;
    sub.add_credit(1);
    let third = next(&mut sub).await.unwrap().unwrap();
    assert_eq!(value_of(&third.message), json!({"i": 2}));
    expect_silence(&mut sub).await;
    let stats = c.subscription("t", "q").await.unwrap().stats;
    assert_eq!((stats.backlog, stats.in_flight), (3, 1), "{stats:?}");
}

#[tokio::test]
async fn confirmations_are_not_held_up_by_messages_nobody_polls() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 1, Some("q")).await;
    c.produce("t", values(0..6)).await.unwrap();
    // A channel of one message, then five more granted by hand.
    let options = SubscribeOptions {
        credit: 1,
        refill: Refill::Manual,
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "q", options).await.unwrap();
    let first = next(&mut sub).await.unwrap().unwrap();
    sub.add_credit(5);
    // Wait until the server has sent them all (leased: in flight).
    let deadline = std::time::Instant::now() + ITEM_TIMEOUT;
    while c.subscription("t", "q").await.unwrap().stats.in_flight < 6 {
        assert!(std::time::Instant::now() < deadline, "not all sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The stream is not polled; its confirmation still arrives.
    let acked = tokio::time::timeout(ITEM_TIMEOUT, sub.ack(vec![first.ack_id]))
        .await
        .expect("ack confirmation held up behind unread messages")
        .unwrap();
    assert_eq!(acked.acked, 1);
    let mut rest = Vec::new();
    for _ in 0..5 {
        rest.push(
            value_of(&next(&mut sub).await.unwrap().unwrap().message)["i"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(rest, vec![1, 2, 3, 4, 5], "in order, none lost");
}

#[tokio::test]
async fn a_nacked_message_is_redelivered_as_attempt_two() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 1, Some("q")).await;
    c.produce("t", values(0..1)).await.unwrap();
    let mut sub = c
        .subscribe_ws("t", "q", SubscribeOptions::default())
        .await
        .unwrap();
    let first = next(&mut sub).await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    let nacked = sub
        .nack(NackRequest {
            ack_ids: vec![first.ack_id.clone()],
            reason: Some("try again".into()),
            ..NackRequest::default()
        })
        .await
        .unwrap();
    assert_eq!((nacked.acked, nacked.unknown.len()), (1, 0));
    let again = next(&mut sub).await.unwrap().unwrap();
    assert_eq!(again.attempt, 2);
    assert_eq!(again.message.offset, first.message.offset);
    // The old delivery's id is spent; the new one settles it.
    let stale = sub.ack(vec![first.ack_id.clone()]).await.unwrap();
    assert_eq!(stale.unknown, vec![first.ack_id]);
    assert_eq!(sub.ack(vec![again.ack_id]).await.unwrap().acked, 1);
    assert_eq!(c.subscription("t", "q").await.unwrap().stats.backlog, 0);
}

#[tokio::test]
async fn closing_the_subscription_releases_unsettled_messages() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 1, Some("q")).await;
    c.produce("t", values(0..1)).await.unwrap();
    // No credit left once the message is in: with credit left, the server
    // keeps a delivery long poll running and releases the socket's leases
    // only when it ends (up to 5 s later).
    let options = SubscribeOptions {
        credit: 1,
        refill: Refill::Manual,
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "q", options).await.unwrap();
    let leased = next(&mut sub).await.unwrap().unwrap();
    sub.close().await;
    let pull = PullRequest {
        max_messages: Some(10),
        wait_ms: Some(5_000),
        consumer: None,
    };
    let again = c.pull("t", "q", &pull).await.unwrap();
    assert_eq!(again.len(), 1, "released for redelivery");
    assert_eq!(again[0].message.offset, leased.message.offset);
    assert_eq!(again[0].attempt, 2);
}

#[tokio::test]
async fn deleting_the_subscription_ends_the_stream_with_its_code() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 1, Some("q")).await;
    let mut sub = c
        .subscribe_ws("t", "q", SubscribeOptions::default())
        .await
        .unwrap();
    let acker = sub.acker();
    c.delete_subscription("t", "q").await.unwrap();
    let err = next(&mut sub).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SubscriptionNotFound), "{err}");
    assert!(next(&mut sub).await.is_none(), "the stream ends");
    // Settling on the dead socket fails with the same reason.
    let late = acker.ack(vec!["x".into()]).await.unwrap_err();
    assert_eq!(late.code(), Some(ErrorCode::SubscriptionNotFound), "{late}");
}

#[tokio::test]
async fn the_tail_sees_messages_produced_over_http() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 3, None).await;
    c.produce("t", values(0..2)).await.unwrap();
    let mut latest = c.tail_ws("t", TailFrom::Latest).await.unwrap();
    let mut earliest = c.tail_ws("t", TailFrom::Earliest).await.unwrap();
    c.produce("t", values(2..8)).await.unwrap();
    let mut tailed = BTreeSet::new();
    for _ in 0..6 {
        let m = next(&mut latest).await.unwrap().unwrap();
        assert_eq!(m.topic, "t");
        tailed.insert(value_of(&m)["i"].as_u64().unwrap());
    }
    assert_eq!(tailed, (2..8).collect(), "only what came after the open");
    expect_silence(&mut latest).await;
    let mut everything = BTreeSet::new();
    for _ in 0..8 {
        let m = next(&mut earliest).await.unwrap().unwrap();
        everything.insert(value_of(&m)["i"].as_u64().unwrap());
    }
    assert_eq!(everything, (0..8).collect());
    latest.close().await;
    // Deleting the topic ends a tail with its code.
    c.delete_topic("t").await.unwrap();
    let err = next(&mut earliest).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    assert!(next(&mut earliest).await.is_none());
}

#[tokio::test]
async fn concurrent_publishes_share_one_socket_and_land_where_they_say() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 2, None).await;
    let publisher = c.publisher_ws("t").await.unwrap();
    let batches: Vec<Vec<ProduceMessage>> = (0..20u64)
        .map(|i| {
            (0..=i % 3)
                .map(|j| {
                    let mut m = ProduceMessage::json(&json!({"i": i, "j": j})).unwrap();
                    m.partition = Some(u32::try_from((i + j) % 2).unwrap());
                    m
                })
                .collect()
        })
        .collect();
    let sent: Vec<Vec<Value>> = batches
        .iter()
        .map(|b| {
            b.iter()
                .map(|m| serde_json::from_str(m.value.as_ref().unwrap().get()).unwrap())
                .collect()
        })
        .collect();
    let replies = join_all(batches.into_iter().map(|b| publisher.publish(b))).await;
    let mut positions = BTreeSet::new();
    for (values, reply) in sent.iter().zip(replies) {
        let results = reply.unwrap();
        assert_eq!(results.len(), values.len());
        for (value, result) in values.iter().zip(results) {
            assert!(!result.duplicate);
            assert!(
                positions.insert((result.partition, result.offset)),
                "unique"
            );
            let page = c
                .read("t", result.partition, result.offset, 1)
                .await
                .unwrap();
            assert_eq!(&value_of(&page.messages[0]), value, "{result:?}");
        }
    }
    assert_eq!(positions.len(), sent.iter().map(Vec::len).sum::<usize>());
    // A refused request fails alone, with its code; the socket goes on.
    let err = publisher.publish(Vec::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest), "{err}");
    let ok = publisher.publish(values(0..1)).await.unwrap();
    assert_eq!(ok.len(), 1);
    // `close` consumes the handle it is called on and closes every clone.
    publisher.clone().close().await;
    let closed = publisher.publish(values(0..1)).await.unwrap_err();
    assert!(matches!(closed, Error::SocketClosed { .. }), "{closed}");
}

#[tokio::test]
async fn refused_sockets_and_bad_requests_keep_the_stable_code() {
    let s = TestServer::start();
    let c = client(&s);
    topic_and_sub(&c, "t", 1, Some("q")).await;
    let missing = c
        .subscribe_ws("t", "nope", SubscribeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Some(ErrorCode::SubscriptionNotFound),
        "{missing}"
    );
    let no_topic = c.tail_ws("nope", TailFrom::Latest).await.unwrap_err();
    assert_eq!(
        no_topic.code(),
        Some(ErrorCode::TopicNotFound),
        "{no_topic}"
    );
    let no_topic = c.publisher_ws("nope").await.unwrap_err();
    assert_eq!(
        no_topic.code(),
        Some(ErrorCode::TopicNotFound),
        "{no_topic}"
    );
    let bad_consumer = SubscribeOptions {
        consumer: Some("not a name!".into()),
        ..SubscribeOptions::default()
    };
    let err = c.subscribe_ws("t", "q", bad_consumer).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidName), "{err}");
    // An error frame answers its own request; the socket stays usable.
    let mut sub = c
        .subscribe_ws("t", "q", SubscribeOptions::default())
        .await
        .unwrap();
    let err = sub.ack(vec!["not-an-ack-id".into()]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest), "{err}");
    c.produce("t", values(0..1)).await.unwrap();
    let m = next(&mut sub).await.unwrap().unwrap();
    assert_eq!(sub.ack(vec![m.ack_id]).await.unwrap().acked, 1);
    // An unreachable server is a transport failure, retryable.
    let gone = Client::new("http://127.0.0.1:1").unwrap();
    let err = gone.tail_ws("t", TailFrom::Latest).await.unwrap_err();
    assert!(matches!(err, Error::WebSocket(_)), "{err}");
    assert!(err.is_transient());
}
