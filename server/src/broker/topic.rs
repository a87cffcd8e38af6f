//! In-memory state of a topic and its partitions, and topic configuration
//! rules (defaults, limits, what may change).
//!
//! A partition's offsets are assigned under the topic's produce lock and
//! become visible to readers through `committed` only once durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::watch;
use weir_protocol::{Retention, TopicConfig, TopicSpec};

use super::error::{BrokerError, Result};
use super::subscription::Subscription;
use crate::storage::{PartitionMeta, TopicRecord};

pub const DEFAULT_PARTITIONS: u32 = 1;
pub const MAX_PARTITIONS: u32 = weir_protocol::limits::MAX_PARTITIONS;
pub const DEFAULT_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1 << 20;
pub const MAX_MAX_MESSAGE_BYTES: u32 = weir_protocol::limits::MAX_MESSAGE_BYTES_LIMIT;
pub const DEFAULT_DEDUPE_WINDOW_MS: u64 = 120_000;
pub const MAX_DEDUPE_WINDOW_MS: u64 = 7 * 24 * 3600 * 1000;

/// The configuration a spec yields on creation (`current = None`) or update.
pub fn apply_spec(spec: &TopicSpec, current: Option<&TopicConfig>) -> Result<TopicConfig> {
    let mut config = current.cloned().unwrap_or(TopicConfig {
        partitions: DEFAULT_PARTITIONS,
        retention: Retention {
            max_age_ms: Some(DEFAULT_MAX_AGE_MS),
            max_bytes: None,
            max_messages: None,
        },
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        dedupe_window_ms: DEFAULT_DEDUPE_WINDOW_MS,
        replication_factor: 1,
    });
    let creating = current.is_none();
    if let Some(p) = spec.partitions {
        if p == 0 || p > MAX_PARTITIONS {
            return Err(BrokerError::invalid(
                "partitions",
                format!("`partitions` must be between 1 and {MAX_PARTITIONS}"),
            ));
        }
        if p < config.partitions {
            return Err(BrokerError::Conflict(format!(
                "`partitions` can grow but not shrink (currently {})",
                config.partitions
            )));
        }
        config.partitions = p;
    }
    if let Some(r) = &spec.retention {
        for (name, value) in [
            ("retention.max_age_ms", r.max_age_ms),
            ("retention.max_bytes", r.max_bytes),
            ("retention.max_messages", r.max_messages),
        ] {
            if value == Some(0) {
                return Err(BrokerError::invalid(
                    name,
                    format!("`{name}` must be positive or null (unlimited)"),
                ));
            }
        }
        config.retention = r.clone();
    }
    if let Some(m) = spec.max_message_bytes {
        if m == 0 || m > MAX_MAX_MESSAGE_BYTES {
            return Err(BrokerError::invalid(
                "max_message_bytes",
                format!("`max_message_bytes` must be between 1 and {MAX_MAX_MESSAGE_BYTES}"),
            ));
        }
        config.max_message_bytes = m;
    }
    if let Some(d) = spec.dedupe_window_ms {
        if d > MAX_DEDUPE_WINDOW_MS {
            return Err(BrokerError::invalid(
                "dedupe_window_ms",
                format!("`dedupe_window_ms` must be at most {MAX_DEDUPE_WINDOW_MS}"),
            ));
        }
        config.dedupe_window_ms = d;
    }
    if let Some(r) = spec.replication_factor {
        let max = weir_protocol::limits::MAX_REPLICATION_FACTOR;
        if r == 0 || r > max {
            return Err(BrokerError::invalid(
                "replication_factor",
                format!("`replication_factor` must be between 1 and {max}"),
            ));
        }
        if !creating && r != config.replication_factor {
            return Err(BrokerError::Conflict(format!(
                "`replication_factor` is fixed at creation (currently {})",
                config.replication_factor
            )));
        }
        config.replication_factor = r;
    }
    Ok(config)
}

