//! A client's subscription WebSocket piped to the node serving the
//! topic's subscriptions (`forward.rs` says which): the node the client
//! connected to accepts the socket and relays frames both ways over a
//! socket of its own to that node's `/forward/...`. When the serving node
//! goes away or stops serving (an `unavailable` error frame, or a close
//! saying so), the pipe connects to the next one and gives it the credit
//! the client still had; the client's socket stays open, and the
//! deliveries it had not acked come again.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame as AxumClose, Message as AxumMessage, WebSocket};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::forward::{client_headers, FORWARDED_HEADER};
use super::network::{FROM_HEADER, TO_HEADER};
use super::node::Cluster;
use super::subscriptions::Served;
use super::types::NodeId;

/// How long a piped socket looks for the next serving node.
const SOCKET_RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening the socket to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The socket to the serving node.
type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Cluster {
    /// Pipes a client's subscription WebSocket to the node serving the
    /// topic's subscriptions, moving to the next one when that node goes
    /// away or stops serving (see the module docs).
    pub async fn pipe_socket(
        self: std::sync::Arc<Self>,
        topic: String,
        mut client: WebSocket,
        target: String,
        headers: HeaderMap,
        certificate: Option<String>,
    ) {
        let mut credit: u64 = 0;
        loop {
            let Some(mut upstream) = self
                .connect_upstream(&topic, &target, &headers, certificate.as_deref())
                .await
            else {
                let _ = client
                    .send(AxumMessage::Close(Some(AxumClose {
                        code: 1013,
                        reason: "no node serves this subscription right now; reconnect".into(),
                    })))
                    .await;
                return;
            };
            if credit > 0 {
                let frame = format!(
                    r#"{{"type":"credit","messages":{}}}"#,
                    credit.min(u64::from(u32::MAX))
                );
                if upstream.send(Message::text(frame)).await.is_err() {
                    continue;
                }
            }
            let resume = loop {
                tokio::select! {
                    from_client = client.recv() => match from_client {
                        Some(Ok(AxumMessage::Text(text))) => {
                            credit = credit.saturating_add(credit_in(text.as_str()));
                            if upstream.send(Message::text(text.as_str())).await.is_err() {
                                break true;
                            }
                        }
                        Some(Ok(AxumMessage::Binary(bytes))) => {
                            if upstream.send(Message::binary(bytes)).await.is_err() {
                                break true;
                            }
                        }
                        Some(Ok(AxumMessage::Close(frame))) => {
                            let frame = frame.map(|f| CloseFrame {
                                code: CloseCode::from(f.code),
                                reason: f.reason.as_str().into(),
                            });
                            let _ = upstream.close(frame).await;
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            let _ = upstream.close(None).await;
                            return;
                        }
                    },
                    from_server = upstream.next() => match from_server {
                        Some(Ok(Message::Text(text))) => {
                            if is_unavailable_error(text.as_str()) {
                                // It stopped serving: the next node takes over.
                                break true;
                            }
                            if text.as_str().starts_with(r#"{"type":"message""#) {
                                credit = credit.saturating_sub(1);
                            }
                            if client.send(AxumMessage::Text(text.as_str().into())).await.is_err() {
                                let _ = upstream.close(None).await;
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            if client.send(AxumMessage::Binary(bytes)).await.is_err() {
                                let _ = upstream.close(None).await;
                                return;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                            if resumable(code) {
                                break true;
                            }
                            let frame = frame.map(|f| AxumClose {
                                code,
                                reason: f.reason.as_str().into(),
                            });
                            let _ = client.send(AxumMessage::Close(frame)).await;
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break true,
                    },
                }
            };
            if !resume {
                return;
            }
            tracing::info!(topic = %topic, "a piped subscription socket lost its serving node; resuming on the next");
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Opens the socket to the node serving `topic`'s subscriptions,
    /// retrying (bounded) while none takes it.
    async fn connect_upstream(
        &self,
        topic: &str,
        target: &str,
        headers: &HeaderMap,
        certificate: Option<&str>,
    ) -> Option<Upstream> {
        let deadline = Instant::now() + SOCKET_RESUME_TIMEOUT;
        while Instant::now() < deadline {
            let node = match self.subscriptions_served(topic) {
                Served::Here | Served::Locally => Some(self.node_id()),
                Served::At(node) => Some(node),
                Served::Nobody => None,
            };
            let address_of = |n: NodeId| {
                if n == self.node_id() {
                    Some(self.listen_address().to_owned())
                } else {
                    self.address_of(n)
                }
            };
            if let Some((node, address)) = node.and_then(|n| address_of(n).map(|a| (n, a))) {
                match self
                    .open_upstream(node, &address, target, headers, certificate)
                    .await
                {
                    Ok(socket) => return Some(socket),
                    Err(e) => {
                        tracing::debug!(node, error = %e, "piping a subscription socket failed; retrying")
                    }
                }
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        None
    }

    async fn open_upstream(
        &self,
        node: NodeId,
        address: &str,
        target: &str,
        headers: &HeaderMap,
        certificate: Option<&str>,
    ) -> Result<Upstream, String> {
        let mut request = format!("ws://{address}/forward{target}")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let out = request.headers_mut();
        for (name, value) in client_headers(headers, certificate) {
            if let Some(name) = name {
                if !name.as_str().starts_with("sec-websocket-") || name == "sec-websocket-protocol"
                {
                    out.append(name, value);
                }
            }
        }
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.peers().secret()))
            .map_err(|e| e.to_string())?;
        out.insert(axum::http::header::AUTHORIZATION, bearer);
        for (name, value) in [
            (FROM_HEADER, self.node_id().to_string()),
            (TO_HEADER, node.to_string()),
            (FORWARDED_HEADER, self.node_id().to_string()),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                out.insert(HeaderName::from_static(name), value);
            }
        }
        let connect = tokio_tungstenite::connect_async(request);
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(socket)
    }
}

/// Credit a client frame gives (0 for other frames).
fn credit_in(text: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct Credit {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        messages: u64,
    }
    match serde_json::from_str::<Credit>(text) {
        Ok(c) if c.kind == "credit" => c.messages,
        _ => 0,
    }
}

/// An error frame saying the node cannot serve the subscription now.
fn is_unavailable_error(text: &str) -> bool {
    text.starts_with(r#"{"type":"error""#) && text.contains(r#""code":"unavailable""#)
}

/// Close codes after which the subscription is looked for elsewhere:
/// going away (a node stopping), abnormal, internal error, restart, try
/// again later.
fn resumable(code: u16) -> bool {
    matches!(code, 1001 | 1005 | 1006 | 1011 | 1012 | 1013)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_frames_are_counted_and_others_are_not() {
        assert_eq!(credit_in(r#"{"type":"credit","messages":7}"#), 7);
        assert_eq!(credit_in(r#"{"type":"ack","ack_ids":["a"]}"#), 0);
        assert_eq!(credit_in("not json"), 0);
    }

    #[test]
    fn only_failures_of_the_node_resume_a_socket() {
        assert!(resumable(1001));
        assert!(resumable(1013));
        assert!(!resumable(1000));
        assert!(!resumable(1008));
        assert!(is_unavailable_error(
            r#"{"type":"error","code":"unavailable","detail":"x"}"#
        ));
        assert!(!is_unavailable_error(
            r#"{"type":"error","code":"not_found","detail":"x"}"#
        ));
    }
}
