//! Pure comparison of desired and observed state into a [`Plan`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{ResourceKey, Spec};

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    pub observed: String,
    pub desired: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Create,
    Update {
        fields: Vec<FieldDiff>,
    },
    Delete,
    /// Tag a resource that has an orgwatch name but not the managed tag as orgwatch's
    /// (`--adopt`); it then converges like any other.
    Adopt,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub key: ResourceKey,
    #[serde(flatten)]
    pub action: Action,
    /// The desired settings (create and update); `None` for delete and adopt.
    #[serde(skip)]
    pub desired: Option<Spec>,
    /// What was observed (update, delete and adopt).
    #[serde(skip)]
    pub observed: Option<Spec>,
}

/// What must change to reach the desired state, in the order it must be done.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unchanged: Vec<ResourceKey>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, pred: impl Fn(&Action) -> bool) -> usize {
        self.changes.iter().filter(|c| pred(&c.action)).count()
    }
}

/// Compares desired with observed. Creates and updates come first in creation order
/// (by account, region, kind); deletes follow in reverse kind order, so dependants go
/// before what they depend on.
pub fn diff(desired: &BTreeMap<ResourceKey, Spec>, observed: &BTreeMap<ResourceKey, Spec>) -> Plan {
    let mut plan = Plan::default();
    let mut upserts = Vec::new();
    for (key, want) in desired {
        match observed.get(key) {
            None => upserts.push(Change {
                key: key.clone(),
                action: Action::Create,
                desired: Some(want.clone()),
                observed: None,
            }),
            Some(have) => {
                let fields = field_diffs(have, want);
                if fields.is_empty() {
                    plan.unchanged.push(key.clone());
                } else {
                    upserts.push(Change {
                        key: key.clone(),
                        action: Action::Update { fields },
                        desired: Some(want.clone()),
                        observed: Some(have.clone()),
                    });
                }
            }
        }
    }
    upserts.sort_by(|a, b| {
        (a.key.kind, &a.key.account, &a.key.region, &a.key.name).cmp(&(
            b.key.kind,
            &b.key.account,
            &b.key.region,
            &b.key.name,
        ))
    });
    let mut deletes: Vec<Change> = observed
        .iter()
        // The member stack's roles and trusted access are never deleted by the hub.
        .filter(|(k, _)| !desired.contains_key(*k) && !k.kind.never_deleted())
        .map(|(k, have)| Change {
            key: k.clone(),
            action: Action::Delete,
            desired: None,
            observed: Some(have.clone()),
        })
        .collect();
    deletes.sort_by(|a, b| {
        (b.key.kind, &a.key.account, &a.key.region, &a.key.name).cmp(&(
            a.key.kind,
            &b.key.account,
            &b.key.region,
            &b.key.name,
        ))
    });
    plan.changes = upserts;
    plan.changes.extend(deletes);
    plan
}

/// Why a plan cannot be applied as it is: it would create or change resources the hub
/// never writes ([`crate::model::Kind::provided`]). The message says what to deploy.
pub fn provided_changes(plan: &Plan) -> Option<String> {
    let names: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.key.kind.provided())
        .map(|c| match &c.action {
            Action::Update { fields } => format!(
                "{} {} differs ({})",
                c.key.kind,
                c.key.name,
                field_names(fields)
            ),
            _ => format!("{} {} is missing", c.key.kind, c.key.name),
        })
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "{}: orgwatch never writes IAM roles (whoever may write a role's policies can make it an administrator); deploy or update the member stack {} (infra/cloudformation/member-role.yaml, as a StackSet over the organisation and as a stack in the management account) in account {}, then run hub enroll again",
            names.join("; "),
            shared::naming::MEMBER_STACK,
            plan.changes
                .iter()
                .find(|c| c.key.kind.provided())
                .map(|c| c.key.account.as_str())
                .unwrap_or_default()
        )
    })
}

