//! Authentication and authorization, independent of HTTP: who a bearer
//! token or client certificate belongs to (`tokens.rs`, `jwt.rs`), what
//! their grants allow (`grants.rs`), and the files behind both, re-read
//! when they change (`watch.rs`). The API layer extracts credentials from
//! requests and asks this module; it never parses tokens itself.

pub mod grants;
pub mod jwt;
pub mod tokens;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::config::AuthOptions;
use grants::Grant;
use jwt::{JwtKeys, JwtRules};
use tokens::TokenTable;
use watch::Watched;

/// An authenticated identity and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub grants: Arc<Vec<Grant>>,
}

/// Why credentials were refused (the `reason` label of
/// `weir_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthFailure {
    #[error("a bearer token is required")]
    Missing,
    #[error("the bearer token is not known")]
    UnknownToken,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid")]
    InvalidToken,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::UnknownToken => "unknown_token",
            AuthFailure::Expired => "expired",
            AuthFailure::InvalidToken => "invalid_token",
        }
    }
}

/// A tokens or JWKS file that cannot be used at start-up.
#[derive(Debug, Error)]
#[error("invalid {what} file: {detail}")]
pub struct AuthConfigError {
    what: &'static str,
    detail: String,
}

/// Turns credentials into principals, from the configured sources.
pub struct Authenticator {
    tokens: Option<Arc<Watched<TokenTable>>>,
    jwt: Option<(Arc<Watched<JwtKeys>>, JwtRules)>,
}

impl Authenticator {
    /// Loads the configured files, or `None` when authentication is off.
    pub fn load(options: &AuthOptions) -> Result<Option<Authenticator>, AuthConfigError> {
        if !options.enabled() {
            return Ok(None);
        }
        let tokens = match &options.tokens_file {
            Some(path) => Some(load_tokens(path.clone())?),
            None => None,
        };
        let jwt = match &options.jwks_file {
            Some(path) => {
                let keys = Watched::load("jwks", vec![path.clone()], |files| {
                    JwtKeys::parse(&files[0])
                })
                .map_err(|detail| AuthConfigError {
                    what: "JWKS",
                    detail,
                })?;
                let rules = JwtRules {
                    audience: options.jwt_audience.clone(),
                    issuer: options.jwt_issuer.clone(),
                    grants_claim: options.jwt_grants_claim.clone(),
                };
                Some((keys, rules))
            }
            None => None,
        };
        Ok(Some(Authenticator { tokens, jwt }))
    }

    /// Starts re-reading the files every `every`; abort the handles to stop.
    pub fn spawn_reloaders(&self, every: std::time::Duration) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(t) = &self.tokens {
            tasks.push(t.spawn_reloader(every));
        }
        if let Some((k, _)) = &self.jwt {
            tasks.push(k.spawn_reloader(every));
        }
        tasks
    }

    /// The principal a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthFailure> {
        if token.is_empty() {
            return Err(AuthFailure::Missing);
        }
        if let Some((keys, rules)) = &self.jwt {
            if jwt::looks_like_jwt(token) {
                return keys.get().verify(token, rules);
            }
        }
        self.tokens
            .as_ref()
            .and_then(|t| t.get().lookup(token))
            .ok_or(AuthFailure::UnknownToken)
    }

    /// The principal a verified client certificate names, with the grants
    /// the tokens file gives that principal (none when it has no entry).
    pub fn certificate_principal(&self, name: &str) -> Principal {
        self.tokens
            .as_ref()
            .and_then(|t| t.get().principal(name))
            .unwrap_or_else(|| Principal {
                name: name.to_owned(),
                grants: Arc::new(Vec::new()),
            })
    }
}

fn load_tokens(path: PathBuf) -> Result<Arc<Watched<TokenTable>>, AuthConfigError> {
    fn text(files: &[Vec<u8>]) -> Result<&str, String> {
        std::str::from_utf8(&files[0]).map_err(|e| format!("not UTF-8: {e}"))
    }
    fn parse_toml(files: &[Vec<u8>]) -> Result<TokenTable, String> {
        TokenTable::parse(text(files)?, tokens::Format::Toml)
    }
    fn parse_yaml(files: &[Vec<u8>]) -> Result<TokenTable, String> {
        TokenTable::parse(text(files)?, tokens::Format::Yaml)
    }
    let parser: watch::Parser<TokenTable> = match tokens::Format::of(&path) {
        tokens::Format::Toml => parse_toml,
        tokens::Format::Yaml => parse_yaml,
    };
    Watched::load("tokens", vec![path], parser).map_err(|detail| AuthConfigError {
        what: "tokens",
        detail,
    })
}
