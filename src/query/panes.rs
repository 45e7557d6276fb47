//! Sliding windows by panes: aggregate a trigger's rows once per pane, not once per window.
//!
//! `unnest(hop(ts, size, slide))` puts each row into `size / slide` windows, so the trigger's
//! `Partial` aggregation would see every row that many times. Time cut into panes of
//! `gcd(size, slide)` has the property that a pane lies wholly inside every window that holds
//! any of its instants. So the per-trigger plan is rewritten to put each row into its one pane
//! (same column, same type: a one-element list), the `Partial` aggregation groups rows by
//! (pane, other keys), and each resulting partial-state row is then copied into the windows of
//! its pane before the rows are merged into the window state. State, output and watermarks
//! are unchanged; the fan-out applies to pane rows, which are fewer than input rows (a busy
//! key has many rows per pane).
//!
//! The rewrite is applied only where it cannot change a result: the window column must reach
//! the GROUP BY from the unnested hop() list through plain column references, and no aggregate,
//! filter or other key may read it. Any other plan keeps the row-by-row expansion.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::unnest::UnnestExec;

use super::functions::{self, WindowFunc};
use super::incremental::with_child;

/// How to copy pane rows into windows; see the module docs.
#[derive(Debug, Clone)]
pub struct Panes {
    /// The window column among the partial-state rows' group keys.
    column: usize,
    size: i64,
    slide: i64,
}

