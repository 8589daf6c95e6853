//! Reads the orgwatch-named resources of one account and region, under the same keys
//! `desired` uses. Every list call is paginated; nothing that orgwatch does not name is read.

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::Target;
use shared::aws::Clients;
use shared::naming::{self, arn};

use crate::model::*;

/// A failed AWS call: the operation, AWS's error code and message, and a hint
/// ([`shared::aws::errors`], the one place SDK errors become text).
pub use shared::aws::AwsFailure as OpError;

/// Turns "not found" errors into `None`.
fn optional<T>(r: Result<T, OpError>, not_found: &[&str]) -> Result<Option<T>, OpError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is(not_found) => Ok(None),
        Err(e) => Err(e),
    }
}

macro_rules! call {
    ($op:literal, $fut:expr) => {
        $fut.await.map_err(|e| OpError::new($op, e))
    };
}

pub type State = BTreeMap<ResourceKey, Spec>;

/// What one account and region hold under orgwatch's names.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub resources: State,
    /// Resources (among `resources`) that carry an orgwatch name but not the
    /// `orgwatch:managed=true` tag, with why: orgwatch did not create them, so it must not
    /// change or delete them unless told to adopt them.
    pub unmanaged: BTreeMap<ResourceKey, String>,
    /// Resources (among `resources`) whose ownership is not known yet: how to find out.
    pub probes: BTreeMap<ResourceKey, TagProbe>,
}

impl Observed {
    fn insert(&mut self, key: ResourceKey, spec: Spec, managed: bool) {
        if !managed {
            self.unmanaged.insert(key.clone(), missing_tag());
        }
        self.resources.insert(key, spec);
    }

    /// A resource whose tags are read only when they matter (see [`TagProbe`]).
    fn probed(&mut self, key: ResourceKey, spec: Spec, probe: TagProbe) {
        self.probes.insert(key.clone(), probe);
        self.resources.insert(key, spec);
    }
}

/// How to read the managed tag of a resource whose listing carries no tags, when it
/// matters: before the plan updates or deletes it, and (when [`TagProbe::audited`]) for
/// `hub status`, which reports an orgwatch-named resource without the tag even when it is
/// as declared. Reading them for every unchanged resource would be one call per resource
/// on every re-run and every `hub watch` repair (EventBridge's ListTagsForResource, SQS's
/// ListQueueTags, CloudWatch's ListTagsForResource at 3 TPS), for resources nothing writes.
#[derive(Clone, Debug)]
pub enum TagProbe {
    /// CloudWatch alarms: checked only before a change, in every mode.
    Alarm,
    /// An EventBridge rule or bus, by ARN.
    EventBridge(String),
    /// An SQS queue, by URL.
    Queue(String),
    /// A CloudTrail trail, by ARN.
    Trail(String),
    /// The CloudWatch Logs log group, by ARN. Its metric filters have no tags of their own
    /// and are orgwatch's exactly when it is ([`TagProbe::children`]).
    LogGroup(String),
}

impl TagProbe {
    /// The kind whose resources (in the probed one's account and region) have no tags of
    /// their own and are orgwatch's exactly when it is, and why one is not when it is not:
    /// the probe is read when any of them would change too.
    pub fn children(&self) -> Option<(Kind, String)> {
        match self {
            TagProbe::LogGroup(_) => Some((
                Kind::MetricFilter,
                format!(
                    "it is a filter of log group {}, which is not orgwatch's (metric filters have no tags of their own)",
                    naming::LOG_GROUP
                ),
            )),
            _ => None,
        }
    }

    /// Whether `hub status` reads it for resources the plan leaves alone too.
    pub fn audited(&self) -> bool {
        !matches!(self, TagProbe::Alarm)
    }
}

/// Whether the resource carries the managed tag. `c` is the resource's account; the call
/// goes to the key's region.
pub async fn owned(c: &Clients, key: &ResourceKey, probe: &TagProbe) -> Result<bool, OpError> {
    let c = c.in_region(&key.region);
    match probe {
        TagProbe::Alarm => {
            let arn = arn::alarm(&key.region, &key.account, &key.name);
            let out = call!(
                "ListTagsForResource",
                c.cloudwatch()
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
            )?;
            Ok(managed(
                out.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value()?))),
            ))
        }
        TagProbe::EventBridge(arn) => {
            let tags = call!(
                "ListTagsForResource",
                c.eventbridge()
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
            )?;
            Ok(managed(tags.tags().iter().map(|t| (t.key(), t.value()))))
        }
        TagProbe::Queue(url) => {
            let tags = call!(
                "ListQueueTags",
                c.sqs().list_queue_tags().queue_url(url).send()
            )?;
            Ok(managed_map(tags.tags()))
        }
        TagProbe::LogGroup(arn) => {
            let tags = call!(
                "ListTagsForResource",
                c.logs().list_tags_for_resource().resource_arn(arn).send()
            )?;
            Ok(managed_map(tags.tags()))
        }
        TagProbe::Trail(arn) => {
            let tags = call!(
                "ListTags",
                c.cloudtrail().list_tags().resource_id_list(arn).send()
            )?;
            Ok(managed(
                tags.resource_tag_list()
                    .iter()
                    .flat_map(|r| r.tags_list())
                    .filter_map(|t| Some((t.key(), t.value()?))),
            ))
        }
    }
}

/// Why a resource without the managed tag is not orgwatch's.
pub fn missing_tag() -> String {
    format!(
        "it has an orgwatch name but not the {}={} tag",
        naming::MANAGED_TAG,
        naming::MANAGED_TAG_VALUE
    )
}

/// True when the (key, value) pairs include the managed tag.
fn managed<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    naming::is_managed(tags.into_iter())
}

