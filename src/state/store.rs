//! The narrow storage interface all checkpoint I/O goes through: put a whole object durably and
//! atomically, get it, list a folder, delete. [`LocalStore`] implements it on a directory; an
//! `object_store`-backed store (S3 and friends) can implement the same four calls later.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Whole-object storage; paths are `/`-separated and relative to the store's root.
pub trait Store: Send + Sync {
    /// Writes `bytes` at `path` so that readers (and a crash) see the old object or the new
    /// one, never a part, and the new one survives a power loss once this returns.
    fn put(&self, path: &str, bytes: &[u8]) -> io::Result<()>;
    /// The object at `path`, or `None` if there is none.
    fn get(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// Names of the objects directly in folder `dir` (none if it does not exist).
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Removes `path`; removing a missing object is not an error.
    fn delete(&self, path: &str) -> io::Result<()>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// A [`Store`] on a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

impl Store for LocalStore {
    fn put(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let full = self.path(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&full, bytes)
    }

    fn get(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn delete(&self, path: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Writes `bytes` to `path` atomically and durably: a hidden temporary file in the same
/// directory, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with the content written by `write` into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
