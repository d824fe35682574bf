//! The `syslog` output: RFC 5424 messages over TCP or TLS (RFC 5425),
//! octet-counted, for SIEMs that take syslog.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID alert - MSG`: the priority is
//! the facility and the alert's severity (critical → crit, high → err,
//! medium → warning, low → notice, informational → info), the timestamp
//! the detection time, the message the alert as encoded (JSON or OCSF).
//!
//! A batch counts as taken once written and flushed to the connection.
//! When the connection fails, vagt reconnects with backoff and writes the
//! batch again (the receiver may see some alerts twice, never none);
//! meanwhile the barriers wait, so positions and offsets do not advance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;
use vagt_connectors::live::syslog::codec::SyslogCodec;
use vagt_rules::Level;

use super::config::{SyslogOutputConfig, SyslogOutputProtocol};
use super::encode::encode;
use super::{backoff, OutputError, SinkContext, SinkEnd, SinkItem};
use crate::alert::Alert;
use crate::pipeline::PipelineError;

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Connection = Box<dyn AsyncWrite + Unpin + Send + Sync>;

/// A `syslog` output.
pub(crate) struct SyslogSink {
    config: SyslogOutputConfig,
    context: SinkContext,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    hostname: String,
    connection: Option<Connection>,
}

impl SyslogSink {
    /// Sets the output up (it connects when it first writes).
    ///
    /// # Errors
    /// The CA file is unusable or the server name invalid.
    pub fn new(
        config: SyslogOutputConfig,
        context: SinkContext,
    ) -> Result<SyslogSink, PipelineError> {
        let setup = |message: String| OutputError::Setup {
            name: context.name.to_string(),
            message,
        };
        let tls = match config.protocol {
            SyslogOutputProtocol::Tcp => None,
            SyslogOutputProtocol::Tls => Some(tls_connector(&config).map_err(setup)?),
        };
        let hostname = config.hostname.clone().unwrap_or_else(local_hostname);
        Ok(SyslogSink {
            config,
            context,
            tls,
            hostname,
            connection: None,
        })
    }

    /// Runs until delivery ends.
    ///
    /// # Errors
    /// None: a failing receiver is retried, holding back what follows.
    pub async fn run(
        mut self,
        mut items: mpsc::Receiver<SinkItem>,
    ) -> Result<SinkEnd, PipelineError> {
        let mut codec = SyslogCodec::new(usize::MAX);
        let mut message = Vec::with_capacity(4096);
        let mut frames = BytesMut::with_capacity(64 * 1024);
        while let Some(item) = items.recv().await {
            match item {
                SinkItem::Alerts(alerts, received) => {
                    frames.clear();
                    for alert in &alerts {
                        message.clear();
                        self.header(alert, &mut message);
                        encode(alert, self.context.encoding, &mut message);
                        codec
                            .encode(&message[..], &mut frames)
                            .expect("encoding into memory");
                    }
                    self.send(&frames).await;
                    self.context.metrics.delivered(alerts.len(), Some(received));
                }
                // Every batch is flushed once written.
                SinkItem::Barrier { taken, .. } => {
                    let _ = taken.send(());
                }
            }
        }
        if let Some(mut connection) = self.connection.take() {
            let _ = connection.shutdown().await;
        }
        Ok(SinkEnd::Done)
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD ` before the message.
    fn header(&self, alert: &Alert, out: &mut Vec<u8>) {
        let severity = match alert.severity {
            Level::Critical => 2,
            Level::High => 3,
            Level::Medium => 4,
            Level::Low => 5,
            Level::Informational => 6,
        };
        let pri = u16::from(self.config.facility.code()) * 8 + severity;
        use std::io::Write;
        let _ = write!(
            out,
            "<{pri}>1 {} {} {} {} alert - ",
            alert.detected_at,
            self.hostname,
            self.config.app_name,
            std::process::id()
        );
    }

    /// Writes `frames`, reconnecting and writing them again until they go
    /// through.
    async fn send(&mut self, frames: &[u8]) {
        let mut attempt = 0u32;
        let mut failing_since: Option<Instant> = None;
        loop {
            let written = match self.connection.as_mut() {
                Some(connection) => match connection.write_all(frames).await {
                    Ok(()) => connection.flush().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                None => match self.connect().await {
                    Ok(connection) => {
                        self.connection = Some(connection);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match written {
                Ok(()) => {
                    if let Some(since) = failing_since {
                        tracing::info!(
                            output = %self.context.name,
                            after = ?since.elapsed(),
                            "the syslog receiver takes alerts again"
                        );
                    }
                    return;
                }
                Err(e) => {
                    self.connection = None;
                    self.context.metrics.retried();
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::warn!(
                            output = %self.context.name,
                            address = %self.config.address,
                            "cannot send to the syslog receiver ({e}); retrying, holding back what follows"
                        );
                    }
                    let wait =
                        backoff(Duration::from_millis(200), Duration::from_secs(30), attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        let connecting = async {
            let tcp = TcpStream::connect(&self.config.address)
                .await
                .map_err(|e| format!("connect {}: {e}", self.config.address))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Box::new(tcp) as Connection),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Box::new(tls) as Connection)
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.config.address)),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("connect {}: timed out", self.config.address))?
    }
}

/// The TLS client: the configured CAs, or the system's.
fn tls_connector(
    config: &SyslogOutputConfig,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no system CA certificates found: give ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = config
        .server_name
        .clone()
        .unwrap_or_else(|| config.host().to_string());
    let name =
        ServerName::try_from(name.clone()).map_err(|_| format!("'{name}' is not a server name"))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
}

/// This machine's name, for the HOSTNAME field (`-` if unknown).
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| (33..=126).contains(&b)))
        .unwrap_or_else(|| "-".into())
}
