//! Pause and resume a subscription: no new deliveries while paused; acks,
//! nacks and extends keep working.

use axum::extract::State;
use axum::Json;
use weir_protocol::{PauseRequest, ResumeRequest, SubscriptionInfo};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath};
use super::openapi::{Errors, Name, TAG_SUBSCRIPTIONS};
use super::AppState;

/// Pause a subscription.
///
/// No new deliveries (pulls return nothing, sockets and push send nothing)
/// until resumed; leases already out can still be acked, nacked and
/// extended. Survives restarts. `GET` shows `paused` and `paused_reason`.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/pause", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = Option<PauseRequest>, description = "Optional; an empty body or `null` reads as `{}`", example = json!({"reason": "incident 42: payment provider down"})),
    responses((status = 200, description = "Paused", body = SubscriptionInfo), Errors)
)]
pub async fn pause(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<PauseRequest>,
) -> ApiResult<Json<SubscriptionInfo>> {
    state
        .broker
        .pause_subscription(&topic, &sub, request.reason)
        .await?;
    Ok(Json(state.broker.subscription(&topic, &sub)?.info().await?))
}

/// Resume a subscription.
///
/// Deliveries start again, whether it was paused by hand or by its circuit
/// breaker. With `"redrive": true` the dead letters of the breaker's
/// window (the ones that tripped it) are redriven too.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/resume", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = Option<ResumeRequest>, description = "Optional; an empty body or `null` reads as `{}`", example = json!({"redrive": true})),
    responses((status = 200, description = "Resumed", body = SubscriptionInfo), Errors)
)]
pub async fn resume(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<ResumeRequest>,
) -> ApiResult<Json<SubscriptionInfo>> {
    state
        .broker
        .resume_subscription(&topic, &sub, request.redrive.unwrap_or(false))
        .await?;
    Ok(Json(state.broker.subscription(&topic, &sub)?.info().await?))
}
