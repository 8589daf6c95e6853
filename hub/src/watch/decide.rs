//! What `hub watch` does about the control queue's events: pure deciders, no I/O.
//!
//! * [`decide`] reads one message (an EventBridge event, as the control bus rule delivers
//!   it) and says what it means: an account joined, moved or left, orgwatch's resources
//!   were changed in an account and region, or nothing to act on (and why).
//! * [`plan`] folds a burst of decisions into the smallest set of work: one item per
//!   account, however many events name it.
//!
//! Where AWS emits each event (what the tests reproduce with PutEvents):
//!
//! | event | account, region, bus | `source`, `detail-type` | what names the account |
//! |---|---|---|---|
//! | `CreateAccountResult` | management, us-east-1, default | `aws.organizations`, "AWS Service Event via CloudTrail" | `serviceEventDetails.createAccountStatus.accountId` (`state` SUCCEEDED) |
//! | `MoveAccount`, `RemoveAccountFromOrganization`, `CloseAccount` | management, us-east-1, default | `aws.organizations`, "AWS API Call via CloudTrail" | `requestParameters.accountId` |
//! | `AcceptHandshake`, `LeaveOrganization` | the member that calls it | as above | the caller (`recipientAccountId`) |
//! | a tamper call (`orgwatch-tamper`) | the member, the call's region (IAM: us-east-1), default | `aws.<service>`, "AWS API Call via CloudTrail" | `recipientAccountId`, `awsRegion` |
//!
//! Sources: Organizations API reference, CreateAccount ("check the CloudTrail log for the
//! CreateAccountResult event") and CreateAccountStatus; Organizations user guide, "Logging
//! and monitoring in AWS Organizations" (Organizations events are recorded in us-east-1);
//! EventBridge user guide, "AWS service events delivered via AWS CloudTrail" (detail-types);
//! CloudTrail user guide, "CloudTrail record contents" (`recipientAccountId`, `awsRegion`,
//! `userIdentity`). A `LeaveOrganization` or `AcceptHandshake` is recorded in the member
//! that made it, which orgwatch may not watch yet: the periodic membership check (a
//! `ListAccounts` against what is enrolled) catches those within its interval.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// What one event means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An account was created or joined: enroll it when it is in scope.
    Joined { account: String },
    /// An account moved between organisational units: its scope may have changed.
    Moved { account: String },
    /// An account was removed, closed or left: forget it and remove what orgwatch made.
    Left { account: String },
    /// orgwatch's resources in an account were changed by someone else: reconcile that
    /// account in `region` (`None`: every region, for global services such as IAM).
    Tampered {
        account: String,
        region: Option<String>,
        principal: String,
        call: String,
    },
}

impl Trigger {
    pub fn account(&self) -> &str {
        match self {
            Trigger::Joined { account }
            | Trigger::Moved { account }
            | Trigger::Left { account }
            | Trigger::Tampered { account, .. } => account,
        }
    }

    /// For logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Joined { .. } => "joined",
            Trigger::Moved { .. } => "moved",
            Trigger::Left { .. } => "left",
            Trigger::Tampered { .. } => "tampered",
        }
    }
}

/// The verdict on one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Act(Trigger),
    /// A genuine event that needs nothing done (a failed account creation, an invitation
    /// not yet accepted, the hub's own call).
    Ignore(String),
    /// Not an event AWS sent in a shape orgwatch knows: not acted on, dead-lettered with
    /// the reason.
    Refuse(String),
}

/// Facts the decision depends on.
#[derive(Clone, Debug)]
pub struct Facts {
    pub management_account: String,
    /// The hub's own sessions in members: `assumed-role/<member role>/<session>`.
    pub member_role: String,
    pub session_name: String,
}

/// Services whose calls are recorded in one region but whose resources are global.
const GLOBAL_SOURCES: [&str; 1] = ["iam.amazonaws.com"];

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn account_id(s: Option<&str>) -> Option<String> {
    s.filter(|a| shared::naming::is_account_id(a))
        .map(str::to_string)
}

/// True for the hub's own session in a member: `arn:<partition>:sts::<account>:
/// assumed-role/<member role>/<session name>`.
pub fn is_hub_session(arn: &str, facts: &Facts) -> bool {
    let Some(rest) = arn.split_once(":assumed-role/").map(|(_, r)| r) else {
        return false;
    };
    arn.starts_with("arn:")
        && arn.contains(":sts::")
        && rest == format!("{}/{}", facts.member_role, facts.session_name)
}

