//! What `--progress` and the status page (`--ui`, with a client fetching every route every
//! 250 ms: eight times the page's own refresh) cost the trigger loop: the same 150 small batches (one ~1 KB file each, `--max-files-per-trigger 1`,
//! a commit per batch) run three ways, interleaved over rounds, and reported as each way's
//! median time per batch and its ratio to the plain run of the same round. Every run's result
//! is checked word for word against counts kept by hand.
//!
//! ```text
//! cargo bench --bench status_cost
//! ```

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Counts, check_word_counts, count_words, parquet_files_in, read_parquet};

const BATCHES: usize = 150;
const ROUNDS: usize = 5;

fn main() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let mut yardstick = Counts::default();
    let mut word = Vec::new();
    let mut seed = 7u64;
    for i in 0..BATCHES {
        let text = words(&mut seed, 150);
        count_words(text.as_bytes(), &mut word, &mut yardstick);
        std::fs::write(input.join(format!("{i:04}.txt")), text).unwrap();
    }
    let ways: [(&str, bool, bool); 3] = [
        ("plain", false, false),
        ("--progress", true, false),
        ("--progress --ui, polled", true, true),
    ];
    let mut per_batch: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut polls = 0;
    for round in 0..ROUNDS {
        for (w, &(name, progress, ui)) in ways.iter().enumerate() {
            let dir = root.path().join(format!("run-{round}-{w}"));
            let (seconds, polled) = run(&input, &dir, progress, ui);
            let output = read_parquet(&parquet_files_in(&dir.join("output")));
            check_word_counts(name, &yardstick, &output);
            per_batch[w].push(seconds / BATCHES as f64);
            polls += polled;
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    println!("{BATCHES} batches of one ~1 KB file, median of {ROUNDS} rounds (ms per batch):");
    let plain = median(per_batch[0].clone());
    for (w, (name, _, _)) in ways.iter().enumerate() {
        let ratios: Vec<f64> = per_batch[w]
            .iter()
            .zip(&per_batch[0])
            .map(|(a, b)| a / b)
            .collect();
        println!(
            "  {name:<26} {:>6.2} ms   {:.3}x plain (same-round ratios, median)",
            median(per_batch[w].clone()) * 1e3,
            median(ratios)
        );
    }
    println!(
        "  (plain: {:.2} ms; the status page answered {polls} requests)",
        plain * 1e3
    );
}

/// Runs the job over `input` into `dir`; its wall time and the requests a poller made.
fn run(input: &Path, dir: &Path, progress: bool, ui: bool) -> (f64, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfstream"));
    cmd.arg("run")
        .arg(repo("sql/wordcount.sql"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("output"))
        .arg("--checkpoint")
        .arg(dir.join("checkpoint"))
        .args([
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--checkpoint-interval",
            "0",
            "--no-console",
        ])
        .env("RUST_LOG", "dfstream=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if progress {
        cmd.arg("--progress").arg(dir.join("progress.jsonl"));
    }
    if ui {
        cmd.args(["--ui", "127.0.0.1:0"]);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let polled = Arc::new(AtomicU64::new(0));
    let mut poller = None;
    // Read the log to its end (a full pipe would stall the job); start polling once the
    // page's address is logged.
    let log = std::thread::spawn({
        let done = Arc::clone(&done);
        let polled = Arc::clone(&polled);
        move || {
            let mut lines = Vec::new();
            for line in stderr.lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("status page at http://") {
                    let addr: SocketAddr = addr.trim_end_matches('/').parse().unwrap();
                    let done = Arc::clone(&done);
                    let polled = Arc::clone(&polled);
                    poller = Some(std::thread::spawn(move || poll(addr, &done, &polled)));
                }
                lines.push(line);
            }
            if let Some(poller) = poller {
                poller.join().unwrap();
            }
            lines
        }
    });
    let status = child.wait().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let lines = log.join().unwrap();
    assert!(status.success(), "{status:?}: {}", lines.join("\n"));
    (seconds, polled.load(Ordering::Relaxed))
}

/// Fetches every route of the status page every 250 ms until `done`.
fn poll(addr: SocketAddr, done: &AtomicBool, polled: &AtomicU64) {
    while !done.load(Ordering::Relaxed) {
        for path in ["/", "/api/progress", "/api/result", "/metrics"] {
            let Ok(mut stream) = TcpStream::connect(addr) else {
                return; // the job has ended
            };
            let _ = write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            );
            let mut body = Vec::new();
            if stream.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                polled.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `n` words drawn from a small vocabulary, 10 to a line.
fn words(seed: &mut u64, n: usize) -> String {
    const VOCABULARY: [&str; 16] = [
        "stream",
        "batch",
        "state",
        "window",
        "watermark",
        "sink",
        "source",
        "query",
        "arrow",
        "datafusion",
        "spark",
        "trigger",
        "offset",
        "commit",
        "checkpoint",
        "record",
    ];
    let mut text = String::new();
    for i in 0..n {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(VOCABULARY[(*seed >> 33) as usize % VOCABULARY.len()]);
        text.push(if i % 10 == 9 { '\n' } else { ' ' });
    }
    text
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
