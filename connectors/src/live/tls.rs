//! TLS for listeners (rustls): a certificate chain and key from PEM files,
//! and optionally client certificates (mutual TLS) that say which
//! organisation a connection is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
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
    /// events. A certificate valid for none of them, for names of several
    /// organisations, or holding a wildcard name, is refused.
    #[serde(default)]
    pub client_actors: BTreeMap<String, String>,
    /// PEM files with certificate revocation lists of the client CAs:
    /// a revoked client certificate fails the handshake. Given any, every
    /// client certificate's issuer needs one.
    #[serde(default)]
    pub client_crls: Vec<PathBuf>,
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
    /// A revocation list is unusable.
    #[error("TLS client_crls {}: {message}", path.display())]
    ClientCrl {
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
            .chain(self.client_crls.iter_mut())
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
        if self.client_ca.is_none() {
            if !self.client_actors.is_empty() {
                return Err(TlsError::ClientActors(
                    "needs client_ca, the CAs that sign the client certificates".into(),
                ));
            }
            if !self.client_crls.is_empty() {
                return Err(TlsError::ClientActors(
                    "client_crls needs client_ca, the CAs whose revocations they list".into(),
                ));
            }
        }
        for (name, actor) in &self.client_actors {
            if name.contains('*') {
                return Err(TlsError::ClientActors(format!(
                    "'{name}': a wildcard cannot name one organisation"
                )));
            }
            ServerName::try_from(name.as_str()).map_err(|_| {
                TlsError::ClientActors(format!("'{name}' is not a DNS name or IP address"))
            })?;
            if actor.trim().is_empty() {
                return Err(TlsError::ClientActors(format!(
                    "'{name}' has an empty actor"
                )));
            }
        }
        Ok(())
    }

    /// Whether connections say who they are by their client certificate.
    pub fn names_clients(&self) -> bool {
        !self.client_actors.is_empty()
    }

    /// The organisation a client certificate is, by `client_actors`.
    ///
    /// # Errors
    /// Why the certificate names no single organisation, naming the
    /// certificate's DNS names: none listed, several organisations', or a
    /// wildcard (valid for names it was never meant for).
    pub fn actor_of(&self, certificate: &CertificateDer<'_>) -> Result<&str, String> {
        let cert = webpki::EndEntityCert::try_from(certificate)
            .map_err(|e| format!("client certificate unreadable: {e}"))?;
        let names: Vec<&str> = cert.valid_dns_names().collect();
        let shown = if names.is_empty() {
            "a client certificate without DNS names".to_string()
        } else {
            format!("client certificate for {}", names.join(", "))
        };
        if names.iter().any(|n| n.starts_with('*')) {
            return Err(format!(
                "{shown}: a wildcard name cannot say which organisation it is"
            ));
        }
        let mut actors: Vec<&str> = self
            .client_actors
            .iter()
            .filter(|(name, _)| {
                ServerName::try_from(name.as_str())
                    .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .map(|(_, actor)| actor.as_str())
            .collect();
        actors.sort_unstable();
        actors.dedup();
        match actors.as_slice() {
            [actor] => Ok(actor),
            [] => Err(format!("{shown} names no organisation in client_actors")),
            several => Err(format!(
                "{shown} names several organisations in client_actors ({})",
                several.join(", ")
            )),
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
                let mut crls = Vec::new();
                for path in &self.client_crls {
                    crls.extend(revocation_lists(path)?);
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .with_crls(crls)
                        .only_check_end_entity_revocation()
                        .build()
                        .map_err(|e| client_ca(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(rustls_error)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The revocation lists in `path`, PEM or DER, each checked to parse: a
/// file that holds none would silently turn revocation checking off.
fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let error = |message: String| TlsError::ClientCrl {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let crls = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(e.to_string()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(error("holds no certificate revocation list".into()));
    }
    for crl in &crls {
        webpki::BorrowedCertRevocationList::from_der(crl)
            .map_err(|e| error(format!("not a certificate revocation list: {e}")))?;
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client certificate valid for `names` (DNS names or IP addresses).
    fn certificate(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn config(actors: &[(&str, &str)]) -> TlsConfig {
        TlsConfig {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            client_ca: Some("ca.pem".into()),
            client_actors: actors
                .iter()
                .map(|(name, actor)| (name.to_string(), actor.to_string()))
                .collect(),
            client_crls: Vec::new(),
        }
    }

    #[test]
    fn a_certificate_names_exactly_one_organisation_or_is_refused() {
        let tls = config(&[
            ("nord.sds.example", "rnv-hospital-nord"),
            ("nord-backup.sds.example", "rnv-hospital-nord"),
            ("aarhus.sds.example", "kk-aarhus"),
            ("192.0.2.7", "kk-aarhus"),
        ]);
        assert_eq!(tls.validate().map_err(|e| e.to_string()), Ok(()));
        let actor = |names: &[&str]| tls.actor_of(&certificate(names));
        assert_eq!(actor(&["nord.sds.example"]), Ok("rnv-hospital-nord"));
        assert_eq!(actor(&["aarhus.sds.example"]), Ok("kk-aarhus"));
        assert_eq!(actor(&["192.0.2.7"]), Ok("kk-aarhus"));
        // Two names of one organisation are that organisation.
        assert_eq!(
            actor(&["nord.sds.example", "nord-backup.sds.example"]),
            Ok("rnv-hospital-nord")
        );
        let refused = |names: &[&str]| actor(names).unwrap_err();
        let e = refused(&["nord.sds.example", "aarhus.sds.example"]);
        assert!(
            e.contains(
                "names several organisations in client_actors (kk-aarhus, rnv-hospital-nord)"
            ),
            "{e}"
        );
        // A wildcard is valid for every listed name below it.
        let e = refused(&["*.sds.example"]);
        assert!(
            e.contains("client certificate for *.sds.example: a wildcard"),
            "{e}"
        );
        let e = refused(&["syd.sds.example"]);
        assert!(
            e.contains("client certificate for syd.sds.example names no organisation"),
            "{e}"
        );
        let e = refused(&["192.0.2.8"]);
        assert!(e.contains("without DNS names names no organisation"), "{e}");
    }

    #[test]
    fn revocation_lists_are_read_as_pem_or_der_and_never_silently_empty() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&rcgen::Issuer::new(params, &key))
        .unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let pem = file("ca.crl.pem", crl.pem().unwrap().as_bytes());
        assert_eq!(revocation_lists(&pem).unwrap().len(), 1);
        let der = file("ca.crl", crl.der());
        assert_eq!(revocation_lists(&der).unwrap().len(), 1);
        let error = |path: &Path| revocation_lists(path).unwrap_err().to_string();
        let e = error(&file("cert.pem", ca_pem.as_bytes()));
        assert!(
            e.contains("cert.pem: holds no certificate revocation list"),
            "{e}"
        );
        let e = error(&file("empty.crl", b""));
        assert!(
            e.contains("empty.crl: not a certificate revocation list"),
            "{e}"
        );
        let e = error(&dir.path().join("missing.crl"));
        assert!(
            e.contains("TLS client_crls") && e.contains("missing.crl"),
            "{e}"
        );
    }

    #[test]
    fn client_settings_are_checked() {
        let e = |tls: TlsConfig| tls.validate().unwrap_err().to_string();
        let mut tls = config(&[("a.example", "org")]);
        tls.client_ca = None;
        assert!(e(tls).contains("needs client_ca"));
        assert!(e(config(&[("*.example", "org")])).contains("wildcard"));
        assert!(e(config(&[("not a name", "org")])).contains("not a DNS name"));
        assert!(e(config(&[("a.example", " ")])).contains("empty actor"));
    }
}
