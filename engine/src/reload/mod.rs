//! Hot reload: a run started from a config file reads it again, with its
//! rules and catalog, compiles everything aside, and only if all of it is
//! sound swaps rules, windowed rules, catalog, outputs, routes and warning
//! settings in at once. Three things ask for it: SIGHUP, a change of the
//! watched files (`reload.watch`: the config, its rule files and folders,
//! the catalog; [`watch`]), and `POST /reload` on an authenticated HTTP
//! endpoint (`reload.http`; [`http`]).
//!
//! ```text
//!  SIGHUP ─┐
//!  watch  ─┼─► Request ─► reloader: prepare (read, compile, check) ─► Work::Reload
//!  HTTP   ─┘      ▲                                                       │
//!                 └── Outcome (applied / unchanged / rejected) ◄──────────┤
//!  detection, between two batches: windows can take it? ─► Delivery::Reroute
//!  delivery, after the alerts before it: outputs started? ─► routes, warning swapped ─► answer
//!  detection, on a yes: rules, catalog and windows swapped
//! ```
//!
//! The swap travels in order with the batches, so no event is lost or
//! evaluated twice. Window state of unchanged windowed rules, suppression
//! groups and campaign tracks carry over; an unchanged output keeps
//! running untouched. A broken version is rejected with its error and the
//! running one stays in force. `vagt_config_reloads_total{result}` counts
//! reloads and `vagt_config_info{version}` names the version that runs;
//! each is logged.
//!
//! Changed threat intelligence settings (`intel:`) start the new feeds
//! aside: they are read before the swap, and rules referring to them are
//! compiled against them; the old feeds stop once the new are in force.
//!
//! Not reloaded (a change is rejected, saying to restart): inputs, the
//! profile, the window settings, the decoder, the detection workers, the
//! archive, the dead letters, metrics and the reload settings themselves.

pub(crate) mod http;
pub(crate) mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use vagt_connectors::ConfigDuration;
use vagt_rules::window::WindowPlan;
use vagt_rules::{Profile, RuleSet};

use crate::alert::FieldCandidates;
use crate::catalog::Catalog;
use crate::config::{ConfigError, RunConfig};
use crate::delivery::DeliveryPolicy;
use crate::detect::Work;
use crate::intel::Intel;
use crate::pipeline::PipelineError;

/// `reload:` in the config: what else than SIGHUP reloads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Reload when the config file, a rule file or folder, or the catalog
    /// changes.
    #[serde(default)]
    pub watch: bool,
    /// How long the watched files must be quiet before a reload (default
    /// `1s`): an editor's or a deployment's several writes give one.
    #[serde(default = "default_debounce")]
    pub debounce: ConfigDuration,
    /// An HTTP endpoint that reloads on `POST /reload`.
    #[serde(default)]
    pub http: Option<http::ReloadHttpConfig>,
}

fn default_debounce() -> ConfigDuration {
    ConfigDuration::from_secs(1)
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: false,
            debounce: default_debounce(),
            http: None,
        }
    }
}

impl ReloadConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A zero debounce, or an HTTP endpoint without a usable token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.debounce.is_zero() {
            return Err(ConfigError::setting(
                "reload.debounce",
                "must be more than 0",
            ));
        }
        if let Some(http) = &self.http {
            http.token()
                .map_err(|e| ConfigError::setting("reload.http", e))?;
        }
        Ok(())
    }
}

/// Why a new version cannot take over.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config, its rules or its catalog are broken.
    #[error(transparent)]
    Invalid(#[from] PipelineError),
    /// A setting changed that only a restart can apply.
    #[error("{0} changed: restart vagt to apply that")]
    NeedsRestart(&'static str),
    /// The running stages refused it (windows mid-history, an output that
    /// cannot start); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The run is ending.
    #[error("the run is ending")]
    Ending,
}

/// What asked for a reload.
#[derive(Debug, Clone)]
pub(crate) enum Cause {
    Hangup,
    Changed(PathBuf),
    Http,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Hangup => f.write_str("SIGHUP"),
            Cause::Changed(path) => write!(f, "a change of {}", path.display()),
            Cause::Http => f.write_str("POST /reload"),
        }
    }
}

/// How a reload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The new version runs.
    Applied { version: String, previous: String },
    /// Nothing changed: this version runs already.
    Unchanged { version: String },
    /// Rejected: the running version stays in force.
    Rejected { version: String, error: String },
}

