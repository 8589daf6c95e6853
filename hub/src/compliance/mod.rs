//! Compliance: what `hub status` found, as one verdict per member account, region and rule
//! (does the rule's metric filter and alarm exist as declared there?), and the report
//! formats that carry it to the tools security teams already use (Prowler's outputs):
//! CSV for spreadsheets, OCSF Compliance Findings for security lakes and Security Hub, and
//! a self-contained HTML coverage report.
//!
//! [`Compliance::of`] is a pure decider over the finished [`Report`]: time and facts in,
//! verdicts out. A format is a file here with one `render` function, plus a line in
//! [`Format::render`].

mod csv;
mod html;
mod ocsf;

use std::collections::BTreeMap;

use crate::commands::reconcile::{Outcome, Report};
use crate::desired::RuleDeploy;
use crate::diff::Action;
use crate::model::{Kind, ResourceKey};

/// The benchmark the built-in `cis-*` rules implement (their files name the same version).
pub const CIS_BENCHMARK: &str = "CIS AWS Foundations Benchmark v3.0.0";
/// The standard named for rules of the pack that are not CIS controls.
pub const ORGWATCH_PACK: &str = "orgwatch detection pack";

/// A compliance report format of `hub status --output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ocsf,
    Html,
}

impl Format {
    /// The report in this format.
    pub fn render(self, c: &Compliance<'_>) -> String {
        match self {
            Format::Csv => csv::render(c),
            Format::Ocsf => ocsf::render(c),
            Format::Html => html::render(c),
        }
    }
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The rule's metric filter(s) and alarm exist as declared.
    Pass,
    /// Something the rule needs is missing or differs.
    Fail,
    /// The account or region could not be read, so nothing is known.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// One rule of the pack, as the reports name it.
#[derive(Debug)]
pub struct RuleInfo<'a> {
    pub rule: &'a RuleDeploy,
    /// The CIS control (`4.3` of `cis-4.3`), `None` for the pack's other rules.
    pub control: Option<&'a str>,
}

impl RuleInfo<'_> {
    pub fn id(&self) -> &str {
        &self.rule.id
    }

    /// The standard the rule belongs to.
    pub fn standard(&self) -> &'static str {
        if self.control.is_some() {
            CIS_BENCHMARK
        } else {
            ORGWATCH_PACK
        }
    }
}

/// One rule in one member account and region.
#[derive(Debug)]
pub struct Check {
    pub account: String,
    pub region: String,
    /// Index into [`Compliance::rules`].
    pub rule: usize,
    pub verdict: Verdict,
    /// Why it failed or is unknown; empty for a pass.
    pub reason: String,
    /// The resources the check looked at: the rule's metric filters and its alarm.
    pub resources: Vec<ResourceKey>,
}

/// What an account's row shows for one rule: the worst verdict over its regions.
#[derive(Debug)]
pub struct Cell<'c> {
    pub verdict: Verdict,
    /// The checks behind it, one per region.
    pub checks: Vec<&'c Check>,
}

/// A change `hub enroll` would make, as the drift list shows it.
#[derive(Debug)]
pub struct Drift {
    pub key: ResourceKey,
    /// `missing`, `differs`, `unexpected`, `untagged` or `unmanaged (...)`.
    pub what: String,
    /// For `differs`: each field as `field: observed -> desired`.
    pub fields: Vec<String>,
}

/// Everything a compliance report shows.
#[derive(Debug)]
pub struct Compliance<'a> {
    pub generated_at_ms: i64,
    pub organization_id: Option<&'a str>,
    pub central_account: &'a str,
    pub delivery: &'static str,
    pub rules: Vec<RuleInfo<'a>>,
    /// Sorted by account, region, then rule in pack order.
    pub checks: Vec<Check>,
    /// Accounts or regions that could not be read, with why.
    pub failures: Vec<(String, String, String)>,
    pub drift: Vec<Drift>,
}

