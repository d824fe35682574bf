//! Runs sigma-rust over a JSON-lines file with a folder of Sigma rules and
//! prints what it did as one JSON object: rules loaded and failed, events,
//! matches, and the seconds spent parsing and matching (rule loading
//! excluded, like vagt's `processing_seconds`).
//!
//! `peer-sigma-rust RULES_DIR EVENTS.jsonl[.gz] [REPLAYS]`

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rule_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: peer-sigma-rust RULES_DIR EVENTS.jsonl[.gz] [REPLAYS]");
        std::process::exit(2);
    }
    let replays: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(1);
    let mut files = Vec::new();
    rule_files(Path::new(&args[1]), &mut files);
    let mut rules = Vec::new();
    let mut failed = 0usize;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        match sigma_rust::rule_from_yaml(&text) {
            Ok(rule) => rules.push(rule),
            Err(_) => failed += 1,
        }
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(&args[2]).expect("events file");
    if args[2].ends_with(".gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .expect("gzip");
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .expect("read");
    }
    let text = String::from_utf8(bytes).expect("UTF-8");
    let started = Instant::now();
    let (mut events, mut matches, mut bad) = (0u64, 0u64, 0u64);
    for _ in 0..replays {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match sigma_rust::event_from_json(line) {
                Ok(event) => {
                    events += 1;
                    matches += rules.iter().filter(|r| r.is_match(&event)).count() as u64;
                }
                Err(_) => bad += 1,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "engine": "sigma-rust 0.7.0",
            "rules_loaded": rules.len(),
            "rules_failed": failed,
            "events": events,
            "bad_events": bad,
            "matches": matches,
            "seconds": seconds,
            "events_per_second": events as f64 / seconds,
        })
    );
}
