//! Hot reload: on SIGHUP, a run started from a config file reads it again
//! with its rules and catalog, compiles everything aside, and only if all
//! of it is sound swaps rules, catalog, routes and warning settings in
//! at once. The swap travels in order with the batches (detection takes
//! it between two batches, delivery after the alerts before it), so no
//! event is lost or evaluated twice; suppression groups and campaign
//! tracks carry over. A broken version is rejected with its error, and
//! the running one stays in force. `vagt_config_reloads_total{result}`
//! counts reloads and `vagt_config_info{version}` names the version that
//! runs; each is logged.
//!
//! Not reloaded (a change is rejected, saying to restart): inputs,
//! outputs, the profile, the window settings, and windowed rules (their
//! state refers to the rule set's positions).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use vagt_rules::{Profile, RuleSet};

use crate::alert::FieldCandidates;
use crate::catalog::Catalog;
use crate::config::RunConfig;
use crate::detect::Work;
use crate::routes::RouteTable;
use crate::warning::Warning;

/// A new version, compiled and checked, on its way to detection.
pub(crate) struct Reload {
    pub set: Arc<RuleSet>,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    pub routing: Box<Rerouting>,
    pub version: String,
}

/// What delivery swaps in.
pub(crate) struct Rerouting {
    pub routes: RouteTable,
    pub warning: Warning,
    pub version: String,
}

/// A version: a digest of the config, rule and catalog files' contents.
pub(crate) fn version(config: &RunConfig) -> String {
    let mut h = Sha256::new();
    if let Some(source) = &config.source {
        h.update(source.text.as_bytes());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for root in &config.rules {
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            match entry {
                Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                _ => {}
            }
        }
    }
    files.extend(config.catalog.iter().cloned());
    for file in files {
        h.update(file.to_string_lossy().as_bytes());
        h.update(std::fs::read(&file).unwrap_or_default());
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads and compiles the config at `path` as a new version of `running`.
///
/// # Errors
/// Why the new version cannot take over: its own error, or a change
/// that needs a restart.
pub(crate) fn prepare(
    path: &Path,
    running: &RunConfig,
    profile: &Profile,
) -> Result<Reload, String> {
    let mut config = RunConfig::from_file(path).map_err(|e| e.to_string())?;
    config.expand_folders().map_err(|e| e.to_string())?;
    let same = |what: &str, old: String, new: String| {
        if old == new {
            Ok(())
        } else {
            Err(format!("{what} changed: restart vagt to apply that"))
        }
    };
    same(
        "inputs",
        format!("{:?}", running.inputs),
        format!("{:?}", config.inputs),
    )?;
    same(
        "outputs",
        format!("{:?}", running.alert_outputs()),
        format!("{:?}", config.alert_outputs()),
    )?;
    same("profile", running.profile.clone(), config.profile.clone())?;
    same(
        "windows",
        format!("{:?}", running.windows),
        format!("{:?}", config.windows),
    )?;
    let compiled = crate::pipeline::compile_rules(&config, profile).map_err(|e| e.to_string())?;
    if !compiled.windows.is_empty() {
        return Err("windowed rules cannot be reloaded yet: restart vagt to apply".into());
    }
    for rejected in &compiled.rejected {
        tracing::warn!("reload: rule rejected: {rejected}");
    }
    let catalog = match &config.catalog {
        Some(path) => Catalog::from_file(path).map_err(|e| e.to_string())?,
        None => Catalog::empty(),
    };
    crate::pipeline::check_actors(&config, &catalog).map_err(|e| e.to_string())?;
    let outputs = config.alert_outputs();
    let routes = RouteTable::compile(&config.routes, &outputs, &catalog)
        .map_err(|e| config.locate(crate::config::ConfigError::setting(e.key, e.message)))
        .map_err(|e| e.to_string())?;
    let catalog = Arc::new(catalog);
    let warning = Warning::new(&config, &outputs, catalog.clone()).map_err(|e| e.to_string())?;
    let version = version(&config);
    Ok(Reload {
        set: Arc::new(compiled.set),
        fields: FieldCandidates::new(&catalog, profile),
        catalog,
        routing: Box::new(Rerouting {
            routes,
            warning,
            version: version.clone(),
        }),
        version,
    })
}

/// Reloads on every SIGHUP while the run lasts.
pub(crate) fn spawn_on_hangup(
    path: PathBuf,
    running: RunConfig,
    profile: Profile,
    work: &mpsc::Sender<Work>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    let work = work.downgrade();
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(tx) = work.upgrade() else { break };
            let (path, running, profile) = (path.clone(), running.clone(), profile.clone());
            let prepared =
                tokio::task::spawn_blocking(move || prepare(&path, &running, &profile)).await;
            match prepared {
                Ok(Ok(reload)) => {
                    tracing::info!(version = %reload.version, "reload: the new version is compiled; swapping it in");
                    if tx.send(Work::Reload(Box::new(reload))).await.is_err() {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    metrics::counter!("vagt_config_reloads_total", "result" => "rejected")
                        .increment(1);
                    tracing::error!("reload rejected, the running version stays in force: {e}");
                }
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
    }))
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
