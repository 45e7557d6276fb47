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
}

impl<'a> RecordDecoder<'a> {
    pub fn new(
        format: &'a dyn RecordFormat,
        on_error: OnError,
        columns: &'a [Option<usize>],
        schema: SchemaRef,
        counters: &'a TextCounters,
        unit: &'a InputUnit,
    ) -> Self {
        Self {
            fast: format.decoder(BATCH_ROWS),
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

    /// Hands `bytes` to the fast decoder, falling back to record by record where it fails.
    fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        let mut pos = 0;
        while pos < bytes.len() {
            match self.fast.decode(&bytes[pos..]) {
                Ok(n) => {
                    self.raw.extend_from_slice(&bytes[pos..pos + n]);
                    pos += n;
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
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(_) => self.split(at_end),
        }
    }

    /// `consumed`, the next bytes of the file, are done with.
    fn advance(&mut self, consumed: &[u8]) {
        self.raw_line += memchr::memchr_iter(b'\n', consumed).count() as u64;
        self.raw_offset += consumed.len() as u64;
    }

    /// Splits `raw` into records and decodes each alone; a partial last record goes back to
    /// the fast decoder when it takes it, else stays for the next chunk.
    fn split(&mut self, at_end: bool) -> Result<()> {
        self.fast = self.format.decoder(BATCH_ROWS);
        let bytes = std::mem::take(&mut self.raw);
        let mut pos = 0;
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut corrupt: Vec<Option<String>> = Vec::new();
        while pos < bytes.len() {
            let Some(len) = self.format.record_len(&bytes[pos..], at_end) else {
                break;
            };
            if len == 0 {
                break;
            }
            let record = &bytes[pos..pos + len];
            match decode_one(self.format, record) {
                Ok(Some(row)) => {
                    rows.push(row);
                    corrupt.push(None);
                }
                Ok(None) => {} // a blank line
                Err(reason) => {
                    let kept = self.bad(record, reason)?;
                    if let Some(kept) = kept {
                        rows.push(null_row(&self.fast.schema())?);
                        corrupt.push(Some(kept));
                    }
                }
            }
            self.advance(record);
            pos += len;
        }
        if !rows.is_empty() {
            let batch = concat_batches(&self.fast.schema(), &rows)?;
            let corrupt: ArrayRef = Arc::new(StringArray::from(corrupt));
            self.emit(batch, Some(corrupt))?;
        }
        let rest = &bytes[pos..];
        self.slow = false;
        if rest.is_empty() {
            return Ok(());
        }
        match self.fast.decode(rest) {
            Ok(n) if n == rest.len() => self.raw = rest.to_vec(),
            _ => {
                // It fails before its end is known: keep splitting until it has ended.
                self.fast = self.format.decoder(BATCH_ROWS);
                self.raw = rest.to_vec();
                self.slow = true;
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
                Some(rest) => self.feed(&rest),
                None => Ok(()),
            };
        }
        if self.slow {
            self.raw.extend_from_slice(chunk);
            return self.split(false);
        }
        self.feed(chunk)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if self.header_pending {
            // A file of one line without a line end: the header only.
            self.header_pending = false;
            self.raw.clear();
        }
        if self.slow {
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
