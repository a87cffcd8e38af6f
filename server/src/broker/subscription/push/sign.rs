//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>`
//! over `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the bytes of
//! the `whsec_<base64>` secret. With a previous secret set as well, both
//! signatures are sent, space-separated, so receivers accept either while
//! they rotate.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The decoded signing keys of one push configuration.
#[derive(Clone, Default)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// The key bytes of a `whsec_<base64>` secret (the prefix is optional, as
/// the configuration accepts it).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
}

impl Signer {
    /// The signer of `secret` and `previous_secret` (either may be absent;
    /// both absent: deliveries are unsigned).
    pub fn new(secret: Option<&str>, previous: Option<&str>) -> Signer {
        Signer {
            keys: [secret, previous]
                .into_iter()
                .flatten()
                .filter_map(secret_key)
                .collect(),
        }
    }

    /// The `webhook-signature` value, or `None` when unsigned.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
        if self.keys.is_empty() {
            return None;
        }
        let signatures: Vec<String> = self
            .keys
            .iter()
            .filter_map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                Some(format!(
                    "v1,{}",
                    STANDARD.encode(mac.finalize().into_bytes())
                ))
            })
            .collect();
        Some(signatures.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and of the
    /// reference libraries' tests).
    #[test]
    fn matches_the_specification_example() {
        let signer = Signer::new(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
        let body = br#"{"test": 2432232314}"#;
        let sig = signer
            .signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
            .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_sends_both_and_unsigned_sends_none() {
        let a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let b = "whsec_c2Vjb25kLXNlY3JldC1rZXktMTIzNDU2Nzg=";
        let both = Signer::new(Some(a), Some(b))
            .signature("id", 1, b"{}")
            .unwrap();
        let first = Signer::new(Some(a), None)
            .signature("id", 1, b"{}")
            .unwrap();
        let second = Signer::new(Some(b), None)
            .signature("id", 1, b"{}")
            .unwrap();
        assert_eq!(both, format!("{first} {second}"));
        assert_eq!(Signer::new(None, None).signature("id", 1, b"{}"), None);
    }
}
