//! The stored form of one message: its *body*, as it sits inside a record
//! batch (`batch.rs`, whose CRC32C covers it), and the format-1 record (one
//! key per message, the body behind its own CRC32C) that older data
//! directories hold until they are migrated (`migrate.rs`).
//!
//! Body layout (integers big-endian):
//! `flags u8 · timestamp u64 · deliver_at u64 · key_len u32 (0 = no key,
//! else len+1) · key · header_count u16 · (name_len u16 · name · value_len
//! u32 · value)* · payload`. A format-1 record is `crc u32 · body`.

use thiserror::Error;

const FLAG_JSON: u8 = 1;
/// Fixed part of a body.
const BODY_FIXED_LEN: usize = 1 + 8 + 8 + 4 + 2;
/// What one message costs in the store besides its body: its length prefix
/// in a batch (the CRC of a format-1 record), so both formats account the
/// same size.
pub const RECORD_OVERHEAD: usize = 4;
const FIXED_LEN: usize = RECORD_OVERHEAD + BODY_FIXED_LEN;

/// A message as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub offset: u64,
    pub timestamp: u64,
    /// Not deliverable to queue subscriptions before this time (0 = no delay).
    pub deliver_at: u64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// True when `payload` is JSON text.
    pub json: bool,
    pub payload: Vec<u8>,
    /// Size of the encoded record, the unit of byte accounting.
    pub stored_bytes: u64,
}

impl StoredMessage {
    /// The message as a producer would have supplied it (copies).
    pub fn as_new(&self) -> NewMessage {
        NewMessage {
            key: self.key.clone(),
            headers: self.headers.clone(),
            json: self.json,
            payload: self.payload.clone(),
            deliver_at: self.deliver_at,
        }
    }
}

/// What the producer supplies; offset and timestamp come from the broker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub json: bool,
    pub payload: Vec<u8>,
    pub deliver_at: u64,
}

impl NewMessage {
    /// The encoded size this message will have.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + self.key.as_ref().map_or(0, String::len)
            + self
                .headers
                .iter()
                .map(|(n, v)| 6 + n.len() + v.len())
                .sum::<usize>()
            + self.payload.len()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record checksum mismatch")]
    Checksum,
    #[error("record truncated or malformed")]
    Malformed,
}

/// Encodes a format-1 record (legacy; tests build old data directories).
#[cfg(test)]
pub fn encode(message: &NewMessage, timestamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.encoded_len());
    out.extend_from_slice(&[0; 4]);
    encode_body(message, timestamp, &mut out);
    let crc = crc32c::crc32c(&out[4..]);
    out[..4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Appends the body of a message stamped `timestamp` to `out`.
pub(super) fn encode_body(message: &NewMessage, timestamp: u64, out: &mut Vec<u8>) {
    out.push(if message.json { FLAG_JSON } else { 0 });
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&message.deliver_at.to_be_bytes());
    match &message.key {
        // Keys are bounded by max_message_bytes (≤ u32), so the cast is exact.
        Some(key) => {
            out.extend_from_slice(&(key.len() as u32 + 1).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
        }
        None => out.extend_from_slice(&0u32.to_be_bytes()),
    }
    out.extend_from_slice(&(message.headers.len() as u16).to_be_bytes());
    for (name, value) in &message.headers {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(&message.payload);
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < n {
            return Err(RecordError::Malformed);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self, n: usize) -> Result<String, RecordError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| RecordError::Malformed)
    }
}

/// Decodes and verifies a format-1 record.
pub fn decode(offset: u64, bytes: &[u8]) -> Result<StoredMessage, RecordError> {
    let mut cur = Cursor { bytes };
    let crc = cur.u32()?;
    if crc32c::crc32c(cur.bytes) != crc {
        return Err(RecordError::Checksum);
    }
    decode_body(offset, cur.bytes)
}

/// Decodes a body (its batch's CRC already verified).
pub(super) fn decode_body(offset: u64, bytes: &[u8]) -> Result<StoredMessage, RecordError> {
    let mut cur = Cursor { bytes };
    let flags = cur.u8()?;
    let timestamp = cur.u64()?;
    let deliver_at = cur.u64()?;
    let key = match cur.u32()? {
        0 => None,
        n => Some(cur.string(n as usize - 1)?),
    };
    let count = cur.u16()?;
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let n = cur.u16()? as usize;
        let name = cur.string(n)?;
        let v = cur.u32()? as usize;
        headers.push((name, cur.string(v)?));
    }
    Ok(StoredMessage {
        offset,
        timestamp,
        deliver_at,
        key,
        headers,
        json: flags & FLAG_JSON != 0,
        payload: cur.bytes.to_vec(),
        stored_bytes: (RECORD_OVERHEAD + bytes.len()) as u64,
    })
}

/// Reads only the timestamp of a body (retention and time scans).
pub(super) fn peek_body_timestamp(body: &[u8]) -> Option<u64> {
    let b: [u8; 8] = body.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> NewMessage {
        NewMessage {
            key: Some("customer-7".into()),
            headers: vec![("trace".into(), "abc".into())],
            json: true,
            payload: br#"{"a":1}"#.to_vec(),
            deliver_at: 99,
        }
    }

    #[test]
    fn round_trip_and_size() {
        let m = sample();
        let bytes = encode(&m, 1234);
        assert_eq!(bytes.len(), m.encoded_len());
        let d = decode(7, &bytes).unwrap();
        assert_eq!(d.offset, 7);
        assert_eq!(d.timestamp, 1234);
        assert_eq!(peek_body_timestamp(&bytes[4..]), Some(1234));
        assert_eq!(d.deliver_at, 99);
        assert_eq!(d.key.as_deref(), Some("customer-7"));
        assert_eq!(d.headers, m.headers);
        assert!(d.json);
        assert_eq!(d.payload, m.payload);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let bytes = encode(&sample(), 1);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(0, &bad).is_err(), "flip at byte {i} not detected");
        }
        assert_eq!(decode(0, &bytes[..3]), Err(RecordError::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_messages_round_trip(
            key in proptest::option::of(".{0,20}"),
            headers in proptest::collection::vec((".{0,10}", ".{0,10}"), 0..4),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            ts in any::<u64>(),
        ) {
            let m = NewMessage { key, headers, json: false, payload, deliver_at: 0 };
            let d = decode(1, &encode(&m, ts)).unwrap();
            prop_assert_eq!(d.key, m.key);
            prop_assert_eq!(d.headers, m.headers);
            prop_assert_eq!(d.payload, m.payload);
            prop_assert_eq!(d.timestamp, ts);
        }
    }
}
