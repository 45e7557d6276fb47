//! What each batch did, assembled once as a typed record ([`BatchProgress`]) that everything
//! else reads: the log line, the commit record and the `--progress` file of JSON lines.
//!
//! Field names and shapes follow Spark's `StreamingQueryProgress` wherever Spark reports the
//! same figure (`id`, `runId`, `batchId`, `numInputRows`, `durationMs.triggerExecution`,
//! `stateOperators[].numRowsTotal`, `sink.numOutputRows`, ...), so that monitoring scripts
//! written for Spark read them unchanged; dfstream's own figures are added beside them (the
//! phases of a batch in `durationMs`, and the skip counts in `input`). A record is written when
//! its batch is committed; a trigger that finds no input writes one idle event per idle period
//! (Spark's `QueryIdleEvent`). Knows nothing of how the figures are measured.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// One batch's progress; see the module docs and the README for every field.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchProgress {
    /// The query's id: the checkpoint's, the same across restarts.
    pub id: String,
    /// This run's id: new at every start.
    pub run_id: String,
    /// The query file's name.
    pub name: String,
    /// When the trigger began (ISO 8601, UTC).
    pub timestamp: String,
    pub batch_id: u64,
    /// Milliseconds from the trigger's start to its result in the sinks.
    pub batch_duration: u64,
    pub num_input_rows: u64,
    /// Input rows over the time since the previous trigger began.
    pub input_rows_per_second: f64,
    /// Input rows over the batch's duration.
    pub processed_rows_per_second: f64,
    pub duration_ms: Durations,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
    pub state_operators: Vec<StateOperator>,
    pub sources: Vec<SourceProgress>,
    pub sink: SinkProgress,
    /// dfstream's batch-wide input figures.
    pub input: InputCounts,
    /// The batch's input was set aside by `dfstream checkpoint skip-batch`: it ran without it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub set_aside: bool,
}

/// Where a batch's time went, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    /// The whole batch: taking input to its result in the sinks (its commit may come later,
    /// with `--checkpoint-interval`; see `commitOffsets`).
    pub trigger_execution: Ms,
    /// Finding and taking the input (listing, the socket log's end).
    pub latest_offset: Ms,
    /// Plans are built once, before the first trigger: always 0.
    pub query_planning: Ms,
    /// Writing the batch's offsets before it runs.
    pub wal_commit: Ms,
    /// The query and the sinks.
    pub add_batch: Ms,
    /// Writing the batch's commit record.
    pub commit_offsets: Ms,
    pub read: Ms,
    pub aggregate: Ms,
    pub merge: Ms,
    pub emit: Ms,
    pub sink: Ms,
    /// State delta, snapshot and commit of the commit that made the batch durable.
    pub checkpoint: Ms,
}

/// Milliseconds, kept with fractions for the log line and written whole (as Spark does).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Ms(pub f64);

impl From<std::time::Duration> for Ms {
    fn from(d: std::time::Duration) -> Self {
        Ms(d.as_secs_f64() * 1e3)
    }
}

impl Serialize for Ms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.round() as u64)
    }
}

/// The batch's event times and the watermark after it (with `--event-time` or
/// `--watermark`), ISO 8601.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

/// The GROUP BY state after the batch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOperator {
    pub operator_name: String,
    pub num_rows_total: u64,
    /// Groups the batch changed (the rows of its state delta).
    pub num_rows_updated: u64,
    /// Groups that left the state (windows the watermark closed).
    pub num_rows_removed: u64,
    pub num_rows_dropped_by_watermark: u64,
    /// An estimate of the state's memory (its Arrow arrays and index).
    pub memory_used_bytes: u64,
    pub custom_metrics: StateMetrics,
}

/// dfstream's own state figures, where Spark puts a state store's (`customMetrics`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateMetrics {
    /// Bytes of the state files the checkpoint keeps (deltas and snapshots), after the
    /// commit that made the batch durable.
    pub state_bytes_on_disk: u64,
}

/// One source's part of the batch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    pub description: String,
    /// What the source took for its previous batch (where this one starts), in its own
    /// recorded form; null before its first.
    pub start_offset: serde_json::Value,
    /// What the source took for the batch, in its own recorded form (null if nothing).
    pub end_offset: serde_json::Value,
    /// How far its input went when the batch was planned, in a compact form of its own
    /// (see [`crate::source::Source::latest`]); null for a batch re-run after a restart.
    pub latest_offset: serde_json::Value,
    /// Rows read from this source's input.
    pub num_input_rows: u64,
    pub input_rows_per_second: f64,
    pub processed_rows_per_second: f64,
    /// dfstream's counts for this source's input.
    pub input: SourceInput,
}

