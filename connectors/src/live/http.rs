//! HTTP bulk ingest: `POST /ingest` with the events in the body (JSON
//! lines, or lines of the input's text format) and
//! `Authorization: Bearer <token>`, over HTTPS when `tls` is set.
//!
//! Every organisation has its own token; the actor stamped on the events
//! is the one its token belongs to, whatever the events say. Tokens are
//! configured by their SHA-256 (`token_sha256`), or read from an
//! environment variable (`token_env`), so that no secret sits in the
//! config. A missing or unknown token gets `401`; a body over
//! `max_body_bytes` gets `413`. Bodies may be compressed, as log
//! forwarders send them (`Content-Encoding: gzip` or `deflate`):
//! `max_body_bytes` then bounds the decompressed size too, an invalid one
//! gets `400` and another encoding `415`. An accepted body gets `202` with
//! `{"request": N, "bytes": B}` once it is queued (the request waits while
//! the pipeline is full: backpressure); its bad records go to the
//! dead-letter output, named `http://<listen>/<actor>#<request>`.
//! `GET /health` answers `200` while events are taken, `503` once stopping.
//!
//! The door is guarded before anything is read: the credential is checked
//! on the headers alone (in constant time), so an unknown client is
//! answered `401` and its connection closed without its body being read;
//! headers must arrive within `header_timeout_ms` (which also bounds an
//! idle kept-alive connection), a body within `body_timeout_ms` (`408`);
//! at most `max_connections` connections are served at once, the others
//! wait in the kernel's queue; and with `rate_limit`, each organisation
//! may send so many bytes per second (`429` with `Retry-After` beyond).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::ConfigDuration;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Body, LiveContext, LiveError, Payload, Stopping, TlsConfig};
use crate::framing::Origin;

/// The HTTP ingest listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `0.0.0.0:8088`.
    pub listen: SocketAddr,
    /// One entry per organisation.
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted (default 16 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Certificate and key: serve HTTPS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How long a client may take to send a request's headers, or, on a
    /// kept-alive connection, the next request (default `10s`).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: ConfigDuration,
    /// How long an authenticated client may take to send its body
    /// (default `60s`).
    #[serde(default = "default_body_timeout")]
    pub body_timeout: ConfigDuration,
    /// Connections served at once; further ones wait to be accepted
    /// (default 512).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes each organisation may send per second (default: no limit).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// What each organisation may send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained bytes per second (of bodies as sent).
    pub bytes_per_second: u64,
    /// Bytes that may be sent at once after a quiet spell (default: the
    /// larger of a second's worth and `max_body_bytes`).
    #[serde(default)]
    pub burst_bytes: Option<u64>,
}

fn default_max_body() -> usize {
    16 * 1024 * 1024
}
fn default_header_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_body_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}
fn default_max_connections() -> usize {
    512
}

