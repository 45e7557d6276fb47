//! `dfstream verify`: the batch oracle against the streaming output, for users and the
//! crash tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::ParquetReadOptions;

use crate::batch::TextCounters;
use crate::cli::VerifyArgs;
use crate::error::{Context, Error, Result};
use crate::query::engine::{Engine, EngineChoice};
use crate::query::lines::{LinesTable, TriggerSlot, read_file};
use crate::query::plan::{self, QueryFile};
use crate::source::files as dir;
use crate::source::{Restored, socket};
use crate::state::checkpoint::Checkpoint;
use crate::storage::Location;
use datafusion::common::DataFusionError;

/// `dfstream verify`: runs the query once as a batch over every file the checkpoint says was
/// taken and compares the result with the streaming output. Returns whether they match.
pub async fn verify(args: VerifyArgs, out: &mut impl Write) -> Result<bool> {
    let location = crate::cli::location(&args.checkpoint, "--checkpoint", &args.storage_options)?;
    let (checkpoint, meta) = Checkpoint::open_read_only(&location).await?;
    let file = QueryFile::read(&args.query)?;
    let params: BTreeMap<String, String> = args.params.iter().cloned().collect();
    if file.sql != meta.sql || params != meta.params {
        return Err(Error::Usage(format!(
            "checkpoint {} was made by another query or parameters than {} {params:?}",
            args.checkpoint.display(),
            args.query.display()
        )));
    }
    let input = crate::cli::location(&args.input, "--input", &args.storage_options)?;
    let output = crate::cli::location(&args.output, "--output", &args.storage_options)?;
    let folder = dir::folder(&input, Default::default())?;
    if let Some(inputs) = &meta.inputs {
        let given = folder.identity();
        if !inputs.contains(&given) {
            return Err(Error::Usage(format!(
                "checkpoint {} read {}, not the --input given ({given})",
                args.checkpoint.display(),
                inputs.join(" and ")
            )));
        }
    }
    let recovered = checkpoint.recover(None).await?;
    let read_socket = meta.inputs.iter().flatten().any(|i| i == socket::NAME)
        || recovered.progress.contains_key(socket::NAME);
    if read_socket {
        return Err(Error::Usage(format!(
            "checkpoint {} also read lines from a socket; verify rebuilds the input from files \
             only (the socket log is deleted once committed), so it cannot check this job",
            args.checkpoint.display()
        )));
    }
    if let Some(delay) = &meta.watermark {
        return Err(Error::Usage(format!(
            "checkpoint {} was made with --watermark {delay}: the job dropped late rows and \
             emits windows only once they close, so the batch query over all input is not its \
             result; verify checks jobs without a watermark",
            args.checkpoint.display()
        )));
    }
    let Some(last) = recovered.last_commit else {
        writeln!(
            out,
            "nothing committed yet in {}",
            args.checkpoint.display()
        )
        .ok();
        return Ok(true);
    };
    if let Some(unfinished) = recovered.replay.first() {
        writeln!(
            out,
            "note: batch {} was started but not committed; its output may be partly written. \
             Run the job to finish it, then verify.",
            unfinished.batch_id
        )
        .ok();
    }
    // Every file taken, with its arrival time and size where the checkpoint records them
    // (snapshots written before they were recorded do not).
    let taken = dir::taken_files(&Restored::from_recovered(dir::NAME, &recovered))?;
    let mut set_aside = std::collections::BTreeSet::new();
    for batch_id in 0..=last {
        if let Some(offsets) = checkpoint.offsets(batch_id).await.filter(|o| o.skipped)
            && let Some(part) = offsets.sources.get(dir::NAME)
        {
            set_aside.extend(dir::files_of(part)?.into_iter().map(|f| f.name));
        }
    }
    let format = crate::format::StreamFormat::recorded(meta.format.clone()).await?;
    let parquet = format.kind() == crate::format::FormatKind::Parquet;
    let all_columns: Vec<usize> = (0..format.file_schema.fields().len()).collect();
    let decoding = if parquet {
        None
    } else {
        Some(crate::format::Decoding::new(
            &format,
            &all_columns,
            args.max_line_bytes,
        )?)
    };
    let counters = TextCounters::default();
    let ctx = crate::query::session(2);
    let event_time = meta
        .event_time
        .as_deref()
        .map(|text| crate::query::event_time(&ctx, text, &format))
        .transpose()?;
    let mut lines: Vec<RecordBatch> = Vec::new();
    if !set_aside.is_empty() {
        writeln!(
            out,
            "note: {} files of batches set aside by `checkpoint skip-batch` are left out, as the \
             job left them out",
            set_aside.len()
        )
        .ok();
    }
    // On a cluster the executors read the files: the batch plan scans them as a trigger's
    // plan does.
    let cluster = match &args.engine {
        EngineChoice::Local => None,
        choice => Some(Engine::start(choice, Default::default()).await?),
    };
    let mut units = Vec::new();
    for (name, taken) in taken.iter().filter(|(n, _)| !set_aside.contains(*n)) {
        let file = folder.unit(&dir::NewFile {
            name: name.clone(),
            ts_micros: taken.ts_micros.unwrap_or(0),
            mtime_micros: taken.mtime_micros,
            size: taken.size,
            version: None,
        });
        if cluster.is_some() {
            units.push(file);
            continue;
        }
        let mut failed = None;
        let Some(decoding) = &decoding else {
            // Parquet: the file's rows, cast to the recorded columns.
            for b in parquet_rows(&file, &format, &counters).await? {
                let b = format.with_unit_columns(&b, &file)?;
                match &event_time {
                    Some(event_time) => lines.push(
                        event_time
                            .apply(b, &counters)
                            .context(|| format!("event times of {name}"))?,
                    ),
                    None => lines.push(b),
                }
            }
            continue;
        };
        // Objects are read with blocking calls into the runtime.
        tokio::task::block_in_place(|| {
            read_file(&file, decoding, &counters, |b| {
                let b = match format.with_unit_columns(&b, &file) {
                    Ok(b) => b,
                    Err(e) => {
                        failed = Some(DataFusionError::External(Box::new(e)));
                        return false;
                    }
                };
                match &event_time {
                    Some(event_time) => match event_time.apply(b, &counters) {
                        Ok(b) => lines.push(b),
                        Err(e) => failed = Some(e),
                    },
                    None => lines.push(b),
                }
                failed.is_none()
            })
        })
        .context(|| format!("reading {name}"))?;
        if let Some(e) = failed {
            return Err(e).context(|| format!("event times of {name}"));
        }
    }
    if cluster.is_some() {
        writeln!(
            out,
            "note: the batch query runs on {}, whose executors read the files: files that \
             vanished or changed size since they were taken are not counted here",
            args.engine
        )
        .ok();
    }
    let counts = counters.snapshot();
    if counts.vanished_files > 0 {
        writeln!(
            out,
            "note: {} input files no longer exist; the batch result cannot include them",
            counts.vanished_files
        )
        .ok();
    }
    if counts.changed_files > 0 {
        writeln!(
            out,
            "note: {} input files changed size after they were taken; the bytes taken are read \
             (where the checkpoint still records the size), as the job read them",
            counts.changed_files
        )
        .ok();
    }
    let table: Arc<dyn datafusion::catalog::TableProvider> = if cluster.is_some() {
        let slot = TriggerSlot::new(Arc::new(TextCounters::default()), args.max_line_bytes)
            .with_format(format.clone());
        if let Some(event_time) = event_time {
            slot.set_event_time(event_time);
        }
        Arc::new(LinesTable::new(slot, 2))
    } else {
        Arc::new(
            MemTable::try_new(Arc::clone(&format.table_schema), vec![lines])
                .context(|| "the stream table".into())?,
        )
    };
    ctx.register_table(format.spec.name.as_str(), table)
        .context(|| "registering the stream table".into())?;
    register_static_tables(&ctx, &checkpoint, &meta, last).await?;
    let logical = plan::logical_plan(&ctx, &file, &params).await?;
    let unknown_arrivals = taken
        .iter()
        .filter(|(name, t)| !set_aside.contains(*name) && t.ts_micros.is_none())
        .count();
    // The optimized plan scans only the columns the query needs.
    let scanned = ctx
        .state()
        .optimize(&logical)
        .context(|| "planning the batch query".into())?;
    if unknown_arrivals > 0 && meta.event_time.is_none() && reads_arrival_time(&scanned, &format) {
        return Err(Error::Usage(format!(
            "the query reads `ts`, the time each file arrived, and the checkpoint does not \
             record it for {unknown_arrivals} files (their batches' offsets were deleted, and \
             the sources snapshot was written by a dfstream that did not record it), so verify \
             cannot rebuild their rows"
        )));
    }
    if calls_trigger_time(&logical) {
        return Err(Error::Usage(
            "the query calls now(), current_date or current_time: each batch saw its own \
             trigger time, which one batch query over all input cannot reproduce, so verify \
             cannot check it"
                .into(),
        ));
    }
    if crate::query::groups_by_session(&logical) {
        return Err(Error::Usage(
            "the query groups by session(): sessions are merged by the streaming engine, \
             and a batch DataFusion run of the same SQL sees one-row sessions, so verify cannot \
             compare it (the tests check sessions against a window-function formulation)"
                .into(),
        ));
    }
    let expected = match &cluster {
        None => ctx
            .execute_logical_plan(logical)
            .await
            .context(|| "planning the batch query".into())?
            .collect()
            .await
            .context(|| "running the batch query".into())?,
        Some(cluster) => {
            let plan = ctx
                .state()
                .create_physical_plan(&logical)
                .await
                .context(|| "planning the batch query".into())?;
            let plan = crate::query::scan::bind(plan, &units)
                .context(|| "planning the batch query".into())?;
            cluster.collect(plan, &units).await?
        }
    };
    let columns: Vec<String> = expected
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let actual = match meta.mode.as_str() {
        "complete" => read_output(&output, true, &columns).await?,
        "append" => read_output(&output, false, &columns).await?,
        other => {
            return Err(Error::Usage(format!(
                "verify compares the whole result, which --mode {other} output does not hold; \
                 run the query in --mode complete (or append) to verify it"
            )));
        }
    };
    let expected = row_strings(&expected);
    let actual = row_strings(&actual);
    let missing: Vec<_> = difference(&expected, &actual);
    let unexpected: Vec<_> = difference(&actual, &expected);
    if missing.is_empty() && unexpected.is_empty() {
        writeln!(
            out,
            "OK: {} rows, as the batch query over the {} files taken up to batch {last}",
            expected.len(),
            taken.len()
        )
        .ok();
        return Ok(true);
    }
    writeln!(
        out,
        "DIFFERENT: the streaming output has {} rows the batch query does not, and lacks {} of its rows",
        unexpected.len(),
        missing.len()
    )
    .ok();
    for row in missing.iter().take(20) {
        writeln!(out, "  batch only:  {row}").ok();
    }
    for row in unexpected.iter().take(20) {
        writeln!(out, "  stream only: {row}").ok();
    }
    let unpinned = taken.values().filter(|t| t.size.is_none()).count();
    if unpinned > 0 {
        writeln!(
            out,
            "note: {unpinned} files were read whole, as they are now: the checkpoint does not \
             record the size each was taken with (it was written by an earlier dfstream); a \
             file changed since it was taken shows here as a difference"
        )
        .ok();
    }
    Ok(false)
}

