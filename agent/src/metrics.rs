//! The agent's metrics for Prometheus (`/metrics`), on `prometheus-client`'s [`Registry`].
//!
//! Every metric is registered once, in [`Metrics::new`], under the prefix
//! `orgwatch_agent_`; the fields are handles to the registered metrics (a
//! prometheus-client counter, gauge or histogram is a shared pointer, so incrementing the
//! field is incrementing what is exposed). Labelled families:
//!
//! * `orgwatch_agent_alerts_total{rule,severity}`: alerts classified;
//! * `orgwatch_agent_alerts_silenced_total{rule}`: alerts a silence kept from the sinks;
//! * `orgwatch_agent_sink_delivered_total{sink}`, `_sink_failed_total{sink}`,
//!   `_sink_retries_total{sink}`: per sink, created for every configured sink at start-up
//!   so that each series exists (at 0) before its first event;
//! * `orgwatch_agent_delivery_duration_seconds{sink}`: a histogram of how long each
//!   delivery attempt took at the destination (after the sink's rate limiter), with
//!   buckets from 50 ms to 30 s ([`DELIVERY_BUCKETS`]).
//!
//! The exposition is the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]): what the hub's
//! `/metrics` speaks too, and what every scraper reads; Prometheus would also take
//! OpenMetrics, but some other scrapers do not.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::model::Severity;
use crate::sinks::Outcome;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = shared::ops::METRICS_CONTENT_TYPE;

/// Upper bounds (seconds) of the delivery-latency histogram's buckets: a webhook usually
/// answers in tens to hundreds of milliseconds; a sink's timeout is at most tens of seconds.
pub const DELIVERY_BUCKETS: [f64; 11] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0];

/// Labels of the alert counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub rule: String,
    pub severity: &'static str,
}

/// Labels of the silenced counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

/// Labels of the per-sink metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

type HistogramFamily = Family<SinkLabels, Histogram, fn() -> Histogram>;

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

/// The metrics of one sink: handles to its series in the `{sink}` families.
#[derive(Debug, Clone)]
pub struct SinkCounters {
    pub name: String,
    pub delivered: Counter,
    pub failed: Counter,
    pub retries: Counter,
    /// Seconds each delivery attempt took.
    pub duration: Histogram,
}

impl SinkCounters {
    /// One delivery attempt ended in `outcome` after `took`: timed, and counted as a retry
    /// unless delivered or rejected.
    pub fn attempted(&self, outcome: &Outcome, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        if matches!(outcome, Outcome::Retry(_) | Outcome::RetryAfter(..)) {
            self.retries.inc();
        }
    }
}

/// Every metric of the agent.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub received: Counter,
    pub decoded: Counter,
    pub dead_lettered: Counter,
    /// Of those, CloudTrail-shaped events refused as not sent by AWS.
    pub forged: Counter,
    /// Messages kept in flight and tried again after a sink did not take them.
    pub retried: Counter,
    /// Messages the dedupe store could not prepare (they return to the queue after their
    /// visibility timeout and are tried again).
    pub store_failures: Counter,
    pub ignored: Counter,
    /// Alerts classified, by rule and severity: count one with [`Metrics::alert`].
    pub alerts: Family<AlertLabels, Counter>,
    pub duplicates: Counter,
    pub unrouted: Counter,
    /// Alerts an active silence kept from the sinks (logged at INFO with the silence), by
    /// rule: count one with [`Metrics::silenced`].
    pub silenced: Family<RuleLabels, Counter>,
    /// Silences active at the last refresh.
    pub silences_active: Gauge,
    /// Reads of the silences from the store that failed (the ones read before stay in use).
    pub silence_refresh_errors: Counter,
    pub acked: Counter,
    /// Messages left for another replica that is delivering their alerts.
    pub held_elsewhere: Counter,
    /// Alarms enriched with the events behind them / whose lookup failed or timed out.
    pub enriched: Counter,
    pub enrich_failed: Counter,
    pub in_flight: Gauge,
    /// Receives that failed in a row (0 once one succeeds): not ready while above 0. Not
    /// exposed (readiness says it).
    pub receive_failures: AtomicU64,
    /// Age of the last received message at receipt (now - SentTimestamp), milliseconds;
    /// exposed in seconds.
    pub queue_age_ms: AtomicI64,
    /// When the last receive succeeded (Unix ms; 0: never); exposed in seconds.
    pub last_receive_ms: AtomicI64,
    /// Heartbeat calls made / that failed / withheld because the pipeline was unhealthy.
    pub heartbeats_sent: Counter,
    pub heartbeats_failed: Counter,
    pub heartbeats_withheld: Counter,
    /// Rule manifests read and put in use after a change / reads or uses that failed.
    pub manifest_loads: Counter,
    pub manifest_errors: Counter,
    /// Per configured sink, in configuration order (the runtime's sink index).
    pub sinks: Vec<SinkCounters>,
    // Set from the millisecond atomics above when rendered.
    queue_age_seconds: Gauge<f64, AtomicU64>,
    last_receive_seconds: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(std::iter::empty())
    }
}

