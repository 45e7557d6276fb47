//! Structured input (`--format csv|json|parquet`): each format against DataFusion's own batch
//! reader of the same files running the same SQL (the oracle), over random splits into
//! triggers; malformed records in each `--on-error` mode with `--bad-records`; a schema
//! inferred once and kept; flags that do not fit the format refused.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::file_format::options::JsonReadOptions;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
use dfstream::batch::TextCounters;
use dfstream::format::{CsvOptions, FormatKind, FormatSpec, OnError, StreamFormat};
use dfstream::query::lines::TriggerSlot;
use dfstream::query::plan::QueryFile;
use dfstream::query::{OutputMode, QuerySpec, StreamingQuery};
use dfstream::source::{InputUnit, Place};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::util::{ReplayHint, Workspace, assert_ok, repo, runtime, seeds, sorted_rows, stderr};

const COLUMNS: &str = "ts TIMESTAMP, page VARCHAR, user_id BIGINT, amount DOUBLE";
const PAGES: &[&str] = &[
    "home",
    "about us",
    "a,b",
    "quote \"q\"",
    "café",
    "日本語",
    "",
    "line\nbreak",
];

/// One record of the random input; `None` is NULL (an empty CSV field, a missing JSON key).
#[derive(Debug, Clone)]
struct Click {
    ts: i64,
    page: Option<&'static str>,
    user_id: Option<i64>,
    amount: Option<f64>,
}

fn random_clicks(rng: &mut StdRng, n: usize) -> Vec<Click> {
    (0..n)
        .map(|_| Click {
            ts: 1_767_225_600_000_000 + rng.random_range(0..600) * 1_000_000,
            page: rng
                .random_bool(0.95)
                .then(|| PAGES[rng.random_range(0..PAGES.len())])
                // An empty string is NULL in CSV; keep the formats' answers comparable.
                .filter(|p| !p.is_empty()),
            user_id: rng.random_bool(0.9).then(|| rng.random_range(-5..40)),
            amount: rng
                .random_bool(0.9)
                .then(|| rng.random_range(-1000..100000) as f64 / 100.0),
        })
        .collect()
}

fn iso(micros: i64) -> String {
    dfstream::generate::iso8601(micros)
}

fn csv_text(clicks: &[Click], header: bool) -> Vec<u8> {
    let mut text = String::new();
    if header {
        text.push_str("ts,page,user_id,amount\r\n");
    }
    for c in clicks {
        let page = c.page.map_or(String::new(), |p| {
            if p.contains([',', '"', '\n']) {
                format!("\"{}\"", p.replace('"', "\"\""))
            } else {
                p.to_string()
            }
        });
        let user = c.user_id.map_or(String::new(), |u| u.to_string());
        let amount = c.amount.map_or(String::new(), |a| a.to_string());
        text.push_str(&format!("{},{page},{user},{amount}\n", iso(c.ts)));
    }
    text.into_bytes()
}

fn json_text(clicks: &[Click]) -> Vec<u8> {
    let mut text = String::new();
    for c in clicks {
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), Value::String(iso(c.ts)));
        if let Some(p) = c.page {
            object.insert("page".into(), Value::String(p.into()));
        }
        if let Some(u) = c.user_id {
            object.insert("user_id".into(), Value::from(u));
        }
        if let Some(a) = c.amount {
            object.insert("amount".into(), Value::from(a));
        }
        object.insert("ignored".into(), serde_json::json!({"nested": [1, 2]}));
        text.push_str(&Value::Object(object).to_string());
        text.push('\n');
    }
    text.into_bytes()
}

fn parquet_bytes(clicks: &[Click]) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("page", DataType::Utf8, true),
        Field::new("user_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            clicks.iter().map(|c| c.ts),
        )),
        Arc::new(StringArray::from_iter(clicks.iter().map(|c| c.page))),
        Arc::new(Int64Array::from_iter(clicks.iter().map(|c| c.user_id))),
        Arc::new(Float64Array::from_iter(clicks.iter().map(|c| c.amount))),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

fn extension(kind: FormatKind) -> &'static str {
    match kind {
        FormatKind::Csv => "csv",
        FormatKind::Json => "json",
        FormatKind::Parquet => "parquet",
        FormatKind::Text => "txt",
    }
}

