//! Least-privilege IAM policies, derived from one table of what the code calls.
//!
//! Every AWS operation orgwatch performs is listed in [`GRANTS`] with the identity that
//! performs it (the hub in its own account, the agent in its own account, either of them
//! in a member account through the member role), the IAM actions it needs and the
//! resources, named by [`crate::naming`] wherever AWS allows resource-level permissions.
//! `hub policy --for hub|agent|member` prints [`policy`]; `infra/iam/*.json` are generated
//! from it, and the end-to-end tests record every call the binaries make
//! (`ORGWATCH_CALL_LOG`) and check each against [`covers`].

use serde_json::{Value, json};

use crate::naming;

/// Who performs an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// `hub`, with the credentials it runs with (management or delegated account).
    Hub,
    /// `agent`, with the credentials it runs with (the central account).
    Agent,
    /// The member role, assumed by the hub (set-up) and the agent (enrichment).
    Member,
}

impl Principal {
    pub fn parse(s: &str) -> Option<Principal> {
        match s {
            "hub" => Some(Principal::Hub),
            "agent" => Some(Principal::Agent),
            "member" => Some(Principal::Member),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Hub => "hub",
            Principal::Agent => "agent",
            Principal::Member => "member",
        }
    }
}

/// One statement of a policy.
#[derive(Debug)]
pub struct Grant {
    pub principal: Principal,
    /// Statement id.
    pub sid: &'static str,
    /// (SDK service name, operation) pairs this grant exists for, as the SDK names them.
    pub calls: &'static [(&'static str, &'static str)],
    pub actions: &'static [&'static str],
    /// ARN patterns; `{bucket}`, `{trail}`, `{topic}`, `{queue}`, `{member_role}`,
    /// `{table}` are replaced from [`Names`].
    pub resources: &'static [&'static str],
    /// Why these actions and, for `*`, why no narrower resource.
    pub why: &'static str,
}

/// The configured names that scope resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub bucket: String,
    pub trail: String,
    pub topic: String,
    pub queue: String,
    pub member_role: String,
    /// The agent's DynamoDB dedupe table.
    pub table: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            bucket: "orgwatch-cloudtrail-*".into(),
            trail: naming::PREFIX.into(),
            topic: "orgwatch-alerts".into(),
            queue: "orgwatch-alerts".into(),
            member_role: naming::DEFAULT_MEMBER_ROLE.into(),
            table: "orgwatch-*".into(),
        }
    }
}

/// A trail's life cycle (the organisation trail, a member's account trail).
const TRAIL_CALLS: &[(&str, &str)] = &[
    ("CloudTrail", "CreateTrail"),
    ("CloudTrail", "UpdateTrail"),
    ("CloudTrail", "DeleteTrail"),
    ("CloudTrail", "GetTrail"),
    ("CloudTrail", "GetTrailStatus"),
    ("CloudTrail", "StartLogging"),
    ("CloudTrail", "StopLogging"),
    ("CloudTrail", "AddTags"),
    ("CloudTrail", "ListTags"),
];
const TRAIL_ACTIONS: &[&str] = &[
    "cloudtrail:CreateTrail",
    "cloudtrail:UpdateTrail",
    "cloudtrail:DeleteTrail",
    "cloudtrail:GetTrail",
    "cloudtrail:GetTrailStatus",
    "cloudtrail:StartLogging",
    "cloudtrail:StopLogging",
    "cloudtrail:AddTags",
    "cloudtrail:ListTags",
];

/// An EventBridge rule's life cycle with its targets and tags.
const RULE_CALLS: &[(&str, &str)] = &[
    ("EventBridge", "PutRule"),
    ("EventBridge", "DeleteRule"),
    ("EventBridge", "PutTargets"),
    ("EventBridge", "RemoveTargets"),
    ("EventBridge", "ListTargetsByRule"),
    ("EventBridge", "TagResource"),
    ("EventBridge", "ListTagsForResource"),
];
const RULE_ACTIONS: &[&str] = &[
    "events:PutRule",
    "events:DeleteRule",
    "events:PutTargets",
    "events:RemoveTargets",
    "events:ListTargetsByRule",
    "events:TagResource",
    "events:ListTagsForResource",
];

