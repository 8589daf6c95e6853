//! The detection pack: every rule orgwatch knows, as data.
//!
//! A rule is a CloudWatch Logs filter pattern plus what to do with its matches (metric,
//! alarm, severity, forwarding) and the evidence that the pattern means what the rule says:
//! fixtures, CloudTrail records that must match and close misses that must not.
//!
//! # Where rules come from
//!
//! * The built-in rules, one TOML file per rule under `shared/rules/`, embedded at build
//!   time ([`BUILTIN_FILES`]): CIS AWS Foundations Benchmark "Monitoring" 4.1-4.15
//!   (`cis-4.1` ... `cis-4.15`), `root-activity`, the root-usage rule of the single-account
//!   recipe, `orgwatch-tamper` (anyone but the hub deleting, disabling or changing what
//!   orgwatch set up in an account), and the recipe's own rules where no CIS rule says the
//!   same (`seed-*`).
//! * `[[rule]]` tables in the hub's configuration file, with the same fields.
//!
//! # Packs
//!
//! The configuration chooses built-ins with `pack` and leaves some out with `disable`
//! (see [`Pack::from_config`]). A `pack` entry is a built-in rule id or one of:
//!
//! | entry               | selects                                                         |
//! |---------------------|-----------------------------------------------------------------|
//! | [`PACK_ALL`] (default) | every built-in rule but the seed pack's own: CIS 4.1-4.15, `root-activity` and `orgwatch-tamper` |
//! | [`PACK_CIS`]        | every `cis-*` rule                                              |
//! | [`PACK_SEED`]       | the nine alarms of the single-account recipe orgwatch grew from ([`SEED_RULES`]) |
//!
//! The seed pack reuses the CIS rule wherever one says the same (root use is
//! `root-activity`, console sign-in without MFA `cis-4.2`, and so on); only two of its alarms
//! are rules of their own, `seed-api-without-mfa` and `seed-kms-decrypt-failures`. Those two
//! are left out of `"all"` on purpose: in an organisation every role session lacks MFA, so
//! "API calls without MFA" fires all day. They are selected by `"seed"` or by id only.
//!
//! A rule added to `"all"` is deployed by every configuration that selects it (the default)
//! on its next enroll; `orgwatch-tamper` joined `"all"` that way, and
//! `disable = ["orgwatch-tamper"]` under `[monitoring]` leaves it out.
//!
//! # Rule fields
//!
//! | key                  | meaning                                                          |
//! |----------------------|------------------------------------------------------------------|
//! | `id`                 | letters, digits, `.`, `_`, `-`; names the metric filter and alarm |
//! | `title`              | one line                                                         |
//! | `severity`           | `low`, `medium`, `high` or `critical`                            |
//! | `pattern`            | the filter pattern (at most 1,024 characters)                    |
//! | `metric_name`        | CloudWatch metric the filter increments                          |
//! | `namespace`          | metric namespace (default [`naming::METRIC_NAMESPACE`])          |
//! | `threshold`          | alarm threshold (default 1)                                      |
//! | `period_secs`        | alarm period, a multiple of 60 up to a day (default 300)         |
//! | `evaluation_periods` | periods evaluated (default 1)                                    |
//! | `statistic`          | `Sum` (default), `Average`, `Minimum`, `Maximum`, `SampleCount`  |
//! | `comparison`         | CloudWatch comparison operator (default `GreaterThanOrEqualToThreshold`) |
//! | `treat_missing_data` | `notBreaching` (default), `breaching`, `ignore`, `missing`       |
//! | `description`        | what the rule detects and why it matters                         |
//! | `remediation`        | what to do when it fires                                         |
//! | `security_hub`       | the Security Hub control it satisfies (`CloudWatch.N`), if any    |
//! | `forward`            | also forward each matching event through EventBridge            |
//! | `eventbridge_pattern`| the EventBridge event pattern (JSON) used to forward; required with `forward` |
//! | `covers`             | ids of rules this one covers (see below)                         |
//! | `[[rule.fixture]]`   | `name`, `matches` (bool), `event` (a CloudTrail record as JSON)  |
//!
//! Loading checks everything at once and reports every problem with its file, line and
//! column (for a bad pattern: the position of the fault inside the TOML file, and the
//! pattern with a caret under it).
//!
//! # Covering
//!
//! `covers = ["cis-4.3"]` in `root-activity` says: every event `cis-4.3` matches,
//! `root-activity` matches too, so when both are selected `root-activity` answers for
//! `cis-4.3` (the agent reports `cis-4.3`'s alarm as a `root-activity` incident: one root
//! sign-in pages once). Loading checks that each covered id is a built-in rule or a rule of
//! the pack, that a rule does not cover itself and that covering is not circular;
//! [`Pack::verify`] checks the claim on evidence: every fixture that must match the covered
//! rule must match the covering rule too, in both delivery forms. The covered rule need not
//! be selected (then it is taken from the built-ins for the check).
//!
//! # Evaluating
//!
//! [`Pack::matching`] evaluates every rule on one [`Event`], which parses the log event at
//! most once however many rules look at it. [`Pack::verify`] runs every fixture, both as a
//! trail-delivered record and wrapped in the EventBridge envelope against
//! [`Rule::eventbridge_filters`], and checks every `covers` claim the same way.

