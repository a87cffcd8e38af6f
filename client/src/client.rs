//! The HTTP client: connection pool, request plumbing, problem decoding and
//! the topic endpoints. Subscription endpoints live in `subscriptions.rs`,
//! on top of the same plumbing.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use weir_protocol::{
    ErrorCode, Problem, ProduceMessage, ProduceRequest, ProduceResponse, ProduceResult,
    ReadResponse, TopicInfo, TopicList, TopicSpec,
};

use crate::Error;

/// A Weir server connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Client, Error> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Url(base));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Client {
            http,
            base,
            token: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// The server URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub(crate) async fn send<T: DeserializeOwned>(rb: RequestBuilder) -> Result<T, Error> {
        let response = rb.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status.is_success() {
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return Ok(serde_json::from_slice(body)?);
        }
        Err(Error::Api(problem(status, &bytes)))
    }

    /// Creates a topic, or updates its settings.
    pub async fn create_topic(&self, topic: &str, spec: &TopicSpec) -> Result<TopicInfo, Error> {
        Self::send(self.request(Method::PUT, &topic_path(topic)).json(spec)).await
    }

    /// Describes a topic.
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo, Error> {
        Self::send(self.request(Method::GET, &topic_path(topic))).await
    }

    /// Lists topics.
    pub async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        let list: TopicList = Self::send(self.request(Method::GET, "/v1/topics")).await?;
        Ok(list.topics)
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), Error> {
        let _: serde_json::Value =
            Self::send(self.request(Method::DELETE, &topic_path(topic))).await?;
        Ok(())
    }

    /// Appends messages; returns once they are durable.
    pub async fn produce(
        &self,
        topic: &str,
        messages: Vec<ProduceMessage>,
    ) -> Result<Vec<ProduceResult>, Error> {
        let body = ProduceRequest { messages };
        let path = format!("{}/messages", topic_path(topic));
        let response: ProduceResponse =
            Self::send(self.request(Method::POST, &path).json(&body)).await?;
        Ok(response.results)
    }

    /// Appends a pre-serialized JSON produce body (`{"messages":[...]}`).
    pub async fn produce_raw(
        &self,
        topic: &str,
        body: Vec<u8>,
    ) -> Result<Vec<ProduceResult>, Error> {
        let path = format!("{}/messages", topic_path(topic));
        let response: ProduceResponse = Self::send(
            self.request(Method::POST, &path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await?;
        Ok(response.results)
    }

    /// Reads a partition from `offset`.
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limit: u32,
    ) -> Result<ReadResponse, Error> {
        self.read_query(
            topic,
            partition,
            &[("offset", offset), ("limit", u64::from(limit))],
        )
        .await
    }

    /// Reads a partition from the first message at or after `timestamp`.
    pub async fn read_from_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: u64,
        limit: u32,
    ) -> Result<ReadResponse, Error> {
        self.read_query(
            topic,
            partition,
            &[("timestamp", timestamp), ("limit", u64::from(limit))],
        )
        .await
    }

    /// Long-polls a partition: waits up to `wait_ms` for a message at `offset`.
    pub async fn read_wait(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limit: u32,
        wait_ms: u64,
    ) -> Result<ReadResponse, Error> {
        self.read_query(
            topic,
            partition,
            &[
                ("offset", offset),
                ("limit", u64::from(limit)),
                ("wait_ms", wait_ms),
            ],
        )
        .await
    }

    async fn read_query(
        &self,
        topic: &str,
        partition: u32,
        query: &[(&str, u64)],
    ) -> Result<ReadResponse, Error> {
        let path = format!("{}/partitions/{partition}/messages", topic_path(topic));
        Self::send(self.request(Method::GET, &path).query(query)).await
    }
}

pub(crate) fn topic_path(topic: &str) -> String {
    format!("/v1/topics/{}", encode_segment(topic))
}

/// Percent-encodes a path segment (names are validated by the server; this
/// only keeps odd input from changing the path).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn problem(status: StatusCode, body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let code = match status.as_u16() {
            400 => ErrorCode::InvalidRequest,
            404 => ErrorCode::NotFound,
            413 => ErrorCode::PayloadTooLarge,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        Problem::new(code, String::from_utf8_lossy(body).into_owned())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("orders.v1"), "orders.v1");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert!(Client::new("localhost:8080").is_err());
        assert_eq!(Client::new("http://h:1/").unwrap().base(), "http://h:1");
    }
}
