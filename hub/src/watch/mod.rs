//! `hub watch`: the event-driven loop. It consumes the control queue (organisation events
//! from the management account, tamper events from every member), maps each event to the
//! smallest reconcile scope, coalesces bursts, and runs the same desired -> observe -> diff
//! -> apply as `hub enroll --account`. A periodic membership check and a full resync bound
//! what a lost event can cost; a lease lets one replica act at a time.
//!
//! The deciders are in [`decide`] (pure); this module is the shell that carries their
//! decisions out.

pub mod decide;
mod lease;
mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use shared::aws::Clients;
use shared::ops::Reply;

use crate::apply::ApplyOptions;
use crate::cli::{GlobalArgs, WatchArgs};
use crate::commands::reconcile::{self, Ctx, Mode, Outcome, Reporter};
use crate::config::HubConfig;
use crate::desired::{OrgFacts, RuleDeploy};
use crate::diff::Action as ChangeAction;
use crate::discover;
use crate::exit::ExitStatus;
use crate::observe::OpError;
use decide::{Action, Decision, Facts, Work};
use lease::Lease;
use metrics::Metrics;

/// Longest reason kept on a dead-lettered message.
const MAX_REASON_CHARS: usize = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Who is in the organisation, and who of them is enrolled.
struct Scope {
    active: BTreeSet<String>,
    in_scope: BTreeSet<String>,
}

/// One received control message.
#[derive(Clone, Debug)]
struct Message {
    id: String,
    body: String,
    receipt: String,
    receive_count: u32,
}

/// Everything the loop needs.
struct Watch {
    ctx: Ctx,
    home: Clients,
    me: String,
    control: Clients,
    queue_url: String,
    dlq_url: String,
    facts: Facts,
    metrics: Arc<Metrics>,
    args: WatchArgs,
    /// Accounts in scope at the last membership check: the ones that are enrolled.
    known: BTreeSet<String>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &WatchArgs,
    rules: Vec<RuleDeploy>,
    config: HubConfig,
) -> ExitStatus {
    if !config.watch.enabled {
        eprintln!(
            "error: [watch] enabled = false in {}: hub enroll deploys no control queue, so there is nothing to watch",
            global.config.display()
        );
        return ExitStatus::Usage;
    }
    let Some(factory) = crate::commands::factory(global, &config).await else {
        return ExitStatus::Failure;
    };
    let home = factory.home();
    let me = match factory.home_account().await {
        Ok(me) => me,
        Err(e) => {
            eprintln!("error: cannot tell who the hub is: {e}");
            return ExitStatus::Failure;
        }
    };
    let org = match discover::organization(&home, &me).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot read the organisation: {e}");
            return ExitStatus::Failure;
        }
    };
    // As hub enroll: without the root the guardrail SCP would be planned with no target,
    // and a resync would detach it.
    let root_id = match discover::guardrail_root(&home, &org, &config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read the organisation's root: {e}");
            return ExitStatus::Failure;
        }
    };
    let facts = OrgFacts::new(&org, &config, &me, root_id);
    let control = match factory.for_account(&facts.central_account).await {
        Ok(c) => c.in_region(config.home_region()),
        Err(e) => {
            eprintln!("error: cannot reach the central account: {e}");
            return ExitStatus::Failure;
        }
    };
    let queue_url = match queue_url_of(&control, &config.watch.queue).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!(
                "error: control queue {} in {} {}: {e}{}",
                config.watch.queue,
                facts.central_account,
                config.home_region(),
                enroll_first(&e)
            );
            return ExitStatus::Failure;
        }
    };
    let dlq = shared::naming::dead_letter_queue(&config.watch.queue);
    let dlq_url = match queue_url_of(&control, &dlq).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!(
                "error: control dead-letter queue {dlq}: {e}{}",
                enroll_first(&e)
            );
            return ExitStatus::Failure;
        }
    };
    let lease_key = format!(
        "{}:{}",
        shared::naming::PREFIX,
        org.id.clone().unwrap_or_else(|| me.clone())
    );
    let lease = Lease::new(
        control.clone(),
        &config.watch.lease_table,
        &lease_key,
        args.lease_ttl,
    );
    let metrics = Arc::new(Metrics::default());
    let ops_metrics = metrics.clone();
    let handler: shared::ops::Handler = Arc::new(move |path: &str| match path {
        "/healthz" => Reply::text(200, "ok\n"),
        "/metrics" => Reply::metrics(ops_metrics.render()),
        _ => Reply::not_found(),
    });
    let listen: SocketAddr = args.listen;
    match shared::ops::serve(listen, handler).await {
        Ok(addr) => tracing::info!(listen = %addr, "operations endpoint"),
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitStatus::Failure;
        }
    }
    let facts_watch = Facts {
        management_account: facts.management_account.clone(),
        member_role: config.hub.member_role.clone(),
        session_name: factory.options().session_name.clone(),
    };
    let ctx = Ctx {
        factory,
        config: Arc::new(config),
        facts,
        rules: Arc::new(rules),
        options: ApplyOptions::default(),
    };
    let mut watch = Watch {
        ctx,
        home,
        me,
        control,
        queue_url,
        dlq_url,
        facts: facts_watch,
        metrics,
        args: args.clone(),
        known: BTreeSet::new(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shared::ops::wait_for_signal().await;
        tracing::info!("signal received: finishing the current work, then stopping");
        let _ = stop_tx.send(true);
    });
    watch.main_loop(&lease, stop_rx).await;
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not give up the lease; it expires by itself");
    }
    tracing::info!("stopped");
    ExitStatus::Success
}

