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

/// A catalog replaced while the agent runs: the rule manifest changed. Readers take the
/// current catalog for each look-up; a replacement is seen by the next message.
pub struct SwapCatalog {
    current: std::sync::RwLock<std::sync::Arc<dyn RuleCatalog>>,
}

impl SwapCatalog {
    pub fn new(catalog: std::sync::Arc<dyn RuleCatalog>) -> SwapCatalog {
        SwapCatalog {
            current: std::sync::RwLock::new(catalog),
        }
    }

    pub fn replace(&self, catalog: std::sync::Arc<dyn RuleCatalog>) {
        match self.current.write() {
            Ok(mut c) => *c = catalog,
            Err(poisoned) => *poisoned.into_inner() = catalog,
        }
    }

    fn current(&self) -> std::sync::Arc<dyn RuleCatalog> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl RuleCatalog for SwapCatalog {
    fn rule(&self, id: &str) -> Option<RuleInfo> {
        self.current().rule(id)
    }
    fn matching(&self, record: &Value) -> Vec<RuleInfo> {
        self.current().matching(record)
    }
}

/// The detection pack (`shared::rules`): the same patterns the hub writes as metric filters,
/// evaluated locally by `shared::pattern`.
///
/// A rule may *cover* others (`covers` in its file): it matches every event they match, which
/// the pack's loader and `hub rules verify` check on the covered rules' fixtures. When both
/// are selected, the covering rule answers for the covered one: `root-activity` (critical,
/// forwarded at once) covers `cis-4.3` (the compliance alarm of Security Hub CloudWatch.1),
/// so `cis-4.3`'s alarm, `root-activity`'s alarm and the forwarded event of one root sign-in
/// are all alerts of `root-activity` — one incident, one group, one notification, not two
/// pages. A rule no selected rule covers answers for itself: with `pack = ["cis"]`, `cis-4.3`
/// does. Where several selected rules cover one, the most severe answers (then the
/// forwarding one, then the first id), and a covering rule that is itself covered passes
/// the answer on. Only this explicit, verified relation merges rules: two rules that merely
/// have the same pattern are two incidents.
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
        // The rule that directly answers for each: its most severe selected coverer.
        let coverer: Vec<Option<usize>> = rules
            .iter()
            .map(|rule| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.covers.contains(&rule.id))
                    .max_by(|(_, a), (_, b)| {
                        (a.severity, a.forward)
                            .cmp(&(b.severity, b.forward))
                            .then_with(|| b.id.cmp(&a.id))
                    })
                    .map(|(j, _)| j)
            })
            .collect();
        let mut answered_by = std::collections::HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            // Up the chain of coverers; loading rejects circles, the bound is for safety.
            let mut top = i;
            for _ in 0..rules.len() {
                match coverer[top] {
                    Some(next) if next != i => top = next,
                    _ => break,
                }
            }
            answered_by.insert(rule.id.clone(), top);
        }
        PackCatalog {
            pack,
            builtin: shared::rules::Pack::every_builtin().ok(),
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

    fn catalog(pack: &[&str], disable: &[&str], user: &str) -> PackCatalog {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let user = if user.is_empty() {
            shared::rules::UserRules::none()
        } else {
            shared::rules::UserRules::from_toml(std::path::Path::new("hub.toml"), user).unwrap()
        };
        PackCatalog::new(shared::rules::Pack::from_config(&s(pack), &s(disable), &user).unwrap())
    }

    fn alarm_of(rule: &str) -> Decoded {
        let body = fixtures::alarm(
            &format!("orgwatch-{rule}"),
            A,
            "ALARM",
            "2024-05-01T12:05:00.000+0000",
        );
        decode(&body.to_string()).unwrap()
    }

    /// A root action in the AWS Management Console, forwarded: `invokedBy` is
    /// signin.amazonaws.com, which root-activity matches and the CIS 4.3 text does not.
    fn root_console_action() -> Decoded {
        let mut record = fixtures::root_sign_in(A, "ev-2", "2024-05-01T12:01:00Z");
        record["userIdentity"]["invokedBy"] = "signin.amazonaws.com".into();
        record["eventSource"] = "iam.amazonaws.com".into();
        record["eventName"] = "CreateUser".into();
        record["eventType"] = "AwsApiCall".into();
        decode(&fixtures::eventbridge(&record, None).to_string()).unwrap()
    }

    fn alerts(c: Classified) -> Vec<Alert> {
        match c {
            Classified::Alerts(a) => a,
            Classified::Ignored(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn a_covering_rule_answers_for_the_rules_it_covers() {
        let sign_in = fixtures::root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        let sign_in = decode(&fixtures::eventbridge(&sign_in, None).to_string()).unwrap();
        let root = ("root-activity".to_string(), Severity::Critical);
        let usage = ("cis-4.3".to_string(), Severity::High);

        // Both selected (root-activity covers cis-4.3): cis-4.3's alarm, root-activity's
        // alarm, a forwarded root sign-in and a forwarded root console action are all
        // root-activity alerts of one account and region: one incident.
        let both = catalog(&["cis", "root-activity"], &[], "");
        let mut keys = std::collections::BTreeSet::new();
        for decoded in [
            alarm_of("cis-4.3"),
            alarm_of("root-activity"),
            sign_in.clone(),
            root_console_action(),
        ] {
            let got = alerts(classify(&decoded, &both));
            assert_eq!(
                got.iter()
                    .map(|a| (a.rule_id.clone(), a.severity))
                    .collect::<Vec<_>>(),
                vec![root.clone()],
                "{decoded:?}"
            );
            keys.insert(crate::fingerprint::incident_key(&got[0]));
        }
        assert_eq!(keys.len(), 1, "one incident");
        // Other rules keep their own id.
        assert_eq!(
            ids(classify(&alarm_of("cis-4.4"), &both)),
            vec![("cis-4.4".to_string(), Severity::Medium)]
        );

        // Without root-activity, cis-4.3 answers for itself; the console action, outside the
        // CIS text, matches nothing.
        for only_cis in [
            catalog(&["cis"], &[], ""),
            catalog(&["all"], &["root-activity"], ""),
        ] {
            assert_eq!(ids(classify(&sign_in, &only_cis)), vec![usage.clone()]);
            assert_eq!(
                ids(classify(&alarm_of("cis-4.3"), &only_cis)),
                vec![usage.clone()]
            );
            assert!(matches!(
                classify(&root_console_action(), &only_cis),
                Classified::Ignored(_)
            ));
            // An alarm of a built-in rule the agent does not select keeps its own identity.
            assert_eq!(
                ids(classify(&alarm_of("root-activity"), &only_cis)),
                vec![root.clone()]
            );
        }
        // The seed pack has root-activity and not cis-4.3: root-activity answers for itself.
        let seed = catalog(&["seed"], &[], "");
        assert_eq!(ids(classify(&sign_in, &seed)), vec![root.clone()]);
        assert_eq!(
            ids(classify(&root_console_action(), &seed)),
            vec![root.clone()]
        );
        // Events are judged by the selected rules only.
        let no_root = catalog(&["cis-4.4"], &[], "");
        assert!(matches!(
            classify(&sign_in, &no_root),
            Classified::Ignored(_)
        ));
    }

    #[test]
    fn only_covering_merges_rules_not_an_equal_pattern() {
        let rules = |covers: &str| {
            format!(
                r#"
[[rule]]
id = "deletes"
title = "IAM user deleted"
severity = "medium"
pattern = '{{ $.eventName = "DeleteUser" }}'
metric_name = "Deletes"

[[rule]]
id = "deletes-paged"
title = "IAM user deleted (paged)"
severity = "critical"
pattern = '{{ $.eventName = "DeleteUser" }}'
metric_name = "DeletesPaged"
{covers}
"#
            )
        };
        let mut record = fixtures::root_sign_in(A, "ev-3", "2024-05-01T12:00:00Z");
        record["userIdentity"] = serde_json::json!({"type": "IAMUser"});
        record["eventName"] = "DeleteUser".into();
        let event = decode(&fixtures::eventbridge(&record, None).to_string()).unwrap();

        let same_pattern = catalog(&[], &[], &rules(""));
        let got: Vec<String> = alerts(classify(&event, &same_pattern))
            .into_iter()
            .map(|a| a.rule_id)
            .collect();
        assert_eq!(got, ["deletes", "deletes-paged"]);
        assert_eq!(
            ids(classify(&alarm_of("deletes"), &same_pattern))[0].0,
            "deletes"
        );

        let covered = catalog(&[], &[], &rules(r#"covers = ["deletes"]"#));
        assert_eq!(
            ids(classify(&event, &covered)),
            vec![("deletes-paged".to_string(), Severity::Critical)]
        );
        assert_eq!(
            ids(classify(&alarm_of("deletes"), &covered)),
            vec![("deletes-paged".to_string(), Severity::Critical)]
        );
    }

    #[test]
    fn alarms_of_seed_rules_keep_their_identity_outside_the_selection() {
        // The default pack has no seed-* rule; their alarms (from a hub with
        // pack = ["seed"]) still carry their own title and severity.
        let default = PackCatalog::builtin().unwrap();
        let got = alerts(classify(&alarm_of("seed-kms-decrypt-failures"), &default));
        assert_eq!(got[0].rule_id, "seed-kms-decrypt-failures");
        assert_eq!(got[0].title, "KMS Decrypt calls that failed");
        assert_eq!(got[0].severity, Severity::Medium);
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
