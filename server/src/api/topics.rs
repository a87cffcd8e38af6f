//! Topic resource: create/update, describe, list, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use weir_protocol::{TopicInfo, TopicList, TopicSpec};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath};
use super::openapi::{Errors, Name, TAG_TOPICS};
use super::AppState;
use crate::broker::{clock::now_ms, Upsert};

/// Create a topic, or update its mutable settings.
///
/// Creation answers 201; an update 200; the same body twice changes nothing.
#[utoipa::path(
    put, path = "/v1/topics/{topic}", tag = TAG_TOPICS,
    params(("topic" = Name, Path, description = "Topic name")),
    request_body(content = Option<TopicSpec>, description = "Every field optional; an empty body or `null` reads as `{}`"),
    responses(
        (status = 201, description = "Topic created", body = TopicInfo),
        (status = 200, description = "Topic updated or unchanged", body = TopicInfo),
        Errors,
    )
)]
pub async fn put_topic(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    ApiJson(spec): ApiJson<TopicSpec>,
) -> ApiResult<(StatusCode, Json<TopicInfo>)> {
    let outcome = state.broker.put_topic(&topic, &spec, now_ms()).await?;
    let status = match outcome {
        Upsert::Created => StatusCode::CREATED,
        Upsert::Updated | Upsert::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(state.broker.describe_topic(&topic)?)))
}

/// Describe a topic: configuration and partition offsets.
#[utoipa::path(
    get, path = "/v1/topics/{topic}", tag = TAG_TOPICS,
    params(("topic" = Name, Path, description = "Topic name")),
    responses((status = 200, description = "The topic", body = TopicInfo), Errors)
)]
pub async fn get_topic(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<TopicInfo>> {
    Ok(Json(state.broker.describe_topic(&topic)?))
}

/// Delete a topic with its data and subscriptions.
#[utoipa::path(
    delete, path = "/v1/topics/{topic}", tag = TAG_TOPICS,
    params(("topic" = Name, Path, description = "Topic name")),
    responses((status = 204, description = "Deleted"), Errors)
)]
pub async fn delete_topic(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.broker.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List topics.
#[utoipa::path(
    get, path = "/v1/topics", tag = TAG_TOPICS,
    responses((status = 200, description = "All topics", body = TopicList), Errors)
)]
pub async fn list_topics(State(state): State<AppState>) -> Json<TopicList> {
    Json(TopicList {
        topics: state.broker.list_topics(),
    })
}
