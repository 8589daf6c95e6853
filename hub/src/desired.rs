//! Config + detection pack -> the resources that should exist. No AWS calls.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shared::naming::{self, arn};

use crate::config::{Delivery, HubConfig};
use crate::model::*;

/// What the hub deploys for one rule.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDeploy {
    pub id: String,
    pub title: String,
    /// One filter pattern, or two when the delivery form had to be split to fit 1,024
    /// characters; every filter feeds the same metric.
    pub filters: Vec<String>,
    pub metric_name: String,
    pub namespace: String,
    pub threshold: f64,
    pub period: i32,
    pub evaluation_periods: i32,
    pub statistic: String,
    pub comparison: String,
    pub treat_missing_data: String,
    /// EventBridge event pattern for forwarding matching events to the central bus.
    pub forward_pattern: Option<Value>,
    /// The rule as the agent learns it from the rule manifest.
    pub deployed: shared::rules::manifest::Deployed,
}

/// The rule manifest (`shared::rules::manifest`) in the central bucket, home region: every
/// rule deployed, for the agent to classify by. Written with the bucket's other central
/// resources, so it changes exactly when the deployed pack does.
pub fn manifest(
    config: &HubConfig,
    org: &OrgFacts,
    rules: &[RuleDeploy],
) -> BTreeMap<ResourceKey, Spec> {
    let body =
        shared::rules::manifest::Manifest::new(rules.iter().map(|r| r.deployed.clone()).collect())
            .to_json();
    BTreeMap::from([(
        ResourceKey::new(
            &org.central_account,
            config.home_region(),
            Kind::RuleManifest,
            naming::RULE_MANIFEST_KEY,
        ),
        Spec::Object(ObjectSpec::new(&config.trail.bucket, body)),
    )])
}

/// Facts about the organisation that desired state depends on.
#[derive(Clone, Debug)]
pub struct OrgFacts {
    /// The organisation (`o-...`); `None` for a standalone account, which is treated as an
    /// organisation of one: an account trail instead of the organisation trail, policies
    /// scoped to the account instead of the organisation.
    pub org_id: Option<String>,
    /// The organisation's management account (`DescribeOrganization` MasterAccountId). An
    /// organisation trail belongs to it even when a delegated administrator created it, so
    /// the trail's ARN and its log prefix `AWSLogs/<management account>/` name it
    /// (CloudTrail user guide, "Organization trails" and "Delegated administrator").
    pub management_account: String,
    pub central_account: String,
    /// The account the hub runs in (the management account or a delegated
    /// administrator).
    pub hub_account: String,
    /// The organisation's root (`r-...`), when it was asked for (`[guardrail] scp`).
    pub root_id: Option<String>,
}

/// The detail-types under which CloudTrail management events reach EventBridge that the
/// pack looks at (EventBridge user guide, "AWS service events delivered via AWS
/// CloudTrail"): API calls, console sign-ins, and console actions that are not API calls
/// (`eventType` AwsConsoleAction: root-activity covers what root does in the console).
pub const CLOUDTRAIL_DETAIL_TYPES: [&str; 3] = [
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
    "AWS Console Action via CloudTrail",
];
impl OrgFacts {
    /// The facts of `org` as the hub `me` sees it under `config` (the central account is
    /// the hub's own unless `hub.central_account` names another).
    pub fn new(
        org: &crate::discover::Organization,
        config: &HubConfig,
        me: &str,
        root_id: Option<String>,
    ) -> OrgFacts {
        OrgFacts {
            org_id: org.id.clone(),
            management_account: org.management_account.clone(),
            central_account: config
                .hub
                .central_account
                .clone()
                .unwrap_or_else(|| me.to_string()),
            hub_account: me.to_string(),
            root_id,
        }
    }

    /// `{"StringEquals": {<org key>: org}}` in an organisation, `{"StringEquals":
    /// {<account key>: account}}` for a standalone account: the condition that admits the
    /// organisation's accounts (or the one account) and nobody else.
    fn ours(&self, org_key: &str, account_key: &str) -> (String, String) {
        match &self.org_id {
            Some(id) => (org_key.to_string(), id.clone()),
            None => (account_key.to_string(), self.management_account.clone()),
        }
    }

    /// `aws:SourceOrgID` = the organisation, or `aws:SourceAccount` = the account.
    fn source_is_ours(&self) -> (String, String) {
        self.ours("aws:SourceOrgID", "aws:SourceAccount")
    }

    /// `aws:PrincipalOrgID` = the organisation, or `aws:PrincipalAccount` = the account.
    fn principal_is_ours(&self) -> (String, String) {
        self.ours("aws:PrincipalOrgID", "aws:PrincipalAccount")
    }
}

/// A genuine CloudTrail event always has a `source` beginning `aws.`, and EventBridge
/// refuses PutEvents from callers with such a source (EventBridge API reference,
/// PutEvents: "aws.*" sources are reserved; user guide, "Events from AWS services"). Rules
/// that select CloudTrail's detail-types but not the source would take an event anyone
/// with events:PutEvents made up (a fake root sign-in of another account, into the log
/// group and its metric filters, or onto the central bus): every orgwatch rule also
/// requires the `aws.` prefix.
pub fn source_is_aws() -> Value {
    json!([{ "prefix": "aws." }])
}

/// The pattern of the rules that take every CloudTrail management event (member
/// events-to-logs, central bus to queue).
pub fn cloudtrail_pattern() -> Value {
    json!({ "source": source_is_aws(), "detail-type": CLOUDTRAIL_DETAIL_TYPES })
}

/// `pattern` with the source restricted to AWS's (a pattern that names its own `source`
/// keeps it: built-in and user rules are validated to select CloudTrail's events).
pub fn only_from_aws(pattern: &Value) -> Value {
    let mut p = pattern.clone();
    if let Value::Object(m) = &mut p {
        m.entry("source").or_insert_with(source_is_aws);
    }
    p
}

