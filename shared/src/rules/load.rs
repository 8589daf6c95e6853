//! Rule files: TOML into [`RuleSpec`]s (keeping spans), then validation of all specs at
//! once into [`Rule`]s. Every problem becomes a [`ConfigError`] located in its file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value as Json;
use toml::Spanned;

use super::{
    BUILTIN_DIR, BUILTIN_FILES, Comparison, Fixture, Location, MAX_PATTERN_CHARS, MissingData,
    Origin, PackError, Rule, Severity, Statistic, default_namespace,
};
use crate::config::{ConfigError, line_col};
use crate::pattern::Pattern;

/// Longest rule id (it becomes part of metric filter and alarm names).
pub const MAX_ID_CHARS: usize = 64;
/// Longest alarm period CloudWatch accepts for a rule's alarm, and longest total
/// evaluation window (`period_secs * evaluation_periods`).
const MAX_PERIOD_SECS: u32 = 86_400;
const MAX_WINDOW_SECS: u64 = 7 * 86_400;

/// One `[[rule]]` table as written. Spans point into the file it came from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: Spanned<String>,
    pub title: String,
    pub severity: Severity,
    pub pattern: Spanned<String>,
    pub metric_name: Spanned<String>,
    #[serde(default = "spanned_namespace")]
    pub namespace: Spanned<String>,
    #[serde(default = "default_threshold")]
    pub threshold: Spanned<f64>,
    #[serde(default = "default_period")]
    pub period_secs: Spanned<u32>,
    #[serde(default = "default_evaluation_periods")]
    pub evaluation_periods: Spanned<u32>,
    #[serde(default = "default_statistic")]
    pub statistic: Statistic,
    #[serde(default = "default_comparison")]
    pub comparison: Comparison,
    #[serde(default = "default_missing_data")]
    pub treat_missing_data: MissingData,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub remediation: String,
    #[serde(default)]
    pub security_hub: Option<Spanned<String>>,
    #[serde(default = "default_forward")]
    pub forward: Spanned<bool>,
    /// EventBridge event pattern, as JSON text.
    #[serde(default)]
    pub eventbridge_pattern: Option<Spanned<String>>,
    /// Ids of the rules this one covers.
    #[serde(default)]
    pub covers: Vec<Spanned<String>>,
    #[serde(default, rename = "fixture")]
    pub fixtures: Vec<FixtureSpec>,
}

/// One `[[rule.fixture]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureSpec {
    pub name: Spanned<String>,
    pub matches: bool,
    /// A log event; for CloudTrail rules, a CloudTrail record as JSON.
    pub event: Spanned<String>,
}

fn spanned_namespace() -> Spanned<String> {
    Spanned::new(0..0, default_namespace())
}
fn default_threshold() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
fn default_period() -> Spanned<u32> {
    Spanned::new(0..0, 300)
}
fn default_evaluation_periods() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_forward() -> Spanned<bool> {
    Spanned::new(0..0, false)
}
fn default_statistic() -> Statistic {
    Statistic::Sum
}
fn default_comparison() -> Comparison {
    Comparison::GreaterThanOrEqualToThreshold
}
fn default_missing_data() -> MissingData {
    MissingData::NotBreaching
}

/// A file of `[[rule]]` tables and nothing else (the built-in files).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleSpec>,
}

/// The `[[rule]]` tables of a file that also holds other things (the hub's configuration).
#[derive(Deserialize)]
struct ConfigRules {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

/// A spec and the file it came from.
#[derive(Clone, Debug)]
pub(crate) struct Located {
    pub spec: RuleSpec,
    pub origin: Origin,
    /// File name for messages.
    pub path: PathBuf,
    /// The file text the spans point into; `None` when spans are meaningless (rules
    /// rebuilt from already-parsed tables).
    pub text: Option<Arc<str>>,
}

/// Rules a user declared in configuration (`[[rule]]` tables).
#[derive(Clone, Debug, Default)]
pub struct UserRules {
    path: Option<PathBuf>,
    /// The configuration's text, when the rules came from one (locates the selection's
    /// problems).
    text: Option<Arc<str>>,
    specs: Vec<Located>,
}

impl UserRules {
    /// No user rules.
    pub fn none() -> UserRules {
        UserRules::default()
    }

    /// The `[[rule]]` tables of a TOML file; every other key is left to the file's owner.
    /// Errors are located in `text`.
    pub fn from_toml(path: &Path, text: &str) -> Result<UserRules, PackError> {
        let parsed: ConfigRules = crate::config::parse_toml(path, text)?;
        let shared: Arc<str> = Arc::from(text);
        Ok(UserRules {
            path: Some(path.to_path_buf()),
            text: Some(shared.clone()),
            specs: parsed
                .rule
                .into_iter()
                .map(|spec| Located {
                    spec,
                    origin: Origin::Config(path.to_path_buf()),
                    path: path.to_path_buf(),
                    text: Some(shared.clone()),
                })
                .collect(),
        })
    }

