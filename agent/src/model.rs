//! The alert model: what one decoded, classified message says, independent of how it
//! arrived (alarm notification or raw CloudTrail event) and of where it is delivered.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Severity of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
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

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "info" | "informational" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => {
                let known = ["info", "low", "medium", "high", "critical"];
                return Err(match shared::suggest::nearest(s, known) {
                    Some(near) => format!("unknown severity {s:?}; did you mean {near:?}?"),
                    None => format!(
                        "unknown severity {s:?}; expected info, low, medium, high or critical"
                    ),
                });
            }
        })
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// Who did what, from where: taken from a CloudTrail record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The principal's ARN (or type and name when there is no ARN).
    pub principal: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub event_id: Option<String>,
    /// The event time as CloudTrail wrote it.
    pub event_time: Option<String>,
}

/// How the alert reached the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A CloudWatch alarm state change.
    Alarm {
        alarm_name: String,
        alarm_arn: Option<String>,
        reason: Option<String>,
        old_state: Option<String>,
        new_state: String,
        /// The metric and window the alarm evaluated.
        #[serde(skip_serializing_if = "Option::is_none")]
        metric: Option<crate::decode::AlarmMetric>,
    },
    /// A CloudTrail event matched by a rule's pattern.
    Event { event_id: String },
}

/// One classified alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub rule_id: String,
    pub title: String,
    pub severity: Severity,
    /// Account the activity happened in, from the payload.
    pub account: String,
    pub region: String,
    pub state: AlertState,
    /// When it happened (alarm state change or event time), Unix milliseconds.
    pub at_ms: i64,
    pub origin: Origin,
    pub actor: Option<Actor>,
    pub remediation: Option<String>,
    /// What enrichment found (alarms only): how many matching events, or why it failed.
    pub enrichment: Option<Enrichment>,
}

/// A link into the AWS console for the people an alert reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub text: String,
    pub href: String,
}

impl Alert {
    /// Where to look in the console (signed in to the alert's account): the alarm's page
    /// for an alarm, the CloudTrail event's page for an event, and for an alarm whose
    /// enrichment found the event behind it, that event's page too. Built only from a
    /// region that is a region name and percent-encoded names and ids
    /// (`shared::naming::console`), so no value from the event can change where a link
    /// goes.
    pub fn links(&self) -> Vec<Link> {
        use shared::naming::console;
        let mut out = Vec::new();
        let event = match &self.origin {
            Origin::Alarm { alarm_name, .. } => {
                if let Some(href) = console::alarm(&self.region, alarm_name) {
                    out.push(Link {
                        text: format!("Alarm {alarm_name} in the CloudWatch console"),
                        href,
                    });
                }
                self.actor.as_ref().and_then(|a| a.event_id.as_deref())
            }
            Origin::Event { event_id } => Some(event_id.as_str()),
        };
        if let Some(id) = event
            && let Some(href) = console::cloudtrail_event(&self.region, id)
        {
            out.push(Link {
                text: "The CloudTrail event in the console".to_string(),
                href,
            });
        }
        out
    }
}

/// The outcome of enriching an alarm with the CloudTrail events behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Enrichment {
    /// `matched` events of the rule were found among `scanned` in the alarm's window; the
    /// alert's actor is the latest of them. `truncated`: the scan stopped at its bound.
    Found {
        matched: usize,
        scanned: usize,
        truncated: bool,
    },
    /// No event of the rule was found in the window (`scanned` examined).
    NotFound { scanned: usize, truncated: bool },
    /// Enrichment failed or timed out; the alert was delivered without it.
    Failed { reason: String },
}

pub use shared::time::{format_timestamp, parse_timestamp};

/// A firing alert of `rule` from an event, for the tests of the deciders (route, silence,
/// group).
#[cfg(test)]
pub(crate) fn test_alert(rule: &str, severity: Severity, account: &str, region: &str) -> Alert {
    Alert {
        rule_id: rule.into(),
        title: rule.into(),
        severity,
        account: account.into(),
        region: region.into(),
        state: AlertState::Firing,
        at_ms: 0,
        origin: Origin::Event {
            event_id: "e".into(),
        },
        actor: None,
        remediation: None,
        enrichment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_parse_case_insensitively() {
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
    }
}
