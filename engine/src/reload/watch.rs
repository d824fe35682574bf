//! `reload.watch`: a reload when the config file, one of its rule files or
//! folders, or its catalog changes. Editors and deployments replace a file
//! by writing another and renaming it over, so the folders holding the
//! files are watched (a rule folder with all it holds), and only events
//! naming a watched file, or a path inside a watched rule folder, count;
//! reading a file (as a reload does) is no change. Changes within
//! `reload.debounce` of each other give one reload. After
//! each reload the watched set follows the new version's paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
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
    watcher: RecommendedWatcher,
    watched: Arc<Mutex<Watched>>,
    /// Folders registered with the watcher, and how.
    registered: BTreeSet<(PathBuf, bool)>,
}

impl Watcher {
    /// Starts watching nothing yet; changes, once quiet for `debounce`,
    /// become requests.
    ///
    /// # Errors
    /// The system's file watch cannot be set up.
    pub fn start(
        debounce: Duration,
        requests: mpsc::Sender<Request>,
    ) -> Result<Watcher, PipelineError> {
        let watched = Arc::new(Mutex::new(Watched::default()));
        let seen = watched.clone();
        let (changes, changed) = mpsc::unbounded_channel::<PathBuf>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!("reload.watch: {e}");
                    return;
                }
            };
            // Reading a file (as a reload does) is no change of it.
            if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
                return;
            }
            let watched = seen.lock().expect("watched files");
            for path in event.paths.into_iter().filter(|p| watched.counts(p)) {
                let _ = changes.send(path);
            }
        })
        .map_err(|e| PipelineError::Internal(format!("reload.watch: {e}")))?;
        tokio::spawn(quiet_then_request(changed, debounce, requests));
        Ok(Watcher {
            watcher,
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
            .chain(
                config
                    .rules
                    .iter()
                    .map(PathBuf::as_path)
                    .filter(|p| !p.is_dir()),
            );
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
        let watcher = &mut self.watcher;
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

/// Waits after a change until none came for `debounce`, then asks for
/// one reload, naming the last file changed.
async fn quiet_then_request(
    mut changed: mpsc::UnboundedReceiver<PathBuf>,
    debounce: Duration,
    requests: mpsc::Sender<Request>,
) {
    while let Some(mut path) = changed.recv().await {
        loop {
            match tokio::time::timeout(debounce, changed.recv()).await {
                Ok(Some(next)) => path = next,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let request = Request {
            cause: Cause::Changed(path),
            reply: None,
        };
        if requests.send(request).await.is_err() {
            return;
        }
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
        (Some(parent), Some(name)) => parent.canonicalize().map(|p| p.join(name)).unwrap_or(whole),
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
