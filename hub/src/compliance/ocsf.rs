//! `hub status --output ocsf`: a JSON array of OCSF 1.5.0 Compliance Findings (class
//! 2003), one per member account, region and rule, for security lakes and Security Hub's
//! OCSF import. Schema: the OCSF schema repository (ocsf/ocsf-schema, tag 1.5.0),
//! `events/findings/compliance_finding.json` (extends `finding`, `base_event`; requires
//! `compliance` and `finding_info`) and `objects/compliance.json` (`standards` required;
//! `status_id` 1 Pass, 3 Fail, 0 Unknown). The tests validate the output with
//! py-ocsf-models, the models Prowler writes its OCSF output with.

use serde_json::{Value, json};

use super::{Check, Compliance, Verdict};
use crate::model::Kind;

/// The OCSF schema version written in `metadata.version`.
pub const OCSF_VERSION: &str = "1.5.0";
const CLASS_UID: u32 = 2003;
const CATEGORY_UID: u32 = 2;
/// `activity_id` 1: Create (a finding of this run).
const ACTIVITY_CREATE: u32 = 1;

pub fn render(c: &Compliance<'_>) -> String {
    let findings: Vec<Value> = c.checks.iter().filter_map(|k| finding(c, k)).collect();
    serde_json::to_string_pretty(&findings).unwrap_or_else(|_| "[]".to_string())
}

fn finding(c: &Compliance<'_>, check: &Check) -> Option<Value> {
    let info = c.rules.get(check.rule)?;
    let rule = info.rule;
    let (status_id, status) = match check.verdict {
        Verdict::Pass => (1, "Pass"),
        Verdict::Fail => (3, "Fail"),
        Verdict::Unknown => (0, "Unknown"),
    };
    // base_event severity_id: 2 Low, 3 Medium, 4 High, 5 Critical.
    let (severity_id, severity) = match rule.deployed.severity {
        shared::rules::Severity::Low => (2, "Low"),
        shared::rules::Severity::Medium => (3, "Medium"),
        shared::rules::Severity::High => (4, "High"),
        shared::rules::Severity::Critical => (5, "Critical"),
    };
    let partition = shared::naming::partition(&check.region);
    let resources: Vec<Value> = check
        .resources
        .iter()
        .map(|k| {
            let (uid, kind) = match k.kind {
                Kind::Alarm => (
                    shared::naming::arn::alarm(&k.region, &k.account, &k.name),
                    "AwsCloudWatchAlarm",
                ),
                // Metric filters have no ARN: named within their log group.
                _ => (
                    format!("{}:{}", shared::naming::LOG_GROUP, k.name),
                    "AwsLogsMetricFilter",
                ),
            };
            json!({
                "uid": uid,
                "name": k.name,
                "type": kind,
                "region": k.region,
                "cloud_partition": partition,
            })
        })
        .collect();
    let mut requirements = Vec::new();
    if let Some(sh) = &rule.deployed.security_hub {
        requirements.push(format!("AWS Security Hub {sh}"));
    }
    let mut compliance = json!({
        "standards": [info.standard()],
        "status_id": status_id,
        "status": status,
        "desc": rule.deployed.description.trim(),
        "requirements": requirements,
    });
    if let Some(control) = info.control {
        compliance["control"] = json!(control);
    }
    let verdict = check.verdict.as_str();
    let message = if check.reason.is_empty() {
        format!(
            "{} {}: {verdict} in {} {}",
            rule.id, rule.title, check.account, check.region
        )
    } else {
        format!(
            "{} {}: {verdict} in {} {}: {}",
            rule.id, rule.title, check.account, check.region, check.reason
        )
    };
    let mut f = json!({
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Compliance Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        // finding status_id 1: New.
        "status_id": 1,
        "status": "New",
        "time": c.generated_at_ms,
        "message": message,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "orgwatch",
                "vendor_name": "orgwatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": ["cloud"],
            "event_code": rule.id,
        },
        "finding_info": {
            "uid": format!("orgwatch-{}-{}-{}", check.account, check.region, rule.id),
            "title": rule.title,
            "desc": rule.deployed.description.trim(),
            "types": ["Compliance"],
            "created_time": c.generated_at_ms,
        },
        "compliance": compliance,
        "cloud": {
            "provider": "AWS",
            "region": check.region,
            "account": {
                "uid": check.account,
                "name": check.account,
                "type_id": 10,
                "type": "AWS Account",
            },
        },
        "resources": resources,
        "remediation": {"desc": rule.deployed.remediation.trim()},
    });
    if !check.reason.is_empty() {
        f["status_detail"] = json!(check.reason);
    }
    if let Some(org) = c.organization_id {
        f["cloud"]["org"] = json!({"uid": org});
    }
    Some(f)
}
