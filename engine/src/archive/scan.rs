//! Reading the archive back as an input (`vagt hunt`, or `archive:` in a
//! config's inputs): the files of the asked actors and days are found by
//! their folders (no other folder is read), each file's footer is checked
//! (a damaged file is skipped, named, and counted; the others are still
//! searched), and DataFusion scans them, skipping row groups outside the
//! time range by their statistics. Each event's text is decoded again as
//! the stream decoded it, with its original input, line, offset and
//! organisation, so that detection gives the same alerts with the same
//! ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch};
use datafusion::prelude::{col, lit, ParquetReadOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures_util::StreamExt;
use vagt_connectors::{BatchDecoder, DeadLetter, DecoderConfig, EventBatch, Origin, Record};

use super::input::{ArchiveInput, ScanReport};
use super::layout::{self, ArchiveError};
use super::store::Store;

/// Scans `input`, handing each batch of events (decoded again from their
/// text) to `on_batch`. Runs its own small runtime: call it on a blocking
/// thread.
///
/// # Errors
/// The archive cannot be listed, a bound is invalid, or the scan failed.
pub fn scan(
    input: &ArchiveInput,
    decoder: &DecoderConfig,
    report: &Mutex<ScanReport>,
    progress: &AtomicU64,
    mut on_batch: impl FnMut(EventBatch),
    mut on_dead: impl FnMut(DeadLetter),
) -> Result<(), ArchiveError> {
    let (since, until) = input.range()?;
    let filter = input.filter((since, until));
    let failed = |e: datafusion::error::DataFusionError| ArchiveError::Scan {
        path: input.dir.clone(),
        message: e.to_string(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ArchiveError::io(&input.dir))?;
    let ctx = session();
    let found = match store_of(input)? {
        Some(store) => {
            store.register(&ctx);
            let readable = runtime.block_on(store.readable_files(&filter))?;
            Found {
                bytes: readable.files.iter().map(|f| f.size).sum(),
                files: readable
                    .files
                    .iter()
                    .map(|f| store.url_of(&f.key))
                    .collect(),
                rows: readable.rows,
                skipped: readable.skipped,
            }
        }
        None => {
            let readable = layout::readable_files(&input.dir, &filter)?;
            Found {
                bytes: readable
                    .files
                    .iter()
                    .filter_map(|f| std::fs::metadata(&f.path).ok())
                    .map(|m| m.len())
                    .sum(),
                files: readable
                    .files
                    .iter()
                    .map(|f| f.path.to_string_lossy().into_owned())
                    .collect(),
                rows: readable.rows,
                skipped: readable.skipped,
            }
        }
    };
    let rows_in_files = found.rows;
    {
        let mut report = lock(report);
        report.bytes += found.bytes;
        report.files += found.files.len() as u64;
        report.skipped.extend(found.skipped);
    }
    if found.files.is_empty() {
        return Ok(());
    }
    let mut frame = runtime
        .block_on(ctx.read_parquet(found.files, ParquetReadOptions::default()))
        .map_err(failed)?;
    let utc = |t: i64| {
        lit(ScalarValue::TimestampMillisecond(
            Some(t),
            Some("UTC".into()),
        ))
    };
    // Rows of no readable time are kept: their day folder placed them.
    if let Some(t) = since {
        frame = frame
            .filter(col("time").is_null().or(col("time").gt_eq(utc(t))))
            .map_err(failed)?;
    }
    if let Some(t) = until {
        frame = frame
            .filter(col("time").is_null().or(col("time").lt_eq(utc(t))))
            .map_err(failed)?;
    }
    let frame = frame
        .select_columns(&["raw", "source", "line", "offset", "input_actor"])
        .map_err(failed)?;
    let mut stream = runtime.block_on(frame.execute_stream()).map_err(failed)?;
    let mut decoding = Decoding::new(decoder);
    // Progress in bytes of the files, by the share of their rows read.
    let total_bytes = found.bytes;
    let mut rows_read = 0u64;
    while let Some(batch) = runtime.block_on(stream.next()) {
        let batch = batch.map_err(failed)?;
        lock(report).rows += batch.num_rows() as u64;
        let before = share(total_bytes, rows_read, rows_in_files);
        rows_read += batch.num_rows() as u64;
        progress.fetch_add(
            share(total_bytes, rows_read, rows_in_files) - before,
            Ordering::Relaxed,
        );
        decoding
            .rows(&batch, &mut on_batch, &mut on_dead)
            .map_err(|message| ArchiveError::Scan {
                path: input.dir.clone(),
                message,
            })?;
    }
    decoding.finish(&mut on_batch);
    // Rows the time range left out were skipped, not read: the bar ends.
    progress.fetch_add(
        total_bytes - share(total_bytes, rows_read, rows_in_files),
        Ordering::Relaxed,
    );
    Ok(())
}

/// The files a scan reads, wherever they are.
struct Found {
    /// Paths or `s3://` addresses.
    files: Vec<String>,
    bytes: u64,
    rows: u64,
    skipped: Vec<String>,
}

/// The object store `input` reads, if it reads one: its `store`, or a
/// `dir` of `s3://bucket/prefix` with the settings of the environment.
///
/// # Errors
/// The store's address or settings are refused.
pub(crate) fn store_of(input: &ArchiveInput) -> Result<Option<Store>, ArchiveError> {
    match (&input.store, input.dir.to_str()) {
        (Some(settings), _) => Store::open(settings).map(Some),
        (None, Some(dir)) if super::is_store_url(dir) => Store::from_url(dir).map(Some),
        (None, _) => Ok(None),
    }
}

/// A DataFusion session that reads the archive's strings as the archive
/// wrote them (`Utf8`), not as views, which the functions and decoding
/// here take.
pub(crate) fn session() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    ))
}

