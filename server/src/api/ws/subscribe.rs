//! `GET /v1/topics/{topic}/subscriptions/{sub}/ws`: live consumption of a
//! subscription with credit-based flow control.
//!
//! The server pushes `message` frames while the client has credit (never
//! more than granted; `credit` frames add to it) and leases them to this
//! socket exactly like an HTTP pull: sockets and HTTP pullers of one queue
//! subscription compete for messages. `ack`, `nack` and `extend` frames are
//! applied through the same durable path as the HTTP calls and confirmed
//! (`acked` / `nacked` / `extended` with `count` and `unknown`) once
//! durable, in request order. When the socket closes, its leases are
//! released under the retry policy (counted as `disconnect` redeliveries).
//!
//! Deliveries go out as JSON `message` frames, one per message, or — on a
//! socket opened with `?encoding=binary` — as binary frames, each a
//! messages body of the binary batch encoding holding a run of deliveries
//! (raw values, no base64), so a hundred messages cost one frame.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use futures_util::future::{self, BoxFuture};
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use weir_protocol::ws::{ClientFrame, Confirmation, ServerFrame};
use weir_protocol::ErrorCode;

use super::client_frame;
use super::session::{Close, Inbound, Outbox, Protocol, Stop};
use super::{error_parts, upgrade, WsClient, TAG_WEBSOCKET};
use crate::api::error::ApiResult;
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::openapi::Errors;
use crate::api::{binary, pulled_json, AppState};
use crate::broker::subscription::pull::Pulled;
use crate::broker::subscription::settle::Settle;
use crate::broker::subscription::{PullParams, Subscription, MAX_PULL_MESSAGES};
use crate::broker::{check_name, BrokerError};

/// How long one delivery long poll waits before it is restarted.
const DELIVERY_WAIT_MS: u64 = 5_000;
/// Most confirmations pending per socket; the socket is not read beyond.
const MAX_PENDING_SETTLES: usize = 64;
/// Values per binary delivery frame, about: a run of deliveries larger
/// than this is split over several frames.
const BINARY_FRAME_BYTES: usize = 1 << 20;

/// Process-unique ids of sockets holding leases.
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1);

/// Query of a subscription socket.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscribeQuery {
    /// Consumer name (stream mode: partitions are owned per consumer).
    #[param(example = "worker-3")]
    consumer: Option<String>,
    /// How deliveries are sent: `json` (default; one `message` text frame
    /// per message) or `binary` (binary frames, each a messages body of the
    /// binary batch encoding `application/vnd.weir.batch` holding a run of
    /// deliveries with their ack ids and attempts). Client frames are JSON
    /// text either way.
    #[param(inline)]
    encoding: Option<SocketEncoding>,
}

/// How a subscription socket sends deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SocketEncoding {
    /// One JSON `message` text frame per delivery.
    #[default]
    Json,
    /// Binary frames of the binary batch encoding, a run of deliveries each.
    Binary,
}

/// Consume a subscription over a WebSocket.
///
/// The client grants credit with `{"type":"credit","messages":N}` (additive;
/// an ack does not restore credit) and the server pushes up to that many
/// `{"type":"message", ...message..., "ack_id", "attempt"}` frames, leased
/// as by `POST .../pull`. The client settles with `ack`, `nack` and
/// `extend` frames (fields as in the HTTP calls, plus an optional
/// `request_id`); once the change is durable the server replies
/// `{"type":"acked"|"nacked"|"extended","request_id":...,"count":n,"unknown":[...]}`,
/// in request order. Malformed frames get
/// `{"type":"error","code":"invalid_request",...}` and the socket stays
/// open. Closing the socket releases its leases for redelivery under the
/// subscription's retry policy. If the subscription is deleted the server
/// sends an error frame and closes with 1000. With `?encoding=binary`
/// deliveries come as binary frames instead, each a messages body of the
/// binary batch encoding (kind 2, every record a delivery with its ack id
/// and attempt) holding a run of up to about 1 MiB of values; everything
/// else stays JSON text.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscriptions/{sub}/ws", tag = TAG_WEBSOCKET,
    params(("topic" = String, Path, description = "Topic name"), ("sub" = String, Path, description = "Subscription name"), SubscribeQuery),
    responses(
        (status = 101, description = "Switching Protocols: `ClientFrame` (credit, ack, nack, extend) in, `ServerFrame` (message, acked, nacked, extended, error) out"),
        Errors,
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<SubscribeQuery>,
    client: WsClient,
    socket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    if let Some(consumer) = &query.consumer {
        check_name("consumer", consumer)?;
    }
    let socket = upgrade(&state, client, socket)?;
    let protocol = Subscribe {
        subscription,
        topic,
        consumer: query.consumer,
        encoding: query.encoding.unwrap_or_default(),
        holder: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
    };
    Ok(state.sockets.accept(socket, protocol))
}

