//! Decodes a structured file's records (CSV, JSON lines) into batches of the table's file
//! columns, with the `--on-error` policy.
//!
//! The fast path hands the bytes straight to arrow's decoder in batches of
//! [`crate::batch::BATCH_ROWS`] records, keeping a copy of the bytes since the last batch.
//! When the decoder rejects something (a wrong field count, an unparsable number or time,
//! broken quoting, invalid JSON or UTF-8), those bytes are split into records
//! ([`RecordFormat::record_len`]) and each is decoded alone: the good ones become rows, each bad
//! one is kept (permissive: a row with `_corrupt_record`), skipped (drop) or fails the batch
//! (fail), counted, and noted with its file, line, byte offset and reason for `--bad-records`.
//! The same bytes always give the same decisions, so a replay does too.
//!
//! A record longer than `--max-line-bytes` (its line ends aside) is malformed too, wherever
//! reads split the file, and memory stays bounded by the limit: once the bytes since the last
//! batch outgrow it, a [`RecordScanner`] finds where their records end; a long record that
//! has ended is taken one by one with its neighbours, one that has not is reported at once
//! and the rest of it skipped (read through, never kept) until it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result};
use serde::Serialize;

use super::OnError;
use crate::batch::{BATCH_ROWS, Decode, SourceCounts, TextCounters};
use crate::source::InputUnit;

/// Longest raw record kept for `_corrupt_record` and `--bad-records` (longer ones are cut).
const MAX_KEPT_RECORD: usize = 64 * 1024;

/// One of arrow's push decoders (CSV or JSON), as the fast path drives it.
pub trait FastDecoder: Send {
    /// Consumes records from `buf` until the batch is full or `buf` is used up.
    fn decode(&mut self, buf: &[u8]) -> std::result::Result<usize, ArrowError>;
    /// Whether a full batch is buffered.
    fn is_full(&self) -> bool;
    /// The end of the input (a last record without a terminator is complete).
    fn end(&mut self) -> std::result::Result<(), ArrowError>;
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError>;
    /// The schema of its batches.
    fn schema(&self) -> SchemaRef;
}

/// A structured format, as [`RecordDecoder`] needs it.
pub trait RecordFormat: Send + Sync + std::fmt::Debug {
    /// A decoder of `batch_size`-record batches of the parsed columns the scan reads.
    fn decoder(&self, batch_size: usize) -> Box<dyn FastDecoder>;
    /// The length of the first record in `bytes`, its terminator included; `None` when
    /// `bytes` holds no whole record (at the end of the file, what is left is one).
    fn record_len(&self, bytes: &[u8], at_end: bool) -> Option<usize>;
    /// Whether the file's first record is a header, not data.
    fn has_header(&self) -> bool {
        false
    }
    /// Whether every record is one line (JSON lines): decoded without copying.
    fn records_are_lines(&self) -> bool {
        false
    }
    /// A scanner of where records end, from the start of one.
    fn scanner(&self) -> Box<dyn RecordScanner>;
}

/// Finds where records end in a stream of bytes handed over a piece at a time.
pub trait RecordScanner: Send {
    /// How many of `bytes` the current record takes, its terminator included, if it ends in
    /// them; `None` if it goes on past them (all of them read).
    fn end_in(&mut self, bytes: &[u8]) -> Option<usize>;
}

/// Where the records in `raw` end, read so far (see [`RecordDecoder::has_long_record`]).
struct Scan {
    scanner: Box<dyn RecordScanner>,
    /// Bytes of `raw` read.
    read: usize,
    /// Where the record being read began.
    record_start: usize,
}

/// A record that did not fit the schema, as `--bad-records` keeps it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BadRecord {
    pub file: String,
    /// 1-based line where the record begins.
    pub line: u64,
    /// Byte offset in the (decompressed) file where the record begins.
    pub byte_offset: u64,
    pub reason: String,
    /// The record, decoded lossily, without its line end (cut at 64 KiB).
    pub record: String,
}

