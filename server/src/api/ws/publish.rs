//! `GET /v1/topics/{topic}/ws/publish`: produce over one socket.
//!
//! Each `publish` frame is one produce request, validated and committed
//! exactly as `POST /v1/topics/{topic}/messages` is. Requests are pipelined:
//! up to `ws_publish_max_in_flight` are committed concurrently (each in its
//! own task, so a socket that goes away never cancels a half-done commit),
//! and replies go out in request order. A bad frame gets an error frame and
//! the socket stays open.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use futures_util::future::{self, BoxFuture};
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde::Deserialize;
use weir_protocol::ws::ServerFrame;
use weir_protocol::{ErrorCode, ProduceMessage};

use super::session::{InFrame, Inbound, Outbox, Protocol, Stop};
use super::{error_parts, upgrade, WsClient, TAG_WEBSOCKET};
use crate::api::error::ApiResult;
use crate::api::extract::ApiPath;
use crate::api::limits::Limits;
use crate::api::openapi::Errors;
use crate::api::AppState;
use crate::broker::Broker;

/// Publish over one socket.
///
/// Upgrades to a WebSocket on which the client sends
/// `{"type":"publish","request_id":"r1","messages":[...]}` text frames (the
/// messages as in `POST /v1/topics/{topic}/messages`). The server answers
/// each, once every message of it is durable, with
/// `{"type":"published","request_id":"r1","results":[...]}`, or with
/// `{"type":"error","code":...,"detail":...,"request_id":"r1"}` carrying the
/// code the HTTP produce would answer. Requests may be pipelined: up to
/// `ws_publish_max_in_flight` are processed concurrently and replies come
/// in request order. Frames: `ClientFrame` (only `publish` here) and
/// `ServerFrame` (`published`, `error`).
#[utoipa::path(
    get, path = "/v1/topics/{topic}/ws/publish", tag = TAG_WEBSOCKET,
    params(("topic" = String, Path, description = "Topic name")),
    responses(
        (status = 101, description = "Switching Protocols: the socket carries `publish` frames in and `published` / `error` frames out"),
        Errors,
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    client: WsClient,
    socket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    state.broker.topic(&name)?;
    let socket = upgrade(&state, client, socket)?;
    let publish = Publish {
        broker: state.broker.clone(),
        topic: name,
        max_in_flight: state.sockets.options.publish_max_in_flight,
        quota: Some((state.limits.clone(), socket.principal().to_owned())),
    };
    Ok(state.sockets.accept(socket, publish))
}

/// The publish protocol of one socket.
pub struct Publish {
    broker: Arc<Broker>,
    topic: String,
    max_in_flight: usize,
    /// The limits and principal each batch is charged to.
    quota: Option<(Arc<Limits>, String)>,
}

impl Protocol for Publish {
    const KIND: &'static str = "publish";
    const ACCEPTS_BINARY: bool = true;

    async fn run(self, mut inbound: Inbound, outbox: Outbox) -> Result<(), Stop> {
        // Replies in request order, whatever order the commits finish in.
        let mut pending: FuturesOrdered<BoxFuture<'static, ServerFrame>> = FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                Some(reply) = pending.next(), if !pending.is_empty() => outbox.send(&reply).await?,
                // At the in-flight limit the socket is not read: the client
                // is slowed down instead of queued for.
                frame = inbound.recv_frame(), if pending.len() < self.max_in_flight => match frame {
                    Some(InFrame::Text(text)) => pending.push_back(self.start(text.as_str())),
                    Some(InFrame::Binary(bytes)) => pending.push_back(self.start_binary(&bytes)),
                    None => break,
                },
            }
        }
        // The socket is closing: finish and answer what was accepted.
        while let Some(reply) = pending.next().await {
            outbox.send(&reply).await?;
        }
        Ok(())
    }
}

