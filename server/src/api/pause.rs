//! Operating a subscription: pause and resume (no new deliveries while
//! paused; acks, nacks and extends keep working) and the leases out now.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use weir_protocol::{LeaseList, PauseRequest, ResumeRequest, SubscriptionInfo};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath, ApiQuery};
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

/// Query of `GET .../leases`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeasesQuery {
    /// Leases listed at most, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// List the leases out now.
///
/// Deliveries awaiting their ack, with the consumer that pulled them (when
/// one was named) and when each lease expires. Queue mode: one per
/// message; stream mode: one per partition for its run in flight.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscriptions/{sub}/leases", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name"), LeasesQuery),
    responses((status = 200, description = "Leases in (partition, offset) order", body = LeaseList), Errors)
)]
pub async fn leases(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<LeasesQuery>,
) -> ApiResult<Json<LeaseList>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    Ok(Json(subscription.leases(query.limit).await?))
}
