//! The web console at `/ui`: a small static app (HTML, vanilla JavaScript
//! modules, CSS; no framework, no build step) embedded in the binary. It
//! holds neither data nor credentials: the page only loads its own files,
//! and every call it makes goes to the authenticated JSON API (`/v1/...`,
//! the tail WebSocket) with the token the user enters. That is why these
//! routes are open in `guard::need`, and why nothing here may grow
//! server-side logic or read the broker.
//!
//! Responses carry a strict Content-Security-Policy (scripts, styles and
//! connections from this origin only, no inline script, no framing) and
//! `nosniff`. Assets live under a content-versioned path and are cached
//! for a year; the index names the current version and is revalidated.

mod assets;

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use weir_protocol::ErrorCode;

use super::error::ApiError;

/// Where the page may load from and connect to. `'self'` also covers the
/// same-origin `ws:`/`wss:` URL of the live tail (CSP level 3).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes; they need no state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/assets/{version}/{file}", get(asset))
}

/// The page. Revalidated on every load so it always names current assets.
async fn index() -> Response {
    with_headers(
        assets::index(),
        "text/html; charset=utf-8",
        "no-cache",
        true,
    )
}

/// One asset of the current version; any other version is a 404, so a
/// stale page never runs files of another build.
async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    match assets::find(&file) {
        Some(asset) if version == assets::version() => with_headers(
            asset.body,
            asset.content_type,
            "public, max-age=31536000, immutable",
            false,
        ),
        _ => ApiError::new(ErrorCode::NotFound, "no such console asset").into_response(),
    }
}

fn with_headers(
    body: impl IntoResponse,
    content_type: &'static str,
    cache: &'static str,
    document: bool,
) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CACHE_CONTROL, cache);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if document {
        set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
        set(header::X_FRAME_OPTIONS, "DENY");
        set(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        );
    }
    response
}

#[cfg(test)]
mod tests;
