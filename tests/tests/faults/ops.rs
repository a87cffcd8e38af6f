//! Recorded client operations for the fault scenarios: produce, pull, ack,
//! nack and the final read-back, sent with plain HTTP (no client-side
//! retries that would hide outcomes) to wherever the server listens now,
//! each recorded in the shared [`History`] with its outcome.
//!
//! Subscriptions are registered in the history as `"{topic}/{sub}"`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use weir_tests::history::{DeadLetter, Delivery, DeliveryId, History, Outcome, Position, Produce};

/// The server's current base URL (`http://127.0.0.1:port`); a restarted
/// server listens on a new port.
#[derive(Clone, Debug, Default)]
pub struct Endpoint(Arc<Mutex<String>>);

impl Endpoint {
    pub fn new(base: &str) -> Endpoint {
        let endpoint = Endpoint::default();
        endpoint.set(base);
        endpoint
    }

    pub fn set(&self, base: &str) {
        base.clone_into(&mut self.0.lock().unwrap());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0.lock().unwrap())
    }
}

/// The registered history name of a subscription.
pub fn sub_name(topic: &str, sub: &str) -> String {
    format!("{topic}/{sub}")
}

/// An HTTP client for recorded operations: a short timeout (an operation
/// cut by a kill is unknown, not hung), no proxies from the environment.
pub fn http_client(timeout: Duration, reuse_connections: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2));
    if !reuse_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}

/// One message of a received batch, with its recorded delivery.
pub struct Received {
    pub id: DeliveryId,
    pub ack_id: String,
    pub value: String,
}

/// The answer to a recorded produce.
pub struct Produced {
    pub outcome: Outcome,
    /// Messages the server answered `duplicate: true` for.
    pub duplicates: usize,
}

/// Records operations of one client.
#[derive(Clone)]
pub struct Recorder {
    pub history: History,
    pub http: reqwest::Client,
    pub endpoint: Endpoint,
}

impl Recorder {
    /// Produces `messages` as one batch and records each message.
    pub async fn produce(&self, messages: &[Produce]) -> Produced {
        let Some(first) = messages.first() else {
            return Produced {
                outcome: Outcome::Ok,
                duplicates: 0,
            };
        };
        let body: Vec<Value> = messages.iter().map(message_body).collect();
        let url = self
            .endpoint
            .url(&format!("/v1/topics/{}/messages", first.topic));
        let invoked = self.history.tick();
        let (outcome, answer) = match self.post(&url, &json!({ "messages": body })).await {
            Ok((status, answer)) => (Outcome::from_status(status.as_u16()), answer),
            Err(_) => (Outcome::Unknown, Value::Null),
        };
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        let ok = outcome == Outcome::Ok && results.len() == messages.len();
        let outcome = if outcome == Outcome::Ok && !ok {
            Outcome::Unknown
        } else {
            outcome
        };
        let mut duplicates = 0;
        for (i, message) in messages.iter().enumerate() {
            let position = results.get(i).filter(|_| ok).and_then(position_of);
            if ok && results[i]["duplicate"] == true {
                duplicates += 1;
            }
            self.history
                .record_produce(message.clone(), invoked, outcome, position);
        }
        Produced {
            outcome,
            duplicates,
        }
    }

    /// One pull; `None` when it failed (nothing was recorded then).
    pub async fn pull(&self, topic: &str, sub: &str, body: &Value) -> Option<Vec<Received>> {
        let url = self
            .endpoint
            .url(&format!("/v1/topics/{topic}/subscriptions/{sub}/pull"));
        let pulled = self.history.tick();
        let (status, answer) = self.post(&url, body).await.ok()?;
        if !status.is_success() {
            return None;
        }
        let name = sub_name(topic, sub);
        let messages = answer["messages"].as_array()?;
        let mut received = Vec::with_capacity(messages.len());
        for message in messages {
            let value = message["value"].as_str().unwrap_or_default().to_owned();
            let attempt = message["attempt"].as_u64().unwrap_or(0) as u32;
            let delivery = Delivery {
                subscription: name.clone(),
                value: value.clone(),
                position: position_of(message)?,
                attempt,
            };
            received.push(Received {
                id: self.history.record_delivery(delivery, pulled),
                ack_id: message["ack_id"].as_str()?.to_owned(),
                value,
            });
        }
        Some(received)
    }

    /// Acks `received`; returns how many the server confirmed.
    pub async fn ack(&self, topic: &str, sub: &str, received: &[&Received]) -> usize {
        self.settle(topic, sub, "ack", received, json!({}), true)
            .await
    }

