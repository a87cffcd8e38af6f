//! [`ClientBuilder`]: how a [`Client`] connects — server URL, bearer token
//! (fixed or from a [`TokenProvider`]), TLS trust and client certificate,
//! timeouts, the HTTP connection pool (or a caller's own `reqwest::Client`),
//! WebSocket keepalive, a [`MetricsHook`] and the message [`Encoding`].
//! Everything is checked in
//! [`build`](ClientBuilder::build), so a bad URL or an unreadable PEM file
//! fails there rather than on the first request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::client::Parts;
use crate::observe::Observer;
use crate::tls::TlsOptions;
use crate::token::{self, TokenProvider};
use crate::ws::Keepalive;
use crate::{Client, Encoding, Error, MetricsHook};

/// Default bound on one HTTP request, response included. Long polls get
/// their wait on top (see [`ClientBuilder::request_timeout`]).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bound on opening a connection (TCP connect for HTTP; TCP, TLS
/// and upgrade for a WebSocket).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default interval between the pings a WebSocket sends.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(15);

/// Default time a WebSocket may stay silent (not even a pong or a ping of
/// the server's) before it is taken for dead. Above the server's default
/// ping interval (20 s), so the server's pings alone keep a socket alive.
pub const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Default time an unused pooled HTTP connection is kept.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Configures a [`Client`]; from [`Client::builder`].
///
/// ```no_run
/// # fn demo() -> Result<(), weir_client::Error> {
/// use std::time::Duration;
/// let client = weir_client::Client::builder("https://weir.internal:8443")
///     .ca_file("/etc/weir/ca.pem")
///     .client_cert("/etc/weir/worker.pem", "/etc/weir/worker.key")
///     .token(std::env::var("WEIR_TOKEN").ok())
///     .request_timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    base: String,
    token: Option<Arc<dyn TokenProvider>>,
    tls: TlsOptions,
    connect_timeout: Duration,
    request_timeout: Duration,
    pool_max_idle_per_host: usize,
    pool_idle_timeout: Option<Duration>,
    tcp_keepalive: Option<Duration>,
    keepalive: Keepalive,
    http: Option<reqwest::Client>,
    metrics: Option<Arc<dyn MetricsHook>>,
    encoding: Encoding,
}

