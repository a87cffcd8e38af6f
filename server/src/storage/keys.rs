//! Every column family and key layout of the store, in one place.
//!
//! | column family | key | value |
//! | --- | --- | --- |
//! | `batches`    | topic u32 · partition u32 · base offset u64 | record batch (`batch.rs`); values ≥ 4 KiB in blob files |
//! | `time_index` | topic u32 · partition u32 · timestamp u64 | first offset with that timestamp, u64 (sparse: about one entry per 100 ms) |
//! | `dedupe`     | topic u32 · idempotency id bytes | expires u64 · partition u32 · offset u64 |
//! | `sub_state`  | subscription u32 · kind u8 · partition u32 [· offset u64] | see `sub_state.rs` |
//! | `meta`       | tag byte · … | topic / partition / subscription records, id counters |
//! | `raft`       | group u64 · kind u8 [· index u64] | Raft log entries, vote, committed and purged ids, state-machine state (`raft_log.rs`) |
//!
//! Integers are big-endian so that byte order is numeric order: iterating a
//! partition's key range walks the log in offset order.
//!
//! Data directories written before record batches (format 1) hold one key
//! per message in a `messages` column family (same key shape, a `record.rs`
//! record as value); `migrate.rs` converts it once at startup.

/// Column family names.
pub const CF_BATCHES: &str = "batches";
/// Format 1's one-key-per-message log (only `migrate.rs` reads it).
pub const CF_MESSAGES: &str = "messages";
pub const CF_TIME_INDEX: &str = "time_index";
pub const CF_DEDUPE: &str = "dedupe";
pub const CF_SUB_STATE: &str = "sub_state";
pub const CF_META: &str = "meta";
/// Raft groups of a cluster (empty on a single node).
pub const CF_RAFT: &str = "raft";
/// All column families, for opening the database.
pub const ALL_CFS: [&str; 6] = [
    CF_BATCHES,
    CF_TIME_INDEX,
    CF_DEDUPE,
    CF_SUB_STATE,
    CF_META,
    CF_RAFT,
];
/// The column families every data directory (and backup) has had since
/// format 2; `raft` is created at open when missing.
pub const REQUIRED_CFS: [&str; 5] = [CF_BATCHES, CF_TIME_INDEX, CF_DEDUPE, CF_SUB_STATE, CF_META];

/// `raft` kinds: log entries by index, and one value each of the rest.
pub const RAFT_ENTRY: u8 = b'e';
pub const RAFT_VOTE: u8 = b'v';
pub const RAFT_COMMITTED: u8 = b'c';
pub const RAFT_PURGED: u8 = b'p';
/// The group's state machine: what it has applied, and its state.
pub const RAFT_STATE: u8 = b's';
/// The node's incarnation (kept under the metadata group's id): new each
/// time a node starts on an empty data directory.
pub const RAFT_INCARNATION: u8 = b'i';

/// Key of a Raft group's value of `kind`, or with `index`, of one entry.
pub fn raft_key(group: u64, kind: u8, index: Option<u64>) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.extend_from_slice(&group.to_be_bytes());
    key.push(kind);
    if let Some(index) = index {
        key.extend_from_slice(&index.to_be_bytes());
    }
    key
}

/// `meta` tags.
const META_TOPIC: u8 = b'T';
const META_PARTITION: u8 = b'P';
const META_SUBSCRIPTION: u8 = b'S';
const META_COUNTER: u8 = b'C';

/// `sub_state` kinds.
pub const SUB_CURSOR: u8 = 0;
pub const SUB_ENTRY: u8 = 1;
/// A dead letter of the subscription, kept for redrive.
pub const SUB_DEAD: u8 = 2;
/// Per partition: every offset below was delivered at least once (so a
/// delivery a crash interrupted still counts as an attempt).
pub const SUB_DELIVERED: u8 = 3;
/// A parked message: waiting on disk, not in memory (a long delay or
/// retry, or behind its key), by `(partition, offset)`.
pub const SUB_PARKED: u8 = 4;
/// Index of parked messages by due time: `(due_at, partition, offset)`.
pub const SUB_DUE: u8 = 5;
/// Index of parked messages behind their key: `(key, partition, offset)`.
pub const SUB_KEYQ: u8 = 6;
/// Per partition, in a cluster: the highest claim (epoch) of a node serving
/// the subscription; changes from an older claim are refused.
pub const SUB_EPOCH: u8 = 7;

