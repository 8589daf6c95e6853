//! `plan`, `enroll`, `status` and `offboard`: one reconcile loop, four modes.
//!
//! * plan = observe + diff, printed;
//! * enroll = plan + apply (central resources are only checked when `--account` is given);
//! * status = plan in check mode: exit 3 when anything is missing or drifted;
//! * offboard = an empty desired state for the chosen accounts: only deletes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use shared::aws::{ClientFactory, Clients};
use shared::logging::LogFormat;

use crate::apply::{self, ApplyOptions};
use crate::cli::{GlobalArgs, Output, ReconcileArgs};
use crate::config::HubConfig;
use crate::desired::{self, OrgFacts, RuleDeploy};
use crate::diff::{self, Action, Change, Plan};
use crate::discover;
use crate::exit::ExitStatus;
use crate::model::{Kind, ResourceKey, Spec};
use crate::observe::{self, CentralNames, Observed, OpError};

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
    /// `organization` (trusted access and the organisation trail), `central` or `member`.
    pub scope: &'static str,
    /// `ok`, `changed`, `drift` (status/plan with changes) or `failed`.
    pub status: &'static str,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Resources tagged as orgwatch's by `--adopt` (plan: that would be).
    pub adopted: usize,
    pub error: Option<String>,
    pub changes: Vec<Change>,
    /// Resources with orgwatch names but without the managed tag, and what was done.
    pub unmanaged: Vec<Unmanaged>,
    #[serde(skip)]
    pub coverage: Vec<ResourceKey>,
}

/// A resource that has an orgwatch name but not the `orgwatch:managed=true` tag: orgwatch
/// did not create it, so it neither changes nor deletes it unless told to adopt it.
#[derive(Clone, Debug, Serialize)]
pub struct Unmanaged {
    pub key: ResourceKey,
    /// Why it is not orgwatch's.
    pub reason: String,
    /// `conflict` (plan/enroll: nothing in its account and region is changed, which
    /// fails), `adopted` (enroll --adopt), `would adopt` (plan --adopt), `skipped`
    /// (offboard: left in place) or `drift` (status).
    pub handling: &'static str,
}

impl Outcome {
    pub(crate) fn failed(
        account: &str,
        region: &str,
        scope: &'static str,
        error: String,
    ) -> Outcome {
        Outcome {
            account_id: account.to_string(),
            region: region.to_string(),
            scope,
            status: "failed",
            created: 0,
            updated: 0,
            deleted: 0,
            unchanged: 0,
            adopted: 0,
            error: Some(error),
            changes: Vec::new(),
            unmanaged: Vec::new(),
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
            adopted: plan.count(|a| matches!(a, Action::Adopt)),
            error: None,
            changes: plan.changes.clone(),
            unmanaged: Vec::new(),
            coverage: plan.unchanged.clone(),
        }
    }
}

/// The whole run, as printed with `--output json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub command: Mode,
    /// `organization` or `standalone` (an account in no organisation: an organisation of
    /// one, with an account trail).
    pub setup: &'static str,
    /// `null` for a standalone account.
    pub organization_id: Option<String>,
    pub central_account: String,
    pub delivery: crate::config::Delivery,
    pub rules: Vec<String>,
    pub results: Vec<Outcome>,
    /// AWS calls that changed state.
    pub writes: u64,
    /// Every AWS call made.
    pub calls: u64,
    /// `calls` and `writes` per account (the central account's include its central
    /// resources; `home` is the organisation discovery before the hub's own account id
    /// was known).
    pub calls_by_account: BTreeMap<String, CallCount>,
    /// Every AWS call made, per `Service:Operation` (what a run costs against the APIs'
    /// quotas).
    pub calls_by_operation: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