/// What orgwatch calls, by whom, and the permission it takes.
pub const GRANTS: &[Grant] = &[
    // ---- hub, own account ----------------------------------------------------------
    Grant {
        principal: Principal::Hub,
        sid: "DiscoverOrganization",
        calls: &[
            ("Organizations", "DescribeOrganization"),
            ("Organizations", "ListAccounts"),
            ("Organizations", "ListAccountsForParent"),
            ("Organizations", "ListOrganizationalUnitsForParent"),
            ("Organizations", "ListRoots"),
            ("STS", "GetCallerIdentity"),
        ],
        actions: &[
            "organizations:DescribeOrganization",
            "organizations:ListAccounts",
            "organizations:ListAccountsForParent",
            "organizations:ListOrganizationalUnitsForParent",
            "organizations:ListRoots",
            "organizations:ListAWSServiceAccessForOrganization",
            "sts:GetCallerIdentity",
        ],
        resources: &["*"],
        why: "which accounts to enroll; Organizations read actions and GetCallerIdentity take no resource",
    },
    Grant {
        principal: Principal::Hub,
        sid: "AssumeMemberRole",
        calls: &[("STS", "AssumeRole")],
        actions: &["sts:AssumeRole"],
        resources: &["arn:aws:iam::*:role/{member_role}"],
        why: "reach every member account through the member role",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ArchiveBucket",
        calls: &[
            ("S3", "CreateBucket"),
            ("S3", "HeadBucket"),
            ("S3", "GetBucketEncryption"),
            ("S3", "PutBucketEncryption"),
            ("S3", "GetBucketLifecycleConfiguration"),
            ("S3", "PutBucketLifecycleConfiguration"),
            ("S3", "GetBucketOwnershipControls"),
            ("S3", "PutBucketOwnershipControls"),
            ("S3", "GetBucketPolicy"),
            ("S3", "PutBucketPolicy"),
            ("S3", "GetBucketVersioning"),
            ("S3", "PutBucketVersioning"),
            ("S3", "GetPublicAccessBlock"),
            ("S3", "PutPublicAccessBlock"),
            ("S3", "PutBucketTagging"),
            ("S3", "GetBucketTagging"),
            ("S3", "ListObjectsV2"),
            ("S3", "ListObjectVersions"),
            ("S3", "DeleteBucket"),
        ],
        actions: &[
            "s3:CreateBucket",
            "s3:ListBucket",
            "s3:ListBucketVersions",
            "s3:GetEncryptionConfiguration",
            "s3:PutEncryptionConfiguration",
            "s3:GetLifecycleConfiguration",
            "s3:PutLifecycleConfiguration",
            "s3:GetBucketOwnershipControls",
            "s3:PutBucketOwnershipControls",
            "s3:GetBucketPolicy",
            "s3:PutBucketPolicy",
            "s3:GetBucketVersioning",
            "s3:PutBucketVersioning",
            "s3:GetBucketPublicAccessBlock",
            "s3:PutBucketPublicAccessBlock",
            "s3:GetBucketTagging",
            "s3:PutBucketTagging",
            "s3:DeleteBucket",
        ],
        resources: &["arn:aws:s3:::{bucket}"],
        why: "the locked-down archive bucket (DeleteBucket only with offboard --delete-archive)",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ArchiveObjects",
        calls: &[("S3", "GetObject"), ("S3", "DeleteObjects")],
        actions: &["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
        resources: &["arn:aws:s3:::{bucket}/*"],
        why: "hub replay reads archived log files; offboard --delete-archive empties the bucket",
    },
    Grant {
        principal: Principal::Hub,
        sid: "OrganizationTrail",
        calls: TRAIL_CALLS,
        actions: TRAIL_ACTIONS,
        resources: &["arn:aws:cloudtrail:*:*:trail/{trail}"],
        why: "the organisation trail",
    },
    Grant {
        principal: Principal::Hub,
        sid: "OrganizationTrailServiceAccess",
        calls: &[],
        actions: &["iam:CreateServiceLinkedRole", "iam:GetRole"],
        resources: &["arn:aws:iam::*:role/aws-service-role/cloudtrail.amazonaws.com/*"],
        why: "CloudTrail needs its service-linked role to create an organisation trail",
    },
    Grant {
        principal: Principal::Hub,
        sid: "AlertTopic",
        calls: &[
            ("SNS", "CreateTopic"),
            ("SNS", "DeleteTopic"),
            ("SNS", "GetTopicAttributes"),
            ("SNS", "SetTopicAttributes"),
            ("SNS", "Subscribe"),
            ("SNS", "ListSubscriptionsByTopic"),
            ("SNS", "TagResource"),
            ("SNS", "ListTagsForResource"),
        ],
        actions: &[
            "sns:CreateTopic",
            "sns:DeleteTopic",
            "sns:GetTopicAttributes",
            "sns:SetTopicAttributes",
            "sns:Subscribe",
            "sns:ListSubscriptionsByTopic",
            "sns:TagResource",
            "sns:ListTagsForResource",
        ],
        resources: &["arn:aws:sns:*:*:{topic}"],
        why: "the central alert topic, per monitored region",
    },
    Grant {
        principal: Principal::Hub,
        sid: "AlertSubscription",
        calls: &[
            ("SNS", "GetSubscriptionAttributes"),
            ("SNS", "SetSubscriptionAttributes"),
            ("SNS", "Unsubscribe"),
        ],
        actions: &[
            "sns:GetSubscriptionAttributes",
            "sns:SetSubscriptionAttributes",
            "sns:Unsubscribe",
        ],
        resources: &["*"],
        why: "subscription actions take no resource-level permissions",
    },
    Grant {
        principal: Principal::Hub,
        sid: "AlertQueue",
        calls: &[
            ("SQS", "CreateQueue"),
            ("SQS", "DeleteQueue"),
            ("SQS", "GetQueueUrl"),
            ("SQS", "GetQueueAttributes"),
            ("SQS", "SetQueueAttributes"),
            ("SQS", "TagQueue"),
            ("SQS", "ListQueueTags"),
        ],
        actions: &[
            "sqs:CreateQueue",
            "sqs:DeleteQueue",
            "sqs:GetQueueUrl",
            "sqs:GetQueueAttributes",
            "sqs:SetQueueAttributes",
            "sqs:TagQueue",
            "sqs:ListQueueTags",
        ],
        resources: &["arn:aws:sqs:*:*:{queue}", "arn:aws:sqs:*:*:{queue}-dlq"],
        why: "the central queue and its dead-letter queue",
    },
    Grant {
        principal: Principal::Hub,
        sid: "CentralEventBus",
        calls: &[
            ("EventBridge", "CreateEventBus"),
            ("EventBridge", "DeleteEventBus"),
            ("EventBridge", "DescribeEventBus"),
            ("EventBridge", "PutPermission"),
            ("EventBridge", "RemovePermission"),
        ],
        actions: &[
            "events:CreateEventBus",
            "events:DeleteEventBus",
            "events:DescribeEventBus",
            "events:PutPermission",
            "events:RemovePermission",
            "events:TagResource",
            "events:ListTagsForResource",
        ],
        resources: &["arn:aws:events:*:*:event-bus/orgwatch"],
        why: "the central bus that accepts the organisation's forwarded events",
    },
    Grant {
        principal: Principal::Hub,
        sid: "CentralEventRules",
        calls: RULE_CALLS,
        actions: RULE_ACTIONS,
        resources: &["arn:aws:events:*:*:rule/orgwatch/orgwatch-*"],
        why: "the rule from the central bus into the queue",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ListEventRules",
        calls: &[("EventBridge", "ListRules")],
        actions: &["events:ListRules"],
        resources: &["*"],
        why: "ListRules is filtered by name prefix in the request, not by resource",
    },
    // ---- member role ---------------------------------------------------------------
    Grant {
        principal: Principal::Member,
        sid: "Identity",
        calls: &[("STS", "GetCallerIdentity")],
        actions: &["sts:GetCallerIdentity"],
        resources: &["*"],
        why: "prove the assumed credentials belong to the account asked for",
    },
    Grant {
        principal: Principal::Member,
        sid: "LogGroup",
        calls: &[
            ("CloudWatch Logs", "CreateLogGroup"),
            ("CloudWatch Logs", "DeleteLogGroup"),
            ("CloudWatch Logs", "PutRetentionPolicy"),
            ("CloudWatch Logs", "PutMetricFilter"),
            ("CloudWatch Logs", "DeleteMetricFilter"),
            ("CloudWatch Logs", "DescribeMetricFilters"),
            ("CloudWatch Logs", "FilterLogEvents"),
            ("CloudWatch Logs", "TagResource"),
            ("CloudWatch Logs", "ListTagsForResource"),
        ],
        actions: &[
            "logs:CreateLogGroup",
            "logs:DeleteLogGroup",
            "logs:PutRetentionPolicy",
            "logs:PutMetricFilter",
            "logs:DeleteMetricFilter",
            "logs:DescribeMetricFilters",
            "logs:FilterLogEvents",
            "logs:TagResource",
            "logs:TagLogGroup",
            "logs:ListTagsForResource",
        ],
        resources: &[
            "arn:aws:logs:*:*:log-group:/orgwatch/*",
            "arn:aws:logs:*:*:log-group:/orgwatch/*:*",
        ],
        why: "the member's orgwatch log group, its filters, and reading it (agent enrichment)",
    },
    Grant {
        principal: Principal::Member,
        sid: "LogAccountLevel",
        calls: &[
            ("CloudWatch Logs", "DescribeLogGroups"),
            ("CloudWatch Logs", "DescribeResourcePolicies"),
            ("CloudWatch Logs", "PutResourcePolicy"),
            ("CloudWatch Logs", "DeleteResourcePolicy"),
        ],
        actions: &[
            "logs:DescribeLogGroups",
            "logs:DescribeResourcePolicies",
            "logs:PutResourcePolicy",
            "logs:DeleteResourcePolicy",
        ],
        resources: &["*"],
        why: "log resource policies and group listing are account-level: no resource ARN exists",
    },
    Grant {
        principal: Principal::Member,
        sid: "Alarms",
        calls: &[
            ("CloudWatch", "PutMetricAlarm"),
            ("CloudWatch", "DeleteAlarms"),
            ("CloudWatch", "TagResource"),
            ("CloudWatch", "ListTagsForResource"),
        ],
        actions: &[
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:DeleteAlarms",
            "cloudwatch:TagResource",
            "cloudwatch:ListTagsForResource",
        ],
        resources: &["arn:aws:cloudwatch:*:*:alarm:orgwatch-*"],
        why: "one alarm per rule",
    },
    Grant {
        principal: Principal::Member,
        sid: "DescribeAlarms",
        calls: &[("CloudWatch", "DescribeAlarms")],
        actions: &["cloudwatch:DescribeAlarms"],
        resources: &["*"],
        why: "DescribeAlarms filters by name prefix in the request",
    },
    Grant {
        principal: Principal::Member,
        sid: "EventRules",
        calls: RULE_CALLS,
        actions: RULE_ACTIONS,
        resources: &["arn:aws:events:*:*:rule/orgwatch-*"],
        why: "the default-bus rules: CloudTrail events into the log group, forwarding to the central bus",
    },
    Grant {
        principal: Principal::Member,
        sid: "ListEventRules",
        calls: &[("EventBridge", "ListRules")],
        actions: &["events:ListRules"],
        resources: &["*"],
        why: "ListRules is filtered by name prefix in the request, not by resource",
    },
    Grant {
        principal: Principal::Member,
        sid: "TrailDeliveryRole",
        calls: &[
            ("IAM", "CreateRole"),
            ("IAM", "DeleteRole"),
            ("IAM", "GetRole"),
            ("IAM", "UpdateAssumeRolePolicy"),
            ("IAM", "PutRolePolicy"),
            ("IAM", "GetRolePolicy"),
            ("IAM", "DeleteRolePolicy"),
            ("IAM", "TagRole"),
            ("IAM", "ListRoleTags"),
        ],
        actions: &[
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:GetRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:PutRolePolicy",
            "iam:GetRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:TagRole",
            "iam:ListRoleTags",
            "iam:PassRole",
        ],
        resources: &["arn:aws:iam::*:role/orgwatch-cloudtrail-logs"],
        why: "delivery = trail: the role CloudTrail uses to write into the log group (PassRole to CloudTrail)",
    },
    Grant {
        principal: Principal::Member,
        sid: "AccountTrail",
        calls: TRAIL_CALLS,
        actions: TRAIL_ACTIONS,
        resources: &["arn:aws:cloudtrail:*:*:trail/orgwatch-account"],
        why: "delivery = trail: the member's own trail into the archive and its log group",
    },
    // ---- agent, own account ----------------------------------------------------------
    Grant {
        principal: Principal::Agent,
        sid: "ConsumeQueue",
        calls: &[
            ("SQS", "GetQueueUrl"),
            ("SQS", "GetQueueAttributes"),
            ("SQS", "ReceiveMessage"),
            ("SQS", "DeleteMessage"),
            ("SQS", "DeleteMessageBatch"),
            ("SQS", "ChangeMessageVisibility"),
            ("SQS", "ChangeMessageVisibilityBatch"),
        ],
        actions: &[
            "sqs:GetQueueUrl",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
        ],
        resources: &["arn:aws:sqs:*:*:{queue}"],
        why: "long-poll the central queue, renew visibility, delete what every sink accepted",
    },
    Grant {
        principal: Principal::Agent,
        sid: "DeadLetter",
        calls: &[("SQS", "SendMessage")],
        actions: &["sqs:GetQueueUrl", "sqs:SendMessage"],
        resources: &["arn:aws:sqs:*:*:{queue}-dlq"],
        why: "undecodable messages go to the dead-letter queue with their reason",
    },
    Grant {
        principal: Principal::Agent,
        sid: "Identity",
        calls: &[("STS", "GetCallerIdentity")],
        actions: &["sts:GetCallerIdentity"],
        resources: &["*"],
        why: "which account the agent runs in",
    },
    Grant {
        principal: Principal::Agent,
        sid: "EnrichThroughMemberRole",
        calls: &[("STS", "AssumeRole")],
        actions: &["sts:AssumeRole"],
        resources: &["arn:aws:iam::*:role/{member_role}"],
        why: "read the orgwatch log group of the account an alarm came from",
    },
    Grant {
        principal: Principal::Agent,
        sid: "OwnLogGroup",
        calls: &[
            ("CloudWatch Logs", "DescribeMetricFilters"),
            ("CloudWatch Logs", "FilterLogEvents"),
        ],
        actions: &["logs:DescribeMetricFilters", "logs:FilterLogEvents"],
        resources: &[
            "arn:aws:logs:*:*:log-group:/orgwatch/*",
            "arn:aws:logs:*:*:log-group:/orgwatch/*:*",
        ],
        why: "enrichment of alarms from the agent's own account, which it reads without a role",
    },
    Grant {
        principal: Principal::Agent,
        sid: "DedupeTable",
        calls: &[
            ("DynamoDB", "DescribeTable"),
            ("DynamoDB", "DescribeTimeToLive"),
            ("DynamoDB", "GetItem"),
            ("DynamoDB", "PutItem"),
            ("DynamoDB", "UpdateItem"),
        ],
        actions: &[
            "dynamodb:DescribeTable",
            "dynamodb:DescribeTimeToLive",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ],
        resources: &["arn:aws:dynamodb:*:*:table/{table}"],
        why: "dedupe.store = \"dynamodb\": the table replicas share",
    },
    Grant {
        principal: Principal::Agent,
        sid: "SnsSinks",
        calls: &[("SNS", "Publish"), ("SNS", "GetTopicAttributes")],
        actions: &["sns:Publish", "sns:GetTopicAttributes"],
        resources: &["arn:aws:sns:*:*:*"],
        why: "sinks of type sns: narrow to the topics your agent.toml names",
    },
];

fn fill(pattern: &str, names: &Names) -> String {
    pattern
        .replace("{bucket}", &names.bucket)
        .replace("{trail}", &names.trail)
        .replace("{topic}", &names.topic)
        .replace("{queue}", &names.queue)
        .replace("{member_role}", &names.member_role)
        .replace("{table}", &names.table)
}

/// True when `g` is part of `principal`'s policy. The hub monitors its own account (when it
/// is enrolled, e.g. the management account) with its own credentials: its policy carries
/// the member statements too.
fn applies(g: &Grant, principal: Principal) -> bool {
    g.principal == principal || (principal == Principal::Hub && g.principal == Principal::Member)
}

/// The policy document of `principal`, statements in table order.
pub fn policy(principal: Principal, names: &Names) -> Value {
    let statements: Vec<Value> = GRANTS
        .iter()
        .filter(|g| applies(g, principal))
        .map(|g| {
            let sid = if g.principal == principal {
                g.sid.to_string()
            } else {
                format!("OwnAccount{}", g.sid)
            };
            json!({
                "Sid": sid,
                "Effect": "Allow",
                "Action": g.actions,
                "Resource": g.resources.iter().map(|r| fill(r, names)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// True when `principal`'s policy was written for this (SDK service, operation).
pub fn covers(principal: Principal, service: &str, operation: &str) -> bool {
    GRANTS.iter().filter(|g| applies(g, principal)).any(|g| {
        g.calls
            .iter()
            .any(|(s, o)| *s == service && *o == operation)
    })
}

/// Which policy a recorded call falls under: `program` (`hub`, `agent`) and `scope`
/// (`home`, `member`) as [`crate::aws::CallCounter::append_call_log`] writes them.
pub fn principal_of(program: &str, scope: &str) -> Option<Principal> {
    match (program, scope) {
        (_, "member") => Some(Principal::Member),
        ("hub", "home") => Some(Principal::Hub),
        ("agent", "home") => Some(Principal::Agent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_is_well_formed() {
        for g in GRANTS {
            assert!(!g.actions.is_empty(), "{}", g.sid);
            assert!(!g.resources.is_empty(), "{}", g.sid);
            for a in g.actions {
                let (svc, action) = a.split_once(':').unwrap_or(("", ""));
                assert!(
                    !svc.is_empty() && action.chars().next().is_some_and(char::is_uppercase),
                    "{}: {a}",
                    g.sid
                );
            }
            if g.resources.contains(&"*") {
                assert!(!g.why.is_empty(), "{}: a * needs a reason", g.sid);
            }
        }
        let mut sids: Vec<_> = GRANTS.iter().map(|g| (g.principal, g.sid)).collect();
        sids.sort();
        let n = sids.len();
        sids.dedup();
        assert_eq!(n, sids.len(), "statement ids are unique per policy");
    }

    #[test]
    fn policies_name_the_configured_resources() {
        let names = Names {
            bucket: "acme-archive".into(),
            member_role: "OrgWatchMember".into(),
            ..Names::default()
        };
        let hub = policy(Principal::Hub, &names).to_string();
        assert!(hub.contains("arn:aws:s3:::acme-archive"));
        assert!(hub.contains("arn:aws:iam::*:role/OrgWatchMember"));
        assert!(!hub.contains("{bucket}") && !hub.contains("{member_role}"));
        let member = policy(Principal::Member, &names).to_string();
        assert!(member.contains("logs:FilterLogEvents"));
        assert!(!member.contains("s3:"), "members never touch the archive");
        assert!(covers(Principal::Agent, "DynamoDB", "UpdateItem"));
        assert!(!covers(Principal::Agent, "S3", "PutBucketPolicy"));
        assert_eq!(principal_of("agent", "member"), Some(Principal::Member));
    }
}
