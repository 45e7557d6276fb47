//! Differential tests of dfstream's SQL functions `words()`, `tumble()` and `hop()` against
//! definitions written independently of `src/query/functions.rs`.
//!
//! The oracle tests (`oracle.rs`) run the same SQL through dfstream's streaming path and as a
//! plain batch query, but both sides call the same functions, so a bug in a function itself is
//! invisible there. Here each function is compared, over random inputs, with a definition that
//! shares no code with it:
//!
//! - `words(text)`: the matches, in order, of the regex `\w+` (the `regex` crate, Unicode);
//! - `tumble(ts, size)`: `t - t.rem_euclid(size)` in microseconds;
//! - `hop(ts, size, slide)`: the set `{ k*slide : k*slide <= t < k*slide + size }`, found by
//!   testing that condition for every `k` of a range that must hold all the answers.
//!
//! The functions run through SQL in a plain DataFusion `SessionContext` with only
//! `functions::register` called (none of dfstream's optimizer rules). A last test compares the
//! window ends a query computes with dfstream's session, whose `UtcIntervalAsDuration` rule
//! rewrites `ts + INTERVAL` into an integer addition, and without it.
//!
//! Inputs are random; a failure prints its seed, and `DFSTREAM_SEED=N` replays just that seed.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, SessionContext};
use dfstream::query::functions;
use dfstream::query::plan::param_value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;

use crate::util::{ReplayHint, runtime, seeds};

/// Panics with the first few `mismatches`, naming the seed that replays them.
fn assert_no_mismatch(seed: u64, what: &str, mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "seed {seed} (replay with DFSTREAM_SEED={seed}): {what}: {} mismatches; the first:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Shared setup: a table `t(id, ...)` in a session, SQL run over it, columns read back.

/// A plain DataFusion session with dfstream's functions and none of its optimizer rules.
fn plain_session() -> SessionContext {
    let ctx = SessionContext::new();
    functions::register(&ctx);
    ctx
}

/// `ctx` with the table `t`: a column `id` (0, 1, 2, ... in row order) and `columns`.
fn with_table(ctx: SessionContext, columns: Vec<(&str, ArrayRef)>) -> SessionContext {
    let rows = columns[0].1.len();
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))];
    for (name, array) in columns {
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).unwrap();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

/// The type of the timestamps the tests use (that of `lines.ts`).
fn utc_micros_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Microseconds since the epoch as a UTC timestamp column.
fn utc_micros(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values.to_vec()).with_timezone("UTC"))
}

/// `sql` planned in `ctx`, with `params` bound to its `$name` placeholders.
async fn planned(
    ctx: &SessionContext,
    sql: &str,
    params: &[(&str, ScalarValue)],
) -> datafusion::common::Result<DataFrame> {
    let mut df = ctx.sql(sql).await?;
    if !params.is_empty() {
        let values: Vec<(String, ScalarValue)> = params
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        df = df.with_param_values(values)?;
    }
    Ok(df)
}

/// Runs `sql` in `ctx`.
async fn try_run(
    ctx: &SessionContext,
    sql: &str,
    params: &[(&str, ScalarValue)],
) -> datafusion::common::Result<Vec<RecordBatch>> {
    planned(ctx, sql, params).await?.collect().await
}

/// Runs `sql` in `ctx`; a failure panics with `what` (which names the seed).
async fn run(
    ctx: &SessionContext,
    sql: &str,
    params: &[(&str, ScalarValue)],
    what: &str,
) -> Vec<RecordBatch> {
    try_run(ctx, sql, params)
        .await
        .unwrap_or_else(|e| panic!("{what}: {sql} failed: {e}"))
}

/// The column `name` of `batch`.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()))
}

/// The type of the column `name` of a result.
fn column_type(batches: &[RecordBatch], name: &str) -> DataType {
    column(&batches[0], name).data_type().clone()
}

