//! The core: every decision the agent makes about a message, with no I/O.
//!
//! A plain struct driven by events — a message received, its alerts prepared (the dedupe
//! store's answers and enrichment, done outside), a notification completed, a tick of the
//! clock — each returning the [`Effect`]s to carry out: prepare, send, ack, dead-letter,
//! extend visibility, let go, prune. The runtime (`runtime.rs`) carries them out in bounded
//! tasks, so no store round trip, AWS call or sink ever holds up another message, the
//! visibility renewals, the grouping ticks or the completions; the tests here drive the core
//! with no async runtime at all.
//!
//! A message is settled once every notification holding its alerts has completed, its
//! status the merge of their [`Outcome`]s, with the precedence rejected > errored >
//! delivered (Vector's finalizers): delivered everywhere → ack; rejected by a sink → the
//! dead-letter queue at once, with the sink's reason; errored (an outage) → kept in flight and prepared again after a growing delay, never let go to the
//! redrive policy; held by another replica → invisible until that replica's claim ends.
//!
//! Silences ([`crate::silence`]) are applied here, when a message's alerts are classified
//! (and again when a failed delivery is tried again): an alert an active silence matches
//! goes to no sink and into no incident; it is counted and logged at INFO with the silence,
//! and a message whose every alert is silenced is acknowledged as handled. The runtime hands
//! the core the silences it reads from the store ([`Core::set_silences`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::classify::{Classified, RuleCatalog, classify};
use crate::config::Config;
use crate::decode::decode;
use crate::dedupe::Incident;
use crate::group::{Grouper, Notification};
use crate::metrics::Metrics;
use crate::model::{Alert, format_timestamp};
use crate::route::route;
use crate::silence::{Silence, Status, silencing};
use crate::source::Envelope;

/// How long a message stays in flight at most: SQS allows 12 hours from its receive
/// (SQS developer guide, "Visibility timeout": "the maximum is 12 hours"; the total time a
/// message is in flight counts from its first receive), with a margin.
pub const MAX_IN_FLIGHT: Duration = Duration::from_secs(11 * 3600 + 30 * 60);

/// The wait before a failed delivery is tried again: the visibility timeout, doubled per
/// retry, at most 15 minutes (the sink's own `retry_for` retries came before it).
pub fn retry_delay(visibility: Duration, retries: u32) -> Duration {
    visibility
        .saturating_mul(1u32 << retries.min(10))
        .min(Duration::from_secs(900))
}

/// What a message in flight needs at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Its visibility has more than half its timeout left.
    Keep,
    /// Half its visibility timeout has passed since the last renewal: renew it for another.
    Renew,
    /// Another renewal would take it past SQS's 12 hours in flight, where
    /// ChangeMessageVisibility fails ("Visibility timeout", SQS developer guide): let it go,
    /// it comes back to the queue.
    LetGo,
}

pub fn renewal(received: Instant, extended: Instant, now: Instant, vis: Duration) -> Renewal {
    if now.saturating_duration_since(received) + vis >= MAX_IN_FLIGHT {
        Renewal::LetGo
    } else if now.saturating_duration_since(extended) >= vis / 2 {
        Renewal::Renew
    } else {
        Renewal::Keep
    }
}

/// How long a message another replica holds stays invisible: until that replica's claim ends
/// (SQS ChangeMessageVisibility counts from the call: "Changing a message's visibility
/// timeout", SQS developer guide), with a margin for the clocks of two hosts, at least a few
/// seconds and at most this agent's own lease (a holder's lease is never longer) and the time
/// SQS allows in flight.
pub fn hold_for(until_ms: i64, now_ms: i64, lease: Duration) -> Duration {
    let left = Duration::from_millis(u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0));
    (left + Duration::from_secs(2))
        .max(Duration::from_secs(5))
        .min(lease.max(Duration::from_secs(5)))
        .min(MAX_IN_FLIGHT)
}

/// The two clocks of an event: monotonic for time in flight, wall (Unix ms) for the store
/// and the claims of other replicas.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Instant,
    pub wall_ms: i64,
}

/// An alert and the sinks its routes chose.
#[derive(Debug, Clone)]
pub struct Routed {
    pub alert: Alert,
    pub sinks: Vec<usize>,
}

/// What the store (and enrichment) made of a message's alerts.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Alerts this replica delivers (sink, alert, incident); `held_until`: another replica
    /// claims some of the others until then (Unix ms).
    Ready {
        adds: Vec<(usize, Alert, Incident)>,
        held_until: Option<i64>,
    },
    /// The dedupe store failed: the message returns to the queue after its visibility
    /// timeout and is tried again.
    StoreFailed(String),
}

/// How a delivery ended. A message's status is the merge of its deliveries' outcomes, with
/// the precedence Rejected > Errored > Delivered (Vector's finalizer statuses): one
/// rejection dead-letters it whatever else happened, one transient failure keeps it for a
/// retry, and only delivered everywhere acks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The sink did not take it for now (an outage, 429, 5xx): the reason.
    Errored(String),
    /// The sink refused the content itself (4xx other than 429): the reason.
    Rejected(String),
}

impl Outcome {
    fn rank(&self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::Errored(_) => 1,
            Outcome::Rejected(_) => 2,
        }
    }

    /// The status of a message after another of its deliveries ended with `other`: the
    /// weightier of the two (the first reason of a rank is kept).
    pub fn merge(self, other: Outcome) -> Outcome {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// A notification's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub id: u64,
    pub outcome: Outcome,
}