impl<'a> Compliance<'a> {
    /// The verdicts of `report` (a `hub status` run over the pack `rules`), generated at
    /// `now_ms`. Rules are checked in the member regions that receive CloudTrail events
    /// (`log_regions`: every monitored region with eventbridge delivery, the home region
    /// with trail delivery), and for accounts that could not be read at all.
    pub fn of(
        report: &'a Report,
        rules: &'a [RuleDeploy],
        log_regions: &[String],
        now_ms: i64,
    ) -> Compliance<'a> {
        let rules: Vec<RuleInfo<'a>> = rules
            .iter()
            .map(|rule| RuleInfo {
                rule,
                control: rule.id.strip_prefix("cis-"),
            })
            .collect();
        let mut checks = Vec::new();
        let mut failures = Vec::new();
        let mut drift = Vec::new();
        for o in &report.results {
            if let Some(e) = &o.error {
                failures.push((o.account_id.clone(), o.region.clone(), e.clone()));
            }
            for c in &o.changes {
                drift.push(drift_of(c));
            }
            for u in &o.unmanaged {
                drift.push(Drift {
                    key: u.key.clone(),
                    what: format!("unmanaged ({})", u.reason),
                    fields: Vec::new(),
                });
            }
            let checked = o.region == "-" || log_regions.contains(&o.region);
            if o.scope != "member" || !checked {
                continue;
            }
            for (i, info) in rules.iter().enumerate() {
                checks.push(check(o, i, info.rule));
            }
        }
        checks
            .sort_by(|a, b| (&a.account, &a.region, a.rule).cmp(&(&b.account, &b.region, b.rule)));
        drift.sort_by(|a, b| a.key.cmp(&b.key));
        Compliance {
            generated_at_ms: now_ms,
            organization_id: report.organization_id.as_deref(),
            central_account: &report.central_account,
            delivery: report.delivery.as_str(),
            rules,
            checks,
            failures,
            drift,
        }
    }

    /// Member accounts in order, each with one cell per rule (pack order).
    pub fn accounts(&self) -> Vec<(&str, Vec<Cell<'_>>)> {
        let mut by_account: BTreeMap<&str, Vec<Cell<'_>>> = BTreeMap::new();
        for c in &self.checks {
            let row = by_account.entry(&c.account).or_insert_with(|| {
                (0..self.rules.len())
                    .map(|_| Cell {
                        verdict: Verdict::Pass,
                        checks: Vec::new(),
                    })
                    .collect()
            });
            if let Some(cell) = row.get_mut(c.rule) {
                cell.verdict = cell.verdict.max(c.verdict);
                cell.checks.push(c);
            }
        }
        by_account.into_iter().collect()
    }

    /// How many checks have each verdict.
    pub fn count(&self, v: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == v).count()
    }
}

/// Whether rule `rule` holds in the member region of `o`.
fn check(o: &Outcome, index: usize, rule: &RuleDeploy) -> Check {
    let mut resources: Vec<ResourceKey> = (0..rule.filters.len().max(1))
        .map(|part| {
            ResourceKey::new(
                &o.account_id,
                &o.region,
                Kind::MetricFilter,
                shared::naming::metric_filter_name(&rule.id, part),
            )
        })
        .collect();
    resources.push(ResourceKey::new(
        &o.account_id,
        &o.region,
        Kind::Alarm,
        shared::naming::alarm_name(&rule.id),
    ));
    let base = |verdict, reason: String| Check {
        account: o.account_id.clone(),
        region: o.region.clone(),
        rule: index,
        verdict,
        reason,
        resources: resources.clone(),
    };
    if o.status == "failed" {
        let why = o
            .error
            .as_deref()
            .unwrap_or("the account could not be read");
        return base(Verdict::Unknown, why.to_string());
    }
    let problems: Vec<String> = resources.iter().filter_map(|key| problem(o, key)).collect();
    if problems.is_empty() {
        base(Verdict::Pass, String::new())
    } else {
        base(Verdict::Fail, problems.join("; "))
    }
}

/// What is wrong with `key` in `o`, `None` when it is as declared.
fn problem(o: &Outcome, key: &ResourceKey) -> Option<String> {
    let what = format!("{} {}", key.kind, key.name);
    if let Some(c) = o.changes.iter().find(|c| &c.key == key) {
        return Some(match &c.action {
            Action::Create => format!("{what} is missing"),
            Action::Delete => format!("{what} is not declared"),
            Action::Adopt => format!("{what} is not tagged as orgwatch's"),
            Action::Update { fields } => {
                format!("{what} differs ({})", crate::diff::field_names(fields))
            }
        });
    }
    if let Some(u) = o.unmanaged.iter().find(|u| &u.key == key) {
        return Some(format!("{what}: {}", u.reason));
    }
    if o.coverage.contains(key) {
        None
    } else {
        Some(format!("{what} was not seen"))
    }
}

fn drift_of(c: &crate::diff::Change) -> Drift {
    let (what, fields) = match &c.action {
        Action::Create => ("missing", Vec::new()),
        Action::Delete => ("unexpected", Vec::new()),
        Action::Adopt => ("untagged", Vec::new()),
        Action::Update { fields } => (
            "differs",
            fields
                .iter()
                .map(|f| format!("{}: {} -> {}", f.field, f.observed, f.desired))
                .collect(),
        ),
    };
    Drift {
        key: c.key.clone(),
        what: what.to_string(),
        fields,
    }
}

#[cfg(test)]
pub(crate) mod tests;
