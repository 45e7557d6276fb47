//! `dfstream state`: a checkpoint's GROUP BY state as the DataFusion table `state`, like
//! Spark's state reader. The query is planned again from the checkpoint's metadata (its SQL,
//! parameters, mode, event time and watermark), the state restored as a restart would, and
//! the query's result over it (the complete-mode table: group keys and final aggregate
//! values) registered as `state`; `state_changes` holds, for each batch whose delta is kept,
//! the result rows of the groups it changed, with `batch_id` (Spark's state change feed).
//! Read-only: it takes no lock, so it works while a job runs.

use std::io::Write;
use std::sync::Arc;

use datafusion::datasource::MemTable;

use crate::batch::TextCounters;
use crate::cli::{self, StateArgs};
use crate::error::{Context, Error, Result};
use crate::query::lines::TriggerSlot;
use crate::query::plan::{self, QueryFile};
use crate::query::{OutputMode, QuerySpec, StreamingQuery};
use crate::state::checkpoint::Checkpoint;

/// `dfstream state`: runs `args.query` (default: the first rows) over the table `state`.
pub async fn state(args: StateArgs, out: &mut impl Write) -> Result<()> {
    let location = cli::location(&args.checkpoint, "--checkpoint", &args.storage_options)?;
    let (checkpoint, meta) = Checkpoint::open_read_only(&location).await?;
    let file = QueryFile {
        path: meta.query_file.clone().into(),
        sql: meta.sql.clone(),
    };
    let mode = <OutputMode as clap::ValueEnum>::from_str(&meta.mode, true)
        .map_err(|e| Error::Checkpoint(format!("the checkpoint's mode {}: {e}", meta.mode)))?;
    let watermark = meta
        .watermark
        .as_deref()
        .map(cli::parse_duration)
        .transpose()
        .map_err(|e| Error::Checkpoint(format!("the checkpoint's watermark: {e}")))?;
    let format = crate::format::StreamFormat::recorded(meta.format.clone()).await?;
    let tables = crate::tables::recorded_providers(&checkpoint, &meta.tables).await?;
    let slot = TriggerSlot::new(Arc::new(TextCounters::default()), 1 << 20)
        .with_format(format)
        .with_tables(tables);
    let mut query = StreamingQuery::plan(
        QuerySpec {
            file: &file,
            params: &meta.params,
            mode: Some(mode),
            partitions: 2,
            event_time: meta.event_time.as_deref(),
            watermark,
        },
        slot,
    )
    .await?;
    let Some(schema) = query.state_schema() else {
        return Err(Error::Usage(format!(
            "the query of {} keeps no state (it has no aggregation): its output is all there is",
            location.describe()
        )));
    };
    if meta.state_schema.as_deref() != Some(schema.to_string().as_str()) {
        return Err(Error::Checkpoint(format!(
            "this dfstream plans the state of {} differently from the one that wrote it; \
             read it with that version",
            location.describe()
        )));
    }
    let (rows, watermark, batch) = match args.batch {
        Some(batch) => (
            checkpoint.state_as_of(batch, &schema).await?,
            None,
            Some(batch),
        ),
        None => {
            let recovered = checkpoint.recover(Some(&schema)).await?;
            (recovered.state, recovered.watermark, recovered.last_commit)
        }
    };
    if batch.is_none() {
        writeln!(out, "nothing committed yet in {}", location.describe())
            .map_err(|e| Error::io("writing to the console", e))?;
        return Ok(());
    }
    for rows in rows {
        query.restore_state(rows)?;
    }
    if let Some(watermark) = watermark {
        query.slot().restore_watermark(watermark);
        // As a restart does: windows the watermark has closed are no longer state.
        query.forget_closed_windows()?;
    }
    let table = query.current_result().await?;
    let ctx = crate::query::session(2);
    let provider = MemTable::try_new(Arc::clone(query.result_schema()), vec![table])
        .context(|| "the state table".into())?;
    ctx.register_table("state", Arc::new(provider))
        .context(|| "registering the state table".into())?;
    ctx.register_table(
        "state_changes",
        Arc::new(changes(&checkpoint, &query, &schema).await?),
    )
    .context(|| "registering the state_changes table".into())?;
    let sql = args
        .query
        .unwrap_or_else(|| "SELECT * FROM state LIMIT 20".to_string());
    let user = QueryFile {
        path: "query".into(),
        sql: sql.clone(),
    };
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| plan::sql_error(&user, e))?
        .collect()
        .await
        .context(|| "running the query over the state".into())?;
    crate::commands::sql::print(&batches, args.format, out)
}

/// The table `state_changes`: `batch_id`, then the result columns of each group a kept batch
/// changed, with its value after that batch.
async fn changes(
    checkpoint: &Checkpoint,
    query: &StreamingQuery,
    state_schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<MemTable> {
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let mut fields = vec![Arc::new(Field::new("batch_id", DataType::Int64, false))];
    fields.extend(query.result_schema().fields().iter().cloned());
    let schema = Arc::new(Schema::new(fields));
    let mut rows = Vec::new();
    for (batch_id, deltas) in checkpoint.state_deltas(state_schema).await? {
        for delta in deltas {
            for changed in query.finalize(delta).await? {
                let id: ArrayRef =
                    Arc::new(Int64Array::from_value(batch_id as i64, changed.num_rows()));
                let columns = std::iter::once(id).chain(changed.columns().iter().cloned());
                rows.push(
                    RecordBatch::try_new(Arc::clone(&schema), columns.collect())
                        .context(|| "the state_changes table".into())?,
                );
            }
        }
    }
    MemTable::try_new(schema, vec![rows]).context(|| "the state_changes table".into())
}
