//! Fuzzes the stored record format (`weir_server::storage::record`): any
//! bytes decode to a message or an error, never a panic (also with a valid
//! checksum, so the parser behind it is reached); any message encodes and
//! decodes back to itself; and changing any byte of a record is rejected.

#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use weir_server::storage::record::{self, NewMessage};

/// A message as a producer could store it, with its timestamp.
#[derive(Debug)]
struct Input {
    message: NewMessage,
    timestamp: u64,
    /// Which byte of the encoded record to change, and how.
    flip_at: usize,
    flip_with: u8,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // Header names are stored with a 16-bit length and there are at
        // most 65535 of them: the server's limits keep far below both.
        let count = u.int_in_range(0..=8)?;
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name: String = u.arbitrary()?;
            let value: String = u.arbitrary()?;
            headers.push((name.chars().take(1024).collect(), value));
        }
        Ok(Input {
            message: NewMessage {
                key: u.arbitrary()?,
                headers,
                json: u.arbitrary()?,
                deliver_at: u.arbitrary()?,
                payload: u.arbitrary()?,
            },
            timestamp: u.arbitrary()?,
            flip_at: u.arbitrary()?,
            flip_with: u.int_in_range(1..=255)?,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes: a message or an error.
    let _ = record::decode(7, data);
    let _ = record::peek_timestamp(data);
    // The same bytes behind a valid checksum reach the field parser.
    if let Some(body) = data.get(4..) {
        let mut sealed = crc32c::crc32c(body).to_be_bytes().to_vec();
        sealed.extend_from_slice(body);
        if let Ok(m) = record::decode(7, &sealed) {
            assert_eq!(m.stored_bytes, sealed.len() as u64);
            assert_eq!(m.offset, 7);
        }
    }

    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let m = &input.message;
    let mut encoded = record::encode(m, input.timestamp);
    assert_eq!(encoded.len(), m.encoded_len(), "encoded_len is exact");
    assert_eq!(record::peek_timestamp(&encoded), Some(input.timestamp));
    let decoded = match record::decode(42, &encoded) {
        Ok(d) => d,
        Err(e) => panic!("a fresh record does not decode: {e}"),
    };
    assert_eq!(decoded.offset, 42);
    assert_eq!(decoded.timestamp, input.timestamp);
    assert_eq!(decoded.deliver_at, m.deliver_at);
    assert_eq!(decoded.key, m.key);
    assert_eq!(decoded.headers, m.headers);
    assert_eq!(decoded.json, m.json);
    assert_eq!(decoded.payload, m.payload);
    assert_eq!(decoded.stored_bytes, encoded.len() as u64);

    // Corruption: any changed byte fails the checksum (CRC32C catches
    // every error burst up to 32 bits long).
    let at = input.flip_at % encoded.len();
    if let Some(byte) = encoded.get_mut(at) {
        *byte ^= input.flip_with;
    }
    assert!(
        record::decode(42, &encoded).is_err(),
        "a record with byte {at} changed was accepted"
    );
});
