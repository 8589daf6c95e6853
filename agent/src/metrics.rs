//! Counters for Prometheus (`/metrics`), in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub name: String,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
}

/// Every counter of the agent.
#[derive(Debug, Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub decoded: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Of those, CloudTrail-shaped events refused as not sent by AWS.
    pub forged: AtomicU64,
    /// Messages kept in flight and tried again after a sink did not take them.
    pub retried: AtomicU64,
    /// Messages the dedupe store could not prepare (they return to the queue after their
    /// visibility timeout and are tried again).
    pub store_failures: AtomicU64,
    pub ignored: AtomicU64,
    pub alerts: AtomicU64,
    pub duplicates: AtomicU64,
    pub unrouted: AtomicU64,
    /// Alerts an active silence kept from the sinks (logged at INFO with the silence).
    pub silenced: AtomicU64,
    /// Silences active at the last refresh.
    pub silences_active: AtomicI64,
    /// Reads of the silences from the store that failed (the ones read before stay in use).
    pub silence_refresh_errors: AtomicU64,
    pub acked: AtomicU64,
    /// Messages left for another replica that is delivering their alerts.
    pub held_elsewhere: AtomicU64,
    /// Alarms enriched with the events behind them / whose lookup failed or timed out.
    pub enriched: AtomicU64,
    pub enrich_failed: AtomicU64,
    pub in_flight: AtomicI64,
    /// Receives that failed in a row (0 once one succeeds): not ready while above 0.
    pub receive_failures: AtomicU64,
    /// Age of the last received message at receipt (now - SentTimestamp), milliseconds.
    pub queue_age_ms: AtomicI64,
    /// When the last receive succeeded (Unix ms; 0: never).
    pub last_receive_ms: AtomicI64,
    /// Heartbeat calls made / that failed / withheld because the pipeline was unhealthy.
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub heartbeats_withheld: AtomicU64,
    /// Rule manifests read and put in use after a change / reads or uses that failed.
    pub manifest_loads: AtomicU64,
    pub manifest_errors: AtomicU64,
    pub sinks: Vec<SinkCounters>,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn new(sink_names: impl IntoIterator<Item = String>) -> Metrics {
        Metrics {
            sinks: sink_names
                .into_iter()
                .map(|name| SinkCounters {
                    name,
                    ..SinkCounters::default()
                })
                .collect(),
            ..Metrics::default()
        }
    }

    pub fn inc(c: &AtomicU64) {
        inc(c)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP orgwatch_agent_{name} {help}\n# TYPE orgwatch_agent_{name} counter\norgwatch_agent_{name} {v}"
            );
        };
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "messages_received_total",
            "Messages received from the queue.",
            g(&self.received),
        );
        counter(
            &mut out,
            "messages_decoded_total",
            "Messages decoded.",
            g(&self.decoded),
        );
        counter(
            &mut out,
            "messages_held_elsewhere_total",
            "Messages left to return later because another replica is delivering their alerts.",
            g(&self.held_elsewhere),
        );
        counter(
            &mut out,
            "alarms_enriched_total",
            "Alarms enriched with the CloudTrail events behind them.",
            g(&self.enriched),
        );
        counter(
            &mut out,
            "alarms_enrich_failed_total",
            "Alarm enrichments that failed or timed out (the alert was delivered without).",
            g(&self.enrich_failed),
        );
        counter(
            &mut out,
            "messages_dead_lettered_total",
            "Messages handed to the dead-letter queue with their reason (undecodable, forged, or rejected by a sink).",
            g(&self.dead_lettered),
        );
        counter(
            &mut out,
            "messages_forged_total",
            "CloudTrail-shaped events refused as not sent by AWS (source not aws.*, or another account's record); dead-lettered with the reason.",
            g(&self.forged),
        );
        counter(
            &mut out,
            "messages_retried_total",
            "Messages kept in flight and tried again after a sink did not take them (an outage).",
            g(&self.retried),
        );
        counter(
            &mut out,
            "messages_store_failed_total",
            "Messages the dedupe store could not prepare; each returns to the queue after its visibility timeout and is tried again (alert on any increase: the store is failing).",
            g(&self.store_failures),
        );
        let last = self.last_receive_ms.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP orgwatch_agent_last_receive_timestamp_seconds When a receive from the queue last succeeded (Unix time; 0: never). Alert when it stops moving.\n# TYPE orgwatch_agent_last_receive_timestamp_seconds gauge\norgwatch_agent_last_receive_timestamp_seconds {}",
            last as f64 / 1000.0
        );
        counter(
            &mut out,
            "heartbeats_sent_total",
            "Heartbeat sink calls made while the pipeline was healthy.",
            g(&self.heartbeats_sent),
        );
        counter(
            &mut out,
            "heartbeats_failed_total",
            "Heartbeat sink calls that failed.",
            g(&self.heartbeats_failed),
        );
        counter(
            &mut out,
            "heartbeats_withheld_total",
            "Heartbeats not sent because receives were failing or stalled.",
            g(&self.heartbeats_withheld),
        );
        counter(
            &mut out,
            "rule_manifest_loads_total",
            "Changed rule manifests put in use.",
            g(&self.manifest_loads),
        );
        counter(
            &mut out,
            "rule_manifest_errors_total",
            "Rule manifest reads or changes that failed (the rules read before stay in use).",
            g(&self.manifest_errors),
        );
        counter(
            &mut out,
            "messages_ignored_total",
            "Messages with nothing to alert on.",
            g(&self.ignored),
        );
        counter(
            &mut out,
            "messages_acked_total",
            "Messages deleted from the queue.",
            g(&self.acked),
        );
        counter(
            &mut out,
            "alerts_total",
            "Alerts classified.",
            g(&self.alerts),
        );
        counter(
            &mut out,
            "duplicates_total",
            "Alerts every routed sink already had.",
            g(&self.duplicates),
        );
        counter(
            &mut out,
            "alerts_unrouted_total",
            "Alerts no route matched and no default route took.",
            g(&self.unrouted),
        );
        counter(
            &mut out,
            "alerts_silenced_total",
            "Alerts an active silence kept from the sinks (each logged at INFO with the silence id); their messages are acknowledged.",
            g(&self.silenced),
        );
        counter(
            &mut out,
            "silence_refresh_errors_total",
            "Reads of the silences from the dedupe store that failed (the silences read before stay in use).",
            g(&self.silence_refresh_errors),
        );
        let _ = writeln!(
            out,
            "# HELP orgwatch_agent_silences_active Silences active at the last read of the store.\n# TYPE orgwatch_agent_silences_active gauge\norgwatch_agent_silences_active {}",
            self.silences_active.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP orgwatch_agent_messages_in_flight Messages received and not yet acknowledged or released.\n# TYPE orgwatch_agent_messages_in_flight gauge\norgwatch_agent_messages_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP orgwatch_agent_queue_age_seconds Age of the most recently received message when it was received.\n# TYPE orgwatch_agent_queue_age_seconds gauge\norgwatch_agent_queue_age_seconds {:.3}",
            self.queue_age_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        for (metric, help) in [
            ("sink_delivered_total", "Notifications a sink accepted."),
            (
                "sink_failed_total",
                "Notifications a sink rejected or kept failing.",
            ),
            (
                "sink_retries_total",
                "Delivery attempts that will be retried.",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP orgwatch_agent_{metric} {help}\n# TYPE orgwatch_agent_{metric} counter"
            );
            for s in &self.sinks {
                let v = match metric {
                    "sink_delivered_total" => g(&s.delivered),
                    "sink_failed_total" => g(&s.failed),
                    _ => g(&s.retries),
                };
                let _ = writeln!(out, "orgwatch_agent_{metric}{{sink=\"{}\"}} {v}", s.name);
            }
        }
        out
    }
}
