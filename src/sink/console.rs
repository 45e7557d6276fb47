//! Prints each trigger's result like Spark's console sink: a `Batch: N` header and a boxed
//! table of at most `--num-rows` rows.

use std::io::Write;

use datafusion::arrow::util::pretty::pretty_format_batches;

use async_trait::async_trait;
use futures::FutureExt;

use super::{Sink, SinkBatch};
use crate::error::{Error, Result};

/// The console sink among the kinds of sink: on unless `--no-console`.
pub const KIND: super::Kind = super::Kind {
    name: "console",
    build: |job| {
        let config = job.config;
        let sink = (!config.args.no_console).then(|| {
            Box::new(ConsoleSink::new(std::io::stdout(), config.args.num_rows)) as Box<dyn Sink>
        });
        async move { Ok(sink) }.boxed()
    },
};

pub struct ConsoleSink<W: Write> {
    out: W,
    num_rows: usize,
}

impl<W: Write> ConsoleSink<W> {
    pub fn new(out: W, num_rows: usize) -> Self {
        Self { out, num_rows }
    }
}

#[async_trait]
impl<W: Write + Send> Sink for ConsoleSink<W> {
    fn describe(&self) -> String {
        "console".to_string()
    }

    async fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()> {
        let total = batch.num_rows();
        let mut shown = Vec::new();
        let mut left = self.num_rows;
        for rows in batch.rows {
            if left == 0 {
                break;
            }
            let take = rows.num_rows().min(left);
            shown.push(rows.slice(0, take));
            left -= take;
        }
        if shown.is_empty() {
            shown.push(datafusion::arrow::array::RecordBatch::new_empty(
                batch.schema.clone(),
            ));
        }
        let table = pretty_format_batches(&shown)
            .map_err(|e| Error::io("formatting the console table", std::io::Error::other(e)))?;
        let rule = "-------------------------------------------";
        let mut text = format!("{rule}\nBatch: {}\n{rule}\n{table}\n", batch.batch_id);
        if total > self.num_rows {
            text.push_str(&format!(
                "only showing top {} of {total} rows\n",
                self.num_rows
            ));
        }
        text.push('\n');
        // A closed pipe (`dfstream run ... | head`) ends output, not the job's correctness.
        if let Err(e) = self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(Error::io("writing to the console", e));
        }
        Ok(())
    }
}
