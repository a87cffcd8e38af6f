//! Ack ids: opaque to clients, they name one delivery — subscription,
//! partition, offset and a random per-delivery token — so an ack for an
//! expired or superseded delivery (or another subscription) never matches.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const LEN: usize = 24;

/// The decoded content of an ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckId {
    pub subscription: u32,
    pub partition: u32,
    pub offset: u64,
    /// Random token of the delivery; unguessable.
    pub token: u64,
}

impl AckId {
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; LEN];
        bytes[..4].copy_from_slice(&self.subscription.to_be_bytes());
        bytes[4..8].copy_from_slice(&self.partition.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.offset.to_be_bytes());
        bytes[16..].copy_from_slice(&self.token.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses an ack id; `None` when it is not one Weir could have issued.
    pub fn decode(text: &str) -> Option<AckId> {
        if text.len() != 32 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let bytes: [u8; LEN] = bytes.try_into().ok()?;
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Some(AckId {
            subscription: u32_at(0),
            partition: u32_at(4),
            offset: u64_at(8),
            token: u64_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(s in any::<u32>(), p in any::<u32>(), o in any::<u64>(), t in any::<u64>()) {
            let id = AckId { subscription: s, partition: p, offset: o, token: t };
            prop_assert_eq!(AckId::decode(&id.encode()), Some(id));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(AckId::decode(""), None);
        assert_eq!(AckId::decode("not-an-ack-id"), None);
        assert_eq!(AckId::decode(&"!".repeat(32)), None);
        let valid = AckId {
            subscription: 1,
            partition: 2,
            offset: 3,
            token: 4,
        }
        .encode();
        assert_eq!(AckId::decode(&valid[..31]), None);
    }
}
