//! `hub rules ...`: list, show, test and verify the detection pack.
//!
//! Results go to stdout (a table, or JSON with `--output json`); problems go to stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value as Json, json};
use shared::pattern::{Event, Pattern};
use shared::rules::input::Item;
use shared::rules::{Pack, Rule, UserRules, unwrap_envelope};

use super::print_json;
use crate::cli::{GlobalArgs, Output, RulesCommand};
use crate::exit::ExitStatus;
use crate::input::{Source, read_events};

/// Version of the JSON documents `rules list|show|verify` and `replay` print.
pub const SCHEMA_VERSION: u32 = 1;

/// The `--config` default: when this file is absent the built-in pack is used.
const DEFAULT_CONFIG: &str = "hub.toml";

pub fn run(global: &GlobalArgs, command: &RulesCommand) -> ExitStatus {
    match command {
        RulesCommand::List => with_pack(global, |pack| list(global.output, pack)),
        RulesCommand::Show { id } => with_pack(global, |pack| show(global.output, pack, id)),
        RulesCommand::Test {
            rule,
            pattern,
            files,
        } => test(global, rule.as_deref(), pattern.as_deref(), files),
        RulesCommand::Verify => with_pack(global, |pack| verify(global.output, pack)),
    }
}

fn with_pack(global: &GlobalArgs, f: impl FnOnce(&Pack) -> ExitStatus) -> ExitStatus {
    match pack_for(global) {
        Ok(pack) => f(&pack),
        Err(e) => {
            eprintln!("error: {e}");
            ExitStatus::Usage
        }
    }
}

/// The `[monitoring]` keys the pack depends on; everything else in the file belongs to
/// the hub's configuration and is ignored here.
#[derive(Deserialize)]
struct Selection {
    #[serde(default)]
    monitoring: Option<MonitoringSelection>,
    /// `hub.member_role`: the tamper rule leaves out that role's hub sessions.
    #[serde(default)]
    hub: Option<HubSelection>,
}

#[derive(Deserialize)]
struct HubSelection {
    #[serde(default)]
    member_role: Option<String>,
}

#[derive(Deserialize)]
struct MonitoringSelection {
    #[serde(default)]
    pack: Option<Vec<String>>,
    #[serde(default)]
    disable: Vec<String>,
}

/// The pack the `rules` and `replay` commands use: the built-in pack when the default
/// configuration file is absent; otherwise the file's `[monitoring] pack` / `disable`
/// selection of built-ins plus its `[[rule]]` tables. A `--config` (or
/// `ORGWATCH_HUB_CONFIG`) naming a missing file is an error.
///
/// TODO(lead): once `crate::config::HubConfig` is the one parser of hub.toml for every
/// command, take `pack` / `disable` from `HubConfig::monitoring` here. Keep
/// `UserRules::from_toml(path, text)` for the `[[rule]]` tables: it keeps their positions
/// for error messages (`UserRules::from_tables` works from `HubConfig::rule` but loses them).
pub fn pack_for(global: &GlobalArgs) -> Result<Pack, String> {
    pack_for_path(&global.config)
}

/// [`pack_for`] for a configuration file path.
pub fn pack_for_path(path: &Path) -> Result<Pack, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG) => {
            tracing::debug!("no {DEFAULT_CONFIG}: using the built-in pack");
            return Pack::builtin().map_err(|e| e.to_string());
        }
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let selection: Selection =
        shared::config::parse_toml(path, &text).map_err(|e| e.to_string())?;
    let (pack, disable) = match selection.monitoring {
        Some(m) => (
            m.pack
                .unwrap_or_else(|| crate::config::MonitoringSection::default().pack),
            m.disable,
        ),
        None => (crate::config::MonitoringSection::default().pack, Vec::new()),
    };
    let user = UserRules::from_toml(path, &text).map_err(|e| e.to_string())?;
    let role = selection
        .hub
        .and_then(|h| h.member_role)
        .unwrap_or_else(|| shared::naming::DEFAULT_MEMBER_ROLE.to_string());
    Pack::from_config(&pack, &disable, &user)
        .map_err(|e| e.to_string())?
        .for_member_role(&role)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The packs that select a built-in rule (`cis`, `seed`, `all`); none for the user's rules.
fn packs_of(rule: &Rule) -> Vec<&'static str> {
    if rule.origin.is_builtin() {
        shared::rules::packs_of(&rule.id)
    } else {
        Vec::new()
    }
}