/// The stream table of `kind` over [`COLUMNS`].
async fn stream_format(kind: FormatKind, header: bool, event_time: bool) -> StreamFormat {
    let spec = FormatSpec {
        kind,
        name: "lines".into(),
        columns: Some(COLUMNS.into()),
        csv: (kind == FormatKind::Csv).then(|| CsvOptions {
            header,
            ..Default::default()
        }),
        on_error: OnError::Permissive,
        event_time_column: event_time.then(|| "ts".to_string()),
    };
    StreamFormat::recorded(Some(spec)).await.unwrap()
}

/// The streaming result (the last trigger's in complete mode, every trigger's in append
/// mode) of `sql` over `files` split into `split`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream(
    sql: &str,
    kind: FormatKind,
    header: bool,
    mode: OutputMode,
    partitions: usize,
    dir: &Path,
    files: &[(String, Vec<u8>)],
    split: &[std::ops::Range<usize>],
    engine: &dfstream::query::engine::Engine,
) -> Vec<RecordBatch> {
    let counters = Arc::new(TextCounters::default());
    let format = stream_format(kind, header, false).await;
    let slot = TriggerSlot::new(Arc::clone(&counters), 16 << 20).with_format(format);
    let file = QueryFile {
        path: "formats.sql".into(),
        sql: sql.to_string(),
    };
    let spec = QuerySpec {
        file: &file,
        params: &Default::default(),
        mode: Some(mode),
        partitions,
        event_time: None,
        watermark: None,
    };
    let mut query = StreamingQuery::plan(spec, slot.clone())
        .await
        .unwrap_or_else(|e| panic!("planning failed: {e}"));
    query.use_engine(engine.clone()).unwrap();
    let mut emitted = Vec::new();
    for range in split {
        slot.set(
            files[range.clone()]
                .iter()
                .map(|(name, bytes)| InputUnit {
                    place: Place::File(dir.join(name)),
                    display: name.clone(),
                    ts_micros: 0,
                    range: None,
                    size: Some(bytes.len() as u64),
                    version: None,
                    source: Default::default(),
                })
                .collect(),
        );
        let rows = query.run_trigger().await.unwrap().rows;
        match mode {
            OutputMode::Append => emitted.extend(rows),
            _ => emitted = rows,
        }
    }
    let counts = counters.snapshot();
    assert_eq!(counts.malformed_records, 0, "{sql}");
    emitted
}

/// The oracle: DataFusion's own reader of `kind` over every file in `dir`, the same SQL.
pub(crate) async fn batch(
    sql: &str,
    kind: FormatKind,
    header: bool,
    dir: &Path,
) -> Vec<RecordBatch> {
    let ctx = datafusion::prelude::SessionContext::new();
    let schema = dfstream::format::parse_columns(COLUMNS, "columns")
        .await
        .unwrap();
    let path = format!("{}/", dir.display());
    match kind {
        FormatKind::Csv => {
            let options = CsvReadOptions::new()
                .schema(&schema)
                .has_header(header)
                .newlines_in_values(true);
            ctx.register_csv("lines", &path, options).await.unwrap()
        }
        FormatKind::Json => {
            let options = JsonReadOptions::default().schema(&schema);
            ctx.register_json("lines", &path, options).await.unwrap()
        }
        FormatKind::Parquet => {
            let options = ParquetReadOptions::default().schema(&schema);
            ctx.register_parquet("lines", &path, options).await.unwrap()
        }
        FormatKind::Text => unreachable!(),
    }
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// `count` files of `kind` in `dir`, each of `rows` random records (a number drawn per file):
/// their names and bytes.
pub(crate) fn write_random_files(
    rng: &mut StdRng,
    kind: FormatKind,
    header: bool,
    count: usize,
    rows: std::ops::Range<usize>,
    dir: &Path,
) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let n = rng.random_range(rows.clone());
            let clicks = random_clicks(rng, n);
            let bytes = match kind {
                FormatKind::Csv => csv_text(&clicks, header),
                FormatKind::Json => json_text(&clicks),
                _ => parquet_bytes(&clicks),
            };
            (format!("f{i:02}.{}", extension(kind)), bytes)
        })
        .collect();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    files
}

