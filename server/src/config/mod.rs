//! Server configuration: defaults from the commented `weir.toml` embedded in
//! the binary, then an optional file, then `WEIR_*` environment variables,
//! then command-line flags. Security and resource limits are validated in
//! `security.rs`.

mod cluster;
mod security;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::storage::{FsyncMode, StoreOptions};
pub use cluster::ClusterOptions;
pub use security::{AuthOptions, ClientAuth, Limits, TlsOptions};

/// The commented default configuration file.
pub const DEFAULT_CONFIG: &str = include_str!("../../weir.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file `{path}`: {detail}")]
    Parse { path: String, detail: String },
    #[error("invalid option `{option}`: {detail}")]
    Invalid {
        option: &'static str,
        detail: String,
    },
}

/// Values that may come from a file; all optional so files can be partial.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    fsync: Option<String>,
    fsync_interval_ms: Option<u64>,
    log_format: Option<String>,
    log_level: Option<String>,
    max_request_bytes: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    retention_interval_ms: Option<u64>,
    disk_free_limit_bytes: Option<u64>,
    backup_dir: Option<PathBuf>,
    metrics_per_topic: Option<bool>,
    metrics_max_label_names: Option<usize>,
    write_buffer_bytes: Option<usize>,
    block_cache_bytes: Option<usize>,
    ws_ping_interval_ms: Option<u64>,
    ws_idle_timeout_ms: Option<u64>,
    ws_max_message_bytes: Option<usize>,
    ws_outbound_buffer: Option<usize>,
    ws_outbound_buffer_bytes: Option<usize>,
    ws_slow_consumer_timeout_ms: Option<u64>,
    ws_publish_max_in_flight: Option<usize>,
    auth_tokens_file: Option<PathBuf>,
    auth_jwks_file: Option<PathBuf>,
    auth_jwt_audience: Option<String>,
    auth_jwt_issuer: Option<String>,
    auth_jwt_grants_claim: Option<String>,
    auth_reload_interval_ms: Option<u64>,
    auth_protect_metrics: Option<bool>,
    auth_protect_docs: Option<bool>,
    allow_anonymous: Option<bool>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_client_ca_file: Option<PathBuf>,
    tls_client_auth: Option<String>,
    max_connections: Option<usize>,
    max_concurrent_requests: Option<usize>,
    max_long_polls: Option<usize>,
    max_ws_per_principal: Option<usize>,
    max_topics: Option<usize>,
    max_subscriptions_per_topic: Option<usize>,
    max_unsettled_per_subscription: Option<usize>,
    max_headers_per_message: Option<usize>,
    max_inflight_request_bytes: Option<usize>,
    rate_limit_messages_per_s: Option<u64>,
    rate_limit_bytes_per_s: Option<u64>,
    rate_limit_requests_per_s: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    request_body_timeout_ms: Option<u64>,
    push_allow_networks: Option<String>,
    node_id: Option<u64>,
    peers: Option<String>,
    cluster_listen: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    cluster_heartbeat_ms: Option<u64>,
    cluster_election_timeout_ms: Option<u64>,
}