/// AWS calls made in one account.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CallCount {
    pub calls: u64,
    pub writes: u64,
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
    let Some(factory) = super::factory(global, &config).await else {
        return ExitStatus::Failure;
    };
    let home = factory.home();
    let setup = async {
        let me = factory.home_account().await.map_err(OpError::from)?;
        let org = discover::organization(&home, &me).await?;
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
    if mode == Mode::Enroll {
        // Before any write: what AWS requires and an enroll cannot fix by itself (who the
        // hub is, quotas). Trusted access is enabled below; accounts whose member role or
        // stack is missing fail alone, in their own outcome.
        let blocking: Vec<_> =
            super::doctor::organisation_findings(&home, &me, &org, &config, &rules)
                .await
                .into_iter()
                .filter(|f| f.blocks_enroll())
                .collect();
        if !blocking.is_empty() {
            for f in &blocking {
                eprintln!(
                    "error: preflight {} ({}): {}\n  fix: {}",
                    f.check,
                    f.account.as_deref().unwrap_or("-"),
                    f.detail,
                    f.fix.as_deref().unwrap_or("see hub doctor")
                );
            }
            eprintln!("error: nothing was changed; `hub doctor` lists every check");
            return ExitStatus::Failure;
        }
    }
    // The guardrail SCP's default target.
    let root_id = match discover::guardrail_root(&home, &org, &config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read the organisation's root: {e}");
            return ExitStatus::Failure;
        }
    };
    let facts = OrgFacts::new(&org, &config, &me, root_id);
    let ctx = Ctx {
        factory: factory.clone(),
        config: Arc::new(config),
        facts: facts.clone(),
        rules: Arc::new(rules),
        options: ApplyOptions {
            delete_archive: args.delete_archive,
            adopt: args.adopt,
            deep: args.deep,
        },
    };
    let config = ctx.config.clone();
    let rules = ctx.rules.clone();
    let mut results = Vec::new();
    for a in &unknown {
        results.push(Outcome::failed(
            a,
            "-",
            "member",
            match &org.id {
                Some(id) => format!("account {a} is not an ACTIVE account of organisation {id}"),
                None => format!(
                    "account {a} is not this standalone account ({}): without an organisation only the caller's own account is enrolled",
                    org.management_account
                ),
            },
        ));
    }
    let reporter = Reporter::new(
        global,
        accounts.len() + 1,
        (accounts.len() + 1) * config.hub.regions.len() + 1,
    );
    // A pipeline enrolling single accounts only checks the central resources.
    let central_mode = match mode {
        Mode::Enroll | Mode::Offboard if !args.account.is_empty() => Mode::Status,
        m => m,
    };
    let concurrency = args.concurrency.unwrap_or(config.hub.concurrency).max(1);
    results.extend(everything(&ctx, mode, central_mode, accounts, concurrency, &reporter).await);

    let report = Report {
        schema_version: 1,
        command: mode,
        setup: if org.id.is_some() {
            "organization"
        } else {
            "standalone"
        },
        organization_id: org.id.clone(),
        central_account: facts.central_account.clone(),
        delivery: config.monitoring.delivery,
        rules: rules.iter().map(|r| r.id.clone()).collect(),
        results,
        writes: factory.calls().writes(),
        calls: factory.calls().total(),
        calls_by_account: factory
            .calls()
            .by_account()
            .into_iter()
            .map(|(account, c)| {
                (
                    account,
                    CallCount {
                        calls: c.calls,
                        writes: c.writes,
                    },
                )
            })
            .collect(),
        calls_by_operation: factory
            .calls()
            .snapshot()
            .into_iter()
            .map(|(service, operation, n)| (format!("{service}:{operation}"), n))
            .collect(),
        warnings,
    };
    factory.calls().append_call_log("hub");
    if let Some(format) = global.format.compliance() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let log_regions = crate::desired::member_regions(&config);
        let compliance = crate::compliance::Compliance::of(&report, &rules, &log_regions, now_ms);
        print!("{}", format.render(&compliance));
    } else {
        match global.output {
            Output::Json => {
                if super::print_json(&report) != ExitStatus::Success {
                    return ExitStatus::Failure;
                }
            }
            Output::Table => print!("{}", crate::report::table(&report)),
        }
    }
    let failed = report.results.iter().any(|o| o.status == "failed");
    let drift = report.results.iter().any(|o| o.status == "drift");
    if failed {
        ExitStatus::Failure
    } else if drift && mode == Mode::Status {
        ExitStatus::Drift
    } else if drift && mode == Mode::Plan && args.detailed_exitcode {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    }
}

/// What a reconcile needs besides the scope: clients, the declared state and the options.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub factory: ClientFactory,
    pub config: Arc<HubConfig>,
    pub facts: OrgFacts,
    pub rules: Arc<Vec<RuleDeploy>>,
    pub options: ApplyOptions,
}

