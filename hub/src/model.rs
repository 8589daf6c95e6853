//! The resources orgwatch manages, as data: a key (where and what) and a spec (the settings
//! that matter). `desired` builds them from config, `observe` reads them from AWS, `diff`
//! compares them field by field, `apply` carries out the difference.

use std::collections::BTreeMap;

use serde::Serialize;

/// The kinds of resource, in the order they are created (deletes run in reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Bucket,
    TrustedAccess,
    Scp,
    OrgTrail,
    Topic,
    DeadLetterQueue,
    Queue,
    Subscription,
    LeaseTable,
    Bus,
    BusRule,
    OrgEventsRule,
    LogGroup,
    LogPolicy,
    TrailRole,
    ForwardRole,
    MemberTrail,
    EventsRule,
    MetricFilter,
    Alarm,
    ForwardRule,
    /// The rule manifest in the central bucket, read by the agent. Last: created after the
    /// bucket and deleted before it.
    RuleManifest,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bucket => "bucket",
            Kind::TrustedAccess => "trusted-access",
            Kind::Scp => "scp",
            Kind::OrgTrail => "org-trail",
            Kind::Topic => "topic",
            Kind::DeadLetterQueue => "dead-letter-queue",
            Kind::Queue => "queue",
            Kind::Subscription => "subscription",
            Kind::LeaseTable => "lease-table",
            Kind::Bus => "bus",
            Kind::BusRule => "bus-rule",
            Kind::OrgEventsRule => "org-events-rule",
            Kind::LogGroup => "log-group",
            Kind::LogPolicy => "log-policy",
            Kind::TrailRole => "trail-role",
            Kind::ForwardRole => "forward-role",
            Kind::MemberTrail => "member-trail",
            Kind::EventsRule => "events-rule",
            Kind::MetricFilter => "metric-filter",
            Kind::Alarm => "alarm",
            Kind::ForwardRule => "forward-rule",
            Kind::RuleManifest => "rule-manifest",
        }
    }
}

impl Kind {
    /// Kinds the hub checks but never creates, changes or deletes: the IAM service roles
    /// that the member stack (`infra/cloudformation/member-role.yaml`, a StackSet over the
    /// organisation) creates. A principal that may write a role's trust or policies can
    /// make that role an administrator and assume it, so neither the hub nor the member
    /// role holds any IAM write permission; they only read these roles and pass them.
    pub fn provided(self) -> bool {
        matches!(self, Kind::TrailRole | Kind::ForwardRole)
    }

    /// Kinds the hub manages with its own credentials, not the central account's: the
    /// organisation trail (only the management account or a CloudTrail delegated
    /// administrator can create one), CloudTrail trusted access, and the rule that
    /// forwards AWS Organizations' account events (which reach only the management
    /// account's default bus).
    pub fn organisation_level(self) -> bool {
        matches!(
            self,
            Kind::OrgTrail | Kind::TrustedAccess | Kind::OrgEventsRule | Kind::Scp
        )
    }

    /// Kinds the hub creates but never deletes: the provided ones (not the hub's to
    /// delete), and CloudTrail trusted access in the organisation (other tools may rely on
    /// it; disabling it stops every organisation trail).
    pub fn never_deleted(self) -> bool {
        self.provided() || self == Kind::TrustedAccess
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a resource is and what it is called. Sorted by account, region, kind, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceKey {
    pub account: String,
    pub region: String,
    pub kind: Kind,
    pub name: String,
}

impl ResourceKey {
    pub fn new(account: &str, region: &str, kind: Kind, name: impl Into<String>) -> Self {
        ResourceKey {
            account: account.to_string(),
            region: region.to_string(),
            kind,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.account, self.region, self.kind, self.name
        )
    }
}

/// S3 bucket settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketSpec {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
    pub ownership: String,
    /// `AES256` or `aws:kms:<key id>`.
    pub encryption: String,
    pub versioning: String,
    pub expire_days: u32,
    /// Canonical JSON.
    pub policy: String,
}

/// A CloudTrail trail (the organisation trail or a member account's trail).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrailSpec {
    pub bucket: String,
    pub multi_region: bool,
    pub global_service_events: bool,
    pub log_file_validation: bool,
    pub organization: bool,
    pub logging: bool,
    pub log_group_arn: Option<String>,
    pub logs_role_arn: Option<String>,
    /// SSE-KMS key ARN of the log files (`trail.kms_key_id`); `None`: the bucket's default
    /// encryption only. Security Hub CloudTrail.2 requires it set.
    pub kms_key_id: Option<String>,
}

/// A resource whose only managed setting is a resource policy (topic, bus, log policy).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicySpec {
    /// Canonical JSON.
    pub policy: String,
}

/// An SQS queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueSpec {
    /// Canonical JSON, or empty.
    pub policy: String,
    /// Canonical JSON redrive policy, or empty.
    pub redrive: String,
    pub sse: bool,
    pub retention_secs: u32,
}

/// SNS topic -> SQS queue subscription.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubscriptionSpec {
    pub topic_arn: String,
    pub queue_arn: String,
    pub raw_delivery: bool,
}

