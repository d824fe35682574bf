//! Retro-hunts: after a reload swaps in new or changed rules (told apart
//! by [`vagt_rules::RuleSet::digest`]), those rules are run over the
//! archive's last `archive.retro_hunt`, on a thread of their own while the
//! stream goes on. Their alerts are marked `retrospective` and go to
//! delivery like any other, each id at most once: an id this run already
//! emitted (the stream's own, or an earlier retro-hunt's) is not sent
//! again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vagt_connectors::DecoderConfig;
use vagt_rules::window::TimestampSpec;
use vagt_rules::{RuleMatch, RuleSet};

use super::input::{ArchiveInput, ScanReport};
use super::scan::scan;
use crate::alert::{now_rfc3339, Alert, AlertBuilder, FieldCandidates};
use crate::catalog::Catalog;
use crate::sinks::Delivery;

/// Alert ids remembered, at most: beyond it the oldest are forgotten.
const REMEMBERED: usize = 1_000_000;

/// The alert ids this run emitted, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Emitted(Arc<Mutex<EmittedIds>>);

#[derive(Debug, Default)]
struct EmittedIds {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl EmittedIds {
    /// Remembers `id`; whether it is new.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

impl Emitted {
    fn lock(&self) -> std::sync::MutexGuard<'_, EmittedIds> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the ids of `alerts`, sent.
    pub fn record(&self, alerts: &[Alert]) {
        let mut emitted = self.lock();
        for alert in alerts {
            emitted.insert(&alert.id);
        }
    }

    /// Keeps the alerts whose ids were not emitted before, and remembers
    /// them; how many were dropped.
    pub fn keep_new(&self, alerts: &mut Vec<Alert>) -> usize {
        let before = alerts.len();
        let mut emitted = self.lock();
        alerts.retain(|a| emitted.insert(&a.id));
        before - alerts.len()
    }
}

/// What a retro-hunt needs besides the rules.
#[derive(Debug, Clone)]
pub(crate) struct RetroHunts {
    pub dir: std::path::PathBuf,
    pub span: Duration,
    pub decoder: DecoderConfig,
    pub timestamp: TimestampSpec,
    pub emitted: Emitted,
}

/// The rules of `new` that `old` does not have with the same detection.
pub(crate) fn new_or_changed(old: &RuleSet, new: &RuleSet) -> Vec<usize> {
    let known: HashSet<[u8; 32]> = (0..old.len()).map(|i| old.digest(i)).collect();
    (0..new.len())
        .filter(|&i| !known.contains(&new.digest(i)))
        .collect()
}

/// The rules, the catalog and the place to send alerts, for one hunt.
pub(crate) struct Hunt {
    /// Answered once the archive committed what came before the reload.
    pub committed: Option<tokio::sync::oneshot::Receiver<()>>,
    pub set: Arc<RuleSet>,
    pub rules: Vec<usize>,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    pub sinks: mpsc::Sender<Delivery>,
}

impl RetroHunts {
    /// Starts hunting `hunt.rules` of `hunt.set` over the archive's last
    /// `span`, on a thread of its own.
    pub fn start(&self, hunt: Hunt) -> std::thread::JoinHandle<()> {
        let settings = self.clone();
        std::thread::spawn(move || settings.run(hunt))
    }

    fn run(self, mut hunt: Hunt) {
        if let Some(committed) = hunt.committed.take() {
            // A writer that stopped answers no more: the run is ending.
            if committed.blocking_recv().is_err() {
                return;
            }
        }
        let started = Instant::now();
        let input = ArchiveInput {
            dir: self.dir.clone(),
            since: Some(humantime::format_duration(self.span).to_string()),
            until: None,
            actors: Vec::new(),
        };
        let report = Mutex::new(ScanReport::default());
        let mut scratch = hunt.set.scratch();
        let (mut alerts_sent, mut repeated) = (0usize, 0usize);
        let mut gone = false;
        let result = scan(
            &input,
            &self.decoder,
            &report,
            &std::sync::atomic::AtomicU64::new(0),
            |batch| {
                if gone {
                    return;
                }
                let matches: Vec<RuleMatch> = hunt
                    .set
                    .evaluate(&batch.batch, &mut scratch)
                    .into_iter()
                    .filter(|m| hunt.rules.contains(&m.rule))
                    .collect();
                if matches.is_empty() {
                    return;
                }
                let detected_at = now_rfc3339();
                let builder = AlertBuilder::new(&hunt.catalog, &hunt.fields, &detected_at);
                let mut alerts = builder.single_event(&hunt.set, &batch, &matches, &self.timestamp);
                repeated += self.emitted.keep_new(&mut alerts);
                alerts.iter_mut().for_each(|a| a.retrospective = true);
                alerts_sent += alerts.len();
                if !alerts.is_empty()
                    && hunt
                        .sinks
                        .blocking_send(Delivery::Alerts(alerts, Instant::now()))
                        .is_err()
                {
                    gone = true;
                }
            },
            |letter| {
                tracing::warn!(source = %letter.source, line = letter.line, reason = %letter.reason, "retro-hunt: an archived event does not decode");
            },
        );
        let report = report
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => tracing::info!(
                rules = hunt.rules.len(),
                span = %humantime::format_duration(self.span),
                files = report.files,
                skipped = report.skipped.len(),
                events = report.rows,
                alerts = alerts_sent,
                already_emitted = repeated,
                seconds = started.elapsed().as_secs_f64(),
                "retro-hunt of new and changed rules finished"
            ),
            Err(e) => tracing::error!(error = %e, "retro-hunt failed"),
        }
    }
}
