//! Shared pieces of vagt's benchmarks: the corpora, and rule subsets of a
//! given size drawn from the SigmaHQ Windows rules.

pub mod transports;

use std::io::Read;
use std::path::{Path, PathBuf};

/// `../shared/corpora`; panics with a clear message when it is missing.
pub fn corpora() -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpora"));
    assert!(
        path.join("windows-otrf-sample.jsonl.gz").is_file(),
        "the shared corpora are missing: expected {}",
        path.display()
    );
    path
}

/// The 120,000 OTRF Windows events, decompressed (JSON lines).
pub fn otrf_events() -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(corpora().join("windows-otrf-sample.jsonl.gz"))?;
    let mut out = Vec::with_capacity(350 << 20);
    flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
    Ok(out)
}

/// Every SigmaHQ Windows rule file, sorted.
pub fn windows_rule_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![corpora().join("sigmahq/rules/windows")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The rule that fires most often on the OTRF sample (200 times): included
/// in every subset so that each has alerts to measure latency on.
pub const LATENCY_PROBE: &str = "win_security_password_policy_enumerated.yml";

/// `n` rules: the latency probe plus rules spread evenly over the sorted
/// list (all of them when `n` is at least their number).
pub fn rule_subset(n: usize) -> Vec<PathBuf> {
    let all = windows_rule_files();
    if n >= all.len() {
        return all;
    }
    let mut chosen: Vec<PathBuf> = all
        .iter()
        .filter(|p| p.file_name().is_some_and(|f| f == LATENCY_PROBE))
        .cloned()
        .collect();
    let step = all.len() as f64 / n as f64;
    let mut i = 0.0;
    while chosen.len() < n && (i as usize) < all.len() {
        let candidate = &all[i as usize];
        if !chosen.contains(candidate) {
            chosen.push(candidate.clone());
        }
        i += step;
    }
    chosen
}

/// Copies rule files into `dir` (flat, numbered to keep names unique).
pub fn write_rules(dir: &Path, files: &[PathBuf]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("rule.yml");
        std::fs::copy(f, dir.join(format!("{i:05}-{name}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_have_the_asked_size_and_the_probe() {
        for n in [10, 100, 1000] {
            let s = rule_subset(n);
            assert_eq!(s.len(), n);
            assert!(s.iter().any(|p| p.ends_with(LATENCY_PROBE)));
            let unique: std::collections::HashSet<_> = s.iter().collect();
            assert_eq!(unique.len(), n);
        }
        assert_eq!(rule_subset(usize::MAX).len(), windows_rule_files().len());
    }
}