fn list_text(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn origin_text(rule: &Rule) -> String {
    match &rule.origin {
        shared::rules::Origin::Builtin(file) => {
            format!("built-in ({}/{file})", shared::rules::BUILTIN_DIR)
        }
        shared::rules::Origin::Config(path) => format!("config ({})", path.display()),
    }
}

// ---------------------------------------------------------------------------------------
// list

fn list(output: Output, pack: &Pack) -> ExitStatus {
    match output {
        Output::Json => {
            let rules: Vec<Json> = pack
                .rules()
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "title": r.title,
                        "severity": r.severity,
                        "pattern": r.pattern.as_str(),
                        "metric_name": r.metric_name,
                        "namespace": r.namespace,
                        "security_hub": r.security_hub,
                        "forward": r.forward,
                        "covers": r.covers,
                        "packs": packs_of(r),
                        "origin": r.origin,
                        "fixtures": r.fixtures.len(),
                    })
                })
                .collect();
            print_json(&json!({"schema_version": SCHEMA_VERSION, "rules": rules}))
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = pack
                .rules()
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.severity.to_string(),
                        if r.forward { "yes" } else { "no" }.to_string(),
                        r.security_hub.clone().unwrap_or_else(|| "-".into()),
                        list_text(&packs_of(r)),
                        r.metric_name.clone(),
                        r.title.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ID",
                        "SEVERITY",
                        "FORWARD",
                        "SECURITY HUB",
                        "PACKS",
                        "METRIC",
                        "TITLE"
                    ],
                    &rows
                )
            );
            ExitStatus::Success
        }
    }
}

// ---------------------------------------------------------------------------------------
// show

fn show(output: Output, pack: &Pack, id: &str) -> ExitStatus {
    let Some(rule) = pack.get(id) else {
        let ids: Vec<&str> = pack.rules().iter().map(|r| r.id.as_str()).collect();
        eprintln!(
            "error: no rule \"{id}\" in the pack (rules: {})",
            ids.join(", ")
        );
        return ExitStatus::Usage;
    };
    let filters = rule.eventbridge_filters();
    match output {
        Output::Json => {
            let mut value = match serde_json::to_value(rule) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: cannot print JSON: {e}");
                    return ExitStatus::Failure;
                }
            };
            if let Json::Object(map) = &mut value {
                map.insert(
                    "eventbridge_filters".into(),
                    match &filters {
                        Ok(f) => json!(f),
                        Err(e) => json!({"error": e.to_string()}),
                    },
                );
            }
            print_json(&json!({"schema_version": SCHEMA_VERSION, "rule": value}))
        }
        Output::Table => {
            let mut out = String::new();
            let _ = writeln!(out, "{}  {}", rule.id, rule.title);
            let mut field = |k: &str, v: &str| {
                let _ = writeln!(out, "{k:<20} {v}");
            };
            field("severity:", rule.severity.as_str());
            field("security hub:", rule.security_hub.as_deref().unwrap_or("-"));
            field("defined in:", &origin_text(rule));
            field("pattern:", rule.pattern.as_str());
            match &filters {
                Ok(f) if f.len() == 1 => field("eventbridge filter:", &f[0]),
                Ok(f) => {
                    for (i, p) in f.iter().enumerate() {
                        field(&format!("eventbridge part {}:", i + 1), p);
                    }
                }
                Err(e) => field("eventbridge filter:", &format!("none ({e})")),
            }
            field(
                "metric:",
                &format!("{}/{}", rule.namespace, rule.metric_name),
            );
            field(
                "alarm:",
                &format!(
                    "{} {} {} over {} x {}s (missing data: {})",
                    rule.statistic.as_str(),
                    rule.comparison.as_str(),
                    rule.threshold,
                    rule.evaluation_periods,
                    rule.period_secs,
                    rule.treat_missing_data.as_str()
                ),
            );
            let forward = match (&rule.forward, &rule.eventbridge_pattern) {
                (true, Some(p)) => format!("yes, events matching {p}"),
                (true, None) => "yes".to_string(),
                (false, _) => "no".to_string(),
            };
            field("forward:", &forward);
            field("covers:", &list_text(&rule.covers));
            if rule.origin.is_builtin() {
                field("packs:", &list_text(&packs_of(rule)));
            }
            field(
                "fixtures:",
                &format!(
                    "{} must match, {} must not",
                    rule.positive_fixtures().count(),
                    rule.negative_fixtures().count()
                ),
            );
            let _ = writeln!(out, "\n{}", rule.description);
            let _ = writeln!(out, "\nRemediation:\n{}", rule.remediation);
            print!("{out}");
            ExitStatus::Success
        }
    }
}

// ---------------------------------------------------------------------------------------
// test

/// What `rules test` evaluates.
enum Matcher {
    /// `--pattern`: events as they are.
    Pattern(Box<Pattern>),
    /// The pack (or one rule of it): EventBridge envelopes are unwrapped to their record.
    Pack(Pack, Option<String>),
}

struct Match {
    index: usize,
    rule: String,
    source: String,
    line: usize,
    event_name: String,
    event_time: String,
}