/// The names of the fields that differ, as a list in prose (`pattern, state`).
pub fn field_names(fields: &[FieldDiff]) -> String {
    fields
        .iter()
        .map(|f| f.field.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn field_diffs(have: &Spec, want: &Spec) -> Vec<FieldDiff> {
    let have = have.fields();
    let want = want.fields();
    want.iter()
        .filter_map(|(field, desired)| {
            let observed = have.get(field).cloned().unwrap_or_default();
            (observed != *desired).then(|| FieldDiff {
                field: field.clone(),
                observed,
                desired: desired.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn key(account: &str, kind: Kind, name: &str) -> ResourceKey {
        ResourceKey::new(account, "us-east-1", kind, name)
    }

    fn group(days: i32) -> Spec {
        Spec::LogGroup(LogGroupSpec {
            retention_days: days,
        })
    }

    fn filter(pattern: &str) -> Spec {
        Spec::MetricFilter(MetricFilterSpec {
            log_group: "/orgwatch/cloudtrail".into(),
            pattern: pattern.into(),
            metric_name: "m".into(),
            namespace: "orgwatch".into(),
            value: "1".into(),
        })
    }

    #[test]
    fn equal_states_give_an_empty_plan() {
        let mut d = BTreeMap::new();
        d.insert(key("1", Kind::LogGroup, "g"), group(365));
        let plan = diff(&d, &d.clone());
        assert!(plan.is_empty());
        assert_eq!(plan.unchanged.len(), 1);
    }

    #[test]
    fn missing_changed_and_extra_resources() {
        let mut d = BTreeMap::new();
        d.insert(key("1", Kind::LogGroup, "g"), group(365));
        d.insert(key("1", Kind::MetricFilter, "f"), filter("{ $.a = 1 }"));
        d.insert(key("1", Kind::Alarm, "a"), group(1));
        let mut o = BTreeMap::new();
        o.insert(key("1", Kind::LogGroup, "g"), group(30));
        o.insert(key("1", Kind::MetricFilter, "f"), filter("{ $.a = 1 }"));
        o.insert(key("1", Kind::MetricFilter, "old"), filter("{ $.b = 1 }"));
        o.insert(key("1", Kind::ForwardRule, "gone"), group(1));
        let plan = diff(&d, &o);
        let summary: Vec<(String, String)> = plan
            .changes
            .iter()
            .map(|c| {
                let a = match &c.action {
                    Action::Create => "create".to_string(),
                    Action::Update { fields } => format!(
                        "update {}",
                        fields
                            .iter()
                            .map(|f| format!("{}:{}->{}", f.field, f.observed, f.desired))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    Action::Delete => "delete".to_string(),
                    Action::Adopt => "adopt".to_string(),
                };
                (c.key.name.clone(), a)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("g".to_string(), "update retention_days:30->365".to_string()),
                ("a".to_string(), "create".to_string()),
                ("gone".to_string(), "delete".to_string()),
                ("old".to_string(), "delete".to_string()),
            ]
        );
        assert_eq!(plan.unchanged, vec![key("1", Kind::MetricFilter, "f")]);
    }

    #[test]
    fn only_differing_fields_are_reported() {
        let mut d = BTreeMap::new();
        d.insert(key("1", Kind::MetricFilter, "f"), filter("{ $.a = 2 }"));
        let mut o = BTreeMap::new();
        o.insert(key("1", Kind::MetricFilter, "f"), filter("{ $.a = 1 }"));
        let plan = diff(&d, &o);
        match &plan.changes[0].action {
            Action::Update { fields } => {
                assert_eq!(fields.len(), 1);
                assert_eq!(fields[0].field, "pattern");
                assert_eq!(fields[0].observed, "{ $.a = 1 }");
            }
            other => panic!("expected update, got {other:?}"),
        }
    }

    #[test]
    fn offboarding_deletes_dependants_first() {
        let mut o = BTreeMap::new();
        o.insert(key("1", Kind::LogGroup, "g"), group(365));
        o.insert(key("1", Kind::MetricFilter, "f"), filter("x"));
        o.insert(key("1", Kind::Alarm, "a"), group(1));
        let plan = diff(&BTreeMap::new(), &o);
        let kinds: Vec<Kind> = plan.changes.iter().map(|c| c.key.kind).collect();
        assert_eq!(kinds, vec![Kind::Alarm, Kind::MetricFilter, Kind::LogGroup]);
    }
}
