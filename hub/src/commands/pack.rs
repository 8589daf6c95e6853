//! The configured detection pack, as what the hub deploys per rule.

use shared::rules::{Pack, UserRules};

use crate::config::{Delivery, HubConfig};
use crate::desired::RuleDeploy;

/// The configured pack: built-ins chosen by `monitoring.pack` minus `monitoring.disable`,
/// plus `[[rule]]` tables. Every problem is reported, located in `path` (file:line:col:
/// the `[[rule]]` tables are read from the file's text, not from the already-parsed
/// `config.rule`, whose positions are lost).
pub fn load(config: &HubConfig, path: &std::path::Path) -> Result<Pack, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let user = UserRules::from_toml(path, &text)
        .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
    Pack::from_config(&config.monitoring.pack, &config.monitoring.disable, &user)
        .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect())
}

/// The rules to deploy, with each rule's filter(s) in the delivery mode's form: as written
/// for `trail`, every selector under `detail` for `eventbridge` (split in two filters
/// feeding one metric where the prefixed form exceeds 1,024 characters).
pub fn deployments(config: &HubConfig, pack: &Pack) -> Result<Vec<RuleDeploy>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for rule in pack.rules() {
        let filters = match config.monitoring.delivery {
            Delivery::Trail => Ok(vec![rule.pattern.as_str().to_string()]),
            Delivery::Eventbridge => rule.eventbridge_filters(),
        };
        let filters = match filters {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("rule {}: {e}", rule.id));
                continue;
            }
        };
        out.push(RuleDeploy {
            id: rule.id.clone(),
            title: rule.title.clone(),
            filters,
            metric_name: rule.metric_name.clone(),
            namespace: rule.namespace.clone(),
            threshold: rule.threshold,
            period: i32::try_from(rule.period_secs).unwrap_or(i32::MAX),
            evaluation_periods: i32::try_from(rule.evaluation_periods).unwrap_or(i32::MAX),
            statistic: rule.statistic.as_str().to_string(),
            comparison: rule.comparison.as_str().to_string(),
            treat_missing_data: rule.treat_missing_data.as_str().to_string(),
            forward_pattern: if rule.forward {
                rule.eventbridge_pattern.clone()
            } else {
                None
            },
            deployed: shared::rules::manifest::Deployed::of(rule),
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}