/// [`managed`] for the APIs that answer tags as a map (CloudWatch Logs, SQS).
fn managed_map(tags: Option<&std::collections::HashMap<String, String>>) -> bool {
    managed(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// The member resources of `account` in `region` (`home` decides where the global IAM role
/// and the account trail are looked for; `declared`, the declared rules of the default bus,
/// which rules' targets may be taken from one listing, see [`event_rules`]).
pub async fn member(
    c: &Clients,
    account: &str,
    region: &str,
    home: &str,
    declared: &DeclaredRules<'_>,
) -> Result<Observed, OpError> {
    let mut out = Observed::default();
    let logs = c.logs();
    let groups = call!(
        "DescribeLogGroups",
        logs.describe_log_groups()
            .log_group_name_prefix(naming::LOG_GROUP)
            .send()
    )?;
    let group = groups
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(naming::LOG_GROUP));
    if let Some(g) = group {
        // Its tags (and so whether its filters are orgwatch's) are read when it or any of
        // its filters would change, and for `hub status` (TagProbe::LogGroup).
        out.probed(
            ResourceKey::new(account, region, Kind::LogGroup, naming::LOG_GROUP),
            Spec::LogGroup(LogGroupSpec {
                retention_days: g.retention_in_days().unwrap_or(0),
            }),
            TagProbe::LogGroup(arn::log_group(region, account, naming::LOG_GROUP)),
        );
        let mut pages = logs
            .describe_metric_filters()
            .log_group_name(naming::LOG_GROUP)
            .filter_name_prefix(naming::RULE_RESOURCE_PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| OpError::new("DescribeMetricFilters", e))?;
            for f in page.metric_filters() {
                let Some(name) = f.filter_name() else {
                    continue;
                };
                let t = f.metric_transformations().first();
                // Metric filters have no tags: they belong to their log group, and are
                // orgwatch's exactly when the group is (TagProbe::LogGroup).
                let key = ResourceKey::new(account, region, Kind::MetricFilter, name);
                out.resources.insert(
                    key,
                    Spec::MetricFilter(MetricFilterSpec {
                        log_group: f.log_group_name().unwrap_or_default().to_string(),
                        pattern: f.filter_pattern().unwrap_or_default().to_string(),
                        metric_name: t.map(|t| t.metric_name().to_string()).unwrap_or_default(),
                        namespace: t
                            .map(|t| t.metric_namespace().to_string())
                            .unwrap_or_default(),
                        value: t.map(|t| t.metric_value().to_string()).unwrap_or_default(),
                    }),
                );
            }
        }
    }
    // The rules' alarms; the central account's operations alarms (same prefix, longer) are
    // the central reconcile's.
    for (name, spec) in alarms(c, naming::RULE_RESOURCE_PREFIX).await? {
        if name.starts_with(naming::OPS_ALARM_PREFIX) {
            continue;
        }
        // Tags are read later, only for alarms the plan would change (see TagProbe).
        out.probed(
            ResourceKey::new(account, region, Kind::Alarm, name),
            spec,
            TagProbe::Alarm,
        );
    }

    let is_ours = |name: &str| {
        name == naming::EVENTS_TO_LOGS_RULE || name.starts_with(&naming::forward_rule_name(""))
    };
    for (name, spec, probe) in event_rules(c, "default", is_ours, declared).await? {
        let kind = if name == naming::EVENTS_TO_LOGS_RULE {
            Kind::EventsRule
        } else {
            Kind::ForwardRule
        };
        out.probed(
            ResourceKey::new(account, region, kind, name),
            Spec::EventRule(spec),
            probe,
        );
    }

    // The log resource policy lets the events-to-logs rule write to the log group: it is
    // read where that rule is declared (EventBridge delivery), where it is found (left from
    // EventBridge delivery, removed with it), and when everything is read (offboard,
    // `--deep`). A policy left without its rule in trail delivery is found by those.
    let events_to_logs = naming::EVENTS_TO_LOGS_RULE;
    let policy_matters = declared.is_empty()
        || declared.contains_key(events_to_logs)
        || out.resources.contains_key(&ResourceKey::new(
            account,
            region,
            Kind::EventsRule,
            events_to_logs,
        ));
    if policy_matters {
        let policies = call!(
            "DescribeResourcePolicies",
            logs.describe_resource_policies().send()
        )?;
        if let Some(p) = policies
            .resource_policies()
            .iter()
            .find(|p| p.policy_name() == Some(naming::LOG_RESOURCE_POLICY))
        {
            // Log resource policies have no tags; the name is orgwatch's alone.
            out.resources.insert(
                ResourceKey::new(
                    account,
                    region,
                    Kind::LogPolicy,
                    naming::LOG_RESOURCE_POLICY,
                ),
                Spec::Policy(PolicySpec {
                    policy: canonical_json(p.policy_document().unwrap_or_default()),
                }),
            );
        }
    }

    if region == home {
        // The service roles come from the member stack (Kind::provided): read, never written.
        for (kind, name) in [
            (Kind::TrailRole, naming::TRAIL_LOGS_ROLE),
            (Kind::ForwardRole, naming::FORWARD_ROLE),
        ] {
            // Ownership (the managed tag) does not matter for what the hub never writes.
            if let Some(role) = role(c, name).await? {
                out.resources.insert(
                    ResourceKey::new(account, region, kind, name),
                    Spec::Role(role),
                );
            }
        }
        if let Some((t, probe)) = trail(c, naming::MEMBER_TRAIL).await? {
            out.probed(
                ResourceKey::new(account, region, Kind::MemberTrail, naming::MEMBER_TRAIL),
                Spec::Trail(t),
                probe,
            );
        }
    }
    Ok(out)
}

/// The declared rules of a bus, by name: what [`event_rules`] may take a rule's target to
/// be when `ListRuleNamesByTarget` lists the rule under the declared target's ARN. Empty:
/// every rule's targets are read (`hub status --deep`, offboard, hub watch after someone
/// changed a rule's targets).
pub type DeclaredRules<'a> = BTreeMap<&'a str, &'a EventRuleSpec>;

