//! Slack incoming webhook: the notification as Block Kit.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::HttpClient;
use super::{Outcome, payload};
use crate::config::Secret;
use crate::group::Notification;
use crate::model::{AlertState, format_timestamp};

/// Slack allows 50 blocks; keep room for the header and context.
const MAX_ALERT_BLOCKS: usize = 40;

/// The Block Kit message of a notification.
pub fn message<T>(n: &Notification<T>) -> Value {
    let summary = payload::summary(n);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": summary.chars().take(150).collect::<String>()}
    })];
    for a in n.alerts.iter().take(MAX_ALERT_BLOCKS) {
        let al = &a.alert;
        let icon = match al.state {
            AlertState::Firing => ":rotating_light:",
            AlertState::Resolved => ":white_check_mark:",
        };
        let mut fields = vec![
            json!({"type": "mrkdwn", "text": format!("*Account*\n{}", al.account)}),
            json!({"type": "mrkdwn", "text": format!("*Region*\n{}", al.region)}),
            json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", al.severity)}),
            json!({"type": "mrkdwn", "text": format!("*When*\n{}", format_timestamp(al.at_ms))}),
        ];
        if let Some(actor) = &al.actor {
            if let Some(p) = &actor.principal {
                fields.push(json!({"type": "mrkdwn", "text": format!("*Who*\n{p}")}));
            }
            if let Some(ip) = &actor.source_ip {
                fields.push(json!({"type": "mrkdwn", "text": format!("*From*\n{ip}")}));
            }
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("{icon} *{}* (`{}`)", al.title, al.rule_id)},
            "fields": fields
        }));
    }
    if n.alerts.len() > MAX_ALERT_BLOCKS {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("and {} more", n.alerts.len() - MAX_ALERT_BLOCKS)}]}));
    }
    if let Some(r) = n.alerts.first().and_then(|a| a.alert.remediation.as_ref()) {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": r}]}));
    }
    json!({"text": summary, "blocks": blocks})
}

pub struct Slack {
    pub url: Secret,
    pub http: HttpClient,
    pub timeout: Duration,
}

impl Slack {
    pub async fn deliver<T>(&self, n: &Notification<T>) -> Outcome {
        let body = message(n).to_string().into_bytes();
        self.http
            .post_json(self.url.expose(), &[], body, self.timeout)
            .await
    }
}
