//! The real corpora decode without a single dead letter: SigmaHQ's
//! regression events (evtx_dump output: pretty-printed, nested, sometimes
//! several objects per file) and flat Windows events in JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use arrow_schema::DataType;
use vagt_connectors::RAW_COLUMN;

use crate::read;

fn corpora() -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpora"));
    assert!(
        path.is_dir(),
        "the shared corpora are missing: expected them at {}",
        path.display()
    );
    path
}

fn json_files(dir: PathBuf) -> Vec<PathBuf> {
    assert!(dir.is_dir(), "corpus folder missing: {}", dir.display());
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn sigmahq_regression_events_decode_without_dead_letters() {
    let files = json_files(corpora().join("sigmahq/regression_data"));
    assert!(files.len() >= 200, "found only {} event files", files.len());
    let mut rows = 0;
    for file in &files {
        let got = read(file, 1024);
        assert!(got.dead.is_empty(), "{}: {:?}", file.display(), got.dead);
        // evtx_dump starts each top-level object at column 0.
        let text = std::fs::read_to_string(file).unwrap();
        let objects = text.lines().filter(|l| l.starts_with('{')).count();
        assert_eq!(got.rows(), objects, "{}", file.display());
        for b in &got.batches {
            let schema = b.batch.schema();
            assert_eq!(schema.field(0).name(), RAW_COLUMN);
            let id = schema.field_with_name("Event.System.EventID");
            assert_eq!(
                id.map(|f| f.data_type().clone()).ok(),
                Some(DataType::Int64),
                "{}: nested shape flattened",
                file.display()
            );
            assert!(schema
                .index_of("Event.System.Provider.#attributes.Name")
                .is_ok());
        }
        rows += got.rows();
    }
    assert!(rows > files.len(), "some files hold several events");
}

#[test]
fn otrf_windows_events_decode_without_dead_letters() {
    let gz = corpora().join("windows-otrf-sample.jsonl.gz");
    let input = std::fs::File::open(&gz)
        .unwrap_or_else(|e| panic!("the OTRF sample is missing at {}: {e}", gz.display()));
    let lines = BufReader::new(flate2::read::MultiGzDecoder::new(input)).lines();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otrf-5000.jsonl");
    let mut out = std::fs::File::create(&path).unwrap();
    for line in lines.take(5000) {
        writeln!(out, "{}", line.unwrap()).unwrap();
    }
    drop(out);
    let got = read(&path, 1024);
    assert!(got.dead.is_empty(), "{:?}", got.dead.first());
    assert_eq!(got.rows(), 5000);
    // Each batch but the last is cut at 1,024 events or 2 MiB of text.
    let (last, full) = got.batches.split_last().unwrap();
    assert!(last.batch.num_rows() <= 1024);
    for b in full {
        let offsets = b.raw().unwrap().value_offsets();
        let rows = b.batch.num_rows();
        let text = offsets[rows] - offsets[0];
        assert!(
            rows == 1024 || (rows < 1024 && text >= 2 << 20),
            "{rows} rows, {text} bytes"
        );
        let without_last = offsets[rows - 1] - offsets[0];
        assert!(
            rows == 1024 || without_last < 2 << 20,
            "cut late: {rows} rows"
        );
    }
    assert!(got.batches.len() > 5, "{} batches", got.batches.len());
    for b in &got.batches {
        let schema = b.batch.schema();
        assert_eq!(
            schema.field_with_name("EventID").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            schema.field_with_name("Channel").unwrap().data_type(),
            &DataType::Utf8
        );
    }
}
