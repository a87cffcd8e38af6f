//! The answer to a produce: one result per message, in request order.
//!
//! JSON by default — `{"results":[{"partition":0,"offset":42,"duplicate":false},…]}`,
//! the shape `ProduceResponse` declares, written straight into one buffer
//! (a 100-message batch answers 100 objects: going through serde's
//! serializer for each cost ~3 % of the server's time per published
//! message) — or, when the request's `Accept` asks for
//! `application/vnd.weir.batch`, a results body in the binary encoding
//! (kind 4: 17 bytes per message, nothing to parse on the producer's side).

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use weir_protocol::binary::{Encoder, CONTENT_TYPE as BINARY};
use weir_protocol::ProduceResult;

/// `results` as a response, binary or JSON, with `extra` headers (the
/// cluster's `Weir-Leader`).
pub fn response(results: &[ProduceResult], binary: bool, extra: HeaderMap) -> Response {
    let (media, body) = if binary {
        (BINARY, binary_body(results))
    } else {
        ("application/json", json_body(results))
    };
    let mut response = (extra, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    response
}

/// The results body in the binary encoding.
fn binary_body(results: &[ProduceResult]) -> Vec<u8> {
    let mut out = Encoder::results(results.len());
    for r in results {
        out.push_result(r);
    }
    out.finish()
}

/// The JSON results body, byte for byte what serializing
/// `ProduceResponse` gives.
fn json_body(results: &[ProduceResult]) -> Vec<u8> {
    const HEAD: &[u8] = br#"{"results":["#;
    // `{"partition":` 4294967295 `,"offset":` 18446744073709551615
    // `,"duplicate":false},` is at most 74 bytes.
    let mut out = Vec::with_capacity(HEAD.len() + 2 + results.len() * 74);
    out.extend_from_slice(HEAD);
    let mut numbers = itoa::Buffer::new();
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"partition":"#);
        out.extend_from_slice(numbers.format(r.partition).as_bytes());
        out.extend_from_slice(br#","offset":"#);
        out.extend_from_slice(numbers.format(r.offset).as_bytes());
        out.extend_from_slice(if r.duplicate {
            br#","duplicate":true}"#.as_slice()
        } else {
            br#","duplicate":false}"#.as_slice()
        });
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use weir_protocol::ProduceResponse;

    use super::*;

    fn result() -> impl Strategy<Value = ProduceResult> {
        (any::<u32>(), any::<u64>(), any::<bool>()).prop_map(|(partition, offset, duplicate)| {
            ProduceResult {
                partition,
                offset,
                duplicate,
            }
        })
    }

    proptest! {
        #[test]
        fn json_is_what_serde_writes(results in proptest::collection::vec(result(), 0..40)) {
            let expected = serde_json::to_vec(&ProduceResponse { results: results.clone() }).unwrap();
            prop_assert_eq!(json_body(&results), expected);
        }

        #[test]
        fn binary_decodes_to_the_results(results in proptest::collection::vec(result(), 0..40)) {
            let decoded = weir_protocol::binary::decode_results(&binary_body(&results)).unwrap();
            prop_assert_eq!(decoded, results);
        }
    }

    #[test]
    fn the_response_names_its_form() {
        let results = [ProduceResult {
            partition: 1,
            offset: 2,
            duplicate: false,
        }];
        let json = response(&results, false, HeaderMap::new());
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        let mut extra = HeaderMap::new();
        extra.insert("weir-leader", HeaderValue::from_static("3"));
        let binary = response(&results, true, extra);
        assert_eq!(binary.headers()[header::CONTENT_TYPE], BINARY);
        assert_eq!(binary.headers()["weir-leader"], "3");
    }
}
