//! Authentication and authorization of every request: the credentials are
//! taken from `Authorization: Bearer`, from a `bearer.<token>` entry of
//! `Sec-WebSocket-Protocol` (browsers cannot set headers on a WebSocket),
//! or from the connection's verified client certificate; the route says
//! which action it needs (`need`); the caller's grants decide. A refused
//! request never reaches its handler, so it changes nothing. Changes to
//! topics and subscriptions, and every refusal, go to the audit log
//! (tracing target `weir::audit`).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use weir_protocol::ErrorCode;

use super::error::ApiError;
use super::AppState;
use crate::auth::grants::{self, Action};
use crate::auth::{AuthFailure, Principal};
use crate::broker::Broker;
use crate::metrics::METRICS;

/// Who is calling. `Anonymous` only when authentication is off.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    Principal(Principal),
}

impl Caller {
    /// The principal's name (`anonymous` when authentication is off): the
    /// key of per-principal limits and of audit lines.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Principal(p) => &p.name,
        }
    }

    pub fn may(&self, broker: &Broker, action: Action, topic: &str, sub: Option<&str>) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Principal(p) => grants::allowed(&p.grants, action, topic, sub, || {
                broker.dead_letter_sources(topic)
            }),
        }
    }

    /// May the caller see `topic` at all (lists, describe)?
    pub fn sees_topic(&self, broker: &Broker, topic: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Principal(p) => {
                grants::sees_topic(&p.grants, topic, || broker.dead_letter_sources(topic))
            }
        }
    }

    /// May the caller see subscription `sub` of `topic`?
    pub fn sees_subscription(&self, broker: &Broker, topic: &str, sub: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Principal(p) => {
                grants::sees_subscription(&p.grants, topic, sub)
                    || self.may(broker, Action::Admin, topic, None)
                    || broker
                        .dead_letter_sources(topic)
                        .iter()
                        .any(|source| grants::sees_subscription(&p.grants, source, sub))
            }
        }
    }
}

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Health and readiness: always open.
    Open,
    /// `/metrics`: open unless `auth_protect_metrics`.
    Metrics,
    /// `/docs`, `/openapi.json`: open unless `auth_protect_docs`.
    Docs,
    /// Any authenticated caller; the handler filters what it returns.
    Authenticated,
    /// Some grant on the topic (describe, list its subscriptions).
    SeeTopic,
    /// Consume or manage on the subscription (describe it).
    SeeSubscription,
    /// This action on the topic.
    Topic(Action),
    /// This action on the subscription.
    Subscription(Action),
    /// `admin` on every topic (`topics = "*"`): server-wide operations
    /// such as backups, which copy every topic.
    Server,
}

