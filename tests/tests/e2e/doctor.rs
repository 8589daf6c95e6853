//! `hub doctor`: what AWS requires before the first write, per account, with the fix;
//! and `hub enroll` failing alone in an account whose member stack is missing.

use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, bin};
use serde_json::Value;

use super::hub::{hub, write_config};

fn findings<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["check"] == check)
        .collect()
}

#[tokio::test]
async fn doctor_names_what_is_missing_and_enroll_fails_alone_without_the_member_stack() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(2).await.expect("organisation");
    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-doctor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = write_config(&dir, "eventbridge");

    // A member whose stack is gone (or was never deployed): no forwarding role.
    let bare = org.members[1].clone();
    let factory = emu.factory().await.expect("factory");
    let iam = factory.for_account(&bare).await.expect("member").iam();
    iam.delete_role_policy()
        .role_name("orgwatch-events-forward")
        .policy_name("orgwatch-events-forward")
        .send()
        .await
        .expect("delete policy");
    iam.delete_role()
        .role_name("orgwatch-events-forward")
        .send()
        .await
        .expect("delete role");

    let doctor = hub(&emu, &config, &["doctor"]);
    assert_eq!(doctor.code, 1, "not ready: {:#}", doctor.json);
    assert_eq!(doctor.json["schema_version"], 1);
    assert_eq!(doctor.json["ready"], false);
    let trusted = findings(&doctor.json, "trusted-access");
    assert_eq!(trusted.len(), 1, "{:#}", doctor.json);
    assert_eq!(trusted[0]["status"], "missing");
    assert!(
        trusted[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("enable-aws-service-access")),
        "{:#}",
        trusted[0]
    );
    assert_eq!(findings(&doctor.json, "caller")[0]["status"], "ok");
    let stack = findings(&doctor.json, "member-stack");
    let missing: Vec<&str> = stack
        .iter()
        .filter(|f| f["status"] == "missing")
        .filter_map(|f| f["account"].as_str())
        .collect();
    assert_eq!(missing, [bare.as_str()], "{stack:#?}");
    assert!(
        findings(&doctor.json, "member-role")
            .iter()
            .all(|f| f["status"] == "ok"),
        "every member role answers"
    );
    for quota in [
        "quota:metric-filters",
        "quota:regex-filters",
        "quota:bus-policy",
    ] {
        assert_eq!(findings(&doctor.json, quota)[0]["status"], "ok", "{quota}");
    }

    // Enroll: trusted access is enabled, the bare account fails alone and names the fix.
    let enroll = hub(&emu, &config, &["enroll"]);
    assert_eq!(enroll.code, 1, "{}", enroll.stderr);
    for r in enroll.json["results"].as_array().expect("results") {
        let failed = r["status"] == "failed";
        if r["account_id"] == bare.as_str() && r["region"] == "us-east-1" {
            let error = r["error"].as_str().unwrap_or_default();
            assert!(failed, "{r:#}");
            assert!(
                error.contains("orgwatch-events-forward is missing")
                    && error.contains("member-role.yaml"),
                "{error}"
            );
        } else if r["account_id"] != bare.as_str() {
            assert!(!failed, "{r:#}");
        }
    }
    let again = hub(&emu, &config, &["doctor"]);
    assert_eq!(again.code, 1);
    assert_eq!(findings(&again.json, "trusted-access")[0]["status"], "ok");

    // The table names each fix.
    let out = Command::new(bin("hub"))
        .args(["doctor", "--config"])
        .arg(&config)
        .envs(emu.env())
        .stdin(Stdio::null())
        .output()
        .expect("run hub");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("to fix (1):") && text.contains(&bare),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// SSE-KMS: doctor reads the key's policy and names the statements CloudTrail needs until
/// they are there.
#[tokio::test]
async fn doctor_checks_the_archive_keys_policy() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(1).await.expect("organisation");
    let factory = emu.factory().await.expect("factory");
    let kms = factory.home().kms();
    let key = kms.create_key().send().await.expect("key");
    let arn = key
        .key_metadata()
        .map(|m| m.arn().unwrap_or_default().to_string())
        .expect("key ARN");
    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-doctor-kms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = write_config(&dir, "eventbridge");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("[trail]\n", &format!("[trail]\nkms_key_id = \"{arn}\"\n")),
    )
    .expect("config");

    let before = hub(&emu, &config, &["doctor"]);
    let f = findings(&before.json, "kms-key");
    assert_eq!(f.len(), 1, "{:#}", before.json);
    assert_eq!(
        f[0]["status"], "missing",
        "the default key policy: {:#}",
        f[0]
    );
    assert!(
        f[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("CloudTrailEncryptsOrganizationTrailLogs")),
        "{:#}",
        f[0]
    );

    // Add what `hub policy --for kms-key` prints to the key's own statements.
    super::contract::grant_cloudtrail_on_key(&factory, &arn, &config, &org.management).await;
    let after = hub(&emu, &config, &["doctor"]);
    assert_eq!(
        findings(&after.json, "kms-key")[0]["status"],
        "ok",
        "{:#}",
        after.json
    );
    let _ = std::fs::remove_dir_all(&dir);
}