/// Command line; every option also reads `WEIR_<NAME>`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "weir-server",
    version,
    about = "Weir: durable topics, queues and streams over HTTP and WebSocket",
    after_help = "Restore a backup (offline): weir-server restore --from DIR --data-dir DIR"
)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// WAL sync policy: always, interval or never [default: always].
    #[arg(long, env = "WEIR_FSYNC")]
    pub fsync: Option<String>,
    /// Sync period for `--fsync interval`, in milliseconds [default: 100].
    #[arg(long, env = "WEIR_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "WEIR_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log level when RUST_LOG is unset [default: info].
    #[arg(long, env = "WEIR_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Largest HTTP request body in bytes [default: 33554432].
    #[arg(long, env = "WEIR_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Graceful shutdown timeout in milliseconds [default: 30000].
    #[arg(long, env = "WEIR_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Retention pass period in milliseconds [default: 5000].
    #[arg(long, env = "WEIR_RETENTION_INTERVAL_MS")]
    pub retention_interval_ms: Option<u64>,
    /// Free space the data directory's filesystem keeps: below it, produce
    /// and creates get 507 while acks, nacks and deletes go on, in bytes
    /// [default: 52428800].
    #[arg(long, env = "WEIR_DISK_FREE_LIMIT_BYTES")]
    pub disk_free_limit_bytes: Option<u64>,
    /// Directory online backups (`POST /v1/backups`) are written under
    /// [default: none: backups disabled].
    #[arg(long, env = "WEIR_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Label metrics per topic and subscription (false: aggregate under
    /// `_all`, for very many topics) [default: true].
    #[arg(long, env = "WEIR_METRICS_PER_TOPIC")]
    pub metrics_per_topic: Option<bool>,
    /// Topic and subscription names that get their own metric label value;
    /// later ones are aggregated under `_other` [default: 2000].
    #[arg(long, env = "WEIR_METRICS_MAX_LABEL_NAMES")]
    pub metrics_max_label_names: Option<usize>,
    /// RocksDB memtable budget in bytes [default: 268435456].
    #[arg(long, env = "WEIR_WRITE_BUFFER_BYTES")]
    pub write_buffer_bytes: Option<usize>,
    /// RocksDB block cache in bytes [default: 134217728].
    #[arg(long, env = "WEIR_BLOCK_CACHE_BYTES")]
    pub block_cache_bytes: Option<usize>,
    /// WebSocket ping period in milliseconds [default: 20000].
    #[arg(long, env = "WEIR_WS_PING_INTERVAL_MS")]
    pub ws_ping_interval_ms: Option<u64>,
    /// Close a WebSocket that sent nothing (not even a pong) for this many
    /// milliseconds [default: 60000].
    #[arg(long, env = "WEIR_WS_IDLE_TIMEOUT_MS")]
    pub ws_idle_timeout_ms: Option<u64>,
    /// Largest WebSocket message (and frame) a client may send, in bytes
    /// [default: 8388608].
    #[arg(long, env = "WEIR_WS_MAX_MESSAGE_BYTES")]
    pub ws_max_message_bytes: Option<usize>,
    /// Frames queued per WebSocket before the server stops producing more
    /// [default: 256].
    #[arg(long, env = "WEIR_WS_OUTBOUND_BUFFER")]
    pub ws_outbound_buffer: Option<usize>,
    /// Bytes of frames queued per WebSocket before the server stops
    /// producing more [default: 4194304].
    #[arg(long, env = "WEIR_WS_OUTBOUND_BUFFER_BYTES")]
    pub ws_outbound_buffer_bytes: Option<usize>,
    /// Close a WebSocket (1008) that accepts no frame for this many
    /// milliseconds [default: 10000].
    #[arg(long, env = "WEIR_WS_SLOW_CONSUMER_TIMEOUT_MS")]
    pub ws_slow_consumer_timeout_ms: Option<u64>,
    /// Publish requests processed concurrently per socket [default: 16].
    #[arg(long, env = "WEIR_WS_PUBLISH_MAX_IN_FLIGHT")]
    pub ws_publish_max_in_flight: Option<usize>,
    /// Bearer tokens file (TOML, or YAML when named *.yaml/*.yml); re-read when it changes.
    #[arg(long, env = "WEIR_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// JWKS file of public keys (Ed25519, ES256, RS256) that verify JWT bearer tokens; re-read when it changes.
    #[arg(long, env = "WEIR_AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,
    /// Required `aud` of JWTs.
    #[arg(long, env = "WEIR_AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,
    /// Required `iss` of JWTs.
    #[arg(long, env = "WEIR_AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// JWT claim holding the grants [default: weir].
    #[arg(long, env = "WEIR_AUTH_JWT_GRANTS_CLAIM")]
    pub auth_jwt_grants_claim: Option<String>,
    /// How often the tokens, JWKS and TLS files are checked for changes, in milliseconds [default: 2000].
    #[arg(long, env = "WEIR_AUTH_RELOAD_INTERVAL_MS")]
    pub auth_reload_interval_ms: Option<u64>,
    /// Require a token with the `metrics` (or `admin`) grant for /metrics [default: false].
    #[arg(long, env = "WEIR_AUTH_PROTECT_METRICS", num_args = 0..=1, default_missing_value = "true")]
    pub auth_protect_metrics: Option<bool>,
    /// Require a valid token for /docs and /openapi.json [default: false].
    #[arg(long, env = "WEIR_AUTH_PROTECT_DOCS", num_args = 0..=1, default_missing_value = "true")]
    pub auth_protect_docs: Option<bool>,
    /// Allow starting without authentication on a non-loopback address [default: false].
    #[arg(long, env = "WEIR_ALLOW_ANONYMOUS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_anonymous: Option<bool>,
    /// TLS certificate chain (PEM): serve HTTPS/WSS; re-read when it changes.
    #[arg(long, env = "WEIR_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM) for `tls_cert_file`.
    #[arg(long, env = "WEIR_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) that verifies client certificates (mTLS); a certificate's subject CN is the principal.
    #[arg(long, env = "WEIR_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// With a client CA: `optional` (tokens still work) or `required` [default: optional].
    #[arg(long, env = "WEIR_TLS_CLIENT_AUTH")]
    pub tls_client_auth: Option<String>,
    /// Open client connections; more are answered 503 and closed [default: 10000].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Requests handled at once; more get 503 + Retry-After [default: 1024].
    #[arg(long, env = "WEIR_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Long polls (pull/read with wait_ms) waiting at once [default: 1024].
    #[arg(long, env = "WEIR_MAX_LONG_POLLS")]
    pub max_long_polls: Option<usize>,
    /// Open WebSockets per principal [default: 1000].
    #[arg(long, env = "WEIR_MAX_WS_PER_PRINCIPAL")]
    pub max_ws_per_principal: Option<usize>,
    /// Topics, dead-letter topics included [default: 10000].
    #[arg(long, env = "WEIR_MAX_TOPICS")]
    pub max_topics: Option<usize>,
    /// Subscriptions per topic [default: 1000].
    #[arg(long, env = "WEIR_MAX_SUBSCRIPTIONS_PER_TOPIC")]
    pub max_subscriptions_per_topic: Option<usize>,
    /// Messages one subscription tracks in memory at once (leased, ready,
    /// retrying soon, held behind a key); beyond it new messages wait in
    /// the log until some settle, and long waits go to disk [default: 100000].
    #[arg(long, env = "WEIR_MAX_UNSETTLED_PER_SUBSCRIPTION")]
    pub max_unsettled_per_subscription: Option<usize>,
    /// Headers per produced message [default: 64].
    #[arg(long, env = "WEIR_MAX_HEADERS_PER_MESSAGE")]
    pub max_headers_per_message: Option<usize>,
    /// Request body bytes being received at once, all clients together [default: 268435456].
    #[arg(long, env = "WEIR_MAX_INFLIGHT_REQUEST_BYTES")]
    pub max_inflight_request_bytes: Option<usize>,
    /// Produced messages per second per principal; 0 = unlimited [default: 0].
    #[arg(long, env = "WEIR_RATE_LIMIT_MESSAGES_PER_S")]
    pub rate_limit_messages_per_s: Option<u64>,
    /// Produced request bytes per second per principal; 0 = unlimited [default: 0].
    #[arg(long, env = "WEIR_RATE_LIMIT_BYTES_PER_S")]
    pub rate_limit_bytes_per_s: Option<u64>,
    /// Requests per second per principal; 0 = unlimited [default: 0].
    #[arg(long, env = "WEIR_RATE_LIMIT_REQUESTS_PER_S")]
    pub rate_limit_requests_per_s: Option<u64>,
    /// Time a client has to send a request's headers (and the TLS
    /// handshake) from the moment the server waits for them; idle
    /// keep-alive connections close after it too. In milliseconds [default: 10000].
    #[arg(long, env = "WEIR_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Time a client has to send a whole request body, in milliseconds [default: 30000].
    #[arg(long, env = "WEIR_REQUEST_BODY_TIMEOUT_MS")]
    pub request_body_timeout_ms: Option<u64>,
    /// Networks push subscriptions may reach although the SSRF guard
    /// refuses them (loopback, private, link-local, metadata), as
    /// comma-separated CIDRs, e.g. `127.0.0.0/8,10.0.0.0/8` [default: none].
    #[arg(long, env = "WEIR_PUSH_ALLOW_NETWORKS")]
    pub push_allow_networks: Option<String>,
    /// This node's id in a cluster (1, 2, ...; never reused for another
    /// node) [default: none: the server runs alone].
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<u64>,
    /// Every cluster member's node-to-node address, this node's included:
    /// `1=host:port,2=host:port,3=host:port` [default: none].
    #[arg(long, env = "WEIR_PEERS")]
    pub peers: Option<String>,
    /// Address of the node-to-node listener (never for clients) [default: none].
    #[arg(long, env = "WEIR_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// File holding the secret every node of the cluster shares (at least
    /// 16 bytes) [default: none].
    #[arg(long, env = "WEIR_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Raft heartbeat period between nodes, in milliseconds [default: 300].
    #[arg(long, env = "WEIR_CLUSTER_HEARTBEAT_MS")]
    pub cluster_heartbeat_ms: Option<u64>,
    /// Time without a leader before an election, in milliseconds (a
    /// random time between this and twice this) [default: 1500].
    #[arg(long, env = "WEIR_CLUSTER_ELECTION_TIMEOUT_MS")]
    pub cluster_election_timeout_ms: Option<u64>,
    /// Print the commented default configuration file and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub fsync: FsyncMode,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_request_bytes: usize,
    pub shutdown_timeout: Duration,
    pub retention_interval: Duration,
    /// Where online backups go; `None` disables them.
    pub backup_dir: Option<PathBuf>,
    /// Per-topic/per-subscription metric labels (else aggregated).
    pub metrics_per_topic: bool,
    /// Names with their own label value; the rest share `_other`.
    pub metrics_max_label_names: usize,
    pub store: StoreOptions,
    pub websocket: WebSocketOptions,
    /// Who may do what (tokens, JWTs, client certificates).
    pub auth: AuthOptions,
    /// HTTPS/WSS on the listener, when configured.
    pub tls: Option<TlsOptions>,
    /// Connection, request, rate and resource limits and timeouts.
    pub limits: Limits,
    /// Networks push deliveries may reach despite the SSRF guard.
    pub push_allow_networks: Vec<ipnet::IpNet>,
    /// Cluster membership; `None`: the server runs alone.
    pub cluster: Option<ClusterOptions>,
}