/// Key of an index entry of parked messages (`SUB_DUE`, `SUB_KEYQ`):
/// `sub | kind | order (due time or key hash) | partition | offset`.
pub fn sub_index_key(sub: u32, kind: u8, order: u64, partition: u32, offset: u64) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[..4].copy_from_slice(&sub.to_be_bytes());
    key[4] = kind;
    key[5..13].copy_from_slice(&order.to_be_bytes());
    key[13..17].copy_from_slice(&partition.to_be_bytes());
    key[17..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// Decodes `(order, partition, offset)` from a `sub_index_key`.
pub fn decode_sub_index_key(key: &[u8]) -> Option<(u64, u32, u64)> {
    let order = u64::from_be_bytes(key.get(5..13)?.try_into().ok()?);
    let partition = u32::from_be_bytes(key.get(13..17)?.try_into().ok()?);
    let offset = u64::from_be_bytes(key.get(17..25)?.try_into().ok()?);
    Some((order, partition, offset))
}

/// Key of one batch (by base offset), of one format-1 message, or of one
/// time-index entry (same shape).
pub fn partition_key(topic: u32, partition: u32, position: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&topic.to_be_bytes());
    key[4..8].copy_from_slice(&partition.to_be_bytes());
    key[8..].copy_from_slice(&position.to_be_bytes());
    key
}