/// The rules of `declared` on `bus` (the desired state of one account and region).
pub fn declared_rules<'a>(
    desired: &'a BTreeMap<ResourceKey, Spec>,
    bus: &str,
) -> DeclaredRules<'a> {
    desired
        .iter()
        .filter_map(|(k, s)| match s {
            Spec::EventRule(r) if r.bus == bus => Some((k.name.as_str(), r)),
            _ => None,
        })
        .collect()
}

/// orgwatch's rules on a bus (those `wanted` names), each with its first target and how
/// to read its tags.
///
/// Targets: where two or more listed rules are declared with the same target ARN (the
/// forwarding rules of a member region all target the central bus), one
/// `ListRuleNamesByTarget` per such ARN answers for all of them instead of one
/// `ListTargetsByRule` per rule (EventBridge API reference, ListRuleNamesByTarget: "Lists
/// the rules for the specified target", 100 names a page). A rule it lists is taken to
/// have its declared target (id and role too, which that call does not answer: a role
/// swapped on a target is found by `hub status --deep`, is alerted by the tamper pack's
/// PutTargets rule, makes hub watch read every target of that account, and the guardrail
/// SCP denies PutTargets on orgwatch's rules to everyone but the hub); a rule it does not
/// list (target removed or pointed elsewhere, or the call does not index that ARN) has its
/// targets read with `ListTargetsByRule`, as every rule is when `declared` is empty. So a
/// wrong answer of the listing costs a read, never a missed change of the target's ARN.
async fn event_rules(
    c: &Clients,
    bus: &str,
    wanted: impl Fn(&str) -> bool,
    declared: &DeclaredRules<'_>,
) -> Result<Vec<(String, EventRuleSpec, TagProbe)>, OpError> {
    let eb = c.eventbridge();
    // (name, ARN, the rule without its targets) of orgwatch's rules on the bus.
    let mut listed: Vec<(String, String, EventRuleSpec)> = Vec::new();
    let mut token = None;
    loop {
        let page = call!(
            "ListRules",
            eb.list_rules()
                .event_bus_name(bus)
                .name_prefix(naming::PREFIX)
                .set_next_token(token.take())
                .send()
        )?;
        for r in page.rules() {
            let Some(name) = r.name().filter(|n| wanted(n)) else {
                continue;
            };
            // ListRules returns no tags: they are read when they matter (TagProbe).
            let rule_arn = r.arn().map(str::to_string).unwrap_or_else(|| {
                arn::rule(&c.region(), c.account().unwrap_or_default(), bus, name)
            });
            listed.push((
                name.to_string(),
                rule_arn,
                EventRuleSpec {
                    bus: bus.to_string(),
                    pattern: canonical_json(r.event_pattern().unwrap_or_default()),
                    state: r
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    target_id: String::new(),
                    target_arn: String::new(),
                    target_role_arn: None,
                    target_input: String::new(),
                    target_delivery: String::new(),
                    other_targets: Vec::new(),
                },
            ));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }

    let names: Vec<&str> = listed.iter().map(|(n, ..)| n.as_str()).collect();
    let mut by_target: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for target_arn in shared_targets(declared, &names) {
        let mut found = std::collections::BTreeSet::new();
        let mut token = None;
        loop {
            let page = call!(
                "ListRuleNamesByTarget",
                eb.list_rule_names_by_target()
                    .target_arn(&target_arn)
                    .event_bus_name(bus)
                    .set_next_token(token.take())
                    .send()
            )?;
            found.extend(page.rule_names().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        by_target.insert(target_arn, found);
    }

    let mut out = Vec::new();
    for (name, rule_arn, rule) in listed {
        let as_declared = declared.get(name.as_str()).filter(|d| {
            by_target
                .get(&d.target_arn)
                .is_some_and(|names| names.contains(&name))
        });
        let spec = match as_declared {
            // Its pattern and state as listed, its targets as declared.
            Some(d) => EventRuleSpec {
                pattern: rule.pattern,
                state: rule.state,
                ..(*d).clone()
            },
            None => {
                // One page: a rule has at most five targets (EventBridge API reference,
                // PutTargets).
                let targets = call!(
                    "ListTargetsByRule",
                    eb.list_targets_by_rule()
                        .rule(&name)
                        .event_bus_name(bus)
                        .send()
                )?;
                with_targets(rule, targets.targets())
            }
        };
        out.push((name, spec, TagProbe::EventBridge(rule_arn)));
    }
    Ok(out)
}

/// What a target is given instead of the event, as one text ([`EventRuleSpec::target_input`]).
fn target_input(t: &Target) -> String {
    if let Some(input) = t.input() {
        return format!("Input {}", canonical_json(input));
    }
    if let Some(path) = t.input_path() {
        return format!("InputPath {path}");
    }
    match t.input_transformer() {
        Some(x) => {
            let paths: BTreeMap<&String, &String> =
                x.input_paths_map().into_iter().flatten().collect();
            format!(
                "InputTransformer {} {}",
                serde_json::json!(paths),
                x.input_template()
            )
        }
        None => String::new(),
    }
}

/// A target's own retry policy and dead-letter queue, as one text
/// ([`EventRuleSpec::target_delivery`]).
fn target_delivery(t: &Target) -> String {
    let mut parts = Vec::new();
    if let Some(r) = t.retry_policy() {
        parts.push(format!(
            "RetryPolicy attempts={} age={}",
            r.maximum_retry_attempts()
                .map_or("default".to_string(), |n| n.to_string()),
            r.maximum_event_age_in_seconds()
                .map_or("default".to_string(), |n| format!("{n}s")),
        ));
    }
    if let Some(arn) = t.dead_letter_config().and_then(|d| d.arn()) {
        parts.push(format!("DeadLetterConfig {arn}"));
    }
    parts.join("; ")
}

/// `rule` with the targets ListTargetsByRule answered: orgwatch's one, and the others.
fn with_targets(rule: EventRuleSpec, targets: &[Target]) -> EventRuleSpec {
    let (ours, other_targets) = split_targets(targets);
    match ours {
        Some(t) => EventRuleSpec {
            target_id: t.id().to_string(),
            target_arn: t.arn().to_string(),
            target_role_arn: t.role_arn().map(str::to_string),
            target_input: target_input(t),
            target_delivery: target_delivery(t),
            other_targets,
            ..rule
        },
        None => EventRuleSpec {
            other_targets,
            ..rule
        },
    }
}

/// Which of a rule's targets is orgwatch's: the first whose id is one of orgwatch's
/// (`naming::PREFIX`), else the first; and the others, sorted.
fn split_targets(targets: &[Target]) -> (Option<&Target>, Vec<OtherTarget>) {
    let ours = targets
        .iter()
        .position(|t| t.id().starts_with(naming::PREFIX))
        .or((!targets.is_empty()).then_some(0));
    let mut others: Vec<OtherTarget> = targets
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != ours)
        .map(|(_, t)| OtherTarget {
            id: t.id().to_string(),
            arn: t.arn().to_string(),
        })
        .collect();
    others.sort();
    (ours.and_then(|i| targets.get(i)), others)
}

/// The target ARNs that two or more of the `listed` rules are declared with: those a
/// `ListRuleNamesByTarget` is cheaper for than one `ListTargetsByRule` per rule.
fn shared_targets(declared: &DeclaredRules<'_>, listed: &[&str]) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for name in listed {
        if let Some(d) = declared.get(name) {
            *count.entry(d.target_arn.as_str()).or_default() += 1;
        }
    }
    count
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(arn, _)| arn.to_string())
        .collect()
}

