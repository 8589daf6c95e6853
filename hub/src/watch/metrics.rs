//! `hub watch`'s metrics on `/metrics`, on prometheus-client's registry (as the agent's):
//! labelled counters whose label values come from events (decision, trigger, operation)
//! are escaped by the encoder, and the event-to-converged latency is a histogram.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Label pairs in the order the call site gives them.
type Labels = Vec<(String, String)>;

/// Counters by name (without `_total`, which the encoder appends) and help (without a
/// final period, which the encoder appends too).
const COUNTERS: &[(&str, &str)] = &[
    (
        "events",
        "Control-queue events by decision (act, ignore, refuse) and trigger",
    ),
    (
        "reconciles",
        "Reconciles hub watch ran, by action (enroll, reconcile, offboard, resync) and result",
    ),
    (
        "repaired",
        "Resources created, updated or deleted by hub watch",
    ),
    (
        "dead_lettered",
        "Control events moved to the dead-letter queue with a reason",
    ),
    (
        "errors",
        "AWS errors outside a reconcile (receive, delete, lease), by operation",
    ),
];

/// Upper bounds (seconds) of the event-to-converged buckets: a repair takes well under a
/// second, an enroll of a new account tens of seconds (CloudWatch's 3 TPS).
const LATENCY_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    counters: BTreeMap<&'static str, Family<Labels, Counter>>,
    /// 1 while this replica holds the lease and acts.
    pub lease_held: Gauge,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("orgwatch_watch");
        let mut counters = BTreeMap::new();
        for (name, help) in COUNTERS {
            let family = Family::<Labels, Counter>::default();
            registry.register(*name, *help, family.clone());
            counters.insert(*name, family);
        }
        let lease_held = Gauge::default();
        registry.register(
            "lease_held",
            "1 while this replica holds the lease and acts",
            lease_held.clone(),
        );
        let latency = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "event_to_converged",
            "From an event's time to its account converged",
            Unit::Seconds,
            latency.clone(),
        );
        Metrics {
            registry,
            counters,
            lease_held,
            latency,
        }
    }
}

impl Metrics {
    /// One more of counter `metric` (`orgwatch_watch_<name>_total`) with `labels`.
    pub fn count(&self, metric: &'static str, labels: &[(&str, &str)]) {
        self.add(metric, labels, 1);
    }

    pub fn add(&self, metric: &'static str, labels: &[(&str, &str)], n: u64) {
        let name = metric
            .strip_prefix("orgwatch_watch_")
            .and_then(|m| m.strip_suffix("_total"))
            .unwrap_or(metric);
        match self.counters.get(name) {
            Some(family) => {
                let labels: Labels = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                family.get_or_create(&labels).inc_by(n);
            }
            None => tracing::error!(metric, "no such counter"),
        }
    }

    /// The value of a counter (all label sets summed).
    #[cfg(test)]
    pub fn total(&self, metric: &str) -> u64 {
        self.render()
            .lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// An event converged `ms` milliseconds after its time.
    pub fn latency(&self, ms: u64) {
        self.latency.observe(ms as f64 / 1000.0);
    }

    pub fn render(&self) -> String {
        shared::ops::encode_metrics(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels_and_sum() {
        let m = Metrics::default();
        m.count(
            "orgwatch_watch_reconciles_total",
            &[("action", "reconcile"), ("result", "ok")],
        );
        m.count(
            "orgwatch_watch_reconciles_total",
            &[("action", "reconcile"), ("result", "ok")],
        );
        m.count("orgwatch_watch_dead_lettered_total", &[]);
        m.lease_held.set(1);
        m.latency(1500);
        let text = m.render();
        assert!(
            text.contains(
                "orgwatch_watch_reconciles_total{action=\"reconcile\",result=\"ok\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("orgwatch_watch_dead_lettered_total 1\n"),
            "{text}"
        );
        assert!(text.contains("orgwatch_watch_lease_held 1\n"), "{text}");
        assert!(
            text.contains("orgwatch_watch_event_to_converged_seconds_bucket{le=\"2\"} 1\n")
                && text.contains("orgwatch_watch_event_to_converged_seconds_count 1\n"),
            "{text}"
        );
        assert_eq!(m.total("orgwatch_watch_reconciles_total"), 2);
        // The encoder ends every HELP with a period of its own.
        assert!(!text.contains(".."), "{text}");
    }

    #[test]
    fn label_values_from_events_are_escaped() {
        let m = Metrics::default();
        m.count(
            "orgwatch_watch_events_total",
            &[("decision", "refuse"), ("trigger", "a\"b\\c\nd")],
        );
        let text = m.render();
        assert!(text.contains("trigger=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
        assert!(!text.contains("c\nd"), "{text}");
    }
}
