//! Authentication, authorization, TLS and limits, end to end: a tokens
//! file, every OpenAPI operation with and without the right grant, file
//! reload, JWTs from a JWKS file, HTTPS with client certificates through
//! the real client, rate limits, the connection limit, slow clients, and
//! protected mode.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{built_binary, try_send, Reply, TestServer};

const ADMIN: &str = "admin-secret-token";
const PRODUCER: &str = "producer-secret-token";
const BILLING: &str = "billing-secret-token";
const STRANGER: &str = "stranger-secret-token";

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tokens_file(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    let text = format!(
        r#"
[[tokens]]
principal = "admin"
sha256 = "{admin}"
grants = [{{ actions = ["admin"], topics = "*" }}]

[[tokens]]
principal = "orders-producer"
sha256 = "{producer}"
grants = [{{ actions = ["produce"], topics = "orders" }}]

[[tokens]]
principal = "billing"
sha256 = "{billing}"
grants = [{{ actions = ["consume"], topics = "orders", subscriptions = ["billing"] }}]

[[tokens]]
principal = "stranger"
sha256 = "{stranger}"
grants = [{{ actions = ["admin"], topics = "elsewhere" }}]
{extra}
"#,
        admin = sha256_hex(ADMIN),
        producer = sha256_hex(PRODUCER),
        billing = sha256_hex(BILLING),
        stranger = sha256_hex(STRANGER),
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
    server.request(method, path, body, &headers).await
}

/// A body that is valid for the operation, so a granted request is not
/// refused for its body.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    if *method == Method::GET || *method == Method::DELETE {
        return None;
    }
    Some(match path.rsplit('/').next().unwrap_or_default() {
        "messages" => json!({"messages": [{"value": "x"}]}),
        "pull" => json!({"max_messages": 1}),
        "ack" | "nack" | "extend" => json!({"ack_ids": []}),
        "seek" => json!({"to": "earliest"}),
        "redrive" => json!({}),
        _ => json!({}),
    })
}

fn is_refusal(status: u16) -> bool {
    status == 401 || status == 403
}

#[tokio::test]
async fn every_operation_needs_a_token_and_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), "");
    let server = TestServer::start_with(&["--auth-tokens-file", tokens.to_str().unwrap()]);
    // Health and readiness stay open; the spec is open by default.
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);
    let spec = server.get("/openapi.json").await.expect_status(200);
    call(
        &server,
        Method::PUT,
        "/v1/topics/orders",
        Some(ADMIN),
        Some(json!({})),
    )
    .await
    .expect_status(201);
    call(
        &server,
        Method::PUT,
        "/v1/topics/orders/subscriptions/billing",
        Some(ADMIN),
        Some(json!({"start": "earliest"})),
    )
    .await
    .expect_status(201);
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/messages",
        Some(ADMIN),
        Some(json!({"messages": [{"value": 1}]})),
    )
    .await
    .expect_status(200);
    let before_topic = call(&server, Method::GET, "/v1/topics/orders", Some(ADMIN), None)
        .await
        .expect_status(200);
    let before_sub = call(
        &server,
        Method::GET,
        "/v1/topics/orders/subscriptions/billing",
        Some(ADMIN),
        None,
    )
    .await
    .expect_status(200);

    let mut operations = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.starts_with("/v1/") {
            continue;
        }
        for (method, _) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let path = template
                .replace("{topic}", "orders")
                .replace("{sub}", "billing")
                .replace("{partition}", "0");
            operations.push((method, path));
        }
    }
    assert!(operations.len() >= 18, "{operations:?}");
    for (method, path) in &operations {
        let body = body_for(method, path);
        let none = call(&server, method.clone(), path, None, body.clone()).await;
        assert_eq!(
            none.status, 401,
            "{method} {path} without a token: {}",
            none.text
        );
        assert_eq!(none.json()["code"], "unauthorized");
        assert!(none
            .headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(none.content_type(), "application/problem+json");
        let unknown = call(
            &server,
            method.clone(),
            path,
            Some("no-such-token"),
            body.clone(),
        )
        .await;
        assert_eq!(unknown.status, 401, "{method} {path} with an unknown token");
        let stranger = call(&server, method.clone(), path, Some(STRANGER), body.clone()).await;
        // Listing topics and the cluster view are open to every
        // principal, filtered to the topics it may see.
        let expected = if path == "/v1/topics" || path == "/v1/cluster" {
            200
        } else {
            403
        };
        assert_eq!(
            stranger.status, expected,
            "{method} {path} without the grant: {}",
            stranger.text
        );
        if expected == 403 {
            assert_eq!(stranger.json()["code"], "forbidden");
        }
        if path == "/v1/cluster" {
            assert_eq!(
                stranger.json()["partitions"],
                serde_json::json!([]),
                "the cluster view shows a stranger no topic"
            );
        }
    }
    // The refused requests changed nothing.
    let after_topic = call(&server, Method::GET, "/v1/topics/orders", Some(ADMIN), None)
        .await
        .expect_status(200);
    let after_sub = call(
        &server,
        Method::GET,
        "/v1/topics/orders/subscriptions/billing",
        Some(ADMIN),
        None,
    )
    .await
    .expect_status(200);
    assert_eq!(before_topic, after_topic);
    assert_eq!(before_sub["config"], after_sub["config"]);
    assert_eq!(
        before_sub["stats"]["backlog"],
        after_sub["stats"]["backlog"]
    );
    // With the grant: never refused (DELETEs last so the others find their targets).
    operations.sort_by_key(|(m, _)| *m == Method::DELETE);
    for (method, path) in &operations {
        if path.ends_with("/events") {
            // A granted event stream never ends: check its status only.
            let response = server
                .client()
                .get(server.url(path))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(!is_refusal(status), "{method} {path} as admin: {status}");
            continue;
        }
        let granted = call(
            &server,
            method.clone(),
            path,
            Some(ADMIN),
            body_for(method, path),
        )
        .await;
        assert!(
            !is_refusal(granted.status.as_u16()),
            "{method} {path} as admin: {} {}",
            granted.status,
            granted.text
        );
    }
}

