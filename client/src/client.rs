//! The HTTP client: connection pool, request plumbing, problem decoding and
//! the topic endpoints (produce and read in the client's [`Encoding`]).
//! Subscription endpoints live in `subscriptions.rs`, on top of the same
//! plumbing; how a client is configured lives in `builder.rs`, the binary
//! encoding in `encoding/`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use weir_protocol::{
    ErrorCode, Problem, ProduceMessage, ProduceRequest, ProduceResult, ReadResponse, TopicInfo,
    TopicList, TopicSpec,
};

use crate::encoding::{encode_produce, read_response};
use crate::observe::{Observer, Operation, Target};
use crate::token::{self, TokenProvider};
use crate::ws::Keepalive;
use crate::{BinaryBatch, ClientBuilder, Encoding, Error};

/// What a long poll gets beyond its wait: the server answers at the end of
/// the wait, and this covers the trip and a busy server.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(10);

/// A Weir server connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Arc<dyn TokenProvider>>,
    /// Shared with the HTTP pool, kept for `wss://` sockets.
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    request_timeout: Duration,
    keepalive: Keepalive,
    observer: Observer,
    encoding: Encoding,
}

/// Everything a [`ClientBuilder`] settles, handed over in one piece.
pub(crate) struct Parts {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<Arc<dyn TokenProvider>>,
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub keepalive: Keepalive,
    pub observer: Observer,
    pub encoding: Encoding,
}

