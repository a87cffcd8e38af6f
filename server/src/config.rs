//! Server configuration: defaults from the commented `weir.toml` embedded in
//! the binary, then an optional file, then `WEIR_*` environment variables,
//! then command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::storage::{FsyncMode, StoreOptions};

/// The commented default configuration file.
pub const DEFAULT_CONFIG: &str = include_str!("../weir.toml");

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
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    fsync: Option<String>,
    fsync_interval_ms: Option<u64>,
    log_format: Option<String>,
    log_level: Option<String>,
    max_request_bytes: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    retention_interval_ms: Option<u64>,
    write_buffer_bytes: Option<usize>,
    block_cache_bytes: Option<usize>,
}

/// Command line; every option also reads `WEIR_<NAME>`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "weir-server",
    version,
    about = "Weir: durable topics, queues and streams over HTTP and WebSocket"
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
    /// RocksDB memtable budget in bytes [default: 268435456].
    #[arg(long, env = "WEIR_WRITE_BUFFER_BYTES")]
    pub write_buffer_bytes: Option<usize>,
    /// RocksDB block cache in bytes [default: 134217728].
    #[arg(long, env = "WEIR_BLOCK_CACHE_BYTES")]
    pub block_cache_bytes: Option<usize>,
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
    pub store: StoreOptions,
}

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
                write_buffer_bytes: args.write_buffer_bytes,
                block_cache_bytes: args.block_cache_bytes,
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
        write_buffer_bytes,
        block_cache_bytes
    );
}

fn required<T>(value: Option<T>, option: &'static str) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::Invalid {
        option,
        detail: "missing".into(),
    })
}

fn finish(f: FileConfig) -> Result<Config, ConfigError> {
    let listen_text = required(f.listen, "listen")?;
    let listen = listen_text.parse().map_err(|e| ConfigError::Invalid {
        option: "listen",
        detail: format!("`{listen_text}`: {e} (expected host:port, e.g. 127.0.0.1:8080)"),
    })?;
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
    let max_request_bytes = required(f.max_request_bytes, "max_request_bytes")?;
    if max_request_bytes < 1024 {
        return Err(ConfigError::Invalid {
            option: "max_request_bytes",
            detail: "must be at least 1024".into(),
        });
    }
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
        store: StoreOptions {
            fsync,
            write_buffer_bytes: required(f.write_buffer_bytes, "write_buffer_bytes")?,
            block_cache_bytes: required(f.block_cache_bytes, "block_cache_bytes")?,
        },
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
}