/// A request for a reload, and where to say how it went.
pub(crate) struct Request {
    pub cause: Cause,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// A new version, compiled and checked, on its way to detection.
pub(crate) struct Reload {
    pub set: Arc<RuleSet>,
    /// Rules the new version rejected (logged).
    pub rejected: usize,
    pub windows: WindowPlan,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    /// For delivery, after the alerts before the swap.
    pub policy: Box<DeliveryPolicy>,
    /// New threat intelligence feeds (none: `intel:` removed), when the
    /// settings changed.
    pub intel: Option<Option<Arc<Intel>>>,
    /// Whether it now runs, or why not.
    pub applied: Applied,
}

/// A version: a digest of the config file's text, the rule files read
/// (their digest from the loader) and the catalog file.
pub(crate) fn version(config: &RunConfig, rules_digest: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    if let Some(source) = &config.source {
        h.update(source.text.as_bytes());
    }
    h.update(rules_digest);
    if let Some(catalog) = &config.catalog {
        h.update(std::fs::read(catalog).unwrap_or_default());
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The settings a reload cannot change, by name.
fn fixed(config: &RunConfig) -> [(&'static str, String); 12] {
    [
        ("inputs", format!("{:?}", config.inputs)),
        ("profile", config.profile.clone()),
        ("windows", format!("{:?}", config.windows)),
        ("decoder", format!("{:?}", config.decoder)),
        ("dead_letters", format!("{:?}", config.dead_letters)),
        ("channel_capacity", config.channel_capacity.to_string()),
        ("workers", format!("{:?}", config.workers)),
        ("archive", format!("{:?}", config.archive)),
        ("stop_evaluation", format!("{:?}", config.stop_evaluation)),
        ("metrics_listen", format!("{:?}", config.metrics_listen)),
        ("progress", format!("{:?}", config.progress)),
        ("reload", format!("{:?}", config.reload)),
    ]
}

/// A new version read, compiled and checked, not yet sent: its config, and
/// what the stages take.
struct Prepared {
    config: RunConfig,
    reload: Reload,
}

/// Where the stages say whether a version now runs, or why not.
pub(crate) type Applied = oneshot::Sender<Result<(), String>>;

/// Reads and compiles the config at `path` as a new version of `running`
/// (which runs as `version`); None if its files give that version again,
/// found before anything is compiled. `applied` goes with it to the stages.
fn prepare(
    path: &Path,
    running: &RunConfig,
    version: &str,
    profile: &Profile,
    intel: Option<Arc<Intel>>,
    applied: Applied,
) -> Result<Option<Prepared>, ReloadError> {
    let mut config = RunConfig::from_file(path).map_err(PipelineError::from)?;
    config.expand_folders().map_err(PipelineError::from)?;
    for ((what, old), (_, new)) in fixed(running).into_iter().zip(fixed(&config)) {
        if old != new {
            return Err(ReloadError::NeedsRestart(what));
        }
    }
    let collection = crate::pipeline::load_rules(&config)?;
    let new_version = self::version(&config, &collection.digest);
    if new_version == version {
        return Ok(None);
    }
    // Changed feeds are read now, aside, for the rules that refer to them.
    let new_intel = if config.intel == running.intel {
        None
    } else {
        Some(
            crate::intel::start_configured(config.intel.as_ref(), profile)
                .map_err(PipelineError::from)?,
        )
    };
    let feeds = new_intel.clone().unwrap_or(intel);
    let compiled =
        crate::pipeline::compile_collection(collection, &config, profile, feeds.as_deref());
    for rejected in &compiled.rejected {
        tracing::warn!("reload: rule rejected: {rejected}");
    }
    let outputs = config.alert_outputs();
    let (catalog, policy) = crate::pipeline::load_policy(&config, &outputs, new_version)?;
    let reload = Reload {
        set: Arc::new(compiled.set),
        rejected: compiled.rejected.len(),
        windows: compiled.windows,
        fields: FieldCandidates::new(&catalog, profile),
        catalog,
        policy: Box::new(policy),
        intel: new_intel,
        applied,
    };
    Ok(Some(Prepared { config, reload }))
}

/// Takes reload requests, one at a time, for as long as the run lasts.
pub(crate) struct Reloader {
    path: PathBuf,
    running: RunConfig,
    version: String,
    profile: Profile,
    /// The feeds in force.
    intel: Option<Arc<Intel>>,
    work: mpsc::WeakSender<Work>,
    watcher: Option<watch::Watcher>,
    /// The stages are gone: no reload can run any more.
    ending: bool,
}

/// The reloader and what feeds it, started.
pub(crate) struct Reloading {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The HTTP endpoint's address, once bound.
    pub http: Option<std::net::SocketAddr>,
}

impl Reloading {
    /// Stops taking requests.
    pub fn abort(self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Starts reloading `running` (read from `path`, running as `version`) on
/// SIGHUP, and as its `reload` settings say on file changes and HTTP.
///
/// # Errors
/// SIGHUP cannot be listened for, the files cannot be watched, or the
/// HTTP endpoint cannot bind.
pub(crate) async fn start(
    path: PathBuf,
    running: RunConfig,
    version: String,
    profile: Profile,
    intel: Option<Arc<Intel>>,
    work: &mpsc::Sender<Work>,
) -> Result<Reloading, PipelineError> {
    use tokio::signal::unix::{signal, SignalKind};
    let (requests, mut incoming) = mpsc::channel::<Request>(16);
    let mut hangups = signal(SignalKind::hangup()).map_err(PipelineError::Signals)?;
    let mut tasks = Vec::new();
    let on_hangup = requests.clone();
    tasks.push(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let request = Request {
                cause: Cause::Hangup,
                reply: None,
            };
            if on_hangup.send(request).await.is_err() {
                break;
            }
        }
    }));
    let watcher = if running.reload.watch {
        let mut watcher = watch::Watcher::start(running.reload.debounce.get(), requests.clone())?;
        watcher.follow(&path, &running);
        Some(watcher)
    } else {
        None
    };
    let mut http_addr = None;
    if let Some(settings) = &running.reload.http {
        let (addr, task) = http::serve(settings, requests.clone(), version.clone()).await?;
        http_addr = Some(addr);
        tasks.push(task);
    }
    drop(requests);
    let mut reloader = Reloader {
        path,
        running,
        version,
        profile,
        intel,
        work: work.downgrade(),
        watcher,
        ending: false,
    };
    tasks.push(tokio::spawn(async move {
        while let Some(request) = incoming.recv().await {
            let outcome = reloader.reload(&request.cause).await;
            if let Some(reply) = request.reply {
                let _ = reply.send(outcome.clone());
            }
            if reloader.ending {
                break;
            }
        }
    }));
    Ok(Reloading {
        tasks,
        http: http_addr,
    })
}

impl Reloader {
    /// Prepares a new version and has the stages swap it in.
    async fn reload(&mut self, cause: &Cause) -> Outcome {
        tracing::info!("reload asked for by {cause}");
        let (path, running, version, profile, intel) = (
            self.path.clone(),
            self.running.clone(),
            self.version.clone(),
            self.profile.clone(),
            self.intel.clone(),
        );
        let (applied, answer) = oneshot::channel();
        let prepared = tokio::task::spawn_blocking(move || {
            prepare(&path, &running, &version, &profile, intel, applied)
        })
        .await
        .unwrap_or_else(|e| Err(ReloadError::Refused(format!("reload task: {e}"))));
        let result = match prepared {
            Ok(None) => {
                tracing::info!(version = %self.version, "reload: nothing changed");
                return Outcome::Unchanged {
                    version: self.version.clone(),
                };
            }
            Ok(Some(prepared)) => self.swap(prepared, answer).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(previous) => Outcome::Applied {
                version: self.version.clone(),
                previous,
            },
            Err(e) => {
                self.ending = matches!(e, ReloadError::Ending);
                metrics::counter!("vagt_config_reloads_total", "result" => "rejected").increment(1);
                tracing::error!(version = %self.version, "reload rejected, the running version stays in force: {e}");
                Outcome::Rejected {
                    version: self.version.clone(),
                    error: e.to_string(),
                }
            }
        }
    }

    /// Sends a prepared version to the stages and waits for their answer;
    /// the version it replaced.
    async fn swap(
        &mut self,
        prepared: Prepared,
        answer: oneshot::Receiver<Result<(), String>>,
    ) -> Result<String, ReloadError> {
        let Prepared { config, reload } = prepared;
        let version = reload.policy.version.clone();
        let new_intel = reload.intel.clone();
        tracing::info!(%version, "reload: the new version is compiled; swapping it in");
        let work = self.work.upgrade().ok_or(ReloadError::Ending)?;
        work.send(Work::Reload(Box::new(reload)))
            .await
            .map_err(|_| ReloadError::Ending)?;
        drop(work);
        answer
            .await
            .map_err(|_| ReloadError::Ending)?
            .map_err(ReloadError::Refused)?;
        if let Some(watcher) = &mut self.watcher {
            watcher.follow(&self.path, &config);
        }
        if let Some(intel) = new_intel {
            self.intel = intel;
        }
        self.running = config;
        Ok(std::mem::replace(&mut self.version, version))
    }
}

/// Says which version runs (a log line and `vagt_config_info`).
pub(crate) fn announce(version: &str, previous: Option<&str>) {
    if let Some(previous) = previous {
        metrics::gauge!("vagt_config_info", "version" => previous.to_string()).set(0.0);
        metrics::counter!("vagt_config_reloads_total", "result" => "applied").increment(1);
        tracing::info!(version, previous, "reloaded: this version now runs");
    }
    metrics::gauge!("vagt_config_info", "version" => version.to_string()).set(1.0);
}
