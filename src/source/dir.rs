//! Watches the input directory and hands out each new, complete file exactly once.
//!
//! A file is new when its name has not been taken before; it is complete when it is visible
//! under its final name (writers write to a name starting with `.` or `_`, which is ignored,
//! then rename). `notify` events only wake the trigger loop early; what to take is always
//! decided by listing the directory, so a file reported by an event and seen by a listing
//! is still taken once, and missed events (network filesystems) only cost latency. An
//! unchanged directory is listed only every few seconds. Links are followed to files; FIFOs, sockets,
//! devices and broken links are skipped, each logged once.
//! With `--max-file-age`, names of files older than that (relative to the newest file taken)
//! are forgotten and such old files ignored, so memory stays bounded however many files pass.
//! A batch's part is the list of files it took ([`NewFile`]: name, arrival time, modification
//! time, size); a sources snapshot remembers every name still taken. With `--clean-source`,
//! a file is deleted or archived once no recovery can re-run the batch that read it.
//! Never reads file contents, plans SQL or writes checkpoints.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use globset::{Glob, GlobMatcher};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::{BuildContext, InputUnit, Restorable, Restored, Source};
use crate::cli::CleanSource;
use crate::error::{Error, Result};

/// The source's name in offsets, commits and snapshots.
pub const NAME: &str = "files";

/// The directory source among the kinds of source.
pub const KIND: super::Kind = super::Kind {
    name: NAME,
    build: |ctx| Ok(DirSource::from_config(ctx)?.map(|s| Box::new(s) as Box<dyn Source>)),
    describe_part,
};

/// An unchanged directory is still listed this often: a network filesystem may cache its
/// modification time, an object-store mount may never change it, and a link's target may
/// appear without touching it.
const FULL_LISTING: std::time::Duration = std::time::Duration::from_secs(5);

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
    super::decode(NAME, "files of a batch", part)
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
        let entries: Vec<Remembered> = super::decode(NAME, "snapshot", snapshot)?;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    Delete,
    /// Moved into this directory, under the same name.
    Archive(PathBuf),
}

/// See the module docs.
pub struct DirSource {
    dir: PathBuf,
    glob: Option<GlobMatcher>,
    /// Names already taken (and so never taken again), with what is known of them.
    taken: HashMap<String, Taken>,
    /// The newest modification time taken (never later than the clock).
    newest_mtime: i64,
    /// Forget and ignore files this much older than `newest_mtime`.
    max_age_micros: Option<i64>,
    /// Old files ignored by the last listing (to log only changes).
    ignored_old: usize,
    /// Names seen by a listing but not yet taken: (modification time, first seen) in micros,
    /// and the size the latest listing saw.
    waiting: HashMap<String, (i64, i64, u64)>,
    /// Entries that are not files to read (FIFOs, broken links), each logged once.
    skipped: std::collections::HashSet<String>,
    /// The directory's modification time when a listing found nothing new, if that time was
    /// safely in the past then: while it stays the same, no entry was added, and the
    /// directory is listed only every [`FULL_LISTING`] (an idle job over 20,000 files spent a
    /// CPU on listings).
    quiet_since: Option<SystemTime>,
    /// When the directory was last listed.
    listed_at: std::time::Instant,
    /// Hand out the newest files first (`--latest-first`).
    latest_first: bool,
    /// `--max-files-per-trigger`.
    max_files: Option<usize>,
    /// With `--trigger available-now`: the files listed when the run began, still to take.
    bound: Option<VecDeque<String>>,
    /// What `--clean-source` does with files no recovery can need.
    cleanup: Option<Cleanup>,
    /// With `--clean-source`: the files of each batch read, until no recovery can re-run it.
    to_clean: BTreeMap<u64, Vec<String>>,
    /// Kept alive for its events; `None` if the platform watcher could not start.
    _watcher: Option<RecommendedWatcher>,
}

