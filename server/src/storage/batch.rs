//! Record batches: how a partition's log is stored (format 2). One RocksDB
//! value holds the messages one produce request appended to one partition,
//! under the key `topic · partition · base_offset`, so the write path costs
//! one key per partition a request touches instead of one per message, and
//! retention drops whole values.
//!
//! Value layout (integers big-endian):
//! `version u8 (= 2) · crc32c u32 · count u32 · last_timestamp u64 ·
//! (body_len u32 · body)*` where the CRC32C covers everything after itself
//! and each body is a message as `record.rs` lays it out. Offsets are
//! `base_offset + i`: a batch is a run of consecutive offsets (a gap in a
//! partition's offsets is simply no batch covering it).

use super::record::{self, NewMessage, RecordError, StoredMessage, RECORD_OVERHEAD};

const VERSION: u8 = 2;
const HEADER_LEN: usize = 1 + 4 + 4 + 8;

/// Builds one batch value, message by message.
#[derive(Debug)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    count: u32,
    last_timestamp: u64,
}

impl BatchBuilder {
    /// A builder with room for about `capacity` bytes of messages.
    pub fn with_capacity(capacity: usize) -> BatchBuilder {
        let mut bytes = Vec::with_capacity(HEADER_LEN + capacity);
        bytes.push(VERSION);
        bytes.extend_from_slice(&[0; HEADER_LEN - 1]);
        BatchBuilder {
            bytes,
            count: 0,
            last_timestamp: 0,
        }
    }

    /// Appends a message stamped `timestamp`; returns its stored size (the
    /// unit of byte accounting).
    pub fn push(&mut self, message: &NewMessage, timestamp: u64) -> u64 {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        record::encode_body(message, timestamp, &mut self.bytes);
        let body_len = self.bytes.len() - at - 4;
        // Bodies are bounded by max_message_bytes (≤ u32), so the cast is exact.
        self.bytes[at..at + 4].copy_from_slice(&(body_len as u32).to_be_bytes());
        self.count += 1;
        self.last_timestamp = self.last_timestamp.max(timestamp);
        (RECORD_OVERHEAD + body_len) as u64
    }

    /// Messages pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished value, its header and checksum filled in.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes[5..9].copy_from_slice(&self.count.to_be_bytes());
        self.bytes[9..17].copy_from_slice(&self.last_timestamp.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[5..]);
        self.bytes[1..5].copy_from_slice(&crc.to_be_bytes());
        self.bytes
    }
}

/// A stored batch read back: header fields and its message bodies.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    pub base: u64,
    pub count: u32,
    pub last_timestamp: u64,
    records: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Parses a batch stored at `base`, verifying its checksum when
    /// `verify` (reads handed to clients always verify; size scans for
    /// retention need not).
    pub fn parse(base: u64, bytes: &'a [u8], verify: bool) -> Result<BatchView<'a>, RecordError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordError::Malformed);
        }
        if bytes[0] != VERSION {
            return Err(RecordError::Malformed);
        }
        let crc = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if verify && crc32c::crc32c(&bytes[5..]) != crc {
            return Err(RecordError::Checksum);
        }
        let count = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[9..17]);
        Ok(BatchView {
            base,
            count,
            last_timestamp: u64::from_be_bytes(ts),
            records: &bytes[HEADER_LEN..],
        })
    }

    /// One past the last offset of the batch.
    pub fn end(&self) -> u64 {
        self.base + u64::from(self.count)
    }

    /// `(offset, body)` of every message, in offset order.
    pub fn bodies(&self) -> Bodies<'a> {
        Bodies {
            next: self.base,
            end: self.end(),
            rest: self.records,
        }
    }

    /// Decodes the messages with offsets in `[from, end)`.
    pub fn messages(
        &self,
        from: u64,
        end: u64,
    ) -> impl Iterator<Item = Result<StoredMessage, RecordError>> + 'a {
        self.bodies()
            .skip_while(move |b| b.as_ref().is_ok_and(|(o, _)| *o < from))
            .take_while(move |b| b.as_ref().map_or(true, |(o, _)| *o < end))
            .map(|b| b.and_then(|(offset, body)| record::decode_body(offset, body)))
    }
}

