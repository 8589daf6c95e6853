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

/// The role the hub assumes in member accounts unless configured otherwise.
pub const DEFAULT_MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

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
            "arn:aws:iam::111122223333:role/OrganizationAccountAccessRole"
        );
    }

    #[test]
    fn managed_tag_detection() {
        assert!(is_managed([("a", "b"), (MANAGED_TAG, "true")].into_iter()));
        assert!(!is_managed([(MANAGED_TAG, "false")].into_iter()));
        assert!(!is_managed(std::iter::empty()));
    }
}