/// What the message `body` (an EventBridge event as JSON) means.
pub fn decide(body: &str, facts: &Facts) -> Decision {
    let event: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Decision::Refuse(format!("not JSON: {e}")),
    };
    let source = text(&event, &["source"]).unwrap_or_default();
    let detail_type = text(&event, &["detail-type"]).unwrap_or_default();
    let envelope_account = text(&event, &["account"]);
    let Some(detail) = event.get("detail").filter(|d| d.is_object()) else {
        return Decision::Refuse("no detail object: not an EventBridge event".into());
    };
    // EventBridge refuses PutEvents with an `aws.` source from anyone but AWS (PutEvents,
    // "aws.*" sources are reserved), and CloudTrail delivers a record in the account that
    // recorded it: anything else was made up.
    if !source.starts_with("aws.") {
        return Decision::Refuse(format!("source {source:?} is not an AWS service's"));
    }
    // The envelope's account, when it has one (the emulator drops it on bus-to-bus
    // delivery; EventBridge keeps it), must be the record's: the agent's rule too.
    let recipient = text(detail, &["recipientAccountId"]).unwrap_or_default();
    if let Some(a) = envelope_account
        && a != recipient
    {
        return Decision::Refuse(format!(
            "the envelope's account {a:?} is not the record's recipientAccountId {recipient:?}"
        ));
    }
    let envelope_account = recipient;
    let event_name = text(detail, &["eventName"]).unwrap_or_default();
    if source == "aws.organizations" {
        return organizations(detail, event_name, envelope_account, facts);
    }
    if detail_type != "AWS API Call via CloudTrail" {
        return Decision::Refuse(format!(
            "detail-type {detail_type:?} from {source} is neither an Organizations event nor a tamper call"
        ));
    }
    let Some(account) = account_id(Some(recipient)) else {
        return Decision::Refuse(format!(
            "recipientAccountId {recipient:?} is not an account id"
        ));
    };
    let principal = text(detail, &["userIdentity", "arn"])
        .or_else(|| text(detail, &["userIdentity", "type"]))
        .unwrap_or("unknown")
        .to_string();
    if is_hub_session(&principal, facts) {
        return Decision::Ignore(format!("{event_name} was the hub's own call"));
    }
    let event_source = text(detail, &["eventSource"]).unwrap_or_default();
    let region = if GLOBAL_SOURCES.contains(&event_source) {
        None
    } else {
        match text(detail, &["awsRegion"]) {
            Some(r) if !r.is_empty() => Some(r.to_string()),
            _ => return Decision::Refuse(format!("{event_name} has no awsRegion")),
        }
    };
    Decision::Act(Trigger::Tampered {
        account,
        region,
        principal,
        call: format!(
            "{}:{event_name}",
            event_source.trim_end_matches(".amazonaws.com")
        ),
    })
}

fn organizations(detail: &Value, name: &str, envelope: &str, facts: &Facts) -> Decision {
    let requested = || account_id(text(detail, &["requestParameters", "accountId"]));
    let from_management = envelope == facts.management_account;
    let trigger = match name {
        "CreateAccountResult" => {
            let status = detail
                .get("serviceEventDetails")
                .and_then(|d| d.get("createAccountStatus"));
            let state = status
                .and_then(|s| s.get("state"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if state != "SUCCEEDED" {
                return Decision::Ignore(format!("account creation ended {state:?}"));
            }
            match account_id(
                status
                    .and_then(|s| s.get("accountId"))
                    .and_then(Value::as_str),
            ) {
                Some(account) => Trigger::Joined { account },
                None => return Decision::Refuse("CreateAccountResult without an accountId".into()),
            }
        }
        "InviteAccountToOrganization" => {
            return Decision::Ignore("an invited account is enrolled once it accepts".into());
        }
        "AcceptHandshake" => match account_id(Some(envelope)) {
            Some(account) if !from_management => Trigger::Joined { account },
            _ => return Decision::Ignore("the management account accepted a handshake".into()),
        },
        "LeaveOrganization" => match account_id(Some(envelope)) {
            Some(account) if !from_management => Trigger::Left { account },
            _ => return Decision::Refuse("LeaveOrganization from the management account".into()),
        },
        "MoveAccount" | "RemoveAccountFromOrganization" | "CloseAccount" => {
            if !from_management {
                return Decision::Refuse(format!(
                    "{name} recorded in {envelope}, not the management account {}",
                    facts.management_account
                ));
            }
            let Some(account) = requested() else {
                return Decision::Refuse(format!("{name} without requestParameters.accountId"));
            };
            if name == "MoveAccount" {
                Trigger::Moved { account }
            } else {
                Trigger::Left { account }
            }
        }
        other => {
            return Decision::Ignore(format!(
                "Organizations event {other} changes no account's membership"
            ));
        }
    };
    Decision::Act(trigger)
}

/// What to do for one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Enroll every region when the account is in scope; offboard it when it is not (a
    /// move out of the included OUs).
    Enroll,
    /// Reconcile these regions (`None`: every region) when the account is enrolled.
    Reconcile(Option<BTreeSet<String>>),
    /// Remove what orgwatch made and forget the account.
    Offboard,
}

/// The work for one account, and the messages it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    pub account: String,
    pub action: Action,
    /// Indices into the batch given to [`plan`].
    pub messages: Vec<usize>,
    /// The tamper calls behind the work: (principal, call).
    pub calls: Vec<(String, String)>,
}

