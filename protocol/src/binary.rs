//! The binary batch encoding, `application/vnd.weir.batch`: the compact
//! alternative to JSON for producing and consuming (no JSON parsing, no
//! base64; values are raw bytes). JSON stays the default.
//!
//! Every integer is little-endian; every string is UTF-8.
//!
//! A body (or a WebSocket binary frame) is a header and `count` records:
//!
//! | bytes | field |
//! | --- | --- |
//! | 2 | magic `0x57 0x42` (`"WB"`) |
//! | 1 | version, `1` |
//! | 1 | kind: `1` produce request, `2` messages (read and pull responses, binary delivery frames of a subscription socket), `3` WebSocket publish frame, `4` produce results (the answer to a produce request that asked for this encoding) |
//! | 4 | count: records that follow (u32) |
//! | … | kind 3 only: `request_id_len` u16, `request_id` |
//!
//! A **produce record** (kind 1 and 3):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | length of the rest of the record (u32) |
//! | 1 | flags: `0x01` key, `0x02` value is JSON text, `0x04` partition, `0x08` id, `0x10` delay_ms, `0x20` deliver_at; other bits 0 |
//! | 4 | partition (u32), if `0x04` |
//! | 8 | delay_ms or deliver_at (u64), if `0x10` or `0x20` (not both) |
//! | 4 + n | key: length (u32), bytes, if `0x01` |
//! | 2 + n | id: length (u16), bytes, if `0x08` |
//! | 2 | header count (u16), then per header: name length (u16), name, value length (u32), value |
//! | rest | the value: raw bytes (or JSON text with `0x02`) |
//!
//! A **message record** (kind 2):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | length of the rest of the record (u32) |
//! | 1 | flags: `0x01` key, `0x02` value is JSON text, `0x04` a delivery (ack id and attempt follow) |
//! | 4 | partition (u32) |
//! | 8 | offset (u64) |
//! | 8 | timestamp, ms since the Unix epoch (u64) |
//! | 4 + 2 + n | if `0x04`: attempt (u32), ack id length (u16), ack id |
//! | 4 + n | key: length (u32), bytes, if `0x01` |
//! | 2 | header count (u16), then headers as above |
//! | rest | the value |
//!
//! A **result record** (kind 4), one per produced message in request order:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | length of the rest of the record (u32), `13` |
//! | 1 | flags: `0x01` duplicate (the `id` was seen within the dedupe window: nothing was appended and `offset` is the first one); other bits 0 |
//! | 4 | partition (u32) |
//! | 8 | offset (u64) |
//!
//! A decoder must refuse an unknown magic, version or kind, a flag bit it
//! does not know, a record whose fields overrun its length, and bytes left
//! over after the last record.

use std::fmt;

use crate::ProduceResult;

/// The media type of the binary batch encoding.
pub const CONTENT_TYPE: &str = "application/vnd.weir.batch";

/// The HTTP header of a binary pull response that carries the pull's batch
/// ack id (a JSON response has it as the `batch_ack_id` field).
pub const BATCH_ACK_ID_HEADER: &str = "weir-batch-ack-id";

const MAGIC: [u8; 2] = [0x57, 0x42];
const VERSION: u8 = 1;
/// Header bytes before the records (kind 1 and 2).
pub const HEADER_LEN: usize = 8;

/// What a body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Produce = 1,
    Messages = 2,
    Publish = 3,
    Results = 4,
}

const P_KEY: u8 = 0x01;
const P_JSON: u8 = 0x02;
const P_PARTITION: u8 = 0x04;
const P_ID: u8 = 0x08;
const P_DELAY: u8 = 0x10;
const P_DELIVER_AT: u8 = 0x20;
const P_KNOWN: u8 = P_KEY | P_JSON | P_PARTITION | P_ID | P_DELAY | P_DELIVER_AT;

const M_KEY: u8 = 0x01;
const M_JSON: u8 = 0x02;
const M_DELIVERY: u8 = 0x04;
const M_KNOWN: u8 = M_KEY | M_JSON | M_DELIVERY;

