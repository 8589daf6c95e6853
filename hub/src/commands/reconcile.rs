//! `plan`, `enroll`, `status` and `offboard`: one reconcile loop, four modes.
//!
//! * plan = observe + diff, printed;
//! * enroll = plan + apply (central resources are only checked when `--account` is given);
//! * status = plan in check mode: exit 3 when anything is missing or drifted;
//! * offboard = an empty desired state for the chosen accounts: only deletes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use serde::Serialize;
use shared::aws::{AwsOptions, ClientFactory, Clients};

use crate::apply::{self, ApplyOptions};
use crate::cli::{GlobalArgs, Output, ReconcileArgs};
use crate::config::HubConfig;
use crate::desired::{self, OrgFacts, RuleDeploy};
use crate::diff::{self, Action, Change, Plan};
use crate::discover;
use crate::exit::ExitStatus;
use crate::model::{Kind, ResourceKey, Spec};
use crate::observe::{self, CentralNames, OpError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Plan,
    Enroll,
    Status,
    Offboard,
}

/// The result for one account in one region (or the central resources of a region).
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub account_id: String,
    pub region: String,
    /// `central` or `member`.
    pub scope: &'static str,
    /// `ok`, `changed`, `drift` (status/plan with changes) or `failed`.
    pub status: &'static str,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub error: Option<String>,
    pub changes: Vec<Change>,
    #[serde(skip)]
    pub coverage: Vec<ResourceKey>,
}

impl Outcome {
    fn failed(account: &str, region: &str, scope: &'static str, error: String) -> Outcome {
        Outcome {
            account_id: account.to_string(),
            region: region.to_string(),
            scope,
            status: "failed",
            created: 0,
            updated: 0,
            deleted: 0,
            unchanged: 0,
            error: Some(error),
            changes: Vec::new(),
            coverage: Vec::new(),
        }
    }

    fn from_plan(
        account: &str,
        region: &str,
        scope: &'static str,
        mode: Mode,
        plan: &Plan,
    ) -> Outcome {
        let status = if plan.is_empty() {
            "ok"
        } else if matches!(mode, Mode::Enroll | Mode::Offboard) {
            "changed"
        } else {
            "drift"
        };
        Outcome {
            account_id: account.to_string(),
            region: region.to_string(),
            scope,
            status,
            created: plan.count(|a| matches!(a, Action::Create)),
            updated: plan.count(|a| matches!(a, Action::Update { .. })),
            deleted: plan.count(|a| matches!(a, Action::Delete)),
            unchanged: plan.unchanged.len(),
            error: None,
            changes: plan.changes.clone(),
            coverage: plan.unchanged.clone(),
        }
    }
}

