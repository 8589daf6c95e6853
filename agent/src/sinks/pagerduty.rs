//! PagerDuty Events API v2: one event per alert, `dedup_key` = the incident fingerprint, so
//! a resolution resolves the incident its trigger opened and re-sent triggers merge.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::HttpClient;
use super::{Outcome, payload};
use crate::config::Secret;
use crate::group::{Notification, Notified};
use crate::model::{AlertState, Severity};

/// The Events API v2 body of one alert.
pub fn event(routing_key: &str, n: &Notified) -> Value {
    let a = &n.alert;
    let dedup_key = n.fingerprint.to_string();
    match a.state {
        AlertState::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }),
        AlertState::Firing => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            // Events API v2, "Send an Alert Event": `links` (href, text) are shown on the
            // alert and its incident (PagerDuty developer docs, events-API-v2,
            // 02-Trigger-Events).
            "links": a.links(),
            "payload": {
                "summary": format!("{} in account {} ({})", a.title, a.account, a.region).chars().take(1024).collect::<String>(),
                "source": a.account,
                "severity": match a.severity {
                    Severity::Critical => "critical",
                    Severity::High => "error",
                    Severity::Medium | Severity::Low => "warning",
                    Severity::Info => "info",
                },
                "component": a.rule_id,
                "group": a.region,
                "class": "orgwatch",
                "custom_details": payload::alert_json(n),
            }
        }),
    }
}

pub struct PagerDuty {
    pub url: Secret,
    pub routing_key: Secret,
    pub http: HttpClient,
    pub timeout: Duration,
}

impl PagerDuty {
    /// Sends every alert; re-sending after a partial failure is harmless (dedup_key).
    pub async fn deliver<T>(&self, n: &Notification<T>) -> Outcome {
        for a in &n.alerts {
            let body = event(self.routing_key.expose(), a).to_string().into_bytes();
            match self
                .http
                .post_json(self.url.expose(), &[], body, self.timeout)
                .await
            {
                Outcome::Delivered => {}
                other => return other,
            }
        }
        Outcome::Delivered
    }
}
