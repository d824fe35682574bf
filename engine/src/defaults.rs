//! The built-in default run: bundled rules, catalog and sample logs from
//! the repository's `fixtures/` folder.

use std::path::{Path, PathBuf};

use vagt_connectors::DecoderConfig;

use crate::config::{InputConfig, RunConfig};

/// Where `fixtures/` is: `$VAGT_FIXTURES`, else `./fixtures`, else the one
/// beside the source tree vagt was built from.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VAGT_FIXTURES") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("fixtures");
    if local.join("catalog.yaml").is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// The default configuration: every sample log under `fixtures/logs`, the
/// rules under `fixtures/rules`, the catalog `fixtures/catalog.yaml`, the
/// Windows profile, alerts to stdout.
pub fn default_config() -> RunConfig {
    let dir = fixtures_dir();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir.join("logs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    name.ends_with(".json") || name.ends_with(".jsonl") || name.ends_with(".gz")
                })
                .collect()
        })
        .unwrap_or_default();
    inputs.sort();
    RunConfig {
        rules: vec![dir.join("rules")],
        profile: "windows".into(),
        placeholders: Default::default(),
        rules_cache: Default::default(),
        catalog: Some(dir.join("catalog.yaml")),
        inputs: inputs.into_iter().map(InputConfig::file).collect(),
        output: None,
        outputs: Vec::new(),
        routes: Vec::new(),
        dead_letters: None,
        decoder: DecoderConfig::default(),
        channel_capacity: 8,
        workers: None,
        archive: None,
        stop_evaluation: vagt_connectors::ConfigDuration::from_secs(5),
        windows: Default::default(),
        tlp: crate::warning::tlp::Tlp::Amber,
        suppression: Default::default(),
        campaigns: None,
        intel: None,
        pseudonyms: None,
        metrics_listen: None,
        progress: Default::default(),
        reload: Default::default(),
        source: None,
    }
}
