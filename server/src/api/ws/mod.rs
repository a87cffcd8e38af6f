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
use axum::extract::WebSocketUpgrade;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::ws::{ClientFrame, ServerFrame, TailFrame};
use weir_protocol::ErrorCode;

pub use session::{Close, Ending, Inbound, Outbox, Protocol, Stop};

use super::error::{ApiError, ApiResult};
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
    /// configured frame and message size limits.
    pub fn accept<P: Protocol>(&self, upgrade: WebSocketUpgrade, protocol: P) -> Response {
        let options = self.options.clone();
        // Subscribed before the 101 goes out: a socket opened during
        // shutdown still closes, and `closed` waits for it.
        let shutdown = self.shutdown.subscribe();
        upgrade
            .max_message_size(options.max_message_bytes)
            .max_frame_size(options.max_message_bytes)
            .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
            .on_upgrade(move |socket| async move {
                let (outgoing, incoming) = socket.split();
                transport::serve(protocol, incoming, outgoing, &options, shutdown).await;
            })
    }
}

/// The checks every upgrade makes after its own (topic, query): the server
/// is not shutting down and the request really is a WebSocket handshake.
fn upgrade(
    state: &AppState,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<WebSocketUpgrade> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(BrokerError::ShuttingDown.into());
    }
    upgrade.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("expected a websocket upgrade request: {}", e.body_text()),
        )
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
    tags((name = "websocket", description = "Live sockets: tail a topic, publish over one connection. Frames are JSON text frames tagged by `type` (schemas `TailFrame`, `ClientFrame`, `ServerFrame`). Close codes: 1000 done or idle timeout, 1001 server shutting down, 1003 binary frame, 1007 invalid UTF-8, 1008 slow consumer, 1009 message too big, 1011 internal error, 1013 store unavailable (retry later).")),
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