/// `total` × `part` / `whole`, at most `total`.
fn share(total: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return total;
    }
    ((u128::from(total) * u128::from(part.min(whole))) / u128::from(whole)) as u64
}

fn lock(report: &Mutex<ScanReport>) -> std::sync::MutexGuard<'_, ScanReport> {
    report
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Archived rows decoded into event batches cut as a file input cuts
/// them (`batch_size` events or `batch_bytes` of text).
struct Decoding {
    decoder: BatchDecoder,
    /// Interned input and organisation names.
    names: Vec<Arc<str>>,
}

impl Decoding {
    fn new(config: &DecoderConfig) -> Decoding {
        Decoding {
            decoder: BatchDecoder::with_config(config),
            names: Vec::new(),
        }
    }

    fn name(&mut self, text: &str) -> Arc<str> {
        if let Some(n) = self.names.iter().find(|n| &***n == text) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(text);
        self.names.push(n.clone());
        n
    }

    fn rows(
        &mut self,
        batch: &RecordBatch,
        on_batch: &mut impl FnMut(EventBatch),
        on_dead: &mut impl FnMut(DeadLetter),
    ) -> Result<(), String> {
        let (Some(raw), Some(source), Some(line), Some(offset), Some(actor)) = (
            batch
                .column_by_name("raw")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("source")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("line")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            batch
                .column_by_name("offset")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            batch
                .column_by_name("input_actor")
                .and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            return Err(format!(
                "the files' columns are not the archive's: {}",
                batch.schema()
            ));
        };
        for row in 0..batch.num_rows() {
            let source = self.name(source.value(row));
            let actor = (!actor.is_null(row)).then(|| self.name(actor.value(row)));
            let record = Record {
                bytes: raw.value(row).as_bytes().to_vec(),
                origin: Origin {
                    line: line.value(row),
                    offset: offset.value(row),
                },
            };
            // The text decoded when it was archived; should it not now,
            // it is reported, not lost.
            if let Some(dead) = self.decoder.push_as(record, &source, actor.as_ref()) {
                on_dead(dead);
            }
            if self.decoder.is_full() {
                if let Some(b) = self.decoder.finish() {
                    on_batch(b);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, on_batch: &mut impl FnMut(EventBatch)) {
        if let Some(b) = self.decoder.finish() {
            on_batch(b);
        }
    }
}
