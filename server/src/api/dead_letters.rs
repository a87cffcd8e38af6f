//! Dead letters of a subscription: browse them with filters, redrive or
//! purge a filtered selection (with a dry run that counts and samples).

use axum::extract::State;
use axum::Json;
use weir_protocol::{
    DeadLetterList, DeadLetterQuery, PurgeRequest, PurgeResponse, RedriveRequest, RedriveResponse,
};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::openapi::{Errors, Name, TAG_SUBSCRIPTIONS};
use super::AppState;

/// List dead letters.
///
/// The subscription's dead letters in (partition, offset) order with their
/// state (`waiting`, `redriven`, `purged`), reason, attempts, time and the
/// original message (`null` once retention removed it). Filters combine;
/// a page looks at a bounded number of records, so a page may hold fewer
/// than `limit` even when `next` is set.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscriptions/{sub}/dead-letters", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name"), DeadLetterQuery),
    responses((status = 200, description = "One page of dead letters", body = DeadLetterList), Errors)
)]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> ApiResult<Json<DeadLetterList>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    Ok(Json(subscription.dead_letters(query).await?))
}

/// Redrive dead letters.
///
/// Makes the subscription's waiting dead letters that match `filter`
/// deliverable to it again (attempts reset, other subscriptions
/// unaffected), at most `max` (default all), at most `rate_per_s` a second.
/// `dry_run` only counts and samples. Each batch is one atomic commit: a
/// crash halfway never redrives one twice or loses one, and a second
/// redrive does not redeliver the same dead letters. The dead-letter topic
/// keeps its copies.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/dead-letters/redrive", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = Option<RedriveRequest>, description = "Every field optional; an empty body or `null` reads as `{}`", example = json!({"max": 100, "dry_run": false, "filter": {"reason": "timeout", "min_attempts": 3}})),
    responses((status = 200, description = "Redriven (or counted, for a dry run)", body = RedriveResponse), Errors)
)]
pub async fn redrive(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<RedriveRequest>,
) -> ApiResult<Json<RedriveResponse>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    // In its own task: a client going away does not stop a redrive halfway
    // (each batch is atomic either way).
    let task = tokio::spawn(async move { subscription.redrive_filtered(&request).await });
    Ok(Json(task.await.map_err(crate::broker::BrokerError::from)??))
}

/// Purge dead letters.
///
/// Marks the waiting dead letters that match `filter` purged: they are no
/// longer counted in `dead_lettered` and cannot be redriven (their records
/// and the dead-letter topic's copies stay).
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/dead-letters/purge", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = Option<PurgeRequest>, description = "Every field optional; an empty body or `null` reads as `{}`", example = json!({"dry_run": true, "filter": {"reason_regex": "^invalid"}})),
    responses((status = 200, description = "Purged (or counted, for a dry run)", body = PurgeResponse), Errors)
)]
pub async fn purge(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<PurgeRequest>,
) -> ApiResult<Json<PurgeResponse>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    let task = tokio::spawn(async move { subscription.purge_dead_letters(&request).await });
    Ok(Json(task.await.map_err(crate::broker::BrokerError::from)??))
}
