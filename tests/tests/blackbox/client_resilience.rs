//! The client when the network or the server misbehaves, against real
//! servers behind a [`Proxy`]: a subscription socket that reconnects and
//! resumes after a restart, half-open sockets noticed by keepalive (a
//! reconnect for subscriptions, a transient error instead of a stall for
//! tails), producer batches retried after a timeout without duplicates,
//! rate limits waited out (`Retry-After`), and all of it over TLS.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::json;
use weir_client::{
    Client, Error, MetricsHook, Operation, OperationEvent, ProduceMessage, ProduceMessageExt,
    ProducerConfig, PullOptions, Reconnect, RetryBackoff, SubscribeOptions, SubscriptionSpec,
    TailFrom, TopicSpec,
};

use crate::client_proxy::Proxy;
use crate::harness::TestServer;

/// Longest wait for any one expected event.
const WAIT: Duration = Duration::from_secs(20);

/// Quick reconnects for tests.
fn quick_reconnect() -> Option<Reconnect> {
    Some(Reconnect {
        backoff: RetryBackoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            jitter: 0.5,
        },
        max_attempts: None,
    })
}

/// A client through `proxy` whose sockets ping every 200 ms and give up
/// after 1 s of silence.
fn keepalive_client(proxy: &Proxy, scheme: &str) -> weir_client::ClientBuilder {
    Client::builder(&proxy.url(scheme))
        .ws_ping_interval(Duration::from_millis(200))
        .ws_idle_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(2))
}

async fn topic_and_queue(c: &Client, topic: &str, sub: &str) {
    let spec = TopicSpec::default();
    retrying(|| c.create_topic(topic, &spec)).await;
    let spec: SubscriptionSpec = serde_json::from_value(json!({
        "mode": "queue", "start": "earliest",
        "retry": {"max_attempts": null,
                  "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}
    }))
    .unwrap();
    retrying(|| c.create_subscription(topic, sub, &spec)).await;
}

/// Runs `call` until it succeeds, waiting out transient failures (a
/// restarting server, a rate limit), bounded by [`WAIT`].
async fn retrying<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                let pause = e.retry_after().unwrap_or(Duration::from_millis(100));
                tokio::time::sleep(pause).await;
            }
            Err(e) => panic!("call failed: {e}"),
        }
    }
}

fn values(range: std::ops::Range<u64>) -> Vec<ProduceMessage> {
    range
        .map(|i| ProduceMessage::json(&json!({ "i": i })).unwrap())
        .collect()
}

/// Takes messages from `stream`, acking each, until every value of
/// `expected` was acked (redeliveries allowed); bounded by [`WAIT`].
async fn ack_all<S>(stream: &mut S, expected: std::ops::Range<u64>)
where
    S: Stream<Item = Result<weir_client::Received, Error>> + Unpin,
{
    ack_until(stream, &mut BTreeSet::new(), expected).await;
}

/// [`ack_all`], counting values acked before (in `acked`) as done.
async fn ack_until<S>(stream: &mut S, acked: &mut BTreeSet<u64>, expected: std::ops::Range<u64>)
where
    S: Stream<Item = Result<weir_client::Received, Error>> + Unpin,
{
    let deadline = Instant::now() + WAIT;
    while !expected.clone().all(|i| acked.contains(&i)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("acked only {acked:?} of {expected:?}"))
            .expect("the stream ended")
            .unwrap();
        let i = message.json::<serde_json::Value>().unwrap()["i"]
            .as_u64()
            .unwrap();
        match message.ack().await {
            Ok(()) => {
                acked.insert(i);
            }
            // Leased to a socket that died meanwhile: it comes again.
            Err(Error::LeaseLost { .. }) => {}
            Err(e) => panic!("ack of {i} failed: {e}"),
        }
    }
}

/// Polls `done` every 50 ms until it holds, bounded by [`WAIT`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_stream_resumes_after_a_server_restart() {
    let mut s = TestServer::start();
    let proxy = Proxy::start(&s.url("")).await;
    let c = keepalive_client(&proxy, "http").build().unwrap();
    topic_and_queue(&c, "t", "q").await;
    retrying(|| c.produce("t", values(0..10))).await;
    let options = SubscribeOptions {
        credit: 4,
        reconnect: quick_reconnect(),
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "q", options).await.unwrap();
    let mut acked = BTreeSet::new();
    ack_until(&mut sub, &mut acked, 0..5).await;

    // The server goes away and comes back on another port; the proxy
    // follows it, as a load balancer would.
    tokio::task::block_in_place(|| s.restart());
    proxy.retarget(&s.url(""));
    retrying(|| c.produce("t", values(10..20))).await;
    ack_until(&mut sub, &mut acked, 0..20).await;
    assert!(sub.reconnects() >= 1, "the socket was replaced");
    let stats = c.subscription("t", "q").await.unwrap().stats;
    assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{stats:?}");
    sub.close().await;
}

