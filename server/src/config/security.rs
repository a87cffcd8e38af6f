//! Security and resource-limit options: authentication sources, TLS files,
//! and every limit and timeout, each checked against its bounds. Also the
//! protected-mode rule: a non-loopback listener needs authentication or an
//! explicit `allow_anonymous`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{required, ConfigError, FileConfig};

/// Where principals and their grants come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOptions {
    pub tokens_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub jwt_audience: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_grants_claim: String,
    /// How often the tokens, JWKS and TLS files are checked for changes.
    pub reload_interval: Duration,
    pub protect_metrics: bool,
    pub protect_docs: bool,
    pub allow_anonymous: bool,
}

impl AuthOptions {
    /// True when requests must carry credentials.
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.jwks_file.is_some()
    }
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Optional,
    Required,
}

/// HTTPS on the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA verifying client certificates (mTLS), and whether one is required.
    pub client_ca_file: Option<(PathBuf, ClientAuth)>,
}

/// Limits on what clients may hold or send, and the connection timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    pub max_long_polls: usize,
    pub max_ws_per_principal: usize,
    pub max_topics: usize,
    pub max_subscriptions_per_topic: usize,
    pub max_unsettled_per_subscription: usize,
    pub max_headers_per_message: usize,
    pub max_inflight_request_bytes: usize,
    /// Per principal, per second; `None` = unlimited.
    pub rate_messages: Option<u32>,
    pub rate_bytes: Option<u32>,
    pub rate_requests: Option<u32>,
    pub header_read_timeout: Duration,
    pub request_body_timeout: Duration,
}

/// Headers a message may carry at most, whatever the setting says (the
/// record format counts them in 16 bits; far fewer keep records small).
pub const HEADERS_PER_MESSAGE_BOUND: usize = 1024;

pub(super) fn resolve(
    f: &FileConfig,
    listen: SocketAddr,
    max_request_bytes: usize,
) -> Result<(AuthOptions, Option<TlsOptions>, Limits), ConfigError> {
    let auth = auth_options(f)?;
    if !listen.ip().is_loopback() && !auth.enabled() && !auth.allow_anonymous {
        return Err(ConfigError::Invalid {
            option: "listen",
            detail: format!(
                "`{listen}` is reachable from other machines but no authentication is configured. \
                 Give `--auth-tokens-file` (create a token with `weir auth new-token`) or \
                 `--auth-jwks-file`, or pass `--allow-anonymous` to let anyone who reaches the \
                 port do anything"
            ),
        });
    }
    Ok((auth, tls_options(f)?, limits(f, max_request_bytes)?))
}

fn auth_options(f: &FileConfig) -> Result<AuthOptions, ConfigError> {
    let claim = required(f.auth_jwt_grants_claim.clone(), "auth_jwt_grants_claim")?;
    if claim.is_empty() {
        return Err(invalid("auth_jwt_grants_claim", "must not be empty"));
    }
    let jwt_only = [
        ("auth_jwt_audience", f.auth_jwt_audience.is_some()),
        ("auth_jwt_issuer", f.auth_jwt_issuer.is_some()),
    ];
    for (option, set) in jwt_only {
        if set && f.auth_jwks_file.is_none() {
            return Err(invalid(option, "needs `auth_jwks_file`"));
        }
    }
    Ok(AuthOptions {
        tokens_file: f.auth_tokens_file.clone(),
        jwks_file: f.auth_jwks_file.clone(),
        jwt_audience: f.auth_jwt_audience.clone(),
        jwt_issuer: f.auth_jwt_issuer.clone(),
        jwt_grants_claim: claim,
        reload_interval: Duration::from_millis(bounded(
            f.auth_reload_interval_ms,
            "auth_reload_interval_ms",
            100,
            3_600_000,
        )?),
        protect_metrics: required(f.auth_protect_metrics, "auth_protect_metrics")?,
        protect_docs: required(f.auth_protect_docs, "auth_protect_docs")?,
        allow_anonymous: required(f.allow_anonymous, "allow_anonymous")?,
    })
}

fn tls_options(f: &FileConfig) -> Result<Option<TlsOptions>, ConfigError> {
    let client_auth = match f.tls_client_auth.as_deref() {
        None | Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            return Err(invalid(
                "tls_client_auth",
                format!("`{other}`: expected optional or required"),
            ))
        }
    };
    match (&f.tls_cert_file, &f.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(TlsOptions {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: f.tls_client_ca_file.clone().map(|ca| (ca, client_auth)),
        })),
        (None, None) => {
            if f.tls_client_ca_file.is_some() {
                return Err(invalid(
                    "tls_client_ca_file",
                    "needs `tls_cert_file` and `tls_key_file`",
                ));
            }
            Ok(None)
        }
        (Some(_), None) => Err(invalid("tls_key_file", "needed with `tls_cert_file`")),
        (None, Some(_)) => Err(invalid("tls_cert_file", "needed with `tls_key_file`")),
    }
}