mod eventbridge;
pub mod input;
mod load;
pub mod manifest;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::config::ConfigError;
use crate::naming;
use crate::pattern::{Event, Pattern};

pub use eventbridge::{SplitError, envelope};
pub use load::{FixtureSpec, RuleSpec, UserRules};
pub use verify::{FixtureFailure, Form, RuleReport, VerifyReport};

/// AWS's limit on a filter pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 1024;

/// The built-in rule files, in pack order: (file name, contents).
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "root-activity.toml",
        include_str!("../../rules/root-activity.toml"),
    ),
    ("cis-4.1.toml", include_str!("../../rules/cis-4.1.toml")),
    ("cis-4.2.toml", include_str!("../../rules/cis-4.2.toml")),
    ("cis-4.3.toml", include_str!("../../rules/cis-4.3.toml")),
    ("cis-4.4.toml", include_str!("../../rules/cis-4.4.toml")),
    ("cis-4.5.toml", include_str!("../../rules/cis-4.5.toml")),
    ("cis-4.6.toml", include_str!("../../rules/cis-4.6.toml")),
    ("cis-4.7.toml", include_str!("../../rules/cis-4.7.toml")),
    ("cis-4.8.toml", include_str!("../../rules/cis-4.8.toml")),
    ("cis-4.9.toml", include_str!("../../rules/cis-4.9.toml")),
    ("cis-4.10.toml", include_str!("../../rules/cis-4.10.toml")),
    ("cis-4.11.toml", include_str!("../../rules/cis-4.11.toml")),
    ("cis-4.12.toml", include_str!("../../rules/cis-4.12.toml")),
    ("cis-4.13.toml", include_str!("../../rules/cis-4.13.toml")),
    ("cis-4.14.toml", include_str!("../../rules/cis-4.14.toml")),
    ("cis-4.15.toml", include_str!("../../rules/cis-4.15.toml")),
    (
        "orgwatch-tamper.toml",
        include_str!("../../rules/orgwatch-tamper.toml"),
    ),
    (
        "seed-api-without-mfa.toml",
        include_str!("../../rules/seed-api-without-mfa.toml"),
    ),
    (
        "seed-kms-decrypt-failures.toml",
        include_str!("../../rules/seed-kms-decrypt-failures.toml"),
    ),
];

/// Directory of the built-in files as named in messages.
pub const BUILTIN_DIR: &str = "shared/rules";

/// `pack` entry selecting every built-in rule except the seed pack's own ([`SEED_ONLY_PREFIX`]):
/// CIS 4.1-4.15, `root-activity` and `orgwatch-tamper`. The default.
pub const PACK_ALL: &str = "all";
/// `pack` entry selecting every `cis-*` built-in rule.
pub const PACK_CIS: &str = "cis";
/// `pack` entry selecting the nine alarms of the single-account recipe, [`SEED_RULES`].
pub const PACK_SEED: &str = "seed";
/// Every pack name a `pack` list accepts besides rule ids.
pub const PACKS: &[&str] = &[PACK_CIS, PACK_SEED, PACK_ALL];

/// The rules [`PACK_SEED`] selects, in the recipe's order: root use, console sign-in without
/// MFA, API calls without MFA, KMS key disabling or deletion, KMS decrypt failures, security
/// group, IAM policy, route table and network ACL changes. A CIS rule wherever one means the
/// same alarm; the recipe's own rules otherwise.
pub const SEED_RULES: &[&str] = &[
    "root-activity",
    "cis-4.2",
    "seed-api-without-mfa",
    "cis-4.7",
    "seed-kms-decrypt-failures",
    "cis-4.10",
    "cis-4.4",
    "cis-4.13",
    "cis-4.11",
];