#[tokio::test]
async fn a_half_open_subscription_socket_is_noticed_and_replaced() {
    // The server also gives up on the silent socket soon, so that what it
    // leased there comes back quickly.
    let s = TestServer::start_with(&[
        "--ws-ping-interval-ms",
        "200",
        "--ws-idle-timeout-ms",
        "1000",
    ]);
    let proxy = Proxy::start(&s.url("")).await;
    let c = keepalive_client(&proxy, "http").build().unwrap();
    let direct = Client::new(&s.url("")).unwrap();
    topic_and_queue(&direct, "t", "q").await;
    let options = SubscribeOptions {
        reconnect: quick_reconnect(),
        ..SubscribeOptions::default()
    };
    let mut sub = c.subscribe_ws("t", "q", options).await.unwrap();
    direct.produce("t", values(0..1)).await.unwrap();
    ack_all(&mut sub, 0..1).await;

    // The connection goes silent without closing: no FIN, no RST.
    let accepted = proxy.accepted();
    proxy.freeze();
    eventually("the client reconnects", || sub.reconnects() >= 1).await;
    assert!(proxy.accepted() > accepted, "a new connection was opened");
    direct.produce("t", values(1..4)).await.unwrap();
    ack_all(&mut sub, 1..4).await;
    sub.close().await;
}

#[tokio::test]
async fn a_reconnect_refused_with_retry_after_waits_that_long() {
    // One request per second: the reconnect right after a cut is refused
    // with 429 and `Retry-After: 1`.
    let s = TestServer::start_with(&["--rate-limit-requests-per-s", "1"]);
    let proxy = Proxy::start(&s.url("")).await;
    let c = keepalive_client(&proxy, "http").build().unwrap();
    topic_and_queue(&c, "t", "q").await;
    let options = SubscribeOptions {
        renew: None,
        reconnect: quick_reconnect(),
        ..SubscribeOptions::default()
    };
    let sub = retrying(|| c.subscribe_ws("t", "q", options.clone())).await;
    let accepted = proxy.accepted();
    let cut = Instant::now();
    proxy.sever();
    eventually("the socket reconnects", || sub.reconnects() >= 1).await;
    // Without `Retry-After`, the 50..500 ms backoff would have tried
    // several times within that second.
    assert!(
        cut.elapsed() >= Duration::from_millis(900),
        "{:?}",
        cut.elapsed()
    );
    let attempts = proxy.accepted() - accepted;
    assert!(attempts <= 3, "{attempts} connection attempts");
    sub.close().await;
}

#[tokio::test]
async fn a_tail_on_a_half_open_connection_ends_instead_of_stalling() {
    let s = TestServer::start();
    let proxy = Proxy::start(&s.url("")).await;
    let c = keepalive_client(&proxy, "http").build().unwrap();
    c.create_topic("t", &TopicSpec::default()).await.unwrap();
    let mut tail = c.tail_ws("t", TailFrom::Latest).await.unwrap();
    proxy.freeze();
    let started = Instant::now();
    let item = tokio::time::timeout(WAIT, tail.next())
        .await
        .expect("next() must not stall on a half-open connection")
        .expect("an error item before the end");
    let e = item.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("idle timeout"), "{e}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the idle timeout"
    );
    assert!(tail.next().await.is_none());
}

