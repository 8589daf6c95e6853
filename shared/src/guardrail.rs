//! The service control policy that keeps member accounts from deleting, disabling or
//! changing what orgwatch set up in them (`hub policy --for scp`).
//!
//! It follows the way AWS Control Tower protects its own resources: `Deny` statements whose
//! `Condition` `ArnNotLike` on `aws:PrincipalArn` exempts the principals that own the
//! resources: the hub's member role (`hub.member_role`) and the CloudFormation StackSets
//! execution roles that deploy the member stack. Every other principal of a member account,
//! its root user and administrators included, is denied; nothing is granted (an SCP never
//! grants, and this one has only `Deny` statements and no `Principal`).
//!
//! Attach it, as [`SCP_NAME`], to the organisation's root or the OUs of the enrolled accounts:
//!
//! ```text
//! hub policy --for scp > scp.json
//! aws organizations create-policy --type SERVICE_CONTROL_POLICY \
//!     --name orgwatch-guardrail --description "orgwatch resources" --content file://scp.json
//! ```
//!
//! What it does not cover, and why:
//!
//! * The management account: SCPs never apply to it (Organizations user guide, "Service
//!   control policies": "SCPs don't affect users or roles in the management account").
//! * Service-linked roles: SCPs do not restrict them, so none needs an exemption (this is why
//!   `AWSServiceRoleForCloudFormationStackSetsOrgMember`, path
//!   `aws-service-role/member.org.stacksets.cloudformation.amazonaws.com/`, is not listed).
//! * The hub's own account when it is a member account (a CloudTrail delegated
//!   administrator): there the hub works with its own credentials, not the member role
//!   ([`crate::aws::ClientFactory::for_account`]), so this SCP would deny its writes. Attach
//!   the SCP to the OUs or accounts other than the hub's.
//! * The account-level log resource policy ([`naming::LOG_RESOURCE_POLICY`]):
//!   `logs:PutResourcePolicy` and `logs:DeleteResourcePolicy` have no resource type and no
//!   condition key naming the policy (Service Authorization Reference, Amazon CloudWatch
//!   Logs), so only `"Resource": "*"` matches, and a deny there would stop every principal of
//!   every member account from managing any log resource policy: vended-log deliveries,
//!   Route 53 query logging, EventBridge and OpenSearch targets all write one. `hub status`
//!   reports the policy's drift instead.
//! * Tags: removing `orgwatch:managed` from a resource makes the hub treat it as a conflict
//!   (it stops in that account and says so) but disables no monitoring.
//! * The central resources (bucket, topic, queue, central bus) and the organisation trail:
//!   the former live in one account the operator controls, the latter in the management
//!   account, which SCPs do not reach.
//!
//! The exemptions are role names, and any principal that may create or change a role could
//! give itself an exempt name or take over an exempt role. So the roles that are exempt are
//! protected too (`iam:CreateRole`, `iam:UpdateAssumeRolePolicy`, ...), like the orgwatch
//! roles, as Control Tower's "disallow changes to IAM roles set up by AWS Control Tower"
//! control does for its own. With the SCP attached, a self-managed StackSets execution role
//! can only be created by an exempt principal (or before the SCP is attached).
//!
//! Size: an SCP holds at most 5,120 characters ([`SCP_MAX_CHARS`]; Organizations user
//! guide, "Quotas and service limits for AWS Organizations", maximum size of a policy
//! document: "Service control policies: 5120 characters",
//! <https://docs.aws.amazon.com/organizations/latest/userguide/orgs_reference_limits.html>).
//! The console strips white space between JSON elements but the API and CLI keep it, so the
//! document is printed minified ([`scp_text`]); the tests check it fits with the longest
//! role name IAM allows and the longest partition.

use serde_json::{Value, json};

use crate::iam::Names;
use crate::naming;

/// Maximum size of a service control policy document, in characters.
pub const SCP_MAX_CHARS: usize = 5120;

/// Name under which to create the SCP in AWS Organizations. (Kept here rather than in
/// [`crate::naming`]: the SCP is created by the operator, not by orgwatch.)
pub const SCP_NAME: &str = "orgwatch-guardrail";

/// Execution role that StackSets with service-managed permissions create in each target
/// account (`stacksets-exec-` and a hash): "By default, StackSets with service-managed
/// permissions creates an execution role named `stacksets-exec-*` in each target account"
/// (CloudFormation user guide, "Configure a custom execution role template for StackSets",
/// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-custom-execution-role.html>;
/// the management account's StackSets service-linked role may assume
/// `arn:aws:iam::*:role/stacksets-exec-*` only, AWS managed policy
/// `CloudFormationStackSetsOrgAdminServiceRolePolicy`). The member stack is deployed this
/// way (README, "Before the first enroll").
pub const STACKSETS_SERVICE_MANAGED_EXEC_ROLE: &str = "stacksets-exec-*";

