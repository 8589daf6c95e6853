//! Dedupe: which incident an alert belongs to, and which sinks already have it.
//!
//! [`LocalStore::remember`] places an alert in an incident of its [`IncidentKey`]
//! (see [`crate::fingerprint`]); [`DedupeStore::record_delivery`] and
//! [`DedupeStore::claim_many`] track, per incident, state (firing/resolved) and sink, what was
//! delivered — so a redelivered message skips the sinks that already took it, and a message
//! whose every routed sink has it is a duplicate.
//!
//! Per key the store keeps at most [`MAX_INCIDENTS_PER_KEY`] recent incidents of
//! 32 bytes each ([`Entry`]); records untouched for the retention period are pruned.
//!
//! The store also keeps the silences ([`SilenceStore`], [`crate::silence`]), so that every
//! replica sharing a store sees the same ones: the file store in a file beside its database
//! ([`SilenceFile`], which `agent silence` writes while the agent runs: the database itself
//! is locked by the running agent), the memory store in memory (one process: tests), the
//! DynamoDB store in one item of the shared table.

mod dynamo;
mod file;
mod memory;
mod silence_file;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use dynamo::DynamoStore;
pub use file::FileStore;
pub use memory::MemoryStore;
pub use silence_file::{SilenceFile, silences_path};

use crate::fingerprint::{Fingerprint, IncidentKey, fingerprint};
use crate::model::AlertState;
use crate::silence::{Expired, Silence};

/// Incidents remembered per key; older ones are forgotten first.
pub const MAX_INCIDENTS_PER_KEY: usize = 4;
/// Sinks a store can track per incident (one bit each).
pub const MAX_SINKS: usize = 64;

/// A failure of the store itself (disk, database).
#[derive(Debug, thiserror::Error)]
#[error("dedupe store: {0}")]
pub struct StoreError(pub String);

/// The incident an alert was placed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incident {
    pub key: IncidentKey,
    pub start_ms: i64,
    /// True when this alert opened the incident.
    pub new: bool,
}

impl Incident {
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.key, self.start_ms)
    }
}

/// A store's answer, later: the one shape of every [`DedupeStore`] call, so one trait
/// serves the local stores (ready at once) and the shared one (network round trips).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One delivery asked of [`DedupeStore::claim_many`]: an incident, in a state, to a sink.
pub type Ask<'a> = (Incident, AlertState, &'a str);

/// Where the silences live: the interface of `agent silence` and of the running agent's
/// refresh, for every store. Each change is atomic against other writers (another
/// `agent silence`, another replica): the store applies [`crate::silence::insert`] or
/// [`crate::silence::expire`] to the list as stored.
pub trait SilenceStore: Send + Sync {
    /// Stores a new silence (ended ones past [`crate::silence::KEEP_EXPIRED`] are pruned).
    fn add_silence<'a>(&'a self, silence: &'a Silence, now_ms: i64) -> StoreFuture<'a, ()>;

    /// Every stored silence, pending, active and ended, in the order they were added.
    fn silences(&self) -> StoreFuture<'_, Vec<Silence>>;

    /// Ends silence `id` now; it stays stored, expired.
    fn expire_silence<'a>(&'a self, id: &'a str, now_ms: i64) -> StoreFuture<'a, Expired>;
}

