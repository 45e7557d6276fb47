//! How the `lines` table is scanned: with DataFusion's own file-scan machinery.
//!
//! A trigger's input units (files, objects, ranges of the socket log) become
//! [`PartitionedFile`]s in the [`FileScanConfig`] of a [`DataSourceExec`], put into the planned
//! plan by [`bind`] just before it runs, so that what a trigger reads is part of its plan, not
//! of the process. DataFusion's `FileStream` hands the files to the scan's partitions one at a
//! time from a shared queue (so two partitions share the work whatever the file sizes).
//!
//! The seam for formats: every format's table is its file columns, then the partition columns
//! `ts` (the rows' arrival time) and `file` (the name the `file` column shows), which
//! DataFusion fills in from each file's partition values. The text-lines format,
//! [`LinesSource`], has one file column, `value`, and decodes with
//! [`crate::batch::LineDecoder`] on a blocking thread per file; CSV, JSON and Parquet plug in
//! as other `FileSource`s over the same partition columns. [`EventTimeExec`], above any of
//! them, replaces `ts` with `--event-time` and drops rows behind the `--watermark`.
//!
//! Each file also carries its [`InputUnit`] as an extension (the exact local path or object
//! store handle, and the pinned size and version), which the reader uses;
//! [`super::codec::PlanCodec`] writes a bound plan as bytes, units included, for another
//! process to run.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, internal_datafusion_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileOpenFuture, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSource,
    ParquetSource,
};
use datafusion::datasource::projection::{ProjectionOpener, SplitProjection};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_plan::execution_plan::apply_expression_roots;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::{RecordBatchReceiverStream, RecordBatchStreamAdapter};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use object_store::ObjectStore;

use super::lines::{EventTime, TableColumns, Watermark, read_file};
use crate::batch::TextCounters;
use crate::format::{Decoding, FormatKind, StreamFormat};
use crate::source::{InputUnit, Place};

/// The scan of the stream table for a query: `projection` of its columns, over `partitions`
/// file groups (filled per trigger by [`bind`]); with an event time or a watermark, every
/// column is read and [`EventTimeExec`] sets the event time and drops late rows before the
/// projection. Parquet rows are counted by an [`EventTimeExec`] too (DataFusion's reader
/// does not count into the run's counters), over the query's columns and the file column.
pub fn plan_scan(
    reading: Reading,
    projection: Option<&Vec<usize>>,
    partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let event_time = reading.event_time.clone();
    let watermark = reading.watermark.clone();
    let counters = Arc::clone(&reading.counters);
    let format = Arc::clone(&reading.format);
    let needs_rows = event_time.is_some() || watermark.is_some();
    let parquet = format.kind() == FormatKind::Parquet;
    let source: Arc<dyn FileSource> = match format.kind() {
        FormatKind::Parquet => Arc::new(ParquetSource::new(table_schema(&format))),
        _ => Arc::new(LinesSource::new(reading)),
    };
    let all: Vec<usize> = (0..format.table_schema.fields().len()).collect();
    let wanted = projection.cloned().unwrap_or_else(|| all.clone());
    let scanned = match (needs_rows, parquet) {
        (true, _) => None,
        (false, true) => {
            // The query's columns and the file column (to count rows by source).
            let mut with_file = wanted.clone();
            if !with_file.contains(&format.file_index()) {
                with_file.push(format.file_index());
            }
            Some(with_file)
        }
        (false, false) => projection.cloned(),
    };
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
        .with_file_groups(empty_groups(partitions))
        .with_projection_indices(scanned.clone())?
        .build();
    let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
    if !needs_rows && !parquet {
        return Ok(scan);
    }
    let input = scanned.unwrap_or(all);
    let keep = wanted
        .iter()
        .map(|c| {
            input
                .iter()
                .position(|i| i == c)
                .expect("the scan reads what is kept")
        })
        .collect();
    let stage = EventTimeStage {
        event_time,
        watermark,
        counters,
        input,
        keep,
        format,
    };
    Ok(Arc::new(EventTimeExec::new(scan, Arc::new(stage))?))
}