#[tokio::test]
async fn the_producer_retries_a_timed_out_batch_without_duplicates() {
    let s = TestServer::start();
    let proxy = Proxy::start(&s.url("")).await;
    let direct = Client::new(&s.url("")).unwrap();
    direct
        .create_topic("t", &TopicSpec::default())
        .await
        .unwrap();
    let c = Client::builder(&proxy.url("http"))
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let config = ProducerConfig {
        linger: Duration::from_millis(20),
        ..ProducerConfig::default()
    };
    let producer = c.producer("t", config).unwrap();
    // The server stores the batch, but its answer never arrives.
    proxy.swallow_responses(true);
    let mut deliveries = Vec::new();
    for message in values(0..10) {
        deliveries.push(producer.send(message).await.unwrap());
    }
    let deadline = Instant::now() + WAIT;
    while direct.topic("t").await.unwrap().partitions[0].high_offset < 10 {
        assert!(Instant::now() < deadline, "the first attempt never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.swallow_responses(false);
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let result = tokio::time::timeout(WAIT, delivery).await.unwrap().unwrap();
        assert_eq!(result.offset, i as u64);
        assert!(result.duplicate, "answered by the retry, as a duplicate");
    }
    producer.close().await.unwrap();
    let page = direct.read("t", 0, 0, 100).await.unwrap();
    assert_eq!(page.messages.len(), 10, "stored once");
}

/// Counts failures that carried a `Retry-After`.
#[derive(Default)]
struct RetryLaterSeen {
    pulls: AtomicUsize,
    produces: AtomicUsize,
}

impl MetricsHook for RetryLaterSeen {
    fn record(&self, event: &OperationEvent<'_>) {
        if event.error.and_then(Error::retry_after).is_none() {
            return;
        }
        match event.operation {
            Operation::Pull => self.pulls.fetch_add(1, Ordering::SeqCst),
            Operation::Produce => self.produces.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
}

#[tokio::test]
async fn producer_and_pull_stream_wait_out_rate_limits() {
    let s = TestServer::start_with(&["--rate-limit-requests-per-s", "3"]);
    let seen = Arc::new(RetryLaterSeen::default());
    let c = Client::builder(&s.url(""))
        .metrics(seen.clone())
        .build()
        .unwrap();
    topic_and_queue(&c, "t", "q").await;
    // One message per request: far more requests than the rate allows.
    let config = ProducerConfig {
        linger: Duration::ZERO,
        max_batch_messages: 1,
        retries: 20,
        ..ProducerConfig::default()
    };
    let producer = c.producer("t", config).unwrap();
    let mut deliveries = Vec::new();
    for message in values(0..8) {
        deliveries.push(producer.send(message).await.unwrap());
    }
    for delivery in deliveries {
        tokio::time::timeout(WAIT, delivery).await.unwrap().unwrap();
    }
    producer.close().await.unwrap();
    assert!(
        seen.produces.load(Ordering::SeqCst) > 0,
        "the limit was hit"
    );

    let options = PullOptions {
        max_messages: 1,
        wait: Duration::ZERO,
        renew: None,
        ..PullOptions::default()
    };
    let mut stream = c.subscriber("t", "q").stream(options).await.unwrap();
    let mut seen_values = BTreeSet::new();
    while seen_values.len() < 8 {
        let message = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the stream kept pulling")
            .expect("the stream ended")
            .expect("rate limits are waited out, not yielded");
        seen_values.insert(message.json::<serde_json::Value>().unwrap()["i"].as_u64());
    }
    assert!(seen.pulls.load(Ordering::SeqCst) > 0, "the limit was hit");
}

mod tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    use super::*;

    /// A CA and a server certificate for 127.0.0.1, as PEM files.
    fn pki() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "client test ca");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        write("ca.pem", ca.pem());
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        write("server.pem", cert.pem());
        write("server.key", key.serialize_pem());
        dir
    }

    #[tokio::test]
    async fn wss_and_https_consumers_survive_a_cut_connection_over_tls() {
        let pki = pki();
        let path = |name: &str| pki.path().join(name).to_str().unwrap().to_owned();
        let s = TestServer::start_with(&[
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
        ]);
        let proxy = Proxy::start(&s.url("")).await;
        let c = keepalive_client(&proxy, "https")
            .ca_file(path("ca.pem"))
            .build()
            .unwrap();
        topic_and_queue(&c, "t", "ws").await;
        topic_and_queue(&c, "t", "http").await;
        let options = SubscribeOptions {
            reconnect: quick_reconnect(),
            ..SubscribeOptions::default()
        };
        let mut ws = c.subscribe_ws("t", "ws", options).await.unwrap();
        let mut pulled = c
            .subscriber("t", "http")
            .stream(PullOptions {
                wait: Duration::from_millis(500),
                ..PullOptions::default()
            })
            .await
            .unwrap();
        c.produce("t", values(0..3)).await.unwrap();
        ack_all(&mut ws, 0..3).await;
        ack_all(&mut pulled, 0..3).await;

        // Every connection is cut: the socket reconnects over TLS, the
        // pull stream retries its long poll.
        proxy.sever();
        eventually("the socket reconnects", || ws.reconnects() >= 1).await;
        retrying(|| c.produce("t", values(3..6))).await;
        ack_all(&mut ws, 3..6).await;
        ack_all(&mut pulled, 3..6).await;
        for sub in ["ws", "http"] {
            let stats = c.subscription("t", sub).await.unwrap().stats;
            assert_eq!((stats.backlog, stats.in_flight), (0, 0), "{sub}: {stats:?}");
        }
        ws.close().await;
    }
}
