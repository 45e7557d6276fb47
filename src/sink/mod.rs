//! Where each trigger's result rows go. A sink takes each batch in two phases: `write` (before
//! the checkpoint commits the batch) and `commit` (after it has), and on recovery discards
//! what it wrote for batches that were not committed and will not be re-run. The shipped
//! sinks are idempotent by name (writing batch N again replaces what an earlier attempt
//! left), so their commit phase has nothing to do; a sink that is not (a database, Kafka)
//! stages in `write` and publishes in `commit`, without changes to the trigger loop.
//! Sinks know nothing of sources, SQL or checkpoints.

pub mod console;
pub mod files;
pub mod postgres;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::cli::RunConfig;
use crate::error::Result;
use crate::query::OutputMode;

/// One trigger's result, as handed to every sink.
pub struct SinkBatch<'a> {
    pub batch_id: u64,
    pub mode: OutputMode,
    pub schema: &'a SchemaRef,
    pub rows: &'a [RecordBatch],
}

impl SinkBatch<'_> {
    pub fn num_rows(&self) -> usize {
        self.rows.iter().map(|b| b.num_rows()).sum()
    }
}

/// A destination for result rows.
#[async_trait]
pub trait Sink: Send {
    /// What the sink is, for progress records ("parquet s3://bucket/counts").
    fn describe(&self) -> String;

    /// Phase one: writes batch `batch.batch_id`, before the checkpoint commits it; on return
    /// it is durable (or shown).
    async fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()>;

    /// Phase two: batch `batch_id` is committed in the checkpoint.
    async fn commit(&mut self, _batch_id: u64) -> Result<()> {
        Ok(())
    }

    /// Forgets batches `first` and later, which a recovery found it cannot reproduce (their
    /// input will be taken again in new batches).
    async fn discard_from(&mut self, _first: u64) -> Result<()> {
        Ok(())
    }

    /// The job stops cleanly: release what the sink holds.
    async fn close(self: Box<Self>) {}
}

/// What building a kind of sink gives: the sink, if the run's arguments ask for it.
pub type Built<'a> = futures::future::BoxFuture<'a, Result<Option<Box<dyn Sink>>>>;

/// What a sink may need to know of the job when it is built.
pub struct Job<'a> {
    pub config: &'a RunConfig,
    /// The checkpoint's query id: a sink that keeps its own commit record names the query.
    pub query_id: &'a str,
    pub schema: &'a SchemaRef,
    pub mode: OutputMode,
    /// The result columns that identify a row (the GROUP BY key), if the result has them.
    pub key: Option<&'a [usize]>,
    /// Each row starts with the operation column of update mode's changelog (upsert or
    /// delete; see `query::changes`).
    pub changelog: bool,
    /// The checkpoint's last committed batch, if it has one.
    pub last_commit: Option<u64>,
}

/// A kind of sink: built when the run's arguments ask for it.
pub struct Kind {
    pub name: &'static str,
    pub build: for<'a> fn(&'a Job<'a>) -> Built<'a>,
}

/// Every kind of sink. A new kind is one line here.
const KINDS: &[Kind] = &[console::KIND, files::KIND, postgres::KIND];

/// Builds the sinks the run's arguments ask for.
pub async fn build(job: &Job<'_>) -> Result<Vec<Box<dyn Sink>>> {
    let mut sinks = Vec::new();
    for kind in KINDS {
        if let Some(sink) = (kind.build)(job).await? {
            log::debug!("writing to the {} sink", kind.name);
            sinks.push(sink);
        }
    }
    Ok(sinks)
}
