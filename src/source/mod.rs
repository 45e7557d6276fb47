//! Sources of input. A source hands out units of input (files, ranges of the socket log)
//! exactly once, in an order it can record in a checkpoint and replay; reading their lines is
//! the `lines` table's job (see `query::lines`).
//!
//! Every source implements [`Source`]: the trigger loop asks each for its part of the next
//! batch, records the parts in the batch's offsets under the sources' names (each in its own
//! serialized form: the checkpoint stores them without knowing what they mean), and hands
//! every part back to its source to be read, when the batch first runs and when a restart
//! re-runs it. A new kind of source is a new folder here plus one line in [`build`].

pub mod files;
pub mod socket;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

use crate::batch::TextCounters;
use crate::cli::RunConfig;
use crate::error::{Error, Result};
use crate::state::checkpoint::{Recovered, SourceParts};

/// Where a unit of input is.
#[derive(Debug, Clone)]
pub enum Place {
    /// A local file.
    File(PathBuf),
    /// An object in an object store.
    Object {
        store: Arc<dyn object_store::ObjectStore>,
        /// The store's URL (scheme and bucket), as a DataFusion runtime registers it.
        store_url: datafusion::execution::object_store::ObjectStoreUrl,
        path: object_store::path::Path,
    },
}

/// One unit of a batch's input, as the `lines` scan reads it: a file, or a byte range of one.
#[derive(Debug, Clone)]
pub struct InputUnit {
    /// Where to read it.
    pub place: Place,
    /// What the `file` column says.
    pub display: String,
    /// The `ts` of every row of the unit, microseconds since the epoch.
    pub ts_micros: i64,
    /// Read only these bytes `[start, end)` (a range of the socket source's log), not the
    /// whole file. A range holds whole lines, and is input nothing else holds: a range that
    /// cannot be read whole is an error, never a skip.
    pub range: Option<(u64, u64)>,
    /// Read only the first `size` bytes (of a compressed file, before decompressing): the
    /// size the file had when it was taken, so that a replay reads what the first run read.
    pub size: Option<u64>,
    /// The object's ETag when it was taken (object stores only).
    pub version: Option<String>,
    /// The name of the source it came from (its figures in progress records are counted by
    /// it); set by the trigger loop.
    pub source: Arc<str>,
}

impl InputUnit {
    /// The bytes it reads: its range's, or the size it was taken with (`None`: unknown).
    pub fn bytes(&self) -> Option<u64> {
        match self.range {
            Some((start, end)) => Some(end.saturating_sub(start)),
            None => self.size,
        }
    }

    /// A whole local file, all of whose rows arrived at `ts_micros`.
    pub fn file(path: PathBuf, ts_micros: i64) -> Self {
        InputUnit {
            display: path.display().to_string(),
            place: Place::File(path),
            ts_micros,
            range: None,
            size: None,
            version: None,
            source: Arc::default(),
        }
    }
}

/// What the checkpoint kept about one source, handed back to it at start (all of it in the
/// source's own serialized form; empty for a new checkpoint).
#[derive(Debug, Default)]
pub struct Restored {
    /// The source's entry in the newest sources snapshot the restored batch builds on.
    pub snapshot: Option<Value>,
    /// Its parts of the batches after that snapshot, up to the restored batch, in order.
    pub since_snapshot: Vec<Value>,
    /// Its progress as recorded in the restored batch's commit.
    pub progress: Option<Value>,
    /// Its parts of the batches to re-run (started but not restored), in order.
    pub replay: Vec<Value>,
    /// Its parts of the committed batches whose offsets are still kept, by batch.
    pub kept: Vec<(u64, Value)>,
    /// Whether `kept` holds every batch from its first up to the restored one (no offsets
    /// damaged or missing in between).
    pub kept_whole: bool,
    /// The oldest batch a recovery from the kept files could restore; `None` while every
    /// batch could be re-run from batch 0.
    pub oldest_restorable: Option<u64>,
    /// Whether the checkpoint records any batch (committed, or to re-run).
    pub has_history: bool,
    /// The checkpoint's query id (what a source's own files outside it are marked with).
    pub query_id: String,
}

impl Restored {
    /// Source `name`'s entries of what a recovery read: the snapshot the restored batch
    /// builds on, its parts since, its progress, and its parts to re-run (the rest empty).
    pub fn from_recovered(name: &str, recovered: &Recovered) -> Self {
        let part_of = |parts: &SourceParts| parts.get(name).cloned();
        Restored {
            snapshot: part_of(&recovered.sources_snapshot),
            since_snapshot: recovered
                .since_snapshot
                .iter()
                .filter_map(part_of)
                .collect(),
            progress: part_of(&recovered.progress),
            replay: recovered
                .replay
                .iter()
                .filter_map(|o| part_of(&o.sources))
                .collect(),
            ..Default::default()
        }
    }
}

/// The oldest batch a recovery could still restore, after a commit (see [`Source::release`]).
#[derive(Debug, Clone, Copy)]
pub struct Restorable<'a> {
    pub batch_id: u64,
    /// The source's progress recorded in that batch's commit.
    pub progress: Option<&'a Value>,
}

