//! Turns the bytes of one input file into Arrow record batches of the `lines` table.
//!
//! Owns the `lines` schema and the text policy: every line is a row (empty lines too, and a
//! last line without a newline), `\n` and `\r\n` both end a line, invalid UTF-8 is decoded
//! lossily and counted, and a line longer than the limit is skipped and counted.
//! Knows nothing of directories, triggers or SQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, RecordBatchOptions, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;

/// Column names of the `lines` table, in schema order.
pub const VALUE: &str = "value";
pub const TS: &str = "ts";
pub const FILE: &str = "file";

/// Rows per emitted batch (DataFusion's default batch size).
pub const BATCH_ROWS: usize = 8192;

/// The schema of the `lines` table: `value` (the line), `ts` (arrival time, UTC), `file` (path).
pub fn lines_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(VALUE, DataType::Utf8, false),
        Field::new(
            TS,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(FILE, DataType::Utf8, false),
    ]))
}

/// Counts of lines that needed the text policy, shared by every reader of a run.
#[derive(Debug, Default)]
pub struct TextCounters {
    /// Lines that held invalid UTF-8 and were decoded with U+FFFD replacements.
    pub lossy_lines: AtomicU64,
    /// Lines longer than the limit, skipped.
    pub long_lines: AtomicU64,
    /// Lines emitted as rows.
    pub rows: AtomicU64,
    /// Bytes read from files.
    pub bytes: AtomicU64,
    /// Files that vanished before they could be read.
    pub vanished_files: AtomicU64,
    /// Files whose size differed, when read, from the size they were taken with.
    pub changed_files: AtomicU64,
    /// Time spent reading and decoding files, summed over the threads that read them.
    pub read_nanos: AtomicU64,
    /// Lines whose `--event-time` expression gave NULL or failed, skipped.
    pub bad_event_times: AtomicU64,
    /// Rows older than the watermark, dropped.
    pub late_rows: AtomicU64,
    /// Structured records that did not fit the schema (kept, skipped or failed per
    /// `--on-error`).
    pub malformed_records: AtomicU64,
    /// With `--bad-records`: the malformed records seen since they were last taken.
    pub bad_records: std::sync::Mutex<Option<Vec<crate::format::records::BadRecord>>>,
    /// Event times seen since they were last taken (with `--event-time` or `--watermark`).
    pub event_times: std::sync::Mutex<EventTimeStats>,
    /// What each source's units gave since they were last taken, by source name.
    pub by_source: std::sync::Mutex<std::collections::BTreeMap<Arc<str>, SourceCounts>>,
    /// The current trigger's units (shared with its trigger slot, not copied): for counts
    /// taken after the scan, where a row knows its file but not its source.
    pub trigger_units: std::sync::Mutex<Arc<Vec<crate::source::InputUnit>>>,
}

/// What one source's input gave: the part of [`TextCounters`] that belongs to a unit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceCounts {
    pub rows: u64,
    pub bytes: u64,
    pub lossy_lines: u64,
    pub long_lines: u64,
    pub vanished_files: u64,
    /// Rows whose `--event-time` gave no timestamp, skipped.
    pub rows_without_event_time: u64,
    /// Rows behind the watermark, dropped.
    pub late_rows: u64,
    /// Structured records that did not fit the schema.
    pub malformed_records: u64,
}

impl std::ops::AddAssign for SourceCounts {
    fn add_assign(&mut self, other: Self) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.lossy_lines += other.lossy_lines;
        self.long_lines += other.long_lines;
        self.vanished_files += other.vanished_files;
        self.rows_without_event_time += other.rows_without_event_time;
        self.late_rows += other.late_rows;
        self.malformed_records += other.malformed_records;
    }
}

/// The event times of a batch's rows: count, least, greatest and sum (microseconds).
#[derive(Debug, Default, Clone, Copy)]
pub struct EventTimeStats {
    pub count: u64,
    pub min: i64,
    pub max: i64,
    pub sum: i128,
}

impl EventTimeStats {
    /// Adds the non-null values of `ts`.
    pub fn observe(&mut self, ts: &datafusion::arrow::array::TimestampMicrosecondArray) {
        for value in ts.iter().flatten() {
            if self.count == 0 {
                (self.min, self.max) = (value, value);
            } else {
                self.min = self.min.min(value);
                self.max = self.max.max(value);
            }
            self.count += 1;
            self.sum += value as i128;
        }
    }