/// The alarms that say the pipeline itself is in trouble, in the central account of
/// `region`, and the operations topic they notify (`alerts.ops_topic`, never the alerts
/// topic: the agent is what they are about). A message in the dead-letter queue is an alert
/// no sink took; an old message in the alert queue means no agent reads it. SQS publishes
/// both metrics to CloudWatch every minute, per queue (SQS developer guide, "Available
/// CloudWatch metrics for Amazon SQS": ApproximateNumberOfMessagesVisible,
/// ApproximateAgeOfOldestMessage, dimension QueueName); an alarm action is a topic in the
/// alarm's own Region (CloudWatch user guide, "Using Amazon CloudWatch alarms", actions).
pub fn watch_the_watcher(config: &HubConfig, acct: &str, region: &str) -> Vec<(ResourceKey, Spec)> {
    let ops_arn = arn::topic(region, acct, &config.alerts.ops_topic);
    let queue = &config.alerts.queue;
    let alarm = |metric: &str, of: &str, threshold: f64, statistic: &str, description: String| {
        Spec::Alarm(AlarmSpec {
            metric_name: metric.into(),
            namespace: "AWS/SQS".into(),
            statistic: statistic.into(),
            period: 60,
            evaluation_periods: 1,
            threshold,
            comparison: "GreaterThanOrEqualToThreshold".into(),
            actions: vec![ops_arn.clone()],
            ok_actions: vec![ops_arn.clone()],
            // A queue that sends no data points has no messages: not an alarm.
            treat_missing_data: "notBreaching".into(),
            description,
            dimensions: vec![("QueueName".into(), of.to_string())],
        })
    };
    let dlq = naming::dead_letter_queue(queue);
    vec![
        (
            ResourceKey::new(acct, region, Kind::Topic, config.alerts.ops_topic.clone()),
            Spec::Policy(PolicySpec {
                policy: ops_topic_policy(region, acct, &ops_arn).to_string(),
            }),
        ),
        (
            ResourceKey::new(acct, region, Kind::Alarm, naming::ops_dlq_alarm(queue)),
            alarm(
                "ApproximateNumberOfMessagesVisible",
                &dlq,
                1.0,
                "Maximum",
                format!(
                    "orgwatch: alerts no sink took are waiting in {dlq} (agent dlq list; agent dlq redrive after the fix)"
                ),
            ),
        ),
        (
            ResourceKey::new(acct, region, Kind::Alarm, naming::ops_age_alarm(queue)),
            alarm(
                "ApproximateAgeOfOldestMessage",
                queue,
                f64::from(config.alerts.queue_age_alarm_secs),
                "Maximum",
                format!(
                    "orgwatch: the oldest alert in {queue} waited {}s or more: no agent is reading it",
                    config.alerts.queue_age_alarm_secs
                ),
            ),
        ),
    ]
}

/// The operations topic: its owner manages it; CloudWatch publishes for this account's
/// orgwatch-ops alarms only (SNS developer guide, "Amazon SNS security best practices":
/// aws:SourceAccount and aws:SourceArn on service principals).
pub fn ops_topic_policy(region: &str, account: &str, topic_arn: &str) -> Value {
    let partition = naming::partition(region);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerManages",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:{partition}:iam::{account}:root")},
                "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:Publish", "sns:ListSubscriptionsByTopic"],
                "Resource": topic_arn
            },
            {
                "Sid": "OperationsAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": format!("arn:{partition}:cloudwatch:{region}:{account}:alarm:{}*", naming::OPS_ALARM_PREFIX)}
                }
            }
        ]
    })
}

/// CloudTrail's service principal, for trusted access in the organisation.
pub const CLOUDTRAIL_SERVICE_PRINCIPAL: &str = "cloudtrail.amazonaws.com";

/// Rule state that also delivers read-only management events.
pub const ALL_MANAGEMENT_EVENTS: &str = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS";

/// Central resources: the bucket and organisation trail (home region) and, per region, the
/// topic, queue, dead-letter queue, subscription, bus and bus rule.
pub fn central(config: &HubConfig, org: &OrgFacts) -> BTreeMap<ResourceKey, Spec> {
    let mut out = BTreeMap::new();
    let acct = org.central_account.as_str();
    let home = config.home_region();
    let bucket = &config.trail.bucket;
    let trail_arn = arn::trail(home, &org.management_account, &config.trail.name);
    out.insert(
        ResourceKey::new(acct, home, Kind::Bucket, bucket.clone()),
        Spec::Bucket(BucketSpec {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
            ownership: "BucketOwnerEnforced".into(),
            encryption: match &config.trail.kms_key_id {
                Some(k) => format!("aws:kms:{k}"),
                None => "AES256".into(),
            },
            versioning: "Enabled".into(),
            expire_days: config.trail.retention_days,
            policy: bucket_policy(
                home,
                bucket,
                &trail_arn,
                org,
                config.monitoring.delivery == Delivery::Trail,
            )
            .to_string(),
        }),
    );
    // CreateTrail with IsOrganizationTrail fails with CloudTrailAccessNotEnabledException
    // until CloudTrail has trusted access in the organisation (CloudTrail API reference,
    // CreateTrail; user guide, "Prepare for creating a trail for your organization").
    // Organizations recommends enabling it through CloudTrail; EnableAWSServiceAccess from
    // the management account is its API equivalent.
    if org.org_id.is_some() {
        out.insert(
            ResourceKey::new(
                &org.management_account,
                home,
                Kind::TrustedAccess,
                CLOUDTRAIL_SERVICE_PRINCIPAL,
            ),
            Spec::ServiceAccess(ServiceAccessSpec {
                service_principal: CLOUDTRAIL_SERVICE_PRINCIPAL.into(),
            }),
        );
    }
    // The organisation trail belongs to the management account, whoever creates it.
    out.insert(
        ResourceKey::new(
            &org.management_account,
            home,
            Kind::OrgTrail,
            config.trail.name.clone(),
        ),
        Spec::Trail(TrailSpec {
            bucket: bucket.clone(),
            multi_region: true,
            global_service_events: true,
            log_file_validation: true,
            // Standalone: the account's own trail, which logs only this account.
            organization: org.org_id.is_some(),
            logging: true,
            log_group_arn: None,
            logs_role_arn: None,
            kms_key_id: config.trail.kms_key_id.clone(),
        }),
    );
    for region in &config.hub.regions {
        let r = region.as_str();
        let topic_arn = arn::topic(r, acct, &config.alerts.topic);
        let queue_arn = arn::queue(r, acct, &config.alerts.queue);
        let dlq = naming::dead_letter_queue(&config.alerts.queue);
        let dlq_arn = arn::queue(r, acct, &dlq);
        let bus_rule_arn = arn::rule(r, acct, naming::CENTRAL_BUS, naming::CENTRAL_BUS_RULE);
        out.insert(
            ResourceKey::new(acct, r, Kind::Topic, config.alerts.topic.clone()),
            Spec::Policy(PolicySpec {
                policy: topic_policy(r, acct, &topic_arn, org).to_string(),
            }),
        );
        out.extend(watch_the_watcher(config, acct, r));
        out.insert(
            ResourceKey::new(acct, r, Kind::DeadLetterQueue, dlq),
            dead_letter_queue_spec(),
        );
        out.insert(
            ResourceKey::new(acct, r, Kind::Queue, config.alerts.queue.clone()),
            Spec::Queue(QueueSpec {
                policy: queue_policy(&queue_arn, &topic_arn, &bus_rule_arn).to_string(),
                redrive: json!({
                    "deadLetterTargetArn": dlq_arn,
                    "maxReceiveCount": config.alerts.max_receive_count,
                })
                .to_string(),
                sse: true,
                retention_secs: 345_600,
            }),
        );
        out.insert(
            ResourceKey::new(acct, r, Kind::Subscription, config.alerts.queue.clone()),
            Spec::Subscription(SubscriptionSpec {
                topic_arn: topic_arn.clone(),
                queue_arn: queue_arn.clone(),
                raw_delivery: false,
            }),
        );
        out.insert(
            ResourceKey::new(acct, r, Kind::Bus, naming::CENTRAL_BUS),
            Spec::Policy(PolicySpec {
                policy: bus_policy(&arn::bus(r, acct, naming::CENTRAL_BUS), org).to_string(),
            }),
        );
        out.insert(
            ResourceKey::new(acct, r, Kind::BusRule, naming::CENTRAL_BUS_RULE),
            Spec::EventRule(EventRuleSpec {
                bus: naming::CENTRAL_BUS.into(),
                pattern: cloudtrail_pattern().to_string(),
                // A rule in state ENABLED matches every event "except for AWS management
                // events delivered through CloudTrail" that are read-only; the state that
                // includes them is valid on custom buses too (EventBridge API reference,
                // PutRule `State`; user guide, "Receiving read-only management events from
                // AWS services"). Forwarded read-only calls (root's Get*/List*) must reach
                // the queue like the rest.
                state: ALL_MANAGEMENT_EVENTS.into(),
                target_id: naming::QUEUE_TARGET_ID.into(),
                target_arn: queue_arn,
                target_role_arn: None,
                other_targets: Vec::new(),
                target_input: String::new(),
                target_delivery: String::new(),
            }),
        );
    }
    out
}