/// What one source's input gave: bytes, and what was skipped or replaced.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceInput {
    pub bytes: u64,
    pub lossy_lines: u64,
    pub long_lines: u64,
    pub vanished_files: u64,
    pub rows_without_event_time: u64,
    pub late_rows: u64,
    pub malformed_records: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    pub description: String,
    pub num_output_rows: u64,
}

/// dfstream's batch-wide input figures: what was read and what was skipped.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputCounts {
    pub files: u64,
    pub bytes: u64,
    pub lossy_lines: u64,
    pub long_lines: u64,
    pub vanished_files: u64,
    pub changed_files: u64,
    pub rows_without_event_time: u64,
    pub late_rows: u64,
    pub malformed_records: u64,
}

impl BatchProgress {
    /// The batch's log line.
    pub fn log_line(&self) -> String {
        let d = &self.duration_ms;
        let groups = self.state_operators.first().map_or(0, |s| s.num_rows_total);
        format!(
            "batch {}: {} files, {} rows ({} late), {} bytes -> {} result rows, {} groups; \
             {:.1} ms (read {:.1}, aggregate {:.1}, merge {:.1}, emit {:.1}, sinks {:.1})",
            self.batch_id,
            self.input.files,
            self.num_input_rows,
            self.input.late_rows,
            self.input.bytes,
            self.sink.num_output_rows,
            groups,
            d.trigger_execution.0,
            d.read.0,
            d.aggregate.0,
            d.merge.0,
            d.emit.0,
            d.sink.0,
        )
    }
}

/// Spark's `QueryIdleEvent`: a trigger found no input (once per idle period).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleEvent {
    pub event: &'static str,
    pub id: String,
    pub run_id: String,
    pub timestamp: String,
}

/// The bar being drawn, if any: log lines are written above it.
static DRAWN: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Where log lines go: stderr, above the backlog bar while one is drawn.
pub struct LogTarget;

impl Write for LogTarget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let drawn = DRAWN.lock().ok().and_then(|bar| bar.clone());
        match drawn {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The bar over a backlog (`--trigger available-now` on a terminal): bytes read of the
/// backlog's, rate, time left, and files done. Drawn on stderr, only when it is a terminal.
pub struct BacklogBar {
    bar: indicatif::ProgressBar,
    files: u64,
}

impl BacklogBar {
    /// A bar over `files` files of `bytes` bytes, or `None` when stderr is not a terminal
    /// (or the backlog is empty).
    pub fn start(files: u64, bytes: u64) -> Option<Self> {
        use std::io::IsTerminal;
        if files == 0 || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("a valid template"),
        );
        bar.set_message(format!("0/{files} files"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        if let Ok(mut drawn) = DRAWN.lock() {
            *drawn = Some(bar.clone());
        }
        Some(Self { bar, files })
    }

    /// Bytes read so far, and files done.
    pub fn update(&self, bytes: u64, files_done: u64) {
        self.bar
            .set_position(bytes.min(self.bar.length().unwrap_or(u64::MAX)));
        self.bar.set_message(format!(
            "{}/{} files",
            files_done.min(self.files),
            self.files
        ));
    }

    /// Leaves the full bar on its line, and later lines below it.
    pub fn finish(&self) {
        self.bar.finish();
        if let Ok(mut drawn) = DRAWN.lock() {
            *drawn = None;
        }
        eprintln!();
    }
}

/// Where `--progress` writes: a file of JSON lines (appended to), or stderr for `-`.
pub struct ProgressWriter {
    out: Box<dyn Write + Send>,
    describe: String,
}

impl ProgressWriter {
    pub fn open(target: &Path) -> Result<Self> {
        if target == Path::new("-") {
            return Ok(Self {
                out: Box::new(std::io::stderr()),
                describe: "stderr".into(),
            });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .map_err(|e| Error::io(format!("opening --progress {}", target.display()), e))?;
        Ok(Self {
            out: Box::new(std::io::LineWriter::new(file)),
            describe: target.display().to_string(),
        })
    }

    /// Writes one record as a line of JSON.
    pub fn write(&mut self, record: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_vec(record)
            .map_err(|e| Error::io("encoding a progress record", std::io::Error::other(e)))?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(format!("writing --progress {}", self.describe), e))
    }
}
