//! The streaming query: the user's SQL over `lines`, planned once, run once per trigger.
//!
//! [`StreamingQuery::plan`] checks at start that the query can run as a stream in the chosen
//! output mode (refusing, like Spark's analysis errors, what it cannot maintain), then splits
//! an aggregation into the part below the GROUP BY (run over each trigger's rows) and the part
//! above it (run over the merged groups); see [`incremental`]. A query without aggregation is
//! stateless: its whole plan runs over each trigger's rows.

pub mod changes;
pub mod clock;
pub mod codec;
pub mod engine;
pub mod functions;
pub mod incremental;
pub mod lines;
pub mod panes;
pub mod plan;
pub mod rewrite;
pub mod scan;
pub mod session;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use datafusion::physical_plan::{ExecutionPlan, collect, execution_plan::reset_plan_states};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Context, Error, Result};
use crate::state::groups::GroupState;
use incremental::IncrementalAggregate;
use lines::{LinesTable, TriggerSlot};
use plan::{Params, QueryFile};

/// Which rows each trigger emits (Spark's output modes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// The whole result table, every trigger.
    Complete,
    /// Only the result rows that changed in this trigger.
    Update,
    /// Only rows that will never change (queries without aggregation).
    Append,
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputMode::Complete => "complete",
            OutputMode::Update => "update",
            OutputMode::Append => "append",
        })
    }
}

/// How the query is executed per trigger.
enum Shape {
    Stateless(Arc<dyn ExecutionPlan>),
    Aggregate(Box<IncrementalAggregate>),
}

/// What one trigger produced.
#[derive(Debug, Default)]
pub struct TriggerOutput {
    /// The rows to emit in the query's output mode.
    pub rows: Vec<RecordBatch>,
    /// The state rows this trigger wrote (merged groups): the checkpoint delta.
    pub state_delta: Option<RecordBatch>,
    /// Groups that left the state (windows the watermark closed).
    pub removed_groups: u64,
    pub timings: TriggerTimings,
}

/// Where a trigger's query time went.
#[derive(Debug, Default, Clone, Copy)]
pub struct TriggerTimings {
    /// Reading the trigger's files and running the query below the GROUP BY (the whole query
    /// when it has no aggregation). Reading overlaps it; see `TextCounters::read_nanos`.
    pub aggregate: std::time::Duration,
    /// Merging the trigger's groups into the state.
    pub merge: std::time::Duration,
    /// Finishing the changed (or all) groups and the plan above the GROUP BY.
    pub emit: std::time::Duration,
}

/// The planned query; see the module docs.
pub struct StreamingQuery {
    ctx: SessionContext,
    slot: TriggerSlot,
    shape: Shape,
    mode: OutputMode,
    /// The result table's columns (complete mode's rows).
    result_schema: SchemaRef,
    /// The rows each trigger emits: the result's, or in a changelog with the operation first.
    output_schema: SchemaRef,
    /// The result columns that identify a row (the GROUP BY key as it reaches the output).
    output_key: Option<Vec<usize>>,
    /// Update mode's output is a changelog (see [`changes`]).
    changelog: bool,
    /// Where the trigger plan runs.
    engine: engine::Engine,
}

/// Everything needed to plan a query.
pub struct QuerySpec<'a> {
    pub file: &'a QueryFile,
    pub params: &'a Params,
    /// `None`: complete for aggregations, append otherwise.
    pub mode: Option<OutputMode>,
    pub partitions: usize,
    /// `--event-time`: a SQL expression over `lines` whose value becomes `ts`.
    pub event_time: Option<&'a str>,
    /// `--watermark`: how far behind the largest `ts` seen rows may still arrive.
    pub watermark: Option<std::time::Duration>,
}