/// The consumption protocol of one socket.
pub struct Subscribe {
    subscription: Arc<Subscription>,
    topic: String,
    consumer: Option<String>,
    encoding: SocketEncoding,
    holder: u64,
}

type Pull = tokio::task::JoinHandle<Result<Pulled, BrokerError>>;

impl Protocol for Subscribe {
    const KIND: &'static str = "subscribe";

    async fn run(self, mut inbound: Inbound, outbox: Outbox) -> Result<(), Stop> {
        let mut credit: u64 = 0;
        let mut delivery: Option<Pull> = None;
        let mut pending: FuturesOrdered<BoxFuture<'static, ServerFrame>> = FuturesOrdered::new();
        let outcome = loop {
            if delivery.is_none() && credit > 0 {
                delivery = Some(self.start_pull(credit));
            }
            tokio::select! {
                biased;
                Some(reply) = pending.next(), if !pending.is_empty() => {
                    if let Err(stop) = outbox.send(&reply).await {
                        break Err(stop);
                    }
                }
                frame = inbound.recv(), if pending.len() < MAX_PENDING_SETTLES => match frame {
                    Some(text) => match self.handle(text.as_str()) {
                        Handled::Credit(n) => credit = credit.saturating_add(n),
                        Handled::Reply(reply) => pending.push_back(reply),
                    },
                    None => break Ok(()),
                },
                pulled = async {
                    match delivery.as_mut() {
                        Some(pull) => pull.await,
                        None => future::pending().await,
                    }
                }, if delivery.is_some() => {
                    delivery = None;
                    match pulled {
                        Ok(Ok(pulled)) => {
                            credit = credit.saturating_sub(pulled.delivered.len() as u64);
                            if let Err(stop) = self.deliver(pulled, &outbox).await {
                                break Err(stop);
                            }
                        }
                        Ok(Err(e)) => break Err(self.fatal(e, &outbox).await),
                        Err(e) => break Err(self.fatal(e.into(), &outbox).await),
                    }
                }
            }
        };
        // Answer what was accepted, then give the leases back.
        while let Some(reply) = pending.next().await {
            if outbox.send(&reply).await.is_err() {
                break;
            }
        }
        let subscription = self.subscription.clone();
        let holder = self.holder;
        let consumer = self.consumer.clone();
        tokio::spawn(async move {
            // A pull still running would lease to this socket: stop it
            // (whatever it leased already carries this socket's holder id),
            // then release everything the socket held.
            if let Some(pull) = delivery {
                pull.abort();
                let _ = pull.await;
            }
            if let Err(e) = subscription
                .release_holder(holder, consumer.as_deref())
                .await
            {
                tracing::warn!(error = %e, "releasing a closed socket's leases failed");
            }
        });
        outcome
    }
}

/// What a client frame leads to.
enum Handled {
    Credit(u64),
    Reply(BoxFuture<'static, ServerFrame>),
}

impl Subscribe {
    fn start_pull(&self, credit: u64) -> Pull {
        let subscription = self.subscription.clone();
        let params = PullParams {
            max_messages: credit.min(u64::from(MAX_PULL_MESSAGES)) as usize,
            wait_ms: DELIVERY_WAIT_MS,
            consumer: self.consumer.clone(),
            holder: Some(self.holder),
        };
        tokio::spawn(async move { subscription.pull_deliveries(params).await })
    }

    /// Sends what a pull leased, in this socket's encoding.
    async fn deliver(&self, pulled: Pulled, outbox: &Outbox) -> Result<(), Stop> {
        match self.encoding {
            SocketEncoding::Json => {
                for d in &pulled.delivered {
                    let frame = pulled_json::message_frame(&self.topic, d);
                    let text = String::from_utf8(frame).map_err(|e| {
                        tracing::error!(error = %e, "a message frame is not UTF-8");
                        Stop::Close(Close::internal())
                    })?;
                    outbox.send_text(text).await?;
                }
            }
            SocketEncoding::Binary => {
                for frame in binary::delivery_frames(&pulled.delivered, BINARY_FRAME_BYTES) {
                    outbox.send_binary(frame).await?;
                }
            }
        }
        Ok(())
    }

