//! Least-privilege IAM policies, derived from one table of what the code calls.
//!
//! Every AWS operation orgwatch performs is listed in [`GRANTS`] with the identity that
//! performs it (the hub in its own account, the agent in its own account, the hub in a
//! member account through the member role, the agent in a member account through its
//! read-only role), the IAM actions it needs and the resources, named by [`crate::naming`]
//! wherever AWS allows resource-level permissions.
//! `hub policy --for hub|agent|member|agent-member` prints [`policy`]; `infra/iam/*.json`
//! are generated from it, and the end-to-end tests record every call the binaries make
//! (`ORGWATCH_CALL_LOG`) and check each against [`covers`].
//!
//! Resource types and condition keys follow the Service Authorization Reference
//! (<https://docs.aws.amazon.com/service-authorization/latest/reference/>): an action that
//! has no resource type there takes only `"*"`, and the contract test
//! `e2e::contract::grants_match_the_service_authorization_reference` checks every action
//! of the table against the reference's resource types.
//!
//! No principal may write IAM roles or their policies: the service roles CloudTrail and
//! EventBridge assume come from the member stack (`infra/cloudformation/member-role.yaml`);
//! the hub and the member role only read and pass them.

use serde_json::{Value, json};

use crate::naming;

/// Who performs an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// `hub`, with the credentials it runs with (management or delegated account).
    Hub,
    /// `agent`, with the credentials it runs with (the central account).
    Agent,
    /// The member role, assumed by the hub to set a member account up.
    Member,
    /// The agent's read-only role in member accounts ([`naming::AGENT_MEMBER_ROLE`]),
    /// assumed to enrich alarms from the member's log group.
    AgentMember,
    /// The member role in the central account (`hub.central_account`, when it is not the
    /// hub's own): the archive bucket, the alert topic and queue, the central bus.
    Central,
}

impl Principal {
    /// Every principal, in the order `hub policy` documents them.
    pub const ALL: [Principal; 5] = [
        Principal::Hub,
        Principal::Agent,
        Principal::Member,
        Principal::AgentMember,
        Principal::Central,
    ];

    pub fn parse(s: &str) -> Option<Principal> {
        Principal::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Hub => "hub",
            Principal::Agent => "agent",
            Principal::Member => "member",
            Principal::AgentMember => "agent-member",
            Principal::Central => "central",
        }
    }
}

/// One condition of a statement: `{operator: {key: values}}`. Values are filled like
/// resources.
#[derive(Debug)]
pub struct Condition {
    pub operator: &'static str,
    pub key: &'static str,
    pub values: &'static [&'static str],
}

/// When a statement is part of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Always,
    /// Only when the archive is SSE-KMS encrypted (`trail.kms_key_id`).
    KmsKey,
    /// Only when the agent has sinks of type `sns` (their topic ARNs).
    SnsTopics,
    /// Only when `hub enroll` manages the guardrail SCP (`[guardrail] scp = true`).
    Guardrail,
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
    /// ARN patterns, written for the `aws` partition (`arn:aws:` becomes the configured
    /// partition's prefix); `{bucket}`, `{trail}`, `{topic}`, `{ops_topic}`, `{queue}`, `{member_role}`,
    /// `{agent_member_role}`, `{table}`, `{control_queue}`, `{lease_table}`, `{kms_key}` are replaced from [`Names`], and
    /// `{sns_topic}` stands for each of the agent's SNS topics.
    pub resources: &'static [&'static str],
    pub conditions: &'static [Condition],
    pub needs: Needs,
    /// Why these actions and, for `*`, why no narrower resource.
    pub why: &'static str,
}