/// Where dedupe state lives: the one interface the runtime talks to, for the file, memory
/// and DynamoDB stores alike. Every call takes a batch (the alerts of every message waiting
/// to be prepared), so a store with transactions or batch APIs answers it in a few round
/// trips, not one per alert. Every dedupe store keeps the silences too.
pub trait DedupeStore: SilenceStore {
    /// Places each alert (key, time, state) in an incident, in order, a later alert of a key
    /// seeing the earlier ones (see [`LocalStore::remember`]).
    fn remember_many<'a>(
        &'a self,
        alerts: &'a [(IncidentKey, i64, AlertState)],
        window: Duration,
        now_ms: i64,
    ) -> StoreFuture<'a, Vec<Incident>>;

    /// May this agent deliver each of `asks`? One answer per ask, in order. A local store
    /// has no other replica: delivered or mine. The shared store claims each delivery for
    /// this replica until `now_ms + lease`; the same delivery asked twice gets one answer.
    fn claim_many<'a>(
        &'a self,
        asks: &'a [Ask<'a>],
        lease: Duration,
        now_ms: i64,
    ) -> StoreFuture<'a, Vec<Claim>>;

    /// Records, durably, that `sink` accepted these incidents in these states.
    fn record_delivery<'a>(
        &'a self,
        items: &'a [(Incident, AlertState)],
        sink: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, ()>;

    /// Gives up this agent's claims on deliveries that failed (a local store has none).
    fn release<'a>(
        &'a self,
        items: &'a [(Incident, AlertState)],
        sink: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// Forgets incidents untouched since `before_ms`; returns how many were forgotten (the
    /// shared store expires records by TTL instead: 0).
    fn prune(&self, before_ms: i64) -> StoreFuture<'_, usize>;

    /// How many batches may be in the store's hands at once: one for a local file (a single
    /// writer; a second would only wait for the first's lock), several for a network store
    /// (each batch is a few round trips of latency, not of work).
    fn parallel_batches(&self) -> usize {
        1
    }

    /// True for a store shared by replicas (claims are real; a message may be held back).
    fn shared(&self) -> bool {
        false
    }
}

/// The store the runtime holds.
pub type Store = Arc<dyn DedupeStore>;

/// A store in this process (file or memory): synchronous, each call one transaction. Every
/// local store is a [`DedupeStore`] whose answers are ready at once.
pub trait LocalStore: Send + Sync {
    /// Places an alert of `key` that happened at `at_ms` in an incident: the open one whose
    /// start lies within `window` of it (for a resolution: the latest one that started
    /// before it), else a new one starting at `at_ms`. `now_ms` stamps the record.
    fn remember(
        &self,
        key: &IncidentKey,
        at_ms: i64,
        state: AlertState,
        window: Duration,
        now_ms: i64,
    ) -> Result<Incident, StoreError>;

    /// [`LocalStore::remember`] for many alerts at once, in order (a later alert of a key
    /// sees the earlier ones). A store with transactions places them all in one.
    fn remember_many(
        &self,
        alerts: &[(IncidentKey, i64, AlertState)],
        window: Duration,
        now_ms: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        alerts
            .iter()
            .map(|(key, at_ms, state)| self.remember(key, *at_ms, *state, window, now_ms))
            .collect()
    }

    /// Records, durably, that `sink` accepted these incidents in these states.
    fn record_delivery(
        &self,
        items: &[(Incident, AlertState)],
        sink: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// True when `sink` already accepted this incident in this state.
    fn delivered(
        &self,
        incident: &Incident,
        state: AlertState,
        sink: &str,
    ) -> Result<bool, StoreError>;

    /// [`LocalStore::delivered`] for many at once (one read transaction where the store
    /// has them).
    fn delivered_many(&self, asks: &[Ask<'_>]) -> Result<Vec<bool>, StoreError> {
        asks.iter()
            .map(|(incident, state, sink)| self.delivered(incident, *state, sink))
            .collect()
    }

    /// Forgets incidents untouched since `before_ms`; returns how many were forgotten.
    fn prune(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// [`SilenceStore::add_silence`], at once.
    fn add_silence(&self, silence: &Silence, now_ms: i64) -> Result<(), StoreError>;

    /// [`SilenceStore::silences`], at once.
    fn silences(&self) -> Result<Vec<Silence>, StoreError>;

    /// [`SilenceStore::expire_silence`], at once.
    fn expire_silence(&self, id: &str, now_ms: i64) -> Result<Expired, StoreError>;
}

impl<T: LocalStore> SilenceStore for T {
    fn add_silence<'a>(&'a self, silence: &'a Silence, now_ms: i64) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(LocalStore::add_silence(
            self, silence, now_ms,
        )))
    }

    fn silences(&self) -> StoreFuture<'_, Vec<Silence>> {
        Box::pin(std::future::ready(LocalStore::silences(self)))
    }

    fn expire_silence<'a>(&'a self, id: &'a str, now_ms: i64) -> StoreFuture<'a, Expired> {
        Box::pin(std::future::ready(LocalStore::expire_silence(
            self, id, now_ms,
        )))
    }
}