/// Central resources (every region), the organisation outcome (home region), then each
/// account in `accounts` (at most `concurrency` at once), in `mode` (`central_mode` for
/// the central and organisation outcomes).
pub(crate) async fn everything(
    ctx: &Ctx,
    mode: Mode,
    central_mode: Mode,
    accounts: Vec<String>,
    concurrency: usize,
    reporter: &Reporter,
) -> Vec<Outcome> {
    let mut results = Vec::new();
    reporter.phase("central resources");
    results.extend(central_everywhere(ctx, central_mode, reporter).await);
    reporter.account_done(&ctx.facts.central_account, "member accounts");

    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for account in accounts {
        let (ctx, gate) = (ctx.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            member_account(&ctx, &account, &ctx.config.hub.regions, mode).await
        });
    }
    let mut member_results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outs) => {
                for o in &outs {
                    reporter.outcome(o);
                }
                if let Some(first) = outs.first() {
                    reporter.account_done(&first.account_id, "member accounts");
                }
                member_results.extend(outs);
            }
            Err(e) => {
                let out =
                    Outcome::failed("-", "-", "member", format!("internal: task failed: {e}"));
                reporter.outcome(&out);
                reporter.account_done("-", "member accounts");
                member_results.push(out);
            }
        }
    }
    reporter.finish();
    member_results.sort_by(|a, b| (&a.account_id, &a.region).cmp(&(&b.account_id, &b.region)));
    results.extend(member_results);
    results
}

/// The central resources of every region and, in the home region, the organisation
/// outcome. Central resources first: members' alarms and rules point at them.
pub(crate) async fn central_everywhere(ctx: &Ctx, mode: Mode, reporter: &Reporter) -> Vec<Outcome> {
    let (config, facts) = (&ctx.config, &ctx.facts);
    let mut results = Vec::new();
    let central_clients = ctx.factory.for_account(&facts.central_account).await;
    if let Err(e) = &central_clients {
        let out = Outcome::failed(&facts.central_account, "-", "central", e.to_string());
        reporter.outcome(&out);
        results.push(out);
    }
    let home = ctx.factory.home();
    for region in &config.hub.regions {
        if let Ok(c) = &central_clients {
            let out = central(
                &c.in_region(region),
                config,
                facts,
                &ctx.rules,
                region,
                mode,
                &ctx.options,
            )
            .await;
            reporter.outcome(&out);
            results.push(out);
        }
        if region == config.home_region() {
            // The organisation trail writes into the central bucket: after it. It is the
            // hub's own to manage (management account or CloudTrail delegated
            // administrator), never the central account's.
            let out = organisation(
                &home.in_region(region),
                config,
                facts,
                &ctx.rules,
                mode,
                &ctx.options,
            )
            .await;
            reporter.outcome(&out);
            results.push(out);
        }
    }
    results
}

/// What one account and region came to: the plan (as carried out, for enroll/offboard),
/// the unmanaged resources, and the error that stopped it, if any.
struct Reconciled {
    plan: Plan,
    unmanaged: Vec<Unmanaged>,
    failure: Option<String>,
}

/// Kinds that have no tags of their own: they are orgwatch's when their parent is (a
/// metric filter its log group, a subscription its topic) or by name (log policies).
fn owned_through_parent(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::MetricFilter | Kind::Subscription | Kind::LogPolicy | Kind::TrustedAccess
    )
}