impl DirSource {
    /// Opens `dir` (which must exist) and starts watching it.
    pub fn open(
        dir: &Path,
        glob: Option<&str>,
        max_age: Option<std::time::Duration>,
        wake: Arc<Notify>,
    ) -> Result<Self> {
        let meta = std::fs::metadata(dir).map_err(|e| {
            Error::Usage(format!(
                "input directory {} cannot be read: {e} (create it, or pass --input DIR)",
                dir.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(Error::Usage(format!(
                "--input {} is not a directory",
                dir.display()
            )));
        }
        let glob = glob
            .map(|g| {
                Glob::new(g)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| Error::Usage(format!("invalid --glob '{g}': {e}")))
            })
            .transpose()?;
        let watcher = start_watcher(dir, Arc::clone(&wake));
        Ok(Self {
            dir: dir.to_path_buf(),
            glob,
            taken: HashMap::new(),
            newest_mtime: i64::MIN,
            max_age_micros: max_age.map(|a| a.as_micros() as i64),
            ignored_old: 0,
            waiting: HashMap::new(),
            skipped: Default::default(),
            quiet_since: None,
            listed_at: std::time::Instant::now(),
            latest_first: false,
            max_files: None,
            bound: None,
            cleanup: None,
            to_clean: BTreeMap::new(),
            _watcher: watcher,
        })
    }

    /// The source `--input` (or, without it or `--socket`, `input/`) asks for.
    pub fn from_config(ctx: &BuildContext) -> Result<Option<Self>> {
        let args = &ctx.config.args;
        let dir = match (&args.input, &args.socket) {
            (Some(dir), _) => dir.clone(),
            (None, None) => PathBuf::from("input"),
            (None, Some(_)) => return Ok(None),
        };
        let mut source = Self::open(
            &dir,
            args.glob.as_deref(),
            args.max_file_age,
            Arc::clone(&ctx.wake),
        )?
        .latest_first(args.latest_first);
        source.max_files = args.max_files_per_trigger.map(|m| m as usize);
        source.cleanup = match args.clean_source {
            CleanSource::Off => None,
            CleanSource::Delete => Some(Cleanup::Delete),
            CleanSource::Archive => args.archive_dir.clone().map(Cleanup::Archive),
        };
        Ok(Some(source))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands out the newest files first (Spark's `latestFirst`): with a backlog and
    /// `--max-files-per-trigger`, the first batches hold the most recent data.
    pub fn latest_first(mut self, yes: bool) -> Self {
        self.latest_first = yes;
        self
    }

    /// The directory as an absolute path with links resolved: what a checkpoint records, so
    /// that the same directory named another way is still the same input.
    pub fn identity(&self) -> PathBuf {
        std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone())
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
        let now = micros_since_epoch(SystemTime::now());
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

    pub fn taken_count(&self) -> usize {
        self.taken.len()
    }

    /// Lists the directory and returns the names of untaken files, oldest first (newest first
    /// with [`Self::latest_first`]), without taking them.
    pub fn available(&mut self) -> Result<Vec<String>> {
        let now = SystemTime::now();
        let stamp = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if stamp.is_some() && stamp == self.quiet_since && self.listed_at.elapsed() < FULL_LISTING {
            return Ok(Vec::new());
        }
        self.listed_at = std::time::Instant::now();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        let now_micros = micros_since_epoch(now);
        let horizon = self.horizon();
        let mut ignored_old = 0;
        let mut found: Vec<(i64, String)> = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let Ok(name) = entry.file_name().into_string() else {
                log::warn!(
                    "{}: file name is not UTF-8, skipped",
                    entry.path().display()
                );
                continue;
            };
            if name.starts_with('.') || name.starts_with('_') || self.taken.contains_key(&name) {
                continue;
            }
            if let Some(glob) = &self.glob
                && !glob.is_match(&name)
            {
                continue;
            }
            // A link is followed to its target, as Spark's listing does. A file can vanish
            // between listing and stat: then it is simply not there.
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            let meta = if is_link {
                std::fs::metadata(entry.path())
            } else {
                entry.metadata()
            };
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) if is_link => {
                    self.skip_once(&name, &format!("a link to nothing readable ({e})"));
                    continue;
                }
                Err(_) => continue,
            };
            if !meta.is_file() {
                if !meta.is_dir() {
                    self.skip_once(&name, "not a regular file (a FIFO, socket or device)");
                }
                continue;
            }
            let modified = micros_since_epoch(meta.modified().unwrap_or(now));
            if horizon.is_some_and(|h| modified < h) {
                ignored_old += 1;
                continue;
            }
            self.waiting
                .entry(name.clone())
                .and_modify(|w| w.2 = meta.len())
                .or_insert((modified, now_micros, meta.len()));
            found.push((modified, name));
        }
        if ignored_old != self.ignored_old {
            self.ignored_old = ignored_old;
            if ignored_old > 0 {
                log::warn!(
                    "{ignored_old} files in {} are older than --max-file-age before the newest \
                     file taken, and are ignored",
                    self.dir.display()
                );
            }
        }
        // Trust an unchanged modification time only if it was already older than the
        // coarsest timestamp granularity when this listing began: a file added in the same
        // tick as the last change, just after the listing, would not change it.
        self.quiet_since =
            stamp.filter(|&t| found.is_empty() && t + std::time::Duration::from_secs(2) < now);
        // A file that went before it was taken is forgotten.
        let listed: std::collections::HashSet<&str> =
            found.iter().map(|(_, name)| name.as_str()).collect();
        self.waiting
            .retain(|name, _| listed.contains(name.as_str()));
        found.sort();
        if self.latest_first {
            found.reverse();
        }
        Ok(found.into_iter().map(|(_, name)| name).collect())
    }

    fn skip_once(&mut self, name: &str, why: &str) {
        if self.skipped.insert(name.to_string()) {
            log::warn!("{}: {why}, skipped", self.dir.join(name).display());
        }
    }

    /// Deletes or archives `names` (taken files no recovery can need). A file already gone is
    /// fine; any other failure is logged, and the file stays (it is never read again).
    pub fn clean<'a>(&self, names: impl IntoIterator<Item = &'a String>, how: &Cleanup) {
        let mut cleaned = 0;
        for name in names {
            let from = self.dir.join(name);
            let result = match how {
                Cleanup::Delete => std::fs::remove_file(&from),
                Cleanup::Archive(dir) => {
                    std::fs::create_dir_all(dir).and_then(|_| move_file(&from, &dir.join(name)))
                }
            };
            match result {
                Ok(()) => cleaned += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("--clean-source: {}: {e}; left in place", from.display()),
            }
        }
        if cleaned > 0 {
            match how {
                Cleanup::Delete => log::info!("--clean-source: deleted {cleaned} files"),
                Cleanup::Archive(dir) => {
                    log::info!("--clean-source: moved {cleaned} files to {}", dir.display())
                }
            }
        }
    }

