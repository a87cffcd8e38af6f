//! Opening a socket: the `ws://` URL from the client's `http://` base, the
//! bearer token, the client's TLS config for `wss://` (the one its HTTPS
//! requests use), and a refused upgrade turned into the server's problem
//! document (so `code()` works as it does for HTTP calls).
//!
//! Knows nothing of frames; the socket it returns is split by the caller.

use std::sync::Arc;

use reqwest::Method;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use weir_protocol::{ErrorCode, Problem};

use crate::client::parse_retry_after;
use crate::{Client, Error};

/// An open client socket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the socket at `path` (with `query`) on the client's server.
pub(crate) async fn open(
    client: &Client,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Socket, Error> {
    let request = handshake(client, path, query)?;
    // Used for `wss://` only; a `ws://` socket stays plain.
    let connector = Connector::Rustls(Arc::clone(client.tls()));
    // Nagle off: acks and credit are small frames that someone waits for.
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
    let Ok(connected) = tokio::time::timeout(client.connect_timeout(), connecting).await else {
        let timeout = client.connect_timeout();
        let timed_out = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no websocket within the connect timeout ({timeout:?})"),
        );
        return Err(Error::WebSocket(Arc::new(WsError::Io(timed_out))));
    };
    match connected {
        Ok((socket, _response)) => Ok(socket),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = response.body().as_deref().unwrap_or_default();
            Err(Error::from_problem(refusal(status, body), retry_after))
        }
        Err(e) => Err(Error::WebSocket(Arc::new(e))),
    }
}

/// The upgrade request: built by the HTTP plumbing (never sent), so it
/// carries the base URL, the encoded query and the `Authorization` header
/// exactly as HTTP calls do.
fn handshake(client: &Client, path: &str, query: &[(&str, &str)]) -> Result<Request, Error> {
    let mut http = client.request(Method::GET, path);
    if !query.is_empty() {
        http = http.query(query);
    }
    let http = http.build()?;
    let url = websocket_url(http.url().as_str())?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::WebSocket(Arc::new(e)))?;
    request.headers_mut().extend(http.headers().clone());
    Ok(request)
}

/// `http://h/p` → `ws://h/p`, `https://` → `wss://`.
pub(crate) fn websocket_url(http: &str) -> Result<String, Error> {
    if let Some(rest) = http.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = http.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if http.starts_with("ws://") || http.starts_with("wss://") {
        Ok(http.to_owned())
    } else {
        Err(Error::Url(http.to_owned()))
    }
}

/// The problem document of a refused upgrade; a body that is not one (a
/// proxy's error page) still gets a code from the status, by the protocol's
/// table.
pub(crate) fn refusal(status: u16, body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let code = ErrorCode::from_status(status);
        let detail = String::from_utf8_lossy(body);
        Problem::new(
            code,
            format!("websocket upgrade refused with status {status}: {detail}"),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn http_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:8080/v1/topics/t/ws?from=earliest").unwrap(),
            "ws://127.0.0.1:8080/v1/topics/t/ws?from=earliest"
        );
        assert_eq!(websocket_url("https://h/x").unwrap(), "wss://h/x");
        assert_eq!(websocket_url("ws://h/x").unwrap(), "ws://h/x");
        assert!(matches!(websocket_url("ftp://h"), Err(Error::Url(_))));
    }

    #[test]
    fn refusals_keep_the_problem_code_or_derive_one_from_the_status() {
        let body = serde_json::to_vec(&Problem::new(
            ErrorCode::SubscriptionNotFound,
            "subscription `s` of topic `t` does not exist",
        ))
        .unwrap();
        assert_eq!(refusal(404, &body).code, ErrorCode::SubscriptionNotFound);
        let proxy = refusal(503, b"<html>bad gateway</html>");
        assert_eq!(proxy.code, ErrorCode::Unavailable);
        assert!(proxy.detail.contains("503"), "{}", proxy.detail);
        assert_eq!(refusal(401, b"").code, ErrorCode::Unauthorized);
        assert_eq!(refusal(429, b"").code, ErrorCode::RateLimited);
        assert_eq!(refusal(502, b"").code, ErrorCode::Unavailable);
    }

    #[test]
    fn the_url_query_and_token_come_from_the_client() {
        let client = Client::new("http://h:1")
            .unwrap()
            .with_token(Some("secret".into()));
        let request = handshake(
            &client,
            "/v1/topics/t/subscriptions/s/ws",
            &[("consumer", "w 1")],
        )
        .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "ws://h:1/v1/topics/t/subscriptions/s/ws?consumer=w+1"
        );
        assert_eq!(request.headers()["authorization"], "Bearer secret");
        assert_eq!(request.headers()["upgrade"], "websocket");
        let anonymous = handshake(&Client::new("https://h").unwrap(), "/x", &[]).unwrap();
        assert_eq!(anonymous.uri().to_string(), "wss://h/x");
        assert!(anonymous.headers().get("authorization").is_none());
    }
}