fn empty_groups(partitions: usize) -> Vec<FileGroup> {
    (0..partitions.max(1))
        .map(|_| FileGroup::new(Vec::new()))
        .collect()
}

/// How a scan reads and counts: what the trigger slot knows at planning.
#[derive(Debug, Clone)]
pub struct Reading {
    pub counters: Arc<TextCounters>,
    /// The stream table's format and columns.
    pub format: Arc<StreamFormat>,
    pub max_line_bytes: usize,
    pub event_time: Option<Arc<EventTime>>,
    pub watermark: Option<Arc<Watermark>>,
}

/// Makes `plan` ready for one run over `units`: every node's execution state reset, and the
/// units put into each scan's file groups (as many groups as the scan was planned with: runs
/// of about equal bytes, in arrival order).
pub fn bind(plan: Arc<dyn ExecutionPlan>, units: &[InputUnit]) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let node = node.reset_state()?;
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::yes(node));
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(Transformed::yes(node));
        };
        let parquet = config.file_source.is::<ParquetSource>();
        if !config.file_source.is::<LinesSource>() && !parquet {
            return Ok(Transformed::yes(node));
        }
        let groups = file_groups(units, config.file_groups.len());
        let mut config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .build();
        if parquet {
            // DataFusion's reader opens files through the scan's store: the units' (a
            // directory or prefix is in one store).
            if let Some(Place::Object { store_url, .. }) = units.first().map(|u| &u.place) {
                config.object_store_url = store_url.clone();
            }
        }
        let exec = exec.clone().with_data_source(Arc::new(config));
        Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// `units` as `n` groups of consecutive units of about equal bytes.
fn file_groups(units: &[InputUnit], n: usize) -> Vec<FileGroup> {
    let bytes = |u: &InputUnit| u.bytes().unwrap_or(1).max(1);
    let total: u64 = units.iter().map(bytes).sum();
    let per_group = total.div_ceil(n.max(1) as u64).max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    let (mut group, mut filled) = (0, 0u64);
    for unit in units {
        if filled >= per_group && group + 1 < groups.len() {
            group += 1;
            filled = 0;
        }
        filled += bytes(unit);
        groups[group].push(partitioned_file(unit));
    }
    groups.into_iter().map(FileGroup::new).collect()
}

/// A unit as a file of the scan: where it is, its pinned size or byte range, and its `ts` and
/// `file` as partition values; the unit itself rides along for the reader.
pub(super) fn partitioned_file(unit: &InputUnit) -> PartitionedFile {
    let location = match &unit.place {
        // DataFusion's own readers (Parquet) open it by this path from the file system's
        // root.
        Place::File(path) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        Place::Object { path, .. } => path.to_string(),
    };
    let mut file = PartitionedFile::new(location, unit.size.unwrap_or(0));
    if let Place::Object { path, .. } = &unit.place {
        // The object's path as the store has it (`new` would escape it again).
        file.object_meta.location = path.clone();
    }
    let mut file = file
        .with_partition_values(vec![
            ScalarValue::TimestampMicrosecond(Some(unit.ts_micros), Some("UTC".into())),
            ScalarValue::Utf8(Some(unit.display.clone())),
        ])
        .with_extension(unit.clone());
    if let Some((start, end)) = unit.range {
        file = file.with_range(start as i64, end as i64);
    }
    file.object_meta.e_tag = unit.version.clone();
    file
}

/// The table schema of the stream's format for DataFusion's file scans: its file columns,
/// then the arrival time and the file name as the partition columns each file fills in.
pub(super) fn table_schema(format: &StreamFormat) -> TableSchema {
    let table = &format.table_schema;
    let files = format.file_schema.fields().len();
    let partition_columns = vec![
        Arc::new(table.field(files).clone()),
        Arc::new(table.field(files + 1).clone()),
    ];
    TableSchema::builder(Arc::clone(&format.file_schema))
        .with_table_partition_cols(partition_columns)
        .build()
}

