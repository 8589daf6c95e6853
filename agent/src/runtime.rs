//! The runtime: receivers -> core -> one worker per sink, joined by channels.
//!
//! * Receivers (`source.concurrency` of them) long-poll the source. Each message takes a
//!   permit of a semaphore of `max_in_flight`, so at most that many are in flight and
//!   receiving pauses (backpressure) when the pipeline is full. Receiver -> core is a
//!   bounded channel.
//! * The core ([`crate::core::Core`]) makes every decision (decode, classify, route, group,
//!   settle, retry, renew) with no I/O; this loop feeds it events and carries out the effects
//!   it returns, each in a task of its own: the dedupe store's work in batches (everything
//!   waiting, up to [`MAX_BATCH`] messages, as one call per kind; as many batches at once as
//!   the store takes), enrichment (at most [`MAX_ENRICHING`] messages at once), acks, dead
//!   letters, renewals.
//! * Each sink has its own worker, so a failing sink backs off without delaying the others.
//!   Core -> worker channels are unbounded: what can be queued there is bounded by the
//!   in-flight permits (each notification holds at least one in-flight message).
//! * The silences are read from the store at start and every `dedupe.silence_refresh` by a
//!   task of their own, and handed to the core, which applies them to every alert (never a
//!   store read per alert). A read that fails keeps the silences read before.
//! * On shutdown the receivers stop, every group is flushed, and the core waits (up to
//!   `drain`) for outstanding deliveries before returning; unacknowledged messages return
//!   to the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::classify::RuleCatalog;
use crate::config::Config;
use crate::core::{Clock, Completion, Core, Effect, Outcome, Prepared, Routed, Settings};
use crate::dedupe::{Claim, Incident, Store};
use crate::enrich::{Enricher, Request};
use crate::fingerprint::IncidentKey;
use crate::fingerprint::incident_key;
use crate::group::Notification;
use crate::metrics::Metrics;
use crate::model::{Alert, AlertState, Enrichment, Origin};
use crate::silence::Silence;
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

/// How many messages are enriched (CloudWatch Logs queries) at once. Each holds an in-flight
/// permit too, so the queue's backpressure still applies.
const MAX_ENRICHING: usize = 64;

/// The most messages whose alerts go to the store in one batch.
const MAX_BATCH: usize = 256;

/// Runs until `shutdown` turns true, then drains. The decisions are the core's
/// ([`crate::core::Core`]); this loop only feeds it events and carries out its effects, each
/// I/O in a task of its own, so the loop itself never waits on the store, AWS or a sink.
pub async fn run<S: Source>(source: Arc<S>, p: Pipeline, mut shutdown: watch::Receiver<bool>) {
    let p = Arc::new(p);
    let cfg = &p.config;
    // The silences before the first message: none is delivered that one already silences.
    let first_silences = read_silences(&p.store, &p.metrics).await;
    let (silences_tx, mut silences_rx) = mpsc::unbounded_channel::<Vec<Silence>>();
    tokio::spawn(refresh_silences(
        p.store.clone(),
        cfg.dedupe.silence_refresh,
        silences_tx,
        p.metrics.clone(),
    ));
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
    let (prepared_tx, mut prepared_rx) = mpsc::unbounded_channel::<(u64, Prepared)>();
    let (renew_tx, mut renew_rx) = mpsc::unbounded_channel::<Vec<u64>>();
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(batch_jobs(p.clone(), jobs_rx, prepared_tx.clone()));
    let settings = Settings {
        visibility: cfg.source.visibility,
        claim_lease: claim_lease(&p),
        retention: cfg.dedupe.retention,
    };
    let mut core: Core<OwnedSemaphorePermit> = Core::new(
        Arc::new(cfg.clone()),
        settings,
        p.catalog.clone(),
        p.metrics.clone(),
    );
    let clock = || Clock {
        now: Instant::now(),
        wall_ms: now_ms(),
    };
    if let Some(s) = first_silences {
        core.set_silences(s, clock());
    }
    let shell = Shell {
        p: p.clone(),
        source: source.clone(),
        sink_txs,
        jobs: jobs_tx,
        renew_failed: renew_tx,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut receivers_done = false;
    loop {
        let effects = tokio::select! {
            got = env_rx.recv(), if !receivers_done => match got {
                Some((env, permit)) => core.on_received(env, permit, clock()),
                None => {
                    receivers_done = true;
                    Vec::new()
                }
            },
            Some((id, prepared)) = prepared_rx.recv() => core.on_prepared(id, prepared, clock()),
            Some(c) = done_rx.recv() => core.on_completed(c, clock()),
            Some(ids) = renew_rx.recv() => {
                core.on_extend_failed(&ids, clock());
                Vec::new()
            }
            Some(silences) = silences_rx.recv() => {
                core.set_silences(silences, clock());
                Vec::new()
            }
            _ = tick.tick() => core.on_tick(clock()),
            _ = shutdown.changed() => {
                core.on_shutdown(clock());
                Vec::new()
            }
        };
        shell.carry_out(effects);
        if (receivers_done || *shutdown.borrow()) && core.done(clock(), p.drain) {
            break;
        }
    }
    for r in receivers {
        r.abort();
    }
}

/// The silences in the store, or `None` (said at WARN and counted) when it cannot be read.
async fn read_silences(store: &Store, metrics: &Metrics) -> Option<Vec<Silence>> {
    match store.silences().await {
        Ok(s) => Some(s),
        Err(e) => {
            Metrics::inc(&metrics.silence_refresh_errors);
            tracing::warn!(error = %e, "cannot read the silences; the ones read before stay in use");
            None
        }
    }
}

/// Reads the silences every `every` and hands them to the core, until the core is gone.
async fn refresh_silences(
    store: Store,
    every: Duration,
    tx: mpsc::UnboundedSender<Vec<Silence>>,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::time::sleep(every).await;
        if tx.is_closed() {
            return;
        }
        if let Some(s) = read_silences(&store, &metrics).await
            && tx.send(s).is_err()
        {
            return;
        }
    }
}

