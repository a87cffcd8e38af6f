//! The batch accumulator of the [`Producer`](crate::Producer): collects
//! serialized messages into one produce body — JSON or binary, as its
//! [`Framing`] says — until a batch is full by count or bytes, and says
//! when its linger deadline falls.
//!
//! Pure data: no I/O, no clock reads (`now` is a parameter), so the batching
//! rules are tested directly. Sending and timers belong to `task.rs`.

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;
use weir_protocol::binary::{Encoder, HEADER_LEN};

use crate::encoding::COUNT_FIELD;
use crate::Encoding;

/// How the messages of a batch make one produce body.
#[derive(Debug, Clone)]
struct Framing {
    /// Bytes before the first message.
    prefix: Vec<u8>,
    /// Between two messages.
    separator: &'static [u8],
    /// After the last message.
    suffix: &'static [u8],
    /// Leading bytes of each message that are not copied (the header of a
    /// one-message binary body: its record is what the batch takes).
    skip: usize,
    /// Where the closed body holds its message count (u32 LE), if it does.
    count_at: Option<Range<usize>>,
}

impl Framing {
    /// `{"messages":[` m1 `,` m2 `]}` for JSON; for binary, a produce
    /// header then the records of one-message produce bodies, the count
    /// written into the header when the batch closes.
    fn new(encoding: Encoding) -> Framing {
        match encoding {
            Encoding::Json => Framing {
                prefix: b"{\"messages\":[".to_vec(),
                separator: b",",
                suffix: b"]}",
                skip: 0,
                count_at: None,
            },
            Encoding::Binary => Framing {
                prefix: Encoder::produce(0).finish(),
                separator: b"",
                suffix: b"",
                skip: HEADER_LEN,
                count_at: Some(COUNT_FIELD),
            },
        }
    }

    /// The part of `message` that goes into a batch.
    fn unit<'m>(&self, message: &'m [u8]) -> &'m [u8] {
        message.get(self.skip..).unwrap_or_default()
    }
}

/// When a batch is closed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most messages per batch (at least 1).
    pub max_messages: usize,
    /// Most bytes of a produce body; a single larger message still travels,
    /// alone in its batch.
    pub max_bytes: usize,
    /// How long the first message of a batch may wait for company.
    pub linger: Duration,
}

/// A closed batch: a complete `{"messages":[...]}` body and one tag per
/// message, in body order.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    pub body: Vec<u8>,
    pub tags: Vec<T>,
}

/// The batch being filled.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    limits: Limits,
    framing: Framing,
    body: Vec<u8>,
    tags: Vec<T>,
    deadline: Option<Instant>,
}

