//! SQL functions dfstream adds to DataFusion.
//!
//! `words(text)` returns the list of words in `text`: maximal runs of word characters, with
//! exactly the meaning of the regex class `\w` (Unicode letters, marks, digits, connector
//! punctuation). It does in one pass what `regexp_replace` + `string_to_array` +
//! `array_remove_all` do in three, so the shipped word count stays fast and readable.
//!
//! `tumble(ts, size)` returns the start of the tumbling window of length `size` holding `ts`;
//! `hop(ts, size, slide)` the starts of every sliding window of length `size` (one starting
//! every `slide`) that holds `ts`, as a list to `unnest`. Windows are aligned to the Unix epoch;
//! sizes are intervals (`INTERVAL '1 minute'`, or strings such as `'30 seconds'`, e.g. from
//! `--param`), checked when the query is planned.
//!
//! `session(ts, gap)` returns the session window a lone row at `ts` opens: a struct
//! `{start: ts, end: ts + gap}`. Grouped by it (with other keys), the incremental aggregation
//! merges a key's sessions that overlap, so a session lasts while rows keep coming less than
//! `gap` apart (see `query::session`); it means nothing outside a GROUP BY key.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, StringBuilder, StructArray, TimestampMicrosecondArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Fields, IntervalUnit, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{
    Result, ScalarValue, exec_err, internal_err, plan_datafusion_err, plan_err,
};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers every dfstream function with `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(WordsFunc::new()));
    ctx.register_udf(ScalarUDF::from(WindowFunc::tumble()));
    ctx.register_udf(ScalarUDF::from(WindowFunc::hop()));
    ctx.register_udf(ScalarUDF::from(SessionFunc::new()));
}

/// The type `session()` returns for timestamps of `ts_type`: `{start, end}`.
pub fn session_type(ts_type: &DataType) -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("start", ts_type.clone(), true),
        Field::new("end", ts_type.clone(), true),
    ]))
}

/// Whether `data_type` is what `session()` returns.
pub fn is_session_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(fields) => {
            fields.len() == 2
                && fields[0].name() == "start"
                && fields[1].name() == "end"
                && matches!(fields[0].data_type(), DataType::Timestamp(..))
                && fields[0].data_type() == fields[1].data_type()
        }
        _ => false,
    }
}

/// `session(ts, gap)`; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionFunc {
    signature: Signature,
}

impl SessionFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for SessionFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SessionFunc {
    fn name(&self) -> &str {
        "session"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        internal_err!("return_field_from_args is used")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let ts = timestamp_argument("session", &args)?;
        if let Some(Some(gap)) = args.scalar_arguments.get(1) {
            interval_micros("session", "gap", gap)?;
        }
        Ok(Arc::new(Field::new("session", session_type(ts), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ColumnarValue::Scalar(gap) = &args.args[1] else {
            return exec_err!("session: the gap must be a constant");
        };
        let gap = interval_micros("session", "gap", gap)?;
        let ts_type = args.arg_fields[0].data_type().clone();
        let starts = as_micros(&args.args[0].to_array(args.number_rows)?)?;
        let ends: TimestampMicrosecondArray = starts.unary(|t| t.saturating_add(gap));
        like_input(&args.args[0], session_array(&ts_type, starts, ends)?)
    }
}

/// Builds `session()` values of `ts_type` from raw microsecond bounds (NULL where `starts` is).
pub fn session_array(
    ts_type: &DataType,
    starts: TimestampMicrosecondArray,
    ends: TimestampMicrosecondArray,
) -> Result<ArrayRef> {
    let nulls = starts.nulls().cloned();
    let DataType::Struct(fields) = session_type(ts_type) else {
        unreachable!("session_type is a struct")
    };
    Ok(Arc::new(StructArray::try_new(
        fields,
        vec![from_micros(starts, ts_type)?, from_micros(ends, ts_type)?],
        nulls,
    )?))
}

/// `tumble(ts, size)` and `hop(ts, size, slide)`; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunc {
    shape: WindowShape,
    signature: Signature,
}

/// What a [`WindowFunc`] returns for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WindowShape {
    /// `tumble(ts, size)`: the window's start.
    Tumble,
    /// `hop(ts, size, slide)`: the list of every window's start.
    Hop,
    /// `hop_pane(ts, size, slide)`: the start of the pane of `gcd(size, slide)` holding `ts`,
    /// as a one-element list shaped like hop()'s. Not registered: `query::panes` puts it in
    /// place of hop() in a trigger's plan.
    Pane,
}

impl WindowFunc {
    pub fn tumble() -> Self {
        Self::new(WindowShape::Tumble)
    }

    pub fn hop() -> Self {
        Self::new(WindowShape::Hop)
    }

    pub fn pane() -> Self {
        Self::new(WindowShape::Pane)
    }

    fn new(shape: WindowShape) -> Self {
        let arguments = if shape == WindowShape::Tumble { 2 } else { 3 };
        Self {
            shape,
            signature: Signature::any(arguments, Volatility::Immutable),
        }
    }

    fn is_hop(&self) -> bool {
        self.shape != WindowShape::Tumble
    }

    /// (size, slide) in microseconds from the constant arguments, checked.
    fn lengths(&self, args: &[Option<&ScalarValue>]) -> Result<Option<(i64, i64)>> {
        let what = if self.is_hop() {
            ["size", "slide"].as_slice()
        } else {
            ["size"].as_slice()
        };
        let mut lengths = Vec::new();
        for (i, name) in what.iter().enumerate() {
            match args.get(i + 1).copied().flatten() {
                Some(value) => lengths.push(interval_micros(self.name(), name, value)?),
                None => return Ok(None), // not known yet (a placeholder before binding)
            }
        }
        let size = lengths[0];
        let slide = lengths.get(1).copied().unwrap_or(size);
        if slide > size {
            return plan_err!(
                "{}: the slide ({slide} µs) is longer than the size ({size} µs): rows between \
                 windows would belong to none",
                self.name()
            );
        }
        Ok(Some((size, slide)))
    }
}

/// Timestamps of any unit and zone as microseconds since the epoch (the same instants; no
/// calendar is consulted, which arrow's casts between zones would do row by row).
pub fn as_micros(array: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    use datafusion::arrow::datatypes::{
        TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    let micros: TimestampMicrosecondArray = match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().clone()
        }
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .unary(|s| s.saturating_mul(1_000_000)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .unary(|ms| ms.saturating_mul(1_000)),
        // Floor, so that an instant before the epoch stays before the microsecond it is in.
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|ns| ns.div_euclid(1_000)),
        other => return exec_err!("expected a timestamp, not {other}"),
    };
    Ok(micros.with_timezone_opt(None::<Arc<str>>))
}

/// Microseconds since the epoch as timestamps of `ts_type` (the same instants).
pub fn from_micros(values: TimestampMicrosecondArray, ts_type: &DataType) -> Result<ArrayRef> {
    match ts_type {
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            Ok(Arc::new(values.with_timezone_opt(tz.clone())))
        }
        DataType::Timestamp(unit, tz) => Ok(cast(
            &(Arc::new(values.with_timezone_opt(tz.clone())) as ArrayRef),
            &DataType::Timestamp(*unit, tz.clone()),
        )?),
        other => exec_err!("expected a timestamp type, not {other}"),
    }
}

/// Calls `f` with the start of every window of length `size`, one starting every `slide`,
/// that holds the instant `t` (all in microseconds), latest first.
pub fn for_each_window(t: i64, size: i64, slide: i64, mut f: impl FnMut(i64)) {
    let mut s = t.div_euclid(slide) * slide;
    while s + size > t {
        f(s);
        s -= slide;
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The size argument of a tumble()/hop() call, in microseconds.
pub fn window_size(function: &str, value: &ScalarValue) -> Result<i64> {
    interval_micros(function, "size", value)
}

/// An interval argument in microseconds: positive, without months (their length varies).
pub fn interval_micros(function: &str, name: &str, value: &ScalarValue) -> Result<i64> {
    let interval = match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => ScalarValue::Utf8(Some(text.clone()))
            .cast_to(&DataType::Interval(IntervalUnit::MonthDayNano))
            .map_err(|_| {
                plan_datafusion_err!(
                    "{function}: {name} '{text}' is not an interval (e.g. '1 minute')"
                )
            })?,
        other => other
            .cast_to(&DataType::Interval(IntervalUnit::MonthDayNano))
            .map_err(|_| plan_datafusion_err!("{function}: {name} {other} is not an interval"))?,
    };
    let ScalarValue::IntervalMonthDayNano(Some(v)) = interval else {
        return plan_err!("{function}: {name} must not be NULL");
    };
    if v.months != 0 {
        return plan_err!("{function}: {name} must not use months or years (their length varies)");
    }
    let micros = v.days as i64 * 86_400_000_000 + v.nanoseconds / 1_000;
    if micros <= 0 {
        return plan_err!("{function}: {name} must be longer than zero");
    }
    Ok(micros)
}

impl ScalarUDFImpl for WindowFunc {
    fn name(&self) -> &str {
        match self.shape {
            WindowShape::Tumble => "tumble",
            WindowShape::Hop => "hop",
            WindowShape::Pane => "hop_pane",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        internal_err!("return_field_from_args is used")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let ts = timestamp_argument(self.name(), &args)?;
        self.lengths(args.scalar_arguments)?;
        let start = ts.clone();
        let data_type = if self.is_hop() {
            DataType::List(Arc::new(Field::new_list_field(start, true)))
        } else {
            start
        };
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constants: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let Some((size, slide)) = self.lengths(&constants)? else {
            return exec_err!("{}: window lengths must be constants", self.name());
        };
        let ts_type = args.arg_fields[0].data_type().clone();
        let micros = as_micros(&args.args[0].to_array(args.number_rows)?)?;
        let start_of = |t: i64, step: i64| t.div_euclid(step) * step;
        let list_of =
            |starts: TimestampMicrosecondArray, offsets: OffsetBuffer<i32>| -> Result<ArrayRef> {
                Ok(Arc::new(ListArray::new(
                    Arc::new(Field::new_list_field(ts_type.clone(), true)),
                    offsets,
                    from_micros(starts, &ts_type)?,
                    micros.nulls().cloned(),
                )))
            };
        let result = match self.shape {
            WindowShape::Tumble => from_micros(micros.unary(|t| start_of(t, size)), &ts_type)?,
            WindowShape::Hop => {
                let mut offsets = Vec::with_capacity(micros.len() + 1);
                offsets.push(0i32);
                let mut starts = Vec::new();
                for i in 0..micros.len() {
                    if micros.is_valid(i) {
                        let first = starts.len();
                        for_each_window(micros.value(i), size, slide, |s| starts.push(s));
                        starts[first..].reverse();
                    }
                    offsets.push(starts.len() as i32);
                }
                list_of(starts.into(), OffsetBuffer::new(offsets.into()))?
            }
            WindowShape::Pane => {
                let pane = gcd(size, slide);
                let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(1, micros.len()));
                list_of(micros.unary(|t| start_of(t, pane)), offsets)?
            }
        };
        like_input(&args.args[0], result)
    }
}

/// The type of a window function's first argument, which must be a timestamp.
fn timestamp_argument<'a>(function: &str, args: &'a ReturnFieldArgs) -> Result<&'a DataType> {
    match args.arg_fields[0].data_type() {
        ts @ DataType::Timestamp(..) => Ok(ts),
        other => plan_err!("{function}: the first argument must be a timestamp, not {other}"),
    }
}

/// `result` as a scalar when the function's `input` was one, else as an array.
fn like_input(input: &ColumnarValue, result: ArrayRef) -> Result<ColumnarValue> {
    Ok(match input {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(result),
    })
}

/// `words(text) -> list<utf8>`; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WordsFunc {
    signature: Signature,
}

impl WordsFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl Default for WordsFunc {
    fn default() -> Self {
        Self::new()
    }
}

fn item_field() -> Arc<Field> {
    Arc::new(Field::new_list_field(DataType::Utf8, true))
}

impl ScalarUDFImpl for WordsFunc {
    fn name(&self) -> &str {
        "words"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item_field()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let input = cast(&input, &DataType::Utf8)?;
        like_input(&args.args[0], split_words(input.as_string::<i32>()))
    }
}

/// Whether `c` belongs to the regex class `\w`.
#[inline]
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        regex_syntax::is_word_character(c)
    }
}

fn split_words(input: &datafusion::arrow::array::StringArray) -> ArrayRef {
    let mut words = StringBuilder::with_capacity(input.len() * 8, input.value_data().len());
    let mut offsets = Vec::with_capacity(input.len() + 1);
    offsets.push(0i32);
    let mut count = 0i32;
    for i in 0..input.len() {
        if input.is_valid(i) {
            let text = input.value(i);
            let mut start = None;
            for (pos, c) in text.char_indices() {
                match (is_word_char(c), start) {
                    (true, None) => start = Some(pos),
                    (false, Some(s)) => {
                        words.append_value(&text[s..pos]);
                        count += 1;
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                words.append_value(&text[s..]);
                count += 1;
            }
        }
        offsets.push(count);
    }
    let list = ListArray::new(
        item_field(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(words.finish()),
        input.nulls().cloned(),
    );
    Arc::new(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn words_of(text: &str) -> Vec<String> {
        let input = StringArray::from(vec![text]);
        let list = split_words(&input);
        let list = list.as_list::<i32>();
        let values = list.value(0);
        let values = values.as_string::<i32>();
        (0..values.len())
            .map(|i| values.value(i).to_string())
            .collect()
    }

    #[test]
    fn words_are_runs_of_word_characters() {
        assert_eq!(
            words_of("don't stop—café 42"),
            ["don", "t", "stop", "café", "42"]
        );
        assert_eq!(words_of("  snake_case, x1!"), ["snake_case", "x1"]);
        assert!(words_of("").is_empty());
        assert!(words_of(" -- ").is_empty());
        assert_eq!(words_of("日本語 テキスト"), ["日本語", "テキスト"]);
    }

    fn window_starts(func: WindowFunc, t: i64, lengths: &[&str]) -> Vec<i64> {
        let ts_type = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut args = vec![ColumnarValue::Array(Arc::new(
            TimestampMicrosecondArray::from(vec![t]).with_timezone("UTC"),
        ))];
        let mut fields = vec![Arc::new(Field::new("ts", ts_type.clone(), true))];
        for l in lengths {
            args.push(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                l.to_string(),
            ))));
            fields.push(Arc::new(Field::new("l", DataType::Utf8, true)));
        }
        let out = func
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields: fields,
                number_rows: 1,
                return_field: Arc::new(Field::new("r", ts_type.clone(), true)),
                config_options: Default::default(),
            })
            .unwrap()
            .to_array(1)
            .unwrap();
        let starts = match out.data_type() {
            DataType::List(_) => out.as_list::<i32>().value(0),
            _ => out,
        };
        let starts = cast(&starts, &DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap();
        starts
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec()
    }

    #[test]
    fn windows_hold_the_rows_they_should() {
        let s = 1_000_000;
        assert_eq!(
            window_starts(WindowFunc::tumble(), 37 * s, &["10 seconds"]),
            [30 * s]
        );
        assert_eq!(
            window_starts(WindowFunc::tumble(), -1, &["10 seconds"]),
            [-10 * s]
        );
        // 25 s windows every 10 s: [20, 45) and [30, 55) hold 37 s; [10, 35) does not.
        assert_eq!(
            window_starts(WindowFunc::hop(), 37 * s, &["25 seconds", "10 seconds"]),
            [20 * s, 30 * s]
        );
        // A window's end is exclusive: 40 s is in [20, 45), [30, 55), [40, 65).
        assert_eq!(
            window_starts(WindowFunc::hop(), 40 * s, &["25 seconds", "10 seconds"]),
            [20 * s, 30 * s, 40 * s]
        );
    }

    #[test]
    fn timestamps_convert_as_instants_whatever_their_zone() {
        use datafusion::arrow::array::TimestampMillisecondArray;
        let paris: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_500), None]).with_timezone("+01:00"),
        );
        let micros = as_micros(&paris).unwrap();
        assert_eq!(micros.iter().collect::<Vec<_>>(), [Some(1_500_000), None]);
        let seconds = from_micros(
            micros,
            &DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
        )
        .unwrap();
        assert_eq!(
            seconds.data_type(),
            &DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
        );
        let back = as_micros(&seconds).unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), [Some(1_000_000), None]);
        let before_epoch: ArrayRef = Arc::new(
            datafusion::arrow::array::TimestampNanosecondArray::from(vec![-1, 1_999]),
        );
        let micros = as_micros(&before_epoch).unwrap();
        assert_eq!(micros.values().to_vec(), [-1, 1]);
    }

    #[test]
    fn null_input_gives_null_list() {
        let input = StringArray::from(vec![None, Some("a b")]);
        let list = split_words(&input);
        assert!(list.is_null(0));
        assert_eq!(list.as_list::<i32>().value(1).len(), 2);
    }
}