/// A counter registered under `name` (the encoder appends `_total`).
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help_text(help), c.clone());
    c
}

/// The registry ends every help text with a period; ours are written as sentences.
fn help_text(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

impl Metrics {
    pub fn new(sink_names: impl IntoIterator<Item = String>) -> Metrics {
        let mut r = Registry::with_prefix("orgwatch_agent");
        let received = counter(
            &mut r,
            "messages_received",
            "Messages received from the queue.",
        );
        let decoded = counter(&mut r, "messages_decoded", "Messages decoded.");
        let held_elsewhere = counter(
            &mut r,
            "messages_held_elsewhere",
            "Messages left to return later because another replica is delivering their alerts.",
        );
        let enriched = counter(
            &mut r,
            "alarms_enriched",
            "Alarms enriched with the CloudTrail events behind them.",
        );
        let enrich_failed = counter(
            &mut r,
            "alarms_enrich_failed",
            "Alarm enrichments that failed or timed out (the alert was delivered without).",
        );
        let dead_lettered = counter(
            &mut r,
            "messages_dead_lettered",
            "Messages handed to the dead-letter queue with their reason (undecodable, forged, or rejected by a sink).",
        );
        let forged = counter(
            &mut r,
            "messages_forged",
            "CloudTrail-shaped events refused as not sent by AWS (source not aws.*, or another account's record); dead-lettered with the reason.",
        );
        let retried = counter(
            &mut r,
            "messages_retried",
            "Messages kept in flight and tried again after a sink did not take them (an outage).",
        );
        let store_failures = counter(
            &mut r,
            "messages_store_failed",
            "Messages the dedupe store could not prepare; each returns to the queue after its visibility timeout and is tried again (alert on any increase: the store is failing).",
        );
        let last_receive_seconds = Gauge::<f64, AtomicU64>::default();
        r.register_with_unit(
            "last_receive_timestamp",
            "When a receive from the queue last succeeded (Unix time; 0: never). Alert when it stops moving",
            Unit::Seconds,
            last_receive_seconds.clone(),
        );
        let heartbeats_sent = counter(
            &mut r,
            "heartbeats_sent",
            "Heartbeat sink calls made while the pipeline was healthy.",
        );
        let heartbeats_failed = counter(
            &mut r,
            "heartbeats_failed",
            "Heartbeat sink calls that failed.",
        );
        let heartbeats_withheld = counter(
            &mut r,
            "heartbeats_withheld",
            "Heartbeats not sent because receives were failing or stalled.",
        );
        let manifest_loads = counter(
            &mut r,
            "rule_manifest_loads",
            "Changed rule manifests put in use.",
        );
        let manifest_errors = counter(
            &mut r,
            "rule_manifest_errors",
            "Rule manifest reads or changes that failed (the rules read before stay in use).",
        );
        let ignored = counter(
            &mut r,
            "messages_ignored",
            "Messages with nothing to alert on.",
        );
        let acked = counter(&mut r, "messages_acked", "Messages deleted from the queue.");
        let alerts = Family::<AlertLabels, Counter>::default();
        r.register(
            "alerts",
            "Alerts classified, by rule and severity",
            alerts.clone(),
        );
        let duplicates = counter(
            &mut r,
            "duplicates",
            "Alerts every routed sink already had.",
        );
        let unrouted = counter(
            &mut r,
            "alerts_unrouted",
            "Alerts no route matched and no default route took.",
        );
        let silenced = Family::<RuleLabels, Counter>::default();
        r.register(
            "alerts_silenced",
            "Alerts an active silence kept from the sinks, by rule (each logged at INFO with the silence id); their messages are acknowledged",
            silenced.clone(),
        );
        let silence_refresh_errors = counter(
            &mut r,
            "silence_refresh_errors",
            "Reads of the silences from the dedupe store that failed (the silences read before stay in use).",
        );
        let silences_active = Gauge::default();
        r.register(
            "silences_active",
            "Silences active at the last read of the store",
            silences_active.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "messages_in_flight",
            "Messages received and not yet acknowledged or released",
            in_flight.clone(),
        );
        let queue_age_seconds = Gauge::<f64, AtomicU64>::default();
        r.register_with_unit(
            "queue_age",
            "Age of the most recently received message when it was received",
            Unit::Seconds,
            queue_age_seconds.clone(),
        );
        let delivered = Family::<SinkLabels, Counter>::default();
        r.register(
            "sink_delivered",
            "Notifications a sink accepted",
            delivered.clone(),
        );
        let failed = Family::<SinkLabels, Counter>::default();
        r.register(
            "sink_failed",
            "Notifications a sink rejected or kept failing",
            failed.clone(),
        );
        let retries = Family::<SinkLabels, Counter>::default();
        r.register(
            "sink_retries",
            "Delivery attempts that will be retried",
            retries.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(delivery_histogram);
        r.register_with_unit(
            "delivery_duration",
            "How long each delivery attempt took at the destination (after the sink's rate limiter), by sink",
            Unit::Seconds,
            duration.clone(),
        );
        let sinks = sink_names
            .into_iter()
            .map(|name| {
                let l = SinkLabels { sink: name.clone() };
                SinkCounters {
                    name,
                    delivered: delivered.get_or_create_owned(&l),
                    failed: failed.get_or_create_owned(&l),
                    retries: retries.get_or_create_owned(&l),
                    duration: duration.get_or_create_owned(&l),
                }
            })
            .collect();
        Metrics {
            registry: r,
            received,
            decoded,
            dead_lettered,
            forged,
            retried,
            store_failures,
            ignored,
            alerts,
            duplicates,
            unrouted,
            silenced,
            silences_active,
            silence_refresh_errors,
            acked,
            held_elsewhere,
            enriched,
            enrich_failed,
            in_flight,
            receive_failures: AtomicU64::new(0),
            queue_age_ms: AtomicI64::new(0),
            last_receive_ms: AtomicI64::new(0),
            heartbeats_sent,
            heartbeats_failed,
            heartbeats_withheld,
            manifest_loads,
            manifest_errors,
            sinks,
            queue_age_seconds,
            last_receive_seconds,
        }
    }

    /// One more on an unlabelled counter.
    pub fn inc(c: &Counter) {
        c.inc();
    }

    /// One alert of `rule` classified.
    pub fn alert(&self, rule: &str, severity: Severity) {
        self.alerts
            .get_or_create(&AlertLabels {
                rule: rule.to_string(),
                severity: severity.as_str(),
            })
            .inc();
    }

    /// One alert of `rule` kept from the sinks by a silence.
    pub fn silenced(&self, rule: &str) {
        self.silenced
            .get_or_create(&RuleLabels {
                rule: rule.to_string(),
            })
            .inc();
    }

    /// The text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let ms = |a: &AtomicI64| a.load(Ordering::Relaxed) as f64 / 1000.0;
        self.last_receive_seconds.set(ms(&self.last_receive_ms));
        self.queue_age_seconds.set(ms(&self.queue_age_ms));
        shared::ops::encode_metrics(&self.registry)
    }

    /// The sum of the samples of the series `name` (every label set), as rendered.
    #[cfg(test)]
    pub fn sum(&self, name: &str) -> f64 {
        self.render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series_and_the_delivery_histogram() {
        let m = Metrics::new(["hook".to_string(), "slack".to_string()]);
        m.alert("cis-4.3", Severity::Critical);
        m.alert("cis-4.3", Severity::Critical);
        m.alert("cis-4.1", Severity::Medium);
        m.silenced("cis-4.1");
        Metrics::inc(&m.received);
        m.acked.inc_by(3);
        m.in_flight.inc();
        m.last_receive_ms
            .store(1_700_000_000_500, Ordering::Relaxed);
        m.queue_age_ms.store(1_250, Ordering::Relaxed);
        let hook = &m.sinks[0];
        hook.attempted(&Outcome::Retry("503".into()), Duration::from_millis(70));
        hook.attempted(
            &Outcome::RetryAfter("429".into(), Duration::from_secs(1)),
            Duration::from_millis(40),
        );
        hook.attempted(&Outcome::Delivered, Duration::from_millis(700));
        hook.delivered.inc();
        m.sinks[1].failed.inc();
        let text = m.render();
        for line in [
            "# HELP orgwatch_agent_alerts_total Alerts classified, by rule and severity.",
            "# TYPE orgwatch_agent_alerts_total counter",
            "orgwatch_agent_alerts_total{rule=\"cis-4.3\",severity=\"critical\"} 2",
            "orgwatch_agent_alerts_total{rule=\"cis-4.1\",severity=\"medium\"} 1",
            "orgwatch_agent_alerts_silenced_total{rule=\"cis-4.1\"} 1",
            "# HELP orgwatch_agent_messages_received_total Messages received from the queue.",
            "orgwatch_agent_messages_received_total 1",
            "orgwatch_agent_messages_acked_total 3",
            "# TYPE orgwatch_agent_messages_in_flight gauge",
            "orgwatch_agent_messages_in_flight 1",
            "orgwatch_agent_last_receive_timestamp_seconds 1700000000.5",
            "orgwatch_agent_queue_age_seconds 1.25",
            "orgwatch_agent_sink_delivered_total{sink=\"hook\"} 1",
            "orgwatch_agent_sink_delivered_total{sink=\"slack\"} 0",
            "orgwatch_agent_sink_failed_total{sink=\"slack\"} 1",
            "orgwatch_agent_sink_retries_total{sink=\"hook\"} 2",
            "# TYPE orgwatch_agent_delivery_duration_seconds histogram",
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook\",le=\"0.05\"} 1",
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook\",le=\"0.1\"} 2",
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook\",le=\"0.5\"} 2",
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook\",le=\"1\"} 3",
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook\",le=\"30\"} 3",
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook\",le=\"+Inf\"} 3",
            "orgwatch_agent_delivery_duration_seconds_count{sink=\"hook\"} 3",
            "orgwatch_agent_delivery_duration_seconds_count{sink=\"slack\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        assert!(
            (m.sum("orgwatch_agent_delivery_duration_seconds_sum") - 0.81).abs() < 1e-9,
            "{text}"
        );
        assert_eq!(m.sum("orgwatch_agent_alerts_total"), 3.0);
        // The Prometheus text format: no OpenMetrics end marker, every help one line.
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains(".."), "{text}");
        assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    }

    #[test]
    fn keeps_every_metric_name() {
        let m = Metrics::new(["hook".to_string()]);
        // A labelled family shows once it has a series.
        m.alert("cis-4.3", Severity::Critical);
        m.silenced("cis-4.3");
        let text = m.render();
        for name in [
            "messages_received_total",
            "messages_decoded_total",
            "messages_held_elsewhere_total",
            "alarms_enriched_total",
            "alarms_enrich_failed_total",
            "messages_dead_lettered_total",
            "messages_forged_total",
            "messages_retried_total",
            "messages_store_failed_total",
            "last_receive_timestamp_seconds",
            "heartbeats_sent_total",
            "heartbeats_failed_total",
            "heartbeats_withheld_total",
            "rule_manifest_loads_total",
            "rule_manifest_errors_total",
            "messages_ignored_total",
            "messages_acked_total",
            "alerts_total",
            "duplicates_total",
            "alerts_unrouted_total",
            "alerts_silenced_total",
            "silence_refresh_errors_total",
            "silences_active",
            "messages_in_flight",
            "queue_age_seconds",
            "sink_delivered_total",
            "sink_failed_total",
            "sink_retries_total",
            "delivery_duration_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE orgwatch_agent_{name} ")),
                "no {name} in:\n{text}"
            );
        }
    }
}