    /// Nacks `received` with the extra body fields in `extra`.
    pub async fn nack(
        &self,
        topic: &str,
        sub: &str,
        received: &[&Received],
        extra: Value,
    ) -> usize {
        self.settle(topic, sub, "nack", received, extra, false)
            .await
    }

    async fn settle(
        &self,
        topic: &str,
        sub: &str,
        verb: &str,
        received: &[&Received],
        extra: Value,
        ack: bool,
    ) -> usize {
        if received.is_empty() {
            return 0;
        }
        let url = self
            .endpoint
            .url(&format!("/v1/topics/{topic}/subscriptions/{sub}/{verb}"));
        let mut body = extra;
        body["ack_ids"] = received.iter().map(|r| json!(r.ack_id)).collect();
        let invoked = self.history.tick();
        let (outcome, unknown) = match self.post(&url, &body).await {
            Ok((status, answer)) => {
                let unknown: Vec<String> = answer["unknown"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect();
                (Outcome::from_status(status.as_u16()), unknown)
            }
            Err(_) => (Outcome::Unknown, Vec::new()),
        };
        let mut confirmed = 0;
        for r in received {
            let outcome = if outcome == Outcome::Ok && unknown.contains(&r.ack_id) {
                Outcome::Failed
            } else {
                outcome
            };
            confirmed += usize::from(outcome == Outcome::Ok);
            if ack {
                self.history.record_ack(r.id, invoked, outcome);
            } else {
                self.history.record_nack(r.id, invoked, outcome);
            }
        }
        confirmed
    }

    /// Reads every partition of `topic` back into the history's final log.
    /// Returns the messages read (for dead-letter topics).
    pub async fn read_back(&self, topic: &str) -> Vec<Value> {
        let info = self.get_ok(&format!("/v1/topics/{topic}")).await;
        let mut all = Vec::new();
        for partition in info["partitions"].as_array().unwrap() {
            let p = partition["partition"].as_u64().unwrap();
            let high = partition["high_offset"].as_u64().unwrap();
            let mut offset = partition["low_offset"].as_u64().unwrap();
            while offset < high {
                let page = self
                    .get_ok(&format!(
                        "/v1/topics/{topic}/partitions/{p}/messages?offset={offset}&limit=10000"
                    ))
                    .await;
                let messages = page["messages"].as_array().unwrap();
                let next = page["next_offset"].as_u64().unwrap();
                assert!(
                    next > offset,
                    "read of {topic}/{p} from {offset} stuck: {page}"
                );
                for message in messages {
                    let value = message["value"].as_str().map(str::to_owned);
                    self.history
                        .record_log(topic, position_of(message).unwrap(), value);
                    all.push(message.clone());
                }
                offset = next;
            }
        }
        all
    }

    /// Reads the dead-letter topic `dlq` and records each copy for the
    /// subscription named in its headers.
    pub async fn read_dead_letters(&self, dlq: &str) -> usize {
        let copies = self.read_back(dlq).await;
        for copy in &copies {
            let h = &copy["headers"];
            let header = |name: &str| h[name].as_str().unwrap_or_default().to_owned();
            let number = |name: &str| header(name).parse::<u64>().unwrap();
            self.history.record_dead_letter(DeadLetter {
                subscription: sub_name(
                    &header("weir-original-topic"),
                    &header("weir-subscription"),
                ),
                value: copy["value"].as_str().unwrap_or_default().to_owned(),
                original: Position::new(
                    number("weir-original-partition"),
                    number("weir-original-offset"),
                ),
            });
        }
        copies.len()
    }

    /// `GET path` that must answer 200 within 30 s of retries (the server
    /// is expected up: only transport hiccups are retried).
    pub async fn get_ok(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match self.http.get(self.endpoint.url(path)).send().await {
                Ok(response) if response.status() == StatusCode::OK => {
                    return response.json().await.unwrap();
                }
                Ok(response) => format!(
                    "{} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                ),
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "GET {path} kept failing: {last}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post(&self, url: &str, body: &Value) -> reqwest::Result<(StatusCode, Value)> {
        let response = self.http.post(url).json(body).send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// The JSON body of one message.
fn message_body(message: &Produce) -> Value {
    let mut body = json!({ "value": message.value });
    if let Some(key) = &message.key {
        body["key"] = json!(key);
    }
    if let Some(id) = &message.id {
        body["id"] = json!(id);
    }
    body
}

/// `partition` and `offset` of a message or produce result.
fn position_of(value: &Value) -> Option<Position> {
    Some(Position::new(
        value["partition"].as_u64()?,
        value["offset"].as_u64()?,
    ))
}