fn test(
    global: &GlobalArgs,
    rule: Option<&str>,
    pattern: Option<&str>,
    files: &[PathBuf],
) -> ExitStatus {
    let matcher = match (pattern, rule) {
        (Some(text), _) => match Pattern::parse(text) {
            Ok(p) => Matcher::Pattern(Box::new(p)),
            Err(e) => {
                eprintln!("error: invalid pattern (column {}):\n{e}", e.column());
                return ExitStatus::Usage;
            }
        },
        (None, rule) => {
            let pack = match pack_for(global) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitStatus::Usage;
                }
            };
            if let Some(id) = rule
                && pack.get(id).is_none()
            {
                eprintln!("error: no rule \"{id}\" in the pack");
                return ExitStatus::Usage;
            }
            Matcher::Pack(pack, rule.map(str::to_string))
        }
    };

    let mut matches = Vec::new();
    let mut total = 0usize;
    let mut failed = false;
    for source in Source::from_args(files) {
        let label = source.label();
        let result = read_events(&source, |line, item| {
            let index = total;
            total += 1;
            let (event, record) = match item {
                Item::Record(v) => {
                    let v = match &matcher {
                        Matcher::Pack(..) => unwrap_envelope(v),
                        Matcher::Pattern(_) => v,
                    };
                    (Event::from_value(v), Some(v))
                }
                Item::Text(t) => (Event::from_message(t), None),
            };
            let field = |k: &str| {
                record
                    .and_then(|r| r.get(k))
                    .and_then(Json::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            let mut hit = |rule: &str| {
                matches.push(Match {
                    index,
                    rule: rule.to_string(),
                    source: label.clone(),
                    line,
                    event_name: field("eventName"),
                    event_time: field("eventTime"),
                })
            };
            match &matcher {
                Matcher::Pattern(p) => {
                    if p.matches(&event) {
                        hit("pattern");
                    }
                }
                Matcher::Pack(pack, only) => {
                    for r in pack.matching(&event) {
                        if only.as_deref().is_none_or(|id| id == r.id) {
                            hit(&r.id);
                        }
                    }
                }
            }
        });
        if let Err(e) = result {
            eprintln!("error: {e}");
            failed = true;
        }
    }

    let status = match global.output {
        Output::Json => {
            // Exactly {"schema_version": 1, "total": N, "matches": [{"index": i, "rule":
            // "ID"}, ...]}, on one line: the schema_version every JSON output carries.
            #[derive(serde::Serialize)]
            struct Hit<'a> {
                index: usize,
                rule: &'a str,
            }
            #[derive(serde::Serialize)]
            struct Doc<'a> {
                schema_version: u32,
                total: usize,
                matches: Vec<Hit<'a>>,
            }
            let doc = Doc {
                schema_version: SCHEMA_VERSION,
                total,
                matches: matches
                    .iter()
                    .map(|m| Hit {
                        index: m.index,
                        rule: &m.rule,
                    })
                    .collect(),
            };
            super::print_json_line(&doc)
        }
        Output::Table => {
            if !matches.is_empty() {
                let rows: Vec<Vec<String>> = matches
                    .iter()
                    .map(|m| {
                        vec![
                            m.index.to_string(),
                            m.rule.clone(),
                            m.event_name.clone(),
                            m.event_time.clone(),
                            format!("{}:{}", m.source, m.line),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["EVENT", "RULE", "EVENT NAME", "TIME", "SOURCE"], &rows)
                );
            }
            println!(
                "{total} event{} read, {} match{}",
                if total == 1 { "" } else { "s" },
                matches.len(),
                if matches.len() == 1 { "" } else { "es" }
            );
            ExitStatus::Success
        }
    };
    if failed { ExitStatus::Failure } else { status }
}

// ---------------------------------------------------------------------------------------
// verify

fn verify(output: Output, pack: &Pack) -> ExitStatus {
    let report = pack.verify();
    let failures: Vec<_> = report.failures().collect();
    let printed = match output {
        Output::Json => print_json(&json!({
            "schema_version": SCHEMA_VERSION,
            "ok": report.is_ok(),
            "rules": report.rules,
        })),
        Output::Table => {
            for f in &failures {
                println!("FAIL {f}");
            }
            let covered: usize = report.rules.iter().map(|r| r.covered_fixtures).sum();
            let covered = if covered == 0 {
                String::new()
            } else {
                format!(", {covered} fixtures of covered rules")
            };
            println!(
                "{}, {}{covered} (each as a trail record and in its EventBridge envelope): {}",
                shared::text::plural(report.rules.len() as u64, "rule", "rules"),
                shared::text::plural(report.fixture_count() as u64, "fixture", "fixtures"),
                if failures.is_empty() {
                    "all pass".to_string()
                } else {
                    format!("{} failed", failures.len())
                }
            );
            ExitStatus::Success
        }
    };
    if printed != ExitStatus::Success {
        printed
    } else if failures.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "".into()]],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq\n");
    }
}
