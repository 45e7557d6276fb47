//! The files source: hands out each new, complete file in a folder exactly once. The folder
//! is a local directory ([`local`]) or a prefix of an object store ([`remote`]); what is
//! taken, in what order and how much per trigger is decided here, the same for both.
//!
//! A file is new when its name has not been taken before; it is complete when it is visible
//! under its final name (writers write to a name starting with `.` or `_`, which is ignored,
//! then rename; on object stores a PUT is visible only when complete). With
//! `--max-file-age`, names of files older than that (relative to the newest file taken) are
//! forgotten and such old files ignored, so memory stays bounded however many files pass.
//! A batch's part is the list of files it took ([`NewFile`]: name, arrival time, modification
//! time, size, ETag); a sources snapshot remembers every name still taken. With
//! `--clean-source`, a file is deleted or archived once no recovery can re-run the batch
//! that read it. Never reads file contents, plans SQL or writes checkpoints.

mod local;
mod remote;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BuildContext, InputUnit, Restorable, Restored, Source};
use crate::cli::CleanSource;
use crate::error::{Error, Result};
use crate::storage::Location;

pub use local::LocalFolder;
pub use remote::RemoteFolder;

/// The source's name in offsets, commits and snapshots.
pub const NAME: &str = "files";

/// The files source among the kinds of source.
pub const KIND: super::Kind = super::Kind {
    name: NAME,
    build: |ctx| Ok(FileSource::from_config(ctx)?.map(|s| Box::new(s) as Box<dyn Source>)),
    describe_part,
};

/// A file the source hands out: its name in the input directory and when it was first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFile {
    pub name: String,
    /// Microseconds since the epoch: the arrival time of the file's rows.
    pub ts_micros: i64,
    /// The file's modification time, microseconds since the epoch.
    #[serde(default)]
    pub mtime_micros: i64,
    /// The file's size when it was taken: its batch (and a replay of it) reads exactly these
    /// bytes. Missing in offsets written before sizes were recorded (then: the whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The object's ETag when it was taken (object stores only): a replay that finds
    /// another version under the name says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A taken file as the source remembers it (and a sources snapshot records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub mtime_micros: i64,
    /// Its rows' arrival time; unknown for files remembered by snapshots written before
    /// it was recorded.
    pub ts_micros: Option<i64>,
    pub size: Option<u64>,
}

/// One entry of a sources snapshot: a taken file, or (in snapshots written before arrival
/// times and sizes were kept) its name and modification time.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Remembered {
    File {
        name: String,
        mtime_micros: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts_micros: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    NameAndMtime(String, i64),
}

impl From<&NewFile> for Taken {
    fn from(f: &NewFile) -> Self {
        Taken {
            mtime_micros: f.mtime_micros,
            ts_micros: Some(f.ts_micros),
            size: f.size,
        }
    }
}

/// The files of a recorded part of a batch.
pub fn files_of(part: &Value) -> Result<Vec<NewFile>> {
    crate::source::decode(NAME, "files of a batch", part)
}

/// A part of a batch for messages: its file names.
pub fn describe_part(part: &Value) -> String {
    match files_of(part) {
        Ok(files) => files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => format!("files {part}"),
    }
}

/// Every file taken up to the restored batch, with what is known of it: the snapshot's
/// files, then each later batch's.
pub fn taken_files(restored: &Restored) -> Result<BTreeMap<String, Taken>> {
    let mut taken = BTreeMap::new();
    if let Some(snapshot) = &restored.snapshot {
        let entries: Vec<Remembered> = crate::source::decode(NAME, "snapshot", snapshot)?;
        for entry in entries {
            let (name, file) = match entry {
                Remembered::File {
                    name,
                    mtime_micros,
                    ts_micros,
                    size,
                } => (
                    name,
                    Taken {
                        mtime_micros,
                        ts_micros,
                        size,
                    },
                ),
                Remembered::NameAndMtime(name, mtime_micros) => (
                    name,
                    Taken {
                        mtime_micros,
                        ts_micros: None,
                        size: None,
                    },
                ),
            };
            taken.insert(name, file);
        }
    }
    for part in &restored.since_snapshot {
        for file in files_of(part)? {
            taken.insert(file.name.clone(), Taken::from(&file));
        }
    }
    Ok(taken)
}