/// A role and its inline policy of the same name (the member stack names both alike).
async fn role(c: &Clients, name: &str) -> Result<Option<RoleSpec>, OpError> {
    let iam = c.iam();
    let Some(r) = optional(
        call!("GetRole", iam.get_role().role_name(name).send()),
        &["NoSuchEntity"],
    )?
    else {
        return Ok(None);
    };
    let trust = r
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .map(decode_policy)
        .unwrap_or_default();
    let policy = optional(
        call!(
            "GetRolePolicy",
            iam.get_role_policy()
                .role_name(name)
                .policy_name(name)
                .send()
        ),
        &["NoSuchEntity"],
    )?
    .map(|p| decode_policy(p.policy_document()))
    .unwrap_or_default();
    Ok(Some(RoleSpec { trust, policy }))
}

/// IAM returns policy documents URL-encoded.
fn decode_policy(doc: &str) -> String {
    let decoded = percent_decode(doc);
    canonical_json(&decoded)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A trail, its logging status, and how to read its tags.
async fn trail(c: &Clients, name: &str) -> Result<Option<(TrailSpec, TagProbe)>, OpError> {
    let ct = c.cloudtrail();
    let Some(t) = optional(
        call!("GetTrail", ct.get_trail().name(name).send()),
        &["TrailNotFoundException"],
    )?
    else {
        return Ok(None);
    };
    let Some(t) = t.trail() else { return Ok(None) };
    let status = call!("GetTrailStatus", ct.get_trail_status().name(name).send())?;
    let probe = TagProbe::Trail(t.trail_arn().unwrap_or(name).to_string());
    let spec = TrailSpec {
        bucket: t.s3_bucket_name().unwrap_or_default().to_string(),
        multi_region: t.is_multi_region_trail().unwrap_or(false),
        global_service_events: t.include_global_service_events().unwrap_or(false),
        log_file_validation: t.log_file_validation_enabled().unwrap_or(false),
        organization: t.is_organization_trail().unwrap_or(false),
        logging: status.is_logging().unwrap_or(false),
        log_group_arn: t.cloud_watch_logs_log_group_arn().map(str::to_string),
        logs_role_arn: t.cloud_watch_logs_role_arn().map(str::to_string),
        kms_key_id: t.kms_key_id().map(str::to_string),
    };
    Ok(Some((spec, probe)))
}

/// The organisation-level resources, read with the hub's own credentials (`c`) in the home
/// region: CloudTrail trusted access (an organisation setting, managed from the management
/// account) and the organisation trail, which only the management account or a CloudTrail
/// delegated administrator can manage and which belongs to the management account
/// whoever created it (CloudTrail user guide, "Organization delegated administrator").
pub async fn organisation(
    c: &Clients,
    names: &CentralNames,
    home: &str,
) -> Result<Observed, OpError> {
    let mut out = Observed::default();
    let owner = names.management_account.as_str();
    if names.in_organization {
        let orgs = c.organizations();
        let mut pages = orgs
            .list_aws_service_access_for_organization()
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| OpError::new("ListAWSServiceAccessForOrganization", e))?;
            for p in page.enabled_service_principals() {
                if p.service_principal() == Some(crate::desired::CLOUDTRAIL_SERVICE_PRINCIPAL) {
                    out.resources.insert(
                        ResourceKey::new(
                            owner,
                            home,
                            Kind::TrustedAccess,
                            crate::desired::CLOUDTRAIL_SERVICE_PRINCIPAL,
                        ),
                        Spec::ServiceAccess(ServiceAccessSpec {
                            service_principal: crate::desired::CLOUDTRAIL_SERVICE_PRINCIPAL.into(),
                        }),
                    );
                }
            }
        }
    }
    if let Some((t, probe)) = trail(c, &names.trail).await? {
        out.probed(
            ResourceKey::new(owner, home, Kind::OrgTrail, names.trail.clone()),
            Spec::Trail(t),
            probe,
        );
    }
    // The guardrail SCP, whether or not [guardrail] scp is set (unset: it is removed).
    if names.in_organization
        && names.hub_is_management
        && let Some(id) = scp_id(c).await?
    {
        let orgs = c.organizations();
        let described = call!(
            "DescribePolicy",
            orgs.describe_policy().policy_id(&id).send()
        )?;
        let content = described
            .policy()
            .and_then(|p| p.content())
            .map(canonical_json)
            .unwrap_or_default();
        let mut targets = Vec::new();
        let mut pages = orgs
            .list_targets_for_policy()
            .policy_id(&id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| OpError::new("ListTargetsForPolicy", e))?;
            targets.extend(
                page.targets()
                    .iter()
                    .filter_map(|t| t.target_id())
                    .map(str::to_string),
            );
        }
        targets.sort();
        let tags = call!(
            "ListTagsForResource",
            orgs.list_tags_for_resource().resource_id(&id).send()
        )?;
        out.insert(
            ResourceKey::new(owner, home, Kind::Scp, shared::guardrail::SCP_NAME),
            Spec::Scp(ScpSpec { content, targets }),
            managed(tags.tags().iter().map(|t| (t.key(), t.value()))),
        );
    }
    // The organisation-events rule of hub watch, on the management account's default bus
    // where Organizations delivers (only the management account's hub manages it).
    if names.in_organization && names.hub_is_management {
        let region = crate::desired::organizations_events_region(naming::partition(home));
        let wanted = |name: &str| name == naming::ORGANIZATION_EVENTS_RULE;
        let everything = DeclaredRules::new();
        for (name, spec, probe) in
            event_rules(&c.in_region(region), "default", wanted, &everything).await?
        {
            out.probed(
                ResourceKey::new(owner, region, Kind::OrgEventsRule, name),
                Spec::EventRule(spec),
                probe,
            );
        }
    }
    Ok(out)
}

