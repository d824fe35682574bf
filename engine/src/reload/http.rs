//! `reload.http`: reload through an authenticated HTTP endpoint, for
//! deployment tools that cannot send a signal (another container, a
//! pipeline job).
//!
//! - `POST /reload` with `Authorization: Bearer <token>` reloads and
//!   answers once the stages have decided: `200` with
//!   `{"result": "applied", "version": ..., "previous": ...}` or
//!   `{"result": "unchanged", "version": ...}`, `422` with
//!   `{"result": "rejected", "version": <the one that runs>, "error": ...}`.
//! - `GET /reload` (same token) names the version that runs.
//! - A missing or wrong token gets `401`; the token is configured by its
//!   SHA-256 (`token_sha256`) or read from an environment variable
//!   (`token_env`) and compared in constant time.
//!
//! It speaks plain HTTP: bind it to the loopback or a management network.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use vagt_connectors::live::http::{bearer_token, token_is};

use super::{Cause, Outcome, Request};
use crate::pipeline::PipelineError;

/// `reload.http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadHttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9899`.
    pub listen: SocketAddr,
    /// SHA-256 of the token, in hex (`printf %s TOKEN | sha256sum`).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl ReloadHttpConfig {
    /// The token's digest.
    ///
    /// # Errors
    /// Neither or both ways are given, or the one given is unusable.
    pub fn token(&self) -> Result<[u8; 32], String> {
        vagt_connectors::live::http::token_digest(
            self.token_sha256.as_deref(),
            self.token_env.as_deref(),
        )
    }
}

struct Endpoint {
    token: [u8; 32],
    requests: mpsc::Sender<Request>,
    /// The version that runs, as the last answer said.
    version: Mutex<String>,
}

/// Binds the endpoint and serves it in a task; its address.
///
/// # Errors
/// The token is unusable or the address cannot be bound.
pub(crate) async fn serve(
    config: &ReloadHttpConfig,
    requests: mpsc::Sender<Request>,
    running: String,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), PipelineError> {
    let token = config.token().map_err(|message| {
        PipelineError::Config(crate::config::ConfigError::setting("reload.http", message))
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            PipelineError::Config(crate::config::ConfigError::setting(
                "reload.http.listen",
                format!("cannot listen on {}: {e}", config.listen),
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| PipelineError::Internal(format!("reload.http: {e}")))?;
    let endpoint = Arc::new(Endpoint {
        token,
        requests,
        version: Mutex::new(running),
    });
    let app = Router::new()
        .route("/reload", post(reload).get(version))
        .with_state(endpoint);
    tracing::info!(%addr, "reload endpoint listening");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("reload endpoint: {e}");
        }
    });
    Ok((addr, task))
}

impl Endpoint {
    /// Whether the request carries the token.
    fn authorised(&self, headers: &HeaderMap) -> bool {
        bearer_token(headers).is_some_and(|t| token_is(&self.token, t))
    }
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({"error": "a valid bearer token is needed"})),
    )
        .into_response()
}

async fn reload(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if !endpoint.authorised(&headers) {
        tracing::warn!("reload endpoint: a request without a valid token was refused");
        return unauthorised();
    }
    let (reply, answer) = oneshot::channel();
    let request = Request {
        cause: Cause::Http,
        reply: Some(reply),
    };
    let ending = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "vagt is stopping"})),
        )
            .into_response()
    };
    if endpoint.requests.send(request).await.is_err() {
        return ending();
    }
    let Ok(outcome) = answer.await else {
        return ending();
    };
    let (status, body) = match outcome {
        Outcome::Applied { version, previous } => (
            StatusCode::OK,
            serde_json::json!({"result": "applied", "version": version, "previous": previous}),
        ),
        Outcome::Unchanged { version } => (
            StatusCode::OK,
            serde_json::json!({"result": "unchanged", "version": version}),
        ),
        Outcome::Rejected { version, error } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"result": "rejected", "version": version, "error": error}),
        ),
    };
    if let Some(version) = body["version"].as_str() {
        *endpoint.version.lock().expect("version") = version.to_string();
    }
    (status, Json(body)).into_response()
}

async fn version(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if !endpoint.authorised(&headers) {
        return unauthorised();
    }
    let version = endpoint.version.lock().expect("version").clone();
    (
        StatusCode::OK,
        Json(serde_json::json!({"version": version})),
    )
        .into_response()
}