/// What happens to a taken file once no recovery can need it (`--clean-source`).
#[derive(Debug, Clone)]
pub enum Cleanup {
    Delete,
    /// Moved into this folder, under the same name.
    Archive(Location),
}

/// A file a listing found.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub mtime_micros: i64,
    pub size: u64,
    /// The object's ETag, on object stores.
    pub version: Option<String>,
}

/// What a listing found: the fresh files, and how many were ignored as too old.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<Listed>,
    pub ignored_old: usize,
}

/// Where the files are: lists them, says how to read one, cleans them up.
#[async_trait]
pub trait Folder: Send + Sync {
    /// The regular files directly in the folder whose names are `fresh`, skipping (and
    /// counting) those modified before `horizon`; `None` when the folder is known not to
    /// have changed since a listing found nothing.
    async fn list(
        &mut self,
        fresh: &(dyn for<'n> Fn(&'n str) -> bool + Sync),
        horizon: Option<i64>,
    ) -> Result<Option<Listing>>;
    /// What a batch reads for `file`.
    fn unit(&self, file: &NewFile) -> InputUnit;
    /// Whether the latest listing failed (the folder's contents are unknown).
    fn failing(&self) -> bool {
        false
    }
    /// Deletes or archives `names`; a file already gone is fine, any other failure is logged
    /// and the file stays (it is never read again). Returns how many were cleaned.
    async fn clean(&self, names: &[String], how: &Cleanup) -> usize;
    /// What the checkpoint records as this input.
    fn identity(&self) -> String;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// The folder at `location`: a local directory (watched, waking `wake` when a file may
/// have arrived) or an object-store prefix.
pub fn folder(location: &Location, wake: Arc<tokio::sync::Notify>) -> Result<Box<dyn Folder>> {
    Ok(match location {
        Location::Local(dir) => Box::new(LocalFolder::open(dir, wake)?),
        Location::Remote(remote) => Box::new(RemoteFolder::new(remote.clone())),
    })
}

/// A file seen by a listing but not yet taken.
#[derive(Debug, Clone)]
struct Waiting {
    mtime_micros: i64,
    /// When a listing first saw it: its rows' arrival time.
    first_seen: i64,
    /// As the latest listing saw it.
    size: u64,
    version: Option<String>,
}

/// See the module docs.
pub struct FileSource {
    folder: Box<dyn Folder>,
    glob: Option<GlobMatcher>,
    /// Names already taken (and so never taken again), with what is known of them.
    taken: HashMap<String, Taken>,
    /// The newest modification time taken (never later than the clock).
    newest_mtime: i64,
    /// Forget and ignore files this much older than `newest_mtime`.
    max_age_micros: Option<i64>,
    /// Old files ignored by the last listing (to log only changes).
    ignored_old: usize,
    /// Files seen by a listing but not yet taken.
    waiting: HashMap<String, Waiting>,
    /// Hand out the newest files first (`--latest-first`).
    latest_first: bool,
    /// `--max-files-per-trigger`.
    max_files: Option<usize>,
    /// `--max-bytes-per-trigger`.
    max_bytes: Option<u64>,
    /// With `--trigger available-now`: the files listed when the run began, still to take.
    bound: Option<VecDeque<String>>,
    /// What `--clean-source` does with files no recovery can need.
    cleanup: Option<Cleanup>,
    /// With `--clean-source`: the files of each batch read, until no recovery can re-run it.
    to_clean: BTreeMap<u64, Vec<String>>,
}

