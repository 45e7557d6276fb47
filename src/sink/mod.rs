//! Where each trigger's result rows go. A sink commits one batch at a time and is idempotent:
//! writing batch N again (after a crash, on replay) replaces what an earlier attempt left.
//! Sinks know nothing of sources, SQL or checkpoints.

pub mod console;
pub mod parquet;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

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
pub trait Sink {
    /// Writes batch `batch.batch_id`; on return it is durable (or shown).
    fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()>;

    /// Forgets batches `first` and later, which a recovery found it cannot reproduce (their
    /// input will be taken again in new batches).
    fn discard_from(&mut self, _first: u64) -> Result<()> {
        Ok(())
    }
}