/// The configured names that scope resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// ARN partition (`aws`, `aws-cn`, `aws-us-gov`), from the region
    /// ([`naming::partition`]).
    pub partition: String,
    pub bucket: String,
    pub trail: String,
    pub topic: String,
    pub queue: String,
    /// The operations topic (`[alerts] ops_topic`).
    pub ops_topic: String,
    pub member_role: String,
    /// The agent's read-only role in member accounts.
    pub agent_member_role: String,
    /// The agent's DynamoDB dedupe table.
    pub table: String,
    /// The control queue of `hub watch` (`[watch] queue`).
    pub control_queue: String,
    /// The lease table of `hub watch` (`[watch] lease_table`).
    pub lease_table: String,
    /// The archive's KMS key ARN, when SSE-KMS is configured.
    pub kms_key: Option<String>,
    /// Topic ARNs of the agent's `sns` sinks.
    pub sns_topics: Vec<String>,
    /// `hub enroll` creates and attaches the guardrail SCP.
    pub guardrail: bool,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            partition: "aws".into(),
            bucket: "orgwatch-cloudtrail-*".into(),
            trail: naming::PREFIX.into(),
            topic: "orgwatch-alerts".into(),
            queue: "orgwatch-alerts".into(),
            ops_topic: "orgwatch-ops".into(),
            member_role: naming::DEFAULT_MEMBER_ROLE.into(),
            agent_member_role: naming::AGENT_MEMBER_ROLE.into(),
            table: "orgwatch-*".into(),
            control_queue: naming::DEFAULT_CONTROL_QUEUE.into(),
            lease_table: naming::DEFAULT_LEASE_TABLE.into(),
            kms_key: None,
            sns_topics: Vec::new(),
            guardrail: false,
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