    /// Takes up to `max` of `names` (in order): they will never be handed out again.
    pub fn take_names(&mut self, names: &[String], max: Option<usize>) -> Vec<NewFile> {
        let count = max.unwrap_or(usize::MAX).min(names.len());
        let files: Vec<NewFile> = names[..count]
            .iter()
            .map(|name| {
                let now = micros_since_epoch(SystemTime::now());
                let (mtime_micros, ts_micros, size) = match self.waiting.remove(name) {
                    Some((mtime, first_seen, size)) => (mtime, first_seen, Some(size)),
                    None => (now, now, None),
                };
                let file = NewFile {
                    name: name.clone(),
                    ts_micros,
                    mtime_micros,
                    size,
                };
                self.note_taken(name.clone(), Taken::from(&file));
                file
            })
            .collect();
        self.forget_old();
        files
    }
}

#[async_trait::async_trait]
impl Source for DirSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn identity(&self) -> String {
        format!("directory {}", self.identity().display())
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
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
                let waiting: std::collections::HashSet<&String> =
                    self.to_clean.values().flatten().collect();
                let gone: Vec<String> = taken
                    .keys()
                    .filter(|name| !waiting.contains(name))
                    .cloned()
                    .collect();
                self.clean(&gone, &how);
            }
        }
        self.mark_taken(taken);
        Ok(())
    }

    async fn bound_to_available_now(&mut self) -> Result<()> {
        self.bound = Some(self.available()?.into());
        Ok(())
    }

    async fn take(&mut self, limited: bool, _now_micros: i64) -> Result<Option<Value>> {
        let max = if limited { self.max_files } else { None };
        let files = match &mut self.bound {
            Some(bound) => {
                let count = max.unwrap_or(usize::MAX).min(bound.len());
                let names: Vec<String> = bound.drain(..count).collect();
                self.take_names(&names, None)
            }
            None => {
                let names = self.available()?;
                self.take_names(&names, max)
            }
        };
        if files.is_empty() {
            return Ok(None);
        }
        serde_json::to_value(files)
            .map(Some)
            .map_err(|e| Error::Checkpoint(format!("recording taken files: {e}")))
    }

    fn open_batch(&mut self, batch_id: u64, part: &Value) -> Result<Vec<InputUnit>> {
        let files = files_of(part)?;
        self.mark_taken(files.iter().map(|f| (f.name.clone(), Taken::from(f))));
        if self.cleanup.is_some() {
            let names = files.iter().map(|f| f.name.clone()).collect();
            self.to_clean.insert(batch_id, names);
        }
        Ok(files
            .into_iter()
            .map(|f| {
                let path = self.dir.join(&f.name);
                InputUnit {
                    display: path.display().to_string(),
                    path,
                    ts_micros: f.ts_micros,
                    range: None,
                    size: f.size,
                }
            })
            .collect())
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
        self.clean(done.values().flatten(), &how);
        Ok(())
    }
}

