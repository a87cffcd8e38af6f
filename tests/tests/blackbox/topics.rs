//! Topic resource: create/update/describe/list/delete, partition growth, and
//! the operational endpoints.

use serde_json::{json, Value};

use crate::harness::TestServer;

fn names(list: &Value) -> Vec<String> {
    list["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .map(|t| t["name"].as_str().expect("topic name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_crud() {
    let server = TestServer::start();
    let spec = json!({"partitions": 2});

    let created = server.create_topic("orders", &spec).await;
    assert_eq!(created["name"], "orders");
    // Same body again: 200, nothing changes.
    let again = server
        .put_json("/v1/topics/orders", &spec)
        .await
        .expect_status(200);
    assert_eq!(again, created);

    let topic = server.topic("orders").await;
    assert_eq!(topic, created);
    assert_eq!(topic["name"], "orders");
    let config = &topic["config"];
    assert_eq!(config["partitions"], 2);
    assert_eq!(config["retention"]["max_age_ms"], 604_800_000u64);
    assert_eq!(config["retention"]["max_bytes"], Value::Null);
    assert_eq!(config["retention"]["max_messages"], Value::Null);
    assert_eq!(config["max_message_bytes"], 1_048_576);
    assert_eq!(config["dedupe_window_ms"], 120_000);
    let partitions = topic["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2);
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(
            p,
            &json!({"partition": i, "low_offset": 0, "high_offset": 0, "messages": 0, "bytes": 0})
        );
    }

    // Offsets and sizes follow produced messages.
    server
        .produce(
            "orders",
            json!([{"value": 1, "partition": 1}, {"value": 2, "partition": 1}]),
        )
        .await;
    let p1 = server.partition_info("orders", 1).await;
    assert_eq!(p1["low_offset"], 0);
    assert_eq!(p1["high_offset"], 2);
    assert_eq!(p1["messages"], 2);
    assert!(p1["bytes"].as_u64().unwrap() > 0, "{p1}");
    assert_eq!(server.partition_info("orders", 0).await["high_offset"], 0);

    // An update of a mutable setting: 200 and visible; partitions untouched.
    let updated = server
        .put_json(
            "/v1/topics/orders",
            &json!({"retention": {"max_messages": 1000}, "dedupe_window_ms": 5000}),
        )
        .await
        .expect_status(200);
    assert_eq!(updated["config"]["retention"]["max_messages"], 1000);
    assert_eq!(updated["config"]["dedupe_window_ms"], 5000);
    assert_eq!(updated["config"]["partitions"], 2);
    assert_eq!(server.topic("orders").await["config"], updated["config"]);

    // Missing fields keep their value on update: `{}` changes nothing.
    let same = server
        .put_json("/v1/topics/orders", &json!({}))
        .await
        .expect_status(200);
    assert_eq!(same["config"], updated["config"]);

    // A long poll on a topic that gets deleted ends promptly.
    let http = server.client();
    let url = server.url("/v1/topics/orders/partitions/0/messages?wait_ms=20000");
    let poll = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let reply = crate::harness::send(&http, reqwest::Method::GET, &url, None, &[]).await;
        (reply, started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // An empty body means "all defaults".
    let bare = server
        .request(reqwest::Method::PUT, "/v1/topics/bare", None, &[])
        .await
        .expect_status(201);
    assert_eq!(bare["config"]["partitions"], 1);

    // Delete: 204, then the topic is gone everywhere.
    let deleted = server.delete("/v1/topics/orders").await;
    assert_eq!(deleted.status.as_u16(), 204, "{}", deleted.text);
    server
        .get("/v1/topics/orders")
        .await
        .expect_problem(404, "topic_not_found");
    let (polled, waited) = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .expect("long poll outlived its topic")
        .expect("poll task");
    assert!(
        waited < std::time::Duration::from_secs(5),
        "long poll on a deleted topic took {waited:?}"
    );
    if polled.status.as_u16() == 200 {
        assert_eq!(polled.json()["messages"], json!([]));
    } else {
        polled.expect_problem(404, "topic_not_found");
    }
    server
        .delete("/v1/topics/orders")
        .await
        .expect_problem(404, "topic_not_found");
    server
        .post_json(
            "/v1/topics/orders/messages",
            &json!({"messages": [{"value": 1}]}),
        )
        .await
        .expect_problem(404, "topic_not_found");
    server
        .get("/v1/topics/orders/partitions/0/messages")
        .await
        .expect_problem(404, "topic_not_found");
    assert_eq!(
        names(&server.get("/v1/topics").await.expect_status(200)),
        ["bare"]
    );

    // Re-creating the name starts a fresh, empty log.
    let fresh = server.create_topic("orders", &json!({})).await;
    assert_eq!(fresh["partitions"][0]["high_offset"], 0);
    assert!(server.read_all("orders", 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_sorted_with_config() {
    let server = TestServer::start();
    let empty = server.get("/v1/topics").await.expect_status(200);
    assert_eq!(empty, json!({"topics": [], "next": null}));
    for name in [
        "zeta",
        "Alpha",
        "beta.events",
        "beta-events",
        "a_1",
        "9lives",
    ] {
        server.create_topic(name, &json!({"partitions": 1})).await;
    }
    let list = server.get("/v1/topics").await.expect_status(200);
    let got = names(&list);
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want, "list must be ordered by name");
    assert_eq!(got.len(), 6);
    for topic in list["topics"].as_array().unwrap() {
        assert_eq!(topic["config"]["partitions"], 1, "{topic}");
        assert!(topic["partitions"].is_array(), "{topic}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_but_never_shrink() {
    let server = TestServer::start();
    server.create_topic("t", &json!({"partitions": 2})).await;
    server
        .produce("t", json!([{"value": "a", "partition": 1}]))
        .await;

    let grown = server
        .put_json("/v1/topics/t", &json!({"partitions": 4}))
        .await
        .expect_status(200);
    assert_eq!(grown["config"]["partitions"], 4);
    assert_eq!(grown["partitions"].as_array().unwrap().len(), 4);
    // Existing partitions keep their data; new ones start empty and accept writes.
    assert_eq!(grown["partitions"][1]["high_offset"], 1);
    assert_eq!(grown["partitions"][3]["high_offset"], 0);
    let results = server
        .produce("t", json!([{"value": "b", "partition": 3}]))
        .await;
    assert_eq!(results[0]["partition"], 3);
    assert_eq!(results[0]["offset"], 0);

    let shrink = server
        .put_json("/v1/topics/t", &json!({"partitions": 3}))
        .await;
    shrink.expect_problem(409, "conflict");
    assert_eq!(server.topic("t").await["config"]["partitions"], 4);

    for bad in [0u64, 1025] {
        server
            .put_json("/v1/topics/t", &json!({"partitions": bad}))
            .await
            .expect_invalid("partitions");
        server
            .put_json("/v1/topics/new-topic", &json!({"partitions": bad}))
            .await
            .expect_invalid("partitions");
    }
    server
        .get("/v1/topics/new-topic")
        .await
        .expect_problem(404, "topic_not_found");
    let max = server
        .create_topic("wide", &json!({"partitions": 1024}))
        .await;
    assert_eq!(max["partitions"].as_array().unwrap().len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints() {
    let server = TestServer::start();
    let health = server.get("/healthz").await.expect_status(200);
    assert_eq!(health["status"], "ok");
    let ready = server.get("/readyz").await.expect_status(200);
    assert_eq!(ready["status"], "ok");

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status.as_u16(), 200);
    assert!(
        metrics.content_type().starts_with("text/plain"),
        "{}",
        metrics.content_type()
    );
    assert!(metrics.text.contains("# HELP"), "{}", metrics.text);

    let spec = server.get("/openapi.json").await.expect_status(200);
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        spec["openapi"]
    );
    assert!(spec["paths"]["/v1/topics/{topic}"].is_object());

    let docs = server.get("/docs/").await;
    assert_eq!(docs.status.as_u16(), 200, "{}", docs.text);
}