/// Leaves out the TLS config (its root store alone is ~150 certificates)
/// and the token (a secret).
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive", &self.keepalive)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`), with
    /// the defaults of [`Client::builder`]: no token, the built-in web roots
    /// for `https://`, 10 s to connect, 30 s per request.
    pub fn new(base: &str) -> Result<Client, Error> {
        ClientBuilder::new(base).build()
    }

    /// Configures a client: token, TLS trust and client certificate,
    /// timeouts, pool, keepalive, metrics (see [`ClientBuilder`]).
    pub fn builder(base: &str) -> ClientBuilder {
        ClientBuilder::new(base)
    }

    pub(crate) fn from_parts(parts: Parts) -> Client {
        Client {
            http: parts.http,
            base: parts.base,
            token: parts.token,
            tls: parts.tls,
            connect_timeout: parts.connect_timeout,
            request_timeout: parts.request_timeout,
            keepalive: parts.keepalive,
            observer: parts.observer,
            encoding: parts.encoding,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token::fixed(token);
        self
    }

    /// The same client with produce requests, reads and pulls in
    /// `encoding` (see [`Encoding`]); the connection pool is shared.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::Encoding;
    /// let binary = client.clone().with_encoding(Encoding::Binary);
    /// let page = binary.read("orders", 0, 0, 100).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_encoding(mut self, encoding: Encoding) -> Client {
        self.encoding = encoding;
        self
    }

    /// The encoding of produce requests, reads and pulls (default
    /// [`Encoding::Json`]).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The server URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The TLS config of `wss://` sockets (the HTTP pool's, too).
    pub(crate) fn tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
    }

    /// The bound on opening a connection.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Ping interval and idle timeout of open sockets.
    pub(crate) fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    /// Runs `call` under the client's metrics hook and tracing span.
    pub(crate) async fn observe<T, F>(
        &self,
        target: Target<'_>,
        sent: usize,
        counted: impl FnOnce(&T) -> usize,
        call: F,
    ) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, Error>>,
    {
        self.observer.observe(target, sent, counted, call).await
    }

    /// The bound on a request that waits up to `wait` on the server: the
    /// wait plus a margin, and never less than the usual request bound.
    pub(crate) fn long_poll_timeout(&self, wait: Duration) -> Duration {
        (wait + LONG_POLL_MARGIN).max(self.request_timeout)
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match self.token.as_ref().and_then(|provider| provider.token()) {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub(crate) async fn send<T: DeserializeOwned>(rb: RequestBuilder) -> Result<T, Error> {
        let ((), bytes) = Self::receive(rb, |_| ()).await?;
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        Ok(serde_json::from_slice(body)?)
    }

    /// Sends `rb` and returns what `read` takes from the headers of a
    /// successful response, and its body; a failure is its problem.
    pub(crate) async fn receive<H>(
        rb: RequestBuilder,
        read: impl FnOnce(&HeaderMap) -> H,
    ) -> Result<(H, Bytes), Error> {
        let response = rb.send().await?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let read = read(response.headers());
        let bytes = response.bytes().await?;
        if status.is_success() {
            return Ok((read, bytes));
        }
        Err(Error::from_problem(problem(status, &bytes), retry_after))
    }

    /// The server's Prometheus metrics (`GET /metrics`), as text. Sent with
    /// the token and TLS settings of every other call.
    pub async fn metrics(&self) -> Result<String, Error> {
        let response = self.request(Method::GET, "/metrics").send().await?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await?;
        if status.is_success() {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        Err(Error::from_problem(problem(status, &bytes), retry_after))
    }

    /// Creates a topic, or updates its settings.
    pub async fn create_topic(&self, topic: &str, spec: &TopicSpec) -> Result<TopicInfo, Error> {
        Self::send(self.request(Method::PUT, &topic_path(topic)).json(spec)).await
    }

    /// Describes a topic.
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo, Error> {
        Self::send(self.request(Method::GET, &topic_path(topic))).await
    }

    /// Lists every topic, ordered by name, following the server's pages.
    pub async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        let mut topics = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.topics_page(None, cursor.as_deref()).await?;
            topics.extend(page.topics);
            match crate::paging::next_cursor(cursor.as_deref(), page.next)? {
                Some(next) => cursor = Some(next),
                None => return Ok(topics),
            }
        }
    }

    /// One page of topics: at most `limit` (1..=1000, server default 1000)
    /// after `cursor` (the `next` of the previous page; `None` for the
    /// first). `next` is `None` on the last page.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let mut cursor = None;
    /// loop {
    ///     let page = client.topics_page(Some(100), cursor.as_deref()).await?;
    ///     for topic in &page.topics {
    ///         println!("{}", topic.name);
    ///     }
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn topics_page(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<TopicList, Error> {
        let query = crate::paging::query(limit, cursor);
        Self::send(self.request(Method::GET, "/v1/topics").query(&query)).await
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), Error> {
        let _: serde_json::Value =
            Self::send(self.request(Method::DELETE, &topic_path(topic))).await?;
        Ok(())
    }

    /// Appends messages, as one request in the client's [`Encoding`];
    /// returns once they are durable.
    pub async fn produce(
        &self,
        topic: &str,
        messages: Vec<ProduceMessage>,
    ) -> Result<Vec<ProduceResult>, Error> {
        let sent = messages.len();
        check_messages(&messages)?;
        let body = match self.encoding {
            Encoding::Json => serde_json::to_vec(&ProduceRequest { messages })?,
            Encoding::Binary => encode_produce(messages)?,
        };
        self.produce_body(topic, body.into(), sent, self.encoding)
            .await
    }

    /// Appends a pre-serialized JSON produce body (`{"messages":[...]}`),
    /// whatever the client's [`Encoding`].
    pub async fn produce_raw(
        &self,
        topic: &str,
        body: Vec<u8>,
    ) -> Result<Vec<ProduceResult>, Error> {
        self.produce_body(topic, body.into(), 0, Encoding::Json)
            .await
    }

    /// Appends a batch encoded beforehand in the binary encoding, whatever
    /// the client's [`Encoding`] (see [`BinaryBatch`]).
    pub async fn produce_batch(
        &self,
        topic: &str,
        batch: &BinaryBatch,
    ) -> Result<Vec<ProduceResult>, Error> {
        self.produce_body(topic, batch.body(), batch.len(), Encoding::Binary)
            .await
    }

    /// Appends a produce body in `encoding`, known to hold `sent` messages
    /// (for the metrics hook when the request fails).
    pub(crate) async fn produce_body(
        &self,
        topic: &str,
        body: Bytes,
        sent: usize,
        encoding: Encoding,
    ) -> Result<Vec<ProduceResult>, Error> {
        let path = format!("{}/messages", topic_path(topic));
        let mut request = self
            .request(Method::POST, &path)
            .header(CONTENT_TYPE, encoding.content_type());
        // A binary producer takes its results in the binary form too.
        if encoding == Encoding::Binary {
            request = request.header(ACCEPT, crate::encoding::ACCEPT_BINARY);
        }
        let call = crate::encoding::produce_response(request.body(body));
        self.observe(produce_target(topic), sent, Vec::len, call)
            .await
    }

    /// Reads a partition from `offset`. A client set to
    /// [`Encoding::Binary`] asks for a binary response and decodes it into
    /// the same [`ReadResponse`] (as every read and pull does).
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

    /// Long-polls a partition: waits up to `wait` (at most 60 s, counted
    /// in whole milliseconds) for a message at `offset`.
    pub async fn read_wait(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limit: u32,
        wait: Duration,
    ) -> Result<ReadResponse, Error> {
        let path = format!("{}/partitions/{partition}/messages", topic_path(topic));
        let query = [
            ("offset", offset),
            ("limit", u64::from(limit)),
            ("wait_ms", millis(wait)),
        ];
        let request = self.request(Method::GET, &path).query(&query);
        let request = self.accepting(request.timeout(self.long_poll_timeout(wait)));
        read_response(request, topic).await
    }

    async fn read_query(
        &self,
        topic: &str,
        partition: u32,
        query: &[(&str, u64)],
    ) -> Result<ReadResponse, Error> {
        let path = format!("{}/partitions/{partition}/messages", topic_path(topic));
        let request = self.accepting(self.request(Method::GET, &path).query(query));
        read_response(request, topic).await
    }
}

/// A produce to `topic`, as its event and span name it.
fn produce_target(topic: &str) -> Target<'_> {
    Target {
        operation: Operation::Produce,
        topic,
        subscription: None,
    }
}