/// Limits and timers of every WebSocket (`ws_*` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketOptions {
    /// Period of the server's pings.
    pub ping_interval: Duration,
    /// A socket that sent nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Largest message and frame a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Frames queued per socket for the client.
    pub outbound_buffer: usize,
    /// Bytes of frames queued per socket for the client.
    pub outbound_buffer_bytes: usize,
    /// A socket that accepts no frame for this long is a slow consumer.
    pub slow_consumer_timeout: Duration,
    /// Publish requests processed concurrently per socket.
    pub publish_max_in_flight: usize,
}

/// Upper bound of `max_request_bytes`: one request body is held in memory
/// whole, so the setting itself is bounded.
const MAX_REQUEST_BYTES_BOUND: usize = 256 << 20;

/// Bounds of the `ws_*` options.
const WS_MIN_MESSAGE_BYTES: usize = 1024;
const WS_MAX_MESSAGE_BYTES: usize = 64 << 20;
const WS_MAX_OUTBOUND_BUFFER: usize = 65_536;
const WS_MAX_OUTBOUND_BUFFER_BYTES: usize = 1 << 30;
const WS_MAX_PUBLISH_IN_FLIGHT: usize = 1024;

impl Config {
    /// Defaults only (tests use this and override fields).
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::resolve(&Args::default())
    }

    /// Layers defaults, the config file, and `args` (flags + env).
    pub fn resolve(args: &Args) -> Result<Config, ConfigError> {
        let mut merged = parse_file(DEFAULT_CONFIG, "<built-in defaults>")?;
        if let Some(path) = &args.config {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            overlay(&mut merged, parse_file(&text, &shown)?);
        }
        overlay(
            &mut merged,
            FileConfig {
                listen: args.listen.clone(),
                data_dir: args.data_dir.clone(),
                fsync: args.fsync.clone(),
                fsync_interval_ms: args.fsync_interval_ms,
                log_format: args.log_format.clone(),
                log_level: args.log_level.clone(),
                max_request_bytes: args.max_request_bytes,
                shutdown_timeout_ms: args.shutdown_timeout_ms,
                retention_interval_ms: args.retention_interval_ms,
                disk_free_limit_bytes: args.disk_free_limit_bytes,
                backup_dir: args.backup_dir.clone(),
                metrics_per_topic: args.metrics_per_topic,
                metrics_max_label_names: args.metrics_max_label_names,
                write_buffer_bytes: args.write_buffer_bytes,
                block_cache_bytes: args.block_cache_bytes,
                ws_ping_interval_ms: args.ws_ping_interval_ms,
                ws_idle_timeout_ms: args.ws_idle_timeout_ms,
                ws_max_message_bytes: args.ws_max_message_bytes,
                ws_outbound_buffer: args.ws_outbound_buffer,
                ws_outbound_buffer_bytes: args.ws_outbound_buffer_bytes,
                ws_slow_consumer_timeout_ms: args.ws_slow_consumer_timeout_ms,
                ws_publish_max_in_flight: args.ws_publish_max_in_flight,
                auth_tokens_file: args.auth_tokens_file.clone(),
                auth_jwks_file: args.auth_jwks_file.clone(),
                auth_jwt_audience: args.auth_jwt_audience.clone(),
                auth_jwt_issuer: args.auth_jwt_issuer.clone(),
                auth_jwt_grants_claim: args.auth_jwt_grants_claim.clone(),
                auth_reload_interval_ms: args.auth_reload_interval_ms,
                auth_protect_metrics: args.auth_protect_metrics,
                auth_protect_docs: args.auth_protect_docs,
                allow_anonymous: args.allow_anonymous,
                tls_cert_file: args.tls_cert_file.clone(),
                tls_key_file: args.tls_key_file.clone(),
                tls_client_ca_file: args.tls_client_ca_file.clone(),
                tls_client_auth: args.tls_client_auth.clone(),
                max_connections: args.max_connections,
                max_concurrent_requests: args.max_concurrent_requests,
                max_long_polls: args.max_long_polls,
                max_ws_per_principal: args.max_ws_per_principal,
                max_topics: args.max_topics,
                max_subscriptions_per_topic: args.max_subscriptions_per_topic,
                max_unsettled_per_subscription: args.max_unsettled_per_subscription,
                max_headers_per_message: args.max_headers_per_message,
                max_inflight_request_bytes: args.max_inflight_request_bytes,
                rate_limit_messages_per_s: args.rate_limit_messages_per_s,
                rate_limit_bytes_per_s: args.rate_limit_bytes_per_s,
                rate_limit_requests_per_s: args.rate_limit_requests_per_s,
                header_read_timeout_ms: args.header_read_timeout_ms,
                request_body_timeout_ms: args.request_body_timeout_ms,
                push_allow_networks: args.push_allow_networks.clone(),
                node_id: args.node_id,
                peers: args.peers.clone(),
                cluster_listen: args.cluster_listen.clone(),
                cluster_secret_file: args.cluster_secret_file.clone(),
                cluster_heartbeat_ms: args.cluster_heartbeat_ms,
                cluster_election_timeout_ms: args.cluster_election_timeout_ms,
            },
        );
        finish(merged)
    }
}

