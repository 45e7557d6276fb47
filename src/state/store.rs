//! The one storage interface everything durable in a checkpoint goes through: put a whole
//! object durably and atomically (or only if it is new), get it, list a folder, delete, and
//! hold the single-writer lock. [`LocalStore`] implements it on a directory (temporary name,
//! fsync, rename, directory fsync; an exclusive file lock), [`ObjectStore`] on any
//! `object_store` prefix (a PUT is atomic; put-if-new is a conditional PUT; the lock is a lease
//! object the running job renews).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Location, Remote, io_error};

/// Whole-object storage; paths are `/`-separated and relative to the store's root.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes `bytes` at `path` so that readers (and a crash) see the old object or the new
    /// one, never a part, and the new one survives a power loss once this returns.
    async fn put(&self, path: &str, bytes: Vec<u8>) -> io::Result<()>;
    /// Like [`Store::put`], but only if nothing is at `path` yet: `false` if something is
    /// (another writer got there first).
    async fn put_new(&self, path: &str, bytes: Vec<u8>) -> io::Result<bool>;
    /// The object at `path`, or `None` if there is none.
    async fn get(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// Names and sizes of the objects directly in folder `dir` (none if it does not exist).
    async fn list(&self, dir: &str) -> io::Result<Vec<(String, u64)>>;
    /// Just the names of [`Store::list`] (a local directory lists them without a `stat` of
    /// each file: a commit lists folders of hundreds).
    async fn names(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(self
            .list(dir)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }
    /// Removes `path`; removing a missing object is not an error.
    async fn delete(&self, path: &str) -> io::Result<()>;
    /// Takes the single-writer lock held in object `name`, or says who holds it.
    async fn lock(&self, name: &str) -> Result<Lock>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
    /// The local directory, for a local store.
    fn local_dir(&self) -> Option<&Path> {
        None
    }
}

/// Opens the store at `location`.
pub fn open(location: &Location) -> Box<dyn Store> {
    match location {
        Location::Local(dir) => Box::new(LocalStore::new(dir)),
        Location::Remote(remote) => Box::new(ObjectStore::new(remote.clone())),
    }
}

/// A held single-writer lock: released when dropped (or when the process ends, however it
/// ends, for a file lock; when the lease expires, for a lease).
pub enum Lock {
    File(File),
    Lease(Lease),
}

impl Lock {
    /// Gives the lock up at a clean stop: a lease is deleted, so that the next job (on any
    /// host) need not wait for it to expire. A file lock goes with the process anyway.
    pub async fn release(self, store: &dyn Store, name: &str) {
        if let Lock::Lease(lease) = self {
            lease.renewer.abort();
            // Only a lease still surely ours: deleting one another job has taken would let a
            // third job in beside it.
            if lease.held()
                && let Err(e) = store.delete(name).await
            {
                log::warn!("could not release the lease {}: {e}", lease.url);
            }
        }
    }

    /// Fails once another writer may have taken over (the lease was replaced, or it could
    /// not be renewed for two thirds of its duration): nothing may be written then.
    pub fn check(&self) -> Result<()> {
        match self {
            Lock::File(_) => Ok(()),
            Lock::Lease(lease) if !lease.held() => Err(Error::Checkpoint(format!(
                "lost the lease {}: another dfstream took it over, or it could not be renewed \
                 in time (the store was unreachable); stopping without writing more (the next \
                 start continues exactly)",
                lease.url
            ))),
            Lock::Lease(_) => Ok(()),
        }
    }
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

    /// The entries of folder `dir` whose names are UTF-8 (none if it does not exist).
    fn entries(&self, dir: &str) -> io::Result<Vec<(String, std::fs::DirEntry)>> {
        let entries = match std::fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut named = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                named.push((name, entry));
            }
        }
        Ok(named)
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn put(&self, path: &str, bytes: Vec<u8>) -> io::Result<()> {
        let full = self.path(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&full, &bytes)
    }

    async fn put_new(&self, path: &str, bytes: Vec<u8>) -> io::Result<bool> {
        // Only the holder of the directory's lock (see `lock`) writes here, so a check and
        // then an atomic write is "if new" (a hard link, atomic even without the lock, costs
        // a link and an unlink more on every commit).
        let full = self.path(path);
        if full.exists() {
            return Ok(false);
        }
        self.put(path, bytes).await?;
        Ok(true)
    }

    async fn get(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<(String, u64)>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter_map(|(name, entry)| {
                let meta = entry.metadata().ok()?;
                meta.is_file().then_some((name, meta.len()))
            })
            .collect())
    }

    async fn names(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter(|(_, entry)| entry.file_type().is_ok_and(|t| t.is_file()))
            .map(|(name, _)| name)
            .collect())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn lock(&self, name: &str) -> Result<Lock> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| Error::io(format!("creating directory {}", self.root.display()), e))?;
        lock_file(&self.root, name).map(Lock::File)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

