//! Syslog listeners: UDP (one message per datagram, RFC 5426), TCP and TLS
//! (RFC 6587: octet counting, `123 <34>...`, or one message per line,
//! told apart per message by its first byte; RFC 5425 for TLS), framed by
//! [`codec::SyslogCodec`].
//!
//! TCP and TLS apply backpressure: a connection is not read while the
//! pipeline is full. When the run stops, listeners stop accepting and
//! connections are closed between messages, so that everything taken in
//! is processed before the end. UDP cannot: a datagram that finds the queue full is
//! dropped and counted, and so is one the kernel dropped because the
//! socket's receive buffer was full (read from `/proc/net/udp` on Linux):
//! `vagt_source_dropped_total{source, reason="queue_full"|"socket_buffer"|"stopping"}`
//! and `dropped_records` in the run summary. When the run stops, the
//! datagrams already in the socket's buffer are still taken in, waiting
//! for room, before the socket closes; those that cannot be within a
//! second are counted (`reason="stopping"`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::{Body, LiveContext, LiveError, Payload, TlsConfig};
use crate::dead_letter::{excerpt, DeadLetter};
use crate::framing::{Origin, Record};

pub mod codec;

use codec::SyslogCodec;

/// A syslog listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Address to listen on, e.g. `0.0.0.0:6514`.
    pub listen: SocketAddr,
    /// `udp`, `tcp` or `tls`.
    pub protocol: SyslogProtocol,
    /// Certificate and key; required for `tls`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connections served at once (TCP, TLS); more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Senders allowed, as addresses or networks (`10.31.0.0/16`); empty
    /// allows every sender. Others are refused and counted
    /// (`vagt_source_refused_total`), so that no one but the listener's
    /// organisation writes events as it.
    #[serde(default)]
    pub allowed_peers: Vec<String>,
}

/// How long a TLS client may take to complete its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn default_max_connections() -> usize {
    1024
}

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    /// Datagrams.
    Udp,
    /// Plain TCP.
    Tcp,
    /// TCP with TLS.
    Tls,
}

impl SyslogConfig {
    /// Cross-field checks.
    ///
    /// # Errors
    /// What is inconsistent.
    pub fn validate(&self) -> Result<(), String> {
        match (self.protocol, &self.tls) {
            (SyslogProtocol::Tls, None) => Err("protocol tls needs tls: {cert, key}".into()),
            (SyslogProtocol::Udp | SyslogProtocol::Tcp, Some(_)) => {
                Err("tls settings are only for protocol tls".into())
            }
            (SyslogProtocol::Tls, Some(tls)) => tls.validate().map_err(|e| e.to_string()),
            _ => Ok(()),
        }?;
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        self.peers().map(|_| ())
    }

    /// The allowed senders, parsed.
    fn peers(&self) -> Result<Peers, String> {
        let networks = self
            .allowed_peers
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("allowed_peers: '{p}' is not an address or network"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Peers(Arc::new(networks)))
    }

    /// What dead letters and metrics call this listener.
    pub fn name(&self) -> String {
        let scheme = match self.protocol {
            SyslogProtocol::Udp => "udp",
            SyslogProtocol::Tcp => "tcp",
            SyslogProtocol::Tls => "tls",
        };
        format!("syslog+{scheme}://{}", self.listen)
    }
}

/// The senders a listener takes messages from.
#[derive(Debug, Clone)]
struct Peers(Arc<Vec<ipnet::IpNet>>);

impl Peers {
    /// Whether `peer` may send; a refusal is counted for `source`.
    fn allow(&self, peer: SocketAddr, source: &str) -> bool {
        let ip = peer.ip().to_canonical();
        let allowed = self.0.is_empty() || self.0.iter().any(|n| n.contains(&ip));
        if !allowed {
            count_refusal(source);
        }
        allowed
    }
}