#[tokio::test]
async fn grants_limit_actions_topics_subscriptions_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), "");
    let server = TestServer::start_with(&["--auth-tokens-file", tokens.to_str().unwrap()]);
    for topic in ["orders", "payments"] {
        call(
            &server,
            Method::PUT,
            &format!("/v1/topics/{topic}"),
            Some(ADMIN),
            Some(json!({})),
        )
        .await
        .expect_status(201);
    }
    for sub in ["billing", "audit"] {
        call(
            &server,
            Method::PUT,
            &format!("/v1/topics/orders/subscriptions/{sub}"),
            Some(ADMIN),
            Some(json!({"start": "earliest"})),
        )
        .await
        .expect_status(201);
    }
    let produce = json!({"messages": [{"value": {"n": 1}}]});
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/messages",
        Some(PRODUCER),
        Some(produce.clone()),
    )
    .await
    .expect_status(200);
    call(
        &server,
        Method::POST,
        "/v1/topics/payments/messages",
        Some(PRODUCER),
        Some(produce.clone()),
    )
    .await
    .expect_status(403);
    // The producer may not read or consume.
    call(
        &server,
        Method::GET,
        "/v1/topics/orders/partitions/0/messages",
        Some(PRODUCER),
        None,
    )
    .await
    .expect_status(403);
    // The billing consumer pulls from its subscription only.
    let pulled = call(
        &server,
        Method::POST,
        "/v1/topics/orders/subscriptions/billing/pull",
        Some(BILLING),
        Some(json!({"max_messages": 10})),
    )
    .await
    .expect_status(200);
    let ack_id = pulled["messages"][0]["ack_id"].as_str().unwrap().to_owned();
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/subscriptions/audit/pull",
        Some(BILLING),
        Some(json!({})),
    )
    .await
    .expect_status(403);
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/subscriptions/billing/seek",
        Some(BILLING),
        Some(json!({"to": "earliest"})),
    )
    .await
    .expect_status(403);
    // Its ack id is useless on another subscription, even for an admin.
    let other = call(
        &server,
        Method::POST,
        "/v1/topics/orders/subscriptions/audit/ack",
        Some(ADMIN),
        Some(json!({"ack_ids": [ack_id.clone()]})),
    )
    .await;
    assert!(
        other.status == 400 || other.json()["acked"] == 0,
        "{}",
        other.text
    );
    let acked = call(
        &server,
        Method::POST,
        "/v1/topics/orders/subscriptions/billing/ack",
        Some(BILLING),
        Some(json!({"ack_ids": [ack_id]})),
    )
    .await
    .expect_status(200);
    assert_eq!(acked["acked"], 1);
    // Lists show only what the principal may see.
    let topics = call(&server, Method::GET, "/v1/topics", Some(PRODUCER), None)
        .await
        .expect_status(200);
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders"]);
    let stranger = call(&server, Method::GET, "/v1/topics", Some(STRANGER), None)
        .await
        .expect_status(200);
    assert_eq!(stranger["topics"].as_array().unwrap().len(), 0);
    let subs = call(
        &server,
        Method::GET,
        "/v1/topics/orders/subscriptions",
        Some(BILLING),
        None,
    )
    .await
    .expect_status(200);
    let names: Vec<&str> = subs["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing"]);
    // Paging: one topic per page, following `next`.
    let page = call(
        &server,
        Method::GET,
        "/v1/topics?limit=1",
        Some(ADMIN),
        None,
    )
    .await
    .expect_status(200);
    assert_eq!(page["topics"][0]["name"], "orders");
    assert_eq!(page["next"], "orders");
    let last = call(
        &server,
        Method::GET,
        "/v1/topics?limit=1&cursor=orders",
        Some(ADMIN),
        None,
    )
    .await
    .expect_status(200);
    assert_eq!(last["topics"][0]["name"], "payments");
    assert!(last["next"].is_null());
    // Metrics count both refusal kinds.
    let metrics = server.get("/metrics").await.text;
    assert!(metrics.contains("weir_requests_denied_total"), "{metrics}");
    assert!(
        metrics.contains("weir_auth_failures_total{reason=\"missing\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn changed_tokens_files_apply_without_restart_and_broken_ones_keep_the_old_rules() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), "");
    let server = TestServer::start_with(&[
        "--auth-tokens-file",
        tokens.to_str().unwrap(),
        "--auth-reload-interval-ms",
        "100",
    ]);
    call(&server, Method::GET, "/v1/topics", Some(ADMIN), None)
        .await
        .expect_status(200);
    let rotated = "rotated-token";
    let text = format!(
        "[[tokens]]\nprincipal = \"admin\"\nsha256 = \"{}\"\ngrants = [{{ actions = [\"admin\"], topics = \"*\" }}]\n",
        sha256_hex(rotated)
    );
    std::fs::write(&tokens, text).unwrap();
    wait_for_status(&server, ADMIN, 401).await;
    call(&server, Method::GET, "/v1/topics", Some(rotated), None)
        .await
        .expect_status(200);
    std::fs::write(&tokens, "this is [not toml").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    call(&server, Method::GET, "/v1/topics", Some(rotated), None)
        .await
        .expect_status(200);
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("weir_config_reload_failures_total{file=\"tokens\"} 1"),
        "{metrics}"
    );
}

