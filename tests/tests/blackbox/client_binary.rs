//! The client library, the CLI and `weir bench` in the binary batch
//! encoding (`application/vnd.weir.batch`) against the real server:
//! produce, read, pull and publish in binary give back exactly what the
//! JSON path gives, acks work on binary deliveries, and `--encoding
//! binary` is a drop-in for `weir produce`, `read`, `consume` and the bench
//! workloads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_client::{
    BinaryBatch, Client, ConsumerConfig, Encoding, Message, Mode, Outcome, ProduceMessage,
    ProduceMessageExt, ProducerConfig, PullOptions, PullRequest, Start, StartName,
    SubscriptionSpec, TopicSpec,
};

use crate::cli::weir;
use crate::harness::TestServer;

fn clients(s: &TestServer) -> (Client, Client) {
    let json = Client::new(&s.url("")).expect("client for the test server");
    let binary = Client::builder(&s.url(""))
        .encoding(Encoding::Binary)
        .build()
        .expect("binary client");
    (json, binary)
}

async fn topic(c: &Client, name: &str, partitions: u32) {
    let spec = TopicSpec {
        partitions: Some(partitions),
        ..TopicSpec::default()
    };
    c.create_topic(name, &spec).await.expect("topic created");
}

async fn queue(c: &Client, topic: &str, sub: &str) {
    let spec = SubscriptionSpec {
        mode: Some(Mode::Queue),
        start: Some(Start::Named(StartName::Earliest)),
        ack_timeout_ms: Some(30_000),
        ..SubscriptionSpec::default()
    };
    c.create_subscription(topic, sub, &spec)
        .await
        .expect("subscription created");
}

/// Messages of every kind: JSON and raw values (empty, with NUL and
/// 0xFF), keys, headers, explicit partitions, an idempotency id.
fn mixed(n: u64) -> Vec<ProduceMessage> {
    (0..n)
        .map(|i| {
            let mut m = if i % 2 == 0 {
                ProduceMessage::json(&json!({"i": i, "text": "é ✓"})).unwrap()
            } else if i % 5 == 0 {
                ProduceMessage::bytes(b"")
            } else {
                ProduceMessage::bytes(&[i as u8, 0, 0xff, b'x'])
            };
            m.key = (i % 3 == 0).then(|| format!("k{i}"));
            m.headers = (i % 4 == 0).then(|| BTreeMap::from([("h".into(), i.to_string())]));
            m.partition = Some((i % 2) as u32);
            m.id = (i == 7).then(|| "seven".into());
            m
        })
        .collect()
}

/// A message as JSON, for comparisons across encodings.
fn as_json(m: &Message) -> Value {
    serde_json::to_value(m).unwrap()
}

fn all_json(messages: &[Message]) -> Vec<Value> {
    messages.iter().map(as_json).collect()
}