/// The formats dfstream decodes itself (text lines, CSV, JSON lines) as a DataFusion
/// [`FileSource`]: each file is read by [`read_file`] and decoded as [`Decoding`] says.
#[derive(Debug, Clone)]
pub struct LinesSource {
    table_schema: TableSchema,
    projection: SplitProjection,
    reading: Reading,
    metrics: ExecutionPlanMetricsSet,
}

impl LinesSource {
    pub(super) fn new(reading: Reading) -> Self {
        let table_schema = table_schema(&reading.format);
        Self {
            projection: SplitProjection::unprojected(&table_schema),
            table_schema,
            reading,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    pub(super) fn reading(&self) -> &Reading {
        &self.reading
    }

    /// The same scan, counting into `counters`.
    pub(super) fn counting_into(&self, counters: Arc<TextCounters>) -> Self {
        let mut source = self.clone();
        source.reading.counters = counters;
        source
    }
}

impl FileSource for LinesSource {
    fn create_file_opener(
        &self,
        _object_store: Arc<dyn ObjectStore>,
        _base_config: &FileScanConfig,
        _partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        let decoding = Decoding::new(
            &self.reading.format,
            &self.projection.file_indices,
            self.reading.max_line_bytes,
        )
        .map_err(|e| internal_datafusion_err!("{e}"))?;
        let schema = Arc::new(
            self.table_schema
                .file_schema()
                .project(&self.projection.file_indices)?,
        );
        let opener = Arc::new(LinesOpener {
            decoding: Arc::new(decoding),
            schema,
            counters: Arc::clone(&self.reading.counters),
        });
        ProjectionOpener::try_new(
            self.projection.clone(),
            opener,
            self.table_schema.file_schema(),
        )
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, _batch_size: usize) -> Arc<dyn FileSource> {
        // Lines are decoded into batches of crate::batch::BATCH_ROWS.
        Arc::new(self.clone())
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        Some(&self.projection.source)
    }

    fn try_pushdown_projection(
        &self,
        projection: &ProjectionExprs,
    ) -> Result<Option<Arc<dyn FileSource>>> {
        let merged = self.projection.source.try_merge(projection)?;
        let mut source = self.clone();
        source.projection = SplitProjection::new(self.table_schema.file_schema(), &merged);
        Ok(Some(Arc::new(source)))
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "lines"
    }

    fn supports_repartitioning(&self) -> bool {
        // A byte range is an exact part of the socket log, not a split to align to lines.
        false
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(self.projection.source.iter(), f)
    }
}

/// Opens one file of a trigger: reads it in chunks on a blocking thread (decompressed, pinned
/// to the size taken) and decodes its lines or records.
struct LinesOpener {
    decoding: Arc<Decoding>,
    /// The file columns decoded.
    schema: SchemaRef,
    counters: Arc<TextCounters>,
}

impl FileOpener for LinesOpener {
    fn open(&self, file: PartitionedFile) -> Result<FileOpenFuture> {
        let unit = file
            .extension::<InputUnit>()
            .cloned()
            .ok_or_else(|| internal_datafusion_err!("a lines file without its input unit"))?;
        let decoding = Arc::clone(&self.decoding);
        let counters = Arc::clone(&self.counters);
        let schema = Arc::clone(&self.schema);
        Ok(Box::pin(async move {
            let mut builder = RecordBatchReceiverStream::builder(schema, 2);
            let tx = builder.tx();
            builder.spawn_blocking(move || {
                read_file(&unit, &decoding, &counters, |batch| {
                    tx.blocking_send(Ok(batch)).is_ok()
                })?;
                Ok(())
            });
            Ok(builder.build().boxed())
        }))
    }
}

/// `--event-time` and `--watermark` over a scan of every column of the stream table: sets the
/// event time (rows without one are counted and dropped), notes the batch's event times, drops
/// (and counts) rows behind the watermark, then keeps the query's columns.
#[derive(Debug)]
pub struct EventTimeExec {
    input: Arc<dyn ExecutionPlan>,
    stage: Arc<EventTimeStage>,
    properties: Arc<PlanProperties>,
}

/// What [`EventTimeExec`] does to each batch.
#[derive(Debug)]
pub(super) struct EventTimeStage {
    pub(super) event_time: Option<Arc<EventTime>>,
    pub(super) watermark: Option<Arc<Watermark>>,
    pub(super) counters: Arc<TextCounters>,
    /// The table columns its input holds (every one with an event time or a watermark).
    pub(super) input: Vec<usize>,
    /// The input columns the query reads.
    pub(super) keep: Vec<usize>,
    pub(super) format: Arc<StreamFormat>,
}

impl EventTimeStage {
    /// The same stage, counting into `counters`.
    pub(super) fn counting_into(&self, counters: Arc<TextCounters>) -> Self {
        Self {
            event_time: self.event_time.clone(),
            watermark: self.watermark.clone(),
            counters,
            input: self.input.clone(),
            keep: self.keep.clone(),
            format: Arc::clone(&self.format),
        }
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut batch = batch;
        if self.format.kind() == FormatKind::Parquet {
            self.count_rows(&batch);
        }
        if self.event_time.is_none() && self.watermark.is_none() {
            return Ok(batch.project(&self.keep)?);
        }
        if let Some(event_time) = &self.event_time {
            batch = event_time.apply(batch, &self.counters)?;
        }
        // The batch's event times (late rows included, as Spark's).
        let columns = TableColumns::of(&self.format);
        if let Some(ts) = batch
            .column(columns.event_time)
            .as_primitive_opt::<TimestampMicrosecondType>()
            && let Ok(mut stats) = self.counters.event_times.lock()
        {
            stats.observe(ts);
        }
        if let Some(watermark) = &self.watermark {
            batch = watermark.apply(batch, &self.counters, columns)?;
        }
        Ok(batch.project(&self.keep)?)
    }
}

impl EventTimeStage {
    /// Counts rows a reader other than dfstream's decoders read, in all and by source.
    fn count_rows(&self, batch: &RecordBatch) {
        let rows = batch.num_rows() as u64;
        self.counters
            .rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        if let Some(file) = self
            .input
            .iter()
            .position(|&c| c == self.format.file_index())
        {
            super::lines::count_by_source(
                batch,
                file,
                |_| true,
                &self.counters,
                |n| crate::batch::SourceCounts {
                    rows: n,
                    ..Default::default()
                },
            );
        }
    }
}

impl EventTimeExec {
    pub(super) fn new(input: Arc<dyn ExecutionPlan>, stage: Arc<EventTimeStage>) -> Result<Self> {
        let schema = Arc::new(
            stage
                .format
                .table_schema
                .project(&stage.input)?
                .project(&stage.keep)?,
        );
        let input_properties = input.properties();
        let properties = PlanProperties::new(
            datafusion::physical_expr::EquivalenceProperties::new(schema),
            input_properties.output_partitioning().clone(),
            input_properties.emission_type,
            input_properties.boundedness,
        );
        Ok(Self {
            input,
            stage,
            properties: Arc::new(properties),
        })
    }

    pub(super) fn stage(&self) -> &EventTimeStage {
        &self.stage
    }
}

impl DisplayAs for EventTimeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "EventTimeExec:")?;
        if let Some(event_time) = &self.stage.event_time {
            write!(f, " ts={}", event_time.text)?;
        }
        if self.stage.watermark.is_some() {
            write!(f, " watermark")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for EventTimeExec {
    fn name(&self) -> &str {
        "EventTimeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.stage.event_time {
            Some(event_time) => f(&event_time.expr),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| internal_datafusion_err!("EventTimeExec needs its input"))?;
        Ok(Arc::new(Self::new(input, Arc::clone(&self.stage))?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let stage = Arc::clone(&self.stage);
        let rows = input.map(move |batch| batch.and_then(|b| stage.apply(b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(self.properties.eq_properties.schema()),
            rows,
        )))
    }
}
