//! The produce request bodies of the workloads, in the run's encoding:
//! `{"messages":[...]}` bytes, or a [`BinaryBatch`]. Either is built once
//! per batch size and shared by every request that sends the same
//! messages (cloning one shares its bytes), so a run measures the server,
//! not the encoding of identical requests. (A JSON body is copied into
//! each request, as `Client::produce_raw` takes a `Vec`: one copy per
//! request, no per-message work.)
//!
//! Values weigh `--size` bytes in both encodings: a JSON string of that
//! length (quotes included), or that many raw bytes. The e2e stamp is a
//! JSON object in both (a JSON value of a binary record), so consumers
//! read its send time the same way.

use std::sync::Arc;

use weir_client::binary::ProduceRecord;
use weir_client::{BinaryBatch, Client, Encoding, Error};

/// One produce request's body.
#[derive(Clone, Debug)]
pub enum Body {
    /// `{"messages":[...]}`.
    Json(Arc<Vec<u8>>),
    /// A binary produce body.
    Binary(BinaryBatch),
}

impl Body {
    /// `n` messages whose values are `size` bytes.
    pub fn filler(encoding: Encoding, size: usize, n: usize) -> Body {
        match encoding {
            Encoding::Json => Body::Json(Arc::new(filler_json(size, n))),
            Encoding::Binary => {
                let record = ProduceRecord {
                    value: vec![b'x'; size],
                    ..ProduceRecord::default()
                };
                Body::Binary(BinaryBatch::from_records(std::iter::repeat_n(&record, n)))
            }
        }
    }

    /// `n` messages whose JSON values carry their send time `sent_us`,
    /// padded to `size` bytes.
    pub fn stamped(encoding: Encoding, sent_us: u64, n: usize, size: usize) -> Body {
        let value = stamp(sent_us, size);
        match encoding {
            Encoding::Json => Body::Json(Arc::new(json_body(&value, n))),
            Encoding::Binary => {
                let record = ProduceRecord {
                    json: true,
                    value: value.into_bytes(),
                    ..ProduceRecord::default()
                };
                Body::Binary(BinaryBatch::from_records(std::iter::repeat_n(&record, n)))
            }
        }
    }

    /// Produces it over HTTP; returns once the server answered.
    pub async fn produce(&self, client: &Client, topic: &str) -> Result<(), Error> {
        match self {
            Body::Json(body) => client.produce_raw(topic, body.to_vec()).await.map(drop),
            Body::Binary(batch) => client.produce_batch(topic, batch).await.map(drop),
        }
    }
}

/// A JSON value of `size` bytes: `{"sent_us":<µs>,"pad":"xx…"}` (longer
/// when `size` is too small for the stamp: the stamp is kept whole).
fn stamp(sent_us: u64, size: usize) -> String {
    let head = format!("{{\"sent_us\":{sent_us},\"pad\":\"");
    let pad = "x".repeat(size.saturating_sub(head.len() + 2));
    format!("{head}{pad}\"}}")
}

/// A JSON produce body of `n` messages whose values are `size`-byte JSON
/// strings.
fn filler_json(size: usize, n: usize) -> Vec<u8> {
    json_body(&format!("\"{}\"", "x".repeat(size.saturating_sub(2))), n)
}

/// A JSON produce body of `n` messages with the JSON value `value`.
fn json_body(value: &str, n: usize) -> Vec<u8> {
    let one = format!("{{\"value\":{value}}}");
    let mut body = String::with_capacity((one.len() + 1) * n + 16);
    body.push_str("{\"messages\":[");
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&one);
    }
    body.push_str("]}");
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use weir_client::binary::decode_produce;

    use super::*;

    fn json(body: &Body) -> serde_json::Value {
        match body {
            Body::Json(bytes) => serde_json::from_slice(bytes).unwrap_or_default(),
            Body::Binary(_) => serde_json::Value::Null,
        }
    }

    fn records(body: &Body) -> Vec<ProduceRecord> {
        match body {
            Body::Binary(batch) => decode_produce(batch.as_bytes()).unwrap_or_default(),
            Body::Json(_) => Vec::new(),
        }
    }

    #[test]
    fn filler_values_have_the_asked_size_in_both_encodings() {
        let v = json(&Body::filler(Encoding::Json, 100, 3));
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["value"].to_string().len(), 100);
        let binary = records(&Body::filler(Encoding::Binary, 100, 3));
        assert_eq!(binary.len(), 3);
        assert!(binary.iter().all(|r| r.value.len() == 100 && !r.json));
    }

    #[test]
    fn stamped_values_have_the_asked_size_and_carry_the_send_time() {
        let v = json(&Body::stamped(
            Encoding::Json,
            1_764_300_000_123_456,
            2,
            100,
        ));
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0]["value"].to_string().len(), 100);
        assert_eq!(msgs[1]["value"]["sent_us"], 1_764_300_000_123_456_u64);
        // Too small a size: the stamp is kept whole.
        let small = json(&Body::stamped(Encoding::Json, 7, 1, 1));
        assert_eq!(small["messages"][0]["value"]["sent_us"], 7);
        // In binary: the same JSON value, flagged as JSON.
        let binary = records(&Body::stamped(Encoding::Binary, 7, 2, 100));
        assert_eq!(binary.len(), 2);
        assert!(binary[1].json);
        let value: serde_json::Value = serde_json::from_slice(&binary[1].value).unwrap_or_default();
        assert_eq!(value["sent_us"], 7);
        assert_eq!(binary[1].value.len(), 100);
    }
}
