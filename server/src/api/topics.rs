//! Topic resource: create/update, describe, list, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use weir_protocol::{TopicInfo, TopicList, TopicSpec};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use super::openapi::{Errors, Name, TAG_TOPICS};
use super::paging::PageQuery;
use super::AppState;
use crate::broker::{BrokerError, Upsert};

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
    let now = state.broker.now();
    let outcome = match &state.cluster {
        Some(cluster) => cluster.put_topic(&topic, &spec, now).await?,
        None => {
            // Well-formed but impossible on this server: a conflict with
            // its state (one node), like more copies than a cluster's nodes.
            if spec.replication_factor.is_some_and(|r| r > 1) {
                return Err(BrokerError::Conflict(
                    "a server running alone keeps one copy: `replication_factor` must be 1".into(),
                )
                .into());
            }
            state.broker.put_topic(&topic, &spec, now).await?
        }
    };
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
    match &state.cluster {
        Some(cluster) => cluster.delete_topic(&topic).await?,
        None => state.broker.delete_topic(&topic).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// List topics.
///
/// Only the topics the caller holds some grant on, in name order, one page
/// of `limit` at a time: pass `next` as `cursor` for the next page.
#[utoipa::path(
    get, path = "/v1/topics", tag = TAG_TOPICS,
    params(PageQuery),
    responses((status = 200, description = "One page of topics", body = TopicList), Errors)
)]
pub async fn list_topics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<TopicList>> {
    let visible = state
        .broker
        .topic_names()
        .into_iter()
        .filter(|name| caller.sees_topic(&state.broker, name));
    let (names, next) = query.page(visible, |n| n.as_str())?;
    let topics = names
        .iter()
        .filter_map(|name| state.broker.describe_topic(name).ok())
        .collect();
    Ok(Json(TopicList { topics, next }))
}