/// Decodes the position (offset or timestamp) of a `partition_key`.
pub fn partition_key_position(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// First key of everything a topic owns in `batches`, `time_index`, `dedupe`.
pub fn topic_start(topic: u32) -> Vec<u8> {
    topic.to_be_bytes().to_vec()
}

/// Key just past everything a topic owns.
pub fn topic_end(topic: u32) -> Vec<u8> {
    // Topic ids never reach u32::MAX (allocation refuses it), so +1 cannot wrap.
    topic.saturating_add(1).to_be_bytes().to_vec()
}

/// Key of an idempotency id.
pub fn dedupe_key(topic: u32, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + id.len());
    key.extend_from_slice(&topic.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// Marks the expiry index inside a topic's `dedupe` range: ids are UTF-8,
/// so no id starts with this byte.
const DEDUPE_EXPIRY: u8 = 0xFF;

/// Prefix of a topic's dedupe expiry index.
pub fn dedupe_expiry_prefix(topic: u32) -> Vec<u8> {
    let mut key = topic.to_be_bytes().to_vec();
    key.push(DEDUPE_EXPIRY);
    key
}

/// Expiry index entry: `topic · 0xFF · expires_at · id`, so expired ids are
/// found in time order without looking at the others.
pub fn dedupe_expiry_key(topic: u32, expires_at: u64, id: &[u8]) -> Vec<u8> {
    let mut key = dedupe_expiry_prefix(topic);
    key.extend_from_slice(&expires_at.to_be_bytes());
    key.extend_from_slice(id);
    key
}

/// `(expires_at, id)` of an expiry index key.
pub fn decode_dedupe_expiry_key(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.get(4) != Some(&DEDUPE_EXPIRY) {
        return None;
    }
    let at = u64::from_be_bytes(key.get(5..13)?.try_into().ok()?);
    Some((at, key.get(13..)?))
}

/// Whether a `dedupe` key is an id (not an expiry index entry).
pub fn is_dedupe_id_key(key: &[u8]) -> bool {
    key.len() > 4 && key.get(4) != Some(&DEDUPE_EXPIRY)
}

pub fn meta_topic_key(name: &str) -> Vec<u8> {
    let mut key = vec![META_TOPIC];
    key.extend_from_slice(name.as_bytes());
    key
}

pub fn meta_topic_prefix() -> Vec<u8> {
    vec![META_TOPIC]
}

pub fn meta_partition_key(topic: u32, partition: u32) -> Vec<u8> {
    let mut key = vec![META_PARTITION];
    key.extend_from_slice(&topic.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

pub fn meta_partition_prefix(topic: u32) -> Vec<u8> {
    let mut key = vec![META_PARTITION];
    key.extend_from_slice(&topic.to_be_bytes());
    key
}

pub fn meta_subscription_key(topic: u32, name: &str) -> Vec<u8> {
    let mut key = meta_subscription_prefix(topic);
    key.extend_from_slice(name.as_bytes());
    key
}

pub fn meta_subscription_prefix(topic: u32) -> Vec<u8> {
    let mut key = vec![META_SUBSCRIPTION];
    key.extend_from_slice(&topic.to_be_bytes());
    key
}

pub fn meta_counter_key(name: &str) -> Vec<u8> {
    let mut key = vec![META_COUNTER];
    key.extend_from_slice(name.as_bytes());
    key
}

/// Key of a subscription's per-partition record (`kind` = cursor or entry).
pub fn sub_key(sub: u32, kind: u8, partition: u32, offset: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..4].copy_from_slice(&sub.to_be_bytes());
    key[4] = kind;
    key[5..9].copy_from_slice(&partition.to_be_bytes());
    key[9..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// Decodes `(kind, partition, offset)` from a `sub_key`.
pub fn decode_sub_key(key: &[u8]) -> Option<(u8, u32, u64)> {
    let kind = *key.get(4)?;
    let partition = u32::from_be_bytes(key.get(5..9)?.try_into().ok()?);
    let offset = u64::from_be_bytes(key.get(9..17)?.try_into().ok()?);
    Some((kind, partition, offset))
}

/// Prefix of one kind of a subscription's records.
pub fn sub_kind_prefix(sub: u32, kind: u8) -> Vec<u8> {
    let mut key = sub.to_be_bytes().to_vec();
    key.push(kind);
    key
}

pub fn sub_start(sub: u32) -> Vec<u8> {
    sub.to_be_bytes().to_vec()
}

pub fn sub_end(sub: u32) -> Vec<u8> {
    sub.saturating_add(1).to_be_bytes().to_vec()
}

/// The smallest key strictly greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xFF: no finite upper bound; callers only pass short tagged prefixes.
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn partition_key_round_trips(t in any::<u32>(), p in any::<u32>(), o in any::<u64>()) {
            let key = partition_key(t, p, o);
            prop_assert_eq!(partition_key_position(&key), Some(o));
        }

        #[test]
        fn partition_key_order_is_numeric_order(
            a in (any::<u32>(), any::<u32>(), any::<u64>()),
            b in (any::<u32>(), any::<u32>(), any::<u64>()),
        ) {
            let ka = partition_key(a.0, a.1, a.2);
            let kb = partition_key(b.0, b.1, b.2);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn sub_key_round_trips_and_orders(
            s in any::<u32>(), k in 0u8..2, p in any::<u32>(), o in any::<u64>(), o2 in any::<u64>()
        ) {
            let key = sub_key(s, k, p, o);
            prop_assert_eq!(decode_sub_key(&key), Some((k, p, o)));
            prop_assert_eq!(key.cmp(&sub_key(s, k, p, o2)), o.cmp(&o2));
        }

        #[test]
        fn topic_range_contains_its_keys(t in 0u32..u32::MAX, p in any::<u32>(), o in any::<u64>()) {
            let key = partition_key(t, p, o);
            prop_assert!(key.as_slice() >= topic_start(t).as_slice());
            prop_assert!(key.as_slice() < topic_end(t).as_slice());
            let d = dedupe_key(t, "some-id");
            prop_assert!(d.as_slice() < topic_end(t).as_slice());
        }
    }

    #[test]
    fn prefix_end_bounds_prefix() {
        assert_eq!(prefix_end(b"T"), b"U".to_vec());
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
        let p = meta_subscription_prefix(7);
        let k = meta_subscription_key(7, "zzz");
        assert!(k.as_slice() < prefix_end(&p).as_slice());
    }
}
