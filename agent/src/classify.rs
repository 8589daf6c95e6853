//! Classify: turn a decoded message into alerts of rules.
//!
//! An alarm names its rule (`naming::rule_id_from_alarm_name`); a raw CloudTrail record is
//! classified by evaluating the detection pack's patterns against it. Rule metadata
//! (title, severity, remediation) comes from a [`RuleCatalog`]. Pure.

use serde_json::Value;

use crate::decode::{AlarmNotification, CloudTrailEvent, Decoded, actor_of};
use crate::model::{Alert, AlertState, Origin, Severity};

/// What the agent needs to know about a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub remediation: Option<String>,
}

/// The rules the agent knows: by id (alarm path) and by evaluation (event path).
pub trait RuleCatalog: Send + Sync {
    /// The rule with this id.
    fn rule(&self, id: &str) -> Option<RuleInfo>;
    /// Every rule whose pattern matches this CloudTrail record.
    fn matching(&self, record: &Value) -> Vec<RuleInfo>;
}

/// A catalog of fixed rules, each with a predicate over records. Used by tests and benches,
/// and as the fallback when no pack is available.
#[derive(Default)]
pub struct StaticCatalog {
    #[allow(clippy::type_complexity)]
    rules: Vec<(RuleInfo, Box<dyn Fn(&Value) -> bool + Send + Sync>)>,
}

impl StaticCatalog {
    pub fn with(
        mut self,
        rule: RuleInfo,
        predicate: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rules.push((rule, Box::new(predicate)));
        self
    }
}

impl RuleCatalog for StaticCatalog {
    fn rule(&self, id: &str) -> Option<RuleInfo> {
        self.rules
            .iter()
            .find(|(r, _)| r.id == id)
            .map(|(r, _)| r.clone())
    }
    fn matching(&self, record: &Value) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .filter(|(_, p)| p(record))
            .map(|(r, _)| r.clone())
            .collect()
    }
}

/// The detection pack (`shared::rules`): the same patterns the hub writes as metric filters,
/// evaluated locally by `shared::pattern`.
pub struct PackCatalog {
    pack: shared::rules::Pack,
}

impl PackCatalog {
    pub fn new(pack: shared::rules::Pack) -> PackCatalog {
        PackCatalog { pack }
    }

    /// The built-in pack.
    pub fn builtin() -> Result<PackCatalog, shared::rules::PackError> {
        Ok(PackCatalog::new(shared::rules::Pack::builtin()?))
    }
}

fn info_of(rule: &shared::rules::Rule) -> RuleInfo {
    use shared::rules::Severity as S;
    RuleInfo {
        id: rule.id.clone(),
        title: rule.title.clone(),
        severity: match rule.severity {
            S::Low => Severity::Low,
            S::Medium => Severity::Medium,
            S::High => Severity::High,
            S::Critical => Severity::Critical,
        },
        remediation: Some(rule.remediation.clone()).filter(|r| !r.is_empty()),
    }
}

impl RuleCatalog for PackCatalog {
    fn rule(&self, id: &str) -> Option<RuleInfo> {
        self.pack.get(id).map(info_of)
    }
    fn matching(&self, record: &Value) -> Vec<RuleInfo> {
        let event = shared::pattern::Event::from_value(record);
        self.pack.matching(&event).map(info_of).collect()
    }
}

/// The result of classifying one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    Alerts(Vec<Alert>),
    /// Nothing to alert on (e.g. an INSUFFICIENT_DATA transition, an event no rule matches).
    Ignored(String),
}

/// Classifies a decoded message.
pub fn classify(decoded: &Decoded, catalog: &dyn RuleCatalog) -> Classified {
    match decoded {
        Decoded::Alarm(a) => classify_alarm(a, catalog),
        Decoded::Event(e) => classify_event(e, catalog),
    }
}

fn classify_alarm(a: &AlarmNotification, catalog: &dyn RuleCatalog) -> Classified {
    let state = match a.new_state.as_str() {
        "ALARM" => AlertState::Firing,
        "OK" if a.old_state.as_deref() == Some("ALARM") || a.old_state.is_none() => {
            AlertState::Resolved
        }
        other => {
            return Classified::Ignored(format!(
                "alarm {} went {} -> {other}",
                a.alarm_name,
                a.old_state.as_deref().unwrap_or("?")
            ));
        }
    };
    // An alarm orgwatch did not create is still delivered, under its own name.
    let rule_id = shared::naming::rule_id_from_alarm_name(&a.alarm_name).unwrap_or(&a.alarm_name);
    let info = catalog.rule(rule_id).unwrap_or_else(|| RuleInfo {
        id: rule_id.to_string(),
        title: a.alarm_name.clone(),
        severity: Severity::Medium,
        remediation: None,
    });
    Classified::Alerts(vec![Alert {
        rule_id: info.id,
        title: info.title,
        severity: info.severity,
        account: a.account.clone(),
        region: a.region.clone(),
        state,
        at_ms: a.state_change_ms,
        origin: Origin::Alarm {
            alarm_name: a.alarm_name.clone(),
            alarm_arn: a.alarm_arn.clone(),
            reason: a.reason.clone(),
            old_state: a.old_state.clone(),
            new_state: a.new_state.clone(),
            metric: a.metric.clone(),
        },
        actor: None,
        remediation: info.remediation,
        enrichment: None,
    }])
}

