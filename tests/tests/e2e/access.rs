//! A member whose role cannot be assumed fails alone, with a clear message; the others
//! go on. Against the emulator with IAM checks on (`INITIAL_NO_AUTH_ACTION_COUNT`): trust
//! policies and external IDs are enforced there, and every call needs a policy that
//! allows it.
//!
//! Emulator limit: with IAM checks on, moto 5.2.5 answers the CloudWatch `PutMetricAlarm`
//! of aws-sdk-cloudwatch 1.99 (awsQuery protocol) with an error body the SDK cannot read,
//! for every account and whatever the policy (boto3, on the CBOR protocol, is accepted).
//! So the other members are checked up to their alarms: assumed, log group, filters and
//! rules created; an alarm failure there is the emulator's, and is the only one allowed.

use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, EmulatorOptions, MANAGEMENT_ACCOUNT, bin};
use serde_json::{Value, json};

const EXTERNAL_ID: &str = "orgwatch-e2e-external-id";
const HUB_USER: &str = "orgwatch-hub";

/// Allows everything. The emulator evaluates actions against the resource `*` for many
/// operations, so the scoped statements of `hub policy` would be refused there for reasons
/// that do not hold on AWS; this test is about trust, not about the policy's scopes.
fn admin_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        .to_string()
}

fn trust(external_id: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{MANAGEMENT_ACCOUNT}:user/{HUB_USER}")},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_role_cannot_be_assumed_fails_alone() {
    // Everything below is set up before the emulator starts checking (its request count);
    // the hub's discovery and central phase come before its first AssumeRole. The member
    // stack's deployment into the four accounts takes about 70 of these requests.
    let emu = Emulator::start_with(&EmulatorOptions {
        auth_after_requests: Some(110),
    })
    .expect("emulator");
    let factory = emu.factory().await.expect("factory");
    let org = orgwatch_tests::create_org(&factory, 3).await.expect("org");
    // The hub runs as an IAM user of the management account (the emulator's static test
    // credentials are no identity once checks are on).
    let iam = factory.home().iam();
    iam.create_user()
        .user_name(HUB_USER)
        .send()
        .await
        .expect("user");
    iam.put_user_policy()
        .user_name(HUB_USER)
        .policy_name("admin")
        .policy_document(admin_policy())
        .send()
        .await
        .expect("user policy");
    // The emulator checks a cross-account trust policy only in the role's own account, not
    // the caller's: an explicit deny on the hub's side (as an SCP or a permissions boundary
    // would) is what it enforces for the last member.
    let broken = org.members[2].clone();
    iam.put_user_policy()
        .user_name(HUB_USER)
        .policy_name("not-that-account")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Deny",
                "Action": "sts:AssumeRole",
                "Resource": format!("arn:aws:iam::{broken}:role/OrganizationAccountAccessRole")
            }]})
            .to_string(),
        )
        .send()
        .await
        .expect("deny policy");
    let key = iam
        .create_access_key()
        .user_name(HUB_USER)
        .send()
        .await
        .expect("access key")
        .access_key
        .expect("key");
    // Members trust the hub user with the external ID; the last one expects another ID.
    for m in &org.members {
        let member_iam = factory.for_account(m).await.expect("member").iam();
        member_iam
            .put_role_policy()
            .role_name("OrganizationAccountAccessRole")
            .policy_name("orgwatch")
            .policy_document(admin_policy())
            .send()
            .await
            .expect("role policy");
        let id = if *m == broken {
            "someone-elses-id"
        } else {
            EXTERNAL_ID
        };
        member_iam
            .update_assume_role_policy()
            .role_name("OrganizationAccountAccessRole")
            .policy_document(trust(id))
            .send()
            .await
            .expect("trust policy");
    }

    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let accounts: Vec<String> = org.members.iter().map(|m| format!("\"{m}\"")).collect();
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            r#"[hub]
regions = ["us-east-1"]
external_id = "{EXTERNAL_ID}"
accounts = [{}]
[trail]
bucket = "orgwatch-access-test"
[monitoring]
pack = ["root-activity"]
"#,
            accounts.join(", ")
        ),
    )
    .expect("config");
    let env: Vec<(&str, String)> = emu
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET"))
        .collect();
    let out = Command::new(bin("hub"))
        .args([
            "--config",
            &config.display().to_string(),
            "enroll",
            "--output",
            "json",
        ])
        .envs(env)
        .env("AWS_ACCESS_KEY_ID", key.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", key.secret_access_key())
        .stdin(Stdio::null())
        .output()
        .expect("run hub");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one account failed: {stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    if std::env::var_os("ORGWATCH_DEBUG_EMULATOR").is_some() {
        eprintln!("{}", emu.log_tail());
    }
    let results = report["results"].as_array().expect("results");
    for r in results {
        let account = r["account_id"].as_str().unwrap_or_default();
        if account == broken {
            assert_eq!(r["status"], "failed", "{r:#}");
            let error = r["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(&broken) && error.contains("AccessDenied"),
                "the error names the account and the refusal: {error}"
            );
        } else if r["scope"] == "member" {
            let error = r["error"].as_str().unwrap_or_default();
            assert!(
                r["status"] != "failed" || error.contains("PutMetricAlarm"),
                "{account} failed for another reason than the emulator's alarm limit: {r:#}"
            );
            assert!(!error.contains("AssumeRole"), "{account}: {error}");
            let created = r["changes"]
                .as_array()
                .map(|c| c.iter().filter(|c| c["action"] == "create").count())
                .unwrap_or(0);
            assert!(created > 0, "{account} got its resources: {r:#}");
        } else {
            assert_ne!(r["status"], "failed", "central: {r:#}");
        }
    }
    for m in &org.members[..2] {
        assert!(
            results
                .iter()
                .any(|r| r["account_id"] == m.as_str() && r["scope"] == "member"),
            "{m} enrolled: {stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
