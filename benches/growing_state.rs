//! An aggregate whose per-group state grows with its input (`count(DISTINCT)` keeps every
//! distinct value) against one whose state stays small (`count`): one hot group filled with
//! 1M distinct values, then 100 small triggers that touch it. Prints the median time per
//! trigger and the checkpoint delta's bytes (Arrow IPC, as the checkpoint stores it) for each,
//! and their ratio: the cost of a touched group's whole state being merged and stored again.
//!
//! ```text
//! cargo bench --bench growing_state
//! ```

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::ipc::writer::StreamWriter;
use dfstream::batch::TextCounters;
use dfstream::query::lines::TriggerSlot;
use dfstream::query::plan::{Params, QueryFile};
use dfstream::query::{OutputMode, QuerySpec, StreamingQuery};
use dfstream::source::InputUnit;

const FILL: usize = 1_000_000;
const TRIGGERS: usize = 100;
const PER_TRIGGER: usize = 50;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "one group filled with {FILL} distinct values, then {TRIGGERS} triggers of \
         {PER_TRIGGER} new values each (update mode)"
    );
    println!("aggregate              ms/trigger  delta bytes/trigger");
    let mut figures = Vec::new();
    for aggregate in ["count(v)", "count(DISTINCT v)"] {
        let (ms, bytes) = runtime.block_on(measure(aggregate));
        println!("{aggregate:<22} {ms:>10.2}  {bytes:>19}");
        figures.push((ms, bytes));
    }
    println!(
        "count(DISTINCT) against count: {:.1}x the time, {:.0}x the delta bytes",
        figures[1].0 / figures[0].0,
        figures[1].1 as f64 / figures[0].1 as f64
    );
}

/// Median ms per small trigger and median delta bytes, for `SELECT k, AGG FROM ... GROUP BY k`.
async fn measure(aggregate: &str) -> (f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let slot = TriggerSlot::new(Arc::new(TextCounters::default()), 16 << 20);
    let file = QueryFile {
        path: "growing.sql".into(),
        sql: format!(
            "SELECT k, {aggregate} AS n FROM (SELECT split_part(value, ' ', 1) AS k, \
             split_part(value, ' ', 2) AS v FROM lines) GROUP BY k"
        ),
    };
    let mut query = StreamingQuery::plan(
        QuerySpec {
            file: &file,
            params: &Params::new(),
            mode: Some(OutputMode::Update),
            partitions: 2,
            event_time: None,
            watermark: None,
        },
        slot.clone(),
    )
    .await
    .unwrap();
    let mut next_value = 0usize;
    let mut lines = |count: usize| {
        let mut text = String::with_capacity(count * 12);
        for _ in 0..count {
            text.push_str(&format!("hot v{next_value}\n"));
            next_value += 1;
        }
        text
    };
    let mut run = async |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        slot.set(vec![InputUnit::file(path, 0)]);
        let started = Instant::now();
        let output = query.run_trigger().await.unwrap();
        (started.elapsed(), output)
    };
    run("fill.txt", lines(FILL)).await;
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for t in 0..TRIGGERS {
        let (took, output) = run(&format!("t{t}.txt"), lines(PER_TRIGGER)).await;
        // Every value is new: both aggregates count all of them.
        let row = output.rows.iter().find(|b| b.num_rows() > 0).unwrap();
        let n = row.column(1).as_primitive::<Int64Type>().value(0);
        assert_eq!(n as usize, FILL + (t + 1) * PER_TRIGGER, "{aggregate}");
        times.push(took.as_secs_f64() * 1e3);
        bytes.push(ipc_len(output.state_delta.as_ref().unwrap()));
    }
    times.sort_by(f64::total_cmp);
    bytes.sort_unstable();
    (times[TRIGGERS / 2], bytes[TRIGGERS / 2])
}

fn ipc_len(batch: &RecordBatch) -> usize {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out.len()
}
