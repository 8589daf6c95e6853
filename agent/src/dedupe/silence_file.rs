//! The silences of the file store: a JSON document beside its database
//! ([`silences_path`]: `agent.db` → `agent.db.silences.json`).
//!
//! Not in the redb database itself: a running agent holds that file's lock, and
//! `agent silence add|expire` must work while it runs. A change is one read-modify-write
//! under an exclusive lock on `<file>.lock` (so two `agent silence` commands do not lose one
//! another's change), written to `<file>.tmp`, flushed to disk and renamed over the file, so
//! a reader (the agent's refresh) sees the old document or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{SilenceStore, StoreError, StoreFuture};
use crate::silence::{Document, Expired, Silence};

/// The silences file of the file store whose database is `db`.
pub fn silences_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".silences.json");
    db.with_file_name(name)
}

/// The silences in one JSON file.
#[derive(Debug, Clone)]
pub struct SilenceFile {
    path: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl SilenceFile {
    /// The silences at `path` (the file need not exist yet; its directory is created when
    /// needed).
    pub fn new(path: PathBuf) -> SilenceFile {
        SilenceFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored silence (none when the file does not exist).
    pub fn load(&self) -> Result<Vec<Silence>, StoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                Document::decode(&self.path.display().to_string(), &text).map_err(StoreError)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError(format!(
                "cannot read {}: {e}",
                self.path.display()
            ))),
        }
    }

    /// Applies `change` to the stored list under the lock, and writes the result when
    /// `change` says it changed something (`Ok((true, _))`).
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut Vec<Silence>) -> Result<(bool, R), String>,
    ) -> Result<R, StoreError> {
        let fail = |what: &str, p: &Path, e: std::io::Error| {
            StoreError(format!("cannot {what} {}: {e}", p.display()))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
        }
        let lock_path = with_suffix(&self.path, ".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| fail("open", &lock_path, e))?;
        lock.lock().map_err(|e| fail("lock", &lock_path, e))?;
        let mut list = self.load()?;
        let (changed, out) = change(&mut list).map_err(StoreError)?;
        if changed {
            let tmp = with_suffix(&self.path, ".tmp");
            let mut f = std::fs::File::create(&tmp).map_err(|e| fail("create", &tmp, e))?;
            f.write_all(Document::encode(&list).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| fail("write", &tmp, e))?;
            std::fs::rename(&tmp, &self.path).map_err(|e| fail("replace", &self.path, e))?;
        }
        drop(lock);
        Ok(out)
    }

    pub fn add(&self, silence: &Silence, now_ms: i64) -> Result<(), StoreError> {
        self.update(|list| {
            crate::silence::insert(list, silence.clone(), now_ms).map(|()| (true, ()))
        })
    }

    pub fn expire(&self, id: &str, now_ms: i64) -> Result<Expired, StoreError> {
        self.update(|list| {
            let e = crate::silence::expire(list, id, now_ms);
            Ok((matches!(e, Expired::Ended(_)), e))
        })
    }
}

impl SilenceStore for SilenceFile {
    fn add_silence<'a>(&'a self, silence: &'a Silence, now_ms: i64) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.add(silence, now_ms)))
    }

    fn silences(&self) -> StoreFuture<'_, Vec<Silence>> {
        Box::pin(std::future::ready(self.load()))
    }

    fn expire_silence<'a>(&'a self, id: &'a str, now_ms: i64) -> StoreFuture<'a, Expired> {
        Box::pin(std::future::ready(self.expire(id, now_ms)))
    }
}