/// The whole run, as printed with `--output json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub command: Mode,
    pub organization_id: String,
    pub central_account: String,
    pub delivery: crate::config::Delivery,
    pub rules: Vec<String>,
    pub results: Vec<Outcome>,
    /// AWS calls that changed state.
    pub writes: u64,
    /// Every AWS call made.
    pub calls: u64,
    pub warnings: Vec<String>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &ReconcileArgs,
    mode: Mode,
    rules: Vec<RuleDeploy>,
    config: HubConfig,
) -> ExitStatus {
    let mut warnings = Vec::new();
    if !config.hub.regions.iter().any(|r| r == "us-east-1") {
        let w = "us-east-1 is not monitored: global-service events (IAM, STS, console sign-in) are delivered there".to_string();
        tracing::warn!("{w}");
        warnings.push(w);
    }
    let options = AwsOptions {
        region: global
            .region
            .clone()
            .or_else(|| Some(config.home_region().to_string())),
        member_role: config.hub.member_role.clone(),
        external_id: config.hub.external_id.clone(),
        ..AwsOptions::default()
    };
    let factory = match ClientFactory::new(options).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Failure;
        }
    };
    let home = factory.home();
    let setup = async {
        let org = discover::organization(&home).await?;
        let me = factory.home_account().await.map_err(|e| OpError {
            operation: "GetCallerIdentity".into(),
            code: e.code().map(str::to_string),
            message: e.to_string(),
        })?;
        let (accounts, unknown) = discover::accounts(&home, &org, &config, &args.account).await?;
        Ok::<_, OpError>((org, me, accounts, unknown))
    };
    let (org, me, accounts, unknown) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: cannot read the organisation: {e}");
            return ExitStatus::Failure;
        }
    };
    let facts = OrgFacts {
        org_id: org.id.clone(),
        central_account: config.hub.central_account.clone().unwrap_or(me),
    };
    let rules = Arc::new(rules);
    let config = Arc::new(config);
    let apply_options = ApplyOptions {
        delete_archive: args.delete_archive,
    };
    let mut results = Vec::new();
    for a in &unknown {
        results.push(Outcome::failed(
            a,
            "-",
            "member",
            format!(
                "account {a} is not an ACTIVE account of organisation {}",
                org.id
            ),
        ));
    }
    let reporter = Reporter::new(
        (accounts.len() + 1) * config.hub.regions.len(),
        global.quiet,
    );

    // Central resources first: members' alarms and rules point at them.
    let central_mode = match mode {
        // A pipeline enrolling single accounts only checks the central resources.
        Mode::Enroll if !args.account.is_empty() => Mode::Status,
        Mode::Offboard if !args.account.is_empty() => Mode::Status,
        m => m,
    };
    match factory.for_account(&facts.central_account).await {
        Ok(c) => {
            for region in &config.hub.regions {
                let out = central(
                    &c.in_region(region),
                    &config,
                    &facts,
                    region,
                    central_mode,
                    &apply_options,
                )
                .await;
                reporter.done(&out);
                results.push(out);
            }
        }
        Err(e) => results.push(Outcome::failed(
            &facts.central_account,
            "-",
            "central",
            e.to_string(),
        )),
    }

    let concurrency = args.concurrency.unwrap_or(config.hub.concurrency).max(1);
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for account in accounts {
        let (factory, config, facts, rules, gate, apply_options) = (
            factory.clone(),
            config.clone(),
            facts.clone(),
            rules.clone(),
            gate.clone(),
            apply_options.clone(),
        );
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            member_account(
                &factory,
                &config,
                &facts,
                &rules,
                &account,
                mode,
                &apply_options,
            )
            .await
        });
    }
    let mut member_results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outs) => {
                for o in &outs {
                    reporter.done(o);
                }
                member_results.extend(outs);
            }
            Err(e) => member_results.push(Outcome::failed(
                "-",
                "-",
                "member",
                format!("internal: task failed: {e}"),
            )),
        }
    }
    reporter.finish();
    member_results.sort_by(|a, b| (&a.account_id, &a.region).cmp(&(&b.account_id, &b.region)));
    results.extend(member_results);

    let report = Report {
        schema_version: 1,
        command: mode,
        organization_id: org.id.clone(),
        central_account: facts.central_account.clone(),
        delivery: config.monitoring.delivery,
        rules: rules.iter().map(|r| r.id.clone()).collect(),
        results,
        writes: factory.calls().writes(),
        calls: factory.calls().total(),
        warnings,
    };
    factory.calls().append_call_log("hub");
    match global.output {
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot print the report: {e}"),
        },
        Output::Table => print!("{}", crate::report::table(&report)),
    }
    let failed = report.results.iter().any(|o| o.status == "failed");
    let drift = report.results.iter().any(|o| o.status == "drift");
    if failed {
        ExitStatus::Failure
    } else if drift && mode == Mode::Status {
        ExitStatus::Drift
    } else {
        ExitStatus::Success
    }
}

async fn reconcile(
    c: &Clients,
    desired: &BTreeMap<ResourceKey, Spec>,
    observed: &BTreeMap<ResourceKey, Spec>,
    mode: Mode,
    options: &ApplyOptions,
) -> (Plan, Option<(Change, OpError)>) {
    let plan = diff::diff(desired, observed);
    if matches!(mode, Mode::Enroll | Mode::Offboard) {
        for change in &plan.changes {
            tracing::debug!(key = %change.key, action = ?change.action, "apply");
            if let Err(e) = apply::apply(c, change, options).await {
                return (plan.clone(), Some((change.clone(), e)));
            }
        }
    }
    (plan, None)
}