const R_DUPLICATE: u8 = 0x01;
/// Bytes of a result record after its length.
const RESULT_LEN: usize = 1 + 4 + 8;

/// One message to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    pub key: Option<String>,
    /// The value is JSON text (readers see it as JSON).
    pub json: bool,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: Option<u32>,
    pub id: Option<String>,
    pub delay_ms: Option<u64>,
    pub deliver_at: Option<u64>,
}

/// One message read or delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRecord {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: u64,
    pub key: Option<String>,
    pub json: bool,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// For deliveries of a subscription: `(ack_id, attempt)`.
    pub delivery: Option<(String, u32)>,
}

/// Why a binary body is not valid: which record (if any) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Index of the record at fault; `None` for the header.
    pub record: Option<usize>,
    pub detail: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(i) => write!(f, "binary batch record {i}: {}", self.detail),
            None => write!(f, "binary batch header: {}", self.detail),
        }
    }
}

impl std::error::Error for DecodeError {}

fn header_error(detail: impl Into<String>) -> DecodeError {
    DecodeError {
        record: None,
        detail: detail.into(),
    }
}

/// Reads fields off a byte slice; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("truncated {what}"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, n: usize, what: &str) -> Result<String, String> {
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
    }
    fn headers(&mut self) -> Result<Vec<(String, String)>, String> {
        let count = self.u16("header count")?;
        let mut headers = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            let n = usize::from(self.u16("header name length")?);
            let name = self.string(n, "header name")?;
            let v = self.u32("header value length")? as usize;
            headers.push((name, self.string(v, "header value")?));
        }
        Ok(headers)
    }
}

/// A decoded header and the records' bytes after it.
struct Header<'a> {
    kind: Kind,
    count: u32,
    /// Kind 3 only.
    request_id: Option<String>,
    records: &'a [u8],
}

fn read_header(bytes: &[u8]) -> Result<Header<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(header_error(format!(
            "{} bytes; a binary batch starts with an {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if bytes[..2] != MAGIC {
        return Err(header_error(
            "does not start with the magic bytes 0x57 0x42 (\"WB\")",
        ));
    }
    if bytes[2] != VERSION {
        return Err(header_error(format!(
            "version {} is not supported (this server reads version {VERSION})",
            bytes[2]
        )));
    }
    let kind = match bytes[3] {
        1 => Kind::Produce,
        2 => Kind::Messages,
        3 => Kind::Publish,
        4 => Kind::Results,
        k => return Err(header_error(format!("unknown kind {k}"))),
    };
    let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut rest = Reader {
        bytes: &bytes[HEADER_LEN..],
    };
    let request_id = if kind == Kind::Publish {
        let n = rest.u16("request id length").map_err(header_error)?;
        Some(
            rest.string(usize::from(n), "request id")
                .map_err(header_error)?,
        )
    } else {
        None
    };
    Ok(Header {
        kind,
        count,
        request_id,
        records: rest.bytes,
    })
}

/// Splits the records off a body: `(index, record bytes)`.
fn records(
    mut bytes: &[u8],
    count: u32,
) -> impl Iterator<Item = Result<(usize, &[u8]), DecodeError>> {
    let mut i = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if i == count as usize {
            if bytes.is_empty() {
                return None;
            }
            failed = true;
            return Some(Err(header_error(format!(
                "{} bytes after the last of {count} records",
                bytes.len()
            ))));
        }
        let at = i;
        i += 1;
        let mut reader = Reader { bytes };
        let record = reader
            .u32("record length")
            .and_then(|len| reader.take(len as usize, "record (shorter than its length)"));
        match record {
            Ok(record) => {
                bytes = reader.bytes;
                Some(Ok((at, record)))
            }
            Err(detail) => {
                failed = true;
                Some(Err(DecodeError {
                    record: Some(at),
                    detail,
                }))
            }
        }
    })
}