/// The regions whose log group receives a member's events: every monitored region in
/// `eventbridge` delivery (rules are regional); only the home region in `trail` delivery,
/// where one multi-region account trail delivers every region into one log group.
pub fn member_regions(config: &HubConfig) -> Vec<String> {
    match config.monitoring.delivery {
        Delivery::Eventbridge => config.hub.regions.clone(),
        Delivery::Trail => vec![config.home_region().to_string()],
    }
}

/// The resources of one member account in one region.
pub fn member(
    config: &HubConfig,
    org: &OrgFacts,
    rules: &[RuleDeploy],
    account: &str,
    region: &str,
) -> BTreeMap<ResourceKey, Spec> {
    let mut out = BTreeMap::new();
    let log_group = naming::LOG_GROUP;
    let log_group_arn = arn::log_group(region, account, log_group);
    let receives_logs = member_regions(config).iter().any(|r| r == region);
    if receives_logs {
        out.insert(
            ResourceKey::new(account, region, Kind::LogGroup, log_group),
            Spec::LogGroup(LogGroupSpec {
                retention_days: config.monitoring.log_retention_days,
            }),
        );
        match config.monitoring.delivery {
            Delivery::Eventbridge => {
                out.insert(
                    ResourceKey::new(
                        account,
                        region,
                        Kind::LogPolicy,
                        naming::LOG_RESOURCE_POLICY,
                    ),
                    Spec::Policy(PolicySpec {
                        policy: log_resource_policy(&log_group_arn, region, account).to_string(),
                    }),
                );
                out.insert(
                    ResourceKey::new(
                        account,
                        region,
                        Kind::EventsRule,
                        naming::EVENTS_TO_LOGS_RULE,
                    ),
                    Spec::EventRule(EventRuleSpec {
                        bus: "default".into(),
                        pattern: cloudtrail_pattern().to_string(),
                        state: ALL_MANAGEMENT_EVENTS.into(),
                        target_id: naming::LOG_TARGET_ID.into(),
                        target_arn: log_group_arn.clone(),
                        target_role_arn: None,
                        other_targets: Vec::new(),
                        target_input: String::new(),
                        target_delivery: String::new(),
                    }),
                );
            }
            Delivery::Trail => {
                let role_arn = arn::role(region, account, naming::TRAIL_LOGS_ROLE);
                out.insert(
                    ResourceKey::new(account, region, Kind::TrailRole, naming::TRAIL_LOGS_ROLE),
                    Spec::Role(RoleSpec {
                        trust: trail_role_trust(account).to_string(),
                        policy: trail_role_policy(region, account).to_string(),
                    }),
                );
                out.insert(
                    ResourceKey::new(account, region, Kind::MemberTrail, naming::MEMBER_TRAIL),
                    Spec::Trail(TrailSpec {
                        bucket: config.trail.bucket.clone(),
                        multi_region: true,
                        global_service_events: true,
                        log_file_validation: true,
                        organization: false,
                        logging: true,
                        log_group_arn: Some(format!("{log_group_arn}:*")),
                        logs_role_arn: Some(role_arn),
                        kms_key_id: config.trail.kms_key_id.clone(),
                    }),
                );
            }
        }
        let topic_arn = arn::topic(region, &org.central_account, &config.alerts.topic);
        for rule in rules {
            for (part, pattern) in rule.filters.iter().enumerate() {
                let name = naming::metric_filter_name(&rule.id, part);
                out.insert(
                    ResourceKey::new(account, region, Kind::MetricFilter, name),
                    Spec::MetricFilter(MetricFilterSpec {
                        log_group: log_group.into(),
                        pattern: pattern.clone(),
                        metric_name: rule.metric_name.clone(),
                        namespace: rule.namespace.clone(),
                        value: "1".into(),
                    }),
                );
            }
            out.insert(
                ResourceKey::new(account, region, Kind::Alarm, naming::alarm_name(&rule.id)),
                Spec::Alarm(AlarmSpec {
                    metric_name: rule.metric_name.clone(),
                    namespace: rule.namespace.clone(),
                    statistic: rule.statistic.clone(),
                    period: rule.period,
                    evaluation_periods: rule.evaluation_periods,
                    threshold: rule.threshold,
                    comparison: rule.comparison.clone(),
                    actions: vec![topic_arn.clone()],
                    ok_actions: vec![topic_arn.clone()],
                    treat_missing_data: rule.treat_missing_data.clone(),
                    description: format!("orgwatch {}: {}", rule.id, rule.title),
                    dimensions: Vec::new(),
                }),
            );
        }
    }
    // Forwarding is regional in both modes: EventBridge sees each region's events.
    let bus_arn = arn::bus(region, &org.central_account, naming::CENTRAL_BUS);
    let forwards = rules.iter().any(|r| r.forward_pattern.is_some());
    // Every forward rule targets the central bus through the forwarding role: EventBridge
    // requires a RoleArn for an event bus target in another account when the bus grants
    // PutEvents through an organisation (aws:PrincipalOrgID), and for every bus-to-bus
    // target in the same account (the management account is enrolled too).
    // EventBridge API reference, PutTargets (RoleArn); user guide, "Sending and receiving
    // events between AWS accounts" and "Sending events between event buses in the same
    // account and Region". IAM is global: the role is one per account, kept in the home region.
    let forward_role_arn = arn::role(region, account, naming::FORWARD_ROLE);
    if forwards && region == config.home_region() {
        out.insert(
            ResourceKey::new(account, region, Kind::ForwardRole, naming::FORWARD_ROLE),
            Spec::Role(RoleSpec {
                trust: forward_role_trust().to_string(),
                policy: forward_role_policy(region, &org.central_account).to_string(),
            }),
        );
    }
    for rule in rules {
        if let Some(pattern) = &rule.forward_pattern {
            out.insert(
                ResourceKey::new(
                    account,
                    region,
                    Kind::ForwardRule,
                    naming::forward_rule_name(&rule.id),
                ),
                Spec::EventRule(EventRuleSpec {
                    bus: "default".into(),
                    pattern: only_from_aws(pattern).to_string(),
                    state: ALL_MANAGEMENT_EVENTS.into(),
                    target_id: naming::BUS_TARGET_ID.into(),
                    target_arn: bus_arn.clone(),
                    target_role_arn: Some(forward_role_arn.clone()),
                    other_targets: Vec::new(),
                    target_input: String::new(),
                    target_delivery: String::new(),
                }),
            );
        }
    }
    out
}