impl<T: LocalStore> DedupeStore for T {
    fn remember_many<'a>(
        &'a self,
        alerts: &'a [(IncidentKey, i64, AlertState)],
        window: Duration,
        now_ms: i64,
    ) -> StoreFuture<'a, Vec<Incident>> {
        Box::pin(std::future::ready(LocalStore::remember_many(
            self, alerts, window, now_ms,
        )))
    }

    fn claim_many<'a>(
        &'a self,
        asks: &'a [Ask<'a>],
        _lease: Duration,
        _now_ms: i64,
    ) -> StoreFuture<'a, Vec<Claim>> {
        Box::pin(std::future::ready(self.delivered_many(asks).map(|v| {
            v.into_iter()
                .map(|d| if d { Claim::Delivered } else { Claim::Mine })
                .collect()
        })))
    }

    fn record_delivery<'a>(
        &'a self,
        items: &'a [(Incident, AlertState)],
        sink: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(LocalStore::record_delivery(
            self, items, sink, now_ms,
        )))
    }

    fn release<'a>(
        &'a self,
        _items: &'a [(Incident, AlertState)],
        _sink: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(LocalStore::prune(self, before_ms)))
    }
}

/// Whether this replica may deliver an incident (in a state) to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Deliver it: nobody else is, and the sink does not have it.
    Mine,
    /// The sink already has it.
    Delivered,
    /// Another replica is delivering it, its claim lasting until `until_ms` (Unix ms): leave
    /// the message to come back when the claim ends (delivered, released, or expired because
    /// the holder died).
    Held { until_ms: i64 },
}

/// One remembered incident: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry {
    pub start_ms: i64,
    pub touched_ms: i64,
    /// Bit per sink id: delivered while firing.
    pub firing: u64,
    /// Bit per sink id: delivered resolved.
    pub resolved: u64,
}

impl Entry {
    pub const BYTES: usize = 32;

    fn mask(&mut self, state: AlertState) -> &mut u64 {
        match state {
            AlertState::Firing => &mut self.firing,
            AlertState::Resolved => &mut self.resolved,
        }
    }

    fn has(&self, state: AlertState, bit: u8) -> bool {
        let m = match state {
            AlertState::Firing => self.firing,
            AlertState::Resolved => self.resolved,
        };
        m & (1u64 << bit) != 0
    }
}

/// Encodes entries as 32-byte records.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * Entry::BYTES);
    for e in entries {
        out.extend_from_slice(&e.start_ms.to_le_bytes());
        out.extend_from_slice(&e.touched_ms.to_le_bytes());
        out.extend_from_slice(&e.firing.to_le_bytes());
        out.extend_from_slice(&e.resolved.to_le_bytes());
    }
    out
}

/// Decodes [`encode`]d entries; a trailing partial record is ignored.
pub fn decode(bytes: &[u8]) -> Vec<Entry> {
    bytes
        .chunks_exact(Entry::BYTES)
        .map(|c| {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[i * 8..i * 8 + 8]);
                b
            };
            Entry {
                start_ms: i64::from_le_bytes(word(0)),
                touched_ms: i64::from_le_bytes(word(1)),
                firing: u64::from_le_bytes(word(2)),
                resolved: u64::from_le_bytes(word(3)),
            }
        })
        .collect()
}