/// The spec that yields `config` exactly (a replica creating a topic the
/// cluster agreed on).
pub fn spec_of(config: &TopicConfig) -> TopicSpec {
    TopicSpec {
        partitions: Some(config.partitions),
        retention: Some(config.retention.clone()),
        max_message_bytes: Some(config.max_message_bytes),
        dedupe_window_ms: Some(config.dedupe_window_ms),
        replication_factor: Some(config.replication_factor),
    }
}

/// Mutable head of a partition, guarded by the topic's produce lock.
#[derive(Debug, Clone, Copy)]
pub struct PartitionHead {
    /// Next offset to assign.
    pub next_offset: u64,
    pub low: u64,
    pub bytes: u64,
    pub last_timestamp: u64,
}

/// One partition: its head and the durable high watermark readers see.
pub struct Partition {
    pub id: u32,
    /// Highest offset + 1 that is durable; readers never go past it.
    committed: watch::Sender<u64>,
    /// Oldest stored offset, mirrored from the head for lock-free readers.
    low: AtomicU64,
    bytes: AtomicU64,
}

impl Partition {
    pub fn new(meta: &PartitionMeta) -> Self {
        Partition {
            id: meta.partition,
            committed: watch::Sender::new(meta.high),
            low: AtomicU64::new(meta.low),
            bytes: AtomicU64::new(meta.bytes),
        }
    }

    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn low(&self) -> u64 {
        self.low.load(Ordering::Acquire)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Publishes a durable high watermark (never moves backwards).
    pub fn publish(&self, high: u64) {
        self.committed.send_if_modified(|current| {
            if high > *current {
                *current = high;
                true
            } else {
                false
            }
        });
    }

    /// Wakes every waiter (topic deleted, shutdown).
    pub fn wake_all(&self) {
        self.committed.send_modify(|_| {});
    }

    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    pub fn set_low_and_bytes(&self, low: u64, bytes: u64) {
        self.low.store(low, Ordering::Release);
        self.bytes.store(bytes, Ordering::Release);
    }
}

/// What the produce lock guards.
pub struct ProduceState {
    pub heads: Vec<PartitionHead>,
    /// Idempotency ids assigned but not yet durable: (partition, offset).
    pub pending_ids: HashMap<String, (u32, u64)>,
    pub round_robin: u32,
}

/// A topic: configuration, partitions, produce state.
pub struct Topic {
    pub record: RwLock<TopicRecord>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    produce: Mutex<ProduceState>,
    deleted: AtomicBool,
    /// Its messages are appended only through the cluster's partition
    /// groups (set when this node starts one of its groups).
    replicated: AtomicBool,
    /// Set at shutdown: long polls return at once.
    closing: AtomicBool,
    /// Bumped when any partition gains durable messages, or the topic is
    /// closed or deleted: wakes subscription long polls.
    changes: watch::Sender<u64>,
    /// Subscriptions of the topic, by name.
    pub subscriptions: RwLock<BTreeMap<String, Arc<Subscription>>>,
}

impl Topic {
    pub fn new(record: TopicRecord, metas: &[PartitionMeta]) -> Self {
        let mut metas = metas.to_vec();
        metas.sort_by_key(|m| m.partition);
        let heads = metas
            .iter()
            .map(|m| PartitionHead {
                next_offset: m.high,
                low: m.low,
                bytes: m.bytes,
                last_timestamp: m.last_timestamp,
            })
            .collect();
        Topic {
            record: RwLock::new(record),
            partitions: RwLock::new(metas.iter().map(|m| Arc::new(Partition::new(m))).collect()),
            produce: Mutex::new(ProduceState {
                heads,
                pending_ids: HashMap::new(),
                round_robin: 0,
            }),
            deleted: AtomicBool::new(false),
            replicated: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            changes: watch::Sender::new(0),
            subscriptions: RwLock::new(BTreeMap::new()),
        }
    }

