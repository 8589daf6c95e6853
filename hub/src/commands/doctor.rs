//! `hub doctor`: checks what AWS requires before the first write, per account, and says
//! what is missing with the command or console step that fixes it. Reads only. Exit 0 when
//! ready, 1 with the list otherwise. The decisions are `crate::preflight`'s; this module
//! gathers the facts.

use std::sync::Arc;

use serde::Serialize;
use shared::aws::{ClientFactory, Clients};
use shared::naming;

use crate::cli::{GlobalArgs, Output};
use crate::config::{Delivery, HubConfig};
use crate::desired::{self, CLOUDTRAIL_SERVICE_PRINCIPAL, OrgFacts, RuleDeploy};
use crate::discover;
use crate::exit::ExitStatus;
use crate::observe::OpError;
use crate::preflight::{self, Finding, Status};

/// `--output json`.
#[derive(Debug, Serialize)]
struct DoctorReport {
    schema_version: u32,
    ready: bool,
    setup: &'static str,
    organization_id: Option<String>,
    findings: Vec<Finding>,
}

pub async fn run(
    global: &GlobalArgs,
    only: &[String],
    rules: Vec<RuleDeploy>,
    config: HubConfig,
) -> ExitStatus {
    let Some(factory) = super::factory(global, &config).await else {
        return ExitStatus::Failure;
    };
    let (findings, org_id) = match check(&factory, &config, &rules, only).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: cannot read the organisation: {e}");
            return ExitStatus::Failure;
        }
    };
    let report = DoctorReport {
        schema_version: 1,
        ready: preflight::ready(&findings),
        setup: if org_id.is_some() {
            "organization"
        } else {
            "standalone"
        },
        organization_id: org_id,
        findings,
    };
    let printed = match global.output {
        Output::Json => super::print_json(&report),
        Output::Table => {
            print!("{}", table(&report.findings));
            ExitStatus::Success
        }
    };
    if printed != ExitStatus::Success || !report.ready {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}

/// Every check, in order: who the hub is, the organisation's settings, the plan against
/// quotas, then each account (member role assumable, member stack's roles present).
pub async fn check(
    factory: &ClientFactory,
    config: &HubConfig,
    rules: &[RuleDeploy],
    only: &[String],
) -> Result<(Vec<Finding>, Option<String>), OpError> {
    let home = factory.home();
    let me = factory.home_account().await.map_err(OpError::from)?;
    let org = discover::organization(&home, &me).await?;
    let mut findings = organisation_findings(&home, &me, &org, config, rules).await;
    let central_account = config.hub.central_account.clone().unwrap_or(me.clone());
    let (accounts, unknown) = discover::accounts(&home, &org, config, only).await?;
    for a in unknown {
        findings.push(
            Finding::missing(
                "account",
                format!("{a} is not an ACTIVE account of the organisation"),
                "check --account / hub.accounts",
            )
            .at(&a, None),
        );
    }
    let mut everyone = accounts;
    if !everyone.contains(&central_account) {
        everyone.push(central_account);
    }
    let needs_forward = rules.iter().any(|r| r.forward_pattern.is_some());
    let needs_trail_role = config.monitoring.delivery == Delivery::Trail;
    let config = Arc::new(config.clone());
    let gate = Arc::new(tokio::sync::Semaphore::new(config.hub.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for account in everyone {
        let (factory, gate, config) = (factory.clone(), gate.clone(), config.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            account_findings(&factory, &config, &account, needs_forward, needs_trail_role).await
        });
    }
    let mut per_account = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(f) => per_account.extend(f),
            Err(e) => per_account.push(Finding::failed(
                "account",
                format!("internal: task failed: {e}"),
                "report this",
            )),
        }
    }
    per_account.sort_by(|a, b| (&a.account, a.check).cmp(&(&b.account, b.check)));
    findings.extend(per_account);
    Ok((findings, org.id))
}