    /// Rules from tables that were already parsed (their positions are lost: messages
    /// name the file and the rule only). Prefer [`UserRules::from_toml`].
    pub fn from_tables(path: &Path, tables: &[toml::Table]) -> Result<UserRules, PackError> {
        // Spans only come from parsing text: print the tables back and parse them again.
        let mut problems = Vec::new();
        let mut specs = Vec::with_capacity(tables.len());
        for (i, table) in tables.iter().enumerate() {
            let mut doc = toml::Table::new();
            doc.insert(
                "rule".into(),
                toml::Value::Array(vec![toml::Value::Table(table.clone())]),
            );
            let parsed = toml::to_string(&doc)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    toml::from_str::<RuleFile>(&text).map_err(|e| e.message().trim().to_string())
                });
            match parsed {
                Ok(file) => specs.extend(file.rule.into_iter().map(|spec| Located {
                    spec,
                    origin: Origin::Config(path.to_path_buf()),
                    path: path.to_path_buf(),
                    text: None,
                })),
                Err(e) => problems.push(ConfigError::file(path, format!("rule #{}: {e}", i + 1))),
            }
        }
        if problems.is_empty() {
            Ok(UserRules {
                path: Some(path.to_path_buf()),
                text: None,
                specs,
            })
        } else {
            Err(PackError { problems })
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A problem of the configuration these rules came from, at `keys` (and `entry` of
    /// its list) when found there.
    pub fn problem_at(&self, keys: &[&str], entry: &str, message: String) -> ConfigError {
        let path = self.path().unwrap_or(Path::new("configuration"));
        match self
            .text
            .as_deref()
            .and_then(|t| crate::config::locate(t, keys, Some(entry)).map(|o| (t, o)))
        {
            Some((text, offset)) => ConfigError::at(path, text, offset, message),
            None => ConfigError::file(path, message),
        }
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub(crate) fn specs(&self) -> &[Located] {
        &self.specs
    }
}

/// Parses every built-in file.
pub(crate) fn builtin_specs() -> Result<Vec<Located>, PackError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in BUILTIN_FILES {
        let path = Path::new(BUILTIN_DIR).join(name);
        match crate::config::parse_toml::<RuleFile>(&path, text) {
            Ok(file) => {
                let shared: Arc<str> = Arc::from(*text);
                out.extend(file.rule.into_iter().map(|spec| Located {
                    spec,
                    origin: Origin::Builtin((*name).to_string()),
                    path: path.clone(),
                    text: Some(shared.clone()),
                }));
            }
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(PackError { problems })
    }
}

impl Located {
    /// An error at a byte offset of the file (or about the file when offsets are unknown).
    fn error_at(&self, offset: usize, message: String) -> ConfigError {
        match &self.text {
            Some(text) => ConfigError::at(&self.path, text, offset, message),
            None => ConfigError::file(&self.path, message),
        }
    }

    fn location(&self, offset: usize) -> Option<Location> {
        self.text.as_ref().map(|text| {
            let (line, column) = line_col(text, offset);
            Location {
                path: self.path.clone(),
                line,
                column,
            }
        })
    }

    /// Byte offset in the file of byte `inner` of a string value spanning `span` (which
    /// includes its quotes). Exact for literal strings and for basic strings without escapes;
    /// otherwise the start of the string.
    fn offset_in_string(&self, span: std::ops::Range<usize>, value: &str, inner: usize) -> usize {
        let Some(text) = &self.text else {
            return span.start;
        };
        let Some(raw) = text.get(span.clone()) else {
            return span.start;
        };
        let (open, close) = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            (3, 3)
        } else if raw.starts_with('\'') || raw.starts_with('"') {
            (1, 1)
        } else {
            return span.start;
        };
        let mut start = span.start + open;
        let mut body = raw.get(open..raw.len().saturating_sub(close)).unwrap_or("");
        // A newline right after a multi-line opening delimiter is not part of the value.
        if open == 3 {
            if let Some(rest) = body.strip_prefix("\r\n") {
                body = rest;
                start += 2;
            } else if let Some(rest) = body.strip_prefix('\n') {
                body = rest;
                start += 1;
            }
        }
        if body == value {
            start + inner.min(body.len())
        } else {
            span.start
        }
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && id.chars().count() <= MAX_ID_CHARS
}

fn valid_metric_name(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 255 && s.trim() == s
}

fn valid_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 255
        && !s.starts_with("AWS/")
        && !s.starts_with(':')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#' | ':' | ' ')
        })
}