impl FileSource {
    /// A source over `folder`, taking the names `glob` matches (all, without one).
    pub fn new(
        folder: Box<dyn Folder>,
        glob: Option<&str>,
        max_age: Option<std::time::Duration>,
    ) -> Result<Self> {
        let glob = glob
            .map(|g| {
                Glob::new(g)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| Error::Usage(format!("invalid --glob '{g}': {e}")))
            })
            .transpose()?;
        Ok(Self {
            folder,
            glob,
            taken: HashMap::new(),
            newest_mtime: i64::MIN,
            max_age_micros: max_age.map(|a| a.as_micros() as i64),
            ignored_old: 0,
            waiting: HashMap::new(),
            latest_first: false,
            max_files: None,
            max_bytes: None,
            bound: None,
            cleanup: None,
            to_clean: BTreeMap::new(),
        })
    }

    /// The source `--input` (or, without it or `--socket`, `input/`) asks for.
    pub fn from_config(ctx: &BuildContext) -> Result<Option<Self>> {
        let args = &ctx.config.args;
        let Some(input) = &ctx.config.input else {
            return Ok(None);
        };
        let folder = folder(input, Arc::clone(&ctx.wake))?;
        let mut source = Self::new(folder, args.glob.as_deref(), args.max_file_age)?;
        source.latest_first = args.latest_first;
        source.max_files = args.max_files_per_trigger.map(|m| m as usize);
        source.max_bytes = args.max_bytes_per_trigger.map(|m| m as u64);
        source.cleanup = match args.clean_source {
            CleanSource::Off => None,
            CleanSource::Delete => Some(Cleanup::Delete),
            CleanSource::Archive => ctx.config.archive_dir.clone().map(Cleanup::Archive),
        };
        Ok(Some(source))
    }

    /// Marks files as taken (restored from a checkpoint, or read by a batch).
    pub fn mark_taken(&mut self, files: impl IntoIterator<Item = (String, Taken)>) {
        for (name, file) in files {
            self.waiting.remove(&name);
            self.note_taken(name, file);
        }
        self.forget_old();
    }

    /// Every name remembered as taken, with what is known of it.
    pub fn taken(&self) -> &HashMap<String, Taken> {
        &self.taken
    }

    fn note_taken(&mut self, name: String, file: Taken) {
        let now = crate::time::now_micros();
        self.newest_mtime = self.newest_mtime.max(file.mtime_micros.min(now));
        self.taken.insert(name, file);
    }

    /// Files older than this are ignored and forgotten (with `--max-file-age`).
    fn horizon(&self) -> Option<i64> {
        let age = self.max_age_micros?;
        (self.newest_mtime != i64::MIN).then(|| self.newest_mtime.saturating_sub(age))
    }

    fn forget_old(&mut self) {
        if let Some(horizon) = self.horizon() {
            self.taken.retain(|_, file| file.mtime_micros >= horizon);
        }
    }

    /// Lists the folder and returns the names of untaken files, oldest first (newest first
    /// with `--latest-first`), without taking them.
    pub async fn available(&mut self) -> Result<Vec<String>> {
        let horizon = self.horizon();
        let (taken, glob) = (&self.taken, &self.glob);
        let fresh = |name: &str| {
            !name.starts_with('.')
                && !name.starts_with('_')
                && !taken.contains_key(name)
                && glob.as_ref().is_none_or(|g| g.is_match(name))
        };
        let Some(listing) = self.folder.list(&fresh, horizon).await? else {
            return Ok(Vec::new());
        };
        if listing.ignored_old != self.ignored_old {
            self.ignored_old = listing.ignored_old;
            if listing.ignored_old > 0 {
                log::warn!(
                    "{} files in {} are older than --max-file-age before the newest file \
                     taken, and are ignored",
                    listing.ignored_old,
                    self.folder.describe()
                );
            }
        }
        let now = crate::time::now_micros();
        let mut found: Vec<(i64, String)> = Vec::with_capacity(listing.files.len());
        for file in listing.files {
            self.waiting
                .entry(file.name.clone())
                .and_modify(|w| {
                    w.size = file.size;
                    w.version = file.version.clone();
                })
                .or_insert(Waiting {
                    mtime_micros: file.mtime_micros,
                    first_seen: now,
                    size: file.size,
                    version: file.version,
                });
            found.push((file.mtime_micros, file.name));
        }
        // A file that went before it was taken is forgotten.
        let listed: HashSet<&str> = found.iter().map(|(_, name)| name.as_str()).collect();
        self.waiting
            .retain(|name, _| listed.contains(name.as_str()));
        found.sort();
        if self.latest_first {
            found.reverse();
        }
        Ok(found.into_iter().map(|(_, name)| name).collect())
    }

    /// Takes up to `max` of `names` (in order): they will never be handed out again.
    /// How many of `names` (in the order they would be taken) one batch takes: all, or with
    /// `limited`, as many as `--max-files-per-trigger` and `--max-bytes-per-trigger` allow
    /// (at least one).
    fn how_many<'a>(
        &self,
        names: impl ExactSizeIterator<Item = &'a String>,
        limited: bool,
    ) -> usize {
        let all = names.len();
        if !limited {
            return all;
        }
        let by_files = self.max_files.unwrap_or(usize::MAX).min(all);
        let Some(max_bytes) = self.max_bytes else {
            return by_files;
        };
        let mut bytes = 0u64;
        let mut count = 0;
        for name in names.take(by_files) {
            bytes += self.waiting.get(name).map_or(0, |w| w.size);
            if count > 0 && bytes > max_bytes {
                break;
            }
            count += 1;
        }
        count
    }

    pub fn take_names(&mut self, names: &[String], max: Option<usize>) -> Vec<NewFile> {
        let count = max.unwrap_or(usize::MAX).min(names.len());
        let files: Vec<NewFile> = names[..count]
            .iter()
            .map(|name| {
                let now = crate::time::now_micros();
                let file = match self.waiting.remove(name) {
                    Some(w) => NewFile {
                        name: name.clone(),
                        ts_micros: w.first_seen,
                        mtime_micros: w.mtime_micros,
                        size: Some(w.size),
                        version: w.version,
                    },
                    None => NewFile {
                        name: name.clone(),
                        ts_micros: now,
                        mtime_micros: now,
                        size: None,
                        version: None,
                    },
                };
                self.note_taken(name.clone(), Taken::from(&file));
                file
            })
            .collect();
        self.forget_old();
        files
    }

    /// Deletes or archives `names`, logging how many went.
    async fn clean(&self, names: &[String], how: &Cleanup) {
        if names.is_empty() {
            return;
        }
        let cleaned = self.folder.clean(names, how).await;
        if cleaned > 0 {
            match how {
                Cleanup::Delete => log::info!("--clean-source: deleted {cleaned} files"),
                Cleanup::Archive(to) => {
                    log::info!("--clean-source: moved {cleaned} files to {}", to.describe())
                }
            }
        }
    }
}

