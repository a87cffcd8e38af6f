//! [`ClientBuilder`]: how a [`Client`] connects — server URL, bearer token,
//! TLS trust and client certificate, timeouts. Everything is checked in
//! [`build`](ClientBuilder::build), so a bad URL or an unreadable PEM file
//! fails there rather than on the first request.

use std::path::PathBuf;
use std::time::Duration;

use crate::tls::TlsOptions;
use crate::{Client, Error};

/// Default bound on one HTTP request, response included. Long polls get
/// their wait on top (see [`ClientBuilder::request_timeout`]).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bound on opening a connection (TCP connect for HTTP; TCP, TLS
/// and upgrade for a WebSocket).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    token: Option<String>,
    tls: TlsOptions,
    connect_timeout: Duration,
    request_timeout: Duration,
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
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request and socket
    /// upgrade (`None`: anonymous).
    pub fn token(mut self, token: Option<String>) -> ClientBuilder {
        self.token = token;
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

    /// The client: checks the URL and reads the PEM files now.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Url(base));
        }
        let tls = self.tls.client_config()?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            // The same config the sockets use: one trust decision.
            .use_preconfigured_tls((*tls).clone())
            .build()?;
        Ok(Client::from_parts(
            http,
            base,
            self.token,
            tls,
            self.connect_timeout,
            self.request_timeout,
        ))
    }
}
