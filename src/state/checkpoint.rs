//! The checkpoint directory: what each batch consists of, which batches are done, and the
//! aggregation state, so that a restart continues where the last run ended.
//!
//! Layout (all writes atomic: temporary name, fsync, rename, fsync the directory):
//! ```text
//! metadata               JSON: format version, query id, SQL text, parameters, mode, schemas
//! offsets/N              JSON: the files of batch N, written before batch N runs
//! commits/N              JSON: written after batch N's sinks and state are durable
//! state/N.delta          Arrow IPC: the groups batch N changed (their merged partial rows)
//! state/N.snapshot       Arrow IPC: every group after batch N, every --snapshot-interval batches
//! sources/N.snapshot     JSON: every file name taken up to batch N, with each state snapshot
//! ```
//! A batch is done exactly when `commits/N` exists; files of later batches are ignored or
//! replayed. Knows nothing of SQL: it stores rows and names handed to it.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::dir::NewFile;

/// Version of the layout above; a checkpoint of another version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// What the checkpoint was made for; a restart must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub query_id: String,
    pub query_file: String,
    pub sql: String,
    pub params: std::collections::BTreeMap<String, String>,
    pub state_schema: Option<String>,
    pub output_schema: String,
}

/// The input of one batch: the write-ahead record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offsets {
    pub batch_id: u64,
    pub files: Vec<NewFile>,
}

/// Written once a batch is fully done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub batch_id: u64,
    pub committed_at_micros: i64,
    pub output_rows: u64,
    pub state_groups: u64,
}

/// What a restart needs to continue.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last committed batch, if any.
    pub last_commit: Option<u64>,
    /// State rows to apply in order (a snapshot, then the deltas after it).
    pub state: Vec<RecordBatch>,
    /// Every file name taken by committed batches.
    pub taken: BTreeSet<String>,
    /// A batch that was started but not committed: re-run it with exactly these files.
    pub pending: Option<Offsets>,
}

/// An open checkpoint directory.
pub struct Checkpoint {
    dir: PathBuf,
    snapshot_interval: u64,
    retain_batches: u64,
}

