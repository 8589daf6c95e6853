//! Every name and tag orgwatch gives to an AWS resource comes from here.
//!
//! `hub offboard` removes exactly what these functions name and what carries
//! [`MANAGED_TAG`]; nothing else in the code base may invent a resource name.

/// Prefix of every resource name orgwatch creates.
pub const PREFIX: &str = "orgwatch";

/// Tag key set to [`MANAGED_TAG_VALUE`] on every resource orgwatch creates.
pub const MANAGED_TAG: &str = "orgwatch:managed";
/// Value of [`MANAGED_TAG`].
pub const MANAGED_TAG_VALUE: &str = "true";

/// `sts:AssumeRole` session name of the hub in member accounts (visible in their CloudTrail).
pub const HUB_SESSION_NAME: &str = "orgwatch-hub";
/// `sts:AssumeRole` session name of the agent (log enrichment).
pub const AGENT_SESSION_NAME: &str = "orgwatch-agent";

/// The role the hub assumes in member accounts unless configured otherwise: the member
/// stack's (`infra/cloudformation/member-role.yaml`) default `RoleName`, with exactly
/// `hub policy --for member`. Not `OrganizationAccountAccessRole`, which Organizations
/// gives administrator access (and which invited accounts do not have).
pub const DEFAULT_MEMBER_ROLE: &str = "orgwatch-member";

/// Log group in each member account and region that receives CloudTrail events.
pub const LOG_GROUP: &str = "/orgwatch/cloudtrail";
/// Default CloudWatch metric namespace of orgwatch's metric filters.
pub const METRIC_NAMESPACE: &str = "orgwatch";
/// EventBridge rule (member default bus) that sends CloudTrail management events to
/// [`LOG_GROUP`] in `eventbridge` delivery mode.
pub const EVENTS_TO_LOGS_RULE: &str = "orgwatch-cloudtrail-to-logs";
/// EventBridge rule (member default bus) forwarding high-severity events to the central bus.
pub const FORWARD_RULE: &str = "orgwatch-forward-high-severity";
/// Central EventBridge bus that accepts events from the organisation.
pub const CENTRAL_BUS: &str = "orgwatch";
/// Rule on [`CENTRAL_BUS`] delivering every forwarded event to the central queue.
pub const CENTRAL_BUS_RULE: &str = "orgwatch-to-queue";
/// Account trail in `trail` delivery mode.
pub const MEMBER_TRAIL: &str = "orgwatch-account";
/// IAM role CloudTrail assumes to write into [`LOG_GROUP`] (`trail` delivery mode).
/// Created by the member stack (`infra/cloudformation/member-role.yaml`), never by the hub:
/// whoever may write a role's policies may make it an administrator.
pub const TRAIL_LOGS_ROLE: &str = "orgwatch-cloudtrail-logs";
/// IAM role EventBridge assumes to put forwarded events on the central bus (the target
/// `RoleArn` of every forward rule). Created by the member stack, like [`TRAIL_LOGS_ROLE`].
pub const FORWARD_ROLE: &str = "orgwatch-events-forward";
/// Read-only role the agent assumes in member accounts to enrich alarms from
/// [`LOG_GROUP`] (created by the member stack; `hub policy --for agent-member`).
pub const AGENT_MEMBER_ROLE: &str = "orgwatch-agent-reader";
/// Name of the member stack (and StackSet) that creates the member roles.
pub const MEMBER_STACK: &str = "orgwatch-member";
/// Prefix of metric filter and alarm names; the rest is the rule id.
pub const RULE_RESOURCE_PREFIX: &str = "orgwatch-";

/// Metric filter name of a rule. `part` numbers the filters of a rule whose pattern had
/// to be split to fit 1,024 characters (0 for the first and usually only one).
pub fn metric_filter_name(rule_id: &str, part: usize) -> String {
    if part == 0 {
        format!("{RULE_RESOURCE_PREFIX}{rule_id}")
    } else {
        format!("{RULE_RESOURCE_PREFIX}{rule_id}-part{}", part + 1)
    }
}

/// Alarm name of a rule (one alarm per rule, whatever the number of filters).
pub fn alarm_name(rule_id: &str) -> String {
    format!("{RULE_RESOURCE_PREFIX}{rule_id}")
}

/// The rule id an orgwatch alarm name stands for (`None` for any other alarm).
pub fn rule_id_from_alarm_name(alarm_name: &str) -> Option<&str> {
    alarm_name
        .strip_prefix(RULE_RESOURCE_PREFIX)
        .filter(|id| !id.is_empty())
}

/// EventBridge rule in a member account forwarding one rule's high-severity events to the
/// central bus.
pub fn forward_rule_name(rule_id: &str) -> String {
    format!("{RULE_RESOURCE_PREFIX}forward-{rule_id}")
}