/// What the runtime carries out.
#[derive(Debug)]
pub enum Effect {
    /// Remember each alert's incident and claim its deliveries (then enrich the alarms), and
    /// answer with [`Core::on_prepared`].
    Prepare {
        id: u64,
        message_id: String,
        alerts: Vec<Routed>,
    },
    /// A notification for sink `n.sink`.
    Send(Notification<u64>),
    /// Delete these messages.
    Ack(Vec<String>),
    /// To the dead-letter queue with the reason.
    DeadLetter { env: Envelope, reason: String },
    /// Keep these messages invisible for `by`. `ids` are the core's messages still in flight
    /// (a failure is reported with [`Core::on_extend_failed`]); empty for a message the core
    /// has let go of (held by another replica).
    Extend {
        ids: Vec<u64>,
        tokens: Vec<String>,
        by: Duration,
    },
    /// Forget delivery records older than this (Unix ms).
    Prune { before_ms: i64 },
}

/// What the core needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub visibility: Duration,
    pub claim_lease: Duration,
    pub retention: Duration,
}

enum Stage {
    /// The store and enrichment are working on it.
    Preparing,
    /// Its alerts wait in the grouper or at the sinks: this many deliveries outstanding.
    Delivering(usize),
    /// A delivery failed; prepared again at this time.
    Waiting(Instant),
}

struct InFlight<P> {
    env: Envelope,
    stage: Stage,
    /// Its deliveries' outcomes so far, merged.
    status: Outcome,
    retries: u32,
    received: Instant,
    /// Another replica holds some of its alerts until then (Unix ms).
    held_until: Option<i64>,
    extended: Instant,
    /// Its alerts a silence held back, already counted and logged ([`silenced_key`]).
    silenced: HashSet<String>,
    _permit: P,
}

/// What identifies an alert of a message across its retries (the message is decoded and
/// classified again each time), so a silenced alert is counted once.
fn silenced_key(a: &Alert) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        a.rule_id,
        a.account,
        a.region,
        a.at_ms,
        a.state.as_str()
    )
}

/// The agent's decisions. `P` is what a message in flight holds on to (the runtime's
/// in-flight permit; `()` in tests).
pub struct Core<P> {
    config: Arc<Config>,
    settings: Settings,
    catalog: Arc<dyn RuleCatalog>,
    metrics: Arc<Metrics>,
    grouper: Grouper<u64>,
    msgs: HashMap<u64, InFlight<P>>,
    next_id: u64,
    draining: Option<Instant>,
    last_prune: Option<Instant>,
    /// The silences as last read from the store.
    silences: Vec<Silence>,
}

impl<P> Core<P> {
    pub fn new(
        config: Arc<Config>,
        settings: Settings,
        catalog: Arc<dyn RuleCatalog>,
        metrics: Arc<Metrics>,
    ) -> Core<P> {
        Core {
            grouper: Grouper::new(config.group.clone(), config.dedupe.window),
            config,
            settings,
            catalog,
            metrics,
            msgs: HashMap::new(),
            next_id: 0,
            draining: None,
            last_prune: None,
            silences: Vec::new(),
        }
    }

    /// The silences as read from the store now: applied to every alert from here on. New
    /// and gone ones are logged at INFO.
    pub fn set_silences(&mut self, silences: Vec<Silence>, clock: Clock) {
        let now = clock.wall_ms;
        let live = |s: &Silence| s.status(now) != Status::Expired;
        for s in silences.iter().filter(|s| live(s)) {
            if !self.silences.iter().any(|o| o.id == s.id && live(o)) {
                tracing::info!(silence_id = %s.id, matcher = %s.describe(), starts = %format_timestamp(s.starts_at_ms), ends = %format_timestamp(s.ends_at_ms), created_by = %s.created_by, comment = %s.comment, "silence in effect");
            }
        }
        for s in self.silences.iter().filter(|s| live(s)) {
            if !silences.iter().any(|n| n.id == s.id && live(n)) {
                tracing::info!(silence_id = %s.id, matcher = %s.describe(), "silence ended");
            }
        }
        let active = silences
            .iter()
            .filter(|s| s.status(now) == Status::Active)
            .count();
        self.metrics
            .silences_active
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        // Only what can still silence is kept.
        self.silences = silences.into_iter().filter(|s| live(s)).collect();
    }

    /// The alerts no active silence holds back. Each held back one not in `seen` (its
    /// message's alerts silenced before) is counted and logged, and added to `seen`;
    /// `first_look` also counts each held back one as an alert classified (the ones let
    /// through are counted when routed).
    fn unsilenced(
        &self,
        alerts: Vec<Alert>,
        message_id: &str,
        seen: &mut HashSet<String>,
        now_ms: i64,
        first_look: bool,
    ) -> Vec<Alert> {
        if self.silences.is_empty() {
            return alerts;
        }
        alerts
            .into_iter()
            .filter(|a| {
                let Some(s) = silencing(a, &self.silences, now_ms) else {
                    return true;
                };
                if first_look {
                    self.metrics.alert(&a.rule_id, a.severity);
                }
                if seen.insert(silenced_key(a)) {
                    self.metrics.silenced(&a.rule_id);
                    tracing::info!(silence_id = %s.id, rule = %a.rule_id, account = %a.account, region = %a.region, severity = %a.severity, state = a.state.as_str(), %message_id, silence_ends = %format_timestamp(s.ends_at_ms), "silenced: not sent to the sinks");
                }
                false
            })
            .collect()
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.msgs.len()
    }

