//! Client requests forwarded between nodes. A topic's subscriptions are
//! served by one node (`subscriptions.rs`); a request about them reaching
//! another node is sent on over the node-to-node listener (`/forward/...`)
//! with the caller's credentials, answered there by the same API, and the
//! answer streams back (`Weir-Leader` names the node that served it).
//!
//! While the serving node changes (a leader lost), a request that was not
//! taken is sent again to the new one; so is a long poll or a read whose
//! connection broke, or whose node stopped serving while it waited (it
//! changed nothing that a retry would repeat: leases it took are dropped
//! with the old node). No forward waits for its answer to start longer
//! than the longest long poll allows. WebSockets are piped instead
//! (`pipe.rs`).

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::network::{CallError, FROM_HEADER, TO_HEADER};
use super::node::Cluster;
use super::subscriptions::Served;
use super::types::NodeId;

/// Set on a forwarded request: the node that forwarded it (the receiver
/// serves it or answers [`NOT_SERVED_HEADER`], never forwards it again).
pub const FORWARDED_HEADER: &str = "weir-forwarded-by";
/// On a 503 answer: this node does not serve what the forwarded request
/// asked for (the forwarder asks the node that does).
pub const NOT_SERVED_HEADER: &str = "weir-not-served";
/// The caller's `Authorization`, carried next to the cluster's own.
pub const CLIENT_AUTHORIZATION: &str = "weir-client-authorization";
/// The caller's verified client certificate name, when it used one.
pub const CLIENT_CERTIFICATE: &str = "weir-client-certificate";
/// How long a request waits for a node that serves its subscriptions.
const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a long poll or read keeps being retried on a new node.
const POLL_RETRY_TIMEOUT: Duration = Duration::from_secs(70);
/// Pause between attempts (and between looks at who serves a topic's
/// subscriptions while a forwarded poll waits).
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// How long a forwarded request waits for its answer to start: the longest
/// long poll (`wait_ms` ≤ 60 s) with room to spare. Beyond it the node is
/// taken for stuck (frozen, or its connection silently gone).
const ANSWER_TIMEOUT: Duration = Duration::from_millis(weir_protocol::limits::MAX_WAIT_MS + 15_000);

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Where a request about a topic's subscriptions goes now.
pub enum Route {
    /// Served by this node.
    Here,
    /// Sent to the node that serves them.
    To(NodeId),
}

/// Why a forwarded request got no answer.
pub enum ForwardError {
    /// No node serves the subscriptions, or none could be reached, in time.
    NoServer(String),
    /// The connection broke after the request was sent: its outcome is
    /// unknown.
    Lost(String),
}

