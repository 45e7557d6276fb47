//! The data generator: lines of words from a Zipf-like vocabulary, written as files (atomically:
//! a hidden name, then a rename) or served over TCP, deterministically for a given seed.
//! Optional event-time prefixes, with out-of-order and late events, feed window tests.
//! Knows nothing of SQL, state or checkpoints.

pub mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::store::write_atomic;

/// The built-in vocabulary: words from streaming and data engineering.
const VOCABULARY: &[&str] = &[
    "stream",
    "data",
    "the",
    "a",
    "batch",
    "window",
    "event",
    "time",
    "query",
    "sql",
    "spark",
    "datafusion",
    "arrow",
    "parquet",
    "rust",
    "state",
    "watermark",
    "trigger",
    "checkpoint",
    "sink",
    "source",
    "file",
    "socket",
    "kafka",
    "record",
    "row",
    "column",
    "table",
    "count",
    "word",
    "late",
    "latency",
    "throughput",
    "join",
    "aggregate",
    "group",
    "partition",
    "offset",
    "commit",
    "replay",
    "exactly",
    "once",
    "at",
    "least",
    "failure",
    "recovery",
    "crash",
    "restart",
    "durable",
    "log",
    "schema",
    "type",
    "string",
    "integer",
    "timestamp",
    "interval",
    "tumbling",
    "sliding",
    "session",
    "gap",
    "emit",
    "append",
    "update",
    "complete",
    "mode",
    "output",
    "input",
    "directory",
    "object",
    "store",
    "s3",
    "cloud",
    "cluster",
    "node",
    "core",
    "thread",
    "memory",
    "disk",
    "network",
    "byte",
    "megabyte",
    "second",
    "minute",
    "hour",
    "day",
    "engine",
    "plan",
    "optimizer",
    "physical",
    "logical",
    "expression",
    "filter",
    "projection",
    "scan",
    "shuffle",
    "hash",
    "sort",
    "merge",
    "limit",
    "order",
    "by",
    "from",
    "select",
    "where",
    "having",
    "and",
    "or",
    "not",
    "of",
    "to",
    "in",
    "is",
    "on",
    "for",
    "with",
    "as",
    "it",
    "fast",
    "small",
    "big",
    "real",
    "incremental",
    "result",
];

/// What lines look like.
#[derive(Debug, Clone)]
pub struct Shape {
    pub seed: u64,
    /// Words to draw from, most frequent first (Zipf-like weights by rank).
    pub vocabulary: Vec<String>,
    pub words_per_line: (usize, usize),
    /// Prefix each line with an ISO-8601 event time.
    pub event_time: bool,
    /// Event times lag up to this much behind the clock, at random (out of order).
    pub disorder: Duration,
    /// This fraction of lines is late: its event time lags by more than `disorder` (twice it,
    /// plus a minute), so a watermark of `disorder` drops it.
    pub late_fraction: f64,
}

impl Shape {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            vocabulary: VOCABULARY.iter().map(|w| w.to_string()).collect(),
            words_per_line: (5, 15),
            event_time: false,
            disorder: Duration::ZERO,
            late_fraction: 0.0,
        }
    }

    /// Reads a vocabulary file: words separated by whitespace, most frequent first.
    pub fn with_vocabulary_file(mut self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read --vocab {}: {e}", path.display())))?;
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return Err(Error::Usage(format!(
                "--vocab {} holds no words",
                path.display()
            )));
        }
        self.vocabulary = words;
        Ok(self)
    }
}

/// SplitMix64: small, fast, and the same sequence for the same seed on every platform and
/// every version of dfstream (which `rand`'s generators do not promise).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Makes lines of a [`Shape`].
pub struct LineMaker {
    shape: Shape,
    rng: Rng,
    /// Cumulative Zipf weights (exponent 1.07) by vocabulary rank.
    cumulative: Vec<f64>,
}

impl LineMaker {
    pub fn new(shape: Shape) -> Self {
        let weights: Vec<f64> = (1..=shape.vocabulary.len())
            .map(|rank| 1.0 / (rank as f64).powf(1.07))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self {
            rng: Rng::new(shape.seed),
            shape,
            cumulative,
        }
    }

