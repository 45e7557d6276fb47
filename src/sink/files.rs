//! Writes each trigger's result as files under `--output` (a local directory or an
//! object-store prefix) in `--output-format` parquet (default), csv (with a header) or json
//! (JSON lines), readable by DataFusion as a table of that format over the directory.
//!
//! - complete mode: `result.EXT` holds exactly the latest full result; each trigger
//!   replaces it atomically (a rename on disk, one PUT or a completed multipart upload on an
//!   object store), so a reader sees one trigger's table, never a mix.
//! - update and append modes: each trigger with rows adds `batch-NNNNNNNNNNNN.EXT`
//!   (update mode adds a `batch_id` column). Rewriting batch N replaces the same file, and
//!   rewriting it without rows removes it: a replay never duplicates.
//! - append mode with `--partition-by a,b`: the batch's rows go to Hive-style directories
//!   `a=VALUE/b=VALUE/batch-N.EXT` (Spark's `partitionBy`), without the partition columns,
//!   which the directory names hold (percent-escaped; NULL is `__HIVE_DEFAULT_PARTITION__`).
//!   Rewriting batch N writes the same files and removes any other `batch-N` file.
//!
//! Local files are written as `.NAME.tmp` (hidden, and not `*.parquet`), synced, then renamed;
//! objects are uploaded in parts past 10 MiB. A lock (`.dfstream-lock`: a file lock, or a
//! lease on an object store) refuses a second job writing the same output.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use futures::FutureExt;
use object_store::ObjectStoreExt;

use super::{Sink, SinkBatch};
use crate::error::{Error, Result};
use crate::query::OutputMode;
use crate::state::store::{self, Lock, Store, write_atomic_with};
use crate::storage::{Location, Remote, io_error};

/// The file sink among the kinds of sink: on with `--output`.
pub const KIND: super::Kind = super::Kind {
    name: "files",
    build: |job| {
        async move {
            let config = job.config;
            Ok(match &config.output {
                Some(output) => {
                    let sink = FileSink::open(output)
                        .await?
                        .with_format(config.args.output_format)
                        .partitioned_by(config.args.partition_by.clone());
                    Some(Box::new(sink) as Box<dyn Sink>)
                }
                None => None,
            })
        }
        .boxed()
    },
};

/// `--output-format`: how result files are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Parquet, Snappy-compressed.
    #[default]
    Parquet,
    /// CSV with a header line.
    Csv,
    /// JSON lines: one object per row.
    Json,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }

    /// The file complete mode keeps up to date.
    pub fn complete_file(self) -> String {
        format!("result.{}", self.extension())
    }

    /// Why this format cannot hold a result of `schema`, if it cannot.
    pub fn cannot_hold(self, schema: &Schema) -> Option<String> {
        if self != OutputFormat::Csv {
            return None;
        }
        let nested = schema.fields().iter().find(|f| f.data_type().is_nested())?;
        Some(format!(
            "--output-format csv cannot hold the column {} of type {}; use --output-format json \
             or parquet",
            nested.name(),
            nested.data_type()
        ))
    }
}

/// The file complete mode keeps up to date, in the default format.
pub const COMPLETE_FILE: &str = "result.parquet";

/// What a NULL partition value's directory says (as Hive and Spark write it).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The lock a writing job holds in the output.
const LOCK: &str = ".dfstream-lock";

/// The file of batch `batch_id` in update and append modes.
pub fn batch_file_name(batch_id: u64) -> String {
    batch_file(batch_id, OutputFormat::Parquet)
}

fn batch_file(batch_id: u64, format: OutputFormat) -> String {
    format!("batch-{batch_id:012}.{}", format.extension())
}

/// The batch id of a file (its last path segment) named by [`batch_file`], in any format.
fn batch_of(name: &str) -> Option<u64> {
    let name = name.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    if !["parquet", "csv", "json"].contains(&ext) {
        return None;
    }
    stem.strip_prefix("batch-")?.parse().ok()
}

pub struct FileSink {
    location: Location,
    /// Listing and deleting, local or remote alike.
    store: Box<dyn Store>,
    lock: Lock,
    format: OutputFormat,
    /// `--partition-by`: append mode's Hive-style directories.
    partition_by: Vec<String>,
}

