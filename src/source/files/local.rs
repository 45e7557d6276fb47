//! A local input directory: listed with `read_dir`, watched with `notify`.
//!
//! `notify` events only wake the trigger loop early; what to take is always decided by
//! listing the directory, so a file reported by an event and seen by a listing is still taken
//! once, and missed events (network filesystems) only cost latency. An unchanged directory is
//! listed only every few seconds. Links are followed to files; FIFOs, sockets, devices and
//! broken links are skipped, each logged once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::{Cleanup, Folder, Listed, Listing, NewFile};
use crate::error::{Error, Result};
use crate::source::{InputUnit, Place};
use crate::time::micros_since_epoch;

/// An unchanged directory is still listed this often: a network filesystem may cache its
/// modification time, an object-store mount may never change it, and a link's target may
/// appear without touching it.
const FULL_LISTING: Duration = Duration::from_secs(5);

/// See the module docs.
pub struct LocalFolder {
    dir: PathBuf,
    /// Entries that are not files to read (FIFOs, broken links), each logged once.
    skipped: HashSet<String>,
    /// The directory's modification time when a listing found nothing new, if that time was
    /// safely in the past then: while it stays the same, no entry was added, and the
    /// directory is listed only every [`FULL_LISTING`] (an idle job over 20,000 files spent a
    /// CPU on listings).
    quiet_since: Option<SystemTime>,
    /// When the directory was last listed.
    listed_at: Instant,
    /// Kept alive for its events; `None` if the platform watcher could not start.
    _watcher: Option<RecommendedWatcher>,
}

impl LocalFolder {
    /// Opens `dir` (which must exist) and starts watching it.
    pub fn open(dir: &Path, wake: Arc<Notify>) -> Result<Self> {
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
        Ok(Self {
            dir: dir.to_path_buf(),
            skipped: HashSet::new(),
            quiet_since: None,
            listed_at: Instant::now(),
            _watcher: start_watcher(dir, wake),
        })
    }

    fn skip_once(&mut self, name: &str, why: &str) {
        if self.skipped.insert(name.to_string()) {
            log::warn!("{}: {why}, skipped", self.dir.join(name).display());
        }
    }
}

#[async_trait]
impl Folder for LocalFolder {
    async fn list(
        &mut self,
        fresh: &(dyn for<'n> Fn(&'n str) -> bool + Sync),
        horizon: Option<i64>,
    ) -> Result<Option<Listing>> {
        let now = SystemTime::now();
        let stamp = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if stamp.is_some() && stamp == self.quiet_since && self.listed_at.elapsed() < FULL_LISTING {
            return Ok(None);
        }
        self.listed_at = Instant::now();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        let mut listing = Listing::default();
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
            if !fresh(&name) {
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
            let mtime_micros = micros_since_epoch(meta.modified().unwrap_or(now));
            if horizon.is_some_and(|h| mtime_micros < h) {
                listing.ignored_old += 1;
                continue;
            }
            listing.files.push(Listed {
                name,
                mtime_micros,
                size: meta.len(),
                version: None,
            });
        }
        // Trust an unchanged modification time only if it was already older than the
        // coarsest timestamp granularity when this listing began: a file added in the same
        // tick as the last change, just after the listing, would not change it.
        self.quiet_since =
            stamp.filter(|&t| listing.files.is_empty() && t + Duration::from_secs(2) < now);
        Ok(Some(listing))
    }

    fn unit(&self, file: &NewFile) -> InputUnit {
        let path = self.dir.join(&file.name);
        InputUnit {
            display: path.display().to_string(),
            place: Place::File(path),
            ts_micros: file.ts_micros,
            range: None,
            size: file.size,
            version: None,
            source: Default::default(),
        }
    }

    async fn clean(&self, names: &[String], how: &Cleanup) -> usize {
        let mut cleaned = 0;
        for name in names {
            let from = self.dir.join(name);
            let result = match how {
                Cleanup::Delete => std::fs::remove_file(&from),
                Cleanup::Archive(archive) => match archive.as_local() {
                    Some(dir) => {
                        std::fs::create_dir_all(dir).and_then(|_| move_file(&from, &dir.join(name)))
                    }
                    None => Err(std::io::Error::other(
                        "a local input's files are archived to a local --archive-dir",
                    )),
                },
            };
            match result {
                Ok(()) => cleaned += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("--clean-source: {}: {e}; left in place", from.display()),
            }
        }
        cleaned
    }

    fn identity(&self) -> String {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("directory {}", dir.display())
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
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