    /// Adds what `other` saw.
    pub fn merge(&mut self, other: &EventTimeStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// Least, greatest and mean, if any rows were seen.
    pub fn summary(&self) -> Option<(i64, i64, i64)> {
        (self.count > 0).then(|| (self.min, self.max, (self.sum / self.count as i128) as i64))
    }
}

impl TextCounters {
    /// Adds what a unit of `source` gave.
    pub fn add_source(&self, source: &Arc<str>, counts: SourceCounts) {
        if let Ok(mut by_source) = self.by_source.lock() {
            *by_source.entry(Arc::clone(source)).or_default() += counts;
        }
    }

    /// Makes `units` the current trigger's (see [`TextCounters::add_for_file`]).
    pub fn set_trigger_units(&self, units: Arc<Vec<crate::source::InputUnit>>) {
        if let Ok(mut current) = self.trigger_units.lock() {
            *current = units;
        }
    }

    /// Adds `counts` to the source of the trigger's unit whose rows' `file` column says
    /// `file` (to none, when no unit of the trigger says so). Only rows dropped after the
    /// scan come here, a few times per batch: a search of the units is enough.
    pub fn add_for_file(&self, file: &str, counts: SourceCounts) {
        let source = self.trigger_units.lock().ok().and_then(|units| {
            units
                .iter()
                .find(|u| u.display == file)
                .map(|u| Arc::clone(&u.source))
        });
        if let Some(source) = source {
            self.add_source(&source, counts);
        }
    }

    /// Keeps the malformed records seen from now on (`--bad-records`).
    pub fn keep_bad_records(&self) {
        if let Ok(mut kept) = self.bad_records.lock() {
            kept.get_or_insert_with(Vec::new);
        }
    }

    /// Notes a malformed record, when they are kept.
    pub fn note_bad_record(&self, record: impl FnOnce() -> crate::format::records::BadRecord) {
        if let Ok(mut kept) = self.bad_records.lock()
            && let Some(kept) = kept.as_mut()
        {
            kept.push(record());
        }
    }

    /// The malformed records kept since the last call, forgotten.
    pub fn take_bad_records(&self) -> Vec<crate::format::records::BadRecord> {
        self.bad_records
            .lock()
            .ok()
            .and_then(|mut kept| kept.as_mut().map(std::mem::take))
            .unwrap_or_default()
    }

    /// What each source gave since the last call, forgotten.
    pub fn take_by_source(&self) -> std::collections::BTreeMap<Arc<str>, SourceCounts> {
        self.by_source
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// The event times seen since the last call, forgotten.
    pub fn take_event_times(&self) -> EventTimeStats {
        self.event_times
            .lock()
            .map(|mut stats| std::mem::take(&mut *stats))
            .unwrap_or_default()
    }

    /// What was counted since the last take, leaving the counters at zero (a shipped plan's
    /// report, see `query::engine::report`).
    pub fn take_snapshot(&self) -> TextCountersSnapshot {
        self.counts_with(|n| n.swap(0, Ordering::Relaxed))
    }

    /// Adds counts taken elsewhere.
    pub fn add_snapshot(&self, counts: &TextCountersSnapshot) {
        let add = |n: &AtomicU64, v: u64| n.fetch_add(v, Ordering::Relaxed);
        add(&self.lossy_lines, counts.lossy_lines);
        add(&self.long_lines, counts.long_lines);
        add(&self.rows, counts.rows);
        add(&self.bytes, counts.bytes);
        add(&self.vanished_files, counts.vanished_files);
        add(&self.changed_files, counts.changed_files);
        add(&self.read_nanos, counts.read_nanos);
        add(&self.bad_event_times, counts.bad_event_times);
        add(&self.late_rows, counts.late_rows);
        add(&self.malformed_records, counts.malformed_records);
    }

    pub fn snapshot(&self) -> TextCountersSnapshot {
        self.counts_with(|n| n.load(Ordering::Relaxed))
    }

    fn counts_with(&self, read: impl Fn(&AtomicU64) -> u64) -> TextCountersSnapshot {
        TextCountersSnapshot {
            lossy_lines: read(&self.lossy_lines),
            long_lines: read(&self.long_lines),
            rows: read(&self.rows),
            bytes: read(&self.bytes),
            vanished_files: read(&self.vanished_files),
            changed_files: read(&self.changed_files),
            read_nanos: read(&self.read_nanos),
            bad_event_times: read(&self.bad_event_times),
            late_rows: read(&self.late_rows),
            malformed_records: read(&self.malformed_records),
        }
    }
}

/// A point-in-time copy of [`TextCounters`]; subtract two to get one trigger's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TextCountersSnapshot {
    pub lossy_lines: u64,
    pub long_lines: u64,
    pub rows: u64,
    pub bytes: u64,
    pub vanished_files: u64,
    pub changed_files: u64,
    pub read_nanos: u64,
    pub bad_event_times: u64,
    pub late_rows: u64,
    pub malformed_records: u64,
}

impl std::ops::Sub for TextCountersSnapshot {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            lossy_lines: self.lossy_lines - o.lossy_lines,
            long_lines: self.long_lines - o.long_lines,
            rows: self.rows - o.rows,
            bytes: self.bytes - o.bytes,
            vanished_files: self.vanished_files - o.vanished_files,
            changed_files: self.changed_files - o.changed_files,
            read_nanos: self.read_nanos - o.read_nanos,
            bad_event_times: self.bad_event_times - o.bad_event_times,
            late_rows: self.late_rows - o.late_rows,
            malformed_records: self.malformed_records - o.malformed_records,
        }
    }
}