impl Publish {
    /// Starts one request given as a JSON `publish` frame; the future
    /// yields its reply.
    fn start(&self, text: &str) -> BoxFuture<'static, ServerFrame> {
        let (request_id, messages) = match parse(text) {
            Ok(request) => request,
            Err(Rejected { detail, request_id }) => {
                let reply = error_frame(ErrorCode::InvalidRequest, detail, request_id);
                return Box::pin(future::ready(reply));
            }
        };
        self.commit(
            request_id,
            messages.len(),
            text.len(),
            Batch::Json(messages),
        )
    }

    /// Starts one request given as a binary publish frame (the binary
    /// batch encoding, kind 3, with its request id).
    fn start_binary(&self, bytes: &[u8]) -> BoxFuture<'static, ServerFrame> {
        match weir_protocol::binary::decode_publish(bytes) {
            Ok((request_id, records)) => self.commit(
                request_id,
                records.len(),
                bytes.len(),
                Batch::Binary(records),
            ),
            Err(e) => Box::pin(future::ready(error_frame(
                ErrorCode::InvalidRequest,
                e.to_string(),
                None,
            ))),
        }
    }

    /// Charges a parsed request to the quota and commits it.
    fn commit(
        &self,
        request_id: String,
        count: usize,
        bytes: usize,
        batch: Batch,
    ) -> BoxFuture<'static, ServerFrame> {
        if let Some((limits, principal)) = &self.quota {
            if let Err(e) = limits.charge_produce(principal, count, bytes) {
                let reply = error_frame(e.problem.code, e.problem.detail, Some(request_id));
                return Box::pin(future::ready(reply));
            }
        }
        let broker = self.broker.clone();
        let topic = self.topic.clone();
        let commit = tokio::spawn(async move {
            let now = broker.now();
            match batch {
                Batch::Json(messages) => broker.produce(&topic, messages, now).await,
                Batch::Binary(records) => broker.produce_binary(&topic, records, now).await,
            }
        });
        Box::pin(async move {
            match commit.await {
                Ok(Ok(results)) => ServerFrame::Published {
                    request_id,
                    results,
                },
                Ok(Err(e)) => {
                    let (code, detail) = error_parts(e);
                    error_frame(code, detail, Some(request_id))
                }
                Err(e) => {
                    let (code, detail) = error_parts(e.into());
                    error_frame(code, detail, Some(request_id))
                }
            }
        })
    }
}

/// A publish request's messages, as they came.
enum Batch {
    Json(Vec<ProduceMessage>),
    Binary(Vec<weir_protocol::binary::ProduceRecord>),
}

/// The fields of a `publish` frame. Read on its own rather than through
/// `ClientFrame`: an internally tagged enum buffers the frame, and a
/// buffered frame cannot yield the messages' raw JSON values.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFrame {
    #[serde(rename = "type")]
    _type: String,
    request_id: String,
    messages: Vec<ProduceMessage>,
}

/// What is read of any frame first: its type, and the request id to put in
/// an error reply.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    request_id: Option<serde_json::Value>,
}

/// Why a frame is not a valid `publish` frame.
struct Rejected {
    detail: String,
    request_id: Option<String>,
}

fn invalid(detail: impl Into<String>, request_id: Option<String>) -> Rejected {
    Rejected {
        detail: detail.into(),
        request_id,
    }
}

/// A `publish` frame's request id and messages.
fn parse(text: &str) -> Result<(String, Vec<ProduceMessage>), Rejected> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| invalid(format!("invalid frame: {e}"), None))?;
    let request_id = envelope
        .request_id
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    match envelope.kind.as_deref() {
        Some("publish") => crate::api::extract::from_json_slice::<PublishFrame>(text.as_bytes())
            .map(|frame| (frame.request_id, frame.messages))
            .map_err(|e| invalid(format!("invalid `publish` frame: {e}"), request_id)),
        Some(other) => Err(invalid(
            format!("a publish socket takes `publish` frames, not `{other}`"),
            request_id,
        )),
        None => Err(invalid("a frame needs a `type`", request_id)),
    }
}

