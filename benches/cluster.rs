//! `--engine ballista` against the local engine, in one run on one machine:
//!
//! 1. **Backfill throughput**: a word count over a generated corpus (1 GB by default), in
//!    triggers of about 64 MB, on the local engine and on `ballista-standalone:2` (a
//!    scheduler and two executors in this process): MB/s each, and their ratio.
//! 2. **Per-trigger overhead**: triggers of one small file (about 8 KB) each; the median time
//!    of the trigger plan on each engine, and what a cluster job adds (the reason triggers
//!    under `--cluster-min-bytes` stay local).
//!
//! Both engines' results are checked against word counts kept by hand from the same text,
//! outside the timed part. Needs the `ballista` feature:
//!
//! ```text
//! cargo bench --features ballista --bench cluster [-- --size-mb 1024]
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::{Counts, check_word_counts, count_words, size_mb_arg};
use dfstream::batch::TextCounters;
use dfstream::generate::{LineMaker, Shape};
use dfstream::query::engine::{Engine, EngineChoice};
use dfstream::query::lines::TriggerSlot;
use dfstream::query::plan::{Params, QueryFile};
use dfstream::query::{OutputMode, QuerySpec, StreamingQuery};
use dfstream::source::InputUnit;

const FILE_MB: u64 = 16;
const FILES_PER_TRIGGER: usize = 4;
const SMALL_TRIGGERS: usize = 40;

fn main() {
    let size_mb = size_mb_arg(1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corpus = generate(&dir.path().join("corpus"), size_mb / FILE_MB, FILE_MB << 20);
    let small = generate(&dir.path().join("small"), SMALL_TRIGGERS as u64, 8 << 10);
    let counts = |files: &[PathBuf]| {
        let mut counts = Counts::default();
        let mut word = Vec::new();
        for f in files {
            count_words(&std::fs::read(f).unwrap(), &mut word, &mut counts);
        }
        counts
    };
    let (corpus_counts, small_counts) = (counts(&corpus), counts(&small));
    let bytes: u64 = corpus.iter().map(|f| f.metadata().unwrap().len()).sum();
    runtime.block_on(async {
        let cluster = Engine::start(
            &EngineChoice::Standalone { executors: 2 },
            Default::default(),
        )
        .await
        .unwrap();
        println!(
            "backfill: {:.0} MB in triggers of {} MB",
            bytes as f64 / 1e6,
            FILE_MB * FILES_PER_TRIGGER as u64
        );
        let mut rates = Vec::new();
        for (name, engine) in [
            ("local", &Engine::Local),
            ("ballista-standalone:2", &cluster),
        ] {
            let (seconds, result) = run(engine, &corpus, FILES_PER_TRIGGER).await;
            check_word_counts(name, &corpus_counts, &result);
            let rate = bytes as f64 / 1e6 / seconds;
            println!("  {name:<22} {seconds:>6.2} s  {rate:>7.1} MB/s");
            rates.push(rate);
        }
        println!("  ballista / local: {:.2}x", rates[1] / rates[0]);

        println!("per trigger of one ~8 KB file (median of {SMALL_TRIGGERS}):");
        let mut medians = Vec::new();
        for (name, engine) in [
            ("local", &Engine::Local),
            ("ballista-standalone:2", &cluster),
        ] {
            let (times, result) = per_trigger(engine, &small).await;
            check_word_counts(name, &small_counts, &result);
            let median = times[times.len() / 2];
            println!("  {name:<22} {median:>7.2} ms");
            medians.push(median);
        }
        println!(
            "  a cluster job adds {:.1} ms a trigger",
            medians[1] - medians[0]
        );
    });
}

/// A word count in complete mode over `engine`.
async fn query_on(engine: &Engine) -> (StreamingQuery, TriggerSlot) {
    let slot = TriggerSlot::new(Arc::new(TextCounters::default()), 16 << 20);
    let file = QueryFile {
        path: "wordcount.sql".into(),
        sql: std::fs::read_to_string("sql/wordcount.sql").unwrap(),
    };
    let spec = QuerySpec {
        file: &file,
        params: &Params::new(),
        mode: Some(OutputMode::Complete),
        partitions: 2,
        event_time: None,
        watermark: None,
    };
    let mut query = StreamingQuery::plan(spec, slot.clone()).await.unwrap();
    query.use_engine(engine.clone()).unwrap();
    (query, slot)
}

fn units(files: &[PathBuf]) -> Vec<InputUnit> {
    files
        .iter()
        .map(|f| InputUnit {
            size: Some(f.metadata().unwrap().len()),
            ..InputUnit::file(f.clone(), 0)
        })
        .collect()
}

/// Seconds for all of `files`, `per_trigger` at a time, and the last result.
async fn run(
    engine: &Engine,
    files: &[PathBuf],
    per_trigger: usize,
) -> (f64, Vec<datafusion::arrow::array::RecordBatch>) {
    let (mut query, slot) = query_on(engine).await;
    let started = Instant::now();
    let mut result = Vec::new();
    for chunk in files.chunks(per_trigger) {
        slot.set(units(chunk));
        result = query.run_trigger().await.unwrap().rows;
    }
    (started.elapsed().as_secs_f64(), result)
}

/// Each trigger's query time (its plan over the input, in ms), sorted, and the last result.
async fn per_trigger(
    engine: &Engine,
    files: &[PathBuf],
) -> (Vec<f64>, Vec<datafusion::arrow::array::RecordBatch>) {
    let (mut query, slot) = query_on(engine).await;
    let mut times = Vec::new();
    let mut result = Vec::new();
    for file in files {
        slot.set(units(std::slice::from_ref(file)));
        let output = query.run_trigger().await.unwrap();
        times.push(output.timings.aggregate.as_secs_f64() * 1e3);
        result = output.rows;
    }
    times.sort_by(f64::total_cmp);
    (times, result)
}

/// `files` files of about `bytes` bytes of generated text each, under `dir`.
fn generate(dir: &Path, files: u64, bytes: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut maker = LineMaker::new(Shape::new(7));
    (0..files.max(1))
        .map(|f| {
            let path = dir.join(format!("part-{f:04}.txt"));
            let mut text = String::with_capacity(bytes as usize + 256);
            while (text.len() as u64) < bytes {
                maker.line(0, &mut text);
            }
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}