/// The region AWS Organizations delivers its events to EventBridge in: Organizations is a
/// global service whose endpoint is in us-east-1 (us-gov-west-1, cn-northwest-1 in the
/// other partitions), and CloudTrail delivers a global service's events to EventBridge
/// there only, in the management account (Organizations user guide, "Amazon EventBridge
/// and AWS Organizations" / "Tutorial: Monitor important changes to your organization with
/// EventBridge": the rule must be created in US East (N. Virginia); EventBridge events
/// reference, "AWS Organizations events": `source` aws.organizations, `eventSource`
/// organizations.amazonaws.com).
pub fn organizations_events_region(partition: &str) -> &'static str {
    match partition {
        "aws-us-gov" => "us-gov-west-1",
        "aws-cn" => "cn-northwest-1",
        _ => "us-east-1",
    }
}

/// The Organizations events that change which accounts `hub watch` covers. Account
/// creation completes asynchronously: the `CreateAccount` call is followed by the service
/// event `CreateAccountResult` with `serviceEventDetails.createAccountStatus` (Organizations
/// API reference, CreateAccount: "check the CloudTrail log for the CreateAccountResult
/// event"); an invited account joins on `AcceptHandshake`.
pub const ORGANIZATION_EVENT_NAMES: [&str; 8] = [
    "CreateAccountResult",
    "CreateGovCloudAccount",
    "InviteAccountToOrganization",
    "AcceptHandshake",
    "MoveAccount",
    "RemoveAccountFromOrganization",
    "CloseAccount",
    "LeaveOrganization",
];

/// Event pattern of the management account's organisation-events rule. CloudTrail
/// delivers API calls as "AWS API Call via CloudTrail" and the asynchronous
/// `CreateAccountResult` as "AWS Service Event via CloudTrail" (EventBridge user guide,
/// "AWS service events delivered via AWS CloudTrail").
pub fn organization_events_pattern() -> Value {
    json!({
        "source": ["aws.organizations"],
        "detail-type": ["AWS API Call via CloudTrail", "AWS Service Event via CloudTrail"],
        "detail": {
            "eventSource": ["organizations.amazonaws.com"],
            "eventName": ORGANIZATION_EVENT_NAMES,
        }
    })
}

