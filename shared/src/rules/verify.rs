//! Fixture runs: every fixture of every rule, as the record itself (`trail` delivery) and
//! wrapped in the EventBridge envelope against the rule's EventBridge filters.

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
    pub failures: Vec<FixtureFailure>,
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

pub(crate) fn verify(rules: &[Rule]) -> VerifyReport {
    VerifyReport {
        rules: rules.iter().map(verify_rule).collect(),
    }
}

fn verify_rule(rule: &Rule) -> RuleReport {
    let mut failures = Vec::new();
    let filters: Result<Vec<Pattern>, String> = rule
        .eventbridge_filters()
        .map_err(|e| e.to_string())
        .and_then(|texts| {
            texts
                .iter()
                .map(|t| Pattern::parse(t).map_err(|e| e.to_string()))
                .collect()
        });
    for fixture in &rule.fixtures {
        let failure = |form, error| FixtureFailure {
            rule: rule.id.clone(),
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
    RuleReport {
        rule: rule.id.clone(),
        fixtures: rule.fixtures.len(),
        failures,
    }
}