pub(crate) const QUERIES: &[(&str, OutputMode)] = &[
    (
        "SELECT page, count(*) AS n, count(user_id) AS users, sum(CAST(round(amount * 100) AS BIGINT)) AS cents, \
         min(user_id) AS lo, max(ts) AS last, count(DISTINCT user_id) AS distinct_users \
         FROM lines GROUP BY page",
        OutputMode::Complete,
    ),
    (
        "SELECT date_trunc('minute', ts) AS minute, count(*) AS n, sum(CAST(round(amount * 100) AS BIGINT)) AS cents \
         FROM lines WHERE user_id > 3 GROUP BY 1",
        OutputMode::Complete,
    ),
    (
        "SELECT ts, upper(page) AS page, amount * 2 AS doubled FROM lines WHERE amount > 50",
        OutputMode::Append,
    ),
];

#[test]
fn each_format_streams_the_batch_answer_over_random_splits() {
    let rt = runtime();
    for seed in seeds(6) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        for kind in [FormatKind::Csv, FormatKind::Json, FormatKind::Parquet] {
            let header = kind == FormatKind::Csv && rng.random_bool(0.5);
            let dir = tempfile::tempdir().unwrap();
            let count = rng.random_range(1..8);
            let files = write_random_files(&mut rng, kind, header, count, 0..40, dir.path());
            let mut split = Vec::new();
            let mut start = 0;
            while start < files.len() {
                let len = rng.random_range(1..=(files.len() - start).min(3));
                split.push(start..start + len);
                start += len;
            }
            let partitions = rng.random_range(1..=3);
            for (sql, mode) in QUERIES {
                let context = format!(
                    "seed {seed} (DFSTREAM_SEED={seed}), {kind}, header {header}, split \
                     {split:?}, {partitions} partitions: {sql}"
                );
                rt.block_on(async {
                    let expected = batch(sql, kind, header, dir.path()).await;
                    let got = stream(
                        sql,
                        kind,
                        header,
                        *mode,
                        partitions,
                        dir.path(),
                        &files,
                        &split,
                        &dfstream::query::engine::Engine::Local,
                    )
                    .await;
                    assert_eq!(sorted_rows(&got), sorted_rows(&expected), "{context}");
                });
            }
        }
    }
}

/// A CSV file with good records between bad ones: a missing field, a word for a number, a
/// word for a time, invalid UTF-8, and a quote that never ends.
const BAD_CSV: &[u8] = b"ts,page,user_id,amount\n\
2026-01-01T00:00:00Z,home,1,1.5\n\
2026-01-01T00:00:01Z,home,2\n\
2026-01-01T00:00:02Z,about,3,2.5\n\
2026-01-01T00:00:03Z,about,three,2.5\n\
2026-01-01T00:00:04Z,home,4,4.5\n\
yesterday,home,5,1\n\
2026-01-01T00:00:06Z,caf\xe9,6,1\n\
2026-01-01T00:00:07Z,home,7,7.5\n\
2026-01-01T00:00:08Z,\"broken,8,8.5\n";

const BAD_JSON: &[u8] =
    b"{\"ts\":\"2026-01-01T00:00:00Z\",\"page\":\"home\",\"user_id\":1,\"amount\":1.5}\n\
{\"ts\":\"2026-01-01T00:00:01Z\",\"page\":\"home\",\n\
{\"ts\":\"2026-01-01T00:00:02Z\",\"page\":\"about\",\"user_id\":3,\"amount\":2.5}\n\
{\"ts\":\"2026-01-01T00:00:03Z\",\"page\":\"about\",\"user_id\":\"three\"}\n\
\n\
{\"ts\":\"2026-01-01T00:00:04Z\",\"page\":\"caf\xe9\",\"user_id\":4}\n\
{\"ts\":\"2026-01-01T00:00:07Z\",\"page\":\"home\",\"user_id\":7,\"amount\":7.5}";

/// Good records in both files: user ids 1, 3, 4 (CSV) / 1, 3 (JSON), then 7.
const GOOD_CSV_USERS: &[i64] = &[1, 3, 4, 7];
const GOOD_JSON_USERS: &[i64] = &[1, 3, 7];

fn run_bad(ws: &Workspace, kind: &str, on_error: &str, extra: &[&str]) -> std::process::Output {
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT ts, user_id, page, _corrupt_record FROM lines",
    )
    .unwrap();
    let query = if on_error == "permissive" {
        query
    } else {
        let plain = ws.dir.path().join("plain.sql");
        std::fs::write(&plain, "SELECT ts, user_id, page FROM lines").unwrap();
        plain
    };
    let mut args = vec![
        "--format",
        kind,
        "--schema",
        COLUMNS,
        "--on-error",
        on_error,
        "--trigger",
        "once",
        "--no-console",
    ];
    if kind == "csv" {
        args.push("--header");
    }
    args.extend_from_slice(extra);
    ws.run(&query, &args)
}