/// Decodes one file's records; see the module docs.
pub struct RecordDecoder<'a> {
    format: &'a dyn RecordFormat,
    on_error: OnError,
    fast: Box<dyn FastDecoder>,
    /// For each output column: `Some(i)`, column `i` of the decoder's batches; `None`,
    /// `_corrupt_record`.
    columns: &'a [Option<usize>],
    schema: SchemaRef,
    counters: &'a TextCounters,
    unit: &'a InputUnit,
    /// The bytes handed to the decoder since its last batch (or, in `slow`, not yet split).
    raw: Vec<u8>,
    /// Where `raw` begins in the file: byte offset and line.
    raw_offset: u64,
    raw_line: u64,
    /// The header is still to skip.
    header_pending: bool,
    /// The decoder rejected the start of a record that has not ended yet: split by hand
    /// until it has.
    slow: bool,
    batches: Vec<RecordBatch>,
    tally: SourceCounts,
    /// Records per batch.
    batch_rows: usize,
    /// Longest record taken (its line ends aside): `--max-line-bytes`.
    max_record: usize,
    /// Record ends found in `raw`, once it outgrew `max_record`.
    scan: Option<Scan>,
    /// Reading through the rest of a record found too long, to its end.
    skipping: Option<Box<dyn RecordScanner>>,
}

