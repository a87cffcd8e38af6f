//! Records kept in the `meta` column family: topics, partitions,
//! subscriptions. Configs are JSON (evolvable); partition heads are a fixed
//! binary layout (written with every append).

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use weir_protocol::{SubscriptionConfig, TopicConfig};

use super::StorageError;

/// A topic's identity and configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: u32,
    pub name: String,
    pub config: TopicConfig,
    pub created_at: u64,
}

/// A subscription's identity and configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: u32,
    pub topic_id: u32,
    pub name: String,
    pub config: SubscriptionConfig,
    pub created_at: u64,
    /// Set while deliveries are paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PauseRecord>,
}

/// Why and since when a subscription is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRecord {
    pub reason: String,
    /// When it was paused (ms since the epoch).
    pub at: u64,
    /// Paused by the circuit breaker (else by hand).
    #[serde(default)]
    pub breaker: bool,
}

/// The durable head of a partition, written in the same batch as appends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionMeta {
    pub partition: u32,
    /// Oldest stored offset.
    pub low: u64,
    /// Next offset to write.
    pub high: u64,
    /// Stored bytes of `[low, high)`.
    pub bytes: u64,
    /// Timestamp of the newest message (timestamps never go backwards).
    pub last_timestamp: u64,
}

impl PartitionMeta {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.low.to_be_bytes());
        out.extend_from_slice(&self.high.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(&self.last_timestamp.to_be_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
        };
        Some(PartitionMeta {
            partition: u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?),
            low: u64_at(4)?,
            high: u64_at(12)?,
            bytes: u64_at(20)?,
            last_timestamp: u64_at(28)?,
        })
    }
}

pub(super) fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(super) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("meta record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_meta_round_trips() {
        let m = PartitionMeta {
            partition: 3,
            low: 10,
            high: 20,
            bytes: 999,
            last_timestamp: 123,
        };
        assert_eq!(PartitionMeta::decode(&m.encode()), Some(m));
        assert_eq!(PartitionMeta::decode(&[0; 10]), None);
    }
}
