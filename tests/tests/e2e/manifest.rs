//! #12 item 1: one rule contract between the hub and the agent. `hub enroll` writes the rule
//! manifest (every deployed rule, custom `[[rule]]` tables included) in the central bucket;
//! the agent, with no `[classify]` section, classifies by exactly it.

use std::process::{Command, Stdio};
use std::time::Duration;

use orgwatch_tests::{Emulator, Received, Receiver, bin};
use serde_json::{Value, json};

const BUCKET: &str = "acme-orgwatch-cloudtrail";
const REGION: &str = "us-east-1";

fn hub_toml() -> String {
    format!(
        r#"[hub]
regions = ["{REGION}"]
member_role = "OrganizationAccountAccessRole"
[trail]
name = "orgwatch"
bucket = "{BUCKET}"
[monitoring]
delivery = "eventbridge"
pack = ["root-activity"]
[alerts]
topic = "orgwatch-alerts"
queue = "orgwatch-alerts"

[[rule]]
id = "acme-build-bot-key"
title = "A new access key for the build bot"
severity = "critical"
description = "The build bot uses OIDC federation; it never has access keys."
remediation = "Deactivate the key, then find who created it in the alert's actor."
pattern = '{{ ($.eventSource = "iam.amazonaws.com") && ($.eventName = "CreateAccessKey") && ($.requestParameters.userName = "build-bot") }}'
metric_name = "AcmeBuildBotKey"
forward = true
eventbridge_pattern = '{{"detail-type": ["AWS API Call via CloudTrail"], "detail": {{"eventSource": ["iam.amazonaws.com"], "eventName": ["CreateAccessKey"], "requestParameters": {{"userName": ["build-bot"]}}}}}}'
"#
    )
}

fn agent_toml(dir: &std::path::Path, pager: &Receiver, all: &Receiver) -> String {
    format!(
        r#"[source]
queue = "orgwatch-alerts"
long_poll = "1s"
[dedupe]
path = "{db}"
[group]
wait = "1s"
interval = "1s"
[rules]
manifest = "s3://{BUCKET}/orgwatch/rules.json"
poll = "10s"
[enrich]
enabled = false
[[sink]]
name = "pager"
type = "webhook"
url = "{pager}"
[[sink]]
name = "everything"
type = "webhook"
url = "{all}"
[[route]]
match = {{ severity = ["critical", "high"] }}
sinks = ["pager"]
[[route]]
match = {{}}
sinks = ["everything"]
[server]
listen = "127.0.0.1:0"
"#,
        db = dir.join("agent.db").display(),
        pager = pager.url("/pager"),
        all = all.url("/all"),
    )
}

fn create_access_key(account: &str, user: &str, id: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": account,
            "arn": format!("arn:aws:iam::{account}:user/mallory"), "userName": "mallory"},
        "eventTime": "2024-05-01T12:00:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateAccessKey",
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2.17.0",
        "requestParameters": {"userName": user},
        "responseElements": null,
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management"
    })
}

fn alerts(r: &Receiver) -> Vec<Value> {
    r.accepted()
        .iter()
        .filter_map(Received::json)
        .flat_map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_rule_reaches_the_agent_with_its_own_severity_title_and_remediation() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(1).await.expect("organisation");
    let member = org.members[0].clone();
    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let hub_config = dir.join("hub.toml");
    std::fs::write(&hub_config, hub_toml()).expect("hub.toml");
    let run_hub = |args: &[&str]| {
        let out = Command::new(bin("hub"))
            .args(args)
            .args(["--output", "json", "--config"])
            .arg(&hub_config)
            .envs(emu.env())
            .output()
            .expect("run hub");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run_hub(&["enroll"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rule-manifest"),
        "the manifest is one of enroll's resources: {stdout}"
    );
    // A second enroll writes nothing: the manifest compares equal.
    let (code, stdout, _) = run_hub(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "nothing to change after enroll: {stdout}");

    let (pager, all) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let agent_config = dir.join("agent.toml");
    std::fs::write(&agent_config, agent_toml(&dir, &pager, &all)).expect("agent.toml");
    let log = std::fs::File::create(dir.join("agent.log")).expect("log");
    let mut agent = Command::new(bin("agent"))
        .args(["--config", &agent_config.display().to_string(), "run"])
        .envs(emu.env())
        .env("RUST_LOG", "info,agent=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("agent");
    let agent_log = || std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || agent_log()
            .contains("classifying by the rules the hub deployed"))
        .await,
        "{}",
        agent_log()
    );

    // The custom rule fires in the member: its forward rule carries the event to the agent.
    let factory = emu.factory().await.expect("factory");
    let c = orgwatch_tests::watch::member(&factory, &member, REGION).await;
    orgwatch_tests::watch::put_records(&c, &[create_access_key(&member, "build-bot", "evt-1")])
        .await;
    assert!(
        wait_until(Duration::from_secs(30), || !alerts(&pager).is_empty()).await,
        "the custom rule did not page\n{}",
        agent_log()
    );
    let a = &alerts(&pager)[0];
    assert_eq!(a["rule_id"], "acme-build-bot-key", "{a:#}");
    assert_eq!(a["severity"], "critical", "{a:#}");
    assert_eq!(a["title"], "A new access key for the build bot", "{a:#}");
    assert_eq!(
        a["remediation"], "Deactivate the key, then find who created it in the alert's actor.",
        "{a:#}"
    );
    assert_eq!(a["account"], member.as_str(), "{a:#}");

    // A forwarded event of a built-in rule the hub did not deploy (cis-4.2: console sign-in
    // without MFA) is judged by the deployed pack: nothing to alert on. The agent's own
    // default selection (every built-in) would have alerted.
    let sqs = factory.home().sqs();
    let queue_url = sqs
        .get_queue_url()
        .queue_name("orgwatch-alerts")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let sign_in = json!({
        "version": "0", "id": "evb-no-mfa", "detail-type": "AWS Console Sign In via CloudTrail",
        "source": "aws.signin", "account": member, "time": "2024-05-01T12:01:00Z",
        "region": REGION, "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": member,
                "arn": format!("arn:aws:iam::{member}:user/alice"), "userName": "alice"},
            "eventTime": "2024-05-01T12:01:00Z", "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin", "awsRegion": REGION, "sourceIPAddress": "198.51.100.4",
            "userAgent": "Mozilla/5.0", "requestParameters": null,
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"MFAUsed": "No"}, "eventID": "evt-no-mfa",
            "readOnly": false, "eventType": "AwsConsoleSignIn", "managementEvent": true,
            "recipientAccountId": member, "eventCategory": "Management"
        }
    });
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(sign_in.to_string())
        .send()
        .await
        .expect("send");
    assert!(
        wait_until(Duration::from_secs(20), || agent_log()
            .contains("nothing to alert on"))
        .await,
        "{}",
        agent_log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let everything = alerts(&all);
    assert!(
        everything.is_empty() && alerts(&pager).len() == 1,
        "only the custom rule alerted: pager {:?}, everything {everything:?}",
        alerts(&pager)
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
