//! One push endpoint: vetting its addresses (the SSRF guard), the HTTP
//! client that reaches exactly those addresses, and one POST with its
//! outcome — the status class for the metrics and what to do with the
//! delivered messages (ack, or nack with a reason, a `Retry-After` delay
//! and whether to retry at all).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::{StatusCode, Url};

use super::ssrf::refusal;
use crate::broker::subscription::backoff::MAX_BACKOFF_MS;
use crate::broker::subscription::MAX_REASON_BYTES;

/// How long a vetted DNS answer is used before the name is resolved again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
/// Response bytes kept for a failure's reason.
const SNIPPET_BYTES: usize = 256;
/// Characters of the response shown in a reason.
const SNIPPET_CHARS: usize = 200;

/// The outcome of one push request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the messages are acked.
    Delivered,
    /// Anything else: the messages are nacked.
    Failed(Failure),
}

/// A failed push request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Metric class: 3xx, 4xx, 5xx, timeout, error or refused.
    pub class: &'static str,
    /// The nack reason (`push: ...`), at most `MAX_REASON_BYTES`.
    pub reason: String,
    /// `Retry-After` of the response, in milliseconds (≤ 30 days).
    pub retry_after_ms: Option<u64>,
    /// False for a permanent failure (410 Gone): dead-letter at once.
    pub retry: bool,
}

impl Failure {
    fn new(class: &'static str, reason: String) -> Failure {
        Failure {
            class,
            reason: truncate(reason, MAX_REASON_BYTES),
            retry_after_ms: None,
            retry: true,
        }
    }
}

impl Outcome {
    /// The metric class of this outcome.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Delivered => "2xx",
            Outcome::Failed(f) => f.class,
        }
    }
}

/// Every class a push request can end in (series created at 0).
pub const CLASSES: [&str; 7] = ["2xx", "3xx", "4xx", "5xx", "timeout", "error", "refused"];

/// A push endpoint and the client that reaches it.
pub struct Endpoint {
    url: Url,
    timeout: Duration,
    allowed: Arc<Vec<IpNet>>,
    tls: Arc<rustls::ClientConfig>,
    /// The vetted addresses and the client pinned to them.
    resolved: tokio::sync::Mutex<Option<Resolved>>,
}

enum Host<'a> {
    Ip(IpAddr),
    Domain(&'a str),
}

struct Resolved {
    addrs: Vec<SocketAddr>,
    client: reqwest::Client,
    at: Instant,
}