/// The control path of `hub watch` (`[watch] enabled`): in the central account's home
/// region the control bus, the control queue and its dead-letter queue, the rule between
/// them and the lease table; in every region a rule on the central bus sending the
/// `orgwatch-tamper` rule's forwarded events on to the control bus (they also reach the
/// alerts queue through the central bus rule); in the management account (organisation
/// level, see [`Kind::organisation_level`]) the rule sending Organizations' account events
/// to the control bus. Cross-account and cross-Region bus targets name the sending
/// account's forwarding role (EventBridge API reference, PutTargets `RoleArn`; user guide,
/// "Sending and receiving events between AWS accounts" and "between AWS Regions").
pub fn control(
    config: &HubConfig,
    org: &OrgFacts,
    rules: &[RuleDeploy],
) -> BTreeMap<ResourceKey, Spec> {
    let mut out = BTreeMap::new();
    if !config.watch.enabled {
        return out;
    }
    let acct = org.central_account.as_str();
    let home = config.home_region();
    let queue = &config.watch.queue;
    let dlq = naming::dead_letter_queue(queue);
    let queue_arn = arn::queue(home, acct, queue);
    let control_bus_arn = arn::bus(home, acct, naming::CONTROL_BUS);
    let to_queue_arn = arn::rule(home, acct, naming::CONTROL_BUS, naming::CONTROL_BUS_RULE);
    out.insert(
        ResourceKey::new(acct, home, Kind::DeadLetterQueue, dlq.clone()),
        dead_letter_queue_spec(),
    );
    out.insert(
        ResourceKey::new(acct, home, Kind::Queue, queue.clone()),
        Spec::Queue(QueueSpec {
            policy: control_queue_policy(&queue_arn, &to_queue_arn).to_string(),
            redrive: json!({
                "deadLetterTargetArn": arn::queue(home, acct, &dlq),
                // One more than hub watch's own limit: the watch dead-letters with the
                // reason first; the redrive policy only catches a watch that died trying.
                "maxReceiveCount": config.watch.max_receive_count + 1,
            })
            .to_string(),
            sse: true,
            retention_secs: 1_209_600,
        }),
    );
    out.insert(
        ResourceKey::new(acct, home, Kind::Bus, naming::CONTROL_BUS),
        Spec::Policy(PolicySpec {
            policy: control_bus_policy(&control_bus_arn, naming::partition(home), org).to_string(),
        }),
    );
    out.insert(
        ResourceKey::new(acct, home, Kind::BusRule, naming::CONTROL_BUS_RULE),
        Spec::EventRule(EventRuleSpec {
            bus: naming::CONTROL_BUS.into(),
            pattern: json!({ "source": source_is_aws() }).to_string(),
            state: ALL_MANAGEMENT_EVENTS.into(),
            target_id: naming::CONTROL_TARGET_ID.into(),
            target_arn: queue_arn,
            target_role_arn: None,
            other_targets: Vec::new(),
            target_input: String::new(),
            target_delivery: String::new(),
        }),
    );
    out.insert(
        ResourceKey::new(
            acct,
            home,
            Kind::LeaseTable,
            config.watch.lease_table.clone(),
        ),
        Spec::Table(TableSpec {
            partition_key: LEASE_KEY.into(),
            billing_mode: "PAY_PER_REQUEST".into(),
        }),
    );
    let tamper = rules
        .iter()
        .find(|r| r.id == naming::TAMPER_RULE)
        .and_then(|r| r.forward_pattern.as_ref());
    if let Some(pattern) = tamper {
        for region in &config.hub.regions {
            out.insert(
                ResourceKey::new(acct, region, Kind::BusRule, naming::TAMPER_TO_CONTROL_RULE),
                Spec::EventRule(EventRuleSpec {
                    bus: naming::CENTRAL_BUS.into(),
                    pattern: only_from_aws(pattern).to_string(),
                    state: ALL_MANAGEMENT_EVENTS.into(),
                    target_id: naming::CONTROL_TARGET_ID.into(),
                    target_arn: control_bus_arn.clone(),
                    target_role_arn: Some(arn::role(region, acct, naming::FORWARD_ROLE)),
                    other_targets: Vec::new(),
                    target_input: String::new(),
                    target_delivery: String::new(),
                }),
            );
        }
    }
    // Only the management account receives the organisation's events; a hub running in a
    // delegated administrator cannot create rules there (then new accounts are enrolled at
    // the next resync; `hub plan` says so).
    if org.org_id.is_some() && org.hub_account == org.management_account {
        let mgmt = org.management_account.as_str();
        let region = organizations_events_region(naming::partition(home));
        out.insert(
            ResourceKey::new(
                mgmt,
                region,
                Kind::OrgEventsRule,
                naming::ORGANIZATION_EVENTS_RULE,
            ),
            Spec::EventRule(EventRuleSpec {
                bus: "default".into(),
                pattern: organization_events_pattern().to_string(),
                state: ALL_MANAGEMENT_EVENTS.into(),
                target_id: naming::CONTROL_TARGET_ID.into(),
                target_arn: control_bus_arn,
                target_role_arn: Some(arn::role(region, mgmt, naming::FORWARD_ROLE)),
                other_targets: Vec::new(),
                target_input: String::new(),
                target_delivery: String::new(),
            }),
        );
    }
    out
}

/// The guardrail SCP (`[guardrail] scp = true`), attached to `guardrail.targets` or the
/// root. Only the management account manages an organisation's policies (Organizations
/// API reference, CreatePolicy and AttachPolicy: "This operation can be called only from
/// the organization's management account or by a member account that is a delegated
/// administrator"; orgwatch keeps to the management account), so a hub elsewhere plans
/// none.
pub fn guardrail(config: &HubConfig, org: &OrgFacts) -> BTreeMap<ResourceKey, Spec> {
    let mut out = BTreeMap::new();
    if !config.guardrail.scp || org.org_id.is_none() || org.hub_account != org.management_account {
        return out;
    }
    let names = shared::iam::Names {
        partition: naming::partition(config.home_region()).to_string(),
        member_role: config.hub.member_role.clone(),
        ..shared::iam::Names::default()
    };
    let mut targets: Vec<String> = if config.guardrail.targets.is_empty() {
        org.root_id.iter().cloned().collect()
    } else {
        config.guardrail.targets.clone()
    };
    targets.sort();
    targets.dedup();
    out.insert(
        ResourceKey::new(
            &org.management_account,
            config.home_region(),
            Kind::Scp,
            shared::guardrail::SCP_NAME,
        ),
        Spec::Scp(ScpSpec {
            content: shared::guardrail::scp(&names).to_string(),
            targets,
        }),
    );
    out
}

/// A dead-letter queue: encrypted, messages kept 14 days (SQS's maximum), no policy of its
/// own (only its source queue's redrive moves messages in).
fn dead_letter_queue_spec() -> Spec {
    Spec::Queue(QueueSpec {
        policy: String::new(),
        redrive: String::new(),
        sse: true,
        retention_secs: 1_209_600,
    })
}

/// Partition key of the lease table.
pub const LEASE_KEY: &str = "lease";

/// Admits only the control bus's rule.
pub fn control_queue_policy(queue_arn: &str, rule_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ControlBusRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
        }]
    })
}

/// The control bus takes events from the management account's organisation-events rule
/// (and, without a policy, from rules of its own account).
pub fn control_bus_policy(bus_arn: &str, partition: &str, org: &OrgFacts) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ManagementAccountPutEvents",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{partition}:iam::{}:root", org.management_account)},
            "Action": "events:PutEvents",
            "Resource": bus_arn
        }]
    })
}