    /// Wakes subscription waiters: new durable messages (or close/delete).
    pub fn notify_produced(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever `notify_produced` runs.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The topic's subscriptions, ordered by name.
    pub fn subscription_list(&self) -> Vec<Arc<Subscription>> {
        match self.subscriptions.read() {
            Ok(s) => s.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    pub fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        match self.subscriptions.read() {
            Ok(s) => s.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        }
    }

    pub fn subscriptions_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Subscription>>> {
        match self.subscriptions.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    pub fn record(&self) -> TopicRecord {
        match self.record.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn id(&self) -> u32 {
        self.record().id
    }

    pub fn name(&self) -> String {
        self.record().name
    }

    pub fn set_record(&self, record: TopicRecord) {
        match self.record.write() {
            Ok(mut r) => *r = record,
            Err(p) => *p.into_inner() = record,
        }
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        match self.partitions.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn partition(&self, id: u32) -> Option<Arc<Partition>> {
        self.partitions().get(id as usize).cloned()
    }

    /// Adds partitions `[current, count)` (growing only).
    pub fn grow(&self, count: u32) {
        let mut produce = self.lock_produce();
        let mut parts = match self.partitions.write() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        while (parts.len() as u32) < count {
            let meta = PartitionMeta {
                partition: parts.len() as u32,
                ..PartitionMeta::default()
            };
            parts.push(Arc::new(Partition::new(&meta)));
            produce.heads.push(PartitionHead {
                next_offset: 0,
                low: 0,
                bytes: 0,
                last_timestamp: 0,
            });
        }
    }

    pub fn lock_produce(&self) -> MutexGuard<'_, ProduceState> {
        match self.produce.lock() {
            Ok(g) => g,
            // A panic while holding the lock cannot leave heads half-written
            // in a way later code relies on: offsets only move forward.
            Err(p) => p.into_inner(),
        }
    }

    /// The produce lock if it is free right now (async code must not wait
    /// for it: a holder may be reading the store).
    pub fn try_lock_produce(&self) -> Option<MutexGuard<'_, ProduceState>> {
        match self.produce.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        for p in self.partitions() {
            p.wake_all();
        }
        for s in self.subscription_list() {
            s.mark_deleted();
        }
        self.notify_produced();
    }

    /// Ends every long poll on this topic (shutdown).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for p in self.partitions() {
            p.wake_all();
        }
        self.notify_produced();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    /// From now on its messages are appended only through the cluster.
    pub fn mark_replicated(&self) {
        self.replicated.store(true, Ordering::SeqCst);
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_updates() {
        let c = apply_spec(&TopicSpec::default(), None).unwrap();
        assert_eq!(c.partitions, 1);
        assert_eq!(c.retention.max_age_ms, Some(DEFAULT_MAX_AGE_MS));
        let grown = apply_spec(
            &TopicSpec {
                partitions: Some(4),
                ..Default::default()
            },
            Some(&c),
        )
        .unwrap();
        assert_eq!(grown.partitions, 4);
        assert_eq!(grown.max_message_bytes, c.max_message_bytes);
        let shrink = TopicSpec {
            partitions: Some(2),
            ..Default::default()
        };
        assert!(matches!(
            apply_spec(&shrink, Some(&grown)),
            Err(BrokerError::Conflict(_))
        ));
        let zero = TopicSpec {
            partitions: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            apply_spec(&zero, None),
            Err(BrokerError::Invalid { .. })
        ));
        let bad_retention = TopicSpec {
            retention: Some(Retention {
                max_age_ms: None,
                max_bytes: Some(0),
                max_messages: None,
            }),
            ..Default::default()
        };
        assert!(apply_spec(&bad_retention, None).is_err());
    }

    #[test]
    fn publish_never_moves_backwards() {
        let p = Partition::new(&PartitionMeta::default());
        p.publish(10);
        p.publish(5);
        assert_eq!(p.committed(), 10);
    }
}
