//! The batch accumulator of the [`Producer`](crate::Producer): collects
//! serialized messages into one produce body until a batch is full by count
//! or bytes, and says when its linger deadline falls.
//!
//! Pure data: no I/O, no clock reads (`now` is a parameter), so the batching
//! rules are tested directly. Sending and timers belong to `task.rs`.

use std::time::Duration;

use tokio::time::Instant;

const PREFIX: &[u8] = b"{\"messages\":[";
const SUFFIX: &[u8] = b"]}";

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
    body: Vec<u8>,
    tags: Vec<T>,
    deadline: Option<Instant>,
}

impl<T> Accumulator<T> {
    pub fn new(limits: Limits) -> Self {
        Accumulator {
            limits: Limits {
                max_messages: limits.max_messages.max(1),
                ..limits
            },
            body: Vec::new(),
            tags: Vec::new(),
            deadline: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Adds one serialized message (a JSON object) tagged with `tag`. When
    /// the message does not fit in the current batch's byte budget, that
    /// batch is closed first and returned; the message starts the next one.
    pub fn push(&mut self, message: &[u8], tag: T, now: Instant) -> Option<Batch<T>> {
        let closed = if !self.is_empty() && self.size_with(message.len()) > self.limits.max_bytes {
            self.take()
        } else {
            None
        };
        if self.is_empty() {
            self.body.extend_from_slice(PREFIX);
            self.deadline = Some(now + self.limits.linger);
        } else {
            self.body.push(b',');
        }
        self.body.extend_from_slice(message);
        self.tags.push(tag);
        closed
    }

    /// Closes the current batch if it reached the message or byte limit.
    pub fn take_if_full(&mut self) -> Option<Batch<T>> {
        let full = self.tags.len() >= self.limits.max_messages
            || self.body.len() + SUFFIX.len() >= self.limits.max_bytes;
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
        self.body.extend_from_slice(SUFFIX);
        self.deadline = None;
        Some(Batch {
            body: std::mem::take(&mut self.body),
            tags: std::mem::take(&mut self.tags),
        })
    }

    /// The body length if a message of `len` bytes were added and the batch closed.
    fn size_with(&self, len: usize) -> usize {
        if self.is_empty() {
            PREFIX.len() + len + SUFFIX.len()
        } else {
            self.body.len() + 1 + len + SUFFIX.len()
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
        let mut acc = Accumulator::new(limits(3, 1 << 20));
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
        let mut acc = Accumulator::new(limits(100, 40));
        assert!(acc.push(&message(10), 0, now).is_none());
        assert!(acc.push(&message(11), 1, now).is_none());
        let batch = acc.take_if_full().expect("exactly at the byte limit");
        assert_eq!(batch.body.len(), 40);

        let mut acc = Accumulator::new(limits(100, 39));
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
        let mut acc = Accumulator::new(limits(100, 20));
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
        let mut acc = Accumulator::new(limits(100, 1 << 20));
        assert_eq!(acc.deadline(), None);
        acc.push(&message(0), 0, t0);
        acc.push(&message(1), 1, t0 + Duration::from_millis(7));
        assert_eq!(acc.deadline(), Some(t0 + Duration::from_millis(10)));
        acc.take();
        let t1 = t0 + Duration::from_millis(20);
        acc.push(&message(2), 2, t1);
        assert_eq!(acc.deadline(), Some(t1 + Duration::from_millis(10)));
    }

    #[test]
    fn taking_an_empty_batch_yields_nothing() {
        let mut acc: Accumulator<u32> = Accumulator::new(limits(0, 0));
        assert!(acc.take().is_none());
        assert!(acc.take_if_full().is_none());
        // A zero message limit is treated as 1, never as "never full".
        acc.push(&message(0), 0, Instant::now());
        assert_eq!(acc.take_if_full().expect("full").tags, vec![0]);
    }
}
