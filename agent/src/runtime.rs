//! The runtime: receivers -> core -> one worker per sink, joined by channels.
//!
//! * Receivers (`source.concurrency` of them) long-poll the source. Each message takes a
//!   permit of a semaphore of `max_in_flight`, so at most that many are in flight and
//!   receiving pauses (backpressure) when the pipeline is full. Receiver -> core is a
//!   bounded channel.
//! * The core owns the pure stages: decode, classify, fingerprint/dedupe, route, group.
//!   A message is acknowledged when every sink it was routed to accepted every alert in it
//!   (or all of them had it already: a duplicate). Undecodable messages go to the DLQ path
//!   with their reason. While in flight, visibility is renewed at half its timeout.
//! * Each sink has its own worker, so a failing sink backs off without delaying the others.
//!   Core -> worker channels are unbounded: what can be queued there is bounded by the
//!   in-flight permits (each notification holds at least one in-flight message).
//! * On shutdown the receivers stop, every group is flushed, and the core waits (up to
//!   `drain`) for outstanding deliveries before returning; unacknowledged messages return
//!   to the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::classify::{Classified, RuleCatalog, classify};
use crate::config::Config;
use crate::decode::decode;
use crate::dedupe::{Claim, Incident, Store};
use crate::enrich::{Enricher, Request};
use crate::fingerprint::incident_key;
use crate::group::{Grouper, Notification};
use crate::metrics::Metrics;
use crate::model::{Alert, AlertState, Enrichment, Origin};
use crate::route::route;
use crate::sinks::{Final, Sink};
use crate::source::{Envelope, Source};

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the runtime is built from.
pub struct Pipeline {
    pub config: Config,
    pub store: Store,
    pub catalog: Arc<dyn RuleCatalog>,
    pub sinks: Vec<Arc<Sink>>,
    pub metrics: Arc<Metrics>,
    /// How long to wait for outstanding deliveries on shutdown.
    pub drain: Duration,
    /// Who / what / where for alarms (`None`: alarms go out as CloudWatch sent them).
    pub enricher: Option<Arc<dyn Enricher>>,
}

/// Alerts of one message, routed and placed, waiting for the grouper.
type Adds = Vec<(usize, Alert, Incident)>;

/// Alerts of message `id` back from enrichment.
struct Enriched {
    id: u64,
    adds: Adds,
}

struct InFlight {
    env: Envelope,
    outstanding: usize,
    /// A sink did not take it: (permanently, why).
    failed: Option<(bool, String)>,
    /// Deliveries tried again so far, and when it was first received.
    retries: u32,
    received: Instant,
    /// Waiting to be tried again at this time (visibility still renewed meanwhile).
    retry_at: Option<Instant>,
    /// Another replica holds some of its alerts until this time (Unix ms): never
    /// acknowledged here.
    held: Option<i64>,
    extended: Instant,
    _permit: OwnedSemaphorePermit,
}

struct Completion {
    id: u64,
    /// `None`: delivered; else (permanently, why).
    failed: Option<(bool, String)>,
}

/// How long a message stays in flight at most: SQS allows 12 hours from its receive
/// (SQS developer guide, "Visibility timeout": "the maximum is 12 hours"; the total time a
/// message is in flight counts from its first receive), with a margin.
const MAX_IN_FLIGHT: Duration = Duration::from_secs(11 * 3600 + 30 * 60);

/// The wait before a failed delivery is tried again: the visibility timeout, doubled per
/// retry, at most 15 minutes (the sink's own `retry_for` retries came before it).
fn retry_delay(visibility: Duration, retries: u32) -> Duration {
    visibility
        .saturating_mul(1u32 << retries.min(10))
        .min(Duration::from_secs(900))
}

/// What a message in flight needs at `now`.
#[derive(Debug, PartialEq, Eq)]
enum Renewal {
    /// Its visibility has more than half its timeout left.
    Keep,
    /// Half its visibility timeout has passed since the last renewal: renew it for another.
    Renew,
    /// Another renewal would take it past SQS's 12 hours in flight, where
    /// ChangeMessageVisibility fails ("Visibility timeout", SQS developer guide): let it go,
    /// it comes back to the queue.
    LetGo,
}