/// Counts a sender refused by `source` (`vagt_source_refused_total`).
fn count_refusal(source: &str) {
    metrics::counter!("vagt_source_refused_total", "source" => source.to_string()).increment(1);
}

/// A TLS connection refused (failed handshake, or a client certificate
/// naming no single organisation): counted, and a dead letter says why.
async fn refuse_connection(context: &LiveContext, source: &Arc<str>, reason: String) {
    count_refusal(&context.name);
    let dead = DeadLetter {
        source: source.to_string(),
        line: 0,
        offset: 0,
        reason,
        excerpt: String::new(),
    };
    context.dead(source, dead).await;
}

/// Binds the listener and serves it in a task; returns the bound address
/// (the port is chosen when the config says 0) and the task.
///
/// # Errors
/// The address cannot be bound, or the TLS files are unusable.
pub async fn start(
    config: &SyslogConfig,
    context: LiveContext,
) -> Result<(SocketAddr, JoinHandle<()>), LiveError> {
    let bind = |source| LiveError::Bind {
        what: config.name(),
        source,
    };
    let peers = config.peers().map_err(|message| LiveError::Config {
        what: config.name(),
        message,
    })?;
    match config.protocol {
        SyslogProtocol::Udp => {
            let socket = UdpSocket::bind(config.listen).await.map_err(bind)?;
            let local = socket.local_addr().map_err(bind)?;
            let task = tokio::spawn(serve_udp(socket, local, peers, context));
            Ok((local, task))
        }
        SyslogProtocol::Tcp | SyslogProtocol::Tls => {
            let acceptor = match &config.tls {
                Some(tls) => Some(tls.acceptor()?),
                None => None,
            };
            let tls_config = config.tls.clone().map(Arc::new);
            let listener = TcpListener::bind(config.listen).await.map_err(bind)?;
            let local = listener.local_addr().map_err(bind)?;
            let limit = Arc::new(Semaphore::new(config.max_connections));
            let scheme = if acceptor.is_some() { "tls" } else { "tcp" };
            let task = tokio::spawn(async move {
                loop {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        break;
                    };
                    let accepted = tokio::select! {
                        () = context.stopped() => break,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((stream, peer)) = accepted else {
                        // Out of descriptors, say: give the others a moment.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    if !peers.allow(peer, &context.name) {
                        continue;
                    }
                    let source: Arc<str> =
                        Arc::from(format!("syslog+{scheme}://{local} from {peer}").as_str());
                    let context = context.clone();
                    let acceptor = acceptor.clone();
                    let tls_config = tls_config.clone();
                    tokio::spawn(async move {
                        match acceptor {
                            None => serve_stream(stream, source, &context).await,
                            Some(acceptor) => match tokio::time::timeout(
                                TLS_HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            )
                            .await
                            .map_err(|_| "timed out".to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                            {
                                Ok(tls) => {
                                    // A client certificate says who it is.
                                    let named = tls_config
                                        .as_ref()
                                        .filter(|t| t.names_clients())
                                        .map(|t| {
                                            tls.get_ref()
                                                .1
                                                .peer_certificates()
                                                .and_then(|certs| certs.first())
                                                .ok_or_else(|| "no client certificate".to_string())
                                                .and_then(|cert| t.actor_of(cert))
                                                .map(Arc::<str>::from)
                                        });
                                    match named {
                                        None => serve_stream(tls, source, &context).await,
                                        Some(Ok(actor)) => {
                                            let context = LiveContext {
                                                actor: Some(actor),
                                                ..context.clone()
                                            };
                                            serve_stream(tls, source, &context).await;
                                        }
                                        Some(Err(why)) => {
                                            let reason = format!("{why}; connection refused");
                                            refuse_connection(&context, &source, reason).await;
                                        }
                                    }
                                }
                                Err(e) => {
                                    let reason = format!("TLS handshake failed: {e}");
                                    refuse_connection(&context, &source, reason).await;
                                }
                            },
                        }
                        drop(permit);
                    });
                }
            });
            Ok((local, task))
        }
    }
}

/// What the kernel dropped for the socket bound to `local`, counted as it
/// grows.
struct KernelDrops {
    local: SocketAddr,
    seen: u64,
}

impl KernelDrops {
    fn new(local: SocketAddr) -> KernelDrops {
        KernelDrops {
            local,
            seen: kernel_drops(local).unwrap_or(0),
        }
    }

    /// Counts the drops since the last call.
    fn count(&mut self, context: &LiveContext) {
        if let Some(now) = kernel_drops(self.local) {
            if now > self.seen {
                context.dropped_because("socket_buffer", now - self.seen);
            }
            self.seen = now;
        }
    }
}

/// The kernel's drop count of the UDP socket bound to `local`, where the
/// system says it (Linux).
fn kernel_drops(local: SocketAddr) -> Option<u64> {
    let table = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let port = format!(":{:04X}", local.port());
    text.lines().skip(1).find_map(|line| {
        let mut columns = line.split_whitespace();
        let address = columns.nth(1)?;
        if !address.ends_with(&port) {
            return None;
        }
        line.split_whitespace().last()?.parse().ok()
    })
}

/// One message per datagram; a full queue drops it, counted. At the stop,
/// the datagrams the socket still holds are taken in, waiting for room.
async fn serve_udp(socket: UdpSocket, local: SocketAddr, peers: Peers, context: LiveContext) {
    let mut buf = vec![0u8; 65_536];
    let mut datagrams = Datagrams {
        local,
        peers,
        context,
        names: HashMap::new(),
        count: 0,
    };
    let mut drops = KernelDrops::new(local);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        let received = tokio::select! {
            // A stop wins: what is still in the socket is read below.
            biased;
            () = datagrams.context.stopped() => break,
            _ = tick.tick() => {
                drops.count(&datagrams.context);
                continue;
            }
            // Cancel safe: a datagram is either received or left in the socket.
            received = socket.recv_from(&mut buf) => received,
        };
        let Ok((n, peer)) = received else {
            continue;
        };
        if !datagrams.take(&buf[..n], peer, false).await {
            return;
        }
    }
    // Sent before the stop, waiting in the socket's buffer: read by the
    // (non-blocking) system call itself, as Tokio's readiness may not have
    // seen them yet.
    let Ok(socket) = socket.into_std() else {
        return;
    };
    let started = tokio::time::Instant::now();
    let (processing_until, counting_until) = (started + UDP_DRAIN, started + 2 * UDP_DRAIN);
    let mut counted = 0u64;
    while let Ok((n, peer)) = socket.recv_from(&mut buf) {
        let now = tokio::time::Instant::now();
        if now < processing_until {
            let take = datagrams.take(&buf[..n], peer, true);
            match tokio::time::timeout_at(processing_until, take).await {
                Ok(true) => continue,
                Ok(false) => return,
                Err(_) => datagrams.context.dropped_because("stopping", 1),
            }
        } else if datagrams.peers.allow(peer, &datagrams.context.name) {
            datagrams.context.dropped_because("stopping", 1);
            // Only counting, without waiting: let the other inputs' drains run.
            counted += 1;
            if counted.is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
        }
        // A flood that never pauses: what arrives now was sent after the stop.
        if now >= counting_until {
            break;
        }
    }
    drops.count(&datagrams.context);
}

