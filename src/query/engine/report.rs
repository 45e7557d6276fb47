//! What a trigger's plan counted, brought back with its rows from another process.
//!
//! Locally, a trigger's scan counts into the run's [`TextCounters`] (lines, bytes, skips, late
//! rows, by source) and notes the event times that move the watermark. A plan shipped to a
//! cluster reads on executors, whose counters the driver cannot see. [`ReportExec`], put at the
//! root of the shipped plan, gives its decoded copy counters of its own and, when each of its
//! partitions ends, emits one extra row carrying what was counted since the last report (as
//! JSON in the column [`REPORT_COLUMN`], every other column NULL). [`split_reports`] takes
//! those rows out of the result again and adds them into the driver's counters, so a trigger's
//! progress record and watermark are the same whichever engine ran it.
//!
//! A task that runs several partitions of the plan shares one set of counters: each
//! partition's report takes (and zeroes) what was counted so far, so the reports add up to the
//! task's counts whatever order they end in. A failed task's rows, reports included, are
//! discarded with the attempt, as Ballista discards its shuffle output.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BinaryArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::batch::{EventTimeStats, SourceCounts, TextCounters, TextCountersSnapshot};
use crate::query::scan::{EventTimeExec, LinesSource};
use crate::source::InputUnit;

/// The column of a shipped plan's output that carries reports.
pub const REPORT_COLUMN: &str = "dfstream_report";

/// What a plan counted: [`TextCounters`] without the per-trigger bookkeeping.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub counts: TextCountersSnapshot,
    pub by_source: Vec<(String, SourceCounts)>,
    /// Count, least, greatest and sum (as text: it is 128 bits) of the event times seen.
    pub event_times: Option<(u64, i64, i64, String)>,
}

impl Report {
    /// Everything `counters` counted since the last take, leaving them at zero.
    pub fn take(counters: &TextCounters) -> Self {
        let times = counters.take_event_times();
        Report {
            counts: counters.take_snapshot(),
            by_source: counters
                .take_by_source()
                .into_iter()
                .map(|(source, counts)| (source.to_string(), counts))
                .collect(),
            event_times: (times.count > 0)
                .then(|| (times.count, times.min, times.max, times.sum.to_string())),
        }
    }

    /// Adds the report into `counters`; returns the greatest event time it saw.
    pub fn add_to(&self, counters: &TextCounters) -> Option<i64> {
        counters.add_snapshot(&self.counts);
        for (source, counts) in &self.by_source {
            counters.add_source(&Arc::from(source.as_str()), *counts);
        }
        let (count, min, max, sum) = self.event_times.clone()?;
        if let Ok(mut stats) = counters.event_times.lock() {
            let seen = EventTimeStats {
                count,
                min,
                max,
                sum: sum.parse().unwrap_or_default(),
            };
            stats.merge(&seen);
        }
        Some(max)
    }
}

/// The root of a shipped plan: its input's rows, then one report row per partition.
#[derive(Debug)]
pub struct ReportExec {
    input: Arc<dyn ExecutionPlan>,
    counters: Arc<TextCounters>,
    /// The source of each of the trigger's files, by the name its rows' `file` column shows:
    /// rows dropped after a scan are counted by source through it.
    sources: Arc<Vec<(String, String)>>,
    properties: Arc<PlanProperties>,
}