async fn wait_for_status(server: &TestServer, token: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = call(server, Method::GET, "/v1/topics", Some(token), None).await;
        if reply.status.as_u16() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after 10 s",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn websocket_upgrades_take_the_token_from_the_subprotocol_list() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), "");
    let server = TestServer::start_with(&["--auth-tokens-file", tokens.to_str().unwrap()]);
    call(
        &server,
        Method::PUT,
        "/v1/topics/orders",
        Some(ADMIN),
        Some(json!({})),
    )
    .await
    .expect_status(201);
    let url = server
        .url("/v1/topics/orders/ws?from=earliest")
        .replace("http://", "ws://");
    let request = |protocols: &str| {
        let mut r = url.as_str().into_client_request().unwrap();
        if !protocols.is_empty() {
            r.headers_mut()
                .insert("sec-websocket-protocol", protocols.parse().unwrap());
        }
        r
    };
    let refused = tokio_tungstenite::connect_async(request(""))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let forbidden = tokio_tungstenite::connect_async(request(&format!("weir, bearer.{PRODUCER}")))
        .await
        .unwrap_err();
    assert!(forbidden.to_string().contains("403"), "{forbidden}");
    let (_socket, response) =
        tokio_tungstenite::connect_async(request(&format!("weir, bearer.{ADMIN}")))
            .await
            .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "weir");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), "");
    let server = TestServer::start_with(&[
        "--auth-tokens-file",
        tokens.to_str().unwrap(),
        "--rate-limit-messages-per-s",
        "5",
    ]);
    call(
        &server,
        Method::PUT,
        "/v1/topics/orders",
        Some(ADMIN),
        Some(json!({})),
    )
    .await
    .expect_status(201);
    let batch =
        json!({"messages": [{"value": 1}, {"value": 2}, {"value": 3}, {"value": 4}, {"value": 5}]});
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/messages",
        Some(PRODUCER),
        Some(batch.clone()),
    )
    .await
    .expect_status(200);
    let limited = call(
        &server,
        Method::POST,
        "/v1/topics/orders/messages",
        Some(PRODUCER),
        Some(batch.clone()),
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.json()["code"], "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another principal has its own bucket; the refused batch appended nothing.
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/messages",
        Some(ADMIN),
        Some(batch.clone()),
    )
    .await
    .expect_status(200);
    tokio::time::sleep(Duration::from_secs(retry)).await;
    call(
        &server,
        Method::POST,
        "/v1/topics/orders/messages",
        Some(PRODUCER),
        Some(batch),
    )
    .await
    .expect_status(200);
    let topic = call(&server, Method::GET, "/v1/topics/orders", Some(ADMIN), None)
        .await
        .expect_status(200);
    assert_eq!(topic["partitions"][0]["high_offset"], 15);
}