fn output_table(ws: &Workspace) -> Vec<RecordBatch> {
    crate::util::read_parquet(&ws.output)
}

fn int_column(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    let mut values = Vec::new();
    for b in batches {
        let column = b.column_by_name(name).unwrap();
        let column = datafusion::arrow::compute::cast(column, &DataType::Int64).unwrap();
        let column = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        values.extend(column.iter());
    }
    values.sort();
    values
}

#[test]
fn malformed_records_are_kept_dropped_or_fail_the_batch_and_are_written_to_bad_records() {
    for (kind, text, good, bad_lines) in [
        ("csv", BAD_CSV, GOOD_CSV_USERS, vec![3u64, 5, 7, 8, 10]),
        ("json", BAD_JSON, GOOD_JSON_USERS, vec![2u64, 4, 6]),
    ] {
        let bad_count = bad_lines.len();
        // Permissive: the bad records are rows with the raw text in _corrupt_record.
        let ws = Workspace::new();
        ws.add_file(&format!("clicks.{kind}"), text);
        let bad_dir = ws.dir.path().join("bad");
        let progress = ws.dir.path().join("progress.jsonl");
        let out = run_bad(
            &ws,
            kind,
            "permissive",
            &[
                "--bad-records",
                bad_dir.to_str().unwrap(),
                "--progress",
                progress.to_str().unwrap(),
            ],
        );
        assert_ok(&out);
        let table = output_table(&ws);
        let users = int_column(&table, "user_id");
        let mut expected: Vec<Option<i64>> = vec![None; bad_count];
        expected.extend(good.iter().map(|&u| Some(u)));
        assert_eq!(users, expected, "{kind}");
        let corrupt: Vec<String> = table
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name("_corrupt_record").unwrap();
                let column = datafusion::arrow::compute::cast(column, &DataType::Utf8).unwrap();
                let column = column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                column
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(corrupt.len(), bad_count, "{kind}: {corrupt:?}");
        // The bad-records file: each with its file, line, byte offset, reason and text.
        let files: Vec<_> = std::fs::read_dir(&bad_dir).unwrap().collect();
        assert_eq!(files.len(), 1, "{kind}");
        let kept =
            std::fs::read_to_string(bad_dir.join("batch-00000000000000000000.jsonl")).unwrap();
        let kept: Vec<Value> = kept
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            kept.iter()
                .map(|r| r["line"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            bad_lines,
            "{kind}: {kept:?}"
        );
        for record in &kept {
            let line = record["line"].as_u64().unwrap() as usize;
            let offset = record["byteOffset"].as_u64().unwrap() as usize;
            // The offset is where that line begins in the file.
            let starts: Vec<usize> = std::iter::once(0)
                .chain(memchr_positions(text).map(|p| p + 1))
                .collect();
            assert_eq!(starts[line - 1], offset, "{kind}: {record}");
            assert!(
                record["file"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("clicks.{kind}"))
            );
            assert!(!record["reason"].as_str().unwrap().is_empty(), "{record}");
            let raw = String::from_utf8_lossy(&text[offset..]);
            let first_line = raw.lines().next().unwrap();
            assert!(
                record["record"].as_str().unwrap().starts_with(first_line),
                "{kind}: {record}"
            );
        }
        // Counted in the progress record, batch-wide and for the source.
        let record: Value = serde_json::from_str(
            std::fs::read_to_string(&progress)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            record["input"]["malformedRecords"], bad_count as u64,
            "{record}"
        );
        assert_eq!(
            record["sources"][0]["input"]["malformedRecords"], bad_count as u64,
            "{record}"
        );
        assert_eq!(record["numInputRows"], (bad_count + good.len()) as u64);
        // The same input makes the same decisions: a second job writes the same file.
        let again = Workspace::new();
        again.add_file(&format!("clicks.{kind}"), text);
        let bad_again = again.dir.path().join("bad");
        assert_ok(&run_bad(
            &again,
            kind,
            "permissive",
            &["--bad-records", bad_again.to_str().unwrap()],
        ));
        let first = std::fs::read_to_string(bad_dir.join("batch-00000000000000000000.jsonl"))
            .unwrap()
            .replace(ws.input.to_str().unwrap(), "");
        let second = std::fs::read_to_string(bad_again.join("batch-00000000000000000000.jsonl"))
            .unwrap()
            .replace(again.input.to_str().unwrap(), "");
        assert_eq!(first, second, "{kind}");

        // Drop: only the good records, the bad ones counted.
        let ws = Workspace::new();
        ws.add_file(&format!("clicks.{kind}"), text);
        let out = run_bad(&ws, kind, "drop", &[]);
        assert_ok(&out);
        let users = int_column(&output_table(&ws), "user_id");
        assert_eq!(
            users,
            good.iter().map(|&u| Some(u)).collect::<Vec<_>>(),
            "{kind}"
        );
        assert!(
            stderr(&out).contains(&format!("{bad_count} malformed records")),
            "{}",
            stderr(&out)
        );

        // Fail: the batch fails, naming the file, the line and the byte offset.
        let ws = Workspace::new();
        ws.add_file(&format!("clicks.{kind}"), text);
        let out = run_bad(&ws, kind, "fail", &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains(&format!("clicks.{kind}: line {}", bad_lines[0])),
            "{message}"
        );
        assert!(message.contains("--on-error permissive"), "{message}");
        assert!(message.contains("checkpoint skip-batch 0"), "{message}");
    }
}

#[test]
fn records_longer_than_the_limit_are_malformed_and_an_unclosed_quote_costs_one_record() {
    // CSV: an unclosed quote on line 3 swallows the rest of the first file (300 KB);
    // JSON: one 300 KB line in the middle. The limit is 64 KiB.
    let swallowed: String = (0..20_000)
        .map(|i| format!("2026-01-01T00:00:{:02}Z,home,{i},1\n", i % 60))
        .collect();
    let csv = format!(
        "ts,page,user_id,amount\n2026-01-01T00:00:00Z,home,1,1\n\
         2026-01-01T00:00:01Z,\"unclosed,2,2\n{swallowed}"
    );
    let long_page = "p".repeat(300_000);
    let json = format!(
        "{{\"ts\":\"2026-01-01T00:00:00Z\",\"page\":\"home\",\"user_id\":1}}\n\
         {{\"ts\":\"2026-01-01T00:00:01Z\",\"page\":\"{long_page}\",\"user_id\":2}}\n\
         {{\"ts\":\"2026-01-01T00:00:02Z\",\"page\":\"home\",\"user_id\":3}}\n"
    );
    let later_csv = "ts,page,user_id,amount\n2026-01-01T00:01:00Z,about,9,9\n";
    let later_json = "{\"ts\":\"2026-01-01T00:01:00Z\",\"page\":\"about\",\"user_id\":9}\n";
    for (kind, first, later, good) in [
        ("csv", csv.as_str(), later_csv, vec![Some(1), Some(9)]),
        (
            "json",
            json.as_str(),
            later_json,
            vec![Some(1), Some(3), Some(9)],
        ),
    ] {
        for mode in ["drop", "permissive", "fail"] {
            let ws = Workspace::new();
            ws.add_file(&format!("a.{kind}"), first);
            ws.add_file(&format!("b.{kind}"), later);
            let out = run_bad(&ws, kind, mode, &["--max-line-bytes", "64KiB"]);
            let message = stderr(&out);
            let what = format!("{kind} {mode}: {message}");
            if mode == "fail" {
                assert_eq!(out.status.code(), Some(1), "{what}");
                let line = if kind == "csv" { 3 } else { 2 };
                assert!(
                    message.contains(&format!("a.{kind}: line {line}"))
                        && message.contains("longer than --max-line-bytes (65536 bytes)"),
                    "{what}"
                );
                continue;
            }
            assert_ok(&out);
            assert!(message.contains("1 malformed records"), "{what}");
            let table = output_table(&ws);
            let mut expected = good.clone();
            if mode == "permissive" {
                expected.insert(0, None);
                // The long record's start, cut at 64 KiB.
                let kept: Vec<usize> = table
                    .iter()
                    .flat_map(|b| {
                        let column = b.column_by_name("_corrupt_record").unwrap();
                        let column =
                            datafusion::arrow::compute::cast(column, &DataType::Utf8).unwrap();
                        let column = column.as_any().downcast_ref::<StringArray>().unwrap();
                        column.iter().flatten().map(str::len).collect::<Vec<_>>()
                    })
                    .collect();
                assert!(
                    kept.len() == 1 && (64 * 1024 - 1..=64 * 1024).contains(&kept[0]),
                    "{what}: {kept:?}"
                );
            }
            assert_eq!(int_column(&table, "user_id"), expected, "{what}");
        }
    }
}

fn memchr_positions(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}

#[test]
fn an_inferred_schema_is_kept_in_the_checkpoint_and_another_schema_is_refused() {
    let ws = Workspace::new();
    ws.add_file(
        "a.json",
        "{\"page\":\"home\",\"n\":1}\n{\"page\":\"about\",\"n\":2}\n",
    );
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT page, sum(n) AS total FROM lines GROUP BY page",
    )
    .unwrap();
    let infer = [
        "--format",
        "json",
        "--infer-schema",
        "--trigger",
        "once",
        "--no-console",
    ];
    let out = ws.run(&query, &infer);
    assert_ok(&out);
    let meta = std::fs::read_to_string(ws.checkpoint.join("metadata")).unwrap();
    assert!(
        meta.contains("\\\"n\\\" BIGINT") || meta.contains("\"n\" BIGINT"),
        "{meta}"
    );
    // A file whose `n` is a string (inferred alone, a VARCHAR) arrives: the kept columns
    // stay, so its record does not fit them.
    ws.add_file(
        "b.json",
        "{\"page\":\"home\",\"n\":\"lots\"}\n{\"page\":\"home\",\"n\":5}\n",
    );
    std::fs::remove_file(ws.input.join("a.json")).unwrap();
    let out = ws.run(&query, &infer);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("1 malformed records"),
        "{}",
        stderr(&out)
    );
    let rows = crate::util::output_rows(&ws.output);
    assert!(
        rows.iter().any(|r| r.contains("home") && r.contains('6')),
        "{rows:?}"
    );
    // Another schema on the same checkpoint: refused, before anything runs.
    let out = ws.run(
        &query,
        &[
            "--format",
            "json",
            "--schema",
            "page VARCHAR, n DOUBLE",
            "--trigger",
            "once",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("input format or schema differs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flags_that_do_not_fit_the_format_are_refused() {
    let ws = Workspace::new();
    let query = repo("sql/wordcount.sql");
    for (args, needle) in [
        (
            vec!["--format", "json", "--header", "--schema", "a INT"],
            "--header is a CSV option",
        ),
        (vec!["--format", "csv"], "needs the columns"),
        (vec!["--schema", "a INT"], "text input has one column"),
        (vec!["--on-error", "drop"], "--on-error"),
        (
            vec![
                "--format",
                "csv",
                "--schema",
                "ts TIMESTAMP",
                "--event-time",
                "to_timestamp(ts)",
            ],
            "names a column",
        ),
        (
            vec!["--format", "csv", "--schema", "a INT", "--event-time", "ts"],
            "no such column",
        ),
        (
            vec!["--format", "csv", "--schema", "a INTT,"],
            "--schema 'a INTT,'",
        ),
        (
            vec!["--format", "csv", "--schema", "_file VARCHAR"],
            "collides",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--trigger", "once"]);
        let out = ws
            .command(&query, &all)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_structured_stream_has_its_own_name_arrival_and_file_columns_and_event_time() {
    let ws = Workspace::new();
    ws.add_file(
        "a.csv",
        "2026-01-01T00:00:00Z,home\n2026-01-01T00:00:30Z,home\n2026-01-01T00:01:10Z,about\n,home\n",
    );
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT tumble(ts, INTERVAL '1 minute') AS w, page, count(*) AS n, \
         min(_file) AS f, count(_arrival_time) AS arrived FROM clicks GROUP BY 1, 2",
    )
    .unwrap();
    let out = ws.run(
        &query,
        &[
            "--format",
            "csv",
            "--schema",
            "ts VARCHAR, page VARCHAR",
            "--event-time",
            "ts",
            "--watermark",
            "10s",
            "--name",
            "clicks",
            "--trigger",
            "once",
            "--no-console",
        ],
    );
    assert_ok(&out);
    let rows = crate::util::output_rows(&ws.output);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.contains("2026-01-01T00:00:00") && r.contains("home") && r.contains('2')),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.contains("a.csv")), "{rows:?}");
    // The row without a time is skipped and counted.
    assert!(
        stderr(&out).contains("1 lines without an event time"),
        "{}",
        stderr(&out)
    );
    // `state` plans the query again over the recorded format and name.
    assert_eq!(
        crate::util::state_rows(&ws, "SELECT page, n FROM state ORDER BY page"),
        ["about|1", "home|2"]
    );
}

#[test]
fn verify_reads_the_recorded_format_and_checks_a_csv_job() {
    let ws = Workspace::new();
    ws.add_file("a.csv", "page,n\nhome,1\nabout,2\n");
    ws.add_file("b.csv", "page,n\nhome,5\nbad,x\n");
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT page, sum(n) AS total, count(_corrupt_record) AS bad FROM lines GROUP BY page",
    )
    .unwrap();
    let out = ws.run(
        &query,
        &[
            "--format",
            "csv",
            "--header",
            "--schema",
            "page VARCHAR, n BIGINT",
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
        ],
    );
    assert_ok(&out);
    let checked = crate::crash::assert_verified(&ws, &query, "");
    assert!(crate::util::stdout(&checked).contains("OK"));
    // A changed result is caught (the oracle reads the files, not the output).
    std::fs::write(ws.input.join("a.csv"), "page,n\nhome,100\nabout,2\n").unwrap();
    let checked = crate::crash::verify_over(&ws, &query, &ws.input, &[]);
    assert_eq!(
        checked.status.code(),
        Some(1),
        "{}",
        crate::util::stdout(&checked)
    );
}