/// An organisation's credential.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The actor its events are stamped with.
    pub actor: String,
    /// SHA-256 of the token, in hex (`printf %s TOKEN | sha256sum`).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl HttpConfig {
    /// Checks the tokens and resolves them to digests.
    ///
    /// # Errors
    /// A token is given twice or not at all, or is not valid hex, or its
    /// variable is unset, or two actors share one.
    pub fn digests(&self) -> Result<HashMap<[u8; 32], Arc<str>>, String> {
        if self.tokens.is_empty() {
            return Err("tokens: at least one organisation's token is needed".into());
        }
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes must be at least 1".into());
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err("header_timeout and body_timeout must be more than 0".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if let Some(limit) = &self.rate_limit {
            if limit.bytes_per_second == 0 {
                return Err("rate_limit.bytes_per_second must be at least 1".into());
            }
            if limit
                .burst_bytes
                .is_some_and(|b| b < self.max_body_bytes as u64)
            {
                return Err(format!(
                    "rate_limit.burst_bytes must be at least max_body_bytes ({}), or no body of that size could ever pass",
                    self.max_body_bytes
                ));
            }
        }
        let mut digests = HashMap::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let at = format!("tokens[{i}] ({})", token.actor);
            if token.actor.trim().is_empty() {
                return Err(format!("tokens[{i}]: actor is empty"));
            }
            let digest = token_digest(token.token_sha256.as_deref(), token.token_env.as_deref())
                .map_err(|e| format!("{at}: {e}"))?;
            if digests
                .insert(digest, Arc::from(token.actor.as_str()))
                .is_some()
            {
                return Err(format!(
                    "{at}: the same token is given to two organisations"
                ));
            }
        }
        Ok(digests)
    }

    /// What dead letters and metrics call this listener.
    pub fn name(&self) -> String {
        format!("{}://{}", self.scheme(), self.listen)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// The SHA-256 of a bearer token given by its digest in hex
/// (`token_sha256`) or by the environment variable holding it
/// (`token_env`): exactly one of them.
///
/// # Errors
/// Neither or both are given, the digest is not 64 hex digits, or the
/// variable is unset or empty.
pub fn token_digest(sha256: Option<&str>, env: Option<&str>) -> Result<[u8; 32], String> {
    match (sha256, env) {
        (Some(hex), None) => {
            parse_hex(hex).ok_or_else(|| "token_sha256 is not 64 hex digits".to_string())
        }
        (None, Some(var)) => {
            let value = std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {var} is unset or empty"))?;
            Ok(Sha256::digest(value.as_bytes()).into())
        }
        _ => Err("give exactly one of token_sha256 and token_env".into()),
    }
}

/// The bearer token of a request (`Authorization: Bearer <token>`), if it
/// has a non-empty one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `token` is the one whose SHA-256 is `digest`, compared in
/// constant time.
pub fn token_is(digest: &[u8; 32], token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    bool::from(digest.ct_eq(&given))
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

struct Ingest {
    /// Token digests and their organisations.
    digests: Vec<([u8; 32], Arc<str>)>,
    /// Largest body, as sent and decompressed.
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
    /// Per organisation, when a rate limit is set.
    buckets: Option<HashMap<Arc<str>, std::sync::Mutex<TokenBucket>>>,
    context: LiveContext,
    /// `http://ADDR` or `https://ADDR`.
    name: String,
    requests: AtomicU64,
}

impl Ingest {
    /// The organisation whose token this is. Every digest is compared, in
    /// constant time, so that the time taken tells nothing of them.
    fn actor_of(&self, token: &str) -> Option<Arc<str>> {
        let mut found = None;
        for (known, actor) in &self.digests {
            if token_is(known, token) {
                found = Some(actor.clone());
            }
        }
        found
    }

    /// Counts a refusal and builds its answer.
    fn refuse(&self, status: StatusCode, reason: &str) -> Response {
        let why = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "invalid",
        };
        metrics::counter!("vagt_http_refused_total", "source" => self.name.clone(), "reason" => why)
            .increment(1);
        refuse(status, reason)
    }
}

/// A token bucket of bytes: `rate` per second, at most `burst` saved up.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl TokenBucket {
    fn new(rate: u64, burst: u64) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            at: std::time::Instant::now(),
        }
    }

    /// Takes `bytes` if there are enough; else how long until there are.
    fn take(&mut self, bytes: u64) -> Result<(), std::time::Duration> {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        let wanted = bytes as f64;
        if self.tokens >= wanted {
            self.tokens -= wanted;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (wanted - self.tokens) / self.rate,
            ))
        }
    }
}