/// Denies plain-HTTP access; lets CloudTrail check the ACL and write only this
/// organisation's prefix, for the organisation trail and (`trail` delivery) orgwatch's
/// account trails.
///
/// The statements follow the CloudTrail user guide, "Amazon S3 bucket policy for
/// CloudTrail" and "Create a bucket policy for an organization trail": both the ACL check
/// and the write are conditioned on `aws:SourceArn`, the trail ARNs; an organisation trail
/// writes under `AWSLogs/<management account id>/` and `AWSLogs/<organization id>/`.
pub fn bucket_policy(
    region: &str,
    bucket: &str,
    trail_arn: &str,
    org: &OrgFacts,
    account_trails: bool,
) -> Value {
    let b = arn::bucket(region, bucket);
    let mut statements = vec![
        json!({
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [b, format!("{b}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }),
        json!({
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": b,
            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}
        }),
        json!({
            "Sid": "OrganizationTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": std::iter::once(format!("{b}/AWSLogs/{}/*", org.management_account))
                .chain(org.org_id.iter().map(|id| format!("{b}/AWSLogs/{id}/*")))
                .collect::<Vec<_>>(),
            "Condition": {
                "StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    "aws:SourceArn": trail_arn
                }
            }
        }),
    ];
    if account_trails {
        // Each member's account trail (`trail` delivery) writes its own account's prefix;
        // the trail ARNs are matched by name in any account of the organisation.
        let (key, ours) = org.source_is_ours();
        let member_trails = format!(
            "arn:{}:cloudtrail:*:*:trail/{}",
            naming::partition(region),
            naming::MEMBER_TRAIL
        );
        statements.push(json!({
            "Sid": "AccountTrailsAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": b,
            "Condition": {
                "StringEquals": {key.as_str(): ours},
                "ArnLike": {"aws:SourceArn": member_trails}
            }
        }));
        statements.push(json!({
            "Sid": "AccountTrailsWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": format!("{b}/AWSLogs/*"),
            "Condition": {
                "StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    key.as_str(): ours
                },
                "ArnLike": {"aws:SourceArn": member_trails}
            }
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The key policy statements an SSE-KMS archive needs (`hub policy --for kms-key`), to
/// add to the key's policy beside its administrators. CloudTrail user guide, "Configure
/// AWS KMS key policies for CloudTrail": CloudTrail encrypts with `kms:GenerateDataKey*`
/// under the encryption context `aws:cloudtrail:arn` of the trail's account and checks the
/// key with `kms:DescribeKey`, both conditioned on `aws:SourceArn` (for an organisation
/// trail the management account's trail ARN, "Security best practices in organization
/// trails"); log readers (here `hub replay`) need `kms:Decrypt` for CloudTrail's context.
pub fn kms_key_policy(
    region: &str,
    management_account: &str,
    trail: &str,
    readers: &[String],
    account_trails: bool,
) -> Value {
    let partition = naming::partition(region);
    let trail_arn =
        format!("arn:{partition}:cloudtrail:{region}:{management_account}:trail/{trail}");
    let mut statements = vec![
        json!({
            "Sid": "CloudTrailEncryptsOrganizationTrailLogs",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:GenerateDataKey*",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:SourceArn": trail_arn},
                "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": format!("arn:{partition}:cloudtrail:*:{management_account}:trail/*")}
            }
        }),
        json!({
            "Sid": "CloudTrailDescribesKey",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}
        }),
    ];
    if account_trails {
        let member_trails = format!(
            "arn:{partition}:cloudtrail:*:*:trail/{}",
            naming::MEMBER_TRAIL
        );
        statements.push(json!({
            "Sid": "CloudTrailEncryptsAccountTrailLogs",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": ["kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": member_trails},
                "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": member_trails}
            }
        }));
    }
    let principals: Vec<String> = readers
        .iter()
        .map(|a| format!("arn:{partition}:iam::{a}:root"))
        .collect();
    statements.push(json!({
        "Sid": "LogReadersDecrypt",
        "Effect": "Allow",
        "Principal": {"AWS": principals},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"Null": {"kms:EncryptionContext:aws:cloudtrail:arn": "false"}}
    }));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Lets the organisation's orgwatch alarms publish, and the owner manage the topic.
pub fn topic_policy(region: &str, account: &str, topic_arn: &str, org: &OrgFacts) -> Value {
    let (source_key, source) = org.source_is_ours();
    let mut statements = vec![
        json!({
            "Sid": "OwnerManages",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{}:iam::{account}:root", naming::partition(region))},
            "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:Publish", "sns:ListSubscriptionsByTopic"],
            "Resource": topic_arn
        }),
        json!({
            "Sid": "OrganizationAlarmsPublish",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {
                "StringEquals": {source_key.as_str(): source},
                "ArnLike": {"aws:SourceArn": format!("arn:{}:cloudwatch:{region}:*:alarm:{}*", naming::partition(region), naming::RULE_RESOURCE_PREFIX)}
            }
        }),
    ];
    if let Some(org_id) = &org.org_id {
        // Security Hub CloudWatch.1-14 (and Prowler's CIS checks) in a member read the
        // alarm topic's subscribers with sns:ListSubscriptionsByTopic; the topic is in the
        // central account, so the organisation's accounts may list them. They learn the
        // subscription endpoints (the central queue's ARN) and nothing else. (A standalone
        // account is the topic's owner: OwnerManages covers it.)
        statements.push(json!({
            "Sid": "OrganizationListsSubscribers",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": "sns:ListSubscriptionsByTopic",
            "Resource": topic_arn,
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": org_id}}
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Admits only the central topic and the central bus rule.
pub fn queue_policy(queue_arn: &str, topic_arn: &str, bus_rule_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CentralTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}
            },
            {
                "Sid": "CentralBusRule",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": bus_rule_arn}}
            }
        ]
    })
}

/// Accepts events from accounts of the organisation only (a standalone account: from
/// itself only).
pub fn bus_policy(bus_arn: &str, org: &OrgFacts) -> Value {
    let (key, ours) = org.principal_is_ours();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OrganizationPutEvents",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "events:PutEvents",
            "Resource": bus_arn,
            "Condition": {"StringEquals": {key: ours}}
        }]
    })
}

