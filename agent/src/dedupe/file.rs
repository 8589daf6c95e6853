//! The embedded default: dedupe state in a local redb file that survives restarts.
//!
//! `remember` commits without fsync (losing it in a crash only means the redelivered alert
//! is placed again, from the same payload); `record_delivery` commits durably, and that
//! commit also persists every earlier one — it is what makes "not re-sent" hold after a
//! crash.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Incident, LocalStore, MAX_SINKS, StoreError, correlate, decode, encode, is_marked, mark,
};
use crate::fingerprint::IncidentKey;
use crate::model::AlertState;

const INCIDENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("incidents");
const SINKS: TableDefinition<&str, u8> = TableDefinition::new("sinks");

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError(e.into().to_string())
}

/// Dedupe state in a redb file.
pub struct FileStore {
    db: Database,
    sinks: Mutex<HashMap<String, u8>>,
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
        })
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

    /// One write transaction for every alert of a batch (the agent's received batch), not one
    /// per alert: redb's commit is the cost (redb docs, "Durability": each non-durable commit
    /// still writes a new tree root).
    fn remember_many(
        &self,
        alerts: &[(IncidentKey, i64, AlertState)],
        window: Duration,
        now_ms: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError(e.to_string()))?;
        let mut out = Vec::with_capacity(alerts.len());
        {
            let mut table = txn.open_table(INCIDENTS).map_err(err)?;
            for (key, at_ms, state) in alerts {
                let mut entries = match table.get(&key.0).map_err(err)? {
                    Some(v) => decode(v.value()),
                    None => Vec::new(),
                };
                let (start_ms, new) = correlate(&mut entries, *at_ms, *state, window, now_ms);
                table
                    .insert(&key.0, encode(&entries).as_slice())
                    .map_err(err)?;
                out.push(Incident {
                    key: *key,
                    start_ms,
                    new,
                });
            }
        }
        txn.commit().map_err(err)?;
        Ok(out)
    }

    fn record_delivery(
        &self,
        items: &[(Incident, AlertState)],
        sink: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let bit = self.bit(&txn, sink)?;
        {
            let mut table = txn.open_table(INCIDENTS).map_err(err)?;
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
        let Some(bit) = self.known_bit(sink) else {
            return Ok(false);
        };
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(INCIDENTS).map_err(err)?;
        Ok(match table.get(&incident.key.0).map_err(err)? {
            Some(v) => is_marked(&decode(v.value()), incident.start_ms, state, bit),
            None => false,
        })
    }

    /// One read transaction for the whole batch.
    fn delivered_many(&self, asks: &[super::Ask<'_>]) -> Result<Vec<bool>, StoreError> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(INCIDENTS).map_err(err)?;
        asks.iter()
            .map(|(incident, state, sink)| {
                let Some(bit) = self.known_bit(sink) else {
                    return Ok(false);
                };
                Ok(match table.get(&incident.key.0).map_err(err)? {
                    Some(v) => is_marked(&decode(v.value()), incident.start_ms, *state, bit),
                    None => false,
                })
            })
            .collect()
    }

    fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut forgotten = 0;
        {
            let mut table = txn.open_table(INCIDENTS).map_err(err)?;
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
}