/// The one table of which action each route needs. Routes missing from it
/// need `admin` (fail closed); a test walks every OpenAPI operation.
pub fn need(method: &Method, route: &str) -> Need {
    let get = method == Method::GET;
    let post = method == Method::POST;
    let put_or_delete = method == Method::PUT || method == Method::DELETE;
    match route {
        "/healthz" | "/readyz" => Need::Open,
        "/metrics" => Need::Metrics,
        "/openapi.json" => Need::Docs,
        r if r == "/docs" || r.starts_with("/docs/") => Need::Docs,
        // The console's static files; its data calls go through the API.
        r if (r == "/ui" || r.starts_with("/ui/")) && (get || method == Method::HEAD) => Need::Open,
        "/v1/topics" if get => Need::Authenticated,
        "/v1/topics/{topic}" if get => Need::SeeTopic,
        "/v1/topics/{topic}" if put_or_delete => Need::Topic(Action::Admin),
        "/v1/topics/{topic}/messages"
        | "/v1/topics/{topic}/messages/ndjson"
        | "/v1/topics/{topic}/messages/raw"
            if post =>
        {
            Need::Topic(Action::Produce)
        }
        "/v1/topics/{topic}/partitions/{partition}/messages" if get => Need::Topic(Action::Consume),
        "/v1/topics/{topic}/ws" if get => Need::Topic(Action::Consume),
        "/v1/topics/{topic}/events" if get => Need::Topic(Action::Consume),
        "/v1/topics/{topic}/ws/publish" if get => Need::Topic(Action::Produce),
        "/v1/topics/{topic}/subscriptions" if get => Need::SeeTopic,
        "/v1/topics/{topic}/subscriptions/{sub}"
        | "/v1/topics/{topic}/subscriptions/{sub}/leases"
            if get =>
        {
            Need::SeeSubscription
        }
        "/v1/topics/{topic}/subscriptions/{sub}" if put_or_delete => {
            Need::Subscription(Action::Manage)
        }
        "/v1/topics/{topic}/subscriptions/{sub}/pull"
        | "/v1/topics/{topic}/subscriptions/{sub}/ack"
        | "/v1/topics/{topic}/subscriptions/{sub}/nack"
        | "/v1/topics/{topic}/subscriptions/{sub}/extend"
            if post =>
        {
            Need::Subscription(Action::Consume)
        }
        "/v1/topics/{topic}/subscriptions/{sub}/ws" if get => Need::Subscription(Action::Consume),
        "/v1/topics/{topic}/subscriptions/{sub}/events" if get => {
            Need::Subscription(Action::Consume)
        }
        "/v1/topics/{topic}/subscriptions/{sub}/dead-letters" if get => {
            Need::Subscription(Action::Consume)
        }
        "/v1/topics/{topic}/subscriptions/{sub}/seek"
        | "/v1/topics/{topic}/subscriptions/{sub}/dead-letters/redrive"
        | "/v1/topics/{topic}/subscriptions/{sub}/dead-letters/purge"
        | "/v1/topics/{topic}/subscriptions/{sub}/pause"
        | "/v1/topics/{topic}/subscriptions/{sub}/resume"
            if post =>
        {
            Need::Subscription(Action::Manage)
        }
        // A backup holds every topic: admin, with no topic to scope it.
        "/v1/backups" if get || post => Need::Server,
        // Which node leads what: what any client needs to go direct.
        "/v1/cluster" if get => Need::Authenticated,
        // Membership and leadership of the whole cluster: server-wide admin.
        "/v1/cluster/nodes" | "/v1/cluster/transfer-leader" if post => Need::Server,
        "/v1/cluster/nodes/{node}" if method == Method::DELETE => Need::Server,
        _ => Need::Topic(Action::Admin),
    }
}

/// The client certificate principal of a connection, set by the listener
/// when a verified client certificate names one.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    pub certificate_name: Option<String>,
}

/// The middleware: authenticates, authorizes, audits, and hands the
/// handler a [`Caller`].
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let need = need(req.method(), &route);
    let Some(auth) = state.auth.as_ref() else {
        if need != Need::Open && need != Need::Metrics {
            if let Err(e) = state.limits.charge_request(Caller::Anonymous.name()) {
                return e.into_response();
            }
        }
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    };
    let open = match need {
        Need::Open => true,
        Need::Metrics => !state.protect.metrics,
        Need::Docs => !state.protect.docs,
        _ => false,
    };
    if open {
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    }
    let request_id = header_text(&req, "x-request-id").to_owned();
    let principal = match credentials(&req) {
        Credentials::Token(token) => auth.authenticate(&token),
        Credentials::Certificate(name) => Ok(auth.certificate_principal(&name)),
        Credentials::None => Err(AuthFailure::Missing),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(failure) => {
            METRICS
                .auth_failures
                .with_label_values(&[failure.reason()])
                .inc();
            tracing::warn!(
                target: "weir::audit",
                outcome = "unauthenticated",
                reason = failure.reason(),
                method = %req.method(),
                path = %req.uri().path(),
                request_id,
                "authentication failed"
            );
            return ApiError::new(ErrorCode::Unauthorized, failure.to_string()).into_response();
        }
    };
    let caller = Caller::Principal(principal);
    let (topic, sub) = path_names(&route, req.uri().path());
    let (granted, action) = check(&caller, &state.broker, need, topic, sub);
    let target = match (topic, sub) {
        (Some(t), Some(s)) => format!("{t}/{s}"),
        (Some(t), None) => t.to_owned(),
        _ => route.clone(),
    };
    if !granted {
        METRICS.requests_denied.inc();
        tracing::warn!(
            target: "weir::audit",
            outcome = "denied",
            principal = caller.name(),
            action,
            target,
            method = %req.method(),
            request_id,
            "request denied"
        );
        return ApiError::new(
            ErrorCode::Forbidden,
            format!("`{}` may not {action} `{target}`", caller.name()),
        )
        .into_response();
    }
    if let Err(e) = state.limits.charge_request(caller.name()) {
        return e.into_response();
    }
    let audited = matches!(
        need,
        Need::Topic(Action::Admin) | Need::Subscription(Action::Manage)
    );
    let principal_name = caller.name().to_owned();
    let method = req.method().clone();
    req.extensions_mut().insert(caller);
    let response = next.run(req).await;
    if audited {
        tracing::info!(
            target: "weir::audit",
            outcome = "allowed",
            principal = principal_name,
            action,
            target,
            method = %method,
            status = response.status().as_u16(),
            request_id,
            "change"
        );
    }
    response
}

