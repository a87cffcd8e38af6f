//! Produce (JSON, NDJSON, raw bytes) and stateless replay of a partition.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use serde::Deserialize;
use utoipa::IntoParams;
use weir_protocol::{ErrorCode, ProduceMessage, ProduceRequest, ProduceResponse, ReadResponse};

use super::error::{ApiError, ApiResult};
use super::extract::{media_type, parse_json, read_body, ApiPath, ApiQuery};
use super::guard::Caller;
use super::openapi::{BinaryBatch, Errors, Name, NdjsonMessages, RawPayload, TAG_MESSAGES};
use super::AppState;
use crate::broker::read::{ReadFrom, MAX_READ_LIMIT, MAX_WAIT_MS};

/// Produce messages to a topic.
///
/// Answers only once every message of the batch is durable. The body is
/// `{"messages": [...]}`, or the same batch in the binary encoding
/// (`application/vnd.weir.batch`, a produce body; see the API guide for the
/// layout): raw values, no JSON or base64 work. With
/// `Accept: application/vnd.weir.batch` the results come in that encoding
/// too (a results body, 17 bytes per message). For compatibility this
/// operation also accepts the bodies of the two operations below by their
/// `Content-Type` (`application/x-ndjson`, `application/octet-stream`);
/// generated clients use those operations instead.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/messages", tag = TAG_MESSAGES,
    operation_id = "produce",
    params(("topic" = Name, Path, description = "Topic name")),
    request_body(content(
        (ProduceRequest = "application/json", example = json!({"messages": [{"key": "customer-7", "value": {"order": 1}}, {"value_b64": "AAEC", "partition": 0}, {"value": "x", "id": "order-1-created", "delay_ms": 60000}]})),
        (inline(BinaryBatch) = "application/vnd.weir.batch"),
    )),
    responses(
        (status = 200, description = "Every message is durable; results in request order", body = ProduceResponse,
         headers(("Weir-Leader" = u64, description = "In a cluster: the node leading the partition of the first result")),
         example = json!({"results": [{"partition": 0, "offset": 42, "duplicate": false}]})),
        Errors,
    )
)]
pub async fn produce(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(topic): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    produce_as(state, caller, topic, request, None).await
}

/// Produce messages given as NDJSON.
///
/// One message object per line (the objects of `messages` in the JSON
/// form), for large batches and streaming producers. Answers once every
/// message is durable.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/messages/ndjson", tag = TAG_MESSAGES,
    operation_id = "produce_ndjson",
    params(("topic" = Name, Path, description = "Topic name")),
    request_body(content(
        (inline(NdjsonMessages) = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Every message is durable; results in line order", body = ProduceResponse,
         headers(("Weir-Leader" = u64, description = "In a cluster: the node leading the partition of the first result"))),
        Errors,
    )
)]
pub async fn produce_ndjson(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(topic): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    produce_as(state, caller, topic, request, Some(NDJSON)).await
}

/// Produce one message whose value is the raw body.
///
/// Any bytes; the key, partition, idempotency id and delay come from the
/// `Weir-Key`, `Weir-Partition`, `Weir-Id` and `Weir-Delay-Ms` headers,
/// message headers from `Weir-Header-<name>`. Answers once durable.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/messages/raw", tag = TAG_MESSAGES,
    operation_id = "produce_raw",
    // The `Weir-*` headers are described here rather than declared as
    // parameters: HTTP requests carry other headers too, and code
    // generators and fuzzers treat declared header sets as closed.
    params(("topic" = Name, Path, description = "Topic name")),
    request_body(content(
        (inline(RawPayload) = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "The message is durable", body = ProduceResponse,
         headers(("Weir-Leader" = u64, description = "In a cluster: the node leading the message's partition"))),
        Errors,
    )
)]
pub async fn produce_raw(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(topic): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    produce_as(state, caller, topic, request, Some(OCTET_STREAM)).await
}