/// Which `lines` columns to build (the scan's projection), in output order.
#[derive(Debug, Clone)]
pub struct Projection {
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl Projection {
    pub fn new(projection: Option<&Vec<usize>>) -> Result<Self> {
        let full = lines_schema();
        let columns = match projection {
            Some(p) => p.clone(),
            None => (0..full.fields().len()).collect(),
        };
        let schema = Arc::new(full.project(&columns)?);
        Ok(Self { columns, schema })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Indexes of the projected `lines` columns.
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }
}

/// What turns one file's bytes into batches: the text format's [`LineDecoder`], or a
/// structured format's [`crate::format::records::RecordDecoder`].
pub trait Decode {
    /// Decodes what `chunk` completes (a record may span chunks).
    fn push(&mut self, chunk: &[u8]) -> Result<()>;
    /// The end of the file: what is left, and the open batch.
    fn finish(&mut self) -> Result<Vec<RecordBatch>>;
    /// Batches completed so far; lets a caller stream a large file.
    fn take_batches(&mut self) -> Vec<RecordBatch>;
    /// This file's own counts so far.
    fn tally(&self) -> SourceCounts;
}

impl Decode for LineDecoder<'_> {
    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        LineDecoder::push(self, chunk)
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        LineDecoder::finish(self)
    }
    fn take_batches(&mut self) -> Vec<RecordBatch> {
        LineDecoder::take_batches(self)
    }
    fn tally(&self) -> SourceCounts {
        LineDecoder::tally(self)
    }
}

/// Splits one file's bytes into lines and builds batches of at most [`BATCH_ROWS`] rows.
///
/// Feed it chunks with [`LineDecoder::push`] (a line may span chunks), then call
/// [`LineDecoder::finish`]. Finished batches are collected in [`LineDecoder::take_batches`].
pub struct LineDecoder<'a> {
    projection: &'a Projection,
    counters: &'a TextCounters,
    file: &'a str,
    ts_micros: i64,
    max_line_bytes: usize,
    /// The start of a line whose end has not been seen yet.
    carry: Vec<u8>,
    /// True while discarding the rest of a line that exceeded `max_line_bytes`.
    skipping: bool,
    /// Bytes of the line being discarded seen so far (for the message).
    skipped_bytes: usize,
    /// Lines decoded lossily so far, and the first one's number: one warning per file.
    lossy: (u64, u64),
    /// 1-based number of the line being decoded, for messages.
    line_no: u64,
    values: StringBuilder,
    rows: usize,
    batches: Vec<RecordBatch>,
    /// This file's own counts (the shared counters hold every file's).
    tally: SourceCounts,
}

