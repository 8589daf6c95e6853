//! What AWS requires before the first write, as pure decisions over facts the caller
//! gathered (`hub doctor` prints them all; `hub enroll` stops on the blocking ones before
//! any write). No AWS calls here.

use serde::Serialize;

use crate::desired::{CLOUDTRAIL_SERVICE_PRINCIPAL, RuleDeploy};

/// CloudWatch Logs quotas (CloudWatch Logs user guide, "CloudWatch Logs quotas"): metric
/// filters per log group.
pub const MAX_FILTERS_PER_LOG_GROUP: usize = 100;
/// Filter patterns with regular expressions per log group (same page, and "Using regular
/// expressions to match terms" in the filter pattern syntax).
pub const MAX_REGEX_FILTERS_PER_LOG_GROUP: usize = 5;
/// EventBridge quotas ("Amazon EventBridge quotas"): size of an event bus's resource-based
/// policy, in characters.
pub const MAX_BUS_POLICY_CHARS: usize = 10_240;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Something AWS requires is not there; `fix` says how to get it.
    Missing,
    /// The check itself could not be made (a refused or failing call).
    Failed,
}

/// One check's result, for an account and region when it is about one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub account: Option<String>,
    pub region: Option<String>,
    pub status: Status,
    pub detail: String,
    /// The command or console step that fixes it.
    pub fix: Option<String>,
    /// True when `hub enroll` fixes it itself (so it does not block an enroll).
    pub enroll_fixes: bool,
}

impl Finding {
    fn new(check: &'static str, status: Status, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            account: None,
            region: None,
            status,
            detail: detail.into(),
            fix: None,
            enroll_fixes: false,
        }
    }

    pub fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding::new(check, Status::Ok, detail)
    }

    pub fn missing(
        check: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            fix: Some(fix.into()),
            ..Finding::new(check, Status::Missing, detail)
        }
    }

    pub fn failed(
        check: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            fix: Some(fix.into()),
            ..Finding::new(check, Status::Failed, detail)
        }
    }

    pub fn at(mut self, account: &str, region: Option<&str>) -> Finding {
        self.account = Some(account.to_string());
        self.region = region.map(str::to_string);
        self
    }

    /// A problem an enroll cannot get past by itself.
    pub fn blocks_enroll(&self) -> bool {
        self.status != Status::Ok && !self.enroll_fixes
    }
}

/// Who the hub runs as, in which setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The account is in no organisation: an organisation of one.
    Standalone,
    /// The organisation's management account.
    Management,
    /// A registered delegated administrator for CloudTrail.
    DelegatedAdmin,
    /// Another member account: it cannot create an organisation trail.
    Member,
}

/// Decides who the caller is. `delegated` lists CloudTrail's delegated administrators
/// (`ListDelegatedAdministrators` for cloudtrail.amazonaws.com), when they could be read.
pub fn caller(me: &str, org_id: Option<&str>, management: &str, delegated: &[String]) -> Caller {
    match org_id {
        None => Caller::Standalone,
        Some(_) if me == management => Caller::Management,
        Some(_) if delegated.iter().any(|d| d == me) => Caller::DelegatedAdmin,
        Some(_) => Caller::Member,
    }
}

/// Only the management account or a CloudTrail delegated administrator can create an
/// organisation trail (CloudTrail user guide, "Creating a trail for an organization" and
/// "Organization delegated administrator").
pub fn caller_finding(me: &str, who: &Caller, management: &str) -> Finding {
    let f = match who {
        Caller::Standalone => Finding::ok(
            "caller",
            "standalone account (no organisation): an account trail, as an organisation of one",
        ),
        Caller::Management => Finding::ok("caller", "the organisation's management account"),
        Caller::DelegatedAdmin => Finding::ok(
            "caller",
            format!(
                "a CloudTrail delegated administrator; the organisation trail will belong to the management account {management}"
            ),
        ),
        Caller::Member => Finding::missing(
            "caller",
            format!(
                "account {me} is neither the management account ({management}) nor a CloudTrail delegated administrator, so it cannot create the organisation trail"
            ),
            format!(
                "run hub with the management account's credentials, or register this account from the management account: aws cloudtrail register-organization-delegated-admin --member-account-id {me}"
            ),
        ),
    };
    f.at(me, None)
}