/// How much longer than the retention an open incident (delivered firing, not yet
/// resolved) is kept. CloudWatch notifies only on a state change (CloudWatch user guide,
/// "Alarm actions": actions run when the alarm changes state), so an alarm may stay in
/// ALARM for days and its OK must still close the incident it opened (the same
/// fingerprint: a PagerDuty resolve names the dedup key of the trigger).
pub const OPEN_INCIDENT_EXTRA: Duration = Duration::from_secs(30 * 86_400);

/// Whether pruning at `before_ms` keeps `e`: touched since, or open and touched within
/// [`OPEN_INCIDENT_EXTRA`] more.
pub fn kept(e: &Entry, before_ms: i64) -> bool {
    let extra = i64::try_from(OPEN_INCIDENT_EXTRA.as_millis()).unwrap_or(i64::MAX);
    e.touched_ms >= before_ms
        || (e.firing != 0 && e.resolved == 0 && e.touched_ms >= before_ms.saturating_sub(extra))
}

/// The correlation rule shared by every store: returns the incident's start and whether it
/// is new, updating `entries`.
pub fn correlate(
    entries: &mut Vec<Entry>,
    at_ms: i64,
    state: AlertState,
    window: Duration,
    now_ms: i64,
) -> (i64, bool) {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let found = match state {
        AlertState::Firing => entries
            .iter_mut()
            .filter(|e| e.start_ms.abs_diff(at_ms) <= window_ms.unsigned_abs())
            .min_by_key(|e| e.start_ms),
        // A resolution closes the latest incident that started before it (plus the window,
        // for clocks that disagree a little), however long ago that was.
        AlertState::Resolved => entries
            .iter_mut()
            .filter(|e| e.start_ms <= at_ms.saturating_add(window_ms))
            .max_by_key(|e| e.start_ms),
    };
    if let Some(e) = found {
        e.touched_ms = now_ms;
        return (e.start_ms, false);
    }
    if entries.len() >= MAX_INCIDENTS_PER_KEY {
        // Forget the oldest before adding, never the one being added, and so that the
        // vector never grows past its bound (its allocation stays at the bound too).
        entries.sort_by_key(|e| e.start_ms);
        let excess = entries.len() + 1 - MAX_INCIDENTS_PER_KEY;
        entries.drain(..excess);
    }
    entries.push(Entry {
        start_ms: at_ms,
        touched_ms: now_ms,
        firing: 0,
        resolved: 0,
    });
    (at_ms, true)
}

/// Marks `bit` delivered for the incident starting at `start_ms`, adding the entry if it
/// was forgotten meanwhile.
pub fn mark(entries: &mut Vec<Entry>, start_ms: i64, state: AlertState, bit: u8, now_ms: i64) {
    let i = match entries.iter().position(|e| e.start_ms == start_ms) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                start_ms,
                ..Entry::default()
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.touched_ms = now_ms;
    *e.mask(state) |= 1u64 << bit;
}

