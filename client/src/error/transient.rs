//! Which failures are worth retrying ([`Error::is_transient`]): the one place
//! the client decides. Server codes and WebSocket close codes defer to the
//! protocol's tables (`ErrorCode::is_retryable`, `ErrorCode::ws_close_code`),
//! so client and server cannot drift apart.
//!
//! Transport failures are transient unless they would fail the same way on
//! every attempt: a request that cannot be built, a TLS handshake that fails
//! (untrusted certificate, wrong name, refused client certificate, a plain
//! HTTP port spoken to over TLS). Retrying those, as `consume()` does for
//! transient errors, would loop forever on a configuration mistake.

use std::error::Error as StdError;

use tokio_tungstenite::tungstenite::Error as WsError;
use weir_protocol::ErrorCode;

use super::Error;

impl Error {
    /// True when retrying the same request later may succeed: the server was
    /// unreachable, overloaded, shutting down, rate limiting or failed
    /// internally. Client mistakes (bad request, unknown resource, denied)
    /// and TLS failures (untrusted certificate, refused client certificate)
    /// are not transient.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let messages = loop {
    ///     match client.pull("orders", "billing", &Default::default()).await {
    ///         Err(e) if e.is_transient() => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
    ///         other => break other?,
    ///     }
    /// };
    /// # Ok(()) }
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(p) | Error::RetryLater { problem: p, .. } => p.code.is_retryable(),
            Error::Transport(e) => transport_is_transient(e),
            Error::WebSocket(e) => websocket_is_transient(e),
            Error::SocketClosed { code, .. } => close_is_transient(*code),
            Error::Decode(_)
            | Error::Url(_)
            | Error::Local(_)
            | Error::Protocol(_)
            | Error::ProducerClosed
            // Retrying the same settle cannot bring a lease back.
            | Error::LeaseLost { .. } => false,
        }
    }
}

fn transport_is_transient(e: &reqwest::Error) -> bool {
    // A builder error (bad URL or scheme, invalid header) or a redirect loop
    // is the same on every attempt.
    !(e.is_builder() || e.is_redirect() || caused_by_tls(e))
}

fn websocket_is_transient(e: &WsError) -> bool {
    match e {
        // A URL tungstenite cannot use, a request it cannot build, a TLS
        // setup it refuses: the same on every attempt.
        WsError::Url(_) | WsError::HttpFormat(_) | WsError::Tls(_) => false,
        // A rustls handshake failure arrives as an I/O error.
        WsError::Io(io) => !caused_by_tls(io),
        // Everything else is a socket that broke or a peer that misbehaved
        // once: reconnecting may work.
        _ => true,
    }
}

/// `None` (the connection just broke), 1006 (abnormal end, never sent on
/// the wire) and 1012 (service restart) are not in the protocol's table;
/// the other codes are transient exactly when some retryable [`ErrorCode`]
/// ends a socket with them (today 1001 going away, 1011 internal, 1013 try
/// again later). 1008 (policy, also a slow consumer) is not: read faster or
/// fix the request.
fn close_is_transient(code: Option<u16>) -> bool {
    match code {
        None | Some(1006 | 1012) => true,
        Some(code) => ErrorCode::ALL
            .iter()
            .any(|c| c.is_retryable() && c.ws_close_code() == code),
    }
}

/// True when a TLS failure is anywhere in the cause chain. rustls errors
/// travel wrapped in `std::io::Error`, whose `source()` skips the wrapped
/// error itself, so `get_ref()` is looked into as well.
fn caused_by_tls(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<rustls::Error>() || e.is::<rustls::pki_types::InvalidDnsNameError>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if caused_by_tls(inner) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io;
    use std::sync::Arc;

    use weir_protocol::Problem;

    use super::*;

    #[test]
    fn server_codes_follow_the_protocol_table() {
        for code in ErrorCode::ALL {
            let error = Error::Api(Problem::new(code, "x"));
            assert_eq!(error.is_transient(), code.is_retryable(), "{code}");
        }
        let api = |code| Error::Api(Problem::new(code, "x")).is_transient();
        assert!(api(ErrorCode::Unavailable));
        assert!(api(ErrorCode::Overloaded));
        assert!(api(ErrorCode::ShuttingDown));
        assert!(api(ErrorCode::RateLimited));
        assert!(!api(ErrorCode::SubscriptionNotFound));
        assert!(!api(ErrorCode::InvalidRequest));
        assert!(!api(ErrorCode::Forbidden));
        assert!(!api(ErrorCode::LimitExceeded));
        assert!(!api(ErrorCode::Unknown));
        assert!(!Error::ProducerClosed.is_transient());
        assert!(!Error::Local("bad flag".into()).is_transient());
    }

    #[test]
    fn close_codes_keep_their_meaning() {
        let transient = |code| {
            Error::SocketClosed {
                code,
                reason: "x".into(),
            }
            .is_transient()
        };
        assert!(transient(None));
        for code in [1001, 1006, 1011, 1012, 1013] {
            assert!(transient(Some(code)), "{code}");
        }
        // Normal close (deleted resource), policy (also a slow consumer:
        // read faster), too big, unsupported data.
        for code in [1000, 1003, 1008, 1009] {
            assert!(!transient(Some(code)), "{code}");
        }
    }

    #[test]
    fn a_refused_connection_is_transient() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(!caused_by_tls(&refused));
        assert!(Error::WebSocket(Arc::new(WsError::Io(refused))).is_transient());
        assert!(Error::WebSocket(Arc::new(WsError::ConnectionClosed)).is_transient());
    }

    #[test]
    fn tls_failures_are_not_transient_however_wrapped() {
        let untrusted =
            || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As tokio-rustls reports it: an I/O error wrapping the rustls one.
        let io = io::Error::new(io::ErrorKind::InvalidData, untrusted());
        assert!(caused_by_tls(&io));
        assert!(!Error::WebSocket(Arc::new(WsError::Io(io))).is_transient());

        // Nested one level deeper, as a connector's boxed error.
        #[derive(Debug)]
        struct Connect(io::Error);
        impl std::fmt::Display for Connect {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl StdError for Connect {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let nested = Connect(io::Error::new(io::ErrorKind::InvalidData, untrusted()));
        assert!(caused_by_tls(&nested));

        let tls = WsError::Tls(untrusted().into());
        assert!(!Error::WebSocket(Arc::new(tls)).is_transient());
    }

    #[tokio::test]
    async fn transport_errors_are_classified_by_cause() {
        // Nothing listens on a port just released: refused, transient.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = crate::Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let refused = client.topics().await.unwrap_err();
        assert!(matches!(refused, Error::Transport(_)), "{refused:?}");
        assert!(refused.is_transient(), "{refused:?}");

        // A URL that cannot be built into a request: not transient.
        let http = reqwest::Client::new();
        let builder = http.get("http://[::1").send().await.unwrap_err();
        assert!(builder.is_builder());
        assert!(!Error::from(builder).is_transient());

        // TLS spoken to a port that answers plain HTTP: the handshake
        // fails the same way every time.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = crate::Client::new(&format!("https://127.0.0.1:{port}")).unwrap();
        let tls = client.topics().await.unwrap_err();
        assert!(matches!(tls, Error::Transport(_)), "{tls:?}");
        assert!(!tls.is_transient(), "{tls:?}");
    }
}
