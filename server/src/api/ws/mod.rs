//! WebSocket endpoints: the live tail of a topic (`tail.rs`), publishing
//! over one socket (`publish.rs`) and consuming a subscription with credit
//! (`subscribe.rs`), on shared machinery — the socket driver
//! (`transport.rs`) runs any [`Protocol`] (`session.rs`) and owns limits,
//! pings, slow consumers, shutdown and close codes.
//!
//! This file holds what every socket shares: [`Sockets`] (options, the
//! shutdown signal, waiting for sockets to close), the upgrade checks made
//! before a socket exists (so refusals are problem documents), and the
//! routes with their OpenAPI declarations. A new kind of socket is a
//! `Protocol` plus an upgrade handler that calls [`Sockets::accept`].

mod client_frame;
mod publish;
mod session;
mod subscribe;
mod tail;
#[cfg(test)]
mod testing;
mod transport;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequestParts, WebSocketUpgrade};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::ws::{ClientFrame, ServerFrame, TailFrame};
use weir_protocol::ErrorCode;

pub use session::{Close, Ending, InFrame, Inbound, Outbox, Protocol, Stop};

use super::error::{ApiError, ApiResult};
use super::guard::{Caller, BEARER_PROTOCOL_PREFIX};
use super::limits::WebSocketSlot;
use super::AppState;
use crate::broker::BrokerError;
use crate::config::WebSocketOptions;

pub const TAG_WEBSOCKET: &str = "websocket";

/// Every open socket's shared options and shutdown signal.
pub struct Sockets {
    options: WebSocketOptions,
    /// `true` once the server shuts down. Each open socket holds a
    /// receiver, so "no receivers left" means "every socket closed".
    shutdown: watch::Sender<bool>,
}

impl Sockets {
    pub fn new(options: WebSocketOptions) -> Arc<Sockets> {
        Arc::new(Sockets {
            options,
            shutdown: watch::Sender::new(false),
        })
    }

    /// Closes every socket, open or opening, with 1001 (going away) once
    /// its protocol has finished the work it accepted.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Completes when no socket is open any more.
    pub async fn closed(&self) {
        self.shutdown.closed().await;
    }

    /// Completes the upgrade and runs `protocol` on the socket, with the
    /// configured frame and message size limits. The principal's socket
    /// slot is held until the socket closes.
    pub fn accept<P: Protocol>(&self, upgrade: Upgrade, protocol: P) -> Response {
        let Upgrade {
            socket: upgrade,
            slot,
            ..
        } = upgrade;
        let options = self.options.clone();
        // Subscribed before the 101 goes out: a socket opened during
        // shutdown still closes, and `closed` waits for it.
        let shutdown = self.shutdown.subscribe();
        upgrade
            // Idle sockets cost little: tungstenite's 128 KiB default read
            // buffer per socket would make 10k idle sockets cost 1.3 GiB.
            .read_buffer_size(WS_READ_BUFFER_BYTES)
            .write_buffer_size(WS_WRITE_BUFFER_BYTES)
            .max_message_size(options.max_message_bytes)
            .max_frame_size(options.max_message_bytes)
            .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
            .on_upgrade(move |socket| async move {
                let _slot = slot;
                let (outgoing, incoming) = socket.split();
                transport::serve(protocol, incoming, outgoing, &options, shutdown).await;
            })
    }
}

/// Read buffer of each socket (grows per message as needed).
const WS_READ_BUFFER_BYTES: usize = 8 << 10;
/// Bytes gathered before a write to the socket.
const WS_WRITE_BUFFER_BYTES: usize = 16 << 10;

/// An accepted handshake and the caller's socket slot.
pub struct Upgrade {
    socket: WebSocketUpgrade,
    slot: WebSocketSlot,
    principal: String,
}

impl Upgrade {
    /// The principal opening the socket (`anonymous` without auth).
    pub fn principal(&self) -> &str {
        &self.principal
    }
}

/// Who opens a socket, and the subprotocols it offered.
pub struct WsClient {
    caller: Caller,
    /// The `Sec-WebSocket-Protocol` entries offered, in order.
    offered: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WsClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))?;
        let offered = offered_protocols(&parts.headers);
        Ok(WsClient { caller, offered })
    }
}

/// The `Sec-WebSocket-Protocol` entries a handshake offers, in order.
pub fn offered_protocols(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The subprotocol the server selects among `offered`: `weir` when
/// offered, else the `bearer.` entry (browsers fail a handshake whose
/// answer selects none of what they offered).
pub fn selected_protocol(offered: &[String]) -> Option<String> {
    if offered.iter().any(|p| p == SUBPROTOCOL) {
        Some(SUBPROTOCOL.to_owned())
    } else {
        offered
            .iter()
            .find(|p| p.starts_with(BEARER_PROTOCOL_PREFIX))
            .cloned()
    }
}

/// The subprotocol a client may offer to name the API (browsers that pass
/// a token as `bearer.<token>` should offer it too, so the server's answer
/// need not repeat the token).
pub const SUBPROTOCOL: &str = "weir";

/// The checks every upgrade makes after its own (topic, query): the server
/// is not shutting down, the request really is a WebSocket handshake, and
/// the caller has a socket slot left. A client that offered subprotocols
/// gets one selected (`weir` when offered, else its `bearer.` entry):
/// browsers fail a handshake whose answer selects none.
fn upgrade(
    state: &AppState,
    client: WsClient,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Upgrade> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(BrokerError::ShuttingDown.into());
    }
    let socket = upgrade.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("expected a websocket upgrade request: {}", e.body_text()),
        )
    })?;
    let slot = state.limits.websocket(client.caller.name())?;
    let socket = match selected_protocol(&client.offered) {
        Some(protocol) => socket.protocols([protocol]),
        None => socket,
    };
    Ok(Upgrade {
        socket,
        slot,
        principal: client.caller.name().to_owned(),
    })
}

/// A domain error as an error frame's `code` and `detail` (the same ones an
/// HTTP request would get; a 5xx is logged and says "internal error").
fn error_parts(error: BrokerError) -> (ErrorCode, String) {
    let problem = ApiError::from(error).problem;
    (problem.code, problem.detail)
}

/// Frame schemas and the tag of the WebSocket endpoints.
#[derive(OpenApi)]
#[openapi(
    tags((name = "websocket", description = "Live sockets: tail a topic, publish over one connection, consume a subscription. Frames are JSON text frames tagged by `type` (schemas `TailFrame`, `ClientFrame`, `ServerFrame`). A publish socket also takes binary frames in the binary batch encoding (`application/vnd.weir.batch`, kind 3), and a subscription socket opened with `?encoding=binary` sends its deliveries as binary frames (kind 2 messages bodies, a run of deliveries each). Close codes: 1000 done or idle timeout, 1001 server shutting down, 1003 binary frame (other sockets), 1007 invalid UTF-8, 1008 slow consumer, 1009 message too big, 1011 internal error, 1013 store unavailable (retry later).")),
    components(schemas(TailFrame, ClientFrame, ServerFrame)),
)]
struct WsDoc;

/// The WebSocket routes and their OpenAPI paths.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(WsDoc::openapi())
        .routes(routes!(tail::tail))
        .routes(routes!(publish::publish))
        .routes(routes!(subscribe::subscribe))
}