/// Iterator over the bodies of a batch.
pub struct Bodies<'a> {
    next: u64,
    end: u64,
    rest: &'a [u8],
}

impl<'a> Iterator for Bodies<'a> {
    type Item = Result<(u64, &'a [u8]), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let offset = self.next;
        self.next += 1;
        let Some(len) = self.rest.get(..4) else {
            self.next = self.end;
            return Some(Err(RecordError::Malformed));
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(body) = self.rest.get(4..4 + len) else {
            self.next = self.end;
            return Some(Err(RecordError::Malformed));
        };
        self.rest = &self.rest[4 + len..];
        Some(Ok((offset, body)))
    }
}

/// The timestamp and stored size of a body.
pub fn body_facts(body: &[u8]) -> Option<(u64, u64)> {
    let ts = record::peek_body_timestamp(body)?;
    Some((ts, (RECORD_OVERHEAD + body.len()) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(n: u64) -> NewMessage {
        NewMessage {
            key: n.is_multiple_of(2).then(|| format!("k{n}")),
            headers: vec![("h".into(), n.to_string())],
            json: n.is_multiple_of(3),
            payload: n.to_string().into_bytes(),
            deliver_at: n * 7,
        }
    }

    #[test]
    fn round_trip_with_offsets_and_sizes() {
        let mut b = BatchBuilder::with_capacity(64);
        let mut sizes = Vec::new();
        for n in 0..5 {
            sizes.push(b.push(&msg(n), 100 + n));
        }
        let bytes = b.finish();
        let view = BatchView::parse(40, &bytes, true).unwrap();
        assert_eq!((view.base, view.count, view.end()), (40, 5, 45));
        assert_eq!(view.last_timestamp, 104);
        let all: Vec<_> = view.messages(0, u64::MAX).map(|m| m.unwrap()).collect();
        assert_eq!(all.len(), 5);
        for (i, m) in all.iter().enumerate() {
            let n = i as u64;
            let want = msg(n);
            assert_eq!(m.offset, 40 + n);
            assert_eq!(m.timestamp, 100 + n);
            assert_eq!(
                (&m.key, &m.headers, m.json),
                (&want.key, &want.headers, want.json)
            );
            assert_eq!((&m.payload, m.deliver_at), (&want.payload, want.deliver_at));
            assert_eq!(m.stored_bytes, sizes[i]);
            assert_eq!(m.stored_bytes as usize, want.encoded_len());
        }
        let some: Vec<u64> = view.messages(42, 44).map(|m| m.unwrap().offset).collect();
        assert_eq!(some, vec![42, 43]);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let mut b = BatchBuilder::with_capacity(64);
        b.push(&msg(1), 5);
        b.push(&msg(2), 6);
        let bytes = b.finish();
        for i in 0..bytes.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                let read = BatchView::parse(0, &bad, true)
                    .and_then(|v| v.messages(0, u64::MAX).collect::<Result<Vec<_>, _>>());
                assert!(read.is_err(), "flip {bit:#x} at byte {i} not detected");
            }
        }
        assert!(BatchView::parse(0, &bytes[..10], true).is_err());
    }

    #[test]
    fn truncated_records_are_malformed_not_panics() {
        let mut b = BatchBuilder::with_capacity(64);
        b.push(&msg(1), 5);
        let mut bytes = b.finish();
        bytes.truncate(bytes.len() - 3);
        let view = BatchView::parse(0, &bytes, false).unwrap();
        assert!(view.messages(0, 10).any(|m| m.is_err()));
    }

    proptest! {
        #[test]
        fn arbitrary_batches_round_trip(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            base in 0u64..u64::MAX / 2,
        ) {
            let mut b = BatchBuilder::with_capacity(0);
            for p in &payloads {
                b.push(&NewMessage { payload: p.clone(), ..NewMessage::default() }, 9);
            }
            let bytes = b.finish();
            let view = BatchView::parse(base, &bytes, true).unwrap();
            let read: Vec<_> = view.messages(0, u64::MAX).map(|m| m.unwrap()).collect();
            prop_assert_eq!(read.len(), payloads.len());
            for (i, m) in read.iter().enumerate() {
                prop_assert_eq!(m.offset, base + i as u64);
                prop_assert_eq!(&m.payload, &payloads[i]);
            }
        }
    }
}