/// A source of input; see the module docs.
#[async_trait::async_trait]
pub trait Source: Send {
    /// The key of this source's entries in offsets, commits and snapshots.
    fn name(&self) -> &'static str;

    /// What the checkpoint's metadata records as this input: a checkpoint made over another
    /// input is refused (a unit is known by name, so another directory's files would be
    /// skipped or counted wrongly).
    fn identity(&self) -> String;

    /// Where the input comes from, for messages.
    fn describe(&self) -> String;

    /// Takes up what the checkpoint kept; called once, before anything else is asked.
    async fn restore(&mut self, restored: Restored) -> Result<()>;

    /// From now on, hands out only input that is available now (`--trigger available-now`,
    /// Spark's `prepareForTriggerAvailableNow`).
    async fn bound_to_available_now(&mut self) -> Result<()>;

    /// With [`Source::bound_to_available_now`]: how much is still to take (units, bytes), for
    /// the backlog bar. `None` when the source cannot tell.
    fn backlog(&self) -> Option<(u64, u64)> {
        None
    }

    /// Whether the latest [`Source::take`] could see all there is: false while the input is
    /// unreachable (an object store whose listing fails), when finding nothing new does not
    /// mean the input is idle (`--idle-timeout` must not close windows over an outage).
    fn saw_everything(&self) -> bool {
        true
    }

    /// How far the input went when the latest [`Source::take`] looked, taken or not, in a
    /// compact form of the source's own: Spark's `latestOffset` in progress records. It is
    /// further than the batch's part when a per-trigger limit (or an available-now bound)
    /// left input for later batches. `None` when the source cannot tell.
    fn latest(&self) -> Option<Value> {
        None
    }

    /// Finds new input and takes it for the next batch (within the source's per-trigger
    /// limits when `limited`): this source's part of the batch's offsets, or `None` when
    /// nothing is new. What is taken is never handed out again.
    async fn take(&mut self, limited: bool, now_micros: i64) -> Result<Option<Value>>;

    /// The units to read for this source's `part` of batch `batch_id` (a new batch or a
    /// re-run one); from here on they count as taken.
    fn open_batch(&mut self, batch_id: u64, part: &Value) -> Result<Vec<InputUnit>>;

    /// What the source has taken so far, recorded with each batch's commit (`None` for a
    /// source whose parts already say everything).
    fn progress(&self) -> Option<Value>;

    /// Everything the source must remember, written with every state snapshot, so that the
    /// offsets of older batches can be deleted.
    fn snapshot(&self) -> Option<Value>;

    /// Batches up to `oldest` are committed and no recovery can re-run them: input that only
    /// they needed can go (`--clean-source`, log segments).
    async fn release(&mut self, oldest: Option<Restorable<'_>>) -> Result<()>;
}

/// What every source is built with.
pub struct BuildContext<'a> {
    pub config: &'a RunConfig,
    /// Notified when a source has new input, so that an idle trigger loop wakes early.
    pub wake: Arc<Notify>,
    /// The run's counters (rows, skipped lines, vanished files...).
    pub counters: Arc<TextCounters>,
}

pub type BoxedSource = Box<dyn Source>;

/// A kind of source: how to build it from the run's arguments, and how to describe a part
/// of a batch it recorded without opening it (`checkpoint show`, a failing batch's message).
pub struct Kind {
    pub name: &'static str,
    pub build: fn(&BuildContext) -> Result<Option<BoxedSource>>,
    pub describe_part: fn(&Value) -> String,
}

/// Every kind of source. A new kind is one line here.
const KINDS: &[Kind] = &[files::KIND, socket::KIND];

/// Builds the sources the run's arguments ask for.
pub fn build(ctx: &BuildContext) -> Result<Vec<Box<dyn Source>>> {
    let mut sources = Vec::new();
    for kind in KINDS {
        sources.extend((kind.build)(ctx)?);
    }
    Ok(sources)
}

/// A short description of source `name`'s recorded `part` of a batch, for messages.
pub fn describe_part(name: &str, part: &Value) -> String {
    match KINDS.iter().find(|k| k.name == name) {
        Some(kind) => (kind.describe_part)(part),
        None => format!("{name} {part}"),
    }
}

/// A batch's recorded parts, for messages: what each source took, or "no input".
pub fn describe_parts(parts: &std::collections::BTreeMap<String, Value>) -> String {
    let what: Vec<String> = parts
        .iter()
        .map(|(name, part)| describe_part(name, part))
        .filter(|d| !d.is_empty())
        .collect();
    if what.is_empty() {
        "no input".to_string()
    } else {
        what.join(", ")
    }
}

/// A source's part of a batch as it is recorded: `None` when it took nothing.
pub(crate) fn record<T: serde::Serialize>(source: &str, taken: Vec<T>) -> Result<Option<Value>> {
    if taken.is_empty() {
        return Ok(None);
    }
    serde_json::to_value(taken)
        .map(Some)
        .map_err(|e| Error::Checkpoint(format!("recording what the {source} source took: {e}")))
}

/// Decodes a source's recorded part, or says which batch record is not understood.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    source: &str,
    what: &str,
    value: &Value,
) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| {
        Error::Checkpoint(format!(
            "the {source} source cannot read its {what} in the checkpoint ({e}); it was \
             written by another version of dfstream or damaged"
        ))
    })
}