/// Takes the exclusive lock on `dir/name` and writes this process's pid into it.
fn lock_file(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::Checkpoint(format!(
                "{} is in use by another dfstream (pid {}, lock file {}); stop it, or pass \
                 another location",
                dir.display(),
                holder.trim(),
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
    }
    file.set_len(0)
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(file)
}

/// A [`Store`] on a prefix of an object store (S3 and the others `object_store` reaches).
pub struct ObjectStore {
    remote: Remote,
}

impl ObjectStore {
    pub fn new(remote: Remote) -> Self {
        Self { remote }
    }
}

/// Runs a read again when the connection broke while its answer's body was coming (the
/// client retries requests, not bodies): with backoff, up to 10 times.
async fn body_retried<T, F, Fut>(read: F) -> object_store::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut wait = std::time::Duration::from_millis(250);
    let mut tries = 0;
    loop {
        match read().await {
            Err(e) if tries < 10 && e.to_string().contains("body") => {
                log::warn!("{e}; reading again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
                tries += 1;
            }
            other => return other,
        }
    }
}

#[async_trait]
impl Store for ObjectStore {
    async fn put(&self, path: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.remote
            .store
            .put(&self.remote.child(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(io_error)
    }

    async fn put_new(&self, path: &str, bytes: Vec<u8>) -> io::Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(bytes.clone());
        match self
            .remote
            .store
            .put_opts(&self.remote.child(path), payload, options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                // The client retries a PUT whose answer was lost (a timeout, a 5xx after the
                // write): its retry then finds our own object. Only other bytes are another
                // writer's.
                Ok(self.get(path).await?.is_some_and(|found| found == bytes))
            }
            Err(e) => Err(io_error(e)),
        }
    }

    async fn get(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let location = self.remote.child(path);
        body_retried(|| async {
            match self.remote.store.get(&location).await {
                Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(io_error)
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<(String, u64)>> {
        let prefix = self.remote.child(dir);
        let listing = body_retried(|| self.remote.store.list_with_delimiter(Some(&prefix)))
            .await
            .map_err(io_error)?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.to_string(), o.size)))
            .collect())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        match self.remote.store.delete(&self.remote.child(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn lock(&self, name: &str) -> Result<Lock> {
        Lease::take(self.remote.clone(), name)
            .await
            .map(Lock::Lease)
    }

    fn describe(&self) -> String {
        self.remote.url.clone()
    }
}

/// How long a lease holds without renewal (`DFSTREAM_LEASE_SECONDS` in tests).
fn lease_duration() -> Duration {
    std::env::var("DFSTREAM_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// What the lease object holds: who holds the checkpoint, and until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    host: String,
    pid: u32,
    /// The machine's boot and the PID namespace the pid belongs to: on the same host name,
    /// another container (or a rebooted machine) has other processes under the same pids.
    /// Missing in leases of older versions (then the lease is waited out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid_namespace: Option<String>,
    started_micros: i64,
    expires_micros: i64,
}

impl LeaseRecord {
    fn holder(&self) -> String {
        format!(
            "host {}, pid {}, started {}",
            self.host,
            self.pid,
            crate::generate::iso8601(self.started_micros)
        )
    }
}

/// The single-writer lock on an object store: the `lock` object names its holder and an
/// expiry, and the holder renews it (a conditional PUT on the version it wrote) every third
/// of the lease. Another job is refused while the lease is live; a job restarted on the same
/// host takes over at once when the holder's process is gone, and any job once it expires.
pub struct Lease {
    url: String,
    lost: Arc<AtomicBool>,
    /// When the lease was last written (taken or renewed), microseconds since the epoch.
    renewed_micros: Arc<std::sync::atomic::AtomicI64>,
    duration: Duration,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Whether this job may still write: not replaced, and renewed recently enough that no
    /// other job can have taken it over (a third of the lease is kept in hand, so a job whose
    /// renewals stall stops writing well before its lease expires for others).
    fn held(&self) -> bool {
        let renewed = self.renewed_micros.load(Ordering::SeqCst);
        let safe = (self.duration * 2 / 3).as_micros() as i64;
        !self.lost.load(Ordering::SeqCst) && crate::time::now_micros() - renewed < safe
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl Lease {
    async fn take(remote: Remote, name: &str) -> Result<Self> {
        let path = remote.child(name);
        let url = remote.url_of(name);
        let failed =
            |e: object_store::Error| Error::io(format!("taking the lease {url}"), io_error(e));
        let now = crate::time::now_micros();
        let duration = lease_duration();
        let record = LeaseRecord {
            host: host_name(),
            pid: std::process::id(),
            pid_namespace: pid_namespace(),
            started_micros: now,
            expires_micros: now + duration.as_micros() as i64,
        };
        let mode = match remote.store.get(&path).await {
            Err(object_store::Error::NotFound { .. }) => PutMode::Create,
            Err(e) => return Err(failed(e)),
            Ok(found) => {
                let version = UpdateVersion {
                    e_tag: found.meta.e_tag.clone(),
                    version: found.meta.version.clone(),
                };
                let bytes = found.bytes().await.map_err(failed)?;
                match serde_json::from_slice::<LeaseRecord>(&bytes) {
                    Ok(held) if held.expires_micros > now => {
                        // Only where its pid means the same process as ours would.
                        let gone = held.host == record.host
                            && held.pid_namespace.is_some()
                            && held.pid_namespace == record.pid_namespace
                            && !process_alive(held.pid);
                        if !gone {
                            return Err(Error::Checkpoint(format!(
                                "{} is in use by another dfstream ({}); its lease runs until \
                                 {} and is renewed while it runs. Stop it, or pass another \
                                 location (a crashed job's lease is taken over once it \
                                 expires)",
                                remote.url,
                                held.holder(),
                                crate::generate::iso8601(held.expires_micros)
                            )));
                        }
                        log::info!(
                            "taking over the lease of {} from a process that is gone ({})",
                            remote.url,
                            held.holder()
                        );
                    }
                    Ok(held) => log::info!(
                        "taking over the expired lease of {} ({})",
                        remote.url,
                        held.holder()
                    ),
                    Err(_) => log::warn!("{url} is damaged; taking the lease over"),
                }
                PutMode::Update(version)
            }
        };
        let version = put_lease(&remote, &path, &record, mode)
            .await
            .map_err(|e| match e {
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => Error::Checkpoint(format!(
                    "{} was taken by another dfstream starting at the same time; pass \
                     another location or stop the other job",
                    remote.url
                )),
                e => failed(e),
            })?;
        let lost = Arc::new(AtomicBool::new(false));
        let renewed_micros = Arc::new(std::sync::atomic::AtomicI64::new(now));
        let renewer = tokio::spawn(renew(
            remote,
            path,
            record,
            version,
            duration,
            (Arc::clone(&lost), Arc::clone(&renewed_micros)),
        ));
        Ok(Lease {
            url,
            lost,
            renewed_micros,
            duration,
            renewer,
        })
    }
}

/// Renews the lease every third of its duration until dropped; marks it lost if another
/// writer replaced it.
async fn renew(
    remote: Remote,
    path: object_store::path::Path,
    mut record: LeaseRecord,
    mut version: UpdateVersion,
    duration: Duration,
    (lost, renewed_micros): (Arc<AtomicBool>, Arc<std::sync::atomic::AtomicI64>),
) {
    loop {
        tokio::time::sleep(duration / 3).await;
        let now = crate::time::now_micros();
        record.expires_micros = now + duration.as_micros() as i64;
        match put_lease(&remote, &path, &record, PutMode::Update(version.clone())).await {
            // Renewed, but only after the lease had run out: another job may have taken the
            // checkpoint over meanwhile, as far as this job can tell; it stops writing.
            Ok(_) if now - renewed_micros.load(Ordering::SeqCst) > duration.as_micros() as i64 => {
                log::error!(
                    "the lease on {} ran out while the store was unreachable",
                    remote.url
                );
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Ok(next) => {
                version = next;
                renewed_micros.store(now, Ordering::SeqCst);
            }
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => {
                log::error!("the lease on {} was taken by another dfstream", remote.url);
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // Retried (by the client, then here) until the lease runs out; then a taker may
            // replace it, and the next renewal finds out.
            Err(e) => log::warn!("renewing the lease on {}: {}", remote.url, io_error(e)),
        }
    }
}

async fn put_lease(
    remote: &Remote,
    path: &object_store::path::Path,
    record: &LeaseRecord,
    mode: PutMode,
) -> std::result::Result<UpdateVersion, object_store::Error> {
    let bytes = serde_json::to_vec(record).expect("a lease record serializes");
    let result = remote
        .store
        .put_opts(
            path,
            PutPayload::from(bytes),
            PutOptions {
                mode,
                ..Default::default()
            },
        )
        .await?;
    Ok(UpdateVersion {
        e_tag: result.e_tag,
        version: result.version,
    })
}

/// Every object under `remote` (recursively), for `reset`.
pub async fn list_all(remote: &Remote) -> io::Result<Vec<String>> {
    let prefix = remote.prefix.clone();
    let objects: Vec<_> = remote
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(io_error)?;
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let full = o.location.as_ref().to_string();
            let relative = full.strip_prefix(prefix.as_ref())?.trim_start_matches('/');
            Some(relative.to_string())
        })
        .collect())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// This process's boot and PID namespace, e.g. `3f2a...:pid:[4026531836]`.
fn pid_namespace() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}:{}", boot.trim(), namespace.display()))
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
    let tmp = hidden_temporary(path)?;
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

/// `.NAME.tmp` beside `path`: where an atomic write prepares it.
fn hidden_temporary(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    Ok(path.with_file_name(format!(".{name}.tmp")))
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An in-memory object store with faults to switch on, for tests of what the checkpoint does
/// when a store misbehaves in ways a real server cannot be made to on cue.
#[cfg(test)]
pub(crate) mod faulty {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    #[derive(Debug, Default)]
    pub(crate) struct FaultyStore {
        inner: InMemory,
        /// Conditional PUTs write, then answer "already exists": what a client sees when its
        /// first attempt's answer was lost and its retry finds the object that attempt wrote.
        pub lose_create_answers: AtomicBool,
        /// GETs of objects whose path ends with this fail (an I/O error, not damage).
        pub unreadable: Mutex<Option<String>>,
    }

    impl std::fmt::Display for FaultyStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FaultyStore")
        }
    }

    #[async_trait]
    impl object_store::ObjectStore for FaultyStore {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            let create = matches!(opts.mode, object_store::PutMode::Create);
            let written = self.inner.put_opts(location, payload, opts).await?;
            if create && self.lose_create_answers.load(Ordering::SeqCst) {
                return Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "the retry found the first attempt's object".into(),
                });
            }
            Ok(written)
        }

        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            let unreadable = self.unreadable.lock().unwrap().clone();
            if unreadable.is_some_and(|end| location.as_ref().ends_with(&end)) {
                return Err(object_store::Error::Generic {
                    store: "FaultyStore",
                    source: "connection reset".into(),
                });
            }
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// A `Remote` over `store` at prefix `ck`.
    pub(crate) fn remote(store: &std::sync::Arc<FaultyStore>) -> crate::storage::Remote {
        crate::storage::Remote {
            store: std::sync::Arc::clone(store) as std::sync::Arc<dyn object_store::ObjectStore>,
            prefix: ObjectPath::from("ck"),
            url: "memory://ck".to_string(),
            store_url: datafusion::execution::object_store::ObjectStoreUrl::parse("memory://")
                .expect("a store URL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::faulty::{FaultyStore, remote};
    use super::{ObjectStore, Store};

    #[tokio::test]
    async fn a_put_if_new_whose_answer_was_lost_is_ours_and_another_writers_is_not() {
        let faulty = Arc::new(FaultyStore::default());
        faulty.lose_create_answers.store(true, Ordering::SeqCst);
        let store = ObjectStore::new(remote(&faulty));
        assert!(
            store.put_new("commits/0", b"ours".to_vec()).await.unwrap(),
            "our own object, found by the retry"
        );
        assert!(
            !store
                .put_new("commits/0", b"theirs".to_vec())
                .await
                .unwrap(),
            "another writer's bytes are there"
        );
    }
}
