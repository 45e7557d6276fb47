//! `/metrics`: the job's figures as Prometheus metrics (OpenMetrics text), updated from each
//! committed batch's progress record.
//!
//! Counters (since this run started): `dfstream_batches_total`, `dfstream_input_rows_total`,
//! `dfstream_input_bytes_total`, `dfstream_input_files_total`, `dfstream_output_rows_total`,
//! `dfstream_late_rows_total`, and `dfstream_skipped_total{what=...}` (long lines, vanished
//! files, rows without an event time; lossy lines are read, with replacements, and counted
//! as `dfstream_lossy_lines_total`). Gauges: `dfstream_last_batch_id`, `dfstream_state_rows`,
//! `dfstream_state_memory_bytes`, `dfstream_state_disk_bytes`, `dfstream_watermark_seconds` (Unix time; absent until there
//! is one). Histograms: `dfstream_batch_duration_seconds{phase=...}` for the whole batch
//! (`trigger_execution`) and each phase (`read`, `aggregate`, `merge`, `emit`, `sink`,
//! `checkpoint`).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::progress::BatchProgress;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// The watermark gauge alone: shown once there is a watermark, so that none is not
    /// shown as 1970.
    watermark_registry: Registry,
    batches: Counter,
    input_rows: Counter,
    input_bytes: Counter,
    input_files: Counter,
    output_rows: Counter,
    late_rows: Counter,
    lossy_lines: Counter,
    skipped: Family<Labels, Counter>,
    last_batch_id: Gauge,
    state_rows: Gauge,
    state_memory: Gauge,
    state_disk: Gauge,
    watermark: Gauge<f64, AtomicU64>,
    durations: Histograms,
    /// Whether the watermark gauge is registered (it appears with the first watermark).
    has_watermark: Mutex<bool>,
}

/// Batch durations from 1 ms to about 65 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dfstream");
        let metrics = Self {
            batches: Counter::default(),
            input_rows: Counter::default(),
            input_bytes: Counter::default(),
            input_files: Counter::default(),
            output_rows: Counter::default(),
            late_rows: Counter::default(),
            lossy_lines: Counter::default(),
            skipped: Family::default(),
            last_batch_id: Gauge::default(),
            state_rows: Gauge::default(),
            state_memory: Gauge::default(),
            state_disk: Gauge::default(),
            watermark: Gauge::default(),
            durations: Family::new_with_constructor(duration_histogram),
            has_watermark: Mutex::new(false),
            registry: Registry::default(),
            watermark_registry: Registry::default(),
        };
        let m = &metrics;
        registry.register("batches", "Batches committed", m.batches.clone());
        registry.register("input_rows", "Rows read", m.input_rows.clone());
        registry.register("input_bytes", "Bytes read", m.input_bytes.clone());
        registry.register("input_files", "Files read whole", m.input_files.clone());
        registry.register(
            "output_rows",
            "Rows written to the sinks",
            m.output_rows.clone(),
        );
        registry.register(
            "late_rows",
            "Rows behind the watermark, dropped",
            m.late_rows.clone(),
        );
        registry.register(
            "lossy_lines",
            "Lines with invalid UTF-8, read with replacement characters",
            m.lossy_lines.clone(),
        );
        registry.register("skipped", "Input skipped, by what", m.skipped.clone());
        registry.register(
            "last_batch_id",
            "The latest committed batch",
            m.last_batch_id.clone(),
        );
        registry.register("state_rows", "Groups in the state", m.state_rows.clone());
        registry.register(
            "state_memory_bytes",
            "Estimated memory of the state",
            m.state_memory.clone(),
        );
        registry.register(
            "state_disk_bytes",
            "Bytes of the state files the checkpoint keeps",
            m.state_disk.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Batch duration, whole (trigger_execution) and by phase",
            m.durations.clone(),
        );
        let mut watermark_registry = Registry::with_prefix("dfstream");
        watermark_registry.register(
            "watermark_seconds",
            "The event-time watermark (Unix time)",
            m.watermark.clone(),
        );
        Self {
            registry,
            watermark_registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts a committed batch.
    pub fn committed(&self, record: &BatchProgress, watermark_micros: Option<i64>) {
        self.batches.inc();
        self.input_rows.inc_by(record.num_input_rows);
        self.input_bytes.inc_by(record.input.bytes);
        self.input_files.inc_by(record.input.files);
        self.output_rows.inc_by(record.sink.num_output_rows);
        self.late_rows.inc_by(record.input.late_rows);
        self.lossy_lines.inc_by(record.input.lossy_lines);
        for (what, n) in [
            ("long_lines", record.input.long_lines),
            ("vanished_files", record.input.vanished_files),
            (
                "rows_without_event_time",
                record.input.rows_without_event_time,
            ),
        ] {
            self.skipped
                .get_or_create(&vec![("what".to_string(), what.to_string())])
                .inc_by(n);
        }
        self.last_batch_id.set(record.batch_id as i64);
        if let Some(state) = record.state_operators.first() {
            self.state_rows.set(state.num_rows_total as i64);
            self.state_memory.set(state.memory_used_bytes as i64);
            self.state_disk
                .set(state.custom_metrics.state_bytes_on_disk as i64);
        }
        if let Some(micros) = watermark_micros.filter(|&w| w != i64::MIN && w != i64::MAX) {
            self.watermark.set(micros as f64 / 1e6);
            *self.has_watermark.lock().expect("metrics poisoned") = true;
        }
        let d = &record.duration_ms;
        for (phase, ms) in [
            ("trigger_execution", d.trigger_execution),
            ("read", d.read),
            ("aggregate", d.aggregate),
            ("merge", d.merge),
            ("emit", d.emit),
            ("sink", d.sink),
            ("checkpoint", d.checkpoint),
        ] {
            self.durations
                .get_or_create(&vec![("phase".to_string(), phase.to_string())])
                .observe(ms.0 / 1e3);
        }
    }

    /// The metrics as OpenMetrics text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let _ = encode_registry(&mut text, &self.registry);
        if *self.has_watermark.lock().expect("metrics poisoned") {
            let _ = encode_registry(&mut text, &self.watermark_registry);
        }
        let _ = encode_eof(&mut text);
        text
    }
}