/// The central resources in `region` of the central account (`c`), for the names in `names`.
pub async fn central(
    c: &Clients,
    names: &CentralNames,
    region: &str,
    home: &str,
) -> Result<Observed, OpError> {
    let account = names.account.as_str();
    let mut out = Observed::default();
    if region == home
        && let Some((b, is_managed)) = bucket(c, &names.bucket).await?
    {
        out.insert(
            ResourceKey::new(account, region, Kind::Bucket, names.bucket.clone()),
            Spec::Bucket(b),
            is_managed,
        );
        if let Some((o, is_managed)) = manifest(c, &names.bucket).await? {
            out.insert(
                ResourceKey::new(
                    account,
                    region,
                    Kind::RuleManifest,
                    naming::RULE_MANIFEST_KEY,
                ),
                Spec::Object(o),
                is_managed,
            );
        }
    }
    let topic_arn = arn::topic(region, account, &names.topic);
    if let Some((policy, topic_managed)) = topic(c, &topic_arn).await? {
        out.insert(
            ResourceKey::new(account, region, Kind::Topic, names.topic.clone()),
            Spec::Policy(PolicySpec { policy }),
            topic_managed,
        );
        let queue_arn = arn::queue(region, account, &names.queue);
        if let Some(sub) = subscription(c, &topic_arn, &queue_arn).await? {
            let key = ResourceKey::new(account, region, Kind::Subscription, names.queue.clone());
            // Subscriptions have no tags: they belong to their topic.
            if !topic_managed {
                out.unmanaged.insert(
                    key.clone(),
                    format!(
                        "it is a subscription of topic {}, which is not orgwatch's (subscriptions have no tags of their own)",
                        names.topic
                    ),
                );
            }
            out.resources.insert(key, Spec::Subscription(sub.0));
        }
    }
    let ops_arn = arn::topic(region, account, &names.ops_topic);
    if let Some((policy, is_managed)) = topic(c, &ops_arn).await? {
        out.insert(
            ResourceKey::new(account, region, Kind::Topic, names.ops_topic.clone()),
            Spec::Policy(PolicySpec { policy }),
            is_managed,
        );
    }
    // Tags are read later, only for alarms the plan would change (see TagProbe).
    for (name, spec) in alarms(c, naming::OPS_ALARM_PREFIX).await? {
        out.probed(
            ResourceKey::new(account, region, Kind::Alarm, name),
            spec,
            TagProbe::Alarm,
        );
    }
    let dlq = naming::dead_letter_queue(&names.queue);
    let mut queues = vec![
        (Kind::DeadLetterQueue, dlq),
        (Kind::Queue, names.queue.clone()),
    ];
    if region == home {
        // The control queue of hub watch, whether or not [watch] is enabled: a disabled
        // control path is removed.
        queues.push((
            Kind::DeadLetterQueue,
            naming::dead_letter_queue(&names.control_queue),
        ));
        queues.push((Kind::Queue, names.control_queue.clone()));
        if let Some((t, is_managed)) = lease_table(c, &names.lease_table).await? {
            out.insert(
                ResourceKey::new(account, region, Kind::LeaseTable, names.lease_table.clone()),
                Spec::Table(t),
                is_managed,
            );
        }
    }
    for (kind, name) in queues {
        if let Some((url, spec)) = queue(c, &name).await? {
            out.probed(
                ResourceKey::new(account, region, kind, name),
                Spec::Queue(spec),
                TagProbe::Queue(url),
            );
        }
    }
    let eb = c.eventbridge();
    let mut buses: Vec<(&str, &[&str])> = vec![(
        naming::CENTRAL_BUS,
        &[naming::CENTRAL_BUS_RULE, naming::TAMPER_TO_CONTROL_RULE],
    )];
    if region == home {
        buses.push((naming::CONTROL_BUS, &[naming::CONTROL_BUS_RULE]));
    }
    for (bus_name, rules) in buses {
        let bus = optional(
            call!(
                "DescribeEventBus",
                eb.describe_event_bus().name(bus_name).send()
            ),
            &["ResourceNotFoundException"],
        )?;
        let Some(b) = bus else {
            continue;
        };
        let bus_arn = b
            .arn()
            .map(str::to_string)
            .unwrap_or_else(|| arn::bus(region, account, bus_name));
        out.probed(
            ResourceKey::new(account, region, Kind::Bus, bus_name),
            Spec::Policy(PolicySpec {
                policy: b.policy().map(canonical_json).unwrap_or_default(),
            }),
            TagProbe::EventBridge(bus_arn),
        );
        let wanted = |name: &str| rules.contains(&name);
        // One rule per target here: each rule's targets are read.
        for (name, spec, probe) in event_rules(c, bus_name, wanted, &DeclaredRules::new()).await? {
            out.probed(
                ResourceKey::new(account, region, Kind::BusRule, name),
                Spec::EventRule(spec),
                probe,
            );
        }
    }
    Ok(out)
}