/// A TCP relay to the server that keeps a copy of every byte the client
/// sent: the encoding as it is on the wire.
struct Tap {
    url: String,
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(s: &TestServer) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = s.url("").trim_start_matches("http://").to_owned();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let copy = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&target).await.unwrap();
                let ((mut from_client, mut to_client), (mut from_server, mut to_server)) =
                    (client.into_split(), server.into_split());
                let copy = copy.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        copy.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown().await;
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    let _ = to_client.shutdown().await;
                });
            }
        });
        Tap { url, sent, task }
    }

    /// What the client sent so far, as lowercase text (bodies lossily).
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).to_lowercase()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A binary client sends binary produce bodies and asks for binary produce
/// results, reads and pulls; a JSON client never mentions the binary
/// encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_carries_the_chosen_encoding() {
    let s = TestServer::start();
    let (json, _) = clients(&s);
    topic(&json, "wire", 1).await;
    queue(&json, "wire", "s").await;
    let tap = Tap::start(&s).await;
    let binary = Client::builder(&tap.url)
        .encoding(Encoding::Binary)
        .build()
        .unwrap();
    binary
        .produce("wire", vec![ProduceMessage::bytes(b"on the wire")])
        .await
        .unwrap();
    let sent = tap.sent();
    assert!(
        sent.contains("content-type: application/vnd.weir.batch"),
        "{sent}"
    );
    // The body: magic "WB", version 1, kind 1 (produce), then the raw value.
    let raw = tap.sent.lock().unwrap().clone();
    assert!(raw.windows(4).any(|w| w == b"WB\x01\x01"), "{sent}");
    assert!(raw.windows(11).any(|w| w == b"on the wire"), "{sent}");
    assert!(!sent.contains("value_b64"), "{sent}");
    binary.read("wire", 0, 0, 10).await.unwrap();
    let request = PullRequest {
        max_messages: Some(1),
        wait_ms: Some(1000),
        consumer: None,
    };
    assert_eq!(binary.pull("wire", "s", &request).await.unwrap().len(), 1);
    let accepts = tap
        .sent()
        .matches("accept: application/vnd.weir.batch, application/json;q=0.5")
        .count();
    assert_eq!(
        accepts, 3,
        "one produce (binary results), one read and one pull"
    );

    let quiet = Tap::start(&s).await;
    let plain = Client::new(&quiet.url).unwrap();
    plain
        .produce("wire", vec![ProduceMessage::bytes(b"x")])
        .await
        .unwrap();
    plain.read("wire", 0, 0, 10).await.unwrap();
    assert!(!quiet.sent().contains("vnd.weir.batch"), "{}", quiet.sent());
    assert!(quiet.sent().contains("\"value_b64\""), "{}", quiet.sent());
}