/// Lets the EventBridge rule of this account write into the orgwatch log group.
///
/// The documented form for EventBridge -> CloudWatch Logs targets (EventBridge user guide,
/// "CloudWatch Logs permissions" under "Using resource-based policies for Amazon
/// EventBridge"): `logs:CreateLogStream` without a condition, `logs:PutLogEvents`
/// conditioned on the rule's ARN. EventBridge creates the stream without a source ARN in
/// the request context; a condition on both made deliveries fail.
pub fn log_resource_policy(log_group_arn: &str, region: &str, account: &str) -> Value {
    let principals = json!({"Service": ["events.amazonaws.com", "delivery.logs.amazonaws.com"]});
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeCreatesStreams",
                "Effect": "Allow",
                "Principal": principals,
                "Action": "logs:CreateLogStream",
                "Resource": format!("{log_group_arn}:*")
            },
            {
                "Sid": "EventBridgeRuleWritesEvents",
                "Effect": "Allow",
                "Principal": principals,
                "Action": "logs:PutLogEvents",
                "Resource": format!("{log_group_arn}:*"),
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": arn::rule(region, account, "default", naming::EVENTS_TO_LOGS_RULE)}
                }
            }
        ]
    })
}

/// Trust for the role CloudTrail uses to write into the log group.
pub fn trail_role_trust(account: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}}
        }]
    })
}

/// Trust of the forwarding role: EventBridge (the form of the EventBridge user guide,
/// "Using IAM roles for targets": the `events.amazonaws.com` principal, `sts:AssumeRole`).
pub fn forward_role_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// What EventBridge may do with the forwarding role: put events on the central bus and
/// the control bus of `hub watch`, in every region, and nothing else.
pub fn forward_role_policy(region: &str, central_account: &str) -> Value {
    let bus = |name: &str| {
        format!(
            "arn:{}:events:*:{central_account}:event-bus/{name}",
            naming::partition(region)
        )
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": [bus(naming::CENTRAL_BUS), bus(naming::CONTROL_BUS)]
        }]
    })
}

