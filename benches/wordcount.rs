//! End-to-end benchmark of `dfstream run sql/wordcount.sql`, next to a yardstick in the same
//! run: a minimal hand-written Rust word counter (read, lower-case, split into \w runs,
//! HashMap) over the same files, on 1 and 2 threads. Reports MB/s and ratios, peak memory,
//! start-up to first result, and the latency from a file landing to its counts in the sink.
//! Sliding-window runs (complete mode, and append mode with a watermark) are measured next to
//! a hand-written sliding-window count and to the same SQL as a DataFusion batch query.
//!
//! Every run's result is checked, outside its timing, against an answer computed without
//! dfstream: the word count's and the windows' results row for row against the yardsticks'
//! maps, the batch queries' row counts against the yardsticks' numbers of rows, the start-up
//! and latency runs' outputs against the counts they must hold.
//!
//! ```text
//! cargo bench --bench wordcount                 # 200 MB corpus, generated once under target/
//! cargo bench --bench wordcount -- --size-mb 50 # a smaller corpus
//! ```

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Context, Counts, FxBuild, ResultRows, as_count, assert_matches_yardstick, check_word_counts,
    check_word_rows, column_as, count_words_in_files, counts_of, for_each_word, parquet_files_in,
    read_file, read_parquet,
};
use datafusion::arrow::array::{
    ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};

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
    let inputs = corpus_files(&corpus);
    let (yard1, counts1) = best_of(3, || count_words_in_files(&inputs, 1));
    let (yard2, counts2) = best_of(3, || count_words_in_files(&inputs, 2));
    assert!(
        counts1 == counts2,
        "the yardstick counts differently on 1 and 2 threads"
    );
    let (run, rss) = best_of_query(&root, &corpus, 3, &wordcount_sql(), &[], &mut |output| {
        check_word_counts(
            "word count, complete mode",
            &counts2,
            &read_parquet(&[output.join("result.parquet")]),
        );
    });
    let total_words: u64 = counts2.values().sum();
    let distinct_words = counts2.len();
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
        distinct_words
    );
    windows(&root, &corpus, mb, run, &counts2);
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

/// The windows of the window runs (`--param size=10 minutes --param slide=1 minute`): 10
/// minutes long, one starting every minute (at whole minutes since the epoch).
const WINDOW_SIZE_SECS: i64 = 600;
const WINDOW_SLIDE_SECS: i64 = 60;
/// The append-mode runs' `--watermark 10 minutes`.
const WATERMARK_DELAY_SECS: i64 = 600;
const MICROS_PER_SEC: i64 = 1_000_000;
/// The `ts` of every line in the batch word count (whose query does not read it).
const ARRIVAL_MICROS: i64 = 1_700_000_000_000_000;

/// An `--event-time` expression of the window runs: the SQL dfstream evaluates, and the same
/// in Rust for the yardsticks.
#[derive(Clone, Copy)]
struct EventTime {
    sql: &'static str,
    /// The event time in whole seconds since the epoch, from the `file` column (the input
    /// file's path as dfstream shows it) and the line.
    seconds: fn(file: &str, line: &[u8]) -> i64,
}

/// Event times spread over a day, from the line's content.
const OVER_A_DAY: EventTime = EventTime {
    sql: "to_timestamp_seconds(1700000000 + (character_length(value) * 7919 + ascii(value)) % 86400)",
    seconds: over_a_day_seconds,
};

/// Event time advancing file by file (1.5 h a file): the lines of file k (`part-000k.txt`) lie
/// in [k * 5400, (k + 1) * 5400) s after 1700000000.
const ADVANCING: EventTime = EventTime {
    sql: "to_timestamp_seconds(1700000000 + CAST(substr(file, character_length(file) - 7, 4) AS BIGINT) * 5400 + character_length(value) * 61 % 5400)",
    seconds: advancing_seconds,
};

/// [`OVER_A_DAY`] in Rust.
fn over_a_day_seconds(_file: &str, line: &[u8]) -> i64 {
    1_700_000_000 + (characters(line) * 7919 + first_byte(line)) % 86_400
}

