//! Writes each trigger's result as Parquet under `--output DIR`, readable by DataFusion as
//! `SELECT * FROM 'DIR/'`.
//!
//! - complete mode: `DIR/result.parquet` holds exactly the latest full result; each trigger
//!   replaces it with one atomic rename, so a reader sees one trigger's table, never a mix.
//! - update and append modes: each trigger with rows adds `DIR/batch-NNNNNNNNNNNN.parquet`
//!   (update mode adds a `batch_id` column). Rewriting batch N replaces the same file, and
//!   rewriting it without rows removes it.
//!
//! Files are written as `.NAME.tmp` (hidden, and not `*.parquet`), synced, then renamed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

use super::{Sink, SinkBatch};
use crate::error::{Error, Result};
use crate::query::OutputMode;
use crate::state::store::{sync_dir, write_atomic_with};

/// The file complete mode keeps up to date.
pub const COMPLETE_FILE: &str = "result.parquet";

/// The file of batch `batch_id` in update and append modes.
pub fn batch_file_name(batch_id: u64) -> String {
    format!("batch-{batch_id:012}.parquet")
}

pub struct ParquetSink {
    dir: PathBuf,
}

impl ParquetSink {
    /// Creates `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating output directory {}", dir.display()), e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()> {
        match batch.mode {
            OutputMode::Complete => {
                let path = self.dir.join(COMPLETE_FILE);
                write_parquet(&path, batch.schema, batch.rows, batch.batch_id)
            }
            OutputMode::Append if batch.num_rows() > 0 => {
                let path = self.dir.join(batch_file_name(batch.batch_id));
                write_parquet(&path, batch.schema, batch.rows, batch.batch_id)
            }
            OutputMode::Update if batch.num_rows() > 0 => {
                let (schema, rows) = with_batch_id(batch)?;
                let path = self.dir.join(batch_file_name(batch.batch_id));
                write_parquet(&path, &schema, &rows, batch.batch_id)
            }
            OutputMode::Append | OutputMode::Update => {
                // A replay of a batch whose first run wrote rows (its input has since
                // vanished) must not leave that run's file behind.
                let path = self.dir.join(batch_file_name(batch.batch_id));
                match std::fs::remove_file(&path).and_then(|_| sync_dir(&self.dir)) {
                    Ok(()) => {
                        log::warn!(
                            "removed {} written by an earlier run of batch {}, which now \
                             has no rows",
                            path.display(),
                            batch.batch_id
                        );
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
                }
            }
        }
    }

    fn discard_from(&mut self, first: u64) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| {
                n.strip_prefix("batch-")?
                    .strip_suffix(".parquet")?
                    .parse::<u64>()
                    .ok()
            }) else {
                continue;
            };
            if id >= first {
                log::warn!(
                    "removing output {} of an unrecoverable batch",
                    entry.path().display()
                );
                std::fs::remove_file(entry.path())
                    .map_err(|e| Error::io(format!("removing {}", entry.path().display()), e))?;
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

fn write_parquet(
    path: &Path,
    schema: &SchemaRef,
    rows: &[RecordBatch],
    batch_id: u64,
) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "dfstream.batch_id".to_string(),
            batch_id.to_string(),
        )]))
        .build();
    write_atomic_with(path, |file| {
        let mut writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(props))
            .map_err(std::io::Error::other)?;
        for batch in rows {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