/// The hint of a control queue that cannot be found, when the failure has none of its own.
fn enroll_first(e: &OpError) -> &'static str {
    if e.hint().is_some() {
        ""
    } else {
        "\n  hint: run hub enroll first: it creates the control queue and its dead-letter queue"
    }
}

async fn queue_url_of(c: &Clients, name: &str) -> Result<String, OpError> {
    let out = c
        .sqs()
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| c.failure("GetQueueUrl", e))?;
    Ok(out.queue_url().unwrap_or_default().to_string())
}

/// Sleeps `d`, or less when asked to stop; true when stopping.
async fn pause(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

impl Watch {
    async fn main_loop(&mut self, lease: &Lease, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut next_resync = if self.args.no_initial_resync {
            Instant::now() + self.args.resync
        } else {
            Instant::now()
        };
        let mut next_membership = Instant::now();
        let mut holding = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let held = match lease.hold(now_ms()).await {
                Ok(h) => h,
                Err(e) => {
                    self.metrics
                        .count("orgwatch_watch_errors_total", &[("operation", "lease")]);
                    tracing::warn!(error = %e, "lease");
                    false
                }
            };
            if holding != Some(held) {
                if held {
                    tracing::info!(holder = %lease.holder, "lease taken: this replica acts");
                } else {
                    tracing::info!(holder = %lease.holder, "lease held by another replica: waiting");
                }
                holding = Some(held);
            }
            self.metrics.lease_held.set(i64::from(held));
            if !held {
                if pause(lease.ttl / 3, &mut stop).await {
                    break;
                }
                continue;
            }
            let keepalive = Keepalive::start(lease, self);
            if Instant::now() >= next_resync {
                self.resync().await;
                next_resync = Instant::now() + self.args.resync;
                next_membership = Instant::now() + self.args.membership;
            } else if Instant::now() >= next_membership {
                self.membership().await;
                next_membership = Instant::now() + self.args.membership;
            }
            keepalive.stop().await;
            if *stop.borrow() {
                break;
            }
            let batch = self.receive_burst(&mut stop).await;
            if !batch.is_empty() {
                let keepalive = Keepalive::start(lease, self);
                keepalive.track(&batch);
                self.process(batch).await;
                keepalive.stop().await;
            }
        }
        self.metrics.lease_held.set(0);
    }

    /// A long poll; once something arrives, more receives until the coalescing window
    /// since the first message has passed (so a burst becomes one batch).
    async fn receive_burst(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Vec<Message> {
        let mut batch = Vec::new();
        let wait = self.args.poll.as_secs().clamp(1, 20) as i32;
        match self.receive(wait).await {
            Ok(m) => batch.extend(m),
            Err(e) => {
                self.metrics.count(
                    "orgwatch_watch_errors_total",
                    &[("operation", "ReceiveMessage")],
                );
                tracing::warn!(error = %e, "receive");
                let _ = pause(Duration::from_secs(2), stop).await;
                return batch;
            }
        }
        if batch.is_empty() {
            return batch;
        }
        let until = Instant::now() + self.args.coalesce;
        while Instant::now() < until && !*stop.borrow() {
            let left = until.saturating_duration_since(Instant::now());
            match self.receive(left.as_secs().min(20) as i32).await {
                // Long polls wait whole seconds: the window's last fraction is slept, then
                // what arrived in it is taken without waiting.
                Ok(m) if m.is_empty() && left < Duration::from_secs(1) => {
                    let _ = pause(left, stop).await;
                    if let Ok(m) = self.receive(0).await {
                        batch.extend(m);
                    }
                    break;
                }
                Ok(m) => batch.extend(m),
                Err(e) => {
                    tracing::warn!(error = %e, "receive");
                    break;
                }
            }
        }
        let mut seen = BTreeSet::new();
        batch.retain(|m| seen.insert(m.id.clone()));
        batch
    }

    async fn receive(&self, wait_secs: i32) -> Result<Vec<Message>, OpError> {
        let out = self
            .control
            .sqs()
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .visibility_timeout(self.args.visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.control.failure("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Some(Message {
                    id: m.message_id.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receipt: m.receipt_handle?,
                    receive_count,
                })
            })
            .collect())
    }

    /// Decides every message, plans the work, carries it out; deletes each message whose
    /// work succeeded, backs off or dead-letters the rest.
    async fn process(&mut self, batch: Vec<Message>) {
        let mut triggers = Vec::new();
        let mut times = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            if let Some(t) = event_time_ms(&m.body) {
                times.insert(i, t);
            }
            match decide::decide(&m.body, &self.facts) {
                Decision::Act(t) => {
                    self.metrics.count(
                        "orgwatch_watch_events_total",
                        &[("decision", "act"), ("trigger", t.kind())],
                    );
                    triggers.push((i, t));
                }
                Decision::Ignore(why) => {
                    self.metrics
                        .count("orgwatch_watch_events_total", &[("decision", "ignore")]);
                    tracing::info!(message_id = %m.id, reason = %why, "event ignored");
                    self.delete(m).await;
                }
                Decision::Refuse(why) => {
                    self.metrics
                        .count("orgwatch_watch_events_total", &[("decision", "refuse")]);
                    tracing::warn!(message_id = %m.id, reason = %why, "event refused");
                    self.dead_letter(m, &format!("refused: {why}")).await;
                }
            }
        }
        let work = decide::plan(&triggers);
        if work.is_empty() {
            return;
        }
        let scope = match self.scope().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the organisation's accounts; retrying later");
                for (i, _) in &triggers {
                    self.back_off(&batch[*i], &format!("ListAccounts: {e}"))
                        .await;
                }
                return;
            }
        };
        for w in work {
            let started = Instant::now();
            let failure = self.carry_out(&w, &scope).await;
            let oldest = w
                .messages
                .iter()
                .filter_map(|i| times.get(i))
                .min()
                .copied();
            let latency_ms = oldest.map(|t| now_ms().saturating_sub(t));
            match &failure {
                None => {
                    if let Some(ms) = latency_ms {
                        self.metrics.latency(ms);
                    }
                    tracing::info!(
                        account = %w.account,
                        action = action_name(&w.action),
                        events = w.messages.len(),
                        took_ms = started.elapsed().as_millis() as u64,
                        latency_ms = latency_ms.unwrap_or_default(),
                        "converged"
                    );
                    for i in &w.messages {
                        self.delete(&batch[*i]).await;
                    }
                }
                Some(why) => {
                    tracing::warn!(account = %w.account, action = action_name(&w.action), error = %why, "reconcile failed; its events come back");
                    for i in &w.messages {
                        self.back_off(&batch[*i], why).await;
                    }
                }
            }
        }
    }

    /// The accounts `hub enroll` would enroll now.
    async fn in_scope(&self) -> Result<BTreeSet<String>, OpError> {
        Ok(self.scope().await?.in_scope)
    }

    /// The organisation's ACTIVE accounts and, of those, the ones in scope: one
    /// `ListAccounts` for both.
    async fn scope(&self) -> Result<Scope, OpError> {
        let org = discover::organization(&self.home, &self.me).await?;
        let (accounts, _) = discover::accounts(&self.home, &org, &self.ctx.config, &[]).await?;
        Ok(Scope {
            active: org.active_accounts.into_iter().collect(),
            in_scope: accounts.into_iter().collect(),
        })
    }

    /// Carries one work item out; `Some(reason)` when it must be retried.
    async fn carry_out(&mut self, w: &Work, scope: &Scope) -> Option<String> {
        let in_scope = &scope.in_scope;
        let config = self.ctx.config.clone();
        let account = w.account.as_str();
        let mut calls: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (principal, call) in &w.calls {
            *calls.entry((principal, call)).or_default() += 1;
        }
        for ((principal, call), times) in calls {
            tracing::info!(account, principal, call, times, "tampering reported");
        }
        match &w.action {
            Action::Enroll if in_scope.contains(account) => {
                let outs = reconcile::member_account(
                    &self.ctx,
                    account,
                    &config.hub.regions,
                    Mode::Enroll,
                )
                .await;
                self.known.insert(account.to_string());
                self.record("enroll", &outs)
            }
            Action::Enroll => {
                // Joined but out of scope (excluded, or moved out of the included OUs), or
                // not yet ACTIVE: an enrolled account is removed; a new one is retried until
                // the organisation lists it.
                if self.known.remove(account) {
                    self.offboard(account).await
                } else {
                    if scope.active.contains(account) {
                        tracing::info!(
                            account,
                            "not in scope (accounts / exclude_accounts / include_ous): not enrolled"
                        );
                        None
                    } else {
                        Some(format!(
                            "account {account} is not an ACTIVE account of the organisation yet"
                        ))
                    }
                }
            }
            Action::Reconcile(regions) => {
                if !in_scope.contains(account) {
                    tracing::info!(
                        account,
                        "not enrolled (not in scope, or left): nothing to repair"
                    );
                    return None;
                }
                let regions: Vec<String> = match regions {
                    None => config.hub.regions.clone(),
                    Some(set) => config
                        .hub
                        .regions
                        .iter()
                        .filter(|r| set.contains(*r))
                        .cloned()
                        .collect(),
                };
                if regions.is_empty() {
                    tracing::info!(
                        account,
                        "the calls were in regions orgwatch does not monitor"
                    );
                    return None;
                }
                // A change of a rule's targets is repaired reading every target.
                let deep = w.changed_targets().then(|| {
                    let mut c = self.ctx.clone();
                    c.options.deep = true;
                    c
                });
                let ctx = deep.as_ref().unwrap_or(&self.ctx);
                let mut outs =
                    reconcile::member_account(ctx, account, &regions, Mode::Enroll).await;
                if account == self.ctx.facts.central_account {
                    outs.extend(
                        reconcile::central_everywhere(&self.ctx, Mode::Enroll, &Reporter::silent())
                            .await,
                    );
                }
                self.record("reconcile", &outs)
            }
            Action::Offboard => {
                if in_scope.contains(account) {
                    tracing::info!(
                        account,
                        "still a member in scope (the call failed?): not offboarded"
                    );
                    return None;
                }
                self.known.remove(account);
                self.offboard(account).await
            }
        }
    }

    /// Removes what orgwatch made in an account that left; when its role no longer
    /// answers, says so (nothing to retry: the account is no longer the organisation's).
    async fn offboard(&self, account: &str) -> Option<String> {
        let outs = reconcile::member_account(
            &self.ctx,
            account,
            &self.ctx.config.hub.regions,
            Mode::Offboard,
        )
        .await;
        if let Some(e) = outs.iter().find_map(|o| o.error.as_deref()) {
            tracing::error!(account, error = %e, "the account left the organisation but orgwatch could not remove its resources; remove them with `hub offboard --account {account}` using credentials in that account");
            self.metrics.count(
                "orgwatch_watch_reconciles_total",
                &[("action", "offboard"), ("result", "unreachable")],
            );
            return None;
        }
        self.record("offboard", &outs)
    }

    /// Logs what was changed and counts the reconcile; `Some(error)` on failure.
    fn record(&self, action: &'static str, outs: &[Outcome]) -> Option<String> {
        let mut failure = None;
        for o in outs {
            for c in &o.changes {
                let what = match c.action {
                    ChangeAction::Create => "created",
                    ChangeAction::Update { .. } => "updated",
                    ChangeAction::Delete => "deleted",
                    ChangeAction::Adopt => "adopted",
                };
                if o.status != "failed" {
                    self.metrics.count("orgwatch_watch_repaired_total", &[]);
                    tracing::info!(account = %c.key.account, region = %c.key.region, kind = %c.key.kind, name = %c.key.name, change = what, trigger = action, "repaired");
                }
            }
            if let Some(e) = &o.error {
                failure.get_or_insert_with(|| {
                    format!("{} {} {}: {e}", o.scope, o.account_id, o.region)
                });
            }
        }
        self.metrics.count(
            "orgwatch_watch_reconciles_total",
            &[
                ("action", action),
                ("result", if failure.is_none() { "ok" } else { "failed" }),
            ],
        );
        failure
    }

    /// The safety net: every account and the central resources, as `hub enroll`.
    async fn resync(&mut self) {
        let started = Instant::now();
        tracing::info!("resync: every account and the central resources");
        let accounts = match self.in_scope().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "resync: cannot list the accounts");
                self.metrics.count(
                    "orgwatch_watch_reconciles_total",
                    &[("action", "resync"), ("result", "failed")],
                );
                return;
            }
        };
        // Accounts that left while nobody watched.
        for gone in self
            .known
            .difference(&accounts)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = self.offboard(&gone).await;
        }
        let outs = reconcile::everything(
            &self.ctx,
            Mode::Enroll,
            Mode::Enroll,
            accounts.iter().cloned().collect(),
            self.ctx.config.hub.concurrency,
            &Reporter::silent(),
        )
        .await;
        self.known = accounts;
        let failure = self.record("resync", &outs);
        tracing::info!(
            accounts = self.known.len(),
            took_ms = started.elapsed().as_millis() as u64,
            failed = failure.as_deref().unwrap_or(""),
            "resync done"
        );
    }

    /// The cheap check between resyncs: who joined or left without an event reaching us.
    async fn membership(&mut self) {
        let now = match self.in_scope().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "membership check: cannot list the accounts");
                return;
            }
        };
        for joined in now.difference(&self.known).cloned().collect::<Vec<_>>() {
            tracing::info!(account = %joined, "membership check: a new account in scope");
            let outs = reconcile::member_account(
                &self.ctx,
                &joined,
                &self.ctx.config.hub.regions,
                Mode::Enroll,
            )
            .await;
            if self.record("enroll", &outs).is_none() {
                self.known.insert(joined);
            }
        }
        for gone in self.known.difference(&now).cloned().collect::<Vec<_>>() {
            tracing::info!(account = %gone, "membership check: the account left the scope");
            let _ = self.offboard(&gone).await;
            self.known.remove(&gone);
        }
    }

    async fn delete(&self, m: &Message) {
        let r = self
            .control
            .sqs()
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&m.receipt)
            .send()
            .await;
        if let Err(e) = r {
            self.metrics.count(
                "orgwatch_watch_errors_total",
                &[("operation", "DeleteMessage")],
            );
            tracing::warn!(message_id = %m.id, error = %OpError::new("DeleteMessage", e), "delete failed: the event comes back and is reconciled again");
        }
    }

    /// Retry later: a visibility timeout that doubles with each receive (5 s, 10 s, ...
    /// up to 5 minutes); after `[watch] max_receive_count` receives, the dead-letter queue
    /// with the reason.
    async fn back_off(&self, m: &Message, why: &str) {
        if m.receive_count >= self.ctx.config.watch.max_receive_count {
            self.dead_letter(
                m,
                &format!("gave up after {} receives: {why}", m.receive_count),
            )
            .await;
            return;
        }
        let secs = (5u64 << m.receive_count.min(6)).min(300) as i32;
        let r = self
            .control
            .sqs()
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&m.receipt)
            .visibility_timeout(secs)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(message_id = %m.id, error = %OpError::new("ChangeMessageVisibility", e), "back-off not set: the event comes back after the visibility timeout");
        }
    }

    /// Sends `m` to the dead-letter queue with the reason, then deletes it. When the send
    /// fails the message stays, and the queue's redrive policy moves it one receive later.
    async fn dead_letter(&self, m: &Message, reason: &str) {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        tracing::error!(message_id = %m.id, reason = %reason, "control event dead-lettered");
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
        };
        let (Ok(reason_attr), Ok(id_attr)) = (attr(&reason), attr(&m.id)) else {
            return;
        };
        let sent = self
            .control
            .sqs()
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(&m.body)
            .message_attributes("orgwatch.reason", reason_attr)
            .message_attributes("orgwatch.message_id", id_attr)
            .send()
            .await;
        match sent {
            Ok(_) => {
                self.metrics
                    .count("orgwatch_watch_dead_lettered_total", &[]);
                self.delete(m).await;
            }
            Err(e) => {
                tracing::warn!(message_id = %m.id, error = %OpError::new("SendMessage", e), "dead-letter failed: the redrive policy moves it later");
            }
        }
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Enroll => "enroll",
        Action::Reconcile(_) => "reconcile",
        Action::Offboard => "offboard",
    }
}