/// The one TLS configuration of push clients: the web PKI roots over the
/// `ring` provider (aws-lc-rs would need cmake and a C toolchain).
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Endpoint {
    pub fn new(
        url: &str,
        timeout: Duration,
        allowed: Arc<Vec<IpNet>>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Endpoint, String> {
        let url = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        }
        Ok(Endpoint {
            url,
            timeout,
            allowed,
            tls,
            resolved: tokio::sync::Mutex::new(None),
        })
    }

    /// The URL's host: an address literal or a name to resolve.
    fn host(&self) -> Host<'_> {
        let host = self.url.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Domain(host),
        }
    }

    /// The client for the next request: the host's addresses resolved (at
    /// most `RESOLVE_TTL` ago) and vetted, the client pinned to them.
    async fn client(&self) -> Result<reqwest::Client, Failure> {
        let mut resolved = self.resolved.lock().await;
        if let Some(r) = resolved.as_ref() {
            if r.at.elapsed() < RESOLVE_TTL {
                return Ok(r.client.clone());
            }
        }
        let addrs = self.vetted_addrs().await?;
        if let Some(r) = resolved.as_mut() {
            if r.addrs == addrs {
                r.at = Instant::now();
                return Ok(r.client.clone());
            }
        }
        let client = self.build_client(&addrs).map_err(|e| {
            Failure::new("error", format!("push: cannot build the HTTP client: {e}"))
        })?;
        *resolved = Some(Resolved {
            addrs,
            client: client.clone(),
            at: Instant::now(),
        });
        Ok(client)
    }

    /// The endpoint's addresses, every one allowed; sorted.
    async fn vetted_addrs(&self) -> Result<Vec<SocketAddr>, Failure> {
        let port = self.url.port_or_known_default().unwrap_or(80);
        let mut addrs: Vec<SocketAddr> = match self.host() {
            Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
            Host::Domain(host) => {
                let lookup = tokio::net::lookup_host((host, port));
                match tokio::time::timeout(self.timeout, lookup).await {
                    Ok(Ok(found)) => found.collect(),
                    Ok(Err(e)) => {
                        return Err(Failure::new(
                            "error",
                            format!("push: connection failed: cannot resolve `{host}`: {e}"),
                        ))
                    }
                    Err(_) => {
                        return Err(Failure::new(
                            "timeout",
                            format!("push: timeout resolving `{host}`"),
                        ))
                    }
                }
            }
        };
        if addrs.is_empty() {
            return Err(Failure::new(
                "error",
                "push: connection failed: the host has no addresses".to_owned(),
            ));
        }
        for addr in &addrs {
            if let Some(why) = refusal(addr.ip(), &self.allowed) {
                return Err(Failure::new(
                    "refused",
                    format!("push: target refused: {why}"),
                ));
            }
        }
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }

    fn build_client(&self, addrs: &[SocketAddr]) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the guard.
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Host::Domain(host) = self.host() {
            // Exactly the vetted addresses: a second DNS answer (rebinding)
            // is never asked for.
            builder = builder.resolve_to_addrs(host, addrs);
        }
        builder.build()
    }

    /// POSTs `body` with `headers` (content type and signature included by
    /// the caller) and classifies the answer. Bounded by the timeout.
    pub async fn post(&self, headers: HeaderMap, body: Vec<u8>) -> (Outcome, Option<Duration>) {
        let client = match self.client().await {
            Ok(c) => c,
            Err(f) => return (Outcome::Failed(f), None),
        };
        let started = Instant::now();
        let exchange = async {
            let response = client
                .post(self.url.clone())
                .headers(headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let snippet = if status.is_success() {
                String::new()
            } else {
                read_snippet(response).await
            };
            Ok::<_, reqwest::Error>((status, retry_after, snippet))
        };
        let result = tokio::time::timeout(self.timeout, exchange).await;
        let elapsed = started.elapsed();
        let timeout_ms = self.timeout.as_millis();
        let outcome = match result {
            Err(_) => Outcome::Failed(Failure::new(
                "timeout",
                format!("push: timeout after {timeout_ms} ms"),
            )),
            Ok(Err(e)) if e.is_timeout() => Outcome::Failed(Failure::new(
                "timeout",
                format!("push: timeout after {timeout_ms} ms"),
            )),
            Ok(Err(e)) => Outcome::Failed(Failure::new(
                "error",
                format!("push: connection failed: {}", error_chain(e)),
            )),
            Ok(Ok((status, retry_after, snippet))) => classify(status, retry_after, &snippet),
        };
        (outcome, Some(elapsed))
    }
}

/// The outcome of an HTTP answer. Only 410 Gone is permanent (the receiver
/// rejects this message for good: it is dead-lettered at once); every other
/// non-2xx answer is retried under the subscription's retry policy.
pub fn classify(status: StatusCode, retry_after_ms: Option<u64>, snippet: &str) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let class = match status.as_u16() {
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    };
    let mut reason = format!("push: HTTP {status}");
    if status.is_redirection() {
        reason.push_str(": redirects are not followed");
    } else if !snippet.is_empty() {
        reason.push_str(": ");
        reason.push_str(snippet);
    }
    let mut failure = Failure::new(class, reason);
    failure.retry = status != StatusCode::GONE;
    failure.retry_after_ms = retry_after_ms;
    Outcome::Failed(failure)
}

/// `Retry-After` as delay-seconds or an HTTP date, in milliseconds, capped
/// at 30 days.
pub fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    let ms = if let Ok(secs) = value.parse::<u64>() {
        secs.saturating_mul(1000)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
    };
    Some(ms.min(MAX_BACKOFF_MS))
}

