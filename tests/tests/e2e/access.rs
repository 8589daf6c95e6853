//! A member whose role cannot be assumed fails alone, with a clear message; the others
//! go on. Against the emulator with IAM checks on (`INITIAL_NO_AUTH_ACTION_COUNT`): trust
//! policies and external IDs are enforced there, and every call needs a policy that
//! allows it.
//!
//! Emulator limit: with IAM checks on, moto 5.2.5 answers the CloudWatch `PutMetricAlarm`
//! of aws-sdk-cloudwatch 1.99 (awsQuery protocol) with an error body the SDK cannot read,
//! for every account and whatever the policy (boto3, on the CBOR protocol, is accepted).
//! So the other members are checked up to their alarms: assumed, log group, filters and
//! rules created; an alarm failure there is the emulator's, and is the only one allowed (in
//! the central account too, for the alarms on the alert queue).

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

/// An organisation of three members whose last member's role refuses the hub (another
/// external ID, and an explicit deny on the hub's side), a hub IAM user with keys, and a
/// config enrolling the members.
struct Refused {
    emu: Emulator,
    org: orgwatch_tests::Org,
    broken: String,
    key_id: String,
    secret: String,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Refused {
    /// Runs `hub ARGS --output json` as the hub user.
    fn hub(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let env: Vec<(&str, String)> = self
            .emu
            .env()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET"))
            .collect();
        let out = Command::new(bin("hub"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .args(["--output", "json"])
            .envs(env)
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .stdin(Stdio::null())
            .output()
            .expect("run hub");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

async fn refused(name: &str) -> Refused {
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

    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let accounts: Vec<String> = org.members.iter().map(|m| format!("\"{m}\"")).collect();
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            r#"[hub]
regions = ["us-east-1"]
# The role Organizations gave every member (the emulator makes it); the test sets its
# trust and denies it in one account.
member_role = "OrganizationAccountAccessRole"
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
    Refused {
        emu,
        org,
        broken,
        key_id: key.access_key_id().to_string(),
        secret: key.secret_access_key().to_string(),
        dir,
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_role_cannot_be_assumed_fails_alone() {
    let r = refused("access").await;
    let (emu, org, broken, dir) = (&r.emu, &r.org, r.broken.clone(), r.dir.clone());
    let (code, stdout, stderr) = r.hub(&["enroll"]);
    let out_code = code;
    assert_eq!(out_code, Some(1), "one account failed: {stdout}\n{stderr}");
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
            // The central account's operations alarms meet the same emulator limit.
            let error = r["error"].as_str().unwrap_or_default();
            assert!(
                r["status"] != "failed"
                    || (error.contains("PutMetricAlarm")
                        && error.contains(shared::naming::OPS_ALARM_PREFIX)),
                "central: {r:#}"
            );
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

/// `hub doctor` names the account whose member role refuses the hub, with the refusal and
/// the fix, and reports the organisation's missing CloudTrail trusted access; exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_an_unassumable_member_role_and_missing_trusted_access() {
    let r = refused("doctor").await;
    r.emu.wait_until_checking().await.expect("IAM checks on");
    let (code, stdout, stderr) = r.hub(&["doctor"]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    let of = |check: &str| -> Vec<Value> {
        report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["check"] == check)
            .cloned()
            .collect()
    };
    let roles = of("member-role");
    let refused: Vec<&Value> = roles.iter().filter(|f| f["status"] != "ok").collect();
    assert_eq!(refused.len(), 1, "{roles:#?}");
    assert_eq!(refused[0]["account"], r.broken.as_str());
    let detail = refused[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("AccessDenied"), "{detail}");
    assert!(
        refused[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("member-role.yaml")),
        "{:#}",
        refused[0]
    );
    for m in &r.org.members[..2] {
        assert!(
            roles
                .iter()
                .any(|f| f["account"] == m.as_str() && f["status"] == "ok"),
            "{m}: {roles:#?}"
        );
    }
    assert_eq!(of("trusted-access")[0]["status"], "missing", "{report:#}");
    let _ = std::fs::remove_dir_all(&r.dir);
}