    /// Appends one line (with `\n`) to `out`; `now_micros` is the clock for event times.
    pub fn line(&mut self, now_micros: i64, out: &mut String) {
        if self.shape.event_time {
            let disorder = self.shape.disorder.as_micros() as i64;
            let mut lag = (self.rng.unit() * disorder as f64) as i64;
            if self.rng.unit() < self.shape.late_fraction {
                lag += 2 * disorder + 60_000_000;
            }
            out.push_str(&iso8601(now_micros - lag));
            out.push(' ');
        }
        let (lo, hi) = self.shape.words_per_line;
        let words = self.rng.range(lo, hi.max(lo));
        for w in 0..words {
            if w > 0 {
                out.push(' ');
            }
            let u = self.rng.unit();
            let rank = self
                .cumulative
                .partition_point(|&c| c < u)
                .min(self.shape.vocabulary.len() - 1);
            out.push_str(&self.shape.vocabulary[rank]);
        }
        out.push('\n');
    }

    /// `lines` lines as one text.
    pub fn text(&mut self, lines: usize, now_micros: i64) -> String {
        let mut out = String::new();
        for _ in 0..lines {
            self.line(now_micros, &mut out);
        }
        out
    }
}

/// `2026-11-25T19:10:00.123456Z`.
pub fn iso8601(micros: i64) -> String {
    match datafusion::arrow::temporal_conversions::timestamp_us_to_datetime(micros) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => "1970-01-01T00:00:00.000000Z".to_string(),
    }
}

/// Writes `text` into `dir` as `name`, atomically (hidden name, then rename).
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    write_atomic(&path, text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Writes `files` files of `lines_per_file` lines each; or, with `bytes_per_file`, of lines
/// until the file holds that many bytes. Returns the paths.
pub fn write_batch(
    dir: &Path,
    maker: &mut LineMaker,
    files: usize,
    lines_per_file: usize,
    bytes_per_file: Option<u64>,
    prefix: &str,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let now = crate::time::now_micros();
    let mut paths = Vec::new();
    for f in 0..files {
        let text = match bytes_per_file {
            Some(bytes) => {
                let mut text = String::with_capacity(bytes as usize + 256);
                while (text.len() as u64) < bytes {
                    maker.line(now, &mut text);
                }
                text
            }
            None => maker.text(lines_per_file, now),
        };
        paths.push(write_file(dir, &format!("{prefix}-{f:05}.txt"), &text)?);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        let a = LineMaker::new(Shape::new(42)).text(50, 0);
        let b = LineMaker::new(Shape::new(42)).text(50, 0);
        let c = LineMaker::new(Shape::new(43)).text(50, 0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.lines().count(), 50);
    }

    #[test]
    fn words_per_line_and_zipf_shape() {
        let mut shape = Shape::new(1);
        shape.words_per_line = (3, 4);
        let text = LineMaker::new(shape).text(2000, 0);
        let mut counts = std::collections::HashMap::new();
        for line in text.lines() {
            let n = line.split(' ').count();
            assert!((3..=4).contains(&n), "{line}");
            for w in line.split(' ') {
                *counts.entry(w).or_insert(0) += 1;
            }
        }
        // The first-ranked word is the most frequent, far ahead of a rare one.
        assert!(counts["stream"] > 5 * counts.get("result").copied().unwrap_or(1));
    }

    #[test]
    fn event_times_lag_by_at_most_the_disorder_unless_late() {
        let mut shape = Shape::new(3);
        shape.event_time = true;
        shape.disorder = Duration::from_secs(10);
        shape.late_fraction = 0.2;
        let now = 1_800_000_000_000_000;
        let text = LineMaker::new(shape).text(1000, now);
        let (mut late, mut on_time) = (0, 0);
        for line in text.lines() {
            let stamp = line.split(' ').next().unwrap();
            let t = chrono_parse(stamp);
            let lag = now - t;
            assert!(lag >= 0);
            if lag > 10_000_000 {
                assert!(lag >= 80_000_000, "late lines lag past twice the disorder");
                late += 1;
            } else {
                on_time += 1;
            }
        }
        assert!(
            (150..250).contains(&late),
            "{late} late of {}",
            late + on_time
        );
    }

    fn chrono_parse(stamp: &str) -> i64 {
        let value = datafusion::common::ScalarValue::Utf8(Some(stamp.to_string()))
            .cast_to(&datafusion::arrow::datatypes::DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                None,
            ))
            .unwrap();
        match value {
            datafusion::common::ScalarValue::TimestampMicrosecond(Some(t), _) => t,
            other => panic!("{other:?}"),
        }
    }
}
