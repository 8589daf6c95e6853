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
            // Who, what, from where and with which client: each written by whoever made the
            // call (a user agent is any string the caller sends), so each is shown inert.
            let what = match (&actor.event_name, &actor.event_source) {
                (Some(n), Some(s)) => Some(format!("{n} ({s})")),
                (Some(n), None) => Some(n.clone()),
                _ => None,
            };
            for (label, value) in [
                ("Who", actor.principal.clone()),
                ("What", what),
                ("From", actor.source_ip.clone()),
                ("Client", actor.user_agent.clone()),
            ] {
                if let Some(v) = value {
                    fields.push(
                        json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", inert(&v))}),
                    );
                }
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

/// Slack's limit for a section field's text is 2,000 characters (Block Kit reference,
/// section block `fields`); a value is cut well before it.
const MAX_FIELD_VALUE: usize = 500;

/// A value from outside (a principal, a user agent) as inert mrkdwn: `&`, `<` and `>` escaped
/// as Slack asks ("Formatting text for app surfaces", escaping), so no `<!channel>`,
/// `<@U…>` or `<url|text>` it carries becomes a mention or a link; inside an inline code
/// span, so `*`, `_` and `~` format nothing; its own backticks and line breaks replaced, so
/// it cannot leave the span or start a quote.
pub fn inert(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('`');
    for ch in value.chars().take(MAX_FIELD_VALUE) {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('`');
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupSpec;
    use crate::dedupe::{LocalStore, MemoryStore};
    use crate::group::Grouper;
    use crate::model::{Actor, Alert, AlertState, Origin, Severity};
    use std::time::{Duration, Instant};

    #[test]
    fn what_a_caller_wrote_arrives_inert() {
        let hostile = "<!channel> *bold* <https://evil|click> `x` &amp;\n> quote";
        let alert = Alert {
            rule_id: "root-activity".into(),
            title: "Root user activity".into(),
            severity: Severity::Critical,
            account: "111122223333".into(),
            region: "us-east-1".into(),
            state: AlertState::Firing,
            at_ms: 1_714_565_100_000,
            origin: Origin::Event {
                event_id: "e1".into(),
            },
            actor: Some(Actor {
                principal: Some("arn:aws:iam::111122223333:user/<@U123>".into()),
                event_name: Some("ConsoleLogin".into()),
                event_source: Some("signin.amazonaws.com".into()),
                source_ip: Some("198.51.100.7".into()),
                user_agent: Some(hostile.into()),
                ..Actor::default()
            }),
            remediation: None,
            enrichment: None,
        };
        let store = MemoryStore::default();
        let key = crate::fingerprint::incident_key(&alert);
        let incident = store
            .remember(&key, alert.at_ms, alert.state, Duration::from_secs(900), 0)
            .unwrap();
        let mut g: Grouper<u64> = Grouper::new(GroupSpec::default(), Duration::from_secs(900));
        let now = Instant::now();
        assert!(g.add(0, alert, incident, 1, now));
        let n = g.due(now + Duration::from_secs(3600)).remove(0);
        let text = message(&n).to_string();
        for live in [
            "<!channel>",
            "<https://evil|click>",
            "<@U123>",
            "*bold*`",
            "\\n> quote",
        ] {
            assert!(!text.contains(live), "{live} is live in {text}");
        }
        assert!(
            text.contains(
                "`&lt;!channel&gt; *bold* &lt;https://evil|click&gt; 'x' &amp;amp; &gt; quote`"
            ),
            "{text}"
        );
        assert!(
            text.contains("*What*\\n`ConsoleLogin (signin.amazonaws.com)`"),
            "{text}"
        );
        assert!(
            text.contains("*Who*\\n`arn:aws:iam::111122223333:user/&lt;@U123&gt;`"),
            "{text}"
        );
    }
}