fn error_frame(code: ErrorCode, detail: String, request_id: Option<String>) -> ServerFrame {
    ServerFrame::Error {
        code,
        detail,
        request_id,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{json, Value};

    use super::super::testing::{broker_with_topic, options, spawn};
    use super::*;
    use crate::broker::read::ReadFrom;

    fn publisher(broker: &Arc<Broker>) -> Publish {
        Publish {
            broker: broker.clone(),
            topic: "t".into(),
            max_in_flight: 4,
            quota: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_requests_are_answered_in_request_order() {
        let t = broker_with_topic("t", 3).await;
        let (mut client, _shutdown, task) = spawn(publisher(&t.broker), options(), 64);
        // Every request goes out before any reply is read: far more than
        // the in-flight limit, of different sizes, some of them invalid.
        let mut sent = Vec::new();
        for i in 0..30u64 {
            let request_id = format!("r{i}");
            let messages: Vec<Value> = if i % 7 == 3 {
                vec![json!({"value": i, "partition": 9})]
            } else {
                (0..=i % 4)
                    .map(|j| json!({"value": {"i": i, "j": j}, "partition": (i + j) % 3}))
                    .collect()
            };
            let frame = json!({"type": "publish", "request_id": request_id, "messages": messages});
            client.send_text(&frame.to_string()).await;
            sent.push(frame);
        }
        for (i, frame) in (0u64..).zip(&sent) {
            let reply = client.json().await;
            assert_eq!(
                reply["request_id"],
                format!("r{i}"),
                "replies in request order"
            );
            if i % 7 == 3 {
                assert_eq!(reply["type"], "error", "{reply}");
                assert_eq!(reply["code"], "invalid_request", "{reply}");
                continue;
            }
            assert_eq!(reply["type"], "published", "{reply}");
            let messages = frame["messages"].as_array().unwrap();
            let results = reply["results"].as_array().unwrap();
            assert_eq!(results.len(), messages.len(), "{reply}");
            for (message, result) in messages.iter().zip(results) {
                // Durable, and stored where the result says.
                let partition = u32::try_from(result["partition"].as_u64().unwrap()).unwrap();
                let offset = result["offset"].as_u64().unwrap();
                let read = t
                    .broker
                    .read("t", partition, ReadFrom::Offset(offset), 1, 0)
                    .await
                    .unwrap();
                let stored = &read.messages[0];
                assert_eq!(stored.offset, offset);
                let value: Value =
                    serde_json::from_str(stored.value.as_ref().unwrap().get()).unwrap();
                assert_eq!(value, message["value"]);
            }
        }
        drop(client);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_frames_get_error_frames_and_the_socket_stays_usable() {
        let t = broker_with_topic("t", 1).await;
        let (mut client, _shutdown, task) = spawn(publisher(&t.broker), options(), 64);
        let cases = [
            ("not json", None, "invalid frame"),
            (r#"[1, 2]"#, None, "invalid frame"),
            (
                r#"{"type":"ack","ack_ids":[],"request_id":"a1"}"#,
                Some("a1"),
                "not `ack`",
            ),
            (r#"{"request_id":"n1","messages":[]}"#, Some("n1"), "`type`"),
            (
                r#"{"type":"publish","request_id":"p1","messages":[{"value":1,"bogus":true}]}"#,
                Some("p1"),
                "bogus",
            ),
            (
                r#"{"type":"publish","messages":[{"value":1}]}"#,
                None,
                "request_id",
            ),
            // Same validation as the HTTP produce, from the broker.
            (
                r#"{"type":"publish","request_id":"p2","messages":[]}"#,
                Some("p2"),
                "must not be empty",
            ),
            (
                r#"{"type":"publish","request_id":"p3","messages":[{"value":1,"headers":{"weir-x":"1"}}]}"#,
                Some("p3"),
                "reserved",
            ),
        ];
        for (text, request_id, detail) in cases {
            client.send_text(text).await;
            let reply = client.json().await;
            assert_eq!(reply["type"], "error", "{text} → {reply}");
            assert_eq!(reply["code"], "invalid_request", "{text} → {reply}");
            assert_eq!(
                reply.get("request_id").and_then(Value::as_str),
                request_id,
                "{reply}"
            );
            let said = reply["detail"].as_str().unwrap();
            assert!(said.contains(detail), "{text} → {said:?} lacks {detail:?}");
        }
        // Still open and working.
        client
            .send_text(r#"{"type":"publish","request_id":"ok","messages":[{"value":{"a":1}}]}"#)
            .await;
        let reply = client.json().await;
        assert_eq!(
            reply,
            json!({"type": "published", "request_id": "ok",
                   "results": [{"partition": 0, "offset": 0, "duplicate": false}]})
        );
        // A failure of the topic itself is an error frame too.
        t.broker.delete_topic("t").await.unwrap();
        client
            .send_text(r#"{"type":"publish","request_id":"gone","messages":[{"value":1}]}"#)
            .await;
        let reply = client.json().await;
        assert_eq!(reply["code"], "topic_not_found", "{reply}");
        assert_eq!(reply["request_id"], "gone", "{reply}");
        drop(client);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accepted_requests_are_answered_before_a_shutdown_close() {
        let t = broker_with_topic("t", 1).await;
        let (mut client, shutdown, task) = spawn(publisher(&t.broker), options(), 64);
        for i in 0..3 {
            let frame = json!({"type": "publish", "request_id": format!("r{i}"), "messages": [{"value": i}]});
            client.send_text(&frame.to_string()).await;
        }
        // The first reply proves the requests are being processed.
        assert_eq!(client.json().await["request_id"], "r0");
        shutdown.send_replace(true);
        // Whatever was read before the shutdown is answered, then 1001.
        let mut answered = vec!["r0".to_owned()];
        let close = loop {
            match client.next().await {
                Some(axum::extract::ws::Message::Text(text)) => {
                    let reply: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert_eq!(reply["type"], "published", "{reply}");
                    answered.push(reply["request_id"].as_str().unwrap().to_owned());
                }
                Some(axum::extract::ws::Message::Close(Some(frame))) => break frame,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close.code, axum::extract::ws::close_code::AWAY);
        let expected: Vec<String> = (0..answered.len()).map(|i| format!("r{i}")).collect();
        assert_eq!(answered, expected, "answers in order, none skipped");
        task.await.unwrap();
    }
}