/// Id prefix of the built-in rules only [`PACK_SEED`] (or their id) selects; [`PACK_ALL`]
/// leaves them out.
pub const SEED_ONLY_PREFIX: &str = "seed-";

/// The packs that select the built-in rule `id`, in [`PACKS`] order.
pub fn packs_of(id: &str) -> Vec<&'static str> {
    PACKS
        .iter()
        .copied()
        .filter(|pack| in_pack(pack, id))
        .collect()
}

/// Whether the pack named `pack` selects the built-in rule `id`.
fn in_pack(pack: &str, id: &str) -> bool {
    match pack {
        PACK_ALL => !id.starts_with(SEED_ONLY_PREFIX),
        PACK_CIS => id.starts_with("cis-"),
        PACK_SEED => SEED_RULES.contains(&id),
        _ => false,
    }
}

/// How urgent a rule's matches are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CloudWatch alarm statistic (names as the CloudWatch API spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Statistic {
    Sum,
    Average,
    Minimum,
    Maximum,
    SampleCount,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Sum => "Sum",
            Statistic::Average => "Average",
            Statistic::Minimum => "Minimum",
            Statistic::Maximum => "Maximum",
            Statistic::SampleCount => "SampleCount",
        }
    }
}

/// CloudWatch alarm comparison operator (names as the CloudWatch API spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::GreaterThanOrEqualToThreshold => "GreaterThanOrEqualToThreshold",
            Comparison::GreaterThanThreshold => "GreaterThanThreshold",
            Comparison::LessThanThreshold => "LessThanThreshold",
            Comparison::LessThanOrEqualToThreshold => "LessThanOrEqualToThreshold",
        }
    }
}

/// How the alarm treats periods without data points (no matching events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MissingData {
    NotBreaching,
    Breaching,
    Ignore,
    Missing,
}

impl MissingData {
    pub fn as_str(self) -> &'static str {
        match self {
            MissingData::NotBreaching => "notBreaching",
            MissingData::Breaching => "breaching",
            MissingData::Ignore => "ignore",
            MissingData::Missing => "missing",
        }
    }
}

/// A place in a rule file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Where a rule was defined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum Origin {
    /// A built-in file (its name under [`BUILTIN_DIR`]).
    Builtin(String),
    /// A `[[rule]]` table of a configuration file.
    Config(PathBuf),
}

impl Origin {
    pub fn is_builtin(&self) -> bool {
        matches!(self, Origin::Builtin(_))
    }
}

/// A CloudTrail record a rule must (or must not) match.
#[derive(Clone, Debug, Serialize)]
pub struct Fixture {
    pub name: String,
    /// Whether the rule must match it.
    pub matches: bool,
    /// The log event as parsed: a JSON object (a CloudTrail record), or a JSON string for a
    /// plain-text log line.
    pub event: Json,
    /// Where the fixture's event starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Fixture {
    /// The log event's text as CloudWatch Logs would hold it: a record's compact JSON, or
    /// the line itself.
    pub fn message(&self) -> String {
        match &self.event {
            Json::String(line) => line.clone(),
            other => other.to_string(),
        }
    }
}

/// One validated rule.
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    #[serde(serialize_with = "serialize_pattern")]
    pub pattern: Pattern,
    pub metric_name: String,
    pub namespace: String,
    pub threshold: f64,
    pub period_secs: u32,
    pub evaluation_periods: u32,
    pub statistic: Statistic,
    pub comparison: Comparison,
    pub treat_missing_data: MissingData,
    pub description: String,
    pub remediation: String,
    /// Security Hub control (`CloudWatch.N`) this rule's filter and alarm satisfy.
    pub security_hub: Option<String>,
    /// Forward each matching event through EventBridge as well as counting it.
    pub forward: bool,
    /// EventBridge event pattern used for forwarding.
    pub eventbridge_pattern: Option<Json>,
    /// Rules this one covers: it matches every event they match, and answers for them when
    /// both are selected (see the module documentation).
    pub covers: Vec<String>,
    pub fixtures: Vec<Fixture>,
    pub origin: Origin,
}