    /// A message from the queue: decoded and classified here; its alerts go to be prepared.
    pub fn on_received(&mut self, env: Envelope, permit: P, clock: Clock) -> Vec<Effect> {
        let m = &self.metrics;
        let decoded = match decode(&env.body) {
            Ok(d) => d,
            Err(reason) => {
                Metrics::inc(&m.dead_lettered);
                if reason.is_forged() {
                    Metrics::inc(&m.forged);
                }
                tracing::warn!(message_id = %env.message_id, receive_count = env.receive_count, %reason, "undecodable message: to the dead-letter queue");
                return vec![Effect::DeadLetter {
                    env,
                    reason: reason.to_string(),
                }];
            }
        };
        Metrics::inc(&m.decoded);
        let alerts = match classify(&decoded, self.catalog.as_ref()) {
            Classified::Alerts(a) => a,
            Classified::Ignored(why) => {
                Metrics::inc(&m.ignored);
                tracing::debug!(message_id = %env.message_id, %why, "nothing to alert on");
                return vec![Effect::Ack(vec![env.token])];
            }
        };
        let mut silenced = HashSet::new();
        let alerts = self.unsilenced(alerts, &env.message_id, &mut silenced, clock.wall_ms, true);
        if alerts.is_empty() {
            tracing::debug!(message_id = %env.message_id, "every alert silenced: acknowledged");
            return vec![Effect::Ack(vec![env.token])];
        }
        let routed = self.routed(alerts, true);
        self.next_id += 1;
        let id = self.next_id;
        let message_id = env.message_id.clone();
        m.in_flight.inc();
        self.msgs.insert(
            id,
            InFlight {
                env,
                stage: Stage::Preparing,
                status: Outcome::Delivered,
                retries: 0,
                received: clock.now,
                held_until: None,
                extended: clock.now,
                silenced,
                _permit: permit,
            },
        );
        vec![Effect::Prepare {
            id,
            message_id,
            alerts: routed,
        }]
    }

    /// The store's (and enrichment's) answer for message `id`.
    pub fn on_prepared(&mut self, id: u64, prepared: Prepared, clock: Clock) -> Vec<Effect> {
        let Some(msg) = self.msgs.get_mut(&id) else {
            return Vec::new();
        };
        match prepared {
            Prepared::StoreFailed(e) => {
                Metrics::inc(&self.metrics.store_failures);
                tracing::error!(message_id = %msg.env.message_id, error = %e, "dedupe store failed; the message returns to the queue");
                self.remove(id);
                Vec::new()
            }
            Prepared::Ready { adds, held_until } => {
                msg.held_until = match (msg.held_until, held_until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                // What waits for a notification; a copy of what a sink took meanwhile is
                // settled here and now.
                let mut waiting = 0;
                for (sink, alert, incident) in adds {
                    if self.grouper.add(sink, alert, incident, id, clock.now) {
                        waiting += 1;
                    }
                }
                if waiting == 0 {
                    let Some(m) = self.remove(id) else {
                        return Vec::new();
                    };
                    return match m.held_until {
                        Some(until) => {
                            Metrics::inc(&self.metrics.held_elsewhere);
                            // Invisible until the other replica's claim ends (delivered,
                            // released, or its lease over), not back every visibility
                            // timeout: each return is a receive the redrive policy counts.
                            let by = hold_for(until, clock.wall_ms, self.settings.claim_lease);
                            tracing::debug!(message_id = %m.env.message_id, wait = ?by, "another replica is delivering it; the message returns when its claim ends");
                            vec![Effect::Extend {
                                ids: Vec::new(),
                                tokens: vec![m.env.token],
                                by,
                            }]
                        }
                        None => {
                            Metrics::inc(&self.metrics.duplicates);
                            tracing::debug!(message_id = %m.env.message_id, "duplicate: every routed sink has it");
                            vec![Effect::Ack(vec![m.env.token])]
                        }
                    };
                }
                if let Some(m) = self.msgs.get_mut(&id) {
                    m.stage = Stage::Delivering(waiting);
                }
                Vec::new()
            }
        }
    }

    /// A sink worker finished notification `c.id`.
    pub fn on_completed(&mut self, c: Completion, clock: Clock) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut acks = Vec::new();
        let delivered = c.outcome == Outcome::Delivered;
        for id in self.grouper.completed(c.id, delivered, clock.now) {
            let Some(m) = self.msgs.get_mut(&id) else {
                continue;
            };
            if let Stage::Delivering(n) = &mut m.stage {
                *n = n.saturating_sub(1);
            }
            m.status =
                std::mem::replace(&mut m.status, Outcome::Delivered).merge(c.outcome.clone());
            if matches!(m.stage, Stage::Delivering(n) if n > 0) {
                continue;
            }
            let delay = retry_delay(self.settings.visibility, m.retries);
            match (m.held_until, m.status.clone()) {
                (None, Outcome::Errored(why))
                    if self.draining.is_none()
                        && clock.now.saturating_duration_since(m.received) + delay
                            < MAX_IN_FLIGHT =>
                {
                    // Kept in flight (its visibility renewed) and tried again: the queue's
                    // redrive policy counts receives, so a message let go during an outage
                    // would reach the dead-letter queue without a reason after
                    // maxReceiveCount visibility timeouts.
                    m.retries += 1;
                    m.stage = Stage::Waiting(clock.now + delay);
                    m.status = Outcome::Delivered;
                    Metrics::inc(&self.metrics.retried);
                    tracing::warn!(message_id = %m.env.message_id, retries = m.retries, ?delay, reason = %why, "a sink did not take the message; it stays in flight and is tried again");
                }
                _ => {
                    let Some(m) = self.remove(id) else { continue };
                    match m.status {
                        _ if let Some(until) = m.held_until => {
                            tracing::debug!(message_id = %m.env.message_id, "another replica is delivering part of the message; it returns when that claim ends");
                            effects.push(Effect::Extend {
                                ids: Vec::new(),
                                tokens: vec![m.env.token],
                                by: hold_for(until, clock.wall_ms, self.settings.claim_lease),
                            });
                        }
                        Outcome::Rejected(why) => {
                            Metrics::inc(&self.metrics.dead_lettered);
                            tracing::error!(message_id = %m.env.message_id, reason = %why, "a sink rejected the message: to the dead-letter queue");
                            effects.push(Effect::DeadLetter {
                                env: m.env,
                                reason: format!("rejected by a sink: {why}"),
                            });
                        }
                        Outcome::Errored(why) => {
                            tracing::warn!(message_id = %m.env.message_id, reason = %why, "a sink did not take the message; it returns to the queue after its visibility timeout");
                        }
                        Outcome::Delivered => acks.push(m.env.token),
                    }
                }
            }
        }
        if !acks.is_empty() {
            effects.push(Effect::Ack(acks));
        }
        effects
    }

