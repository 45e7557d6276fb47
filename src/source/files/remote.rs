//! An input prefix on an object store (`s3://bucket/incoming/`): listed each trigger (one
//! level, paginated by `object_store`); nothing wakes the loop early, so new objects are found
//! at the next listing. An object's ETag is recorded with its size, so that a replay can tell
//! an object replaced under the same name.

use async_trait::async_trait;
use object_store::ObjectStoreExt;

use super::{Cleanup, Folder, Listed, Listing, NewFile};
use crate::error::{Error, Result};
use crate::source::{InputUnit, Place};
use crate::storage::{Location, Remote, io_error};
use crate::time::micros_since_epoch;

/// See the module docs.
pub struct RemoteFolder {
    remote: Remote,
    /// Whether a listing has succeeded: until one has, a failure is an error (a missing
    /// bucket, rejected credentials); after, it is an outage, waited out trigger by trigger.
    listed_once: bool,
    /// A listing failed and no later one has succeeded yet (to log the outage once).
    failing: bool,
}

impl RemoteFolder {
    pub fn new(remote: Remote) -> Self {
        Self {
            remote,
            listed_once: false,
            failing: false,
        }
    }
}

#[async_trait]
impl Folder for RemoteFolder {
    async fn list(
        &mut self,
        fresh: &(dyn for<'n> Fn(&'n str) -> bool + Sync),
        horizon: Option<i64>,
    ) -> Result<Option<Listing>> {
        let found = match self
            .remote
            .store
            .list_with_delimiter(Some(&self.remote.prefix))
            .await
        {
            Ok(found) => found,
            Err(e) if self.listed_once => {
                // The client already retried with backoff; the job goes on and lists again
                // at the next trigger, as the socket source waits for its server.
                if !std::mem::replace(&mut self.failing, true) {
                    log::warn!(
                        "listing {} failed ({}); trying again every trigger",
                        self.remote.url,
                        io_error(e)
                    );
                }
                return Ok(None);
            }
            Err(e) => {
                return Err(Error::io(
                    format!("listing {}", self.remote.url),
                    io_error(e),
                ));
            }
        };
        if std::mem::replace(&mut self.failing, false) {
            log::info!("listing {} works again", self.remote.url);
        }
        self.listed_once = true;
        let mut listing = Listing::default();
        for object in found.objects {
            let Some(name) = object.location.filename().map(str::to_string) else {
                continue;
            };
            if !fresh(&name) {
                continue;
            }
            let mtime_micros = micros_since_epoch(object.last_modified.into());
            if horizon.is_some_and(|h| mtime_micros < h) {
                listing.ignored_old += 1;
                continue;
            }
            listing.files.push(Listed {
                name,
                mtime_micros,
                size: object.size,
                version: object.e_tag,
            });
        }
        Ok(Some(listing))
    }

    fn failing(&self) -> bool {
        self.failing
    }

    fn unit(&self, file: &NewFile) -> InputUnit {
        InputUnit {
            display: self.remote.url_of(&file.name),
            place: Place::Object {
                store: self.remote.store.clone(),
                store_url: self.remote.store_url.clone(),
                path: self.remote.child(&file.name),
            },
            ts_micros: file.ts_micros,
            range: None,
            size: file.size,
            version: file.version.clone(),
            source: Default::default(),
        }
    }

    async fn clean(&self, names: &[String], how: &Cleanup) -> usize {
        let mut cleaned = 0;
        for name in names {
            let from = self.remote.child(name);
            let result = match how {
                Cleanup::Delete => self.remote.store.delete(&from).await,
                Cleanup::Archive(Location::Remote(archive)) => {
                    // Checked at start to be in the input's bucket, so one client copies.
                    let to = archive.child(name);
                    match self.remote.store.copy(&from, &to).await {
                        Ok(()) => self.remote.store.delete(&from).await,
                        Err(e) => Err(e),
                    }
                }
                Cleanup::Archive(Location::Local(_)) => Err(object_store::Error::NotSupported {
                    source: "an object store's files are archived in the same bucket".into(),
                }),
            };
            match result {
                Ok(()) => cleaned += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => log::warn!(
                    "--clean-source: {}: {}; left in place",
                    self.remote.url_of(name),
                    io_error(e)
                ),
            }
        }
        cleaned
    }

    fn identity(&self) -> String {
        format!("objects {}", self.remote.url)
    }

    fn describe(&self) -> String {
        self.remote.url.clone()
    }
}
