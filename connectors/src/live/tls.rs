//! TLS for listeners (rustls): a certificate chain and key from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// A listener's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("TLS {what} {}: {message}", path.display())]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS certificate {} and key {}: {source}", cert.display(), key.display())]
    Rustls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

impl TlsConfig {
    /// Paths resolved against `base` (the config file's folder).
    pub fn resolve_relative_to(&mut self, base: &Path) {
        for path in [&mut self.cert, &mut self.key] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Loads the files and builds the acceptor.
    ///
    /// # Errors
    /// A file is missing or invalid, or the key does not fit.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let pem = |what, path: &Path, message: String| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            message,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| pem("certificate", &self.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(pem(
                "certificate",
                &self.cert,
                "no certificate in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| pem("key", &self.key, e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let rustls_error = |source| TlsError::Rustls {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(rustls_error)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
