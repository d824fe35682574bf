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
use crate::delivery::DeliveryPolicy;
use crate::detect::Work;

/// A new version, compiled and checked, on its way to detection.
pub(crate) struct Reload {
    pub set: Arc<RuleSet>,
    /// Rules the new version rejected (logged).
    pub rejected: usize,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    /// For delivery, after the alerts before the swap.
    pub policy: Box<DeliveryPolicy>,
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
    let outputs = config.alert_outputs();
    same(
        "inputs",
        format!("{:?}", running.inputs),
        format!("{:?}", config.inputs),
    )?;
    same(
        "outputs",
        format!("{:?}", running.alert_outputs()),
        format!("{outputs:?}"),
    )?;
    same("profile", running.profile.clone(), config.profile.clone())?;
    same(
        "windows",
        format!("{:?}", running.windows),
        format!("{:?}", config.windows),
    )?;
    let (compiled, rules_digest) =
        crate::pipeline::compile_rules(&config, profile).map_err(|e| e.to_string())?;
    if !compiled.windows.is_empty() {
        return Err("windowed rules cannot be reloaded yet: restart vagt to apply".into());
    }
    for rejected in &compiled.rejected {
        tracing::warn!("reload: rule rejected: {rejected}");
    }
    let (catalog, policy) = crate::pipeline::load_policy(&config, &outputs, &rules_digest)
        .map_err(|e| e.to_string())?;
    Ok(Reload {
        set: Arc::new(compiled.set),
        rejected: compiled.rejected.len(),
        fields: FieldCandidates::new(&catalog, profile),
        catalog,
        policy: Box::new(policy),
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
                    tracing::info!(version = %reload.policy.version, "reload: the new version is compiled; swapping it in");
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