#[async_trait]
impl Source for FileSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn identity(&self) -> String {
        self.folder.identity()
    }

    fn describe(&self) -> String {
        self.folder.describe()
    }

    async fn restore(&mut self, restored: Restored) -> Result<()> {
        let taken = taken_files(&restored)?;
        if let Some(how) = self.cleanup.clone() {
            // The files of committed batches whose offsets are kept wait until no recovery
            // can re-run their batch.
            for (batch, part) in &restored.kept {
                let names = files_of(part)?.into_iter().map(|f| f.name).collect();
                self.to_clean.insert(*batch, names);
            }
            // Taken files whose batch's offsets are gone can go now (a crash may have come
            // between a commit and its cleanup), but only when the kept history is whole and
            // a commit can be restored without batch 0's: then no recovery can re-run those
            // batches or take their files again.
            if restored.kept_whole && restored.oldest_restorable.is_some() {
                let waiting: HashSet<&String> = self.to_clean.values().flatten().collect();
                let gone: Vec<String> = taken
                    .keys()
                    .filter(|name| !waiting.contains(name))
                    .cloned()
                    .collect();
                self.clean(&gone, &how).await;
            }
        }
        self.mark_taken(taken);
        Ok(())
    }

    async fn bound_to_available_now(&mut self) -> Result<()> {
        self.bound = Some(self.available().await?.into());
        Ok(())
    }

    fn backlog(&self) -> Option<(u64, u64)> {
        let bound = self.bound.as_ref()?;
        let bytes = bound
            .iter()
            .filter_map(|name| self.waiting.get(name))
            .map(|w| w.size)
            .sum();
        Some((bound.len() as u64, bytes))
    }

    fn saw_everything(&self) -> bool {
        !self.folder.failing()
    }

    /// Names are not positions: what was listed and left for later batches (by
    /// `--max-files-per-trigger`), or what is left of the available-now bound.
    fn latest(&self) -> Option<Value> {
        let waiting: Vec<&Waiting> = match &self.bound {
            Some(bound) => bound.iter().filter_map(|n| self.waiting.get(n)).collect(),
            None => self.waiting.values().collect(),
        };
        Some(serde_json::json!({
            "waitingFiles": waiting.len(),
            "waitingBytes": waiting.iter().map(|w| w.size).sum::<u64>(),
        }))
    }

    async fn take(&mut self, limited: bool, _now_micros: i64) -> Result<Option<Value>> {
        let files = match self.bound.take() {
            Some(mut bound) => {
                let count = self.how_many(bound.iter(), limited);
                let names: Vec<String> = bound.drain(..count).collect();
                self.bound = Some(bound);
                self.take_names(&names, None)
            }
            None => {
                let names = self.available().await?;
                let count = self.how_many(names.iter(), limited);
                self.take_names(&names, Some(count))
            }
        };
        super::record(NAME, files)
    }

    fn open_batch(&mut self, batch_id: u64, part: &Value) -> Result<Vec<InputUnit>> {
        let files = files_of(part)?;
        self.mark_taken(files.iter().map(|f| (f.name.clone(), Taken::from(f))));
        if self.cleanup.is_some() {
            let names = files.iter().map(|f| f.name.clone()).collect();
            self.to_clean.insert(batch_id, names);
        }
        Ok(files.iter().map(|f| self.folder.unit(f)).collect())
    }

    fn progress(&self) -> Option<Value> {
        None
    }

    fn snapshot(&self) -> Option<Value> {
        let mut names: Vec<(&String, &Taken)> = self.taken.iter().collect();
        names.sort_unstable_by_key(|(name, _)| *name);
        let entries: Vec<Remembered> = names
            .into_iter()
            .map(|(name, file)| Remembered::File {
                name: name.clone(),
                mtime_micros: file.mtime_micros,
                ts_micros: file.ts_micros,
                size: file.size,
            })
            .collect();
        serde_json::to_value(entries).ok()
    }

    async fn release(&mut self, oldest: Option<Restorable<'_>>) -> Result<()> {
        let (Some(how), Some(oldest)) = (self.cleanup.clone(), oldest) else {
            return Ok(());
        };
        let keep = self.to_clean.split_off(&(oldest.batch_id + 1));
        let done = std::mem::replace(&mut self.to_clean, keep);
        let names: Vec<String> = done.into_values().flatten().collect();
        self.clean(&names, &how).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::SystemTime;

    fn local(dir: &Path, glob: Option<&str>, max_age: Option<std::time::Duration>) -> FileSource {
        let folder = LocalFolder::open(dir, Arc::default()).unwrap();
        FileSource::new(Box::new(folder), glob, max_age).unwrap()
    }

    #[tokio::test]
    async fn hidden_and_taken_files_are_not_available() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.txt", ".hidden", "_temp", "b.log"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let mut source = local(dir.path(), None, None);
        let mut names = source.available().await.unwrap();
        names.sort();
        assert_eq!(names, ["a.txt", "b.log"]);
        let taken = source.take_names(&names, Some(1));
        assert_eq!(taken.len(), 1);
        assert_eq!(source.available().await.unwrap().len(), 1);
        let rest = source.available().await.unwrap();
        source.take_names(&rest, None);
        assert!(source.available().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn max_file_age_forgets_and_ignores_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let set_mtime = |name: &str, secs_ago: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, "x\n").unwrap();
            let t = SystemTime::now() - std::time::Duration::from_secs(secs_ago);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        set_mtime("old.txt", 3600);
        set_mtime("new.txt", 0);
        let mut source = local(dir.path(), None, Some(std::time::Duration::from_secs(60)));
        // The first listing has no newest file yet: both are taken, oldest first.
        let names = source.available().await.unwrap();
        assert_eq!(names, ["old.txt", "new.txt"]);
        source.take_names(&names, None);
        assert_eq!(source.taken().len(), 1, "old.txt is forgotten");
        // Forgotten, but still not taken again: it is older than the horizon.
        assert!(source.available().await.unwrap().is_empty());
        set_mtime("late-old.txt", 3600);
        assert!(
            source.available().await.unwrap().is_empty(),
            "old arrivals are ignored"
        );
    }

    #[tokio::test]
    async fn glob_filters_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        std::fs::write(dir.path().join("b.csv"), "x").unwrap();
        let mut source = local(dir.path(), Some("*.txt"), None);
        assert_eq!(source.available().await.unwrap(), ["a.txt"]);
    }

    #[test]
    fn missing_directory_is_a_usage_error() {
        let err = LocalFolder::open(Path::new("/no/such/dir"), Arc::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("/no/such/dir"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
