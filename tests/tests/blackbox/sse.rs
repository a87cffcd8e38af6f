//! Server-Sent Events (`GET /v1/topics/{topic}/events` and
//! `GET /v1/topics/{topic}/subscriptions/{sub}/events`) against the real
//! server, read the way a browser's `EventSource` reads them: history then
//! live messages in order, `Last-Event-ID` resuming with no gap and no
//! duplicate, `max_in_flight` bounding unacked deliveries, disconnects
//! releasing leases, heartbeats, refusals as problem documents, and
//! streams ending (not holding the server up) at shutdown.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::subs_helpers::*;

/// How long a test waits for any one event (more than a heartbeat period).
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One event of a stream, or a comment (`: ping`).
#[derive(Debug, Clone, Default)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: Option<String>,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {self:?}"))
    }

    /// (partition, offset) of a message event.
    fn position(&self) -> (u64, u64) {
        let m = self.json();
        (
            m["partition"].as_u64().expect("partition"),
            m["offset"].as_u64().expect("offset"),
        )
    }
}

type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// An open event stream, parsed as the SSE specification says (lines end
/// with LF, CR or CRLF; an empty line dispatches; `:` starts a comment).
struct EventStream {
    body: Chunks,
    buffer: String,
}

impl EventStream {
    /// Opens `path` expecting 200 `text/event-stream`.
    async fn open(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> EventStream {
        let response = get_stream(s, path, headers).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream", "GET {path}");
        EventStream {
            body: Box::pin(response.bytes_stream().map(|r| r.map(|b| b.to_vec()))),
            buffer: String::new(),
        }
    }

    /// The next event or comment; `None` once the server ended the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let normalized = self.buffer.replace("\r\n", "\n").replace('\r', "\n");
            if let Some(end) = normalized.find("\n\n") {
                let block = normalized[..end].to_owned();
                self.buffer = normalized[end + 2..].to_owned();
                return Some(parse(&block));
            }
            let chunk = tokio::time::timeout(EVENT_TIMEOUT, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no event within {EVENT_TIMEOUT:?}"))?;
            let chunk = chunk.expect("read the event stream");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `message` event, skipping heartbeats.
    async fn message(&mut self) -> Event {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.comment.is_some() && event.event.is_none() && event.data.is_empty() {
                continue;
            }
            assert_eq!(event.event.as_deref(), Some("message"), "{event:?}");
            return event;
        }
    }

    async fn messages(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.message().await);
        }
        out
    }

    /// Asserts that no event other than a heartbeat comes for `quiet`.
    async fn silence(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Err(_) => return,
                Ok(Some(e)) if e.comment.is_some() && e.event.is_none() => {}
                Ok(other) => panic!("expected nothing, got {other:?}"),
            }
        }
    }
}