/// An Int64 column of a result, e.g. `id`.
fn int_values(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            column(b, name)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

/// A timestamp column of a result as microseconds (whatever its zone).
fn instants(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            column(b, name)
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A list-of-timestamps column of a result as microseconds, in the order of each list.
fn instant_lists(batches: &[RecordBatch], name: &str) -> Vec<Option<Vec<i64>>> {
    let mut out = Vec::new();
    for batch in batches {
        let list = column(batch, name).as_list::<i32>();
        for i in 0..list.len() {
            if list.is_null(i) {
                out.push(None);
                continue;
            }
            let starts = list.value(i);
            let starts: Vec<i64> = starts
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|s| s.expect("a window start is never NULL"))
                .collect();
            out.push(Some(starts));
        }
    }
    out
}

/// A list-of-strings column of a result (items of any string type).
fn string_lists(batches: &[RecordBatch], name: &str) -> Vec<Option<Vec<String>>> {
    let as_utf8 = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let mut out = Vec::new();
    for batch in batches {
        let list = cast(column(batch, name), &as_utf8).unwrap();
        let list = list.as_list::<i32>();
        for i in 0..list.len() {
            if list.is_null(i) {
                out.push(None);
                continue;
            }
            let items = list.value(i);
            let items: Vec<String> = items
                .as_string::<i32>()
                .iter()
                .map(|w| w.expect("a word is never NULL").to_string())
                .collect();
            out.push(Some(items));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// words()

/// A character of `lo..=hi` (code points that are not characters are drawn again).
fn in_range(rng: &mut StdRng, lo: u32, hi: u32) -> char {
    loop {
        if let Some(c) = char::from_u32(rng.random_range(lo..=hi)) {
            return c;
        }
    }
}

/// A character of one of `ranges`.
fn in_ranges(rng: &mut StdRng, ranges: &[(u32, u32)]) -> char {
    let (lo, hi) = ranges[rng.random_range(0..ranges.len())];
    in_range(rng, lo, hi)
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// ASCII words with the usual traps: apostrophes, underscores, digits.
const ASCII_WORDS: &[&str] = &[
    "the",
    "Don't",
    "snake_case",
    "x1",
    "42",
    "_",
    "__init__",
    "a-b",
    "e.g.",
    "3.14",
    "C++",
];
/// Digits of scripts other than ASCII (all `\d`): Arabic-Indic, extended Arabic-Indic,
/// Devanagari, Thai, fullwidth, mathematical.
const OTHER_DIGITS: &[(u32, u32)] = &[
    (0x0660, 0x0669),
    (0x06F0, 0x06F9),
    (0x0966, 0x096F),
    (0x0E50, 0x0E59),
    (0xFF10, 0xFF19),
    (0x1D7CE, 0x1D7FF),
];
/// Scripts without case: CJK, Hebrew (with its points), Arabic letters (with harakat and
/// tatweel), Thai (the whole block, marks and unassigned code points included), kana, Hangul,
/// Devanagari letters and vowel signs.
const CASELESS: &[(u32, u32)] = &[
    (0x4E00, 0x9FFF),
    (0x05D0, 0x05EA),
    (0x05B0, 0x05BD),
    (0x0621, 0x064A),
    (0x064B, 0x065F),
    (0x0640, 0x0640),
    (0x0E00, 0x0E7F),
    (0x3041, 0x3096),
    (0x30A1, 0x30FC),
    (0xAC00, 0xD7A3),
    (0x0905, 0x0939),
    (0x093E, 0x094D),
];
/// Letters with case (and the symbols among them): Latin-1 and Latin Extended, Greek
/// (unassigned code points included), Cyrillic (its combining marks included), Latin Extended
/// Additional, fullwidth Latin.
const CASED: &[(u32, u32)] = &[
    (0x00C0, 0x00FF),
    (0x0100, 0x024F),
    (0x0370, 0x03FF),
    (0x0400, 0x04FF),
    (0x1E00, 0x1EFF),
    (0xFF21, 0xFF3A),
    (0xFF41, 0xFF5A),
];
/// Connector punctuation other than `_` (all `\w`).
const CONNECTORS: &[char] = &[
    '\u{203F}', '\u{2040}', '\u{2054}', '\u{FE33}', '\u{FE34}', '\u{FE4D}', '\u{FE4E}', '\u{FE4F}',
    '\u{FF3F}',
];
/// Format characters: the joiners ZWNJ and ZWJ (`\w`: Join_Control) and others that are not:
/// zero-width space, word joiner, soft hyphen, BOM, LRM, Arabic letter mark.
const FORMAT: &[char] = &[
    '\u{200C}', '\u{200D}', '\u{200C}', '\u{200D}', '\u{200B}', '\u{2060}', '\u{00AD}', '\u{FEFF}',
    '\u{200E}', '\u{061C}',
];
/// Emoji (symbols, not `\w`) and skin-tone modifiers (`Sk`).
const EMOJI: &[(u32, u32)] = &[
    (0x1F300, 0x1F5FF),
    (0x1F600, 0x1F64F),
    (0x1F900, 0x1F9FF),
    (0x1F3FB, 0x1F3FF),
    (0x2600, 0x26FF),
];
/// Emoji sequences: ZWJ, keycap (VS16 and U+20E3 are marks, so `\w`), flag, skin tone.
const EMOJI_SEQUENCES: &[&str] = &[
    "👩\u{200D}💻",
    "1\u{FE0F}\u{20E3}",
    "🇫🇷",
    "❤\u{FE0F}",
    "👍🏽",
    "e\u{301}",
];
/// Separators: ASCII whitespace and controls, NEL, no-break spaces, the Unicode spaces, line
/// and paragraph separators.
const SEPARATORS: &[char] = &[
    ' ', ' ', ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{A0}', '\u{A0}', '\u{1680}',
    '\u{2000}', '\u{2003}', '\u{2007}', '\u{2009}', '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}',
    '\u{205F}', '\u{3000}',
];
/// Characters whose class is easy to get wrong: Roman numerals (`Nl`, alphabetic), circled
/// letters (`So` but alphabetic) and digits (`No`), superscripts and fractions (`No`), modifier
/// letters (`Lm`) next to modifier symbols (`Sk`), mathematical alphanumerics, Latin-1's
/// symbols and ª º µ, Unicode sub/superscripts.
const TRICKY: &[(u32, u32)] = &[
    (0x2160, 0x2188),
    (0x2460, 0x24FF),
    (0x00A1, 0x00BF),
    (0x02B0, 0x02FF),
    (0x1D400, 0x1D7FF),
    (0x2070, 0x209C),
    (0x0080, 0x00A0),
];

/// Appends one random piece of text.
fn push_piece(rng: &mut StdRng, text: &mut String) {
    match rng.random_range(0..22) {
        0..=3 => text.push(in_range(rng, 0x20, 0x7E)),
        4 => text.push(in_range(rng, 0x00, 0x1F)),
        5 => text.push_str(pick(rng, ASCII_WORDS)),
        6 => text.push('_'),
        7 => text.push(in_range(rng, 0x0300, 0x036F)),
        8 => {
            // A combining mark with no letter to combine with.
            text.push(pick(rng, &[' ', '\u{A0}', '-', '\u{3000}']));
            text.push(in_range(rng, 0x0300, 0x036F));
        }
        9 => text.push(in_ranges(rng, OTHER_DIGITS)),
        10 | 11 => text.push(in_ranges(rng, CASELESS)),
        12 | 13 => text.push(in_ranges(rng, CASED)),
        14 => text.push(pick(rng, CONNECTORS)),
        15 => text.push(pick(rng, FORMAT)),
        16 => text.push(in_ranges(rng, EMOJI)),
        17 => text.push_str(pick(rng, EMOJI_SEQUENCES)),
        18 | 19 => text.push(pick(rng, SEPARATORS)),
        20 => text.push(in_ranges(rng, TRICKY)),
        _ => text.push(in_range(rng, 0, 0x10FFFF)),
    }
}

/// A random text (sometimes empty, sometimes starting with a combining mark).
fn random_text(rng: &mut StdRng) -> String {
    let mut text = String::new();
    if rng.random_bool(0.05) {
        return text;
    }
    if rng.random_bool(0.1) {
        text.push(in_range(rng, 0x0300, 0x036F));
    }
    for _ in 0..rng.random_range(1..40) {
        push_piece(rng, &mut text);
    }
    text
}

/// `text` with its code points spelled out, for failure messages.
fn described(text: &Option<String>) -> String {
    match text {
        None => "NULL".to_string(),
        Some(text) => {
            let code_points: Vec<String> = text
                .chars()
                .map(|c| format!("U+{:04X}", c as u32))
                .collect();
            format!("{text:?} [{}]", code_points.join(" "))
        }
    }
}

#[test]
fn words_are_the_matches_of_the_regex_w_plus() {
    let word = Regex::new(r"\w+").unwrap();
    let rt = runtime();
    for seed in seeds(4) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let texts: Vec<Option<String>> = (0..500)
            .map(|_| {
                if rng.random_bool(0.03) {
                    None
                } else {
                    Some(random_text(&mut rng))
                }
            })
            .collect();
        let expected: Vec<Option<Vec<String>>> = texts
            .iter()
            .map(|text| {
                text.as_ref().map(|text| {
                    word.find_iter(text)
                        .map(|m| m.as_str().to_string())
                        .collect()
                })
            })
            .collect();
        let mismatches_of = |got: &[Option<Vec<String>>]| -> Vec<String> {
            texts
                .iter()
                .zip(&expected)
                .zip(got)
                .enumerate()
                .filter(|(_, ((_, e), g))| e != g)
                .map(|(i, ((text, e), g))| {
                    format!(
                        "row {i}: {}\n  \\w+:     {e:?}\n  words(): {g:?}",
                        described(text)
                    )
                })
                .collect()
        };
        let utf8: ArrayRef = Arc::new(StringArray::from(
            texts.iter().map(|t| t.as_deref()).collect::<Vec<_>>(),
        ));
        // Signature::string accepts every string type (and casts it to Utf8).
        for data_type in [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View] {
            let what = format!("seed {seed}, words() of a {data_type} column");
            let values = cast(&utf8, &data_type).unwrap();
            let (ids, got) = rt.block_on(async {
                let ctx = with_table(plain_session(), vec![("value", values)]);
                let sql = "SELECT id, words(value) AS w FROM t ORDER BY id";
                let batches = run(&ctx, sql, &[], &what).await;
                (int_values(&batches, "id"), string_lists(&batches, "w"))
            });
            assert_eq!(ids, (0..texts.len() as i64).collect::<Vec<_>>(), "{what}");
            assert_eq!(got.len(), expected.len(), "{what}");
            // A NULL text has NULL words (not an empty list): `expected` holds None there.
            assert_no_mismatch(seed, &what, &mismatches_of(got.as_slice()));
        }
        // A constant argument takes the scalar path.
        let what = format!("seed {seed}, words() of a constant");
        let got: Vec<Option<Vec<String>>> = rt.block_on(async {
            let ctx = plain_session();
            let mut got = Vec::new();
            for text in texts.iter().take(40) {
                let value = ScalarValue::Utf8(text.clone());
                let sql = "SELECT words($text) AS w";
                let batches = run(&ctx, sql, &[("text", value)], &what).await;
                let mut lists = string_lists(&batches, "w");
                assert_eq!(lists.len(), 1, "{what}: {}", described(text));
                got.push(lists.pop().unwrap());
            }
            got
        });
        assert_no_mismatch(seed, &what, &mismatches_of(got.as_slice()));
    }
}

#[test]
fn words_of_null_is_null() {
    let rt = runtime();
    let ctx = plain_session();
    let got = rt.block_on(async {
        let batches = run(&ctx, "SELECT words(NULL) AS w", &[], "words(NULL)").await;
        string_lists(&batches, "w")
    });
    let expected: Vec<Option<Vec<String>>> = vec![None];
    assert_eq!(got, expected, "words(NULL) is NULL, not an empty list");
    let got = rt.block_on(async {
        let ctx = with_table(
            plain_session(),
            vec![(
                "value",
                Arc::new(StringArray::from(vec![None, Some(""), Some(" ,"), None])) as ArrayRef,
            )],
        );
        let sql = "SELECT id, words(value) AS w FROM t ORDER BY id";
        let batches = run(&ctx, sql, &[], "words() of NULL rows").await;
        string_lists(&batches, "w")
    });
    let expected: Vec<Option<Vec<String>>> = vec![None, Some(vec![]), Some(vec![]), None];
    assert_eq!(
        got, expected,
        "NULL rows give NULL, empty texts an empty list"
    );
}

// ---------------------------------------------------------------------------------------------
// tumble() and hop()

/// Timestamps are drawn from ±95 years around the epoch, in microseconds.
const RANGE: i64 = 3_000_000_000_000_000;

/// Instants on calendar edges (in UTC, which has no daylight saving time).
const EDGES: &[i64] = &[
    0,
    -1,
    1,
    -1_000_000,             // 1969-12-31T23:59:59
    -86_400_000_000,        // 1969-12-31T00:00:00
    -2_208_988_800_000_000, // 1900-01-01
    -2_203_891_200_000_001, // 1900-02-28T23:59:59.999999 (1900 has no 29 February)
    -2_203_891_200_000_000, // 1900-03-01
    -2_147_483_648_000_000, // 1901-12-13T20:45:52 (i32 seconds' minimum)
    951_868_799_999_999,    // 2000-02-29T23:59:59.999999
    951_868_800_000_000,    // 2000-03-01
    1_700_000_000_000_000,  // 2023-11-14T22:13:20
    2_147_483_648_000_000,  // 2038-01-19T03:14:08 (one past i32 seconds' maximum)
    -9_223_372_036_000_000, // 1677-09-21T00:12:44 (near i64 nanoseconds' minimum)
    9_223_372_036_000_000,  // 2262-04-11T23:47:16 (near i64 nanoseconds' maximum)
];

/// Random instants, and instants on, just before and just after `k * step + offset` for each
/// offset (window boundaries), plus [`EDGES`] and NULLs.
fn instants_near(rng: &mut StdRng, step: i64, offsets: &[i64]) -> Vec<Option<i64>> {
    let mut out: Vec<Option<i64>> = vec![None];
    out.extend(EDGES.iter().map(|&t| Some(t)));
    let near = |out: &mut Vec<Option<i64>>, k: i64| {
        for &offset in offsets {
            let b = k * step + offset;
            out.extend([b - 1, b, b + 1].map(Some));
        }
    };
    for k in -2..=2 {
        near(&mut out, k);
    }
    for _ in 0..100 {
        out.push(Some(rng.random_range(-RANGE..RANGE)));
        let k = rng.random_range(-RANGE / step..RANGE / step);
        near(&mut out, k);
    }
    out.push(None);
    out
}

/// Lengths as users write them, with their length in microseconds.
const NAMED_SIZES: &[(&str, i64)] = &[
    ("1 millisecond", 1_000),
    ("250 milliseconds", 250_000),
    ("0.5 seconds", 500_000),
    ("7 seconds", 7_000_000),
    ("7000 milliseconds", 7_000_000),
    ("7000123 microseconds", 7_000_123),
    ("1 minute", 60_000_000),
    ("13 minutes", 780_000_000),
    ("90 minutes", 5_400_000_000),
    ("1 hour 30 minutes", 5_400_000_000),
    ("1 day", 86_400_000_000),
    ("25 hours", 90_000_000_000),
    ("1 day 1 hour", 90_000_000_000),
    ("1.5 days", 129_600_000_000),
    ("2 days", 172_800_000_000),
];

/// A random window length from 1 ms to 2 days: (as SQL text, in microseconds). Most do not
/// divide a day.
fn random_length(rng: &mut StdRng) -> (String, i64) {
    match rng.random_range(0..4) {
        0 => {
            let (text, micros) = pick(rng, NAMED_SIZES);
            (text.to_string(), micros)
        }
        1 => {
            let ms = rng.random_range(1..=172_800_000i64);
            (format!("{ms} milliseconds"), ms * 1_000)
        }
        2 => {
            let us = rng.random_range(1_000..=172_800_000_000i64);
            (format!("{us} microseconds"), us)
        }
        _ => {
            let s = rng.random_range(1..=172_800i64);
            (format!("{s} seconds"), s * 1_000_000)
        }
    }
}

/// The independent definition of `tumble()`: the start of the `size`-long window holding `t`.
fn tumble_start(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

/// The independent definition of `hop()`: every `k * slide` with `k*slide <= t < k*slide +
/// size`. `k*slide <= t` bounds `k` by `t.div_euclid(slide)` from above, and `t - size <
/// k*slide` by `(t - size).div_euclid(slide)` from below; each `k` in between is tested.
fn hop_starts(t: i64, size: i64, slide: i64) -> Vec<i64> {
    let last = t.div_euclid(slide);
    let first = (t - size).div_euclid(slide);
    (first..=last)
        .map(|k| k * slide)
        .filter(|&start| start <= t && t < start + size)
        .collect()
}

#[test]
fn the_references_give_the_unit_tests_answers() {
    // The reference itself, on the unit test's example: 25 s every 10 s.
    let s = 1_000_000;
    assert_eq!(hop_starts(37 * s, 25 * s, 10 * s), [20 * s, 30 * s]);
    assert_eq!(hop_starts(40 * s, 25 * s, 10 * s), [20 * s, 30 * s, 40 * s]);
    assert_eq!(hop_starts(-1, 25 * s, 10 * s), [-20 * s, -10 * s]);
    assert_eq!(tumble_start(-1, 10 * s), -10 * s);
}

#[test]
fn tumble_is_integer_arithmetic() {
    let rt = runtime();
    for seed in seeds(4) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..30 {
            let (text, size) = random_length(&mut rng);
            let ts = instants_near(&mut rng, size, &[0]);
            let what = format!("seed {seed}, tumble(ts, '{text}') ({size} µs)");
            let sql = format!("SELECT id, tumble(ts, '{text}') AS start FROM t ORDER BY id");
            let (ids, data_type, got) = rt.block_on(async {
                let ctx = with_table(plain_session(), vec![("ts", utc_micros(&ts))]);
                let batches = run(&ctx, &sql, &[], &what).await;
                (
                    int_values(&batches, "id"),
                    column_type(&batches, "start"),
                    instants(&batches, "start"),
                )
            });
            assert_eq!(ids, (0..ts.len() as i64).collect::<Vec<_>>(), "{what}");
            assert_eq!(data_type, utc_micros_type(), "{what}: the type of ts");
            let mismatches: Vec<String> = ts
                .iter()
                .zip(&got)
                .filter_map(|(t, g)| {
                    let expected = t.map(|t| tumble_start(t, size));
                    (expected != *g)
                        .then(|| format!("ts {t:?}: expected {expected:?}, tumble() {g:?}"))
                })
                .collect();
            assert_eq!(got.len(), ts.len(), "{what}");
            assert_no_mismatch(seed, &what, &mismatches);
        }
    }
}

/// Window shapes users write: (size, slide) as text and in microseconds.
const NAMED_HOPS: &[(&str, &str, i64, i64)] = &[
    ("25 seconds", "10 seconds", 25_000_000, 10_000_000),
    ("10 seconds", "10 seconds", 10_000_000, 10_000_000),
    ("1 hour", "15 minutes", 3_600_000_000, 900_000_000),
    ("1 day", "7 hours", 86_400_000_000, 25_200_000_000),
    ("25 hours", "1 day", 90_000_000_000, 86_400_000_000),
    ("7 seconds", "3 seconds", 7_000_000, 3_000_000),
    ("1 minute", "7 seconds", 60_000_000, 7_000_000),
    ("2 days", "1 day 1 hour", 172_800_000_000, 90_000_000_000),
    ("1.5 days", "12 hours", 129_600_000_000, 43_200_000_000),
];

/// A random (size, slide) with `size >= slide`: a multiple of it, or not.
fn random_hop(rng: &mut StdRng) -> (String, String, i64, i64) {
    let micros = |n: i64| format!("{n} microseconds");
    match rng.random_range(0..3) {
        0 => {
            let (size, slide, size_us, slide_us) = pick(rng, NAMED_HOPS);
            (size.to_string(), slide.to_string(), size_us, slide_us)
        }
        1 => {
            let slide = rng.random_range(1_000..=3_600_000_000i64);
            let size = slide * rng.random_range(1..=12i64);
            (micros(size), micros(slide), size, slide)
        }
        _ => {
            let slide = rng.random_range(1_000..=3_600_000_000i64);
            let size = slide * rng.random_range(1..=12i64) + rng.random_range(1..slide);
            (micros(size), micros(slide), size, slide)
        }
    }
}

#[test]
fn hop_lists_every_window_that_holds_the_row() {
    let rt = runtime();
    for seed in seeds(4) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..30 {
            let (size_text, slide_text, size, slide) = random_hop(&mut rng);
            // Boundaries: window starts (k * slide) and window ends (k * slide + size).
            let ts = instants_near(&mut rng, slide, &[0, size]);
            let what = format!(
                "seed {seed}, hop(ts, '{size_text}', '{slide_text}') ({size} µs every {slide} µs)"
            );
            let sql = format!(
                "SELECT id, hop(ts, '{size_text}', '{slide_text}') AS starts FROM t ORDER BY id"
            );
            let (ids, data_type, got) = rt.block_on(async {
                let ctx = with_table(plain_session(), vec![("ts", utc_micros(&ts))]);
                let batches = run(&ctx, &sql, &[], &what).await;
                (
                    int_values(&batches, "id"),
                    column_type(&batches, "starts"),
                    instant_lists(&batches, "starts"),
                )
            });
            assert_eq!(ids, (0..ts.len() as i64).collect::<Vec<_>>(), "{what}");
            assert_eq!(
                data_type,
                DataType::List(Arc::new(Field::new_list_field(utc_micros_type(), true))),
                "{what}: a list of ts's type"
            );
            assert_eq!(got.len(), ts.len(), "{what}");
            let mut mismatches = Vec::new();
            let mut out_of_order = Vec::new();
            for (t, g) in ts.iter().zip(&got) {
                let expected = t.map(|t| hop_starts(t, size, slide));
                if let Some(e) = &expected {
                    // The reference's own sanity: size / slide windows, one more at most when
                    // the slide does not divide the size.
                    let n = (size / slide) as usize;
                    let fits = if size % slide == 0 {
                        e.len() == n
                    } else {
                        e.len() == n || e.len() == n + 1
                    };
                    assert!(fits, "{what}: the reference gives {e:?} for ts {t:?}");
                }
                let sorted = g.clone().map(|mut g| {
                    g.sort_unstable();
                    g
                });
                if sorted != expected {
                    mismatches.push(format!("ts {t:?}: expected {expected:?}, hop() {g:?}"));
                } else if sorted != *g {
                    out_of_order.push(format!("ts {t:?}: hop() {g:?}"));
                }
            }
            assert_no_mismatch(seed, &what, &mismatches);
            // Not promised by the module docs (for_each_window yields the latest first), but the
            // UDF reverses its output on purpose: earliest first.
            assert_no_mismatch(
                seed,
                &format!("{what}: starts not in ascending order"),
                &out_of_order,
            );
        }
    }
}

#[test]
fn hop_refuses_a_slide_longer_than_the_size() {
    // Windows with gaps would leave some rows in no window; hop() refuses them at planning
    // rather than return empty lists.
    let rt = runtime();
    for seed in seeds(4) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shapes = vec![
            ("10 seconds".to_string(), "25 seconds".to_string()),
            ("1 millisecond".to_string(), "2 milliseconds".to_string()),
            ("1 hour".to_string(), "1 day".to_string()),
        ];
        for _ in 0..5 {
            let size = rng.random_range(1_000..=3_600_000_000i64);
            let slide = size + rng.random_range(1..=size);
            shapes.push((
                format!("{size} microseconds"),
                format!("{slide} microseconds"),
            ));
        }
        let ts = [Some(-1), Some(0), Some(1_700_000_000_000_000)];
        for (size, slide) in &shapes {
            let what = format!("seed {seed}, hop(ts, '{size}', '{slide}')");
            let literal =
                format!("SELECT id, hop(ts, '{size}', '{slide}') AS starts FROM t ORDER BY id");
            let placeholders = "SELECT id, hop(ts, $size, $slide) AS starts FROM t ORDER BY id";
            let params = [
                ("size", ScalarValue::Utf8(Some(size.clone()))),
                ("slide", ScalarValue::Utf8(Some(slide.clone()))),
            ];
            for (sql, params) in [
                (literal.as_str(), &params[..0]),
                (placeholders, &params[..]),
            ] {
                let result = rt.block_on(async {
                    let ctx = with_table(plain_session(), vec![("ts", utc_micros(&ts))]);
                    try_run(&ctx, sql, params).await
                });
                let e = match result {
                    Ok(batches) => panic!("{what}: {sql} should be refused, gave {batches:?}"),
                    Err(e) => e,
                };
                assert!(
                    e.to_string().contains("slide"),
                    "{what}: {sql}: the error should name the slide: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The UtcIntervalAsDuration rewrite

#[test]
fn window_ends_are_the_same_with_and_without_the_interval_rewrite() {
    // (size, slide) as --param values, and in microseconds.
    let shapes: &[(&str, &str, i64, i64)] = &[
        ("7 seconds", "7 seconds", 7_000_000, 7_000_000),
        ("13 minutes", "1 minute", 780_000_000, 60_000_000),
        ("25 hours", "1 day", 90_000_000_000, 86_400_000_000),
        ("1 day", "7 hours", 86_400_000_000, 25_200_000_000),
        ("1.5 days", "12 hours", 129_600_000_000, 43_200_000_000),
        (
            "1 day 1 hour",
            "1 day 1 hour",
            90_000_000_000,
            90_000_000_000,
        ),
        (
            "7000 milliseconds",
            "3000 milliseconds",
            7_000_000,
            3_000_000,
        ),
        ("250 microseconds", "100 microseconds", 250, 100),
    ];
    let tumbling = "SELECT id, tumble(ts, $size) AS window_start, \
                      tumble(ts, $size) + CAST($size AS INTERVAL) AS window_end \
                    FROM t ORDER BY id";
    let sliding = "SELECT id, window_start, \
                      window_start + CAST($size AS INTERVAL) AS window_end, \
                      window_start - CAST($slide AS INTERVAL) AS previous_start \
                    FROM (SELECT id, unnest(hop(ts, $size, $slide)) AS window_start FROM t) \
                    ORDER BY id, window_start";
    let rt = runtime();
    for seed in seeds(2) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        for &(size_text, slide_text, size, slide) in shapes {
            let ts = instants_near(&mut rng, slide, &[0, size]);
            let params = [
                ("size", param_value(size_text)),
                ("slide", param_value(slide_text)),
            ];
            for sql in [tumbling, sliding] {
                let what = format!("seed {seed}, size '{size_text}', slide '{slide_text}': {sql}");
                let ((with_plan, with_rule), (without_plan, without_rule)) = rt.block_on(async {
                    let mut results = Vec::new();
                    for ctx in [dfstream::query::session(2), plain_session()] {
                        let ctx = with_table(ctx, vec![("ts", utc_micros(&ts))]);
                        let df = planned(&ctx, sql, &params)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        let plan = df
                            .clone()
                            .into_optimized_plan()
                            .unwrap_or_else(|e| panic!("{what}: {e}"))
                            .display_indent()
                            .to_string();
                        let batches = df.collect().await.unwrap_or_else(|e| panic!("{what}: {e}"));
                        results.push((plan, batches));
                    }
                    let without = results.pop().unwrap();
                    (results.pop().unwrap(), without)
                });
                // Otherwise both sides would take the same (calendar) path.
                assert!(
                    with_plan.contains("DurationMicrosecond"),
                    "{what}: the rule did not apply:\n{with_plan}"
                );
                assert!(
                    !without_plan.contains("DurationMicrosecond"),
                    "{what}: a duration without the rule:\n{without_plan}"
                );
                let ids = int_values(&with_rule, "id");
                assert_eq!(ids, int_values(&without_rule, "id"), "{what}");
                let starts = instants(&with_rule, "window_start");
                assert_eq!(
                    starts,
                    instants(&without_rule, "window_start"),
                    "{what}: window_start"
                );
                let mut columns = vec![("window_end", size)];
                if sql == sliding {
                    columns.push(("previous_start", -slide));
                }
                for (name, offset) in columns {
                    let what = format!("{what}: {name}");
                    assert_eq!(column_type(&with_rule, name), utc_micros_type(), "{what}");
                    assert_eq!(
                        column_type(&without_rule, name),
                        utc_micros_type(),
                        "{what}"
                    );
                    let got_with = instants(&with_rule, name);
                    let got_without = instants(&without_rule, name);
                    assert_eq!(got_with.len(), starts.len(), "{what}");
                    assert_eq!(got_without.len(), starts.len(), "{what}");
                    let mismatches: Vec<String> = (0..starts.len())
                        .filter_map(|i| {
                            let expected = starts[i].map(|s| s + offset);
                            (got_with[i] != expected || got_without[i] != expected).then(|| {
                                format!(
                                    "row id {}: window_start {:?}: expected {expected:?}, \
                                     with the rule {:?}, without {:?}",
                                    ids[i], starts[i], got_with[i], got_without[i]
                                )
                            })
                        })
                        .collect();
                    assert_no_mismatch(seed, &what, &mismatches);
                }
                // And the windows are those of the independent definitions.
                let expected: Vec<(i64, Option<i64>)> = if sql == tumbling {
                    ts.iter()
                        .enumerate()
                        .map(|(i, t)| (i as i64, t.map(|t| tumble_start(t, size))))
                        .collect()
                } else {
                    ts.iter()
                        .enumerate()
                        .flat_map(|(i, t)| {
                            t.map(|t| hop_starts(t, size, slide))
                                .unwrap_or_default()
                                .into_iter()
                                .map(move |s| (i as i64, Some(s)))
                        })
                        .collect()
                };
                let got: Vec<(i64, Option<i64>)> = ids.iter().copied().zip(starts).collect();
                assert!(
                    got == expected,
                    "seed {seed} (replay with DFSTREAM_SEED={seed}): {what}: windows differ \
                     from the independent definition"
                );
            }
        }
    }
}
