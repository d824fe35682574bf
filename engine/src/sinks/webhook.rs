//! The `webhook` output: alerts POSTed over HTTP(S), through an on-disk
//! outbox ([`super::outbox`]).
//!
//! The output task appends each alert to the outbox (with its URL, which
//! may name the actor) and answers a barrier once what it covers is on
//! disk. A sender task reads the outbox in order and POSTs: one alert as
//! itself, several (up to `max_batch`, same URL) as a JSON array. A
//! request that fails for a reason that may pass (no connection, a
//! timeout, 408, 429, 5xx) is retried with exponential backoff and
//! jitter, honouring `Retry-After`, for as long as it takes; the outbox
//! keeps the alerts behind it meanwhile, across restarts. A refusal for
//! good (any other 4xx, a redirect) sends the alerts of that request to
//! the dead letters with the status and the receiver's answer. When the
//! outbox is full, the output waits for room, which holds back detection
//! and then the inputs (or, with `when_full: dead_letter`, sends what does
//! not fit to the dead letters).

use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{WebhookConfig, WhenFull};
use super::encode::encode;
use super::outbox::{self, OutboxReader, OutboxRecord, OutboxWriter};
use super::stix::StixEncoder;
use super::taxii::TaxiiClient;
use super::template::{Escape, Template};
use super::{backoff, OutputError, SinkContext, SinkEnd, SinkEnv, SinkItem};
use crate::alert::AlertFacts;
use crate::pipeline::PipelineError;

/// A `webhook` output: the outbox's writing end and its sender.
pub(crate) struct WebhookSink {
    config: WebhookConfig,
    url: Template,
    context: SinkContext,
    outbox: OutboxWriter,
    sender: JoinHandle<()>,
    stop_sender: watch::Sender<bool>,
    /// For a `taxii` output: how alerts become STIX objects.
    stix: Option<StixEncoder>,
}

/// What became of one request.
pub(super) enum Outcome {
    Delivered,
    /// May pass: retry, after at least this long if the receiver said.
    Retry(String, Option<Duration>),
    /// For good.
    Refused(String),
}

impl WebhookSink {
    /// Opens the outbox (with what an earlier run left) and starts the
    /// sender.
    ///
    /// # Errors
    /// The outbox cannot be opened, or the HTTP client set up.
    pub async fn open(
        config: WebhookConfig,
        context: SinkContext,
        env: &SinkEnv,
    ) -> Result<WebhookSink, PipelineError> {
        let setup = |message: String| OutputError::Setup {
            name: context.name.to_string(),
            message,
        };
        let url = Template::parse(&config.url).map_err(&setup)?;
        let client = client(&config).map_err(&setup)?;
        let (stix, taxii) = match &config.taxii {
            Some(t) => {
                if t.pseudonymise && env.pseudonyms.is_none() {
                    return Err(setup(
                        "pseudonymise needs `pseudonyms: {key_env: VAR}` in the config".into(),
                    )
                    .into());
                }
                let encoder = StixEncoder::new(
                    t.identity.clone(),
                    env.pseudonyms.clone().filter(|_| t.pseudonymise),
                    t.include_events,
                    env.host_fields.clone(),
                );
                let client = TaxiiClient::new(t.clone()).map_err(&setup)?;
                (Some(encoder), Some(client))
            }
            None => (None, None),
        };
        let (writer, reader) = outbox::open(&config.outbox.dir, config.outbox.max_bytes.0)
            .await
            .map_err(|source| OutputError::Io {
                name: context.name.to_string(),
                path: config.outbox.dir.clone(),
                source,
            })?;
        if writer.records() > 0 {
            tracing::info!(
                output = %context.name,
                alerts = writer.records(),
                "alerts from an earlier run are waiting in the outbox; delivering them first"
            );
        }
        context.metrics.outbox(writer.bytes());
        let (stop_sender, stop) = watch::channel(false);
        let sender = tokio::spawn(
            Sender {
                client,
                reader,
                config: config.clone(),
                context: context.clone(),
                stop,
                taxii,
            }
            .run(),
        );
        Ok(WebhookSink {
            config,
            url,
            context,
            outbox: writer,
            sender,
            stop_sender,
            stix,
        })
    }

