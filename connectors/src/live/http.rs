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

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
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
}

fn default_max_body() -> usize {
    16 * 1024 * 1024
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
        let mut digests = HashMap::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let at = format!("tokens[{i}] ({})", token.actor);
            if token.actor.trim().is_empty() {
                return Err(format!("tokens[{i}]: actor is empty"));
            }
            let digest = match (&token.token_sha256, &token.token_env) {
                (Some(hex), None) => parse_hex(hex)
                    .ok_or_else(|| format!("{at}: token_sha256 is not 64 hex digits"))?,
                (None, Some(var)) => {
                    let value = std::env::var(var)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            format!("{at}: environment variable {var} is unset or empty")
                        })?;
                    Sha256::digest(value.as_bytes()).into()
                }
                _ => {
                    return Err(format!(
                        "{at}: give exactly one of token_sha256 and token_env"
                    ))
                }
            };
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
    digests: HashMap<[u8; 32], Arc<str>>,
    /// Largest body, as sent and decompressed.
    max_body_bytes: usize,
    context: LiveContext,
    /// `http://ADDR` or `https://ADDR`.
    name: String,
    requests: AtomicU64,
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
    let state = Arc::new(Ingest {
        digests,
        max_body_bytes: config.max_body_bytes,
        context,
        name: format!("{}://{local}", config.scheme()),
        requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/ingest", post(ingest))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state);
    let task = match acceptor {
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopping.stopped().await })
                .await;
        }),
        Some(acceptor) => tokio::spawn(serve_tls(listener, acceptor, app, stopping)),
    };
    Ok((local, task))
}

/// HTTPS: each connection's TLS handshake, then HTTP/1.1 over it. When
/// the run stops, no connection is accepted and open ones finish their
/// request and close.
async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    stopping: Stopping,
) {
    loop {
        let accepted = tokio::select! {
            () = stopping.stopped() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stopping = stopping.clone();
        tokio::spawn(async move {
            // A failed handshake is the client's problem: nothing was sent.
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(5), acceptor.accept(stream));
            let Ok(Ok(tls)) = handshake.await else { return };
            let io = hyper_util::rt::TokioIo::new(tls);
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopping.stopped() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
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

async fn ingest(State(state): State<Arc<Ingest>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let Some(actor) = state.digests.get(&digest).cloned() else {
        return refuse(StatusCode::UNAUTHORIZED, "unknown token");
    };
    let body = match decompress(&headers, body, state.max_body_bytes).await {
        Ok(body) => body,
        Err((status, reason)) => return refuse(status, &reason),
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
    let decoded = tokio::task::spawn_blocking(move || {
        if gzip {
            gunzip(&body, limit)
        } else {
            let mut decoded = Vec::new();
            flate2::read::ZlibDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut decoded)
                .map(|_| decoded)
                .map_err(|e| e.to_string())
        }
    })
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