/// An EventBridge rule with its one target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventRuleSpec {
    pub bus: String,
    /// Canonical JSON event pattern.
    pub pattern: String,
    pub state: String,
    pub target_id: String,
    pub target_arn: String,
    pub target_role_arn: Option<String>,
    /// What the target is given instead of the event (`Input`, `InputPath` or
    /// `InputTransformer`, at most one; EventBridge API reference, Target): declared none,
    /// since the agent decodes the event itself. Empty when none.
    pub target_input: String,
    /// The target's own retry policy and dead-letter queue: declared none, so EventBridge's
    /// defaults hold, the most its RetryPolicy allows (185 attempts over 86,400 s;
    /// EventBridge API reference, RetryPolicy; user guide, event retry policy). A policy of
    /// no retries or a short age would drop events on a transient failure. Empty when none.
    pub target_delivery: String,
    /// The rule's targets besides its one: declared none, so a plan removes any found (a
    /// target added to an orgwatch rule copies its events elsewhere; on the central bus,
    /// every account's).
    pub other_targets: Vec<OtherTarget>,
}

/// A target of an orgwatch rule that orgwatch did not put there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OtherTarget {
    pub id: String,
    pub arn: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogGroupSpec {
    pub retention_days: i32,
}

/// An IAM role with one inline policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoleSpec {
    /// Canonical JSON.
    pub trust: String,
    /// Canonical JSON of the inline policy.
    pub policy: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricFilterSpec {
    pub log_group: String,
    pub pattern: String,
    pub metric_name: String,
    pub namespace: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlarmSpec {
    pub metric_name: String,
    pub namespace: String,
    pub statistic: String,
    pub period: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison: String,
    /// Notified on ALARM.
    pub actions: Vec<String>,
    /// Notified on the return to OK, so that incidents resolve (PagerDuty resolve, closed
    /// groups).
    pub ok_actions: Vec<String>,
    pub treat_missing_data: String,
    pub description: String,
    /// The metric's dimensions, (name, value), sorted by name (none for the rules' metrics).
    pub dimensions: Vec<(String, String)>,
}

/// A DynamoDB table (on-demand, one string partition key).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TableSpec {
    pub partition_key: String,
    pub billing_mode: String,
}

/// An S3 object the hub writes (the rule manifest): compared by the SHA-256 of its body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectSpec {
    pub bucket: String,
    pub sha256: String,
    #[serde(skip)]
    pub body: String,
}

impl ObjectSpec {
    pub fn new(bucket: &str, body: String) -> ObjectSpec {
        ObjectSpec {
            bucket: bucket.to_string(),
            sha256: shared::rules::manifest::Manifest::digest(&body),
            body,
        }
    }
}

/// A service control policy and where it is attached.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScpSpec {
    /// Canonical JSON.
    pub content: String,
    /// Root and OU ids it is attached to, sorted.
    pub targets: Vec<String>,
}

/// An AWS service's trusted access in the organisation (`EnableAWSServiceAccess`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceAccessSpec {
    /// The service principal, e.g. `cloudtrail.amazonaws.com`.
    pub service_principal: String,
}

/// The settings of one resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    Bucket(BucketSpec),
    Trail(TrailSpec),
    Policy(PolicySpec),
    Queue(QueueSpec),
    Subscription(SubscriptionSpec),
    EventRule(EventRuleSpec),
    LogGroup(LogGroupSpec),
    Role(RoleSpec),
    MetricFilter(MetricFilterSpec),
    Alarm(AlarmSpec),
    ServiceAccess(ServiceAccessSpec),
    Table(TableSpec),
    Scp(ScpSpec),
    Object(ObjectSpec),
}

impl Spec {
    /// Field name -> value as text, for comparison and display.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.insert(k, text);
            }
        }
        out
    }
}

/// Parses and re-prints JSON with sorted keys, so that equal documents compare equal.
/// Text that is not JSON is returned as it is.
pub fn canonical_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.to_string(),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_flatten_every_setting() {
        let s = Spec::LogGroup(LogGroupSpec {
            retention_days: 365,
        });
        assert_eq!(
            s.fields().get("retention_days").map(String::as_str),
            Some("365")
        );
        let t = Spec::Trail(TrailSpec {
            bucket: "b".into(),
            multi_region: true,
            global_service_events: true,
            log_file_validation: true,
            organization: true,
            logging: false,
            log_group_arn: None,
            logs_role_arn: None,
            kms_key_id: None,
        });
        let f = t.fields();
        assert_eq!(f["logging"], "false");
        assert_eq!(f["log_group_arn"], "");
        assert_eq!(f.len(), 9);
    }

    #[test]
    fn canonical_json_ignores_key_order_and_spacing() {
        assert_eq!(
            canonical_json(r#"{ "b": 1, "a": [1, 2] }"#),
            canonical_json(r#"{"a":[1,2],"b":1}"#)
        );
        assert_eq!(canonical_json("not json"), "not json");
    }

    #[test]
    fn kinds_sort_in_creation_order() {
        assert!(Kind::Bucket < Kind::OrgTrail);
        assert!(Kind::LogGroup < Kind::MetricFilter);
        assert!(Kind::MetricFilter < Kind::Alarm);
    }
}