/// The id (`p-...`) of the guardrail SCP, if the organisation has one by its name.
pub async fn scp_id(c: &Clients) -> Result<Option<String>, OpError> {
    let mut pages = c
        .organizations()
        .list_policies()
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| OpError::new("ListPolicies", e))?;
        if let Some(p) = page
            .policies()
            .iter()
            .find(|p| p.name() == Some(shared::guardrail::SCP_NAME))
        {
            return Ok(p.id().map(str::to_string));
        }
    }
    Ok(None)
}

/// The lease table of hub watch, if it exists.
/// The rule manifest in the central bucket (S3 API reference, GetObject: NoSuchKey when it
/// is not there). It is orgwatch's when it reads as a rule manifest.
async fn manifest(c: &Clients, bucket: &str) -> Result<Option<(ObjectSpec, bool)>, OpError> {
    let got = optional(
        call!(
            "GetObject",
            c.s3()
                .get_object()
                .bucket(bucket)
                .key(naming::RULE_MANIFEST_KEY)
                .send()
        ),
        &["NoSuchKey", "NoSuchBucket", "NotFound"],
    )?;
    let Some(got) = got else {
        return Ok(None);
    };
    let bytes = got.body.collect().await.map_err(|e| {
        let f = OpError::from_error("GetObject", &e);
        let message = format!(
            "reading s3://{bucket}/{}: {}",
            naming::RULE_MANIFEST_KEY,
            f.message()
        );
        f.with_message(message)
    })?;
    let body = String::from_utf8_lossy(&bytes.into_bytes()).into_owned();
    let is_managed = shared::rules::manifest::Manifest::from_json("", &body).is_ok();
    Ok(Some((ObjectSpec::new(bucket, body), is_managed)))
}

/// A topic's policy (canonical JSON) and whether it carries the managed tag; `None` when
/// there is no such topic (SNS API reference, GetTopicAttributes: NotFound).
async fn topic(c: &Clients, arn: &str) -> Result<Option<(String, bool)>, OpError> {
    let sns = c.sns();
    let Some(t) = optional(
        call!(
            "GetTopicAttributes",
            sns.get_topic_attributes().topic_arn(arn).send()
        ),
        &["NotFound", "NotFoundException"],
    )?
    else {
        return Ok(None);
    };
    let policy = t
        .attributes()
        .and_then(|a| a.get("Policy"))
        .map(|p| canonical_json(p))
        .unwrap_or_default();
    let tags = call!(
        "ListTagsForResource",
        sns.list_tags_for_resource().resource_arn(arn).send()
    )?;
    Ok(Some((
        policy,
        managed(tags.tags().iter().map(|t| (t.key(), t.value()))),
    )))
}

/// Every metric alarm whose name starts with `prefix` (DescribeAlarms, paginated).
async fn alarms(c: &Clients, prefix: &str) -> Result<Vec<(String, Spec)>, OpError> {
    let mut out = Vec::new();
    let mut pages = c
        .cloudwatch()
        .describe_alarms()
        .alarm_name_prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| OpError::new("DescribeAlarms", e))?;
        for a in page.metric_alarms() {
            let Some(name) = a.alarm_name() else { continue };
            let mut dimensions: Vec<(String, String)> = a
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_string(),
                        d.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            dimensions.sort();
            out.push((
                name.to_string(),
                Spec::Alarm(AlarmSpec {
                    metric_name: a.metric_name().unwrap_or_default().to_string(),
                    namespace: a.namespace().unwrap_or_default().to_string(),
                    statistic: a
                        .statistic()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    period: a.period().unwrap_or(0),
                    evaluation_periods: a.evaluation_periods().unwrap_or(0),
                    threshold: a.threshold().unwrap_or(0.0),
                    comparison: a
                        .comparison_operator()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    actions: a.alarm_actions().to_vec(),
                    ok_actions: a.ok_actions().to_vec(),
                    treat_missing_data: a.treat_missing_data().unwrap_or_default().to_string(),
                    description: a.alarm_description().unwrap_or_default().to_string(),
                    dimensions,
                }),
            ));
        }
    }
    Ok(out)
}

async fn lease_table(c: &Clients, name: &str) -> Result<Option<(TableSpec, bool)>, OpError> {
    let ddb = c.dynamodb();
    let described = optional(
        call!(
            "DescribeTable",
            ddb.describe_table().table_name(name).send()
        ),
        &["ResourceNotFoundException"],
    )?;
    let Some(t) = described.and_then(|d| d.table) else {
        return Ok(None);
    };
    let partition_key = t
        .key_schema()
        .iter()
        .find(|k| k.key_type().as_str() == "HASH")
        .map(|k| k.attribute_name().to_string())
        .unwrap_or_default();
    let billing_mode = t
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .map(|b| b.as_str().to_string())
        // DescribeTable omits the summary for tables created as PROVISIONED.
        .unwrap_or_else(|| "PROVISIONED".into());
    let is_managed = match t.table_arn() {
        Some(table_arn) => {
            let tags = call!(
                "ListTagsOfResource",
                ddb.list_tags_of_resource().resource_arn(table_arn).send()
            )?;
            managed(tags.tags().iter().map(|t| (t.key(), t.value())))
        }
        None => false,
    };
    Ok(Some((
        TableSpec {
            partition_key,
            billing_mode,
        },
        is_managed,
    )))
}

