//! Enrich: who / what / where behind an alarm.
//!
//! A CloudWatch alarm says "cis-4.3 crossed its threshold in account X", never who did it.
//! For each firing alarm the enricher assumes the member role into the alarm's account,
//! reads that account's orgwatch log group over the alarm's own evaluation window (plus a
//! `lookback` for delivery delay), evaluates the rule's deployed metric filter pattern
//! locally with `shared::pattern` (the same engine the hub's patterns are verified with),
//! and attaches the latest matching CloudTrail record as the alert's actor: principal,
//! event name and source, source IP, user agent, event time.
//!
//! Bounded: at most `max_events` log events are examined and the whole lookup gives up
//! after `timeout`. Never blocking: an enrichment failure is recorded on the alert
//! ([`Enrichment::Failed`]) and the alert is delivered without an actor.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::aws::{ClientFactory, Clients};
use shared::pattern::{Event, Pattern};

use crate::classify::RuleCatalog;
use crate::decode::{AlarmMetric, actor_of};
use crate::model::{Actor, Enrichment};

/// What to enrich: one firing alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub account: String,
    pub region: String,
    pub rule_id: String,
    pub metric: Option<AlarmMetric>,
    /// The alarm's state change, Unix milliseconds.
    pub at_ms: i64,
}

/// What enrichment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The latest matching event's who / what / where.
    pub actor: Option<Actor>,
    pub enrichment: Enrichment,
}

pub type EnrichFuture<'a> = Pin<Box<dyn Future<Output = Evidence> + Send + 'a>>;

/// The enrichment stage. Infallible by contract: failures are part of the [`Evidence`].
pub trait Enricher: Send + Sync {
    fn enrich<'a>(&'a self, request: &'a Request) -> EnrichFuture<'a>;
}

/// The bounds of one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole lookup (role, filters, events) gives up after this.
    pub timeout: Duration,
    /// Log events examined at most.
    pub max_events: usize,
    /// Searched before the alarm's evaluation window, for delivery delay.
    pub lookback: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_events: 2000,
            lookback: Duration::from_secs(300),
        }
    }
}

/// How long a member's deployed metric filter patterns are reused.
const FILTER_CACHE_TTL: Duration = Duration::from_secs(600);
/// The window searched when the alarm did not say its period.
const DEFAULT_WINDOW_MS: i64 = 300_000;
/// Searched after the state change: log timestamps may trail the alarm slightly.
const AFTER_MS: i64 = 60_000;

type FilterKey = (String, String, String, String);

/// Enriches from the member account's CloudWatch Logs log group.
pub struct LogsEnricher {
    factory: ClientFactory,
    log_group: String,
    limits: Limits,
    catalog: Arc<dyn RuleCatalog>,
    filters: Mutex<HashMap<FilterKey, (Instant, Vec<Pattern>)>>,
}

impl LogsEnricher {
    /// `factory` must be configured with the member role (and external ID) to assume.
    pub fn new(
        factory: ClientFactory,
        log_group: impl Into<String>,
        limits: Limits,
        catalog: Arc<dyn RuleCatalog>,
    ) -> LogsEnricher {
        LogsEnricher {
            factory,
            log_group: log_group.into(),
            limits,
            catalog,
            filters: Mutex::new(HashMap::new()),
        }
    }

