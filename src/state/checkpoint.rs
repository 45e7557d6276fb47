//! The checkpoint directory: what each batch consists of, which batches are done, and the
//! aggregation state, so that a restart (after a clean stop or a crash) continues exactly.
//!
//! Layout (every file written atomically through [`Store`], and sealed with a checksum):
//! ```text
//! lock                   the running process's pid; held with an exclusive file lock
//! metadata               JSON: format version, query id, SQL text, parameters, mode, schemas
//! offsets/N              JSON: the input of batch N, written before batch N runs: each
//!                        source's part under the source's name, in the source's own form
//! commits/N              JSON: written after batch N's sinks and state are durable, with each
//!                        source's progress (where the socket log's taken lines end)
//! state/N.delta          Arrow IPC: the groups batch N changed (their merged partial rows)
//! state/N.snapshot       Arrow IPC: every group after batch N, every --snapshot-interval batches
//! sources/N.snapshot     JSON: what each source remembers after batch N (the files taken,
//!                        minus those forgotten past --max-file-age), with each state snapshot
//! ```
//! Format 1 (before sources recorded their own parts) is read, and upgraded on open.
//! A batch is done exactly when a good `commits/N` exists. Recovery restores the newest batch
//! whose state and taken-files record can be rebuilt from good files, falling back (with a
//! warning) past damaged ones, then re-runs every later batch whose offsets are good, with
//! exactly those files. Knows nothing of SQL: it stores rows and names handed to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use serde::{Deserialize, Serialize};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::store::{Lock, Store};
use crate::error::{Error, Result};
use crate::storage::Location;

/// The checkpoint's single-writer lock.
const LOCK: &str = "lock";

/// What a reader of one snapshot or batch file gives [`Checkpoint::rebuild`]: its pieces,
/// `None` for a missing file, or what is damaged.
type Pieces<T> = std::result::Result<Option<Vec<T>>, String>;

/// Version of the layout above; a checkpoint of a later version is refused, and one of an
/// earlier version is read and upgraded.
pub const FORMAT_VERSION: u32 = 2;

/// Each source's entry in a batch record, by source name, in the source's own form.
pub type SourceParts = BTreeMap<String, Value>;

/// What the checkpoint was made for; a restart must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub query_id: String,
    pub query_file: String,
    pub sql: String,
    pub params: BTreeMap<String, String>,
    pub mode: String,
    #[serde(default)]
    pub event_time: Option<String>,
    #[serde(default)]
    pub watermark: Option<String>,
    pub state_schema: Option<String>,
    pub output_schema: String,
    /// The job's inputs (`directory /abs/path`, `socket`): a taken file is known by its name,
    /// so the same checkpoint over another directory would skip files it never read.
    /// Missing in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// The stream table's format and columns; missing for text `lines` (and in checkpoints
    /// written before formats were recorded, which were all text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::format::FormatSpec>,
    /// The static tables (`--table`) the query joins with: name and file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, String>,
}

/// The input of one batch: the write-ahead record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "OffsetsRecord")]
pub struct Offsets {
    pub batch_id: u64,
    /// What each source took for the batch (sources that took nothing are absent).
    pub sources: SourceParts,
    /// A watermark set before the batch runs (idle time, or a final flush).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_watermark: Option<i64>,
    /// Set aside by `dfstream checkpoint skip-batch`: the batch runs (and commits) without
    /// reading its input, which stays recorded here and taken.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The trigger's time (microseconds): what `now()` answers in the batch and its replay.
    /// Missing in offsets written before it was recorded (a replay then uses its own time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_micros: Option<i64>,
    /// The version of each static table (`--table`) the batch joined with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<BTreeMap<String, String>>,
}

/// Offsets as stored: format 2, or format 1's `files` and `wal` lists (the directory and
/// socket sources' parts, in the same form).
#[derive(Deserialize)]
struct OffsetsRecord {
    batch_id: u64,
    #[serde(default)]
    sources: SourceParts,
    #[serde(default)]
    files: Vec<Value>,
    #[serde(default)]
    wal: Vec<Value>,
    #[serde(default)]
    force_watermark: Option<i64>,
    #[serde(default)]
    skipped: bool,
    #[serde(default)]
    trigger_micros: Option<i64>,
    #[serde(default)]
    tables: Option<BTreeMap<String, String>>,
}

impl From<OffsetsRecord> for Offsets {
    fn from(r: OffsetsRecord) -> Self {
        let mut sources = r.sources;
        for (name, part) in [("files", r.files), ("socket", r.wal)] {
            if !part.is_empty() {
                sources.insert(name.to_string(), Value::Array(part));
            }
        }
        Offsets {
            batch_id: r.batch_id,
            sources,
            force_watermark: r.force_watermark,
            skipped: r.skipped,
            trigger_micros: r.trigger_micros,
            tables: r.tables,
        }
    }
}

/// Written once a batch is fully done; also what `dfstream checkpoint show` reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "CommitRecord")]
pub struct Commit {
    pub batch_id: u64,
    pub committed_at_micros: i64,
    pub input_files: u64,
    pub input_rows: u64,
    pub input_bytes: u64,
    pub output_rows: u64,
    pub state_groups: u64,
    /// Each source's progress after this batch (where the socket log's taken lines end).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: SourceParts,
    /// The event-time watermark after this batch (microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
}

/// A commit as stored: format 2, or format 1's `wal_end` (the socket source's progress).
#[derive(Deserialize)]
struct CommitRecord {
    batch_id: u64,
    committed_at_micros: i64,
    input_files: u64,
    input_rows: u64,
    input_bytes: u64,
    output_rows: u64,
    state_groups: u64,
    #[serde(default)]
    sources: SourceParts,
    #[serde(default)]
    wal_end: Option<Value>,
    #[serde(default)]
    watermark: Option<i64>,
}

impl From<CommitRecord> for Commit {
    fn from(r: CommitRecord) -> Self {
        let mut sources = r.sources;
        if let Some(end) = r.wal_end {
            sources.insert("socket".to_string(), end);
        }
        Commit {
            batch_id: r.batch_id,
            committed_at_micros: r.committed_at_micros,
            input_files: r.input_files,
            input_rows: r.input_rows,
            input_bytes: r.input_bytes,
            output_rows: r.output_rows,
            state_groups: r.state_groups,
            sources,
            watermark: r.watermark,
        }
    }
}

/// A sources snapshot as stored: format 2, or format 1's list of taken files (the directory
/// source's entry, in a form it still reads).
#[derive(Deserialize)]
#[serde(untagged)]
enum SourcesSnapshot {
    BySource(SourceParts),
    TakenFiles(Vec<Value>),
}

impl SourcesSnapshot {
    fn into_parts(self) -> SourceParts {
        match self {
            SourcesSnapshot::BySource(parts) => parts,
            SourcesSnapshot::TakenFiles(files) if files.is_empty() => SourceParts::new(),
            SourcesSnapshot::TakenFiles(files) => {
                [("files".to_string(), Value::Array(files))].into()
            }
        }
    }
}