/// Produced in binary, read in binary: every field as produced, and the
/// same messages a JSON read returns — by offset, by time and long poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_produce_and_read_give_what_json_gives() {
    let s = TestServer::start();
    let (json, binary) = clients(&s);
    topic(&json, "mix", 2).await;
    let sent = mixed(20);
    let results = binary.produce("mix", sent.clone()).await.unwrap();
    assert_eq!(results.len(), 20);
    for (i, r) in results.iter().enumerate() {
        assert_eq!((r.partition, r.offset), ((i % 2) as u32, (i / 2) as u64));
    }
    // The id was stored: the same message again is a duplicate.
    let again = binary.produce("mix", vec![sent[7].clone()]).await.unwrap();
    assert!(again[0].duplicate, "{again:?}");

    for partition in 0..2u32 {
        let from_binary = binary.read("mix", partition, 0, 100).await.unwrap();
        let from_json = json.read("mix", partition, 0, 100).await.unwrap();
        assert_eq!(from_binary.next_offset, 10);
        assert_eq!(from_binary.next_offset, from_json.next_offset);
        assert_eq!(
            all_json(&from_binary.messages),
            all_json(&from_json.messages)
        );
        for (m, p) in from_binary
            .messages
            .iter()
            .zip(sent.iter().skip(partition as usize).step_by(2))
        {
            assert_eq!(m.topic, "mix");
            assert_eq!(m.key, p.key);
            assert_eq!(m.headers, p.headers.clone().unwrap_or_default());
            assert_eq!(
                m.value.as_ref().map(|v| v.get()),
                p.value.as_ref().map(|v| v.get())
            );
            assert_eq!(m.value_b64, p.value_b64);
        }
        // A page in the middle: where the next one starts.
        let page = binary.read("mix", partition, 3, 4).await.unwrap();
        assert_eq!(page.messages.first().map(|m| m.offset), Some(3));
        assert_eq!(page.next_offset, 7);
    }
    let by_time = binary.read_from_time("mix", 1, 0, 3).await.unwrap();
    assert_eq!(by_time.messages.len(), 3);
    assert_eq!(by_time.next_offset, 3);

    // A long poll answers with the message produced while it waits.
    let waiting = {
        let binary = binary.clone();
        tokio::spawn(async move {
            binary
                .read_wait("mix", 0, 10, 10, Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = ProduceMessage::bytes(b"late");
    late.partition = Some(0);
    binary.produce("mix", vec![late]).await.unwrap();
    let page = waiting.await.unwrap().unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].value_b64.as_deref(), Some("bGF0ZQ=="));
    assert_eq!(page.next_offset, 11);

    // Errors keep the server's code and field.
    let both = ProduceMessage {
        value_b64: Some("AA==".into()),
        ..ProduceMessage::json(&1).unwrap()
    };
    let e = binary.produce("mix", vec![both]).await.unwrap_err();
    assert_eq!(e.code(), Some(weir_client::ErrorCode::InvalidRequest));
    let mut reserved = ProduceMessage::bytes(b"x");
    reserved.headers = Some(BTreeMap::from([("weir-x".into(), "1".into())]));
    let e = binary.produce("mix", vec![reserved]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(weir_client::ErrorCode::InvalidRequest),
        "{e}"
    );
    let e = binary.read("nope", 0, 0, 1).await.unwrap_err();
    assert_eq!(e.code(), Some(weir_client::ErrorCode::TopicNotFound), "{e}");
}

/// The batching producer sends binary batches; binary pulls (plain, as a
/// stream and in the consume loop) deliver them with ack ids that ack and
/// nack as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_producer_pulls_and_acks() {
    let s = TestServer::start();
    let (json, binary) = clients(&s);
    topic(&json, "jobs", 2).await;
    queue(&json, "jobs", "plain").await;
    queue(&json, "jobs", "streamed").await;
    queue(&json, "jobs", "looped").await;
    let producer = binary
        .producer(
            "jobs",
            ProducerConfig {
                max_batch_messages: 16,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..60u64 {
        let message = if i % 2 == 0 {
            ProduceMessage::json(&json!({"n": i})).unwrap()
        } else {
            ProduceMessage::bytes(&i.to_le_bytes())
        };
        deliveries.push(producer.send(message).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await.unwrap();
    let stored: u64 = json
        .topic("jobs")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.high_offset)
        .sum();
    assert_eq!(stored, 60);

    // Plain pulls: every message once, attempt 1; a nack redelivers with
    // attempt 2, and acks settle everything.
    let request = PullRequest {
        max_messages: Some(25),
        wait_ms: Some(1000),
        consumer: None,
    };
    let (mut first, mut nacked, mut redelivered) = (0, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while first < 59 || redelivered.is_none() {
        assert!(Instant::now() < deadline, "{first} acked, {redelivered:?}");
        let mut ack_ids = Vec::new();
        for m in binary.pull("jobs", "plain", &request).await.unwrap() {
            assert_eq!(m.message.topic, "jobs");
            let at = (m.message.partition, m.message.offset);
            match (m.attempt, nacked) {
                (1, None) => {
                    nacked = Some(at);
                    let request = weir_client::NackRequest {
                        ack_ids: vec![m.ack_id],
                        delay_ms: Some(0),
                        ..Default::default()
                    };
                    assert_eq!(json.nack("jobs", "plain", &request).await.unwrap().acked, 1);
                    continue;
                }
                (1, Some(_)) => first += 1,
                (2, Some(n)) if n == at => redelivered = Some(at),
                other => panic!("unexpected delivery {other:?} of {at:?}"),
            }
            ack_ids.push(m.ack_id);
        }
        if !ack_ids.is_empty() {
            let count = ack_ids.len() as u64;
            assert_eq!(
                binary.ack("jobs", "plain", ack_ids).await.unwrap().acked,
                count
            );
        }
    }
    wait_for_backlog(&json, "jobs", "plain", 0).await;

    // A pull stream of self-settling messages, values decoded.
    let options = PullOptions {
        max_messages: 20,
        wait: Duration::from_millis(200),
        ..PullOptions::default()
    };
    let mut stream = binary
        .subscriber("jobs", "streamed")
        .stream(options)
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 60 {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("messages arrive")
            .expect("the stream goes on")
            .unwrap();
        values.push(message.bytes().unwrap());
        message.ack().await.unwrap();
    }
    stream.close().await;
    assert!(values.contains(&br#"{"n":58}"#.to_vec()));
    assert!(values.contains(&59u64.to_le_bytes().to_vec()));
    wait_for_backlog(&json, "jobs", "streamed", 0).await;

    // The consume loop.
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = handled.clone();
    let handler = move |m: weir_client::ReceivedMessage| {
        let counter = counter.clone();
        async move {
            assert_eq!(m.message.topic, "jobs");
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Outcome::Ack
        }
    };
    let done = handled.clone();
    let shutdown = async move {
        while done.load(std::sync::atomic::Ordering::SeqCst) < 60 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let stats = tokio::time::timeout(
        Duration::from_secs(20),
        binary.consume(
            "jobs",
            "looped",
            ConsumerConfig::default(),
            handler,
            shutdown,
        ),
    )
    .await
    .expect("the loop finishes")
    .unwrap();
    assert_eq!((stats.handled, stats.acked), (60, 60), "{stats:?}");
    wait_for_backlog(&json, "jobs", "looped", 0).await;
}

async fn wait_for_backlog(c: &Client, topic: &str, sub: &str, backlog: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = c.subscription(topic, sub).await.unwrap().stats;
        if stats.backlog == backlog {
            return;
        }
        assert!(Instant::now() < deadline, "backlog stays {}", stats.backlog);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A binary client consuming over the subscription socket takes binary
/// delivery frames (`?encoding=binary`) and yields exactly what a JSON
/// socket yields; its acks settle the messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_socket_deliveries_equal_json_ones() {
    let s = TestServer::start();
    let (json, _) = clients(&s);
    topic(&json, "pushed", 2).await;
    queue(&json, "pushed", "plain").await;
    queue(&json, "pushed", "raw").await;
    json.produce("pushed", mixed(30)).await.unwrap();
    let tap = Tap::start(&s).await;
    let binary = Client::builder(&tap.url)
        .encoding(Encoding::Binary)
        .build()
        .unwrap();

    let mut taken = Vec::new();
    for (client, sub) in [(&json, "plain"), (&binary, "raw")] {
        let mut socket = client
            .subscribe_ws("pushed", sub, Default::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 30 {
            let next = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
            let received = next.expect("a message in time").unwrap().unwrap();
            got.push(received.into_inner());
        }
        let ids = got.iter().map(|m| m.ack_id.clone()).collect();
        let acked = socket.ack(ids).await.unwrap();
        assert_eq!((acked.acked, acked.unknown.len()), (30, 0));
        socket.close().await;
        let mut messages: Vec<Value> = got
            .iter()
            .map(|m| {
                assert_eq!(m.attempt, 1);
                as_json(&m.message)
            })
            .collect();
        messages.sort_by_key(|m| (m["partition"].as_u64(), m["offset"].as_u64()));
        taken.push(messages);
        wait_for_backlog(&json, "pushed", sub, 0).await;
    }
    assert_eq!(taken[0].len(), 30);
    assert_eq!(taken[0], taken[1]);
    let sent = tap.sent();
    assert!(
        sent.contains("/subscriptions/raw/ws?encoding=binary"),
        "{sent}"
    );
}

/// Binary publish frames on a socket, and batches encoded once and sent
/// many times over HTTP and the socket alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_publish_frames_and_batches_sent_twice() {
    let s = TestServer::start();
    let (json, binary) = clients(&s);
    topic(&json, "pub", 2).await;
    let publisher = binary.publisher_ws("pub").await.unwrap();
    let (a, b) = tokio::join!(publisher.publish(mixed(6)), publisher.publish(mixed(4)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.len(), b.len()), (6, 4));
    // A refused request fails with its code; the socket stays usable.
    let mut reserved = ProduceMessage::bytes(b"x");
    reserved.headers = Some(BTreeMap::from([("weir-x".into(), "1".into())]));
    let e = publisher.publish(vec![reserved]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(weir_client::ErrorCode::InvalidRequest),
        "{e}"
    );

    let batch = BinaryBatch::new(vec![ProduceMessage::bytes(b"again"); 5]).unwrap();
    assert_eq!(publisher.publish_batch(&batch).await.unwrap().len(), 5);
    // Over HTTP, from a JSON client too: a batch is always binary.
    assert_eq!(json.produce_batch("pub", &batch).await.unwrap().len(), 5);
    assert_eq!(binary.produce_batch("pub", &batch).await.unwrap().len(), 5);
    publisher.close().await;

    let mut stored = json.read("pub", 0, 0, 100).await.unwrap().messages;
    stored.extend(json.read("pub", 1, 0, 100).await.unwrap().messages);
    assert_eq!(stored.len(), 6 + 4 + 3 * 5);
    let agains = stored
        .iter()
        .filter(|m| m.value_b64.as_deref() == Some("YWdhaW4="))
        .count();
    assert_eq!(agains, 15);
}

/// `weir produce` and `weir read` with `--encoding binary`: what is
/// stored and printed is what the JSON encoding stores and prints.
#[test]
fn cli_produce_read_and_consume_in_binary() {
    let s = TestServer::start();
    weir(&s, &["topics", "create", "t", "--partitions", "2"], "").ok();
    weir(
        &s,
        &[
            "subs", "create", "t", "s", "--mode", "queue", "--start", "earliest",
        ],
        "",
    )
    .ok();
    let produced = weir(
        &s,
        &[
            "--output",
            "json",
            "produce",
            "t",
            "--encoding",
            "binary",
            "plain",
            "{\"n\":1}",
            "--key",
            "k",
            "-H",
            "trace=abc",
            "--partition",
            "0",
        ],
        "",
    )
    .json();
    assert_eq!(
        produced["results"].as_array().unwrap().len(),
        2,
        "{produced}"
    );
    let piped = weir(
        &s,
        &[
            "--output",
            "json",
            "produce",
            "t",
            "--encoding",
            "binary",
            "--batch",
            "2",
            "--partition",
            "1",
        ],
        "one\n\n{\"n\":2}\nthree\n",
    )
    .json();
    assert_eq!(piped["results"].as_array().unwrap().len(), 3, "{piped}");

    let read = |encoding: &str, extra: &[&str]| {
        let mut args = vec!["--output", "json", "read", "t", "--encoding", encoding];
        args.extend_from_slice(extra);
        weir(&s, &args, "")
    };
    let binary = read("binary", &[]).json();
    let json = read("json", &[]).json();
    assert_eq!(binary, json);
    let values: Vec<&Value> = binary["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["value"])
        .collect();
    assert_eq!(values.len(), 5, "{binary}");
    for expected in [
        json!("plain"),
        json!({"n": 1}),
        json!("one"),
        json!({"n": 2}),
    ] {
        assert!(values.contains(&&expected), "{expected} in {binary}");
    }
    let keyed = binary["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["value"] == "plain")
        .unwrap();
    assert_eq!(
        (&keyed["key"], &keyed["headers"]["trace"]),
        (&json!("k"), &json!("abc"))
    );
    // One partition, from an offset, in text form.
    let one = read("binary", &["-p", "1", "--offset", "1", "--limit", "1"]).json();
    assert_eq!(one["next_offset"], 2, "{one}");
    let text = weir(
        &s,
        &[
            "read",
            "t",
            "-p",
            "1",
            "--offset",
            "2",
            "--encoding",
            "binary",
        ],
        "",
    );
    assert_eq!(text.ok().trim(), "1:2 key=- \"three\"");
    assert!(text.stderr.contains("next offset 3"), "{text:?}");

    // consume: binary pulls, printed and acked.
    let consumed = weir(
        &s,
        &[
            "--output",
            "json",
            "consume",
            "t",
            "s",
            "--encoding",
            "binary",
            "--count",
            "5",
            "--wait-ms",
            "500",
        ],
        "",
    )
    .json_lines();
    assert_eq!(consumed.len(), 5, "{consumed:?}");
    assert!(consumed
        .iter()
        .all(|m| m["attempt"] == 1 && m["ack_id"].is_string()));
    let sub = weir(&s, &["--output", "json", "subs", "describe", "t", "s"], "").json();
    assert_eq!(sub["stats"]["backlog"], 0, "{sub}");
    // Over the subscription socket, in binary delivery frames: the same
    // printed form, acked.
    weir(
        &s,
        &[
            "produce",
            "t",
            "--encoding",
            "binary",
            "--key",
            "ws",
            "socket-1",
            "{\"n\":3}",
        ],
        "",
    )
    .ok();
    let pushed = weir(
        &s,
        &[
            "--output",
            "json",
            "consume",
            "t",
            "s",
            "--ws",
            "--encoding",
            "binary",
            "--count",
            "2",
            "--wait-ms",
            "2000",
        ],
        "",
    )
    .json_lines();
    let values: Vec<&Value> = pushed.iter().map(|m| &m["value"]).collect();
    assert_eq!(
        values,
        vec![&json!("socket-1"), &json!({"n": 3})],
        "{pushed:?}"
    );
    assert!(pushed
        .iter()
        .all(|m| m["key"] == "ws" && m["attempt"] == 1 && m["ack_id"].is_string()));
    let sub = weir(&s, &["--output", "json", "subs", "describe", "t", "s"], "").json();
    assert_eq!(
        (&sub["stats"]["backlog"], &sub["stats"]["in_flight"]),
        (&json!(0), &json!(0)),
        "{sub}"
    );
}

/// `weir bench produce|consume|e2e --encoding binary`: the same reports,
/// naming the encoding, and the data really there.
#[test]
fn cli_bench_in_binary() {
    let s = TestServer::start();
    let produce = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "produce",
            "--encoding",
            "binary",
            "--topic",
            "bp",
            "--count",
            "1000",
            "--batch",
            "100",
            "--concurrency",
            "2",
            "--size",
            "64",
            "--keep",
        ],
        "",
    )
    .json();
    assert_eq!(produce["workload"], "produce");
    assert_eq!(produce["encoding"], "binary", "{produce}");
    assert_eq!(produce["transport"], "http", "{produce}");
    assert_eq!(produce["messages"], 1000, "{produce}");
    assert_eq!(produce["requests"], 10, "{produce}");
    assert!(produce["msgs_per_sec"].as_f64().unwrap() > 0.0, "{produce}");
    // Raw 64-byte values.
    let page = weir(&s, &["--output", "json", "read", "bp", "--limit", "1"], "").json();
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD
        .decode(page["messages"][0]["value_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(value, vec![b'x'; 64]);

    // Over publish sockets, a partial last batch included.
    let ws = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "produce",
            "--encoding",
            "binary",
            "--transport",
            "ws",
            "--topic",
            "bw",
            "--count",
            "250",
            "--batch",
            "100",
            "--concurrency",
            "2",
        ],
        "",
    )
    .json();
    assert_eq!(
        (ws["messages"].as_u64(), ws["transport"].as_str()),
        (Some(250), Some("ws"))
    );

    let consume = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "consume",
            "--encoding",
            "binary",
            "--topic",
            "bc",
            "--count",
            "600",
            "--batch",
            "100",
            "--concurrency",
            "2",
            "--size",
            "100",
        ],
        "",
    )
    .json();
    assert_eq!(consume["encoding"], "binary", "{consume}");
    assert_eq!(consume["messages"], 600, "{consume}");
    assert_eq!(consume["fill"]["messages"], 600, "{consume}");
    assert_eq!(consume["message_bytes"], 100, "{consume}");
    assert_eq!(consume["ack_unknown"], 0, "{consume}");
    let text = weir(
        &s,
        &[
            "bench",
            "consume",
            "--encoding",
            "binary",
            "--topic",
            "bt",
            "--count",
            "200",
            "--batch",
            "100",
        ],
        "",
    );
    assert!(
        text.ok()
            .contains("concurrency 8, http binary, acks by ids)"),
        "{text:?}"
    );

    let e2e = weir(
        &s,
        &[
            "--output",
            "json",
            "bench",
            "e2e",
            "--encoding",
            "binary",
            "--rate",
            "200",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--drain-ms",
            "3000",
        ],
        "",
    )
    .json();
    assert_eq!(e2e["encoding"], "binary", "{e2e}");
    assert!(e2e["sent"].as_u64().unwrap() > 0, "{e2e}");
    assert_eq!(e2e["missing"], 0, "{e2e}");
    assert!(e2e["latency_ms"]["samples"].as_u64().unwrap() > 0, "{e2e}");
}