async fn reconcile(
    c: &Clients,
    desired: &BTreeMap<ResourceKey, Spec>,
    observed: Observed,
    mode: Mode,
    options: &ApplyOptions,
) -> Reconciled {
    let Observed {
        resources,
        mut unmanaged,
        probes,
    } = observed;
    let mut plan = diff::diff(desired, &resources);
    // Tags the listings do not carry cost one call per resource (observe::TagProbe): they
    // are read for what this plan would update or delete, and for `hub status` (which
    // reports an orgwatch-named resource without the tag even when it is as declared) and
    // `--adopt` (which tags it), alarms excepted: CloudWatch answers 3 TPS. A resource
    // that already is as declared is left alone whoever made it, so enroll, plan and hub
    // watch need no check for it.
    let changing: std::collections::BTreeSet<&ResourceKey> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Update { .. } | Action::Delete))
        .map(|c| &c.key)
        .collect();
    // A resource without tags of its own (a metric filter) is orgwatch's when its parent
    // is: any change to one (a creation too: nothing is added to someone else's log group)
    // reads the parent's tags (TagProbe::children).
    let kinds_changing: std::collections::BTreeSet<Kind> =
        plan.changes.iter().map(|c| c.key.kind).collect();
    let checks: Vec<(ResourceKey, observe::TagProbe)> = probes
        .into_iter()
        .filter(|(key, probe)| {
            changing.contains(key)
                || probe
                    .children()
                    .is_some_and(|(kind, _)| kinds_changing.contains(&kind))
                || ((mode == Mode::Status || options.adopt) && probe.audited())
        })
        .filter(|(key, _)| !unmanaged.contains_key(key))
        .collect();
    for (key, probe) in checks {
        match observe::owned(c, &key, &probe).await {
            Ok(true) => {}
            Ok(false) => {
                if let Some((kind, why)) = probe.children() {
                    for child in resources.keys().filter(|k| {
                        k.kind == kind && k.account == key.account && k.region == key.region
                    }) {
                        unmanaged.insert(child.clone(), why.clone());
                    }
                }
                unmanaged.insert(key, observe::missing_tag());
            }
            Err(e) => {
                return Reconciled {
                    plan,
                    unmanaged: Vec::new(),
                    failure: Some(format!("{} {}: {e}", key.kind, key.name)),
                };
            }
        }
    }
    let handling = match mode {
        Mode::Status => "drift",
        Mode::Offboard => "skipped",
        Mode::Plan if options.adopt => "would adopt",
        Mode::Enroll if options.adopt => "adopted",
        Mode::Plan | Mode::Enroll => "conflict",
    };
    let listed: Vec<Unmanaged> = unmanaged
        .iter()
        .map(|(key, reason)| Unmanaged {
            key: key.clone(),
            reason: reason.clone(),
            handling,
        })
        .collect();
    let mut failure = None;
    match handling {
        "skipped" => plan.changes.retain(|c| !unmanaged.contains_key(&c.key)),
        "conflict" if !listed.is_empty() => {
            let names: Vec<String> = listed
                .iter()
                .map(|u| format!("{} {}", u.key.kind, u.key.name))
                .collect();
            let (what, them) = match listed.len() {
                1 => ("1 resource has an orgwatch name".to_string(), "it"),
                n => (format!("{n} resources have orgwatch names"), "them"),
            };
            failure = Some(format!(
                "{what} but not the {}={} tag, so orgwatch did not create {them} and changes nothing in this account and region: {}. Run `hub enroll --adopt` to tag {them} as orgwatch's and converge {them}, or rename or remove {them}",
                shared::naming::MANAGED_TAG,
                shared::naming::MANAGED_TAG_VALUE,
                names.join(", ")
            ));
            if mode == Mode::Enroll {
                // Nothing was done: report no changes as made.
                plan.changes.clear();
            }
        }
        "adopted" | "would adopt" => {
            let adopt: Vec<Change> = unmanaged
                .keys()
                .filter(|k| !owned_through_parent(k.kind))
                .map(|k| Change {
                    key: k.clone(),
                    action: Action::Adopt,
                    desired: None,
                    observed: resources.get(k).cloned(),
                })
                .collect();
            plan.changes.splice(0..0, adopt);
        }
        _ => {}
    }
    if failure.is_none()
        && mode == Mode::Enroll
        && let Some(why) = diff::provided_changes(&plan)
    {
        // Nothing is applied in this account and region: its forward rules and trail
        // would name a role that is not there.
        failure = Some(why);
        plan.changes.clear();
    }
    if failure.is_none() && matches!(mode, Mode::Enroll | Mode::Offboard) {
        // Alarms are deleted a hundred at a time (CloudWatch API reference, DeleteAlarms:
        // AlarmNames holds at most 100), at the place of the first one in the plan: an
        // offboarded account's alarms cost one call per region, not one per rule.
        let mut alarms_deleted: std::collections::BTreeSet<String> = Default::default();
        for change in &plan.changes {
            if change.key.kind == Kind::Alarm && matches!(change.action, Action::Delete) {
                let region = &change.key.region;
                if !alarms_deleted.insert(region.clone()) {
                    continue;
                }
                let names: Vec<String> = plan
                    .changes
                    .iter()
                    .filter(|o| {
                        o.key.kind == Kind::Alarm
                            && matches!(o.action, Action::Delete)
                            && &o.key.region == region
                    })
                    .map(|o| o.key.name.clone())
                    .collect();
                tracing::debug!(region = %region, alarms = names.len(), "apply: delete alarms");
                let regional;
                let c = if *region == c.region() {
                    c
                } else {
                    regional = c.in_region(region);
                    &regional
                };
                if let Err(e) = apply::delete_alarms(c, &names).await {
                    failure = Some(format!("{} {}: {e}", change.key.kind, names.join(", ")));
                    break;
                }
                continue;
            }
            tracing::debug!(key = %change.key, action = ?change.action, "apply");
            // A resource of this outcome may live in another region (the organisation-events
            // rule is in us-east-1 whatever the home region).
            let regional;
            let c = if change.key.region == c.region() {
                c
            } else {
                regional = c.in_region(&change.key.region);
                &regional
            };
            if let Err(e) = apply::apply(c, change, options).await {
                failure = Some(format!("{} {}: {e}", change.key.kind, change.key.name));
                break;
            }
        }
    }
    Reconciled {
        plan,
        unmanaged: listed,
        failure,
    }
}

