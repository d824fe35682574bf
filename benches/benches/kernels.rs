//! Criterion benchmarks of the kernels: JSON → Arrow decoding, the
//! multi-pattern prefilter, and rule evaluation, over the first 4,096
//! events of the OTRF Windows sample; window updates; and each text
//! format's parsing into Arrow, against decoding the JSON it produces.
//! Each checks its result so that a fast but wrong build fails.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vagt_benches::{decode, otrf_events, rule_subset, windows_rule_files};
use vagt_connectors::{DecoderConfig, EventBatch, Format, Framer, Ingest, Origin};
use vagt_rules::{load_paths, Placeholders, Profile, RuleSet, RuleSetBuilder};

const EVENTS: usize = 4096;

fn sample() -> Vec<u8> {
    let all = otrf_events().expect("OTRF sample");
    let end = all
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(EVENTS - 1)
        .map(|(i, _)| i + 1)
        .unwrap_or(all.len());
    all[..end].to_vec()
}

/// What the first 4,096 events give, counted once and pinned, so that a
/// build that is fast but finds something else fails instead of being
/// measured: literal hits of every SigmaHQ Windows rule's automata, and
/// matches of 100 rules and of all of them. The literal hits depend on the
/// batches, not only on the events: a field whose rules can read at least
/// half of a batch's rows is searched over the whole column, and its hits
/// in the other rows count too. Batches of 1,024 events gave 50,501; cut at
/// 2 MiB of text as well (and at 1 MiB), 48,278; with only the literals of
/// triggers, routing conditions and rules without a trigger searched (the
/// others tested row by row), 13,168.
const PREFILTER_HITS: usize = 13_168;
const MATCHES_100_RULES: usize = 187;
const MATCHES_ALL_RULES: usize = 222;

fn rules(files: &[std::path::PathBuf]) -> RuleSet {
    let collection = load_paths(files, &Placeholders::new()).expect("rules");
    RuleSetBuilder::new(Profile::windows().expect("profile"))
        .build(&collection)
        .set
}

fn kernels(c: &mut Criterion) {
    let bytes = sample();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("json_to_arrow_4096_events", |b| {
        b.iter(|| {
            let batches = decode(black_box(&bytes), 1024);
            assert_eq!(
                batches.iter().map(|b| b.batch.num_rows()).sum::<usize>(),
                EVENTS
            );
            batches
        })
    });
    g.finish();

    let batches = decode(&bytes, 1024);
    let all = rules(&windows_rule_files());
    let mut scratch = all.scratch();
    let expected_hits = PREFILTER_HITS;
    let mut g = c.benchmark_group("prefilter");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("all_windows_rules_literals", |b| {
        b.iter(|| {
            let hits: usize = batches
                .iter()
                .map(|b| all.prefilter_hits(&b.batch, &mut scratch))
                .sum();
            assert_eq!(hits, expected_hits);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(EVENTS as u64));
    for (label, set, expected) in [
        ("100_rules", rules(&rule_subset(100)), MATCHES_100_RULES),
        ("all_windows_rules", all, MATCHES_ALL_RULES),
    ] {
        let mut scratch = set.scratch();
        g.bench_function(label, |b| {
            b.iter(|| {
                let n: usize = batches
                    .iter()
                    .map(|b| set.evaluate(&b.batch, &mut scratch).len())
                    .sum();
                assert_eq!(n, expected, "the pinned match count");
            })
        });
    }
    g.finish();
}

/// Window updates: see [`vagt_benches::WindowKernel`];
/// `examples/window_updates.rs` runs the same for instruction counts.
fn windows(c: &mut Criterion) {
    let kernel = vagt_benches::WindowKernel::new();
    let mut g = c.benchmark_group("windows");
    g.throughput(Throughput::Elements(kernel.len() as u64));
    g.bench_function("update_100k_observations_1000_keys", |b| {
        b.iter(|| kernel.run())
    });
    g.finish();
}

/// Lines of the format samples in `fixtures/formats/` that parse, repeated
/// to about `lines` lines (a Zeek header first).
fn format_sample(file: &str, format: Format, lines: usize) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/formats")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("format sample");
    let (header, body): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('#'));
    // Keep the lines that parse.
    let good: Vec<&str> = body
        .into_iter()
        .filter(|line| {
            let mut probe = header.join("\n").into_bytes();
            probe.push(b'\n');
            probe.extend_from_slice(line.as_bytes());
            let (rows, dead) = ingest(&probe, format);
            rows == 1 && dead == 0
        })
        .collect();
    assert!(!good.is_empty(), "{file} has lines that parse");
    let mut out = Vec::new();
    for line in &header {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    for line in good.iter().cycle().take(lines) {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Frames, parses and decodes `bytes` of `format`, handing out each
/// batch; returns the number of dead letters.
fn decode_each(bytes: &[u8], format: Format, mut on_batch: impl FnMut(EventBatch)) -> usize {
    let source: Arc<str> = Arc::from("bench");
    let mut framer = Framer::new(
        format,
        bytes,
        "bench",
        1 << 20,
        Origin { line: 1, offset: 0 },
    );
    let mut ingest = Ingest::new(format, &DecoderConfig::default());
    let mut dead = 0;
    while let Ok(Some(frame)) = framer.next_frame() {
        dead += usize::from(ingest.frame(frame, &source, None).is_some());
        if ingest.is_full() {
            if let Some(batch) = ingest.finish() {
                on_batch(batch);
            }
        }
    }
    if let Some(batch) = ingest.finish() {
        on_batch(batch);
    }
    dead
}

/// Frames, parses and decodes `bytes` of `format`; (rows, dead letters).
fn ingest(bytes: &[u8], format: Format) -> (usize, usize) {
    let mut rows = 0;
    let dead = decode_each(bytes, format, |batch| rows += batch.batch.num_rows());
    (rows, dead)
}

/// The JSON objects a format's parser produces for `bytes`, one per line.
fn parsed_json(bytes: &[u8], format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    decode_each(bytes, format, |batch| {
        for text in batch.raw().into_iter().flatten().flatten() {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    });
    out
}

fn formats(c: &mut Criterion) {
    const LINES: usize = 20_000;
    let mut g = c.benchmark_group("formats");
    for (file, format) in [
        ("syslog.log", Format::Syslog),
        ("cef.log", Format::Cef),
        ("leef.log", Format::Leef),
        ("zeek-conn.log", Format::Zeek),
        ("app.logfmt", Format::Logfmt),
    ] {
        let bytes = format_sample(file, format, LINES);
        g.throughput(Throughput::Elements(LINES as u64));
        g.bench_function(format!("{format}_to_arrow_20000_lines"), |b| {
            b.iter(|| assert_eq!(ingest(black_box(&bytes), format), (LINES, 0)))
        });
        // The baseline: decoding the JSON the parser produced.
        let json = parsed_json(&bytes, format);
        g.bench_function(format!("{format}_as_json_to_arrow_20000_lines"), |b| {
            b.iter(|| assert_eq!(ingest(black_box(&json), Format::Json), (LINES, 0)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = kernels, windows, formats
}
criterion_main!(benches);
