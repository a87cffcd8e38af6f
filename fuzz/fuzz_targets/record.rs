//! Fuzzes the stored log format: record batches
//! (`weir_server::storage::batch`) holding message bodies
//! (`weir_server::storage::record`), and the binary batch encoding of the
//! wire (`weir_protocol::binary`). Any bytes parse to messages or an error,
//! never a panic (also behind a valid checksum, so the record parser is
//! reached); any messages encode and decode back to themselves; changing
//! any byte of a stored batch is rejected.

#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use weir_server::storage::batch::{BatchBuilder, BatchView};
use weir_server::storage::record::NewMessage;

/// Messages as a producer could store them, with their timestamps.
#[derive(Debug)]
struct Input {
    messages: Vec<(NewMessage, u64)>,
    base: u64,
    /// Which byte of the encoded batch to change, and how.
    flip_at: usize,
    flip_with: u8,
}

fn message(u: &mut Unstructured<'_>) -> Result<NewMessage> {
    // Header names are stored with a 16-bit length and there are at most
    // 65535 of them: the server's limits keep far below both.
    let count = u.int_in_range(0..=4)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name: String = u.arbitrary()?;
        let value: String = u.arbitrary()?;
        headers.push((name.chars().take(1024).collect(), value));
    }
    Ok(NewMessage {
        key: u.arbitrary()?,
        headers,
        json: u.arbitrary()?,
        deliver_at: u.arbitrary()?,
        payload: u.arbitrary()?,
    })
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let n = u.int_in_range(1..=6)?;
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            messages.push((message(u)?, u.arbitrary()?));
        }
        Ok(Input {
            messages,
            base: u.int_in_range(0..=u64::MAX / 2)?,
            flip_at: u.arbitrary()?,
            flip_with: u.int_in_range(1..=255)?,
        })
    }
}

fn read_all(base: u64, bytes: &[u8], verify: bool) {
    if let Ok(view) = BatchView::parse(base, bytes, verify) {
        for m in view.messages(0, u64::MAX).take(10_000) {
            let _ = m;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes: messages or an error, as a stored batch and as
    // every kind of binary wire body.
    read_all(3, data, true);
    read_all(3, data, false);
    // The same bytes behind a valid header checksum reach the records.
    if data.len() >= 17 {
        let mut sealed = data.to_vec();
        sealed[0] = 2;
        let crc = crc32c::crc32c(&sealed[5..]);
        sealed[1..5].copy_from_slice(&crc.to_be_bytes());
        read_all(3, &sealed, true);
    }
    let _ = weir_protocol::binary::decode_produce(data);
    let _ = weir_protocol::binary::decode_messages(data);
    let _ = weir_protocol::binary::decode_publish(data);
    let _ = weir_protocol::binary::decode_results(data);

    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let mut builder = BatchBuilder::with_capacity(0);
    let mut sizes = Vec::new();
    for (m, ts) in &input.messages {
        sizes.push(builder.push(m, *ts));
    }
    let mut encoded = builder.finish();
    let view = match BatchView::parse(input.base, &encoded, true) {
        Ok(v) => v,
        Err(e) => panic!("a fresh batch does not parse: {e}"),
    };
    assert_eq!(view.count as usize, input.messages.len());
    let decoded: Vec<_> = view.messages(0, u64::MAX).collect();
    assert_eq!(decoded.len(), input.messages.len());
    for (i, (d, (m, ts))) in decoded.into_iter().zip(&input.messages).enumerate() {
        let d = match d {
            Ok(d) => d,
            Err(e) => panic!("message {i} of a fresh batch does not decode: {e}"),
        };
        assert_eq!(d.offset, input.base + i as u64);
        assert_eq!(d.timestamp, *ts);
        assert_eq!(d.deliver_at, m.deliver_at);
        assert_eq!(d.key, m.key);
        assert_eq!(d.headers, m.headers);
        assert_eq!(d.json, m.json);
        assert_eq!(d.payload, m.payload);
        assert_eq!(d.stored_bytes, sizes[i]);
        assert_eq!(d.stored_bytes as usize, m.encoded_len(), "encoded_len is exact");
    }

    // Corruption: any changed byte fails the checksum (CRC32C catches every
    // error burst up to 32 bits long) or the structure.
    let at = input.flip_at % encoded.len();
    if let Some(byte) = encoded.get_mut(at) {
        *byte ^= input.flip_with;
    }
    let damaged = BatchView::parse(input.base, &encoded, true)
        .and_then(|v| v.messages(0, u64::MAX).collect::<std::result::Result<Vec<_>, _>>());
    assert!(damaged.is_err(), "a batch with byte {at} changed was accepted");
});
