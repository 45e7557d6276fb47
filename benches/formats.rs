//! Structured input against DataFusion's own batch readers, in the same run: the same
//! aggregation over the same CSV (and JSON lines) files, once as `dfstream run --format csv
//! --trigger available-now` (the real binary: start-up, checkpoint and sink included) and
//! once as a DataFusion batch query (`register_csv` / `register_json`, 2 partitions, in
//! process). Reports MB/s and the ratio (the target: at least 0.8x); each side's result is
//! checked against the other's, outside the timings.
//!
//! ```text
//! cargo bench --bench formats                 # ~200 MB of each format, generated once
//! cargo bench --bench formats -- --size-mb 50
//! ```

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{column_as, parquet_files_in, read_parquet, size_mb_arg};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::datasource::file_format::options::JsonReadOptions;
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};

const COLUMNS: &str = "ts TIMESTAMP, page VARCHAR, user_id BIGINT, amount DOUBLE";
const SQL: &str = "SELECT page, count(*) AS n, max(user_id) AS top, \
                   sum(CAST(round(amount * 100) AS BIGINT)) AS cents FROM lines GROUP BY page";
const FILES: u64 = 8;
const ROUNDS: usize = 3;

fn main() {
    let size_mb = size_mb_arg(200);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dfstream-bench");
    println!("| format | MB | dfstream MB/s | DataFusion batch MB/s | ratio |");
    println!("|---|---|---|---|---|");
    for format in ["csv", "json"] {
        let dir = root.join(format!("{format}-{size_mb}mb"));
        if !dir.join("_done").exists() {
            eprintln!("generating {size_mb} MB of {format} in {}", dir.display());
            generate(&dir, format, size_mb << 20);
        }
        let files = input_files(&dir, format);
        let bytes: u64 = files.iter().map(|p| p.metadata().unwrap().len()).sum();
        for path in &files {
            std::fs::read(path).unwrap(); // into the page cache
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_rows, mut their_rows) = (BTreeMap::new(), BTreeMap::new());
        for _ in 0..ROUNDS {
            let (time, rows) = run_dfstream(&dir, format);
            ours.push(time);
            our_rows = rows;
            let (time, rows) = run_datafusion(&dir, format);
            theirs.push(time);
            their_rows = rows;
        }
        assert_eq!(
            our_rows, their_rows,
            "{format}: dfstream and DataFusion disagree"
        );
        assert!(!our_rows.is_empty());
        let mb = bytes as f64 / 1e6;
        let best = |times: &[f64]| times.iter().copied().fold(f64::MAX, f64::min);
        let (ours, theirs) = (mb / best(&ours), mb / best(&theirs));
        println!(
            "| {format} | {mb:.0} | {ours:.1} | {theirs:.1} | {:.2}x |",
            ours / theirs
        );
    }
    println!("(best of {ROUNDS} interleaved rounds; needs >= 0.8x)");
}

/// `dfstream run` over `dir` from a fresh checkpoint: seconds, and the result by page.
fn run_dfstream(dir: &Path, format: &str) -> (f64, BTreeMap<String, (i64, i64, i64)>) {
    let work = tempfile::tempdir().unwrap();
    let query = work.path().join("q.sql");
    std::fs::write(&query, SQL).unwrap();
    let output = work.path().join("out");
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_dfstream"))
        .arg("run")
        .arg(&query)
        .arg("--input")
        .arg(dir)
        .args(["--format", format, "--schema", COLUMNS])
        .args([
            "--trigger",
            "available-now",
            "--no-console",
            "--partitions",
            "2",
        ])
        .arg("--checkpoint")
        .arg(work.path().join("checkpoint"))
        .arg("--output")
        .arg(&output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert!(status.success(), "dfstream failed over {}", dir.display());
    (elapsed, by_page(&read_parquet(&parquet_files_in(&output))))
}

/// The same SQL as a DataFusion batch query over `dir`: seconds, and the result by page.
fn run_datafusion(dir: &Path, format: &str) -> (f64, BTreeMap<String, (i64, i64, i64)>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let start = Instant::now();
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        let schema = dfstream::format::parse_columns(COLUMNS, "columns")
            .await
            .unwrap();
        let path = format!("{}/", dir.display());
        match format {
            "csv" => {
                let options = CsvReadOptions::new().schema(&schema).has_header(false);
                ctx.register_csv("lines", &path, options).await.unwrap()
            }
            _ => {
                let options = JsonReadOptions::default().schema(&schema);
                ctx.register_json("lines", &path, options).await.unwrap()
            }
        }
        let batches = ctx.sql(SQL).await.unwrap().collect().await.unwrap();
        (start.elapsed().as_secs_f64(), by_page(&batches))
    })
}

fn by_page(batches: &[RecordBatch]) -> BTreeMap<String, (i64, i64, i64)> {
    let mut rows = BTreeMap::new();
    for batch in batches {
        let page = column_as(batch, "page", &DataType::Utf8);
        let numbers: Vec<_> = ["n", "top", "cents"]
            .iter()
            .map(|c| column_as(batch, c, &DataType::Int64))
            .collect();
        for i in 0..batch.num_rows() {
            let value = |c: usize| numbers[c].as_primitive::<Int64Type>().value(i);
            rows.insert(
                page.as_string::<i32>().value(i).to_string(),
                (value(0), value(1), value(2)),
            );
        }
    }
    rows
}

fn input_files(dir: &Path, format: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == format))
        .collect();
    files.sort();
    files
}

/// Deterministic clicks: 2000 pages (some quoted, with commas), user ids, amounts, times.
fn generate(dir: &Path, format: &str, bytes: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let per_file = bytes / FILES;
    for f in 0..FILES {
        let path = dir.join(format!("part-{f:02}.{format}"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut written = 0u64;
        while written < per_file {
            let page = next() % 2000;
            let page = if page % 7 == 0 {
                format!("section {page}, part {}", page % 3)
            } else {
                format!("/page/{page}")
            };
            let user = next() % 1_000_000;
            let amount = (next() % 100_000) as f64 / 100.0;
            let ts = 1_767_225_600 + (next() % 86_400) as i64;
            let ts = dfstream::generate::iso8601(ts * 1_000_000);
            let line = match format {
                "csv" => {
                    let page = if page.contains(',') {
                        format!("\"{page}\"")
                    } else {
                        page
                    };
                    format!("{ts},{page},{user},{amount}\n")
                }
                _ => format!(
                    "{{\"ts\":\"{ts}\",\"page\":\"{page}\",\"user_id\":{user},\"amount\":{amount}}}\n"
                ),
            };
            out.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
        out.flush().unwrap();
    }
    std::fs::write(dir.join("_done"), b"").unwrap();
}
