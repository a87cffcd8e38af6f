//! HTTPS: the rustls server configuration (ring provider), a certificate
//! resolver that serves the current certificate and key (re-read when the
//! files change, so cert-manager renewals need no restart), optional client
//! certificates verified against a CA (mTLS), and the principal a verified
//! client certificate names (its subject CN).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::watch::Watched;
use crate::config::{ClientAuth, TlsOptions};

/// The certificate and key being served, swapped when the files change.
struct Current(Arc<Watched<Arc<CertifiedKey>>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the current TLS certificate")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().as_ref().clone())
    }
}

/// A TLS setup that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid TLS configuration: {0}")]
pub struct TlsError(String);

/// The server configuration and the watched certificate (whose reloader
/// the caller starts).
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub certificate: Arc<Watched<Arc<CertifiedKey>>>,
}

pub fn load(options: &TlsOptions) -> Result<Tls, TlsError> {
    // The ring provider (deprecated only for lacking post-quantum key
    // exchange): aws-lc-rs would need cmake and a long C build everywhere
    // Weir is built. Classical X25519/P-256 key exchange is used.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificate = Watched::load(
        "tls",
        vec![options.cert_file.clone(), options.key_file.clone()],
        |files| certified_key(&files[0], &files[1]),
    )
    .map_err(TlsError)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &options.client_ca_file {
        None => builder.with_no_client_auth(),
        Some((ca, mode)) => {
            let roots = Arc::new(root_store(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Current(certificate.clone())));
    // HTTP/1.1 only: WebSocket upgrades need it, and it is what every
    // client of this API speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        certificate,
    })
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key file: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("key file: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("the key does not belong to the certificate: {e}"))?;
    Ok(Arc::new(certified))
}

fn root_store(path: &PathBuf) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path)
        .map_err(|e| TlsError(format!("cannot read `{}`: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError(format!("`{}`: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("`{}`: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(TlsError(format!(
            "`{}` holds no CA certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The subject CN of a verified client certificate, if it has one.
pub fn certificate_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
