//! Incremental GROUP BY: aggregate only a trigger's rows, then merge them into the state.
//!
//! The physical plan of the user's query is split at its aggregation into three pieces:
//! - below: DataFusion's own `Partial` aggregation over the trigger's rows (with everything
//!   under it: word splitting, filters, projections), giving one partial-state row per group;
//! - merge: a `PartialReduce` aggregation over [old state rows of the touched groups, new
//!   rows], giving the merged rows that [`GroupState`] appends; a `Final` aggregation over those
//!   rows turns partial states into result values;
//! - above: the rest of the plan (projection, HAVING, ORDER BY, LIMIT, OVER) re-attached to a
//!   source holding the `Final` output: all groups in complete mode, touched ones in update.
//!
//! So a trigger costs O(new rows + touched groups), except complete mode's output, and every
//! built-in aggregate (count, sum, avg, min, max, count DISTINCT, approx_distinct, ...) merges
//! through its own partial-state code, without a case per function here.
//!
//! Windows add two steps between the pieces: sliding windows are aggregated per pane below and
//! copied into their windows before the merge ([`super::panes`]); session windows are merged
//! with the open sessions of their keys before the merge ([`mod@super::session`]). A watermark
//! then evicts the windows it has closed (append mode emits them).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{Result as DfResult, internal_datafusion_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::Partitioning;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::displayable;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;

use super::functions::as_micros;
use super::lines::TriggerSlot;
use super::panes::{self, Panes};
use super::session::{SessionMerge, Sessions};
use super::{OutputMode, TriggerOutput, TriggerTimings, changes, execute};
use crate::error::{Context, Error, Result};
use crate::state::groups::GroupState;
use datafusion::arrow::array::{ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::datatypes::Int64Type;

/// The GROUP BY key that holds a row's window: a group is final once the window's end is
/// at or before the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowKey {
    pub index: usize,
    pub kind: WindowKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `window_start` made by tumble()/hop(): windows end `size_micros` after they start.
    Fixed { size_micros: i64 },
    /// `session()`: a struct holding the session's start and end.
    Session,
}

/// The split plan and its state; see the module docs.
pub struct IncrementalAggregate {
    /// Set when closed windows leave the state (append and update modes with a watermark).
    closes_windows: Option<WindowKey>,
    /// The earliest window end that may be in the state (`i64::MIN`: unknown), so that the
    /// state is scanned for closed windows only when one can have closed.
    earliest_end: i64,
    /// Open session windows, when the query groups by `session()`.
    sessions: Option<Sessions>,
    /// Set when `partial` groups sliding-window rows by pane (see `query::panes`).
    panes: Option<Panes>,
    /// `Partial` aggregation over the trigger's rows.
    partial: Arc<dyn ExecutionPlan>,
    /// Group-by over state rows (`as_final` of the query's group-by).
    state_group_by: Arc<PhysicalGroupBy>,
    aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
    filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The schema of the rows the aggregation reads (all aggregation modes need it).
    input_schema: SchemaRef,
    /// The nodes above the aggregation, from the root down to the aggregation's parent.
    above: Vec<Arc<dyn ExecutionPlan>>,
    /// Set when update mode emits a changelog (rows can leave the result; see `changes`).
    changelog: Option<Changelog>,
    /// State columns whose per-group size can grow with the input, not yet warned about
    /// (see [`Self::warn_of_growing_states`]).
    growing: Vec<GrowingColumn>,
    state: GroupState,
}

/// A state column that holds every value of its group (a list, or one string), and the size
/// past which [`IncrementalAggregate::warn_of_growing_states`] warns.
struct GrowingColumn {
    index: usize,
    limit: usize,
    unit: &'static str,
}

impl GrowingColumn {
    /// The state columns (after the `num_keys` group keys) of `schema` that can grow.
    fn of(schema: &SchemaRef, num_keys: usize) -> Vec<Self> {
        let fields = schema.fields().iter().enumerate().skip(num_keys);
        fields
            .filter_map(|(index, field)| {
                let (limit, unit) = match field.data_type() {
                    DataType::List(_) | DataType::LargeList(_) => (GROWING_STATE_VALUES, "values"),
                    DataType::Utf8 | DataType::LargeUtf8 => (GROWING_STATE_BYTES, "bytes"),
                    _ => return None,
                };
                Some(Self { index, limit, unit })
            })
            .collect()
    }

