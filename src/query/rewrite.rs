//! Optimizer rules dfstream adds to DataFusion's.
//!
//! [`UtcIntervalAsDuration`]: `ts + INTERVAL '10 minutes'` on a UTC timestamp (the shipped
//! window queries' `window_end`) is evaluated by arrow through a calendar, converting every
//! row to a local date-time and back; with no months and no time-zone rules to follow, adding
//! the same interval as a fixed duration gives the same instants as one integer addition. On a
//! window query that emits millions of windows the calendar path took an eighth of the run.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// See the module docs.
#[derive(Debug, Default)]
pub struct UtcIntervalAsDuration;

impl OptimizerRule for UtcIntervalAsDuration {
    fn name(&self) -> &str {
        "dfstream_utc_interval_as_duration"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // Expressions are typed against the node's input; nodes with several inputs are left.
        let schema = match plan.inputs().as_slice() {
            [input] => input.schema().clone(),
            _ => return Ok(Transformed::no(plan)),
        };
        let names = NamePreserver::new(&plan);
        let rewrite = |expr: Expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| as_duration(e, &schema))?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        };
        plan.map_expressions(|expr| {
            // A grouping set keeps its shape; its members keep their names.
            if let Expr::GroupingSet(_) = &expr {
                expr.map_children(rewrite)
            } else {
                rewrite(expr)
            }
        })
    }
}

/// `utc_timestamp ± interval literal` -> `utc_timestamp ± duration literal`, when exact.
fn as_duration(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !matches!(op, Operator::Plus | Operator::Minus) {
        return Ok(Transformed::no(expr));
    }
    let Expr::Literal(interval, _) = right.as_ref() else {
        return Ok(Transformed::no(expr));
    };
    let Ok(DataType::Timestamp(unit, Some(tz))) = left.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let utc = matches!(tz.as_ref(), "UTC" | "utc" | "+00:00" | "Z");
    let Some(duration) = utc.then(|| fixed_duration(interval, unit)).flatten() else {
        return Ok(Transformed::no(expr));
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        left.clone(),
        *op,
        Box::new(Expr::Literal(duration, None)),
    ))))
}

/// An interval without months as a duration in `unit`, if it is a whole number of them.
fn fixed_duration(interval: &ScalarValue, unit: TimeUnit) -> Option<ScalarValue> {
    let nanos: i128 = match interval {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            v.days as i128 * 86_400_000_000_000 + v.nanoseconds as i128
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            v.days as i128 * 86_400_000_000_000 + v.milliseconds as i128 * 1_000_000
        }
        _ => return None,
    };
    let per_unit: i128 = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    if nanos % per_unit != 0 {
        return None;
    }
    let value = i64::try_from(nanos / per_unit).ok()?;
    Some(match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(Some(value)),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(value)),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(value)),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::IntervalMonthDayNano;

    #[test]
    fn only_exact_intervals_without_months_become_durations() {
        let ten_minutes = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
            0,
            1,
            600_000_000_000,
        )));
        assert_eq!(
            fixed_duration(&ten_minutes, TimeUnit::Microsecond),
            Some(ScalarValue::DurationMicrosecond(Some(87_000_000_000)))
        );
        let a_month = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(1, 0, 0)));
        assert_eq!(fixed_duration(&a_month, TimeUnit::Microsecond), None);
        let a_nano = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 1)));
        assert_eq!(fixed_duration(&a_nano, TimeUnit::Microsecond), None);
    }

    /// `sql`'s result with dfstream's session (the rule on) and with DataFusion's own.
    async fn with_and_without_rule(
        sql: &str,
    ) -> (
        Vec<datafusion::arrow::array::RecordBatch>,
        Vec<datafusion::arrow::array::RecordBatch>,
    ) {
        let with_rule = crate::query::session(1).sql(sql).await.unwrap();
        let without = datafusion::prelude::SessionContext::new()
            .sql(sql)
            .await
            .unwrap();
        (
            with_rule.collect().await.unwrap(),
            without.collect().await.unwrap(),
        )
    }

    #[tokio::test]
    async fn durations_give_the_instants_the_calendar_gives() {
        let sql = "SELECT ts + INTERVAL '1 day 10 minutes' AS later, \
                          ts - INTERVAL '90 seconds' AS earlier, \
                          ts + INTERVAL '1 month' AS next_month \
                   FROM (SELECT arrow_cast(to_timestamp_micros(v), \
                                'Timestamp(Microsecond, Some(\"UTC\"))') AS ts \
                         FROM (VALUES (1700000000123456), (-5), (951782400000000)) t(v))";
        let plan = crate::query::session(1)
            .sql(sql)
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        let shown = plan.display_indent().to_string();
        assert!(shown.contains("DurationMicrosecond"), "{shown}");
        assert!(
            shown.contains("IntervalMonthDayNano"),
            "a month stays an interval: {shown}"
        );
        let (got, expected) = with_and_without_rule(sql).await;
        assert_eq!(got, expected);
        assert_eq!(got[0].schema(), expected[0].schema());
    }

    #[tokio::test]
    async fn grouping_sets_keep_their_shape() {
        let sql = "SELECT k, ts + INTERVAL '1 hour' AS later, count(*) AS n \
                   FROM (SELECT v % 2 AS k, arrow_cast(to_timestamp_micros(v), \
                                'Timestamp(Microsecond, Some(\"UTC\"))') AS ts \
                         FROM (VALUES (1), (2), (3)) t(v)) \
                   GROUP BY ROLLUP(k, ts + INTERVAL '1 hour') ORDER BY k, later, n";
        let (got, expected) = with_and_without_rule(sql).await;
        assert_eq!(got, expected);
    }
}
