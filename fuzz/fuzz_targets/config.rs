//! The config loader: YAML into the typed config, and its validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let dir = std::env::temp_dir().join(format!("vagt-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("vagt.yaml");
    if std::fs::write(&path, text).is_ok() {
        if let Ok(config) = vagt_engine::RunConfig::from_file(&path) {
            let _ = config.windows.limits();
        }
    }
});