fn parse_file(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn overlay(base: &mut FileConfig, top: FileConfig) {
    macro_rules! take {
        ($($f:ident),*) => { $( if top.$f.is_some() { base.$f = top.$f; } )* };
    }
    take!(
        listen,
        data_dir,
        fsync,
        fsync_interval_ms,
        log_format,
        log_level,
        max_request_bytes,
        shutdown_timeout_ms,
        retention_interval_ms,
        disk_free_limit_bytes,
        backup_dir,
        metrics_per_topic,
        metrics_max_label_names,
        write_buffer_bytes,
        block_cache_bytes,
        ws_ping_interval_ms,
        ws_idle_timeout_ms,
        ws_max_message_bytes,
        ws_outbound_buffer,
        ws_outbound_buffer_bytes,
        ws_slow_consumer_timeout_ms,
        ws_publish_max_in_flight,
        auth_tokens_file,
        auth_jwks_file,
        auth_jwt_audience,
        auth_jwt_issuer,
        auth_jwt_grants_claim,
        auth_reload_interval_ms,
        auth_protect_metrics,
        auth_protect_docs,
        allow_anonymous,
        tls_cert_file,
        tls_key_file,
        tls_client_ca_file,
        tls_client_auth,
        max_connections,
        max_concurrent_requests,
        max_long_polls,
        max_ws_per_principal,
        max_topics,
        max_subscriptions_per_topic,
        max_unsettled_per_subscription,
        max_headers_per_message,
        max_inflight_request_bytes,
        rate_limit_messages_per_s,
        rate_limit_bytes_per_s,
        rate_limit_requests_per_s,
        header_read_timeout_ms,
        request_body_timeout_ms,
        push_allow_networks,
        node_id,
        peers,
        cluster_listen,
        cluster_secret_file,
        cluster_heartbeat_ms,
        cluster_election_timeout_ms
    );
}

pub(super) fn required<T>(value: Option<T>, option: &'static str) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::Invalid {
        option,
        detail: "missing".into(),
    })
}