impl StreamingQuery {
    /// Plans the query and checks that it can run as a stream in the requested mode.
    pub async fn plan(spec: QuerySpec<'_>, slot: TriggerSlot) -> Result<Self> {
        let ctx = session(spec.partitions);
        clock::register(&ctx, slot.clock());
        let name = slot.format().spec.name.clone();
        ctx.register_table(
            name.as_str(),
            Arc::new(LinesTable::new(slot.clone(), spec.partitions)),
        )
        .context(|| format!("registering the stream table {name}"))?;
        for (table, provider) in slot.tables() {
            if *table == name {
                return Err(Error::Usage(format!(
                    "--table {table}: that is the stream table's name (see --name)"
                )));
            }
            ctx.register_table(table.as_str(), Arc::clone(provider))
                .context(|| format!("registering --table {table}"))?;
        }
        if let Some(text) = spec.event_time {
            slot.set_event_time(event_time(&ctx, text, slot.format())?);
        }
        if let Some(delay) = spec.watermark {
            slot.set_watermark_delay(delay.as_micros() as i64);
        }
        let logical = plan::logical_plan(&ctx, spec.file, spec.params).await?;
        let optimized = ctx
            .state()
            .optimize(&logical)
            .map_err(|e| plan::sql_error(spec.file, e))?;
        let unsupported = |reason: String| Error::Unsupported {
            path: spec.file.path.clone(),
            reason,
        };
        let analysis = analyze(&optimized, &name).map_err(unsupported)?;
        if analysis.window_in_grouping_set && spec.watermark.is_some() {
            return Err(unsupported(
                "cannot run this query with --watermark: its window key is inside ROLLUP, CUBE \
                 or GROUPING SETS, whose subtotal rows have no window, so closed windows could \
                 not leave the state or be emitted once. Group by plain keys (compute the \
                 subtotals from the output with `dfstream sql`), or run without --watermark \
                 in complete mode"
                    .to_string(),
            ));
        }
        if analysis.aggregates > 0
            && let Some(name) = volatile_function(&optimized)
        {
            log::warn!(
                "{}: {name}() gives another value each time it runs, so a batch re-run after a \
                 crash can merge other values into the state than its first run showed",
                spec.file.path.display()
            );
        }
        let mode =
            choose_mode(spec.mode, &analysis, spec.watermark.is_some()).map_err(unsupported)?;
        let physical = ctx
            .state()
            .create_physical_plan(&optimized)
            .await
            .map_err(|e| plan::sql_error(spec.file, e))?;
        log::debug!(
            "physical plan:\n{}",
            datafusion::physical_plan::displayable(physical.as_ref()).indent(true)
        );
        let result_schema = physical.schema();
        let result_key = output_key(&optimized);
        let changelog = mode == OutputMode::Update
            && analysis.aggregates > 0
            && filter_above_aggregate(&optimized);
        // The rows a changelog tells apart: by the result's key; one row without GROUP BY.
        let changelog_key = match grouping(&optimized) {
            Some(Grouping::Global) => Some(Vec::new()),
            _ => result_key.clone(),
        };
        let (output_schema, output_key) = if changelog {
            check_changelog(
                &analysis,
                &optimized,
                &result_schema,
                changelog_key.as_deref(),
            )
            .map_err(unsupported)?;
            let shifted = result_key
                .as_ref()
                .map(|k| k.iter().map(|i| i + 1).collect());
            (changes::with_op_column(&result_schema), shifted)
        } else {
            (Arc::clone(&result_schema), result_key.clone())
        };
        let shape = if analysis.aggregates == 0 {
            Shape::Stateless(physical)
        } else {
            let mut aggregate = IncrementalAggregate::split(physical, analysis.window)?;
            if aggregate.per_pane() {
                log::debug!("sliding windows: each trigger's rows are aggregated per pane");
            }
            if spec.watermark.is_some() && mode != OutputMode::Complete {
                aggregate.evict_closed_windows(analysis.window);
            }
            if let (true, Some(key)) = (changelog, changelog_key) {
                aggregate.emit_changes(key, Arc::clone(&output_schema));
            }
            Shape::Aggregate(Box::new(aggregate))
        };
        Ok(Self {
            ctx,
            slot,
            shape,
            mode,
            result_schema,
            output_schema,
            output_key,
            changelog,
            engine: engine::Engine::default(),
        })
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// The columns of the rows each trigger emits.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// The columns of the result table ([`Self::current_result`]); the output's, less the
    /// operation column of a changelog.
    pub fn result_schema(&self) -> &SchemaRef {
        &self.result_schema
    }

    /// The result columns whose values identify a row, as an upserting sink keys them: the
    /// GROUP BY columns the SELECT list keeps (a window's start, a word). `None` when the
    /// result has no such key (no GROUP BY, or a key column left out of the SELECT list).
    pub fn output_key(&self) -> Option<&[usize]> {
        self.output_key.as_deref()
    }

    /// Whether each output row starts with the operation column of update mode's changelog
    /// (see [`changes`]).
    pub fn emits_changes(&self) -> bool {
        self.changelog
    }

    /// The slot the app fills with each trigger's files.
    /// The plan a trigger runs over its input units (bound by [`scan::bind`]): the whole query
    /// when it keeps no state, else the `Partial` aggregation below the GROUP BY. This is the
    /// part of a trigger that [`codec::PlanCodec`] can ship to another process.
    pub fn trigger_plan(&self) -> Arc<dyn ExecutionPlan> {
        match &self.shape {
            Shape::Stateless(plan) => Arc::clone(plan),
            Shape::Aggregate(agg) => agg.partial_plan(),
        }
    }

    /// Runs the trigger plan on `engine` from now on, if it can run there.
    pub fn use_engine(&mut self, engine: engine::Engine) -> Result<()> {
        engine.check(&self.trigger_plan())?;
        self.engine = engine;
        Ok(())
    }

    pub fn engine(&self) -> &engine::Engine {
        &self.engine
    }

    pub fn slot(&self) -> &TriggerSlot {
        &self.slot
    }

    /// How the query runs as a stream, for `dfstream explain`.
    pub fn explain(&self) -> String {
        let mut text = format!("output mode    {}\n", self.mode);
        let columns: Vec<String> = self
            .output_schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        text.push_str(&format!("output         {}\n", columns.join(", ")));
        if self.changelog {
            text.push_str(&format!(
                "changelog      {}: upsert, or delete (with the row's earlier values) for a \
                 row whose key left the result (a HAVING or filter above the GROUP BY)\n",
                changes::OP_COLUMN
            ));
        }
        match &self.shape {
            Shape::Stateless(plan) => {
                text.push_str(
                    "state          none: each trigger's rows are selected on their own, and \
                     every row is emitted once\nplan per trigger:\n",
                );
                text.push_str(
                    &datafusion::physical_plan::displayable(plan.as_ref())
                        .indent(true)
                        .to_string(),
                );
            }
            Shape::Aggregate(agg) => text.push_str(&agg.explain()),
        }
        text
    }

    /// Whether sliding-window rows are aggregated per pane rather than per window.
    pub fn aggregates_per_pane(&self) -> bool {
        matches!(&self.shape, Shape::Aggregate(agg) if agg.per_pane())
    }

    /// The GROUP BY state, for aggregations.
    pub fn state(&self) -> Option<&GroupState> {
        match &self.shape {
            Shape::Aggregate(agg) => Some(agg.state()),
            Shape::Stateless(_) => None,
        }
    }

    /// The schema of state rows and a fresh empty state, for aggregations.
    pub fn state_schema(&self) -> Option<SchemaRef> {
        self.state().map(|s| Arc::clone(s.schema()))
    }

    /// Adds stored state rows (a snapshot or a delta, in commit order) during recovery.
    pub fn restore_state(&mut self, rows: RecordBatch) -> Result<()> {
        match &mut self.shape {
            Shape::Aggregate(agg) => agg.restore(rows),
            Shape::Stateless(_) => Ok(()),
        }
    }

    /// Runs one trigger over the files already put into [`Self::slot`].
    pub async fn run_trigger(&mut self) -> Result<TriggerOutput> {
        let task = self.ctx.task_ctx();
        match &mut self.shape {
            Shape::Stateless(plan) => {
                let started = std::time::Instant::now();
                let rows = self.engine.run(Arc::clone(plan), task, &self.slot).await?;
                self.slot.advance_watermark();
                Ok(TriggerOutput {
                    rows,
                    state_delta: None,
                    removed_groups: 0,
                    timings: TriggerTimings {
                        aggregate: started.elapsed(),
                        ..Default::default()
                    },
                })
            }
            Shape::Aggregate(agg) => {
                agg.run_trigger(self.mode, task, &self.slot, &self.engine)
                    .await
            }
        }
    }

    /// Drops the windows the (restored) watermark has closed: they were emitted before.
    pub fn forget_closed_windows(&mut self) -> Result<()> {
        match (&mut self.shape, self.slot.watermark()) {
            (Shape::Aggregate(agg), Some(watermark)) => agg.evict_closed(watermark).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The result rows of the groups in `rows` (stored state rows, such as a batch's delta).
    pub async fn finalize(&self, rows: RecordBatch) -> Result<Vec<RecordBatch>> {
        match &self.shape {
            Shape::Aggregate(agg) => agg.finalize(rows, self.ctx.task_ctx()).await,
            Shape::Stateless(_) => Ok(Vec::new()),
        }
    }

    /// The full result table from the current state (complete mode's output).
    pub async fn current_result(&self) -> Result<Vec<RecordBatch>> {
        match &self.shape {
            Shape::Aggregate(agg) => agg.complete_result(self.ctx.task_ctx()).await,
            Shape::Stateless(_) => Ok(Vec::new()),
        }
    }
}

/// Compiles an `--event-time` expression over the `lines` columns.
pub fn event_time(
    ctx: &SessionContext,
    text: &str,
    format: &crate::format::StreamFormat,
) -> Result<lines::EventTime> {
    let bad = |e: &dyn std::fmt::Display| Error::Usage(format!("--event-time {text:?}: {e}"));
    let schema = Arc::clone(&format.table_schema);
    let df_schema =
        datafusion::common::DFSchema::try_from(schema.as_ref().clone()).map_err(|e| bad(&e))?;
    let expr = ctx.parse_sql_expr(text, &df_schema).map_err(|e| bad(&e))?;
    let expr = ctx
        .create_physical_expr(expr, &df_schema)
        .map_err(|e| bad(&e))?;
    let data_type = expr.data_type(&schema).map_err(|e| bad(&e))?;
    if !matches!(
        data_type,
        datafusion::arrow::datatypes::DataType::Timestamp(..)
            | datafusion::arrow::datatypes::DataType::Utf8
            | datafusion::arrow::datatypes::DataType::Utf8View
            | datafusion::arrow::datatypes::DataType::LargeUtf8
    ) {
        return Err(bad(&format!(
            "gives {data_type}, not a timestamp; e.g. to_timestamp(split_part(value, ' ', 1))"
        )));
    }
    Ok(lines::EventTime {
        text: text.to_string(),
        expr,
        columns: lines::TableColumns::of(format),
    })
}

/// A DataFusion session set up for per-trigger execution of one plan.
pub fn session(partitions: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        // Point errors at the SQL.
        .set_bool("datafusion.sql_parser.collect_spans", true)
        // Dynamic filters make a plan unsafe to execute more than once.
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
        // A static table up to this size in memory is a join's build side, collected once and probed
        // by each partition of the stream, rather than both sides repartitioned by key every
        // trigger; on a cluster it travels in the plan (see `codec::SHIPPED_TABLE_LIMIT`).
        .set_u64(
            "datafusion.optimizer.hash_join_single_partition_threshold",
            codec::SHIPPED_TABLE_LIMIT as u64,
        );
    let ctx = SessionContext::new_with_config(config);
    // It rewrites count(DISTINCT x) into an aggregate over an aggregate, which cannot be merged
    // across triggers; the plain form keeps a mergeable distinct set per group.
    ctx.remove_optimizer_rule("single_distinct_aggregation_to_group_by");
    ctx.add_optimizer_rule(Arc::new(rewrite::UtcIntervalAsDuration));
    functions::register(&ctx);
    ctx
}

/// Runs a plan that scans `lines` over a trigger's `units` (see [`scan::bind`]) and collects
/// its output.
pub async fn execute_over(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    units: &[crate::source::InputUnit],
) -> Result<Vec<RecordBatch>> {
    let plan = scan::bind(plan, units).context(|| "preparing the plan".into())?;
    collect(plan, task)
        .await
        .context(|| "running the query".into())
}

/// Runs a plan (after resetting any per-execution state) and collects its output.
pub async fn execute(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
) -> Result<Vec<RecordBatch>> {
    let plan = reset_plan_states(plan).context(|| "preparing the plan".into())?;
    collect(plan, task)
        .await
        .context(|| "running the query".into())
}

/// What the streaming checks need to know about a logical plan.
#[derive(Debug, Default)]
struct Analysis {
    aggregates: usize,
    /// Sort or limit above the aggregation (or anywhere, without one).
    sort_or_limit: bool,
    /// A window function (OVER) above the aggregation.
    window_above_aggregate: bool,
    /// The GROUP BY key holding a row's window (made by tumble(), hop() or session()).
    window: Option<incremental::WindowKey>,
    /// A window key inside ROLLUP, CUBE or GROUPING SETS, where closed windows cannot be told.
    window_in_grouping_set: bool,
}

/// The name of a volatile function (`random()`, `uuid()`) the plan calls, if any.
fn volatile_function(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        found = volatile_call(node, false);
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The name of a volatile function `node`'s expressions call (the trigger-time functions
/// counted only with `trigger_time`: they are the same for a whole batch and its replay).
fn volatile_call(node: &LogicalPlan, trigger_time: bool) -> Option<String> {
    let mut found = None;
    let _ = node.apply_expressions(|expr| {
        expr.apply(|e| {
            if let Expr::ScalarFunction(f) = e
                && f.func.signature().volatility == datafusion::logical_expr::Volatility::Volatile
                && (trigger_time || !clock::is_trigger_time(&f.func))
            {
                found = Some(f.name().to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}

/// The first aggregation reached from the root through nodes of one input, and those nodes
/// (root first): the part of the plan re-run over the merged groups. `None` when a node with
/// another number of inputs comes first, or there is no aggregation.
fn above_aggregate(plan: &LogicalPlan) -> Option<(Vec<&LogicalPlan>, &Aggregate)> {
    let mut above = Vec::new();
    let mut node = plan;
    loop {
        if let LogicalPlan::Aggregate(aggregate) = node {
            return Some((above, aggregate));
        }
        let [input] = node.inputs()[..] else {
            return None;
        };
        above.push(node);
        node = input;
    }
}

/// Whether a filter (HAVING, or a WHERE over a GROUP BY subquery) sits between the result and
/// the aggregation, so that a group's row can leave the result when its values change.
fn filter_above_aggregate(plan: &LogicalPlan) -> bool {
    above_aggregate(plan).is_some_and(|(above, _)| {
        above
            .iter()
            .any(|node| matches!(node, LogicalPlan::Filter(_)))
    })
}

/// How the stream's GROUP BY groups rows, for a changelog's key.
enum Grouping {
    /// No GROUP BY: one row.
    Global,
    /// ROLLUP, CUBE or GROUPING SETS.
    Sets,
    Plain,
}

/// The grouping of the aggregation below the result's nodes (see [`above_aggregate`]).
fn grouping(plan: &LogicalPlan) -> Option<Grouping> {
    let (_, aggregate) = above_aggregate(plan)?;
    Some(if aggregate.group_expr.is_empty() {
        Grouping::Global
    } else if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        Grouping::Sets
    } else {
        Grouping::Plain
    })
}

/// The name of a function above the aggregation whose value does not follow from a group's
/// input (`now()`, `random()`), if any.
fn volatile_above_aggregate(plan: &LogicalPlan) -> Option<String> {
    let (above, _) = above_aggregate(plan)?;
    above.iter().find_map(|node| volatile_call(node, true))
}

/// Why update mode cannot tell rows that leave this query's result, if it cannot.
fn check_changelog(
    analysis: &Analysis,
    plan: &LogicalPlan,
    result: &SchemaRef,
    key: Option<&[usize]>,
) -> std::result::Result<(), String> {
    if let Some(function) = volatile_above_aggregate(plan) {
        return Err(format!(
            "cannot run this query in --mode update: its result can lose rows (a HAVING or a \
             filter above the GROUP BY), and {function}() above the GROUP BY makes a row's \
             place in the result change with time, not only with its group's input, so \
             update mode cannot tell when it leaves. Use --mode complete, or move \
             {function}() below the GROUP BY"
        ));
    }
    let reason = if matches!(
        analysis.window,
        Some(incremental::WindowKey {
            kind: incremental::WindowKind::Session,
            ..
        })
    ) {
        "a HAVING or a filter above a GROUP BY session(): a session's key changes as it \
         grows, so update mode cannot tell which earlier rows left the result. Filter in \
         --mode complete, or in --mode append with a --watermark (each session once, final)"
    } else if matches!(grouping(plan), Some(Grouping::Sets)) {
        "a HAVING or a filter above ROLLUP, CUBE or GROUPING SETS: DataFusion gives their \
         rows no key that update mode could delete them by. Use --mode complete"
    } else if key.is_none() {
        "its result can lose rows (a HAVING or a filter above the GROUP BY), and update mode \
         tells such rows by their GROUP BY key, which this SELECT list leaves out. Keep the \
         GROUP BY columns in the SELECT list, or use --mode complete"
    } else if result.column_with_name(changes::OP_COLUMN).is_some() {
        "its result has a column named _op, the name of update mode's operation column \
         (upsert or delete) for a query whose rows can leave the result: rename it"
    } else {
        return Ok(());
    };
    Err(format!("cannot run this query in --mode update: {reason}"))
}

/// The smallest set of result columns that determines every other and occurs once per row,
/// from the functional dependencies DataFusion derives through GROUP BY and projections.
/// Only plans whose nodes above the GROUP BY keep one row per group are trusted (DataFusion
/// carries the dependencies through an UNNEST unchanged, though it multiplies rows).
fn output_key(plan: &LogicalPlan) -> Option<Vec<usize>> {
    let (above, _) = above_aggregate(plan)?;
    let one_row_per_group = above.iter().all(|node| {
        matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
        )
    });
    if !one_row_per_group {
        return None;
    }
    let schema = plan.schema();
    let width = schema.fields().len();
    schema
        .functional_dependencies()
        .iter()
        .filter(|d| {
            d.mode == datafusion::common::Dependency::Single
                && !d.source_indices.is_empty()
                && (0..width)
                    .all(|i| d.target_indices.contains(&i) || d.source_indices.contains(&i))
        })
        .map(|d| {
            let mut key = d.source_indices.clone();
            key.sort_unstable();
            key
        })
        .min_by_key(|key| key.len())
}

/// Walks the optimized plan from the root and refuses what cannot be maintained incrementally.
fn analyze(plan: &LogicalPlan, stream: &str) -> std::result::Result<Analysis, String> {
    let mut analysis = Analysis::default();
    let mut problem = None;
    let mut reads_lines = false;
    plan.apply_with_subqueries(|node| {
        let below_aggregate = analysis.aggregates > 0;
        if let Some(p) = subquery_problem(node, stream, below_aggregate) {
            problem = Some(p);
            return Ok(TreeNodeRecursion::Stop);
        }
        match node {
            LogicalPlan::TableScan(scan) if scan.table_name.table() == stream => {
                reads_lines = true;
            }
            // An aggregation of static tables alone (a subquery, a side of a join): the same
            // in every trigger, not state.
            LogicalPlan::Aggregate(aggregate) if !reads_table(&aggregate.input, stream) => {}
            LogicalPlan::Aggregate(_) if below_aggregate => {
                problem = Some(
                    "the query aggregates the result of another aggregation (for example an \
                     aggregate over a GROUP BY subquery, or DISTINCT over a GROUP BY); dfstream \
                     maintains one level of GROUP BY per query. Move the inner aggregation into \
                     the outer one, or run the outer step over the output with `dfstream sql`."
                        .to_string(),
                );
                return Ok(TreeNodeRecursion::Stop);
            }
            LogicalPlan::Aggregate(_) => analysis.aggregates += 1,
            LogicalPlan::Join(join)
                if !below_aggregate
                    && stream_aggregate_below(node, stream)
                    && !(reads_table(&join.left, stream) && reads_table(&join.right, stream)) =>
            {
                problem = Some(
                    "a join above the GROUP BY: dfstream keeps the aggregation's result as its \
                     state and joins only the stream's rows below it. Join below the GROUP BY \
                     (the static table's columns can be grouped by), or join the output with \
                     `dfstream sql`"
                        .to_string(),
                );
                return Ok(TreeNodeRecursion::Stop);
            }
            LogicalPlan::Join(join) => {
                let sides = (
                    reads_table(&join.left, stream),
                    reads_table(&join.right, stream),
                );
                if let Some(p) = join_problem(join.join_type, sides, stream) {
                    problem = Some(p);
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            LogicalPlan::Window(_) if below_aggregate || !stream_aggregate_below(node, stream) => {
                problem = Some(
                    "window functions (OVER) over the stream's rows need every earlier row; \
                     use them only on top of a GROUP BY (in complete mode)"
                        .to_string(),
                );
                return Ok(TreeNodeRecursion::Stop);
            }
            LogicalPlan::Window(_) => analysis.window_above_aggregate = true,
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) if below_aggregate => {
                problem = Some(
                    "ORDER BY or LIMIT below the aggregation depends on all the stream's rows; \
                     apply them to the aggregated result instead"
                        .to_string(),
                );
                return Ok(TreeNodeRecursion::Stop);
            }
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => analysis.sort_or_limit = true,
            LogicalPlan::Union(_) if !below_aggregate && stream_aggregate_below(node, stream) => {
                problem = Some(
                    "UNION with an aggregation in one of its parts: dfstream maintains one \
                     GROUP BY whose result is the query's result. Run the aggregation as its \
                     own query (a second job, or `dfstream sql` over its output), or put the \
                     UNION below the GROUP BY (aggregate over `(SELECT ... UNION ALL \
                     SELECT ...)`)"
                        .to_string(),
                );
                return Ok(TreeNodeRecursion::Stop);
            }
            LogicalPlan::Union(union) if union.inputs.iter().any(|i| !reads_table(i, stream)) => {
                problem = Some(format!(
                    "a part of the UNION reads no rows of `{stream}` (a VALUES list, a static \
                     table): it would give its rows again in every trigger. Keep such rows out \
                     of the streaming query (join a static table instead, or add them when \
                     reading the output)"
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
            LogicalPlan::RecursiveQuery(_) => {
                problem = Some("recursive queries cannot run over a stream".to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| e.to_string())?;
    if problem.is_none() && !reads_lines {
        problem = Some(format!(
            "it never reads the stream's table `{stream}`, so every trigger would give the same \
             rows (and a query such as generate_series(1, 1e11) would never end); read FROM \
             {stream}, or run a one-off query with `dfstream sql`"
        ));
    }
    if let Some(p) = problem {
        return Err(format!("cannot run this query as a stream: {p}"));
    }
    analysis.window = window_key(plan).map_err(|e| format!("cannot run this query: {e}"))?;
    analysis.window_in_grouping_set = window_in_grouping_set(plan);
    Ok(analysis)
}

/// Why a subquery in `node`'s expressions (a scalar subquery, IN or EXISTS that the optimizer
/// left as one) cannot run per trigger, if it cannot: one over the stream compares each row
/// with the stream's other rows; one above the GROUP BY would need a plan of its own beside
/// the merged groups.
fn subquery_problem(node: &LogicalPlan, stream: &str, below_aggregate: bool) -> Option<String> {
    let mut problem = None;
    let _ = node.apply_expressions(|expr| {
        expr.apply(|e| {
            let subquery = match e {
                Expr::ScalarSubquery(s) => s,
                Expr::Exists(exists) => &exists.subquery,
                Expr::InSubquery(in_subquery) => &in_subquery.subquery,
                _ => return Ok(TreeNodeRecursion::Continue),
            };
            let is_test = !matches!(e, Expr::ScalarSubquery(_));
            if is_test && !matches!(node, LogicalPlan::Filter(_)) {
                problem = Some(
                    "IN (subquery) and EXISTS as a value (in the SELECT list, not in WHERE): \
                     DataFusion runs them only as filters. LEFT JOIN the table and test its \
                     column for NULL instead"
                        .to_string(),
                );
            } else if reads_table(&subquery.subquery, stream) {
                problem = Some(format!(
                    "a subquery over `{stream}` (such as WHERE x > (SELECT avg(x) FROM \
                     {stream})) compares each row with the stream's other rows, which dfstream \
                     does not keep across triggers. Run the aggregate as its own query and \
                     pass its value as a --param, or compare with a static table (--table)"
                ));
            } else if !below_aggregate && stream_aggregate_below(node, stream) {
                problem = Some(
                    "a subquery above the GROUP BY (in HAVING, or in the SELECT list over the \
                     groups): dfstream re-runs the plan above the GROUP BY over the merged \
                     groups only. Compare with a literal or a --param, or join the static \
                     table below the GROUP BY"
                        .to_string(),
                );
            }
            Ok(if problem.is_some() {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    });
    problem
}

/// Whether the first GROUP BY has ROLLUP, CUBE or GROUPING SETS over a window key.
fn window_in_grouping_set(plan: &LogicalPlan) -> bool {
    use datafusion::logical_expr::ExprSchemable;
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node {
            let input = aggregate.input.schema();
            found = aggregate.group_expr.iter().any(|e| match e {
                Expr::GroupingSet(set) => set.distinct_expr().iter().any(|key| {
                    window_size_of(&aggregate.input, key, false).is_some()
                        || key
                            .get_type(input)
                            .is_ok_and(|t| functions::is_session_type(&t))
                }),
                _ => false,
            });
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Finds the GROUP BY key that holds a row's window: the `{start, end}` made by session(), or
/// a window start made by tumble() or an unnested hop() (followed through projections,
/// aliases and filters, whatever its name), with the windows' size.
fn window_key(plan: &LogicalPlan) -> std::result::Result<Option<incremental::WindowKey>, String> {
    use datafusion::logical_expr::ExprSchemable;
    use incremental::{WindowKey, WindowKind};
    let mut fixed = None;
    let mut session = None;
    let mut calls_session = false;
    let mut seen_aggregate = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node
            && !seen_aggregate
        {
            seen_aggregate = true;
            let input = aggregate.input.schema();
            session = aggregate.group_expr.iter().position(|e| {
                e.get_type(input)
                    .is_ok_and(|t| functions::is_session_type(&t))
            });
            fixed = aggregate
                .group_expr
                .iter()
                .enumerate()
                .find_map(|(i, e)| Some((i, window_size_of(&aggregate.input, e, false)?)));
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                calls_session |= matches!(e, Expr::ScalarFunction(f) if f.name() == "session");
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    if let Some(index) = session {
        return Ok(Some(WindowKey {
            index,
            kind: WindowKind::Session,
        }));
    }
    if calls_session {
        return Err(
            "session(ts, gap) is the session a lone row would open; rows join into \
                    sessions only when the query groups by it: GROUP BY session(ts, $gap) and \
                    any other keys (see sql/session_wordcount.sql)"
                .to_string(),
        );
    }
    Ok(fixed.map(|(index, size_micros)| WindowKey {
        index,
        kind: WindowKind::Fixed { size_micros },
    }))
}

/// The window size, if `expr` (over `input`'s columns) is a window start: tumble(ts, size), or
/// an element of hop(ts, size, slide) that an unnest took out (`unnested`).
fn window_size_of(input: &LogicalPlan, expr: &Expr, unnested: bool) -> Option<i64> {
    match expr {
        Expr::Alias(alias) => window_size_of(input, &alias.expr, unnested),
        Expr::ScalarFunction(f) => {
            let windowed = matches!((f.name(), unnested), ("tumble", false) | ("hop", true));
            match f.args.get(1) {
                Some(Expr::Literal(size, _)) if windowed => {
                    functions::window_size(f.name(), size).ok()
                }
                _ => None,
            }
        }
        Expr::Column(column) => {
            let index = input.schema().index_of_column(column).ok()?;
            let from_input = |plan: &LogicalPlan, index: usize, unnested: bool| {
                let (qualifier, field) = plan.schema().qualified_field(index);
                let column = datafusion::common::Column::from((qualifier, field));
                window_size_of(plan, &Expr::Column(column), unnested)
            };
            match input {
                LogicalPlan::Projection(p) => {
                    window_size_of(&p.input, p.expr.get(index)?, unnested)
                }
                LogicalPlan::Unnest(u) if !unnested => {
                    let source = *u.dependency_indices.get(index)?;
                    let is_list = u.list_type_columns.iter().any(|(i, _)| *i == source);
                    from_input(&u.input, source, is_list)
                }
                LogicalPlan::Filter(f) => from_input(&f.input, index, unnested),
                LogicalPlan::SubqueryAlias(a) => from_input(&a.input, index, unnested),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether the query groups rows into session windows (which plain DataFusion cannot run).
pub fn groups_by_session(plan: &LogicalPlan) -> bool {
    matches!(
        window_key(plan),
        Ok(Some(incremental::WindowKey {
            kind: incremental::WindowKind::Session,
            ..
        })) | Err(_)
    )
}

/// Whether an aggregation over rows of the stream `stream` is below `node`.
fn stream_aggregate_below(node: &LogicalPlan, stream: &str) -> bool {
    node.exists(|n| Ok(matches!(n, LogicalPlan::Aggregate(a) if reads_table(&a.input, stream))))
        .unwrap_or(false)
}

/// Whether `plan` (subqueries included) scans the table `name`.
fn reads_table(plan: &LogicalPlan, name: &str) -> bool {
    let mut reads = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == name
        {
            reads = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    reads
}

/// Why a join whose sides read the stream as `sides` (left, right) says cannot run per
/// trigger, if it cannot. A join of the stream's rows with a static table gives each stream
/// row its answer in the trigger that reads it; what needs rows of other triggers (the
/// stream on both sides, or a static row's answer depending on all stream rows) cannot.
fn join_problem(
    join_type: datafusion::common::JoinType,
    sides: (bool, bool),
    stream: &str,
) -> Option<String> {
    use datafusion::common::JoinType::*;
    let stream_on_left = match sides {
        (true, true) => {
            return Some(format!(
                "it joins `{stream}` with itself (or two streams): that needs the rows of both \
                 sides across triggers, which dfstream does not keep. Join the stream with a \
                 static table (--table NAME=FILE) instead"
            ));
        }
        (false, false) => return None, // static tables among themselves
        (left, _) => left,
    };
    let keeps_static_rows = match join_type {
        Inner => false,
        Left | LeftSemi | LeftAnti | LeftMark => !stream_on_left,
        Right | RightSemi | RightAnti | RightMark => stream_on_left,
        Full => true,
    };
    keeps_static_rows.then(|| {
        format!(
            "its {join_type} join answers for the static table's rows by whether any row of \
             `{stream}` matches them, which changes with every trigger. Join so that each \
             stream row finds its static rows: `{stream}` JOIN / LEFT JOIN table, or IN / NOT \
             IN (SELECT ... FROM table)"
        )
    })
}

/// Picks the output mode, or explains why the requested one cannot work for this query.
fn choose_mode(
    requested: Option<OutputMode>,
    analysis: &Analysis,
    watermark: bool,
) -> std::result::Result<OutputMode, String> {
    let aggregating = analysis.aggregates > 0;
    let mode = requested.unwrap_or(if aggregating {
        OutputMode::Complete
    } else {
        OutputMode::Append
    });
    match (mode, aggregating) {
        (OutputMode::Append, true) if !watermark => Err(
            "--mode append emits only rows that will never change, and a running aggregation \
             changes its rows on every trigger: add a --watermark DURATION (and GROUP BY a \
             window made by tumble(), hop() or session()) so that each window is emitted once, \
             when the watermark passes its end; or use --mode complete (the whole table each \
             trigger) or --mode update (the changed rows)."
                .to_string(),
        ),
        (OutputMode::Append, true) if analysis.window.is_none() => Err(
            "--mode append for an aggregation emits each window once, when the watermark passes \
             its end: GROUP BY a window made by tumble(ts, size), an unnested \
             hop(ts, size, slide) or session(ts, gap) (see sql/tumbling_wordcount.sql)"
                .to_string(),
        ),
        (OutputMode::Complete, false) => Err(
            "--mode complete needs an aggregation (GROUP BY or an aggregate function): without \
             one the result is every row ever seen. Use --mode append."
                .to_string(),
        ),
        (OutputMode::Update | OutputMode::Append, _) if analysis.sort_or_limit => Err(format!(
            "ORDER BY and LIMIT apply only in --mode complete (in --mode {mode} each trigger \
             emits only some rows, so there is nothing to order or cut); remove them or use \
             --mode complete"
        )),
        (OutputMode::Update | OutputMode::Append, _) if analysis.window_above_aggregate => {
            Err(format!(
                "window functions (OVER) rank the whole result table, so they need --mode \
                 complete (in --mode {mode} they would rank only the rows one trigger emits)"
            ))
        }
        _ => Ok(mode),
    }
}
