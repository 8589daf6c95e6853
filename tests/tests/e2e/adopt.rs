//! Resources that carry orgwatch's names but not its `orgwatch:managed=true` tag: `hub`
//! never changes or deletes them unless `--adopt` is given, and says so.

use orgwatch_tests::Emulator;
use serde_json::Value;

use super::hub::{Run, changes, count_member_resources, hub, tempfile_dir, write_config};

const GROUP: &str = "/orgwatch/cloudtrail";
const ALARM: &str = "orgwatch-root-activity";

/// (account, region, kind, name, handling) of every unmanaged resource in a report.
fn unmanaged(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    for r in run.json["results"].as_array().into_iter().flatten() {
        for u in r["unmanaged"].as_array().into_iter().flatten() {
            out.push(format!(
                "{} {} {} {} {}",
                u["key"]["account"].as_str().unwrap_or_default(),
                u["key"]["region"].as_str().unwrap_or_default(),
                u["key"]["kind"].as_str().unwrap_or_default(),
                u["key"]["name"].as_str().unwrap_or_default(),
                u["handling"].as_str().unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

fn result<'a>(run: &'a Run, account: &str, region: &str) -> &'a Value {
    run.json["results"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["account_id"] == account && r["region"] == region && r["scope"] == "member")
        .unwrap_or_else(|| panic!("no result for {account} {region}: {:#}", run.json))
}

async fn group_tags(c: &shared::aws::Clients, account: &str) -> Vec<(String, String)> {
    let arn = format!("arn:aws:logs:us-east-1:{account}:log-group:{GROUP}");
    let out = c
        .logs()
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("log group tags");
    let mut tags: Vec<(String, String)> = out
        .tags()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.sort();
    tags
}

async fn filter_count(c: &shared::aws::Clients) -> usize {
    c.logs()
        .describe_metric_filters()
        .log_group_name(GROUP)
        .send()
        .await
        .expect("filters")
        .metric_filters()
        .len()
}

#[tokio::test]
async fn unmanaged_resources_are_conflicts_until_adopted_and_survive_offboarding() {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(2).await.expect("organisation");
    let dir = tempfile_dir::Dir::new();
    let config = write_config(dir.path(), "eventbridge");
    let factory = emu.factory().await.expect("factory");
    let (a, b) = (org.members[0].clone(), org.members[1].clone());
    let ca = factory
        .for_account(&a)
        .await
        .expect("a")
        .in_region("us-east-1");
    let cb = factory
        .for_account(&b)
        .await
        .expect("b")
        .in_region("us-east-1");

    // Made by hand, before orgwatch: a log group under orgwatch's name (with a tag of its
    // owner's) in A, and an alarm under an orgwatch rule's name with other settings in B.
    ca.logs()
        .create_log_group()
        .log_group_name(GROUP)
        .tags("team", "platform")
        .send()
        .await
        .expect("create log group");
    cb.cloudwatch()
        .put_metric_alarm()
        .alarm_name(ALARM)
        .metric_name("SomethingElse")
        .namespace("Platform")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("create alarm");

    let conflicts = vec![
        format!("{a} us-east-1 log-group {GROUP} conflict"),
        format!("{b} us-east-1 alarm {ALARM} conflict"),
    ];
    let mut conflicts = conflicts;
    conflicts.sort();
    let plan = hub(&emu, &config, &["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    assert_eq!(unmanaged(&plan), conflicts);

    let enroll = hub(&emu, &config, &["enroll"]);
    assert_eq!(
        enroll.code, 1,
        "a conflict fails its account: {:#}",
        enroll.json
    );
    assert_eq!(unmanaged(&enroll), conflicts);
    for (account, what) in [
        (&a, format!("log-group {GROUP}")),
        (&b, format!("alarm {ALARM}")),
    ] {
        let r = result(&enroll, account, "us-east-1");
        assert_eq!(r["status"], "failed");
        let error = r["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("--adopt") && error.contains(&what),
            "{error}"
        );
        assert_eq!(r["changes"].as_array().map(Vec::len), Some(0), "{r:#}");
        // The account's other region is converged.
        assert_eq!(result(&enroll, account, "eu-west-1")["status"], "changed");
    }
    // Nothing in the conflicting account and region was touched.
    assert_eq!(
        group_tags(&ca, &a).await,
        [("team".into(), "platform".into())]
    );
    let groups = ca
        .logs()
        .describe_log_groups()
        .log_group_name_prefix(GROUP)
        .send()
        .await
        .expect("groups");
    assert_eq!(groups.log_groups()[0].retention_in_days(), None);
    assert_eq!(
        count_member_resources(&factory, &a, "us-east-1").await,
        (0, 0, 0)
    );
    let alarm = cb
        .cloudwatch()
        .describe_alarms()
        .alarm_names(ALARM)
        .send()
        .await
        .expect("alarm");
    assert_eq!(
        alarm.metric_alarms()[0].metric_name(),
        Some("SomethingElse")
    );
    assert_eq!(alarm.metric_alarms()[0].threshold(), Some(5.0));

    let status = hub(&emu, &config, &["status"]);
    assert_eq!(status.code, 3, "{}", status.stderr);
    assert_eq!(
        unmanaged(&status),
        conflicts
            .iter()
            .map(|c| c.replace("conflict", "drift"))
            .collect::<Vec<_>>()
    );

    // --adopt tags them (keeping the owner's tags) and converges them.
    let adopt = hub(&emu, &config, &["enroll", "--adopt"]);
    assert_eq!(adopt.code, 0, "{:#}", adopt.json);
    let done = changes(&adopt);
    for c in [
        format!("{a} us-east-1 log-group {GROUP} adopt"),
        format!("{a} us-east-1 log-group {GROUP} update retention_days"),
        format!("{b} us-east-1 alarm {ALARM} adopt"),
    ] {
        assert!(done.contains(&c), "{c} not in {done:#?}");
    }
    assert_eq!(
        group_tags(&ca, &a).await,
        [
            ("orgwatch:managed".into(), "true".into()),
            ("team".into(), "platform".into())
        ]
    );
    let rules = adopt.json["rules"].as_array().map(Vec::len).unwrap_or(0);
    let (filters, alarms, _) = count_member_resources(&factory, &a, "us-east-1").await;
    assert!(
        filters >= rules && alarms == rules,
        "{filters} {alarms} {rules}"
    );
    let alarm = cb
        .cloudwatch()
        .describe_alarms()
        .alarm_names(ALARM)
        .send()
        .await
        .expect("alarm");
    assert_ne!(
        alarm.metric_alarms()[0].metric_name(),
        Some("SomethingElse")
    );
    let alarm_tags = cb
        .cloudwatch()
        .list_tags_for_resource()
        .resource_arn(format!("arn:aws:cloudwatch:us-east-1:{b}:alarm:{ALARM}"))
        .send()
        .await
        .expect("alarm tags");
    assert!(
        alarm_tags
            .tags()
            .iter()
            .any(|t| t.key() == Some("orgwatch:managed") && t.value() == Some("true"))
    );
    let again = hub(&emu, &config, &["enroll"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json["writes"], 0, "{:?}", changes(&again));
    assert!(unmanaged(&again).is_empty());

    // Someone takes A's log group back (drops the tag): offboarding A leaves the group and
    // its filters, and removes everything else orgwatch made.
    ca.logs()
        .untag_resource()
        .resource_arn(format!("arn:aws:logs:us-east-1:{a}:log-group:{GROUP}"))
        .tag_keys("orgwatch:managed")
        .send()
        .await
        .expect("untag");
    let off = hub(&emu, &config, &["offboard", "--yes", "--account", &a]);
    assert_eq!(off.code, 0, "{:#}", off.json);
    let skipped = unmanaged(&off);
    assert!(
        skipped.contains(&format!("{a} us-east-1 log-group {GROUP} skipped")),
        "{skipped:#?}"
    );
    assert_eq!(
        skipped.len(),
        1 + filters,
        "the group and each of its filters: {skipped:#?}"
    );
    assert_eq!(filter_count(&ca).await, filters);
    let (_, alarms, rules_left) = count_member_resources(&factory, &a, "us-east-1").await;
    assert_eq!((alarms, rules_left), (0, 0));
    let eu = factory
        .for_account(&a)
        .await
        .expect("a")
        .in_region("eu-west-1");
    let eu_groups = eu
        .logs()
        .describe_log_groups()
        .log_group_name_prefix(GROUP)
        .send()
        .await
        .expect("groups");
    assert!(
        eu_groups.log_groups().is_empty(),
        "a managed group is deleted"
    );
}

/// Tags the listings do not carry are read only when they matter: an orgwatch rule that
/// lost its managed tag but is as declared is reported by `hub status` (the audit reads
/// every rule's tags), left alone by a re-run of `hub enroll` (which reads no tags of what
/// it does not change), and guarded again once it differs from the declared state.
#[tokio::test]
async fn a_rule_without_the_tag_is_reported_by_status_left_alone_as_declared_and_guarded_once_changed()
 {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(1).await.expect("organisation");
    let dir = tempfile_dir::Dir::new();
    let config = write_config(dir.path(), "eventbridge");
    let first = hub(&emu, &config, &["enroll"]);
    assert_eq!(first.code, 0, "{:#}", first.json);

    let factory = emu.factory().await.expect("factory");
    let member = org.members[0].clone();
    let c = factory
        .for_account(&member)
        .await
        .expect("member")
        .in_region("us-east-1");
    let rule_name = shared::naming::EVENTS_TO_LOGS_RULE;
    let rule = c
        .eventbridge()
        .describe_rule()
        .name(rule_name)
        .send()
        .await
        .expect("rule");
    c.eventbridge()
        .untag_resource()
        .resource_arn(rule.arn().unwrap_or_default())
        .tag_keys(shared::naming::MANAGED_TAG)
        .send()
        .await
        .expect("untag");

    let status = hub(&emu, &config, &["status"]);
    assert_eq!(
        status.code, 3,
        "status reports the untagged rule: {}",
        status.stderr
    );
    assert_eq!(
        unmanaged(&status),
        [format!("{member} us-east-1 events-rule {rule_name} drift")]
    );
    assert!(
        status.json["calls_by_operation"]["EventBridge:ListTagsForResource"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the audit reads the rules' tags"
    );

    let again = hub(&emu, &config, &["enroll"]);
    assert_eq!(again.code, 0, "{:#}", again.json);
    assert_eq!(again.json["writes"], 0);
    assert!(unmanaged(&again).is_empty(), "{:?}", unmanaged(&again));
    for op in [
        "EventBridge:ListTagsForResource",
        "SQS:ListQueueTags",
        "CloudTrail:ListTags",
        "CloudWatch:ListTagsForResource",
    ] {
        assert!(
            again.json["calls_by_operation"].get(op).is_none(),
            "a re-run that changes nothing reads no tags ({op}): {:#}",
            again.json["calls_by_operation"]
        );
    }

    // Someone changes it: the plan would update it, so its tag is read, and it is not
    // orgwatch's to change.
    c.eventbridge()
        .put_rule()
        .name(rule_name)
        .event_pattern(r#"{"source":["aws.ec2"]}"#)
        .send()
        .await
        .expect("change the rule");
    let third = hub(&emu, &config, &["enroll"]);
    assert_eq!(third.code, 1, "{:#}", third.json);
    assert_eq!(
        unmanaged(&third),
        [format!(
            "{member} us-east-1 events-rule {rule_name} conflict"
        )]
    );
}
