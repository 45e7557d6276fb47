//! The trigger's time: `now()` (and `current_timestamp`), `current_date` and `current_time`
//! answer the time the trigger started, like Spark's batch timestamp, not the job's start.
//! The app records that time in the batch's offsets and sets it again for a replay, so a
//! batch re-run after a crash computes the same values.
//!
//! DataFusion folds these functions into a literal when a query is planned; dfstream plans
//! once per job, so it registers its own versions, which read a shared [`TriggerClock`] each
//! time a trigger runs.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

const UNSET: i64 = i64::MIN;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The current trigger's time, shared by the functions below and the app.
#[derive(Debug, Clone)]
pub struct TriggerClock(Arc<AtomicI64>);

impl Default for TriggerClock {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(UNSET)))
    }
}

impl TriggerClock {
    /// Sets the time (microseconds since the epoch) the next trigger's functions answer.
    pub fn set(&self, micros: i64) {
        self.0.store(micros, Ordering::Relaxed);
    }

    /// The trigger's time in microseconds (the wall clock before any trigger has run).
    fn micros(&self) -> i64 {
        match self.0.load(Ordering::Relaxed) {
            UNSET => crate::time::now_micros(),
            micros => micros,
        }
    }
}

/// Replaces DataFusion's `now`/`current_timestamp`, `current_date` and `current_time` in
/// `ctx` with versions that answer `clock`'s time.
pub fn register(ctx: &SessionContext, clock: &TriggerClock) {
    for what in [What::Timestamp, What::Date, What::Time] {
        ctx.register_udf(ScalarUDF::from(TriggerTimeFunc {
            what,
            clock: clock.clone(),
            // Volatile, not Stable: DataFusion evaluates stable functions once, while planning.
            // The value is the same for every row of a trigger all the same.
            signature: Signature::nullary(Volatility::Volatile),
        }));
    }
}

/// Whether `udf` is one of the functions above (volatile only in DataFusion's terms: within a
/// batch and its replay it has one value).
pub fn is_trigger_time(udf: &ScalarUDF) -> bool {
    udf.inner().downcast_ref::<TriggerTimeFunc>().is_some()
}

/// The time `udf` answers now, if it is one of the functions above: what a plan shipped to
/// another process carries for it (see [`fixed`]).
pub fn answer_of(udf: &ScalarUDF) -> Option<i64> {
    udf.inner()
        .downcast_ref::<TriggerTimeFunc>()
        .map(|f| f.clock.micros())
}

/// The function `name` (one of the above) answering `micros`: a shipped plan's, decoded.
pub fn fixed(name: &str, micros: i64) -> Option<ScalarUDF> {
    let what = match name {
        "now" | "current_timestamp" => What::Timestamp,
        "current_date" | "today" => What::Date,
        "current_time" => What::Time,
        _ => return None,
    };
    let clock = TriggerClock::default();
    clock.set(micros);
    Some(ScalarUDF::from(TriggerTimeFunc {
        what,
        clock,
        signature: Signature::nullary(Volatility::Volatile),
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum What {
    Timestamp,
    Date,
    Time,
}

#[derive(Debug)]
struct TriggerTimeFunc {
    what: What,
    clock: TriggerClock,
    signature: Signature,
}

impl PartialEq for TriggerTimeFunc {
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what && Arc::ptr_eq(&self.clock.0, &other.clock.0)
    }
}

impl Eq for TriggerTimeFunc {}

impl Hash for TriggerTimeFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.what.hash(state);
    }
}

impl ScalarUDFImpl for TriggerTimeFunc {
    fn name(&self) -> &str {
        match self.what {
            What::Timestamp => "now",
            What::Date => "current_date",
            What::Time => "current_time",
        }
    }

    fn aliases(&self) -> &[String] {
        static CURRENT_TIMESTAMP: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["current_timestamp".to_string()]);
        static TODAY: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["today".to_string()]);
        match self.what {
            What::Timestamp => &CURRENT_TIMESTAMP,
            What::Date => &TODAY,
            What::Time => &[],
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The types DataFusion's own functions return (in UTC, dfstream's session time zone).
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.what {
            What::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, None),
            What::Date => DataType::Date32,
            What::Time => DataType::Time64(TimeUnit::Nanosecond),
        })
    }

    /// Never NULL, as DataFusion's own (and the schemas stored in checkpoints) say.
    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            self.name(),
            self.return_type(&[])?,
            false,
        )))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let micros = self.clock.micros();
        let day = micros.div_euclid(MICROS_PER_DAY);
        let value = match self.what {
            What::Timestamp => ScalarValue::TimestampNanosecond(Some(micros * 1000), None),
            What::Date => ScalarValue::Date32(Some(day as i32)),
            What::Time => {
                ScalarValue::Time64Nanosecond(Some((micros - day * MICROS_PER_DAY) * 1000))
            }
        };
        Ok(ColumnarValue::Scalar(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_functions_answer_the_clock_and_follow_it() {
        let ctx = SessionContext::new();
        let clock = TriggerClock::default();
        register(&ctx, &clock);
        // 2024-02-29 23:59:58.5 UTC
        let micros = 1_709_251_198_500_000;
        clock.set(micros);
        let sql = "SELECT now() AS a, current_timestamp AS b, today() AS c, \
                   current_time AS d";
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let text = |batches: &[datafusion::arrow::array::RecordBatch]| {
            datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .unwrap()
                .to_string()
        };
        let task = ctx.task_ctx();
        let first = text(
            &datafusion::physical_plan::collect(Arc::clone(&plan), Arc::clone(&task))
                .await
                .unwrap(),
        );
        assert!(first.contains("2024-02-29T23:59:58.500"), "{first}");
        assert!(first.contains("| 2024-02-29 |"), "{first}");
        assert!(first.contains("23:59:58.500"), "{first}");
        // The same plan, run again for a later trigger, answers the new time.
        clock.set(micros + 2_000_000);
        let second = text(
            &datafusion::physical_plan::collect(plan, task)
                .await
                .unwrap(),
        );
        assert!(second.contains("2024-03-01T00:00:00.500"), "{second}");
        assert!(second.contains("| 2024-03-01 |"), "{second}");
    }
}
