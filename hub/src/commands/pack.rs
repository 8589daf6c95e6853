//! The configured detection pack, as what the hub deploys per rule.

use crate::config::HubConfig;
use crate::desired::RuleDeploy;

/// The rules to deploy for `config`, with each rule's filter(s) in the delivery mode's form.
pub fn deployments(config: &HubConfig) -> Result<Vec<RuleDeploy>, String> {
    // Interim until shared::rules lands: the root-activity rule alone.
    if !config.rule.is_empty()
        || !config.monitoring.disable.is_empty()
        || config.monitoring.pack.is_empty()
    {
        return Err(
            "custom rules and disabled rules need the detection pack (not yet wired)".into(),
        );
    }
    Ok(vec![RuleDeploy {
        id: "root-activity".into(),
        title: "Root user activity".into(),
        filters: vec![
            "{ $.userIdentity.type = \"Root\" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != \"AwsServiceEvent\" }".into(),
        ],
        metric_name: "RootActivity".into(),
        namespace: shared::naming::METRIC_NAMESPACE.into(),
        threshold: 1.0,
        period: 300,
        evaluation_periods: 1,
        statistic: "Sum".into(),
        comparison: "GreaterThanOrEqualToThreshold".into(),
        forward_pattern: Some(serde_json::json!({"detail": {"userIdentity": {"type": ["Root"]}}})),
    }])
}