impl ReportExec {
    /// `input` (a bound trigger plan) with its report rows.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let mut sources = Vec::new();
        let _ = input.apply(|node| {
            if let Some(config) = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            {
                let units = config.file_groups.iter().flat_map(|group| group.iter());
                sources.extend(
                    units
                        .filter_map(|file| file.extension::<InputUnit>())
                        .map(|unit| (unit.display.clone(), unit.source.to_string())),
                );
            }
            Ok(TreeNodeRecursion::Continue)
        });
        Self::with_sources(input, Arc::default(), Arc::new(sources))
    }

    fn with_sources(
        input: Arc<dyn ExecutionPlan>,
        counters: Arc<TextCounters>,
        sources: Arc<Vec<(String, String)>>,
    ) -> Self {
        let schema = report_schema(&input.schema());
        let input_properties = input.properties();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            input_properties.output_partitioning().clone(),
            input_properties.emission_type,
            input_properties.boundedness,
        );
        Self {
            input,
            counters,
            sources,
            properties: Arc::new(properties),
        }
    }

    /// The source of each file of the trigger, by its `file` name.
    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }

    /// As decoded where it runs: every scan and event-time stage below counts into this
    /// report's own counters, not into the decoding process's; `sources` as [`Self::sources`]
    /// gave them where the plan was bound.
    pub fn counting_below(
        input: Arc<dyn ExecutionPlan>,
        sources: Vec<(String, String)>,
    ) -> Result<Self> {
        let counters = Arc::new(TextCounters::default());
        let units = sources
            .iter()
            .map(|(display, source)| InputUnit {
                display: display.clone(),
                source: Arc::from(source.as_str()),
                ..InputUnit::file(display.into(), 0)
            })
            .collect();
        counters.set_trigger_units(Arc::new(units));
        let input = input
            .transform_up(|node| {
                if let Some(stage) = node.downcast_ref::<EventTimeExec>() {
                    let input = Arc::clone(stage.children()[0]);
                    let stage = stage.stage().counting_into(Arc::clone(&counters));
                    return Ok(Transformed::yes(
                        Arc::new(EventTimeExec::new(input, Arc::new(stage))?) as _,
                    ));
                }
                let Some(config) = node
                    .downcast_ref::<DataSourceExec>()
                    .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
                else {
                    return Ok(Transformed::no(node));
                };
                let Some(source) = config.file_source.downcast_ref::<LinesSource>() else {
                    return Ok(Transformed::no(node));
                };
                let mut config = config.clone();
                config.file_source = Arc::new(source.counting_into(Arc::clone(&counters)));
                Ok(Transformed::yes(
                    DataSourceExec::from_data_source(config) as _
                ))
            })?
            .data;
        Ok(Self::with_sources(input, counters, Arc::new(sources)))
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

/// `schema`, every column nullable (report rows are NULL in them), and the report column.
fn report_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(REPORT_COLUMN, DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

impl DisplayAs for ReportExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ReportExec")
    }
}

impl ExecutionPlan for ReportExec {
    fn name(&self) -> &str {
        "ReportExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| internal_datafusion_err!("ReportExec needs its input"))?;
        Ok(Arc::new(Self::with_sources(
            input,
            Arc::clone(&self.counters),
            Arc::clone(&self.sources),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(self.properties.eq_properties.schema());
        let rows = self.input.execute(partition, context)?;
        let with_column = Arc::clone(&schema);
        let rows = rows.map(move |batch| {
            let batch = batch?;
            let mut columns = batch.columns().to_vec();
            columns.push(new_null_array(&DataType::Binary, batch.num_rows()));
            Ok(RecordBatch::try_new(Arc::clone(&with_column), columns)?)
        });
        let counters = Arc::clone(&self.counters);
        let report_schema = Arc::clone(&schema);
        let report = futures::stream::once(async move {
            let report = serde_json::to_vec(&Report::take(&counters))
                .map_err(|e| internal_datafusion_err!("writing a trigger report: {e}"))?;
            let fields = report_schema.fields();
            let mut columns: Vec<Arc<dyn Array>> = fields[..fields.len() - 1]
                .iter()
                .map(|f| new_null_array(f.data_type(), 1))
                .collect();
            columns.push(Arc::new(BinaryArray::from_vec(vec![report.as_slice()])));
            Ok(RecordBatch::try_new(report_schema, columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            rows.chain(report),
        )))
    }
}

/// A shipped plan's output without its reports, as `schema` (the plan's own): the reports
/// are added into `counters`. Returns the rows and the greatest event time reported.
pub fn split_reports(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    counters: &TextCounters,
) -> Result<(Vec<RecordBatch>, Option<i64>)> {
    let mut rows = Vec::with_capacity(batches.len());
    let mut max_event_time: Option<i64> = None;
    for batch in batches {
        let last = batch.num_columns() - 1;
        let reports = batch.column(last).as_binary_opt::<i32>().ok_or_else(|| {
            internal_datafusion_err!("a shipped plan's output without its reports")
        })?;
        for report in reports.iter().flatten() {
            let report: Report = serde_json::from_slice(report)
                .map_err(|e| internal_datafusion_err!("reading a trigger report: {e}"))?;
            if let Some(max) = report.add_to(counters) {
                max_event_time = Some(max_event_time.map_or(max, |m| m.max(max)));
            }
        }
        let data = datafusion::arrow::compute::is_null(reports)?;
        let batch = filter_record_batch(&batch, &data)?;
        if batch.num_rows() > 0 {
            let mut columns = batch.columns().to_vec();
            columns.pop();
            rows.push(RecordBatch::try_new(Arc::clone(schema), columns)?);
        }
    }
    Ok((rows, max_event_time))
}
