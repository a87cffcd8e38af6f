//! Plain-HTTP helpers of the disk-full scenarios: produce random
//! (incompressible) bytes, remember what was acknowledged, read it back
//! and compare byte for byte.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::rng::Rng;

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A message the server acknowledged, with where it said it stored it.
#[derive(Debug)]
pub struct Acked {
    pub partition: u64,
    pub offset: u64,
    pub value: Vec<u8>,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
    let response = request.send().await?;
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header(reqwest::header::RETRY_AFTER);
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok(Answer {
        status,
        retry_after,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}

/// Produces `count` random values of `size` bytes as one batch; the
/// acknowledged messages are appended to `acked` (only on a 2xx).
pub async fn produce_random(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    rng: &mut Rng,
    (count, size): (usize, usize),
    acked: &mut Vec<Acked>,
) -> reqwest::Result<Answer> {
    let values: Vec<Vec<u8>> = (0..count).map(|_| random_bytes(rng, size)).collect();
    let messages: Vec<Value> = values
        .iter()
        .map(|v| json!({ "value_b64": B64.encode(v) }))
        .collect();
    let answer = send(
        http.post(format!("{base}/v1/topics/{topic}/messages"))
            .json(&json!({ "messages": messages })),
    )
    .await?;
    if answer.is_success() {
        let results = answer.body["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            results.len(),
            count,
            "one result per message: {:?}",
            answer.body
        );
        for (value, result) in values.into_iter().zip(results) {
            acked.push(Acked {
                partition: result["partition"].as_u64().unwrap(),
                offset: result["offset"].as_u64().unwrap(),
                value,
            });
        }
    }
    Ok(answer)
}

/// Retries a small produce to `topic` until it succeeds; returns how long
/// that took, or the last answer if `limit` passed first.
pub async fn produce_recovers(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let body = json!({"messages": [{"value": "after"}]});
    loop {
        let last = match send(
            http.post(format!("{base}/v1/topics/{topic}/messages"))
                .json(&body),
        )
        .await
        {
            Ok(answer) if answer.is_success() => return Ok(started.elapsed()),
            Ok(answer) => format!("{} {}", answer.status, answer.body),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > limit {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every stored message of `topic`: (partition, offset) → bytes.
pub async fn read_back(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
) -> HashMap<(u64, u64), Vec<u8>> {
    let topic_info = send(http.get(format!("{base}/v1/topics/{topic}")))
        .await
        .unwrap();
    assert_eq!(
        topic_info.status, 200,
        "GET topic {topic}: {:?}",
        topic_info.body
    );
    let mut stored = HashMap::new();
    for p in topic_info.body["partitions"].as_array().unwrap() {
        let partition = p["partition"].as_u64().unwrap();
        let high = p["high_offset"].as_u64().unwrap();
        let mut offset = p["low_offset"].as_u64().unwrap();
        while offset < high {
            let page = send(http.get(format!(
                "{base}/v1/topics/{topic}/partitions/{partition}/messages?offset={offset}&limit=200"
            )))
            .await
            .unwrap();
            assert_eq!(
                page.status, 200,
                "read {topic}/{partition}@{offset}: {:?}",
                page.body
            );
            let next = page.body["next_offset"].as_u64().unwrap();
            assert!(
                next > offset,
                "read of {topic}/{partition} stuck at {offset}"
            );
            for m in page.body["messages"].as_array().unwrap() {
                let bytes = m["value_b64"]
                    .as_str()
                    .and_then(|b| B64.decode(b).ok())
                    .unwrap_or_default();
                stored.insert((partition, m["offset"].as_u64().unwrap()), bytes);
            }
            offset = next;
        }
    }
    stored
}

/// Acknowledged messages missing or different in `stored`, described.
pub fn lost(acked: &[Acked], stored: &HashMap<(u64, u64), Vec<u8>>) -> Vec<String> {
    acked
        .iter()
        .filter_map(|a| match stored.get(&(a.partition, a.offset)) {
            None => Some(format!("{}@{} missing", a.partition, a.offset)),
            Some(bytes) if *bytes != a.value => Some(format!(
                "{}@{} holds {} other bytes",
                a.partition,
                a.offset,
                bytes.len()
            )),
            Some(_) => None,
        })
        .collect()
}

fn random_bytes(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}