impl FileSink {
    /// Opens the output (creating a local directory if needed) and takes its lock.
    pub async fn open(location: &Location) -> Result<Self> {
        if let Location::Local(dir) = location {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::io(format!("creating output directory {}", dir.display()), e)
            })?;
        }
        let store = store::open(location);
        let lock = store.lock(LOCK).await.map_err(|e| {
            Error::Usage(format!(
                "--output {}: {e} (two jobs must not write one output)",
                location.describe()
            ))
        })?;
        Ok(Self {
            location: location.clone(),
            store,
            lock,
            format: OutputFormat::default(),
            partition_by: Vec::new(),
        })
    }

    /// Writes files in `format`.
    pub fn with_format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    /// Writes append mode's rows into directories by the values of `columns`.
    pub fn partitioned_by(mut self, columns: Vec<String>) -> Self {
        self.partition_by = columns;
        self
    }

    async fn write_file(
        &self,
        name: &str,
        schema: &SchemaRef,
        rows: &[RecordBatch],
        batch_id: u64,
    ) -> Result<()> {
        match (&self.location, self.format) {
            (Location::Local(dir), format) => {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                write_local(&path, format, schema, rows, batch_id)
            }
            (Location::Remote(remote), OutputFormat::Parquet) => {
                write_object(remote, name, schema, rows, batch_id).await
            }
            (Location::Remote(remote), format) => {
                let mut bytes = Vec::new();
                encode(&mut bytes, format, schema, rows)
                    .map_err(|e| Error::io(format!("encoding {}", remote.url_of(name)), e))?;
                put_object(remote, name, bytes).await
            }
        }
    }

    /// Every batch file under the output, in subdirectories too, as paths relative to it.
    async fn batch_files(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        match &self.location {
            Location::Local(dir) => {
                let mut pending = vec![std::path::PathBuf::new()];
                while let Some(sub) = pending.pop() {
                    let entries = match std::fs::read_dir(dir.join(&sub)) {
                        Ok(entries) => entries,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(Error::io(format!("listing {}", dir.display()), e));
                        }
                    };
                    for entry in entries.flatten() {
                        let relative = sub.join(entry.file_name());
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            pending.push(relative);
                        } else {
                            let relative = relative.to_string_lossy().into_owned();
                            if batch_of(&relative).is_some() {
                                found.push(relative);
                            }
                        }
                    }
                }
            }
            Location::Remote(remote) => {
                use futures::TryStreamExt;
                let listed: Vec<object_store::ObjectMeta> = remote
                    .store
                    .list(Some(&remote.prefix))
                    .try_collect()
                    .await
                    .map_err(|e| Error::io(format!("listing {}", remote.url), io_error(e)))?;
                let prefix = format!("{}/", remote.prefix);
                for meta in listed {
                    let path = meta.location.to_string();
                    let relative = path.strip_prefix(&prefix).unwrap_or(&path).to_string();
                    if batch_of(&relative).is_some() {
                        found.push(relative);
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes the output file `name` (relative to the output).
    async fn remove(&self, name: &str) -> Result<()> {
        match &self.location {
            Location::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                    format!("removing {}", dir.join(name).display()),
                    e,
                )),
                _ => Ok(()),
            },
            Location::Remote(remote) => match remote.store.delete(&remote.child(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(Error::io(
                    format!("removing {}", remote.url_of(name)),
                    io_error(e),
                )),
            },
        }
    }

    /// Append mode with `--partition-by`: batch `batch_id`'s rows by directory, then any
    /// other file of the batch (an earlier run's) removed.
    async fn write_partitioned(&self, batch: &SinkBatch<'_>) -> Result<()> {
        let name = batch_file(batch.batch_id, self.format);
        let parts = partitions(batch.schema, batch.rows, &self.partition_by)
            .map_err(|e| Error::io("splitting rows by --partition-by", std::io::Error::other(e)))?;
        let mut written = std::collections::HashSet::new();
        for (dirs, rows) in parts {
            let path = format!("{dirs}/{name}");
            let schema = rows[0].schema();
            self.write_file(&path, &schema, &rows, batch.batch_id)
                .await?;
            written.insert(path);
        }
        for stale in self.batch_files().await? {
            if batch_of(&stale) == Some(batch.batch_id) && !written.contains(&stale) {
                self.remove(&stale).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()> {
        self.lock.check()?;
        let name = batch_file(batch.batch_id, self.format);
        match batch.mode {
            OutputMode::Append if !self.partition_by.is_empty() => {
                self.write_partitioned(batch).await
            }
            OutputMode::Complete => {
                let file = self.format.complete_file();
                self.write_file(&file, batch.schema, batch.rows, batch.batch_id)
                    .await
            }
            OutputMode::Append if batch.num_rows() > 0 => {
                self.write_file(&name, batch.schema, batch.rows, batch.batch_id)
                    .await
            }
            OutputMode::Update if batch.num_rows() > 0 => {
                let (schema, rows) = with_batch_id(batch)?;
                self.write_file(&name, &schema, &rows, batch.batch_id).await
            }
            OutputMode::Append | OutputMode::Update => {
                // A replay of a batch whose first run wrote rows (its input has since
                // vanished) must not leave that run's file behind.
                let existed = self
                    .store
                    .list("")
                    .await
                    .map_err(|e| Error::io(format!("listing {}", self.store.describe()), e))?
                    .iter()
                    .any(|(n, _)| *n == name);
                if existed {
                    self.store.delete(&name).await.map_err(|e| {
                        Error::io(format!("removing {}/{name}", self.store.describe()), e)
                    })?;
                    if let Some(dir) = self.store.local_dir() {
                        store::sync_dir(dir)
                            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
                    }
                    log::warn!(
                        "removed {}/{name} written by an earlier run of batch {}, which now \
                         has no rows",
                        self.store.describe(),
                        batch.batch_id
                    );
                }
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.format.extension(), self.location.describe())
    }

    async fn close(self: Box<Self>) {
        self.lock.release(self.store.as_ref(), LOCK).await;
    }

    async fn discard_from(&mut self, first: u64) -> Result<()> {
        for name in self.batch_files().await? {
            if batch_of(&name).is_some_and(|id| id >= first) {
                log::warn!(
                    "removing output {}/{name} of an unrecoverable batch",
                    self.store.describe()
                );
                self.remove(&name).await?;
            }
        }
        Ok(())
    }
}

/// Adds a leading `batch_id` column.
fn with_batch_id(batch: &SinkBatch<'_>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut fields = vec![Arc::new(Field::new("batch_id", DataType::Int64, false))];
    fields.extend(batch.schema.fields().iter().cloned());
    let schema = Arc::new(Schema::new(fields));
    let rows = batch
        .rows
        .iter()
        .map(|rows| {
            let id: ArrayRef = Arc::new(Int64Array::from_value(
                batch.batch_id as i64,
                rows.num_rows(),
            ));
            let mut columns = vec![id];
            columns.extend(rows.columns().iter().cloned());
            RecordBatch::try_new(Arc::clone(&schema), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::io("adding the batch_id column", std::io::Error::other(e)))?;
    Ok((schema, rows))
}

fn properties(batch_id: u64) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "dfstream.batch_id".to_string(),
            batch_id.to_string(),
        )]))
        .build()
}

fn write_local(
    path: &Path,
    format: OutputFormat,
    schema: &SchemaRef,
    rows: &[RecordBatch],
    batch_id: u64,
) -> Result<()> {
    write_atomic_with(path, |file| match format {
        OutputFormat::Parquet => {
            let mut writer =
                ArrowWriter::try_new(file, Arc::clone(schema), Some(properties(batch_id)))
                    .map_err(std::io::Error::other)?;
            for batch in rows {
                writer.write(batch).map_err(std::io::Error::other)?;
            }
            writer.close().map_err(std::io::Error::other)?;
            Ok(())
        }
        format => encode(file, format, schema, rows),
    })
    .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// `rows` as CSV (with a header, also for no rows) or JSON lines.
fn encode(
    out: impl std::io::Write,
    format: OutputFormat,
    schema: &SchemaRef,
    rows: &[RecordBatch],
) -> std::io::Result<()> {
    use datafusion::arrow::{csv, json};
    match format {
        OutputFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().with_header(true).build(out);
            if rows.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(Arc::clone(schema)))
                    .map_err(std::io::Error::other)?;
            }
            for batch in rows {
                writer.write(batch).map_err(std::io::Error::other)?;
            }
            Ok(())
        }
        OutputFormat::Json => {
            let mut writer = json::LineDelimitedWriter::new(out);
            for batch in rows {
                writer.write(batch).map_err(std::io::Error::other)?;
            }
            writer.finish().map_err(std::io::Error::other)
        }
        OutputFormat::Parquet => unreachable!("Parquet is written by its own writers"),
    }
}

