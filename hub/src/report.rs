//! Tables for people; `--output json` prints the [`Report`] itself.

use std::fmt::Write;

use crate::commands::reconcile::{Mode, Outcome, Report};
use crate::diff::Action;
use crate::model::Kind;

/// The run as a table, then every change (or drift) one per line.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        match &r.organization_id {
            Some(id) => format!("organization {id} (central account {})", r.central_account),
            None => format!(
                "standalone account {} (no organization: an account trail, as an organization of one)",
                r.central_account
            ),
        }
    );
    let header = [
        "ACCOUNT", "REGION", "SCOPE", "STATUS", "CREATE", "UPDATE", "DELETE", "OK", "RULES",
    ];
    let rows: Vec<[String; 9]> = r.results.iter().map(|o| row(r, o)).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{c:<w$}");
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let verb = match r.command {
        Mode::Plan => "would",
        Mode::Status => "drift:",
        Mode::Enroll | Mode::Offboard => "did",
    };
    let mut details = String::new();
    for o in &r.results {
        if let Some(e) = &o.error {
            // A failure's hint (and, with -v, its full chain) on lines of their own, under it.
            let e = e.replace('\n', "\n  ");
            let _ = writeln!(details, "  {} {} FAILED: {e}", o.account_id, o.region);
        }
        for c in &o.changes {
            let what = match &c.action {
                Action::Create => "create".to_string(),
                Action::Delete => "delete".to_string(),
                Action::Adopt => format!(
                    "adopt (tag {}={})",
                    shared::naming::MANAGED_TAG,
                    shared::naming::MANAGED_TAG_VALUE
                ),
                Action::Update { fields } => {
                    format!("update {}", crate::diff::field_names(fields))
                }
            };
            let _ = writeln!(
                details,
                "  {} {} {} {}: {verb} {what}",
                c.key.account, c.key.region, c.key.kind, c.key.name
            );
            if let Action::Update { fields } = &c.action {
                for f in fields {
                    field_change(&mut details, &f.field, &f.observed, &f.desired);
                }
            }
        }
        for u in &o.unmanaged {
            let _ = writeln!(
                details,
                "  {} {} {} {}: unmanaged, {} ({})",
                u.key.account, u.key.region, u.key.kind, u.key.name, u.handling, u.reason
            );
        }
    }
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details);
    }
    let count = |f: fn(&Outcome) -> usize| r.results.iter().map(f).sum::<usize>();
    let (create, update, delete, adopt) = (
        count(|o| o.created),
        count(|o| o.updated),
        count(|o| o.deleted),
        count(|o| o.adopted),
    );
    // Terraform's summary line: what a plan would do, what an apply did.
    let summary = match r.command {
        Mode::Plan | Mode::Status => {
            let lead = if r.command == Mode::Plan {
                "Plan"
            } else {
                "Drift"
            };
            let mut s =
                format!("{lead}: {create} to create, {update} to update, {delete} to delete");
            if adopt > 0 {
                s.push_str(&format!(", {adopt} to adopt"));
            }
            s
        }
        Mode::Enroll | Mode::Offboard => {
            let mut s = format!("Applied: {create} created, {update} updated, {delete} deleted");
            if adopt > 0 {
                s.push_str(&format!(", {adopt} adopted"));
            }
            s
        }
    };
    let _ = writeln!(out, "\n{summary}.");
    for w in &r.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    let _ = writeln!(out, "\nwrites: {}  calls: {}", r.writes, r.calls);
    out
}

/// One changed field under its change, old -> new as Terraform shows it: on one line when
/// both values are short and single-line, else each value in full on its own lines.
fn field_change(out: &mut String, field: &str, old: &str, new: &str) {
    let short = |v: &str| v.chars().count() <= 60 && !v.contains('\n');
    let show = |v: &str| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.to_string()
        }
    };
    if short(old) && short(new) {
        let _ = writeln!(out, "      ~ {field}: {} -> {}", show(old), show(new));
    } else {
        let _ = writeln!(out, "      ~ {field}:");
        for (sign, v) in [("-", old), ("+", new)] {
            for (i, line) in show(v).lines().enumerate() {
                let lead = if i == 0 { sign } else { " " };
                let _ = writeln!(out, "          {lead} {line}");
            }
        }
    }
}