/// [`ADVANCING`] in Rust. `substr(file, character_length(file) - 7, 4)` is the 4 characters
/// before `.txt`: the file's number. (`*` and `%` bind alike, from the left.)
fn advancing_seconds(file: &str, line: &[u8]) -> i64 {
    let number = file
        .len()
        .checked_sub(8)
        .and_then(|start| file.get(start..start + 4))
        .and_then(|digits| digits.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("{file:?} does not end with a 4-digit number and .txt"));
    1_700_000_000 + number * 5400 + characters(line) * 61 % 5400
}

/// `character_length(value)` of a UTF-8 line: its bytes that do not continue a character.
fn characters(line: &[u8]) -> i64 {
    line.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as i64
}

/// `ascii(value)` of an ASCII line: its first byte; 0 for an empty line.
fn first_byte(line: &[u8]) -> i64 {
    line.first().map_or(0, |&b| i64::from(b))
}

/// Calls `on_line` with each line of `data` as dfstream's `lines` table holds them: split on
/// `\n`, a trailing `\r` removed, a last line without a newline included (an empty file has
/// no lines).
fn for_each_line<'a>(data: &'a [u8], mut on_line: impl FnMut(&'a [u8])) {
    if data.is_empty() {
        return;
    }
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    for line in data.split(|&b| b == b'\n') {
        on_line(line.strip_suffix(b"\r").unwrap_or(line));
    }
}

/// Word ids, so that the window maps' keys are (window, u32) rather than a `Vec` each.
#[derive(Default)]
struct Vocabulary {
    ids: HashMap<Vec<u8>, u32, FxBuild>,
    words: Vec<Vec<u8>>,
}

impl Vocabulary {
    /// The id of `word`, a new one when first met.
    fn id(&mut self, word: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = u32::try_from(self.words.len()).expect("fewer than 2^32 distinct words");
        self.ids.insert(word.to_vec(), id);
        self.words.push(word.to_vec());
        id
    }

    /// Words met.
    fn len(&self) -> usize {
        self.words.len()
    }

    /// A (window start, word id) key, for messages.
    fn describe(&self, &(start, word): &(i64, u32)) -> String {
        format!(
            "window [{start}, {}) s since the epoch, word {:?}",
            start + WINDOW_SIZE_SECS,
            String::from_utf8_lossy(&self.words[word as usize])
        )
    }
}

/// (window start in seconds since the epoch, word id) -> count: a sliding-window word count.
type WindowCounts = HashMap<(i64, u32), u64, FxBuild>;

/// The answer of the hand-written sliding-window word count.
struct WindowAnswer {
    vocabulary: Vocabulary,
    /// Each window's start (seconds since the epoch) and word counts, indexed by word id.
    windows: Vec<(i64, Vec<u64>)>,
    /// Lines dropped as late: older than the watermark when their file was read.
    late_lines: u64,
}

impl WindowAnswer {
    /// The (window, word) pairs that occur, with their counts: the rows the query must give.
    fn counts(&self) -> WindowCounts {
        let mut counts = WindowCounts::default();
        for (start, by_word) in &self.windows {
            for (word, &count) in by_word.iter().enumerate() {
                if count > 0 {
                    counts.insert((*start, word as u32), count);
                }
            }
        }
        counts
    }
}