impl Work {
    /// Whether someone changed an EventBridge rule's targets: the repair then reads every
    /// rule's targets (a role swapped on a target that still points at the central bus is
    /// not in the one listing a re-run takes, `observe::event_rules`).
    pub fn changed_targets(&self) -> bool {
        self.calls
            .iter()
            .any(|(_, call)| matches!(call.as_str(), "events:PutTargets" | "events:RemoveTargets"))
    }
}

/// Folds a burst of triggers (message index, trigger) into one work item per account, in
/// account order. Membership events decide by the latest (a removal after a creation
/// offboards); a tamper reconcile is covered by an enroll and moot after an offboard; a
/// call on a global service (IAM) reconciles every region.
pub fn plan(batch: &[(usize, Trigger)]) -> Vec<Work> {
    /// An account's action so far, its messages and its tamper calls.
    type Folded = (Option<Action>, Vec<usize>, Vec<(String, String)>);
    let mut by_account: BTreeMap<String, Folded> = BTreeMap::new();
    for (index, trigger) in batch {
        let (action, messages, calls) =
            by_account.entry(trigger.account().to_string()).or_default();
        messages.push(*index);
        match trigger {
            Trigger::Joined { .. } | Trigger::Moved { .. } => *action = Some(Action::Enroll),
            Trigger::Left { .. } => *action = Some(Action::Offboard),
            Trigger::Tampered {
                region,
                principal,
                call,
                ..
            } => {
                calls.push((principal.clone(), call.clone()));
                match (action.as_mut(), region) {
                    (None, _) => {
                        *action = Some(Action::Reconcile(
                            region.as_ref().map(|r| BTreeSet::from([r.clone()])),
                        ));
                    }
                    (Some(Action::Reconcile(Some(regions))), Some(r)) => {
                        regions.insert(r.clone());
                    }
                    (Some(Action::Reconcile(Some(_))), None) => {
                        *action = Some(Action::Reconcile(None));
                    }
                    (Some(Action::Reconcile(None) | Action::Enroll | Action::Offboard), _) => {}
                }
            }
        }
    }
    by_account
        .into_iter()
        .filter_map(|(account, (action, messages, calls))| {
            action.map(|action| Work {
                account,
                action,
                messages,
                calls,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MGMT: &str = "111111111111";
    const MEMBER: &str = "222222222222";

    fn facts() -> Facts {
        Facts {
            management_account: MGMT.into(),
            member_role: "OrganizationAccountAccessRole".into(),
            session_name: "orgwatch-hub".into(),
        }
    }

    fn envelope(account: &str, source: &str, detail_type: &str, detail: Value) -> String {
        json!({
            "version": "0",
            "id": "6f8d2a1c-0000-4000-8000-000000000001",
            "detail-type": detail_type,
            "source": source,
            "account": account,
            "time": "2026-12-01T10:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail
        })
        .to_string()
    }

    fn create_account_result(state: &str, new: &str) -> String {
        envelope(
            MGMT,
            "aws.organizations",
            "AWS Service Event via CloudTrail",
            json!({
                "eventVersion": "1.08",
                "userIdentity": {"accountId": MGMT, "invokedBy": "AWS Internal"},
                "eventTime": "2026-12-01T10:00:00Z",
                "eventSource": "organizations.amazonaws.com",
                "eventName": "CreateAccountResult",
                "awsRegion": "us-east-1",
                "sourceIPAddress": "AWS Internal",
                "userAgent": "AWS Internal",
                "requestParameters": null,
                "responseElements": null,
                "eventID": "0b7ae6c9-0000-4000-8000-000000000002",
                "readOnly": false,
                "eventType": "AwsServiceEvent",
                "managementEvent": true,
                "recipientAccountId": MGMT,
                "serviceEventDetails": {"createAccountStatus": {
                    "id": "car-0123456789abcdef0123456789abcdef",
                    "state": state,
                    "accountName": "sandbox",
                    "accountId": new,
                    "requestedTimestamp": "Dec 1, 2026 9:59:01 AM",
                    "completedTimestamp": "Dec 1, 2026 10:00:00 AM"
                }},
                "eventCategory": "Management"
            }),
        )
    }

    fn org_call(account: &str, name: &str, target: &str) -> String {
        envelope(
            account,
            "aws.organizations",
            "AWS API Call via CloudTrail",
            json!({
                "eventSource": "organizations.amazonaws.com",
                "eventName": name,
                "awsRegion": "us-east-1",
                "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{account}:assumed-role/Admin/alice")},
                "requestParameters": {"accountId": target},
                "recipientAccountId": account,
                "eventType": "AwsApiCall"
            }),
        )
    }

    fn tamper(account: &str, source: &str, name: &str, region: &str, arn: &str) -> String {
        envelope(
            account,
            &format!("aws.{}", source.trim_end_matches(".amazonaws.com")),
            "AWS API Call via CloudTrail",
            json!({
                "eventSource": source,
                "eventName": name,
                "awsRegion": region,
                "userIdentity": {"type": "AssumedRole", "arn": arn},
                "requestParameters": {"alarmNames": ["orgwatch-cis-4.3"]},
                "recipientAccountId": account,
                "eventType": "AwsApiCall"
            }),
        )
    }

    #[test]
    fn a_created_account_is_joined_and_a_failed_creation_ignored() {
        assert_eq!(
            decide(
                &create_account_result("SUCCEEDED", "333333333333"),
                &facts()
            ),
            Decision::Act(Trigger::Joined {
                account: "333333333333".into()
            })
        );
        assert!(matches!(
            decide(&create_account_result("FAILED", ""), &facts()),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn membership_calls_name_their_account() {
        let d = |name| decide(&org_call(MGMT, name, MEMBER), &facts());
        assert_eq!(
            d("MoveAccount"),
            Decision::Act(Trigger::Moved {
                account: MEMBER.into()
            })
        );
        for name in ["RemoveAccountFromOrganization", "CloseAccount"] {
            assert_eq!(
                d(name),
                Decision::Act(Trigger::Left {
                    account: MEMBER.into()
                })
            );
        }
        assert!(matches!(
            d("InviteAccountToOrganization"),
            Decision::Ignore(_)
        ));
        assert!(matches!(d("CreateOrganizationalUnit"), Decision::Ignore(_)));
        // Recorded by the member itself.
        assert_eq!(
            decide(&org_call(MEMBER, "LeaveOrganization", ""), &facts()),
            Decision::Act(Trigger::Left {
                account: MEMBER.into()
            })
        );
        // A removal is the management account's call: from a member it is not AWS's shape.
        assert!(matches!(
            decide(
                &org_call(MEMBER, "RemoveAccountFromOrganization", MEMBER),
                &facts()
            ),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn a_tamper_call_names_account_region_principal_and_call() {
        let human =
            format!("arn:aws:sts::{MEMBER}:assumed-role/OrganizationAccountAccessRole/mallory");
        assert_eq!(
            decide(
                &tamper(
                    MEMBER,
                    "monitoring.amazonaws.com",
                    "DeleteAlarms",
                    "eu-west-1",
                    &human
                ),
                &facts()
            ),
            Decision::Act(Trigger::Tampered {
                account: MEMBER.into(),
                region: Some("eu-west-1".into()),
                principal: human.clone(),
                call: "monitoring:DeleteAlarms".into(),
            })
        );
        // IAM is global: every region of the account.
        match decide(
            &tamper(
                MEMBER,
                "iam.amazonaws.com",
                "PutRolePolicy",
                "us-east-1",
                &human,
            ),
            &facts(),
        ) {
            Decision::Act(Trigger::Tampered { region, .. }) => assert_eq!(region, None),
            other => panic!("{other:?}"),
        }
        // The hub's own session is not tampering; the same session name of another role is.
        let hub = format!(
            "arn:aws:sts::{MEMBER}:assumed-role/OrganizationAccountAccessRole/orgwatch-hub"
        );
        assert!(matches!(
            decide(
                &tamper(
                    MEMBER,
                    "monitoring.amazonaws.com",
                    "DeleteAlarms",
                    "us-east-1",
                    &hub
                ),
                &facts()
            ),
            Decision::Ignore(_)
        ));
        let imposter = format!("arn:aws:sts::{MEMBER}:assumed-role/Other/orgwatch-hub");
        assert!(matches!(
            decide(
                &tamper(
                    MEMBER,
                    "monitoring.amazonaws.com",
                    "DeleteAlarms",
                    "us-east-1",
                    &imposter
                ),
                &facts()
            ),
            Decision::Act(_)
        ));
    }

    #[test]
    fn made_up_events_are_refused() {
        let human = format!("arn:aws:sts::{MEMBER}:assumed-role/Admin/mallory");
        let good = tamper(
            MEMBER,
            "monitoring.amazonaws.com",
            "DeleteAlarms",
            "us-east-1",
            &human,
        );
        let mut forged: Value = serde_json::from_str(&good).unwrap();
        forged["source"] = json!("custom.orgwatch");
        assert!(matches!(
            decide(&forged.to_string(), &facts()),
            Decision::Refuse(_)
        ));
        let mut other: Value = serde_json::from_str(&good).unwrap();
        other["account"] = json!("444444444444");
        assert!(matches!(
            decide(&other.to_string(), &facts()),
            Decision::Refuse(_)
        ));
        assert!(matches!(decide("{not json", &facts()), Decision::Refuse(_)));
        assert!(matches!(decide("{}", &facts()), Decision::Refuse(_)));
    }

    #[test]
    fn a_change_of_a_rules_targets_asks_for_every_target_read() {
        let human = format!("arn:aws:sts::{MEMBER}:assumed-role/Admin/mallory");
        let work_of = |name: &str| {
            let Decision::Act(t) = decide(
                &tamper(MEMBER, "events.amazonaws.com", name, "eu-west-1", &human),
                &facts(),
            ) else {
                panic!("{name}: not acted on");
            };
            plan(&[(0, t)])
        };
        for name in ["PutTargets", "RemoveTargets"] {
            let work = work_of(name);
            assert_eq!(work.len(), 1);
            assert!(work[0].changed_targets(), "{name}");
        }
        let work = work_of("DisableRule");
        assert!(!work[0].changed_targets());
    }

    fn tampered(account: &str, region: Option<&str>) -> Trigger {
        Trigger::Tampered {
            account: account.into(),
            region: region.map(str::to_string),
            principal: "p".into(),
            call: "c".into(),
        }
    }

    #[test]
    fn a_burst_about_one_account_is_one_work_item() {
        let batch: Vec<(usize, Trigger)> = (0..50)
            .map(|i| {
                (
                    i,
                    tampered(
                        MEMBER,
                        Some(if i % 2 == 0 { "us-east-1" } else { "eu-west-1" }),
                    ),
                )
            })
            .collect();
        let work = plan(&batch);
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].messages.len(), 50);
        assert_eq!(
            work[0].action,
            Action::Reconcile(Some(
                ["eu-west-1".to_string(), "us-east-1".to_string()].into()
            ))
        );
        assert_eq!(work[0].calls.len(), 50);
    }

    #[test]
    fn membership_decides_by_the_latest_event_and_covers_tampering() {
        let a = "333333333333";
        let work = plan(&[
            (0, tampered(MEMBER, Some("us-east-1"))),
            (1, tampered(MEMBER, None)),
            (2, tampered(MEMBER, Some("eu-west-1"))),
            (3, Trigger::Joined { account: a.into() }),
            (4, tampered(a, Some("us-east-1"))),
            (5, Trigger::Left { account: a.into() }),
        ]);
        assert_eq!(work.len(), 2);
        // A global call reconciles every region, whatever regions follow.
        assert_eq!(work[0].account, MEMBER);
        assert_eq!(work[0].action, Action::Reconcile(None));
        assert_eq!(work[1].account, a);
        assert_eq!(work[1].action, Action::Offboard);
        assert_eq!(work[1].messages, vec![3, 4, 5]);
        let rejoined = plan(&[
            (0, Trigger::Left { account: a.into() }),
            (1, Trigger::Joined { account: a.into() }),
            (2, tampered(a, Some("us-east-1"))),
        ]);
        assert_eq!(rejoined[0].action, Action::Enroll);
    }
}