    /// The alarm metric's filter patterns as deployed in the member's log group.
    async fn deployed_patterns(
        &self,
        clients: &Clients,
        req: &Request,
        metric: &AlarmMetric,
    ) -> Result<Vec<Pattern>, String> {
        let key = (
            req.account.clone(),
            req.region.clone(),
            metric.namespace.clone(),
            metric.name.clone(),
        );
        if let Ok(cache) = self.filters.lock()
            && let Some((at, patterns)) = cache.get(&key)
            && at.elapsed() < FILTER_CACHE_TTL
        {
            return Ok(patterns.clone());
        }
        let out = clients
            .logs()
            .describe_metric_filters()
            .log_group_name(&self.log_group)
            .metric_name(&metric.name)
            .metric_namespace(&metric.namespace)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot read the metric filters of {}: {}",
                    self.log_group,
                    clients.failure("DescribeMetricFilters", e)
                )
            })?;
        let patterns: Vec<Pattern> = out
            .metric_filters()
            .iter()
            .filter_map(|f| {
                let text = f.filter_pattern()?;
                match Pattern::parse(text) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(account = %req.account, region = %req.region, filter = f.filter_name().unwrap_or_default(), error = %e, "a deployed filter pattern does not parse; enrichment falls back to the pack");
                        None
                    }
                }
            })
            .collect();
        if let Ok(mut cache) = self.filters.lock() {
            cache.insert(key, (Instant::now(), patterns.clone()));
        }
        Ok(patterns)
    }

    async fn lookup(&self, req: &Request) -> Result<Evidence, String> {
        let clients = self
            .factory
            .for_account(&req.account)
            .await
            .map_err(|e| match e.failure() {
                Some(f) => format!("cannot assume the member role in {}: {f}", req.account),
                None => format!("cannot assume the member role in {}: {e}", req.account),
            })?
            .in_region(&req.region);
        let patterns = match &req.metric {
            Some(m) => self.deployed_patterns(&clients, req, m).await?,
            None => Vec::new(),
        };
        let window = req
            .metric
            .as_ref()
            .map(AlarmMetric::window_ms)
            .unwrap_or(DEFAULT_WINDOW_MS);
        let lookback = i64::try_from(self.limits.lookback.as_millis()).unwrap_or(i64::MAX);
        let from = req.at_ms.saturating_sub(window).saturating_sub(lookback);
        let to = req.at_ms.saturating_add(AFTER_MS);
        // With exactly one deployed pattern, CloudWatch Logs filters server-side; the local
        // evaluation below decides either way.
        let server_filter = match patterns.as_slice() {
            [only] => Some(only.to_compact_string()),
            _ => None,
        };
        let page_limit = i32::try_from(self.limits.max_events.clamp(1, 10_000)).unwrap_or(10_000);
        let mut scanned = 0usize;
        let mut matched = 0usize;
        let mut latest: Option<(i64, Value)> = None;
        let mut truncated = false;
        // FilterLogEvents answers oldest first (CloudWatch Logs API reference,
        // FilterLogEvents: "results are returned ... sorted by the time"), so with a cap on
        // the events read, the call nearest the alarm could be past it. The window is read
        // in slices from its end backwards; the first slice with a match holds the latest.
        'slices: for (start, end) in slices_newest_first(from, to) {
            let mut token: Option<String> = None;
            loop {
                let out = clients
                    .logs()
                    .filter_log_events()
                    .log_group_name(&self.log_group)
                    .start_time(start)
                    .end_time(end)
                    .set_filter_pattern(server_filter.clone())
                    .limit(page_limit)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot read {}: {}",
                            self.log_group,
                            clients.failure("FilterLogEvents", e)
                        )
                    })?;
                for ev in out.events() {
                    if scanned >= self.limits.max_events {
                        truncated = true;
                        break;
                    }
                    scanned += 1;
                    let message = ev.message().unwrap_or_default();
                    let Some(record) = cloudtrail_record(message) else {
                        continue;
                    };
                    let hit = if patterns.is_empty() {
                        self.catalog
                            .matching(&record)
                            .iter()
                            .any(|r| r.id == req.rule_id)
                    } else {
                        let event = Event::from_message(message);
                        patterns.iter().any(|p| p.matches(&event))
                    };
                    if !hit {
                        continue;
                    }
                    matched += 1;
                    let at = ev.timestamp().unwrap_or_default();
                    if latest.as_ref().is_none_or(|(t, _)| at >= *t) {
                        latest = Some((at, record));
                    }
                }
                match out.next_token {
                    Some(t) if !t.is_empty() && !truncated => token = Some(t),
                    _ => break,
                }
            }
            if latest.is_some() || truncated {
                break 'slices;
            }
        }
        Ok(match latest {
            Some((_, record)) => Evidence {
                actor: Some(actor_of(&record)),
                enrichment: Enrichment::Found {
                    matched,
                    scanned,
                    truncated,
                },
            },
            None => Evidence {
                actor: None,
                enrichment: Enrichment::NotFound { scanned, truncated },
            },
        })
    }
}

/// `[from, to]` cut into slices of at least a minute (at most 8), newest first; each
/// slice's bounds are inclusive milliseconds, as FilterLogEvents takes them.
pub fn slices_newest_first(from: i64, to: i64) -> Vec<(i64, i64)> {
    if to <= from {
        return vec![(from, to)];
    }
    let len = ((to - from + 1 + 7) / 8).max(60_000);
    let mut out = Vec::new();
    let mut end = to;
    while end >= from {
        let start = end.saturating_sub(len - 1).max(from);
        out.push((start, end));
        if start == from {
            break;
        }
        end = start - 1;
    }
    out
}

/// The CloudTrail record in a log message: the message itself (account trail delivery) or
/// the `detail` of an EventBridge event (EventBridge delivery).
fn cloudtrail_record(message: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(message).ok()?;
    if value.get("detail-type").is_some()
        && let Some(detail) = value.get("detail")
    {
        return Some(detail.clone());
    }
    value.get("eventName").is_some().then_some(value)
}

impl Enricher for LogsEnricher {
    fn enrich<'a>(&'a self, request: &'a Request) -> EnrichFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.limits.timeout, self.lookup(request)).await {
                Ok(Ok(evidence)) => evidence,
                Ok(Err(reason)) => Evidence {
                    actor: None,
                    enrichment: Enrichment::Failed { reason },
                },
                Err(_) => Evidence {
                    actor: None,
                    enrichment: Enrichment::Failed {
                        reason: format!("timed out after {:?}", self.limits.timeout),
                    },
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_read_newest_first_in_slices_that_cover_it_once() {
        let (from, to) = (1_000_000, 1_000_000 + 20 * 60_000);
        let s = slices_newest_first(from, to);
        assert_eq!(s.len(), 8);
        assert_eq!(s[0].1, to);
        assert_eq!(s.last().map(|x| x.0), Some(from));
        for w in s.windows(2) {
            assert_eq!(w[1].1 + 1, w[0].0, "contiguous, no overlap: {s:?}");
        }
        // A short window: one-minute slices.
        let s = slices_newest_first(0, 150_000);
        assert_eq!(s, vec![(90_001, 150_000), (30_001, 90_000), (0, 30_000)]);
        assert_eq!(slices_newest_first(5, 5), vec![(5, 5)]);
    }

    #[test]
    fn records_come_from_trail_messages_and_eventbridge_envelopes() {
        let bare = r#"{"eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com"}"#;
        assert_eq!(
            cloudtrail_record(bare).and_then(|r| r["eventName"].as_str().map(str::to_string)),
            Some("ConsoleLogin".to_string())
        );
        let wrapped = r#"{"detail-type":"AWS Console Sign In via CloudTrail","detail":{"eventName":"ConsoleLogin"}}"#;
        assert_eq!(
            cloudtrail_record(wrapped).and_then(|r| r["eventName"].as_str().map(str::to_string)),
            Some("ConsoleLogin".to_string())
        );
        assert_eq!(cloudtrail_record("not json"), None);
        assert_eq!(cloudtrail_record(r#"{"other":1}"#), None);
    }
}