fn limits(f: &FileConfig, max_request_bytes: usize) -> Result<Limits, ConfigError> {
    let count = |value: Option<usize>, option: &'static str, max: u64| {
        // The bounds are far below `usize::MAX`: the cast back is exact.
        bounded(value.map(|v| v as u64), option, 1, max).map(|v| v as usize)
    };
    let rate = |value: Option<u64>, option: &'static str| {
        let v = bounded(value, option, 0, u64::from(u32::MAX))?;
        Ok::<_, ConfigError>(u32::try_from(v).ok().filter(|v| *v > 0))
    };
    let millis = |value: Option<u64>, option: &'static str| {
        bounded(value, option, 100, 3_600_000).map(Duration::from_millis)
    };
    let inflight = count(
        f.max_inflight_request_bytes,
        "max_inflight_request_bytes",
        1 << 40,
    )?;
    if inflight < max_request_bytes {
        return Err(invalid(
            "max_inflight_request_bytes",
            format!("must be at least `max_request_bytes` ({max_request_bytes})"),
        ));
    }
    Ok(Limits {
        max_connections: count(f.max_connections, "max_connections", 1_000_000)?,
        max_concurrent_requests: count(
            f.max_concurrent_requests,
            "max_concurrent_requests",
            1_000_000,
        )?,
        max_long_polls: count(f.max_long_polls, "max_long_polls", 1_000_000)?,
        max_ws_per_principal: count(f.max_ws_per_principal, "max_ws_per_principal", 1_000_000)?,
        max_topics: count(f.max_topics, "max_topics", 1_000_000)?,
        max_subscriptions_per_topic: count(
            f.max_subscriptions_per_topic,
            "max_subscriptions_per_topic",
            1_000_000,
        )?,
        max_unsettled_per_subscription: count(
            f.max_unsettled_per_subscription,
            "max_unsettled_per_subscription",
            10_000_000,
        )?,
        max_headers_per_message: count(
            f.max_headers_per_message,
            "max_headers_per_message",
            HEADERS_PER_MESSAGE_BOUND as u64,
        )?,
        max_inflight_request_bytes: inflight,
        rate_messages: rate(f.rate_limit_messages_per_s, "rate_limit_messages_per_s")?,
        rate_bytes: rate(f.rate_limit_bytes_per_s, "rate_limit_bytes_per_s")?,
        rate_requests: rate(f.rate_limit_requests_per_s, "rate_limit_requests_per_s")?,
        header_read_timeout: millis(f.header_read_timeout_ms, "header_read_timeout_ms")?,
        request_body_timeout: millis(f.request_body_timeout_ms, "request_body_timeout_ms")?,
    })
}

/// `push_allow_networks`: comma-separated networks (CIDR, or single
/// addresses) the push SSRF guard lets through.
pub(super) fn push_allow_networks(f: &FileConfig) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let text = f.push_allow_networks.as_deref().unwrap_or_default();
    crate::broker::subscription::push::ssrf::parse_networks(text)
        .map_err(|detail| invalid("push_allow_networks", detail))
}

fn bounded(
    value: Option<u64>,
    option: &'static str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = required(value, option)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            option,
            format!("{value} is not between {min} and {max}"),
        ))
    }
}

fn invalid(option: &'static str, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{Args, Config};

    #[test]
    fn non_loopback_needs_auth_or_allow_anonymous() {
        let open = Args {
            listen: Some("0.0.0.0:8080".into()),
            ..Args::default()
        };
        let err = Config::resolve(&open).unwrap_err().to_string();
        assert!(err.contains("--allow-anonymous"), "{err}");
        let allowed = Args {
            allow_anonymous: Some(true),
            ..open
        };
        assert!(!Config::resolve(&allowed).unwrap().auth.enabled());
        let tokens = Args {
            listen: Some("0.0.0.0:8080".into()),
            auth_tokens_file: Some("/etc/weir/tokens.toml".into()),
            ..Args::default()
        };
        assert!(Config::resolve(&tokens).unwrap().auth.enabled());
    }

    #[test]
    fn limits_have_defaults_and_bounds() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.limits.max_headers_per_message, 64);
        assert_eq!(c.limits.rate_messages, None);
        assert!(c.tls.is_none());
        assert!(c.push_allow_networks.is_empty());
        let allowed = Config::resolve(&Args {
            push_allow_networks: Some("127.0.0.0/8, 10.0.0.0/8".into()),
            ..Args::default()
        })
        .unwrap();
        assert_eq!(allowed.push_allow_networks.len(), 2);
        for bad in [
            Args {
                max_headers_per_message: Some(100_000),
                ..Args::default()
            },
            Args {
                max_request_bytes: Some(1 << 30),
                ..Args::default()
            },
            Args {
                tls_cert_file: Some("cert.pem".into()),
                ..Args::default()
            },
            Args {
                max_connections: Some(0),
                ..Args::default()
            },
            Args {
                push_allow_networks: Some("127.0.0.0/8,localhost".into()),
                ..Args::default()
            },
        ] {
            assert!(Config::resolve(&bad).is_err(), "{bad:?}");
        }
    }
}