/// The object of the output file `name`: its segments are already escaped (partition
/// directories), so they are taken as they are, not escaped again.
fn object_path(remote: &Remote, name: &str) -> object_store::path::Path {
    object_store::path::Path::parse(format!("{}/{name}", remote.prefix))
        .unwrap_or_else(|_| remote.child(name))
}

/// Uploads `bytes` as `name` under `remote`, whole or not at all.
async fn put_object(remote: &Remote, name: &str, bytes: Vec<u8>) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut writer = object_store::buffered::BufWriter::new(
        Arc::clone(&remote.store),
        object_path(remote, name),
    );
    let url = remote.url_of(name);
    writer
        .write_all(&bytes)
        .await
        .map_err(|e| Error::io(format!("writing {url}"), e))?;
    writer
        .shutdown()
        .await
        .map_err(|e| Error::io(format!("writing {url}"), e))
}

/// `rows` by the values of the `columns`: for each distinct combination (in order of first
/// appearance), its directories `a=VALUE/b=VALUE` and its rows without those columns.
fn partitions(
    schema: &SchemaRef,
    rows: &[RecordBatch],
    columns: &[String],
) -> std::result::Result<Vec<(String, Vec<RecordBatch>)>, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::UInt32Array;
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let indexes: Vec<usize> = columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<_, _>>()?;
    let kept: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !indexes.contains(i))
        .collect();
    let kept_schema = Arc::new(schema.project(&kept)?);
    let mut order: Vec<String> = Vec::new();
    let mut groups: std::collections::HashMap<String, Vec<RecordBatch>> = Default::default();
    let options = FormatOptions::default();
    for batch in rows {
        let formatters = indexes
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut by_dir: Vec<(String, Vec<u32>)> = Vec::new();
        for row in 0..batch.num_rows() {
            let dirs: Vec<String> = indexes
                .iter()
                .zip(&formatters)
                .map(|(&i, f)| {
                    let value = if batch.column(i).is_null(row) {
                        NULL_PARTITION.to_string()
                    } else {
                        escape_partition(&f.value(row).to_string())
                    };
                    format!("{}={value}", schema.field(i).name())
                })
                .collect();
            let dirs = dirs.join("/");
            match by_dir.iter_mut().find(|(d, _)| *d == dirs) {
                Some((_, taken)) => taken.push(row as u32),
                None => by_dir.push((dirs, vec![row as u32])),
            }
        }
        for (dirs, taken) in by_dir {
            let taken = UInt32Array::from(taken);
            let columns = kept
                .iter()
                .map(|&i| datafusion::arrow::compute::take(batch.column(i), &taken, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let part = RecordBatch::try_new_with_options(
                Arc::clone(&kept_schema),
                columns,
                &datafusion::arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(taken.len())),
            )?;
            if !groups.contains_key(&dirs) {
                order.push(dirs.clone());
            }
            groups.entry(dirs).or_default().push(part);
        }
    }
    Ok(order
        .into_iter()
        .map(|dirs| {
            let rows = groups.remove(&dirs).unwrap_or_default();
            (dirs, rows)
        })
        .collect())
}

