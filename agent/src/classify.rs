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
///
/// Rules of the pack with the same pattern detect the same thing (`cis-4.3`, the compliance
/// alarm of Security Hub CloudWatch.1, and `root-activity`, critical and forwarded at once):
/// one root sign-in must not page twice. Each such set is answered for by one of them, the
/// most severe (then the forwarding one, then the first id): alarms and events of every
/// member are alerts of that rule, so they are one incident, one group, one notification.
/// A rule alone with its pattern answers for itself; with `pack = ["cis"]` `cis-4.3` does.
pub struct PackCatalog {
    pack: shared::rules::Pack,
    /// Every built-in rule, for alarms of rules outside `pack` (deployed by a hub
    /// configured otherwise): they keep their own title and severity.
    builtin: Option<shared::rules::Pack>,
    /// Rule id -> index in `pack` of the rule that answers for it.
    answered_by: std::collections::HashMap<String, usize>,
}

impl PackCatalog {
    pub fn new(pack: shared::rules::Pack) -> PackCatalog {
        let rules = pack.rules();
        let patterns: Vec<String> = rules
            .iter()
            .map(|r| r.pattern.to_compact_string())
            .collect();
        let mut answered_by = std::collections::HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let best = rules
                .iter()
                .enumerate()
                .filter(|(j, _)| patterns[*j] == patterns[i])
                .max_by(|(_, a), (_, b)| {
                    (a.severity, a.forward)
                        .cmp(&(b.severity, b.forward))
                        .then_with(|| b.id.cmp(&a.id))
                })
                .map_or(i, |(j, _)| j);
            answered_by.insert(rule.id.clone(), best);
        }
        PackCatalog {
            pack,
            builtin: shared::rules::Pack::builtin().ok(),
            answered_by,
        }
    }

    /// The built-in pack.
    pub fn builtin() -> Result<PackCatalog, shared::rules::PackError> {
        Ok(PackCatalog::new(shared::rules::Pack::builtin()?))
    }

    fn answering(&self, id: &str) -> Option<&shared::rules::Rule> {
        self.answered_by
            .get(id)
            .and_then(|i| self.pack.rules().get(*i))
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
        self.answering(id)
            .or_else(|| self.builtin.as_ref().and_then(|b| b.get(id)))
            .map(info_of)
    }
    fn matching(&self, record: &Value) -> Vec<RuleInfo> {
        let event = shared::pattern::Event::from_value(record);
        let mut out: Vec<RuleInfo> = Vec::new();
        for rule in self.pack.matching(&event) {
            let info = info_of(self.answering(&rule.id).unwrap_or(rule));
            if !out.iter().any(|o| o.id == info.id) {
                out.push(info);
            }
        }
        out
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

    fn ids(c: Classified) -> Vec<(String, Severity)> {
        match c {
            Classified::Alerts(a) => a.into_iter().map(|a| (a.rule_id, a.severity)).collect(),
            Classified::Ignored(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn rules_with_one_pattern_are_answered_for_by_the_most_severe_one() {
        let pack = |p: &[&str], d: &[&str]| {
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            PackCatalog::new(
                shared::rules::Pack::from_config(&s(p), &s(d), &shared::rules::UserRules::none())
                    .unwrap(),
            )
        };
        let record = fixtures::root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        let event = decode(&fixtures::eventbridge(&record, None).to_string()).unwrap();
        let alarm = |rule: &str| {
            let body = fixtures::alarm(
                &format!("orgwatch-{rule}"),
                A,
                "ALARM",
                "2024-05-01T12:05:00.000+0000",
            );
            decode(&body.to_string()).unwrap()
        };
        let root = ("root-activity".to_string(), Severity::Critical);
        let usage = ("cis-4.3".to_string(), Severity::High);

        // Both in the pack: the event, and either alarm, are root-activity alerts only.
        let both = pack(&["cis", "root-activity"], &[]);
        assert_eq!(ids(classify(&event, &both)), vec![root.clone()]);
        assert_eq!(ids(classify(&alarm("cis-4.3"), &both)), vec![root.clone()]);
        assert_eq!(
            ids(classify(&alarm("root-activity"), &both)),
            vec![root.clone()]
        );
        // Other rules keep their own id.
        assert_eq!(
            ids(classify(&alarm("cis-4.4"), &both)),
            vec![("cis-4.4".to_string(), Severity::Medium)]
        );

        // Without root-activity, cis-4.3 answers for itself.
        for only_cis in [pack(&["cis"], &[]), pack(&["all"], &["root-activity"])] {
            assert_eq!(ids(classify(&event, &only_cis)), vec![usage.clone()]);
            assert_eq!(
                ids(classify(&alarm("cis-4.3"), &only_cis)),
                vec![usage.clone()]
            );
            // An alarm of a built-in rule the agent does not select keeps its own identity.
            assert_eq!(
                ids(classify(&alarm("root-activity"), &only_cis)),
                vec![root.clone()]
            );
        }
        // Events are judged by the selected rules only.
        let no_root = pack(&["cis-4.4"], &[]);
        assert!(matches!(classify(&event, &no_root), Classified::Ignored(_)));
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