impl<T> Accumulator<T> {
    /// An accumulator of bodies in `encoding`; each message pushed must be
    /// serialized in it (a JSON object, or a one-message binary produce
    /// body).
    pub fn new(limits: Limits, encoding: Encoding) -> Self {
        Accumulator {
            limits: Limits {
                max_messages: limits.max_messages.max(1),
                ..limits
            },
            framing: Framing::new(encoding),
            body: Vec::new(),
            tags: Vec::new(),
            deadline: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Adds one serialized message tagged with `tag`. When the message
    /// does not fit in the current batch's byte budget, that batch is
    /// closed first and returned; the message starts the next one.
    pub fn push(&mut self, message: &[u8], tag: T, now: Instant) -> Option<Batch<T>> {
        let unit = self.framing.unit(message);
        let closed = if !self.is_empty() && self.size_with(unit.len()) > self.limits.max_bytes {
            self.take()
        } else {
            None
        };
        if self.is_empty() {
            self.body.extend_from_slice(&self.framing.prefix);
            self.deadline = Some(now + self.limits.linger);
        } else {
            self.body.extend_from_slice(self.framing.separator);
        }
        self.body.extend_from_slice(unit);
        self.tags.push(tag);
        closed
    }

    /// Closes the current batch if it reached the message or byte limit.
    pub fn take_if_full(&mut self) -> Option<Batch<T>> {
        let full = self.tags.len() >= self.limits.max_messages
            || self.body.len() + self.framing.suffix.len() >= self.limits.max_bytes;
        if full {
            self.take()
        } else {
            None
        }
    }

    /// When the current batch must be sent even if not full.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Closes the current batch, full or not; `None` when empty.
    pub fn take(&mut self) -> Option<Batch<T>> {
        if self.is_empty() {
            return None;
        }
        self.body.extend_from_slice(self.framing.suffix);
        if let Some(at) = &self.framing.count_at {
            // Batches hold far fewer than 2^32 messages (server limit 100,000).
            let count = u32::try_from(self.tags.len()).unwrap_or(u32::MAX);
            if let Some(field) = self.body.get_mut(at.clone()) {
                field.copy_from_slice(&count.to_le_bytes());
            }
        }
        self.deadline = None;
        Some(Batch {
            body: std::mem::take(&mut self.body),
            tags: std::mem::take(&mut self.tags),
        })
    }

    /// The body length if a message of `len` bytes (as copied) were added
    /// and the batch closed.
    fn size_with(&self, len: usize) -> usize {
        let framing = &self.framing;
        if self.is_empty() {
            framing.prefix.len() + len + framing.suffix.len()
        } else {
            self.body.len() + framing.separator.len() + len + framing.suffix.len()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn limits(max_messages: usize, max_bytes: usize) -> Limits {
        Limits {
            max_messages,
            max_bytes,
            linger: Duration::from_millis(10),
        }
    }

    /// An accumulator of JSON bodies.
    fn json<T>(max_messages: usize, max_bytes: usize) -> Accumulator<T> {
        Accumulator::new(limits(max_messages, max_bytes), Encoding::Json)
    }

    fn values(batch: &Batch<u32>) -> Vec<serde_json::Value> {
        let body: serde_json::Value = serde_json::from_slice(&batch.body).expect("valid JSON");
        body["messages"]
            .as_array()
            .expect("messages array")
            .iter()
            .map(|m| m["value"].clone())
            .collect()
    }

    fn message(i: u32) -> Vec<u8> {
        format!("{{\"value\":{i}}}").into_bytes()
    }

    #[test]
    fn closes_at_the_message_limit_with_a_valid_body() {
        let now = Instant::now();
        let mut acc = json(3, 1 << 20);
        for i in 0..2 {
            assert!(acc.push(&message(i), i, now).is_none());
            assert!(acc.take_if_full().is_none());
        }
        assert!(acc.push(&message(2), 2, now).is_none());
        let batch = acc.take_if_full().expect("full at 3 messages");
        assert_eq!(batch.tags, vec![0, 1, 2]);
        assert_eq!(values(&batch), vec![0, 1, 2]);
        assert!(acc.is_empty());
        assert_eq!(acc.deadline(), None);
    }

    #[test]
    fn a_message_that_does_not_fit_closes_the_batch_before_it() {
        let now = Instant::now();
        // Body of two 12-byte messages: 13 + 12 + 1 + 12 + 2 = 40 bytes.
        let mut acc = json(100, 40);
        assert!(acc.push(&message(10), 0, now).is_none());
        assert!(acc.push(&message(11), 1, now).is_none());
        let batch = acc.take_if_full().expect("exactly at the byte limit");
        assert_eq!(batch.body.len(), 40);

        let mut acc = json(100, 39);
        assert!(acc.push(&message(10), 0, now).is_none());
        assert!(acc.take_if_full().is_none());
        let closed = acc.push(&message(11), 1, now).expect("second does not fit");
        assert_eq!(closed.tags, vec![0]);
        assert_eq!(values(&closed), vec![10]);
        assert!(closed.body.len() <= 39);
        assert_eq!(acc.take().expect("second is pending").tags, vec![1]);
    }

    #[test]
    fn an_oversized_message_travels_alone() {
        let now = Instant::now();
        let mut acc = json(100, 20);
        assert!(acc.push(&message(1), 0, now).is_none());
        let big = format!("{{\"value\":\"{}\"}}", "x".repeat(50)).into_bytes();
        let closed = acc.push(&big, 1, now).expect("first batch closed");
        assert_eq!(closed.tags, vec![0]);
        let alone = acc.take_if_full().expect("oversized batch is full at once");
        assert_eq!(alone.tags, vec![1]);
        assert!(acc.is_empty());
    }

    #[test]
    fn linger_counts_from_the_first_message_of_a_batch() {
        let t0 = Instant::now();
        let mut acc = json(100, 1 << 20);
        assert_eq!(acc.deadline(), None);
        acc.push(&message(0), 0, t0);
        acc.push(&message(1), 1, t0 + Duration::from_millis(7));
        assert_eq!(acc.deadline(), Some(t0 + Duration::from_millis(10)));
        acc.take();
        let t1 = t0 + Duration::from_millis(20);
        acc.push(&message(2), 2, t1);
        assert_eq!(acc.deadline(), Some(t1 + Duration::from_millis(10)));
    }

    /// A one-message binary body: header (8 bytes) and a 14-byte record
    /// (length 4, flags 1, header count 2, value 7).
    fn binary_message(i: u8) -> Vec<u8> {
        use crate::ProduceMessageExt;
        let message = weir_protocol::ProduceMessage::bytes(&[i; 7]);
        crate::encoding::encode_message(message).expect("encodes")
    }

    #[test]
    fn binary_batches_are_one_header_and_every_record() {
        use weir_protocol::binary::decode_produce;
        let now = Instant::now();
        let mut acc = Accumulator::new(limits(3, 1 << 20), Encoding::Binary);
        for i in 0..3 {
            assert_eq!(binary_message(i).len(), 8 + 14);
            assert!(acc.push(&binary_message(i), u32::from(i), now).is_none());
        }
        let batch = acc.take_if_full().expect("full at 3 messages");
        assert_eq!(batch.body.len(), 8 + 3 * 14);
        let records = decode_produce(&batch.body).expect("a valid produce body");
        let values: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, vec![vec![0; 7], vec![1; 7], vec![2; 7]]);

        // The byte budget counts the records, not each message's header.
        let mut acc = Accumulator::new(limits(100, 8 + 2 * 14), Encoding::Binary);
        acc.push(&binary_message(0), 0, now);
        assert!(acc.push(&binary_message(1), 1, now).is_none());
        let batch = acc.take_if_full().expect("exactly at the byte limit");
        assert_eq!(decode_produce(&batch.body).expect("valid").len(), 2);
        acc.push(&binary_message(2), 2, now);
        let closed = acc.push(&binary_message(3), 3, now);
        assert!(closed.is_none(), "a fresh batch has room for two");
        acc.push(&binary_message(4), 4, now)
            .expect("the third does not fit");
    }

    #[test]
    fn taking_an_empty_batch_yields_nothing() {
        let mut acc: Accumulator<u32> = Accumulator::new(limits(0, 0), Encoding::Json);
        assert!(acc.take().is_none());
        assert!(acc.take_if_full().is_none());
        // A zero message limit is treated as 1, never as "never full".
        acc.push(&message(0), 0, Instant::now());
        assert_eq!(acc.take_if_full().expect("full").tags, vec![0]);
    }
}