/// Names of the central resources.
#[derive(Clone, Debug)]
pub struct CentralNames {
    /// The organisation's management account (trusted access is the organisation's).
    pub management_account: String,
    /// False for a standalone account (no trusted access to read).
    pub in_organization: bool,
    pub account: String,
    pub bucket: String,
    pub trail: String,
    pub topic: String,
    pub queue: String,
    /// The operations topic (its alarms are read by their prefix).
    pub ops_topic: String,
    /// The control queue and lease table of hub watch.
    pub control_queue: String,
    pub lease_table: String,
    /// The hub runs in the management account (and so manages the organisation-events
    /// rule there).
    pub hub_is_management: bool,
}

/// The topic's subscription to the queue, with its ARN.
pub async fn subscription(
    c: &Clients,
    topic_arn: &str,
    queue_arn: &str,
) -> Result<Option<(SubscriptionSpec, String)>, OpError> {
    let sns = c.sns();
    let mut token = None;
    loop {
        let page = call!(
            "ListSubscriptionsByTopic",
            sns.list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(token.take())
                .send()
        )?;
        for s in page.subscriptions() {
            if s.protocol() == Some("sqs") && s.endpoint() == Some(queue_arn) {
                let Some(sub_arn) = s.subscription_arn() else {
                    continue;
                };
                let attrs = call!(
                    "GetSubscriptionAttributes",
                    sns.get_subscription_attributes()
                        .subscription_arn(sub_arn)
                        .send()
                )?;
                let raw = attrs
                    .attributes()
                    .and_then(|a| a.get("RawMessageDelivery"))
                    .is_some_and(|v| v == "true");
                return Ok(Some((
                    SubscriptionSpec {
                        topic_arn: topic_arn.to_string(),
                        queue_arn: queue_arn.to_string(),
                        raw_delivery: raw,
                    },
                    sub_arn.to_string(),
                )));
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(None),
        }
    }
}

/// A queue's URL and settings.
pub async fn queue(c: &Clients, name: &str) -> Result<Option<(String, QueueSpec)>, OpError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = c.sqs();
    let Some(url) = optional(
        call!("GetQueueUrl", sqs.get_queue_url().queue_name(name).send()),
        &[
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ],
    )?
    else {
        return Ok(None);
    };
    let url = url.queue_url().unwrap_or_default().to_string();
    let attrs = call!(
        "GetQueueAttributes",
        sqs.get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::All)
            .send()
    )?;
    let get = |k: A| {
        attrs
            .attributes()
            .and_then(|a| a.get(&k))
            .cloned()
            .unwrap_or_default()
    };
    Ok(Some((
        url,
        QueueSpec {
            policy: canonical_or_empty(&get(A::Policy)),
            redrive: canonical_or_empty(&get(A::RedrivePolicy)),
            sse: get(A::SqsManagedSseEnabled) == "true",
            retention_secs: get(A::MessageRetentionPeriod).parse().unwrap_or(0),
        },
    )))
}

fn canonical_or_empty(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        canonical_json(s)
    }
}

/// A bucket's settings and whether it carries the managed tag.
async fn bucket(c: &Clients, name: &str) -> Result<Option<(BucketSpec, bool)>, OpError> {
    let s3 = c.s3();
    if optional(
        call!("HeadBucket", s3.head_bucket().bucket(name).send()),
        &["NotFound", "NoSuchBucket"],
    )?
    .is_none()
    {
        return Ok(None);
    }
    let pab = optional(
        call!(
            "GetPublicAccessBlock",
            s3.get_public_access_block().bucket(name).send()
        ),
        &["NoSuchPublicAccessBlockConfiguration"],
    )?;
    let pab = pab.and_then(|p| p.public_access_block_configuration().cloned());
    let flag = |f: fn(&aws_sdk_s3::types::PublicAccessBlockConfiguration) -> Option<bool>| {
        pab.as_ref().and_then(f).unwrap_or(false)
    };
    let ownership = optional(
        call!(
            "GetBucketOwnershipControls",
            s3.get_bucket_ownership_controls().bucket(name).send()
        ),
        &["OwnershipControlsNotFoundError"],
    )?
    .and_then(|o| {
        o.ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string())
    })
    .unwrap_or_default();
    let encryption = optional(
        call!(
            "GetBucketEncryption",
            s3.get_bucket_encryption().bucket(name).send()
        ),
        &["ServerSideEncryptionConfigurationNotFoundError"],
    )?
    .and_then(|e| {
        let rule = e
            .server_side_encryption_configuration()?
            .rules()
            .first()?
            .apply_server_side_encryption_by_default()?
            .clone();
        Some(match rule.kms_master_key_id() {
            Some(k) if rule.sse_algorithm().as_str() == "aws:kms" => format!("aws:kms:{k}"),
            _ => rule.sse_algorithm().as_str().to_string(),
        })
    })
    .unwrap_or_default();
    let versioning = match s3.get_bucket_versioning().bucket(name).send().await {
        Ok(v) => v
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        // The emulator names the XML root `GetBucketVersioningResponse`, which the SDK
        // refuses to decode; the status element inside is the same, so read it from the
        // raw body. Against AWS this branch is never taken.
        Err(e) => match e
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(String::from_utf8_lossy)
        {
            Some(body)
                if aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&e).is_none()
                    && body.contains("<GetBucketVersioningResponse") =>
            {
                xml_element(&body, "Status").unwrap_or_default()
            }
            _ => return Err(OpError::new("GetBucketVersioning", e)),
        },
    };
    let expire_days = optional(
        call!(
            "GetBucketLifecycleConfiguration",
            s3.get_bucket_lifecycle_configuration().bucket(name).send()
        ),
        &["NoSuchLifecycleConfiguration"],
    )?
    .and_then(|l| {
        l.rules()
            .iter()
            .find(|r| r.id() == Some(naming::PREFIX))
            .and_then(|r| r.expiration())
            .and_then(|e| e.days())
    })
    .unwrap_or(0);
    let policy = optional(
        call!(
            "GetBucketPolicy",
            s3.get_bucket_policy().bucket(name).send()
        ),
        &["NoSuchBucketPolicy"],
    )?
    .and_then(|p| p.policy().map(canonical_json))
    .unwrap_or_default();
    let is_managed = bucket_tags(c, name)
        .await?
        .is_some_and(|tags| managed(tags.iter().map(|t| (t.key(), t.value()))));
    let spec = BucketSpec {
        block_public_acls: flag(|p| p.block_public_acls()),
        ignore_public_acls: flag(|p| p.ignore_public_acls()),
        block_public_policy: flag(|p| p.block_public_policy()),
        restrict_public_buckets: flag(|p| p.restrict_public_buckets()),
        ownership,
        encryption,
        versioning,
        expire_days: u32::try_from(expire_days).unwrap_or(0),
        policy,
    };
    Ok(Some((spec, is_managed)))
}