/// Carries out the core's effects.
struct Shell<S> {
    p: Arc<Pipeline>,
    source: Arc<S>,
    sink_txs: Vec<mpsc::UnboundedSender<Notification<u64>>>,
    /// To the store's batcher ([`batch_jobs`]).
    jobs: mpsc::UnboundedSender<Job>,
    renew_failed: mpsc::UnboundedSender<Vec<u64>>,
}

/// One message's alerts to prepare.
struct Job {
    id: u64,
    message_id: String,
    alerts: Vec<Routed>,
}

impl<S: Source> Shell<S> {
    fn carry_out(&self, effects: Vec<Effect>) {
        let mut acks: Vec<String> = Vec::new();
        for effect in effects {
            match effect {
                Effect::Prepare {
                    id,
                    message_id,
                    alerts,
                } => {
                    let job = Job {
                        id,
                        message_id,
                        alerts,
                    };
                    if let Err(e) = self.jobs.send(job) {
                        // The batcher is gone (only at exit): the message stays unacked.
                        tracing::error!(id = e.0.id, "the dedupe batcher stopped");
                    }
                }
                Effect::Send(n) => {
                    if let Some(tx) = self.sink_txs.get(n.sink)
                        && let Err(e) = tx.send(n)
                    {
                        // The worker is gone (only at exit): the messages stay unacked.
                        tracing::error!(id = e.0.id, "sink worker stopped");
                    }
                }
                Effect::Ack(tokens) => acks.extend(tokens),
                Effect::DeadLetter { env, reason } => {
                    let source = self.source.clone();
                    tokio::spawn(async move {
                        if let Err(e) = source.dead_letter(env, reason).await {
                            tracing::warn!(error = %e, "cannot dead-letter the message; it returns after its visibility timeout");
                        }
                    });
                }
                Effect::Extend { ids, tokens, by } => {
                    let source = self.source.clone();
                    let failed = self.renew_failed.clone();
                    tokio::spawn(async move {
                        if let Err(e) = source.extend(tokens, by).await {
                            if ids.is_empty() {
                                tracing::warn!(error = %e, "cannot hold the message back; it returns after its visibility timeout");
                            } else {
                                // Tried again at the next tick, well before the timeout ends.
                                tracing::warn!(error = %e, "cannot renew visibility; retrying");
                                let _ = failed.send(ids);
                            }
                        }
                    });
                }
                Effect::Prune { before_ms } => {
                    let store = self.p.store.clone();
                    tokio::spawn(async move {
                        match store.prune(before_ms).await {
                            Ok(n) if n > 0 => {
                                tracing::debug!(forgotten = n, "pruned dedupe records")
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot prune the dedupe store"),
                        }
                    });
                }
            }
        }
        if !acks.is_empty() {
            let source = self.source.clone();
            let metrics = self.p.metrics.clone();
            tokio::spawn(async move {
                let n = acks.len() as u64;
                match source.ack(acks).await {
                    Ok(()) => {
                        metrics.acked.inc_by(n);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot delete messages; they will be redelivered and recognised as duplicates")
                    }
                }
            });
        }
    }
}

/// The store's batcher: takes every job waiting (up to [`MAX_BATCH`]) as one batch, and
/// hands it to a task of its own, with at most [`crate::dedupe::DedupeStore::parallel_batches`]
/// batches in the store's hands at once. While they are busy, jobs wait here and the next
/// batch is larger: under load the store is asked in fewer, bigger calls.
async fn batch_jobs(
    p: Arc<Pipeline>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    done: mpsc::UnboundedSender<(u64, Prepared)>,
) {
    let slots = Arc::new(Semaphore::new(p.store.parallel_batches().max(1)));
    let enriching = Arc::new(Semaphore::new(MAX_ENRICHING));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = jobs.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let (p, done, enriching) = (p.clone(), done.clone(), enriching.clone());
        tokio::spawn(async move {
            let _slot = slot;
            prepare(&p, batch, &done, &enriching).await;
        });
    }
}

