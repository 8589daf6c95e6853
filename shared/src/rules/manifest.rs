//! The rule manifest: the one contract between the hub and the agent about rules.
//!
//! `hub enroll` writes, next to what it deploys, a JSON document listing every rule of the
//! configured pack as deployed — id, title, severity, remediation, whether its events are
//! forwarded, its pattern and EventBridge pattern, the rules it covers, its alarm — in the
//! central bucket ([`crate::naming::RULE_MANIFEST_KEY`]). The agent reads it with its own
//! credentials and classifies alarms and forwarded events by exactly those rules, so a
//! custom `[[rule]]` of hub.toml reaches the agent with its own severity, title and
//! remediation, and the agent never needs to be configured with the hub's selection again.
//!
//! The document is deterministic (same pack, same bytes), so the hub diffs it like every
//! other resource, by its SHA-256.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Comparison, MissingData, Origin, Pack, PackError, Rule, Severity, Statistic};
use crate::config::ConfigError;
use crate::pattern::Pattern;

/// The format this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The largest manifest the agent reads (a pack of hundreds of rules is well under it).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub rules: Vec<Deployed>,
}

/// One rule as the hub deployed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub description: String,
    pub remediation: String,
    pub security_hub: Option<String>,
    /// Whether matching events are forwarded through EventBridge to the agent.
    pub forward: bool,
    /// The metric filter pattern, as written.
    pub pattern: String,
    pub eventbridge_pattern: Option<Json>,
    pub covers: Vec<String>,
    pub metric_name: String,
    pub namespace: String,
    pub threshold: f64,
    pub period_secs: u32,
    pub evaluation_periods: u32,
    pub statistic: Statistic,
    pub comparison: Comparison,
    pub treat_missing_data: MissingData,
}

impl Deployed {
    /// `rule` as deployed.
    pub fn of(r: &Rule) -> Deployed {
        Deployed {
            id: r.id.clone(),
            title: r.title.clone(),
            severity: r.severity,
            description: r.description.clone(),
            remediation: r.remediation.clone(),
            security_hub: r.security_hub.clone(),
            forward: r.forward,
            pattern: r.pattern.as_str().to_string(),
            eventbridge_pattern: r.eventbridge_pattern.clone(),
            covers: r.covers.clone(),
            metric_name: r.metric_name.clone(),
            namespace: r.namespace.clone(),
            threshold: r.threshold,
            period_secs: r.period_secs,
            evaluation_periods: r.evaluation_periods,
            statistic: r.statistic,
            comparison: r.comparison,
            treat_missing_data: r.treat_missing_data,
        }
    }
}