/// Renames `from` to `to`, or copies and deletes it across filesystems.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let hidden = to.with_file_name(format!(
                ".{}.tmp",
                to.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::copy(from, &hidden)?;
            std::fs::rename(&hidden, to)?;
            std::fs::remove_file(from)
        }
        result => result,
    }
}

pub fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Whether an event can mean a new or finished file. Opening the directory (every listing
/// does) or a file in it (every batch reads some) raises an `Access(Open)` event; waking on
/// those made an idle job list the directory over and over (a CPU spent on nothing).
fn may_add_a_file(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Any | EventKind::Other => true,
        // Data written to a file (every write call raises one): the file is taken when it is
        // renamed into place or closed, which raise their own events.
        EventKind::Modify(ModifyKind::Metadata(_) | ModifyKind::Data(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Remove(_) => false,
    }
}

fn start_watcher(dir: &Path, wake: Arc<Notify>) -> Option<RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| may_add_a_file(&e.kind)) {
            wake.notify_one();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("cannot watch for new files ({e}); relying on directory listings");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        log::warn!(
            "cannot watch {} ({e}); relying on directory listings",
            dir.display()
        );
        return None;
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_taken_files_are_not_available() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.txt", ".hidden", "_temp", "b.log"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let mut source = DirSource::open(dir.path(), None, None, Arc::default()).unwrap();
        let mut names = source.available().unwrap();
        names.sort();
        assert_eq!(names, ["a.txt", "b.log"]);
        let taken = source.take_names(&names, Some(1));
        assert_eq!(taken.len(), 1);
        assert_eq!(source.available().unwrap().len(), 1);
        let rest = source.available().unwrap();
        source.take_names(&rest, None);
        assert!(source.available().unwrap().is_empty());
    }

    #[test]
    fn max_file_age_forgets_and_ignores_old_files() {
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
        let mut source = DirSource::open(
            dir.path(),
            None,
            Some(std::time::Duration::from_secs(60)),
            Arc::default(),
        )
        .unwrap();
        // The first listing has no newest file yet: both are taken, oldest first.
        let names = source.available().unwrap();
        assert_eq!(names, ["old.txt", "new.txt"]);
        source.take_names(&names, None);
        assert_eq!(source.taken().len(), 1, "old.txt is forgotten");
        // Forgotten, but still not taken again: it is older than the horizon.
        assert!(source.available().unwrap().is_empty());
        set_mtime("late-old.txt", 3600);
        assert!(
            source.available().unwrap().is_empty(),
            "old arrivals are ignored"
        );
    }

    #[test]
    fn glob_filters_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        std::fs::write(dir.path().join("b.csv"), "x").unwrap();
        let mut source = DirSource::open(dir.path(), Some("*.txt"), None, Arc::default()).unwrap();
        assert_eq!(source.available().unwrap(), ["a.txt"]);
    }

    #[test]
    fn missing_directory_is_a_usage_error() {
        let err = DirSource::open(Path::new("/no/such/dir"), None, None, Arc::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("/no/such/dir"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