/// An EventBridge rule's life cycle and tags; its targets are [`TARGET_CALLS`].
const RULE_CALLS: &[(&str, &str)] = &[
    ("EventBridge", "PutRule"),
    ("EventBridge", "DeleteRule"),
    ("EventBridge", "RemoveTargets"),
    ("EventBridge", "ListTargetsByRule"),
    ("EventBridge", "TagResource"),
    ("EventBridge", "ListTagsForResource"),
];
const RULE_ACTIONS: &[&str] = &[
    "events:PutRule",
    "events:DeleteRule",
    "events:RemoveTargets",
    "events:ListTargetsByRule",
    "events:TagResource",
    "events:ListTagsForResource",
];
/// PutTargets on its own: it is the one rule action with the `events:TargetArn` condition
/// key (Service Authorization Reference, Amazon EventBridge), so each principal may point
/// its rules at orgwatch's own targets only.
const TARGET_CALLS: &[(&str, &str)] = &[("EventBridge", "PutTargets")];

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
            ("Organizations", "ListAWSServiceAccessForOrganization"),
            ("Organizations", "ListDelegatedAdministrators"),
            ("STS", "GetCallerIdentity"),
        ],
        actions: &[
            "organizations:DescribeOrganization",
            "organizations:ListAccounts",
            "organizations:ListAccountsForParent",
            "organizations:ListOrganizationalUnitsForParent",
            "organizations:ListRoots",
            "organizations:ListAWSServiceAccessForOrganization",
            "organizations:ListDelegatedAdministrators",
            "sts:GetCallerIdentity",
        ],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "which accounts to enroll, and whether CloudTrail may create an organisation trail; Organizations read actions and GetCallerIdentity take no resource",
    },
    Grant {
        principal: Principal::Hub,
        sid: "CloudTrailTrustedAccess",
        calls: &[("Organizations", "EnableAWSServiceAccess")],
        actions: &["organizations:EnableAWSServiceAccess"],
        resources: &["*"],
        conditions: &[Condition {
            operator: "StringEquals",
            key: "organizations:ServicePrincipal",
            values: &["cloudtrail.amazonaws.com"],
        }],
        needs: Needs::Always,
        why: "an organisation trail needs CloudTrail trusted access (CreateTrail: CloudTrailAccessNotEnabledException); the action has no resource type, the condition allows CloudTrail only",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ReadGuardrail",
        calls: &[
            ("Organizations", "ListRoots"),
            ("Organizations", "ListPolicies"),
            ("Organizations", "DescribePolicy"),
            ("Organizations", "ListTargetsForPolicy"),
            ("Organizations", "ListTagsForResource"),
        ],
        actions: &[
            "organizations:ListRoots",
            "organizations:ListPolicies",
            "organizations:DescribePolicy",
            "organizations:ListTargetsForPolicy",
            "organizations:ListTagsForResource",
        ],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "whether the guardrail SCP exists and where it is attached (status reports it; an SCP left after [guardrail] scp is unset is removed)",
    },
    Grant {
        principal: Principal::Hub,
        sid: "Guardrail",
        calls: &[
            ("Organizations", "CreatePolicy"),
            ("Organizations", "UpdatePolicy"),
            ("Organizations", "DeletePolicy"),
            ("Organizations", "AttachPolicy"),
            ("Organizations", "DetachPolicy"),
        ],
        actions: &[
            "organizations:CreatePolicy",
            "organizations:UpdatePolicy",
            "organizations:DeletePolicy",
            "organizations:AttachPolicy",
            "organizations:DetachPolicy",
        ],
        resources: &["*"],
        conditions: &[Condition {
            operator: "StringEquals",
            key: "organizations:PolicyType",
            values: &["SERVICE_CONTROL_POLICY"],
        }],
        needs: Needs::Guardrail,
        why: "[guardrail] scp: create, update, attach, detach and delete the orgwatch SCP; the condition keeps it to service control policies",
    },
    Grant {
        principal: Principal::Hub,
        sid: "TagGuardrail",
        calls: &[("Organizations", "TagResource")],
        actions: &["organizations:TagResource"],
        resources: &["*"],
        conditions: &[Condition {
            operator: "ForAllValues:StringEquals",
            key: "aws:TagKeys",
            values: &["orgwatch:managed"],
        }],
        needs: Needs::Guardrail,
        why: "CreatePolicy with tags (and --adopt) tags the SCP orgwatch:managed; only that tag key",
    },
    Grant {
        principal: Principal::Hub,
        sid: "AssumeMemberRole",
        calls: &[("STS", "AssumeRole")],
        actions: &["sts:AssumeRole"],
        resources: &["arn:aws:iam::*:role/{member_role}"],
        conditions: &[],
        needs: Needs::Always,
        why: "reach every member account through the member role",
    },
    Grant {
        principal: Principal::Central,
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
        conditions: &[],
        needs: Needs::Always,
        why: "the locked-down archive bucket (DeleteBucket only with offboard --delete-archive)",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ReadArchive",
        calls: &[("S3", "GetObject")],
        actions: &["s3:GetObject"],
        resources: &["arn:aws:s3:::{bucket}/*"],
        conditions: &[],
        needs: Needs::Always,
        why: "hub replay reads archived log files",
    },
    Grant {
        principal: Principal::Central,
        sid: "RuleManifest",
        calls: &[
            ("S3", "GetObject"),
            ("S3", "PutObject"),
            ("S3", "DeleteObject"),
        ],
        actions: &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        resources: &["arn:aws:s3:::{bucket}/orgwatch/rules.json"],
        conditions: &[],
        needs: Needs::Always,
        why: "the rule manifest the agent classifies by (written with SSE-S3, so no key grant)",
    },
    Grant {
        principal: Principal::Central,
        sid: "EmptyArchive",
        calls: &[("S3", "DeleteObjects")],
        actions: &["s3:DeleteObject", "s3:DeleteObjectVersion"],
        resources: &["arn:aws:s3:::{bucket}/*"],
        conditions: &[],
        needs: Needs::Always,
        why: "offboard --delete-archive empties the bucket",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ArchiveKey",
        calls: &[],
        actions: &["kms:Decrypt", "kms:DescribeKey"],
        resources: &["{kms_key}"],
        conditions: &[Condition {
            operator: "StringLike",
            key: "kms:ViaService",
            values: &["s3.*.amazonaws.com"],
        }],
        needs: Needs::KmsKey,
        why: "SSE-KMS archive: hub replay decrypts log files through S3 (the key policy must allow it too: hub policy --for kms-key)",
    },
    Grant {
        principal: Principal::Hub,
        sid: "ReadArchiveKeyPolicy",
        calls: &[("KMS", "GetKeyPolicy")],
        actions: &["kms:GetKeyPolicy"],
        resources: &["{kms_key}"],
        conditions: &[],
        needs: Needs::KmsKey,
        why: "hub doctor checks that the key policy lets CloudTrail encrypt with the key",
    },
    Grant {
        principal: Principal::Hub,
        sid: "OrganizationTrail",
        calls: TRAIL_CALLS,
        actions: TRAIL_ACTIONS,
        resources: &["arn:aws:cloudtrail:*:*:trail/{trail}"],
        conditions: &[],
        needs: Needs::Always,
        why: "the organisation trail",
    },
    Grant {
        principal: Principal::Hub,
        sid: "OrganizationTrailServiceLinkedRole",
        calls: &[],
        actions: &["iam:CreateServiceLinkedRole", "iam:GetRole"],
        resources: &["arn:aws:iam::*:role/aws-service-role/cloudtrail.amazonaws.com/*"],
        conditions: &[],
        needs: Needs::Always,
        why: "CloudTrail needs its service-linked role to create an organisation trail",
    },
    Grant {
        principal: Principal::Central,
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
        resources: &["arn:aws:sns:*:*:{topic}", "arn:aws:sns:*:*:{ops_topic}"],
        conditions: &[],
        needs: Needs::Always,
        why: "the central alert topic and the operations topic, per monitored region",
    },
    Grant {
        principal: Principal::Central,
        sid: "OperationsAlarms",
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
        resources: &["arn:aws:cloudwatch:*:*:alarm:orgwatch-ops-*"],
        conditions: &[],
        needs: Needs::Always,
        why: "the alarms on the alert queue's dead-letter depth and oldest message, notifying the operations topic",
    },
    Grant {
        principal: Principal::Central,
        sid: "DescribeOperationsAlarms",
        calls: &[("CloudWatch", "DescribeAlarms")],
        actions: &["cloudwatch:DescribeAlarms"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "DescribeAlarms has no resource type (Service Authorization Reference, Amazon CloudWatch)",
    },
    Grant {
        principal: Principal::Central,
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
        conditions: &[],
        needs: Needs::Always,
        why: "subscription actions take no resource-level permissions",
    },
    Grant {
        principal: Principal::Central,
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
        resources: &[
            "arn:aws:sqs:*:*:{queue}",
            "arn:aws:sqs:*:*:{queue}-dlq",
            "arn:aws:sqs:*:*:{control_queue}",
            "arn:aws:sqs:*:*:{control_queue}-dlq",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "the central queue, the control queue of hub watch, and their dead-letter queues",
    },
    Grant {
        principal: Principal::Central,
        sid: "EventBus",
        calls: &[
            ("EventBridge", "CreateEventBus"),
            ("EventBridge", "DeleteEventBus"),
            ("EventBridge", "DescribeEventBus"),
        ],
        actions: &[
            "events:CreateEventBus",
            "events:DeleteEventBus",
            "events:DescribeEventBus",
            "events:TagResource",
            "events:ListTagsForResource",
        ],
        resources: &[
            "arn:aws:events:*:*:event-bus/orgwatch",
            "arn:aws:events:*:*:event-bus/orgwatch-control",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "the central bus that accepts the organisation's forwarded events, and the control bus of hub watch",
    },
    Grant {
        principal: Principal::Central,
        sid: "EventBusPolicy",
        calls: &[
            ("EventBridge", "PutPermission"),
            ("EventBridge", "RemovePermission"),
        ],
        actions: &["events:PutPermission", "events:RemovePermission"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "PutPermission and RemovePermission have no resource type (Service Authorization Reference, Amazon EventBridge): only * matches",
    },
    Grant {
        principal: Principal::Central,
        sid: "EventRules",
        calls: RULE_CALLS,
        actions: RULE_ACTIONS,
        resources: &[
            "arn:aws:events:*:*:rule/orgwatch/orgwatch-*",
            "arn:aws:events:*:*:rule/orgwatch-control/orgwatch-*",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "the rules from the central bus into the queue and on to the control bus, and from the control bus into the control queue",
    },
    Grant {
        principal: Principal::Central,
        sid: "EventTargets",
        calls: TARGET_CALLS,
        actions: &["events:PutTargets"],
        resources: &[
            "arn:aws:events:*:*:rule/orgwatch/orgwatch-*",
            "arn:aws:events:*:*:rule/orgwatch-control/orgwatch-*",
        ],
        conditions: &[Condition {
            operator: "ArnLike",
            key: "events:TargetArn",
            values: &[
                "arn:aws:sqs:*:*:{queue}",
                "arn:aws:sqs:*:*:{control_queue}",
                "arn:aws:events:*:*:event-bus/orgwatch-control",
            ],
        }],
        needs: Needs::Always,
        why: "the central rules' targets: the queue, the control bus, the control queue",
    },
    Grant {
        principal: Principal::Central,
        sid: "WatchLeaseTable",
        calls: &[
            ("DynamoDB", "CreateTable"),
            ("DynamoDB", "DescribeTable"),
            ("DynamoDB", "DeleteTable"),
            ("DynamoDB", "UpdateTable"),
            ("DynamoDB", "TagResource"),
            ("DynamoDB", "ListTagsOfResource"),
        ],
        actions: &[
            "dynamodb:CreateTable",
            "dynamodb:DescribeTable",
            "dynamodb:DeleteTable",
            "dynamodb:UpdateTable",
            "dynamodb:TagResource",
            "dynamodb:ListTagsOfResource",
        ],
        resources: &["arn:aws:dynamodb:*:*:table/{lease_table}"],
        conditions: &[],
        needs: Needs::Always,
        why: "the table of the hub watch lease",
    },
    Grant {
        principal: Principal::Central,
        sid: "WatchLease",
        calls: &[
            ("DynamoDB", "GetItem"),
            ("DynamoDB", "PutItem"),
            ("DynamoDB", "DeleteItem"),
        ],
        actions: &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
        ],
        resources: &["arn:aws:dynamodb:*:*:table/{lease_table}"],
        conditions: &[],
        needs: Needs::Always,
        why: "hub watch takes, renews and gives up its lease with conditional writes",
    },
    Grant {
        principal: Principal::Central,
        sid: "WatchControlQueue",
        calls: &[
            ("SQS", "ReceiveMessage"),
            ("SQS", "DeleteMessage"),
            ("SQS", "ChangeMessageVisibility"),
            ("SQS", "SendMessage"),
        ],
        actions: &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:SendMessage",
        ],
        resources: &[
            "arn:aws:sqs:*:*:{control_queue}",
            "arn:aws:sqs:*:*:{control_queue}-dlq",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "hub watch consumes the control queue, backs failures off, and dead-letters what it gives up on with the reason",
    },
    Grant {
        principal: Principal::Central,
        sid: "ListEventRules",
        calls: &[("EventBridge", "ListRules")],
        actions: &["events:ListRules"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "ListRules has no resource type; it is filtered by name prefix in the request",
    },
    // ---- member role ---------------------------------------------------------------
    Grant {
        principal: Principal::Member,
        sid: "Identity",
        calls: &[("STS", "GetCallerIdentity")],
        actions: &["sts:GetCallerIdentity"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
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
            "logs:TagResource",
            "logs:TagLogGroup",
            "logs:ListTagsForResource",
        ],
        resources: &[
            "arn:aws:logs:*:*:log-group:/orgwatch/*",
            "arn:aws:logs:*:*:log-group:/orgwatch/*:*",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "the member's orgwatch log group and its filters",
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
        conditions: &[],
        needs: Needs::Always,
        why: "log resource policies and group listing are account-level: no resource type exists",
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
        conditions: &[],
        needs: Needs::Always,
        why: "one alarm per rule",
    },
    Grant {
        principal: Principal::Member,
        sid: "DescribeAlarms",
        calls: &[("CloudWatch", "DescribeAlarms")],
        actions: &["cloudwatch:DescribeAlarms"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "DescribeAlarms has no resource type; it filters by name prefix in the request",
    },
    Grant {
        principal: Principal::Member,
        sid: "EventRules",
        calls: RULE_CALLS,
        actions: RULE_ACTIONS,
        resources: &["arn:aws:events:*:*:rule/orgwatch-*"],
        conditions: &[],
        needs: Needs::Always,
        why: "the default-bus rules: CloudTrail events into the log group, forwarding to the central bus",
    },
    Grant {
        principal: Principal::Member,
        sid: "EventTargets",
        calls: TARGET_CALLS,
        actions: &["events:PutTargets"],
        resources: &["arn:aws:events:*:*:rule/orgwatch-*"],
        conditions: &[Condition {
            operator: "ArnLike",
            key: "events:TargetArn",
            values: &[
                "arn:aws:logs:*:*:log-group:/orgwatch/*",
                "arn:aws:events:*:*:event-bus/orgwatch",
                "arn:aws:events:*:*:event-bus/orgwatch-control",
            ],
        }],
        needs: Needs::Always,
        why: "targets of the default-bus rules: the orgwatch log group, the central bus, and (the management account's organisation-events rule) the control bus only",
    },
    Grant {
        principal: Principal::Member,
        sid: "ListEventRules",
        calls: &[
            ("EventBridge", "ListRules"),
            ("EventBridge", "ListRuleNamesByTarget"),
        ],
        actions: &["events:ListRules", "events:ListRuleNamesByTarget"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "ListRules and ListRuleNamesByTarget have no resource type; they are filtered by name prefix and by target ARN in the request",
    },
    Grant {
        principal: Principal::Member,
        sid: "RegionOptStatus",
        calls: &[("Account", "GetRegionOptStatus")],
        actions: &["account:GetRegionOptStatus"],
        resources: &["arn:aws:account::*:account"],
        conditions: &[],
        needs: Needs::Always,
        why: "hub doctor: is each opt-in region of hub.regions enabled in the account",
    },
    Grant {
        principal: Principal::Member,
        sid: "ReadServiceRoles",
        calls: &[("IAM", "GetRole"), ("IAM", "GetRolePolicy")],
        actions: &["iam:GetRole", "iam:GetRolePolicy"],
        resources: &[
            "arn:aws:iam::*:role/orgwatch-cloudtrail-logs",
            "arn:aws:iam::*:role/orgwatch-events-forward",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "check the member stack's service roles; nothing here may write IAM (a role whose policies one can write is one's own admin role)",
    },
    Grant {
        principal: Principal::Member,
        sid: "PassTrailRole",
        calls: &[],
        actions: &["iam:PassRole"],
        resources: &["arn:aws:iam::*:role/orgwatch-cloudtrail-logs"],
        conditions: &[Condition {
            operator: "StringEquals",
            key: "iam:PassedToService",
            values: &["cloudtrail.amazonaws.com"],
        }],
        needs: Needs::Always,
        why: "delivery = trail: CreateTrail/UpdateTrail name the role CloudTrail writes into the log group with",
    },
    Grant {
        principal: Principal::Member,
        sid: "PassForwardRole",
        calls: &[],
        actions: &["iam:PassRole"],
        resources: &["arn:aws:iam::*:role/orgwatch-events-forward"],
        conditions: &[Condition {
            operator: "StringEquals",
            key: "iam:PassedToService",
            values: &["events.amazonaws.com"],
        }],
        needs: Needs::Always,
        why: "PutTargets names the role EventBridge puts forwarded events on the central bus with",
    },
    Grant {
        principal: Principal::Member,
        sid: "AccountTrail",
        calls: TRAIL_CALLS,
        actions: TRAIL_ACTIONS,
        resources: &["arn:aws:cloudtrail:*:*:trail/orgwatch-account"],
        conditions: &[],
        needs: Needs::Always,
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
        conditions: &[],
        needs: Needs::Always,
        why: "long-poll the central queue, renew visibility, delete what every sink accepted",
    },
    Grant {
        principal: Principal::Agent,
        sid: "RuleManifest",
        calls: &[("S3", "GetObject")],
        actions: &["s3:GetObject"],
        resources: &["arn:aws:s3:::{bucket}/orgwatch/rules.json"],
        conditions: &[],
        needs: Needs::Always,
        why: "read the rules the hub deployed ([rules] manifest), at start and on change",
    },
    Grant {
        principal: Principal::Agent,
        sid: "DeadLetter",
        calls: &[("SQS", "SendMessage")],
        actions: &["sqs:GetQueueUrl", "sqs:SendMessage"],
        resources: &["arn:aws:sqs:*:*:{queue}-dlq"],
        conditions: &[],
        needs: Needs::Always,
        why: "undecodable messages go to the dead-letter queue with their reason",
    },
    Grant {
        principal: Principal::Agent,
        sid: "Identity",
        calls: &[("STS", "GetCallerIdentity")],
        actions: &["sts:GetCallerIdentity"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "which account the agent runs in",
    },
    Grant {
        principal: Principal::Agent,
        sid: "EnrichThroughReaderRole",
        calls: &[("STS", "AssumeRole")],
        actions: &["sts:AssumeRole"],
        resources: &["arn:aws:iam::*:role/{agent_member_role}"],
        conditions: &[],
        needs: Needs::Always,
        why: "read the orgwatch log group of the account an alarm came from, through the read-only role (never the hub's member role)",
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
        conditions: &[],
        needs: Needs::Always,
        why: "enrichment of alarms from the agent's own account, which it reads without a role",
    },
    Grant {
        principal: Principal::Agent,
        sid: "DedupeTable",
        calls: &[
            ("DynamoDB", "DescribeTable"),
            ("DynamoDB", "DescribeTimeToLive"),
            ("DynamoDB", "BatchGetItem"),
            ("DynamoDB", "PutItem"),
            ("DynamoDB", "UpdateItem"),
            ("DynamoDB", "TransactWriteItems"),
            ("DynamoDB", "BatchWriteItem"),
        ],
        // TransactWriteItems has no action of its own: its Put and Update are governed by
        // PutItem and UpdateItem (DynamoDB developer guide, "Using IAM with DynamoDB
        // transactions").
        actions: &[
            "dynamodb:DescribeTable",
            "dynamodb:DescribeTimeToLive",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
        ],
        resources: &["arn:aws:dynamodb:*:*:table/{table}"],
        conditions: &[],
        needs: Needs::Always,
        why: "dedupe.store = \"dynamodb\": the table replicas share",
    },
    Grant {
        principal: Principal::Agent,
        sid: "SnsSinks",
        calls: &[("SNS", "Publish"), ("SNS", "GetTopicAttributes")],
        actions: &["sns:Publish", "sns:GetTopicAttributes"],
        resources: &["{sns_topic}"],
        conditions: &[],
        needs: Needs::SnsTopics,
        why: "sinks of type sns: exactly the topics named (hub policy --for agent --sns-topic ARN)",
    },
    // ---- agent's read-only role in members ---------------------------------------------
    Grant {
        principal: Principal::AgentMember,
        sid: "Identity",
        calls: &[("STS", "GetCallerIdentity")],
        actions: &["sts:GetCallerIdentity"],
        resources: &["*"],
        conditions: &[],
        needs: Needs::Always,
        why: "prove the assumed credentials belong to the account asked for",
    },
    Grant {
        principal: Principal::AgentMember,
        sid: "ReadLogGroup",
        calls: &[
            ("CloudWatch Logs", "DescribeMetricFilters"),
            ("CloudWatch Logs", "FilterLogEvents"),
        ],
        actions: &["logs:DescribeMetricFilters", "logs:FilterLogEvents"],
        resources: &[
            "arn:aws:logs:*:*:log-group:/orgwatch/*",
            "arn:aws:logs:*:*:log-group:/orgwatch/*:*",
        ],
        conditions: &[],
        needs: Needs::Always,
        why: "enrichment reads the events behind an alarm from the orgwatch log group, and nothing else",
    },
];

/// `pattern` with the configured names and partition; `{sns_topic}` gives one resource
/// per topic (none without topics).
fn fill(pattern: &str, names: &Names) -> Vec<String> {
    if pattern == "{sns_topic}" {
        return names.sns_topics.clone();
    }
    if pattern == "{kms_key}" {
        return names.kms_key.iter().cloned().collect();
    }
    let mut out = pattern
        .replace("{bucket}", &names.bucket)
        .replace("{trail}", &names.trail)
        .replace("{topic}", &names.topic)
        .replace("{ops_topic}", &names.ops_topic)
        .replace("{queue}", &names.queue)
        .replace("{member_role}", &names.member_role)
        .replace("{agent_member_role}", &names.agent_member_role)
        .replace("{table}", &names.table)
        .replace("{control_queue}", &names.control_queue)
        .replace("{lease_table}", &names.lease_table);
    if let Some(rest) = out.strip_prefix("arn:aws:") {
        out = format!("arn:{}:{rest}", names.partition);
    }
    vec![out]
}

/// True when `g` is part of `principal`'s policy. The hub monitors its own account (when it
/// is enrolled, e.g. the management account) and keeps the central resources there (unless
/// `hub.central_account` names another) with its own credentials: its policy carries the
/// member and central statements too.
fn applies(g: &Grant, principal: Principal) -> bool {
    g.principal == principal
        || (principal == Principal::Hub
            && matches!(g.principal, Principal::Member | Principal::Central))
}

fn needed(g: &Grant, names: &Names) -> bool {
    match g.needs {
        Needs::Always => true,
        Needs::KmsKey => names.kms_key.is_some(),
        Needs::SnsTopics => !names.sns_topics.is_empty(),
        Needs::Guardrail => names.guardrail,
    }
}

/// The policy document of `principal`, statements in table order.
pub fn policy(principal: Principal, names: &Names) -> Value {
    let statements: Vec<Value> = GRANTS
        .iter()
        .filter(|g| applies(g, principal) && needed(g, names))
        .map(|g| {
            let sid = match (principal, g.principal) {
                (p, q) if p == q => g.sid.to_string(),
                (_, Principal::Central) => format!("Central{}", g.sid),
                _ => format!("OwnAccount{}", g.sid),
            };
            let mut statement = json!({
                "Sid": sid,
                "Effect": "Allow",
                "Action": g.actions,
                "Resource": g.resources.iter().flat_map(|r| fill(r, names)).collect::<Vec<_>>(),
            });
            if !g.conditions.is_empty() {
                let mut condition = serde_json::Map::new();
                for c in g.conditions {
                    let values: Vec<String> =
                        c.values.iter().flat_map(|v| fill(v, names)).collect();
                    let entry = condition.entry(c.operator).or_insert_with(|| json!({}));
                    entry[c.key] = json!(values);
                }
                statement["Condition"] = Value::Object(condition);
            }
            statement
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
        ("hub", "member") => Some(Principal::Member),
        ("agent", "member") => Some(Principal::AgentMember),
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
        assert!(member.contains("logs:PutMetricFilter"));
        assert!(!member.contains("s3:"), "members never touch the archive");
        assert!(covers(Principal::Agent, "DynamoDB", "UpdateItem"));
        assert!(!covers(Principal::Agent, "S3", "PutBucketPolicy"));
        assert_eq!(
            principal_of("agent", "member"),
            Some(Principal::AgentMember)
        );
        assert_eq!(principal_of("hub", "member"), Some(Principal::Member));
        // The agent's role in members reads; it changes nothing.
        let reader = policy(Principal::AgentMember, &names).to_string();
        assert!(reader.contains("logs:FilterLogEvents"));
        for write in [
            "logs:Put",
            "logs:Create",
            "logs:Delete",
            "cloudwatch:",
            "events:",
            "iam:",
        ] {
            assert!(!reader.contains(write), "{write} in {reader}");
        }
    }

    #[test]
    fn no_principal_may_write_iam() {
        // Whoever may create a role, write its trust or policies, or attach policies can
        // make that role an administrator and assume it (privilege escalation; parliament
        // reports iam:PutRolePolicy / iam:UpdateAssumeRolePolicy with sts:AssumeRole HIGH).
        const WRITES: &[&str] = &[
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:UpdateAssumeRolePolicy",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:CreatePolicy",
            "iam:CreatePolicyVersion",
            "iam:TagRole",
            "iam:PutRolePermissionsBoundary",
        ];
        for g in GRANTS {
            for a in g.actions {
                assert!(!WRITES.contains(a), "{} grants {a}", g.sid);
            }
            if g.actions.contains(&"iam:PassRole") {
                assert!(
                    g.conditions.iter().any(|c| c.key == "iam:PassedToService"),
                    "{}: PassRole only to the one service that assumes the role",
                    g.sid
                );
            }
        }
    }

    #[test]
    fn the_partition_is_the_configured_one() {
        let names = Names {
            partition: "aws-us-gov".into(),
            ..Names::default()
        };
        for p in Principal::ALL {
            let text = policy(p, &names).to_string();
            assert!(!text.contains("arn:aws:"), "{}: {text}", p.as_str());
            assert!(text.contains("arn:aws-us-gov:"), "{}", p.as_str());
        }
    }

    #[test]
    fn optional_statements_appear_only_when_configured() {
        let plain = Names::default();
        let agent = policy(Principal::Agent, &plain).to_string();
        assert!(!agent.contains("sns:Publish"), "no sns sinks, no Publish");
        assert!(!agent.contains(":*:*:*"), "{agent}");
        let topic = "arn:aws:sns:eu-west-1:111122223333:secops";
        let names = Names {
            sns_topics: vec![topic.into()],
            kms_key: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
            ..Names::default()
        };
        let agent = policy(Principal::Agent, &names);
        let sns = agent["Statement"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Sid"] == "SnsSinks"))
            .expect("sns statement");
        assert_eq!(sns["Resource"], json!([topic]));
        let hub = policy(Principal::Hub, &names);
        let key = hub["Statement"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Sid"] == "ArchiveKey"))
            .expect("kms statement");
        assert_eq!(
            key["Resource"],
            json!(["arn:aws:kms:us-east-1:111122223333:key/k"])
        );
        assert!(
            !policy(Principal::Hub, &plain)
                .to_string()
                .contains("kms:Decrypt")
        );
    }

    #[test]
    fn conditions_are_rendered_with_the_names() {
        let names = Names {
            queue: "alerts".into(),
            control_queue: "control".into(),
            ..Names::default()
        };
        let hub = policy(Principal::Hub, &names);
        let targets = hub["Statement"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Sid"] == "CentralEventTargets"))
            .expect("targets statement");
        assert_eq!(
            targets["Condition"],
            json!({"ArnLike": {"events:TargetArn": [
                "arn:aws:sqs:*:*:alerts",
                "arn:aws:sqs:*:*:control",
                "arn:aws:events:*:*:event-bus/orgwatch-control"
            ]}})
        );
    }
}
