//! The JSON document of a notification (webhook, file, stdout, SNS), versioned.

use serde_json::{Value, json};

use crate::group::{Notification, Notified};
use crate::model::{AlertState, format_timestamp};

/// Version of the notification document; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The status of a notification: resolved only when every alert in it is.
pub fn status<T>(n: &Notification<T>) -> AlertState {
    if !n.alerts.is_empty()
        && n.alerts
            .iter()
            .all(|a| a.alert.state == AlertState::Resolved)
    {
        AlertState::Resolved
    } else {
        AlertState::Firing
    }
}

/// One alert as JSON.
pub fn alert_json(n: &Notified) -> Value {
    let a = &n.alert;
    json!({
        "fingerprint": n.fingerprint.to_string(),
        "rule_id": a.rule_id,
        "title": a.title,
        "severity": a.severity,
        "state": a.state,
        "account": a.account,
        "region": a.region,
        "at": format_timestamp(a.at_ms),
        "incident_start": format_timestamp(n.incident.start_ms),
        "origin": a.origin,
        "actor": a.actor,
        "enrichment": a.enrichment,
        "remediation": a.remediation,
        "links": a.links(),
    })
}

/// The whole notification as JSON.
pub fn document<T>(n: &Notification<T>) -> Value {
    let group: serde_json::Map<String, Value> = n
        .labels
        .iter()
        .map(|(l, v)| (format!("{l:?}").to_lowercase(), Value::String(v.clone())))
        .collect();
    let first = n.alerts.first().map(|a| &a.alert);
    json!({
        "schema_version": SCHEMA_VERSION,
        "status": status(n),
        "repeat": n.repeat,
        "group": group,
        "title": first.map(|a| a.title.clone()),
        "severity": n.alerts.iter().map(|a| a.alert.severity).max(),
        "accounts": n.accounts(),
        "alerts": n.alerts.iter().map(alert_json).collect::<Vec<_>>(),
    })
}

/// One line summary for humans.
pub fn summary<T>(n: &Notification<T>) -> String {
    let title = n
        .alerts
        .first()
        .map(|a| a.alert.title.as_str())
        .unwrap_or("orgwatch");
    let accounts = n.accounts();
    let state = match status(n) {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
    };
    let shown: Vec<&str> = accounts.iter().take(5).copied().collect();
    let more = if accounts.len() > 5 {
        format!(" and {} more", accounts.len() - 5)
    } else {
        String::new()
    };
    format!(
        "[{state}] {title} in {}: {}{more}",
        shared::text::plural(accounts.len() as u64, "account", "accounts"),
        shown.join(", ")
    )
}