/// Validates specs into rules; returns every problem found. `builtin_ids` are the ids of
/// every built-in rule, selected or not: a rule may cover any of them, or a rule of `specs`.
pub(crate) fn validate(
    specs: Vec<Located>,
    builtin_ids: &[String],
) -> (Vec<Rule>, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let cover_edges = cover_graph(&specs);
    let mut rules = Vec::with_capacity(specs.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut metrics: HashMap<(String, String), (usize, String)> = HashMap::new();

    for (index, located) in specs.iter().enumerate() {
        let spec = &located.spec;
        let id = spec.id.get_ref().clone();
        let at = |span: std::ops::Range<usize>, msg: String| {
            located.error_at(span.start, format!("rule \"{id}\": {msg}"))
        };
        let before = problems.len();

        if !valid_id(&id) {
            problems.push(at(
                spec.id.span(),
                format!(
                    "invalid id (use up to {MAX_ID_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit)"
                ),
            ));
        }
        if let Some(first) = ids.get(&id) {
            let first = &specs[*first];
            let where_first = first
                .location(first.spec.id.span().start)
                .map(|l| l.to_string())
                .unwrap_or_else(|| first.path.display().to_string());
            problems.push(at(
                spec.id.span(),
                format!("duplicate rule id (first defined at {where_first})"),
            ));
        } else {
            ids.insert(id.clone(), index);
        }
        if spec.title.trim().is_empty() {
            problems.push(at(spec.id.span(), "title is empty".into()));
        }

        let pattern = match Pattern::parse(spec.pattern.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                let offset = located.offset_in_string(
                    spec.pattern.span(),
                    spec.pattern.get_ref(),
                    e.span.start.offset,
                );
                problems.push(located.error_at(
                    offset,
                    format!(
                        "rule \"{id}\": invalid pattern (column {} of the pattern): {}\n{e}",
                        e.column(),
                        e.reason()
                    ),
                ));
                None
            }
        };
        // The engine checks the limit too; this names it in rule terms.
        let chars = spec.pattern.get_ref().chars().count();
        if chars > MAX_PATTERN_CHARS && pattern.is_some() {
            problems.push(at(
                spec.pattern.span(),
                format!("pattern is {chars} characters; AWS allows {MAX_PATTERN_CHARS}"),
            ));
        }

        if !valid_metric_name(spec.metric_name.get_ref()) {
            problems.push(at(
                spec.metric_name.span(),
                "metric_name must be 1-255 characters without surrounding spaces".into(),
            ));
        }
        if !valid_namespace(spec.namespace.get_ref()) {
            problems.push(at(
                spec.namespace.span(),
                "namespace must be 1-255 letters, digits or . - _ / # : and space, and not start with AWS/".into(),
            ));
        }
        let metric_key = (
            spec.namespace.get_ref().clone(),
            spec.metric_name.get_ref().clone(),
        );
        match metrics.get(&metric_key) {
            Some((_, other)) => problems.push(at(
                spec.metric_name.span(),
                format!(
                    "metric {}/{} is already used by rule \"{other}\"",
                    metric_key.0, metric_key.1
                ),
            )),
            None => {
                metrics.insert(metric_key, (index, id.clone()));
            }
        }

        let threshold = *spec.threshold.get_ref();
        if !threshold.is_finite() {
            problems.push(at(
                spec.threshold.span(),
                "threshold must be a finite number".into(),
            ));
        }
        let period = *spec.period_secs.get_ref();
        if period == 0 || period % 60 != 0 || period > MAX_PERIOD_SECS {
            problems.push(at(
                spec.period_secs.span(),
                format!(
                    "period_secs must be a multiple of 60 between 60 and {MAX_PERIOD_SECS} (metric filters publish one-minute data), not {period}"
                ),
            ));
        }
        let periods = *spec.evaluation_periods.get_ref();
        if periods == 0 {
            problems.push(at(
                spec.evaluation_periods.span(),
                "evaluation_periods must be at least 1".into(),
            ));
        } else if u64::from(period) * u64::from(periods) > MAX_WINDOW_SECS {
            problems.push(at(
                spec.evaluation_periods.span(),
                format!(
                    "period_secs x evaluation_periods = {}s exceeds CloudWatch's {MAX_WINDOW_SECS}s",
                    u64::from(period) * u64::from(periods)
                ),
            ));
        }
        if let Some(sh) = &spec.security_hub {
            let ok = sh
                .get_ref()
                .strip_prefix("CloudWatch.")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                problems.push(at(
                    sh.span(),
                    "security_hub must name a control like \"CloudWatch.1\"".into(),
                ));
            }
        }

        let eventbridge_pattern = match &spec.eventbridge_pattern {
            None => None,
            Some(text) => match serde_json::from_str::<Json>(text.get_ref()) {
                Ok(v @ Json::Object(_)) => Some(v),
                Ok(_) => {
                    problems.push(at(
                        text.span(),
                        "eventbridge_pattern must be a JSON object".into(),
                    ));
                    None
                }
                Err(e) => {
                    let offset = json_error_offset(text.get_ref(), &e);
                    problems.push(located.error_at(
                        located.offset_in_string(text.span(), text.get_ref(), offset),
                        format!("rule \"{id}\": eventbridge_pattern is not valid JSON: {e}"),
                    ));
                    None
                }
            },
        };
        if *spec.forward.get_ref() && spec.eventbridge_pattern.is_none() {
            problems.push(at(
                spec.forward.span(),
                "forward = true needs an eventbridge_pattern".into(),
            ));
        }

        let mut covers: Vec<String> = Vec::with_capacity(spec.covers.len());
        for entry in &spec.covers {
            let covered = entry.get_ref();
            let known = builtin_ids.contains(covered)
                || specs.iter().any(|s| s.spec.id.get_ref() == covered);
            if covered == &id {
                problems.push(at(entry.span(), "a rule cannot cover itself".into()));
            } else if !known {
                problems.push(at(
                    entry.span(),
                    format!(
                        "covers unknown rule \"{covered}\" (not a built-in rule, nor a rule of this configuration)"
                    ),
                ));
            } else if covers.contains(covered) {
                problems.push(at(entry.span(), format!("covers \"{covered}\" twice")));
            } else if reaches(&cover_edges, covered, &id) {
                problems.push(at(
                    entry.span(),
                    format!(
                        "covers \"{covered}\", which covers \"{id}\" (directly or through other rules): covering must not go round in a circle"
                    ),
                ));
            } else {
                covers.push(covered.clone());
            }
        }

        let mut fixtures = Vec::with_capacity(spec.fixtures.len());
        let mut names: HashMap<&str, ()> = HashMap::new();
        for f in &spec.fixtures {
            let name = f.name.get_ref();
            if name.trim().is_empty() {
                problems.push(at(f.name.span(), "fixture name is empty".into()));
            } else if names.insert(name.as_str(), ()).is_some() {
                problems.push(at(
                    f.name.span(),
                    format!("duplicate fixture name \"{name}\""),
                ));
            }
            match serde_json::from_str::<Json>(f.event.get_ref()) {
                Ok(event) => fixtures.push(Fixture {
                    name: name.clone(),
                    matches: f.matches,
                    event,
                    location: located.location(located.offset_in_string(
                        f.event.span(),
                        f.event.get_ref(),
                        0,
                    )),
                }),
                Err(e) => {
                    let offset = json_error_offset(f.event.get_ref(), &e);
                    problems.push(located.error_at(
                        located.offset_in_string(f.event.span(), f.event.get_ref(), offset),
                        format!("rule \"{id}\": fixture \"{name}\" is not valid JSON: {e}"),
                    ));
                }
            }
        }

        if problems.len() == before
            && let Some(pattern) = pattern
        {
            rules.push(Rule {
                id,
                title: spec.title.trim().to_string(),
                severity: spec.severity,
                pattern,
                metric_name: spec.metric_name.get_ref().clone(),
                namespace: spec.namespace.get_ref().clone(),
                threshold,
                period_secs: period,
                evaluation_periods: periods,
                statistic: spec.statistic,
                comparison: spec.comparison,
                treat_missing_data: spec.treat_missing_data,
                description: spec.description.trim().to_string(),
                remediation: spec.remediation.trim().to_string(),
                security_hub: spec.security_hub.as_ref().map(|s| s.get_ref().clone()),
                forward: *spec.forward.get_ref(),
                eventbridge_pattern,
                covers,
                fixtures,
                origin: located.origin.clone(),
            });
        }
    }
    (rules, problems)
}

/// Rule id -> the ids it covers, over `specs`.
fn cover_graph(specs: &[Located]) -> HashMap<&str, Vec<&str>> {
    let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in specs {
        graph
            .entry(s.spec.id.get_ref().as_str())
            .or_default()
            .extend(s.spec.covers.iter().map(|c| c.get_ref().as_str()));
    }
    graph
}

/// Whether `to` is reachable from `from` through `covers` edges (`from` itself included).
fn reaches(graph: &HashMap<&str, Vec<&str>>, from: &str, to: &str) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut stack = vec![from];
    while let Some(id) = stack.pop() {
        if id == to {
            return true;
        }
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        if let Some(next) = graph.get(id) {
            stack.extend(next.iter().copied());
        }
    }
    false
}

/// Byte offset of a serde_json error (it reports 1-based line and column).
fn json_error_offset(text: &str, e: &serde_json::Error) -> usize {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == e.line() {
            let col = e.column().saturating_sub(1);
            return offset + line.char_indices().nth(col).map_or(line.len(), |(b, _)| b);
        }
        offset += line.len();
    }
    text.len()
}