    /// Runs until delivery ends, then waits (at most `drain`) for the
    /// outbox to empty.
    ///
    /// # Errors
    /// The outbox cannot be written.
    pub async fn run(
        mut self,
        mut items: mpsc::Receiver<SinkItem>,
    ) -> Result<SinkEnd, PipelineError> {
        let mut payload = Vec::with_capacity(4096);
        let mut blocked = false;
        while let Some(item) = items.recv().await {
            match item {
                SinkItem::Alerts(alerts, received) => {
                    for alert in alerts {
                        let url = match self.url.render(&AlertFacts::of(&alert), Escape::Url) {
                            Ok(url) => url,
                            Err(missing) => {
                                self.context.refuse(alert, missing.to_string()).await;
                                continue;
                            }
                        };
                        payload.clear();
                        match &mut self.stix {
                            Some(stix) => stix.encode(&alert, &mut payload),
                            None => encode(&alert, self.context.encoding, &mut payload),
                        }
                        let len = url.len() + payload.len() + 2;
                        if !self.outbox.has_room(len) {
                            match self.config.outbox.when_full {
                                WhenFull::DeadLetter => {
                                    let reason = format!(
                                        "the outbox is full ({} bytes)",
                                        self.config.outbox.max_bytes.0
                                    );
                                    self.context.refuse(alert, reason).await;
                                    continue;
                                }
                                WhenFull::Block => {
                                    if !blocked {
                                        blocked = true;
                                        tracing::warn!(
                                            output = %self.context.name,
                                            bytes = self.outbox.bytes(),
                                            "the outbox is full: holding back detection and inputs until the receiver takes alerts"
                                        );
                                    }
                                    self.context.metrics.outbox(self.outbox.bytes());
                                    // Make what is written readable before waiting.
                                    self.outbox.flush().await.map_err(|e| self.io(e))?;
                                    self.outbox.wait_for_room(len).await;
                                }
                            }
                        } else if blocked {
                            blocked = false;
                            tracing::info!(output = %self.context.name, "the outbox has room again");
                        }
                        self.outbox
                            .append(&url, &payload, received)
                            .await
                            .map_err(|e| self.io(e))?;
                    }
                    self.outbox.flush().await.map_err(|e| self.io(e))?;
                    self.context.metrics.outbox(self.outbox.bytes());
                }
                // What the outbox holds on disk is taken.
                SinkItem::Barrier { taken, .. } => {
                    self.outbox.sync().await.map_err(|e| self.io(e))?;
                    let _ = taken.send(());
                }
            }
        }
        self.outbox.sync().await.map_err(|e| self.io(e))?;
        self.drain().await;
        Ok(SinkEnd::Done)
    }

    /// Gives the sender until `drain` to empty the outbox, then stops it.
    async fn drain(self) {
        let deadline = Instant::now() + self.config.drain.get();
        while self.outbox.records() > 0 && Instant::now() < deadline && !self.sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop_sender.send(true);
        let _ = self.sender.await;
        let left = self.outbox.records();
        self.context.metrics.pending(left);
        self.context.metrics.outbox(self.outbox.bytes());
        if left > 0 {
            tracing::warn!(
                output = %self.context.name,
                alerts = left,
                outbox = %self.config.outbox.dir.display(),
                "alerts not yet delivered stay in the outbox; the next run delivers them"
            );
        }
    }

    fn io(&self, source: std::io::Error) -> PipelineError {
        OutputError::Io {
            name: self.context.name.to_string(),
            path: self.config.outbox.dir.clone(),
            source,
        }
        .into()
    }
}