fn produce_record(bytes: &[u8]) -> Result<ProduceRecord, String> {
    let mut r = Reader { bytes };
    let flags = r.u8("flags")?;
    if flags & !P_KNOWN != 0 {
        return Err(format!("unknown flag bits {:#04x}", flags & !P_KNOWN));
    }
    if flags & P_DELAY != 0 && flags & P_DELIVER_AT != 0 {
        return Err("has both delay_ms and deliver_at; give one".into());
    }
    let partition = (flags & P_PARTITION != 0)
        .then(|| r.u32("partition"))
        .transpose()?;
    let at = (flags & (P_DELAY | P_DELIVER_AT) != 0)
        .then(|| r.u64("delay_ms / deliver_at"))
        .transpose()?;
    let key = if flags & P_KEY != 0 {
        let n = r.u32("key length")? as usize;
        Some(r.string(n, "key")?)
    } else {
        None
    };
    let id = if flags & P_ID != 0 {
        let n = usize::from(r.u16("id length")?);
        Some(r.string(n, "id")?)
    } else {
        None
    };
    let headers = r.headers()?;
    Ok(ProduceRecord {
        key,
        json: flags & P_JSON != 0,
        value: r.bytes.to_vec(),
        headers,
        partition,
        id,
        delay_ms: at.filter(|_| flags & P_DELAY != 0),
        deliver_at: at.filter(|_| flags & P_DELIVER_AT != 0),
    })
}

fn message_record(bytes: &[u8]) -> Result<MessageRecord, String> {
    let mut r = Reader { bytes };
    let flags = r.u8("flags")?;
    if flags & !M_KNOWN != 0 {
        return Err(format!("unknown flag bits {:#04x}", flags & !M_KNOWN));
    }
    let partition = r.u32("partition")?;
    let offset = r.u64("offset")?;
    let timestamp = r.u64("timestamp")?;
    let delivery = if flags & M_DELIVERY != 0 {
        let attempt = r.u32("attempt")?;
        let n = usize::from(r.u16("ack id length")?);
        Some((r.string(n, "ack id")?, attempt))
    } else {
        None
    };
    let key = if flags & M_KEY != 0 {
        let n = r.u32("key length")? as usize;
        Some(r.string(n, "key")?)
    } else {
        None
    };
    let headers = r.headers()?;
    Ok(MessageRecord {
        partition,
        offset,
        timestamp,
        key,
        json: flags & M_JSON != 0,
        value: r.bytes.to_vec(),
        headers,
        delivery,
    })
}

fn expect_kind(kind: Kind, want: Kind) -> Result<(), DecodeError> {
    if kind == want {
        Ok(())
    } else {
        Err(header_error(format!(
            "kind {} where kind {} was expected",
            kind as u8, want as u8
        )))
    }
}

/// Decodes a produce request body (kind 1).
pub fn decode_produce(bytes: &[u8]) -> Result<Vec<ProduceRecord>, DecodeError> {
    let header = read_header(bytes)?;
    expect_kind(header.kind, Kind::Produce)?;
    decode_produce_records(header.records, header.count)
}

/// Decodes a WebSocket publish frame (kind 3): its request id and records.
pub fn decode_publish(bytes: &[u8]) -> Result<(String, Vec<ProduceRecord>), DecodeError> {
    let header = read_header(bytes)?;
    expect_kind(header.kind, Kind::Publish)?;
    Ok((
        header.request_id.unwrap_or_default(),
        decode_produce_records(header.records, header.count)?,
    ))
}

fn decode_produce_records(rest: &[u8], count: u32) -> Result<Vec<ProduceRecord>, DecodeError> {
    // Each record takes at least 7 bytes.
    parse_records(rest, count, 7, produce_record)
}

/// Parses the `count` records of `rest` with `parse`, each of which takes
/// at least `min_len` bytes (so a bogus count cannot make us reserve more
/// than the body could hold); an error names the record at fault.
fn parse_records<T>(
    rest: &[u8],
    count: u32,
    min_len: usize,
    parse: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::with_capacity((count as usize).min(rest.len() / min_len));
    for item in records(rest, count) {
        let (i, record) = item?;
        out.push(parse(record).map_err(|detail| DecodeError {
            record: Some(i),
            detail,
        })?);
    }
    Ok(out)
}