/// What CloudTrail may do with that role: write into the orgwatch log group only (in any
/// region: the member stack that creates the role may be deployed in any one region).
pub fn trail_role_policy(region: &str, account: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": format!(
                "arn:{}:logs:*:{account}:log-group:{}:log-stream:*",
                naming::partition(region),
                naming::LOG_GROUP
            )
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(delivery: &str, regions: &str) -> HubConfig {
        let text = format!(
            "[hub]\nregions = {regions}\n[trail]\nbucket = \"acme-trail\"\n[monitoring]\ndelivery = \"{delivery}\"\n"
        );
        shared::config::parse_toml(std::path::Path::new("t.toml"), &text).expect("config")
    }

    fn org() -> OrgFacts {
        OrgFacts {
            org_id: Some("o-abc".into()),
            management_account: "111111111111".into(),
            central_account: "111111111111".into(),
            hub_account: "111111111111".into(),
            root_id: Some("r-abcd".into()),
        }
    }

    pub(crate) fn rule(id: &str, forward: bool) -> RuleDeploy {
        RuleDeploy {
            id: id.into(),
            title: "t".into(),
            filters: vec!["{ $.a = 1 }".into()],
            metric_name: format!("m-{id}"),
            namespace: "orgwatch".into(),
            threshold: 1.0,
            period: 300,
            evaluation_periods: 1,
            statistic: "Sum".into(),
            comparison: "GreaterThanOrEqualToThreshold".into(),
            treat_missing_data: "notBreaching".into(),
            forward_pattern: forward
                .then(|| json!({"detail": {"userIdentity": {"type": ["Root"]}}})),
            deployed: {
                let pack = shared::rules::Pack::builtin().expect("pack");
                let mut d = shared::rules::manifest::Deployed::of(&pack.rules()[0]);
                d.id = id.into();
                d
            },
        }
    }

    fn kinds(m: &BTreeMap<ResourceKey, Spec>) -> Vec<(String, Kind)> {
        m.keys().map(|k| (k.region.clone(), k.kind)).collect()
    }

    #[test]
    fn central_resources_per_region() {
        let c = config("eventbridge", r#"["us-east-1", "eu-west-1"]"#);
        let m = central(&c, &org());
        let home: Vec<_> = kinds(&m)
            .into_iter()
            .filter(|(r, _)| r == "us-east-1")
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            home,
            vec![
                Kind::Bucket,
                Kind::TrustedAccess,
                Kind::OrgTrail,
                Kind::Topic,
                Kind::Topic,
                Kind::DeadLetterQueue,
                Kind::Queue,
                Kind::Subscription,
                Kind::Bus,
                Kind::BusRule,
                Kind::Alarm,
                Kind::Alarm
            ]
        );
        assert_eq!(
            kinds(&m).iter().filter(|(r, _)| r == "eu-west-1").count(),
            9
        );
    }

    #[test]
    fn the_watcher_is_watched_in_every_region() {
        let c = config("eventbridge", r#"["us-east-1", "eu-west-1"]"#);
        let m = central(&c, &org());
        for region in ["us-east-1", "eu-west-1"] {
            let ops = format!("arn:aws:sns:{region}:111111111111:orgwatch-ops");
            let alarm = |name: &str| match m.get(&ResourceKey::new(
                "111111111111",
                region,
                Kind::Alarm,
                name,
            )) {
                Some(Spec::Alarm(a)) => a.clone(),
                other => panic!("{name} in {region}: {other:?}"),
            };
            let dlq = alarm("orgwatch-ops-orgwatch-alerts-dlq-depth");
            assert_eq!(
                (dlq.namespace.as_str(), dlq.metric_name.as_str()),
                ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
            );
            assert_eq!(
                dlq.dimensions,
                vec![("QueueName".to_string(), "orgwatch-alerts-dlq".to_string())]
            );
            assert_eq!(dlq.threshold, 1.0);
            let age = alarm("orgwatch-ops-orgwatch-alerts-oldest-message-age");
            assert_eq!(age.metric_name, "ApproximateAgeOfOldestMessage");
            assert_eq!(
                age.dimensions,
                vec![("QueueName".to_string(), "orgwatch-alerts".to_string())]
            );
            assert_eq!(age.threshold, 900.0);
            for a in [&dlq, &age] {
                assert_eq!(
                    a.actions,
                    vec![ops.clone()],
                    "the operations topic, not the alerts topic"
                );
                assert_eq!(a.ok_actions, vec![ops.clone()]);
            }
            let Some(Spec::Policy(p)) = m.get(&ResourceKey::new(
                "111111111111",
                region,
                Kind::Topic,
                "orgwatch-ops",
            )) else {
                panic!("no operations topic in {region}")
            };
            assert!(p.policy.contains(&format!(
                "arn:aws:cloudwatch:{region}:111111111111:alarm:orgwatch-ops-*"
            )));
        }
    }

    #[test]
    fn eventbridge_member_has_rule_filters_alarms_per_region() {
        let c = config("eventbridge", r#"["us-east-1", "eu-west-1"]"#);
        let rules = [rule("cis-4.1", false), rule("root-activity", true)];
        for region in ["us-east-1", "eu-west-1"] {
            let m = member(&c, &org(), &rules, "222222222222", region);
            let ks: Vec<Kind> = m.keys().map(|k| k.kind).collect();
            assert_eq!(
                ks,
                vec![
                    Kind::LogGroup,
                    Kind::LogPolicy,
                    Kind::ForwardRole,
                    Kind::EventsRule,
                    Kind::MetricFilter,
                    Kind::MetricFilter,
                    Kind::Alarm,
                    Kind::Alarm,
                    Kind::ForwardRule
                ]
                .into_iter()
                .filter(|k| region == "us-east-1" || *k != Kind::ForwardRole)
                .collect::<Vec<_>>(),
                "the forwarding role (IAM, global) is kept in the home region"
            );
            let forward = m
                .get(&ResourceKey::new(
                    "222222222222",
                    region,
                    Kind::ForwardRule,
                    "orgwatch-forward-root-activity",
                ))
                .expect("forward rule");
            match forward {
                Spec::EventRule(r) => assert_eq!(
                    r.target_role_arn.as_deref(),
                    Some("arn:aws:iam::222222222222:role/orgwatch-events-forward"),
                    "a bus target needs a RoleArn"
                ),
                other => panic!("{other:?}"),
            }
            let alarm = m
                .get(&ResourceKey::new(
                    "222222222222",
                    region,
                    Kind::Alarm,
                    "orgwatch-cis-4.1",
                ))
                .expect("alarm");
            match alarm {
                Spec::Alarm(a) => {
                    let topic = vec![format!("arn:aws:sns:{region}:111111111111:orgwatch-alerts")];
                    assert_eq!(a.actions, topic);
                    assert_eq!(a.ok_actions, topic, "returns to OK resolve incidents");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn trail_member_monitors_in_the_home_region_only() {
        let c = config("trail", r#"["us-east-1", "eu-west-1"]"#);
        let rules = [rule("cis-4.1", true)];
        let home = member(&c, &org(), &rules, "222222222222", "us-east-1");
        let ks: Vec<Kind> = home.keys().map(|k| k.kind).collect();
        assert_eq!(
            ks,
            vec![
                Kind::LogGroup,
                Kind::TrailRole,
                Kind::ForwardRole,
                Kind::MemberTrail,
                Kind::MetricFilter,
                Kind::Alarm,
                Kind::ForwardRule
            ]
        );
        let other = member(&c, &org(), &rules, "222222222222", "eu-west-1");
        let ks: Vec<Kind> = other.keys().map(|k| k.kind).collect();
        assert_eq!(ks, vec![Kind::ForwardRule]);
    }

    #[test]
    fn bucket_policy_denies_plain_http_and_scopes_cloudtrail() {
        let p = bucket_policy(
            "us-east-1",
            "b",
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/orgwatch",
            &org(),
            false,
        );
        let s = &p["Statement"];
        assert_eq!(s[0]["Effect"], "Deny");
        assert_eq!(
            s[1]["Condition"]["StringEquals"]["aws:SourceArn"],
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/orgwatch",
            "the ACL check names the trail"
        );
        assert_eq!(s.as_array().map(Vec::len), Some(3), "no account trails");
        assert_eq!(s[0]["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(s[2]["Resource"][1], "arn:aws:s3:::b/AWSLogs/o-abc/*");
        assert_eq!(
            s[2]["Condition"]["StringEquals"]["aws:SourceArn"],
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/orgwatch"
        );
    }

    #[test]
    fn the_organisation_trail_is_the_management_accounts() {
        // The hub runs in a delegated administrator (or keeps the central resources in
        // another account): the trail and its log prefix are still the management
        // account's, and trusted access is the organisation's.
        let c = config("eventbridge", r#"["us-east-1"]"#);
        let facts = OrgFacts {
            org_id: Some("o-abc".into()),
            management_account: "111111111111".into(),
            central_account: "333333333333".into(),
            hub_account: "111111111111".into(),
            root_id: Some("r-abcd".into()),
        };
        let m = central(&c, &facts);
        let trail = ResourceKey::new("111111111111", "us-east-1", Kind::OrgTrail, "orgwatch");
        assert!(m.contains_key(&trail), "{:?}", m.keys().collect::<Vec<_>>());
        let access = m
            .keys()
            .find(|k| k.kind == Kind::TrustedAccess)
            .expect("trusted access");
        assert_eq!(access.account, "111111111111");
        let bucket = m
            .iter()
            .find(|(k, _)| k.kind == Kind::Bucket)
            .expect("bucket");
        assert_eq!(
            bucket.0.account, "333333333333",
            "the archive is the central account's"
        );
        let Spec::Bucket(b) = bucket.1 else {
            panic!("{:?}", bucket.1)
        };
        let p: Value = serde_json::from_str(&b.policy).expect("json");
        assert_eq!(
            p["Statement"][2]["Resource"],
            json!([
                "arn:aws:s3:::acme-trail/AWSLogs/111111111111/*",
                "arn:aws:s3:::acme-trail/AWSLogs/o-abc/*"
            ])
        );
        assert_eq!(
            p["Statement"][2]["Condition"]["StringEquals"]["aws:SourceArn"],
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/orgwatch"
        );
        assert_eq!(
            p["Statement"][1]["Condition"]["StringEquals"]["aws:SourceArn"],
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/orgwatch"
        );
    }

    #[test]
    fn topic_policy_names_the_owner_account() {
        let p = topic_policy("us-east-1", "111111111111", "arn:t", &org());
        assert_eq!(
            p["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::111111111111:root"
        );
    }
}
