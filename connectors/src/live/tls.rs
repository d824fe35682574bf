//! TLS for listeners (rustls): a certificate chain and key from PEM files,
//! and optionally client certificates (mutual TLS) that say which
//! organisation a connection is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
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
    /// PEM file with the CAs that issue client certificates: every client
    /// must then present one they signed (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Which organisation a client certificate is: a DNS name (or IP
    /// address) it is valid for → the actor stamped on its connection's
    /// events. A certificate valid for none of them is refused.
    #[serde(default)]
    pub client_actors: BTreeMap<String, String>,
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
    /// The client CAs are unusable.
    #[error("TLS client_ca {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `client_actors` without `client_ca`, or a name that is not one.
    #[error("TLS client_actors: {0}")]
    ClientActors(String),
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
        for path in [&mut self.cert, &mut self.key]
            .into_iter()
            .chain(self.client_ca.as_mut())
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks the client settings.
    ///
    /// # Errors
    /// `client_actors` without `client_ca`, or a name that is not a DNS
    /// name or IP address.
    pub fn validate(&self) -> Result<(), TlsError> {
        if !self.client_actors.is_empty() && self.client_ca.is_none() {
            return Err(TlsError::ClientActors(
                "needs client_ca, the CAs that sign the client certificates".into(),
            ));
        }
        for name in self.client_actors.keys() {
            ServerName::try_from(name.as_str()).map_err(|_| {
                TlsError::ClientActors(format!("'{name}' is not a DNS name or IP address"))
            })?;
        }
        Ok(())
    }

    /// Whether connections say who they are by their client certificate.
    pub fn names_clients(&self) -> bool {
        !self.client_actors.is_empty()
    }

    /// The organisation a client certificate is, by `client_actors`.
    pub fn actor_of(&self, certificate: &CertificateDer<'_>) -> Option<&str> {
        let cert = webpki::EndEntityCert::try_from(certificate).ok()?;
        self.client_actors.iter().find_map(|(name, actor)| {
            let name = ServerName::try_from(name.as_str()).ok()?;
            cert.verify_is_valid_for_subject_name(&name)
                .ok()
                .map(|()| actor.as_str())
        })
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
        self.validate()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let client_ca = |message: String| TlsError::ClientCa {
                    path: path.clone(),
                    message,
                };
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(path).map_err(|e| client_ca(e.to_string()))?
                {
                    let cert = cert.map_err(|e| client_ca(e.to_string()))?;
                    roots.add(cert).map_err(|e| client_ca(e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| client_ca(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(rustls_error)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