/// The yardstick of the window runs: sql/window_wordcount.sql by hand. Reads `files` in the
/// order given, each line's event time from `event_time`, counts the line's words in its slot
/// (the slide-long stretch of time it falls in: all of a slot's times lie in the same
/// windows), then sums each window's 10 slots.
///
/// With `watermark_delay_secs`, it also drops the lines dfstream drops as late, for runs with
/// `--watermark` and `--max-files-per-trigger 1` (one file a trigger): a line is late when its
/// time is before the watermark as the file's trigger starts, the largest time of the files
/// before less the delay. Lines that are not late only ever fall in open windows (a window
/// closes when the watermark passes its end, after every time it holds), and `--final-flush`
/// emits the windows still open at the end, so every window of the kept lines is emitted, once.
fn window_yardstick(
    files: &[PathBuf],
    event_time: EventTime,
    watermark_delay_secs: Option<i64>,
) -> WindowAnswer {
    let mut vocabulary = Vocabulary::default();
    // Slot start -> word counts, indexed by word id.
    let mut slots: HashMap<i64, Vec<u64>, FxBuild> = HashMap::default();
    let mut watermark: Option<i64> = None;
    let mut late_lines = 0u64;
    let mut word = Vec::with_capacity(64);
    for path in files {
        let data = read_file(path);
        let file = path.display().to_string();
        let mut trigger_max: Option<i64> = None;
        for_each_line(&data, |line| {
            let ts = (event_time.seconds)(&file, line);
            trigger_max = Some(trigger_max.map_or(ts, |max| max.max(ts)));
            if watermark.is_some_and(|watermark| ts < watermark) {
                late_lines += 1;
                return;
            }
            let slot = slots
                .entry(ts.div_euclid(WINDOW_SLIDE_SECS) * WINDOW_SLIDE_SECS)
                .or_default();
            for_each_word(line, &mut word, |w| {
                let id = vocabulary.id(w) as usize;
                if slot.len() <= id {
                    slot.resize(id + 1, 0);
                }
                slot[id] += 1;
            });
        });
        if let (Some(delay), Some(max)) = (watermark_delay_secs, trigger_max) {
            watermark = Some(watermark.map_or(max - delay, |w| w.max(max - delay)));
        }
    }
    // Every window that holds a slot: from the one ending with the first slot to the one
    // starting with the last.
    let mut windows = Vec::new();
    if let (Some(&first), Some(&last)) = (slots.keys().min(), slots.keys().max()) {
        let mut start = first - WINDOW_SIZE_SECS + WINDOW_SLIDE_SECS;
        while start <= last {
            let mut by_word = vec![0u64; vocabulary.len()];
            for slot in (start..start + WINDOW_SIZE_SECS).step_by(WINDOW_SLIDE_SECS as usize) {
                for (total, count) in by_word
                    .iter_mut()
                    .zip(slots.get(&slot).into_iter().flatten())
                {
                    *total += count;
                }
            }
            windows.push((start, by_word));
            start += WINDOW_SLIDE_SECS;
        }
    }
    WindowAnswer {
        vocabulary,
        windows,
        late_lines,
    }
}

/// dfstream's sliding-window rows in `batches`, keyed as [`WindowCounts`]: word ids from
/// `vocabulary` (a word the yardstick never met gets a new id). Panics on a window that is
/// not 10 minutes long or does not start on a whole second.
fn window_rows(batches: &[RecordBatch], vocabulary: &mut Vocabulary) -> ResultRows<(i64, u32)> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let mut rows = ResultRows::default();
    for batch in batches {
        let starts = column_as(batch, "window_start", &micros);
        let ends = column_as(batch, "window_end", &micros);
        let words = column_as(batch, "word", &DataType::Utf8);
        let counts = column_as(batch, "count", &DataType::Int64);
        let starts = starts.as_primitive::<TimestampMicrosecondType>();
        let ends = ends.as_primitive::<TimestampMicrosecondType>();
        let words = words.as_string::<i32>();
        let counts = counts.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let (start, end, word) = (starts.value(i), ends.value(i), words.value(i));
            assert!(
                start % MICROS_PER_SEC == 0 && end - start == WINDOW_SIZE_SECS * MICROS_PER_SEC,
                "dfstream's window [{start}, {end}) µs (word {word:?}) is not a 10-minute \
                 window starting on a whole second"
            );
            let key = (start / MICROS_PER_SEC, vocabulary.id(word.as_bytes()));
            rows.add(key, as_count(counts.value(i)));
        }
    }
    rows
}

/// Panics unless dfstream's sliding-window rows in `batches` are exactly `answer`'s; returns
/// the number of rows (window, word pairs) there are.
fn check_windows(what: &str, answer: &mut WindowAnswer, batches: &[RecordBatch]) -> usize {
    let expected = answer.counts();
    assert!(
        !expected.is_empty(),
        "{what}: the yardstick found no words; a check against it would prove nothing"
    );
    let rows = window_rows(batches, &mut answer.vocabulary);
    assert_matches_yardstick(what, &expected, &rows, |key| {
        answer.vocabulary.describe(key)
    });
    expected.len()
}

/// The corpus files `glob` selects, in the order dfstream takes them: oldest modification
/// time (in whole microseconds) first, then by name.
fn files_in_taking_order(corpus: &Path, glob: &str) -> Vec<PathBuf> {
    let matcher = globset::Glob::new(glob)
        .context(|| format!("the glob {glob:?}"))
        .compile_matcher();
    let mut files: Vec<(i64, String, PathBuf)> = corpus_files(corpus)
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            matcher
                .is_match(&name)
                .then(|| (modified_micros(&path), name, path))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, _, path)| path).collect()
}