/// Whether `plan` calls a function that answers the trigger's time.
fn calls_trigger_time(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut calls = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && matches!(f.name(), "now" | "current_date" | "current_time")
                {
                    calls = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    calls
}

/// The rows of a Parquet input file as the job read them: each recorded column by name, cast
/// to its type (a missing one NULL, as DataFusion's reader gives it); a vanished file none.
async fn parquet_rows(
    unit: &crate::source::InputUnit,
    format: &crate::format::StreamFormat,
    counters: &TextCounters,
) -> Result<Vec<RecordBatch>> {
    use crate::source::Place;
    use object_store::ObjectStoreExt;
    let bytes = match &unit.place {
        Place::File(path) => match std::fs::read(path) {
            Ok(bytes) => bytes::Bytes::from(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bytes::Bytes::new(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        },
        Place::Object { store, path, .. } => match store.get(path).await {
            Ok(found) => found
                .bytes()
                .await
                .map_err(|e| Error::io(format!("reading {path}"), crate::storage::io_error(e)))?,
            Err(object_store::Error::NotFound { .. }) => bytes::Bytes::new(),
            Err(e) => {
                return Err(Error::io(
                    format!("reading {path}"),
                    crate::storage::io_error(e),
                ));
            }
        },
    };
    if bytes.is_empty() {
        counters
            .vanished_files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(Vec::new());
    }
    let reader =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| {
                Error::io(
                    format!("reading {}", unit.display),
                    std::io::Error::other(e),
                )
            })?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::io(
                format!("reading {}", unit.display),
                std::io::Error::other(e),
            )
        })?;
        let columns = format
            .file_schema
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) => datafusion::arrow::compute::cast(column, field.data_type()),
                None => Ok(datafusion::arrow::array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::io(
                    format!("reading {}", unit.display),
                    std::io::Error::other(e),
                )
            })?;
        let batch =
            RecordBatch::try_new(Arc::clone(&format.file_schema), columns).map_err(|e| {
                Error::io(
                    format!("reading {}", unit.display),
                    std::io::Error::other(e),
                )
            })?;
        batches.push(batch);
    }
    Ok(batches)
}

