//! Running `vagt` as a child process: its stderr collected line by line,
//! waiting for what it says, stopping it with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `vagt run --config ...`.
pub struct Vagt {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Vagt {
    /// Starts `vagt run` with `args`.
    pub fn start(args: &[&str]) -> Vagt {
        Vagt::start_command(Command::new(env!("CARGO_BIN_EXE_vagt")), args)
    }

    /// Starts `vagt run` with `args` from `command` (the vagt binary, with
    /// its environment set).
    pub fn start_command(mut command: Command, args: &[&str]) -> Vagt {
        let mut child = command
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vagt starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Vagt { child, stderr }
    }

    /// Starts `vagt run --config config`.
    pub fn with_config(config: &Path) -> Vagt {
        Vagt::start(&["--config", config.to_str().unwrap()])
    }

    /// Starts `vagt run --config config --stats stats`.
    pub fn with_stats(config: &Path, stats: &Path) -> Vagt {
        Vagt::start(&[
            "--config",
            config.to_str().unwrap(),
            "--stats",
            stats.to_str().unwrap(),
        ])
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `text`; returns that line.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(text))
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vagt exited ({status}) before saying '{text}':\n{}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "vagt did not say '{text}' within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for vagt to exit by itself with a failure; returns its stderr.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                assert!(!status.success(), "vagt succeeded:\n{}", self.stderr());
                return self.stderr();
            }
            assert!(
                start.elapsed() < timeout,
                "vagt did not exit within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address a listener input is bound to, from `vagt: listening`.
    pub fn listening(&mut self, input: &str) -> std::net::SocketAddr {
        let line = self.wait_for(&format!("listening: {input}"), Duration::from_secs(30));
        line.rsplit(" on ").next().unwrap().parse().unwrap()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.wait()
    }

    /// Sends the signal `name` (`TERM`, `INT`).
    pub fn signal(&mut self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the exit (at most 30 s).
    pub fn wait(mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "vagt did not exit:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vagt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON lines of a file written so far (a last partial line is left
/// out).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until `check` holds, or fails with `what`.
pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The repository's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Makes a FIFO at `path` (an output nobody reads yet, an input that waits
/// for its writer).
pub fn make_fifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Appends `text` to the file at `path` (a followed input growing).
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The ids of the alerts in a file, in order.
pub fn alert_ids(path: &Path) -> Vec<String> {
    json_lines(path)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// Alerts waiting in an outbox folder (its segments' records).
pub fn outbox_records(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum()
}

/// Runs `vagt run --config CONFIG --stats FILE` to its end and fails
/// unless it succeeds; the run summary and what vagt wrote to stderr.
pub fn run_with_stats(config: &Path) -> (serde_json::Value, String) {
    run_with_stats_env(config, &[])
}

/// As [`run_with_stats`], with these environment variables set.
pub fn run_with_stats_env(config: &Path, env: &[(&str, &str)]) -> (serde_json::Value, String) {
    let stats = config.with_file_name("stats.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--stats")
        .arg(&stats)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let summary = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    (summary, stderr)
}
