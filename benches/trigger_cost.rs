//! Per-trigger cost of a small trigger (about 1 KB of new text) against the size of the GROUP BY
//! state: 10k, 100k and 1M groups. The merge touches only the groups of the new rows, so in
//! update mode the cost should stay flat; complete mode re-emits the whole table (O(state)),
//! like Spark's. Also times writing the trigger's checkpoint delta.
//!
//! ```text
//! cargo bench --bench trigger_cost
//! ```

use std::sync::Arc;
use std::time::Instant;

use dfstream::batch::TextCounters;
use dfstream::query::lines::{TriggerFile, TriggerSlot};
use dfstream::query::plan::{Params, QueryFile};
use dfstream::query::{OutputMode, QuerySpec, StreamingQuery};
use dfstream::state::checkpoint::{Checkpoint, FORMAT_VERSION, Metadata};

const TRIGGERS: usize = 60;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("groups     mode      trigger p50   p95     delta write p50  (60 triggers of ~1 KB)");
    for groups in [10_000usize, 100_000, 1_000_000] {
        for mode in [OutputMode::Update, OutputMode::Complete] {
            let (p50, p95, delta) = runtime.block_on(measure(groups, mode));
            println!(
                "{groups:>9}  {mode:<8}  {:>8.2} ms {:>7.2} ms  {:>8.3} ms",
                p50 * 1e3,
                p95 * 1e3,
                delta * 1e3
            );
        }
    }
}

async fn measure(groups: usize, mode: OutputMode) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let slot = TriggerSlot::new(Arc::new(TextCounters::default()), 16 << 20);
    let sql =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/wordcount.sql")).unwrap();
    let file = QueryFile {
        path: "sql/wordcount.sql".into(),
        sql: sql.clone(),
    };
    let mut query = StreamingQuery::plan(
        QuerySpec {
            file: &file,
            params: &Params::new(),
            mode: Some(mode),
            partitions: 2,
        },
        slot.clone(),
    )
    .await
    .unwrap();
    // Fill the state: one trigger with `groups` distinct words.
    let mut text = String::with_capacity(groups * 10);
    for i in 0..groups {
        text.push_str(&format!("w{i}"));
        text.push(if i % 16 == 15 { '\n' } else { ' ' });
    }
    let big = dir.path().join("big.txt");
    std::fs::write(&big, text).unwrap();
    slot.set(vec![trigger_file(&big)]);
    query.run_trigger().await.unwrap();
    assert_eq!(query.state().unwrap().len(), groups);

    let checkpoint = Checkpoint::open(
        &dir.path().join("checkpoint"),
        &Metadata {
            format_version: FORMAT_VERSION,
            query_id: String::new(),
            query_file: "bench".into(),
            sql,
            params: Default::default(),
            mode: mode.to_string(),
            state_schema: None,
            output_schema: String::new(),
        },
        1_000_000,
        100,
    )
    .unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut times = Vec::new();
    let mut delta_times = Vec::new();
    for t in 0..TRIGGERS {
        // ~1 KB: 150 words, 80 % of them existing groups, 20 % new ones.
        let mut small = String::new();
        for w in 0..150 {
            if next() % 5 == 0 {
                small.push_str(&format!("new{t}x{w}"));
            } else {
                small.push_str(&format!("w{}", next() as usize % groups));
            }
            small.push(if w % 15 == 14 { '\n' } else { ' ' });
        }
        let path = dir.path().join(format!("t{t}.txt"));
        std::fs::write(&path, small).unwrap();
        slot.set(vec![trigger_file(&path)]);
        let start = Instant::now();
        let output = query.run_trigger().await.unwrap();
        times.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        checkpoint
            .write_state_delta(t as u64, output.state_delta.as_ref().unwrap())
            .unwrap();
        delta_times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    delta_times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        times[times.len() / 2],
        times[times.len() * 95 / 100],
        delta_times[delta_times.len() / 2],
    )
}

fn trigger_file(path: &std::path::Path) -> TriggerFile {
    TriggerFile {
        path: path.to_path_buf(),
        display: path.display().to_string(),
        ts_micros: 0,
    }
}