impl<'a> RecordDecoder<'a> {
    /// Batches of `rows` records (tests use small ones to cross many batch boundaries).
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows;
        self.fast = self.format.decoder(rows);
        self
    }

    pub fn new(
        format: &'a dyn RecordFormat,
        on_error: OnError,
        max_record: usize,
        columns: &'a [Option<usize>],
        schema: SchemaRef,
        counters: &'a TextCounters,
        unit: &'a InputUnit,
    ) -> Self {
        Self {
            max_record,
            scan: None,
            skipping: None,
            fast: format.decoder(BATCH_ROWS),
            batch_rows: BATCH_ROWS,
            format,
            on_error,
            columns,
            schema,
            counters,
            unit,
            raw: Vec::new(),
            raw_offset: 0,
            raw_line: 1,
            // A range of the socket log is lines, not a file with a header.
            header_pending: format.has_header() && unit.range.is_none(),
            slow: false,
            batches: Vec::new(),
            tally: SourceCounts::default(),
        }
    }

    /// Takes the next bytes of the file, as the decoder's state says.
    fn take(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(scanner) = &mut self.skipping {
            let Some(end) = scanner.end_in(bytes) else {
                self.advance(bytes);
                return Ok(());
            };
            self.advance(&bytes[..end]);
            self.skipping = None;
            return self.take(&bytes[end..]);
        }
        if self.format.records_are_lines() {
            return self.push_lines(bytes);
        }
        if self.slow {
            self.raw.extend_from_slice(bytes);
            return self.split(false);
        }
        self.feed(bytes)
    }

    /// Hands `bytes` to the fast decoder, falling back to record by record where it fails.
    fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        let mut pos = 0;
        while pos < bytes.len() {
            match self.fast.decode(&bytes[pos..]) {
                Ok(n) => {
                    self.raw.extend_from_slice(&bytes[pos..pos + n]);
                    pos += n;
                    if self.raw.len() > self.max_record {
                        if self.has_long_record() {
                            // Record by record, the long one malformed; then on as that
                            // leaves it.
                            self.split(false)?;
                            return self.take(&bytes[pos..]);
                        }
                        if self.scan.as_ref().map(|s| s.record_start) == Some(self.raw.len()) {
                            // Whole records and blank lines only: emitted now, so that blank
                            // lines cannot pile up.
                            self.flush_whole()?;
                            continue;
                        }
                    }
                    if self.fast.is_full() {
                        self.flush_fast(false)?;
                    } else if n == 0 {
                        break;
                    }
                }
                Err(_) => {
                    self.raw.extend_from_slice(&bytes[pos..]);
                    return self.split(false);
                }
            }
        }
        Ok(())
    }

    /// Emits the decoder's batch: the bytes since the previous one are done with.
    fn flush_fast(&mut self, at_end: bool) -> Result<()> {
        match self.fast.flush() {
            Ok(Some(batch)) => {
                self.emit(batch, None)?;
                let mut raw = std::mem::take(&mut self.raw);
                self.advance(&raw);
                raw.clear();
                self.raw = raw;
                self.scan = None;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(_) => self.split(at_end),
        }
    }

    /// Emits what the decoder holds when `raw` ends between records, and drops `raw`.
    fn flush_whole(&mut self) -> Result<()> {
        match self.fast.flush() {
            Ok(Some(batch)) => self.emit(batch, None)?,
            Ok(None) => {}
            Err(_) => return self.split(false),
        }
        let raw = std::mem::take(&mut self.raw);
        self.advance(&raw);
        self.scan = None;
        Ok(())
    }

    /// Whether `raw` holds a record longer than the limit, ended or not (read on from where
    /// the last call stopped: each byte is scanned once).
    fn has_long_record(&mut self) -> bool {
        let format = self.format;
        let scan = self.scan.get_or_insert_with(|| Scan {
            scanner: format.scanner(),
            read: 0,
            record_start: 0,
        });
        while scan.read < self.raw.len() {
            match scan.scanner.end_in(&self.raw[scan.read..]) {
                Some(n) => {
                    let end = scan.read + n;
                    if content_len(&self.raw[scan.record_start..end]) > self.max_record {
                        return true;
                    }
                    (scan.read, scan.record_start) = (end, end);
                }
                None => scan.read = self.raw.len(),
            }
            // Blank lines are no record's: passed once, not measured again.
            scan.record_start += blank_run(&self.raw[scan.record_start..scan.read]);
        }
        unended_len(&self.raw[scan.record_start..]) > self.max_record
    }

    /// Why a record is malformed when it is too long.
    fn too_long(&self) -> ArrowError {
        ArrowError::ParseError(format!(
            "longer than --max-line-bytes ({} bytes)",
            self.max_record
        ))
    }

    /// A record too long (ended, or the start of one that has not ended yet): malformed, as
    /// `--on-error` says (permissive keeps the start of it).
    fn reject(&mut self, record: &[u8]) -> Result<()> {
        let shown = head(record, self.max_record);
        if let Some(kept) = self.bad(shown, self.too_long())? {
            let schema = self.format.decoder(1).schema();
            let corrupt: ArrayRef = Arc::new(StringArray::from(vec![Some(kept)]));
            self.emit(null_row(&schema)?, Some(corrupt))?;
        }
        self.advance(record);
        Ok(())
    }

    /// The start of a record too long that has not ended: rejected, and the rest of it
    /// read through until it ends.
    fn reject_unended(&mut self, start: &[u8]) -> Result<()> {
        self.reject(start)?;
        let mut scanner = self.format.scanner();
        let ended = scanner.end_in(start);
        debug_assert!(ended.is_none(), "a record taken as unended ends");
        self.skipping = Some(scanner);
        Ok(())
    }

    /// `consumed`, the next bytes of the file, are done with.
    fn advance(&mut self, consumed: &[u8]) {
        self.raw_line += count_newlines(consumed) as u64;
        self.raw_offset += consumed.len() as u64;
    }

    /// Splits `raw` into records and decodes each alone; a partial last record goes back to
    /// the fast decoder when it takes it, else stays for the next chunk.
    fn split(&mut self, at_end: bool) -> Result<()> {
        self.fast = self.format.decoder(self.batch_rows);
        self.scan = None;
        let bytes = std::mem::take(&mut self.raw);
        let pos = self.one_by_one(&bytes, at_end, false)?;
        let rest = &bytes[pos..];
        self.slow = false;
        if rest.is_empty() {
            return Ok(());
        }
        if unended_len(rest) > self.max_record {
            return self.reject_unended(rest);
        }
        match self.fast.decode(rest) {
            Ok(n) if n == rest.len() => self.raw = rest.to_vec(),
            _ => {
                // It fails before its end is known: keep splitting until it has ended.
                self.fast = self.format.decoder(self.batch_rows);
                self.raw = rest.to_vec();
                self.slow = true;
            }
        }
        Ok(())
    }

    /// Decodes the whole records at the start of `bytes` one by one (all of them, or up to
    /// and including the first bad one with `stop_after_bad`), emitting their rows; returns
    /// the bytes taken.
    fn one_by_one(&mut self, bytes: &[u8], at_end: bool, stop_after_bad: bool) -> Result<usize> {
        let mut pos = 0;
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut corrupt: Vec<Option<String>> = Vec::new();
        let schema = self.format.decoder(1).schema();
        while pos < bytes.len() {
            // Line ends before a record (a `\n` left after a `\r`, blank lines) are not
            // part of it: its line and offset are where it begins.
            let blank = bytes[pos..]
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if blank > 0 {
                self.advance(&bytes[pos..pos + blank]);
                pos += blank;
                continue;
            }
            let Some(len) = self.format.record_len(&bytes[pos..], at_end) else {
                break;
            };
            if len == 0 {
                break;
            }
            let record = &bytes[pos..pos + len];
            let mut was_bad = false;
            let (decoded, shown) = if content_len(record) > self.max_record {
                (Err(self.too_long()), head(record, self.max_record))
            } else {
                (decode_one(self.format, record), record)
            };
            match decoded {
                Ok(Some(row)) => {
                    rows.push(row);
                    corrupt.push(None);
                }
                Ok(None) => {} // a blank line
                Err(reason) => {
                    was_bad = true;
                    if let Some(kept) = self.bad(shown, reason)? {
                        rows.push(null_row(&schema)?);
                        corrupt.push(Some(kept));
                    }
                }
            }
            self.advance(record);
            pos += len;
            if was_bad && stop_after_bad {
                break;
            }
        }
        if !rows.is_empty() {
            let batch = concat_batches(&schema, &rows)?;
            let corrupt: ArrayRef = Arc::new(StringArray::from(corrupt));
            self.emit(batch, Some(corrupt))?;
        }
        Ok(pos)
    }

    /// Formats whose records are lines (JSON lines): decodes the whole lines of `chunk`
    /// straight from it (the rest of a line waits in `raw`), so that no byte is copied on the
    /// way; a batch the decoder rejects is taken one by one from the chunk.
    fn push_lines(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(last) = memchr::memrchr(b'\n', chunk) else {
            self.raw.extend_from_slice(chunk);
            return self.reject_long_partial_line();
        };
        let (mut complete, rest) = chunk.split_at(last + 1);
        if !self.raw.is_empty() {
            let nl = memchr::memchr(b'\n', complete).expect("complete ends with a newline");
            let mut line = std::mem::take(&mut self.raw);
            line.extend_from_slice(&complete[..=nl]);
            self.whole_lines(&line, false)?;
            line.clear();
            self.raw = line;
            complete = &complete[nl + 1..];
        }
        self.whole_lines(complete, false)?;
        self.raw.extend_from_slice(rest);
        self.reject_long_partial_line()
    }

    /// A line begun in `raw` already longer than the limit: rejected, the rest skipped.
    fn reject_long_partial_line(&mut self) -> Result<()> {
        if unended_len(&self.raw) <= self.max_record {
            return Ok(());
        }
        let start = std::mem::take(&mut self.raw);
        self.reject_unended(&start)
    }

    /// [`Self::decode_lines`], each line longer than the limit taken out as malformed.
    fn whole_lines(&mut self, region: &[u8], at_end: bool) -> Result<()> {
        if region.len() <= self.max_record {
            return self.decode_lines(region, at_end); // none can be
        }
        let (mut good, mut line) = (0, 0);
        while line < region.len() {
            let end =
                memchr::memchr(b'\n', &region[line..]).map_or(region.len(), |nl| line + nl + 1);
            if content_len(&region[line..end]) > self.max_record {
                self.decode_lines(&region[good..line], false)?;
                self.reject(&region[line..end])?;
                good = end;
            }
            line = end;
        }
        self.decode_lines(&region[good..], at_end)
    }

    /// Decodes `region`, whole lines (the last one may lack its line end `at_end`).
    fn decode_lines(&mut self, region: &[u8], at_end: bool) -> Result<()> {
        let (mut start, mut pos) = (0, 0);
        while pos < region.len() {
            match self.fast.decode(&region[pos..]) {
                Ok(n) => {
                    pos += n;
                    if self.fast.is_full() && region[pos - 1] != b'\n' && pos < region.len() {
                        // The batch filled inside a line (two objects on it): that line is
                        // not one record, so the batch is taken one by one to its end.
                        let end = memchr::memchr(b'\n', &region[pos..])
                            .map_or(region.len(), |nl| pos + nl + 1);
                        self.fast = self.format.decoder(self.batch_rows);
                        self.one_by_one(&region[start..end], true, false)?;
                        (start, pos) = (end, end);
                    } else if self.fast.is_full() {
                        self.flush_lines(&region[start..pos], at_end)?;
                        start = pos;
                    } else if n == 0 {
                        break;
                    }
                }
                Err(_) => {
                    // From the batch's start up to the bad record, one by one; then on.
                    self.fast = self.format.decoder(self.batch_rows);
                    pos = start + self.one_by_one(&region[start..], true, true)?;
                    start = pos;
                }
            }
        }
        if at_end && let Err(_) = self.fast.end() {
            self.fast = self.format.decoder(self.batch_rows);
            self.one_by_one(&region[start..], true, false)?;
            return Ok(());
        }
        self.flush_lines(&region[start..pos], at_end)
    }

    /// Emits the decoder's batch of the lines `batch`, or takes them one by one: also when
    /// its rows are not one per line (two objects on a line, one over several lines, a blank
    /// line), so that what is a record never depends on where reads split the file.
    fn flush_lines(&mut self, batch: &[u8], at_end: bool) -> Result<()> {
        let newlines = count_newlines(batch);
        let lines = newlines + usize::from(!batch.is_empty() && !batch.ends_with(b"\n"));
        match self.fast.flush() {
            Ok(Some(rows)) if rows.num_rows() == lines => {
                self.emit(rows, None)?;
                self.raw_line += newlines as u64;
                self.raw_offset += batch.len() as u64;
            }
            Ok(Some(_)) => {
                self.fast = self.format.decoder(self.batch_rows);
                self.one_by_one(batch, at_end || batch.ends_with(b"\n"), false)?;
            }
            Ok(None) => self.advance(batch),
            Err(_) => {
                self.fast = self.format.decoder(self.batch_rows);
                self.one_by_one(batch, at_end || batch.ends_with(b"\n"), false)?;
            }
        }
        Ok(())
    }

    /// Counts, notes and logs a record that does not fit; what permissive mode keeps of it.
    fn bad(&mut self, record: &[u8], reason: ArrowError) -> Result<Option<String>> {
        let text = String::from_utf8_lossy(&record[..record.len().min(MAX_KEPT_RECORD)])
            .trim_end_matches(['\n', '\r'])
            .to_string();
        let reason = clean_reason(&reason.to_string());
        let seen = self
            .counters
            .malformed_records
            .fetch_add(1, Ordering::Relaxed);
        self.tally.malformed_records += 1;
        let where_ = format!(
            "{}: line {} (byte {})",
            self.unit.display, self.raw_line, self.raw_offset
        );
        if self.on_error == OnError::Fail {
            return Err(DataFusionError::Execution(format!(
                "{where_}: a malformed record ({reason}): {text:?}. With --on-error fail \
                 (FAILFAST) it fails the batch; --on-error permissive keeps it in \
                 _corrupt_record, --on-error drop skips it (both count it)"
            )));
        }
        if seen < 3 {
            log::warn!(
                "{where_}: a malformed record ({reason}), {}",
                if self.on_error == OnError::Drop {
                    "skipped and counted"
                } else {
                    "kept in _corrupt_record and counted"
                }
            );
        }
        self.counters.note_bad_record(|| BadRecord {
            file: self.unit.display.clone(),
            line: self.raw_line,
            byte_offset: self.raw_offset,
            reason,
            record: text.clone(),
        });
        Ok((self.on_error == OnError::Permissive).then_some(text))
    }

    /// Adds a batch of the decoder's columns (and `_corrupt_record`) as the scan's columns.
    fn emit(&mut self, batch: RecordBatch, corrupt: Option<ArrayRef>) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| match c {
                Some(i) => Arc::clone(batch.column(*i)),
                None => corrupt.clone().unwrap_or_else(|| {
                    datafusion::arrow::array::new_null_array(&DataType::Utf8, rows)
                }),
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        self.counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.tally.rows += rows as u64;
        self.batches.push(batch);
        Ok(())
    }

    fn skip_header(&mut self, chunk: &[u8]) -> Result<Option<Vec<u8>>> {
        self.raw.extend_from_slice(chunk);
        let Some(len) = self.format.record_len(&self.raw, false) else {
            if unended_len(&self.raw) > self.max_record {
                // A header too long (a stray quote in it swallows the file): malformed.
                self.header_pending = false;
                let start = std::mem::take(&mut self.raw);
                self.reject_unended(&start)?;
            }
            return Ok(None);
        };
        self.header_pending = false;
        let rest = self.raw.split_off(len);
        let header = std::mem::take(&mut self.raw);
        self.advance(&header);
        Ok(Some(rest))
    }
}