#[test]
fn socket_lines_can_be_json_records() {
    let ws = Workspace::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::Write::write_all(
            &mut stream,
            b"{\"page\":\"home\",\"n\":1}\n{\"page\":\"home\",\"n\":2}\nnot json\n{\"page\":\"about\",\"n\":4}\n",
        )
        .unwrap();
    });
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT page, sum(n) AS total FROM lines GROUP BY page",
    )
    .unwrap();
    let job = crate::util::Job::spawn(
        ws.command(
            &query,
            &[
                "--socket",
                &addr,
                "--format",
                "json",
                "--schema",
                "page VARCHAR, n BIGINT",
                "--trigger",
                "continuous",
                "--checkpoint-interval",
                "0",
                "--no-console",
            ],
        )
        .stdout(Stdio::null()),
    );
    let rows = crate::util::wait_for_output(
        &ws.output,
        std::time::Duration::from_secs(60),
        |rows| rows.iter().any(|r| r.starts_with("about|4")),
        || job.log(),
    );
    let log = job.stop();
    server.join().unwrap();
    assert_eq!(rows, vec!["NULL|NULL", "about|4", "home|3"], "{log}");
}

/// Every file under `dir`, recursively, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// `sql` over `table`, an external table DataFusion reads from `dir`.
fn read_back(dir: &Path, create: &str, sql: &str) -> Vec<String> {
    runtime().block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.sql(&create.replace("DIR", &format!("{}/", dir.display())))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        sorted_rows(&batches)
    })
}