fn classify_event(e: &CloudTrailEvent, catalog: &dyn RuleCatalog) -> Classified {
    let rules = catalog.matching(&e.record);
    if rules.is_empty() {
        let name = e
            .record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or("?");
        return Classified::Ignored(format!("event {} ({name}) matches no rule", e.event_id));
    }
    let actor = actor_of(&e.record);
    Classified::Alerts(
        rules
            .into_iter()
            .map(|info| Alert {
                rule_id: info.id,
                title: info.title,
                severity: info.severity,
                account: e.account.clone(),
                region: e.region.clone(),
                state: AlertState::Firing,
                at_ms: e.event_time_ms,
                origin: Origin::Event {
                    event_id: e.event_id.clone(),
                },
                actor: Some(actor.clone()),
                remediation: info.remediation,
                enrichment: None,
            })
            .collect(),
    )
}

/// A catalog for tests: `root-activity` (root user activity) and `console-no-mfa`.
#[cfg(test)]
pub fn test_catalog() -> StaticCatalog {
    StaticCatalog::default()
        .with(
            RuleInfo {
                id: "root-activity".into(),
                title: "Root user activity".into(),
                severity: Severity::Critical,
                remediation: Some("Find out who used the root user.".into()),
            },
            |r| r["userIdentity"]["type"] == "Root",
        )
        .with(
            RuleInfo {
                id: "console-no-mfa".into(),
                title: "Console sign-in without MFA".into(),
                severity: Severity::High,
                remediation: None,
            },
            |r| r["eventName"] == "ConsoleLogin" && r["additionalEventData"]["MFAUsed"] != "Yes",
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, fixtures};

    const A: &str = "111122223333";

    fn run(body: serde_json::Value) -> Classified {
        classify(&decode(&body.to_string()).unwrap(), &test_catalog())
    }

    #[test]
    fn alarms_map_to_rules_by_name() {
        let table = [
            (
                "orgwatch-root-activity",
                "ALARM",
                "OK",
                Some(("root-activity", AlertState::Firing, Severity::Critical)),
            ),
            (
                "orgwatch-root-activity",
                "OK",
                "ALARM",
                Some(("root-activity", AlertState::Resolved, Severity::Critical)),
            ),
            (
                "orgwatch-cis-4.3",
                "ALARM",
                "OK",
                Some(("cis-4.3", AlertState::Firing, Severity::Medium)),
            ),
            (
                "someone-elses-alarm",
                "ALARM",
                "OK",
                Some(("someone-elses-alarm", AlertState::Firing, Severity::Medium)),
            ),
            ("orgwatch-root-activity", "INSUFFICIENT_DATA", "OK", None),
            ("orgwatch-root-activity", "OK", "INSUFFICIENT_DATA", None),
        ];
        for (name, new, old, want) in table {
            let mut body = fixtures::alarm(name, A, new, "2024-05-01T12:00:00.000+0000");
            body["OldStateValue"] = old.into();
            let got = run(body);
            match (want, got) {
                (Some((rule, state, sev)), Classified::Alerts(alerts)) => {
                    assert_eq!(alerts.len(), 1);
                    assert_eq!(
                        (
                            alerts[0].rule_id.as_str(),
                            alerts[0].state,
                            alerts[0].severity
                        ),
                        (rule, state, sev),
                        "{name} {old}->{new}"
                    );
                    assert_eq!(alerts[0].account, A);
                }
                (None, Classified::Ignored(_)) => {}
                (want, got) => panic!("{name} {old}->{new}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_builtin_pack_classifies_a_root_sign_in_and_names_alarms() {
        let pack = PackCatalog::builtin().unwrap();
        let record = fixtures::root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        let decoded = decode(&fixtures::eventbridge(&record, None).to_string()).unwrap();
        let Classified::Alerts(alerts) = classify(&decoded, &pack) else {
            panic!("a root sign-in matches no built-in rule")
        };
        assert!(
            alerts.iter().any(|a| a.rule_id == "root-activity"),
            "{alerts:?}"
        );
        let alarm = fixtures::alarm(
            "orgwatch-root-activity",
            A,
            "ALARM",
            "2024-05-01T12:05:00.000+0000",
        );
        let Classified::Alerts(alerts) = classify(&decode(&alarm.to_string()).unwrap(), &pack)
        else {
            panic!()
        };
        assert_eq!(alerts[0].rule_id, "root-activity");
        assert_ne!(
            alerts[0].title, "orgwatch-root-activity",
            "title comes from the pack"
        );
        let mut quiet = record.clone();
        quiet["userIdentity"] =
            serde_json::json!({"type": "IAMUser", "arn": format!("arn:aws:iam::{A}:user/alice")});
        quiet["eventName"] = "DescribeInstances".into();
        quiet["eventSource"] = "ec2.amazonaws.com".into();
        assert!(matches!(
            classify(&decode(&quiet.to_string()).unwrap(), &pack),
            Classified::Ignored(_)
        ));
    }

    #[test]
    fn events_are_classified_by_every_matching_rule() {
        let record = fixtures::root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        let Classified::Alerts(alerts) = run(fixtures::eventbridge(&record, None)) else {
            panic!()
        };
        let ids: Vec<_> = alerts.iter().map(|a| a.rule_id.as_str()).collect();
        assert_eq!(ids, ["root-activity", "console-no-mfa"]);
        let actor = alerts[0].actor.clone().unwrap();
        assert_eq!(actor.source_ip.as_deref(), Some("203.0.113.7"));
        let mut other = record.clone();
        other["userIdentity"] =
            serde_json::json!({"type": "IAMUser", "arn": format!("arn:aws:iam::{A}:user/alice")});
        other["eventName"] = "DescribeInstances".into();
        assert!(matches!(run(other), Classified::Ignored(_)));
    }
}