/// CloudTrail trusted access (CreateTrail: CloudTrailAccessNotEnabledException without it).
pub fn trusted_access_finding(management: &str, enabled: &[String]) -> Finding {
    let f = if enabled.iter().any(|s| s == CLOUDTRAIL_SERVICE_PRINCIPAL) {
        Finding::ok(
            "trusted-access",
            "CloudTrail has trusted access in the organisation",
        )
    } else {
        Finding {
            enroll_fixes: true,
            ..Finding::missing(
                "trusted-access",
                "CloudTrail has no trusted access in the organisation: an organisation trail cannot be created (CloudTrailAccessNotEnabledException)",
                "hub enroll enables it from the management account; or run there: aws organizations enable-aws-service-access --service-principal cloudtrail.amazonaws.com",
            )
        }
    };
    f.at(management, None)
}

/// `[guardrail] scp = true`: only the management account's hub manages the SCP (orgwatch
/// does not act as a policy delegated administrator), and attaching it needs SCPs enabled
/// on the root (AttachPolicy: PolicyTypeNotEnabledException). `scp_enabled` is the root's
/// SERVICE_CONTROL_POLICY status as `ListRoots` reports it (`None`: standalone).
pub fn guardrail_finding(me: &str, management: &str, scp_enabled: Option<bool>) -> Finding {
    let f = match scp_enabled {
        None => Finding::missing(
            "guardrail",
            "[guardrail] scp is set, but a standalone account has no organisation to attach an SCP in",
            "remove [guardrail] scp, or create an organisation",
        ),
        Some(_) if me != management => Finding::missing(
            "guardrail",
            format!(
                "[guardrail] scp is set, but the hub runs in {me}, not the management account {management}, which owns the organisation's policies"
            ),
            "run hub enroll with the management account's credentials, or attach the output of hub policy --for scp yourself",
        ),
        Some(false) => Finding::missing(
            "guardrail",
            "service control policies are not enabled on the organisation's root, so the guardrail SCP cannot be attached",
            "aws organizations enable-policy-type --root-id <r-...> --policy-type SERVICE_CONTROL_POLICY (FullAWSAccess is attached everywhere first)",
        ),
        Some(true) => Finding::ok(
            "guardrail",
            "service control policies are enabled: hub enroll creates and attaches orgwatch-guardrail",
        ),
    };
    f.at(management, None)
}

/// What the plan would deploy into each log group against CloudWatch Logs' and
/// EventBridge's quotas.
pub fn quota_findings(rules: &[RuleDeploy], bus_policy_chars: usize) -> Vec<Finding> {
    let filters: usize = rules.iter().map(|r| r.filters.len()).sum();
    let regex = rules
        .iter()
        .flat_map(|r| r.filters.iter())
        .filter(|f| shared::pattern::Pattern::parse(f).is_ok_and(|p| p.uses_regex()))
        .count();
    vec![
        quota(
            "quota:metric-filters",
            filters,
            MAX_FILTERS_PER_LOG_GROUP,
            (
                "metric filter",
                "metric filters",
                "per log group",
                "CloudWatch Logs'",
            ),
            "deploy fewer rules (monitoring.pack / monitoring.disable), or merge rules",
        ),
        quota(
            "quota:regex-filters",
            regex,
            MAX_REGEX_FILTERS_PER_LOG_GROUP,
            (
                "filter with regular expressions",
                "filters with regular expressions",
                "per log group",
                "CloudWatch Logs'",
            ),
            "rewrite %regex% conditions as wildcards (\"Delete*\") or disable rules that use them",
        ),
        quota(
            "quota:bus-policy",
            bus_policy_chars,
            MAX_BUS_POLICY_CHARS,
            (
                "character",
                "characters",
                "in the central bus policy",
                "EventBridge's",
            ),
            "report this: orgwatch's bus policy has one statement",
        ),
    ]
}

/// One count against its limit; `what` is (singular, plural, where, whose limit).
fn quota(
    check: &'static str,
    count: usize,
    max: usize,
    (one, many, place, whose): (&str, &str, &str, &str),
    fix: &str,
) -> Finding {
    let noun = if count == 1 { one } else { many };
    if count <= max {
        Finding::ok(check, format!("{count} {noun} {place} (at most {max})"))
    } else {
        Finding::missing(
            check,
            format!("{count} {noun} {place} exceed {whose} {max}"),
            fix,
        )
    }
}