impl Decode for RecordDecoder<'_> {
    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.counters
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.tally.bytes += chunk.len() as u64;
        if self.header_pending {
            return match self.skip_header(chunk)? {
                Some(rest) => self.take(&rest),
                None => Ok(()),
            };
        }
        self.take(chunk)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if self.header_pending {
            // A file of one line without a line end: the header only.
            self.header_pending = false;
            self.raw.clear();
        }
        if self.skipping.is_some() {
            // The file ends the long record.
        } else if self.format.records_are_lines() {
            let last = std::mem::take(&mut self.raw);
            self.whole_lines(&last, true)?;
        } else if self.slow || (self.raw.len() > self.max_record && self.has_long_record()) {
            self.split(true)?;
        } else {
            match self.fast.end() {
                Ok(()) => self.flush_fast(true)?,
                Err(_) => self.split(true)?,
            }
        }
        Ok(std::mem::take(&mut self.batches))
    }

    fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }

    fn tally(&self) -> SourceCounts {
        self.tally
    }
}

/// The newlines in `bytes`, counted in byte-wide lanes 255 bytes at a time (so that the
/// compiler makes it wide compares and adds: a search per newline, or a count into a word,
/// costs several times more, and this runs over every byte read).
fn count_newlines(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'\n'))) as usize
        })
        .sum()
}

