//! Slack incoming webhook: the notification as Block Kit.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::HttpClient;
use super::{Outcome, payload};
use crate::config::Secret;
use crate::group::Notification;
use crate::model::{AlertState, format_timestamp};

/// Slack allows 50 blocks in a message (Block Kit reference, "blocks"); each alert takes two
/// (its section and its console links), which leaves room for the header, the "and N
/// more" line and the remediation.
const MAX_ALERTS: usize = 20;

/// The Block Kit message of a notification.
pub fn message<T>(n: &Notification<T>) -> Value {
    let summary = payload::summary(n);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": summary.chars().take(150).collect::<String>()}
    })];
    for a in n.alerts.iter().take(MAX_ALERTS) {
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
        // The console links: their URLs are percent-encoded, so no `|` or `>` in them ends
        // Slack's <url|text> early; the text is ours.
        let links: Vec<String> = al
            .links()
            .iter()
            .map(|l| format!("<{}|{}>", l.href, l.text))
            .collect();
        if !links.is_empty() {
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
                "text": format!("{} (sign in to {})", links.join("  \u{b7}  "), al.account)}]}));
        }
    }
    if n.alerts.len() > MAX_ALERTS {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("and {} more", n.alerts.len() - MAX_ALERTS)}]}));
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

    fn alert(account: &str, origin: Origin) -> Alert {
        Alert {
            rule_id: "cis-4.3".into(),
            title: "Usage of the root user".into(),
            severity: Severity::High,
            account: account.into(),
            region: "us-east-1".into(),
            state: AlertState::Firing,
            at_ms: 1_714_565_100_000,
            origin,
            actor: None,
            remediation: None,
            enrichment: None,
        }
    }

    fn notification(alerts: Vec<Alert>) -> crate::group::Notification<u64> {
        let store = MemoryStore::default();
        let mut g: Grouper<u64> = Grouper::new(GroupSpec::default(), Duration::from_secs(900));
        let now = Instant::now();
        for (i, a) in alerts.into_iter().enumerate() {
            let key = crate::fingerprint::incident_key(&a);
            let incident = store
                .remember(&key, a.at_ms, a.state, Duration::from_secs(900), 0)
                .unwrap();
            assert!(g.add(0, a, incident, i as u64 + 1, now));
        }
        g.due(now + Duration::from_secs(3600)).remove(0)
    }

    #[test]
    fn each_alert_links_to_the_console_and_no_event_id_can_bend_the_link() {
        let alarm = Origin::Alarm {
            alarm_name: "orgwatch-cis-4.3".into(),
            alarm_arn: None,
            reason: None,
            old_state: None,
            new_state: "ALARM".into(),
            metric: None,
        };
        let hostile = Origin::Event {
            event_id: "e1|<!channel>".into(),
        };
        let n = notification(vec![
            alert("111122223333", alarm),
            alert("444455556666", hostile),
        ]);
        let text = message(&n).to_string();
        assert!(
            text.contains("<https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/orgwatch-cis-4.3|Alarm orgwatch-cis-4.3 in the CloudWatch console> (sign in to 111122223333)"),
            "{text}"
        );
        assert!(
            text.contains("<https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/e1%7C%3C%21channel%3E|The CloudTrail event in the console>"),
            "{text}"
        );
        assert!(!text.contains("<!channel>"), "{text}");
        // The JSON sinks carry the same links.
        let doc = payload::document(&n);
        assert_eq!(
            doc["alerts"][1]["links"][0]["href"],
            "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/e1%7C%3C%21channel%3E"
        );
    }

    #[test]
    fn a_large_group_stays_within_slacks_fifty_blocks() {
        let alerts = (0..60)
            .map(|i| {
                alert(
                    &format!("{:012}", 100_000_000_000u64 + i),
                    Origin::Event {
                        event_id: format!("e{i}"),
                    },
                )
            })
            .collect();
        let mut n = notification(alerts);
        if let Some(a) = n.alerts.first_mut() {
            a.alert.remediation = Some("Rotate the root credentials.".into());
        }
        let m = message(&n);
        let blocks = m["blocks"].as_array().map(Vec::len).unwrap_or_default();
        assert!(n.alerts.len() > MAX_ALERTS);
        assert!(blocks <= 50, "{blocks} blocks");
        assert!(
            m.to_string()
                .contains(&format!("and {} more", n.alerts.len() - MAX_ALERTS))
        );
    }
}