fn serialize_pattern<S: serde::Serializer>(p: &Pattern, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

impl Rule {
    /// Whether the rule matches a log event.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        self.pattern.matches(event)
    }

    /// The metric filter pattern(s) for `eventbridge` delivery, where each log event is the
    /// EventBridge envelope with the CloudTrail record under `detail`: the pattern with every
    /// selector prefixed by `detail.`, printed compactly. When that exceeds 1,024 characters
    /// the pattern is split into filters that each fit and together match exactly the same
    /// events (a top-level `||` is cut in two; `A && (x || y || ...)` becomes
    /// `A && (x || ...)` and `A && (... || y)`). All parts feed the same metric.
    ///
    /// Unstructured term patterns are returned unchanged (they match the record's text
    /// inside the envelope); space-delimited patterns cannot be used with EventBridge.
    pub fn eventbridge_filters(&self) -> Result<Vec<String>, SplitError> {
        eventbridge::filters(&self.pattern)
    }

    /// The fixtures that must match.
    pub fn positive_fixtures(&self) -> impl Iterator<Item = &Fixture> {
        self.fixtures.iter().filter(|f| f.matches)
    }

    /// The fixtures that must not match.
    pub fn negative_fixtures(&self) -> impl Iterator<Item = &Fixture> {
        self.fixtures.iter().filter(|f| !f.matches)
    }
}

/// Every problem found while loading a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackError {
    pub problems: Vec<ConfigError>,
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PackError {}

impl From<ConfigError> for PackError {
    fn from(e: ConfigError) -> PackError {
        PackError { problems: vec![e] }
    }
}

/// Which list of a rule selection an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `pack`: built-in rule ids, or the packs of [`PACKS`].
    Pack,
    /// `disable`: built-in rule ids only.
    Disable,
}

/// Checks one entry of a rule selection (the hub's `monitoring.pack` / `monitoring.disable`,
/// the agent's `classify.*`) against the built-in ids `known`; the message names `key`.
pub fn check_selected(
    list: Selection,
    key: &str,
    entry: &str,
    known: &[&str],
) -> Result<(), String> {
    let is_pack = PACKS.contains(&entry);
    if known.contains(&entry) || (is_pack && list == Selection::Pack) {
        return Ok(());
    }
    Err(match list {
        Selection::Pack => format!(
            "{key}: unknown built-in rule or pack \"{entry}\"{} (known: {}, {})",
            crate::suggest::hint(entry, PACKS.iter().chain(known).copied()),
            PACKS.join(", "),
            known.join(", ")
        ),
        Selection::Disable => format!(
            "{key}: unknown built-in rule \"{entry}\"{}",
            crate::suggest::hint(entry, known.iter().copied())
        ),
    })
}

/// A validated set of rules with unique ids.
#[derive(Clone, Debug)]
pub struct Pack {
    rules: Vec<Rule>,
}

impl Pack {
    /// The default pack: the built-in rules [`PACK_ALL`] selects.
    pub fn builtin() -> Result<Pack, PackError> {
        Pack::from_config(&[PACK_ALL.to_string()], &[], &UserRules::none())
    }

    /// Every built-in rule, the seed pack's own included: for looking up a rule by id
    /// whatever a configuration selects.
    pub fn every_builtin() -> Result<Pack, PackError> {
        let (specs, problems) = match load::builtin_specs() {
            Ok(specs) => (specs, Vec::new()),
            Err(e) => (Vec::new(), e.problems),
        };
        let known: Vec<String> = specs.iter().map(|s| s.spec.id.get_ref().clone()).collect();
        let (rules, mut errs) = load::validate(specs, &known);
        let mut problems = problems;
        problems.append(&mut errs);
        if problems.is_empty() {
            Ok(Pack { rules })
        } else {
            Err(PackError { problems })
        }
    }

    /// The built-in rules `pack` selects (ids and the packs of [`PACKS`]) minus `disable`,
    /// plus the user's rules. Unknown ids in `pack` or `disable` are errors, and so is a
    /// user rule whose id is already taken by a selected built-in.
    pub fn from_config(
        pack: &[String],
        disable: &[String],
        user: &UserRules,
    ) -> Result<Pack, PackError> {
        let mut problems = Vec::new();
        let builtin = load::builtin_specs();
        let (builtin, mut errs) = match builtin {
            Ok(specs) => (specs, Vec::new()),
            Err(e) => (Vec::new(), e.problems),
        };
        problems.append(&mut errs);

        let known: Vec<&str> = builtin
            .iter()
            .map(|s| s.spec.id.get_ref().as_str())
            .collect();
        let mut wanted = vec![false; builtin.len()];
        for entry in pack {
            if let Err(e) = check_selected(Selection::Pack, "monitoring.pack", entry, &known) {
                problems.push(user.problem_at(&["monitoring", "pack"], entry, e));
                continue;
            }
            if PACKS.contains(&entry.as_str()) {
                for (w, id) in wanted.iter_mut().zip(&known) {
                    *w |= in_pack(entry, id);
                }
            } else if let Some(i) = known.iter().position(|k| *k == entry.as_str()) {
                wanted[i] = true;
            }
        }
        for id in disable {
            match check_selected(Selection::Disable, "monitoring.disable", id, &known) {
                Err(e) => problems.push(user.problem_at(&["monitoring", "disable"], id, e)),
                Ok(()) => {
                    if let Some(i) = known.iter().position(|k| *k == id.as_str()) {
                        wanted[i] = false;
                    }
                }
            }
        }
        let known: Vec<String> = known.iter().map(|k| k.to_string()).collect();
        let mut specs: Vec<load::Located> = builtin
            .into_iter()
            .zip(wanted)
            .filter_map(|(s, w)| w.then_some(s))
            .collect();
        specs.extend(user.specs().iter().cloned());

        let (rules, mut errs) = load::validate(specs, &known);
        problems.append(&mut errs);
        if problems.is_empty() {
            Ok(Pack { rules })
        } else {
            Err(PackError { problems })
        }
    }