/// A bucket's tags (`None`: it has none; S3 answers NoSuchTagSet).
pub async fn bucket_tags(
    c: &Clients,
    name: &str,
) -> Result<Option<Vec<aws_sdk_s3::types::Tag>>, OpError> {
    Ok(optional(
        call!(
            "GetBucketTagging",
            c.s3().get_bucket_tagging().bucket(name).send()
        ),
        &["NoSuchTagSet", "NoSuchTagSetError"],
    )?
    .map(|t| t.tag_set().to_vec()))
}

/// The text of the first `<name>…</name>` element.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))?;
    Some(body[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(target: &str) -> EventRuleSpec {
        EventRuleSpec {
            bus: "default".into(),
            pattern: "{}".into(),
            state: "ENABLED".into(),
            target_id: "t".into(),
            target_arn: target.into(),
            target_role_arn: None,
            target_input: String::new(),
            target_delivery: String::new(),
            other_targets: Vec::new(),
        }
    }

    #[test]
    fn a_targets_own_retry_policy_and_dead_letter_queue_are_one_text() {
        use aws_sdk_eventbridge::types::{DeadLetterConfig, RetryPolicy, Target};
        let plain = Target::builder().id("i").arn("a").build().expect("target");
        assert_eq!(target_delivery(&plain), "");
        let no_retries = Target::builder()
            .id("i")
            .arn("a")
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(0)
                    .maximum_event_age_in_seconds(60)
                    .build(),
            )
            .dead_letter_config(DeadLetterConfig::builder().arn("arn:dlq").build())
            .build()
            .expect("target");
        assert_eq!(
            target_delivery(&no_retries),
            "RetryPolicy attempts=0 age=60s; DeadLetterConfig arn:dlq"
        );
    }

    #[test]
    fn what_a_target_is_given_instead_of_the_event_is_one_text() {
        use aws_sdk_eventbridge::types::{InputTransformer, Target};
        let plain = Target::builder().id("i").arn("a").build().expect("target");
        assert_eq!(target_input(&plain), "");
        let input = Target::builder()
            .id("i")
            .arn("a")
            .input(r#"{ "b": 1, "a": 2 }"#)
            .build()
            .expect("target");
        assert_eq!(target_input(&input), r#"Input {"a":2,"b":1}"#);
        let transformed = Target::builder()
            .id("i")
            .arn("a")
            .input_transformer(
                InputTransformer::builder()
                    .input_paths_map("n", "$.detail.eventName")
                    .input_template("\"<n>\"")
                    .build()
                    .expect("transformer"),
            )
            .build()
            .expect("target");
        assert_eq!(
            target_input(&transformed),
            r#"InputTransformer {"n":"$.detail.eventName"} "<n>""#
        );
    }

    #[test]
    fn orgwatchs_target_is_told_from_the_others_by_its_id() {
        let target =
            |id: &str, arn: &str| Target::builder().id(id).arn(arn).build().expect("target");
        let both = [
            target(
                "theirs",
                "arn:aws:events:us-east-1:111122223333:event-bus/exfil",
            ),
            target("orgwatch-central-bus", "arn:bus"),
        ];
        let (ours, others) = split_targets(&both);
        assert_eq!(ours, Some(&both[1]));
        assert_eq!(
            others,
            vec![OtherTarget {
                id: "theirs".into(),
                arn: "arn:aws:events:us-east-1:111122223333:event-bus/exfil".into()
            }]
        );
        // None of orgwatch's: the first stands for it (the plan then names its id).
        let neither = [target("a", "x"), target("b", "y")];
        assert_eq!(split_targets(&neither).0, Some(&neither[0]));
        assert_eq!(split_targets(&[]), (None, Vec::new()));
    }

    #[test]
    fn one_listing_answers_only_for_a_target_two_listed_rules_share() {
        let (bus, logs) = (rule("arn:bus"), rule("arn:logs"));
        let declared: DeclaredRules =
            BTreeMap::from([("a", &bus), ("b", &bus), ("c", &bus), ("d", &logs)]);
        assert_eq!(
            shared_targets(&declared, &["a", "b", "d", "x"]),
            vec!["arn:bus"]
        );
        // One listed rule of a target: its own ListTargetsByRule is no dearer.
        assert!(shared_targets(&declared, &["a", "d"]).is_empty());
        // Nothing listed (a first enroll), nothing declared (--deep, offboard): no listing.
        assert!(shared_targets(&declared, &[]).is_empty());
        assert!(shared_targets(&DeclaredRules::new(), &["a", "b"]).is_empty());
    }

    #[test]
    fn iam_documents_are_url_decoded() {
        assert_eq!(percent_decode("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            decode_policy("%7B%22b%22%3A1%2C%22a%22%3A2%7D"),
            "{\"a\":2,\"b\":1}"
        );
    }
}
