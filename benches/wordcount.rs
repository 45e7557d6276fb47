//! End-to-end benchmark of `dfstream run sql/wordcount.sql`, next to a yardstick in the same
//! run: a minimal hand-written Rust word counter (read, lower-case, split into \w runs,
//! HashMap) over the same files, on 1 and 2 threads. Reports MB/s and ratios, peak memory,
//! start-up to first result, and the latency from a file landing to its counts in the sink.
//!
//! ```text
//! cargo bench --bench wordcount                 # 200 MB corpus, generated once under target/
//! cargo bench --bench wordcount -- --size-mb 50 # a smaller corpus
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut size_mb = 200u64;
    let mut files = 16u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size-mb" => {
                size_mb = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--size-mb N")
            }
            "--files" => files = args.next().and_then(|v| v.parse().ok()).expect("--files N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dfstream-bench");
    let corpus = root.join(format!("corpus-{size_mb}mb-{files}"));
    if !corpus.join("_done").exists() {
        eprintln!("generating a {size_mb} MB corpus in {}", corpus.display());
        generate(&corpus, size_mb << 20, files);
    }
    let bytes: u64 = corpus_files(&corpus)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "corpus: {} files, {:.1} MB ({})",
        files,
        mb,
        corpus.display()
    );

    // Warm the page cache so both sides read from memory.
    for path in corpus_files(&corpus) {
        std::fs::read(path).unwrap();
    }
    let (yard1, count1) = best_of(3, || yardstick(&corpus, 1));
    let (yard2, count2) = best_of(3, || yardstick(&corpus, 2));
    assert_eq!(count1, count2);
    let (run, rss) = best_of_dfstream(&root, &corpus, 3);
    let total_words = count2.0;
    let (df_words, df_distinct) = dfstream_totals(&root.join("run/output/result.parquet"));
    assert_eq!(
        (df_words, df_distinct),
        (count2.0, count2.1),
        "dfstream and the yardstick disagree"
    );
    println!(
        "yardstick, 1 thread : {:6.2} s  {:7.1} MB/s",
        yard1,
        mb / yard1
    );
    println!(
        "yardstick, 2 threads: {:6.2} s  {:7.1} MB/s",
        yard2,
        mb / yard2
    );
    println!(
        "dfstream available-now: {:6.2} s  {:7.1} MB/s  peak RSS {:.0} MB",
        run,
        mb / run,
        rss as f64 / 1024.0
    );
    println!(
        "ratio dfstream / yardstick: {:.2} of 2 threads, {:.2} of 1 thread ({} words, {} distinct)",
        yard2 / run,
        yard1 / run,
        total_words,
        count2.1
    );
    windows(&root, &corpus, mb, run);
    let startup = startup_to_first_result(&root, 10);
    println!(
        "start-up to first result (tiny input, --trigger once, median of 10): {:.1} ms",
        startup * 1e3
    );
    let latency = file_to_sink_latency(&root, 20);
    println!(
        "file renamed into the input to its counts in the Parquet sink (--trigger 0, update mode, median of 20): {:.1} ms",
        latency * 1e3
    );
}

/// Sliding windows (10 minutes every minute: each row in 10 windows) against the plain word
/// count, and append-mode memory as the corpus grows.
fn windows(root: &Path, corpus: &Path, mb: f64, plain: f64) {
    let window_sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/window_wordcount.sql");
    // Event times spread over a day, from the line's content.
    let over_a_day = "to_timestamp_seconds(1700000000 + (character_length(value) * 7919 + ascii(value)) % 86400)";
    let params = [("size", "10 minutes"), ("slide", "1 minute")];
    let param_flags = ["--param", "size=10 minutes", "--param", "slide=1 minute"];
    let (secs, rss) = best_of_query(
        root,
        corpus,
        1,
        &window_sql,
        &[&param_flags[..], &["--event-time", over_a_day]].concat(),
    );
    println!(
        "sliding windows (10 min / 1 min, event times over a day, complete mode): {secs:.2} s, {:.1} MB/s, {:.1}x the plain word count's time, peak RSS {:.0} MB",
        mb / secs,
        secs / plain,
        rss as f64 / 1024.0
    );
    // The query's own cost: the same SQL as one DataFusion batch query over the lines already
    // in memory (no reading, no state, no checkpoint, no sink).
    let (batch, groups) = datafusion_batch(corpus, &window_sql, &params, Some(over_a_day));
    let (plain_batch, _) = datafusion_batch(corpus, &wordcount_sql(), &[], None);
    println!(
        "  the same SQL as a DataFusion batch query over lines in memory: {batch:.2} s ({groups} rows), {:.1}x the batch word count's {plain_batch:.2} s; dfstream / batch: {:.2}",
        batch / plain_batch,
        secs / batch
    );
    // Event time advancing file by file (1.5 h a file), a 10 minute watermark, append mode: the
    // state holds only open windows, so memory should not grow with the corpus.
    let advancing = "to_timestamp_seconds(1700000000 + CAST(substr(file, character_length(file) - 7, 4) AS BIGINT) * 5400 + character_length(value) * 61 % 5400)";
    for (label, glob) in [
        ("1x", "part-000[0-3].txt"),
        ("2x", "part-000[0-7].txt"),
        ("4x", "*.txt"),
    ] {
        let (secs, rss) = best_of_query(
            root,
            corpus,
            1,
            &window_sql,
            &[
                &param_flags[..],
                &["--event-time", advancing, "--watermark", "10 minutes"],
                &[
                    "--mode",
                    "append",
                    "--max-files-per-trigger",
                    "1",
                    "--glob",
                    glob,
                ],
            ]
            .concat(),
        );
        println!(
            "append mode with a watermark, {label} the corpus quarter: {secs:.2} s, peak RSS {:.0} MB",
            rss as f64 / 1024.0
        );
    }
}

