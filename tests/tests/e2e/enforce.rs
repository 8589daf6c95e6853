//! The generated policies under the emulator's IAM enforcement
//! (`INITIAL_NO_AUTH_ACTION_COUNT`): `hub` runs as an IAM user whose only permissions are
//! `hub policy --for hub`, and reaches members through the member stack's role
//! (`orgwatch-member`), whose only permissions are `hub policy --for member`.
//!
//! What runs here is `hub doctor`: discovery, trusted access, the member roles assumed by
//! their ARN and the member stack's roles read through them, each allowed by the generated
//! policies' scoped statements and nothing else (a control without the AssumeRole
//! statement is refused). `hub enroll` does not run under enforcement: moto 5.2.5 refuses
//! or garbles calls that AWS allows with these policies, and each is covered by a contract
//! test instead:
//! * S3 HeadBucket on the archive is refused although `s3:ListBucket` on the bucket is
//!   granted (the emulator evaluates it against another resource);
//! * CloudWatch DescribeAlarms / PutMetricAlarm of aws-sdk-cloudwatch 1.99 (awsQuery) are
//!   answered with an error body the SDK cannot read, whatever the policy;
//! * CloudTrail GetTrail's refusal comes back as an XML page on a JSON protocol.

use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, EmulatorOptions, bin};
use serde_json::Value;

const HUB_USER: &str = "orgwatch-hub";

fn hub_as(
    emu: &Emulator,
    config: &std::path::Path,
    key: &Key,
    args: &[&str],
) -> (Option<i32>, Value, String) {
    let env: Vec<(&str, String)> = emu
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET"))
        .collect();
    let out = Command::new(bin("hub"))
        .args(args)
        .args(["--output", "json", "--config"])
        .arg(config)
        .envs(env)
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .stdin(Stdio::null())
        .output()
        .expect("run hub");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An IAM user's access key.
struct Key {
    id: String,
    secret: String,
}

/// Creates an IAM user whose only policy is `policy`, with an access key.
async fn user(factory: &shared::aws::ClientFactory, name: &str, policy: &str) -> Key {
    let iam = factory.home().iam();
    iam.create_user()
        .user_name(name)
        .send()
        .await
        .expect("user");
    iam.put_user_policy()
        .user_name(name)
        .policy_name("orgwatch")
        .policy_document(policy)
        .send()
        .await
        .expect("policy");
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .expect("key")
        .access_key
        .expect("key");
    Key {
        id: key.access_key_id().to_string(),
        secret: key.secret_access_key().to_string(),
    }
}

fn statuses<'a>(report: &'a Value, check: &str) -> Vec<(&'a str, &'a str)> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["check"] == check)
        .map(|f| {
            (
                f["account"].as_str().unwrap_or("-"),
                f["status"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_needs_nothing_beyond_the_generated_policies() {
    let emu = Emulator::start_with(&EmulatorOptions {
        auth_after_requests: Some(400),
    })
    .expect("emulator");
    let factory = emu.factory().await.expect("factory");
    let org = orgwatch_tests::create_org(&factory, 2).await.expect("org");
    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-enforce-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        r#"[hub]
regions = ["us-east-1"]
member_role = "orgwatch-member"
[trail]
bucket = "orgwatch-enforce-test"
[monitoring]
pack = ["root-activity"]
"#,
    )
    .expect("config");
    let out = Command::new(bin("hub"))
        .args(["policy", "--for", "hub", "--config"])
        .arg(&config)
        .output()
        .expect("hub policy");
    assert!(out.status.success());
    let policy: Value = serde_json::from_slice(&out.stdout).expect("policy");
    let hub_key = user(&factory, HUB_USER, &policy.to_string()).await;
    // The control: the same policy without the statement that lets the hub assume the
    // member role.
    let mut without = policy.clone();
    if let Some(s) = without["Statement"].as_array_mut() {
        s.retain(|s| s["Sid"] != "AssumeMemberRole");
    }
    let control_key = user(&factory, "no-assume-role", &without.to_string()).await;
    emu.wait_until_checking().await.expect("checks on");

    let (code, report, stderr) = hub_as(&emu, &config, &hub_key, &["doctor"]);
    assert_eq!(
        code,
        Some(1),
        "only trusted access is missing: {report:#}\n{stderr}"
    );
    for f in report["findings"].as_array().expect("findings") {
        let expected = if f["check"] == "trusted-access" {
            "missing"
        } else {
            "ok"
        };
        assert_eq!(f["status"], expected, "{f:#}\n{stderr}");
    }
    let members = statuses(&report, "member-role");
    assert_eq!(members.len(), org.members.len() + 1, "{report:#}");
    assert_eq!(
        statuses(&report, "member-stack").len(),
        org.members.len() + 1
    );

    let (code, report, _) = hub_as(&emu, &config, &control_key, &["doctor"]);
    assert_eq!(code, Some(1));
    let refused: Vec<&str> = statuses(&report, "member-role")
        .into_iter()
        .filter(|(_, s)| *s == "failed")
        .map(|(a, _)| a)
        .collect();
    let mut expected: Vec<&str> = org.members.iter().map(String::as_str).collect();
    expected.sort();
    let mut refused = refused;
    refused.sort();
    assert_eq!(refused, expected, "enforcement is on: {report:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
