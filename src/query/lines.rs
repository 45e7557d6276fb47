//! The `lines` table, and how its files are read.
//!
//! The app puts a trigger's input units into the [`TriggerSlot`] (with the trigger's time, the
//! event time and the watermark that the run shares); the query puts them into its planned plan
//! ([`super::scan::bind`]) and runs it, and the scan reads each file with [`read_file`]: in
//! chunks on a blocking thread, decompressed, pinned to the size taken, decoded by
//! [`crate::batch::LineDecoder`].

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::{cast, filter, filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;

use crate::batch::{SourceCounts, TextCounters};
use crate::format::Decoding;
use crate::source::{InputUnit, Place};

/// Bytes read from a file at a time.
const READ_CHUNK: usize = 1 << 20;

/// Where the app puts each trigger's files for the `lines` scans to read.
#[derive(Debug, Clone)]
pub struct TriggerSlot {
    /// The input units of the next execution.
    units: Arc<Mutex<Arc<Vec<InputUnit>>>>,
    counters: Arc<TextCounters>,
    max_line_bytes: usize,
    /// `--event-time`: replaces `ts` with an expression over the line.
    event_time: Arc<std::sync::OnceLock<Arc<EventTime>>>,
    /// `--watermark`: rows older than it are dropped.
    watermark: Arc<Watermark>,
    /// What `now()` and its kin answer during the trigger.
    clock: super::clock::TriggerClock,
    /// The stream table's format and columns.
    format: Arc<crate::format::StreamFormat>,
    /// Static tables the query may join with (`--table`), by name.
    tables: Vec<(String, Arc<dyn TableProvider>)>,
}

/// The event-time watermark: the largest `ts` seen minus a delay, only moving forward. Rows
/// older than the watermark at the start of a trigger are late: dropped and counted.
#[derive(Debug)]
pub struct Watermark {
    /// Microseconds; `None`: no watermark.
    delay: std::sync::OnceLock<i64>,
    current: std::sync::atomic::AtomicI64,
    /// The largest `ts` read in the current trigger.
    trigger_max: std::sync::atomic::AtomicI64,
}

impl Default for Watermark {
    fn default() -> Self {
        Self {
            delay: std::sync::OnceLock::new(),
            current: std::sync::atomic::AtomicI64::new(i64::MIN),
            trigger_max: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

impl Watermark {
    /// A watermark `current` microseconds in, with `delay` (as a shipped plan carries it).
    pub(super) fn fixed(delay: i64, current: i64) -> Self {
        let watermark = Self::default();
        let _ = watermark.delay.set(delay);
        watermark.current.store(current, Ordering::Relaxed);
        watermark
    }

    /// Its delay and its value, in microseconds (`i64::MIN`: none yet).
    pub(super) fn delay_and_current(&self) -> (i64, i64) {
        (
            self.delay.get().copied().unwrap_or(0),
            self.current.load(Ordering::Relaxed),
        )
    }

    fn enabled(&self) -> bool {
        self.delay.get().is_some()
    }

    /// Notes a trigger's rows and drops the late ones (by the event-time column of
    /// `columns`).
    pub(super) fn apply(
        &self,
        batch: RecordBatch,
        counters: &TextCounters,
        columns: TableColumns,
    ) -> Result<RecordBatch> {
        let ts = batch
            .column(columns.event_time)
            .as_primitive::<TimestampMicrosecondType>();
        if let Some(max) = datafusion::arrow::compute::max(ts) {
            self.trigger_max.fetch_max(max, Ordering::Relaxed);
        }
        let current = self.current.load(Ordering::Relaxed);
        if current == i64::MIN {
            return Ok(batch);
        }
        let on_time: BooleanArray = ts
            .iter()
            .map(|t| Some(t.is_some_and(|t| t >= current)))
            .collect();
        let late = batch.num_rows() - on_time.true_count();
        if late == 0 {
            return Ok(batch);
        }
        counters.late_rows.fetch_add(late as u64, Ordering::Relaxed);
        count_by_source(
            &batch,
            columns.file,
            |i| !on_time.value(i),
            counters,
            |n| SourceCounts {
                late_rows: n,
                ..Default::default()
            },
        );
        Ok(filter_record_batch(&batch, &on_time)?)
    }
}

/// Where the stream table's special columns are (see [`crate::format::StreamFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableColumns {
    /// The event time: `ts` for text, or the column `--event-time` names.
    pub event_time: usize,
    /// The file each row came from.
    pub file: usize,
}

impl TableColumns {
    pub fn of(format: &crate::format::StreamFormat) -> Self {
        Self {
            event_time: format.event_time_index(),
            file: format.file_index(),
        }
    }
}

/// Adds to each source the rows of `batch` (every column of the table) that `dropped`
/// picks, as `counts` makes them: each row's file column names its unit, and so its source.
pub(super) fn count_by_source(
    batch: &RecordBatch,
    file_column: usize,
    dropped: impl Fn(usize) -> bool,
    counters: &TextCounters,
    counts: impl Fn(u64) -> SourceCounts,
) {
    let files = batch.column(file_column).as_string::<i32>();
    let mut by_file: Vec<(&str, u64)> = Vec::new();
    for i in (0..batch.num_rows()).filter(|&i| dropped(i)) {
        let file = files.value(i);
        match by_file.iter_mut().find(|(f, _)| *f == file) {
            Some((_, n)) => *n += 1,
            None => by_file.push((file, 1)),
        }
    }
    for (file, n) in by_file {
        counters.add_for_file(file, counts(n));
    }
}

/// An `--event-time` expression, evaluated over each decoded batch of the stream table.
#[derive(Debug)]
pub struct EventTime {
    pub text: String,
    pub expr: Arc<dyn PhysicalExpr>,
    /// The column it sets, and the file column.
    pub columns: TableColumns,
}

impl EventTime {
    /// Sets the event-time column of a batch of every table column (`ts` for text) to the
    /// expression's value; rows where it is NULL or fails are dropped and counted, with the
    /// first few logged.
    pub fn apply(&self, batch: RecordBatch, counters: &TextCounters) -> Result<RecordBatch> {
        let ts_type = crate::format::event_time_type();
        let evaluate = |rows: &RecordBatch| -> Result<ArrayRef> {
            let value = self.expr.evaluate(rows)?.into_array(rows.num_rows())?;
            match value.data_type() {
                // A timestamp without a zone is taken as UTC, as arrow's cast would, but
                // without looking each row up in a calendar.
                DataType::Timestamp(..) => Ok(super::functions::from_micros(
                    super::functions::as_micros(&value)?,
                    &ts_type,
                )?),
                _ => Ok(cast(&value, &ts_type)?),
            }
        };
        let times = match evaluate(&batch) {
            Ok(times) => times,
            Err(_) => {
                // Some row fails (e.g. an unparsable timestamp): find which, one by one.
                let mut builder = TimestampMicrosecondBuilder::with_capacity(batch.num_rows())
                    .with_timezone("UTC");
                for i in 0..batch.num_rows() {
                    match evaluate(&batch.slice(i, 1)) {
                        Ok(t) if t.is_valid(0) => builder
                            .append_value(t.as_primitive::<TimestampMicrosecondType>().value(0)),
                        _ => builder.append_null(),
                    }
                }
                Arc::new(builder.finish())
            }
        };
        let bad = times.null_count();
        if bad > 0 {
            let before = counters
                .bad_event_times
                .fetch_add(bad as u64, Ordering::Relaxed);
            count_by_source(
                &batch,
                self.columns.file,
                |i| times.is_null(i),
                counters,
                |n| SourceCounts {
                    rows_without_event_time: n,
                    ..Default::default()
                },
            );
            if before < 3
                && let Some(i) = (0..times.len()).find(|&i| times.is_null(i))
            {
                let file = batch.column(self.columns.file).as_string::<i32>().value(i);
                match batch.column(0).as_string_opt::<i32>() {
                    Some(values) if self.columns.event_time == 1 => log::warn!(
                        "--event-time {} gives no timestamp for the line {:?} (of {file}); such \
                         lines are skipped and counted",
                        self.text,
                        values.value(i),
                    ),
                    _ => log::warn!(
                        "--event-time {} is NULL in a row of {file}; such rows are skipped and \
                         counted",
                        self.text,
                    ),
                }
            }
        }
        let (batch, times) = if bad == 0 {
            (batch, times)
        } else {
            let keep = is_not_null(&times)?;
            (filter_record_batch(&batch, &keep)?, filter(&times, &keep)?)
        };
        let mut columns = batch.columns().to_vec();
        columns[self.columns.event_time] = times;
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }
}

impl TriggerSlot {
    /// A slot for the text format's `lines`; see [`TriggerSlot::with_format`].
    pub fn new(counters: Arc<TextCounters>, max_line_bytes: usize) -> Self {
        Self {
            units: Arc::default(),
            counters,
            max_line_bytes,
            event_time: Arc::default(),
            watermark: Arc::default(),
            clock: Default::default(),
            format: Arc::new(crate::format::StreamFormat::text()),
            tables: Vec::new(),
        }
    }

    /// The slot of a query that may join with these static tables.
    pub fn with_tables(mut self, tables: Vec<(String, Arc<dyn TableProvider>)>) -> Self {
        self.tables = tables;
        self
    }

    /// The static tables, by name.
    pub fn tables(&self) -> &[(String, Arc<dyn TableProvider>)] {
        &self.tables
    }

    /// The slot of a stream table in `format`.
    pub fn with_format(mut self, format: crate::format::StreamFormat) -> Self {
        self.format = Arc::new(format);
        self
    }

    /// The stream table's format and columns.
    pub fn format(&self) -> &Arc<crate::format::StreamFormat> {
        &self.format
    }

    /// The trigger's time, which `now()`, `current_date` and `current_time` answer.
    pub fn clock(&self) -> &super::clock::TriggerClock {
        &self.clock
    }

    /// Enables the watermark with this delay (microseconds).
    pub fn set_watermark_delay(&self, delay_micros: i64) {
        let _ = self.watermark.delay.set(delay_micros);
    }

    /// The watermark in microseconds, if enabled and known yet.
    pub fn watermark(&self) -> Option<i64> {
        let w = self.watermark.current.load(Ordering::Relaxed);
        (self.watermark.enabled() && w != i64::MIN).then_some(w)
    }

    /// Sets the watermark (restored from a checkpoint, or `i64::MAX` to close every window).
    pub fn restore_watermark(&self, micros: i64) {
        self.watermark.current.fetch_max(micros, Ordering::Relaxed);
    }

    /// Where the trigger's scans count (a shipped plan's reports are added here).
    pub fn counters(&self) -> &Arc<TextCounters> {
        &self.counters
    }

    /// Notes an event time a trigger's rows reached where the slot's scans did not see them
    /// (a shipped plan's, as its reports tell).
    pub fn note_event_time(&self, micros: i64) {
        self.watermark
            .trigger_max
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// Moves the watermark after a trigger: the largest `ts` it read minus the delay.
    pub fn advance_watermark(&self) -> Option<i64> {
        let delay = *self.watermark.delay.get()?;
        let max = self.watermark.trigger_max.load(Ordering::Relaxed);
        if max != i64::MIN {
            self.watermark
                .current
                .fetch_max(max.saturating_sub(delay), Ordering::Relaxed);
        }
        self.watermark()
    }

    /// Makes `ts` the value of `event_time` for every row read from now on.
    pub fn set_event_time(&self, event_time: EventTime) {
        let _ = self.event_time.set(Arc::new(event_time));
    }

    /// Makes `files` the input of the next plan execution.
    pub fn set(&self, files: Vec<InputUnit>) {
        self.watermark
            .trigger_max
            .store(i64::MIN, Ordering::Relaxed);
        if self.format.kind() == crate::format::FormatKind::Parquet {
            // DataFusion's Parquet reader reads what it needs of each file: count the files'
            // bytes (as taken) as the input's.
            for unit in &files {
                let bytes = unit.size.unwrap_or(0);
                self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                let counts = SourceCounts {
                    bytes,
                    ..Default::default()
                };
                self.counters.add_source(&unit.source, counts);
            }
        }
        let files = Arc::new(files);
        self.counters.set_trigger_units(Arc::clone(&files));
        *self.units.lock().expect("trigger slot poisoned") = files;
    }

    /// The input units of the next execution.
    pub fn units(&self) -> Arc<Vec<InputUnit>> {
        Arc::clone(&self.units.lock().expect("trigger slot poisoned"))
    }

    /// How scans planned now read: the counters, the line limit, the event time and the
    /// watermark (if enabled).
    fn reading(&self) -> super::scan::Reading {
        super::scan::Reading {
            counters: Arc::clone(&self.counters),
            format: Arc::clone(&self.format),
            max_line_bytes: self.max_line_bytes,
            event_time: self.event_time.get().cloned(),
            watermark: self
                .watermark
                .enabled()
                .then(|| Arc::clone(&self.watermark)),
        }
    }
}

/// The `lines` table provider.
#[derive(Debug)]
pub struct LinesTable {
    slot: TriggerSlot,
    partitions: usize,
}

impl LinesTable {
    pub fn new(slot: TriggerSlot, partitions: usize) -> Self {
        Self {
            slot,
            partitions: partitions.max(1),
        }
    }
}

#[async_trait]
impl TableProvider for LinesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.slot.format.table_schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        super::scan::plan_scan(self.slot.reading(), projection, self.partitions)
    }
}

/// Reads one file in chunks (decompressed if its extension says so) and hands each finished
/// batch to `emit`, which returns false to stop. A file that no longer exists is a counted,
/// logged skip; one that cannot be read is an error that says how to go on.
pub fn read_file(
    file: &InputUnit,
    decoding: &Decoding,
    counters: &TextCounters,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<bool> {
    let opened = match &file.place {
        Place::File(path) => open_file(file, path, counters)?,
        Place::Object { store, path, .. } => open_object(file, store, path, counters)?,
    };
    let Some(mut reader) = opened else {
        let vanished = SourceCounts {
            vanished_files: 1,
            ..Default::default()
        };
        counters.add_source(&file.source, vanished);
        return Ok(true); // vanished: counted and logged
    };
    let mut decoder = decoding.decoder(file, counters);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut busy = std::time::Duration::ZERO;
    let result = (|| {
        loop {
            let started = std::time::Instant::now();
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreadable(file, e)),
            };
            decoder.push(&chunk[..n])?;
            busy += started.elapsed();
            for batch in decoder.take_batches() {
                if !emit(batch) {
                    return Ok(false);
                }
            }
        }
        let started = std::time::Instant::now();
        let last = decoder.finish()?;
        busy += started.elapsed();
        for batch in last {
            if !emit(batch) {
                return Ok(false);
            }
        }
        Ok(true)
    })();
    counters
        .read_nanos
        .fetch_add(busy.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    counters.add_source(&file.source, decoder.tally());
    result
}

/// Opens a local file (or a range of a socket log segment) as it was taken, decompressed;
/// `None` if it vanished (counted and logged).
fn open_file(
    file: &InputUnit,
    path: &std::path::Path,
    counters: &TextCounters,
) -> Result<Option<Box<dyn Read>>> {
    let opened = std::fs::File::open(path).and_then(|mut f| {
        if let Some((start, end)) = file.range {
            // A log range is input nothing else holds: a segment cut short (or recreated
            // empty after being deleted) must not be read as fewer lines.
            let len = f.metadata()?.len();
            if len < end {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("it holds {len} bytes, not the {end} this batch read"),
                ));
            }
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start))?;
        }
        Ok(f)
    });
    let compression = crate::compression::Compression::of(path);
    match opened {
        Ok(f) => {
            let f = pinned(f, file, counters, compression.is_some())
                .map_err(|e| unreadable(file, e))?;
            Ok(Some(match (file.range, compression) {
                (Some((start, end)), _) => Box::new(f.take(end.saturating_sub(start))),
                (None, Some(kind)) => kind.decoder(f).map_err(|e| unreadable(file, e))?,
                (None, None) => Box::new(f),
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.range.is_some() => {
            // A log segment is input nothing else holds: skipping it would lose lines.
            Err(
                datafusion::common::DataFusionError::IoError(e).context(format!(
                    "the socket log segment {} holding bytes {:?} of this batch is gone or \
                     cut short; the batch cannot be read again exactly. Restore the segment, \
                     or start over with `dfstream reset --checkpoint DIR`",
                    path.display(),
                    file.range.unwrap_or_default()
                )),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            vanished(file, counters);
            Ok(None)
        }
        Err(e) => Err(unreadable(file, e)),
    }
}

fn vanished(file: &InputUnit, counters: &TextCounters) {
    counters
        .vanished_files
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    log::warn!("{}: vanished before it was read, skipped", file.display);
}

/// Opens an object as it was taken (its first `size` bytes, as far as they still go),
/// decompressed; `None` if it vanished. Must run where blocking is allowed (the scan's
/// blocking threads).
fn open_object(
    file: &InputUnit,
    store: &Arc<dyn object_store::ObjectStore>,
    path: &object_store::path::Path,
    counters: &TextCounters,
) -> Result<Option<Box<dyn Read>>> {
    use object_store::ObjectStoreExt;
    let runtime = tokio::runtime::Handle::current();
    let meta = match runtime.block_on(store.head(path)) {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => {
            vanished(file, counters);
            return Ok(None);
        }
        Err(e) => return Err(unreadable(file, crate::storage::io_error(e))),
    };
    let compression = crate::compression::Compression::of(std::path::Path::new(path.as_ref()));
    let mut len = meta.size;
    if let Some(size) = file.size {
        let replaced = file.version.is_some() && meta.e_tag != file.version;
        if meta.size != size || replaced {
            counters
                .changed_files
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!(
                "{}: {} bytes{} now, {size} when it was taken; {}",
                file.display,
                meta.size,
                if replaced { " (another version)" } else { "" },
                if compression.is_some() {
                    "a compressed object is read whole, as it is now"
                } else {
                    "only the bytes taken are read, as far as they still go"
                }
            );
        }
        if compression.is_none() {
            len = size.min(meta.size);
        }
    }
    let reader = ObjectReader::new(
        Arc::clone(store),
        path.clone(),
        (len, meta.e_tag.clone()),
        runtime,
    );
    Ok(Some(match compression {
        Some(kind) => kind.decoder(reader).map_err(|e| unreadable(file, e))?,
        None => Box::new(reader),
    }))
}

/// Where a unit is, for messages: a local path, or the object's URL.
fn place_of(file: &InputUnit) -> String {
    match &file.place {
        Place::File(path) => path.display().to_string(),
        Place::Object { .. } => file.display.clone(),
    }
}

/// Bytes an object is read in: one ranged GET each, the next one fetched while this one is
/// decoded.
const OBJECT_CHUNK: u64 = 8 << 20;

/// Reads the first `end` bytes of an object with ranged GETs of [`OBJECT_CHUNK`], one
/// ahead, never holding more than two chunks.
struct ObjectReader {
    store: Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    /// Every chunk must come from this version (the one the size was checked against): an
    /// object replaced while it is read fails the batch rather than mix two versions.
    e_tag: Option<String>,
    next_start: u64,
    end: u64,
    current: bytes::Bytes,
    pos: usize,
    pending: Option<tokio::task::JoinHandle<object_store::Result<bytes::Bytes>>>,
    runtime: tokio::runtime::Handle,
}

impl ObjectReader {
    fn new(
        store: Arc<dyn object_store::ObjectStore>,
        path: object_store::path::Path,
        (end, e_tag): (u64, Option<String>),
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let mut reader = ObjectReader {
            store,
            path,
            e_tag,
            next_start: 0,
            end,
            current: bytes::Bytes::new(),
            pos: 0,
            pending: None,
            runtime,
        };
        reader.pending = reader.fetch_next();
        reader
    }

    fn fetch_next(
        &mut self,
    ) -> Option<tokio::task::JoinHandle<object_store::Result<bytes::Bytes>>> {
        if self.next_start >= self.end {
            return None;
        }
        let range = self.next_start..self.end.min(self.next_start + OBJECT_CHUNK);
        self.next_start = range.end;
        let (store, path) = (Arc::clone(&self.store), self.path.clone());
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            if_match: self.e_tag.clone(),
            ..Default::default()
        };
        Some(
            self.runtime
                .spawn(async move { store.get_opts(&path, options).await?.bytes().await }),
        )
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.current.len() {
            let Some(pending) = self.pending.take() else {
                return Ok(0);
            };
            self.current = self
                .runtime
                .block_on(pending)
                .map_err(std::io::Error::other)?
                .map_err(crate::storage::io_error)?;
            self.pos = 0;
            self.pending = self.fetch_next();
            if self.current.is_empty() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
    }
}

/// `f` limited to the size its file was taken with. A file whose size differs now (it grew,
/// or was replaced) is read as it was taken, as far as it still goes; the change is logged
/// and counted. Files must not change once complete (the README's contract, and Spark's).
/// A compressed file is read whole: cut short, its stream would not decode at all, and a
/// restart could never get past it.
fn pinned(
    f: std::fs::File,
    file: &InputUnit,
    counters: &TextCounters,
    compressed: bool,
) -> std::io::Result<std::io::Take<std::fs::File>> {
    let Some(size) = file.size else {
        return Ok(f.take(u64::MAX));
    };
    let now = f.metadata()?.len();
    if now != size {
        counters
            .changed_files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log::warn!(
            "{}: {now} bytes now, {size} when it was taken; {}",
            file.display,
            if compressed {
                "a compressed file is read whole, as it is now"
            } else if now > size {
                "only the bytes taken are read (what was added later is ignored)"
            } else {
                "it shrank or was replaced, and its batch reads what is left of those bytes"
            }
        );
    }
    Ok(f.take(if compressed { u64::MAX } else { size }))
}

/// The error for an input file that exists but cannot be read (permissions, damaged
/// compressed data, an I/O error). The batch stops and is re-run at the next start, so the
/// message says what lets it through.
fn unreadable(file: &InputUnit, e: std::io::Error) -> datafusion::common::DataFusionError {
    let how = if file.range.is_some() {
        "the socket log is damaged; restore it, or start over with `dfstream reset`"
    } else if e.kind() == std::io::ErrorKind::PermissionDenied {
        "give dfstream read permission, or move the file out of the input directory (a file \
         gone when its batch runs is skipped and counted); the batch is re-run at the next start"
    } else {
        "replace it with a good copy under the same name, or move it out of the input \
         directory (a file gone when its batch runs is skipped and counted); the batch is \
         re-run at the next start"
    };
    datafusion::common::DataFusionError::IoError(e)
        .context(format!("reading {} ({how})", place_of(file)))
}
