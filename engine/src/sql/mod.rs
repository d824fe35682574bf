//! `vagt sql`: SQL (DataFusion) over the archive and over event files,
//! speaking the rules' language through functions (see [`functions`]).
//!
//! ```text
//!  PATH... ──► tables: an archive folder (partitioned by actor, date; each
//!              file's footer checked, damaged ones left out and named),
//!              a Parquet file, a JSON-lines file
//!  QUERY ───► DataFusion, with sigma_match, cidr_contains, event_field,
//!              catalog_actor, catalog_processes ──► batches ──► table or JSON lines
//! ```

pub mod functions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{JsonReadOptions, ParquetReadOptions};

use crate::archive::layout::{self, PartitionFilter};
use crate::catalog::Catalog;

/// Why a query could not run, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The user: the query is not valid SQL, or names what is not there.
    #[error("query {query:?}: {message}")]
    Query { query: String, message: String },
    /// The user: a path that is neither an archive, a Parquet nor a
    /// JSON-lines file.
    #[error("{path}: {message}")]
    Table { path: PathBuf, message: String },
    /// The machine: a folder for the archive's table cannot be made.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A query's answer and what was left out.
#[derive(Debug)]
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    /// Tables registered: (name, path).
    pub tables: Vec<(String, PathBuf)>,
    /// Archive files left out, each with the reason.
    pub skipped: Vec<String>,
}

/// The table name of `path`: `events` when it is the only one, else its
/// file stem (letters, digits and `_`).
fn table_name(path: &Path, only: bool) -> String {
    if only {
        return "events".into();
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("events")
        .split('.')
        .next()
        .unwrap_or("events");
    stem.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Runs `query` over `paths`.
///
/// # Errors
/// A path cannot be read as a table, or the query fails.
pub async fn query(
    query: &str,
    paths: &[PathBuf],
    catalog: Arc<Catalog>,
    scratch: &Path,
) -> Result<Answer, SqlError> {
    let ctx = crate::archive::scan::session();
    functions::register(&ctx, catalog);
    let mut answer = Answer {
        batches: Vec::new(),
        tables: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, path) in paths.iter().enumerate() {
        let name = table_name(path, paths.len() == 1);
        let table_error = |message: String| SqlError::Table {
            path: path.clone(),
            message,
        };
        let store_url = path.to_str().filter(|p| crate::archive::is_store_url(p));
        if let Some(url) = store_url {
            let root = store_root(&ctx, url, &mut answer)
                .await
                .map_err(|e| table_error(e.to_string()))?;
            register_archive(&ctx, &name, root)
                .await
                .map_err(|e| table_error(e.to_string()))?;
        } else if path.is_dir() {
            let root = archive_root(path, &scratch.join(format!("table-{i}")), &mut answer)?;
            register_archive(&ctx, &name, root.to_string_lossy().into_owned())
                .await
                .map_err(|e| table_error(e.to_string()))?;
        } else {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let registered = match ext {
                "parquet" => {
                    ctx.register_parquet(&name, path.to_string_lossy(), ParquetReadOptions::default())
                        .await
                }
                "jsonl" | "json" | "ndjson" => {
                    let ext = format!(".{ext}");
                    ctx.register_json(
                        &name,
                        path.to_string_lossy(),
                        JsonReadOptions::default().file_extension(&ext),
                    )
                    .await
                }
                _ => {
                    return Err(table_error(
                        "not an archive folder, a .parquet or a JSON-lines (.jsonl, .json, .ndjson) file".into(),
                    ))
                }
            };
            registered.map_err(|e| table_error(e.to_string()))?;
        }
        answer.tables.push((name, path.clone()));
    }
    let failed = |e: datafusion::error::DataFusionError| SqlError::Query {
        query: query.to_string(),
        message: e.to_string(),
    };
    let frame = ctx.sql(query).await.map_err(failed)?;
    answer.batches = frame.collect().await.map_err(failed)?;
    Ok(answer)
}

/// A batch's rows as JSON objects (column name to value).
pub fn batch_rows(batch: &RecordBatch) -> Vec<serde_json::Value> {
    let mut buf = Vec::new();
    let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut buf);
    if writer.write(batch).is_err() || writer.finish().is_err() {
        return Vec::new();
    }
    drop(writer);
    serde_json::from_slice(&buf).unwrap_or_default()
}

/// Registers the archive at `root` (a folder or a store's address) as
/// table `name`, partitioned by actor and date.
async fn register_archive(
    ctx: &datafusion::prelude::SessionContext,
    name: &str,
    root: String,
) -> datafusion::error::Result<()> {
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("actor".to_string(), DataType::Utf8),
            ("date".to_string(), DataType::Utf8),
        ]);
    ctx.register_listing_table(name, root, options, Some(layout::schema()), None)
        .await
}

/// The address a table over the archive in the store at `url` lists
/// (`s3://bucket/prefix/`), the store registered with `ctx` so that its
/// listings leave out the files whose footer does not read (named in
/// `answer`).
async fn store_root(
    ctx: &datafusion::prelude::SessionContext,
    url: &str,
    answer: &mut Answer,
) -> Result<String, crate::archive::layout::ArchiveError> {
    let store = crate::archive::store::Store::from_url(url)?;
    let readable = store.readable_files(&PartitionFilter::default()).await?;
    answer.skipped.extend(readable.skipped);
    if readable.skipped_keys.is_empty() {
        store.register(ctx);
    } else {
        store.register_hiding(ctx, readable.skipped_keys);
    }
    Ok(format!("{}/", store.url()))
}

/// The folder a table over the archive at `dir` lists: the archive itself
/// when every file's footer reads, else a folder of links to the files
/// that do, in the same partition folders, so that a damaged file is left
/// out (and named) and the rest still searched.
fn archive_root(dir: &Path, links: &Path, answer: &mut Answer) -> Result<PathBuf, SqlError> {
    let readable =
        layout::readable_files(dir, &PartitionFilter::default()).map_err(|e| SqlError::Table {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    if readable.skipped.is_empty() {
        return Ok(dir.to_path_buf());
    }
    answer.skipped.extend(readable.skipped);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SqlError::Io { path, source }
    };
    for file in readable.files {
        let partition = layout::partition_dir(links, &file.actor_value, &file.date);
        std::fs::create_dir_all(&partition).map_err(io(&partition))?;
        let name = file.path.file_name().unwrap_or_default();
        let target = std::fs::canonicalize(&file.path).map_err(io(&file.path))?;
        std::os::unix::fs::symlink(target, partition.join(name)).map_err(io(&partition))?;
    }
    Ok(links.to_path_buf())
}