/// Registers each static table (`--table`) as the job joined with it: the one version every
/// batch recorded, from the checkpoint's copy. A table that changed during the job is refused
/// (one batch query cannot join with several versions).
async fn register_static_tables(
    ctx: &datafusion::prelude::SessionContext,
    checkpoint: &Checkpoint,
    meta: &crate::state::checkpoint::Metadata,
    last: u64,
) -> Result<()> {
    if meta.tables.is_empty() {
        return Ok(());
    }
    let mut versions = crate::tables::recorded_versions(checkpoint).await?;
    for name in meta.tables.keys() {
        let seen: std::collections::BTreeSet<String> = versions
            .remove(name)
            .unwrap_or_default()
            .into_iter()
            .filter(|(batch, _)| *batch <= last)
            .map(|(_, version)| version)
            .collect();
        let [version] = seen.iter().collect::<Vec<_>>()[..] else {
            return Err(Error::Usage(format!(
                "the static table {name} {}: one batch query cannot join with what each batch \
                 joined with, so verify cannot check this job",
                if seen.is_empty() {
                    "is recorded by no batch whose offsets are kept".to_string()
                } else {
                    format!("changed during the job (versions {seen:?})")
                }
            )));
        };
        let table = crate::tables::kept_version(checkpoint, name, version).await?;
        ctx.register_table(name.as_str(), table)
            .context(|| format!("registering the static table {name}"))?;
    }
    Ok(())
}