/// Execution role of StackSets with self-managed permissions: "The role in each of your
/// target accounts should be named AWSCloudFormationStackSetExecutionRole" (CloudFormation
/// user guide, "Grant self-managed permissions",
/// <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-prereqs-self-managed.html>).
/// A StackSet may name another (`ExecutionRoleName`); that one is not exempt.
pub const STACKSETS_SELF_MANAGED_EXEC_ROLE: &str = "AWSCloudFormationStackSetExecutionRole";

/// The condition key the exemption is written on.
pub const EXEMPTION_KEY: &str = "aws:PrincipalArn";

/// `arn:<partition>:<rest>`.
fn arn(names: &Names, rest: &str) -> String {
    format!("arn:{}:{rest}", names.partition)
}

/// Role ARN pattern in any account (no path: the hub assumes `role/<name>`, and StackSets'
/// execution roles have none).
fn role(names: &Names, name: &str) -> String {
    arn(names, &format!("iam::*:role/{name}"))
}

/// Names of the roles exempt from the SCP: the hub's member role and the StackSets
/// execution roles. AWS Control Tower's `AWSControlTowerExecution` is not among them:
/// Control Tower never touches orgwatch's resources, and where it is the role the hub
/// assumes, it is `hub.member_role` and exempt as such.
fn exempt_role_names(names: &Names) -> Vec<&str> {
    let mut out = vec![
        names.member_role.as_str(),
        STACKSETS_SERVICE_MANAGED_EXEC_ROLE,
        STACKSETS_SELF_MANAGED_EXEC_ROLE,
    ];
    dedup(&mut out);
    out
}

/// The `aws:PrincipalArn` patterns every statement exempts.
pub fn exempt_principals(names: &Names) -> Vec<String> {
    exempt_role_names(names)
        .into_iter()
        .map(|n| role(names, n))
        .collect()
}

fn dedup(v: &mut Vec<&str>) {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|x| seen.insert(*x));
}

/// One statement: what it protects, the actions denied on it, the resource ARNs.
struct Protection {
    sid: &'static str,
    actions: &'static [&'static str],
    resources: Vec<String>,
}

/// What the SCP protects. Every action has a resource type in the Service Authorization
/// Reference, so every statement names ARNs, never `*`.
fn protections(names: &Names) -> Vec<Protection> {
    let log_group = format!("logs:*:*:log-group:{}", naming::LOG_GROUP);
    let prefix = naming::RULE_RESOURCE_PREFIX;
    let mut roles = vec![
        naming::TRAIL_LOGS_ROLE,
        naming::FORWARD_ROLE,
        names.agent_member_role.as_str(),
    ];
    // The exempt roles too: whoever could create or take one over would be exempt.
    roles.extend(exempt_role_names(names));
    dedup(&mut roles);
    vec![
        Protection {
            sid: "OrgwatchAlarms",
            actions: &[
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DisableAlarmActions",
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:SetAlarmState",
            ],
            resources: vec![arn(names, &format!("cloudwatch:*:*:alarm:{prefix}*"))],
        },
        Protection {
            sid: "OrgwatchLogGroup",
            // AssociateKmsKey too: a key of one's own, disabled or deleted, leaves the group
            // unwritable and unreadable.
            actions: &[
                "logs:DeleteLogGroup",
                "logs:DeleteMetricFilter",
                "logs:PutMetricFilter",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:AssociateKmsKey",
                "logs:DisassociateKmsKey",
            ],
            resources: vec![
                arn(names, &log_group),
                arn(names, &format!("{log_group}:*")),
            ],
        },
        Protection {
            sid: "OrgwatchEventRules",
            actions: &[
                "events:DeleteRule",
                "events:DisableRule",
                "events:PutRule",
                "events:RemoveTargets",
                "events:PutTargets",
            ],
            // Rules on the default bus have no bus segment.
            resources: vec![arn(names, &format!("events:*:*:rule/{prefix}*"))],
        },
        Protection {
            sid: "OrgwatchAccountTrail",
            actions: &[
                "cloudtrail:StopLogging",
                "cloudtrail:DeleteTrail",
                "cloudtrail:UpdateTrail",
                "cloudtrail:PutEventSelectors",
            ],
            resources: vec![arn(
                names,
                &format!("cloudtrail:*:*:trail/{}", naming::MEMBER_TRAIL),
            )],
        },
        Protection {
            sid: "OrgwatchRoles",
            // CreateRole: nobody else may create a role under an exempt or orgwatch name.
            actions: &[
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:UpdateRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:PutRolePermissionsBoundary",
                "iam:DeleteRolePermissionsBoundary",
            ],
            resources: roles.into_iter().map(|r| role(names, r)).collect(),
        },
        Protection {
            sid: "OrgwatchMemberStack",
            // ExecuteChangeSet updates a stack as UpdateStack does.
            actions: &[
                "cloudformation:DeleteStack",
                "cloudformation:UpdateStack",
                "cloudformation:ExecuteChangeSet",
            ],
            resources: vec![
                // The plain stack, and the StackSet's instances (`StackSet-<name>-<uuid>`).
                arn(
                    names,
                    &format!("cloudformation:*:*:stack/{}/*", naming::MEMBER_STACK),
                ),
                arn(
                    names,
                    &format!(
                        "cloudformation:*:*:stack/StackSet-{}-*",
                        naming::MEMBER_STACK
                    ),
                ),
            ],
        },
    ]
}

