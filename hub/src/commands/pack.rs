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
        .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>())?
        .for_member_role(&config.hub.member_role)
        .map_err(|e| vec![format!("{}: {e}", path.display())])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hub deploys the tamper rule for the role it assumes (`hub.member_role`), and
    /// `rules verify`/`replay` evaluate the same rule.
    #[test]
    fn the_configured_member_role_reaches_the_deployed_tamper_rule() {
        let dir = std::env::temp_dir().join(format!("orgwatch-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("hub.toml");
        let text = r#"
[hub]
regions = ["us-east-1"]
member_role = "orgwatch-member"
[trail]
name = "orgwatch"
bucket = "acme-orgwatch-cloudtrail"
[monitoring]
delivery = "trail"
pack = ["all"]
[alerts]
topic = "orgwatch-alerts"
queue = "orgwatch-alerts"
"#;
        std::fs::write(&path, text).expect("write");
        let config = HubConfig::load(&path).expect("valid config");
        let want = "assumed-role/orgwatch-member/orgwatch-hub";
        let pack = load(&config, &path).expect("pack");
        let tamper = pack.get("orgwatch-tamper").expect("tamper");
        assert!(tamper.pattern.as_str().contains(want));
        let deployed = deployments(&config, &pack).expect("deployments");
        let filter = deployed
            .iter()
            .find(|r| r.id == "orgwatch-tamper")
            .and_then(|r| r.filters.first())
            .expect("tamper filter");
        assert!(filter.contains(want), "{filter}");
        let global_pack = crate::commands::rules::pack_for_path(&path).expect("pack");
        assert!(
            global_pack
                .get("orgwatch-tamper")
                .is_some_and(|r| r.pattern.as_str().contains(want))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
