//! Per-trigger cost of a small trigger (about 1 KB of new text) against the size of the GROUP BY
//! state: 10k, 100k and 1M groups, split into read / aggregate / merge / emit / checkpoint /
//! sink. The merge touches only the groups of the new rows, so in update mode the cost should
//! stay flat; complete mode re-emits the whole table (O(state)), like Spark's. The checkpoint
//! part (offsets, state delta, commit, each fsynced) must stay flat too: it writes a delta.
//!
//! Each trigger's output is checked, after its timing, against word counts kept by hand from
//! the same text: in update mode every trigger's rows (its words with their totals), in
//! complete mode every trigger's number of rows and the last trigger's rows.
//!
//! ```text
//! cargo bench --bench trigger_cost
//! ```

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{Counts, check_word_counts, count_words};

use dfstream::batch::TextCounters;
use dfstream::query::lines::TriggerSlot;
use dfstream::query::plan::{Params, QueryFile};
use dfstream::query::{OutputMode, QuerySpec, StreamingQuery};
use dfstream::sink::files::FileSink;
use dfstream::sink::{Sink, SinkBatch};
use dfstream::source::InputUnit;
use dfstream::source::files::{self as dir, NewFile};
use dfstream::state::checkpoint::{Checkpoint, Commit, FORMAT_VERSION, Metadata, Offsets};

const TRIGGERS: usize = 60;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("medians of {TRIGGERS} triggers of ~1 KB, in ms");
    println!(
        "(checkpoint: offsets + state delta + commit, each fsynced; max: a trigger that also wrote the snapshot, every 10)"
    );
    println!(
        "   groups  mode      total   p95 |   read  aggregate  merge   emit | checkpoint    max   sink"
    );
    for groups in [10_000usize, 100_000, 1_000_000] {
        for mode in [OutputMode::Update, OutputMode::Complete] {
            let m = runtime.block_on(measure(groups, mode));
            println!(
                "{groups:>9}  {:<8} {:>6.2} {:>5.2} | {:>6.3} {:>9.3} {:>6.3} {:>6.3} | {:>10.3} {:>6.1} {:>6.3}",
                mode.to_string(),
                m.total.0,
                m.total.1,
                m.read,
                m.aggregate,
                m.merge,
                m.emit,
                m.checkpoint,
                m.checkpoint_max,
                m.sink
            );
        }
    }
}

/// Medians in ms (total also with p95).
struct Split {
    total: (f64, f64),
    read: f64,
    aggregate: f64,
    merge: f64,
    emit: f64,
    checkpoint: f64,
    /// The slowest checkpoint: a trigger that also wrote a full snapshot.
    checkpoint_max: f64,
    sink: f64,
}

