//! The one rustls configuration a [`Client`](crate::Client) uses for both
//! HTTPS requests and `wss://` sockets, so the two always trust the same CAs
//! and present the same client certificate.
//!
//! Owns PEM loading (errors name the file) and the choice of crypto provider
//! (`ring`: aws-lc-rs needs cmake and a C toolchain to build). Knows nothing
//! of URLs or requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// What to trust and what to present, as set on the
/// [`ClientBuilder`](crate::ClientBuilder).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// PEM CA certificates trusted *instead of* the built-in web roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key for mutual TLS.
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Builds the config. Files are read now, so a bad path fails at
    /// construction rather than on the first request.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let roots = match &self.ca_file {
            Some(path) => ca_roots(path)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Local(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            Some((cert_path, key_path)) => {
                let chain = certificates(cert_path, "client certificate")?;
                let key = private_key(key_path)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::Local(format!(
                        "client certificate `{}` with key `{}`: {e}",
                        cert_path.display(),
                        key_path.display()
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The `ring` provider, named explicitly rather than taken from a process
/// default, so no other crate's choice can change it. rustls 0.23.48
/// deprecates it for lacking post-quantum key exchange; the alternative,
/// aws-lc-rs, needs cmake and a C toolchain on every build machine.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A root store of exactly the CAs in `path`.
fn ca_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "CA file")? {
        roots.add(cert).map_err(|e| {
            Error::Local(format!(
                "invalid CA certificate in `{}`: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// Every `CERTIFICATE` block of a PEM file; none at all is an error (a key
/// or a DER file given by mistake would otherwise trust nothing, silently).
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Local(format!("invalid PEM in {what} `{}`: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Local(format!(
            "no PEM certificate in {what} `{}`",
            path.display()
        )));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read(path, "client key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::Local(format!(
            "no PEM private key in client key `{}`",
            path.display()
        )),
        e => Error::Local(format!(
            "invalid PEM in client key `{}`: {e}",
            path.display()
        )),
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::Local(format!("cannot read {what} `{}`: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn local_message(result: Result<Arc<ClientConfig>, Error>) -> String {
        match result {
            Err(Error::Local(message)) => message,
            other => panic!("expected a local error, got {other:?}"),
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn the_default_trusts_the_web_roots_without_reading_files() {
        let config = TlsOptions::default().client_config().unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn a_missing_ca_file_names_the_path() {
        let message = local_message(
            TlsOptions {
                ca_file: Some("/nonexistent/weir-ca.pem".into()),
                ..TlsOptions::default()
            }
            .client_config(),
        );
        assert!(message.contains("cannot read CA file"), "{message}");
        assert!(message.contains("/nonexistent/weir-ca.pem"), "{message}");
    }

    #[test]
    fn a_file_without_certificates_is_refused_not_trusted_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "ca.pem", "not a certificate\n");
        let message = local_message(
            TlsOptions {
                ca_file: Some(path.clone()),
                ..TlsOptions::default()
            }
            .client_config(),
        );
        assert!(message.contains("no PEM certificate"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn a_garbled_certificate_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let message = local_message(
            TlsOptions {
                ca_file: Some(path.clone()),
                ..TlsOptions::default()
            }
            .client_config(),
        );
        assert!(message.contains("invalid CA certificate"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn client_certificate_errors_name_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let issued = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let cert = write(dir.path(), "client.pem", &issued.cert.pem());
        let key = write(dir.path(), "client.key", &issued.key_pair.serialize_pem());
        let with = |cert: &Path, key: &Path| TlsOptions {
            client_cert: Some((cert.to_owned(), key.to_owned())),
            ..TlsOptions::default()
        };

        let config = with(&cert, &key).client_config().unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());

        let message = local_message(with(&cert, &dir.path().join("absent.key")).client_config());
        assert!(message.contains("cannot read client key"), "{message}");
        assert!(message.contains("absent.key"), "{message}");

        // A certificate where the key should be: no key in it.
        let message = local_message(with(&cert, &cert).client_config());
        assert!(message.contains("no PEM private key"), "{message}");
        assert!(message.contains("client.pem"), "{message}");

        // A key where the certificate should be: no certificate in it.
        let message = local_message(with(&key, &key).client_config());
        assert!(
            message.contains("no PEM certificate in client certificate"),
            "{message}"
        );

        // A key that does not belong to the certificate.
        let other = rcgen::KeyPair::generate().unwrap();
        let other_key = write(dir.path(), "other.key", &other.serialize_pem());
        let message = local_message(with(&cert, &other_key).client_config());
        assert!(message.contains("client.pem"), "{message}");
        assert!(message.contains("other.key"), "{message}");
    }
}