fn renewal(received: Instant, extended: Instant, now: Instant, vis: Duration) -> Renewal {
    if now.saturating_duration_since(received) + vis >= MAX_IN_FLIGHT {
        Renewal::LetGo
    } else if now.saturating_duration_since(extended) >= vis / 2 {
        Renewal::Renew
    } else {
        Renewal::Keep
    }
}

/// Runs until `shutdown` turns true, then drains.
pub async fn run<S: Source>(source: Arc<S>, p: Pipeline, mut shutdown: watch::Receiver<bool>) {
    let cfg = &p.config;
    let permits = Arc::new(Semaphore::new(cfg.source.max_in_flight));
    let (env_tx, mut env_rx) = mpsc::channel::<(Envelope, OwnedSemaphorePermit)>(100);
    let mut receivers = Vec::new();
    for _ in 0..cfg.source.concurrency {
        receivers.push(tokio::spawn(receive_loop(
            source.clone(),
            permits.clone(),
            env_tx.clone(),
            shutdown.clone(),
            p.metrics.clone(),
        )));
    }
    drop(env_tx);

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let mut sink_txs = Vec::new();
    for (i, sink) in p.sinks.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel::<Notification<u64>>();
        sink_txs.push(tx);
        tokio::spawn(sink_worker(
            i,
            sink.clone(),
            rx,
            done_tx.clone(),
            p.store.clone(),
            p.metrics.clone(),
        ));
    }

    let (enriched_tx, mut enriched_rx) = mpsc::unbounded_channel::<Enriched>();
    let mut grouper: Grouper<u64> = Grouper::new(cfg.group.clone(), cfg.dedupe.window);
    let mut msgs: HashMap<u64, InFlight> = HashMap::new();
    let mut next_msg = 0u64;
    let mut acks: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    let mut draining: Option<Instant> = None;
    let mut receivers_done = false;

    loop {
        tokio::select! {
            got = env_rx.recv(), if !receivers_done => match got {
                Some((env, permit)) => {
                    next_msg += 1;
                    let id = next_msg;
                    handle(&p, &source, &mut grouper, &mut msgs, &mut acks, &enriched_tx, id, env, permit, Carry::fresh()).await;
                }
                None => receivers_done = true,
            },
            Some(e) = enriched_rx.recv() => {
                let now = Instant::now();
                for (s, alert, incident) in e.adds {
                    grouper.add(s, alert, incident, e.id, now);
                }
            }
            Some(c) = done_rx.recv() => {
                let now = Instant::now();
                for token in grouper.completed(c.id, c.failed.is_none(), now) {
                    let Some(m) = msgs.get_mut(&token) else { continue };
                    m.outstanding = m.outstanding.saturating_sub(1);
                    if let Some(f) = &c.failed {
                        // A rejection outweighs a transient failure of the same message.
                        if !m.failed.as_ref().is_some_and(|(permanent, _)| *permanent) {
                            m.failed = Some(f.clone());
                        }
                    }
                    if m.outstanding > 0 {
                        continue;
                    }
                    match (m.held.is_some(), m.failed.clone()) {
                        (false, Some((false, why))) if draining.is_none() && m.received.elapsed() + retry_delay(cfg.source.visibility, m.retries) < MAX_IN_FLIGHT => {
                            // Kept in flight (its visibility renewed) and tried again: the
                            // queue's redrive policy counts receives, so a message let go
                            // during an outage would reach the dead-letter queue without a
                            // reason after maxReceiveCount visibility timeouts.
                            let delay = retry_delay(cfg.source.visibility, m.retries);
                            m.retries += 1;
                            m.retry_at = Some(now + delay);
                            Metrics::inc(&p.metrics.retried);
                            tracing::warn!(message_id = %m.env.message_id, retries = m.retries, ?delay, reason = %why, "a sink did not take the message; it stays in flight and is tried again");
                        }
                        _ => {
                            let Some(m) = msgs.remove(&token) else { continue };
                            p.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                            match m.failed {
                                _ if let Some(until_ms) = m.held => {
                                    tracing::debug!(message_id = %m.env.message_id, "another replica is delivering part of the message; it returns when that claim ends");
                                    if let Err(e) = source.extend(vec![m.env.token], hold_for(until_ms, now_ms(), claim_lease(&p))).await {
                                        tracing::warn!(error = %e, "cannot hold the message back; it returns after its visibility timeout");
                                    }
                                }
                                Some((true, why)) => {
                                    Metrics::inc(&p.metrics.dead_lettered);
                                    tracing::error!(message_id = %m.env.message_id, reason = %why, "a sink rejected the message: to the dead-letter queue");
                                    if let Err(e) = source.dead_letter(m.env, format!("rejected by a sink: {why}")).await {
                                        tracing::warn!(error = %e, "cannot dead-letter the message; it returns after its visibility timeout");
                                    }
                                }
                                Some((false, why)) => tracing::warn!(message_id = %m.env.message_id, reason = %why, "a sink did not take the message; it returns to the queue after its visibility timeout"),
                                None => acks.push(m.env.token),
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if draining.is_some() {
                    grouper.flush(now);
                    // Waiting retries return to the queue after their visibility timeout.
                    msgs.retain(|_, m| m.retry_at.is_none());
                }
                // Failed deliveries whose wait is over: through the pipeline again (the
                // sinks that have it answer Delivered from the dedupe store).
                let due: Vec<u64> = msgs
                    .iter()
                    .filter(|(_, m)| m.retry_at.is_some_and(|t| t <= now))
                    .map(|(id, _)| *id)
                    .collect();
                for old in due {
                    let Some(m) = msgs.remove(&old) else { continue };
                    p.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                    next_msg += 1;
                    let carry = Carry { retries: m.retries, received: m.received };
                    handle(&p, &source, &mut grouper, &mut msgs, &mut acks, &enriched_tx, next_msg, m.env, m._permit, carry).await;
                }
                for n in grouper.due(now) {
                    if let Some(tx) = sink_txs.get(n.sink)
                        && let Err(e) = tx.send(n)
                    {
                        // The worker is gone (only at exit): the messages stay unacked.
                        tracing::error!(id = e.0.id, "sink worker stopped");
                    }
                }
                // Renew visibility of what has been in flight for half the timeout, but
                // never past SQS's 12 hours in flight (ChangeMessageVisibility fails
                // beyond them): such a message is let go and comes back.
                let vis = cfg.source.visibility;
                let expired: Vec<u64> = msgs
                    .iter()
                    .filter(|(_, m)| renewal(m.received, m.extended, now, vis) == Renewal::LetGo)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    if let Some(m) = msgs.remove(&id) {
                        p.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(message_id = %m.env.message_id, "in flight for nearly 12 hours: let go, it comes back to the queue");
                    }
                }
                let renew: Vec<(u64, String)> = msgs
                    .iter_mut()
                    .filter(|(_, m)| renewal(m.received, m.extended, now, vis) == Renewal::Renew)
                    .map(|(id, m)| {
                        m.extended = now;
                        (*id, m.env.token.clone())
                    })
                    .collect();
                if !renew.is_empty() {
                    let tokens = renew.iter().map(|(_, t)| t.clone()).collect();
                    if let Err(e) = source.extend(tokens, vis).await {
                        // Tried again at the next tick, well before the timeout ends.
                        tracing::warn!(error = %e, "cannot renew visibility; retrying");
                        for (id, _) in &renew {
                            if let Some(m) = msgs.get_mut(id) {
                                m.extended = now.checked_sub(vis).unwrap_or(m.extended);
                            }
                        }
                    }
                }
                if last_prune.elapsed() >= Duration::from_secs(60) {
                    last_prune = Instant::now();
                    let before = now_ms() - i64::try_from(cfg.dedupe.retention.as_millis()).unwrap_or(i64::MAX);
                    match p.store.prune(before).await {
                        Ok(n) if n > 0 => tracing::debug!(forgotten = n, "pruned dedupe records"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot prune the dedupe store"),
                    }
                }
            }
            _ = shutdown.changed(), if draining.is_none() => {
                tracing::info!(in_flight = msgs.len(), "draining");
                draining = Some(Instant::now());
            }
        }
        if !acks.is_empty() {
            let n = acks.len() as u64;
            match source.ack(std::mem::take(&mut acks)).await {
                Ok(()) => {
                    p.metrics.acked.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete messages; they will be redelivered and recognised as duplicates")
                }
            }
        }
        if let Some(since) = draining {
            if receivers_done && msgs.is_empty() {
                break;
            }
            if since.elapsed() >= p.drain {
                tracing::warn!(
                    in_flight = msgs.len(),
                    "drain timeout; unacknowledged messages return to the queue"
                );
                break;
            }
        }
    }
    for r in receivers {
        r.abort();
    }
}

async fn receive_loop<S: Source>(
    source: Arc<S>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<(Envelope, OwnedSemaphorePermit)>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let batch = tokio::select! {
            p = permits.clone().acquire_many_owned(10) => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let received = tokio::select! {
            r = source.receive(10) => r,
            _ = shutdown.changed() => return,
        };
        let envs = match received {
            Ok(e) => {
                metrics.receive_failures.store(0, Ordering::Relaxed);
                metrics.last_receive_ms.store(now_ms(), Ordering::Relaxed);
                e
            }
            Err(e) => {
                // Not ready while the queue cannot be read (/readyz answers 503).
                let n = metrics.receive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(error = %e, failures = n, "receive failed; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut batch = Some(batch);
        for env in envs {
            metrics.received.fetch_add(1, Ordering::Relaxed);
            if let Some(sent) = env.sent_ms {
                metrics
                    .queue_age_ms
                    .store(now_ms() - sent, Ordering::Relaxed);
            }
            let Some(permit) = batch.as_mut().and_then(|b| b.split(1)) else {
                break;
            };
            if tx.send((env, permit)).await.is_err() {
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle<S: Source>(
    p: &Pipeline,
    source: &Arc<S>,
    grouper: &mut Grouper<u64>,
    msgs: &mut HashMap<u64, InFlight>,
    acks: &mut Vec<String>,
    enriched: &mpsc::UnboundedSender<Enriched>,
    id: u64,
    env: Envelope,
    permit: OwnedSemaphorePermit,
    carry: Carry,
) {
    let m = &p.metrics;
    let decoded = match decode(&env.body) {
        Ok(d) => d,
        Err(reason) => {
            Metrics::inc(&m.dead_lettered);
            if reason.is_forged() {
                Metrics::inc(&m.forged);
            }
            tracing::warn!(message_id = %env.message_id, receive_count = env.receive_count, %reason, "undecodable message: to the dead-letter queue");
            if let Err(e) = source.dead_letter(env, reason.to_string()).await {
                tracing::warn!(error = %e, "cannot release the message for redrive; it returns after its visibility timeout");
            }
            return;
        }
    };
    Metrics::inc(&m.decoded);
    let alerts = match classify(&decoded, p.catalog.as_ref()) {
        Classified::Alerts(a) => a,
        Classified::Ignored(why) => {
            Metrics::inc(&m.ignored);
            tracing::debug!(message_id = %env.message_id, %why, "nothing to alert on");
            acks.push(env.token);
            return;
        }
    };
    let cfg = &p.config;
    let now = Instant::now();
    let mut outstanding = 0;
    let mut held: Option<i64> = None;
    let lease = claim_lease(p);
    let mut adds: Adds = Vec::new();
    for alert in alerts {
        Metrics::inc(&m.alerts);
        let key = incident_key(&alert);
        let incident = match p
            .store
            .remember(&key, alert.at_ms, alert.state, cfg.dedupe.window, now_ms())
            .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(message_id = %env.message_id, error = %e, "dedupe store failed; the message returns to the queue");
                return;
            }
        };
        let sinks = route(&alert, &cfg.routes, &cfg.default_sinks);
        if sinks.is_empty() {
            Metrics::inc(&m.unrouted);
            tracing::warn!(rule = %alert.rule_id, account = %alert.account, "no route takes this alert");
        }
        for s in sinks {
            let Some(sink) = p.sinks.get(s) else { continue };
            match p
                .store
                .claim(&incident, alert.state, &sink.name, lease, now_ms())
                .await
            {
                Ok(Claim::Delivered) => {}
                Ok(Claim::Held { until_ms }) => {
                    held = Some(held.map_or(until_ms, |h: i64| h.max(until_ms)));
                }
                Ok(Claim::Mine) => {
                    adds.push((s, alert.clone(), incident));
                    outstanding += 1;
                }
                Err(e) => {
                    tracing::error!(message_id = %env.message_id, error = %e, "dedupe store failed; the message returns to the queue");
                    return;
                }
            }
        }
    }
    if outstanding == 0
        && let Some(until_ms) = held
    {
        Metrics::inc(&m.held_elsewhere);
        // Invisible until the other replica's claim ends (delivered, released, or its
        // lease over), not back every visibility timeout: each return is a receive the
        // redrive policy counts.
        let wait = hold_for(until_ms, now_ms(), lease);
        tracing::debug!(message_id = %env.message_id, ?wait, "another replica is delivering it; the message returns when its claim ends");
        if let Err(e) = source.extend(vec![env.token], wait).await {
            tracing::warn!(error = %e, "cannot hold the message back; it returns after its visibility timeout");
        }
        return;
    }
    if outstanding == 0 {
        Metrics::inc(&m.duplicates);
        tracing::debug!(message_id = %env.message_id, "duplicate: every routed sink has it");
        acks.push(env.token);
        return;
    }
    match &p.enricher {
        // Enrichment talks to AWS: it runs beside the core, which stays free; the message
        // is in flight meanwhile (its visibility is renewed like any other).
        Some(enricher) if adds.iter().any(|(_, a, _)| wants_enrichment(a)) => {
            let enricher = enricher.clone();
            let tx = enriched.clone();
            let metrics = p.metrics.clone();
            tokio::spawn(async move {
                let adds = enrich(enricher.as_ref(), adds, &metrics).await;
                // The core is gone only at exit: the message then stays unacknowledged.
                let _ = tx.send(Enriched { id, adds });
            });
        }
        _ => {
            for (s, alert, incident) in adds {
                grouper.add(s, alert, incident, id, now);
            }
        }
    }
    m.in_flight.fetch_add(1, Ordering::Relaxed);
    msgs.insert(
        id,
        InFlight {
            env,
            outstanding,
            failed: None,
            retries: carry.retries,
            received: carry.received,
            retry_at: None,
            held,
            extended: now,
            _permit: permit,
        },
    );
}

/// What a message tried again keeps from its earlier attempts.
struct Carry {
    retries: u32,
    received: Instant,
}

impl Carry {
    fn fresh() -> Carry {
        Carry {
            retries: 0,
            received: Instant::now(),
        }
    }
}

/// How long a claim on a delivery lasts: past the longest this agent may take to deliver
/// (group wait and interval, then every sink's retries and last attempt), with a margin.
fn claim_lease(p: &Pipeline) -> Duration {
    let sinks = p
        .config
        .sinks
        .iter()
        .map(|s| s.retry_for + s.timeout)
        .max()
        .unwrap_or_default();
    p.config.group.wait + p.config.group.interval + sinks + Duration::from_secs(60)
}

/// How long a message another replica holds stays invisible: until that replica's claim ends
/// (SQS ChangeMessageVisibility counts from the call: "Changing a message's visibility
/// timeout", SQS developer guide), with a margin for the clocks of two hosts, at least a few
/// seconds and at most this agent's own lease (a holder's lease is never longer) and the time
/// SQS allows in flight.
fn hold_for(until_ms: i64, now_ms: i64, lease: Duration) -> Duration {
    let left = Duration::from_millis(u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0));
    (left + Duration::from_secs(2))
        .max(Duration::from_secs(5))
        .min(lease.max(Duration::from_secs(5)))
        .min(MAX_IN_FLIGHT)
}

/// A firing alarm whose actor is unknown.
fn wants_enrichment(a: &Alert) -> bool {
    matches!(a.origin, Origin::Alarm { .. })
        && a.state == AlertState::Firing
        && a.actor.is_none()
        && a.enrichment.is_none()
}

/// Enriches every alarm of `adds`, once per incident.
async fn enrich(enricher: &dyn Enricher, mut adds: Adds, metrics: &Metrics) -> Adds {
    let mut found: HashMap<(crate::fingerprint::Fingerprint, String), crate::enrich::Evidence> =
        HashMap::new();
    for (_, alert, incident) in adds.iter_mut() {
        if !wants_enrichment(alert) {
            continue;
        }
        let key = (incident.fingerprint(), alert.rule_id.clone());
        if !found.contains_key(&key) {
            let metric = match &alert.origin {
                Origin::Alarm { metric, .. } => metric.clone(),
                Origin::Event { .. } => None,
            };
            let request = Request {
                account: alert.account.clone(),
                region: alert.region.clone(),
                rule_id: alert.rule_id.clone(),
                metric,
                at_ms: alert.at_ms,
            };
            let evidence = enricher.enrich(&request).await;
            match &evidence.enrichment {
                Enrichment::Failed { reason } => {
                    Metrics::inc(&metrics.enrich_failed);
                    tracing::warn!(rule = %alert.rule_id, account = %alert.account, region = %alert.region, %reason, "enrichment failed; the alert goes out without who/what/where");
                }
                _ => Metrics::inc(&metrics.enriched),
            }
            found.insert(key.clone(), evidence);
        }
        if let Some(evidence) = found.get(&key) {
            if evidence.actor.is_some() {
                alert.actor = evidence.actor.clone();
            }
            alert.enrichment = Some(evidence.enrichment.clone());
        }
    }
    adds
}

async fn sink_worker(
    index: usize,
    sink: Arc<Sink>,
    mut rx: mpsc::UnboundedReceiver<Notification<u64>>,
    done: mpsc::UnboundedSender<Completion>,
    store: Store,
    metrics: Arc<Metrics>,
) {
    let counters = metrics.sinks.get(index);
    while let Some(n) = rx.recv().await {
        let result = sink
            .deliver_with_retry(&n, |_| {
                if let Some(c) = counters {
                    c.retries.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
        let failed = match result {
            Final::Delivered { attempts } => {
                if let Some(c) = counters {
                    c.delivered.fetch_add(1, Ordering::Relaxed);
                }
                let items: Vec<(Incident, AlertState)> = n
                    .alerts
                    .iter()
                    .map(|a| (a.incident, a.alert.state))
                    .collect();
                if let Err(e) = store.record_delivery(&items, &sink.name, now_ms()).await {
                    tracing::error!(sink = %sink.name, error = %e, "delivered but not recorded: a redelivery may repeat it");
                }
                tracing::info!(sink = %sink.name, alerts = n.alerts.len(), attempts, repeat = n.repeat, "delivered");
                None
            }
            Final::Failed {
                attempts,
                reason,
                permanent,
            } => {
                if let Some(c) = counters {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::error!(sink = %sink.name, alerts = n.alerts.len(), attempts, %reason, permanent, "delivery failed");
                let items: Vec<(Incident, AlertState)> = n
                    .alerts
                    .iter()
                    .map(|a| (a.incident, a.alert.state))
                    .collect();
                if let Err(e) = store.release(&items, &sink.name).await {
                    tracing::warn!(sink = %sink.name, error = %e, "cannot release the claims; they end with their lease");
                }
                Some((permanent, format!("{}: {reason}", sink.name)))
            }
        };
        if done.send(Completion { id: n.id, failed }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    use crate::classify::test_catalog;
    use crate::config::{
        DedupeSpec, GroupLabel, GroupSpec, Rate, SinkKind, SinkSpec, SourceSpec, StoreSpec,
    };
    use crate::decode::fixtures;
    use crate::dedupe::MemoryStore;
    use crate::source::memory::MemorySource;
    use std::num::NonZeroU32;
    use std::path::PathBuf;

    /// A pipeline over `cfg`: its sinks built, the test catalog, a memory store, no enricher.
    fn test_pipeline(
        cfg: Config,
        store: Arc<MemoryStore>,
        metrics: Arc<Metrics>,
        drain: Duration,
    ) -> Pipeline {
        let http = crate::sinks::http::HttpClient::new();
        let sinks = cfg
            .sinks
            .iter()
            .map(|s| Arc::new(Sink::build(s, &http, None).unwrap()))
            .collect();
        Pipeline {
            config: cfg,
            store: Store::Local(store),
            catalog: Arc::new(test_catalog()),
            sinks,
            metrics,
            drain,
            enricher: None,
        }
    }

    fn config(sinks: Vec<SinkSpec>) -> Config {
        let n = sinks.len();
        Config {
            source: SourceSpec {
                queue: "q".into(),
                region: None,
                regions: Vec::new(),
                allow_no_redrive: false,
                concurrency: 2,
                long_poll: Duration::from_secs(1),
                visibility: Duration::from_secs(30),
                max_in_flight: 100,
            },
            dedupe: DedupeSpec {
                window: Duration::from_secs(900),
                retention: Duration::from_secs(3600),
                store: StoreSpec::File {
                    path: PathBuf::new(),
                },
            },
            group: GroupSpec {
                by: vec![GroupLabel::Rule],
                wait: Duration::from_millis(300),
                interval: Duration::from_millis(300),
                repeat: Duration::from_secs(3600),
            },
            sinks,
            routes: Vec::new(),
            default_sinks: (0..n).collect(),
            listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            enrich: crate::config::EnrichSpec::default(),
            classify: crate::config::ClassifySpec::default(),
            manifest: None,
        }
    }

    fn file_sink(name: &str, path: &std::path::Path) -> SinkSpec {
        SinkSpec {
            name: name.into(),
            rate: Rate {
                count: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
                per: Duration::from_secs(1),
            },
            retry_for: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            kind: SinkKind::File {
                path: path.to_path_buf(),
            },
        }
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_once_duplicates_acked_poison_dead_lettered() {
        let dir = std::env::temp_dir().join(format!("orgwatch-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
        let cfg = config(vec![file_sink("a", &a), file_sink("b", &b)]);
        let source = Arc::new(MemorySource::new(Duration::from_secs(30), 2));
        let t = "2024-05-01T12:00:00.000+0000";
        let accounts = ["111111111111", "222222222222", "333333333333"];
        for acct in accounts {
            source.send(
                fixtures::sns(
                    &fixtures::alarm("orgwatch-root-activity", acct, "ALARM", t).to_string(),
                )
                .to_string(),
            );
        }
        // The same alarm state change again, and the raw event behind the first one.
        source.send(fixtures::alarm("orgwatch-root-activity", accounts[0], "ALARM", t).to_string());
        source
            .send(fixtures::root_sign_in(accounts[0], "ev-1", "2024-05-01T11:58:00Z").to_string());
        source.send("{ not json");
        let metrics = Arc::new(Metrics::new(["a".to_string(), "b".to_string()]));
        let store = Arc::new(MemoryStore::default());
        let pipeline = test_pipeline(cfg, store.clone(), metrics.clone(), Duration::from_secs(5));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(source.clone(), pipeline, rx));
        let deadline = Instant::now() + Duration::from_secs(10);
        while (source.acked().len() < 5 || source.dead().is_empty()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tx.send(true);
        task.await.unwrap();
        for path in [&a, &b] {
            let docs = lines(path);
            // root-activity: one notification with the three accounts; the raw event's
            // second rule (console-no-mfa) is its own group.
            let root: Vec<_> = docs
                .iter()
                .filter(|d| d["group"]["rule"] == "root-activity")
                .collect();
            assert_eq!(root.len(), 1, "{docs:?}");
            assert_eq!(root[0]["accounts"], serde_json::json!(accounts), "{docs:?}");
            assert_eq!(root[0]["alerts"].as_array().map(Vec::len), Some(3));
            // The alarm and the raw event of the same sign-in are one alert, with the
            // event's principal and source IP.
            assert_eq!(
                root[0]["alerts"][0]["actor"]["source_ip"], "203.0.113.7",
                "{docs:?}"
            );
        }
        assert_eq!(source.acked().len(), 5);
        assert_eq!(source.dead().len(), 1);
        assert_eq!(source.remaining(), 0);
        assert_eq!(
            metrics.dead_lettered.load(Ordering::Relaxed),
            2,
            "received twice before redrive"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_sink_leaves_the_message_unacked_and_the_other_sink_unaffected() {
        let dir = std::env::temp_dir().join(format!("orgwatch-rt2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        // A file sink whose directory does not exist fails every attempt (Retry).
        let bad = dir.join("missing-dir").join("bad.jsonl");
        let mut bad_spec = file_sink("bad", &bad);
        bad_spec.retry_for = Duration::from_secs(2);
        let cfg = config(vec![file_sink("good", &good), bad_spec]);
        let source = Arc::new(MemorySource::new(Duration::from_secs(30), 5));
        source.send(
            fixtures::alarm(
                "orgwatch-root-activity",
                "111111111111",
                "ALARM",
                "2024-05-01T12:00:00.000+0000",
            )
            .to_string(),
        );
        let metrics = Arc::new(Metrics::new(["good".to_string(), "bad".to_string()]));
        let store = Arc::new(MemoryStore::default());
        let pipeline = test_pipeline(cfg, store.clone(), metrics.clone(), Duration::from_secs(1));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(source.clone(), pipeline, rx));
        let started = Instant::now();
        while lines(&good).is_empty() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the good sink waited for the bad one"
        );
        assert_eq!(lines(&good).len(), 1);
        while metrics.sinks[1].failed.load(Ordering::Relaxed) == 0
            && started.elapsed() < Duration::from_secs(8)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(metrics.sinks[1].retries.load(Ordering::Relaxed) >= 1);
        assert!(
            source.acked().is_empty(),
            "Retry must leave the message unacked"
        );
        assert_eq!(source.remaining(), 1);
        // The message comes back: now the directory exists, only the bad sink gets it.
        std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
        let _ = tx.send(true);
        task.await.unwrap();
        let source2 = Arc::new(MemorySource::new(Duration::from_secs(30), 5));
        source2.send(
            fixtures::alarm(
                "orgwatch-root-activity",
                "111111111111",
                "ALARM",
                "2024-05-01T12:00:00.000+0000",
            )
            .to_string(),
        );
        let cfg = config(vec![file_sink("good", &good), file_sink("bad", &bad)]);
        let (tx, rx) = watch::channel(false);
        let pipeline = test_pipeline(cfg, store, metrics, Duration::from_secs(1));
        let task = tokio::spawn(run(source2.clone(), pipeline, rx));
        let started = Instant::now();
        while source2.acked().is_empty() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(true);
        task.await.unwrap();
        assert_eq!(source2.acked().len(), 1, "Delivered acks it");
        assert_eq!(lines(&good).len(), 1, "the good sink already had it");
        assert_eq!(lines(&bad).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Answers one account with an actor and fails (slowly) for every other.
    struct TestEnricher;

    impl crate::enrich::Enricher for TestEnricher {
        fn enrich<'a>(&'a self, r: &'a Request) -> crate::enrich::EnrichFuture<'a> {
            Box::pin(async move {
                if r.account == "111111111111" {
                    crate::enrich::Evidence {
                        actor: Some(crate::model::Actor {
                            principal: Some("arn:aws:iam::111111111111:user/eve".into()),
                            source_ip: Some("192.0.2.9".into()),
                            ..Default::default()
                        }),
                        enrichment: Enrichment::Found {
                            matched: 2,
                            scanned: 10,
                            truncated: false,
                        },
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    crate::enrich::Evidence {
                        actor: None,
                        enrichment: Enrichment::Failed {
                            reason: "log group not found".into(),
                        },
                    }
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alarms_are_enriched_and_a_failed_enrichment_still_delivers() {
        let dir = std::env::temp_dir().join(format!("orgwatch-rt-enrich-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.jsonl");
        let cfg = config(vec![file_sink("out", &out)]);
        let source = Arc::new(MemorySource::new(Duration::from_secs(30), 5));
        let t = "2024-05-01T12:00:00.000+0000";
        for acct in ["111111111111", "222222222222"] {
            source.send(fixtures::alarm("orgwatch-root-activity", acct, "ALARM", t).to_string());
        }
        let metrics = Arc::new(Metrics::new(["out".to_string()]));
        let pipeline = Pipeline {
            enricher: Some(Arc::new(TestEnricher)),
            ..test_pipeline(
                cfg,
                Arc::new(MemoryStore::default()),
                metrics.clone(),
                Duration::from_secs(5),
            )
        };
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(source.clone(), pipeline, rx));
        let deadline = Instant::now() + Duration::from_secs(10);
        while source.acked().len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tx.send(true);
        task.await.unwrap();
        assert_eq!(
            source.acked().len(),
            2,
            "both alarms delivered and acknowledged"
        );
        let docs = lines(&out);
        let alerts: Vec<&serde_json::Value> = docs
            .iter()
            .flat_map(|d| d["alerts"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(alerts.len(), 2, "{docs:?}");
        let by = |acct: &str| {
            alerts
                .iter()
                .find(|a| a["account"] == acct)
                .copied()
                .cloned()
                .unwrap_or_default()
        };
        let found = by("111111111111");
        assert_eq!(found["actor"]["source_ip"], "192.0.2.9");
        assert_eq!(found["enrichment"]["status"], "found");
        assert_eq!(found["enrichment"]["matched"], 2);
        let failed = by("222222222222");
        assert!(failed["actor"].is_null());
        assert_eq!(failed["enrichment"]["status"], "failed");
        assert_eq!(failed["enrichment"]["reason"], "log group not found");
        assert_eq!(metrics.enriched.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.enrich_failed.load(Ordering::Relaxed), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