/// Whether the archive key's policy (`GetKeyPolicy`) has what `required` (the statements
/// of `hub policy --for kms-key`) grants: for each required statement, an Allow statement
/// naming the same principals and covering its actions. Conditions are not compared: a
/// key policy may narrow them further.
pub fn kms_key_finding(
    key: &str,
    policy: &serde_json::Value,
    required: &serde_json::Value,
) -> Finding {
    use serde_json::Value;
    fn list(v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
    fn covers(pattern: &str, action: &str) -> bool {
        pattern == "*"
            || pattern.eq_ignore_ascii_case(action)
            || pattern.strip_suffix('*').is_some_and(|p| {
                action
                    .to_ascii_lowercase()
                    .starts_with(&p.to_ascii_lowercase())
            })
    }
    let statements = |p: &Value| -> Vec<Value> {
        match &p["Statement"] {
            Value::Array(a) => a.clone(),
            s @ Value::Object(_) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let have = statements(policy);
    let missing: Vec<String> = statements(required)
        .iter()
        .filter(|r| {
            !have.iter().any(|s| {
                s["Effect"] == "Allow"
                    && ["Service", "AWS"].iter().all(|k| {
                        let want = list(&r["Principal"][*k]);
                        let got = list(&s["Principal"][*k]);
                        want.iter().all(|w| got.contains(w))
                    })
                    && list(&r["Action"])
                        .iter()
                        .all(|a| list(&s["Action"]).iter().any(|p| covers(p, a)))
            })
        })
        .map(|r| r["Sid"].as_str().unwrap_or("?").to_string())
        .collect();
    if missing.is_empty() {
        Finding::ok(
            "kms-key",
            format!("the policy of {key} lets CloudTrail encrypt and the log readers decrypt"),
        )
    } else {
        Finding::missing(
            "kms-key",
            format!("the policy of {key} lacks {}", missing.join(", ")),
            "add the statements of `hub policy --for kms-key --management-account ID` to the key policy (aws kms put-key-policy), keeping its administrators",
        )
    }
}

/// The commercial regions enabled by default in every account (those launched before
/// March 2019); every later one is opt-in and answers nothing until the account enables it
/// (AWS Account Management reference guide, "Enable or disable AWS Regions in your
/// account"). GovCloud and China regions are not opt-in.
const ENABLED_BY_DEFAULT: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
];

/// True for a region an account must opt in to before anything in it answers.
pub fn is_opt_in_region(region: &str) -> bool {
    shared::naming::partition(region) == "aws" && !ENABLED_BY_DEFAULT.contains(&region)
}

/// An opt-in region's status in an account (`GetRegionOptStatus`: ENABLED,
/// ENABLED_BY_DEFAULT, ENABLING, DISABLING, DISABLED).
pub fn region_finding(account: &str, region: &str, status: &str) -> Finding {
    let f = match status {
        "ENABLED" | "ENABLED_BY_DEFAULT" => Finding::ok("region", format!("{region} is enabled")),
        "ENABLING" => Finding::missing(
            "region",
            format!("{region} is being enabled (this can take minutes to hours)"),
            "wait, then run hub doctor again",
        ),
        other => Finding::missing(
            "region",
            format!(
                "{region} is an opt-in region and is {other} in this account: nothing there answers"
            ),
            format!(
                "aws account enable-region --account-id {account} --region-name {region} (from the management account), or remove it from hub.regions"
            ),
        ),
    };
    f.at(account, Some(region))
}

/// True when nothing blocks (doctor: exit 0).
pub fn ready(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.status == Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, filters: &[&str]) -> RuleDeploy {
        RuleDeploy {
            id: id.into(),
            title: "t".into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
            metric_name: "m".into(),
            namespace: "orgwatch".into(),
            threshold: 1.0,
            period: 300,
            evaluation_periods: 1,
            statistic: "Sum".into(),
            comparison: "GreaterThanOrEqualToThreshold".into(),
            treat_missing_data: "notBreaching".into(),
            forward_pattern: None,
            deployed: {
                let pack = shared::rules::Pack::builtin().expect("pack");
                let mut d = shared::rules::manifest::Deployed::of(&pack.rules()[0]);
                d.id = id.into();
                d
            },
        }
    }

    #[test]
    fn the_guardrail_needs_the_management_account_and_scps_enabled() {
        let ready = |f: Finding| f.blocks_enroll();
        assert!(!ready(guardrail_finding(
            "111111111111",
            "111111111111",
            Some(true)
        )));
        assert!(ready(guardrail_finding(
            "111111111111",
            "111111111111",
            Some(false)
        )));
        assert!(ready(guardrail_finding(
            "222222222222",
            "111111111111",
            Some(true)
        )));
        assert!(ready(guardrail_finding(
            "111111111111",
            "111111111111",
            None
        )));
        let f = guardrail_finding("111111111111", "111111111111", Some(false));
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("enable-policy-type"))
        );
    }

    #[test]
    fn who_may_create_the_organisation_trail() {
        let m = "111111111111";
        assert_eq!(caller(m, None, m, &[]), Caller::Standalone);
        assert_eq!(caller(m, Some("o-1"), m, &[]), Caller::Management);
        let d = "222222222222".to_string();
        assert_eq!(
            caller(&d, Some("o-1"), m, std::slice::from_ref(&d)),
            Caller::DelegatedAdmin
        );
        assert_eq!(caller(&d, Some("o-1"), m, &[]), Caller::Member);
        let f = caller_finding(&d, &Caller::Member, m);
        assert_eq!(f.status, Status::Missing);
        assert!(f.blocks_enroll());
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("register-organization-delegated-admin"))
        );
    }

    #[test]
    fn missing_trusted_access_is_reported_but_enroll_fixes_it() {
        let f = trusted_access_finding("111111111111", &["config.amazonaws.com".into()]);
        assert_eq!(f.status, Status::Missing);
        assert!(!f.blocks_enroll());
        assert!(!ready(std::slice::from_ref(&f)));
        let f = trusted_access_finding("111111111111", &[CLOUDTRAIL_SERVICE_PRINCIPAL.into()]);
        assert_eq!(f.status, Status::Ok);
    }

    #[test]
    fn opt_in_regions_are_asked_and_must_be_enabled() {
        assert!(!is_opt_in_region("us-east-1"));
        assert!(!is_opt_in_region("eu-west-1"));
        assert!(is_opt_in_region("af-south-1"));
        assert!(is_opt_in_region("eu-south-2"));
        assert!(!is_opt_in_region("us-gov-west-1"), "another partition");
        assert!(!is_opt_in_region("cn-north-1"));
        assert_eq!(
            region_finding("1", "af-south-1", "ENABLED").status,
            Status::Ok
        );
        let f = region_finding("111122223333", "af-south-1", "DISABLED");
        assert_eq!(f.status, Status::Missing);
        assert!(f.blocks_enroll());
        assert!(f.fix.as_deref().is_some_and(|x| {
            x.contains("enable-region --account-id 111122223333 --region-name af-south-1")
        }));
        assert_eq!(
            region_finding("1", "af-south-1", "ENABLING").status,
            Status::Missing
        );
    }

    #[test]
    fn a_key_policy_without_cloudtrail_is_missing_statements() {
        let required = crate::desired::kms_key_policy(
            "us-east-1",
            "111111111111",
            "orgwatch",
            &["111111111111".to_string()],
            false,
        );
        let admin_only = serde_json::json!({"Statement": [{"Sid": "Root", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]});
        let f = kms_key_finding("k", &admin_only, &required);
        assert_eq!(f.status, Status::Missing, "{f:?}");
        assert!(
            f.detail.contains("CloudTrailEncryptsOrganizationTrailLogs"),
            "{}",
            f.detail
        );
        assert!(
            !f.detail.contains("LogReadersDecrypt"),
            "root's kms:* covers the readers"
        );
        let mut full = admin_only.clone();
        if let (Some(a), Some(b)) = (
            full["Statement"].as_array_mut(),
            required["Statement"].as_array(),
        ) {
            a.extend(b.iter().cloned());
        }
        assert_eq!(kms_key_finding("k", &full, &required).status, Status::Ok);
    }

    #[test]
    fn quotas_count_filters_and_regular_expressions() {
        let fine: Vec<RuleDeploy> = (0..50)
            .map(|i| rule(&format!("r{i}"), &["{ $.a = 1 }", "{ $.b = 2 }"]))
            .collect();
        assert!(ready(&quota_findings(&fine, 300)));
        let too_many: Vec<RuleDeploy> = (0..101)
            .map(|i| rule(&format!("r{i}"), &["{ $.a = 1 }"]))
            .collect();
        let f = quota_findings(&too_many, 300);
        assert_eq!(f[0].status, Status::Missing, "{f:?}");
        let regex: Vec<RuleDeploy> = (0..6)
            .map(|i| rule(&format!("r{i}"), &["{ $.eventName = %^Delete% }"]))
            .collect();
        let f = quota_findings(&regex, 300);
        assert_eq!(
            (f[0].status, f[1].status),
            (Status::Ok, Status::Missing),
            "{f:?}"
        );
        assert_eq!(quota_findings(&fine, 20_000)[2].status, Status::Missing);
    }
}