/// Runs `query` once as a plain DataFusion batch query (2 partitions) over the corpus's lines,
/// read into memory first; returns the query's time and its result rows.
fn datafusion_batch(
    corpus: &Path,
    query: &Path,
    params: &[(&str, &str)],
    event_time: Option<&str>,
) -> (f64, usize) {
    use datafusion::datasource::MemTable;
    use dfstream::batch::{Projection, TextCounters, lines_schema};
    use dfstream::query::lines::read_file;
    use dfstream::source::InputUnit;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let ctx = dfstream::query::session(2);
        let counters = TextCounters::default();
        let projection = Projection::new(None).unwrap();
        let event_time = event_time.map(|text| dfstream::query::event_time(&ctx, text).unwrap());
        let mut partitions = vec![Vec::new(), Vec::new()];
        let mut n = 0;
        for path in corpus_files(corpus) {
            let file = InputUnit::file(path, 1_700_000_000_000_000);
            read_file(&file, &projection, &counters, 16 << 20, |batch| {
                let batch = match &event_time {
                    Some(e) => e.apply(batch, &counters).unwrap(),
                    None => batch,
                };
                partitions[n % 2].push(batch);
                n += 1;
                true
            })
            .unwrap();
        }
        let table = MemTable::try_new(lines_schema(), partitions).unwrap();
        ctx.register_table("lines", std::sync::Arc::new(table))
            .unwrap();
        let file = dfstream::query::plan::QueryFile::read(query).unwrap();
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let start = Instant::now();
        let plan = dfstream::query::plan::logical_plan(&ctx, &file, &params)
            .await
            .unwrap();
        let rows: usize = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        (start.elapsed().as_secs_f64(), rows)
    })
}

fn dfstream() -> &'static str {
    env!("CARGO_BIN_EXE_dfstream")
}

fn wordcount_sql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/wordcount.sql")
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        best = best.min(start.elapsed().as_secs_f64());
        last = Some(value);
    }
    (best, last.unwrap())
}

