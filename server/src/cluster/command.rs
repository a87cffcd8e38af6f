//! What the entries of every group carry (openraft's application data) and
//! what applying one answers. The metadata group takes [`Command::Meta`];
//! a partition group takes [`Command::Append`] (one record batch produced
//! to its partition) and [`Command::Subscriptions`] (changes of the
//! subscriptions reading it, made by the node serving each).
//!
//! An append entry names its batch rather than holding it: the batch rides
//! with the entry only while it is proposed or sent to a follower, and the
//! log store moves it into the partition's batches (where a single node
//! keeps them) as it appends the entry, so the log holds every message
//! once (see `log_store.rs`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::metadata::{MetaCommand, MetaResponse};
use crate::broker::subscription::state::Change;

/// An entry's application data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A change of the cluster's metadata (metadata group).
    Meta(MetaCommand),
    /// A record batch appended to a partition (its partition group).
    Append(Append),
    /// Changes of subscriptions reading a partition (its partition group).
    Subscriptions(Vec<SubUpdate>),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Meta(c) => c.fmt(f),
            Command::Append(a) => write!(f, "append {} messages", a.count),
            Command::Subscriptions(u) => write!(f, "{} subscription updates", u.len()),
        }
    }
}

/// One record batch appended to a partition. The leader stamps every
/// field but `base` when it proposes; `base` (the batch's first offset)
/// is assigned by each replica's log store as it appends the entry, from
/// the entries before it, so every replica assigns the same offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    /// First offset; `None` only until the entry is in a log.
    #[serde(default)]
    pub base: Option<u64>,
    pub count: u32,
    /// Stored size of its messages (the unit of byte accounting).
    pub bytes: u64,
    pub first_timestamp: u64,
    pub last_timestamp: u64,
    /// Idempotency ids with the position of their message in the batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<(u32, String)>,
    /// When the ids expire (the leader's clock plus the topic's window).
    #[serde(default)]
    pub ids_expire_at: u64,
    /// The batch, in the stored batch layout, while the entry travels
    /// (proposal, replication); `None` in the log.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "body")]
    pub batch: Option<Vec<u8>>,
}

/// Changes of one subscription on one partition, made by the node that
/// serves it under `claim` (see `cluster/subscriptions.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubUpdate {
    /// The subscription's id (the same on every node).
    pub sub: u32,
    /// The claim of the serving node; updates of an older claim than the
    /// newest applied are refused.
    pub claim: u64,
    /// Set on a claim: the cursor to start from when the partition has
    /// none for the subscription yet (its start position at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// The changes, in the order the serving node made them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// What applying an entry answers its proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Blank and membership entries.
    #[default]
    Done,
    Meta(MetaResponse),
    /// The batch is committed and visible from `base`.
    Appended {
        base: u64,
    },
    /// Per update of a [`Command::Subscriptions`]: applied (`false`: its
    /// claim was superseded, nothing written).
    Subscriptions(Vec<bool>),
    /// The entry does not belong in this group (why).
    Refused(String),
}

impl Reply {
    /// The answer to a metadata command.
    pub fn into_meta(self) -> MetaResponse {
        match self {
            Reply::Meta(response) => response,
            Reply::Refused(why) => MetaResponse::Refused(why),
            Reply::Done | Reply::Appended { .. } | Reply::Subscriptions(_) => MetaResponse::Done,
        }
    }
}

/// A batch travels as base64 text inside the JSON the nodes exchange.
mod body {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(body: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match body {
            Some(bytes) => s.serialize_some(&B64.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => B64
                .decode(text.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_travels_as_base64_and_is_absent_from_stubs() {
        let mut append = Append {
            base: None,
            count: 2,
            bytes: 40,
            first_timestamp: 1,
            last_timestamp: 2,
            ids: vec![(1, "a".into())],
            ids_expire_at: 9,
            batch: Some(vec![0, 1, 2, 255]),
        };
        let text = serde_json::to_string(&Command::Append(append.clone())).unwrap();
        assert!(text.contains("AAEC/w=="), "{text}");
        let back: Command = serde_json::from_str(&text).unwrap();
        assert_eq!(back, Command::Append(append.clone()));
        append.batch = None;
        let stub = serde_json::to_string(&append).unwrap();
        assert!(!stub.contains("batch"), "{stub}");
        assert_eq!(serde_json::from_str::<Append>(&stub).unwrap(), append);
    }
}