/// The checks about the organisation and the plan (no member account is assumed): who the
/// hub is, CloudTrail trusted access, quotas. `hub enroll` runs these before any write.
pub async fn organisation_findings(
    home: &Clients,
    me: &str,
    org: &discover::Organization,
    config: &HubConfig,
    rules: &[RuleDeploy],
) -> Vec<Finding> {
    let mut findings = Vec::new();

    let delegated = match &org.id {
        Some(_) if me != org.management_account => {
            match home
                .organizations()
                .list_delegated_administrators()
                .service_principal(CLOUDTRAIL_SERVICE_PRINCIPAL)
                .send()
                .await
            {
                Ok(out) => out
                    .delegated_administrators()
                    .iter()
                    .filter_map(|d| d.id().map(str::to_string))
                    .collect(),
                Err(e) => {
                    let e = OpError::new("ListDelegatedAdministrators", e);
                    findings.push(
                        Finding::failed(
                            "caller",
                            format!("cannot tell whether {me} is a CloudTrail delegated administrator: {e}"),
                            "grant organizations:ListDelegatedAdministrators (hub policy --for hub)",
                        )
                        .at(me, None),
                    );
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    };
    let who = preflight::caller(me, org.id.as_deref(), &org.management_account, &delegated);
    findings.push(preflight::caller_finding(me, &who, &org.management_account));

    if org.id.is_some() {
        match home
            .organizations()
            .list_aws_service_access_for_organization()
            .send()
            .await
        {
            Ok(out) => {
                let enabled: Vec<String> = out
                    .enabled_service_principals()
                    .iter()
                    .filter_map(|p| p.service_principal().map(str::to_string))
                    .collect();
                findings.push(preflight::trusted_access_finding(
                    &org.management_account,
                    &enabled,
                ));
            }
            Err(e) => findings.push(
                Finding::failed(
                    "trusted-access",
                    format!(
                        "cannot read the organisation's trusted services: {}",
                        OpError::new("ListAWSServiceAccessForOrganization", e)
                    ),
                    "run hub doctor from the management account or a delegated administrator",
                )
                .at(&org.management_account, None),
            ),
        }
    }

    if let Some(key) = &config.trail.kms_key_id {
        findings.push(kms_key(home, key, org, config).await.at(me, None));
    }
    if config.guardrail.scp {
        let enabled = match &org.id {
            None => Ok(None),
            Some(_) => home
                .organizations()
                .list_roots()
                .send()
                .await
                .map(|out| {
                    Some(out.roots().iter().any(|r| {
                        r.policy_types().iter().any(|t| {
                            t.r#type()
                                .is_some_and(|t| t.as_str() == "SERVICE_CONTROL_POLICY")
                                && t.status().is_some_and(|s| s.as_str() == "ENABLED")
                        })
                    }))
                })
                .map_err(|e| OpError::new("ListRoots", e)),
        };
        findings.push(match enabled {
            Ok(enabled) => preflight::guardrail_finding(me, &org.management_account, enabled),
            Err(e) => Finding::failed(
                "guardrail",
                format!("cannot read the organisation's root: {e}"),
                "grant organizations:ListRoots (hub policy --for hub)",
            )
            .at(&org.management_account, None),
        });
    }
    let facts = OrgFacts::new(org, config, me, None);
    let bus_policy = desired::bus_policy(
        &naming::arn::bus(
            config.home_region(),
            &facts.central_account,
            naming::CENTRAL_BUS,
        ),
        &facts,
    )
    .to_string();
    findings.extend(preflight::quota_findings(rules, bus_policy.chars().count()));
    findings
}

/// The archive key's policy against the statements CloudTrail and the readers need (the
/// key is read in its own region, from its ARN).
async fn kms_key(
    home: &Clients,
    key: &str,
    org: &discover::Organization,
    config: &HubConfig,
) -> Finding {
    let region = key.split(':').nth(3).unwrap_or(config.home_region());
    let readers: Vec<String> = std::iter::once(org.management_account.clone())
        .chain(config.hub.central_account.clone())
        .collect();
    let required = desired::kms_key_policy(
        config.home_region(),
        &org.management_account,
        &config.trail.name,
        &readers,
        config.monitoring.delivery == Delivery::Trail,
    );
    // KMS API reference, GetKeyPolicy: the only policy name is "default".
    match home
        .in_region(region)
        .kms()
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
    {
        Ok(out) => {
            let policy = out
                .policy()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(serde_json::Value::Null);
            preflight::kms_key_finding(key, &policy, &required)
        }
        Err(e) => Finding::failed(
            "kms-key",
            format!(
                "cannot read the policy of {key}: {}",
                OpError::new("GetKeyPolicy", e)
            ),
            "grant kms:GetKeyPolicy on the key (hub policy --for hub), and check trail.kms_key_id",
        ),
    }
}

/// The member role answers (sts:AssumeRole + GetCallerIdentity), and the member stack's
/// service roles exist (the hub never creates them).
async fn account_findings(
    factory: &ClientFactory,
    config: &HubConfig,
    account: &str,
    needs_forward: bool,
    needs_trail_role: bool,
) -> Vec<Finding> {
    let role = factory.member_role_arn(account);
    let c = match factory.for_account(account).await {
        Ok(c) => c,
        Err(e) => {
            return vec![
                Finding::failed(
                    "member-role",
                    match e.failure() {
                        Some(f) => format!("cannot assume {role}: {f}"),
                        None => format!("cannot assume {role}: {e}"),
                    },
                    format!(
                        "deploy infra/cloudformation/member-role.yaml to {account} (StackSet; a plain stack in the management account) and check that it trusts this hub account{}",
                        if config.hub.external_id.is_some() {
                            " with hub.external_id"
                        } else {
                            ""
                        }
                    ),
                )
                .at(account, None),
            ];
        }
    };
    let mut out = vec![Finding::ok("member-role", format!("{role} answers")).at(account, None)];
    for region in config
        .hub
        .regions
        .iter()
        .filter(|r| preflight::is_opt_in_region(r))
    {
        // AWS Account Management API reference, GetRegionOptStatus (the caller's own
        // account when AccountId is left out).
        let f = match c
            .account_management()
            .get_region_opt_status()
            .region_name(region)
            .send()
            .await
        {
            Ok(o) => preflight::region_finding(
                account,
                region,
                o.region_opt_status()
                    .map(|s| s.as_str())
                    .unwrap_or("UNKNOWN"),
            ),
            Err(e) => Finding::failed(
                "region",
                format!(
                    "cannot read whether {region} is enabled: {}",
                    OpError::new("GetRegionOptStatus", e)
                ),
                "grant account:GetRegionOptStatus (hub policy --for member)",
            )
            .at(account, Some(region)),
        };
        out.push(f);
    }
    let home = c.in_region(config.home_region());
    for (wanted, name) in [
        (needs_forward, naming::FORWARD_ROLE),
        (needs_trail_role, naming::TRAIL_LOGS_ROLE),
    ] {
        if !wanted {
            continue;
        }
        let f = match home.iam().get_role().role_name(name).send().await {
            Ok(_) => Finding::ok("member-stack", format!("role {name} exists")),
            Err(e) => {
                let e = OpError::new("GetRole", e);
                if e.is(&["NoSuchEntity"]) {
                    Finding::missing(
                        "member-stack",
                        format!("role {name} is missing: orgwatch never creates IAM roles"),
                        format!(
                            "deploy or update the member stack {} (infra/cloudformation/member-role.yaml) in {account}",
                            naming::MEMBER_STACK
                        ),
                    )
                } else {
                    Finding::failed(
                        "member-stack",
                        format!("cannot read role {name}: {e}"),
                        "grant iam:GetRole on the orgwatch service roles (hub policy --for member)",
                    )
                }
            }
        };
        out.push(f.at(account, None));
    }
    out
}

fn table(findings: &[Finding]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|f| {
            [
                f.check.to_string(),
                f.account.clone().unwrap_or_else(|| "-".into()),
                match f.status {
                    Status::Ok => "ok".into(),
                    Status::Missing => "MISSING".into(),
                    Status::Failed => "FAILED".into(),
                },
                f.detail.clone(),
            ]
        })
        .collect();
    let header = ["CHECK", "ACCOUNT", "STATUS", "DETAIL"].map(String::from);
    let mut widths = [0usize; 3];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    let fixes: Vec<&Finding> = findings.iter().filter(|f| f.status != Status::Ok).collect();
    if fixes.is_empty() {
        let _ = writeln!(out, "\nready: nothing AWS requires is missing");
    } else {
        let _ = writeln!(out, "\nto fix ({}):", fixes.len());
        for f in fixes {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                f.check,
                f.account.as_deref().unwrap_or("-"),
                f.fix.as_deref().unwrap_or("see the detail")
            );
        }
    }
    out
}
