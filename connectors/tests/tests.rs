//! Integration tests of the connectors through `read_events`: every input
//! shape, gzip, bad input, and the real corpora.

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use vagt_connectors::{
    read_events, DeadLetter, DecoderConfig, EventBatch, InputSource, RAW_COLUMN,
};

fn read(path: &Path, batch_size: usize) -> (Vec<EventBatch>, Vec<DeadLetter>) {
    let mut batches = Vec::new();
    let mut dead = Vec::new();
    let config = DecoderConfig {
        batch_size,
        ..DecoderConfig::default()
    };
    read_events(
        &InputSource::File(path.to_path_buf()),
        &config,
        |b| batches.push(b),
        |d| dead.push(d),
    )
    .expect("read");
    (batches, dead)
}

fn event_ids(batches: &[EventBatch]) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let schema = b.batch.schema();
        let col = b.batch.column(schema.index_of("id").expect("id column"));
        let ids = col.as_primitive::<Int64Type>();
        out.extend((0..ids.len()).map(|i| ids.value(i)));
    }
    out
}

#[test]
fn every_input_shape_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let shapes: [(&str, &str); 4] = [
        ("lines.jsonl", "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n"),
        (
            "pretty.json",
            "{\n  \"id\": 1\n}\n{\n  \"id\": 2,\n  \"x\": {\"y\": [1]}\n}\n{\"id\": 3}",
        ),
        ("concatenated.json", "{\"id\": 1}{\"id\": 2} {\"id\": 3}"),
        (
            "array.json",
            "[\n  {\"id\": 1},\n  {\"id\": 2}\n]\n[{\"id\": 3}]",
        ),
    ];
    for (name, text) in shapes {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for batch_size in [1, 2, 1024] {
            let (batches, dead) = read(&path, batch_size);
            assert!(dead.is_empty(), "{name}: {dead:?}");
            assert_eq!(
                event_ids(&batches),
                vec![1, 2, 3],
                "{name} at batch size {batch_size}"
            );
            assert!(batches.iter().all(|b| b.batch.num_rows() <= batch_size));
        }
        let gz = dir.path().join(format!("{name}.gz"));
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let (batches, dead) = read(&gz, 1024);
        assert!(dead.is_empty());
        assert_eq!(event_ids(&batches), vec![1, 2, 3], "{name}.gz");
        assert_eq!(batches.len(), 1, "a gzip file still fills whole batches");
    }
}

#[test]
fn bad_records_become_dead_letters_and_the_rest_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{{\"id\": 1}}").unwrap();
    writeln!(f, "{{\"id\": 2 \"broken\": true}}").unwrap();
    let garbage: Vec<u8> = (0u8..=255)
        .rev()
        .filter(|b| *b != b'\n' && *b != b'{' && *b != b'[')
        .collect();
    f.write_all(&garbage).unwrap();
    f.write_all(b"\n").unwrap();
    writeln!(f, "{{\"id\": 4}}").unwrap();
    f.write_all(b"{\"id\": 5, \"s\": \"\xff\xfe\"}\n").unwrap();
    writeln!(
        f,
        "{{\"id\": 6, \"big\": \"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    )
    .unwrap();
    writeln!(f, "{{\"id\": 7}}").unwrap();
    writeln!(f, "[1, 2]").unwrap();
    writeln!(f, "{{\"id\": 9}}").unwrap();
    drop(f);
    let (batches, dead) = read(&path, 1024);
    assert_eq!(event_ids(&batches), vec![1, 4, 7, 9]);
    let summary: Vec<(u64, String)> = dead.iter().map(|d| (d.line, d.reason.clone())).collect();
    assert_eq!(dead.len(), 5, "{summary:?}");
    assert_eq!(
        dead.iter().map(|d| d.line).collect::<Vec<_>>(),
        vec![2, 3, 5, 6, 8]
    );
    assert!(
        dead[0].reason.starts_with("invalid JSON"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[1].reason.contains("not JSON") && dead[1].reason.contains("0xff"),
        "{}",
        dead[1].reason
    );
    assert!(
        dead[2].reason.contains("invalid UTF-8"),
        "{}",
        dead[2].reason
    );
    assert!(
        dead[3].reason.contains("exceeds 4194304 bytes"),
        "{}",
        dead[3].reason
    );
    assert!(dead[4].reason.contains("not JSON"), "{}", dead[4].reason);
    assert!(dead
        .iter()
        .all(|d| d.source.ends_with("mixed.jsonl") && d.excerpt.len() <= 640));
}

fn corpora() -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpora"));
    assert!(
        path.join("sigmahq/regression_data").is_dir(),
        "the shared corpora are missing: expected {}",
        path.display()
    );
    path
}

#[test]
fn regression_events_decode_without_dead_letters() {
    let mut files = Vec::new();
    let mut stack = vec![corpora().join("sigmahq/regression_data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 200, "found {} event files", files.len());
    let mut rows = 0;
    for file in &files {
        let (batches, dead) = read(file, 1024);
        assert!(dead.is_empty(), "{}: {dead:?}", file.display());
        for b in &batches {
            rows += b.batch.num_rows();
            let schema = b.batch.schema();
            assert_eq!(schema.field(0).name(), RAW_COLUMN);
            assert!(
                schema.index_of("Event.System.Channel").is_ok(),
                "{}: nested shape flattened",
                file.display()
            );
        }
    }
    assert!(rows >= files.len());
}

#[test]
fn otrf_sample_decodes_without_dead_letters() {
    let path = corpora().join("windows-otrf-sample.jsonl.gz");
    let (batches, dead) = read(&path, 4096);
    assert!(dead.is_empty(), "{:?}", dead.first());
    let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
    assert_eq!(rows, 120_000);
    let typed = batches[0].batch.schema();
    assert!(typed.index_of("EventID").is_ok() && typed.index_of("Channel").is_ok());
}