/// Binds the listener and serves it in a task; returns the bound address
/// and the task.
///
/// # Errors
/// The address cannot be bound or a token is invalid.
pub async fn start(
    config: &HttpConfig,
    context: LiveContext,
) -> Result<(SocketAddr, JoinHandle<()>), LiveError> {
    let bind = |source| LiveError::Bind {
        what: config.name(),
        source,
    };
    let digests = config.digests().map_err(|message| LiveError::Config {
        what: config.name(),
        message,
    })?;
    let acceptor = match &config.tls {
        Some(tls) => Some(tls.acceptor()?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let stopping = context.clone_stopping();
    let buckets = config.rate_limit.as_ref().map(|limit| {
        let burst = limit
            .burst_bytes
            .unwrap_or(limit.bytes_per_second.max(config.max_body_bytes as u64));
        digests
            .values()
            .map(|actor| {
                (
                    actor.clone(),
                    std::sync::Mutex::new(TokenBucket::new(limit.bytes_per_second, burst)),
                )
            })
            .collect()
    });
    let state = Arc::new(Ingest {
        digests: digests.into_iter().collect(),
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout.get(),
        buckets,
        context,
        name: format!("{}://{local}", config.scheme()),
        requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/ingest", post(ingest))
        .route("/health", get(health))
        .with_state(state);
    let door = Door {
        name: format!("{}://{local}", config.scheme()),
        header_timeout: config.header_timeout.get(),
        connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
    };
    let task = tokio::spawn(serve(listener, acceptor, app, stopping, door));
    Ok((local, task))
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// How connections are let in.
#[derive(Debug, Clone)]
struct Door {
    /// The listener's name, for metrics.
    name: String,
    header_timeout: std::time::Duration,
    /// A permit per connection served.
    connections: Arc<tokio::sync::Semaphore>,
}

/// Accepts connections while a permit is free (the others wait in the
/// kernel's queue), then serves HTTP/1.1 on each, after the TLS handshake
/// for HTTPS. When the run stops, no connection is accepted and open ones
/// finish their request and close.
async fn serve(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    stopping: Stopping,
    door: Door,
) {
    loop {
        let permit = tokio::select! {
            () = stopping.stopped() => break,
            permit = door.connections.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            () = stopping.stopped() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stopping = stopping.clone();
        let acceptor = acceptor.clone();
        let header_timeout = door.header_timeout;
        let open = metrics::gauge!("vagt_http_connections", "source" => door.name.clone());
        open.increment(1.0);
        tokio::spawn(async move {
            let _permit = permit;
            // Counted down however the connection ends.
            let _open = scopeguard(move || open.decrement(1.0));
            match acceptor {
                None => serve_connection(stream, service, header_timeout, stopping).await,
                Some(acceptor) => {
                    // A failed handshake is the client's problem: nothing
                    // was sent.
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                    let Ok(Ok(tls)) = handshake.await else { return };
                    serve_connection(tls, service, header_timeout, stopping).await;
                }
            }
        });
    }
}

/// One connection: requests whose headers arrive within `header_timeout`.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    header_timeout: std::time::Duration,
    stopping: Stopping,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopping.stopped() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// For load balancers and forwarders: `200` while the listener takes
/// events, `503` once the run is stopping. Needs no token and says nothing
/// else.
async fn health(State(state): State<Arc<Ingest>>) -> Response {
    if state.context.is_stopping() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "vagt is stopping");
    }
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response()
}

async fn ingest(
    State(state): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // The credential first, on the headers alone: nothing of an unknown
    // client's body is read.
    let Some(token) = bearer_token(&headers) else {
        return state.refuse(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    let Some(actor) = state.actor_of(token) else {
        return state.refuse(StatusCode::UNAUTHORIZED, "unknown token");
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return state.refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body exceeds max_body_bytes ({})", state.max_body_bytes),
        );
    }
    let read = axum::body::to_bytes(body, state.max_body_bytes);
    let body = match tokio::time::timeout(state.body_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return state.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body exceeds max_body_bytes ({})", state.max_body_bytes),
            )
        }
        Err(_) => {
            return state.refuse(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the body did not arrive within {} ms",
                    state.body_timeout.as_millis()
                ),
            )
        }
    };
    if let Some(bucket) = state.buckets.as_ref().and_then(|b| b.get(&actor)) {
        let taken = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(body.len() as u64);
        if let Err(wait) = taken {
            let mut response = state.refuse(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("{actor} is over its rate limit"),
            );
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            return response;
        }
    }
    let body = match decompress(&headers, body, state.max_body_bytes).await {
        Ok(body) => body,
        Err((status, reason)) => return state.refuse(status, &reason),
    };
    let request = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let bytes = body.len();
    let source: Arc<str> = Arc::from(format!("{}/{actor}#{request}", state.name).as_str());
    let payload = Payload {
        source: source.clone(),
        actor: Some(actor),
        body: Body::Chunk {
            bytes: body.into(),
            origin: Origin { line: 1, offset: 0 },
        },
        ack: None,
    };
    if state.context.is_stopping() || state.context.payloads.send(payload).await.is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "vagt is stopping");
    }
    // A body is a stream of its own: what its parser learnt (a Zeek
    // header) ends with it.
    let closed = Payload {
        source,
        actor: None,
        body: Body::Closed,
        ack: None,
    };
    let _ = state.context.payloads.send(closed).await;
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"request": request, "bytes": bytes})),
    )
        .into_response()
}