    /// The rules, built-ins first in pack order, then the user's in file order.
    /// The pack for a hub that assumes `role` in member accounts. The built-in tamper rule
    /// leaves out the hub's own sessions, `assumed-role/<role>/orgwatch-hub`; as shipped it
    /// names the default role (`naming::DEFAULT_MEMBER_ROLE`), so with another
    /// `hub.member_role` every change the hub makes would raise orgwatch-tamper. This puts
    /// `role` in that place in the pattern, the EventBridge pattern and the fixtures (which
    /// `rules verify` runs), so the rule is proved on the sessions it will see.
    pub fn for_member_role(mut self, role: &str) -> Result<Pack, String> {
        let default = format!(
            "assumed-role/{}/{}",
            naming::DEFAULT_MEMBER_ROLE,
            naming::HUB_SESSION_NAME
        );
        if role == naming::DEFAULT_MEMBER_ROLE {
            return Ok(self);
        }
        // IAM role names are [\w+=,.@-]: nothing that means something in a pattern.
        if role.is_empty()
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        {
            return Err(format!("hub.member_role {role:?} is not an IAM role name"));
        }
        let wanted = format!("assumed-role/{role}/{}", naming::HUB_SESSION_NAME);
        let swap = |v: &Json| -> Result<Json, String> {
            serde_json::from_str(&v.to_string().replace(&default, &wanted))
                .map_err(|e| e.to_string())
        };
        for rule in self.rules.iter_mut().filter(|r| r.origin.is_builtin()) {
            if !rule.pattern.as_str().contains(&default) {
                continue;
            }
            let text = rule.pattern.as_str().replace(&default, &wanted);
            rule.pattern = Pattern::parse(&text).map_err(|e| format!("rule {}: {e}", rule.id))?;
            if let Some(p) = &rule.eventbridge_pattern {
                rule.eventbridge_pattern = Some(swap(p)?);
            }
            for f in &mut rule.fixtures {
                f.event = swap(&f.event)?;
            }
        }
        Ok(self)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules whose pattern matches `event`. The event is parsed at most once, on the
    /// first rule that needs its JSON, and shared by all the others.
    pub fn matching<'a>(&'a self, event: &Event<'_>) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(move |r| r.pattern.matches(event))
    }

    /// Runs every rule's fixtures, in trail and EventBridge form, and checks every `covers`
    /// claim on the covered rule's matching fixtures. A covered rule the pack does not hold
    /// is taken from the built-ins.
    pub fn verify(&self) -> VerifyReport {
        let needs_builtins = self
            .rules
            .iter()
            .flat_map(|r| &r.covers)
            .any(|id| self.get(id).is_none());
        let builtins = if needs_builtins {
            Pack::every_builtin().ok()
        } else {
            None
        };
        verify::verify(&self.rules, |id| {
            self.get(id)
                .or_else(|| builtins.as_ref().and_then(|b| b.get(id)))
        })
    }
}

/// The CloudTrail record inside an EventBridge envelope (`detail-type` + `detail`), or the
/// value itself when it is not an envelope.
pub fn unwrap_envelope(value: &Json) -> &Json {
    match (value.get("detail-type"), value.get("detail")) {
        (Some(Json::String(_)), Some(detail @ Json::Object(_))) => detail,
        _ => value,
    }
}

/// `naming::METRIC_NAMESPACE`, the default metric namespace.
pub fn default_namespace() -> String {
    naming::METRIC_NAMESPACE.to_string()
}