fn outcome_of(
    account: &str,
    region: &str,
    scope: &'static str,
    mode: Mode,
    done: Reconciled,
) -> Outcome {
    let mut out = Outcome::from_plan(account, region, scope, mode, &done.plan);
    if mode == Mode::Status && !done.unmanaged.is_empty() {
        out.status = "drift";
    }
    out.unmanaged = done.unmanaged;
    if let Some(e) = done.failure {
        out.status = "failed";
        out.error = Some(e);
    }
    out
}

fn central_names(config: &HubConfig, facts: &OrgFacts) -> CentralNames {
    CentralNames {
        management_account: facts.management_account.clone(),
        in_organization: facts.org_id.is_some(),
        account: facts.central_account.clone(),
        bucket: config.trail.bucket.clone(),
        trail: config.trail.name.clone(),
        topic: config.alerts.topic.clone(),
        queue: config.alerts.queue.clone(),
        ops_topic: config.alerts.ops_topic.clone(),
        control_queue: config.watch.queue.clone(),
        lease_table: config.watch.lease_table.clone(),
        hub_is_management: facts.hub_account == facts.management_account,
    }
}

/// CloudTrail trusted access and the organisation trail, with the hub's own credentials
/// (`c`, home region). Offboarding removes the trail; trusted access stays
/// ([`Kind::never_deleted`]).
pub(crate) async fn organisation(
    c: &Clients,
    config: &HubConfig,
    facts: &OrgFacts,
    rules: &[RuleDeploy],
    mode: Mode,
    options: &ApplyOptions,
) -> Outcome {
    let home = config.home_region();
    let owner = facts.management_account.as_str();
    let names = central_names(config, facts);
    let observed = match observe::organisation(c, &names, home).await {
        Ok(o) => o,
        Err(e) => return Outcome::failed(owner, home, "organization", e.to_string()),
    };
    let desired: BTreeMap<ResourceKey, Spec> = if mode == Mode::Offboard {
        BTreeMap::new()
    } else {
        desired::central(config, facts)
            .into_iter()
            .chain(desired::control(config, facts, rules))
            .chain(desired::guardrail(config, facts))
            .filter(|(k, _)| k.kind.organisation_level())
            .collect()
    };
    let done = reconcile(c, &desired, observed, mode, options).await;
    outcome_of(owner, home, "organization", mode, done)
}

