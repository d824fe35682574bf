//! Criterion benchmarks of the kernels: JSON → Arrow decoding, the
//! multi-pattern prefilter, and rule evaluation, over the first 4,096
//! events of the OTRF Windows sample. Each checks its result so that a
//! fast but wrong build fails. (Window updates arrive with windowed rules.)

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vagt_benches::{otrf_events, rule_subset, windows_rule_files};
use vagt_connectors::{BatchDecoder, EventBatch, Frame, RecordSplitter};
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

fn decode(bytes: &[u8], batch_size: usize) -> Vec<EventBatch> {
    let source: Arc<str> = Arc::from("bench");
    let mut splitter = RecordSplitter::new(bytes, "bench", 4 << 20);
    let mut decoder = BatchDecoder::new();
    let mut out = Vec::new();
    while let Ok(Some(frame)) = splitter.next_frame() {
        if let Frame::Record(r) = frame {
            assert!(decoder.push(r, &source).is_none(), "sample decodes cleanly");
            if decoder.len() >= batch_size {
                out.extend(decoder.finish());
            }
        }
    }
    out.extend(decoder.finish());
    out
}

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
    let expected_hits: usize = batches
        .iter()
        .map(|b| all.prefilter_hits(&b.batch, &mut scratch))
        .sum();
    assert!(expected_hits > 0);
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
    for (label, set) in [
        ("100_rules", rules(&rule_subset(100))),
        ("all_windows_rules", all),
    ] {
        let mut scratch = set.scratch();
        let expected: usize = batches
            .iter()
            .map(|b| set.evaluate(&b.batch, &mut scratch).len())
            .sum();
        g.bench_function(label, |b| {
            b.iter(|| {
                let n: usize = batches
                    .iter()
                    .map(|b| set.evaluate(&b.batch, &mut scratch).len())
                    .sum();
                assert_eq!(n, expected, "same matches every iteration");
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = kernels
}
criterion_main!(benches);