fn outcome_of(
    account: &str,
    region: &str,
    scope: &'static str,
    mode: Mode,
    plan: Plan,
    failure: Option<(Change, OpError)>,
) -> Outcome {
    let mut out = Outcome::from_plan(account, region, scope, mode, &plan);
    if let Some((change, e)) = failure {
        out.status = "failed";
        out.error = Some(format!("{} {}: {e}", change.key.kind, change.key.name));
    }
    out
}

async fn central(
    c: &Clients,
    config: &HubConfig,
    facts: &OrgFacts,
    region: &str,
    mode: Mode,
    options: &ApplyOptions,
) -> Outcome {
    let account = facts.central_account.as_str();
    let names = CentralNames {
        account: account.to_string(),
        bucket: config.trail.bucket.clone(),
        trail: config.trail.name.clone(),
        topic: config.alerts.topic.clone(),
        queue: config.alerts.queue.clone(),
    };
    let observed = match observe::central(c, &names, region, config.home_region()).await {
        Ok(o) => o,
        Err(e) => return Outcome::failed(account, region, "central", e.to_string()),
    };
    let mut desired: BTreeMap<ResourceKey, Spec> = desired::central(config, facts)
        .into_iter()
        .filter(|(k, _)| k.region == region)
        .collect();
    if mode == Mode::Offboard {
        desired.clear();
        if !options.delete_archive {
            // The archive outlives offboarding unless asked otherwise.
            desired.extend(
                observed
                    .iter()
                    .filter(|(k, _)| k.kind == Kind::Bucket)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
    let (plan, failure) = reconcile(c, &desired, &observed, mode, options).await;
    outcome_of(account, region, "central", mode, plan, failure)
}

async fn member_account(
    factory: &ClientFactory,
    config: &HubConfig,
    facts: &OrgFacts,
    rules: &[RuleDeploy],
    account: &str,
    mode: Mode,
    options: &ApplyOptions,
) -> Vec<Outcome> {
    let c = match factory.for_account(account).await {
        Ok(c) => c,
        Err(e) => return vec![Outcome::failed(account, "-", "member", e.to_string())],
    };
    let mut outs = Vec::new();
    for region in &config.hub.regions {
        let rc = c.in_region(region);
        let observed = match observe::member(&rc, account, region, config.home_region()).await {
            Ok(o) => o,
            Err(e) => {
                outs.push(Outcome::failed(account, region, "member", e.to_string()));
                continue;
            }
        };
        let desired = if mode == Mode::Offboard {
            BTreeMap::new()
        } else {
            desired::member(config, facts, rules, account, region)
        };
        let (plan, failure) = reconcile(&rc, &desired, &observed, mode, options).await;
        outs.push(outcome_of(account, region, "member", mode, plan, failure));
    }
    outs
}

/// Progress on stderr: a redrawn line on a terminal, nothing otherwise (logs carry the rest).
struct Reporter {
    total: usize,
    done: std::sync::atomic::AtomicUsize,
    tty: bool,
}

impl Reporter {
    fn new(total: usize, quiet: bool) -> Reporter {
        Reporter {
            total,
            done: std::sync::atomic::AtomicUsize::new(0),
            tty: !quiet && std::io::stderr().is_terminal(),
        }
    }

    fn done(&self, o: &Outcome) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.tty {
            eprint!("\r\x1b[2K[{n}] {} {} {}", o.account_id, o.region, o.status);
        } else {
            tracing::info!(account = %o.account_id, region = %o.region, scope = o.scope, status = o.status, created = o.created, updated = o.updated, deleted = o.deleted, error = o.error.as_deref().unwrap_or(""), "{}/{} done", n, self.total);
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
