//! Progress of one-shot runs over files: a progress bar on a terminal, or
//! a periodic line (`--progress always` when stderr is not a terminal), fed
//! by counters the pipeline stages update.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

/// When to show progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and every input is a file.
    #[default]
    Auto,
    /// Always: a bar on a terminal, else a line every few seconds and at the end.
    Always,
    /// Never.
    Never,
}

/// Counters the pipeline updates.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Bytes read from the inputs (compressed bytes for `.gz`).
    pub bytes: Arc<AtomicU64>,
    /// Events evaluated.
    pub events: Arc<AtomicU64>,
    /// Alerts written.
    pub alerts: Arc<AtomicU64>,
}

enum Display {
    Bar(ProgressBar),
    Lines { every: Duration, last: Instant },
}

/// A running progress display.
pub struct Progress {
    counters: Counters,
    total: Option<u64>,
    started: Instant,
    display: Display,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("total", &self.total)
            .finish()
    }
}

impl Progress {
    /// A display for inputs totalling `total` bytes (None: unknown, e.g.
    /// stdin), or `None` when progress is not to be shown.
    pub fn start(mode: ProgressMode, total: Option<u64>, counters: Counters) -> Option<Progress> {
        let terminal = std::io::stderr().is_terminal();
        let display = match (mode, terminal) {
            (ProgressMode::Never, _) => return None,
            (ProgressMode::Auto, false) => return None,
            (ProgressMode::Auto, true) if total.is_none() => return None,
            (_, true) => {
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                Display::Bar(bar)
            }
            (ProgressMode::Always, false) => Display::Lines {
                every: Duration::from_secs(5),
                last: Instant::now(),
            },
        };
        Some(Progress {
            counters,
            total,
            started: Instant::now(),
            display,
        })
    }

    fn line(&self) -> String {
        let bytes = self.counters.bytes.load(Ordering::Relaxed);
        let events = self.counters.events.load(Ordering::Relaxed);
        let alerts = self.counters.alerts.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let share = match self.total {
            Some(t) if t > 0 => format!(
                "{:.0}% of {:.1} MB",
                100.0 * bytes as f64 / t as f64,
                t as f64 / 1e6
            ),
            _ => format!("{:.1} MB", bytes as f64 / 1e6),
        };
        format!(
            "vagt: progress {share}, {events} events ({:.0}/s), {alerts} alerts",
            events as f64 / secs
        )
    }

    /// Refreshes the display (call every few hundred milliseconds).
    pub fn tick(&mut self) {
        let line = self.line();
        match &mut self.display {
            Display::Bar(bar) => {
                bar.set_position(self.counters.bytes.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} events, {} alerts",
                    self.counters.events.load(Ordering::Relaxed),
                    self.counters.alerts.load(Ordering::Relaxed)
                ));
            }
            Display::Lines { every, last } => {
                if last.elapsed() >= *every {
                    eprintln!("{line}");
                    *last = Instant::now();
                }
            }
        }
    }

    /// Ends the display with the final figures.
    pub fn finish(self) {
        let line = self.line();
        match self.display {
            Display::Bar(bar) => bar.finish_and_clear(),
            Display::Lines { .. } => eprintln!("{line} (done)"),
        }
    }
}