/// The envelope's `time` (RFC 3339, UTC, seconds) in epoch milliseconds.
fn event_time_ms(body: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    shared::time::parse_timestamp(v.get("time")?.as_str()?).and_then(|t| u64::try_from(t).ok())
}

/// While work runs: renews the lease every third of its lifetime and extends the
/// visibility of the messages being worked on, so that a long reconcile neither loses
/// the lease nor sees its events redelivered; stopped when the work ends.
struct Keepalive {
    stop: tokio::sync::watch::Sender<bool>,
    tracked: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Keepalive {
    fn start(lease: &Lease, watch: &Watch) -> Keepalive {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let tracked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (clients, queue_url) = (watch.control.clone(), watch.queue_url.clone());
        let visibility = watch.args.visibility;
        let every = (lease.ttl / 3)
            .min(visibility / 2)
            .max(Duration::from_secs(1));
        let renew = lease.clone();
        let list = tracked.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return,
                }
                if let Err(e) = renew.hold(now_ms()).await {
                    tracing::warn!(error = %e, "lease renewal failed");
                }
                let receipts = list.lock().map(|l| l.clone()).unwrap_or_default();
                for r in receipts {
                    let _ = clients
                        .sqs()
                        .change_message_visibility()
                        .queue_url(&queue_url)
                        .receipt_handle(r)
                        .visibility_timeout(visibility.as_secs() as i32)
                        .send()
                        .await;
                }
            }
        });
        Keepalive {
            stop,
            tracked,
            task,
        }
    }

    fn track(&self, batch: &[Message]) {
        if let Ok(mut l) = self.tracked.lock() {
            l.extend(batch.iter().map(|m| m.receipt.clone()));
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