/// Decodes a messages body (kind 2).
pub fn decode_messages(bytes: &[u8]) -> Result<Vec<MessageRecord>, DecodeError> {
    let header = read_header(bytes)?;
    expect_kind(header.kind, Kind::Messages)?;
    parse_records(header.records, header.count, 27, message_record)
}

/// Decodes a produce results body (kind 4).
pub fn decode_results(bytes: &[u8]) -> Result<Vec<ProduceResult>, DecodeError> {
    let header = read_header(bytes)?;
    expect_kind(header.kind, Kind::Results)?;
    parse_records(header.records, header.count, 4 + RESULT_LEN, result_record)
}

fn result_record(bytes: &[u8]) -> Result<ProduceResult, String> {
    if bytes.len() != RESULT_LEN {
        return Err(format!(
            "a result record is {RESULT_LEN} bytes, this one {}",
            bytes.len()
        ));
    }
    let mut r = Reader { bytes };
    let flags = r.u8("flags")?;
    if flags & !R_DUPLICATE != 0 {
        return Err(format!("unknown flag bits {:#04x}", flags & !R_DUPLICATE));
    }
    Ok(ProduceResult {
        partition: r.u32("partition")?,
        offset: r.u64("offset")?,
        duplicate: flags & R_DUPLICATE != 0,
    })
}

/// Builds a body record by record.
#[derive(Debug)]
pub struct Encoder {
    out: Vec<u8>,
    count: u32,
}

impl Encoder {
    fn start(kind: Kind, capacity: usize) -> Encoder {
        let mut out = Vec::with_capacity(HEADER_LEN + capacity);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(kind as u8);
        out.extend_from_slice(&[0; 4]);
        Encoder { out, count: 0 }
    }

    /// A produce request body.
    pub fn produce(capacity: usize) -> Encoder {
        Encoder::start(Kind::Produce, capacity)
    }

    /// A WebSocket publish frame with its request id (at most 65,535 bytes;
    /// longer ids are cut at a character boundary).
    pub fn publish(request_id: &str, capacity: usize) -> Encoder {
        let mut e = Encoder::start(Kind::Publish, capacity);
        let id = truncate(request_id, usize::from(u16::MAX));
        e.out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        e.out.extend_from_slice(id.as_bytes());
        e
    }

    /// A messages body (read and pull responses, subscription socket
    /// delivery frames).
    pub fn messages(capacity: usize) -> Encoder {
        Encoder::start(Kind::Messages, capacity)
    }

    /// A produce results body for `count` results.
    pub fn results(count: usize) -> Encoder {
        Encoder::start(Kind::Results, count * (4 + RESULT_LEN))
    }

    /// Appends the result of one produced message.
    pub fn push_result(&mut self, result: &ProduceResult) {
        let at = self.begin_record();
        self.out
            .push(if result.duplicate { R_DUPLICATE } else { 0 });
        self.out.extend_from_slice(&result.partition.to_le_bytes());
        self.out.extend_from_slice(&result.offset.to_le_bytes());
        self.end_record(at);
    }