/// The HTTP client: its timeout, CAs and headers; redirects are not
/// followed (a POST is not repeated elsewhere).
fn client(config: &WebhookConfig) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &config.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("headers: {name}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("headers: {name}: {e}"))?;
        headers.insert(name, value);
    }
    if let Some(var) = &config.bearer_token_env {
        let token =
            std::env::var(var).map_err(|_| format!("bearer_token_env: {var} is not set"))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("bearer_token_env: {var} does not hold a usable token"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(config.timeout.get())
        .connect_timeout(config.timeout.get())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vagt/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// Reads the outbox and POSTs what it holds, in order.
struct Sender {
    client: reqwest::Client,
    reader: OutboxReader,
    config: WebhookConfig,
    context: SinkContext,
    stop: watch::Receiver<bool>,
    taxii: Option<TaxiiClient>,
}

impl Sender {
    async fn run(mut self) {
        let mut attempt = 0u32;
        let mut failing_since: Option<Instant> = None;
        loop {
            if *self.stop.borrow() {
                return;
            }
            tokio::select! {
                _ = self.stop.changed() => return,
                () = self.reader.wait() => {}
            }
            let records = match self.reader.read(self.config.max_batch).await {
                Ok(records) if records.is_empty() => continue,
                Ok(records) => records,
                Err(e) => {
                    tracing::error!(output = %self.context.name, "cannot read the outbox: {e}");
                    self.reader.rewind();
                    if self.pause(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            let mut stop = self.stop.clone();
            let outcome = tokio::select! {
                _ = stop.changed() => return,
                outcome = self.post(&records) => outcome,
            };
            match outcome {
                Outcome::Delivered => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            output = %self.context.name,
                            after = ?since.elapsed(),
                            "the receiver takes alerts again"
                        );
                    }
                    attempt = 0;
                    if !self.commit(&records, true).await {
                        return;
                    }
                }
                Outcome::Refused(reason) => {
                    attempt = 0;
                    for record in &records {
                        self.context
                            .refuse_encoded(&record.payload, reason.clone())
                            .await;
                    }
                    if !self.commit(&records, false).await {
                        return;
                    }
                }
                Outcome::Retry(reason, at_least) => {
                    self.context.metrics.retried();
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::warn!(
                            output = %self.context.name,
                            url = %records[0].destination,
                            "the receiver does not take alerts ({reason}); retrying, the outbox keeps them meanwhile"
                        );
                    }
                    self.reader.rewind();
                    let wait = backoff(
                        self.config.retry.initial.get(),
                        self.config.retry.max.get(),
                        attempt,
                    )
                    .max(
                        at_least
                            .unwrap_or_default()
                            .min(self.config.retry.max.get()),
                    );
                    attempt = attempt.saturating_add(1);
                    if self.pause(wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps, unless told to stop (true then).
    async fn pause(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.stop.changed() => true,
            () = tokio::time::sleep(wait) => *self.stop.borrow(),
        }
    }

    /// Commits the records as done; false if the outbox is unusable.
    async fn commit(&mut self, records: &[OutboxRecord], delivered: bool) -> bool {
        let end = records.last().expect("records").end;
        let bytes = records.iter().map(|r| r.len).sum();
        match self.reader.commit(end, records.len() as u64, bytes).await {
            Ok(received) => {
                if delivered {
                    // Each alert's latency, where this run read its event.
                    let known = received.len();
                    for at in received {
                        self.context.metrics.delivered(1, Some(at));
                    }
                    self.context
                        .metrics
                        .delivered(records.len().saturating_sub(known), None);
                }
                true
            }
            Err(e) => {
                tracing::error!(output = %self.context.name, "cannot update the outbox: {e}");
                false
            }
        }
    }

    async fn post(&self, records: &[OutboxRecord]) -> Outcome {
        if let Some(taxii) = &self.taxii {
            return taxii.post(&self.client, records).await;
        }
        let body = if self.config.max_batch == 1 {
            records[0].payload.clone()
        } else {
            let mut body =
                Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, record) in records.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&record.payload);
            }
            body.push(b']');
            body
        };
        let url = &records[0].destination;
        let response = match self.client.post(url).body(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Outcome::Retry(
                    format!("no answer within {:?}", self.config.timeout.get()),
                    None,
                )
            }
            Err(e) => return Outcome::Retry(describe(&e), None),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let answer = response.text().await.unwrap_or_default();
        let answer: String = answer.chars().take(200).collect();
        let reason = format!(
            "POST {url}: {status}{}{answer}",
            if answer.is_empty() { "" } else { ": " }
        );
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            Outcome::Retry(reason, retry_after)
        } else {
            Outcome::Refused(format!("refused for good: {reason}"))
        }
    }
}

/// An HTTP error with its causes (reqwest's own message is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