fn parse(block: &str) -> Event {
    let mut event = Event::default();
    let mut data: Vec<&str> = Vec::new();
    for line in block.split('\n') {
        if let Some(comment) = line.strip_prefix(':') {
            event.comment = Some(comment.trim_start().to_owned());
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    event.data = data.join("\n");
    event
}

/// A GET whose body is read as it comes (no overall timeout).
async fn get_stream(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let mut request = http.get(s.url(path)).header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(EVENT_TIMEOUT, request.send())
        .await
        .expect("response headers in time")
        .expect("GET the event stream")
}

fn positions(events: &[Event]) -> Vec<(u64, u64)> {
    events.iter().map(Event::position).collect()
}

/// Offsets of `partition`, in the order the events came.
fn offsets_of(events: &[Event], partition: u64) -> Vec<u64> {
    positions(events)
        .into_iter()
        .filter(|p| p.0 == partition)
        .map(|p| p.1)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_events_replay_history_in_order_then_follow() {
    let s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 2})).await;
    produce_n(&s, "t", 40, true).await;
    let mut events = EventStream::open(&s, "/v1/topics/t/events?from=earliest", &[]).await;
    let history = events.messages(40).await;
    for partition in [0, 1] {
        let offsets = offsets_of(&history, partition);
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, expected, "partition {partition} in order");
    }
    let values: BTreeSet<u64> = history.iter().map(|e| value_i(&e.json())).collect();
    assert_eq!(values, (0..40).collect());
    let last = history.last().unwrap();
    let p0 = offsets_of(&history, 0).len();
    let p1 = offsets_of(&history, 1).len();
    assert_eq!(last.id.as_deref(), Some(format!("0={p0},1={p1}").as_str()));
    assert!(last.json().get("ack_id").is_none());
    // Then it follows what is produced.
    s.produce("t", json!([{"value": {"i": 100}, "partition": 1}]))
        .await;
    let live = events.message().await;
    assert_eq!(live.position(), (1, p1 as u64));
    assert_eq!(value_i(&live.json()), 100);
    assert_eq!(
        live.id.as_deref(),
        Some(format!("0={p0},1={}", p1 + 1).as_str())
    );
    // `from=latest` (the default) sends only what comes next.
    let mut latest = EventStream::open(&s, "/v1/topics/t/events", &[]).await;
    latest.silence(Duration::from_millis(300)).await;
    s.produce("t", json!([{"value": {"i": 101}, "partition": 0}]))
        .await;
    assert_eq!(value_i(&latest.message().await.json()), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_after_a_disconnect_with_no_gap_and_no_duplicate() {
    let s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 3})).await;
    produce_n(&s, "t", 60, true).await;
    let mut first = EventStream::open(&s, "/v1/topics/t/events?from=earliest", &[]).await;
    let seen = first.messages(25).await;
    let resume = seen
        .last()
        .unwrap()
        .id
        .clone()
        .expect("message events have ids");
    drop(first);
    produce_n(&s, "t", 10, false).await;
    // As EventSource reconnects: same URL, plus Last-Event-ID.
    let mut second = EventStream::open(
        &s,
        "/v1/topics/t/events?from=earliest",
        &[("last-event-id", &resume)],
    )
    .await;
    let rest = second.messages(45).await;
    second.silence(Duration::from_millis(500)).await;
    let all: Vec<Event> = seen.iter().chain(rest.iter()).cloned().collect();
    let unique: BTreeSet<(u64, u64)> = positions(&all).into_iter().collect();
    assert_eq!(unique.len(), 70, "no duplicates across the reconnect");
    for partition in [0, 1, 2] {
        let offsets = offsets_of(&all, partition);
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, expected, "partition {partition}: no gap, in order");
    }
    let values: BTreeSet<u64> = all.iter().map(|e| value_i(&e.json())).collect();
    assert_eq!(
        values.len(),
        60,
        "values 0..60 then the ten repeats of 0..10"
    );
    // The same token works as `from=offsets:`.
    let mut third = EventStream::open(
        &s,
        &format!("/v1/topics/t/events?from=offsets:{resume}"),
        &[],
    )
    .await;
    assert_eq!(positions(&third.messages(45).await), positions(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_events_respect_max_in_flight_and_a_disconnect_releases_the_leases() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(
        &s,
        "t",
        "q",
        json!({"start": "earliest", "retry": retry(json!(null), 0)}),
        201,
    )
    .await;
    produce_n(&s, "t", 6, false).await;
    let path = "/v1/topics/t/subscriptions/q/events?max_in_flight=2";
    let mut events = EventStream::open(&s, path, &[]).await;
    let first = events.messages(2).await;
    for e in &first {
        let m = e.json();
        assert_eq!(e.id.as_deref(), m["ack_id"].as_str(), "id is the ack id");
        assert_eq!(m["attempt"], 1);
    }
    // Two unacked: nothing more until one is settled over HTTP.
    events.silence(Duration::from_millis(600)).await;
    let acked = ack(&s, "t", "q", &[first[0].json()]).await;
    assert_eq!(acked["acked"], 1, "{acked}");
    let third = events.message().await;
    assert_eq!(value_i(&third.json()), 2);
    events.silence(Duration::from_millis(600)).await;
    let info = sub_info(&s, "t", "q").await;
    assert_eq!(info["stats"]["in_flight"], 2, "{info}");
    // Disconnecting releases the two unacked leases: HTTP pulls get them
    // again (attempt 2) with the three never delivered.
    drop(events);
    let got = drain(&s, "t", "q", 5, Duration::from_secs(10)).await;
    let values: BTreeSet<u64> = got.iter().map(value_i).collect();
    assert_eq!(values, BTreeSet::from([1, 2, 3, 4, 5]), "{got:?}");
    for m in &got {
        let expected = if value_i(m) <= 2 { 2 } else { 1 };
        assert_eq!(m["attempt"], expected, "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_the_stream_as_problem_documents() {
    let s = TestServer::start();
    s.create_topic("t", &json!({"partitions": 2})).await;
    put_sub(&s, "t", "q", json!({}), 201).await;
    s.get("/v1/topics/nope/events")
        .await
        .expect_problem(404, "topic_not_found");
    s.get("/v1/topics/t/subscriptions/nope/events")
        .await
        .expect_problem(404, "subscription_not_found");
    for bad in ["soon", "offsets:9=0", "offsets:0=1,0=2", "timestamp:x"] {
        s.get(&format!("/v1/topics/t/events?from={bad}"))
            .await
            .expect_invalid("from");
    }
    s.request(
        reqwest::Method::GET,
        "/v1/topics/t/events",
        None,
        &[("last-event-id", "not-a-token")],
    )
    .await
    .expect_invalid("Last-Event-ID");
    s.get("/v1/topics/t/events?unknown=1")
        .await
        .expect_problem(400, "invalid_request");
    for bad in ["0", "1001"] {
        s.get(&format!(
            "/v1/topics/t/subscriptions/q/events?max_in_flight={bad}"
        ))
        .await
        .expect_invalid("max_in_flight");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_ping_heartbeats() {
    let s = TestServer::start();
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "q", json!({}), 201).await;
    let started = Instant::now();
    let mut topic = EventStream::open(&s, "/v1/topics/t/events", &[]).await;
    let mut sub = EventStream::open(&s, "/v1/topics/t/subscriptions/q/events", &[]).await;
    for stream in [&mut topic, &mut sub] {
        let ping = stream.next().await.expect("a heartbeat");
        assert_eq!(ping.comment.as_deref(), Some("ping"), "{ping:?}");
        assert!(ping.event.is_none() && ping.id.is_none(), "{ping:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(14) && waited < Duration::from_secs(25),
        "heartbeat after {waited:?}, expected ~15 s"
    );
    // The stream is still live after its heartbeat.
    s.produce("t", json!([{"value": {"i": 1}}])).await;
    assert_eq!(value_i(&topic.message().await.json()), 1);
    assert_eq!(value_i(&sub.message().await.json()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_with_an_error_event() {
    let mut s = TestServer::start_with(&["--shutdown-timeout-ms", "60000"]);
    s.create_topic("t", &json!({})).await;
    put_sub(&s, "t", "q", json!({}), 201).await;
    let mut topic = EventStream::open(&s, "/v1/topics/t/events", &[]).await;
    let mut sub = EventStream::open(&s, "/v1/topics/t/subscriptions/q/events", &[]).await;
    // Both streams are open and served.
    s.produce("t", json!([{"value": {"i": 1}}])).await;
    topic.message().await;
    sub.message().await;
    // With a 60 s shutdown timeout, a stream that held the server up would
    // make this fail (`stop` allows 15 s and asserts exit status 0).
    let started = Instant::now();
    tokio::task::block_in_place(|| s.stop());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for stream in [&mut topic, &mut sub] {
        let end = stream.next().await.expect("an error event");
        assert_eq!(end.event.as_deref(), Some("error"), "{end:?}");
        assert_eq!(end.json()["code"], "shutting_down", "{end:?}");
        assert!(stream.next().await.is_none(), "the stream ends");
    }
}