#[tokio::test]
async fn connection_limit_and_slow_clients_do_not_starve_others() {
    let server =
        TestServer::start_with(&["--max-connections", "3", "--header-read-timeout-ms", "500"]);
    let addr = server.url("").trim_start_matches("http://").to_owned();
    // Two slowloris connections: half a request line, then nothing.
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // A third connection still gets in; a fourth is refused with 503.
    let mut third = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut fourth = TcpStream::connect(&addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut refused = String::new();
    let _ = fourth.read_to_string(&mut refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    assert!(refused.contains("overloaded"), "{refused}");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut ok = String::new();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.read_to_string(&mut ok);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:?}");
    // The slow connections are closed by the header timeout...
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "slow connection kept open"
        );
    }
    // ...which frees their slots for everyone else.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn metrics_and_docs_can_be_protected() {
    let dir = tempfile::tempdir().unwrap();
    let scraper = "scraper-secret-token";
    let entry = format!(
        "[[tokens]]\nprincipal = \"prometheus\"\nsha256 = \"{}\"\ngrants = [{{ actions = [\"metrics\"], topics = \"*\" }}]\n",
        sha256_hex(scraper)
    );
    let tokens = tokens_file(dir.path(), &entry);
    let server = TestServer::start_with(&[
        "--auth-tokens-file",
        tokens.to_str().unwrap(),
        "--auth-protect-metrics",
        "--auth-protect-docs",
    ]);
    assert_eq!(
        call(&server, Method::GET, "/metrics", None, None)
            .await
            .status,
        401
    );
    assert_eq!(
        call(&server, Method::GET, "/metrics", Some(PRODUCER), None)
            .await
            .status,
        403
    );
    assert_eq!(
        call(&server, Method::GET, "/metrics", Some(scraper), None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&server, Method::GET, "/metrics", Some(ADMIN), None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&server, Method::GET, "/openapi.json", None, None)
            .await
            .status,
        401
    );
    assert_eq!(
        call(&server, Method::GET, "/openapi.json", Some(PRODUCER), None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&server, Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );
    // The metrics principal may not touch topics.
    assert_eq!(
        call(
            &server,
            Method::GET,
            "/v1/topics/orders",
            Some(scraper),
            None
        )
        .await
        .status,
        403
    );
}

#[tokio::test]
async fn half_sent_requests_do_not_hold_up_a_graceful_stop() {
    let mut server = TestServer::start();
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /v1/topics/t/messages HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "graceful stop waited {:?} for a half-sent request",
        started.elapsed()
    );
}

#[test]
fn non_loopback_without_auth_refuses_to_start() {
    let output = std::process::Command::new(built_binary(
        "weir-server",
        "WEIR_SERVER_BIN",
        "weir-server",
    ))
    .args(["--listen", "0.0.0.0:0", "--data-dir"])
    .arg(tempfile::tempdir().unwrap().path())
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--allow-anonymous") && stderr.contains("--auth-tokens-file"),
        "{stderr}"
    );
}

