//! `hub watch`'s counters, rendered in the Prometheus text format on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// (metric, labels) -> count.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    pub lease_held: AtomicU64,
    /// Event time to converged, summed in milliseconds, and how many.
    latency_ms_sum: AtomicU64,
    latency_count: AtomicU64,
}

const HELP: &[(&str, &str)] = &[
    (
        "orgwatch_watch_events_total",
        "Control-queue events by decision (act, ignore, refuse) and trigger.",
    ),
    (
        "orgwatch_watch_reconciles_total",
        "Reconciles hub watch ran, by action (enroll, reconcile, offboard, resync) and result.",
    ),
    (
        "orgwatch_watch_repaired_total",
        "Resources created, updated or deleted by hub watch.",
    ),
    (
        "orgwatch_watch_dead_lettered_total",
        "Control events moved to the dead-letter queue with a reason.",
    ),
    (
        "orgwatch_watch_errors_total",
        "AWS errors outside a reconcile (receive, delete, lease), by operation.",
    ),
];

impl Metrics {
    pub fn count(&self, metric: &'static str, labels: &[(&str, &str)]) {
        self.add(metric, labels, 1);
    }

    pub fn add(&self, metric: &'static str, labels: &[(&str, &str)], n: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((metric, labels)).or_default() += n;
        }
    }

    /// The value of a counter (all label sets summed).
    #[cfg(test)]
    pub fn total(&self, metric: &str) -> u64 {
        self.counters
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|((m, _), _)| *m == metric)
                    .map(|(_, v)| v)
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn latency(&self, ms: u64) {
        self.latency_ms_sum.fetch_add(ms, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        for (metric, help) in HELP {
            out.push_str(&format!(
                "# HELP {metric} {help}\n# TYPE {metric} counter\n"
            ));
            for ((m, labels), v) in &counters {
                if m == metric {
                    if labels.is_empty() {
                        out.push_str(&format!("{m} {v}\n"));
                    } else {
                        out.push_str(&format!("{m}{{{labels}}} {v}\n"));
                    }
                }
            }
        }
        out.push_str(&format!(
            "# HELP orgwatch_watch_lease_held 1 while this replica holds the lease and acts.\n# TYPE orgwatch_watch_lease_held gauge\norgwatch_watch_lease_held {}\n",
            self.lease_held.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP orgwatch_watch_event_to_converged_seconds From an event's time to its account converged.\n# TYPE orgwatch_watch_event_to_converged_seconds summary\norgwatch_watch_event_to_converged_seconds_sum {:.3}\norgwatch_watch_event_to_converged_seconds_count {}\n",
            self.latency_ms_sum.load(Ordering::Relaxed) as f64 / 1000.0,
            self.latency_count.load(Ordering::Relaxed)
        ));
        out
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
        assert_eq!(m.total("orgwatch_watch_reconciles_total"), 2);
    }
}