    /// Records so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn begin_record(&mut self) -> usize {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        at
    }

    fn end_record(&mut self, at: usize) {
        // Records are bounded by the request limits (far below 4 GiB).
        let len = (self.out.len() - at - 4) as u32;
        self.out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    fn headers<'h>(&mut self, headers: impl ExactSizeIterator<Item = (&'h str, &'h str)>) {
        self.out
            .extend_from_slice(&(headers.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
        for (name, value) in headers.take(usize::from(u16::MAX)) {
            let name = truncate(name, usize::from(u16::MAX));
            self.out
                .extend_from_slice(&(name.len() as u16).to_le_bytes());
            self.out.extend_from_slice(name.as_bytes());
            self.out
                .extend_from_slice(&(value.len() as u32).to_le_bytes());
            self.out.extend_from_slice(value.as_bytes());
        }
    }

    /// Appends a message to produce.
    pub fn push_produce(&mut self, r: &ProduceRecord) {
        let at = self.begin_record();
        let mut flags = 0;
        for (set, bit) in [
            (r.key.is_some(), P_KEY),
            (r.json, P_JSON),
            (r.partition.is_some(), P_PARTITION),
            (r.id.is_some(), P_ID),
            (r.delay_ms.is_some(), P_DELAY),
            (r.deliver_at.is_some() && r.delay_ms.is_none(), P_DELIVER_AT),
        ] {
            if set {
                flags |= bit;
            }
        }
        self.out.push(flags);
        if let Some(p) = r.partition {
            self.out.extend_from_slice(&p.to_le_bytes());
        }
        if let Some(t) = r.delay_ms.or(r.deliver_at) {
            self.out.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(key) = &r.key {
            self.out
                .extend_from_slice(&(key.len() as u32).to_le_bytes());
            self.out.extend_from_slice(key.as_bytes());
        }
        if let Some(id) = &r.id {
            let id = truncate(id, usize::from(u16::MAX));
            self.out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            self.out.extend_from_slice(id.as_bytes());
        }
        self.headers(r.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.out.extend_from_slice(&r.value);
        self.end_record(at);
    }

    /// Appends a message read or delivered. `headers` are written as given.
    #[allow(clippy::too_many_arguments)]
    pub fn push_message<'h>(
        &mut self,
        partition: u32,
        offset: u64,
        timestamp: u64,
        key: Option<&str>,
        json: bool,
        headers: impl ExactSizeIterator<Item = (&'h str, &'h str)>,
        value: &[u8],
        delivery: Option<(&str, u32)>,
    ) {
        let at = self.begin_record();
        let mut flags = 0;
        if key.is_some() {
            flags |= M_KEY;
        }
        if json {
            flags |= M_JSON;
        }
        if delivery.is_some() {
            flags |= M_DELIVERY;
        }
        self.out.push(flags);
        self.out.extend_from_slice(&partition.to_le_bytes());
        self.out.extend_from_slice(&offset.to_le_bytes());
        self.out.extend_from_slice(&timestamp.to_le_bytes());
        if let Some((ack_id, attempt)) = delivery {
            let ack_id = truncate(ack_id, usize::from(u16::MAX));
            self.out.extend_from_slice(&attempt.to_le_bytes());
            self.out
                .extend_from_slice(&(ack_id.len() as u16).to_le_bytes());
            self.out.extend_from_slice(ack_id.as_bytes());
        }
        if let Some(key) = key {
            self.out
                .extend_from_slice(&(key.len() as u32).to_le_bytes());
            self.out.extend_from_slice(key.as_bytes());
        }
        self.headers(headers);
        self.out.extend_from_slice(value);
        self.end_record(at);
    }

    /// Appends a [`MessageRecord`].
    pub fn push_message_record(&mut self, m: &MessageRecord) {
        self.push_message(
            m.partition,
            m.offset,
            m.timestamp,
            m.key.as_deref(),
            m.json,
            m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &m.value,
            m.delivery.as_ref().map(|(id, a)| (id.as_str(), *a)),
        );
    }

    /// The finished body.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.out
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn produce_records() -> Vec<ProduceRecord> {
        vec![
            ProduceRecord {
                value: b"raw \x00\xff bytes".to_vec(),
                ..ProduceRecord::default()
            },
            ProduceRecord {
                key: Some("customer-7".into()),
                json: true,
                value: br#"{"order":1}"#.to_vec(),
                headers: vec![("trace".into(), "abc".into()), ("x".into(), String::new())],
                partition: Some(3),
                id: Some("order-1".into()),
                delay_ms: Some(500),
                deliver_at: None,
            },
            ProduceRecord {
                deliver_at: Some(1_764_300_000_000),
                value: Vec::new(),
                ..ProduceRecord::default()
            },
        ]
    }

    #[test]
    fn produce_round_trips() {
        let mut e = Encoder::produce(0);
        for r in produce_records() {
            e.push_produce(&r);
        }
        let body = e.finish();
        assert_eq!(&body[..4], &[0x57, 0x42, 1, 1]);
        assert_eq!(decode_produce(&body).unwrap(), produce_records());
        // A publish frame carries the same records and its request id.
        let mut e = Encoder::publish("r-1", 0);
        for r in produce_records() {
            e.push_produce(&r);
        }
        let (id, records) = decode_publish(&e.finish()).unwrap();
        assert_eq!((id.as_str(), records), ("r-1", produce_records()));
    }

    #[test]
    fn messages_round_trip() {
        let records = vec![
            MessageRecord {
                partition: 2,
                offset: 42,
                timestamp: 1_764_300_000_123,
                key: Some("k".into()),
                json: true,
                value: b"[1,2]".to_vec(),
                headers: vec![("h".into(), "v".into())],
                delivery: Some(("ack-1".into(), 3)),
            },
            MessageRecord {
                partition: 0,
                offset: 0,
                timestamp: 1,
                value: vec![0, 1, 2],
                ..MessageRecord::default()
            },
        ];
        let mut e = Encoder::messages(0);
        for m in &records {
            e.push_message_record(m);
        }
        assert_eq!(decode_messages(&e.finish()).unwrap(), records);
    }

    #[test]
    fn bad_bodies_are_errors_naming_the_record() {
        let mut e = Encoder::produce(0);
        for r in produce_records() {
            e.push_produce(&r);
        }
        let body = e.finish();
        // Every truncation is an error, never a panic or a shorter batch.
        for cut in 0..body.len() {
            assert!(decode_produce(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = body.clone();
        extra.push(0);
        assert!(decode_produce(&extra).is_err());
        let mut bad_magic = body.clone();
        bad_magic[0] = b'{';
        assert_eq!(decode_produce(&bad_magic).unwrap_err().record, None);
        let mut bad_version = body.clone();
        bad_version[2] = 9;
        assert!(decode_produce(&bad_version)
            .unwrap_err()
            .detail
            .contains("version 9"));
        // Unknown flag bits in record 1 (flags follow its 4-byte length).
        let first_len = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
        let mut bad_flags = body.clone();
        bad_flags[8 + 4 + first_len + 4] |= 0x80;
        let err = decode_produce(&bad_flags).unwrap_err();
        assert_eq!(err.record, Some(1), "{err}");
        // The wrong kind for the endpoint.
        assert!(decode_messages(&body).is_err());
        // A count far beyond the body does not allocate for it.
        let mut huge = body;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_produce(&huge).is_err());
    }

    #[test]
    fn results_round_trip_and_refuse_bad_records() {
        let results = vec![
            ProduceResult {
                partition: 0,
                offset: 42,
                duplicate: false,
            },
            ProduceResult {
                partition: u32::MAX,
                offset: u64::MAX,
                duplicate: true,
            },
        ];
        let mut e = Encoder::results(results.len());
        for r in &results {
            e.push_result(r);
        }
        let body = e.finish();
        assert_eq!(&body[..4], &[0x57, 0x42, 1, 4]);
        assert_eq!(body.len(), HEADER_LEN + 2 * 17);
        assert_eq!(decode_results(&body).unwrap(), results);
        assert_eq!(decode_results(&Encoder::results(0).finish()).unwrap(), []);
        for cut in 0..body.len() {
            assert!(decode_results(&body[..cut]).is_err(), "cut at {cut}");
        }
        // Record 1's flags: unknown bits are refused.
        let mut bad_flags = body.clone();
        bad_flags[HEADER_LEN + 17 + 4] |= 0x02;
        assert_eq!(decode_results(&bad_flags).unwrap_err().record, Some(1));
        // A record longer than a result, even if it holds one.
        let mut long = Encoder::results(1);
        let at = long.begin_record();
        long.out.extend_from_slice(&[0; RESULT_LEN + 1]);
        long.end_record(at);
        assert!(decode_results(&long.finish()).is_err());
        // Other kinds are not results, and results are not messages.
        assert!(decode_messages(&body).is_err());
        let mut produce = Encoder::produce(0);
        produce.push_produce(&ProduceRecord::default());
        assert!(decode_results(&produce.finish()).is_err());
    }
}