    /// The largest value of this column in `rows`, in its unit.
    fn largest(&self, rows: &RecordBatch) -> Option<usize> {
        let column = rows.column(self.index);
        match column.data_type() {
            DataType::List(_) => column.as_list::<i32>().offsets().lengths().max(),
            DataType::LargeList(_) => column.as_list::<i64>().offsets().lengths().max(),
            DataType::Utf8 => column.as_string::<i32>().offsets().lengths().max(),
            _ => column.as_string::<i64>().offsets().lengths().max(),
        }
    }
}

/// How update mode tells rows that left the result: by these result columns, in this schema.
struct Changelog {
    key: Vec<usize>,
    schema: SchemaRef,
}

impl IncrementalAggregate {
    /// The `Partial` aggregation over a trigger's rows.
    pub fn partial_plan(&self) -> Arc<dyn ExecutionPlan> {
        Arc::clone(&self.partial)
    }

    /// Splits a physical plan with exactly one aggregation (checked by the caller); `window`
    /// is the GROUP BY key that holds a row's window, if any.
    pub fn split(plan: Arc<dyn ExecutionPlan>, window: Option<WindowKey>) -> Result<Self> {
        // DataFusion runs uncorrelated scalar subqueries (over static tables: the analysis
        // refuses the rest) in a ScalarSubqueryExec at the plan's root, which fills the
        // values the expressions below read; it goes above the per-trigger part.
        let (plan, scalar_subqueries) = match plan.downcast_ref::<ScalarSubqueryExec>() {
            Some(exec) => (
                Arc::clone(exec.input()),
                Some((exec.subqueries().to_vec(), exec.results().clone())),
            ),
            None => (plan, None),
        };
        let mut above = Vec::new();
        let mut node = plan;
        let aggregate = loop {
            if let Some(agg) = node.downcast_ref::<AggregateExec>() {
                break agg.clone();
            }
            let children = node.children();
            let [child] = children.as_slice() else {
                return Err(unexpected_shape(
                    &node,
                    "a node above the aggregation has not one input",
                ));
            };
            let child = Arc::clone(child);
            above.push(node);
            node = child;
        };
        let partial = match aggregate.mode() {
            AggregateMode::Single | AggregateMode::SinglePartitioned => Arc::new(
                AggregateExec::try_new(
                    AggregateMode::Partial,
                    aggregate.group_expr().clone(),
                    aggregate.aggr_expr().to_vec(),
                    aggregate.filter_expr().to_vec(),
                    Arc::clone(aggregate.input()),
                    aggregate.input_schema(),
                )
                .context(|| "planning the per-trigger aggregation".into())?,
            )
                as Arc<dyn ExecutionPlan>,
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                find_partial(Arc::clone(aggregate.input())).ok_or_else(|| {
                    unexpected_shape(&node, "no partial aggregation below the final one")
                })?
            }
            mode => {
                return Err(unexpected_shape(
                    &node,
                    &format!("aggregation in mode {mode:?}"),
                ));
            }
        };
        // Sliding windows: aggregate each trigger's rows per pane, then copy into windows.
        let (partial, panes) = match window {
            Some(WindowKey {
                index,
                kind: WindowKind::Fixed { .. },
            }) => match panes::rewrite(&partial, index)
                .context(|| "planning the per-pane aggregation".into())?
            {
                Some((rewritten, panes)) => (rewritten, Some(panes)),
                None => (partial, None),
            },
            _ => (partial, None),
        };
        let partial_exec = partial
            .downcast_ref::<AggregateExec>()
            .expect("find_partial returns an AggregateExec");
        let state = GroupState::new(
            partial.schema(),
            partial_exec.group_expr().num_group_exprs(),
        )
        .context(|| "creating the aggregation state".into())?;
        let session = window
            .filter(|w| w.kind == WindowKind::Session)
            .map(|w| w.index);
        let sessions = session
            .map(|column| Sessions::new(state.schema(), state.num_keys(), column))
            .transpose()
            .context(|| "reading the session key".into())?;
        let state_group_by = Arc::new(partial_exec.group_expr().as_final());
        let aggr_expr = partial_exec.aggr_expr().to_vec();
        let filter_expr = partial_exec.filter_expr().to_vec();
        let input_schema = partial_exec.input_schema();
        let partial = match scalar_subqueries {
            Some((links, results)) => {
                Arc::new(ScalarSubqueryExec::new(partial, links, results)) as Arc<dyn ExecutionPlan>
            }
            None => partial,
        };
        Ok(Self {
            closes_windows: None,
            earliest_end: i64::MIN,
            sessions,
            panes,
            state_group_by,
            aggr_expr,
            filter_expr,
            input_schema,
            partial,
            above,
            changelog: None,
            growing: GrowingColumn::of(state.schema(), state.num_keys()),
            state,
        })
    }

    /// Whether sliding-window rows are aggregated per pane (see `query::panes`).
    pub fn per_pane(&self) -> bool {
        self.panes.is_some()
    }

    /// How the aggregation runs across triggers, for `dfstream explain`.
    pub fn explain(&self) -> String {
        let schema = self.state.schema();
        let keys = self.state.num_keys();
        let columns = |range: std::ops::Range<usize>| {
            schema.fields()[range]
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = String::new();
        text.push_str(&format!("state keys     {}\n", columns(0..keys)));
        text.push_str(&format!(
            "state values   {} (partial aggregate states, merged)\n",
            columns(keys..schema.fields().len())
        ));
        text.push_str(
            "per trigger    1. partial aggregation over the trigger's new rows (plan below)\n",
        );
        if self.panes.is_some() {
            text.push_str(
                "               sliding windows: rows are aggregated per pane (the greatest \
                 common divisor of size and slide), then copied into their windows\n",
            );
        }
        text.push_str(
            "               2. merge into the state by key (the GROUP BY's final aggregation \
             over state rows)\n",
        );
        if self.sessions.is_some() {
            text.push_str(
                "               session windows: sessions of earlier triggers merge with new \
                 rows that fall within the gap\n",
            );
        }
        let above: Vec<&str> = self.above.iter().map(|node| node.name()).collect();
        text.push_str(&format!(
            "               3. final values of the changed groups{}\n",
            if above.is_empty() {
                String::new()
            } else {
                format!(", then {}", above.join(" <- "))
            }
        ));
        match self.closes_windows {
            Some(window) => text.push_str(&format!(
                "watermark      windows whose end is at or before the watermark are final: \
                 they leave the state{} (key column {})\n",
                match window.kind {
                    WindowKind::Session => " when their session has ended",
                    WindowKind::Fixed { .. } => "",
                },
                schema.field(window.index).name()
            )),
            None => text.push_str("watermark      none: the state keeps every group\n"),
        }
        text.push_str("partial aggregation plan:\n");
        text.push_str(
            &datafusion::physical_plan::displayable(self.partial.as_ref())
                .indent(true)
                .to_string(),
        );
        text
    }

    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// Makes update mode emit a changelog keyed by the result columns `key` (see `changes`).
    pub fn emit_changes(&mut self, key: Vec<usize>, schema: SchemaRef) {
        self.changelog = Some(Changelog { key, schema });
    }

    /// Makes windows closed by the watermark leave the state (and, in append mode, the output).
    pub fn evict_closed_windows(&mut self, window: Option<WindowKey>) {
        self.closes_windows = window;
    }

    /// Removes the windows closed at `watermark` from the state, returning their rows.
    pub fn evict_closed(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        let Some(window) = self.closes_windows else {
            return Ok(None);
        };
        if self.earliest_end != i64::MIN && self.earliest_end > watermark {
            return Ok(None); // nothing can have closed: no need to scan the state
        }
        let mut earliest_left = i64::MAX;
        let closed = self
            .state
            .evict(|rows| {
                let ends = window_ends(rows, window)?;
                Ok(ends
                    .iter()
                    .map(|end| {
                        let closed = end.is_some_and(|end| end <= watermark);
                        if let (Some(end), false) = (end, closed) {
                            earliest_left = earliest_left.min(end);
                        }
                        Some(closed)
                    })
                    .collect())
            })
            .context(|| "removing closed windows from the state".into())?;
        self.earliest_end = earliest_left;
        if let Some(sessions) = &mut self.sessions {
            sessions
                .forget(&closed)
                .context(|| "forgetting closed sessions".into())?;
        }
        Ok(Some(closed))
    }

    /// Warns, once per state column, when a group's partial state holds more than
    /// [`GROWING_STATE_VALUES`] values (a list: count(DISTINCT), array_agg, median) or
    /// [`GROWING_STATE_BYTES`] bytes (a string: string_agg): aggregates that keep every value
    /// are merged and stored whole each time their group is touched, so such a group makes
    /// every trigger that touches it cost its history.
    fn warn_of_growing_states(&mut self, merged: &RecordBatch) {
        let schema = merged.schema();
        self.growing.retain(|column| {
            let Some(size) = column.largest(merged).filter(|&n| n > column.limit) else {
                return true;
            };
            log::warn!(
                "a group's state for {} holds {size} {}: an aggregate that keeps every value \
                 is merged and stored whole each time its group is touched, so triggers that \
                 touch this group cost as much as its history (see \"State that grows\" in \
                 the README: approx_distinct or a window key keeps it small)",
                schema.field(column.index).name(),
                column.unit
            );
            false // warned once
        });
    }

    /// Notes the windows of rows entering the state (they may end before any open one).
    fn note_windows(&mut self, rows: &RecordBatch) -> Result<()> {
        let Some(window) = self.closes_windows else {
            return Ok(());
        };
        let ends = window_ends(rows, window).context(|| "reading window ends".into())?;
        if let Some(min) = datafusion::arrow::compute::min(&ends) {
            self.earliest_end = self.earliest_end.min(min);
        }
        Ok(())
    }

    /// Adds stored state rows during recovery: the same path a trigger's merged rows take.
    pub fn restore(&mut self, rows: RecordBatch) -> Result<()> {
        self.earliest_end = i64::MIN; // unknown: the next eviction scans the state
        if let Some(sessions) = &mut self.sessions {
            let replaced = sessions
                .restore(&rows)
                .context(|| "restoring sessions".into())?;
            if let Some(replaced) = replaced {
                self.state
                    .remove(&replaced)
                    .context(|| "replacing restored sessions".into())?;
            }
        }
        self.state
            .append(rows)
            .context(|| "restoring the aggregation state".into())
    }

    pub async fn run_trigger(
        &mut self,
        mode: OutputMode,
        task: Arc<TaskContext>,
        slot: &TriggerSlot,
        engine: &super::engine::Engine,
    ) -> Result<TriggerOutput> {
        let started = Instant::now();
        let new_rows = engine
            .run(Arc::clone(&self.partial), Arc::clone(&task), slot)
            .await?;
        let watermark = slot.advance_watermark();
        let aggregated = Instant::now();
        let new_rows = match &self.panes {
            Some(panes) => {
                // Merge the partitions' rows of each pane first: fewer rows to copy.
                let rows: usize = new_rows.iter().map(RecordBatch::num_rows).sum();
                let pane_rows = if rows >= PARALLEL_MERGE_ROWS {
                    self.aggregate_state_rows(
                        AggregateMode::PartialReduce,
                        new_rows,
                        Arc::clone(&task),
                    )
                    .await?
                } else {
                    new_rows
                };
                let threads = task.session_config().target_partitions();
                panes
                    .expand(&pane_rows, threads)
                    .context(|| "copying panes into their windows".into())?
            }
            None => new_rows,
        };
        let (merge_input, session_merge, old_rows) = self.merge_input(new_rows)?;
        let merged = self
            .aggregate_state_rows(AggregateMode::PartialReduce, merge_input, Arc::clone(&task))
            .await?;
        let merged = concat_batches(self.state.schema(), &merged)
            .context(|| "collecting the merged groups".into())?;
        self.note_windows(&merged)?;
        self.warn_of_growing_states(&merged);
        if let Some(absorbed) = session_merge.as_ref().and_then(|m| m.absorbed.as_ref()) {
            self.state
                .remove(absorbed)
                .context(|| "removing sessions merged into others".into())?;
        }
        self.state
            .append(merged.clone())
            .context(|| "updating the aggregation state".into())?;
        if let (Some(sessions), Some(merge)) = (&mut self.sessions, session_merge) {
            sessions.commit(merge);
        }
        let closed = match watermark {
            Some(watermark) => self.evict_closed(watermark)?,
            None => None,
        };
        let merged_at = Instant::now();
        let removed_groups = closed.as_ref().map_or(0, |c| c.num_rows() as u64);
        let rows = match mode {
            OutputMode::Complete => self.complete_result(task).await?,
            // Each window once, with its final value, when the watermark closes it.
            OutputMode::Append => {
                let closed = closed
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(self.state.schema())));
                let finals = self
                    .aggregate_state_rows(AggregateMode::Final, vec![closed], Arc::clone(&task))
                    .await?;
                self.run_above(finals, task).await?
            }
            OutputMode::Update => {
                let changed = self
                    .aggregate_state_rows(
                        AggregateMode::Final,
                        vec![merged.clone()],
                        Arc::clone(&task),
                    )
                    .await?;
                let after = self.run_above(changed, Arc::clone(&task)).await?;
                match &self.changelog {
                    None => after,
                    Some(changelog) => {
                        let before = match old_rows {
                            Some(old) => self.finalize(old, task).await?,
                            None => Vec::new(),
                        };
                        changes::changelog(&changelog.schema, &changelog.key, &after, &before)
                            .context(|| "telling the rows that left the result".into())?
                    }
                }
            }
        };
        Ok(TriggerOutput {
            rows,
            state_delta: Some(merged),
            removed_groups,
            timings: TriggerTimings {
                aggregate: aggregated - started,
                merge: merged_at - aggregated,
                emit: merged_at.elapsed(),
            },
        })
    }

    /// The rows to merge: the trigger's partial rows and the current rows of the groups they
    /// touch. With sessions, both carry the bounds of the merged sessions they now belong to.
    /// Also the touched groups' rows before the merge (without sessions), for a changelog.
    fn merge_input(
        &mut self,
        new_rows: Vec<RecordBatch>,
    ) -> Result<(Vec<RecordBatch>, Option<SessionMerge>, Option<RecordBatch>)> {
        let lookup = || "looking up the touched groups".to_string();
        let Some(sessions) = &self.sessions else {
            if self.state.is_empty() {
                return Ok((new_rows, None, None)); // nothing to look up (a first backlog)
            }
            let old_rows = self.state.existing_rows(&new_rows).context(lookup)?;
            let input = old_rows.iter().cloned().chain(new_rows).collect();
            return Ok((input, None, old_rows));
        };
        let new_rows = concat_batches(self.state.schema(), &new_rows)
            .context(|| "collecting the trigger's partial aggregates".into())?;
        let merge = sessions
            .plan_merge(&new_rows)
            .context(|| "merging sessions".into())?;
        let mut input = Vec::new();
        if let Some(keys) = &merge.touched
            && let Some(old_rows) = self
                .state
                .existing_rows(std::slice::from_ref(keys))
                .context(lookup)?
        {
            let old_rows = sessions
                .rewrite(&old_rows, &merge)
                .context(|| "merging sessions".into())?;
            input.push(old_rows);
        }
        input.push(merge.new_rows.clone()); // columns are shared, not copied
        Ok((input, Some(merge), None))
    }

    /// The whole result table: `Final` over every group, then the plan above the aggregation.
    pub async fn complete_result(&self, task: Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        let all = self
            .state
            .live_rows()
            .context(|| "reading the aggregation state".into())?;
        let finals = self
            .aggregate_state_rows(AggregateMode::Final, vec![all], Arc::clone(&task))
            .await?;
        self.run_above(finals, task).await
    }

    /// The result rows of the groups in `rows` (state rows, such as a stored delta): what
    /// update mode emitted for them.
    pub async fn finalize(
        &self,
        rows: RecordBatch,
        task: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        let finals = self
            .aggregate_state_rows(AggregateMode::Final, vec![rows], Arc::clone(&task))
            .await?;
        self.run_above(finals, task).await
    }

    /// Runs an aggregation of `mode` (PartialReduce or Final) over state rows; large inputs
    /// are spread over the session's partitions (a backlog trigger can touch millions of groups).
    async fn aggregate_state_rows(
        &self,
        mode: AggregateMode,
        rows: Vec<RecordBatch>,
        task: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        let schema = Arc::clone(self.state.schema());
        let total: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let partitions = task.session_config().target_partitions();
        let parallel = partitions > 1 && total >= PARALLEL_MERGE_ROWS && self.state.num_keys() > 0;
        let reading = || "reading state rows".to_string();
        let (input, mode): (Arc<dyn ExecutionPlan>, _) = match mode {
            _ if !parallel => (
                MemorySourceConfig::try_new_exec(&[rows], schema, None).context(reading)?,
                mode,
            ),
            AggregateMode::PartialReduce => {
                // Each group's rows go to one partition, which merges them.
                let split = split_rows(&schema, &rows, partitions).context(reading)?;
                let source =
                    MemorySourceConfig::try_new_exec(&split, schema, None).context(reading)?;
                let keys = self
                    .state_group_by
                    .expr()
                    .iter()
                    .map(|(expr, _)| Arc::clone(expr))
                    .collect();
                let repartition =
                    RepartitionExec::try_new(source, Partitioning::Hash(keys, partitions))
                        .context(|| "partitioning state rows by group".into())?;
                (Arc::new(repartition) as Arc<dyn ExecutionPlan>, mode)
            }
            // State rows hold each group once, so any split keeps a group in one partition.
            _ => {
                let split = split_rows(&schema, &rows, partitions).context(reading)?;
                (
                    MemorySourceConfig::try_new_exec(&split, schema, None).context(reading)?,
                    AggregateMode::FinalPartitioned,
                )
            }
        };
        let exec = AggregateExec::try_new(
            mode,
            Arc::clone(&self.state_group_by),
            self.aggr_expr.clone(),
            self.filter_expr.clone(),
            input,
            Arc::clone(&self.input_schema),
        )
        .context(|| format!("planning the {mode:?} aggregation of state rows"))?;
        execute(Arc::new(exec), task).await
    }

    /// Runs the nodes above the aggregation over `finals` (rows of the aggregation's output).
    async fn run_above(
        &self,
        finals: Vec<RecordBatch>,
        task: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        let Some(parent) = self.above.last() else {
            return Ok(finals);
        };
        let schema = parent.children()[0].schema();
        let mut node: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[finals], schema, None)
                .context(|| "reading aggregated rows".into())?;
        for ancestor in self.above.iter().rev() {
            node = with_child(Arc::clone(ancestor), node)
                .context(|| "re-attaching the plan above the aggregation".into())?;
        }
        execute(node, task).await
    }
}