/// Redacts the token: a builder may well end up in a log line.
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("keepalive", &self.keepalive)
            .field("http", &self.http.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for the server at `base` (`http://` or `https://`).
    pub fn new(base: &str) -> ClientBuilder {
        ClientBuilder {
            base: base.to_owned(),
            token: None,
            tls: TlsOptions::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pool_max_idle_per_host: 64,
            pool_idle_timeout: Some(DEFAULT_POOL_IDLE_TIMEOUT),
            tcp_keepalive: Some(Duration::from_secs(30)),
            keepalive: Keepalive {
                ping_interval: DEFAULT_WS_PING_INTERVAL,
                idle_timeout: DEFAULT_WS_IDLE_TIMEOUT,
            },
            http: None,
            metrics: None,
            encoding: Encoding::Json,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request and socket
    /// upgrade (`None`: anonymous).
    pub fn token(mut self, token: Option<String>) -> ClientBuilder {
        self.token = token::fixed(token);
        self
    }

    /// Asks `provider` for the token of every request and socket upgrade,
    /// for tokens that rotate (see [`TokenProvider`]). Replaces
    /// [`token`](Self::token).
    pub fn token_provider(mut self, provider: impl TokenProvider) -> ClientBuilder {
        self.token = Some(Arc::new(provider));
        self
    }

    /// Trusts the CA certificates in this PEM file **instead of** the
    /// built-in web roots (as `curl --cacert` does), for HTTPS and `wss://`
    /// alike: a private CA is pinned, and a certificate from any other CA,
    /// public ones included, is refused.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> ClientBuilder {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Presents this certificate chain and private key (PEM files; the key
    /// as PKCS#8, PKCS#1 or SEC1) when the server asks for one (mutual TLS).
    pub fn client_cert(
        mut self,
        cert_pem: impl Into<PathBuf>,
        key_pem: impl Into<PathBuf>,
    ) -> ClientBuilder {
        self.tls.client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Bounds opening a connection (default 10 s). For WebSockets this
    /// covers TCP, TLS and the upgrade.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds one HTTP request, response included (default 30 s). Long polls
    /// (`pull` and `read_wait` with `wait_ms`) get at least their wait plus
    /// 10 s, so a long wait is never cut short by this bound. Open
    /// WebSockets are not bounded by it.
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Idle HTTP connections kept per host for reuse (default 64).
    pub fn pool_max_idle_per_host(mut self, connections: usize) -> ClientBuilder {
        self.pool_max_idle_per_host = connections;
        self
    }

    /// How long an unused pooled HTTP connection is kept (default 90 s;
    /// `None`: until the server closes it). Keep it below the idle timeout
    /// of any proxy or load balancer in between, which may otherwise cut
    /// a connection just as a request starts on it.
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> ClientBuilder {
        self.pool_idle_timeout = timeout;
        self
    }

    /// TCP keepalive probes on HTTP connections (default every 30 s;
    /// `None`: off), so that the pool notices peers that vanished.
    pub fn tcp_keepalive(mut self, interval: Option<Duration>) -> ClientBuilder {
        self.tcp_keepalive = interval;
        self
    }

    /// How often an open WebSocket sends a ping (default 15 s).
    pub fn ws_ping_interval(mut self, interval: Duration) -> ClientBuilder {
        self.keepalive.ping_interval = interval;
        self
    }

    /// How long an open WebSocket may receive nothing at all — no frame,
    /// no pong to its pings, no ping of the server's — before it is taken
    /// for dead (default 45 s). A half-open connection then ends with a
    /// transient [`Error::SocketClosed`] instead of stalling `next()`
    /// forever; a subscription socket reconnects. Keep it above the ping
    /// interval.
    pub fn ws_idle_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.keepalive.idle_timeout = timeout;
        self
    }

    /// Sends HTTP requests with this `reqwest::Client` instead of building
    /// one (e.g. to share a pool or add a proxy). Its own settings then
    /// apply to HTTP: [`ca_file`](Self::ca_file),
    /// [`client_cert`](Self::client_cert), the timeouts and the pool
    /// settings of this builder are used for WebSockets only — except
    /// that long polls still get their wait plus a margin as a per-request
    /// timeout.
    pub fn http_client(mut self, http: reqwest::Client) -> ClientBuilder {
        self.http = Some(http);
        self
    }

    /// Reports every produce, publish, pull, ack, nack and extend to `hook`
    /// (see [`MetricsHook`]).
    pub fn metrics(mut self, hook: impl MetricsHook) -> ClientBuilder {
        self.metrics = Some(Arc::new(hook));
        self
    }

    /// Sends produce requests (also the [`Producer`](crate::Producer)'s
    /// batches and [`WsPublisher`](crate::WsPublisher) frames) and asks for
    /// reads and pulls in `encoding` (default [`Encoding::Json`]; see
    /// [`Encoding`]). [`Client::with_encoding`] changes it on a built
    /// client.
    pub fn encoding(mut self, encoding: Encoding) -> ClientBuilder {
        self.encoding = encoding;
        self
    }

    /// The client: checks the URL and reads the PEM files now.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Url(base));
        }
        let tls = self.tls.client_config()?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .pool_max_idle_per_host(self.pool_max_idle_per_host)
                .pool_idle_timeout(self.pool_idle_timeout)
                .tcp_keepalive(self.tcp_keepalive)
                .tcp_nodelay(true)
                .connect_timeout(self.connect_timeout)
                .timeout(self.request_timeout)
                // The same config the sockets use: one trust decision.
                .use_preconfigured_tls((*tls).clone())
                .build()?,
        };
        Ok(Client::from_parts(Parts {
            http,
            base,
            token: self.token,
            tls,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            keepalive: self.keepalive,
            observer: Observer::new(self.metrics),
            encoding: self.encoding,
        }))
    }
}