async fn measure(groups: usize, mode: OutputMode) -> Split {
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(TextCounters::default());
    let slot = TriggerSlot::new(Arc::clone(&counters), 16 << 20);
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
            event_time: None,
            watermark: None,
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
    // The yardstick: the word counts so far, counted by hand from the same text.
    let mut totals = Counts::default();
    let mut word = Vec::new();
    count_words(text.as_bytes(), &mut word, &mut totals);
    let big = dir.path().join("big.txt");
    std::fs::write(&big, text).unwrap();
    slot.set(vec![trigger_file(&big)]);
    let filled = query.run_trigger().await.unwrap();
    assert_eq!(query.state().unwrap().len(), groups);
    // Every group is new: both modes emit them all.
    check_word_counts(
        &format!("{mode} mode, {groups} groups, the filling trigger"),
        &totals,
        &filled.rows,
    );
    drop(filled);

    let checkpoint = Checkpoint::open(
        &dfstream::storage::Location::Local(dir.path().join("checkpoint")),
        &Metadata {
            format_version: FORMAT_VERSION,
            query_id: String::new(),
            query_file: "bench".into(),
            sql,
            params: Default::default(),
            mode: mode.to_string(),
            event_time: None,
            watermark: None,
            state_schema: None,
            output_schema: String::new(),
            inputs: None,
            tables: Default::default(),
            format: None,
        },
        10,
        100,
    )
    .await
    .unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut sink = FileSink::open(&dfstream::storage::Location::Local(
        dir.path().join("output"),
    ))
    .await
    .unwrap();
    let mut phases: Vec<[f64; 7]> = Vec::new();
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
        let mut trigger_counts = Counts::default();
        count_words(small.as_bytes(), &mut word, &mut trigger_counts);
        let path = dir.path().join(format!("t{t}.txt"));
        std::fs::write(&path, small).unwrap();
        let batch_id = t as u64 + 1;
        let start = Instant::now();
        let offsets = Offsets {
            batch_id,
            sources: [(
                dir::NAME.to_string(),
                serde_json::to_value(vec![NewFile {
                    name: format!("t{t}.txt"),
                    ts_micros: 0,
                    mtime_micros: 0,
                    size: None,
                    version: None,
                }])
                .unwrap(),
            )]
            .into(),
            force_watermark: None,
            skipped: false,
            trigger_micros: None,
            tables: None,
        };
        checkpoint.write_offsets(&offsets).await.unwrap();
        let offsets_done = start.elapsed();
        let read_before = counters.snapshot().read_nanos;
        slot.set(vec![trigger_file(&path)]);
        let output = query.run_trigger().await.unwrap();
        let read = counters.snapshot().read_nanos - read_before;
        let sink_start = Instant::now();
        sink.write(&SinkBatch {
            batch_id,
            mode,
            schema: query.output_schema(),
            rows: &output.rows,
        })
        .await
        .unwrap();
        let sink_time = sink_start.elapsed();
        let checkpoint_start = Instant::now();
        checkpoint
            .write_state_delta(batch_id, output.state_delta.as_ref().unwrap())
            .await
            .unwrap();
        if checkpoint.wants_snapshot(batch_id) {
            let live = query.state().unwrap().live_rows().unwrap();
            checkpoint
                .write_snapshot(batch_id, Some(&live), &Default::default())
                .await
                .unwrap();
        }
        checkpoint
            .commit(&Commit {
                batch_id,
                ..Default::default()
            })
            .await
            .unwrap();
        let checkpoint_time = checkpoint_start.elapsed() + offsets_done;
        let t = output.timings;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        phases.push([
            ms(start.elapsed()),
            read as f64 / 1e6,
            ms(t.aggregate),
            ms(t.merge),
            ms(t.emit),
            ms(checkpoint_time),
            ms(sink_time),
        ]);
        for (w, n) in &trigger_counts {
            *totals.entry(w.clone()).or_insert(0) += n;
        }
        let what = format!("{mode} mode, {groups} groups, trigger {batch_id}");
        match mode {
            // The groups the trigger changed, with their totals.
            OutputMode::Update => {
                let changed: Counts = trigger_counts
                    .keys()
                    .map(|w| (w.clone(), totals[w]))
                    .collect();
                check_word_counts(&what, &changed, &output.rows);
            }
            // The whole table: its size every trigger, row for row once at the end (a full
            // check of up to a million rows a trigger would dwarf the bench).
            _ if batch_id == TRIGGERS as u64 => check_word_counts(&what, &totals, &output.rows),
            _ => assert_eq!(
                output.rows.iter().map(|b| b.num_rows()).sum::<usize>(),
                totals.len(),
                "{what}: rows against the yardstick's words"
            ),
        }
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[i]).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[v.len() * 95 / 100])
    };
    Split {
        total: median(0),
        read: median(1).0,
        aggregate: median(2).0,
        merge: median(3).0,
        emit: median(4).0,
        checkpoint: median(5).0,
        checkpoint_max: phases.iter().map(|p| p[5]).fold(0.0, f64::max),
        sink: median(6).0,
    }
}

fn trigger_file(path: &std::path::Path) -> InputUnit {
    InputUnit::file(path.to_path_buf(), 0)
}