/// Whether `need` is met, and the action named in refusals and audit lines.
fn check(
    caller: &Caller,
    broker: &Broker,
    need: Need,
    topic: Option<&str>,
    sub: Option<&str>,
) -> (bool, &'static str) {
    let Caller::Principal(p) = caller else {
        return (true, "any");
    };
    match (need, topic) {
        (Need::Open, _) => (true, "any"),
        (Need::Authenticated, _) => (true, "list"),
        (Need::Docs, _) => (true, "read docs"),
        (Need::Metrics, _) => (grants::has_action(&p.grants, Action::Metrics), "metrics"),
        (Need::Server, _) => (grants::admin_everywhere(&p.grants), "admin on *"),
        (Need::SeeTopic, Some(t)) => (caller.sees_topic(broker, t), "see"),
        (Need::SeeSubscription, Some(t)) => (
            sub.is_some_and(|s| caller.sees_subscription(broker, t, s)),
            "see",
        ),
        (Need::Topic(a), Some(t)) => (caller.may(broker, a, t, None), a.as_str()),
        (Need::Subscription(a), Some(t)) => (caller.may(broker, a, t, sub), a.as_str()),
        (_, None) => (grants::has_action(&p.grants, Action::Admin), "admin"),
    }
}

enum Credentials {
    Token(String),
    Certificate(String),
    None,
}

fn credentials(req: &Request) -> Credentials {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default();
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            // Another scheme, or garbage: an invalid credential, not none.
            _ => "",
        };
        return Credentials::Token(token.to_owned());
    }
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX));
    if let Some(token) = offered {
        return Credentials::Token(token.to_owned());
    }
    match req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.certificate_name.clone())
    {
        Some(name) => Credentials::Certificate(name),
        None => Credentials::None,
    }
}

/// A `Sec-WebSocket-Protocol` entry carrying a bearer token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

fn header_text<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// The `{topic}` and `{sub}` segments of `path`, aligned with the route
/// template. Names are restricted to unreserved characters, so they need
/// no percent-decoding.
fn path_names<'a>(route: &str, path: &'a str) -> (Option<&'a str>, Option<&'a str>) {
    let mut topic = None;
    let mut sub = None;
    for (pattern, segment) in route.split('/').zip(path.split('/')) {
        match pattern {
            "{topic}" => topic = Some(segment),
            "{sub}" => sub = Some(segment),
            _ => {}
        }
    }
    (topic, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_the_routes_with_their_actions() {
        let sub = "/v1/topics/{topic}/subscriptions/{sub}";
        assert_eq!(need(&Method::GET, "/healthz"), Need::Open);
        assert_eq!(
            need(&Method::PUT, "/v1/topics/{topic}"),
            Need::Topic(Action::Admin)
        );
        assert_eq!(
            need(&Method::POST, &format!("{sub}/ack")),
            Need::Subscription(Action::Consume)
        );
        assert_eq!(
            need(&Method::POST, &format!("{sub}/seek")),
            Need::Subscription(Action::Manage)
        );
        assert_eq!(need(&Method::POST, "/v1/backups"), Need::Server);
        assert_eq!(path_names("/v1/backups", "/v1/backups"), (None, None));
        // Unknown routes fail closed.
        assert_eq!(
            need(&Method::POST, "/v1/new-thing"),
            Need::Topic(Action::Admin)
        );
        assert_eq!(
            path_names(sub, "/v1/topics/orders/subscriptions/billing"),
            (Some("orders"), Some("billing"))
        );
    }
}