impl Cluster {
    /// Where to send a request about the subscriptions of `topic`, waiting
    /// (bounded) while partition 0 has no leader.
    pub async fn route_subscriptions(&self, topic: &str) -> Result<Route, ForwardError> {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            match self.subscriptions_served(topic) {
                Served::Locally | Served::Here => return Ok(Route::Here),
                Served::At(node) if self.recently_seen(node) => return Ok(Route::To(node)),
                Served::At(_) | Served::Nobody if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Served::At(node) => {
                    return Err(ForwardError::NoServer(format!(
                        "node {node} serves the subscriptions of topic `{topic}` but is not answering; retry"
                    )))
                }
                Served::Nobody => {
                    return Err(ForwardError::NoServer(format!(
                        "partition 0 of topic `{topic}` has no leader: its subscriptions are not served right now; retry"
                    )))
                }
            }
        }
    }

    /// Forwards a client request about the subscriptions of `topic`
    /// (`parts`, `body`; `certificate`: the caller's verified certificate
    /// name) to the node serving them, again to the next one while the
    /// request was not taken (or was a read or long poll). `Ok(None)`:
    /// this node serves them now.
    pub async fn forward_subscription_request(
        &self,
        topic: &str,
        parts: &Parts,
        body: Bytes,
        certificate: Option<&str>,
    ) -> Result<Option<Response>, ForwardError> {
        let retry_lost = parts.method == Method::GET || parts.uri.path().ends_with("/pull");
        let deadline = Instant::now() + POLL_RETRY_TIMEOUT;
        loop {
            let node = match self.route_subscriptions(topic).await? {
                Route::Here => return Ok(None),
                Route::To(node) => node,
            };
            match self
                .answer_from(node, topic, parts, body.clone(), certificate, retry_lost)
                .await
            {
                Ok(response) if response.headers().contains_key(NOT_SERVED_HEADER) => {}
                Ok(response) => return Ok(Some(response)),
                Err(CallError::Unreachable(_)) => {}
                Err(e) if retry_lost && Instant::now() < deadline => {
                    tracing::info!(node, error = %e, "a forwarded poll broke; asking the next serving node");
                }
                Err(e) => {
                    return Err(ForwardError::Lost(format!(
                        "the request forwarded to node {node} has an unknown outcome: {e}; retry"
                    )))
                }
            }
            if Instant::now() >= deadline {
                return Err(ForwardError::NoServer(
                    "no node took the request in time; retry".into(),
                ));
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// One forward to `node`, given up when no answer starts within
    /// [`ANSWER_TIMEOUT`] or — for a request safe to send again (`movable`:
    /// a read or long poll) — as soon as another node serves the topic's
    /// subscriptions: a long poll waiting on a frozen or cut-off node moves
    /// with the failover instead of waiting for a node that may never
    /// answer.
    async fn answer_from(
        &self,
        node: NodeId,
        topic: &str,
        parts: &Parts,
        body: Bytes,
        certificate: Option<&str>,
        movable: bool,
    ) -> Result<Response, CallError> {
        let sent = tokio::time::timeout(
            ANSWER_TIMEOUT,
            self.send_forward(node, parts, body, certificate),
        );
        tokio::select! {
            answer = sent => answer.unwrap_or_else(|_| {
                Err(CallError::Lost(format!(
                    "node {node} did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                )))
            }),
            () = self.stops_serving(topic, node), if movable => Err(CallError::Lost(format!(
                "node {node} stopped serving the subscriptions of topic `{topic}` while the request waited"
            ))),
        }
    }

    /// Resolves once another node than `node` serves the subscriptions of
    /// `topic` (a moment with no leader does not count).
    async fn stops_serving(&self, topic: &str, node: NodeId) {
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            match self.subscriptions_served(topic) {
                Served::At(n) if n == node => {}
                Served::Nobody => {}
                _ => return,
            }
        }
    }

    /// One forward of a client request to `node`.
    async fn send_forward(
        &self,
        node: NodeId,
        parts: &Parts,
        body: Bytes,
        certificate: Option<&str>,
    ) -> Result<Response, CallError> {
        let address = self
            .address_of(node)
            .ok_or_else(|| CallError::Unreachable(format!("no address for node {node}")))?;
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self
            .peers()
            .http()
            .request(
                parts.method.clone(),
                format!("http://{address}/forward{target}"),
            )
            .headers(client_headers(&parts.headers, certificate))
            .bearer_auth(self.peers().secret())
            .header(FROM_HEADER, self.node_id().to_string())
            .header(TO_HEADER, node.to_string())
            .header(FORWARDED_HEADER, self.node_id().to_string());
        if !body.is_empty() {
            request = request.body(body);
        }
        let answer = request.send().await.map_err(|e| {
            if e.is_connect() {
                CallError::Unreachable(e.to_string())
            } else {
                CallError::Lost(e.to_string())
            }
        })?;
        self.peers().saw(node);
        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            for (name, value) in answer.headers() {
                if !is_hop_by_hop(name) && name != "content-length" {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        response
            .body(Body::from_stream(answer.bytes_stream()))
            .map_err(|e| CallError::Refused(e.to_string()))
    }
}

/// The caller's headers as a forward carries them: connection headers
/// dropped, `Authorization` moved aside (the cluster's own takes its
/// place), the certificate name added.
pub(super) fn client_headers(headers: &HeaderMap, certificate: Option<&str>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if is_hop_by_hop(name)
            || name == "content-length"
            || name == FORWARDED_HEADER
            || name == CLIENT_AUTHORIZATION
            || name == CLIENT_CERTIFICATE
        {
            continue;
        }
        if name == axum::http::header::AUTHORIZATION {
            out.append(HeaderName::from_static(CLIENT_AUTHORIZATION), value.clone());
        } else {
            out.append(name.clone(), value.clone());
        }
    }
    if let Some(value) = certificate.and_then(|c| HeaderValue::from_str(c).ok()) {
        out.insert(HeaderName::from_static(CLIENT_CERTIFICATE), value);
    }
    out
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// The answer of a node asked to serve a forwarded request about
/// subscriptions it does not serve.
pub fn not_served() -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        "this node does not serve these subscriptions now",
    )
        .into_response();
    response
        .headers_mut()
        .insert(NOT_SERVED_HEADER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_authorization_travels_aside() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer user"));
        headers.insert("host", HeaderValue::from_static("x"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        let out = client_headers(&headers, Some("cn"));
        assert!(out.get("authorization").is_none());
        assert!(out.get("host").is_none());
        assert_eq!(out.get(CLIENT_AUTHORIZATION).unwrap(), "Bearer user");
        assert_eq!(out.get(CLIENT_CERTIFICATE).unwrap(), "cn");
        assert_eq!(out.get("x-request-id").unwrap(), "r1");
    }
}