impl Panes {
    /// Copies each row (whose window column holds a pane start) into every window of its
    /// pane, with that window's start; large inputs are copied on `threads` threads.
    pub fn expand(&self, batches: &[RecordBatch], threads: usize) -> Result<Vec<RecordBatch>> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let chunk = rows.div_ceil(threads.max(1)).max(64 * 1024);
        let mut pieces = Vec::new();
        for batch in batches {
            let mut start = 0;
            while start < batch.num_rows() {
                let len = chunk.min(batch.num_rows() - start);
                pieces.push(batch.slice(start, len));
                start += len;
            }
        }
        if pieces.len() <= 1 {
            return pieces.iter().map(|p| self.expand_one(p)).collect();
        }
        // At most `threads` threads, each taking every `threads`-th piece.
        let workers = threads.clamp(1, pieces.len());
        let mut expanded: Vec<Option<Result<RecordBatch>>> = Vec::new();
        expanded.resize_with(pieces.len(), || None);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let pieces = &pieces;
                    scope.spawn(move || {
                        (w..pieces.len())
                            .step_by(workers)
                            .map(|i| (i, self.expand_one(&pieces[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                for (i, result) in handle.join().expect("expanding panes does not panic") {
                    expanded[i] = Some(result);
                }
            }
        });
        expanded
            .into_iter()
            .map(|r| r.expect("every piece is expanded"))
            .collect()
    }

    fn expand_one(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let column = rows.column(self.column);
        let ts_type = column.data_type().clone();
        let micros = functions::as_micros(column)?;
        let per_pane = (self.size / self.slide + 1) as usize;
        let mut indices = Vec::with_capacity(rows.num_rows() * per_pane);
        let mut starts = Vec::with_capacity(rows.num_rows() * per_pane);
        for (row, pane) in micros.iter().enumerate() {
            match pane {
                Some(pane) => functions::for_each_window(pane, self.size, self.slide, |s| {
                    indices.push(row as u32);
                    starts.push(Some(s));
                }),
                None => {
                    indices.push(row as u32);
                    starts.push(None);
                }
            }
        }
        let expanded = take_record_batch(rows, &UInt32Array::from(indices))?;
        let starts = datafusion::arrow::array::TimestampMicrosecondArray::from(starts);
        let mut columns = expanded.columns().to_vec();
        columns[self.column] = functions::from_micros(starts, &ts_type)?;
        Ok(RecordBatch::try_new(expanded.schema(), columns)?)
    }
}

/// Rewrites the `Partial` aggregation `partial` to group by pane, if that is safe for the
/// GROUP BY key at `window_index`; `None` keeps the plan as it is.
pub fn rewrite(
    partial: &Arc<dyn ExecutionPlan>,
    window_index: usize,
) -> Result<Option<(Arc<dyn ExecutionPlan>, Panes)>> {
    let Some(aggregate) = partial.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let groups = aggregate.group_expr();
    if groups.has_grouping_set() {
        return Ok(None);
    }
    let Some((key, _)) = groups.expr().get(window_index) else {
        return Ok(None);
    };
    let Some(mut column) = key.downcast_ref::<Column>().map(Column::index) else {
        return Ok(None);
    };
    // Nothing else in the aggregation may read the window column.
    let mut readers: Vec<Arc<dyn PhysicalExpr>> = groups
        .expr()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != window_index)
        .map(|(_, (e, _))| Arc::clone(e))
        .collect();
    for aggr in aggregate.aggr_expr() {
        readers.extend(aggr.expressions());
        readers.extend(aggr.order_bys().iter().map(|o| Arc::clone(&o.expr)));
    }
    readers.extend(aggregate.filter_expr().iter().flatten().cloned());
    if reads(&readers, column) {
        return Ok(None);
    }
    // Down to the hop() call, through nodes that pass the column on untouched.
    let mut path: Vec<Arc<dyn ExecutionPlan>> = vec![Arc::clone(partial)];
    let mut node = Arc::clone(aggregate.input());
    let (hop_projection, size, slide) = loop {
        if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let exprs = projection.expr();
            let Some(source) = exprs
                .get(column)
                .and_then(|e| e.expr.downcast_ref::<Column>())
                .map(Column::index)
            else {
                return Ok(None);
            };
            let others: Vec<_> = exprs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != column)
                .map(|(_, e)| Arc::clone(&e.expr))
                .collect();
            if reads(&others, source) {
                return Ok(None);
            }
            column = source;
        } else if let Some(unnest) = node.downcast_ref::<UnnestExec>() {
            let lists = unnest.list_column_indices();
            let same_shape = unnest.input().schema().fields().len() == node.schema().fields().len();
            if lists.len() != 1
                || lists[0].depth != 1
                || lists[0].index_in_input_schema != column
                || !unnest.struct_column_indices().is_empty()
                || !same_shape
            {
                return Ok(None);
            }
            path.push(Arc::clone(&node));
            let below = Arc::clone(unnest.input());
            let Some(projection) = below.downcast_ref::<ProjectionExec>() else {
                return Ok(None);
            };
            let Some(hop) = projection
                .expr()
                .get(column)
                .and_then(|e| e.expr.downcast_ref::<ScalarFunctionExpr>())
                .filter(|f| f.name() == "hop" && f.args().len() == 3)
            else {
                return Ok(None);
            };
            let length = |i: usize, name: &str| {
                hop.args()[i]
                    .downcast_ref::<Literal>()
                    .map(|l| functions::interval_micros("hop", name, l.value()))
                    .transpose()
            };
            let (Some(size), Some(slide)) = (length(1, "size")?, length(2, "slide")?) else {
                return Ok(None);
            };
            break (below, size, slide);
        } else if node.downcast_ref::<RepartitionExec>().is_some()
            || node.downcast_ref::<FilterExec>().is_some_and(|f| {
                f.projection().is_none() && !reads(&[Arc::clone(f.predicate())], column)
            })
        {
            // These pass rows through with the same columns.
        } else {
            return Ok(None);
        }
        path.push(Arc::clone(&node));
        let child = match node.children().as_slice() {
            [child] => Arc::clone(child),
            _ => return Ok(None),
        };
        node = child;
    };
    // The hop() call becomes the pane call: same arguments, same one-column list type.
    let projection = hop_projection
        .downcast_ref::<ProjectionExec>()
        .expect("checked above");
    let input_schema = projection.input().schema();
    let mut exprs: Vec<ProjectionExpr> = projection.expr().to_vec();
    let hop = exprs[column]
        .expr
        .downcast_ref::<ScalarFunctionExpr>()
        .expect("checked above");
    let pane = ScalarFunctionExpr::new(
        "hop_pane",
        Arc::new(ScalarUDF::from(WindowFunc::pane())),
        hop.args().to_vec(),
        hop.return_field(&input_schema)?,
        Arc::new(hop.config_options().clone()),
    );
    exprs[column].expr = Arc::new(pane);
    let mut rebuilt: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(
        exprs,
        Arc::clone(projection.input()),
    )?);
    for ancestor in path.into_iter().rev() {
        rebuilt = with_child(ancestor, rebuilt)?;
    }
    Ok(Some((
        rebuilt,
        Panes {
            column: window_index,
            size,
            slide,
        },
    )))
}

/// Whether any of `exprs` reads input column `index`.
fn reads(exprs: &[Arc<dyn PhysicalExpr>], index: usize) -> bool {
    exprs
        .iter()
        .any(|e| collect_columns(e).iter().any(|c| c.index() == index))
}