/// How long a stopping UDP listener processes what its socket buffer
/// holds; for as long again it only counts the rest as dropped.
const UDP_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Turns datagrams into payloads for one UDP listener.
struct Datagrams {
    local: SocketAddr,
    peers: Peers,
    context: LiveContext,
    /// Dead-letter source names per peer (bounded).
    names: HashMap<SocketAddr, Arc<str>>,
    /// Datagrams taken so far, numbering them.
    count: u64,
}

impl Datagrams {
    /// Hands on one datagram from `peer`, if it is allowed; when the
    /// queue is full, waits if `wait`, else drops it, counted. False once
    /// the pipeline has gone.
    async fn take(&mut self, datagram: &[u8], peer: SocketAddr, wait: bool) -> bool {
        let context = &self.context;
        if !self.peers.allow(peer, &context.name) {
            return true;
        }
        self.count += 1;
        if self.names.len() > 10_000 {
            self.names.clear();
        }
        let local = self.local;
        let source = self
            .names
            .entry(peer)
            .or_insert_with(|| Arc::from(format!("syslog+udp://{local} from {peer}").as_str()))
            .clone();
        let origin = Origin {
            line: self.count,
            offset: 0,
        };
        let body = if datagram.len() > context.max_record_bytes {
            Body::Dead(DeadLetter {
                source: source.to_string(),
                line: origin.line,
                offset: origin.offset,
                reason: format!(
                    "datagram exceeds {} bytes; skipped",
                    context.max_record_bytes
                ),
                excerpt: excerpt(datagram),
            })
        } else {
            Body::Record(Record {
                bytes: datagram.to_vec(),
                origin,
            })
        };
        let payload = Payload {
            source,
            actor: context.actor.clone(),
            body,
            ack: None,
        };
        if wait {
            return context.payloads.send(payload).await.is_ok();
        }
        match context.payloads.try_send(payload) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                context.dropped_because("queue_full", 1);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// Reads a connection's messages (see [`codec`]) and hands them on; a
/// stopping run stops reading between messages.
async fn serve_stream<S: AsyncRead + Unpin>(stream: S, source: Arc<str>, context: &LiveContext) {
    let mut frames = FramedRead::new(stream, SyslogCodec::new(context.max_record_bytes));
    let mut line = 1;
    let mut stopping = false;
    loop {
        // A message partly received when the stop comes is still read.
        if stopping && frames.decoder().is_between_messages() && frames.read_buffer().is_empty() {
            break;
        }
        let frame = tokio::select! {
            () = context.stopped(), if !stopping => {
                stopping = true;
                continue;
            }
            frame = frames.next() => match frame {
                Some(Ok(frame)) => frame,
                // The connection ended or failed.
                None | Some(Err(_)) => break,
            },
        };
        let origin = Origin {
            line,
            offset: frame.offset,
        };
        line += 1;
        let body = match frame.body {
            Ok(bytes) => Body::Record(Record {
                bytes: bytes.into(),
                origin,
            }),
            Err(refused) => Body::Dead(DeadLetter {
                source: source.to_string(),
                line: origin.line,
                offset: origin.offset,
                reason: refused.reason,
                excerpt: excerpt(&refused.sample),
            }),
        };
        let payload = Payload {
            source: source.clone(),
            actor: context.actor.clone(),
            body,
            ack: None,
        };
        if context.payloads.send(payload).await.is_err() {
            return;
        }
    }
    let _ = context
        .payloads
        .send(Payload {
            source,
            actor: context.actor.clone(),
            body: Body::Closed,
            ack: None,
        })
        .await;
}

impl LiveContext {
    /// Counts records dropped, and why.
    fn dropped_because(&self, reason: &'static str, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
        metrics::counter!(
            "vagt_source_dropped_total",
            "source" => self.name.to_string(),
            "reason" => reason
        )
        .increment(count);
    }

    /// Hands on a dead letter (waiting for room).
    async fn dead(&self, source: &Arc<str>, dead: DeadLetter) {
        let _ = self
            .payloads
            .send(Payload {
                source: source.clone(),
                actor: self.actor.clone(),
                body: Body::Dead(dead),
                ack: None,
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_drop_count_of_a_bound_socket_is_found() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        assert_eq!(kernel_drops(local), Some(0));
        drop(socket);
        assert_eq!(kernel_drops(local), None);
    }

    /// A UDP listener whose run is already stopping, with `sent`
    /// datagrams waiting in its socket and a queue of `capacity`; returns
    /// the listener's task, the queue's end, and the drop count.
    async fn stopping_udp_listener(
        sent: u64,
        capacity: usize,
    ) -> (
        tokio::task::JoinHandle<()>,
        tokio::sync::mpsc::Receiver<Payload>,
        Arc<std::sync::atomic::AtomicU64>,
    ) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for n in 0..sent {
            let message = format!("<38>Nov 23 09:10:29 pc1 sshd[1]: n={n}");
            sender.send_to(message.as_bytes(), local).unwrap();
        }
        let (stop, stopping) = tokio::sync::watch::channel(true);
        let (payloads, taken) = tokio::sync::mpsc::channel(capacity);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let context = LiveContext {
            name: Arc::from("syslog+udp://test"),
            actor: Some(Arc::from("org")),
            max_record_bytes: 1024,
            payloads,
            dropped: dropped.clone(),
            stopping,
        };
        let peers = Peers(Arc::new(Vec::new()));
        let listener = tokio::spawn(async move {
            serve_udp(socket, local, peers, context).await;
            drop(stop);
        });
        (listener, taken, dropped)
    }

    #[tokio::test]
    async fn datagrams_in_the_socket_at_the_stop_are_taken_in_not_lost() {
        // The queue holds fewer than were sent, and is read.
        let sent = 50;
        let (listener, mut taken, dropped) = stopping_udp_listener(sent, 4).await;
        let mut lines = Vec::new();
        while let Some(payload) = taken.recv().await {
            match payload.body {
                Body::Record(record) => lines.push(record.origin.line),
                Body::Dead(dead) => panic!("{}", dead.reason),
                _ => panic!("a datagram is one record"),
            }
        }
        listener.await.unwrap();
        assert_eq!(lines, (1..=sent).collect::<Vec<u64>>());
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn datagrams_the_stop_cannot_process_in_time_are_counted() {
        // The queue has room for one, and nobody reads it until the end.
        let sent = 20;
        let (listener, mut taken, dropped) = stopping_udp_listener(sent, 1).await;
        listener.await.unwrap();
        let mut processed = 0;
        while taken.recv().await.is_some() {
            processed += 1;
        }
        assert_eq!(processed, 1);
        assert_eq!(dropped.load(Ordering::Relaxed), sent - 1);
    }

    #[test]
    fn only_allowed_peers_may_send() {
        let config = SyslogConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            protocol: SyslogProtocol::Udp,
            tls: None,
            max_connections: 1,
            allowed_peers: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
        };
        let peers = config.peers().unwrap();
        for (peer, allowed) in [
            ("10.31.2.3:514", true),
            ("192.0.2.7:514", true),
            ("192.0.2.8:514", false),
            ("127.0.0.1:514", false),
            ("[::ffff:10.1.1.1]:514", true),
        ] {
            assert_eq!(
                peers.allow(peer.parse().unwrap(), "test"),
                allowed,
                "{peer}"
            );
        }
        let open = SyslogConfig {
            allowed_peers: Vec::new(),
            ..config
        };
        assert!(open
            .peers()
            .unwrap()
            .allow("127.0.0.1:1".parse().unwrap(), "test"));
    }

    #[test]
    fn tls_and_protocol_must_agree() {
        let mut config = SyslogConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            protocol: SyslogProtocol::Tls,
            tls: None,
            max_connections: 1,
            allowed_peers: Vec::new(),
        };
        assert!(config.validate().unwrap_err().contains("needs tls"));
        config.protocol = SyslogProtocol::Udp;
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.name(), "syslog+udp://127.0.0.1:0");
        config.allowed_peers = vec!["10.0.0.0/8".into(), "192.0.2.7".into(), "nope".into()];
        assert!(config.validate().unwrap_err().contains("'nope' is not"));
    }
}