/// A duration in whole milliseconds, as the wire counts them.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The `Retry-After` of a response, in seconds (the only form this server
/// sends; an HTTP date from a proxy is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

/// A `Retry-After` value in seconds.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
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

/// The problem document of a failed response; a body that is not one (a
/// proxy's error page) still gets a code from the status, by the protocol's
/// table.
pub(crate) fn problem(status: StatusCode, body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let code = ErrorCode::from_status(status.as_u16());
        Problem::new(code, String::from_utf8_lossy(body).into_owned())
    })
}

/// Checks messages against the server's rules (`weir_protocol::limits`),
/// so a client refuses exactly what the server would, with the same code
/// and field, without a round trip.
pub(crate) fn check_messages(messages: &[ProduceMessage]) -> Result<(), Error> {
    if messages.len() > weir_protocol::limits::MAX_BATCH_MESSAGES {
        return Err(Error::Api(
            Problem::new(
                ErrorCode::InvalidRequest,
                format!(
                    "at most {} messages per request",
                    weir_protocol::limits::MAX_BATCH_MESSAGES
                ),
            )
            .with_field("messages"),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    for (i, m) in messages.iter().enumerate() {
        weir_protocol::limits::check_message(m, i, now).map_err(|e| {
            Error::Api(Problem::new(ErrorCode::InvalidRequest, e.detail).with_field(e.field))
        })?;
    }
    Ok(())
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
        assert_eq!(Client::new("https://h:1").unwrap().base(), "https://h:1");
        let with_token = Client::builder("http://h:1")
            .token(Some("secret".into()))
            .build()
            .unwrap();
        assert!(!format!("{with_token:?}").contains("secret"));
    }

    #[test]
    fn bodies_without_a_problem_get_the_code_of_their_status() {
        let proxy = problem(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(proxy.code, ErrorCode::Unavailable);
        assert!(proxy.detail.contains("bad gateway"));
        assert_eq!(
            problem(StatusCode::UNAUTHORIZED, b"").code,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            problem(StatusCode::TOO_MANY_REQUESTS, b"slow down").code,
            ErrorCode::RateLimited
        );
        let json = serde_json::to_vec(&Problem::new(ErrorCode::TopicNotFound, "t")).unwrap();
        assert_eq!(
            problem(StatusCode::NOT_FOUND, &json).code,
            ErrorCode::TopicNotFound
        );
    }

    #[test]
    fn long_polls_get_their_wait_plus_a_margin() {
        let client = Client::builder("http://h:1")
            .request_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(client.long_poll_timeout(ms(0)), Duration::from_secs(30));
        assert_eq!(
            client.long_poll_timeout(ms(60_000)),
            Duration::from_secs(70)
        );
        let short = Client::builder("http://h:1")
            .request_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        assert_eq!(short.long_poll_timeout(ms(5_000)), Duration::from_secs(15));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_token_provider_is_asked_per_request() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let client = Client::builder("http://h:1")
            .token_provider(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                Some(format!("t{n}"))
            })
            .build()
            .unwrap();
        let first = client.request(Method::GET, "/x").build().unwrap();
        let second = client.request(Method::GET, "/x").build().unwrap();
        assert_eq!(first.headers()["authorization"], "Bearer t0");
        assert_eq!(second.headers()["authorization"], "Bearer t1");
        assert!(!format!("{client:?}").contains("t1"));
    }
}