/// A group state with more values than this is warned about (see
/// [`IncrementalAggregate::warn_of_growing_states`]).
const GROWING_STATE_VALUES: usize = 100_000;
/// The same for a state held as one string (string_agg's).
const GROWING_STATE_BYTES: usize = 1 << 20;

/// Below this many state rows a merge runs on one thread (spreading costs more than it saves).
const PARALLEL_MERGE_ROWS: usize = 64 * 1024;

/// `rows` spread over `partitions` with about as many rows in each: whole batches when
/// there are enough of them, else slices of all rows.
fn split_rows(
    schema: &SchemaRef,
    rows: &[RecordBatch],
    partitions: usize,
) -> DfResult<Vec<Vec<RecordBatch>>> {
    let total: usize = rows.iter().map(RecordBatch::num_rows).sum();
    let largest = rows.iter().map(RecordBatch::num_rows).max().unwrap_or(0);
    if largest <= total / partitions.max(1) {
        let mut split: Vec<(usize, Vec<RecordBatch>)> = vec![(0, Vec::new()); partitions];
        for batch in rows {
            let lightest = split
                .iter_mut()
                .min_by_key(|(n, _)| *n)
                .expect("at least one partition");
            lightest.0 += batch.num_rows();
            lightest.1.push(batch.clone());
        }
        return Ok(split.into_iter().map(|(_, batches)| batches).collect());
    }
    let all = match rows {
        [one] => one.clone(),
        _ => concat_batches(schema, rows)?,
    };
    let per = all.num_rows().div_ceil(partitions).max(1);
    Ok((0..partitions)
        .map(|p| {
            let start = (p * per).min(all.num_rows());
            let len = per.min(all.num_rows() - start);
            vec![all.slice(start, len)]
        })
        .collect())
}