/// The SCP document for the configured names and partition.
pub fn scp(names: &Names) -> Value {
    let exempt = exempt_principals(names);
    let statements: Vec<Value> = protections(names)
        .into_iter()
        .map(|p| {
            json!({
                "Sid": p.sid,
                "Effect": "Deny",
                "Action": p.actions,
                "Resource": p.resources,
                "Condition": { "ArnNotLike": { EXEMPTION_KEY: exempt } },
            })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// [`scp`] minified, as it is to be submitted (AWS counts the characters as sent).
pub fn scp_text(names: &Names) -> String {
    scp(names).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_role() -> String {
        // IAM's longest role name: 64 characters.
        let name = format!("OrgwatchMember{}", "x".repeat(50));
        assert_eq!(name.len(), 64);
        name
    }

    fn variants() -> Vec<Names> {
        vec![
            Names::default(),
            Names {
                member_role: long_role(),
                ..Names::default()
            },
            Names {
                partition: "aws-us-gov".into(),
                member_role: long_role(),
                agent_member_role: format!("AgentReader{}", "y".repeat(53)),
                ..Names::default()
            },
        ]
    }

    fn statements(doc: &Value) -> &Vec<Value> {
        doc["Statement"].as_array().expect("statements")
    }

    fn has_key(v: &Value, key: &str) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| k == key || has_key(v, key)),
            Value::Array(a) => a.iter().any(|v| has_key(v, key)),
            _ => false,
        }
    }

    #[test]
    fn guardrail_fits_the_scp_size_limit() {
        for names in variants() {
            let text = scp_text(&names);
            // Strictly less: room for the newline it is printed with, in case a file with
            // it is submitted. Bytes, not characters: the document is ASCII, so both agree.
            assert!(
                text.len() < SCP_MAX_CHARS,
                "{} characters for {names:?}:\n{text}",
                text.len()
            );
            assert!(text.is_ascii());
            assert!(!text.contains('\n') && !text.contains(": "), "minified");
            let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(parsed, scp(&names));
        }
    }

    #[test]
    fn guardrail_is_valid_scp_syntax() {
        for names in variants() {
            let doc = scp(&names);
            assert_eq!(doc["Version"], "2012-10-17");
            for key in ["Principal", "NotPrincipal", "NotAction", "NotResource"] {
                assert!(!has_key(&doc, key), "{key} in {doc}");
            }
            let sids: Vec<&str> = statements(&doc)
                .iter()
                .map(|s| s["Sid"].as_str().expect("sid"))
                .collect();
            let mut unique = sids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), sids.len(), "unique statement ids");
            for sid in sids {
                assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "{sid}");
            }
        }
    }

    #[test]
    fn guardrail_statements_deny_all_but_the_exempt_principals() {
        for names in variants() {
            let doc = scp(&names);
            let exempt = json!(exempt_principals(&names));
            assert!(!statements(&doc).is_empty());
            for s in statements(&doc) {
                assert_eq!(s["Effect"], "Deny", "{s}");
                assert_eq!(
                    s["Condition"],
                    json!({"ArnNotLike": {"aws:PrincipalArn": exempt}}),
                    "{s}"
                );
                for a in s["Action"].as_array().expect("actions") {
                    let a = a.as_str().expect("action");
                    let (svc, op) = a.split_once(':').expect("service:Action");
                    assert!(!svc.is_empty() && !op.contains('*'), "{a}");
                    assert!(op.chars().next().is_some_and(char::is_uppercase), "{a}");
                }
                for r in s["Resource"].as_array().expect("resources") {
                    let r = r.as_str().expect("resource");
                    assert!(
                        r.starts_with(&format!("arn:{}:", names.partition)),
                        "{r}: resource-scoped, in the configured partition"
                    );
                    assert!(!r.contains('{'), "{r}");
                }
            }
        }
    }

    #[test]
    fn guardrail_exempts_the_configured_member_role_and_stacksets() {
        for names in variants() {
            let exempt = exempt_principals(&names);
            let p = &names.partition;
            for want in [
                format!("arn:{p}:iam::*:role/{}", names.member_role),
                format!("arn:{p}:iam::*:role/stacksets-exec-*"),
                format!("arn:{p}:iam::*:role/AWSCloudFormationStackSetExecutionRole"),
            ] {
                assert!(exempt.contains(&want), "{want} not in {exempt:?}");
            }
            assert_eq!(exempt.len(), 3, "{exempt:?}");
            // No exemption covers a principal of the account at large.
            for e in &exempt {
                assert!(!e.ends_with(":role/*") && !e.ends_with(":root"), "{e}");
            }
            if p != "aws" {
                assert!(!scp_text(&names).contains("arn:aws:"), "partition {p}");
            }
        }
    }

    #[test]
    fn guardrail_protects_every_orgwatch_resource_in_members() {
        let names = Names {
            member_role: "OrgWatchMember".into(),
            ..Names::default()
        };
        let doc = scp(&names);
        let denied = |action: &str, resource: &str| {
            statements(&doc).iter().any(|s| {
                s["Action"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!(action)))
                    && s["Resource"]
                        .as_array()
                        .is_some_and(|r| r.contains(&json!(resource)))
            })
        };
        let alarm = "arn:aws:cloudwatch:*:*:alarm:orgwatch-*";
        for a in [
            "DeleteAlarms",
            "DisableAlarmActions",
            "PutMetricAlarm",
            "SetAlarmState",
        ] {
            assert!(denied(&format!("cloudwatch:{a}"), alarm), "{a}");
        }
        for group in [
            "arn:aws:logs:*:*:log-group:/orgwatch/cloudtrail",
            "arn:aws:logs:*:*:log-group:/orgwatch/cloudtrail:*",
        ] {
            for a in [
                "DeleteLogGroup",
                "DeleteMetricFilter",
                "PutMetricFilter",
                "PutRetentionPolicy",
                "DeleteRetentionPolicy",
                "DisassociateKmsKey",
            ] {
                assert!(denied(&format!("logs:{a}"), group), "{a} {group}");
            }
        }
        for a in [
            "DeleteRule",
            "DisableRule",
            "PutRule",
            "RemoveTargets",
            "PutTargets",
        ] {
            assert!(
                denied(&format!("events:{a}"), "arn:aws:events:*:*:rule/orgwatch-*"),
                "{a}"
            );
        }
        for a in [
            "StopLogging",
            "DeleteTrail",
            "UpdateTrail",
            "PutEventSelectors",
        ] {
            assert!(
                denied(
                    &format!("cloudtrail:{a}"),
                    "arn:aws:cloudtrail:*:*:trail/orgwatch-account"
                ),
                "{a}"
            );
        }
        for role in [
            "orgwatch-cloudtrail-logs",
            "orgwatch-events-forward",
            "orgwatch-agent-reader",
            "OrgWatchMember",
            "stacksets-exec-*",
            "AWSCloudFormationStackSetExecutionRole",
        ] {
            for a in [
                "CreateRole",
                "DeleteRole",
                "DeleteRolePolicy",
                "PutRolePolicy",
                "UpdateAssumeRolePolicy",
                "AttachRolePolicy",
                "DetachRolePolicy",
                "UpdateRole",
                "DeleteRolePermissionsBoundary",
                "PutRolePermissionsBoundary",
            ] {
                assert!(
                    denied(&format!("iam:{a}"), &format!("arn:aws:iam::*:role/{role}")),
                    "{a} {role}"
                );
            }
        }
        for stack in [
            "arn:aws:cloudformation:*:*:stack/orgwatch-member/*",
            "arn:aws:cloudformation:*:*:stack/StackSet-orgwatch-member-*",
        ] {
            for a in ["DeleteStack", "UpdateStack", "ExecuteChangeSet"] {
                assert!(denied(&format!("cloudformation:{a}"), stack), "{a} {stack}");
            }
        }
        // Account-level actions (no resource type) would deny far more than orgwatch's own.
        let text = scp_text(&names);
        assert!(!text.contains("ResourcePolicy"), "{text}");
        assert!(!text.contains("\"*\""), "{text}");
    }
}