#[test]
fn csv_and_json_output_in_each_mode_is_read_back_by_datafusion() {
    for format in ["csv", "json"] {
        let stored = if format == "csv" {
            "STORED AS CSV OPTIONS ('format.has_header' 'true')"
        } else {
            "STORED AS JSON"
        };
        for mode in ["complete", "update"] {
            let ws = Workspace::new();
            ws.add_file("a.txt", "b a\nc\n");
            ws.add_file("b.txt", "a, b!\n");
            let out = ws.run(
                &repo("sql/wordcount.sql"),
                &[
                    "--output-format",
                    format,
                    "--mode",
                    mode,
                    "--trigger",
                    "available-now",
                    "--max-files-per-trigger",
                    "1",
                    "--no-console",
                ],
            );
            assert_ok(&out);
            let files = files_under(&ws.output);
            let rows = read_back(
                &ws.output,
                &format!("CREATE EXTERNAL TABLE t {stored} LOCATION 'DIR'"),
                if mode == "complete" {
                    "SELECT word, count FROM t"
                } else {
                    "SELECT batch_id, word, count FROM t"
                },
            );
            if mode == "complete" {
                assert!(files.contains(&format!("result.{format}")), "{files:?}");
                assert_eq!(rows, ["a|2", "b|2", "c|1"], "{format} {mode}");
                // verify reads the files in their format.
                crate::crash::assert_verified(&ws, &repo("sql/wordcount.sql"), format);
            } else {
                assert_eq!(
                    files.iter().filter(|f| f.starts_with("batch-")).count(),
                    2,
                    "{files:?}"
                );
                // Update mode: batch_id first; the latest row per word is its count.
                assert_eq!(
                    rows,
                    ["0|a|1", "0|b|1", "0|c|1", "1|a|2", "1|b|2"],
                    "{format} {mode}"
                );
            }
        }
    }
}