/// The control path of `hub watch` (central account, home region): the bus that receives
/// the organisation's account events and the tamper events, the rule from it into the
/// control queue, and that queue's default name (its dead-letter queue is
/// [`dead_letter_queue`] of it).
pub const CONTROL_BUS: &str = "orgwatch-control";

/// The prefix of the alarms that watch the watcher (central account): the alert queue's
/// dead-letter depth and its oldest message's age. They notify the operations topic, never
/// the alerts topic.
pub const OPS_ALARM_PREFIX: &str = "orgwatch-ops-";

/// The alarm on messages in the dead-letter queue of `queue`.
pub fn ops_dlq_alarm(queue: &str) -> String {
    format!("{OPS_ALARM_PREFIX}{queue}-dlq-depth")
}

/// The alarm on the age of the oldest message in `queue`.
pub fn ops_age_alarm(queue: &str) -> String {
    format!("{OPS_ALARM_PREFIX}{queue}-oldest-message-age")
}

/// The rule manifest's key in the central bucket (`shared::rules::manifest`): what the hub
/// deployed, read by the agent.
pub const RULE_MANIFEST_KEY: &str = "orgwatch/rules.json";
/// Rule on [`CONTROL_BUS`] delivering every event to the control queue.
pub const CONTROL_BUS_RULE: &str = "orgwatch-control-to-queue";
/// Default name of the control queue `hub watch` consumes (`[watch] queue`).
pub const DEFAULT_CONTROL_QUEUE: &str = "orgwatch-control";
/// Rule on each region's [`CENTRAL_BUS`] sending tamper events on to [`CONTROL_BUS`].
pub const TAMPER_TO_CONTROL_RULE: &str = "orgwatch-tamper-to-control";
/// Rule on the management account's default bus in us-east-1 sending AWS Organizations'
/// account events (created, invited, moved, removed, closed) to [`CONTROL_BUS`].
pub const ORGANIZATION_EVENTS_RULE: &str = "orgwatch-organization-events";
/// Target id of the rules whose target is [`CONTROL_BUS`] or the control queue.
pub const CONTROL_TARGET_ID: &str = "orgwatch-control";
/// The built-in rule that reports changes to orgwatch's own resources; `hub watch`
/// repairs what it reports.
pub const TAMPER_RULE: &str = "orgwatch-tamper";
/// Default DynamoDB table of the `hub watch` lease (`[watch] lease_table`).
pub const DEFAULT_LEASE_TABLE: &str = "orgwatch-watch";

/// Name of the log resource policy that lets EventBridge write into [`LOG_GROUP`].
pub const LOG_RESOURCE_POLICY: &str = "orgwatch-events-to-logs";
/// Target id of the member rule that writes into [`LOG_GROUP`].
pub const LOG_TARGET_ID: &str = "orgwatch-log-group";
/// Target id of forward rules (the central bus) and of the central rule (the queue).
pub const BUS_TARGET_ID: &str = "orgwatch-central-bus";
/// Target id of the central bus rule.
pub const QUEUE_TARGET_ID: &str = "orgwatch-queue";

/// ARNs of the resources orgwatch names.
pub mod arn {
    use super::partition;

    pub fn bucket(region: &str, bucket: &str) -> String {
        format!("arn:{}:s3:::{bucket}", partition(region))
    }
    pub fn trail(region: &str, account: &str, name: &str) -> String {
        format!(
            "arn:{}:cloudtrail:{region}:{account}:trail/{name}",
            partition(region)
        )
    }
    pub fn topic(region: &str, account: &str, name: &str) -> String {
        format!("arn:{}:sns:{region}:{account}:{name}", partition(region))
    }
    pub fn queue(region: &str, account: &str, name: &str) -> String {
        format!("arn:{}:sqs:{region}:{account}:{name}", partition(region))
    }
    pub fn bus(region: &str, account: &str, name: &str) -> String {
        format!(
            "arn:{}:events:{region}:{account}:event-bus/{name}",
            partition(region)
        )
    }
    /// A rule on a custom bus (`default` bus rules have no bus segment).
    pub fn rule(region: &str, account: &str, bus: &str, name: &str) -> String {
        if bus == "default" {
            format!(
                "arn:{}:events:{region}:{account}:rule/{name}",
                partition(region)
            )
        } else {
            format!(
                "arn:{}:events:{region}:{account}:rule/{bus}/{name}",
                partition(region)
            )
        }
    }
    pub fn log_group(region: &str, account: &str, name: &str) -> String {
        format!(
            "arn:{}:logs:{region}:{account}:log-group:{name}",
            partition(region)
        )
    }
    pub fn role(region: &str, account: &str, name: &str) -> String {
        super::role_arn(partition(region), account, name)
    }
    pub fn table(region: &str, account: &str, name: &str) -> String {
        format!(
            "arn:{}:dynamodb:{region}:{account}:table/{name}",
            partition(region)
        )
    }
    pub fn alarm(region: &str, account: &str, name: &str) -> String {
        format!(
            "arn:{}:cloudwatch:{region}:{account}:alarm:{name}",
            partition(region)
        )
    }
}