/// What a restart needs to continue.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last batch restored as committed, if any.
    pub last_commit: Option<u64>,
    /// State rows to apply in order (a snapshot, then the deltas after it).
    pub state: Vec<RecordBatch>,
    /// What the sources remembered in the newest sources snapshot the restored batch builds
    /// on (empty if it builds on batch 0's history).
    pub sources_snapshot: SourceParts,
    /// The sources' parts of the batches after that snapshot, up to `last_commit`, in order.
    pub since_snapshot: Vec<SourceParts>,
    /// The sources' progress recorded in `last_commit`'s commit.
    pub progress: SourceParts,
    /// Batches started (or committed but not restorable) after `last_commit`, to re-run in
    /// order with exactly this input.
    pub replay: Vec<Offsets>,
    /// The watermark after `last_commit`.
    pub watermark: Option<i64>,
    /// Whether recovery had to work around damaged files: the next commit should then write
    /// a full snapshot, so that the damage does not linger until a second one makes the
    /// checkpoint unrecoverable.
    pub damaged: bool,
}

/// The per-batch files: folder and name suffix. Commits come first, so that deleting a
/// batch's files (pruning, discarding) never leaves a commit without its offsets.
const BATCH_FILES: [(&str, &str); 5] = [
    ("commits", ""),
    ("offsets", ""),
    ("state", ".delta"),
    ("state", ".snapshot"),
    ("sources", ".snapshot"),
];

/// An open checkpoint (a local directory or an object-store prefix), locked by this process.
pub struct Checkpoint {
    store: Box<dyn Store>,
    snapshot_interval: u64,
    retain_batches: u64,
    /// The single-writer lock (none when only reading).
    lock: Option<Lock>,
    /// Whether reading found a damaged file (so the next commit should write a fresh
    /// snapshot, letting retention drop what recovery had to work around).
    damage_seen: std::sync::atomic::AtomicBool,
    /// The first file that could not be read at all (an I/O error, not damage): recovery
    /// stops on it rather than working around it as damage.
    unreadable: std::sync::Mutex<Option<String>>,
    /// The query's id (empty when only reading).
    query_id: String,
    /// Sizes of the state files (`state/N.delta`, `state/N.snapshot`), kept as they are
    /// written and removed so that each commit can report them without listing.
    state_files: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Checkpoint {
    /// Opens (creating if needed) and locks the checkpoint at `dir` for the query described
    /// by `meta`. Refuses a checkpoint made for another query or held by another process.
    pub async fn open(
        location: &Location,
        meta: &Metadata,
        snapshot_interval: u64,
        retain_batches: u64,
    ) -> Result<Self> {
        let store = super::store::open(location);
        let lock = store.lock(LOCK).await?;
        let mut checkpoint = Self {
            store,
            snapshot_interval: snapshot_interval.max(1),
            retain_batches,
            lock: Some(lock),
            damage_seen: Default::default(),
            unreadable: Default::default(),
            query_id: String::new(),
            state_files: Default::default(),
        };
        let query_id = match checkpoint.metadata().await? {
            Some(stored)
                if stored.format_version < FORMAT_VERSION
                    || (stored.inputs.is_none() && meta.inputs.is_some()) =>
            {
                // Written by an earlier dfstream: record the format written from here on (an
                // older dfstream then refuses it rather than misreading it), and the inputs,
                // if not yet recorded, so that from here on another input is refused.
                checkpoint.check_same_query(&stored, meta)?;
                if stored.format_version < FORMAT_VERSION {
                    log::info!(
                        "upgrading checkpoint {} from format {} to {FORMAT_VERSION}",
                        checkpoint.store.describe(),
                        stored.format_version
                    );
                }
                let upgraded = Metadata {
                    format_version: FORMAT_VERSION,
                    inputs: stored.inputs.clone().or_else(|| meta.inputs.clone()),
                    ..stored
                };
                checkpoint.put_json("metadata", &upgraded).await?;
                upgraded.query_id
            }
            Some(stored) => {
                checkpoint.check_same_query(&stored, meta)?;
                stored.query_id
            }
            None if checkpoint.has_batch_files().await? => {
                let dir = checkpoint.store.describe();
                return Err(Error::Checkpoint(format!(
                    "checkpoint {dir} holds files of earlier batches but no metadata, so \
                     nothing says which query made them, and continuing could mix two \
                     queries' results. Put the metadata file back, or start over with \
                     `dfstream reset --checkpoint {dir}` (and an empty output directory), or \
                     pass another --checkpoint."
                )));
            }
            None => {
                let mut meta = meta.clone();
                meta.query_id = new_query_id();
                checkpoint.put_json("metadata", &meta).await?;
                meta.query_id
            }
        };
        checkpoint.query_id = query_id;
        let state_files =
            checkpoint.store.list("state").await.map_err(|e| {
                Error::io(format!("listing {}/state", checkpoint.store.describe()), e)
            })?;
        *checkpoint.state_files.lock().expect("not poisoned") = state_files
            .into_iter()
            .map(|(name, size)| (format!("state/{name}"), size))
            .collect();
        Ok(checkpoint)
    }

    /// Bytes of the state files kept (deltas and snapshots), as of the latest write.
    pub fn state_bytes_on_disk(&self) -> u64 {
        self.state_files
            .lock()
            .map_or(0, |files| files.values().sum())
    }

    /// The query's id, recorded when the checkpoint was made.
    pub fn query_id(&self) -> &str {
        &self.query_id
    }

    /// Opens an existing checkpoint to read it (no lock; it may be in use).
    pub async fn open_read_only(location: &Location) -> Result<(Self, Metadata)> {
        let checkpoint = Self {
            store: super::store::open(location),
            snapshot_interval: 1,
            retain_batches: 0,
            lock: None,
            damage_seen: Default::default(),
            unreadable: Default::default(),
            query_id: String::new(),
            state_files: Default::default(),
        };
        let meta = checkpoint.metadata().await?.ok_or_else(|| {
            Error::Usage(format!(
                "{} is not a dfstream checkpoint (no metadata)",
                location.describe()
            ))
        })?;
        Ok((checkpoint, meta))
    }

    /// Releases the lock at a clean stop (see [`Lock::release`]).
    pub async fn close(mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release(self.store.as_ref(), LOCK).await;
        }
    }

    /// Where the checkpoint is, for messages.
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// Opens an existing checkpoint to change it outside a run (`checkpoint skip-batch`),
    /// holding the lock: refused while a job holds it.
    pub async fn lock_existing(location: &Location) -> Result<Self> {
        let (mut checkpoint, _) = Self::open_read_only(location).await?;
        checkpoint.lock = Some(checkpoint.store.lock(LOCK).await?);
        Ok(checkpoint)
    }

