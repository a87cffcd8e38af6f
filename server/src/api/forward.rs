//! In a cluster, requests about the subscriptions of a replicated topic
//! (`/v1/topics/{topic}/subscriptions...`) are served by one node: this
//! middleware, after the caller is authenticated here, sends them on to it
//! (WebSockets are piped) and tags every such answer with `Weir-Leader`
//! (the node that served it, so a client may go there directly).

use axum::body::to_bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use weir_protocol::ErrorCode;

use super::cluster::LEADER_HEADER;
use super::error::ApiError;
use super::guard::PeerIdentity;
use super::ws::{offered_protocols, selected_protocol};
use super::AppState;
use crate::cluster::forward::{not_served, ForwardError, FORWARDED_HEADER};
use crate::cluster::Served;

/// The topic of a request about subscriptions, if it is one.
fn subscriptions_topic(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/topics/")?;
    let mut segments = rest.split('/');
    let topic = segments.next()?;
    (segments.next() == Some("subscriptions") && !topic.is_empty()).then_some(topic)
}

/// The middleware (see the module docs).
pub async fn forward(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(request).await;
    };
    let Some(topic) = subscriptions_topic(request.uri().path()).map(str::to_owned) else {
        return next.run(request).await;
    };
    let mut served = cluster.subscriptions_served(&topic);
    if served == Served::Locally && state.broker.topic(&topic).is_err() {
        // A topic created through another node a moment ago may not be
        // applied here yet: catch up before answering that it is missing.
        if cluster.sync_metadata().await.is_ok() {
            served = cluster.subscriptions_served(&topic);
        }
    }
    if served == Served::Locally {
        return next.run(request).await;
    }
    let me = cluster.node_id();
    if request.headers().contains_key(FORWARDED_HEADER) {
        // Sent here by another node: served here, or sent back to look
        // again (never forwarded twice).
        return match served {
            Served::Here => tagged(next.run(request).await, me),
            _ => not_served(),
        };
    }
    if is_upgrade(&request) {
        return pipe(state, cluster, topic, request).await;
    }
    if served == Served::Here {
        return tagged(next.run(request).await, me);
    }
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, state.max_request_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request body is larger than {} bytes",
                    state.max_request_bytes
                ),
            )
            .into_response()
        }
    };
    let certificate = parts
        .extensions
        .get::<PeerIdentity>()
        .and_then(|p| p.certificate_name.clone());
    match cluster
        .forward_subscription_request(&topic, &parts, body.clone(), certificate.as_deref())
        .await
    {
        Ok(Some(response)) => response,
        // This node serves them now.
        Ok(None) => tagged(next.run(Request::from_parts(parts, body.into())).await, me),
        Err(ForwardError::NoServer(why) | ForwardError::Lost(why)) => {
            ApiError::new(ErrorCode::Unavailable, why).into_response()
        }
    }
}

/// `Weir-Leader: <node>` on an answer served by `node`.
fn tagged(mut response: Response, node: u64) -> Response {
    response
        .headers_mut()
        .insert(LEADER_HEADER, HeaderValue::from(node));
    response
}

fn is_upgrade(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the client's WebSocket here and pipes it to the serving node
/// (this one included: the pipe then moves with the subscription).
async fn pipe(
    state: AppState,
    cluster: std::sync::Arc<crate::cluster::Cluster>,
    topic: String,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let headers = parts.headers.clone();
    let certificate = parts
        .extensions
        .get::<PeerIdentity>()
        .and_then(|p| p.certificate_name.clone());
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    // The same selection the API's own sockets make.
    let upgrade = match selected_protocol(&offered_protocols(&headers)) {
        Some(protocol) => upgrade.protocols([protocol]),
        None => upgrade,
    };
    let me = cluster.node_id();
    let response = upgrade
        .on_upgrade(move |socket| cluster.pipe_socket(topic, socket, target, headers, certificate));
    tagged(response, me)
}

#[cfg(test)]
mod tests {
    use super::subscriptions_topic;

    #[test]
    fn only_subscription_paths_name_a_topic() {
        assert_eq!(subscriptions_topic("/v1/topics/t/subscriptions"), Some("t"));
        assert_eq!(
            subscriptions_topic("/v1/topics/t/subscriptions/s/pull"),
            Some("t")
        );
        assert_eq!(subscriptions_topic("/v1/topics/t/messages"), None);
        assert_eq!(subscriptions_topic("/v1/topics/t"), None);
        assert_eq!(subscriptions_topic("/v1/cluster"), None);
    }
}