fn row(r: &Report, o: &Outcome) -> [String; 9] {
    let rules = if o.scope == "member" && o.status != "failed" {
        // A rule is covered when its alarm and every one of its filters are as declared.
        let ok = r
            .rules
            .iter()
            .filter(|id| {
                let alarm = shared::naming::alarm_name(id);
                let filter = shared::naming::metric_filter_name(id, 0);
                let has = |kind: Kind, name: &str| {
                    o.coverage.iter().any(|k| k.kind == kind && k.name == name)
                };
                has(Kind::Alarm, &alarm)
                    && has(Kind::MetricFilter, &filter)
                    && !o.changes.iter().any(|c| {
                        // The rule's filters: its name, and `-partN` of a split pattern
                        // (not cis-4.10's, whose name merely starts with cis-4.1's).
                        c.key.kind == Kind::MetricFilter
                            && (c.key.name == filter
                                || c.key
                                    .name
                                    .strip_prefix(filter.as_str())
                                    .is_some_and(|rest| rest.starts_with("-part")))
                    })
            })
            .count();
        let expected = if o.coverage.iter().any(|k| k.kind == Kind::LogGroup)
            || o.changes.iter().any(|c| c.key.kind == Kind::LogGroup)
        {
            r.rules.len()
        } else {
            0
        };
        format!("{ok}/{expected}")
    } else {
        "-".to_string()
    };
    [
        o.account_id.clone(),
        o.region.clone(),
        o.scope.to_string(),
        o.status.to_string(),
        o.created.to_string(),
        o.updated.to_string(),
        o.deleted.to_string(),
        o.unchanged.to_string(),
        rules,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::reconcile::Unmanaged;
    use crate::model::ResourceKey;

    fn member(changes: Vec<crate::diff::Change>, coverage: Vec<ResourceKey>) -> Report {
        let mut o = Outcome::failed("111122223333", "us-east-1", "member", String::new());
        o.status = "drift";
        o.error = None;
        o.updated = changes.len();
        o.changes = changes;
        o.coverage = coverage;
        Report {
            schema_version: 1,
            command: Mode::Plan,
            setup: "organization",
            organization_id: Some("o-1".into()),
            central_account: "123456789012".into(),
            delivery: crate::config::Delivery::Trail,
            rules: vec!["cis-4.1".into(), "cis-4.10".into()],
            results: vec![o],
            writes: 0,
            calls: 0,
            calls_by_account: Default::default(),
            calls_by_operation: Default::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_plan_shows_old_and_new_values_of_each_changed_field() {
        use crate::diff::{Change, FieldDiff};
        let key = |kind, name: &str| ResourceKey::new("111122223333", "us-east-1", kind, name);
        let policy_old = "{\n  \"Statement\": []\n}";
        let policy_new = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"cloudtrail.amazonaws.com\"}}]}";
        let change = Change {
            key: key(Kind::MetricFilter, "orgwatch-cis-4.10"),
            action: Action::Update {
                fields: vec![
                    FieldDiff {
                        field: "pattern".into(),
                        observed: "{ $.eventName = \"Nothing\" }".into(),
                        desired: "{ $.eventName = \"AuthorizeSecurityGroupIngress\" }".into(),
                    },
                    FieldDiff {
                        field: "policy".into(),
                        observed: policy_old.into(),
                        desired: policy_new.into(),
                    },
                    FieldDiff {
                        field: "kms_key_id".into(),
                        observed: String::new(),
                        desired: "alias/orgwatch".into(),
                    },
                ],
            },
            desired: None,
            observed: None,
        };
        let coverage = vec![
            key(Kind::LogGroup, shared::naming::LOG_GROUP),
            key(Kind::MetricFilter, "orgwatch-cis-4.1"),
            key(Kind::Alarm, "orgwatch-cis-4.1"),
            key(Kind::Alarm, "orgwatch-cis-4.10"),
        ];
        let text = table(&member(vec![change], coverage));
        let want = format!(
            "  111122223333 us-east-1 metric-filter orgwatch-cis-4.10: would update pattern, policy, kms_key_id
      ~ pattern: {{ $.eventName = \"Nothing\" }} -> {{ $.eventName = \"AuthorizeSecurityGroupIngress\" }}
      ~ policy:
          - {{
              \"Statement\": []
            }}
          + {policy_new}
      ~ kms_key_id: (none) -> alias/orgwatch
"
        );
        assert!(text.contains(&want), "{text}");
        // cis-4.10's filter drifts; cis-4.1, whose filter name is a prefix of it, holds.
        let row = text
            .lines()
            .find(|l| l.starts_with("111122223333"))
            .unwrap_or_default();
        assert!(row.ends_with(" 1/2"), "{row}");
        assert!(
            text.contains("Plan: 0 to create, 1 to update, 0 to delete."),
            "{text}"
        );
    }

    #[test]
    fn unmanaged_resources_are_listed_with_what_was_done_and_why() {
        let key = ResourceKey::new(
            "111122223333",
            "us-east-1",
            Kind::LogGroup,
            shared::naming::LOG_GROUP,
        );
        let outcome = Outcome {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            scope: "member",
            status: "failed",
            created: 0,
            updated: 0,
            deleted: 0,
            unchanged: 0,
            adopted: 0,
            error: Some("1 resource(s) ... Run `hub enroll --adopt`".into()),
            changes: Vec::new(),
            unmanaged: vec![Unmanaged {
                key,
                reason: crate::observe::missing_tag(),
                handling: "conflict",
            }],
            coverage: Vec::new(),
        };
        let report = Report {
            schema_version: 1,
            command: Mode::Enroll,
            setup: "organization",
            organization_id: Some("o-1".into()),
            central_account: "123456789012".into(),
            delivery: crate::config::Delivery::Eventbridge,
            rules: vec!["cis-4.3".into()],
            results: vec![outcome],
            writes: 0,
            calls: 4,
            calls_by_account: Default::default(),
            calls_by_operation: Default::default(),
            warnings: Vec::new(),
        };
        let text = table(&report);
        assert!(
            text.contains("FAILED: 1 resource(s) ... Run `hub enroll --adopt`"),
            "{text}"
        );
        assert!(
            text.contains(
                "111122223333 us-east-1 log-group /orgwatch/cloudtrail: unmanaged, conflict (it has an orgwatch name but not the orgwatch:managed=true tag)"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["results"][0]["unmanaged"][0]["handling"], "conflict");
        assert_eq!(
            json["results"][0]["unmanaged"][0]["key"]["kind"],
            "log-group"
        );
    }
}
