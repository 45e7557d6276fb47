//! Writes each trigger's result as Parquet under `--output` (a local directory or an
//! object-store prefix), readable by DataFusion as `SELECT * FROM 'DIR/'`.
//!
//! - complete mode: `result.parquet` holds exactly the latest full result; each trigger
//!   replaces it atomically (a rename on disk, one PUT or a completed multipart upload on an
//!   object store), so a reader sees one trigger's table, never a mix.
//! - update and append modes: each trigger with rows adds `batch-NNNNNNNNNNNN.parquet`
//!   (update mode adds a `batch_id` column). Rewriting batch N replaces the same file, and
//!   rewriting it without rows removes it: a replay never duplicates.
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

use super::{Sink, SinkBatch};
use crate::error::{Error, Result};
use crate::query::OutputMode;
use crate::state::store::{self, Lock, Store, write_atomic_with};
use crate::storage::{Location, Remote, io_error};

/// The Parquet sink among the kinds of sink: on with `--output`.
pub const KIND: super::Kind = super::Kind {
    name: "parquet",
    build: |config| {
        async move {
            Ok(match &config.output {
                Some(output) => Some(Box::new(ParquetSink::open(output).await?) as Box<dyn Sink>),
                None => None,
            })
        }
        .boxed()
    },
};

/// The file complete mode keeps up to date.
pub const COMPLETE_FILE: &str = "result.parquet";

/// The lock a writing job holds in the output.
const LOCK: &str = ".dfstream-lock";

/// The file of batch `batch_id` in update and append modes.
pub fn batch_file_name(batch_id: u64) -> String {
    format!("batch-{batch_id:012}.parquet")
}

/// The batch id of a file named by [`batch_file_name`].
fn batch_of(name: &str) -> Option<u64> {
    name.strip_prefix("batch-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

pub struct ParquetSink {
    location: Location,
    /// Listing and deleting, local or remote alike.
    store: Box<dyn Store>,
    lock: Lock,
}

impl ParquetSink {
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
        })
    }

    async fn write_file(
        &self,
        name: &str,
        schema: &SchemaRef,
        rows: &[RecordBatch],
        batch_id: u64,
    ) -> Result<()> {
        match &self.location {
            Location::Local(dir) => write_local(&dir.join(name), schema, rows, batch_id),
            Location::Remote(remote) => write_object(remote, name, schema, rows, batch_id).await,
        }
    }
}

#[async_trait]
impl Sink for ParquetSink {
    async fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()> {
        self.lock.check()?;
        let name = batch_file_name(batch.batch_id);
        match batch.mode {
            OutputMode::Complete => {
                self.write_file(COMPLETE_FILE, batch.schema, batch.rows, batch.batch_id)
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
        format!("parquet {}", self.location.describe())
    }

    async fn close(self: Box<Self>) {
        self.lock.release(self.store.as_ref(), LOCK).await;
    }

    async fn discard_from(&mut self, first: u64) -> Result<()> {
        let listed = self
            .store
            .list("")
            .await
            .map_err(|e| Error::io(format!("listing {}", self.store.describe()), e))?;
        for (name, _) in listed {
            if batch_of(&name).is_some_and(|id| id >= first) {
                log::warn!(
                    "removing output {}/{name} of an unrecoverable batch",
                    self.store.describe()
                );
                self.store.delete(&name).await.map_err(|e| {
                    Error::io(format!("removing {}/{name}", self.store.describe()), e)
                })?;
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

fn write_local(path: &Path, schema: &SchemaRef, rows: &[RecordBatch], batch_id: u64) -> Result<()> {
    write_atomic_with(path, |file| {
        let mut writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(properties(batch_id)))
            .map_err(std::io::Error::other)?;
        for batch in rows {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(|e| Error::io(format!("writing {}", path.display()), e))
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
    let writer =
        object_store::buffered::BufWriter::new(Arc::clone(&remote.store), remote.child(name));
    let mut writer =
        AsyncArrowWriter::try_new(writer, Arc::clone(schema), Some(properties(batch_id)))
            .map_err(failed)?;
    for batch in rows {
        writer.write(batch).await.map_err(failed)?;
    }
    writer.close().await.map_err(failed)?;
    Ok(())
}
