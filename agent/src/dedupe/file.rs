//! The embedded default: dedupe state in a local redb file that survives restarts.
//!
//! Placements (`remember`) are kept in memory, written back to the file by the next
//! `record_delivery` (whose commit is durable) or once [`WRITE_BACK`] keys wait, and when the
//! store is closed: losing them in a crash only means a redelivered alert is placed again,
//! from the same payload, and nothing was delivered for them since (a delivery's record
//! writes them first). So the file is committed per delivery, not per received batch, and
//! the commit (redb's, tens of microseconds) leaves the path of every alert. Reads see the
//! waiting placements first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Incident, LocalStore, MAX_SINKS, StoreError, correlate, decode, encode, is_marked, mark,
};
use crate::fingerprint::IncidentKey;
use crate::model::AlertState;
use crate::silence::{Expired, Silence};

const INCIDENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("incidents");
const SINKS: TableDefinition<&str, u8> = TableDefinition::new("sinks");

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError(e.into().to_string())
}

/// Placements that may wait in memory before they are written back.
pub const WRITE_BACK: usize = 4096;

/// Placements not yet in the file: each key's entries as they now are.
type Waiting = HashMap<[u8; 16], Vec<super::Entry>>;

/// The incidents table of a read transaction, and the transaction.
type Reading = (
    redb::ReadTransaction,
    redb::ReadOnlyTable<&'static [u8; 16], &'static [u8]>,
);

/// Dedupe state in a redb file.
pub struct FileStore {
    db: Database,
    sinks: Mutex<HashMap<String, u8>>,
    waiting: Mutex<Waiting>,
    /// The silences, beside the database ([`super::silences_path`]).
    silences: super::SilenceFile,
}

impl FileStore {
    /// Opens (creating if needed) the store at `path`; the directory must exist or be creatable.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| StoreError(format!("cannot open {}: {}", path.display(), err(e).0)))?;
        let txn = db.begin_write().map_err(err)?;
        let mut sinks = HashMap::new();
        {
            txn.open_table(INCIDENTS).map_err(err)?;
            let table = txn.open_table(SINKS).map_err(err)?;
            for row in table.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                sinks.insert(k.value().to_string(), v.value());
            }
        }
        txn.commit().map_err(err)?;
        Ok(FileStore {
            db,
            sinks: Mutex::new(sinks),
            waiting: Mutex::new(HashMap::new()),
            silences: super::SilenceFile::new(super::silences_path(path)),
        })
    }

    fn waiting(&self) -> Result<std::sync::MutexGuard<'_, Waiting>, StoreError> {
        self.waiting
            .lock()
            .map_err(|_| StoreError("placement lock poisoned".into()))
    }

    /// Writes the waiting placements into `txn`'s table.
    fn write_back(
        table: &mut redb::Table<&[u8; 16], &[u8]>,
        waiting: &mut Waiting,
    ) -> Result<(), StoreError> {
        for (key, entries) in waiting.drain() {
            table
                .insert(&key, encode(&entries).as_slice())
                .map_err(err)?;
        }
        Ok(())
    }

    /// Writes every waiting placement to the file, durably.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut waiting = self.waiting()?;
        if waiting.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(INCIDENTS).map_err(err)?;
            Self::write_back(&mut table, &mut waiting)?;
        }
        txn.commit().map_err(err)
    }

    fn known_bit(&self, sink: &str) -> Option<u8> {
        self.sinks.lock().ok().and_then(|m| m.get(sink).copied())
    }

    /// The sink's bit, assigning (inside `txn`) one when new.
    fn bit(&self, txn: &redb::WriteTransaction, sink: &str) -> Result<u8, StoreError> {
        let mut map = self
            .sinks
            .lock()
            .map_err(|_| StoreError("sink table lock poisoned".into()))?;
        if let Some(b) = map.get(sink) {
            return Ok(*b);
        }
        if map.len() >= MAX_SINKS {
            return Err(StoreError(format!("more than {MAX_SINKS} sinks")));
        }
        let b = map.len() as u8;
        let mut table = txn.open_table(SINKS).map_err(err)?;
        table.insert(sink, b).map_err(err)?;
        map.insert(sink.to_string(), b);
        Ok(b)
    }
}

impl LocalStore for FileStore {
    fn remember(
        &self,
        key: &IncidentKey,
        at_ms: i64,
        state: AlertState,
        window: Duration,
        now_ms: i64,
    ) -> Result<Incident, StoreError> {
        self.remember_many(&[(*key, at_ms, state)], window, now_ms)?
            .pop()
            .ok_or_else(|| StoreError("the store placed no incident".into()))
    }