impl Manifest {
    pub fn new(rules: Vec<Deployed>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            rules,
        }
    }

    /// The manifest of `pack`, rules in pack order.
    pub fn of(pack: &Pack) -> Manifest {
        Manifest::new(pack.rules().iter().map(Deployed::of).collect())
    }

    /// The document: compact JSON, fields in declaration order, so the same pack always
    /// gives the same bytes.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a manifest; `source` (its `s3://` URL) names it in every problem.
    pub fn from_json(source: &str, text: &str) -> Result<Manifest, String> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "{source}: {} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                text.len()
            ));
        }
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_str(text)
            .map_err(|e| format!("{source}: not a rule manifest: {e}"))?;
        if v.version != MANIFEST_VERSION {
            return Err(format!(
                "{source}: manifest version {}, this agent reads version {MANIFEST_VERSION} (upgrade the agent or the hub so they agree)",
                v.version
            ));
        }
        serde_json::from_str(text)
            .map_err(|e| format!("{source}: line {}, column {}: {e}", e.line(), e.column()))
    }

    /// The pack the manifest describes. Every pattern is parsed again and ids must be
    /// unique; a rule that covers one the manifest does not hold is kept (the built-ins
    /// answer for the covered rule's alarms as before).
    pub fn pack(&self, source: &str) -> Result<Pack, PackError> {
        let path = PathBuf::from(source);
        let mut problems = Vec::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.rules {
            if !seen.insert(d.id.as_str()) {
                problems.push(ConfigError::file(
                    &path,
                    format!("rule {}: listed twice", d.id),
                ));
                continue;
            }
            let pattern = match Pattern::parse(&d.pattern) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(ConfigError::file(
                        &path,
                        format!("rule {}: pattern: {e}", d.id),
                    ));
                    continue;
                }
            };
            rules.push(Rule {
                id: d.id.clone(),
                title: d.title.clone(),
                severity: d.severity,
                pattern,
                metric_name: d.metric_name.clone(),
                namespace: d.namespace.clone(),
                threshold: d.threshold,
                period_secs: d.period_secs,
                evaluation_periods: d.evaluation_periods,
                statistic: d.statistic,
                comparison: d.comparison,
                treat_missing_data: d.treat_missing_data,
                description: d.description.clone(),
                remediation: d.remediation.clone(),
                security_hub: d.security_hub.clone(),
                forward: d.forward,
                eventbridge_pattern: d.eventbridge_pattern.clone(),
                covers: d.covers.clone(),
                fixtures: Vec::new(),
                origin: Origin::Config(path.clone()),
            });
        }
        if problems.is_empty() {
            Ok(Pack { rules })
        } else {
            Err(PackError { problems })
        }
    }

    /// SHA-256 of the document, hex: what `hub plan` compares.
    pub fn digest(text: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(text.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::UserRules;

    #[test]
    fn a_pack_survives_the_manifest_with_every_field() {
        let text = r#"
[[rule]]
id = "acme-break-glass"
title = "Break-glass role used"
severity = "critical"
pattern = '{ $.userIdentity.arn = "*:assumed-role/BreakGlass/*" }'
remediation = "Call the on-call lead."
metric_name = "AcmeBreakGlass"
forward = true
eventbridge_pattern = '{"detail-type": ["AWS API Call via CloudTrail"], "detail": {"userIdentity": {"arn": [{"wildcard": "*:assumed-role/BreakGlass/*"}]}}}'
"#;
        let user = UserRules::from_toml(std::path::Path::new("hub.toml"), text).unwrap();
        let pack = Pack::from_config(&["cis".into()], &[], &user).unwrap();
        let m = Manifest::of(&pack);
        let json = m.to_json();
        assert_eq!(Manifest::of(&pack).to_json(), json, "deterministic");
        let back = Manifest::from_json("s3://b/k", &json).unwrap();
        assert_eq!(back, m);
        let rebuilt = back.pack("s3://b/k").unwrap();
        assert_eq!(rebuilt.len(), pack.len());
        for (a, b) in pack.rules().iter().zip(rebuilt.rules()) {
            assert_eq!(
                (&a.id, &a.title, a.severity, &a.remediation, a.forward),
                (&b.id, &b.title, b.severity, &b.remediation, b.forward)
            );
            assert_eq!(a.pattern.as_str(), b.pattern.as_str());
            assert_eq!(a.eventbridge_pattern, b.eventbridge_pattern);
            assert_eq!(a.covers, b.covers);
        }
        let custom = rebuilt.get("acme-break-glass").unwrap();
        assert_eq!(custom.severity, Severity::Critical);
        assert_eq!(custom.remediation, "Call the on-call lead.");
        assert!(custom.eventbridge_pattern.is_some(), "forwarded");
        assert_eq!(Manifest::digest(&json).len(), 64);
    }

    #[test]
    fn bad_manifests_say_where_and_why() {
        let err = Manifest::from_json("s3://b/k", r#"{"version": 2, "rules": []}"#).unwrap_err();
        assert!(
            err.contains("s3://b/k") && err.contains("version 2"),
            "{err}"
        );
        let err = Manifest::from_json("s3://b/k", "not json").unwrap_err();
        assert!(err.contains("not a rule manifest"), "{err}");
        let pack = Pack::builtin().unwrap();
        let mut m = Manifest::of(&pack);
        m.rules[0].pattern = "{ $.eventName = ".into();
        let dup = m.rules[1].clone();
        m.rules.push(dup);
        let err = m.pack("s3://b/k").unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(text.iter().any(|p| p.contains("pattern")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("listed twice")), "{text:?}");
    }
}
