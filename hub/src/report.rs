//! Tables for people; `--output json` prints the [`Report`] itself.

use std::fmt::Write;

use crate::commands::reconcile::{Mode, Outcome, Report};
use crate::diff::Action;
use crate::model::Kind;

/// The run as a table, then every change (or drift) one per line.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
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
                Action::Update { fields } => format!(
                    "update {}",
                    fields
                        .iter()
                        .map(|f| f.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let _ = writeln!(
                details,
                "  {} {} {} {}: {verb} {what}",
                c.key.account, c.key.region, c.key.kind, c.key.name
            );
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
    for w in &r.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    let _ = writeln!(out, "\nwrites: {}  calls: {}", r.writes, r.calls);
    out
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
                        c.key.kind == Kind::MetricFilter && c.key.name.starts_with(&filter)
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