/// A file's modification time in whole microseconds since the epoch, as dfstream lists it.
fn modified_micros(path: &Path) -> i64 {
    let modified = path
        .metadata()
        .and_then(|m| m.modified())
        .context(|| format!("the modification time of {}", path.display()));
    modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Sliding windows (10 minutes every minute: each row in 10 windows) against the plain word
/// count, and append-mode memory as the corpus grows. Each run's result is checked, after it
/// ran, against the hand-written sliding-window count over the files it read; the batch
/// queries' results against the same yardsticks (`counts`: the word count's).
fn windows(root: &Path, corpus: &Path, mb: f64, plain: f64, counts: &Counts) {
    let window_sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/window_wordcount.sql");
    let params = [("size", "10 minutes"), ("slide", "1 minute")];
    let param_flags = ["--param", "size=10 minutes", "--param", "slide=1 minute"];
    let inputs = corpus_files(corpus);
    let (yardstick_secs, mut answer) = best_of(1, || window_yardstick(&inputs, OVER_A_DAY, None));
    let mut pairs = 0;
    let (secs, rss) = best_of_query(
        root,
        corpus,
        1,
        &window_sql,
        &[&param_flags[..], &["--event-time", OVER_A_DAY.sql]].concat(),
        &mut |output| {
            let result = read_parquet(&[output.join("result.parquet")]);
            pairs = check_windows("sliding windows, complete mode", &mut answer, &result);
        },
    );
    println!(
        "sliding windows (10 min / 1 min, event times over a day, complete mode): {secs:.2} s, {:.1} MB/s, {:.1}x the plain word count's time, peak RSS {:.0} MB",
        mb / secs,
        secs / plain,
        rss as f64 / 1024.0
    );
    println!(
        "  the yardstick (the same windows by hand, 1 thread): {yardstick_secs:.2} s, {:.1} MB/s; dfstream / yardstick time: {:.2}",
        mb / yardstick_secs,
        secs / yardstick_secs
    );
    // The query's own cost: the same SQL as one DataFusion batch query over the lines already
    // in memory (no reading, no state, no checkpoint, no sink).
    let (batch, rows) = datafusion_batch(corpus, &window_sql, &params, Some(OVER_A_DAY));
    let groups = check_windows(
        "the sliding windows as a DataFusion batch query",
        &mut answer,
        &rows,
    );
    assert_eq!(groups, pairs);
    drop((rows, answer));
    let (plain_batch, rows) = datafusion_batch(corpus, &wordcount_sql(), &[], None);
    check_word_counts("the word count as a DataFusion batch query", counts, &rows);
    drop(rows);
    println!(
        "  the same SQL as a DataFusion batch query over lines in memory: {batch:.2} s ({groups} rows), {:.1}x the batch word count's {plain_batch:.2} s; dfstream / batch: {:.2}",
        batch / plain_batch,
        secs / batch
    );
    // Event time advancing file by file (1.5 h a file), a 10 minute watermark, append mode: the
    // state holds only open windows, so memory should not grow with the corpus. With one file
    // a trigger, taken in name order (the corpus was written in that order), no line is late:
    // the watermark after file k is at most (k + 1) * 5400 - 600 s, before file k + 1's first
    // time. --final-flush emits the windows still open at the end, so the output files hold
    // every window once.
    for (label, glob) in [
        ("1x", "part-000[0-3].txt"),
        ("2x", "part-000[0-7].txt"),
        ("4x", "*.txt"),
    ] {
        let mut answer = window_yardstick(
            &files_in_taking_order(corpus, glob),
            ADVANCING,
            Some(WATERMARK_DELAY_SECS),
        );
        let (secs, rss) = best_of_query(
            root,
            corpus,
            1,
            &window_sql,
            &[
                &param_flags[..],
                &[
                    "--event-time",
                    ADVANCING.sql,
                    "--watermark",
                    "10 minutes",
                    "--final-flush",
                ],
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
            &mut |output| {
                check_windows(
                    &format!("append mode with a watermark, {label}"),
                    &mut answer,
                    &read_parquet(&parquet_files_in(output)),
                );
            },
        );
        println!(
            "append mode with a watermark, {label} the corpus quarter: {secs:.2} s, peak RSS {:.0} MB",
            rss as f64 / 1024.0
        );
        if answer.late_lines > 0 {
            println!(
                "  ({} late lines dropped, by dfstream and by the yardstick alike)",
                answer.late_lines
            );
        }
    }
}

/// The corpus's lines as batches of dfstream's `lines` table (its schema, so that the query
/// plans as in dfstream), read by hand rather than by dfstream's reader: `ts` from
/// `event_time`, or one arrival time without it. Batches are dealt round-robin into
/// `partitions` partitions.
fn lines_in_memory(
    corpus: &Path,
    event_time: Option<EventTime>,
    partitions: usize,
) -> Vec<Vec<RecordBatch>> {
    let schema = dfstream::batch::lines_schema();
    let mut dealt = vec![Vec::new(); partitions];
    let mut batches = 0;
    for path in corpus_files(corpus) {
        let data = read_file(&path);
        let file = path.display().to_string();
        let mut lines = Vec::new();
        for_each_line(&data, |line| lines.push(line));
        for chunk in lines.chunks(dfstream::batch::BATCH_ROWS) {
            let micros: Vec<i64> = chunk
                .iter()
                .map(|line| match event_time {
                    Some(event_time) => (event_time.seconds)(&file, line) * MICROS_PER_SEC,
                    None => ARRIVAL_MICROS,
                })
                .collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    chunk.iter().map(|line| String::from_utf8_lossy(line)),
                )),
                Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC")),
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    file.as_str(),
                    chunk.len(),
                ))),
            ];
            let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
                .context(|| format!("a lines batch of {file}"));
            dealt[batches % partitions].push(batch);
            batches += 1;
        }
    }
    dealt
}

