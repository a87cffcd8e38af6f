//! Produce, read and pull responses in either encoding: a client set to
//! [`Encoding::Binary`](super::Encoding::Binary) asks for the binary one
//! (`Accept`), and every response is read as its `Content-Type` says — so
//! a server that answers JSON anyway is understood.

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::RequestBuilder;
use weir_protocol::binary::{
    decode_results, BATCH_ACK_ID_HEADER as BATCH_ACK_ID, CONTENT_TYPE as BINARY,
};
use weir_protocol::{ProduceResponse, ProduceResult, PullResponse, ReadResponse};

use super::convert::{decode_pull, decode_read};
use super::Encoding;
use crate::{Client, Error};

/// `Accept` of a binary client: binary, JSON as a fallback.
pub(crate) const ACCEPT_BINARY: &str = "application/vnd.weir.batch, application/json;q=0.5";

/// Where the next read starts, on binary read responses.
const NEXT_OFFSET: &str = "weir-next-offset";

/// What a successful response's headers say about its body.
struct Form {
    binary: bool,
    next_offset: Option<u64>,
    batch_ack_id: Option<String>,
}

fn form(headers: &HeaderMap) -> Form {
    let binary = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(BINARY));
    let next_offset = headers
        .get(NEXT_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let batch_ack_id = headers
        .get(BATCH_ACK_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Form {
        binary,
        next_offset,
        batch_ack_id,
    }
}

impl Client {
    /// `request`, asking for a binary response when this client uses the
    /// binary encoding.
    pub(crate) fn accepting(&self, request: RequestBuilder) -> RequestBuilder {
        match self.encoding() {
            Encoding::Json => request,
            Encoding::Binary => request.header(ACCEPT, ACCEPT_BINARY),
        }
    }
}

async fn fetch(request: RequestBuilder) -> Result<(Form, Bytes), Error> {
    Client::receive(request, form).await
}

/// Sends a produce and decodes its results, in either encoding.
pub(crate) async fn produce_response(request: RequestBuilder) -> Result<Vec<ProduceResult>, Error> {
    let (form, body) = fetch(request).await?;
    if form.binary {
        decode_results(&body)
            .map_err(|e| Error::Protocol(format!("binary produce results body: {e}")))
    } else {
        Ok(serde_json::from_slice::<ProduceResponse>(&body)?.results)
    }
}

/// Sends a read of `topic` and decodes its response, in either encoding.
pub(crate) async fn read_response(
    request: RequestBuilder,
    topic: &str,
) -> Result<ReadResponse, Error> {
    let (form, body) = fetch(request).await?;
    if !form.binary {
        return Ok(serde_json::from_slice(&body)?);
    }
    let next_offset = form.next_offset.ok_or_else(|| {
        Error::Protocol(format!(
            "a binary read response without a valid `{NEXT_OFFSET}` header"
        ))
    })?;
    Ok(ReadResponse {
        messages: decode_read(topic, &body)?,
        next_offset,
    })
}

/// Sends a pull of `topic` and decodes its deliveries and batch ack id, in
/// either encoding.
pub(crate) async fn pull_response(
    request: RequestBuilder,
    topic: &str,
) -> Result<PullResponse, Error> {
    let (form, body) = fetch(request).await?;
    if form.binary {
        Ok(PullResponse {
            messages: decode_pull(topic, &body)?,
            batch_ack_id: form.batch_ack_id,
        })
    } else {
        Ok(serde_json::from_slice::<PullResponse>(&body)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn the_content_type_decides_the_form() {
        let mut headers = HeaderMap::new();
        assert!(!form(&headers).binary);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!form(&headers).binary);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/Vnd.Weir.Batch; charset=binary"),
        );
        headers.insert(NEXT_OFFSET, HeaderValue::from_static("15"));
        assert_eq!(form(&headers).batch_ack_id, None);
        headers.insert(BATCH_ACK_ID, HeaderValue::from_static("AAAAAQ"));
        let form = form(&headers);
        assert!(form.binary);
        assert_eq!(form.next_offset, Some(15));
        assert_eq!(form.batch_ack_id.as_deref(), Some("AAAAAQ"));
    }

    #[test]
    fn only_binary_clients_ask_for_binary() {
        let json = Client::new("http://h:1").unwrap();
        let request = json.accepting(json.request(reqwest::Method::GET, "/x"));
        assert!(request.build().unwrap().headers().get(ACCEPT).is_none());
        let binary = json.with_encoding(Encoding::Binary);
        let request = binary.accepting(binary.request(reqwest::Method::GET, "/x"));
        assert_eq!(
            request.build().unwrap().headers()[ACCEPT],
            "application/vnd.weir.batch, application/json;q=0.5"
        );
    }
}