    /// A delivery failed for good (subscription or topic deleted, server
    /// shutting down, store failure): say why, then close.
    async fn fatal(&self, error: BrokerError, outbox: &Outbox) -> Stop {
        let (code, detail) = error_parts(error);
        let frame = ServerFrame::Error {
            code,
            detail: detail.clone(),
            request_id: None,
        };
        if outbox.send(&frame).await.is_err() {
            return Stop::Closed;
        }
        Stop::Close(Close::for_error(code, detail))
    }

    fn handle(&self, text: &str) -> Handled {
        let frame = match client_frame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                return reply_now(invalid(format!("invalid frame: {e}"), request_id_of(text)))
            }
        };
        let (ids, what, request_id, kind) = match frame {
            ClientFrame::Credit { messages } => return Handled::Credit(u64::from(messages)),
            ClientFrame::Ack {
                ack_ids,
                request_id,
            } => (ack_ids, Settle::Ack, request_id, Kind::Acked),
            ClientFrame::Nack {
                ack_ids,
                reason,
                delay_ms,
                retry,
                request_id,
            } => (
                ack_ids,
                Settle::Nack {
                    reason,
                    delay_ms,
                    retry: retry.unwrap_or(true),
                },
                request_id,
                Kind::Nacked,
            ),
            ClientFrame::Extend {
                ack_ids,
                ack_timeout_ms,
                request_id,
            } => (
                ack_ids,
                Settle::Extend {
                    lease_ms: ack_timeout_ms,
                },
                request_id,
                Kind::Extended,
            ),
            ClientFrame::Publish { request_id, .. } => {
                return reply_now(invalid(
                    "`publish` frames go to /v1/topics/{topic}/ws/publish".into(),
                    Some(request_id),
                ))
            }
        };
        let subscription = self.subscription.clone();
        // Spawned: a socket that goes away never cancels a half-done commit.
        let settle = tokio::spawn(async move { subscription.settle(&ids, what).await });
        Handled::Reply(Box::pin(async move {
            let result = match settle.await {
                Ok(r) => r,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(response) => {
                    let confirmation = Confirmation {
                        request_id,
                        count: response.acked,
                        unknown: response.unknown,
                    };
                    match kind {
                        Kind::Acked => ServerFrame::Acked(confirmation),
                        Kind::Nacked => ServerFrame::Nacked(confirmation),
                        Kind::Extended => ServerFrame::Extended(confirmation),
                    }
                }
                Err(e) => {
                    let (code, detail) = error_parts(e);
                    ServerFrame::Error {
                        code,
                        detail,
                        request_id,
                    }
                }
            }
        }))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Acked,
    Nacked,
    Extended,
}

fn reply_now(frame: ServerFrame) -> Handled {
    Handled::Reply(Box::pin(future::ready(frame)))
}

fn invalid(detail: String, request_id: Option<String>) -> ServerFrame {
    ServerFrame::Error {
        code: ErrorCode::InvalidRequest,
        detail,
        request_id,
    }
}