const JSON: &str = "application/json";
const BINARY: &str = weir_protocol::binary::CONTENT_TYPE;
const NDJSON: &str = "application/x-ndjson";
const OCTET_STREAM: &str = "application/octet-stream";

/// Parses the body as `expected` (or, with `None`, as its `Content-Type`
/// says), then produces it.
async fn produce_as(
    state: AppState,
    caller: Caller,
    topic: String,
    request: Request,
    expected: Option<&'static str>,
) -> ApiResult<Response> {
    // Resolve the topic first so an unknown topic is a 404 whatever the body.
    state.topic(&topic)?;
    let headers = request.headers().clone();
    let media = media_type(&headers);
    let unsupported =
        |accepted: &str| ApiError::new(ErrorCode::UnsupportedMediaType, format!("use {accepted}"));
    let kind = match (expected, media.as_deref()) {
        (None, Some(m @ (JSON | NDJSON | OCTET_STREAM | BINARY))) => m,
        (None, _) => {
            return Err(unsupported(
                "`application/json`, `application/x-ndjson`, `application/octet-stream` or \
                 `application/vnd.weir.batch`",
            ))
        }
        (Some(wanted), Some(m)) if m == wanted => wanted,
        (Some(wanted), _) => return Err(unsupported(&format!("`{wanted}`"))),
    };
    let body = read_body(request, &state).await?;
    if kind == BINARY {
        let records = weir_protocol::binary::decode_produce(&body).map_err(|e| {
            let field = e
                .record
                .map_or_else(|| "body".to_owned(), |i| format!("messages[{i}]"));
            ApiError::invalid(field, e.to_string())
        })?;
        state
            .limits
            .charge_produce(caller.name(), records.len(), body.len())?;
        let results = state
            .broker
            .produce_binary(&topic, records, state.broker.now())
            .await?;
        return Ok(answer(&state, &topic, &headers, &results));
    }
    let messages = match kind {
        NDJSON => parse_ndjson(&body)?,
        OCTET_STREAM => vec![raw_message(&headers, &body)?],
        _ => parse_json::<ProduceRequest>(&body)?.messages,
    };
    state
        .limits
        .charge_produce(caller.name(), messages.len(), body.len())?;
    let results = state
        .broker
        .produce(&topic, messages, state.broker.now())
        .await?;
    Ok(answer(&state, &topic, &headers, &results))
}

/// A produce answer in the form the request's `Accept` asks for, naming
/// (in a cluster) the leader of the partition of its first message.
fn answer(
    state: &AppState,
    topic: &str,
    request_headers: &HeaderMap,
    results: &[weir_protocol::ProduceResult],
) -> Response {
    let partition = results.first().map(|r| r.partition);
    super::produced::response(
        results,
        super::binary::wants_binary(request_headers),
        super::cluster::leader_header(state, topic, partition),
    )
}

fn parse_ndjson(body: &[u8]) -> ApiResult<Vec<ProduceMessage>> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| {
            super::extract::from_json_slice(line).map_err(|e| {
                ApiError::invalid(
                    format!("line {}", i + 1),
                    format!("invalid JSON message on line {}: {e}", i + 1),
                )
            })
        })
        .collect()
}