    /// A renewal of these messages failed: renew them again at the next tick.
    pub fn on_extend_failed(&mut self, ids: &[u64], clock: Clock) {
        let vis = self.settings.visibility;
        for id in ids {
            if let Some(m) = self.msgs.get_mut(id) {
                m.extended = clock.now.checked_sub(vis).unwrap_or(m.extended);
            }
        }
    }

    /// Stop taking work: every group is flushed, waiting retries are let go (they return
    /// after their visibility timeout), and the core is done once nothing is in flight.
    pub fn on_shutdown(&mut self, clock: Clock) {
        if self.draining.is_none() {
            tracing::info!(in_flight = self.msgs.len(), "draining");
            self.draining = Some(clock.now);
        }
    }

    /// True when draining and nothing is left, or the drain has lasted `drain`.
    pub fn done(&self, clock: Clock, drain: Duration) -> bool {
        match self.draining {
            None => false,
            Some(_) if self.msgs.is_empty() => true,
            Some(since) => {
                let over = clock.now.saturating_duration_since(since) >= drain;
                if over {
                    tracing::warn!(
                        in_flight = self.msgs.len(),
                        "drain timeout; unacknowledged messages return to the queue"
                    );
                }
                over
            }
        }
    }

    /// The passing of time: due notifications, retries and renewals.
    pub fn on_tick(&mut self, clock: Clock) -> Vec<Effect> {
        let now = clock.now;
        let mut effects = Vec::new();
        if self.draining.is_some() {
            self.grouper.flush(now);
            let waiting: Vec<u64> = self
                .msgs
                .iter()
                .filter(|(_, m)| matches!(m.stage, Stage::Waiting(_)))
                .map(|(id, _)| *id)
                .collect();
            for id in waiting {
                self.remove(id);
            }
        }
        // Failed deliveries whose wait is over: prepared again (the sinks that have it answer
        // from the dedupe store).
        let due: Vec<u64> = self
            .msgs
            .iter()
            .filter(|(_, m)| matches!(m.stage, Stage::Waiting(t) if t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(m) = self.msgs.get_mut(&id) else {
                continue;
            };
            m.stage = Stage::Preparing;
            m.held_until = None;
            let env = m.env.clone();
            let mut seen = std::mem::take(&mut m.silenced);
            let again = self.reclassify(&env, &mut seen, clock.wall_ms);
            if let Some(m) = self.msgs.get_mut(&id) {
                m.silenced = seen;
            }
            match again {
                Some(alerts) if !alerts.is_empty() => effects.push(Effect::Prepare {
                    id,
                    message_id: env.message_id,
                    alerts,
                }),
                // Nothing to alert on any more (the rules changed, or a silence holds back
                // what is left): done with it.
                _ => {
                    if let Some(m) = self.remove(id) {
                        effects.push(Effect::Ack(vec![m.env.token]));
                    }
                }
            }
        }
        for n in self.grouper.due(now) {
            effects.push(Effect::Send(n));
        }
        // Renew visibility of what has been in flight for half the timeout, but never past
        // SQS's 12 hours in flight: such a message is let go and comes back.
        let vis = self.settings.visibility;
        let expired: Vec<u64> = self
            .msgs
            .iter()
            .filter(|(_, m)| renewal(m.received, m.extended, now, vis) == Renewal::LetGo)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(m) = self.remove(id) {
                tracing::warn!(message_id = %m.env.message_id, "in flight for nearly 12 hours: let go, it comes back to the queue");
            }
        }
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        for (id, m) in self.msgs.iter_mut() {
            if renewal(m.received, m.extended, now, vis) == Renewal::Renew {
                m.extended = now;
                ids.push(*id);
                tokens.push(m.env.token.clone());
            }
        }
        if !tokens.is_empty() {
            effects.push(Effect::Extend {
                ids,
                tokens,
                by: vis,
            });
        }
        if self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60))
        {
            self.last_prune = Some(now);
            let keep = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
            effects.push(Effect::Prune {
                before_ms: clock.wall_ms.saturating_sub(keep),
            });
        }
        effects
    }

    /// A message's alerts again, for a retry (the catalog and the silences may have changed
    /// meanwhile); `seen`: its alerts silenced before.
    fn reclassify(
        &self,
        env: &Envelope,
        seen: &mut HashSet<String>,
        now_ms: i64,
    ) -> Option<Vec<Routed>> {
        let decoded = decode(&env.body).ok()?;
        match classify(&decoded, self.catalog.as_ref()) {
            Classified::Alerts(a) => {
                let a = self.unsilenced(a, &env.message_id, seen, now_ms, false);
                Some(self.routed(a, false))
            }
            Classified::Ignored(_) => None,
        }
    }

    /// Each alert with the sinks its routes choose; `first_look` counts the alerts (and
    /// says which no route takes) once per message, not again on each retry.
    fn routed(&self, alerts: Vec<Alert>, first_look: bool) -> Vec<Routed> {
        alerts
            .into_iter()
            .map(|alert| {
                let sinks = route(&alert, &self.config.routes, &self.config.default_sinks);
                if first_look {
                    self.metrics.alert(&alert.rule_id, alert.severity);
                    if sinks.is_empty() {
                        Metrics::inc(&self.metrics.unrouted);
                        tracing::warn!(rule = %alert.rule_id, account = %alert.account, "no route takes this alert");
                    }
                }
                Routed { alert, sinks }
            })
            .collect()
    }

    fn remove(&mut self, id: u64) -> Option<InFlight<P>> {
        let m = self.msgs.remove(&id)?;
        self.metrics.in_flight.dec();
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::test_catalog;
    use crate::decode::fixtures;
    use crate::dedupe::{Incident, LocalStore, MemoryStore};

    const T: &str = "2024-05-01T12:05:00.000+0000";

    /// Two sinks (0: "a", 1: "b"), every alert to both, groups by rule, wait 1 s.
    fn core() -> Core<()> {
        let text = "[source]\nqueue = \"q\"\nvisibility = \"60s\"\n[group]\nby = [\"rule\"]\nwait = \"1s\"\ninterval = \"1s\"\n[[sink]]\nname = \"a\"\ntype = \"stdout\"\n[[sink]]\nname = \"b\"\ntype = \"stdout\"\n";
        let path = std::path::Path::new("agent.toml");
        let raw = crate::config::parse(path, text).unwrap();
        let cfg = crate::config::validate(&raw, path, text, &|_| None).unwrap();
        Core::new(
            Arc::new(cfg),
            Settings {
                visibility: Duration::from_secs(60),
                claim_lease: Duration::from_secs(100),
                retention: Duration::from_secs(86_400),
            },
            Arc::new(test_catalog()),
            Arc::new(Metrics::default()),
        )
    }

    fn clock(t0: Instant, secs: u64) -> Clock {
        Clock {
            now: t0 + Duration::from_secs(secs),
            wall_ms: 1_700_000_000_000 + 1000 * secs as i64,
        }
    }

    fn env(id: &str, body: String) -> Envelope {
        Envelope {
            message_id: id.into(),
            body,
            token: format!("tok-{id}"),
            receive_count: 1,
            sent_ms: None,
        }
    }

    /// A root user's API call (one rule of the test catalog matches it).
    fn root_sign_in(account: &str, event: &str) -> String {
        let mut record = fixtures::root_sign_in(account, event, T);
        record["eventName"] = "CreateAccessKey".into();
        record["eventSource"] = "iam.amazonaws.com".into();
        fixtures::eventbridge(&record, Some(account)).to_string()
    }

    /// What the store would answer for `alerts`, as a fresh store does: every routed sink
    /// is this replica's.
    fn fresh(alerts: &[Routed]) -> Prepared {
        let store = MemoryStore::default();
        let mut adds = Vec::new();
        for r in alerts {
            let key = crate::fingerprint::incident_key(&r.alert);
            let incident: Incident = store
                .remember(
                    &key,
                    r.alert.at_ms,
                    r.alert.state,
                    Duration::from_secs(900),
                    0,
                )
                .unwrap();
            for s in &r.sinks {
                adds.push((*s, r.alert.clone(), incident));
            }
        }
        Prepared::Ready {
            adds,
            held_until: None,
        }
    }

    fn prepare(effects: &[Effect]) -> (u64, Vec<Routed>) {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Prepare { id, alerts, .. } => Some((*id, alerts.clone())),
                _ => None,
            })
            .expect("a Prepare effect")
    }

    /// A message received and prepared as a fresh store would: its id and alerts.
    fn ready(c: &mut Core<()>, name: &str, body: String, at: Clock) -> (u64, Vec<Routed>) {
        let e = c.on_received(env(name, body), (), at);
        let (id, alerts) = prepare(&e);
        assert!(c.on_prepared(id, fresh(&alerts), at).is_empty());
        (id, alerts)
    }

    /// Notification `id` ended with `outcome`.
    fn complete(c: &mut Core<()>, id: u64, outcome: Outcome, at: Clock) -> Vec<Effect> {
        c.on_completed(Completion { id, outcome }, at)
    }

    fn sends(effects: Vec<Effect>) -> Vec<Notification<u64>> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    fn acked(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .flat_map(|e| match e {
                Effect::Ack(t) => t.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn poison_is_dead_lettered_and_nothing_to_alert_on_is_acked() {
        let mut c = core();
        let t0 = Instant::now();
        let e = c.on_received(env("p", "{not json".into()), (), clock(t0, 0));
        assert!(
            matches!(&e[..], [Effect::DeadLetter { reason, .. }] if reason.contains("not JSON")),
            "{e:?}"
        );
        let quiet = fixtures::eventbridge(
            &serde_json::json!({"eventName": "DescribeInstances", "eventSource": "ec2.amazonaws.com",
                "eventID": "q1", "eventTime": T, "awsRegion": "us-east-1",
                "recipientAccountId": "111122223333", "userIdentity": {"type": "IAMUser"}}),
            Some("111122223333"),
        );
        let e = c.on_received(env("q", quiet.to_string()), (), clock(t0, 0));
        assert_eq!(acked(&e), ["tok-q"]);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn duplicates_group_into_one_notification_and_ack_when_every_sink_took_it() {
        let mut c = core();
        let t0 = Instant::now();
        // The same sign-in twice (a redelivery), and another account's.
        let mut ids = Vec::new();
        for (n, (acct, ev)) in [
            ("111122223333", "e1"),
            ("111122223333", "e1"),
            ("444455556666", "e2"),
        ]
        .iter()
        .enumerate()
        {
            let e = c.on_received(
                env(&format!("m{n}"), root_sign_in(acct, ev)),
                (),
                clock(t0, 0),
            );
            let (id, alerts) = prepare(&e);
            assert!(c.on_prepared(id, fresh(&alerts), clock(t0, 0)).is_empty());
            ids.push(id);
        }
        assert!(sends(c.on_tick(clock(t0, 0))).is_empty(), "group wait");
        let out = sends(c.on_tick(clock(t0, 1)));
        assert_eq!(out.len(), 2, "one notification per sink");
        for n in &out {
            assert_eq!(n.alerts.len(), 2, "two incidents, the duplicate folded in");
            assert_eq!(n.accounts(), ["111122223333", "444455556666"]);
        }
        // Sink a takes it: nothing acked yet, b still outstanding.
        let e = complete(&mut c, out[0].id, Outcome::Delivered, clock(t0, 2));
        assert!(acked(&e).is_empty(), "{e:?}");
        let e = complete(&mut c, out[1].id, Outcome::Delivered, clock(t0, 2));
        let mut tokens = acked(&e);
        tokens.sort();
        assert_eq!(tokens, ["tok-m0", "tok-m1", "tok-m2"]);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_rejection_dead_letters_with_the_reason_at_once_and_outweighs_a_failure() {
        let mut c = core();
        let t0 = Instant::now();
        ready(
            &mut c,
            "m",
            root_sign_in("111122223333", "e1"),
            clock(t0, 0),
        );
        let out = sends(c.on_tick(clock(t0, 1)));
        complete(
            &mut c,
            out[0].id,
            Outcome::Errored("a: HTTP 503".into()),
            clock(t0, 2),
        );
        let e = complete(
            &mut c,
            out[1].id,
            Outcome::Rejected("b: HTTP 400: bad payload".into()),
            clock(t0, 2),
        );
        match &e[..] {
            [Effect::DeadLetter { env, reason }] => {
                assert_eq!(env.token, "tok-m");
                assert_eq!(reason, "rejected by a sink: b: HTTP 400: bad payload");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_redelivered_copy_prepared_before_the_delivery_was_recorded_is_acked_not_resent() {
        let mut c = core();
        let t0 = Instant::now();
        let body = root_sign_in("111122223333", "e1");
        let (_, alerts) = ready(&mut c, "m", body.clone(), clock(t0, 0));
        let out = sends(c.on_tick(clock(t0, 1)));
        assert_eq!(out.len(), 2);
        // The queue hands the message out again (its visibility lapsed) and the store is
        // asked while the notifications are in flight: nothing recorded yet, so "fresh".
        let e = c.on_received(env("m-again", body), (), clock(t0, 1));
        let (copy, copy_alerts) = prepare(&e);
        assert_eq!(copy_alerts.len(), alerts.len());
        let mut tokens = Vec::new();
        for n in &out {
            let e = complete(&mut c, n.id, Outcome::Delivered, clock(t0, 2));
            tokens.extend(acked(&e));
        }
        assert_eq!(tokens, ["tok-m"]);
        // The stale answer arrives after both sinks took it: a duplicate, acked at once.
        let e = c.on_prepared(copy, fresh(&copy_alerts), clock(t0, 3));
        assert_eq!(acked(&e), ["tok-m-again"], "{e:?}");
        assert!(
            sends(c.on_tick(clock(t0, 10))).is_empty(),
            "never sent again"
        );
        assert_eq!(c.in_flight(), 0);
    }

    fn silence(id: &str, account: &str, starts_ms: i64, ends_ms: i64) -> Silence {
        Silence {
            id: id.into(),
            matcher: crate::config::Matcher {
                rule: vec!["root-activity".into()],
                account: vec![account.into()],
                ..Default::default()
            },
            starts_at_ms: starts_ms,
            ends_at_ms: ends_ms,
            created_by: "alice".into(),
            comment: "break-glass drill".into(),
        }
    }

    #[test]
    fn a_silenced_alert_goes_to_no_sink_and_its_message_is_acked_and_counted() {
        let mut c = core();
        let t0 = Instant::now();
        let wall = clock(t0, 0).wall_ms;
        c.set_silences(
            vec![
                silence("s1", "111122223333", wall - 1000, wall + 3_600_000),
                silence("old", "444455556666", wall - 7000, wall - 1000),
            ],
            clock(t0, 0),
        );
        assert_eq!(c.metrics.silences_active.get(), 1);
        // Matching: acknowledged at once, never prepared (no incident, no sink).
        let e = c.on_received(
            env("m", root_sign_in("111122223333", "e1")),
            (),
            clock(t0, 0),
        );
        assert_eq!(acked(&e), ["tok-m"], "{e:?}");
        assert!(!e.iter().any(|e| matches!(e, Effect::Prepare { .. })));
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.metrics.sum("orgwatch_agent_alerts_silenced_total"), 1.0);
        assert_eq!(
            c.metrics.sum("orgwatch_agent_alerts_total"),
            1.0,
            "still an alert classified"
        );
        // Another account (and one whose silence has ended): delivered.
        for (name, acct) in [("n", "999988887777"), ("o", "444455556666")] {
            let (_, alerts) = ready(&mut c, name, root_sign_in(acct, name), clock(t0, 0));
            assert_eq!(alerts.len(), 1);
        }
        assert_eq!(c.metrics.sum("orgwatch_agent_alerts_silenced_total"), 1.0);
        // The silence expired (the store says so at the next refresh): delivered again.
        c.set_silences(
            vec![silence("s1", "111122223333", wall - 1000, wall + 500)],
            clock(t0, 1),
        );
        assert_eq!(c.metrics.silences_active.get(), 0);
        let e = c.on_received(
            env("p", root_sign_in("111122223333", "e2")),
            (),
            clock(t0, 1),
        );
        assert!(
            e.iter().any(|e| matches!(e, Effect::Prepare { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn a_silence_added_while_a_delivery_waits_for_its_retry_ends_it_counted_once() {
        let mut c = core();
        let t0 = Instant::now();
        ready(
            &mut c,
            "m",
            root_sign_in("111122223333", "e1"),
            clock(t0, 0),
        );
        let out = sends(c.on_tick(clock(t0, 1)));
        for n in &out {
            complete(&mut c, n.id, Outcome::Errored("503".into()), clock(t0, 2));
        }
        assert_eq!(c.in_flight(), 1, "waits for its retry");
        let wall = clock(t0, 0).wall_ms;
        c.set_silences(
            vec![silence("s1", "111122223333", wall, wall + 3_600_000)],
            clock(t0, 3),
        );
        // The retry finds its only alert silenced: acknowledged, not prepared again.
        let e = c.on_tick(clock(t0, 62));
        assert_eq!(acked(&e), ["tok-m"], "{e:?}");
        assert!(!e.iter().any(|e| matches!(e, Effect::Prepare { .. })));
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.metrics.sum("orgwatch_agent_alerts_silenced_total"), 1.0);
    }

    #[test]
    fn outcomes_merge_by_precedence_rejected_errored_delivered() {
        use Outcome::*;
        let (e, r) = (|w: &str| Errored(w.into()), |w: &str| Rejected(w.into()));
        assert_eq!(Delivered.merge(Delivered), Delivered);
        assert_eq!(Delivered.merge(e("503")), e("503"));
        assert_eq!(e("503").merge(Delivered), e("503"));
        assert_eq!(e("503").merge(r("400")), r("400"));
        assert_eq!(r("400").merge(e("503")), r("400"));
        assert_eq!(
            e("first").merge(e("second")),
            e("first"),
            "the first reason stays"
        );
        assert_eq!(r("first").merge(r("second")), r("first"));
    }

    #[test]
    fn a_failed_delivery_stays_in_flight_renewed_and_is_prepared_again_later() {
        let mut c = core();
        let t0 = Instant::now();
        let (id, alerts) = ready(
            &mut c,
            "m",
            root_sign_in("111122223333", "e1"),
            clock(t0, 0),
        );
        let out = sends(c.on_tick(clock(t0, 1)));
        complete(&mut c, out[0].id, Outcome::Delivered, clock(t0, 2));
        let e = complete(
            &mut c,
            out[1].id,
            Outcome::Errored("b: HTTP 503".into()),
            clock(t0, 2),
        );
        assert!(e.is_empty(), "neither acked nor let go: {e:?}");
        assert_eq!(c.in_flight(), 1);
        // Renewed at half the visibility timeout while it waits.
        let e = c.on_tick(clock(t0, 30));
        assert!(
            e.iter()
                .any(|e| matches!(e, Effect::Extend { ids, tokens, by }
                if ids == &[id] && tokens == &["tok-m"] && *by == Duration::from_secs(60))),
            "{e:?}"
        );
        // A renewal that failed is tried at the next tick.
        c.on_extend_failed(&[id], clock(t0, 30));
        let e = c.on_tick(clock(t0, 31));
        assert!(
            e.iter().any(|e| matches!(e, Effect::Extend { .. })),
            "{e:?}"
        );
        // After the visibility timeout (the first retry's delay): prepared again.
        let e = c.on_tick(clock(t0, 62));
        let (again, _) = prepare(&e);
        assert_eq!(again, id);
        // This time sink a has it (the store says so), b is tried again.
        let Prepared::Ready { adds, .. } = fresh(&alerts) else {
            unreachable!()
        };
        let only_b = adds.into_iter().filter(|(s, _, _)| *s == 1).collect();
        c.on_prepared(
            id,
            Prepared::Ready {
                adds: only_b,
                held_until: None,
            },
            clock(t0, 62),
        );
        let out = sends(c.on_tick(clock(t0, 63)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sink, 1);
        let e = complete(&mut c, out[0].id, Outcome::Delivered, clock(t0, 64));
        assert_eq!(acked(&e), ["tok-m"]);
    }

    #[test]
    fn held_by_another_replica_it_waits_for_that_claim() {
        let mut c = core();
        let t0 = Instant::now();
        let e = c.on_received(
            env("m", root_sign_in("111122223333", "e1")),
            (),
            clock(t0, 0),
        );
        let (id, _) = prepare(&e);
        let until = clock(t0, 0).wall_ms + 40_000;
        let e = c.on_prepared(
            id,
            Prepared::Ready {
                adds: Vec::new(),
                held_until: Some(until),
            },
            clock(t0, 0),
        );
        match &e[..] {
            [Effect::Extend { ids, tokens, by }] => {
                assert!(ids.is_empty(), "let go of: the other replica delivers it");
                assert_eq!(tokens, &["tok-m"]);
                assert_eq!(*by, Duration::from_secs(42));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.in_flight(), 0);
        // Every sink has it already: a duplicate, acked.
        let e = c.on_received(
            env("d", root_sign_in("111122223333", "e1")),
            (),
            clock(t0, 1),
        );
        let (id, _) = prepare(&e);
        let e = c.on_prepared(
            id,
            Prepared::Ready {
                adds: Vec::new(),
                held_until: None,
            },
            clock(t0, 1),
        );
        assert_eq!(acked(&e), ["tok-d"]);
        // The store failed: the message is let go and comes back after its timeout.
        let e = c.on_received(
            env("s", root_sign_in("111122223333", "e2")),
            (),
            clock(t0, 1),
        );
        let (id, _) = prepare(&e);
        assert!(
            c.on_prepared(id, Prepared::StoreFailed("throttled".into()), clock(t0, 1))
                .is_empty()
        );
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn draining_flushes_groups_and_lets_waiting_retries_go() {
        let mut c = core();
        let t0 = Instant::now();
        ready(
            &mut c,
            "m",
            root_sign_in("111122223333", "e1"),
            clock(t0, 0),
        );
        ready(
            &mut c,
            "w",
            root_sign_in("444455556666", "e2"),
            clock(t0, 0),
        );
        assert!(!c.done(clock(t0, 0), Duration::from_secs(30)));
        c.on_shutdown(clock(t0, 0));
        // Flushed at once, without the group wait.
        let out = sends(c.on_tick(clock(t0, 0)));
        assert_eq!(out.len(), 2);
        complete(&mut c, out[0].id, Outcome::Delivered, clock(t0, 0));
        // While draining a failure is not retried: the message returns to the queue.
        let e = complete(
            &mut c,
            out[1].id,
            Outcome::Errored("503".into()),
            clock(t0, 0),
        );
        assert!(acked(&e).is_empty());
        assert!(
            c.done(clock(t0, 0), Duration::from_secs(30)),
            "nothing left in flight"
        );
    }

    #[test]
    fn failed_deliveries_wait_longer_each_time_up_to_fifteen_minutes() {
        let v = Duration::from_secs(10);
        assert_eq!(retry_delay(v, 0), v);
        assert_eq!(retry_delay(v, 1), Duration::from_secs(20));
        assert_eq!(retry_delay(v, 3), Duration::from_secs(80));
        assert_eq!(retry_delay(v, 30), Duration::from_secs(900));
        assert!(MAX_IN_FLIGHT < Duration::from_secs(12 * 3600));
    }

    #[test]
    fn a_held_message_waits_for_the_holders_claim_not_a_whole_lease() {
        let lease = Duration::from_secs(100);
        assert_eq!(hold_for(60_000, 10_000, lease), Duration::from_secs(52));
        // Expired or nearly so: back soon, not at once.
        assert_eq!(hold_for(10_000, 10_000, lease), Duration::from_secs(5));
        assert_eq!(hold_for(0, 10_000, lease), Duration::from_secs(5));
        // A holder's clock far ahead cannot keep it away longer than a lease.
        assert_eq!(hold_for(i64::MAX, 0, lease), lease);
    }

    #[test]
    fn visibility_is_renewed_at_half_time_and_never_past_twelve_hours_in_flight() {
        let vis = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(renewal(t0, t0, at(29), vis), Renewal::Keep);
        assert_eq!(renewal(t0, t0, at(30), vis), Renewal::Renew);
        // Renewed at 30 s: kept until 60 s.
        assert_eq!(renewal(t0, at(30), at(59), vis), Renewal::Keep);
        assert_eq!(renewal(t0, at(30), at(60), vis), Renewal::Renew);
        // Eleven and a half hours after its receive, one more renewal of 60 s would pass the
        // 12 hours SQS allows in flight only after the margin: let go before that.
        let last = MAX_IN_FLIGHT.as_secs() - 60;
        assert_eq!(
            renewal(t0, at(last - 31), at(last - 1), vis),
            Renewal::Renew
        );
        assert_eq!(renewal(t0, at(last - 1), at(last), vis), Renewal::LetGo);
        // A long timeout is let go earlier: the renewal itself may not cross the limit.
        let long = Duration::from_secs(3600);
        assert_eq!(
            renewal(
                t0,
                at(0),
                MAX_IN_FLIGHT.checked_sub(long).map(|d| t0 + d).unwrap(),
                long
            ),
            Renewal::LetGo
        );
        assert!(at(last) + vis <= t0 + Duration::from_secs(12 * 3600));
    }
}