/// A deterministic corpus: Zipf-like vocabulary of 5000 words, 5-20 words a line, some
/// capitalised or upper-case words, trailing punctuation and double spaces.
fn generate(dir: &Path, bytes: u64, files: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = 12345u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let vocab: Vec<String> = (0..5000)
        .map(|i| {
            let len = 2 + (i * 7919 % 9);
            (0..len)
                .map(|k| (b'a' + ((i * 31 + k * 17 + k * i) % 26) as u8) as char)
                .collect::<String>()
                + &i.to_string()
        })
        .collect();
    // Cumulative Zipf weights (exponent ~1.07).
    let weights: Vec<f64> = (1..=vocab.len())
        .map(|r| 1.0 / (r as f64).powf(1.07))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cumulative.push(acc);
    }
    let per_file = bytes / files;
    for f in 0..files {
        let path = dir.join(format!("part-{f:04}.txt"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut written = 0u64;
        let mut line = String::new();
        while written < per_file {
            line.clear();
            let words = 5 + next() % 16;
            for w in 0..words {
                if w > 0 {
                    line.push_str(if next() % 20 == 0 { "  " } else { " " });
                }
                let u = (next() % 1_000_000) as f64 / 1e6;
                let idx = cumulative.partition_point(|&c| c < u).min(vocab.len() - 1);
                let word = &vocab[idx];
                match next() % 50 {
                    0 => line.push_str(&word.to_uppercase()),
                    1..=5 => {
                        let mut c = word.chars();
                        let first = c.next().unwrap().to_ascii_uppercase();
                        line.push(first);
                        line.push_str(c.as_str());
                    }
                    _ => line.push_str(word),
                }
                if next() % 10 < 3 {
                    line.push([',', '.', '!', '?', ';'][(next() % 5) as usize]);
                }
            }
            line.push('\n');
            out.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
    }
    std::fs::write(dir.join("_done"), "").unwrap();
}

/// FxHash-style hasher for the yardstick's map.
#[derive(Default)]
struct Fx(u64);
impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut v = [0u8; 8];
            v[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(v))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
type Counts = HashMap<Vec<u8>, u64, BuildHasherDefault<Fx>>;

/// The yardstick: the same job as sql/wordcount.sql for ASCII text, by hand, on `threads`.
/// Returns (total words, distinct words).
fn yardstick(dir: &Path, threads: usize) -> (u64, usize) {
    let files = corpus_files(dir);
    let maps: Vec<Counts> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&PathBuf> = files.iter().skip(t).step_by(threads).collect();
                s.spawn(move || {
                    let mut counts = Counts::default();
                    let mut word = Vec::with_capacity(64);
                    for path in mine {
                        let data = std::fs::read(path).unwrap();
                        for &b in &data {
                            if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 {
                                word.push(b.to_ascii_lowercase());
                            } else if !word.is_empty() {
                                *counts.entry(word.clone()).or_insert(0) += 1;
                                word.clear();
                            }
                        }
                        if !word.is_empty() {
                            *counts.entry(word.clone()).or_insert(0) += 1;
                            word.clear();
                        }
                    }
                    counts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut merged = Counts::default();
    for map in maps {
        for (k, v) in map {
            *merged.entry(k).or_insert(0) += v;
        }
    }
    (merged.values().sum(), merged.len())
}

/// Runs dfstream over the corpus `runs` times; best wall time and the largest peak RSS (KiB).
fn best_of_dfstream(root: &Path, corpus: &Path, runs: usize) -> (f64, u64) {
    best_of_query(root, corpus, runs, &wordcount_sql(), &[])
}

/// Runs `query` over the corpus `runs` times with `extra` flags; best time, largest peak RSS.
fn best_of_query(
    root: &Path,
    corpus: &Path,
    runs: usize,
    query: &Path,
    extra: &[&str],
) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut peak = 0;
    for _ in 0..runs {
        let work = root.join("run");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let start = Instant::now();
        let mut child = Command::new(dfstream())
            .arg("run")
            .arg(query)
            .arg("--input")
            .arg(corpus)
            .arg("--checkpoint")
            .arg(work.join("checkpoint"))
            .arg("--output")
            .arg(work.join("output"))
            .args(["--trigger", "available-now", "--no-console"])
            .args(if extra.contains(&"--glob") {
                &[][..]
            } else {
                &["--glob", "*.txt"][..]
            })
            .args(extra)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let mut hwm = 0;
        loop {
            if let Some(kib) = vm_hwm_kib(child.id()) {
                hwm = hwm.max(kib);
            }
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "dfstream failed: {status:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        best = best.min(start.elapsed().as_secs_f64());
        peak = peak.max(hwm);
    }
    (best, peak)
}

/// (sum of counts, number of words) in a complete-mode result file.
fn dfstream_totals(path: &Path) -> (u64, usize) {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let (mut sum, mut rows) = (0u64, 0usize);
    for batch in reader {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        let counts = batch
            .column_by_name("count")
            .unwrap()
            .as_primitive::<Int64Type>();
        sum += counts.values().iter().map(|&c| c as u64).sum::<u64>();
    }
    (sum, rows)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn startup_to_first_result(root: &Path, runs: usize) -> f64 {
    let work = root.join("tiny");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("input")).unwrap();
    std::fs::write(
        work.join("input/a.txt"),
        "hello streaming world\nhello again\n",
    )
    .unwrap();
    let mut times = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(work.join("checkpoint"));
        let start = Instant::now();
        let out = Command::new(dfstream())
            .arg("run")
            .arg(wordcount_sql())
            .arg("--input")
            .arg(work.join("input"))
            .arg("--checkpoint")
            .arg(work.join("checkpoint"))
            .args(["--trigger", "once"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        times.push(start.elapsed().as_secs_f64());
        assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
    }
    median(times)
}

fn file_to_sink_latency(root: &Path, files: usize) -> f64 {
    let work = root.join("latency");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("input")).unwrap();
    let mut child = Command::new(dfstream())
        .arg("run")
        .arg(wordcount_sql())
        .arg("--input")
        .arg(work.join("input"))
        .arg("--checkpoint")
        .arg(work.join("checkpoint"))
        .arg("--output")
        .arg(work.join("output"))
        .args(["--trigger", "0", "--no-console", "--mode", "update"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut times = Vec::new();
    for i in 0..files {
        let hidden = work.join(format!("input/.f{i}.tmp"));
        std::fs::write(&hidden, "some words for the stream\n").unwrap();
        let start = Instant::now();
        std::fs::rename(&hidden, work.join(format!("input/f{i}.txt"))).unwrap();
        let batch = work.join(format!("output/batch-{i:012}.parquet"));
        while !batch.exists() {
            std::thread::sleep(Duration::from_micros(200));
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "file {i} never reached the sink"
            );
        }
        times.push(start.elapsed().as_secs_f64());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    median(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