impl<'a> LineDecoder<'a> {
    pub fn new(
        projection: &'a Projection,
        counters: &'a TextCounters,
        file: &'a str,
        ts_micros: i64,
        max_line_bytes: usize,
    ) -> Self {
        Self {
            projection,
            counters,
            file,
            ts_micros,
            max_line_bytes,
            carry: Vec::new(),
            skipping: false,
            skipped_bytes: 0,
            lossy: (0, 0),
            line_no: 1,
            values: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 64),
            rows: 0,
            batches: Vec::new(),
            tally: SourceCounts::default(),
        }
    }

    /// This file's counts so far.
    pub fn tally(&self) -> SourceCounts {
        self.tally
    }

    /// Decodes the complete lines in `chunk` (together with any carried partial line).
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.counters
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.tally.bytes += chunk.len() as u64;
        let Some(last_nl) = memchr::memrchr(b'\n', chunk) else {
            self.extend_carry(chunk);
            return Ok(());
        };
        let (complete, rest) = chunk.split_at(last_nl + 1);
        let mut region = complete;
        if !self.carry.is_empty() || self.skipping {
            // Finish the carried line first.
            let nl = memchr::memchr(b'\n', region).expect("region ends with a newline");
            self.extend_carry(&region[..nl]);
            let line = std::mem::take(&mut self.carry);
            self.end_line(&line)?;
            self.carry = line;
            self.carry.clear();
            region = &region[nl + 1..];
        }
        self.push_complete(region)?;
        self.extend_carry(rest);
        Ok(())
    }

    /// Emits the last line if the file did not end with a newline; flushes the open batch.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if !self.carry.is_empty() || self.skipping {
            let line = std::mem::take(&mut self.carry);
            self.end_line(&line)?;
        }
        self.flush()?;
        let (lossy, first) = self.lossy;
        if lossy > 0 {
            log::warn!(
                "{}: {lossy} line{} with invalid UTF-8 (the first is line {first}), decoded with \
                 U+FFFD replacements",
                self.file,
                if lossy == 1 { "" } else { "s" }
            );
        }
        Ok(std::mem::take(&mut self.batches))
    }

    /// Batches completed so far; lets a caller stream a large file.
    pub fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }

    /// `region` holds only whole lines, each ending with `\n`.
    fn push_complete(&mut self, region: &[u8]) -> Result<()> {
        if region.is_empty() {
            return Ok(());
        }
        // Fast path: validate the whole region once, then slice it into lines as `str`.
        if let Ok(text) = std::str::from_utf8(region) {
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', region) {
                let line = &text[start..nl];
                start = nl + 1;
                if line.len() > self.max_line_bytes {
                    self.skip_long_line(line.len());
                } else {
                    self.append(strip_cr(line))?;
                }
            }
            return Ok(());
        }
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', region) {
            let line = &region[start..nl];
            start = nl + 1;
            self.end_line(line)?;
        }
        Ok(())
    }

    fn extend_carry(&mut self, bytes: &[u8]) {
        if self.skipping {
            self.skipped_bytes += bytes.len();
            return;
        }
        if self.carry.len() + bytes.len() > self.max_line_bytes {
            // Keep a line's start only while it can still fit; past the limit, drop it.
            self.skipping = true;
            self.skipped_bytes = self.carry.len() + bytes.len();
            self.carry = Vec::new();
            return;
        }
        self.carry.extend_from_slice(bytes);
    }

    /// Ends a line given as raw bytes (without its `\n`), applying the text policy.
    fn end_line(&mut self, line: &[u8]) -> Result<()> {
        if self.skipping || line.len() > self.max_line_bytes {
            let seen = std::mem::take(&mut self.skipped_bytes) + line.len();
            self.skipping = false;
            self.skip_long_line(seen);
            return Ok(());
        }
        match std::str::from_utf8(line) {
            Ok(text) => self.append(strip_cr(text)),
            Err(_) => {
                self.counters.lossy_lines.fetch_add(1, Ordering::Relaxed);
                self.tally.lossy_lines += 1;
                if self.lossy.0 == 0 {
                    self.lossy.1 = self.line_no;
                }
                self.lossy.0 += 1;
                let text = String::from_utf8_lossy(line);
                self.append(strip_cr(&text))
            }
        }
    }

    fn skip_long_line(&mut self, seen: usize) {
        self.counters.long_lines.fetch_add(1, Ordering::Relaxed);
        self.tally.long_lines += 1;
        log::warn!(
            "{}:{}: line longer than --max-line-bytes {} (at least {seen} bytes), skipped",
            self.file,
            self.line_no,
            self.max_line_bytes
        );
        self.line_no += 1;
    }

    fn append(&mut self, line: &str) -> Result<()> {
        self.values.append_value(line);
        self.rows += 1;
        self.line_no += 1;
        if self.rows == BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.tally.rows += rows as u64;
        let values: ArrayRef = Arc::new(self.values.finish());
        let mut columns = Vec::with_capacity(self.projection.columns.len());
        for &c in &self.projection.columns {
            columns.push(match c {
                0 => Arc::clone(&values),
                1 => Arc::new(
                    TimestampMicrosecondArray::from_value(self.ts_micros, rows)
                        .with_timezone("UTC"),
                ) as ArrayRef,
                _ => {
                    let mut files = StringBuilder::with_capacity(rows, rows * self.file.len());
                    for _ in 0..rows {
                        files.append_value(self.file);
                    }
                    Arc::new(files.finish()) as ArrayRef
                }
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        self.batches.push(RecordBatch::try_new_with_options(
            Arc::clone(&self.projection.schema),
            columns,
            &options,
        )?);
        Ok(())
    }
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    fn decode(chunks: &[&[u8]], max: usize) -> (Vec<String>, TextCountersSnapshot) {
        let projection = Projection::new(None).unwrap();
        let counters = TextCounters::default();
        let mut decoder = LineDecoder::new(&projection, &counters, "f.txt", 0, max);
        for chunk in chunks {
            decoder.push(chunk).unwrap();
        }
        let batches = decoder.finish().unwrap();
        let mut lines = Vec::new();
        for batch in batches {
            let values = batch.column(0).as_string::<i32>();
            for i in 0..values.len() {
                lines.push(values.value(i).to_string());
            }
        }
        (lines, counters.snapshot())
    }

    #[test]
    fn every_line_is_a_row_including_empty_and_unterminated() {
        let (lines, _) = decode(&[b"a\n\nb\r\nc"], 100);
        assert_eq!(lines, ["a", "", "b", "c"]);
        let (lines, _) = decode(&[b"\n"], 100);
        assert_eq!(lines, [""]);
        let (lines, _) = decode(&[b""], 100);
        assert!(lines.is_empty());
    }

    #[test]
    fn lines_may_span_chunks() {
        let (lines, _) = decode(&[b"hel", b"lo\nwor", b"ld\r", b"\n", b"x"], 100);
        assert_eq!(lines, ["hello", "world", "x"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let (lines, counts) = decode(&[b"ok\nbad \xff here\nok2\n"], 100);
        assert_eq!(lines, ["ok", "bad \u{FFFD} here", "ok2"]);
        assert_eq!(counts.lossy_lines, 1);
    }

    #[test]
    fn long_lines_are_skipped_and_counted_even_across_chunks() {
        let (lines, counts) = decode(&[b"short\n0123456789\nok\n"], 5);
        assert_eq!(lines, ["short", "ok"]);
        assert_eq!(counts.long_lines, 1);
        let (lines, counts) = decode(&[b"ab", b"cdefgh", b"ijk\nfine\n", b"toolong"], 5);
        assert_eq!(lines, ["fine"]);
        assert_eq!(counts.long_lines, 2);
    }

    #[test]
    fn batches_hold_at_most_batch_rows() {
        let text = "x\n".repeat(BATCH_ROWS + 5);
        let projection = Projection::new(Some(&vec![2, 1])).unwrap();
        let counters = TextCounters::default();
        let mut decoder = LineDecoder::new(&projection, &counters, "f", 7, 100);
        decoder.push(text.as_bytes()).unwrap();
        let batches = decoder.finish().unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].num_rows(), BATCH_ROWS);
        assert_eq!(batches[1].num_rows(), 5);
        assert_eq!(batches[0].schema().field(0).name(), FILE);
        assert_eq!(counters.snapshot().rows, BATCH_ROWS as u64 + 5);
    }
}