/// The first `max` bytes of a record too long, line ends before it aside: what is shown of
/// it whether it was seen whole or only its start (so the same whatever the reads).
fn head(record: &[u8], max: usize) -> &[u8] {
    let start = blank_run(record);
    &record[start..record.len().min(start + max)]
}

/// A whole record's length without the blank lines before it and its line end.
fn content_len(record: &[u8]) -> usize {
    let record = &record[blank_run(record)..];
    let terminator = match record {
        [.., b'\r', b'\n'] => 2,
        [.., b'\r' | b'\n'] => 1,
        _ => 0,
    };
    record.len() - terminator
}

/// The length so far of a record that has not ended, measured as [`content_len`] will
/// measure it whole (a last `\r` may begin its `\r\n`): never more, so that no record is
/// found too long early.
fn unended_len(start: &[u8]) -> usize {
    let start = &start[blank_run(start)..];
    start.len() - usize::from(start.ends_with(b"\r"))
}

/// The line ends at the start of `bytes` (blank lines, or the `\n` of a `\r\n` whose `\r`
/// ended the record before).
fn blank_run(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// Arrow's message without the line number it counted within the one record it was given.
fn clean_reason(reason: &str) -> String {
    static LINE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r" (?:at|for) line \d+").expect("a valid regex")
    });
    LINE.replace_all(reason, "").into_owned()
}

