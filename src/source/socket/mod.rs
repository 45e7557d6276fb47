//! Reads newline-terminated lines from a TCP server into a write-ahead log (WAL) on local disk
//! (`--wal-dir`, by default `wal/` in a local checkpoint), and hands out ranges of that log as
//! batch input.
//!
//! A thread connects (retrying with backoff while the server is away), appends only whole
//! lines to `wal/NNNNNNNNNNNNNNNNNNNN.log`, syncs them, and only then makes them available, so
//! every line that reached the log survives a crash and is counted exactly once: a batch's
//! offsets are positions in the log. A line cut by a disconnect (a clean close or a reset) is
//! ended there; a line longer than the limit is skipped and counted, and the connection stays
//! usable. A failed append is cut back to the last whole line and retried with backoff.
//! Segments are deleted once no recovery can need them ([`Source::release`]). A batch's part
//! is its ranges of the log ([`WalRange`]); each commit records where the taken lines end.
//! Never plans SQL or decodes text (the `lines` scan reads the ranges like files).

mod wal;

use std::path::PathBuf;
use std::sync::Arc;

pub use wal::{SocketCounters, SocketLog};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::{BuildContext, InputUnit, Place, Restorable, Restored, Source};
use crate::batch::TextCounters;
use crate::error::{Error, Result};

/// The source's name in offsets, commits and snapshots.
pub const NAME: &str = "socket";

/// The socket source among the kinds of source.
pub const KIND: super::Kind = super::Kind {
    name: NAME,
    build: |ctx| Ok(SocketSource::from_config(ctx).map(|s| Box::new(s) as Box<dyn Source>)),
    describe_part,
};

/// The ranges of a recorded part of a batch.
pub fn ranges_of(part: &Value) -> Result<Vec<WalRange>> {
    super::decode(NAME, "log ranges of a batch", part)
}

/// A part of a batch for messages: its ranges of the log.
pub fn describe_part(part: &Value) -> String {
    match ranges_of(part) {
        Ok(ranges) => ranges
            .iter()
            .map(|r| {
                format!(
                    "socket log segment {} bytes {}..{}",
                    r.segment, r.start, r.end
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => format!("socket {part}"),
    }
}

/// `--socket HOST:PORT` as a [`Source`]: the log is opened, and the reading thread started,
/// when the checkpoint says where its batches ended ([`Source::restore`]).
pub struct SocketSource {
    address: String,
    wal_dir: PathBuf,
    max_line_bytes: usize,
    /// `--max-batch-rows`.
    max_rows: Option<u64>,
    wake: Arc<Notify>,
    counters: Arc<TextCounters>,
    /// With `--trigger available-now`: the log's end when the run began.
    bound: Option<WalPosition>,
    log: Option<SocketLog>,
}

impl SocketSource {
    /// The source `--socket` asks for, if it does.
    pub fn from_config(ctx: &BuildContext) -> Option<Self> {
        let args = &ctx.config.args;
        Some(Self {
            address: args.socket.clone()?,
            wal_dir: ctx.config.wal_dir.clone()?,
            max_line_bytes: args.max_line_bytes,
            max_rows: args.max_batch_rows,
            wake: Arc::clone(&ctx.wake),
            counters: Arc::clone(&ctx.counters),
            bound: None,
            log: None,
        })
    }

    fn log(&mut self) -> Result<&mut SocketLog> {
        self.log.as_mut().ok_or_else(|| {
            Error::Checkpoint("the socket source was used before it was restored".into())
        })
    }
}

#[async_trait::async_trait]
impl Source for SocketSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn identity(&self) -> String {
        "socket".to_string()
    }

    fn describe(&self) -> String {
        format!("socket {}", self.address)
    }

    async fn restore(&mut self, restored: Restored) -> Result<()> {
        let position = |value: &Value| super::decode::<WalPosition>(NAME, "log position", value);
        // Taken up to where the restored batch ended; each re-run batch moves that on as it
        // runs. (Starting past the re-runs would skip the lines of one whose offsets turn out
        // damaged, and commit a log end no batch has reached.)
        let mut taken = restored
            .progress
            .as_ref()
            .map(position)
            .transpose()?
            .unwrap_or_default();
        for part in &restored.since_snapshot {
            if let Some(end) = ranges_of(part)?.iter().map(WalRange::end_position).max() {
                taken = taken.max(end);
            }
        }
        wal::claim(&self.wal_dir, &restored.query_id, restored.has_history)?;
        let mut needed = taken;
        for part in &restored.replay {
            if let Some(end) = ranges_of(part)?.iter().map(WalRange::end_position).max() {
                needed = needed.max(end);
            }
        }
        self.log = Some(SocketLog::start(
            &self.address,
            &self.wal_dir,
            taken,
            needed,
            self.max_line_bytes,
            Arc::clone(&self.wake),
            Arc::clone(&self.counters),
        )?);
        Ok(())
    }

    async fn bound_to_available_now(&mut self) -> Result<()> {
        let end = self.log()?.durable();
        self.bound = Some(end);
        Ok(())
    }

    /// The end of the lines logged so far (a position in the log, as each commit's
    /// progress records where the taken lines end).
    fn latest(&self) -> Option<Value> {
        serde_json::to_value(self.log.as_ref()?.durable()).ok()
    }

    async fn take(&mut self, limited: bool, now_micros: i64) -> Result<Option<Value>> {
        let max_rows = if limited { self.max_rows } else { None };
        let bound = self.bound;
        let ranges = self.log()?.take(max_rows, bound, now_micros)?;
        super::record(NAME, ranges)
    }

    fn open_batch(&mut self, _batch_id: u64, part: &Value) -> Result<Vec<InputUnit>> {
        let ranges = ranges_of(part)?;
        let address = self.address.clone();
        let log = self.log()?;
        Ok(ranges
            .into_iter()
            .map(|range| {
                log.mark_taken(range.end_position());
                InputUnit {
                    place: Place::File(log.segment_path(range.segment)),
                    display: address.clone(),
                    ts_micros: range.ts_micros,
                    range: Some((range.start, range.end)),
                    size: None,
                    version: None,
                    source: Default::default(),
                }
            })
            .collect())
    }

    fn progress(&self) -> Option<Value> {
        let taken = self.log.as_ref()?.taken();
        serde_json::to_value(taken).ok()
    }

    fn snapshot(&self) -> Option<Value> {
        None
    }

    async fn release(&mut self, oldest: Option<Restorable<'_>>) -> Result<()> {
        // Not just up to the newest commit: a recovery that falls back past damaged files
        // re-runs older batches, whose lines must still be in the log.
        let restart = match oldest.and_then(|o| o.progress) {
            Some(progress) => super::decode(NAME, "log position", progress)?,
            None => WalPosition::default(),
        };
        let log = self.log()?;
        log.committed(restart.min(log.taken()));
        Ok(())
    }
}

/// A position in the log: segment number and byte offset.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WalPosition {
    pub segment: u64,
    pub offset: u64,
}

/// Bytes `[start, end)` of one segment: whole lines, read as one input of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRange {
    pub segment: u64,
    pub start: u64,
    pub end: u64,
    /// The arrival time recorded for the range's rows.
    pub ts_micros: i64,
}

impl WalRange {
    pub fn end_position(&self) -> WalPosition {
        WalPosition {
            segment: self.segment,
            offset: self.end,
        }
    }
}
