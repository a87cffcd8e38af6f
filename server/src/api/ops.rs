//! Operational endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::TAG_OPS;
use super::AppState;
use crate::metrics::METRICS;

/// Health status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or why the server is not ready.
    pub status: String,
}

/// How long the store may keep failing writes (reopening without
/// success) before liveness fails, so an orchestrator restarts the process
/// (the restart recovers from the write-ahead log).
const STORE_FAILURE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Liveness: the process is up and its store is not stuck failing.
#[utoipa::path(get, path = "/healthz", tag = TAG_OPS,
    responses(
        (status = 200, description = "Alive", body = Health),
        (status = 503, description = "The store has failed writes for over 30 s and could not be reopened: restart the process", body = Health),
    ))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.broker.store_health().failing_for {
        Some(t) if t > STORE_FAILURE_GRACE => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "store_failed".into(),
            }),
        ),
        _ => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        ),
    }
}

/// Readiness: the store is open and accepting writes.
#[utoipa::path(get, path = "/readyz", tag = TAG_OPS,
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not accepting writes (read-only store or shutting down)", body = Health),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.not_ready_reason() {
        None => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: reason.into(),
            }),
        ),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = TAG_OPS,
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    super::gauges::refresh(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        METRICS.encode(),
    )
}
