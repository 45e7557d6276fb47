//! The socket source with `--trigger continuous`: latency from a line written on the socket to
//! its effect in the Parquet sink (update mode: the batch file appears), p50 and p99 over 1,000
//! single-line events; and sustained throughput in lines/s with a fast sender. Both runs'
//! results are checked, outside the timing: each latency batch file holds the counts of its
//! one line, and the throughput run's count is exactly the number of lines sent.
//!
//! ```text
//! cargo bench --bench socket_latency
//! ```

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{check_word_counts, counts_of, read_parquet};

fn main() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dfstream-socket-bench");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    latency(&root.join("latency"), 1000);
    throughput(&root.join("throughput"), 2_000_000);
}

fn job(dir: &Path, query: &Path, addr: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dfstream"))
        .arg("run")
        .arg(query)
        .args(["--socket", addr, "--trigger", "continuous", "--no-console"])
        .arg("--output")
        .arg(dir.join("output"))
        .arg("--checkpoint")
        .arg(dir.join("checkpoint"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn wordcount() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/wordcount.sql")
}

fn latency(dir: &Path, events: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut child = job(dir, &wordcount(), &addr, &["--mode", "update"]);
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_nodelay(true).unwrap();
    let mut times = Vec::with_capacity(events);
    for i in 0..events {
        let file = batch_file(dir, i);
        let start = Instant::now();
        conn.write_all(format!("event{i} arrives now\n").as_bytes())
            .unwrap();
        while !file.exists() {
            std::thread::sleep(Duration::from_micros(50));
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "event {i} never reached the sink"
            );
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Batch i read line i alone (the next line was sent once its batch file was out): update
    // mode emits its three words, each with its running total.
    for i in 0..events {
        let total = i as u64 + 1;
        check_word_counts(
            &format!("latency run, batch {i}"),
            &counts_of([
                (format!("event{i}").as_str(), 1),
                ("arrives", total),
                ("now", total),
            ]),
            &read_parquet(&[batch_file(dir, i)]),
        );
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "socket line -> Parquet batch file (update mode, --trigger continuous), {events} events: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times[events / 2],
        times[events * 99 / 100],
        times[events - 1]
    );
}

/// The throughput run's sender writes this many lines at a time.
const LINES_PER_WRITE: u64 = 1000;

fn throughput(dir: &Path, lines: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let query = dir.join("count.sql");
    std::fs::write(&query, "SELECT count(*) AS n FROM lines").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut child = job(dir, &query, &addr, &["--checkpoint-interval", "1s"]);
    let (mut conn, _) = listener.accept().unwrap();
    let line = b"the quick brown fox jumps over the lazy dog\n";
    let mut chunk = Vec::new();
    for _ in 0..LINES_PER_WRITE {
        chunk.extend_from_slice(line);
    }
    // What is sent: whole chunks.
    let lines = lines / LINES_PER_WRITE * LINES_PER_WRITE;
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        for _ in 0..lines / LINES_PER_WRITE {
            conn.write_all(&chunk).unwrap();
        }
        conn
    });
    let result = dir.join("output/result.parquet");
    loop {
        let counted = count(&result);
        assert_not_over(counted, lines);
        if counted == lines {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "too slow: {counted} of the {lines} lines sent counted after 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    let _conn = sender.join().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing more may have been counted since (a line counted twice, late).
    let counted = count(&result);
    assert_not_over(counted, lines);
    assert_eq!(
        counted, lines,
        "the result file changed after it counted every line sent"
    );
    println!(
        "sustained: {lines} lines ({:.0} MB) in {secs:.2} s = {:.0} lines/s (count(*) query, logged to the WAL first)",
        lines as f64 * line.len() as f64 / 1e6,
        lines as f64 / secs
    );
}

/// Panics when dfstream counted more lines than were sent: lines counted more than once.
fn assert_not_over(counted: u64, sent: u64) {
    assert!(
        counted <= sent,
        "dfstream counted {counted} lines but only {sent} were sent: {} lines counted more than \
         once",
        counted - sent
    );
}

/// The Parquet file of update-mode batch `i` in `dir`'s output.
fn batch_file(dir: &Path, i: usize) -> PathBuf {
    dir.join("output").join(format!("batch-{i:012}.parquet"))
}

/// The `n` in a one-row result file, or 0 while it cannot be read.
fn count(path: &Path) -> u64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return 0;
    };
    let Ok(mut reader) = builder.build() else {
        return 0;
    };
    match reader.next() {
        Some(Ok(batch)) if batch.num_rows() == 1 => {
            batch.column(0).as_primitive::<Int64Type>().value(0) as u64
        }
        _ => 0,
    }
}