fn finish(f: FileConfig) -> Result<Config, ConfigError> {
    let websocket = websocket_options(&f)?;
    let listen_text = required(f.listen.clone(), "listen")?;
    let listen = listen_text.parse().map_err(|e| ConfigError::Invalid {
        option: "listen",
        detail: format!("`{listen_text}`: {e} (expected host:port, e.g. 127.0.0.1:8080)"),
    })?;
    let max_request_bytes = required(f.max_request_bytes, "max_request_bytes")?;
    if !(1024..=MAX_REQUEST_BYTES_BOUND).contains(&max_request_bytes) {
        return Err(ConfigError::Invalid {
            option: "max_request_bytes",
            detail: format!(
                "{max_request_bytes} is not between 1024 and {MAX_REQUEST_BYTES_BOUND}"
            ),
        });
    }
    let (auth, tls, limits) = security::resolve(&f, listen, max_request_bytes)?;
    let push_allow_networks = security::push_allow_networks(&f)?;
    let cluster = cluster::resolve(&f)?;
    let interval = required(f.fsync_interval_ms, "fsync_interval_ms")?;
    let fsync = match required(f.fsync, "fsync")?.as_str() {
        "always" => FsyncMode::Always,
        "never" => FsyncMode::Never,
        "interval" if interval > 0 => FsyncMode::Interval(Duration::from_millis(interval)),
        "interval" => {
            return Err(ConfigError::Invalid {
                option: "fsync_interval_ms",
                detail: "must be positive".into(),
            })
        }
        other => {
            return Err(ConfigError::Invalid {
                option: "fsync",
                detail: format!("`{other}`: expected always, interval or never"),
            })
        }
    };
    let log_format = match required(f.log_format, "log_format")?.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::Invalid {
                option: "log_format",
                detail: format!("`{other}`: expected text or json"),
            })
        }
    };
    let retention = required(f.retention_interval_ms, "retention_interval_ms")?;
    if retention == 0 {
        return Err(ConfigError::Invalid {
            option: "retention_interval_ms",
            detail: "must be positive".into(),
        });
    }
    Ok(Config {
        listen,
        data_dir: required(f.data_dir, "data_dir")?,
        fsync,
        log_format,
        log_level: required(f.log_level, "log_level")?,
        max_request_bytes,
        shutdown_timeout: Duration::from_millis(required(
            f.shutdown_timeout_ms,
            "shutdown_timeout_ms",
        )?),
        retention_interval: Duration::from_millis(retention),
        backup_dir: f.backup_dir,
        metrics_per_topic: required(f.metrics_per_topic, "metrics_per_topic")?,
        metrics_max_label_names: match required(
            f.metrics_max_label_names,
            "metrics_max_label_names",
        )? {
            0 => {
                return Err(ConfigError::Invalid {
                    option: "metrics_max_label_names",
                    detail: "must be positive".into(),
                })
            }
            n => n,
        },
        store: StoreOptions {
            fsync,
            write_buffer_bytes: required(f.write_buffer_bytes, "write_buffer_bytes")?,
            block_cache_bytes: required(f.block_cache_bytes, "block_cache_bytes")?,
            disk_free_limit_bytes: required(f.disk_free_limit_bytes, "disk_free_limit_bytes")?,
        },
        websocket,
        auth,
        tls,
        limits,
        push_allow_networks,
        cluster,
    })
}

