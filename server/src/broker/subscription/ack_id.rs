//! Ack ids: opaque to clients, they name one delivery — subscription,
//! partition, offset and a random per-delivery token — so an ack for an
//! expired or superseded delivery (or another subscription) never matches.
//!
//! A batch ack id names every delivery of one queue-mode pull: the
//! subscription, the pull's token and, per partition, the offset range the
//! pull's deliveries span. Each delivery's token is derived from the pull's
//! token, its partition and offset (`State::delivery_token`), so the batch
//! id matches exactly the deliveries of that pull that are still leased —
//! not the deliveries of other pulls that fall inside its ranges.

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
        // 32 characters are exactly 24 bytes: decoded in place, no buffer.
        let mut bytes = [0u8; LEN];
        if URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()? != LEN {
            return None;
        }
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

/// Bytes of a batch ack id before its ranges (subscription, pull token).
const BATCH_HEAD: usize = 12;
/// Bytes of one range (partition, first and last offset).
const BATCH_RANGE: usize = 20;
/// Most ranges in a batch ack id: a pull leases at most
/// `MAX_PULL_MESSAGES`, so it never spans more partitions than that.
const MAX_BATCH_RANGES: usize = weir_protocol::limits::MAX_PULL_MESSAGES as usize;

/// The deliveries of one pull: `(partition, first, last)` offset ranges
/// (inclusive), each partition at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAckId {
    pub subscription: u32,
    /// The pull's token, from which its deliveries' tokens are derived.
    pub pull: u64,
    pub ranges: Vec<(u32, u64, u64)>,
}

impl BatchAckId {
    /// The batch id of `deliveries` (`(partition, offset)`, any order);
    /// `None` when there are none.
    pub fn covering(
        subscription: u32,
        pull: u64,
        deliveries: impl IntoIterator<Item = (u32, u64)>,
    ) -> Option<BatchAckId> {
        let mut spans: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
        for (p, o) in deliveries {
            let span = spans.entry(p).or_insert((o, o));
            span.0 = span.0.min(o);
            span.1 = span.1.max(o);
        }
        if spans.is_empty() {
            return None;
        }
        Some(BatchAckId {
            subscription,
            pull,
            ranges: spans.into_iter().map(|(p, (a, b))| (p, a, b)).collect(),
        })
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(BATCH_HEAD + BATCH_RANGE * self.ranges.len());
        bytes.extend_from_slice(&self.subscription.to_be_bytes());
        bytes.extend_from_slice(&self.pull.to_be_bytes());
        for (p, first, last) in &self.ranges {
            bytes.extend_from_slice(&p.to_be_bytes());
            bytes.extend_from_slice(&first.to_be_bytes());
            bytes.extend_from_slice(&last.to_be_bytes());
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a batch ack id; `None` when it is not one Weir could have
    /// issued (no range, too many, a reversed range, a partition twice).
    pub fn decode(text: &str) -> Option<BatchAckId> {
        let max_len = (BATCH_HEAD + BATCH_RANGE * MAX_BATCH_RANGES).div_ceil(3) * 4;
        if text.len() > max_len {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let rest = bytes.len().checked_sub(BATCH_HEAD)?;
        if rest == 0 || rest % BATCH_RANGE != 0 {
            return None;
        }
        let subscription = u32::from_be_bytes(bytes[..4].try_into().ok()?);
        let pull = u64::from_be_bytes(bytes[4..12].try_into().ok()?);
        let mut ranges: Vec<(u32, u64, u64)> = Vec::with_capacity(rest / BATCH_RANGE);
        for r in bytes[BATCH_HEAD..].chunks_exact(BATCH_RANGE) {
            let p = u32::from_be_bytes(r[..4].try_into().ok()?);
            let first = u64::from_be_bytes(r[4..12].try_into().ok()?);
            let last = u64::from_be_bytes(r[12..].try_into().ok()?);
            // Issued in partition order, one range each.
            if first > last || ranges.last().is_some_and(|&(q, _, _)| q >= p) {
                return None;
            }
            ranges.push((p, first, last));
        }
        Some(BatchAckId {
            subscription,
            pull,
            ranges,
        })
    }
}

/// What an entry of `ack_ids` names: one delivery or a pull's deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckTarget {
    One(AckId),
    Batch(BatchAckId),
}

impl AckTarget {
    /// Parses either form (a single id is always 32 characters, a batch id
    /// never is); `None` when it is neither.
    pub fn decode(text: &str) -> Option<AckTarget> {
        if text.len() == 32 {
            AckId::decode(text).map(AckTarget::One)
        } else {
            BatchAckId::decode(text).map(AckTarget::Batch)
        }
    }

    pub fn subscription(&self) -> u32 {
        match self {
            AckTarget::One(id) => id.subscription,
            AckTarget::Batch(id) => id.subscription,
        }
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

    proptest! {
        #[test]
        fn batch_ids_round_trip(
            s in any::<u32>(),
            pull in any::<u64>(),
            offsets in proptest::collection::vec((0u32..64, any::<u64>()), 1..200),
        ) {
            let id = BatchAckId::covering(s, pull, offsets.iter().copied()).unwrap();
            let text = id.encode();
            prop_assert_ne!(text.len(), 32);
            prop_assert_eq!(AckTarget::decode(&text), Some(AckTarget::Batch(id.clone())));
            for (p, o) in offsets {
                prop_assert!(id.ranges.iter().any(|&(q, a, b)| q == p && (a..=b).contains(&o)));
            }
        }
    }

    #[test]
    fn batch_ids_refuse_what_no_pull_issues() {
        let encode = |ranges: &[(u32, u64, u64)]| {
            BatchAckId {
                subscription: 1,
                pull: 2,
                ranges: ranges.to_vec(),
            }
            .encode()
        };
        assert_eq!(BatchAckId::covering(1, 2, []), None);
        assert_eq!(AckTarget::decode(&encode(&[])), None);
        assert_eq!(AckTarget::decode(&encode(&[(0, 5, 4)])), None);
        assert_eq!(AckTarget::decode(&encode(&[(3, 1, 2), (3, 4, 5)])), None);
        assert_eq!(AckTarget::decode(&encode(&[(3, 1, 2), (2, 4, 5)])), None);
        let too_many: Vec<_> = (0..=MAX_BATCH_RANGES as u32).map(|p| (p, 0, 0)).collect();
        assert_eq!(AckTarget::decode(&encode(&too_many)), None);
        let most: Vec<_> = (0..MAX_BATCH_RANGES as u32).map(|p| (p, 0, 0)).collect();
        assert!(AckTarget::decode(&encode(&most)).is_some());
        let valid = encode(&[(0, 1, 1)]);
        assert_eq!(AckTarget::decode(&valid[..valid.len() - 1]), None);
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
