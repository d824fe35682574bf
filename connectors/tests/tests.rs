//! Integration tests of the connectors through `read_events`: every input
//! shape and gzip, bad input, and the real corpora.

mod bad_input;
mod corpora;
mod formats;
mod shapes;

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::Array;
use vagt_connectors::{read_events, DeadLetter, DecoderConfig, EventBatch, InputSource, ReadStats};

/// Everything `read_events` hands out for one file.
#[derive(Debug)]
pub struct Read {
    pub batches: Vec<EventBatch>,
    pub dead: Vec<DeadLetter>,
    pub stats: ReadStats,
}

impl Read {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.batch.num_rows()).sum()
    }

    /// The `id` column of every batch, in order; `None` where it is null.
    pub fn ids(&self) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for b in &self.batches {
            let schema = b.batch.schema();
            let col = b.batch.column(schema.index_of("id").expect("id column"));
            let ids = col.as_primitive::<Int64Type>();
            out.extend((0..ids.len()).map(|i| ids.is_valid(i).then(|| ids.value(i))));
        }
        out
    }
}

pub fn read(path: &Path, batch_size: usize) -> Read {
    let mut batches = Vec::new();
    let mut dead = Vec::new();
    let config = DecoderConfig {
        batch_size,
        ..DecoderConfig::default()
    };
    let stats = read_events(
        &InputSource::File(path.to_path_buf()),
        &config,
        |b| batches.push(b),
        |d| dead.push(d),
    )
    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Read {
        batches,
        dead,
        stats,
    }
}