mod jwt {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    fn key() -> (EncodingKey, String) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let encoding = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
        (encoding, x)
    }

    fn token(key: &EncodingKey, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn jwts_are_verified_against_the_jwks_file() {
        let dir = tempfile::tempdir().unwrap();
        let (signing, x) = key();
        let (other_signing, _) = key();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA"}]}).to_string(),
        )
        .unwrap();
        let server = TestServer::start_with(&[
            "--auth-jwks-file",
            jwks.to_str().unwrap(),
            "--auth-jwt-audience",
            "weir",
            "--auth-jwt-issuer",
            "https://id.example",
        ]);
        let grants = json!([{"actions": ["admin"], "topics": "*"}]);
        let claims = |aud: &str, exp: u64| json!({"sub": "svc-a", "aud": aud, "iss": "https://id.example", "exp": exp, "nbf": now() - 10, "weir": grants});
        let valid = token(&signing, claims("weir", now() + 600));
        call(
            &server,
            Method::PUT,
            "/v1/topics/t",
            Some(&valid),
            Some(json!({})),
        )
        .await
        .expect_status(201);
        let expired = token(&signing, claims("weir", now() - 600));
        let reply = call(&server, Method::GET, "/v1/topics", Some(&expired), None).await;
        assert_eq!(reply.status, 401);
        assert!(reply.json()["detail"].as_str().unwrap().contains("expired"));
        let wrong_key = token(&other_signing, claims("weir", now() + 600));
        assert_eq!(
            call(&server, Method::GET, "/v1/topics", Some(&wrong_key), None)
                .await
                .status,
            401
        );
        let wrong_audience = token(&signing, claims("someone-else", now() + 600));
        assert_eq!(
            call(
                &server,
                Method::GET,
                "/v1/topics",
                Some(&wrong_audience),
                None
            )
            .await
            .status,
            401
        );
        let no_grants = token(
            &signing,
            json!({"sub": "svc-b", "aud": "weir", "iss": "https://id.example", "exp": now() + 600}),
        );
        assert_eq!(
            call(
                &server,
                Method::PUT,
                "/v1/topics/u",
                Some(&no_grants),
                Some(json!({}))
            )
            .await
            .status,
            403
        );
    }
}

mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).to_str().unwrap().to_owned()
        }
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate
    /// with CN `cert-user`, as PEM files.
    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test ca");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        write("ca.pem", ca.pem());
        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "cert-user");
        let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Pki { dir }
    }

    #[tokio::test]
    async fn https_round_trip_with_client_certificate_principals() {
        let pki = pki();
        let tokens = tokens_file(
            pki.dir.path(),
            "[[tokens]]\nprincipal = \"cert-user\"\ngrants = [{ actions = [\"admin\"], topics = \"certs.*\" }]\n",
        );
        let server = TestServer::start_with(&[
            "--auth-tokens-file",
            tokens.to_str().unwrap(),
            "--tls-cert-file",
            &pki.path("server.pem"),
            "--tls-key-file",
            &pki.path("server.key"),
            "--tls-client-ca-file",
            &pki.path("ca.pem"),
        ]);
        let https = server.url("").replace("http://", "https://");
        // A bearer token over HTTPS, through the real client.
        let client = weir_client::Client::builder(&https)
            .ca_file(pki.path("ca.pem"))
            .token(Some(ADMIN.to_owned()))
            .build()
            .unwrap();
        client
            .create_topic("orders", &Default::default())
            .await
            .unwrap();
        let produced = client
            .produce(
                "orders",
                vec![serde_json::from_value(json!({"value": "over tls"})).unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(produced[0].offset, 0);
        // The client certificate alone names the principal `cert-user`.
        let by_cert = weir_client::Client::builder(&https)
            .ca_file(pki.path("ca.pem"))
            .client_cert(pki.path("client.pem"), pki.path("client.key"))
            .build()
            .unwrap();
        by_cert
            .create_topic("certs.a", &Default::default())
            .await
            .unwrap();
        let denied = by_cert
            .create_topic("orders2", &Default::default())
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Some(weir_protocol::ErrorCode::Forbidden));
        // Without a certificate or token: 401.
        let anonymous = weir_client::Client::builder(&https)
            .ca_file(pki.path("ca.pem"))
            .build()
            .unwrap();
        let refused = anonymous.topics().await.unwrap_err();
        assert_eq!(refused.code(), Some(weir_protocol::ErrorCode::Unauthorized));
        // Plain HTTP to the TLS port gets no HTTP answer.
        let plain = try_send(
            &server.client(),
            Method::GET,
            &server.url("/healthz"),
            None,
            &[],
        )
        .await;
        assert!(
            plain.is_err(),
            "plain HTTP was answered: {:?}",
            plain.map(|r| r.status)
        );
    }
}