    /// Whether any batch's offsets, commit, state or sources file is here.
    async fn has_batch_files(&self) -> Result<bool> {
        for (folder, suffix) in BATCH_FILES {
            if !self.batch_ids(folder, suffix).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn metadata(&self) -> Result<Option<Metadata>> {
        match self.get_sealed("metadata").await? {
            None => Ok(None),
            Some(Ok(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Checkpoint(format!(
                    "{}/metadata is damaged: {e}",
                    self.store.describe()
                ))
            }),
            Some(Err(damage)) => Err(Error::Checkpoint(format!(
                "{}/metadata is damaged ({damage}); the checkpoint cannot be trusted. \
                 Start over with `dfstream reset --checkpoint {}` or use another --checkpoint.",
                self.store.describe(),
                self.store.describe()
            ))),
        }
    }

    fn check_same_query(&self, stored: &Metadata, meta: &Metadata) -> Result<()> {
        let dir = self.store.describe();
        let how = format!(
            "To start over with the new query, pass another --checkpoint directory or run \
             `dfstream reset --checkpoint {dir}`; to continue the old one, run its query again."
        );
        let differs = if stored.format_version > FORMAT_VERSION || stored.format_version == 0 {
            format!(
                "it has format version {}, and this dfstream reads versions 1 to \
                 {FORMAT_VERSION} (a later dfstream wrote it)",
                stored.format_version
            )
        } else if stored.sql != meta.sql {
            let (old, new) = first_difference(&stored.sql, &meta.sql);
            format!(
                "its SQL differs from {}'s:\n  checkpoint: {old}\n  now:        {new}",
                meta.query_file
            )
        } else if stored.params != meta.params {
            format!(
                "its parameters differ: checkpoint {:?}, now {:?}",
                stored.params, meta.params
            )
        } else if stored.watermark != meta.watermark {
            format!(
                "its --watermark differs: checkpoint {:?}, now {:?}",
                stored.watermark, meta.watermark
            )
        } else if stored.format != meta.format {
            let show = |f: &Option<crate::format::FormatSpec>| {
                serde_json::to_string(&f.clone().unwrap_or_default()).unwrap_or_default()
            };
            format!(
                "its input format or schema differs: checkpoint {}, now {}",
                show(&stored.format),
                show(&meta.format)
            )
        } else if stored.tables != meta.tables {
            format!(
                "its static tables differ: checkpoint {:?}, now {:?}",
                stored.tables, meta.tables
            )
        } else if stored.event_time != meta.event_time {
            format!(
                "its --event-time differs: checkpoint {:?}, now {:?}",
                stored.event_time, meta.event_time
            )
        } else if stored.inputs.is_some() && stored.inputs != meta.inputs {
            let show =
                |inputs: &Option<Vec<String>>| inputs.as_deref().unwrap_or_default().join(" and ");
            format!(
                "it reads other input: checkpoint {}, now {} (files are known by name, so \
                 another directory's files would be skipped or counted wrongly)",
                show(&stored.inputs),
                show(&meta.inputs)
            )
        } else if stored.mode != meta.mode {
            format!(
                "it was made in --mode {}, now --mode {}",
                stored.mode, meta.mode
            )
        } else if stored.output_schema != meta.output_schema
            && meta
                .output_schema
                .contains(crate::query::changes::OP_COLUMN)
            && !stored
                .output_schema
                .contains(crate::query::changes::OP_COLUMN)
        {
            format!(
                "it was made before update mode's changelog: this query's rows can leave its \
                 result, so its update-mode rows now start with {} (upsert or delete), which \
                 the earlier output lacks (and may hold rows that left the result). Start a \
                 new --checkpoint and output (for a PostgreSQL table, also delete its row \
                 from dfstream_commits and its rows)",
                crate::query::changes::OP_COLUMN
            )
        } else if stored.state_schema != meta.state_schema
            || stored.output_schema != meta.output_schema
        {
            "the query's state or output schema differs (a different dfstream or DataFusion \
             version planned it differently)"
                .to_string()
        } else {
            return Ok(());
        };
        Err(Error::Checkpoint(format!(
            "checkpoint {dir} was made by another query: {differs}\n{how}"
        )))
    }

    /// Reads what a restart needs; `state_schema` gives the type of stored state rows
    /// (`None` for a query without state).
    pub async fn recover(&self, state_schema: Option<&SchemaRef>) -> Result<Recovered> {
        let mut good_commits = Vec::new();
        let all_commits = self.batch_ids("commits", "").await?;
        let mut commits = BTreeMap::new();
        for &n in &all_commits {
            match self.read_json::<Commit>(&format!("commits/{n}")).await {
                Ok(Some(commit)) => {
                    commits.insert(n, commit);
                    good_commits.push(n);
                }
                Ok(None) => {}
                Err(damage) => {
                    self.stop_if_unreadable()?;
                    self.note_damage();
                    log::warn!("{damage}; batch {n} will be re-run");
                }
            }
        }
        let mut recovered = Recovered::default();
        let mut restored = None;
        for &c in good_commits.iter().rev() {
            match (
                self.sources_at(c).await,
                self.state_at(c, state_schema).await,
            ) {
                (Ok((snapshot, since_snapshot)), Ok(state)) => {
                    recovered.sources_snapshot = snapshot;
                    recovered.since_snapshot = since_snapshot;
                    recovered.state = state;
                    restored = Some(c);
                    break;
                }
                (Err(damage), _) | (_, Err(damage)) => {
                    self.stop_if_unreadable()?;
                    self.note_damage();
                    log::warn!(
                        "cannot restore batch {c}: {damage}; falling back to an earlier batch"
                    );
                }
            }
        }
        if restored.is_none() && !all_commits.is_empty() && !self.can_start_over().await? {
            return Err(Error::Checkpoint(format!(
                "checkpoint {} has committed batches but no good state to restore any of them; \
                 nothing exact is left to continue from. Start over with `dfstream reset \
                 --checkpoint {}` (and an empty output directory).",
                self.store.describe(),
                self.store.describe()
            )));
        }
        recovered.last_commit = restored;
        if let Some(commit) = restored.and_then(|c| commits.remove(&c)) {
            recovered.progress = commit.sources;
            recovered.watermark = commit.watermark;
        }
        if let Some(c) = restored
            && all_commits.last().is_some_and(|&last| last > c)
        {
            log::warn!("recovering from batch {c}; later batches are re-run from their offsets");
        }
        let mut next = restored.map_or(0, |c| c + 1);
        loop {
            match self.read_json::<Offsets>(&format!("offsets/{next}")).await {
                Ok(Some(offsets)) if offsets.batch_id == next => recovered.replay.push(offsets),
                Ok(None) => break,
                Ok(Some(_)) | Err(_) => {
                    self.stop_if_unreadable()?;
                    self.note_damage();
                    log::warn!(
                        "offsets/{next} is damaged; its files will be taken again as new input"
                    );
                    break;
                }
            }
            next += 1;
        }
        recovered.damaged = self.damage_seen.load(std::sync::atomic::Ordering::Relaxed);
        Ok(recovered)
    }

    /// Fails if a file could not be read: that is not damage, and working around it would
    /// re-run (or give up on) batches that are fine. Recovery has changed nothing yet.
    fn stop_if_unreadable(&self) -> Result<()> {
        match self.unreadable.lock().ok().and_then(|mut u| u.take()) {
            Some(unreadable) => Err(Error::Checkpoint(format!(
                "{unreadable}; the checkpoint is left as it is: start again once {} can be \
                 read",
                self.store.describe()
            ))),
            None => Ok(()),
        }
    }

    fn note_damage(&self) {
        self.damage_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Deletes every file of batches `first` and later: after a fall-back, batches that will
    /// not be replayed must not be mistaken for done (their inputs are taken again instead).
    pub async fn discard_from(&self, first: u64) -> Result<()> {
        self.remove_batches(|n| n >= first, "of an unrecoverable batch")
            .await
    }

    /// Deletes the per-batch files of every batch `doomed` selects, saying `why` in the log.
    async fn remove_batches(&self, doomed: impl Fn(u64) -> bool, why: &str) -> Result<()> {
        for (sub, suffix) in BATCH_FILES {
            for n in self.batch_ids(sub, suffix).await? {
                if doomed(n) {
                    log::debug!("removing checkpoint file {sub}/{n}{suffix} {why}");
                    self.store
                        .delete(&format!("{sub}/{n}{suffix}"))
                        .await
                        .map_err(|e| {
                            Error::io(
                                format!("removing {}/{sub}/{n}{suffix}", self.store.describe()),
                                e,
                            )
                        })?;
                    if let Ok(mut files) = self.state_files.lock() {
                        files.remove(&format!("{sub}/{n}{suffix}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The oldest commit a recovery from the files kept here could restore (later batches
    /// may be re-run from their offsets; this one and earlier ones never are), or `None`
    /// while batch 0's history is all here and everything could be re-run.
    pub async fn oldest_restorable(&self) -> Result<Option<Commit>> {
        if self.can_start_over().await? {
            return Ok(None);
        }
        for n in self.batch_ids("commits", "").await? {
            // Damaged commits are skipped (no recovery restores them); an I/O error is not
            // damage, and stops the caller's deletions.
            if let Some(Ok(bytes)) = self.get_sealed(&format!("commits/{n}")).await?
                && let Ok(commit) = serde_json::from_slice::<Commit>(&bytes)
            {
                return Ok(Some(commit));
            }
        }
        Ok(None)
    }

    /// Whether batch 0 could be rebuilt from nothing (all its history is still here).
    async fn can_start_over(&self) -> Result<bool> {
        Ok(self.batch_ids("offsets", "").await?.first() == Some(&0))
    }

    /// What the sources remembered up to batch `c`: the newest good sources snapshot at or
    /// before it, and their parts of every later batch up to `c`.
    async fn sources_at(
        &self,
        c: u64,
    ) -> std::result::Result<(SourceParts, Vec<SourceParts>), String> {
        enum Piece {
            Snapshot(SourceParts),
            Batch(SourceParts),
        }
        let pieces = self
            .rebuild(
                c,
                "sources",
                |s| {
                    let path = format!("sources/{s}.snapshot");
                    async move {
                        let snapshot = self.read_json::<SourcesSnapshot>(&path).await?;
                        Ok(snapshot.map(|snapshot| vec![Piece::Snapshot(snapshot.into_parts())]))
                    }
                    .boxed()
                },
                |n| {
                    let path = format!("offsets/{n}");
                    async move {
                        let offsets = self.read_json::<Offsets>(&path).await?;
                        Ok(offsets.map(|o| vec![Piece::Batch(o.sources)]))
                    }
                    .boxed()
                },
                |n| format!("offsets/{n}"),
            )
            .await?;
        let mut snapshot = SourceParts::new();
        let mut batches = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Snapshot(parts) => snapshot = parts,
                Piece::Batch(parts) => batches.push(parts),
            }
        }
        Ok((snapshot, batches))
    }

    /// The state rows after committed batch `batch_id`, for reading it as a table; refuses a
    /// batch that is not committed or whose files are no longer kept.
    pub async fn state_as_of(&self, batch_id: u64, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        match self
            .read_json::<Commit>(&format!("commits/{batch_id}"))
            .await
        {
            Ok(Some(_)) => {}
            _ => {
                return Err(Error::Usage(format!(
                    "batch {batch_id} is not committed in {} (or its commit is damaged)",
                    self.store.describe()
                )));
            }
        }
        self.state_at(batch_id, Some(schema))
            .await
            .map_err(|problem| {
                Error::Usage(format!(
                    "the state as of batch {batch_id} cannot be rebuilt from the files kept in {} \
                 ({problem}); --retain-batches keeps more history",
                    self.store.describe()
                ))
            })
    }

    /// The state rows each kept batch changed (its delta), oldest first; damaged or missing
    /// deltas are left out.
    pub async fn state_deltas(&self, schema: &SchemaRef) -> Result<Vec<(u64, Vec<RecordBatch>)>> {
        let mut deltas = Vec::new();
        for n in self.batch_ids("state", ".delta").await? {
            if let Ok(Some(rows)) = self.read_ipc(&format!("state/{n}.delta"), schema).await {
                deltas.push((n, rows));
            }
        }
        Ok(deltas)
    }

    /// State rows after batch `c`: the newest good snapshot, then every delta after it.
    async fn state_at(
        &self,
        c: u64,
        schema: Option<&SchemaRef>,
    ) -> std::result::Result<Vec<RecordBatch>, String> {
        let Some(schema) = schema else {
            return Ok(Vec::new());
        };
        self.rebuild(
            c,
            "state",
            |s| {
                let path = format!("state/{s}.snapshot");
                async move { self.read_ipc(&path, schema).await }.boxed()
            },
            |n| {
                let path = format!("state/{n}.delta");
                async move { self.read_ipc(&path, schema).await }.boxed()
            },
            |n| format!("state/{n}.delta"),
        )
        .await
    }

    /// Rebuilds something as of batch `c` from the newest good snapshot in `folder` at or
    /// before `c` (or from nothing), then the per-batch pieces after it, falling back to older
    /// snapshots past damaged or missing files. Readers give `Ok(None)` for a missing file.
    async fn rebuild<'a, T>(
        &'a self,
        c: u64,
        folder: &str,
        read_snapshot: impl Fn(u64) -> BoxFuture<'a, Pieces<T>>,
        read_batch: impl Fn(u64) -> BoxFuture<'a, Pieces<T>>,
        batch_file: impl Fn(u64) -> String,
    ) -> std::result::Result<Vec<T>, String> {
        let snapshots = self
            .batch_ids(folder, ".snapshot")
            .await
            .map_err(|e| e.to_string())?;
        // The newest start's problem is the one to report: a fall-back to batch 0, whose
        // history is usually pruned, would otherwise always end as "offsets/0 is missing".
        let mut problem: Option<String> = None;
        let starts = snapshots
            .iter()
            .rev()
            .filter(|&&s| s <= c)
            .map(Some)
            .chain([None]);
        'start: for start in starts {
            let mut items = Vec::new();
            if let Some(&s) = start {
                match read_snapshot(s).await {
                    Ok(Some(snapshot)) => items.extend(snapshot),
                    Ok(None) => continue,
                    Err(damage) => {
                        self.note_damage();
                        log::warn!("{damage}; trying an older snapshot");
                        problem.get_or_insert(damage);
                        continue;
                    }
                }
            }
            for n in start.map_or(0, |&s| s + 1)..=c {
                match read_batch(n).await {
                    Ok(Some(batch)) => items.extend(batch),
                    Ok(None) => {
                        problem.get_or_insert_with(|| format!("{} is missing", batch_file(n)));
                        continue 'start;
                    }
                    Err(damage) => {
                        self.note_damage();
                        problem.get_or_insert(damage);
                        continue 'start;
                    }
                }
            }
            return Ok(items);
        }
        Err(problem.unwrap_or_else(|| format!("no {folder} snapshot and no history from batch 0")))
    }

    /// Marks batch `batch_id`, started but not committed, as set aside (its offsets say so);
    /// refuses a committed batch, or one that recovery would not re-run next.
    pub async fn skip_batch(&self, batch_id: u64) -> Result<Offsets> {
        let dir = self.store.describe();
        let refuse = |state: &str| {
            Err(Error::Usage(format!(
                "batch {batch_id} in {dir} {state}; only a batch that was started but not \
                 committed can be skipped"
            )))
        };
        match self
            .read_json::<Commit>(&format!("commits/{batch_id}"))
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => return refuse("is committed"),
            Err(_) => {
                return refuse(
                    "has a damaged commit (recovery decides whether it is re-run: start the \
                     job, and skip the batch if it then fails)",
                );
            }
        }
        let Ok(Some(mut offsets)) = self
            .read_json::<Offsets>(&format!("offsets/{batch_id}"))
            .await
        else {
            return refuse(
                "has no good offsets (it was not started, or its offsets are damaged, and then \
                 its input is taken again as new input anyway)",
            );
        };
        offsets.skipped = true;
        self.write_offsets(&offsets).await?;
        Ok(offsets)
    }

    /// Fails once the lock may no longer be ours (see [`Lock::check`]).
    fn check_lock(&self) -> Result<()> {
        self.lock.as_ref().map_or(Ok(()), Lock::check)
    }

    /// Keeps version `version` of static table `name` (its rows as Arrow IPC), unless kept.
    pub async fn keep_table_version(&self, name: &str, version: &str, ipc: Vec<u8>) -> Result<()> {
        self.check_lock()?;
        let path = format!("tables/{name}.{version}.arrow");
        self.store
            .put_new(&path, ipc)
            .await
            .map(|_| ())
            .map_err(|e| Error::io(format!("writing {path} in {}", self.describe()), e))
    }

    /// The rows of version `version` of static table `name`, if kept.
    pub async fn table_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let path = format!("tables/{name}.{version}.arrow");
        let Some(bytes) = self
            .store
            .get(&path)
            .await
            .map_err(|e| Error::io(format!("reading {path} in {}", self.describe()), e))?
        else {
            return Ok(None);
        };
        crate::tables::rows_of_ipc(&bytes)
            .map(|(_, rows)| Some(rows))
            .map_err(|e| {
                Error::Checkpoint(format!("{path} in {} is damaged: {e}", self.describe()))
            })
    }

    /// Records the input of batch `offsets.batch_id` before it runs.
    pub async fn write_offsets(&self, offsets: &Offsets) -> Result<()> {
        self.check_lock()?;
        self.put_json(&format!("offsets/{}", offsets.batch_id), offsets)
            .await
    }

    /// Stores the groups batch `batch_id` changed.
    pub async fn write_state_delta(&self, batch_id: u64, delta: &RecordBatch) -> Result<()> {
        self.check_lock()?;
        self.put_sealed(&format!("state/{batch_id}.delta"), &ipc_bytes(delta)?)
            .await
    }

    /// Whether batch `batch_id` should also write a full snapshot.
    pub fn wants_snapshot(&self, batch_id: u64) -> bool {
        (batch_id + 1).is_multiple_of(self.snapshot_interval)
    }

    /// Writes full snapshots of the state and of what the sources remember after batch
    /// `batch_id`.
    pub async fn write_snapshot(
        &self,
        batch_id: u64,
        state: Option<&RecordBatch>,
        sources: &SourceParts,
    ) -> Result<()> {
        self.check_lock()?;
        if let Some(state) = state {
            self.put_sealed(&format!("state/{batch_id}.snapshot"), &ipc_bytes(state)?)
                .await?;
        }
        self.put_json(&format!("sources/{batch_id}.snapshot"), sources)
            .await
    }

    /// Marks batch `commit.batch_id` done, then drops files no recovery can need any more.
    /// Refuses if another writer committed the batch first (possible only on an object
    /// store, after this job lost its lease), or if the lease is known to be lost.
    pub async fn commit(&self, commit: &Commit) -> Result<()> {
        self.check_lock()?;
        let path = format!("commits/{}", commit.batch_id);
        let payload = serde_json::to_vec_pretty(commit)
            .map_err(|e| Error::Checkpoint(format!("encoding {path}: {e}")))?;
        let written = self
            .store
            .put_new(&path, seal(&payload))
            .await
            .map_err(|e| {
                Error::io(
                    format!("writing checkpoint file {}/{path}", self.store.describe()),
                    e,
                )
            })?;
        if !written {
            return Err(Error::Checkpoint(format!(
                "batch {} in {} was committed by another writer; this job stops without \
                 committing it (two jobs must not share a checkpoint)",
                commit.batch_id,
                self.store.describe()
            )));
        }
        self.remove_old(commit.batch_id).await;
        Ok(())
    }

    /// Deletes the commits of batches `first` and later, which are about to be re-run from
    /// their offsets (their commits are damaged, or their state could not be restored), so
    /// that each re-run commits afresh.
    pub async fn uncommit_from(&self, first: u64) -> Result<()> {
        for n in self.batch_ids("commits", "").await? {
            if n >= first {
                self.store
                    .delete(&format!("commits/{n}"))
                    .await
                    .map_err(|e| {
                        Error::io(format!("removing {}/commits/{n}", self.store.describe()), e)
                    })?;
            }
        }
        Ok(())
    }

    /// Committed batches with their records, oldest first (damaged ones are skipped).
    pub async fn commits(&self) -> Result<Vec<Commit>> {
        let mut commits = Vec::new();
        for n in self.batch_ids("commits", "").await? {
            if let Ok(Some(commit)) = self.read_json::<Commit>(&format!("commits/{n}")).await {
                commits.push(commit);
            }
        }
        Ok(commits)
    }

    /// The batches whose offsets are still kept, ascending.
    pub async fn kept_batches(&self) -> Result<Vec<u64>> {
        self.batch_ids("offsets", "").await
    }

    /// The input files of batch `batch_id`, if its offsets are still kept and good.
    pub async fn offsets(&self, batch_id: u64) -> Option<Offsets> {
        self.read_json(&format!("offsets/{batch_id}"))
            .await
            .ok()
            .flatten()
    }

    /// Every file in the checkpoint with its size, for `dfstream checkpoint show`.
    pub async fn files(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for sub in ["", "offsets", "commits", "state", "sources"] {
            let listed =
                self.store.list(sub).await.map_err(|e| {
                    Error::io(format!("listing {}/{sub}", self.store.describe()), e)
                })?;
            for (name, size) in listed {
                let shown = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                out.push((shown, size));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes files of batches older than both the newest snapshot and `--retain-batches`.
    /// The batch is committed: old files only cost space, so a failure (the store
    /// unreachable for a moment) is a warning, and the next commit tries again.
    async fn remove_old(&self, last: u64) {
        let removed = async {
            let Some(snapshot) = self
                .batch_ids("sources", ".snapshot")
                .await?
                .into_iter()
                .filter(|&n| n <= last)
                .max()
            else {
                return Ok(());
            };
            let keep_from = snapshot.min(last.saturating_sub(self.retain_batches));
            self.remove_batches(|n| n < keep_from, "older than the retained history")
                .await
        };
        if let Err(e) = removed.await {
            log::warn!("could not remove old checkpoint files: {e}");
        }
    }

    /// Batch ids of the files in `sub` named `N{suffix}`, ascending.
    async fn batch_ids(&self, sub: &str, suffix: &str) -> Result<Vec<u64>> {
        let names = self
            .store
            .names(sub)
            .await
            .map_err(|e| Error::io(format!("listing {}/{sub}", self.store.describe()), e))?;
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|name| name.strip_suffix(suffix)?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn put_json<T: Serialize>(&self, path: &str, value: &T) -> Result<()> {
        self.put_sealed(
            path,
            &serde_json::to_vec_pretty(value).expect("serializable"),
        )
        .await
    }

    async fn put_sealed(&self, path: &str, payload: &[u8]) -> Result<()> {
        let sealed = seal(payload);
        let size = sealed.len() as u64;
        self.store.put(path, sealed).await.map_err(|e| {
            Error::io(
                format!("writing checkpoint file {}/{path}", self.store.describe()),
                e,
            )
        })?;
        if path.starts_with("state/")
            && let Ok(mut files) = self.state_files.lock()
        {
            files.insert(path.to_string(), size);
        }
        Ok(())
    }

    /// `None` if missing, `Some(Err(damage))` if the checksum does not match.
    async fn get_sealed(&self, path: &str) -> Result<Option<std::result::Result<Vec<u8>, String>>> {
        let bytes = self.store.get(path).await.map_err(|e| {
            Error::io(
                format!("reading checkpoint file {}/{path}", self.store.describe()),
                e,
            )
        })?;
        Ok(bytes
            .map(|b| unseal(b).map_err(|why| format!("checkpoint file {path} is damaged ({why})"))))
    }

    /// Remembers a file that could not be read (for [`Self::recover`]); its description.
    fn note_unreadable(&self, e: Error) -> String {
        let text = e.to_string();
        if let Ok(mut first) = self.unreadable.lock() {
            first.get_or_insert_with(|| text.clone());
        }
        text
    }

    /// `Ok(None)` if missing; `Err(description)` if damaged or unreadable.
    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
    ) -> std::result::Result<Option<T>, String> {
        match self
            .get_sealed(path)
            .await
            .map_err(|e| self.note_unreadable(e))?
        {
            None => Ok(None),
            Some(Err(damage)) => Err(damage),
            Some(Ok(bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("checkpoint file {path} is damaged ({e})")),
        }
    }

    async fn read_ipc(
        &self,
        path: &str,
        schema: &SchemaRef,
    ) -> std::result::Result<Option<Vec<RecordBatch>>, String> {
        let bytes = match self
            .get_sealed(path)
            .await
            .map_err(|e| self.note_unreadable(e))?
        {
            None => return Ok(None),
            Some(Err(damage)) => return Err(damage),
            Some(Ok(bytes)) => bytes,
        };
        let damaged =
            |e: &dyn std::fmt::Display| format!("checkpoint file {path} is damaged ({e})");
        let reader =
            FileReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| damaged(&e))?;
        let mut batches = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| damaged(&e))?;
            // Stored with the same column types; take the live schema's names and metadata.
            let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
                .map_err(|e| damaged(&e))?;
            batches.push(batch);
        }
        Ok(Some(batches))
    }
}

/// Deletes what dfstream keeps in the checkpoint at `location` (refusing while a process
/// holds it, and refusing a place that is not a dfstream checkpoint); other files there, and
/// local folders that still hold them, are left alone.
pub async fn reset(location: &Location, wal_dir: Option<&std::path::Path>) -> Result<()> {
    if let Location::Local(dir) = location {
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::Usage(format!(
                    "--checkpoint {} is a file, not a checkpoint directory; nothing was deleted",
                    dir.display()
                )));
            }
            Ok(_) => {}
        }
    }
    let store = super::store::open(location);
    let where_ = store.describe();
    if !is_checkpoint(store.as_ref()).await? {
        return Err(Error::Usage(format!(
            "{where_} is not a dfstream checkpoint (no metadata, offsets or commits written by \
             dfstream); nothing was deleted"
        )));
    }
    let lock = store.lock(LOCK).await?;
    // A log kept outside the checkpoint (`--wal-dir`) goes first, under the lock.
    if let Some(dir) = wal_dir {
        delete_log(dir)?;
    }
    // `metadata` goes last: a reset cut short (Ctrl-C, a file that cannot be deleted) leaves
    // something that is still recognised as a checkpoint, and can be reset again.
    let mut ours: Vec<String> = Vec::new();
    for folder in ["offsets", "commits", "state", "sources", "wal", "tables"] {
        let names = store
            .list(folder)
            .await
            .map_err(|e| Error::io(format!("listing {where_}/{folder}"), e))?;
        ours.extend(
            names
                .into_iter()
                .filter(|(name, _)| is_own_file(folder, name))
                .map(|(name, _)| format!("{folder}/{name}")),
        );
    }
    ours.extend([".metadata.tmp".to_string(), "metadata".to_string()]);
    for path in &ours {
        store
            .delete(path)
            .await
            .map_err(|e| Error::io(format!("removing {where_}/{path}"), e))?;
    }
    if let Some(dir) = store.local_dir() {
        for folder in ["offsets", "commits", "state", "sources", "wal"] {
            match std::fs::remove_dir(dir.join(folder)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => log::warn!(
                    "{}/{folder} holds files dfstream did not write; they were left alone",
                    dir.display()
                ),
            }
        }
    } else {
        // The lease goes with the rest: the next job starts on an empty prefix.
        drop(lock);
        store
            .delete(LOCK)
            .await
            .map_err(|e| Error::io(format!("removing {where_}/{LOCK}"), e))?;
    }
    Ok(())
}

/// Deletes the socket log's segments and mark in `dir`; other files stay.
fn delete_log(dir: &std::path::Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        if let Ok(name) = entry.file_name().into_string()
            && is_own_file("wal", &name)
        {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::io(format!("removing {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

/// Whether `store` holds a checkpoint: a sealed `metadata` or batch file.
async fn is_checkpoint(store: &dyn Store) -> Result<bool> {
    let sealed = async |path: &str| -> Result<bool> {
        let bytes = store
            .get(path)
            .await
            .map_err(|e| Error::io(format!("reading {}/{path}", store.describe()), e))?;
        Ok(bytes.is_some_and(|b| b.windows(SEAL_TAG.len()).any(|w| w == SEAL_TAG)))
    };
    if sealed("metadata").await? {
        return Ok(true);
    }
    for (folder, suffix) in BATCH_FILES {
        let names = store
            .list(folder)
            .await
            .map_err(|e| Error::io(format!("listing {}/{folder}", store.describe()), e))?;
        let numbered = |n: &&(String, u64)| {
            n.0.strip_suffix(suffix)
                .is_some_and(|stem| stem.parse::<u64>().is_ok())
        };
        for (name, _) in names.iter().filter(numbered) {
            if sealed(&format!("{folder}/{name}")).await? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether `name` in checkpoint folder `folder` is a file dfstream writes there (a batch
/// file, a log segment, or the hidden temporary of an atomic write).
fn is_own_file(folder: &str, name: &str) -> bool {
    let name = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .unwrap_or(name);
    let numbered = |stem: &str| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit());
    if folder == "wal" {
        // Segments, and the mark naming the checkpoint they belong to.
        return name == ".dfstream-owner" || name.strip_suffix(".log").is_some_and(numbered);
    }
    if folder == "tables" {
        // Static tables' versions: NAME.VERSION.arrow.
        return name.ends_with(".arrow") && name.contains('.');
    }
    BATCH_FILES
        .iter()
        .filter(|(sub, _)| *sub == folder)
        .any(|(_, suffix)| name.strip_suffix(suffix).is_some_and(numbered))
}

/// The trailer that seals every checkpoint file: `\n#dfstream-xxh64:<16 hex>:<payload length>\n`.
const SEAL_TAG: &[u8] = b"\n#dfstream-xxh64:";

fn seal(payload: &[u8]) -> Vec<u8> {
    let hash = twox_hash::XxHash64::oneshot(0, payload);
    let mut out = Vec::with_capacity(payload.len() + 48);
    out.extend_from_slice(payload);
    out.extend_from_slice(SEAL_TAG);
    out.extend_from_slice(format!("{hash:016x}:{}\n", payload.len()).as_bytes());
    out
}

fn unseal(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let Some(at) = bytes.windows(SEAL_TAG.len()).rposition(|w| w == SEAL_TAG) else {
        return Err("no checksum trailer: torn or not written by dfstream".into());
    };
    let trailer = std::str::from_utf8(&bytes[at + SEAL_TAG.len()..]).map_err(|_| "bad trailer")?;
    let (hash, len) = trailer.trim_end().split_once(':').ok_or("bad trailer")?;
    let hash = u64::from_str_radix(hash, 16).map_err(|_| "bad trailer")?;
    let len: usize = len.parse().map_err(|_| "bad trailer")?;
    if len != at {
        return Err(format!("length {at} instead of {len}: torn"));
    }
    bytes.truncate(at);
    if twox_hash::XxHash64::oneshot(0, &bytes) != hash {
        return Err("checksum mismatch".into());
    }
    Ok(bytes)
}

fn new_query_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// The first line where two texts differ, from each.
fn first_difference<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    let mut la = a.lines();
    let mut lb = b.lines();
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => return (x.unwrap_or("(end)"), y.unwrap_or("(end)")),
        }
    }
}

fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    crate::tables::rows_to_ipc(&batch.schema(), std::slice::from_ref(batch))
        .map_err(|e| Error::io("encoding state rows", std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path) -> Location {
        Location::Local(dir.into())
    }

    /// Opens the checkpoint in `dir` for `meta`, as the tests do (snapshots every 10 batches,
    /// 100 kept).
    async fn open(dir: &std::path::Path, meta: &Metadata) -> Result<Checkpoint> {
        Checkpoint::open(&local(dir), meta, 10, 100).await
    }

    fn meta(sql: &str) -> Metadata {
        Metadata {
            format_version: FORMAT_VERSION,
            query_id: String::new(),
            query_file: "q.sql".into(),
            sql: sql.into(),
            params: Default::default(),
            mode: "complete".into(),
            event_time: None,
            watermark: None,
            state_schema: None,
            output_schema: "x".into(),
            inputs: None,
            tables: Default::default(),
            format: None,
        }
    }

    #[tokio::test]
    async fn a_commit_that_cannot_be_read_stops_recovery_instead_of_counting_as_damage() {
        use crate::state::store::faulty::{FaultyStore, remote};
        let faulty = std::sync::Arc::new(FaultyStore::default());
        let location = Location::Remote(remote(&faulty));
        let meta = meta("SELECT 1");
        let checkpoint = Checkpoint::open(&location, &meta, 10, 100).await.unwrap();
        for batch_id in 0..2 {
            checkpoint
                .write_offsets(&Offsets {
                    batch_id,
                    sources: Default::default(),
                    force_watermark: None,
                    skipped: false,
                    trigger_micros: None,
                    tables: None,
                })
                .await
                .unwrap();
            checkpoint
                .commit(&Commit {
                    batch_id,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        checkpoint.close().await;
        // The newest commit cannot be read for now (a connection reset, not damage).
        *faulty.unreadable.lock().unwrap() = Some("commits/1".into());
        let checkpoint = Checkpoint::open(&location, &meta, 10, 100).await.unwrap();
        let Err(e) = checkpoint.recover(None).await else {
            panic!("recovered around a commit it could not read");
        };
        assert!(e.to_string().contains("left as it is"), "{e}");
        // Readable again: batch 1 is restored, nothing re-run.
        *faulty.unreadable.lock().unwrap() = None;
        let recovered = checkpoint.recover(None).await.unwrap();
        assert_eq!(recovered.last_commit, Some(1));
        assert!(recovered.replay.is_empty() && !recovered.damaged);
    }

    #[tokio::test]
    async fn a_checkpoint_from_before_the_changelog_is_refused_with_that_reason() {
        let dir = tempfile::tempdir().unwrap();
        let before = Metadata {
            mode: "update".into(),
            output_schema: "Field { name: \"word\" }, Field { name: \"n\" }".into(),
            ..meta("SELECT word, count(*) AS n FROM lines GROUP BY word HAVING count(*) < 3")
        };
        open(dir.path(), &before).await.unwrap().close().await;
        let now = Metadata {
            output_schema: format!("Field {{ name: \"_op\" }}, {}", before.output_schema),
            ..before.clone()
        };
        let Err(e) = open(dir.path(), &now).await else {
            panic!("a checkpoint whose output had no _op was continued");
        };
        assert!(
            e.to_string().contains("before update mode's changelog"),
            "{e}"
        );
    }

    #[test]
    fn seals_detect_torn_and_flipped_files() {
        let sealed = seal(b"{\"a\": 1}");
        assert_eq!(unseal(sealed.clone()).unwrap(), b"{\"a\": 1}");
        let mut flipped = sealed.clone();
        flipped[2] ^= 0x20;
        assert!(unseal(flipped).unwrap_err().contains("checksum"));
        assert!(unseal(sealed[..sealed.len() - 5].to_vec()).is_err());
        assert!(unseal(sealed[..4].to_vec()).is_err());
    }

    #[tokio::test]
    async fn another_query_is_refused_with_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        drop(
            open(dir.path(), &meta("SELECT 1\nFROM lines"))
                .await
                .unwrap(),
        );
        drop(
            open(dir.path(), &meta("SELECT 1\nFROM lines"))
                .await
                .unwrap(),
        );
        let err = open(dir.path(), &meta("SELECT 2\nFROM lines"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("SELECT 1") && err.contains("SELECT 2"),
            "{err}"
        );
        assert!(err.contains("dfstream reset --checkpoint"), "{err}");
    }

    #[tokio::test]
    async fn a_second_process_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), &meta("q")).await.unwrap();
        // A second open file description contends like another process would.
        let err = open(dir.path(), &meta("q"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("in use") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        open(dir.path(), &meta("q")).await.unwrap();
    }

    fn offsets(batch_id: u64, parts: SourceParts) -> Offsets {
        Offsets {
            batch_id,
            sources: parts,
            force_watermark: None,
            skipped: false,
            trigger_micros: None,
            tables: None,
        }
    }

    /// The names a source "t" whose parts and snapshots are lists of names took, as recovered.
    fn taken_names(recovered: &Recovered) -> Vec<String> {
        let lists = recovered
            .sources_snapshot
            .get("t")
            .into_iter()
            .chain(recovered.since_snapshot.iter().filter_map(|p| p.get("t")));
        let mut names: Vec<String> = lists
            .flat_map(|list| serde_json::from_value::<Vec<String>>(list.clone()).unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn sources_come_from_snapshots_and_later_offsets_and_old_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(&local(dir.path()), &meta("q"), 2, 0)
            .await
            .unwrap();
        let mut taken = Vec::new();
        for n in 0..5u64 {
            let name = format!("f{n}");
            cp.write_offsets(&offsets(
                n,
                [("t".into(), serde_json::json!([name]))].into(),
            ))
            .await
            .unwrap();
            taken.push(name);
            if cp.wants_snapshot(n) {
                let parts = [("t".to_string(), serde_json::json!(taken))].into();
                cp.write_snapshot(n, None, &parts).await.unwrap();
            }
            cp.commit(&Commit {
                batch_id: n,
                sources: [("t".into(), serde_json::json!(n))].into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        // A started but uncommitted batch is replayed.
        cp.write_offsets(&offsets(5, SourceParts::new()))
            .await
            .unwrap();
        let recovered = cp.recover(None).await.unwrap();
        assert!(!recovered.damaged);
        assert_eq!(recovered.last_commit, Some(4));
        assert_eq!(taken_names(&recovered), ["f0", "f1", "f2", "f3", "f4"]);
        assert_eq!(recovered.since_snapshot.len(), 1, "after the snapshot at 3");
        assert_eq!(recovered.progress["t"], serde_json::json!(4));
        assert_eq!(recovered.replay.len(), 1);
        assert!(
            !dir.path().join("offsets/0").exists(),
            "older than the snapshot at 3"
        );
        // A damaged newest commit falls back one batch and replays it.
        std::fs::write(dir.path().join("commits/4"), b"{\"batch_id\": 4").unwrap();
        let recovered = cp.recover(None).await.unwrap();
        assert!(recovered.damaged, "the next commit writes a fresh snapshot");
        assert_eq!(recovered.last_commit, Some(3));
        assert_eq!(
            recovered
                .replay
                .iter()
                .map(|o| o.batch_id)
                .collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(taken_names(&recovered), ["f0", "f1", "f2", "f3"]);
        assert_eq!(recovered.progress["t"], serde_json::json!(3));
        // A damaged piece is what a failed rebuild names, not batch 0's pruned history.
        std::fs::write(dir.path().join("offsets/4"), b"{\"batch_id\": 4").unwrap();
        let problem = cp.sources_at(4).await.unwrap_err();
        assert!(problem.contains("offsets/4"), "{problem}");
    }

    #[tokio::test]
    async fn format_1_records_are_read_as_the_directory_and_socket_sources_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = meta("q");
        old.format_version = 1;
        let cp = open(dir.path(), &old).await.unwrap();
        // Written as format 1 wrote them.
        let file = serde_json::json!({"name": "a.txt", "ts_micros": 5, "mtime_micros": 4});
        let range = serde_json::json!({"segment": 0, "start": 0, "end": 9, "ts_micros": 5});
        let end = serde_json::json!({"segment": 0, "offset": 9});
        cp.put_json(
            "offsets/0",
            &serde_json::json!({"batch_id": 0, "files": [file], "wal": [range]}),
        )
        .await
        .unwrap();
        cp.put_json("sources/0.snapshot", &serde_json::json!([["a.txt", 4]]))
            .await
            .unwrap();
        cp.put_json(
            "commits/0",
            &serde_json::json!({"batch_id": 0, "committed_at_micros": 1, "input_files": 1,
                "input_rows": 2, "input_bytes": 9, "output_rows": 2, "state_groups": 2,
                "wal_end": end}),
        )
        .await
        .unwrap();
        cp.put_json(
            "offsets/1",
            &serde_json::json!({"batch_id": 1, "files": []}),
        )
        .await
        .unwrap();
        let recovered = cp.recover(None).await.unwrap();
        assert_eq!(recovered.last_commit, Some(0));
        assert_eq!(
            recovered.sources_snapshot["files"],
            serde_json::json!([["a.txt", 4]])
        );
        assert_eq!(recovered.progress["socket"], end);
        assert!(recovered.replay[0].sources.is_empty());
        let offsets = cp.offsets(0).await.unwrap();
        assert_eq!(offsets.sources["files"], serde_json::json!([file]));
        assert_eq!(offsets.sources["socket"], serde_json::json!([range]));
        drop(cp);
        // Opening it for a run records format 2; a later format is refused.
        drop(open(dir.path(), &meta("q")).await.unwrap());
        let (_, stored) = Checkpoint::open_read_only(&local(dir.path()))
            .await
            .unwrap();
        assert_eq!(stored.format_version, FORMAT_VERSION);
        let mut later = meta("q");
        later.format_version = FORMAT_VERSION + 1;
        let cp = Checkpoint::open_read_only(&local(dir.path()))
            .await
            .unwrap()
            .0;
        cp.put_json("metadata", &later).await.unwrap();
        drop(cp);
        let err = open(dir.path(), &meta("q"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("a later dfstream wrote it"), "{err}");
    }
}