/// The store's work for a batch of messages: every alert placed in its incident (one
/// `remember_many`), every routed delivery claimed (one `claim_many`); then each message's
/// alarms enriched in a task of its own, so the next batch does not wait for CloudWatch
/// Logs. Each message is answered on `done`; a store failure fails the whole batch (each
/// message returns to the queue after its visibility timeout).
async fn prepare(
    p: &Pipeline,
    batch: Vec<Job>,
    done: &mpsc::UnboundedSender<(u64, Prepared)>,
    enriching: &Arc<Semaphore>,
) {
    let fail = |batch: Vec<Job>, e: String| {
        for j in batch {
            let _ = done.send((j.id, Prepared::StoreFailed(e.clone())));
        }
    };
    let items: Vec<(IncidentKey, i64, AlertState)> = batch
        .iter()
        .flat_map(|j| {
            j.alerts
                .iter()
                .map(|r| (incident_key(&r.alert), r.alert.at_ms, r.alert.state))
        })
        .collect();
    let placed = match p
        .store
        .remember_many(&items, p.config.dedupe.window, now_ms())
        .await
    {
        Ok(v) if v.len() == items.len() => v,
        Ok(_) => {
            return fail(
                batch,
                "the store placed fewer alerts than it was given".into(),
            );
        }
        Err(e) => return fail(batch, e.to_string()),
    };
    // Every (job, alert, sink) routed, beside what the store is asked about it.
    let mut routed: Vec<(usize, usize, usize)> = Vec::new();
    let mut asks: Vec<(Incident, AlertState, &str)> = Vec::new();
    let mut next = placed.iter();
    for (j, job) in batch.iter().enumerate() {
        for (a, r) in job.alerts.iter().enumerate() {
            let Some(incident) = next.next() else {
                continue;
            };
            for &s in &r.sinks {
                let Some(sink) = p.sinks.get(s) else { continue };
                routed.push((j, a, s));
                asks.push((*incident, r.alert.state, sink.name.as_str()));
            }
        }
    }
    let claims = match p.store.claim_many(&asks, claim_lease(p), now_ms()).await {
        Ok(c) if c.len() == asks.len() => c,
        Ok(_) => {
            return fail(
                batch,
                "the store answered fewer claims than it was asked".into(),
            );
        }
        Err(e) => return fail(batch, e.to_string()),
    };
    let mut outcome: Vec<(Adds, Option<i64>)> = batch.iter().map(|_| (Vec::new(), None)).collect();
    for (((j, a, s), claim), (incident, _, _)) in routed.into_iter().zip(claims).zip(asks) {
        let (adds, held_until) = &mut outcome[j];
        match claim {
            Claim::Delivered => {}
            Claim::Held { until_ms } => {
                *held_until = Some(held_until.map_or(until_ms, |h: i64| h.max(until_ms)));
            }
            Claim::Mine => adds.push((s, batch[j].alerts[a].alert.clone(), incident)),
        }
    }
    for (job, (adds, held_until)) in batch.into_iter().zip(outcome) {
        match &p.enricher {
            Some(enricher) if adds.iter().any(|(_, a, _)| wants_enrichment(a)) => {
                let (enricher, metrics, done) = (enricher.clone(), p.metrics.clone(), done.clone());
                let gate = enriching.clone();
                tokio::spawn(async move {
                    let Ok(_slot) = gate.acquire_owned().await else {
                        return;
                    };
                    tracing::debug!(message_id = %job.message_id, "enriching");
                    let adds = enrich(enricher.as_ref(), adds, &metrics).await;
                    let _ = done.send((job.id, Prepared::Ready { adds, held_until }));
                });
            }
            _ => {
                let _ = done.send((job.id, Prepared::Ready { adds, held_until }));
            }
        }
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
            metrics.received.inc();
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
            .deliver_with_retry(&n, |outcome, took| {
                if let Some(c) = counters {
                    c.attempted(outcome, took);
                }
            })
            .await;
        let outcome = match result {
            Final::Delivered { attempts } => {
                if let Some(c) = counters {
                    c.delivered.inc();
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
                Outcome::Delivered
            }
            Final::Failed {
                attempts,
                reason,
                permanent,
            } => {
                if let Some(c) = counters {
                    c.failed.inc();
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
                let why = format!("{}: {reason}", sink.name);
                if permanent {
                    Outcome::Rejected(why)
                } else {
                    Outcome::Errored(why)
                }
            }
        };
        if done.send(Completion { id: n.id, outcome }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            store,
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
                silence_refresh: Duration::from_secs(30),
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
            metrics.dead_lettered.get(),
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
        while metrics.sinks[1].failed.get() == 0 && started.elapsed() < Duration::from_secs(8) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(metrics.sinks[1].retries.get() >= 1);
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
        assert_eq!(metrics.enriched.get(), 1);
        assert_eq!(metrics.enrich_failed.get(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