fn websocket_options(f: &FileConfig) -> Result<WebSocketOptions, ConfigError> {
    let in_range = |value: Option<u64>, option: &'static str, min: u64, max: u64| {
        let value = required(value, option)?;
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                option,
                detail: format!("{value} is not between {min} and {max}"),
            })
        }
    };
    let as_u64 = |v: Option<usize>| v.map(|v| v as u64);
    let ping = in_range(
        f.ws_ping_interval_ms,
        "ws_ping_interval_ms",
        1,
        u64::from(u32::MAX),
    )?;
    let idle = in_range(
        f.ws_idle_timeout_ms,
        "ws_idle_timeout_ms",
        1,
        u64::from(u32::MAX),
    )?;
    if idle <= ping {
        // A healthy client answers pings; with no ping inside the idle
        // window, quiet but healthy sockets would be closed.
        return Err(ConfigError::Invalid {
            option: "ws_idle_timeout_ms",
            detail: format!("must exceed `ws_ping_interval_ms` ({ping})"),
        });
    }
    let max_message = in_range(
        as_u64(f.ws_max_message_bytes),
        "ws_max_message_bytes",
        WS_MIN_MESSAGE_BYTES as u64,
        WS_MAX_MESSAGE_BYTES as u64,
    )?;
    let outbound = in_range(
        as_u64(f.ws_outbound_buffer),
        "ws_outbound_buffer",
        1,
        WS_MAX_OUTBOUND_BUFFER as u64,
    )?;
    let outbound_bytes = in_range(
        as_u64(f.ws_outbound_buffer_bytes),
        "ws_outbound_buffer_bytes",
        1024,
        WS_MAX_OUTBOUND_BUFFER_BYTES as u64,
    )?;
    let slow = in_range(
        f.ws_slow_consumer_timeout_ms,
        "ws_slow_consumer_timeout_ms",
        1,
        u64::from(u32::MAX),
    )?;
    let in_flight = in_range(
        as_u64(f.ws_publish_max_in_flight),
        "ws_publish_max_in_flight",
        1,
        WS_MAX_PUBLISH_IN_FLIGHT as u64,
    )?;
    // The bounds above are far below `usize::MAX`, so these casts are exact.
    Ok(WebSocketOptions {
        ping_interval: Duration::from_millis(ping),
        idle_timeout: Duration::from_millis(idle),
        max_message_bytes: max_message as usize,
        outbound_buffer: outbound as usize,
        outbound_buffer_bytes: outbound_bytes as usize,
        slow_consumer_timeout: Duration::from_millis(slow),
        publish_max_in_flight: in_flight as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.fsync, FsyncMode::Always);
        assert_eq!(c.data_dir, PathBuf::from("./weir-data"));
    }

    #[test]
    fn flags_override_file_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "fsync = \"never\"\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        let args = Args {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:9100".into()),
            ..Args::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.fsync, FsyncMode::Never);
        assert_eq!(c.listen.port(), 9100);
        let bad = Args {
            fsync: Some("sometimes".into()),
            ..Args::default()
        };
        let err = Config::resolve(&bad).unwrap_err().to_string();
        assert!(err.contains("fsync"), "{err}");
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        let err = Config::resolve(&Args {
            config: Some(path),
            ..Args::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
    }

    #[test]
    fn websocket_options_have_defaults_and_bounds() {
        let ws = Config::defaults().unwrap().websocket;
        assert_eq!(ws.ping_interval, Duration::from_millis(20_000));
        assert_eq!(ws.idle_timeout, Duration::from_millis(60_000));
        assert_eq!(ws.max_message_bytes, 8 << 20);
        assert_eq!(ws.outbound_buffer, 256);
        assert_eq!(ws.outbound_buffer_bytes, 4 << 20);
        assert_eq!(ws.slow_consumer_timeout, Duration::from_millis(10_000));
        assert_eq!(ws.publish_max_in_flight, 16);
        let idle_below_ping = Args {
            ws_ping_interval_ms: Some(5000),
            ws_idle_timeout_ms: Some(5000),
            ..Args::default()
        };
        let err = Config::resolve(&idle_below_ping).unwrap_err().to_string();
        assert!(err.contains("ws_idle_timeout_ms"), "{err}");
        for bad in [
            Args {
                ws_outbound_buffer: Some(0),
                ..Args::default()
            },
            Args {
                ws_max_message_bytes: Some(100),
                ..Args::default()
            },
            Args {
                ws_publish_max_in_flight: Some(0),
                ..Args::default()
            },
        ] {
            assert!(Config::resolve(&bad).is_err(), "{bad:?}");
        }
    }
}