pub(crate) async fn central(
    c: &Clients,
    config: &HubConfig,
    facts: &OrgFacts,
    rules: &[RuleDeploy],
    region: &str,
    mode: Mode,
    options: &ApplyOptions,
) -> Outcome {
    let account = facts.central_account.as_str();
    let names = central_names(config, facts);
    let observed = match observe::central(c, &names, region, config.home_region()).await {
        Ok(o) => o,
        Err(e) => return Outcome::failed(account, region, "central", e.to_string()),
    };
    let mut desired: BTreeMap<ResourceKey, Spec> = desired::central(config, facts)
        .into_iter()
        .chain(desired::control(config, facts, rules))
        .chain(desired::manifest(config, facts, rules))
        .filter(|(k, _)| k.region == region && !k.kind.organisation_level())
        .collect();
    if mode == Mode::Offboard {
        desired.clear();
        if !options.delete_archive {
            // The archive outlives offboarding unless asked otherwise.
            desired.extend(
                observed
                    .resources
                    .iter()
                    .filter(|(k, _)| k.kind == Kind::Bucket)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
    let done = reconcile(c, &desired, observed, mode, options).await;
    outcome_of(account, region, "central", mode, done)
}

/// The member resources of `account` in `regions`.
pub(crate) async fn member_account(
    ctx: &Ctx,
    account: &str,
    regions: &[String],
    mode: Mode,
) -> Vec<Outcome> {
    let c = match ctx.factory.for_account(account).await {
        Ok(c) => c,
        Err(e) => return vec![Outcome::failed(account, "-", "member", e.to_string())],
    };
    // The regions of one account at once: each has its own rate limiters (account, region,
    // service) and nothing of one region waits on another's (the forwarding role and the
    // member trail are global or home-region only, and only read).
    let mut tasks = tokio::task::JoinSet::new();
    for (i, region) in regions.iter().enumerate() {
        let (ctx, rc, account, region) = (
            ctx.clone(),
            c.in_region(region),
            account.to_string(),
            region.clone(),
        );
        tasks.spawn(async move { (i, member_region(&ctx, &rc, &account, &region, mode).await) });
    }
    let mut outs: Vec<(usize, Outcome)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(o) => outs.push(o),
            Err(e) => outs.push((
                usize::MAX,
                Outcome::failed(
                    account,
                    "-",
                    "member",
                    format!("internal: task failed: {e}"),
                ),
            )),
        }
    }
    outs.sort_by_key(|(i, _)| *i);
    outs.into_iter().map(|(_, o)| o).collect()
}

/// The member resources of `account` in `region` (`rc`: its clients there).
async fn member_region(
    ctx: &Ctx,
    rc: &Clients,
    account: &str,
    region: &str,
    mode: Mode,
) -> Outcome {
    let (config, facts) = (&ctx.config, &ctx.facts);
    let desired = if mode == Mode::Offboard {
        BTreeMap::new()
    } else {
        desired::member(config, facts, &ctx.rules, account, region)
    };
    let declared = if ctx.options.deep {
        observe::DeclaredRules::new()
    } else {
        observe::declared_rules(&desired, "default")
    };
    let observed = match observe::member(rc, account, region, config.home_region(), &declared).await
    {
        Ok(o) => o,
        Err(e) => return Outcome::failed(account, region, "member", e.to_string()),
    };
    let done = reconcile(rc, &desired, observed, mode, &ctx.options).await;
    outcome_of(account, region, "member", mode, done)
}

/// Progress on stderr. On a terminal (and neither `--quiet` nor JSON logs): a bar over
/// accounts with the failure count and the current phase. Otherwise one log line per
/// account and region as it finishes. Results never go here: they are printed on stdout.
pub(crate) struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    /// One log line per outcome when there is no bar.
    lines: bool,
    /// Outcomes expected (account x region), for the log lines.
    total: usize,
    done: AtomicUsize,
    failures: AtomicUsize,
}

impl Reporter {
    /// `accounts` counts the central account once, as its own step.
    fn new(global: &GlobalArgs, accounts: usize, outcomes: usize) -> Reporter {
        let tty = !global.quiet
            && global.log_format == LogFormat::Text
            && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(accounts as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} accounts, {msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        let r = Reporter {
            bar,
            lines: true,
            total: outcomes,
            done: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        };
        r.phase("starting");
        r
    }

    /// No bar and no lines per outcome: for `hub watch`, which logs its own.
    pub(crate) fn silent() -> Reporter {
        Reporter {
            bar: None,
            lines: false,
            total: 0,
            done: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        }
    }

    fn message(&self, phase: &str) -> String {
        format!("{} failed · {phase}", self.failures.load(Ordering::Relaxed))
    }

    /// What the run is doing now.
    fn phase(&self, phase: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.message(phase));
        } else if !phase.is_empty() {
            tracing::debug!("{phase}");
        }
    }

    /// One account and region finished.
    fn outcome(&self, o: &Outcome) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if o.status == "failed" {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if self.bar.is_none() && self.lines {
            tracing::info!(account = %o.account_id, region = %o.region, scope = o.scope, status = o.status, created = o.created, updated = o.updated, deleted = o.deleted, error = o.error.as_deref().unwrap_or(""), "{}/{} done", n, self.total);
        }
    }

    /// One account (every region of it) finished.
    fn account_done(&self, account: &str, phase: &str) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(self.message(&format!("{phase} (last: {account})")));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
