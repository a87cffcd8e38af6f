//! TLS end to end against small in-process servers (a throwaway CA from
//! rcgen, tokio-rustls): HTTPS requests and `wss://` sockets trust the same
//! `ca_file`, present the same client certificate, and a TLS failure is
//! reported as not transient, so retry loops stop instead of spinning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use weir_client::{Client, Error, TailFrom};

/// A CA, a server certificate for 127.0.0.1 and a client certificate it
/// signed, with PEM copies on disk for the client builder.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "weir test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "worker-1");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server side; with `require_client_cert`, only clients with a
    /// certificate from the CA get through the handshake.
    fn acceptor(&self, require_client_cert: bool) -> TlsAcceptor {
        let provider = Arc::new(ring_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = builder
            .with_single_cert(self.server_chain.clone(), key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

#[allow(deprecated)] // see client/src/tls.rs: ring, not aws-lc-rs
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// An HTTPS server answering every request with an empty topic list.
async fn https_server(acceptor: TlsAcceptor) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = br#"{"topics":[],"next":null}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    base
}

/// A `wss://` server that sends one tail message on every socket.
async fn wss_server(acceptor: TlsAcceptor) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut socket) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let frame = r#"{"type":"message","topic":"t","partition":0,"offset":7,"timestamp":1,"key":null,"value_b64":"AAE=","headers":{}}"#;
                let _ = socket.send(WsMessage::text(frame)).await;
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    base
}

fn trusting(base: &str, pki: &Pki) -> weir_client::ClientBuilder {
    Client::builder(base).ca_file(pki.path("ca.pem"))
}

async fn first_tail_offset(client: &Client) -> Result<u64, Error> {
    let mut tail = client.tail_ws("t", TailFrom::Earliest).await?;
    let message = tail.next().await.expect("a message")?;
    Ok(message.offset)
}

#[tokio::test]
async fn https_and_wss_trust_the_ca_file_and_only_it() {
    let pki = Pki::new();
    let http = https_server(pki.acceptor(false)).await;
    let ws = wss_server(pki.acceptor(false)).await;

    let client = trusting(&http, &pki).build().unwrap();
    assert!(client.topics().await.unwrap().is_empty());
    let client = trusting(&ws, &pki).build().unwrap();
    assert_eq!(first_tail_offset(&client).await.unwrap(), 7);

    // The built-in web roots do not include the test CA: refused, and not
    // worth retrying.
    let untrusting = Client::new(&http).unwrap();
    let e = untrusting.topics().await.unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
    assert!(!e.is_transient(), "{e:?}");
    let untrusting = Client::new(&ws).unwrap();
    let e = first_tail_offset(&untrusting).await.unwrap_err();
    assert!(matches!(e, Error::WebSocket(_)), "{e:?}");
    assert!(!e.is_transient(), "{e:?}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_over_https_and_wss() {
    let pki = Pki::new();
    let http = https_server(pki.acceptor(true)).await;
    let ws = wss_server(pki.acceptor(true)).await;
    let with_cert = |base: &str| {
        trusting(base, &pki)
            .client_cert(pki.path("client.pem"), pki.path("client.key"))
            .build()
            .unwrap()
    };

    assert!(with_cert(&http).topics().await.unwrap().is_empty());
    assert_eq!(first_tail_offset(&with_cert(&ws)).await.unwrap(), 7);

    // Without one the server ends the handshake: not transient either.
    let e = trusting(&http, &pki)
        .build()
        .unwrap()
        .topics()
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    let e = first_tail_offset(&trusting(&ws, &pki).build().unwrap())
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
}

#[test]
fn pem_errors_name_the_file() {
    let missing = Path::new("/nonexistent/weir/ca.pem");
    let e = Client::builder("https://127.0.0.1:1")
        .ca_file(missing)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Local(_)), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/weir/ca.pem"), "{e}");
}