/// The first bytes of a response, printable, for a failure's reason.
async fn read_snippet(mut response: reqwest::Response) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(SNIPPET_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let mut out = String::new();
    for c in text.chars().take(SNIPPET_CHARS) {
        let c = if c.is_control() { ' ' } else { c };
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// An error and its causes (without the URL, which may carry a token).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The request headers: the configured extras, then content type, user
/// agent and the Standard Webhooks headers (which the configuration cannot
/// override: `webhook-*` names are reserved there).
pub fn headers(
    extra: &std::collections::BTreeMap<String, String>,
    id: &str,
    timestamp: u64,
    signature: Option<String>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.insert(n, v);
        }
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    map.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("weir/", env!("CARGO_PKG_VERSION"))),
    );
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.insert(HeaderName::from_static(name), v);
        }
    };
    put("webhook-id", id);
    put("webhook-timestamp", &timestamp.to_string());
    if let Some(sig) = signature {
        put("webhook-signature", &sig);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(o: Outcome) -> Failure {
        match o {
            Outcome::Failed(f) => f,
            Outcome::Delivered => panic!("delivered"),
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(
            classify(StatusCode::NO_CONTENT, None, ""),
            Outcome::Delivered
        );
        let f = failure(classify(StatusCode::INTERNAL_SERVER_ERROR, None, "boom"));
        assert_eq!(
            (f.class, f.reason.as_str(), f.retry),
            ("5xx", "push: HTTP 500 Internal Server Error: boom", true)
        );
        let f = failure(classify(StatusCode::GONE, None, ""));
        assert_eq!((f.class, f.retry), ("4xx", false));
        assert_eq!(f.reason, "push: HTTP 410 Gone");
        let f = failure(classify(StatusCode::TOO_MANY_REQUESTS, Some(1000), ""));
        assert_eq!(
            (f.class, f.retry, f.retry_after_ms),
            ("4xx", true, Some(1000))
        );
        let f = failure(classify(StatusCode::FOUND, None, "x"));
        assert_eq!(f.class, "3xx");
        assert!(f.reason.contains("not followed"), "{}", f.reason);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("1"), Some(1000));
        assert_eq!(parse_retry_after(" 120 "), Some(120_000));
        assert_eq!(parse_retry_after("99999999999"), Some(MAX_BACKOFF_MS));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let ms = parse_retry_after(&later).unwrap();
        assert!((55_000..=60_000).contains(&ms), "{ms}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn reasons_stay_within_the_limit() {
        let long = "é".repeat(2000);
        let t = truncate(long, MAX_REASON_BYTES);
        assert!(t.len() <= MAX_REASON_BYTES);
        assert!(t.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn refused_targets_are_not_contacted() {
        let tls = tls_config().unwrap();
        let ep = Endpoint::new(
            "http://127.0.0.1:9/hook",
            Duration::from_secs(1),
            Arc::new(Vec::new()),
            tls.clone(),
        )
        .unwrap();
        let (outcome, elapsed) = ep.post(HeaderMap::new(), b"{}".to_vec()).await;
        let f = failure(outcome);
        assert_eq!(f.class, "refused");
        assert!(
            f.reason
                .starts_with("push: target refused: 127.0.0.1 is a loopback"),
            "{}",
            f.reason
        );
        assert_eq!(elapsed, None);
        let ep = Endpoint::new(
            "http://169.254.169.254/latest/meta-data",
            Duration::from_secs(1),
            Arc::new(Vec::new()),
            tls,
        )
        .unwrap();
        let f = failure(ep.post(HeaderMap::new(), Vec::new()).await.0);
        assert!(f.reason.contains("metadata"), "{}", f.reason);
    }

    #[test]
    fn standard_webhook_headers_win() {
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("authorization".to_owned(), "Bearer x".to_owned());
        extra.insert("content-type".to_owned(), "text/plain".to_owned());
        let h = headers(&extra, "1-0-5", 1700000000, Some("v1,abc".into()));
        assert_eq!(h["authorization"], "Bearer x");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["webhook-id"], "1-0-5");
        assert_eq!(h["webhook-timestamp"], "1700000000");
        assert_eq!(h["webhook-signature"], "v1,abc");
    }
}