#[test]
fn partitioned_append_output_is_hive_style_and_a_replay_writes_each_file_once() {
    let ws = Workspace::new();
    let mut text = String::new();
    let pages = ["home", "a/b c=d", "", "café"];
    for i in 0..40 {
        text.push_str(&format!("{},{i}\n", pages[i % pages.len()]));
    }
    ws.add_file("a.csv", &text);
    let query = ws.dir.path().join("q.sql");
    std::fs::write(&query, "SELECT page, n, n * 2 AS twice FROM lines").unwrap();
    let args = [
        "--format",
        "csv",
        "--schema",
        "page VARCHAR, n BIGINT",
        "--output-format",
        "json",
        "--partition-by",
        "page",
        "--trigger",
        "once",
        "--checkpoint-interval",
        "0",
        "--no-console",
    ];
    // Killed after the batch's files are written, before its commit.
    let started = std::time::SystemTime::now();
    let mut killed = ws
        .quiet(&query, &args)
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "600")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while files_under(&ws.output)
        .iter()
        .filter(|f| f.ends_with(".json"))
        .count()
        < 4
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no output was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(
        ws.mid_batch_since(started),
        "the kill fell after the commit"
    );
    assert_ok(&ws.run(&query, &args));
    let files: Vec<String> = files_under(&ws.output)
        .into_iter()
        .filter(|f| f.ends_with(".json"))
        .collect();
    assert_eq!(
        files,
        [
            "page=__HIVE_DEFAULT_PARTITION__/batch-000000000000.json",
            "page=a%2Fb c%3Dd/batch-000000000000.json",
            "page=café/batch-000000000000.json",
            "page=home/batch-000000000000.json",
        ]
    );
    // DataFusion reads it as a partitioned table (a glob, which leaves out the job's lock
    // file): every row once, its page from the directory.
    let rows = read_back(
        &ws.output,
        "CREATE EXTERNAL TABLE t STORED AS JSON PARTITIONED BY (page) LOCATION 'DIR**/*.json'",
        "SELECT count(*), count(DISTINCT n), sum(twice) FROM t",
    );
    assert_eq!(rows, ["40|40|1560"]);
    let homes = read_back(
        &ws.output,
        "CREATE EXTERNAL TABLE t STORED AS JSON PARTITIONED BY (page) LOCATION 'DIR**/*.json'",
        "SELECT page, count(*) FROM t GROUP BY page",
    );
    assert_eq!(
        homes,
        [
            "__HIVE_DEFAULT_PARTITION__|10",
            "a/b c=d|10",
            "café|10",
            "home|10"
        ]
    );
    // Partitioning a result whose rows change is refused.
    let other = Workspace::new();
    let out = other.run(
        &repo("sql/wordcount.sql"),
        &["--partition-by", "word", "--trigger", "once"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--mode append"), "{}", stderr(&out));
}

#[test]
fn verify_reads_parquet_input_as_the_job_did() {
    let ws = Workspace::new();
    let mut rng = StdRng::seed_from_u64(11);
    for i in 0..3 {
        let clicks = random_clicks(&mut rng, 30);
        ws.add_file(&format!("f{i}.parquet"), parquet_bytes(&clicks));
    }
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT page, count(*) AS n, sum(user_id) AS users FROM lines GROUP BY page",
    )
    .unwrap();
    let out = ws.run(
        &query,
        &[
            "--format",
            "parquet",
            "--schema",
            COLUMNS,
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
        ],
    );
    assert_ok(&out);
    crate::crash::assert_verified(&ws, &query, "");
    // A file replaced under its name after the job read it: verify sees the difference.
    ws.add_file("f0.parquet", parquet_bytes(&random_clicks(&mut rng, 5)));
    let checked = crate::crash::verify_over(&ws, &query, &ws.input, &[]);
    assert_eq!(
        checked.status.code(),
        Some(1),
        "{}",
        crate::util::stdout(&checked)
    );
}