/// The `request_id` of a frame that did not parse, if it has one.
fn request_id_of(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("request_id")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;
    use weir_protocol::{ProduceMessage, SubscriptionSpec};

    use super::super::testing::{broker_with_topic, options, spawn, TestBroker};
    use super::*;

    /// The protocol of a socket on subscription `s` of topic `t`.
    fn on_sub_s(tb: &TestBroker, encoding: SocketEncoding) -> Subscribe {
        Subscribe {
            subscription: tb.broker.subscription("t", "s").unwrap(),
            topic: "t".into(),
            consumer: None,
            encoding,
            holder: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
        }
    }

    #[tokio::test]
    async fn credit_acks_nacks_and_errors_over_a_channel_socket() {
        let tb = broker_with_topic("t", 1).await;
        let spec: SubscriptionSpec = serde_json::from_value(json!({"start": "earliest", "retry": {"max_attempts": null, "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "jitter": 0.0}}})).unwrap();
        tb.broker
            .put_subscription("t", "s", &spec, 1)
            .await
            .unwrap();
        let messages: Vec<ProduceMessage> = (0..5)
            .map(|i| serde_json::from_value(json!({"value": i})).unwrap())
            .collect();
        tb.broker.produce("t", messages, 2).await.unwrap();
        let protocol = on_sub_s(&tb, SocketEncoding::Json);
        let (mut client, _shutdown, _task) = spawn(protocol, options(), 16);

        client.send_text(r#"{"type":"credit","messages":2}"#).await;
        let a = client.json().await;
        let b = client.json().await;
        assert_eq!(
            (a["type"].as_str(), b["type"].as_str()),
            (Some("message"), Some("message"))
        );
        // Credit is used up: the next frame is the ack confirmation, not a message.
        client
            .send_text(
                &json!({"type": "ack", "request_id": "r1", "ack_ids": [a["ack_id"]]}).to_string(),
            )
            .await;
        assert_eq!(
            client.json().await,
            json!({"type": "acked", "request_id": "r1", "count": 1, "unknown": []})
        );
        client.send_text(&json!({"type": "nack", "request_id": "r2", "ack_ids": [b["ack_id"]], "reason": "x"}).to_string()).await;
        let nacked = client.json().await;
        assert_eq!(
            (nacked["type"].as_str(), nacked["count"].as_u64()),
            (Some("nacked"), Some(1))
        );
        // Errors keep the socket open.
        client.send_text("not json").await;
        assert_eq!(client.json().await["code"], "invalid_request");
        client
            .send_text(r#"{"type":"ack","request_id":"r3","ack_ids":["short"]}"#)
            .await;
        let err = client.json().await;
        assert_eq!(
            (err["code"].as_str(), err["request_id"].as_str()),
            (Some("invalid_request"), Some("r3"))
        );
        client
            .send_text(r#"{"type":"publish","request_id":"p","messages":[]}"#)
            .await;
        assert_eq!(client.json().await["request_id"], "p");
        // The rest, including the nacked message as attempt 2.
        client.send_text(r#"{"type":"credit","messages":10}"#).await;
        let mut attempts = Vec::new();
        for _ in 0..4 {
            let m = client.json().await;
            assert_eq!(m["type"], "message");
            attempts.push(m["attempt"].as_u64().unwrap());
        }
        attempts.sort_unstable();
        assert_eq!(attempts, vec![1, 1, 1, 2]);
    }

    #[tokio::test]
    async fn binary_sockets_get_runs_of_deliveries_in_binary_frames() {
        use weir_protocol::binary::decode_messages;
        let tb = broker_with_topic("t", 1).await;
        let spec: SubscriptionSpec = serde_json::from_value(json!({"start": "earliest"})).unwrap();
        tb.broker
            .put_subscription("t", "s", &spec, 1)
            .await
            .unwrap();
        let messages: Vec<ProduceMessage> = (0..5)
            .map(|i| serde_json::from_value(json!({"value": i, "key": format!("k{i}")})).unwrap())
            .collect();
        tb.broker.produce("t", messages, 2).await.unwrap();
        let protocol = on_sub_s(&tb, SocketEncoding::Binary);
        let (mut client, _shutdown, _task) = spawn(protocol, options(), 16);
        // Credit still bounds what is sent: 3 of 5, in one frame.
        client.send_text(r#"{"type":"credit","messages":3}"#).await;
        let first = decode_messages(&client.binary().await).unwrap();
        assert_eq!(first.len(), 3);
        for (i, m) in first.iter().enumerate() {
            assert_eq!(m.offset, i as u64);
            assert_eq!(m.value, i.to_string().into_bytes());
            assert!(m.json);
            assert_eq!(m.key.as_deref(), Some(format!("k{i}").as_str()));
            assert_eq!(m.delivery.as_ref().map(|d| d.1), Some(1));
        }
        // Acks stay JSON, with the ack ids the binary frame carried.
        let ids: Vec<&str> = first
            .iter()
            .map(|m| m.delivery.as_ref().unwrap().0.as_str())
            .collect();
        client
            .send_text(&json!({"type": "ack", "request_id": "a", "ack_ids": ids}).to_string())
            .await;
        assert_eq!(
            client.json().await,
            json!({"type": "acked", "request_id": "a", "count": 3, "unknown": []})
        );
        client.send_text(r#"{"type":"credit","messages":10}"#).await;
        let rest = decode_messages(&client.binary().await).unwrap();
        assert_eq!(
            rest.iter().map(|m| m.offset).collect::<Vec<_>>(),
            vec![3, 4]
        );
    }
}
