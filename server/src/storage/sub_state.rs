//! Durable per-message state of a subscription above its cursor: the sparse
//! exceptions (acked out of order, as runs of consecutive offsets, one entry
//! per run; delivered with attempts; waiting for a retry; dead-lettered).
//! Everything below the cursor is settled and has no
//! entry, so the state grows with messages in flight, not with the backlog.

/// What is known about one message of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntryState {
    /// Acked above the cursor (out of order). Written before runs existed;
    /// read as a run of one.
    Acked,
    /// Acked above the cursor together with every following offset up to
    /// `end` (exclusive): one entry for a run of out-of-order acks, so an
    /// ack of a pull of 100 messages is one write, not 100.
    AckedRun { end: u64 },
    /// Delivered `attempts` times and not settled: after a restart it counts
    /// as an expired lease; with `due_at` it waits for a retry.
    Pending,
    /// Copied to the dead-letter topic and settled.
    DeadLettered,
    /// Failed for the last time: to be copied to the dead-letter topic
    /// (done again after a restart if the copy had not happened).
    DeadLettering,
    /// A dead letter (record of the subscription's dead letters) that was
    /// made deliverable again.
    Redriven,
    /// A dead letter removed from the waiting ones without redelivery.
    Purged,
}

/// One message's durable subscription state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubEntry {
    pub state: EntryState,
    /// Deliveries so far.
    pub attempts: u32,
    /// Not deliverable before this time (retry backoff), 0 = now.
    pub due_at: u64,
    /// Reason of the last failure.
    pub reason: String,
}

impl SubEntry {
    /// A settled entry (`Acked`, `AckedRun`): no attempts, no retry time,
    /// no reason.
    pub fn settled(state: EntryState) -> SubEntry {
        SubEntry {
            state,
            attempts: 0,
            due_at: 0,
            reason: String::new(),
        }
    }

    /// `[state][end, runs only][attempts][due_at][reason]`, integers
    /// big-endian.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.reason.len());
        out.push(match self.state {
            EntryState::Acked => 0,
            EntryState::Pending => 1,
            EntryState::DeadLettered => 2,
            EntryState::DeadLettering => 3,
            EntryState::Redriven => 4,
            EntryState::Purged => 5,
            EntryState::AckedRun { end } => {
                out.push(6);
                out.extend_from_slice(&end.to_be_bytes());
                return self.encode_rest(out);
            }
        });
        self.encode_rest(out)
    }

    fn encode_rest(&self, mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&self.attempts.to_be_bytes());
        out.extend_from_slice(&self.due_at.to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let (state, bytes) = match bytes.first()? {
            0 => (EntryState::Acked, bytes),
            1 => (EntryState::Pending, bytes),
            2 => (EntryState::DeadLettered, bytes),
            3 => (EntryState::DeadLettering, bytes),
            4 => (EntryState::Redriven, bytes),
            5 => (EntryState::Purged, bytes),
            6 => {
                let end = u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?);
                // The rest is laid out as for the other states.
                (EntryState::AckedRun { end }, bytes.get(8..)?)
            }
            _ => return None,
        };
        Some(SubEntry {
            state,
            attempts: u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?),
            due_at: u64::from_be_bytes(bytes.get(5..13)?.try_into().ok()?),
            reason: String::from_utf8(bytes.get(13..)?.to_vec()).ok()?,
        })
    }
}

/// A message parked on disk: its state and, when it waits behind its key,
/// the key's hash (else it waits for `entry.due_at`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Parked {
    pub partition: u32,
    pub offset: u64,
    pub entry: SubEntry,
    /// The message's key hash (key ordering), if any.
    pub key: Option<u64>,
    /// Waits behind its key (indexed by key), else for `entry.due_at`.
    pub behind_key: bool,
}

impl Parked {
    /// Value of the `SUB_PARKED` record: a flag and the key, then the entry.
    pub(super) fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 13 + self.entry.reason.len());
        let flags = u8::from(self.behind_key) << 1;
        match self.key {
            Some(k) => {
                out.push(flags | 1);
                out.extend_from_slice(&k.to_be_bytes());
            }
            None => out.push(flags),
        }
        out.extend_from_slice(&self.entry.encode());
        out
    }

    pub(super) fn decode_value(partition: u32, offset: u64, bytes: &[u8]) -> Option<Parked> {
        let flags = *bytes.first()?;
        if flags > 3 {
            return None;
        }
        let (key, rest) = if flags & 1 == 1 {
            (
                Some(u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?)),
                bytes.get(9..)?,
            )
        } else {
            (None, bytes.get(1..)?)
        };
        let behind_key = flags & 2 == 2;
        if behind_key && key.is_none() {
            return None;
        }
        Some(Parked {
            partition,
            offset,
            entry: SubEntry::decode(rest)?,
            key,
            behind_key,
        })
    }
}

/// How many messages a subscription has parked (loaded at startup; the
/// records themselves stay on disk).
#[derive(Debug, Default, Clone)]
pub struct ParkedCounts {
    /// Per partition: parked waiting for a due time.
    pub due: Vec<(u32, u64)>,
    /// Per key hash: parked behind the key.
    pub keys: Vec<(u64, u64)>,
    /// Keys held by a message parked by time: `(key, partition, offset)`
    /// (its followers wait for it).
    pub holders: Vec<(u64, u32, u64)>,
}

/// A subscription's state as loaded at startup.
#[derive(Debug, Default)]
pub struct LoadedSubState {
    /// (partition, cursor)
    pub cursors: Vec<(u32, u64)>,
    /// (partition, offset, entry), in key order.
    pub entries: Vec<(u32, u64, SubEntry)>,
    /// (partition, delivered-up-to mark)
    pub delivered: Vec<(u32, u64)>,
    /// Messages parked on disk.
    pub parked: ParkedCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        for state in [
            EntryState::Acked,
            EntryState::Pending,
            EntryState::DeadLettered,
            EntryState::DeadLettering,
            EntryState::Redriven,
            EntryState::Purged,
            EntryState::AckedRun { end: 0 },
            EntryState::AckedRun { end: u64::MAX - 1 },
        ] {
            let e = SubEntry {
                state,
                attempts: 3,
                due_at: 77,
                reason: "boom".into(),
            };
            assert_eq!(SubEntry::decode(&e.encode()), Some(e));
        }
        assert_eq!(SubEntry::decode(&[9, 0]), None);
        assert_eq!(
            SubEntry::decode(&[6, 0, 0, 0]),
            None,
            "a run's end cut short"
        );
    }
}