/// Whether `plan` reads the stream table's arrival-time column (`ts` of `lines`).
fn reads_arrival_time(
    plan: &datafusion::logical_expr::LogicalPlan,
    format: &crate::format::StreamFormat,
) -> bool {
    let arrival = format
        .table_schema
        .field(format.file_schema.fields().len())
        .name();
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut reads = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == format.spec.name
            && scan
                .projected_schema
                .fields()
                .iter()
                .any(|f| f.name() == arrival)
        {
            reads = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    reads
}

/// The job's Parquet output: file `name` under `output`, or (`None`) every `.parquet` file
/// there; nothing if there is none yet.
async fn read_output(
    output: &Location,
    complete: bool,
    columns: &[String],
) -> Result<Vec<RecordBatch>> {
    use crate::sink::files::OutputFormat;
    let ctx = datafusion::prelude::SessionContext::new();
    let store = crate::state::store::open(output);
    let listed = store
        .list("")
        .await
        .map_err(|e| Error::io(format!("listing {}", store.describe()), e))?;
    // The files' format, by their extension (the job's --output-format).
    let format = [OutputFormat::Parquet, OutputFormat::Csv, OutputFormat::Json]
        .into_iter()
        .find(|f| {
            let ext = format!(".{}", f.extension());
            listed
                .iter()
                .any(|(n, _)| n.ends_with(&ext) && !n.starts_with('.'))
        });
    let Some(format) = format else {
        return Ok(Vec::new());
    };
    let name = complete.then(|| format.complete_file());
    if let Some(name) = &name
        && !listed.iter().any(|(n, _)| n == name)
    {
        return Ok(Vec::new());
    }
    let target = match output {
        Location::Local(dir) => name
            .as_ref()
            .map_or_else(|| dir.clone(), |n| dir.join(n))
            .display()
            .to_string(),
        Location::Remote(remote) => {
            let url = url::Url::parse(&remote.url)
                .map_err(|e| Error::Usage(format!("--output {}: {e}", remote.url)))?;
            ctx.register_object_store(&url, std::sync::Arc::clone(&remote.store));
            match &name {
                Some(name) => remote.url_of(name),
                None => format!("{}/", remote.url),
            }
        }
    };
    let frame = match format {
        OutputFormat::Parquet => {
            ctx.read_parquet(target.clone(), ParquetReadOptions::default())
                .await
        }
        OutputFormat::Csv => {
            ctx.read_csv(
                target.clone(),
                datafusion::prelude::CsvReadOptions::new().has_header(true),
            )
            .await
        }
        OutputFormat::Json => {
            ctx.read_json(
                target.clone(),
                datafusion::datasource::file_format::options::JsonReadOptions::default(),
            )
            .await
        }
    };
    let frame = frame.context(|| format!("reading {target}"))?;
    // JSON has no column order: take the query's.
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let frame = if names.is_empty() {
        frame
    } else {
        frame
            .select_columns(&names)
            .context(|| format!("the columns of {target}"))?
    };
    frame
        .collect()
        .await
        .context(|| format!("reading {target}"))
}

/// Each row as `a | b | c`, sorted (a multiset, as a sorted list).
fn row_strings(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = rows_as_text(batches, " | ");
    rows.sort();
    rows
}

/// Each row as its cells' display text joined by `separator` (NULL for nulls), in order.
pub fn rows_as_text(batches: &[RecordBatch], separator: &str) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(cells.join(separator));
        }
    }
    rows
}

/// Rows of sorted `a` not matched in sorted `b` (multiset difference).
fn difference<'a>(a: &'a [String], b: &[String]) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut j = 0;
    for row in a {
        while j < b.len() && b[j] < *row {
            j += 1;
        }
        if j < b.len() && b[j] == *row {
            j += 1;
        } else {
            out.push(row);
        }
    }
    out
}
