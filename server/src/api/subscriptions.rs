//! Subscription resource: create/update, describe, list, delete, and the
//! consumption operations (pull, ack, nack, extend, seek, redrive).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use weir_protocol::{
    AckRequest, AckResponse, ExtendRequest, NackRequest, PullRequest, PullResponse, SeekRequest,
    SubscriptionInfo, SubscriptionList, SubscriptionSpec,
};

use super::error::ApiResult;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use super::openapi::{Errors, Name, TAG_SUBSCRIPTIONS};
use super::paging::PageQuery;
use super::AppState;
use crate::broker::subscription::pull::check_pull;
use crate::broker::subscription::settle::Settle;
use crate::broker::subscription::PullParams;
use crate::broker::{check_name, Upsert};

/// Create a subscription, or update its mutable settings.
///
/// Creation answers 201, an update 200. `mode` cannot change (409);
/// `start` applies at creation only. Every field is optional: queue mode,
/// start at `latest`, 30 s leases, 5 attempts with exponential backoff
/// (1 s to 60 s, ×2, 10% jitter), dead letters to `<topic>.<sub>.dlq`.
#[utoipa::path(
    put, path = "/v1/topics/{topic}/subscriptions/{sub}", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = Option<SubscriptionSpec>, description = "Every field optional; an empty body or `null` reads as `{}`"),
    responses(
        (status = 201, description = "Subscription created", body = SubscriptionInfo),
        (status = 200, description = "Subscription updated or unchanged", body = SubscriptionInfo),
        Errors,
    )
)]
pub async fn put_subscription(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(spec): ApiJson<SubscriptionSpec>,
) -> ApiResult<(StatusCode, Json<SubscriptionInfo>)> {
    let now = state.broker.now();
    let outcome = match &state.cluster {
        Some(cluster) if state.broker.is_replicated(&topic) => {
            cluster.put_subscription(&topic, &sub, &spec, now).await?
        }
        _ => {
            state
                .broker
                .put_subscription(&topic, &sub, &spec, now)
                .await?
        }
    };
    let status = match outcome {
        Upsert::Created => StatusCode::CREATED,
        Upsert::Updated | Upsert::Unchanged => StatusCode::OK,
    };
    let info = state.broker.subscription(&topic, &sub)?.info().await?;
    Ok((status, Json(info)))
}

/// Describe a subscription: configuration and statistics.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscriptions/{sub}", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    responses((status = 200, description = "The subscription", body = SubscriptionInfo), Errors)
)]
pub async fn get_subscription(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
) -> ApiResult<Json<SubscriptionInfo>> {
    Ok(Json(state.broker.subscription(&topic, &sub)?.info().await?))
}

/// Delete a subscription and its state (the topic's data stays).
#[utoipa::path(
    delete, path = "/v1/topics/{topic}/subscriptions/{sub}", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    responses((status = 204, description = "Deleted"), Errors)
)]
pub async fn delete_subscription(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    match &state.cluster {
        Some(cluster) if state.broker.is_replicated(&topic) => {
            cluster.delete_subscription(&topic, &sub).await?
        }
        _ => state.broker.delete_subscription(&topic, &sub).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// List a topic's subscriptions with their statistics.
///
/// Only the subscriptions the caller may see, in name order, one page of
/// `limit` at a time: pass `next` as `cursor` for the next page.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscriptions", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), PageQuery),
    responses((status = 200, description = "One page of subscriptions, ordered by name", body = SubscriptionList), Errors)
)]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(topic): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<SubscriptionList>> {
    let t = state.broker.topic(&topic)?;
    let mut named: Vec<(String, _)> = t
        .subscription_list()
        .into_iter()
        .map(|sub| (sub.name(), sub))
        .filter(|(name, _)| caller.sees_subscription(&state.broker, &topic, name))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = query.page(named.into_iter(), |(name, _)| name.as_str())?;
    let mut subscriptions = Vec::with_capacity(page.len());
    for (_, sub) in page {
        subscriptions.push(sub.info().await?);
    }
    Ok(Json(SubscriptionList {
        subscriptions,
        next,
    }))
}