/// Most gzip members a body may hold: each costs a decoder reset, so that
/// a body of empty members would burn CPU without producing anything.
const MAX_GZIP_MEMBERS: usize = 64;

/// The body decoded by its `Content-Encoding`, at most `limit` bytes; else
/// the status and reason that refuse it. Decompressing runs on a blocking
/// thread, off the listeners' workers.
async fn decompress(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => return Ok(body),
        Some(value) => value
            .to_str()
            .unwrap_or("(not text)")
            .trim()
            .to_ascii_lowercase(),
    };
    let gzip = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => true,
        "deflate" => false,
        other => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other} is not supported (gzip, deflate, identity)"),
            ))
        }
    };
    let decoded = tokio::task::spawn_blocking(move || decode_content(gzip, &body, limit))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("body is not valid {encoding}: {e}"),
            )
        })?;
    if decoded.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body exceeds max_body_bytes ({limit})"),
        ));
    }
    Ok(decoded.into())
}

/// A gzip (else zlib/deflate) body decompressed, stopping just past
/// `limit` bytes; the error says why it is not valid.
pub fn decode_content(gzip: bool, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    if gzip {
        return gunzip(body, limit);
    }
    let mut decoded = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map(|_| decoded)
        .map_err(|e| e.to_string())
}

/// Decompresses gzip member after member, stopping past `limit` bytes.
fn gunzip(mut compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut decoded = Vec::new();
    let mut members = 0;
    while !compressed.is_empty() && decoded.len() <= limit {
        members += 1;
        if members > MAX_GZIP_MEMBERS {
            return Err(format!("more than {MAX_GZIP_MEMBERS} gzip members"));
        }
        let mut member = flate2::bufread::GzDecoder::new(compressed);
        let room = (limit + 1 - decoded.len()) as u64;
        (&mut member)
            .take(room)
            .read_to_end(&mut decoded)
            .map_err(|e| e.to_string())?;
        compressed = member.into_inner();
    }
    Ok(decoded)
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({"error": reason}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    // A body that was not read is not read now either: the connection
    // closes once the answer is sent.
    if matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_are_read_member_after_member_within_bounds() {
        let two_members = [gzip(b"{\"a\": 1}\n"), gzip(b"{\"b\": 2}\n")].concat();
        assert_eq!(
            gunzip(&two_members, 1024).unwrap(),
            b"{\"a\": 1}\n{\"b\": 2}\n"
        );
        // Decoding stops just past the limit, whatever the body holds.
        let big = gzip(&vec![b'x'; 1 << 20]);
        assert_eq!(gunzip(&big, 100).unwrap().len(), 101);
        let truncated = &two_members[..two_members.len() - 5];
        assert!(gunzip(truncated, 1024).is_err());
        let empty_members = gzip(b"").repeat(MAX_GZIP_MEMBERS + 1);
        let e = gunzip(&empty_members, 1024).unwrap_err();
        assert_eq!(e, format!("more than {MAX_GZIP_MEMBERS} gzip members"));
        assert!(gunzip(b"not gzip", 1024).is_err());
    }
}
