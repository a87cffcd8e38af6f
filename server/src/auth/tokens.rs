//! The tokens file: principals, the SHA-256 of their bearer tokens, and
//! their grants. Only hashes are stored, so the file (or a leaked copy of
//! it) never reveals a token. A presented token is hashed and compared
//! with every entry in constant time.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::grants::{Grant, GrantSpec};
use super::Principal;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<EntrySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    principal: String,
    /// Hex SHA-256 of the token. Absent for principals that authenticate
    /// with a client certificate only.
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    grants: Vec<GrantSpec>,
}

struct Entry {
    hash: Option<[u8; 32]>,
    principal: Principal,
}

/// The parsed tokens file.
pub struct TokenTable {
    entries: Vec<Entry>,
}

/// The hex SHA-256 of a token, as the tokens file stores it.
pub fn hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The syntax of a tokens file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    /// YAML when the name ends in `.yaml`/`.yml`, else TOML.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Toml,
        }
    }
}

impl TokenTable {
    pub fn parse(text: &str, format: Format) -> Result<TokenTable, String> {
        let file: TokensFile = match format {
            Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?,
            Format::Toml => toml::from_str(text).map_err(|e| e.to_string())?,
        };
        let mut entries = Vec::with_capacity(file.tokens.len());
        for (i, spec) in file.tokens.into_iter().enumerate() {
            let at = |detail: String| format!("tokens[{i}] (`{}`): {detail}", spec.principal);
            if spec.principal.is_empty() {
                return Err(format!("tokens[{i}]: `principal` must not be empty"));
            }
            let hash = match &spec.sha256 {
                Some(hex) => Some(parse_hash(hex).map_err(at)?),
                None => None,
            };
            let grants = spec
                .grants
                .into_iter()
                .map(GrantSpec::compile)
                .collect::<Result<Vec<Grant>, String>>()
                .map_err(|e| format!("tokens[{i}] (`{}`): {e}", spec.principal))?;
            entries.push(Entry {
                hash,
                principal: Principal {
                    name: spec.principal,
                    grants: Arc::new(grants),
                },
            });
        }
        Ok(TokenTable { entries })
    }

    /// The principal whose token hashes to the same value. Every entry is
    /// compared, each in constant time, so timing tells nothing about how
    /// close a guess was.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if let Some(hash) = &entry.hash {
                if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                    found = Some(entry.principal.clone());
                }
            }
        }
        found
    }

    /// The grants of every entry of principal `name` together (for client
    /// certificates, whose subject names the principal).
    pub fn principal(&self, name: &str) -> Option<Principal> {
        let grants: Vec<Grant> = self
            .entries
            .iter()
            .filter(|e| e.principal.name == name)
            .flat_map(|e| e.principal.grants.iter().cloned())
            .collect();
        let known = self.entries.iter().any(|e| e.principal.name == name);
        known.then(|| Principal {
            name: name.to_owned(),
            grants: Arc::new(grants),
        })
    }
}

fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    let bad = || format!("`sha256` must be 64 hex digits (the SHA-256 of the token), got `{hex}`");
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::auth::grants::Action;

    const FILE: &str = r#"
[[tokens]]
principal = "orders-producer"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # "test"
grants = [{ actions = ["produce"], topics = "orders.*" }]

[[tokens]]
principal = "billing-worker"
grants = [{ actions = ["consume"], topics = "orders.*", subscriptions = ["billing"] }]
"#;

    #[test]
    fn tokens_are_found_by_hash_only() {
        let t = TokenTable::parse(FILE, Format::Toml).unwrap();
        let p = t.lookup("test").unwrap();
        assert_eq!(p.name, "orders-producer");
        assert_eq!(p.grants[0].actions, vec![Action::Produce]);
        assert!(t.lookup("tesT").is_none());
        assert!(t.lookup("").is_none());
        assert_eq!(
            hash_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        // The certificate-only principal has no token but has grants.
        let cert = t.principal("billing-worker").unwrap();
        assert_eq!(cert.grants.len(), 1);
        assert!(t.principal("nobody").is_none());
    }

    #[test]
    fn yaml_files_and_bad_entries() {
        let yaml = "tokens:\n  - principal: a\n    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n    grants:\n      - actions: [admin]\n        topics: \"*\"\n";
        let t = TokenTable::parse(yaml, Format::of(Path::new("t.yaml"))).unwrap();
        assert_eq!(t.lookup("test").unwrap().name, "a");
        for bad in [
            "[[tokens]]\nprincipal = \"a\"\nsha256 = \"xyz\"\n",
            "[[tokens]]\nprincipal = \"a\"\ngrants = [{ actions = [\"fly\"], topics = \"*\" }]\n",
            "[[tokens]]\nprincipal = \"a\"\ngrants = [{ actions = [\"produce\"], topics = \"a b\" }]\n",
            "[[tokens]]\nprincipal = \"a\"\ntoken = \"plain\"\n",
        ] {
            assert!(TokenTable::parse(bad, Format::Toml).is_err(), "{bad}");
        }
    }
}