/// Lease messages.
///
/// Returns up to `max_messages` (1..=1000, default 10) leased messages,
/// each with an opaque `ack_id` and its delivery `attempt`. With `wait_ms`
/// (at most 60000) the call long-polls until at least one message is
/// available. Queue mode: messages are leased individually for
/// `ack_timeout_ms`. Stream mode: the `consumer` is assigned a fair share of
/// the partitions (kept while it keeps pulling) and gets their messages in
/// offset order. In queue mode a non-empty response also carries a
/// `batch_ack_id`: one id that acks, nacks or extends every message of this
/// pull still leased under it, in place of their ack ids. With `Accept:
/// application/vnd.weir.batch` the deliveries come in the binary encoding
/// (each with its ack id and attempt; the batch ack id in the
/// `Weir-Batch-Ack-Id` header).
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/pull", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = Option<PullRequest>, description = "Every field optional; an empty body or `null` reads as `{}`", example = json!({"max_messages": 10, "wait_ms": 5000, "consumer": "worker-3"})),
    responses(
        // JSON only is declared (see `read`): the binary form is asked for
        // with `Accept` and described in the API guide.
        (status = 200, description = "Leased messages (possibly none)", body = PullResponse,
         example = json!({"messages": [{"topic": "orders", "partition": 0, "offset": 42, "timestamp": 1764300000000u64, "key": "customer-7", "value": {"order": 1}, "headers": {}, "ack_id": "AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd", "attempt": 1}], "batch_ack_id": "AAAAAZ5d0r3iVWJxAAAAAAAAAAAAAAAqAAAAAAAAACo"})),
        Errors,
    )
)]
pub async fn pull(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    headers: axum::http::HeaderMap,
    ApiJson(request): ApiJson<PullRequest>,
) -> ApiResult<axum::response::Response> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    let (max_messages, wait_ms) = check_pull(request.max_messages, request.wait_ms)?;
    let _long_poll = if wait_ms > 0 {
        Some(state.limits.long_poll()?)
    } else {
        None
    };
    if let Some(consumer) = &request.consumer {
        check_name("consumer", consumer)?;
    }
    let pulled = subscription
        .pull_deliveries(PullParams {
            max_messages,
            wait_ms,
            consumer: request.consumer,
            holder: None,
        })
        .await?;
    if super::binary::wants_binary(&headers) {
        return Ok(super::binary::pull_response(&pulled));
    }
    let body = super::pulled_json::pull_body(&subscription.topic().name(), &pulled);
    Ok(axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )))
}

/// Acknowledge deliveries.
///
/// Queue mode settles each message; stream mode commits the partition's
/// cursor past the acked offset (cumulative). A pull's `batch_ack_id`
/// settles every message of that pull still leased under it. Answered once
/// durable. Ack ids of expired, superseded or already settled deliveries
/// (batch ack ids that match none) are listed in `unknown` and change
/// nothing.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/ack", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = AckRequest, example = json!({"ack_ids": ["AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"]})),
    responses(
        (status = 200, description = "Acked", body = AckResponse, example = json!({"acked": 1, "unknown": []})),
        Errors,
    )
)]
pub async fn ack(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<AckRequest>,
) -> ApiResult<Json<AckResponse>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    Ok(Json(
        subscription.settle(&request.ack_ids, Settle::Ack).await?,
    ))
}

/// Negatively acknowledge deliveries.
///
/// The message is redelivered after the retry backoff (or `delay_ms`); once
/// `max_attempts` deliveries failed — or at once with `"retry": false` — it
/// is copied to the dead-letter topic with its `reason`. Stream mode: the
/// partition rewinds to the nacked message (offsets before it are
/// committed) and waits for the backoff, keeping order. The response counts
/// the released deliveries in `acked`.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/nack", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = NackRequest, example = json!({"ack_ids": ["AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"], "reason": "payment service timeout", "delay_ms": null})),
    responses((status = 200, description = "Released for redelivery or dead-lettered", body = AckResponse), Errors)
)]
pub async fn nack(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<NackRequest>,
) -> ApiResult<Json<AckResponse>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    let what = Settle::Nack {
        reason: request.reason,
        delay_ms: request.delay_ms,
        retry: request.retry.unwrap_or(true),
    };
    Ok(Json(subscription.settle(&request.ack_ids, what).await?))
}

/// Extend leases.
///
/// Renews each lease for `ack_timeout_ms` from now (default: the
/// subscription's). The response counts renewed leases in `acked`.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/extend", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = ExtendRequest, example = json!({"ack_ids": ["AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd"], "ack_timeout_ms": 60000})),
    responses((status = 200, description = "Leases renewed", body = AckResponse), Errors)
)]
pub async fn extend(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<ExtendRequest>,
) -> ApiResult<Json<AckResponse>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    let what = Settle::Extend {
        lease_ms: request.ack_timeout_ms,
    };
    Ok(Json(subscription.settle(&request.ack_ids, what).await?))
}

/// Move the subscription's cursors.
///
/// `"earliest"`, `"latest"`, `{"timestamp": T}` (first message at or after
/// T, per partition) or `{"offsets": {"0": 10}}` (named partitions only;
/// offsets are clamped to the stored range). Every lease, retry and ack
/// above or below the new cursor is forgotten: messages from the cursor on
/// are delivered again. Answers with the subscription once durable.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions/{sub}/seek", tag = TAG_SUBSCRIPTIONS,
    params(("topic" = Name, Path, description = "Topic name"), ("sub" = Name, Path, description = "Subscription name")),
    request_body(content = SeekRequest, example = json!({"to": {"offsets": {"0": 10, "1": 5}}})),
    responses((status = 200, description = "Moved", body = SubscriptionInfo), Errors)
)]
pub async fn seek(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<SeekRequest>,
) -> ApiResult<Json<SubscriptionInfo>> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    subscription.seek(&request.to).await?;
    Ok(Json(subscription.info().await?))
}