fn raw_message(headers: &HeaderMap, body: &[u8]) -> ApiResult<ProduceMessage> {
    let text = |name: &str| -> ApiResult<Option<String>> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map(str::to_owned).map_err(|_| {
                    ApiError::invalid(name, format!("header `{name}` must be visible ASCII"))
                })
            })
            .transpose()
    };
    let mut message_headers = BTreeMap::new();
    for (name, value) in headers {
        if let Some(h) = name.as_str().strip_prefix("weir-header-") {
            let v = value.to_str().map_err(|_| {
                ApiError::invalid(
                    name.as_str(),
                    format!("header `{name}` must be visible ASCII"),
                )
            })?;
            message_headers.insert(h.to_owned(), v.to_owned());
        }
    }
    let parse_u64 = |name: &str| -> ApiResult<Option<u64>> {
        text(name)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::invalid(
                        name,
                        format!("header `{name}` must be a non-negative integer"),
                    )
                })
            })
            .transpose()
    };
    let partition = parse_u64("weir-partition")?
        .map(|p| {
            u32::try_from(p)
                .map_err(|_| ApiError::invalid("weir-partition", "partition out of range"))
        })
        .transpose()?;
    Ok(ProduceMessage {
        key: text("weir-key")?,
        value: None,
        value_b64: Some(base64::engine::general_purpose::STANDARD.encode(body)),
        headers: (!message_headers.is_empty()).then_some(message_headers),
        partition,
        // An empty `Weir-Id` header is no id.
        id: text("weir-id")?.filter(|id| !id.is_empty()),
        delay_ms: parse_u64("weir-delay-ms")?,
        deliver_at: None,
    })
}

/// Query of a partition read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// First offset to read (default: the oldest stored). Not together with `timestamp`.
    offset: Option<u64>,
    /// Read from the first message at or after this timestamp instead. Not together with `offset`.
    timestamp: Option<u64>,
    /// Most messages to return (1..=10000, default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Long poll: wait up to this many milliseconds for a message (max 60000).
    #[param(maximum = 60000)]
    wait_ms: Option<u64>,
}

/// Read a partition from an offset or a timestamp (stateless replay).
///
/// An offset below `low_offset` (removed by retention) starts at
/// `low_offset`. With `wait_ms`, an empty read waits until a message arrives.
/// With `Accept: application/vnd.weir.batch` the messages come in the
/// binary encoding and `next_offset` in the `Weir-Next-Offset` header.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/partitions/{partition}/messages", tag = TAG_MESSAGES,
    params(
        ("topic" = Name, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number (below the topic's `partitions`)", maximum = 1023),
        ReadQuery,
    ),
    // Only the JSON form is declared: a second response media type would
    // turn every generated client's result into a union. The binary form
    // (asked for with `Accept`) is described above and in the API guide.
    responses((status = 200, description = "Messages in offset order", body = ReadResponse,
        headers(("Weir-Leader" = u64, description = "In a cluster: the node leading the partition (which served the read)"))), Errors)
)]
pub async fn read(
    State(state): State<AppState>,
    ApiPath((topic, partition)): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<ReadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let from = match (query.offset, query.timestamp) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "offset",
                "give `offset` or `timestamp`, not both",
            ))
        }
        (Some(o), None) => ReadFrom::Offset(o),
        (None, Some(t)) => ReadFrom::Timestamp(t),
        (None, None) => ReadFrom::Offset(0),
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_READ_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("`limit` must be between 1 and {MAX_READ_LIMIT}"),
        ));
    }
    let wait_ms = query.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::invalid(
            "wait_ms",
            format!("`wait_ms` must be at most {MAX_WAIT_MS}"),
        ));
    }
    let _long_poll = if wait_ms > 0 {
        Some(state.limits.long_poll()?)
    } else {
        None
    };
    state.topic(&topic)?;
    let at_leader = match &state.cluster {
        Some(cluster) => {
            cluster
                .read_at_leader(&topic, partition, from, limit, wait_ms)
                .await
        }
        None => None,
    };
    let response = match at_leader {
        Some(answer) => answer?,
        None => {
            state
                .broker
                .read(&topic, partition, from, limit, wait_ms)
                .await?
        }
    };
    let leader = super::cluster::leader_header(&state, &topic, Some(partition));
    if super::binary::wants_binary(&headers) {
        let mut answer = super::binary::read_response(&response.messages, response.next_offset)?;
        answer.headers_mut().extend(leader);
        return Ok(answer);
    }
    Ok((leader, Json(response)).into_response())
}
