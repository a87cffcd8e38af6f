//! How Raft values are stored: a format byte, then JSON.
//!
//! openraft's serde forms are stable only within one openraft version,
//! which is why the crate is pinned exactly; the leading format byte lets a
//! later release convert stored values when it moves to another version or
//! to a binary form. Values are small (votes, log ids, metadata commands,
//! the descriptions of appended batches); record batches never pass
//! through here.
//!
//! Format 2 made entries carry either a metadata change or a partition
//! append (format 1, from before replicated produce, held only metadata
//! changes and is refused).

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The current format of stored Raft values.
const FORMAT: u8 = 2;

/// Encodes a value for the store.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT];
    serde_json::to_writer(&mut out, value).map_err(io::Error::other)?;
    Ok(out)
}

/// Decodes a stored value; a value of another format is refused.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => serde_json::from_slice(body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("stored Raft value is corrupt: {e}"),
            )
        }),
        Some((format, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stored Raft value has format {format}, this version reads {FORMAT}"),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "stored Raft value is empty",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_formats() {
        let bytes = encode(&(1u64, "x")).unwrap();
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), (1, "x".into()));
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode::<(u64, String)>(&other).is_err());
        assert!(decode::<(u64, String)>(&[]).is_err());
        assert!(decode::<(u64, String)>(&bytes[..3]).is_err());
    }
}
