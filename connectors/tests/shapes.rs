//! Every accepted input shape, plain and gzip-compressed, gives the same
//! rows and columns at every batch size.

use std::io::Write;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use vagt_connectors::{read_events, ConnectorError, DecoderConfig, InputSource, RAW_COLUMN};

use crate::read;

const SHAPES: [(&str, &str); 5] = [
    (
        "lines.jsonl",
        "{\"id\": 1, \"x\": {\"y\": \"a\"}}\n{\"id\": 2}\n{\"id\": 3, \"x\": {\"y\": \"c\"}}\n",
    ),
    (
        "pretty.json",
        "{\n  \"id\": 1,\n  \"x\": {\n    \"y\": \"a\"\n  }\n}\n{\n  \"id\": 2\n}\n{\"id\": 3, \"x\": {\"y\": \"c\"}}",
    ),
    (
        "concatenated.json",
        "{\"id\": 1, \"x\": {\"y\": \"a\"}}{\"id\": 2} {\"id\": 3, \"x\": {\"y\": \"c\"}}",
    ),
    (
        "array.json",
        "[\n  {\"id\": 1, \"x\": {\"y\": \"a\"}},\n  {\"id\": 2}\n]\n[{\"id\": 3, \"x\": {\"y\": \"c\"}}]",
    ),
    (
        "mixed.json",
        "\u{feff}[{\"id\": 1, \"x\": {\"y\": \"a\"}}]\n{\n \"id\": 2\n}{\"id\": 3, \"x\": {\"y\": \"c\"}}\n",
    ),
];

fn gzip(path: &Path, text: &[u8]) {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text).unwrap();
    enc.finish().unwrap();
}

fn check(path: &Path, batch_size: usize, text: &str) {
    let label = format!("{} at batch size {batch_size}", path.display());
    let got = read(path, batch_size);
    assert!(got.dead.is_empty(), "{label}: {:?}", got.dead);
    assert_eq!(got.ids(), [Some(1), Some(2), Some(3)], "{label}");
    assert_eq!(
        got.batches.len(),
        3usize.div_ceil(batch_size),
        "{label}: files fill whole batches"
    );
    assert_eq!(
        (got.stats.records, got.stats.dead_letters),
        (3, 0),
        "{label}"
    );
    assert_eq!(got.stats.bytes, text.len() as u64, "{label}");
    let mut ys = Vec::new();
    for b in &got.batches {
        let schema = b.batch.schema();
        assert_eq!(schema.field(0).name(), RAW_COLUMN);
        assert_eq!(
            schema.field_with_name("id").unwrap().data_type(),
            &DataType::Int64
        );
        match schema.index_of("x.y") {
            Ok(i) => ys.extend(
                b.batch
                    .column(i)
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string)),
            ),
            Err(_) => ys.extend(std::iter::repeat_n(None, b.batch.num_rows())),
        }
        for o in &b.origins {
            assert_eq!(&*o.source, path.display().to_string(), "{label}");
        }
    }
    assert_eq!(ys, [Some("a".into()), None, Some("c".into())], "{label}");
    let raw = got.batches[0]
        .batch
        .column(0)
        .as_string::<i32>()
        .value(0)
        .to_string();
    assert!(
        raw.starts_with('{') && raw.ends_with('}') && raw.contains("\"id\": 1"),
        "{label}: {raw}"
    );
}

#[test]
fn every_input_shape_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in SHAPES {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let gz = dir.path().join(format!("{name}.gz"));
        gzip(&gz, text.as_bytes());
        for batch_size in [1, 2, 1024] {
            check(&path, batch_size, text);
            check(&gz, batch_size, text);
        }
    }
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        "{\"id\": 1, \"x\": {\"y\": \"a\"}}\n{\"id\": 2}\n",
        "{\"id\": 3, \"x\": {\"y\": \"c\"}}\n",
    );
    let a = dir.path().join("a.gz");
    let b = dir.path().join("b.gz");
    gzip(&a, first.as_bytes());
    gzip(&b, second.as_bytes());
    let mut both = std::fs::read(&a).unwrap();
    both.extend(std::fs::read(&b).unwrap());
    let path = dir.path().join("both.jsonl.gz");
    std::fs::write(&path, both).unwrap();
    check(&path, 1024, &format!("{first}{second}"));
}

#[test]
fn sources_parse_and_name_themselves() {
    assert_eq!(InputSource::parse("-"), InputSource::Stdin);
    assert_eq!(InputSource::Stdin.name(), "stdin");
    let file = InputSource::parse("logs/a.jsonl.gz");
    assert_eq!(file, InputSource::File("logs/a.jsonl.gz".into()));
    assert_eq!(file.name(), "logs/a.jsonl.gz");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.jsonl");
    let err = read_events(
        &InputSource::File(path.clone()),
        &DecoderConfig::default(),
        |_| panic!("no batch"),
        |_| panic!("no dead letter"),
    )
    .unwrap_err();
    assert!(matches!(&err, ConnectorError::Open { path: p, .. } if *p == path));
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn invalid_settings_are_rejected_before_reading() {
    let config = DecoderConfig {
        batch_size: 0,
        ..DecoderConfig::default()
    };
    let err =
        read_events(&InputSource::parse("/nonexistent"), &config, |_| {}, |_| {}).unwrap_err();
    assert!(matches!(err, ConnectorError::Config(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "invalid decoder settings: batch_size must be at least 1"
    );
}

#[test]
fn corrupt_gzip_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.jsonl.gz");
    let mut bytes = Vec::new();
    {
        let mut enc = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::default());
        enc.write_all("{\"id\": 1}\n".repeat(1000).as_bytes())
            .unwrap();
        enc.finish().unwrap();
    }
    let cut = bytes.len() / 2;
    bytes[cut..].iter_mut().for_each(|b| *b = !*b);
    std::fs::write(&path, bytes).unwrap();
    let err = read_events(
        &InputSource::File(path),
        &DecoderConfig::default(),
        |_| {},
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ConnectorError::Read { .. }), "{err}");
}