    /// Placed in memory: the keys not waiting already are read in one read transaction,
    /// and the placements are written back once [`WRITE_BACK`] keys wait.
    fn remember_many(
        &self,
        alerts: &[(IncidentKey, i64, AlertState)],
        window: Duration,
        now_ms: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let mut waiting = self.waiting()?;
        let mut read: Option<Reading> = None;
        let mut out = Vec::with_capacity(alerts.len());
        for (key, at_ms, state) in alerts {
            let entries = match waiting.entry(key.0) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    if read.is_none() {
                        let txn = self.db.begin_read().map_err(err)?;
                        let table = txn.open_table(INCIDENTS).map_err(err)?;
                        read = Some((txn, table));
                    }
                    let found = match &read {
                        Some((_, table)) => match table.get(&key.0).map_err(err)? {
                            Some(v) => decode(v.value()),
                            None => Vec::new(),
                        },
                        None => Vec::new(),
                    };
                    slot.insert(found)
                }
            };
            let (start_ms, new) = correlate(entries, *at_ms, *state, window, now_ms);
            out.push(Incident {
                key: *key,
                start_ms,
                new,
            });
        }
        drop(read);
        if waiting.len() >= WRITE_BACK {
            // Durably: one fsync per WRITE_BACK keys costs little, and redb frees the pages a
            // commit replaced only after a durable one (redb docs, "Durability"), so a run
            // of non-durable commits of this size would grow the file.
            let txn = self.db.begin_write().map_err(err)?;
            {
                let mut table = txn.open_table(INCIDENTS).map_err(err)?;
                Self::write_back(&mut table, &mut waiting)?;
            }
            txn.commit().map_err(err)?;
        }
        Ok(out)
    }

    fn record_delivery(
        &self,
        items: &[(Incident, AlertState)],
        sink: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut waiting = self.waiting()?;
        let txn = self.db.begin_write().map_err(err)?;
        let bit = self.bit(&txn, sink)?;
        {
            let mut table = txn.open_table(INCIDENTS).map_err(err)?;
            // The placements first: a delivery is never on file without its incident.
            Self::write_back(&mut table, &mut waiting)?;
            for (inc, state) in items {
                let mut entries = match table.get(&inc.key.0).map_err(err)? {
                    Some(v) => decode(v.value()),
                    None => Vec::new(),
                };
                mark(&mut entries, inc.start_ms, *state, bit, now_ms);
                table
                    .insert(&inc.key.0, encode(&entries).as_slice())
                    .map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    fn delivered(
        &self,
        incident: &Incident,
        state: AlertState,
        sink: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.delivered_many(&[(*incident, state, sink)])?.first() == Some(&true))
    }

    /// One read transaction for the whole batch.
    fn delivered_many(&self, asks: &[super::Ask<'_>]) -> Result<Vec<bool>, StoreError> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        // A waiting placement carries the marks the file had when it was read, and none
        // were made since: every record writes the waiting placements back first.
        let waiting = self.waiting()?;
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(INCIDENTS).map_err(err)?;
        asks.iter()
            .map(|(incident, state, sink)| {
                let Some(bit) = self.known_bit(sink) else {
                    return Ok(false);
                };
                if let Some(entries) = waiting.get(&incident.key.0) {
                    return Ok(is_marked(entries, incident.start_ms, *state, bit));
                }
                Ok(match table.get(&incident.key.0).map_err(err)? {
                    Some(v) => is_marked(&decode(v.value()), incident.start_ms, *state, bit),
                    None => false,
                })
            })
            .collect()
    }

    fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut waiting = self.waiting()?;
        let txn = self.db.begin_write().map_err(err)?;
        let mut forgotten = 0;
        {
            let mut table = txn.open_table(INCIDENTS).map_err(err)?;
            Self::write_back(&mut table, &mut waiting)?;
            let mut updates: Vec<([u8; 16], Vec<u8>)> = Vec::new();
            for row in table.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let entries = decode(v.value());
                let kept: Vec<_> = entries
                    .iter()
                    .copied()
                    .filter(|e| super::kept(e, before_ms))
                    .collect();
                if kept.len() != entries.len() {
                    forgotten += entries.len() - kept.len();
                    updates.push((*k.value(), encode(&kept)));
                }
            }
            for (k, v) in updates {
                if v.is_empty() {
                    table.remove(&k).map_err(err)?;
                } else {
                    table.insert(&k, v.as_slice()).map_err(err)?;
                }
            }
        }
        txn.commit().map_err(err)?;
        Ok(forgotten)
    }

    fn add_silence(&self, silence: &Silence, now_ms: i64) -> Result<(), StoreError> {
        self.silences.add(silence, now_ms)
    }

    fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        self.silences.load()
    }

    fn expire_silence(&self, id: &str, now_ms: i64) -> Result<Expired, StoreError> {
        self.silences.expire(id, now_ms)
    }
}

/// Closing writes the waiting placements back, durably (a clean stop loses nothing).
impl Drop for FileStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "cannot write the dedupe placements back on close");
        }
    }
}
