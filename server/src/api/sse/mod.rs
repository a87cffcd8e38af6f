//! Server-Sent Events: the live tail of a topic (`topic.rs`) and the
//! deliveries of a subscription (`subscription.rs`) as `text/event-stream`
//! responses, usable from a browser's `EventSource` or any HTTP client.
//!
//! Every event is `event: message` with the message JSON in `data` and an
//! `id`: a resume token on topic streams (`position.rs`), the ack id on
//! subscription streams. A `: ping` comment goes out after [`HEARTBEAT`]
//! without events, so proxies keep the connection and clients can tell a
//! quiet stream from a dead one. A failure after the stream started is an
//! `event: error` with `data: {"code","detail"}` (the code an HTTP request
//! would get), and the stream ends; refusals before it starts are problem
//! documents.
//!
//! Bounds, as for WebSockets: a stream is read from the store only as fast
//! as the client takes events (nothing is queued beyond the event being
//! written), each one holds one of the principal's `max_ws_per_principal`
//! slots, and every stream ends promptly when the server shuts down (an
//! `error` event with `shutting_down` comes first), so open streams never
//! hold a graceful shutdown up.

mod position;
mod subscription;
#[cfg(test)]
mod tests;
mod topic;

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::ErrorCode;

use super::error::{ApiError, ApiResult};
use super::guard::Caller;
use super::limits::WebSocketSlot;
use super::AppState;
use crate::broker::BrokerError;

pub const TAG_EVENTS: &str = "events";

/// Longest quiet time before a `: ping` comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Who opens a stream (put there by the guard).
pub struct Opener {
    caller: Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for Opener {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))?;
        Ok(Opener { caller })
    }
}

/// The checks every stream makes before it starts (after its own): the
/// server is not shutting down and the caller has a slot left.
fn admit(state: &AppState, opener: &Opener) -> ApiResult<WebSocketSlot> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(BrokerError::ShuttingDown.into());
    }
    state.limits.websocket(opener.caller.name())
}

/// The response for `events`, with heartbeats every `heartbeat`; `slot`
/// is released when the client goes or the stream ends.
fn respond<S>(events: S, slot: WebSocketSlot, heartbeat: Duration) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let stream = events.map(move |event| {
        let _held = &slot;
        Ok::<_, Infallible>(event)
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("ping"))
        .into_response()
}

/// `data` of an `error` event.
#[derive(Debug, Serialize)]
struct ErrorData<'a> {
    code: ErrorCode,
    detail: &'a str,
}

/// An `error` event: the code and detail an HTTP request would get (a 5xx
/// is logged and says "internal error").
fn error_event(error: BrokerError) -> Event {
    let problem = ApiError::from(error).problem;
    let data = ErrorData {
        code: problem.code,
        detail: &problem.detail,
    };
    let text = serde_json::to_string(&data)
        .unwrap_or_else(|_| r#"{"code":"internal","detail":"internal error"}"#.to_owned());
    Event::default().event("error").data(text)
}

/// A `message` event with `data` as JSON and this `id`, or an `error`
/// event if `data` cannot be serialized.
fn message_event(id: &str, data: &impl Serialize) -> Event {
    match serde_json::to_string(data) {
        Ok(text) => Event::default().id(id).event("message").data(text),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an event");
            error_event(BrokerError::Task(e.to_string()))
        }
    }
}

/// The tag of the event stream endpoints.
#[derive(OpenApi)]
#[openapi(tags((name = "events", description = "Server-Sent Events (`text/event-stream`, for `EventSource`): a topic's live tail and a subscription's deliveries. Each event is `event: message` with an `id:` and the message JSON in `data:`; `: ping` comments are heartbeats; a failure after the stream started is an `event: error` with `data: {\"code\",\"detail\"}`, and the stream ends.")))]
struct SseDoc;

/// The Server-Sent Events routes and their OpenAPI paths.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(SseDoc::openapi())
        .routes(routes!(topic::topic_events))
        .routes(routes!(subscription::subscription_events))
}
