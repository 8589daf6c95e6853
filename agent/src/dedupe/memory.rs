//! An in-process store: the reference implementation, for tests and the bench.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Entry, Incident, LocalStore, MAX_SINKS, StoreError, correlate, is_marked, mark};
use crate::fingerprint::IncidentKey;
use crate::model::AlertState;
use crate::silence::{Expired, Silence};

#[derive(Default)]
struct State {
    keys: HashMap<IncidentKey, Vec<Entry>>,
    sinks: Vec<String>,
    silences: Vec<Silence>,
}

impl State {
    fn sink_bit(&mut self, sink: &str) -> Result<u8, StoreError> {
        if let Some(i) = self.sinks.iter().position(|s| s == sink) {
            return Ok(i as u8);
        }
        if self.sinks.len() >= MAX_SINKS {
            return Err(StoreError(format!("more than {MAX_SINKS} sinks")));
        }
        self.sinks.push(sink.to_string());
        Ok((self.sinks.len() - 1) as u8)
    }
}

/// Dedupe state in memory, lost on exit.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.keys.len()).unwrap_or(0)
    }

    /// Number of incidents (fingerprints) tracked, over every key.
    pub fn incidents(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.keys.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes of the tracked state (table slots and entry vectors).
    pub fn approx_bytes(&self) -> usize {
        self.state
            .lock()
            .map(|s| {
                let slot = std::mem::size_of::<(IncidentKey, Vec<Entry>)>() + 1;
                s.keys.capacity() * slot
                    + s.keys
                        .values()
                        .map(|v| v.capacity() * Entry::BYTES)
                        .sum::<usize>()
            })
            .unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError("memory store lock poisoned".into()))
    }
}

impl LocalStore for MemoryStore {
    fn remember(
        &self,
        key: &IncidentKey,
        at_ms: i64,
        state: AlertState,
        window: Duration,
        now_ms: i64,
    ) -> Result<Incident, StoreError> {
        let mut s = self.lock()?;
        let entries = s.keys.entry(*key).or_default();
        let (start_ms, new) = correlate(entries, at_ms, state, window, now_ms);
        Ok(Incident {
            key: *key,
            start_ms,
            new,
        })
    }

    fn record_delivery(
        &self,
        items: &[(Incident, AlertState)],
        sink: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        let bit = s.sink_bit(sink)?;
        for (inc, state) in items {
            let entries = s.keys.entry(inc.key).or_default();
            mark(entries, inc.start_ms, *state, bit, now_ms);
        }
        Ok(())
    }

    fn delivered(
        &self,
        incident: &Incident,
        state: AlertState,
        sink: &str,
    ) -> Result<bool, StoreError> {
        let s = self.lock()?;
        let Some(bit) = s.sinks.iter().position(|x| x == sink) else {
            return Ok(false);
        };
        Ok(s.keys
            .get(&incident.key)
            .is_some_and(|e| is_marked(e, incident.start_ms, state, bit as u8)))
    }

    fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut s = self.lock()?;
        let mut forgotten = 0;
        s.keys.retain(|_, entries| {
            let n = entries.len();
            entries.retain(|e| super::kept(e, before_ms));
            forgotten += n - entries.len();
            !entries.is_empty()
        });
        Ok(forgotten)
    }

    fn add_silence(&self, silence: &Silence, now_ms: i64) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        crate::silence::insert(&mut s.silences, silence.clone(), now_ms).map_err(StoreError)
    }

    fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        Ok(self.lock()?.silences.clone())
    }

    fn expire_silence(&self, id: &str, now_ms: i64) -> Result<Expired, StoreError> {
        let mut s = self.lock()?;
        Ok(crate::silence::expire(&mut s.silences, id, now_ms))
    }
}
