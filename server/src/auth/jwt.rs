//! JWT bearer tokens for teams with an identity provider: signatures are
//! verified with the public keys of a JWKS file (EdDSA/Ed25519, ES256,
//! RS256) by the `jsonwebtoken` crate; `exp` and `nbf` are always checked,
//! `aud` and `iss` when configured. The principal is the `sub` claim and
//! the grants are a claim (default `weir`) in the tokens-file form.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::grants::{Grant, GrantSpec};
use super::{AuthFailure, Principal};

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct JwtRules {
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub grants_claim: String,
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys of one JWKS file.
pub struct JwtKeys {
    keys: Vec<Key>,
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_S: u64 = 5;

impl JwtKeys {
    pub fn parse(text: &[u8]) -> Result<JwtKeys, String> {
        let set: JwkSet =
            serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::EdDSA), _) => Algorithm::EdDSA,
                (Some(KeyAlgorithm::ES256), _) => Algorithm::ES256,
                (Some(KeyAlgorithm::RS256), _) => Algorithm::RS256,
                (Some(other), _) => {
                    return Err(format!(
                        "keys[{i}]: algorithm {other:?} is not accepted (EdDSA, ES256, RS256)"
                    ))
                }
                (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
                (None, AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, _) => return Err(format!("keys[{i}]: unsupported key type")),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the JWKS file holds no keys".into());
        }
        Ok(JwtKeys { keys })
    }

    /// Verifies `token` and returns its principal and grants.
    pub fn verify(&self, token: &str, rules: &JwtRules) -> Result<Principal, AuthFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::InvalidToken)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &rules.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &rules.issuer {
            validation.set_issuer(&[iss]);
        }
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        let mut failure = AuthFailure::InvalidToken;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation) {
                Ok(data) => return principal(data.claims, rules),
                Err(e) => {
                    if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) {
                        failure = AuthFailure::Expired;
                    }
                }
            }
        }
        Err(failure)
    }
}

fn principal(claims: serde_json::Value, rules: &JwtRules) -> Result<Principal, AuthFailure> {
    let name = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .ok_or(AuthFailure::InvalidToken)?;
    let grants = match claims.get(&rules.grants_claim) {
        None => Vec::new(),
        Some(value) => serde_json::from_value::<Vec<GrantSpec>>(value.clone())
            .map_err(|_| AuthFailure::InvalidToken)?
            .into_iter()
            .map(GrantSpec::compile)
            .collect::<Result<Vec<Grant>, String>>()
            .map_err(|_| AuthFailure::InvalidToken)?,
    };
    Ok(Principal {
        name: name.to_owned(),
        grants: Arc::new(grants),
    })
}

/// True when `token` has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}