/// Runs `query` once as a plain DataFusion batch query (2 partitions) over the corpus's lines,
/// read into memory first ([`lines_in_memory`]); returns the query's time and its result.
fn datafusion_batch(
    corpus: &Path,
    query: &Path,
    params: &[(&str, &str)],
    event_time: Option<EventTime>,
) -> (f64, Vec<RecordBatch>) {
    use datafusion::datasource::MemTable;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let ctx = dfstream::query::session(2);
        let partitions = lines_in_memory(corpus, event_time, 2);
        let table = MemTable::try_new(dfstream::batch::lines_schema(), partitions)
            .context(|| "making the in-memory lines table".to_string());
        ctx.register_table("lines", Arc::new(table))
            .context(|| "registering the in-memory lines table".to_string());
        let file = dfstream::query::plan::QueryFile::read(query).unwrap();
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let start = Instant::now();
        let plan = dfstream::query::plan::logical_plan(&ctx, &file, &params)
            .await
            .unwrap();
        let rows = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
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

/// Runs `query` over the corpus `runs` times with `extra` flags, calling `check` with each
/// run's output directory after the run (untimed); best time, largest peak RSS (KiB).
fn best_of_query(
    root: &Path,
    corpus: &Path,
    runs: usize,
    query: &Path,
    extra: &[&str],
    check: &mut dyn FnMut(&Path),
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
        check(&work.join("output"));
    }
    (best, peak)
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
        assert!(out.status.success(), "dfstream failed: {:?}", out.status);
        check_word_rows(
            "start-up run",
            &counts_of([("hello", 2), ("streaming", 1), ("world", 1), ("again", 1)]),
            &console_word_counts(&String::from_utf8_lossy(&out.stdout)),
        );
    }
    median(times)
}

/// The `(word, count)` rows of the console sink's tables in `stdout`: its `| word | count |`
/// lines, less the header (whose count is not a number).
fn console_word_counts(stdout: &str) -> ResultRows<Vec<u8>> {
    let mut rows = ResultRows::default();
    for line in stdout.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if let [word, count] = cells[..]
            && let Ok(count) = count.parse::<u64>()
        {
            rows.add(word.as_bytes().to_vec(), count);
        }
    }
    rows
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
    // Batch i read file i alone (the next file came once its counts were out): update mode
    // emits its five words, each with its running total.
    for i in 0..files {
        let total = i as u64 + 1;
        check_word_counts(
            &format!("file-to-sink latency run, batch {i}"),
            &counts_of(["some", "words", "for", "the", "stream"].map(|word| (word, total))),
            &read_parquet(&[work.join(format!("output/batch-{i:012}.parquet"))]),
        );
    }
    median(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
