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
}

/// Facts about the organisation that desired state depends on.
#[derive(Clone, Debug)]
pub struct OrgFacts {
    pub org_id: String,
    pub central_account: String,
}

/// The detail-types under which CloudTrail management events reach EventBridge.
pub const CLOUDTRAIL_DETAIL_TYPES: [&str; 2] = [
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
];
/// Rule state that also delivers read-only management events.
pub const ALL_MANAGEMENT_EVENTS: &str = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS";

/// Central resources: the bucket and organisation trail (home region) and, per region, the
/// topic, queue, dead-letter queue, subscription, bus and bus rule.
pub fn central(config: &HubConfig, org: &OrgFacts) -> BTreeMap<ResourceKey, Spec> {
    let mut out = BTreeMap::new();
    let acct = org.central_account.as_str();
    let home = config.home_region();
    let bucket = &config.trail.bucket;
    let trail_arn = arn::trail(home, acct, &config.trail.name);
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
            policy: bucket_policy(home, bucket, &trail_arn, org).to_string(),
        }),
    );
    out.insert(
        ResourceKey::new(acct, home, Kind::OrgTrail, config.trail.name.clone()),
        Spec::Trail(TrailSpec {
            bucket: bucket.clone(),
            multi_region: true,
            global_service_events: true,
            log_file_validation: true,
            organization: true,
            logging: true,
            log_group_arn: None,
            logs_role_arn: None,
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
        out.insert(
            ResourceKey::new(acct, r, Kind::DeadLetterQueue, dlq),
            Spec::Queue(QueueSpec {
                policy: String::new(),
                redrive: String::new(),
                sse: true,
                retention_secs: 1_209_600,
            }),
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
                pattern: json!({ "detail-type": CLOUDTRAIL_DETAIL_TYPES }).to_string(),
                state: "ENABLED".into(),
                target_id: naming::QUEUE_TARGET_ID.into(),
                target_arn: queue_arn,
                target_role_arn: None,
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
                        pattern: json!({ "detail-type": CLOUDTRAIL_DETAIL_TYPES }).to_string(),
                        state: ALL_MANAGEMENT_EVENTS.into(),
                        target_id: naming::LOG_TARGET_ID.into(),
                        target_arn: log_group_arn.clone(),
                        target_role_arn: None,
                    }),
                );
            }
            Delivery::Trail => {
                let role_arn = arn::role(region, account, naming::TRAIL_LOGS_ROLE);
                out.insert(
                    ResourceKey::new(account, region, Kind::TrailRole, naming::TRAIL_LOGS_ROLE),
                    Spec::Role(RoleSpec {
                        trust: trail_role_trust(account).to_string(),
                        policy: trail_role_policy(&log_group_arn).to_string(),
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
                }),
            );
        }
    }
    // Forwarding is regional in both modes: EventBridge sees each region's events.
    let bus_arn = arn::bus(region, &org.central_account, naming::CENTRAL_BUS);
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
                    pattern: pattern.to_string(),
                    state: ALL_MANAGEMENT_EVENTS.into(),
                    target_id: naming::BUS_TARGET_ID.into(),
                    target_arn: bus_arn.clone(),
                    target_role_arn: None,
                }),
            );
        }
    }
    out
}

/// Denies plain-HTTP access; lets CloudTrail check the ACL and write only this
/// organisation's prefix, for the organisation trail and orgwatch's account trails.
pub fn bucket_policy(region: &str, bucket: &str, trail_arn: &str, org: &OrgFacts) -> Value {
    let b = arn::bucket(region, bucket);
    let member_trails = format!(
        "arn:{}:cloudtrail:*:*:trail/{}",
        naming::partition(region),
        naming::MEMBER_TRAIL
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [b, format!("{b}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
            },
            {
                "Sid": "CloudTrailAclCheck",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:GetBucketAcl",
                "Resource": b,
                "Condition": {"StringEquals": {"aws:SourceOrgID": org.org_id}}
            },
            {
                "Sid": "OrganizationTrailWrite",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": [
                    format!("{b}/AWSLogs/{}/*", org.central_account),
                    format!("{b}/AWSLogs/{}/*", org.org_id)
                ],
                "Condition": {
                    "StringEquals": {
                        "s3:x-amz-acl": "bucket-owner-full-control",
                        "aws:SourceArn": trail_arn
                    }
                }
            },
            {
                "Sid": "AccountTrailsWrite",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": format!("{b}/AWSLogs/*"),
                "Condition": {
                    "StringEquals": {
                        "s3:x-amz-acl": "bucket-owner-full-control",
                        "aws:SourceOrgID": org.org_id
                    },
                    "ArnLike": {"aws:SourceArn": member_trails}
                }
            }
        ]
    })
}

/// Lets the organisation's orgwatch alarms publish, and the owner manage the topic.
pub fn topic_policy(region: &str, account: &str, topic_arn: &str, org: &OrgFacts) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerManages",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:{}:iam::{account}:root", naming::partition(region))},
                "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:Publish", "sns:ListSubscriptionsByTopic"],
                "Resource": topic_arn
            },
            {
                "Sid": "OrganizationAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceOrgID": org.org_id},
                    "ArnLike": {"aws:SourceArn": format!("arn:{}:cloudwatch:{region}:*:alarm:{}*", naming::partition(region), naming::RULE_RESOURCE_PREFIX)}
                }
            }
        ]
    })
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

/// Accepts events from accounts of the organisation only.
pub fn bus_policy(bus_arn: &str, org: &OrgFacts) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OrganizationPutEvents",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "events:PutEvents",
            "Resource": bus_arn,
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": org.org_id}}
        }]
    })
}

/// Lets EventBridge rules of this account write into the orgwatch log group.
pub fn log_resource_policy(log_group_arn: &str, region: &str, account: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "EventBridgeToOrgwatchLogGroup",
            "Effect": "Allow",
            "Principal": {"Service": ["events.amazonaws.com", "delivery.logs.amazonaws.com"]},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": format!("{log_group_arn}:*"),
            "Condition": {
                "ArnEquals": {"aws:SourceArn": arn::rule(region, account, "default", naming::EVENTS_TO_LOGS_RULE)}
            }
        }]
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

/// What CloudTrail may do with that role: write into the orgwatch log group only.
pub fn trail_role_policy(log_group_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": format!("{log_group_arn}:log-stream:*")
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
            org_id: "o-abc".into(),
            central_account: "111111111111".into(),
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
                Kind::OrgTrail,
                Kind::Topic,
                Kind::DeadLetterQueue,
                Kind::Queue,
                Kind::Subscription,
                Kind::Bus,
                Kind::BusRule
            ]
        );
        assert_eq!(
            kinds(&m).iter().filter(|(r, _)| r == "eu-west-1").count(),
            6
        );
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
                    Kind::EventsRule,
                    Kind::MetricFilter,
                    Kind::MetricFilter,
                    Kind::Alarm,
                    Kind::Alarm,
                    Kind::ForwardRule
                ]
            );
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
        );
        let s = &p["Statement"];
        assert_eq!(s[0]["Effect"], "Deny");
        assert_eq!(s[0]["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(s[2]["Resource"][1], "arn:aws:s3:::b/AWSLogs/o-abc/*");
        assert_eq!(
            s[2]["Condition"]["StringEquals"]["aws:SourceArn"],
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
