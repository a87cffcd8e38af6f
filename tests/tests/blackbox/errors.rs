//! Every error answer: its status, its stable `code`, the problem+json
//! content type, and that a refused request changes nothing.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{try_send, Reply, TestServer};

/// Sum of `high_offset` over every partition of a topic.
async fn appended(server: &TestServer, topic: &str) -> u64 {
    server.topic(topic).await["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["high_offset"].as_u64().expect("high_offset"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names() {
    let server = TestServer::start();
    let long = "a".repeat(201);
    for name in [
        "bad%20name",
        long.as_str(),
        ".hidden",
        "-dash",
        "_under",
        "%C3%BC",
        "a%2Fb",
        "semi%3Bcolon",
    ] {
        let path = format!("/v1/topics/{name}");
        server
            .put_json(&path, &json!({}))
            .await
            .expect_problem(400, "invalid_name");
        server.get(&path).await.expect_problem(400, "invalid_name");
        server
            .delete(&path)
            .await
            .expect_problem(400, "invalid_name");
        server
            .post_json(
                &format!("{path}/messages"),
                &json!({"messages": [{"value": 1}]}),
            )
            .await
            .expect_problem(400, "invalid_name");
        server
            .get(&format!("{path}/partitions/0/messages"))
            .await
            .expect_problem(400, "invalid_name");
    }
    assert_eq!(
        server.get("/v1/topics").await.expect_status(200),
        json!({"topics": [], "next": null})
    );
    // The longest valid name and every allowed character are fine.
    let longest = format!("A{}", "b".repeat(199));
    server.create_topic(&longest, &json!({})).await;
    server.create_topic("a.B-c_9", &json!({})).await;
    server.create_topic("0", &json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies() {
    let server = TestServer::start();
    // Topic bodies.
    for body in [
        "{",
        "[1, 2]",
        "{\"partitions\": \"two\"}",
        "{\"partitions\": -1}",
        "null x",
    ] {
        server
            .request(
                Method::PUT,
                "/v1/topics/t",
                Some(("application/json", body.as_bytes().to_vec())),
                &[],
            )
            .await
            .expect_problem(400, "invalid_request");
    }
    for body in [
        json!({"partitionz": 2}),
        json!({"retention": {"max_age": 1}}),
    ] {
        server
            .put_json("/v1/topics/t", &body)
            .await
            .expect_problem(400, "invalid_request");
    }
    for (body, field) in [
        (
            json!({"retention": {"max_messages": 0}}),
            "retention.max_messages",
        ),
        (json!({"max_message_bytes": 0}), "max_message_bytes"),
    ] {
        server
            .put_json("/v1/topics/t", &body)
            .await
            .expect_invalid(field);
    }
    server
        .get("/v1/topics/t")
        .await
        .expect_problem(404, "topic_not_found");

    // Produce bodies.
    server.create_topic("t", &json!({"partitions": 2})).await;
    for body in ["{not json", "", "{\"messages\": {}}", "[]"] {
        server
            .request(
                Method::POST,
                "/v1/topics/t/messages",
                Some(("application/json", body.as_bytes().to_vec())),
                &[],
            )
            .await
            .expect_problem(400, "invalid_request");
    }
    for body in [
        json!({"messages": [{"value": 1, "foo": 2}]}),
        json!({"messages": [{"value": 1}], "extra": true}),
        json!({"messages": [{"value": 1, "partition": -1}]}),
        json!({"messages": [{"value": 1, "key": 5}]}),
        json!({"messages": [{"value": 1, "headers": {"h": 1}}]}),
    ] {
        server
            .post_json("/v1/topics/t/messages", &body)
            .await
            .expect_problem(400, "invalid_request");
    }
    for (message, field) in [
        (json!({}), "messages[0].value"),
        (
            json!({"value": 1, "value_b64": "AA=="}),
            "messages[0].value",
        ),
        (json!({"value_b64": "***"}), "messages[0].value_b64"),
        (json!({"value": 1, "partition": 2}), "messages[0].partition"),
        (
            json!({"value": 1, "headers": {"weir-x": "1"}}),
            "messages[0].headers",
        ),
        (
            json!({"value": 1, "headers": {"Weir-Attempts": "1"}}),
            "messages[0].headers",
        ),
        (json!({"value": 1, "id": ""}), "messages[0].id"),
        (json!({"value": 1, "id": "i".repeat(257)}), "messages[0].id"),
        (
            json!({"value": 1, "delay_ms": 1, "deliver_at": 5}),
            "messages[0].delay_ms",
        ),
    ] {
        server
            .post_json("/v1/topics/t/messages", &json!({"messages": [message]}))
            .await
            .expect_invalid(field);
    }
    server
        .post_json("/v1/topics/t/messages", &json!({"messages": []}))
        .await
        .expect_invalid("messages");
    // An id of exactly 256 bytes is fine.
    server
        .produce("t", json!([{"value": 1, "id": "i".repeat(256)}]))
        .await;
    assert_eq!(appended(&server, "t").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_batch_appends_nothing() {
    let server = TestServer::start();
    server
        .create_topic("t", &json!({"partitions": 3, "max_message_bytes": 1000}))
        .await;
    let good = |i: u64| json!({"value": {"good": i}, "id": format!("good-{i}")});
    let bad_messages = [
        json!({"value": 1, "partition": 99}),
        json!({"value_b64": "not base64!"}),
        json!({"value": 1, "headers": {"weir-reserved": "x"}}),
        json!({"value_b64": B64.encode(vec![0u8; 2000])}),
    ];
    for (i, bad) in bad_messages.into_iter().enumerate() {
        let batch = json!({"messages": [good(0), good(1), bad, good(2)]});
        let reply = server.post_json("/v1/topics/t/messages", &batch).await;
        let status = reply.status.as_u16();
        assert!(status == 400 || status == 413, "case {i}: {}", reply.text);
        assert!(
            reply.content_type().starts_with("application/problem+json"),
            "case {i}"
        );
        assert_eq!(appended(&server, "t").await, 0, "case {i} appended");
    }
    // The ids of the refused batches were not remembered either.
    let results = server
        .produce("t", json!([good(0), good(1), good(2)]))
        .await;
    assert!(
        results.iter().all(|r| r["duplicate"] == false),
        "{results:?}"
    );
    assert_eq!(appended(&server, "t").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type() {
    let server = TestServer::start();
    let spec = br#"{"partitions": 1}"#.to_vec();
    server
        .request(Method::PUT, "/v1/topics/t", Some(("text/plain", spec)), &[])
        .await
        .expect_problem(415, "unsupported_media_type");
    server
        .get("/v1/topics/t")
        .await
        .expect_problem(404, "topic_not_found");
    server.create_topic("t", &json!({})).await;
    let body = br#"{"messages": [{"value": 1}]}"#.to_vec();
    for content_type in ["text/plain", "application/xml", "multipart/form-data"] {
        server
            .post_raw("/v1/topics/t/messages", content_type, body.clone(), &[])
            .await
            .expect_problem(415, "unsupported_media_type");
    }
    server
        .request(Method::POST, "/v1/topics/t/messages", None, &[])
        .await
        .expect_problem(415, "unsupported_media_type");
    // Parameters and case in the media type are fine.
    server
        .post_raw(
            "/v1/topics/t/messages",
            "Application/JSON; charset=utf-8",
            body,
            &[],
        )
        .await
        .expect_status(200);
    assert_eq!(appended(&server, "t").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits() {
    let server = TestServer::start_with(&["--max-request-bytes", "4096"]);
    server
        .create_topic("t", &json!({"max_message_bytes": 200}))
        .await;

    // Body over --max-request-bytes: 413 payload_too_large, in every form.
    let big = B64.encode(vec![1u8; 4000]);
    server
        .post_json(
            "/v1/topics/t/messages",
            &json!({"messages": [{"value_b64": big}]}),
        )
        .await
        .expect_problem(413, "payload_too_large");
    server
        .post_raw(
            "/v1/topics/t/messages",
            "application/octet-stream",
            vec![1u8; 5000],
            &[],
        )
        .await
        .expect_problem(413, "payload_too_large");
    let lines = "{\"value\": 1}\n".repeat(400);
    server
        .post_raw("/v1/topics/t/messages", "application/x-ndjson", lines, &[])
        .await
        .expect_problem(413, "payload_too_large");
    // Without a Content-Length (chunked), the limit still holds. A client of
    // its own: the server closes this connection afterwards (see
    // `chunked_413_keeps_connection_usable`).
    let chunked = post_chunked_over_limit(&fresh_client(), &server).await;
    assert_eq!(chunked.status.as_u16(), 413);
    chunked.expect_problem(413, "payload_too_large");
    let padded = format!("{{\"partitions\": 1 {} }}", " ".repeat(5000));
    server
        .request(
            Method::PUT,
            "/v1/topics/t",
            Some(("application/json", padded.into_bytes())),
            &[],
        )
        .await
        .expect_problem(413, "payload_too_large");

    // Learn the per-message overhead from a stored message of known size.
    server
        .produce("t", json!([{"value_b64": B64.encode([0u8; 10])}]))
        .await;
    let overhead = server.partition_info("t", 0).await["bytes"]
        .as_u64()
        .unwrap()
        - 10;
    assert!(overhead < 100, "overhead {overhead}");
    let fits = usize::try_from(200 - overhead).unwrap();

    // Exactly max_message_bytes is accepted; one more byte is not.
    server
        .produce("t", json!([{"value_b64": B64.encode(vec![0u8; fits])}]))
        .await;
    server
        .post_json(
            "/v1/topics/t/messages",
            &json!({"messages": [{"value_b64": B64.encode(vec![0u8; fits + 1])}]}),
        )
        .await
        .expect_problem(413, "message_too_large");
    // Key and headers count toward the size.
    server
        .post_json(
            "/v1/topics/t/messages",
            &json!({"messages": [{"value_b64": B64.encode(vec![0u8; fits]), "key": "k"}]}),
        )
        .await
        .expect_problem(413, "message_too_large");
    server
        .post_raw(
            "/v1/topics/t/messages",
            "application/octet-stream",
            vec![0u8; fits + 1],
            &[],
        )
        .await
        .expect_problem(413, "message_too_large");
    // One large message among small ones: nothing appended.
    server
        .post_json(
            "/v1/topics/t/messages",
            &json!({"messages": [{"value": 1}, {"value_b64": B64.encode(vec![0u8; 500])}, {"value": 2}]}),
        )
        .await
        .expect_problem(413, "message_too_large");
    assert_eq!(appended(&server, "t").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_partitions_and_read_params() {
    let server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 2})).await;
    server
        .produce("t", json!([{"value": 1, "partition": 0}]))
        .await;

    server
        .get("/v1/topics/t/partitions/2/messages")
        .await
        .expect_problem(404, "partition_not_found");
    server
        .get("/v1/topics/t/partitions/4294967295/messages")
        .await
        .expect_problem(404, "partition_not_found");
    for bad in ["-1", "abc", "99999999999"] {
        server
            .get(&format!("/v1/topics/t/partitions/{bad}/messages"))
            .await
            .expect_problem(400, "invalid_request");
    }
    server
        .post_json(
            "/v1/topics/t/messages",
            &json!({"messages": [{"value": 1, "partition": 2}]}),
        )
        .await
        .expect_invalid("messages[0].partition");

    let read = |query: &str| format!("/v1/topics/t/partitions/0/messages?{query}");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=999999", "limit"),
        ("wait_ms=60001", "wait_ms"),
        ("wait_ms=999999", "wait_ms"),
        ("offset=0&timestamp=0", "offset"),
    ] {
        server.get(&read(query)).await.expect_invalid(field);
    }
    for query in [
        "offset=-1",
        "offset=abc",
        "offset=99999999999999999999999",
        "limit=-5",
        "limit=99999999999",
        "wait_ms=-1",
        "timestamp=-1",
        "offest=1",
    ] {
        server
            .get(&read(query))
            .await
            .expect_problem(400, "invalid_request");
    }
    // The bounds themselves are accepted.
    let page = server
        .get(&read("limit=10000&wait_ms=0&offset=0"))
        .await
        .expect_status(200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods() {
    let server = TestServer::start();
    for path in ["/v1/nope", "/nope", "/v1/topics/t/unknown", "/v2/topics"] {
        server.get(path).await.expect_problem(404, "not_found");
    }
    server
        .get("/v1/topics/missing")
        .await
        .expect_problem(404, "topic_not_found");
    server
        .get("/v1/topics/missing/partitions/0/messages")
        .await
        .expect_problem(404, "topic_not_found");
    server
        .post_json(
            "/v1/topics/missing/messages",
            &json!({"messages": [{"value": 1}]}),
        )
        .await
        .expect_problem(404, "topic_not_found");
    server
        .delete("/v1/topics/missing")
        .await
        .expect_problem(404, "topic_not_found");

    let cases: [(Method, &str); 5] = [
        (Method::POST, "/v1/topics"),
        (Method::DELETE, "/v1/topics"),
        (Method::PATCH, "/v1/topics/t"),
        (Method::GET, "/v1/topics/t/messages"),
        (Method::POST, "/healthz"),
    ];
    for (method, path) in cases {
        server
            .request(method, path, None, &[])
            .await
            .expect_problem(405, "method_not_allowed");
    }
    let body: Value = server.get("/v1/topics").await.expect_status(200);
    assert_eq!(
        body,
        json!({"topics": [], "next": null}),
        "refused requests changed nothing"
    );
}

fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A 10 kB chunked produce body (no Content-Length).
async fn post_chunked_over_limit(http: &reqwest::Client, server: &TestServer) -> Reply {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let response = http
        .post(server.url("/v1/topics/t/messages"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("chunked request");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    Reply {
        status,
        headers,
        text,
    }
}

/// After refusing an oversized chunked body (no Content-Length) with 413,
/// the rest of the body is unread and the connection cannot be reused: the
/// server must announce that with `Connection: close`, or a keep-alive
/// client sends its next request into the closing connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_413_keeps_connection_usable() {
    let server = TestServer::start_with(&["--max-request-bytes", "4096"]);
    server.create_topic("t", &json!({})).await;
    let http = fresh_client();
    let mut failed = Vec::new();
    for attempt in 0..300 {
        let refused = post_chunked_over_limit(&http, &server).await;
        refused.expect_problem(413, "payload_too_large");
        let announces_close = refused
            .headers
            .get("connection")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if announces_close {
            continue;
        }
        if let Err(e) = try_send(&http, Method::GET, &server.url("/healthz"), None, &[]).await {
            failed.push(format!("attempt {attempt}: {e:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 300 requests after an unannounced close failed; first: {}",
        failed.len(),
        failed[0]
    );
}

#[tokio::test]
async fn errors_name_the_field_and_what_it_accepts_not_rust_types() {
    let server = TestServer::start();
    server.create_topic("t", &json!({})).await;
    let bad_partition = server
        .get("/v1/topics/t/partitions/abc/messages")
        .await
        .expect_problem(400, "invalid_request");
    assert_eq!(bad_partition["field"], "partition");
    assert!(
        bad_partition["detail"].as_str().unwrap().contains("`abc`"),
        "{bad_partition}"
    );
    let bad_start = server
        .put_json("/v1/topics/t/subscriptions/s", &json!({"start": 5}))
        .await
        .expect_problem(400, "invalid_request");
    assert_eq!(bad_start["field"], "start");
    let detail = bad_start["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"earliest\"") && !detail.contains("untagged"),
        "{detail}"
    );
    let bad_backoff = server
        .put_json(
            "/v1/topics/t/subscriptions/s",
            &json!({"retry": {"backoff": {"max_ms": "soon"}}}),
        )
        .await
        .expect_problem(400, "invalid_request");
    assert_eq!(bad_backoff["field"], "retry.backoff.max_ms");
    let bad_query = server
        .get("/v1/topics/t/partitions/0/messages?limit=many")
        .await
        .expect_problem(400, "invalid_request");
    assert_eq!(bad_query["field"], "limit");
}

#[test]
fn a_second_server_on_a_data_directory_in_use_says_so_and_logs_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bin = crate::harness::built_binary("weir-server", "WEIR_SERVER_BIN", "weir-server");
    // Logs to a pipe (not a terminal) and NO_COLOR unset: no escape codes.
    let mut first = std::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = first.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("weir listening") {
        assert!(
            std::time::Instant::now() < deadline,
            "no listening line: {}",
            String::from_utf8_lossy(&seen)
        );
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "server exited: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !seen.contains(&0x1b),
        "escape codes in piped logs: {}",
        String::from_utf8_lossy(&seen)
    );
    let second = std::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    assert!(!second.status.success());
    let text = String::from_utf8_lossy(&second.stderr).to_string()
        + &String::from_utf8_lossy(&second.stdout);
    assert!(text.contains("in use by another process"), "{text}");
    assert!(!text.contains("damaged"), "{text}");
}