/// True when `bit` is delivered for the incident starting at `start_ms`.
pub fn is_marked(entries: &[Entry], start_ms: i64, state: AlertState, bit: u8) -> bool {
    entries
        .iter()
        .any(|e| e.start_ms == start_ms && e.has(state, bit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::key_of;

    const MIN: i64 = 60_000;
    const W: Duration = Duration::from_secs(15 * 60);

    /// Both stores answer the same table of questions.
    fn behaves(store: &dyn LocalStore) {
        let k = key_of("root-activity", "111122223333", "us-east-1");
        let f = AlertState::Firing;
        let r = AlertState::Resolved;
        // (at, state, expected start, expected new)
        let table = [
            (0, f, 0, true),                // the event path opens the incident
            (3 * MIN, f, 0, false),         // the alarm of the same event joins it
            (3 * MIN, f, 0, false),         // the same alarm delivered twice
            (14 * MIN, f, 0, false),        // still within the window
            (20 * MIN, f, 20 * MIN, true),  // a later one opens a new incident
            (25 * MIN, r, 20 * MIN, false), // OK closes the latest incident
            (-5 * MIN, f, 0, false),        // arriving out of order
        ];
        for (at, state, start, new) in table {
            let inc = store.remember(&k, at, state, W, 1).unwrap();
            assert_eq!((inc.start_ms, inc.new), (start, new), "at {at} {state:?}");
        }
        let first = store.remember(&k, 0, f, W, 1).unwrap();
        assert!(!store.delivered(&first, f, "hook").unwrap());
        store.record_delivery(&[(first, f)], "hook", 2).unwrap();
        assert!(store.delivered(&first, f, "hook").unwrap());
        assert!(!store.delivered(&first, f, "pager").unwrap(), "per sink");
        assert!(!store.delivered(&first, r, "hook").unwrap(), "per state");
        let second = store.remember(&k, 20 * MIN, f, W, 3).unwrap();
        assert!(
            !store.delivered(&second, f, "hook").unwrap(),
            "per incident"
        );
        // Prune forgets what was not touched since, but an incident delivered firing and
        // not resolved stays open (its OK, days later, must close it).
        let other = key_of("cis-4.3", "111122223333", "us-east-1");
        store.remember(&other, 0, f, W, 1).unwrap();
        assert_eq!(store.prune(2).unwrap(), 1);
        assert!(store.remember(&other, 0, f, W, 5).unwrap().new);
        assert!(store.delivered(&first, f, "hook").unwrap());
    }

    /// An incident delivered firing and not resolved outlives the retention (bounded).
    fn keeps_open_incidents(store: &dyn LocalStore) {
        let (f, r) = (AlertState::Firing, AlertState::Resolved);
        let day = 86_400_000;
        let open = key_of("cis-4.4", "111122223333", "us-east-1");
        let opened = store.remember(&open, 0, f, W, 10).unwrap();
        store.record_delivery(&[(opened, f)], "hook", 10).unwrap();
        store.prune(2 * day).unwrap();
        let resolved = store.remember(&open, 2 * day, r, W, 2 * day).unwrap();
        assert_eq!(
            (resolved.start_ms, resolved.new),
            (0, false),
            "the OK closes it"
        );
        let extra = i64::try_from(OPEN_INCIDENT_EXTRA.as_millis()).unwrap();
        let stale = key_of("cis-4.5", "111122223333", "us-east-1");
        let s = store.remember(&stale, 0, f, W, 10).unwrap();
        store.record_delivery(&[(s, f)], "hook", 10).unwrap();
        store.prune(extra + day).unwrap();
        assert!(
            store
                .remember(&stale, extra + day, r, W, extra + day)
                .unwrap()
                .new,
            "bounded"
        );
    }

    #[test]
    fn memory_store_behaves() {
        behaves(&MemoryStore::default());
        keeps_open_incidents(&MemoryStore::default());
    }

    #[test]
    fn file_store_keeps_open_incidents() {
        let dir = std::env::temp_dir().join(format!("orgwatch-dedupe-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        keeps_open_incidents(&FileStore::open(&dir.join("agent.db")).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_store_placements_wait_in_memory_and_reach_the_file_on_record_or_close() {
        let dir = std::env::temp_dir().join(format!("orgwatch-dedupe-wb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.db");
        let (f, k) = (
            AlertState::Firing,
            key_of("cis-4.1", "111122223333", "us-east-1"),
        );
        let other = key_of("cis-4.4", "111122223333", "us-east-1");
        {
            let store = FileStore::open(&path).unwrap();
            assert!(store.remember(&k, 0, f, W, 1).unwrap().new);
            assert!(
                !store.remember(&k, MIN, f, W, 2).unwrap().new,
                "seen while waiting"
            );
            // A delivery's record writes the waiting placements with it.
            let inc = store.remember(&other, 0, f, W, 3).unwrap();
            LocalStore::record_delivery(&store, &[(inc, f)], "hook", 4).unwrap();
            assert!(store.delivered(&inc, f, "hook").unwrap());
            assert!(store.remember(&k, 40 * MIN, f, W, 5).unwrap().new);
        } // closed: what still waits is written back
        let store = FileStore::open(&path).unwrap();
        assert!(
            !store.remember(&k, 41 * MIN, f, W, 6).unwrap().new,
            "kept on close"
        );
        assert!(!store.remember(&k, 2 * MIN, f, W, 6).unwrap().new);
        let inc = store.remember(&other, MIN, f, W, 6).unwrap();
        assert!(!inc.new);
        assert!(store.delivered(&inc, f, "hook").unwrap());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_store_behaves_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("orgwatch-dedupe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.db");
        let k = key_of("root-activity", "111122223333", "us-east-1");
        {
            let store = FileStore::open(&path).unwrap();
            behaves(&store);
        }
        let store = FileStore::open(&path).unwrap();
        let inc = store.remember(&k, MIN, AlertState::Firing, W, 10).unwrap();
        assert_eq!((inc.start_ms, inc.new), (0, false));
        assert!(store.delivered(&inc, AlertState::Firing, "hook").unwrap());
        assert!(!store.delivered(&inc, AlertState::Firing, "pager").unwrap());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One batch places its alerts as the same calls one by one would: the same table of
    /// questions as [`behaves`], asked at once.
    fn places_a_batch_like_one_by_one(store: &dyn LocalStore) {
        let k = key_of("root-activity", "111122223333", "us-east-1");
        let other = key_of("cis-4.3", "111122223333", "us-east-1");
        let (f, r) = (AlertState::Firing, AlertState::Resolved);
        let batch = [
            (k, 0, f),
            (other, MIN, f),
            (k, 3 * MIN, f),
            (k, 20 * MIN, f),
            (k, 25 * MIN, r),
            (other, 2 * MIN, f),
        ];
        let got: Vec<(i64, bool)> = store
            .remember_many(&batch, W, 1)
            .unwrap()
            .iter()
            .map(|i| (i.start_ms, i.new))
            .collect();
        assert_eq!(
            got,
            [
                (0, true),
                (MIN, true),
                (0, false),
                (20 * MIN, true),
                (20 * MIN, false),
                (MIN, false)
            ]
        );
        assert!(store.remember_many(&[], W, 1).unwrap().is_empty());
        // What the batch wrote is there for the next call.
        assert!(!store.remember(&k, 21 * MIN, f, W, 2).unwrap().new);
    }

    #[test]
    fn batches_are_placed_like_single_alerts() {
        places_a_batch_like_one_by_one(&MemoryStore::default());
        let dir =
            std::env::temp_dir().join(format!("orgwatch-dedupe-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        places_a_batch_like_one_by_one(&FileStore::open(&dir.join("agent.db")).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn a_silence(id: &str, rule: &str, starts_ms: i64, ends_ms: i64) -> Silence {
        Silence {
            id: id.into(),
            matcher: crate::config::Matcher {
                rule: vec![rule.into()],
                ..Default::default()
            },
            starts_at_ms: starts_ms,
            ends_at_ms: ends_ms,
            created_by: "alice".into(),
            comment: "patching".into(),
        }
    }

    /// Every store keeps silences the same way: added in order, expired in place (kept,
    /// ended), unknown ids answered, taken ids refused, old ended ones pruned on a change.
    fn keeps_silences(store: &dyn LocalStore) {
        let hour = 3_600_000;
        assert!(store.silences().unwrap().is_empty());
        let a = a_silence("a", "cis-4.3", 0, 2 * hour);
        let b = a_silence("b", "cis-4.1", 0, 2 * hour);
        store.add_silence(&a, 0).unwrap();
        store.add_silence(&b, 0).unwrap();
        assert_eq!(store.silences().unwrap(), [a.clone(), b.clone()]);
        let taken = store.add_silence(&a_silence("a", "x", 0, hour), 0);
        assert!(taken.unwrap_err().0.contains("exists already"));
        assert_eq!(
            store.expire_silence("zzz", hour).unwrap(),
            Expired::NotFound
        );
        let Expired::Ended(ended) = store.expire_silence("a", hour).unwrap() else {
            panic!("not ended")
        };
        assert_eq!(ended.ends_at_ms, hour);
        assert!(matches!(
            store.expire_silence("a", hour + 1).unwrap(),
            Expired::AlreadyEnded(_)
        ));
        let listed = store.silences().unwrap();
        assert_eq!(listed.len(), 2, "an expired silence stays listed");
        assert_eq!(listed[0].status(hour), crate::silence::Status::Expired);
        assert_eq!(listed[1], b, "the others untouched");
        // Five days after they ended, the next change forgets them.
        let later = 2 * hour + 5 * 24 * hour + 1;
        store
            .add_silence(&a_silence("c", "cis-4.5", later, later + hour), later)
            .unwrap();
        let ids: Vec<String> = store
            .silences()
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["c"]);
    }

    #[test]
    fn memory_store_keeps_silences() {
        keeps_silences(&MemoryStore::default());
    }

    #[test]
    fn file_store_keeps_silences_beside_its_database_while_it_is_open() {
        let dir =
            std::env::temp_dir().join(format!("orgwatch-dedupe-silences-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.db");
        keeps_silences(&FileStore::open(&path).unwrap());
        let hour = 3_600_000;
        // The running agent holds the database; `agent silence` writes the file beside it,
        // and the agent reads what it wrote.
        let running = FileStore::open(&path).unwrap();
        assert!(FileStore::open(&path).is_err(), "the database is locked");
        let cli = SilenceFile::new(silences_path(&path));
        assert_eq!(cli.path(), dir.join("agent.db.silences.json"));
        let d = a_silence("d", "cis-4.3", 0, 10 * 24 * hour);
        cli.add(&d, 0).unwrap();
        let seen = LocalStore::silences(&running).unwrap();
        assert_eq!(seen.last(), Some(&d));
        drop(running);
        // Kept across a restart.
        let again = FileStore::open(&path).unwrap();
        assert_eq!(LocalStore::silences(&again).unwrap().last(), Some(&d));
        // A damaged file is an error that names it, not "no silences".
        std::fs::write(silences_path(&path), "{not json").unwrap();
        let err = LocalStore::silences(&again).unwrap_err();
        assert!(err.0.contains("agent.db.silences.json"), "{err}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_round_trip_and_stay_bounded() {
        let mut entries = Vec::new();
        for i in 0..10 {
            correlate(&mut entries, i * 20 * MIN, AlertState::Firing, W, i);
        }
        assert_eq!(entries.len(), MAX_INCIDENTS_PER_KEY);
        assert!(entries.capacity() <= MAX_INCIDENTS_PER_KEY);
        let mut starts: Vec<i64> = entries.iter().map(|e| e.start_ms).collect();
        starts.sort();
        assert_eq!(starts, (6..10).map(|i| i * 20 * MIN).collect::<Vec<_>>());
        // A late alert older than every remembered incident opens its own and stays; the
        // oldest remembered one goes.
        let (start, new) = correlate(&mut entries, 0, AlertState::Firing, W, 10);
        assert_eq!((start, new), (0, true));
        let mut starts: Vec<i64> = entries.iter().map(|e| e.start_ms).collect();
        starts.sort();
        assert_eq!(starts, vec![0, 7 * 20 * MIN, 8 * 20 * MIN, 9 * 20 * MIN]);
        correlate(&mut entries, 9 * 20 * MIN, AlertState::Firing, W, 11);
        mark(&mut entries, 9 * 20 * MIN, AlertState::Resolved, 63, 99);
        assert_eq!(decode(&encode(&entries)), entries);
        assert!(is_marked(&entries, 9 * 20 * MIN, AlertState::Resolved, 63));
        assert_eq!(encode(&entries).len(), MAX_INCIDENTS_PER_KEY * Entry::BYTES);
    }
}