/// Decodes one record alone: its row, `None` for a blank line, or why it does not fit.
fn decode_one(
    format: &dyn RecordFormat,
    record: &[u8],
) -> std::result::Result<Option<RecordBatch>, ArrowError> {
    let mut decoder = format.decoder(1);
    let n = decoder.decode(record)?;
    if n < record.len() && !record[n..].iter().all(u8::is_ascii_whitespace) {
        return Err(ArrowError::ParseError(
            "more than one record where one was expected".into(),
        ));
    }
    decoder.end()?;
    decoder.flush()
}

/// A row of NULLs in `schema` (what permissive mode gives a malformed record's columns).
fn null_row(schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1))
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(1));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{CsvOptions, FormatKind, FormatSpec, StreamFormat};
    use crate::format::{Decoding, parse_columns};

    async fn stream_format(kind: FormatKind, on_error: OnError) -> StreamFormat {
        let spec = FormatSpec {
            kind,
            name: "lines".into(),
            columns: Some("n BIGINT, s VARCHAR".into()),
            csv: (kind == FormatKind::Csv).then(|| CsvOptions {
                header: true,
                ..Default::default()
            }),
            on_error,
            event_time_column: None,
        };
        let parsed = parse_columns("n BIGINT, s VARCHAR", "t").await.unwrap();
        StreamFormat::new(spec, Some(parsed)).unwrap()
    }

    /// Decodes `bytes` pushed in chunks of the sizes `sizes` gives, with records of at most
    /// `max_record` bytes: rows as text, the bad records' (line, offset), and the tally. The
    /// bytes kept between pushes stay within `kept_at_most`.
    fn decode(
        format: &StreamFormat,
        bytes: &[u8],
        max_record: usize,
        kept_at_most: usize,
        mut sizes: impl FnMut() -> usize,
    ) -> (Vec<String>, Vec<(u64, u64)>, SourceCounts) {
        let columns: Vec<usize> = (0..format.file_schema.fields().len()).collect();
        let Decoding::Records {
            format: records,
            on_error,
            max_record_bytes,
            columns,
            schema,
        } = Decoding::new(format, &columns, max_record).unwrap()
        else {
            panic!("not a record format");
        };
        let counters = TextCounters::default();
        counters.keep_bad_records();
        let unit = InputUnit::file("t".into(), 0);
        let mut decoder = RecordDecoder::new(
            records.as_ref(),
            on_error,
            max_record_bytes,
            &columns,
            schema,
            &counters,
            &unit,
        )
        .with_batch_rows(97);
        let mut batches = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let n = sizes().clamp(1, bytes.len() - pos);
            decoder.push(&bytes[pos..pos + n]).unwrap();
            assert!(
                decoder.raw.len() <= kept_at_most,
                "{} bytes kept",
                decoder.raw.len()
            );
            batches.extend(decoder.take_batches());
            pos += n;
        }
        batches.extend(decoder.finish().unwrap());
        let rows = crate::commands::verify::rows_as_text(&batches, "|");
        let bad = counters
            .take_bad_records()
            .iter()
            .map(|r| (r.line, r.byte_offset))
            .collect();
        (rows, bad, decoder.tally())
    }

    #[tokio::test]
    async fn chunk_boundaries_do_not_change_rows_or_bad_records() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for kind in [FormatKind::Csv, FormatKind::Json] {
            for mode in [OnError::Permissive, OnError::Drop] {
                let format = stream_format(kind, mode).await;
                let mut text = String::new();
                if kind == FormatKind::Csv {
                    text.push_str("n,s\n");
                }
                let mut good = 0;
                // Line ends: \n, or \r\n for one file in two.
                let end = if rng.random_bool(0.5) { "\r\n" } else { "\n" };
                for i in 0..3_000 {
                    let bad = rng.random_bool(0.01);
                    // Longer than the limit (256 bytes): malformed too, in CSV with quoted
                    // line ends inside.
                    let long = !bad && rng.random_bool(0.01);
                    good += usize::from(!bad && !long);
                    let n = if bad { "x".to_string() } else { i.to_string() };
                    match kind {
                        _ if long => {
                            let field = "x\n".repeat(rng.random_range(128..400));
                            match kind {
                                FormatKind::Csv => text.push_str(&format!("{n},\"{field}\"{end}")),
                                _ => text.push_str(&format!(
                                    "{{\"n\":{n},\"s\":\"{}\"}}{end}",
                                    field.replace('\n', "\\n")
                                )),
                            }
                        }
                        FormatKind::Csv => text.push_str(&format!("{n},\"a,{i}\"{end}")),
                        // Two objects on one line are one bad record, wherever reads split.
                        _ if bad && i % 2 == 0 => {
                            text.push_str(&format!("{{\"n\":1,\"x\":0}}{{\"n\":2}}{end}"))
                        }
                        _ => {
                            let n = if bad { "\"x\"".to_string() } else { n };
                            text.push_str(&format!("{{\"n\":{n},\"s\":\"a{i}\"}}{end}"))
                        }
                    }
                }
                text.push_str(match kind {
                    FormatKind::Csv => "99,last",
                    _ => "{\"n\":99,\"s\":\"last\"}",
                });
                let bytes = text.as_bytes();
                let whole = decode(&format, bytes, 256, usize::MAX, || usize::MAX);
                assert_eq!(whole.2.malformed_records as usize, 3_000 - good, "{kind}");
                let expected_rows = match mode {
                    OnError::Drop => good + 1,
                    _ => 3_001,
                };
                assert_eq!(whole.0.len(), expected_rows, "{kind} {mode:?}");
                for _ in 0..3 {
                    let max = rng.random_range(1..5000);
                    let mut sizes = rand::rngs::StdRng::seed_from_u64(rng.random());
                    // Kept: a batch of 97 short records and what a read brings at most.
                    let kept = 4 * 1024 + max;
                    let chunked = decode(&format, bytes, 256, kept, || sizes.random_range(1..=max));
                    let first_difference = chunked.0.iter().zip(&whole.0).position(|(a, b)| a != b);
                    assert!(
                        chunked.0.len() == whole.0.len() && first_difference.is_none(),
                        "{kind} {mode:?} chunks up to {max}: {} rows against {}, first \
                         difference at {first_difference:?}: {:.300?} against {:.300?}",
                        chunked.0.len(),
                        whole.0.len(),
                        first_difference.map(|i| &chunked.0[i]),
                        first_difference.map(|i| &whole.0[i]),
                    );
                    assert_eq!(chunked.1, whole.1, "{kind} {mode:?} chunks up to {max}");
                    assert_eq!(chunked.2, whole.2, "{kind} {mode:?} chunks up to {max}");
                }
                // Each bad record's line and offset point at it.
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        bytes
                            .iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .collect();
                for (line, offset) in &whole.1 {
                    assert_eq!(starts[*line as usize - 1], *offset as usize);
                    assert!(text[*offset as usize..].contains('x'));
                }
            }
        }
    }

    /// A record that does not end (an unclosed quote, a line without its end, in the header
    /// too) is reported once it passes the limit and read through to its end without being
    /// kept, whatever the reads; the records before it count.
    #[tokio::test]
    async fn a_record_that_never_ends_is_skipped_within_the_limit() {
        // (format, the good start, the record that does not end, what repeats in it, its
        // line)
        let cases: [(FormatKind, &str, &str, &str, u64); 6] = [
            (
                FormatKind::Csv,
                "n,s\n1,a\n",
                "2,\"never closed\n",
                "3,b\n",
                3,
            ),
            // Line ends inside the quotes, then line ends only.
            (FormatKind::Csv, "n,s\n1,a\n", "2,\"", "\n", 3),
            (FormatKind::Csv, "n,s\n1,a\n", "2,\"", "\r\n", 3),
            // A stray quote in the header.
            (FormatKind::Csv, "", "\"n,s\n", "1,a\n", 1),
            (
                FormatKind::Json,
                "{\"n\":1,\"s\":\"a\"}\n",
                "{\"n\":2,\"s\":\"",
                "x",
                2,
            ),
            (
                FormatKind::Json,
                "{\"n\":1,\"s\":\"a\"}\n",
                "{\"n\":2,\"s\":\"",
                "\r",
                2,
            ),
        ];
        // Blank lines do not pile up either.
        let format = stream_format(FormatKind::Csv, OnError::Drop).await;
        let text = format!("n,s\n1,a\n{}2,b", "\n".repeat(200_000));
        for chunk in [1, 100, 50_000] {
            let got = decode(&format, text.as_bytes(), 1000, 3 * 1000 + chunk, || chunk);
            assert_eq!(got.0, ["1|a", "2|b"], "chunks of {chunk}");
            assert_eq!(got.2.malformed_records, 0);
        }
        for (kind, head, open, again, line) in cases {
            for mode in [OnError::Permissive, OnError::Drop] {
                let format = stream_format(kind, mode).await;
                let mut text = format!("{head}{open}");
                while text.len() < 200_000 {
                    text.push_str(again);
                }
                let good = usize::from(!head.is_empty());
                // The good record, and in permissive mode the long one's row.
                let rows = good + usize::from(mode == OnError::Permissive);
                for chunk in [1, 7, 100, 1000, 50_000] {
                    let got = decode(&format, text.as_bytes(), 1000, 3 * 1000 + chunk, || chunk);
                    let what = format!(
                        "{open:?}{again:?} {mode:?} chunks of {chunk}: {:.500?}",
                        got.0
                    );
                    assert_eq!(got.2.malformed_records, 1, "{what}");
                    assert_eq!(got.1, [(line, head.len() as u64)], "{what}");
                    assert_eq!(got.0.len(), rows, "{what}");
                    assert_eq!(
                        got.0.iter().filter(|r| r.starts_with("1|a")).count(),
                        good,
                        "{what}"
                    );
                }
            }
        }
    }
}
