//! What the fuzz targets share: reading bytes as an input format, and the
//! invariants every run must keep.

use vagt_connectors::{
    read_bytes, DecoderConfig, Format, Gate, Projection, ReadOptions, SharedProjection,
};

/// Reads `data` as events of `format` in small batches. Nothing may panic,
/// and every record is an event or a dead letter with a reason.
pub fn read(format: Format, data: &[u8]) {
    let options = ReadOptions {
        decoder: DecoderConfig {
            batch_size: 7,
            max_record_bytes: 64 * 1024,
            ..DecoderConfig::default()
        },
        format,
        actor: None,
        // Most fields are checked without being decoded, as in a run, and
        // two only in records whose channel (`c`, `Channel`) lets them in.
        projection: SharedProjection::new(Some(
            Projection::new(["EventID", "Image", "a", "a.b"], |path, pattern| {
                path == pattern
            })
            .gated(
                [("k", ["c"], "x"), ("Message", ["Channel"], "Application")]
                    .into_iter()
                    .filter_map(|(column, gate, value)| {
                        Some((column.to_string(), Gate::new(gate, [value])?))
                    }),
            ),
        )),
    };
    let mut events = 0u64;
    let mut dead = 0u64;
    let stats = read_bytes(
        data,
        "fuzz",
        &options,
        |batch| {
            assert_eq!(batch.batch.num_rows(), batch.origins.len());
            // What was taken with most fields only checked decodes in
            // full too: checking is never more lenient than decoding.
            let full = batch.decoded_again(None).expect("decodes in full");
            assert_eq!(full.batch.num_rows(), batch.batch.num_rows());
            events += batch.batch.num_rows() as u64;
        },
        |letter| {
            assert!(!letter.reason.is_empty());
            dead += 1;
        },
    )
    .expect("reading from memory cannot fail");
    assert_eq!((stats.records, stats.dead_letters), (events, dead));
}