/// A partition value as a directory name: characters that paths, Hive or object stores
/// treat specially as `%XX` (as Hive escapes them).
fn escape_partition(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        // Hive's set, and what object-store paths do not take as they are.
        if c.is_control() || "\"#%'*/:=?\\{}[]^<>|~`".contains(c) {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        NULL_PARTITION.to_string()
    } else {
        out
    }
}

/// Uploads `name` under `remote`: one PUT, or a multipart upload past 10 MiB; either way the
/// object appears whole or not at all.
async fn write_object(
    remote: &Remote,
    name: &str,
    schema: &SchemaRef,
    rows: &[RecordBatch],
    batch_id: u64,
) -> Result<()> {
    let url = remote.url_of(name);
    let failed = |e: datafusion::parquet::errors::ParquetError| {
        let e = match e {
            datafusion::parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<object_store::Error>() {
                    Ok(e) => io_error(*e),
                    Err(inner) => std::io::Error::other(inner),
                }
            }
            e => std::io::Error::other(e),
        };
        Error::io(format!("writing {url}"), e)
    };
    let writer = object_store::buffered::BufWriter::new(
        Arc::clone(&remote.store),
        object_path(remote, name),
    );
    let mut writer =
        AsyncArrowWriter::try_new(writer, Arc::clone(schema), Some(properties(batch_id)))
            .map_err(failed)?;
    for batch in rows {
        writer.write(batch).await.map_err(failed)?;
    }
    writer.close().await.map_err(failed)?;
    Ok(())
}
