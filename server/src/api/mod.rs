//! The HTTP API: axum routes, one resource per file, problem+json errors,
//! metrics and request-id middleware, and the OpenAPI document built from
//! the same declarations as the routes. Knows HTTP, not RocksDB.

pub mod backups;
mod binary;
mod cluster;
mod cluster_admin;
mod dead_letters;
pub mod error;
pub mod extract;
mod forward;
mod gauges;
pub mod guard;
pub mod limits;
mod messages;
pub mod openapi;
mod ops;
mod paging;
mod pause;
mod produced;
mod pulled_json;
mod sse;
mod subscriptions;
mod topics;
mod ui;
pub mod ws;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::ErrorCode;

use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::metrics::METRICS;
use error::ApiError;
use openapi::ApiDoc;

/// Shared state of every handler: one `Arc`, so the clone axum makes for
/// each request and each middleware layer is a reference count, not a copy
/// of every field.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl AppState {
    pub fn new(shared: AppShared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppShared {
    pub broker: Arc<Broker>,
    pub shutting_down: Arc<AtomicBool>,
    pub max_request_bytes: usize,
    pub sockets: Arc<ws::Sockets>,
    /// `None` when authentication is off (every caller is anonymous).
    pub auth: Option<Arc<Authenticator>>,
    pub protect: Protect,
    pub limits: Arc<limits::Limits>,
    /// Where online backups are written; `None` refuses them.
    pub backup_dir: Option<std::path::PathBuf>,
    /// The client listener's address (`GET /v1/cluster` of a lone node).
    pub listen_address: String,
    /// The cluster this node belongs to; `None` when it runs alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Which operational endpoints need credentials when authentication is on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protect {
    pub metrics: bool,
    pub docs: bool,
}

impl AppState {
    /// Why the server is not ready, or `None` when it is.
    /// Topic `name`, for a request about it. A cluster node that has not
    /// caught up yet may not know a topic the cluster has: it answers 503
    /// (retry, or ask another node) rather than 404.
    pub fn topic(&self, name: &str) -> Result<Arc<crate::broker::topic::Topic>, ApiError> {
        match self.broker.topic(name) {
            Err(crate::broker::BrokerError::TopicNotFound(_))
                if self
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.not_ready_reason().is_some()) =>
            {
                Err(ApiError::new(
                    weir_protocol::ErrorCode::Unavailable,
                    "this node is still catching up with the cluster (see /readyz): retry, or ask another node",
                ))
            }
            other => Ok(other?),
        }
    }

    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Some("shutting_down");
        }
        let health = self.broker.store_health();
        if !health.writable {
            Some("store_not_writable")
        } else if health.disk_space_low {
            Some("disk_free_below_limit")
        } else {
            self.cluster.as_ref().and_then(|c| c.not_ready_reason())
        }
    }
}

/// The `/v1` routes and their OpenAPI paths, from the same declarations.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(topics::list_topics))
        .routes(routes!(
            topics::put_topic,
            topics::get_topic,
            topics::delete_topic
        ))
        .routes(routes!(messages::produce))
        .routes(routes!(messages::produce_ndjson))
        .routes(routes!(messages::produce_raw))
        .routes(routes!(messages::read))
        .routes(routes!(subscriptions::list_subscriptions))
        .routes(routes!(
            subscriptions::put_subscription,
            subscriptions::get_subscription,
            subscriptions::delete_subscription
        ))
        .routes(routes!(subscriptions::pull))
        .routes(routes!(subscriptions::ack))
        .routes(routes!(subscriptions::nack))
        .routes(routes!(subscriptions::extend))
        .routes(routes!(subscriptions::seek))
        .routes(routes!(dead_letters::redrive))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::purge))
        .routes(routes!(pause::pause))
        .routes(routes!(pause::resume))
        .routes(routes!(pause::leases))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(backups::create_backup, backups::list_backups))
        .routes(routes!(cluster::cluster))
        .routes(routes!(cluster_admin::add_node))
        .routes(routes!(cluster_admin::remove_node))
        .routes(routes!(cluster_admin::transfer_leader))
        .merge(ws::routes())
        .merge(sse::routes())
}

/// The routes and the finished OpenAPI document of the server.
fn routes_and_spec() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut spec) = api_routes().split_for_parts();
    openapi::finish(&mut spec);
    (routes, spec)
}

/// Creates the request counter of every documented route and method at 0
/// for each status class, so `rate()` and the 5xx alert see a route's very
/// first error (a series born at 1 has no increase to show).
fn create_route_series(spec: &utoipa::openapi::OpenApi) {
    for (path, item) in &spec.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if !present {
                continue;
            }
            for class in ["2xx", "4xx", "5xx"] {
                METRICS
                    .http_requests
                    .with_label_values(&[path, method, class]);
            }
        }
    }
}

/// The OpenAPI document of the server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes_and_spec().1
}

/// Builds the full application router.
pub fn router(state: AppState, body_timeout: std::time::Duration) -> Router {
    let (routes, spec) = routes_and_spec();
    create_route_series(&spec);
    let request_id = HeaderName::from_static("x-request-id");
    routes
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec))
        .merge(ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), forward::forward))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .route_layer(middleware::from_fn(track_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), limits::shed))
        .layer(DefaultBodyLimit::max(state.max_request_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, CounterRequestId::default()))
        .with_state(state)
}

/// Process-unique request ids: a random-per-process prefix and a counter.
#[derive(Clone, Default)]
struct CounterRequestId {
    next: Arc<AtomicU64>,
}

impl MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let start = crate::broker::clock::wall_ms();
        HeaderValue::from_str(&format!("{start:x}-{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    METRICS
        .http_requests
        .with_label_values(&[&route, &method, class])
        .inc();
    METRICS
        .http_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found(State(_): State<AppState>) -> impl IntoResponse {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}