#[expect(deprecated)] // `replace_children` with options is the newer spelling of the same call
pub(crate) fn with_child(
    parent: Arc<dyn ExecutionPlan>,
    child: Arc<dyn ExecutionPlan>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    parent.with_new_children(vec![child])
}

/// The end of each state row's window, in microseconds.
fn window_ends(rows: &RecordBatch, window: WindowKey) -> DfResult<PrimitiveArray<Int64Type>> {
    let column = rows.column(window.index);
    let micros = |a: &ArrayRef| -> DfResult<PrimitiveArray<Int64Type>> {
        Ok(as_micros(a)?.reinterpret_cast::<Int64Type>())
    };
    Ok(match window.kind {
        WindowKind::Fixed { size_micros } => {
            micros(column)?.unary(|start| start.saturating_add(size_micros))
        }
        WindowKind::Session => micros(column.as_struct().column(1))?,
    })
}

/// Finds the `Partial` aggregation under a final one, through repartitions and coalesces.
fn find_partial(mut node: Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    loop {
        if let Some(agg) = node.downcast_ref::<AggregateExec>() {
            return (*agg.mode() == AggregateMode::Partial).then_some(node);
        }
        let child = match node.children().as_slice() {
            [child] => Arc::clone(child),
            _ => return None,
        };
        node = child;
    }
}

fn unexpected_shape(plan: &Arc<dyn ExecutionPlan>, what: &str) -> Error {
    Error::DataFusion {
        context: "splitting the plan at its aggregation".into(),
        source: Box::new(internal_datafusion_err!(
            "unexpected plan shape ({what}):\n{}",
            displayable(plan.as_ref()).indent(true)
        )),
    }
}