impl Checkpoint {
    /// Opens (creating if needed) the checkpoint at `dir` for the query described by `meta`.
    /// Refuses a checkpoint made for another query.
    pub fn open(
        dir: &Path,
        meta: &Metadata,
        snapshot_interval: u64,
        retain_batches: u64,
    ) -> Result<Self> {
        for sub in ["offsets", "commits", "state", "sources"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                Error::io(
                    format!("creating checkpoint directory {}", dir.display()),
                    e,
                )
            })?;
        }
        let checkpoint = Self {
            dir: dir.to_path_buf(),
            snapshot_interval: snapshot_interval.max(1),
            retain_batches,
        };
        let path = dir.join("metadata");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Metadata = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Checkpoint(format!("{} is not readable: {e}", path.display()))
                })?;
                checkpoint.check_same_query(&stored, meta)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut meta = meta.clone();
                meta.query_id = new_query_id();
                write_atomic(
                    &path,
                    &serde_json::to_vec_pretty(&meta).expect("serializable"),
                )?;
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        Ok(checkpoint)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_same_query(&self, stored: &Metadata, meta: &Metadata) -> Result<()> {
        let how = format!(
            "To start over with the new query, pass another --checkpoint directory, or delete \
             this one (rm -r {}); to continue the old one, run its query again.",
            self.dir.display()
        );
        let differs = if stored.format_version != FORMAT_VERSION {
            format!(
                "it has format version {}, and this dfstream reads version {FORMAT_VERSION}",
                stored.format_version
            )
        } else if stored.sql != meta.sql {
            format!(
                "its SQL differs from {}'s:\n  checkpoint: {}\n  now:        {}",
                meta.query_file,
                first_difference(&stored.sql, &meta.sql).0,
                first_difference(&stored.sql, &meta.sql).1,
            )
        } else if stored.params != meta.params {
            format!(
                "its parameters differ: checkpoint {:?}, now {:?}",
                stored.params, meta.params
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
            "checkpoint {} was made by another query: {differs}\n{how}",
            self.dir.display()
        )))
    }

    /// Reads what a restart needs; `state_schema` gives the type of stored state rows.
    pub fn recover(&self, state_schema: Option<&SchemaRef>) -> Result<Recovered> {
        let commits = self.batch_ids("commits", "")?;
        let last_commit = commits.last().copied();
        let mut recovered = Recovered {
            last_commit,
            ..Default::default()
        };
        let next = last_commit.map_or(0, |c| c + 1);
        let pending_path = self.dir.join("offsets").join(next.to_string());
        if pending_path.exists() {
            recovered.pending = Some(read_json(&pending_path)?);
        }
        let Some(last) = last_commit else {
            return Ok(recovered);
        };
        // Files taken: the newest source snapshot, then the offsets after it.
        let source_snapshot = self
            .batch_ids("sources", ".snapshot")?
            .into_iter()
            .rfind(|&n| n <= last);
        if let Some(s) = source_snapshot {
            let names: Vec<String> = read_json(&self.path("sources", s, ".snapshot"))?;
            recovered.taken.extend(names);
        }
        let first_offsets = source_snapshot.map_or(0, |s| s + 1);
        for n in first_offsets..=last {
            let offsets: Offsets = read_json(&self.path("offsets", n, ""))?;
            recovered
                .taken
                .extend(offsets.files.into_iter().map(|f| f.name));
        }
        // State: the newest snapshot, then the deltas after it.
        if let Some(schema) = state_schema {
            let snapshot = self
                .batch_ids("state", ".snapshot")?
                .into_iter()
                .rfind(|&n| n <= last);
            if let Some(s) = snapshot {
                recovered
                    .state
                    .extend(read_ipc(&self.path("state", s, ".snapshot"), schema)?);
            }
            let deltas = self.batch_ids("state", ".delta")?;
            for n in deltas {
                if snapshot.is_none_or(|s| n > s) && n <= last {
                    recovered
                        .state
                        .extend(read_ipc(&self.path("state", n, ".delta"), schema)?);
                }
            }
        }
        Ok(recovered)
    }

    /// Records the input of batch `offsets.batch_id` before it runs.
    pub fn write_offsets(&self, offsets: &Offsets) -> Result<()> {
        write_atomic(
            &self.path("offsets", offsets.batch_id, ""),
            &serde_json::to_vec_pretty(offsets).expect("serializable"),
        )
    }

    /// Stores the groups batch `batch_id` changed.
    pub fn write_state_delta(&self, batch_id: u64, delta: &RecordBatch) -> Result<()> {
        write_atomic(&self.path("state", batch_id, ".delta"), &ipc_bytes(delta)?)
    }

    /// Whether batch `batch_id` should also write a full snapshot.
    pub fn wants_snapshot(&self, batch_id: u64) -> bool {
        (batch_id + 1).is_multiple_of(self.snapshot_interval)
    }

    /// Writes full snapshots of the state and of the taken files after batch `batch_id`.
    pub fn write_snapshot(
        &self,
        batch_id: u64,
        state: Option<&RecordBatch>,
        taken: &HashSet<String>,
    ) -> Result<()> {
        if let Some(state) = state {
            write_atomic(
                &self.path("state", batch_id, ".snapshot"),
                &ipc_bytes(state)?,
            )?;
        }
        let mut names: Vec<&String> = taken.iter().collect();
        names.sort_unstable();
        write_atomic(
            &self.path("sources", batch_id, ".snapshot"),
            &serde_json::to_vec(&names).expect("serializable"),
        )
    }

    /// Marks batch `commit.batch_id` done, then drops files no recovery can need any more.
    pub fn commit(&self, commit: &Commit) -> Result<()> {
        write_atomic(
            &self.path("commits", commit.batch_id, ""),
            &serde_json::to_vec_pretty(commit).expect("serializable"),
        )?;
        self.remove_old(commit.batch_id)
    }

    /// Removes files of batches older than both the newest snapshot and `--retain-batches`.
    fn remove_old(&self, last: u64) -> Result<()> {
        let Some(snapshot) = self
            .batch_ids("state", ".snapshot")?
            .into_iter()
            .chain(self.batch_ids("sources", ".snapshot")?)
            .filter(|&n| n <= last)
            .max()
        else {
            return Ok(());
        };
        let keep_from = snapshot.min(last.saturating_sub(self.retain_batches));
        for (sub, suffix) in [
            ("offsets", ""),
            ("commits", ""),
            ("state", ".delta"),
            ("state", ".snapshot"),
            ("sources", ".snapshot"),
        ] {
            for n in self.batch_ids(sub, suffix)? {
                if n < keep_from {
                    let path = self.path(sub, n, suffix);
                    if let Err(e) = std::fs::remove_file(&path) {
                        log::warn!(
                            "could not remove old checkpoint file {}: {e}",
                            path.display()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn path(&self, sub: &str, batch_id: u64, suffix: &str) -> PathBuf {
        self.dir.join(sub).join(format!("{batch_id}{suffix}"))
    }

    /// Batch ids of the files in `sub` named `N{suffix}`, ascending.
    fn batch_ids(&self, sub: &str, suffix: &str) -> Result<Vec<u64>> {
        let dir = self.dir.join(sub);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_suffix(suffix)
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }
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

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Checkpoint(format!(
            "checkpoint file {} is damaged: {e}",
            path.display()
        ))
    })
}

fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    let to_err = |e: datafusion::arrow::error::ArrowError| {
        Error::io("encoding state rows", std::io::Error::other(e))
    };
    let mut bytes = Vec::new();
    let mut writer = FileWriter::try_new(&mut bytes, &batch.schema()).map_err(to_err)?;
    writer.write(batch).map_err(to_err)?;
    writer.finish().map_err(to_err)?;
    drop(writer);
    Ok(bytes)
}

fn read_ipc(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let damaged = |e: &dyn std::fmt::Display| {
        Error::Checkpoint(format!(
            "checkpoint file {} is damaged: {e}",
            path.display()
        ))
    };
    let file = File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let reader = FileReader::try_new(file, None).map_err(|e| damaged(&e))?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| damaged(&e))?;
        // Stored with the same column types; take the live schema's names and metadata.
        let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
            .map_err(|e| damaged(&e))?;
        batches.push(batch);
    }
    Ok(batches)
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never a part: temporary file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| Error::io(format!("writing {}", path.display()), e);
    let mut file = File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)?;
    sync_dir(dir).map_err(fail)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(sql: &str) -> Metadata {
        Metadata {
            format_version: FORMAT_VERSION,
            query_id: String::new(),
            query_file: "q.sql".into(),
            sql: sql.into(),
            params: Default::default(),
            state_schema: None,
            output_schema: "x".into(),
        }
    }

    #[test]
    fn another_query_is_refused_with_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        Checkpoint::open(dir.path(), &meta("SELECT 1\nFROM lines"), 10, 100).unwrap();
        Checkpoint::open(dir.path(), &meta("SELECT 1\nFROM lines"), 10, 100).unwrap();
        let err = Checkpoint::open(dir.path(), &meta("SELECT 2\nFROM lines"), 10, 100)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("SELECT 1") && err.contains("SELECT 2"),
            "{err}"
        );
        assert!(err.contains("--checkpoint"), "{err}");
    }

    #[test]
    fn taken_files_come_from_snapshots_and_later_offsets_and_old_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path(), &meta("q"), 2, 0).unwrap();
        let mut taken = HashSet::new();
        for n in 0..5u64 {
            let name = format!("f{n}");
            cp.write_offsets(&Offsets {
                batch_id: n,
                files: vec![NewFile {
                    name: name.clone(),
                    ts_micros: 0,
                }],
            })
            .unwrap();
            taken.insert(name);
            if cp.wants_snapshot(n) {
                cp.write_snapshot(n, None, &taken).unwrap();
            }
            cp.commit(&Commit {
                batch_id: n,
                committed_at_micros: 0,
                output_rows: 0,
                state_groups: 0,
            })
            .unwrap();
        }
        // A started but uncommitted batch is pending.
        cp.write_offsets(&Offsets {
            batch_id: 5,
            files: vec![],
        })
        .unwrap();
        let recovered = cp.recover(None).unwrap();
        assert_eq!(recovered.last_commit, Some(4));
        assert_eq!(recovered.taken.len(), 5);
        assert_eq!(recovered.pending.unwrap().batch_id, 5);
        assert!(
            !dir.path().join("offsets/0").exists(),
            "older than the snapshot at 3"
        );
    }
}