/// Links into the AWS Management Console, for people reading a report or an alert.
pub mod console {
    use super::partition;

    /// The console's address for a region's partition (each partition has its own
    /// console: aws-us-gov and aws-cn are separate sign-ins). `None` for a region that is
    /// not a region name (it would be part of the link's host): an alert's region comes
    /// from the event.
    fn home(region: &str) -> Option<String> {
        let parts: Vec<&str> = region.split('-').collect();
        let named = parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !named {
            return None;
        }
        Some(match partition(region) {
            "aws-us-gov" => "https://console.amazonaws-us-gov.com".to_string(),
            "aws-cn" => "https://console.amazonaws.cn".to_string(),
            _ => format!("https://{region}.console.aws.amazon.com"),
        })
    }

    /// A CloudWatch alarm's page (in the account that owns the alarm).
    pub fn alarm(region: &str, name: &str) -> Option<String> {
        Some(format!(
            "{}/cloudwatch/home?region={region}#alarmsV2:alarm/{}",
            home(region)?,
            encode(name)
        ))
    }

    /// A CloudTrail event's page in the event history of its account and region (which
    /// keeps 90 days of management events).
    pub fn cloudtrail_event(region: &str, event_id: &str) -> Option<String> {
        Some(format!(
            "{}/cloudtrailv2/home?region={region}#/events/{}",
            home(region)?,
            encode(event_id)
        ))
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters.
    fn encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn links_name_the_partition_console_and_encode_what_they_carry() {
            assert_eq!(
                super::alarm("eu-west-1", "orgwatch-cis-4.3").as_deref(),
                Some(
                    "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/orgwatch-cis-4.3"
                )
            );
            assert_eq!(
                super::alarm("us-gov-west-1", "a b/c|<x>").as_deref(),
                Some(
                    "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1#alarmsV2:alarm/a%20b%2Fc%7C%3Cx%3E"
                )
            );
            assert!(
                super::alarm("cn-north-1", "x")
                    .is_some_and(|u| u.starts_with("https://console.amazonaws.cn/"))
            );
            assert_eq!(
                super::cloudtrail_event("us-east-1", "4a6f1d2e-0000-4000-8000-000000000001")
                    .as_deref(),
                Some(
                    "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/4a6f1d2e-0000-4000-8000-000000000001"
                )
            );
            // A region that is not a region name never reaches a link's host.
            for bad in [
                "evil.com/x",
                "us-east-1|<!channel>",
                "US-EAST-1",
                "",
                "us--1",
            ] {
                assert_eq!(super::alarm(bad, "x"), None, "{bad}");
            }
        }
    }
}

/// Dead-letter queue of the central queue.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}-dlq")
}

/// The tags every orgwatch resource carries, as (key, value) pairs.
pub fn managed_tags() -> [(&'static str, &'static str); 1] {
    [(MANAGED_TAG, MANAGED_TAG_VALUE)]
}

/// True when a set of tags marks a resource as orgwatch's.
pub fn is_managed<'a>(mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    tags.any(|(k, v)| k == MANAGED_TAG && v == MANAGED_TAG_VALUE)
}

/// ARN partition for a region (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// ARN of a role in an account.
pub fn role_arn(partition: &str, account_id: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account_id}:role/{role_name}")
}

/// True for a well-formed 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(is_account_id("111122223333"));
        assert!(!is_account_id("11112222333"));
        assert!(!is_account_id("1111222233334"));
        assert!(!is_account_id("11112222333a"));
        assert!(!is_account_id(""));
    }

    #[test]
    fn partitions_and_arns() {
        assert_eq!(partition("us-east-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(
            role_arn("aws", "111122223333", DEFAULT_MEMBER_ROLE),
            "arn:aws:iam::111122223333:role/orgwatch-member"
        );
    }

    #[test]
    fn rule_resource_names_round_trip() {
        assert_eq!(alarm_name("cis-4.3"), "orgwatch-cis-4.3");
        assert_eq!(
            rule_id_from_alarm_name(&alarm_name("cis-4.3")),
            Some("cis-4.3")
        );
        assert_eq!(rule_id_from_alarm_name("orgwatch-"), None);
        assert_eq!(rule_id_from_alarm_name("someone-elses-alarm"), None);
        assert_eq!(metric_filter_name("cis-4.15", 0), "orgwatch-cis-4.15");
        assert_eq!(metric_filter_name("cis-4.15", 1), "orgwatch-cis-4.15-part2");
        assert_eq!(dead_letter_queue("orgwatch-alerts"), "orgwatch-alerts-dlq");
    }

    #[test]
    fn managed_tag_detection() {
        assert!(is_managed([("a", "b"), (MANAGED_TAG, "true")].into_iter()));
        assert!(!is_managed([(MANAGED_TAG, "false")].into_iter()));
        assert!(!is_managed(std::iter::empty()));
    }
}
