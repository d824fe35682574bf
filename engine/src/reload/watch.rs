//! `reload.watch`: a reload when the config file, one of its rule files or
//! folders, or its catalog changes. Editors and deployments replace a file
//! by writing another and renaming it over, so the folders holding the
//! files are watched (a rule folder with all it holds), and only events
//! naming a watched file, or a path inside a watched rule folder, count.
//! Writes within `reload.debounce` of each other give one reload. After
//! each reload the watched set follows the new version's paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use tokio::sync::mpsc;

use super::{Cause, Request};
use crate::config::RunConfig;
use crate::pipeline::PipelineError;

/// What counts as a change.
#[derive(Debug, Default)]
struct Watched {
    /// Files, whole paths.
    files: BTreeSet<PathBuf>,
    /// Rule folders: anything inside.
    folders: BTreeSet<PathBuf>,
}

impl Watched {
    fn counts(&self, path: &Path) -> bool {
        self.files.contains(path) || self.folders.iter().any(|f| path.starts_with(f))
    }
}

/// The running file watch.
pub(crate) struct Watcher {
    debouncer: Debouncer<RecommendedWatcher>,
    watched: Arc<Mutex<Watched>>,
    /// Folders registered with the watcher, and how.
    registered: BTreeSet<(PathBuf, bool)>,
}

impl Watcher {
    /// Starts watching nothing yet; changes become requests.
    ///
    /// # Errors
    /// The system's file watch cannot be set up.
    pub fn start(debounce: Duration, requests: mpsc::Sender<Request>) -> Result<Watcher, PipelineError> {
        let watched = Arc::new(Mutex::new(Watched::default()));
        let seen = watched.clone();
        let debouncer = new_debouncer(debounce, move |events: DebounceEventResult| {
            let events = match events {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!("reload.watch: {e}");
                    return;
                }
            };
            let changed = {
                let watched = seen.lock().expect("watched files");
                events
                    .into_iter()
                    .map(|e| e.path)
                    .find(|p| watched.counts(p))
            };
            if let Some(path) = changed {
                // The watcher's own thread: waiting here is fine.
                let _ = requests.blocking_send(Request {
                    cause: Cause::Changed(path),
                    reply: None,
                });
            }
        })
        .map_err(|e| PipelineError::Internal(format!("reload.watch: {e}")))?;
        Ok(Watcher {
            debouncer,
            watched,
            registered: BTreeSet::new(),
        })
    }

    /// Watches the files of `config`, read from `path`.
    pub fn follow(&mut self, path: &Path, config: &RunConfig) {
        let mut watched = Watched::default();
        let mut folders: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
        let files = std::iter::once(path)
            .chain(config.catalog.as_deref())
            .chain(config.rules.iter().map(PathBuf::as_path).filter(|p| !p.is_dir()));
        for file in files {
            let file = absolute(file);
            if let Some(parent) = file.parent() {
                folders.insert((parent.to_path_buf(), false));
            }
            watched.files.insert(file);
        }
        for rules in config.rules.iter().filter(|p| p.is_dir()) {
            let folder = absolute(rules);
            folders.insert((folder.clone(), true));
            watched.folders.insert(folder);
        }
        let watcher = self.debouncer.watcher();
        for (folder, recursive) in self.registered.difference(&folders) {
            let _ = watcher.unwatch(folder);
            tracing::debug!(folder = %folder.display(), recursive, "reload.watch: no longer watched");
        }
        for (folder, recursive) in folders.difference(&self.registered) {
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            if let Err(e) = watcher.watch(folder, mode) {
                tracing::warn!(folder = %folder.display(), "reload.watch: cannot watch: {e}");
            }
        }
        self.registered = folders;
        *self.watched.lock().expect("watched files") = watched;
    }
}

/// A path as the watcher reports it: absolute, with its folder's links
/// resolved (the file itself may be replaced at any time).
fn absolute(path: &Path) -> PathBuf {
    let whole = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if whole.is_dir() {
        return whole.canonicalize().unwrap_or(whole);
    }
    match (whole.parent(), whole.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|p| p.join(name))
            .unwrap_or(whole),
        _ => whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watched_files_and_paths_inside_rule_folders_count() {
        let mut watched = Watched::default();
        watched.files.insert(PathBuf::from("/etc/vagt/vagt.yaml"));
        watched.folders.insert(PathBuf::from("/etc/vagt/rules"));
        assert!(watched.counts(Path::new("/etc/vagt/vagt.yaml")));
        assert!(watched.counts(Path::new("/etc/vagt/rules/win/a.yml")));
        // Alerts written beside the config are not a change of it.
        assert!(!watched.counts(Path::new("/etc/vagt/alerts.jsonl")));
        assert!(!watched.counts(Path::new("/etc/vagt/rules-old/a.yml")));
    }
}
