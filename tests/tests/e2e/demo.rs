//! The demo's story (`scripts/demo`), without the terminal dressing: grouped, deduplicated
//! and enriched alerts from a real enroll, through the real agent.

use std::collections::BTreeSet;

use orgwatch_tests::Emulator;
use orgwatch_tests::demo::{CALL_LOG, IAM_SOURCE_IP, ROOT_SOURCE_IP, Silent, run_story};
use serde_json::Value;

/// Every firing alert of `rule` in the notifications.
fn alerts_of<'a>(notifications: &'a [Value], rule: &str) -> Vec<&'a Value> {
    notifications
        .iter()
        .flat_map(|n| n["alerts"].as_array().into_iter().flatten())
        .filter(|a| a["rule_id"] == rule && a["state"] == "firing")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_story_delivers_grouped_deduplicated_enriched_alerts() {
    let emu = Emulator::start().expect("emulator");
    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = run_story(&emu, &dir, &Silent)
        .await
        .expect("the story runs");
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    let root = &out.org.members[0];
    let (iam_a, iam_b) = (&out.org.members[1], &out.org.members[2]);

    // The emulator stand-in fired exactly the alarms the story calls for.
    let fired: BTreeSet<(String, String)> = out
        .transitions
        .iter()
        .filter(|t| t.new_state == "ALARM")
        .map(|t| (t.account.clone(), t.alarm_name.clone()))
        .collect();
    for (account, alarm) in [
        (root, "orgwatch-root-activity"),
        (root, "orgwatch-cis-4.3"),
        (iam_a, "orgwatch-cis-4.4"),
        (iam_b, "orgwatch-cis-4.4"),
        (iam_a, "orgwatch-cis-4.1"),
    ] {
        assert!(
            fired.contains(&(account.clone(), alarm.to_string())),
            "{alarm} in {account} did not fire: {fired:?}"
        );
    }

    // IAM policy changes in two accounts: one notification naming both.
    let iam: Vec<&Value> = out
        .notifications
        .iter()
        .filter(|n| n["status"] == "firing")
        .filter(|n| {
            n["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["rule_id"] == "cis-4.4"))
        })
        .collect();
    assert_eq!(iam.len(), 1, "cis-4.4 notifications: {iam:#?}\n{log}");
    let accounts: BTreeSet<&str> = iam[0]["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(accounts, BTreeSet::from([iam_a.as_str(), iam_b.as_str()]));
    // Each enriched from its own log group: the principal who changed the policy.
    for a in alerts_of(&out.notifications, "cis-4.4") {
        assert_eq!(a["enrichment"]["status"], "found", "{a:#}");
        assert_eq!(a["actor"]["source_ip"], IAM_SOURCE_IP, "{a:#}");
    }

    // The root sign-in: seen through the event path and by two alarms (cis-4.3 and
    // root-activity, one pattern), one alarm notification delivered twice -> one alert,
    // of the most severe rule, carrying who and from where.
    let root_activity = alerts_of(&out.notifications, "root-activity");
    assert_eq!(root_activity.len(), 1, "{root_activity:#?}\n{log}");
    let a = root_activity[0];
    assert_eq!(a["account"], root.as_str());
    assert_eq!(a["severity"], "critical", "{a:#}");
    assert_eq!(a["actor"]["source_ip"], ROOT_SOURCE_IP, "{a:#}");
    assert_eq!(a["actor"]["event_name"], "ConsoleLogin", "{a:#}");
    assert_eq!(a["actor"]["principal"], format!("arn:aws:iam::{root}:root"));
    assert!(
        alerts_of(&out.notifications, "cis-4.3").is_empty(),
        "the compliance alarm of the same sign-in pages again\n{log}"
    );

    // The AccessDenied burst: one alert.
    assert_eq!(alerts_of(&out.notifications, "cis-4.1").len(), 1);

    // Nothing else, nothing twice.
    let rules: BTreeSet<&str> = out
        .notifications
        .iter()
        .flat_map(|n| n["alerts"].as_array().into_iter().flatten())
        .filter_map(|a| a["rule_id"].as_str())
        .collect();
    assert_eq!(
        rules,
        BTreeSet::from(["cis-4.1", "cis-4.4", "root-activity"]),
        "{log}"
    );
    assert!(
        out.stdout_lines >= out.notifications.len(),
        "stdout sink printed too"
    );

    // Five minutes on, the alarms return to OK: each incident is resolved, once, and the
    // two accounts' IAM alarms resolve in one notification.
    let oks = out
        .transitions
        .iter()
        .filter(|t| t.new_state == "OK")
        .count();
    assert!(oks >= 5, "{:?}", out.transitions);
    let resolved: Vec<&Value> = out
        .notifications
        .iter()
        .filter(|n| n["status"] == "resolved")
        .collect();
    let resolved_alerts: Vec<(String, String)> = resolved
        .iter()
        .flat_map(|n| n["alerts"].as_array().into_iter().flatten())
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap_or_default().to_string(),
                a["account"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let distinct: BTreeSet<_> = resolved_alerts.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        resolved_alerts.len(),
        "resolved twice: {resolved_alerts:?}"
    );
    for (rule, account) in [
        ("cis-4.4", iam_a),
        ("cis-4.4", iam_b),
        ("cis-4.1", iam_a),
        ("root-activity", root),
    ] {
        assert!(
            distinct.contains(&(rule.to_string(), account.clone())),
            "{rule} in {account} not resolved: {resolved_alerts:?}\n{log}"
        );
    }
    assert!(
        resolved
            .iter()
            .any(|n| n["accounts"].as_array().is_some_and(|a| a.len() == 2)),
        "{resolved:#?}"
    );

    // Every AWS operation hub and agent called is granted by the policy `hub policy` prints
    // for that identity (hub, agent, member role).
    let calls = std::fs::read_to_string(dir.join(CALL_LOG)).expect("call log");
    let (seen, uncovered) = orgwatch_tests::ungranted_calls(&calls);
    assert!(
        uncovered.is_empty(),
        "calls no policy grants:\n{}",
        uncovered.join("\n")
    );
    for who in [
        ("hub", "home"),
        ("hub", "member"),
        ("agent", "home"),
        ("agent", "member"),
    ] {
        assert!(
            seen.contains(&(who.0.to_string(), who.1.to_string())),
            "no calls recorded for {who:?}: {calls}"
        );
    }

    // Coverage is complete, and the agent drained and exited cleanly.
    assert_eq!(out.status_code, Some(0), "{}", out.status_table);
    assert!(
        out.status_table.contains(root.as_str()),
        "{}",
        out.status_table
    );
    assert_eq!(out.agent_exit, Some(0), "{log}");
}
