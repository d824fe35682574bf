//! What the fuzz targets share: reading bytes as an input format, and the
//! invariants every run must keep.

use vagt_connectors::{read_bytes, DecoderConfig, Format, ReadOptions};

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
    };
    let mut events = 0u64;
    let mut dead = 0u64;
    let stats = read_bytes(
        data,
        "fuzz",
        &options,
        |batch| {
            assert_eq!(batch.batch.num_rows(), batch.origins.len());
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
