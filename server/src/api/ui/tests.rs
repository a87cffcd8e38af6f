#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use tower::ServiceExt;

use super::assets::{self, ASSETS};
use super::routes;
use crate::api::guard::{need, Need};

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = routes::<()>()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn index_is_html_under_a_strict_content_security_policy() {
    for path in ["/ui", "/ui/"] {
        let (status, headers, body) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "x-frame-options"), "DENY");
        let csp = header(&headers, "content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self';",
            "style-src 'self';",
            "connect-src 'self';",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "`{directive}` missing from {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!body.contains("%VERSION%"));
        let app = format!("/ui/assets/{}/app.js", assets::version());
        assert!(body.contains(&app), "index must load {app}");
    }
}

#[tokio::test]
async fn index_has_no_inline_script_style_or_handlers() {
    let (_, _, body) = get("/ui").await;
    let lower = body.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap()];
        assert!(tag.contains(" src="), "inline script: {tag}");
        assert!(lower[i..].contains("></script>"));
    }
    assert!(!lower.contains("<style"), "inline style element");
    assert!(!lower.contains(" style="), "inline style attribute");
    for (i, _) in lower.match_indices(" on") {
        let rest = &lower[i + 3..];
        let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        assert!(!rest[name..].starts_with('='), "inline event handler");
    }
    assert!(!lower.contains("javascript:"));
}

#[tokio::test]
async fn assets_have_their_content_types_and_are_cached_forever() {
    for asset in ASSETS {
        let path = format!("/ui/assets/{}/{}", assets::version(), asset.name);
        let (status, headers, body) = get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let expected = match asset.name.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("no content type for .{other}"),
        };
        assert_eq!(header(&headers, "content-type"), expected, "{path}");
        assert_eq!(
            header(&headers, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(body.as_bytes(), asset.body);
    }
}

#[tokio::test]
async fn other_versions_and_unknown_files_are_not_found() {
    let version = assets::version();
    for path in [
        "/ui/assets/0000000000000000/app.js".to_owned(),
        format!("/ui/assets/{version}/nope.js"),
        format!("/ui/assets/{version}/..%2Fmod.rs"),
        format!("/ui/assets/{version}/index.html"),
    ] {
        let (status, headers, body) = get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            "application/problem+json",
            "{path}"
        );
        assert!(body.contains("not_found"), "{body}");
        assert!(header(&headers, "cache-control").is_empty(), "{path}");
    }
}

/// Every file the page or a module refers to is embedded, and every
/// embedded file is referred to.
#[test]
fn references_between_assets_resolve() {
    let mut referenced = Vec::new();
    for part in assets::index().split("/ui/assets/").skip(1) {
        let rest = part
            .strip_prefix(assets::version())
            .unwrap()
            .strip_prefix('/')
            .unwrap();
        referenced.push(rest[..rest.find('"').unwrap()].to_owned());
    }
    for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let text = std::str::from_utf8(asset.body).unwrap();
        for part in text.split("from './").skip(1) {
            let name = &part[..part.find('\'').unwrap()];
            assert!(
                assets::find(name).is_some(),
                "{} imports missing {name}",
                asset.name
            );
            referenced.push(name.to_owned());
        }
    }
    for asset in ASSETS {
        assert!(
            referenced.iter().any(|r| r == asset.name),
            "{} is embedded but never used",
            asset.name
        );
    }
    for name in &referenced {
        assert!(
            assets::find(name).is_some(),
            "index refers to missing {name}"
        );
    }
}

/// Message contents are untrusted: the scripts build the page with
/// `textContent` and `createElement` only, never by parsing HTML.
#[test]
fn scripts_never_parse_html_or_code() {
    for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let text = std::str::from_utf8(asset.body).unwrap();
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "createContextualFragment",
            "DOMParser",
            "eval(",
            "new Function",
            "setAttribute('on",
            "setAttribute('style",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", asset.name);
        }
    }
}

#[test]
fn console_routes_are_open_and_not_in_the_api_spec() {
    for route in ["/ui", "/ui/", "/ui/assets/{version}/{file}"] {
        assert_eq!(need(&Method::GET, route), Need::Open, "{route}");
        assert_eq!(need(&Method::HEAD, route), Need::Open, "{route}");
        assert_ne!(need(&Method::POST, route), Need::Open, "{route}");
    }
    let spec = crate::api::openapi();
    assert!(spec.paths.paths.keys().all(|p| !p.starts_with("/ui")));
}

#[tokio::test]
async fn head_is_answered_like_get() {
    let response = routes::<()>()
        .oneshot(
            Request::builder()
                .method(Method::HEAD)
                .uri("/ui")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .contains_key(header::CONTENT_SECURITY_POLICY));
}
