//! Fixture runs: every fixture of every rule, as the record itself (`trail` delivery) and
//! wrapped in the EventBridge envelope against the rule's EventBridge filters; and every
//! `covers` claim, on the covered rule's fixtures that must match, in the same two forms.

use std::fmt;

use serde::Serialize;

use super::{Location, Rule, envelope};
use crate::pattern::{Event, Pattern};

/// The shape of log event a fixture was tried in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// The CloudTrail record, as a trail delivers it to CloudWatch Logs.
    Trail,
    /// The EventBridge envelope, against [`Rule::eventbridge_filters`].
    Eventbridge,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::Trail => "trail delivery",
            Form::Eventbridge => "eventbridge delivery",
        })
    }
}

/// One fixture that did not behave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FixtureFailure {
    pub rule: String,
    /// Set when the fixture is one of a covered rule's (`rule` covers `covered`): `rule`
    /// should match it, as `covered` does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered: Option<String>,
    pub fixture: String,
    pub form: Form,
    /// Whether the fixture should have matched.
    pub expected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Set when the filters could not even be derived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl fmt::Display for FixtureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(covered) = &self.covered {
            write!(f, "rule \"{}\" covers \"{covered}\", but ", self.rule)?;
            return match &self.error {
                Some(e) => write!(f, "cannot be checked in {}: {e}", self.form),
                None => write!(
                    f,
                    "does not match its fixture \"{}\" ({})",
                    self.fixture, self.form
                ),
            };
        }
        write!(f, "rule \"{}\": fixture \"{}\" ", self.rule, self.fixture)?;
        match &self.error {
            Some(e) => write!(f, "cannot be checked in {}: {e}", self.form),
            None if self.expected => write!(f, "should match but does not ({})", self.form),
            None => write!(f, "matches but should not ({})", self.form),
        }
    }
}

/// The outcome for one rule.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    pub rule: String,
    /// Fixtures run (each in both forms).
    pub fixtures: usize,
    /// Fixtures of covered rules run against this rule (each in both forms).
    #[serde(skip_serializing_if = "is_zero")]
    pub covered_fixtures: usize,
    pub failures: Vec<FixtureFailure>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The outcome for a pack.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub rules: Vec<RuleReport>,
}

impl VerifyReport {
    pub fn failures(&self) -> impl Iterator<Item = &FixtureFailure> {
        self.rules.iter().flat_map(|r| r.failures.iter())
    }

    pub fn is_ok(&self) -> bool {
        self.failures().next().is_none()
    }

    pub fn fixture_count(&self) -> usize {
        self.rules.iter().map(|r| r.fixtures).sum()
    }
}

/// `lookup` finds a covered rule by id (in the pack, else among the built-ins).
pub(crate) fn verify<'a>(
    rules: &'a [Rule],
    lookup: impl Fn(&str) -> Option<&'a Rule>,
) -> VerifyReport {
    VerifyReport {
        rules: rules.iter().map(|r| verify_rule(r, &lookup)).collect(),
    }
}

/// The rule's filters for `eventbridge` delivery, compiled.
fn eventbridge_patterns(rule: &Rule) -> Result<Vec<Pattern>, String> {
    rule.eventbridge_filters()
        .map_err(|e| e.to_string())
        .and_then(|texts| {
            texts
                .iter()
                .map(|t| Pattern::parse(t).map_err(|e| e.to_string()))
                .collect()
        })
}

fn verify_rule<'a>(rule: &Rule, lookup: &impl Fn(&str) -> Option<&'a Rule>) -> RuleReport {
    let mut failures = Vec::new();
    let filters = eventbridge_patterns(rule);
    for fixture in &rule.fixtures {
        let failure = |form, error| FixtureFailure {
            rule: rule.id.clone(),
            covered: None,
            fixture: fixture.name.clone(),
            form,
            expected: fixture.matches,
            location: fixture.location.clone(),
            error,
        };
        // As CloudWatch Logs sees it: the record's compact JSON text.
        let text = fixture.message();
        if rule.pattern.matches(&Event::from_message(&text)) != fixture.matches {
            failures.push(failure(Form::Trail, None));
        }
        // Only records travel through EventBridge; plain-text lines are checked as they are.
        if !fixture.event.is_object() {
            continue;
        }
        match &filters {
            Ok(filters) => {
                let wrapped = envelope(&fixture.event).to_string();
                let event = Event::from_message(&wrapped);
                if filters.iter().any(|p| p.matches(&event)) != fixture.matches {
                    failures.push(failure(Form::Eventbridge, None));
                }
            }
            Err(e) => failures.push(failure(Form::Eventbridge, Some(e.clone()))),
        }
    }

    // Covering: every event the covered rule must match, this rule matches too.
    let mut covered_fixtures = 0;
    for id in &rule.covers {
        let Some(covered) = lookup(id) else {
            failures.push(FixtureFailure {
                rule: rule.id.clone(),
                covered: Some(id.clone()),
                fixture: String::new(),
                form: Form::Trail,
                expected: true,
                location: None,
                error: Some(format!("no rule \"{id}\" to check against")),
            });
            continue;
        };
        for fixture in covered.positive_fixtures() {
            covered_fixtures += 1;
            let failure = |form, error| FixtureFailure {
                rule: rule.id.clone(),
                covered: Some(covered.id.clone()),
                fixture: fixture.name.clone(),
                form,
                expected: true,
                location: fixture.location.clone(),
                error,
            };
            let text = fixture.message();
            if !rule.pattern.matches(&Event::from_message(&text)) {
                failures.push(failure(Form::Trail, None));
            }
            if !fixture.event.is_object() {
                continue;
            }
            match &filters {
                Ok(filters) => {
                    let wrapped = envelope(&fixture.event).to_string();
                    let event = Event::from_message(&wrapped);
                    if !filters.iter().any(|p| p.matches(&event)) {
                        failures.push(failure(Form::Eventbridge, None));
                    }
                }
                Err(e) => failures.push(failure(Form::Eventbridge, Some(e.clone()))),
            }
        }
    }
    RuleReport {
        rule: rule.id.clone(),
        fixtures: rule.fixtures.len(),
        covered_fixtures,
        failures,
    }
}
