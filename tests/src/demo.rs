//! The demo's story, shared by `scripts/demo` (through the `demo` binary, with narration)
//! and the end-to-end test that proves it (without the terminal dressing).
//!
//! Against the emulator: an organisation with a management account and three members,
//! `hub enroll` with `infra/examples/hub.toml`, the `agent` with `infra/examples/agent.toml`
//! (stdout sink plus a webhook receiver here), then the story — CloudTrail events put on
//! the members' default event buses as CloudTrail would (the emulator writes no CloudTrail
//! itself): a root console sign-in in one account, IAM policy changes in two others, a burst
//! of AccessDenied errors, and a duplicate delivery of an alarm notification. The
//! [`AlarmEvaluator`] plays CloudWatch (emulator only). Finally `hub status`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cloudwatch::{AlarmEvaluator, Transition};
use crate::{Emulator, HarnessError, Org, Receiver, aws_err, bin, workspace_root};

/// The file in the demo directory where `hub` and `agent` list the AWS operations they
/// called (`program scope service operation`), to check against `shared::iam`.
pub const CALL_LOG: &str = "calls.log";

/// The source IP of the story's root sign-in.
pub const ROOT_SOURCE_IP: &str = "198.51.100.7";
/// The source IP of the story's IAM changes.
pub const IAM_SOURCE_IP: &str = "203.0.113.24";

/// Where the story is told.
pub trait Narrator {
    /// A step of the story starts.
    fn step(&self, text: &str);
    /// A detail of the current step.
    fn detail(&self, text: &str);
}

/// Tells nothing (the test).
pub struct Silent;

impl Narrator for Silent {
    fn step(&self, _: &str) {}
    fn detail(&self, _: &str) {}
}

/// What happened, for the caller to show or check.
#[derive(Debug)]
pub struct Outcome {
    pub org: Org,
    /// `hub enroll --output json`.
    pub enroll: Value,
    /// Alarm state changes the evaluator made.
    pub transitions: Vec<Transition>,
    /// Every notification document the webhook receiver accepted, in arrival order.
    pub notifications: Vec<Value>,
    /// Lines the agent's stdout sink printed.
    pub stdout_lines: usize,
    /// `hub status` (table) output and exit code.
    pub status_table: String,
    pub status_code: Option<i32>,
    /// The agent's exit code after SIGTERM.
    pub agent_exit: Option<i32>,
    /// Where the configuration, logs and state are.
    pub dir: PathBuf,
}

/// A child process that is terminated (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    /// SIGTERM, then wait up to `grace` before SIGKILL; the exit code if it exited.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.running() {
            self.terminate(Duration::from_secs(5));
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn iso_now() -> String {
    aws_smithy_types::DateTime::from_millis(now_ms())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

fn io_err(what: &str, e: std::io::Error) -> HarnessError {
    HarnessError::Aws(format!("{what}: {e}"))
}

/// Runs `hub` with the emulator's environment; (exit code, stdout, stderr).
fn hub(
    emu: &Emulator,
    dir: &Path,
    args: &[&str],
) -> Result<(Option<i32>, String, String), HarnessError> {
    let out = Command::new(bin("hub"))
        .args(args)
        .current_dir(dir)
        .envs(emu.env())
        .env("ORGWATCH_CALL_LOG", dir.join(CALL_LOG))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_err("cannot run hub", e))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A CloudTrail record of the story.
fn record(
    account: &str,
    n: usize,
    source: &str,
    name: &str,
    identity: Value,
    extra: Value,
) -> Value {
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": iso_now(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": crate::REGION,
        "userAgent": "aws-cli/2.17.0 Python/3.12 Linux/6.8",
        "requestParameters": null,
        "responseElements": null,
        "eventID": format!("demo-{account}-{n}"),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management"
    });
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

fn root_sign_in(account: &str) -> Value {
    record(
        account,
        0,
        "signin.amazonaws.com",
        "ConsoleLogin",
        json!({
            "type": "Root",
            "principalId": account,
            "arn": format!("arn:aws:iam::{account}:root"),
            "accountId": account
        }),
        json!({
            "sourceIPAddress": ROOT_SOURCE_IP,
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
            "responseElements": { "ConsoleLogin": "Success" },
            "additionalEventData": {
                "LoginTo": "https://console.aws.amazon.com/console/home",
                "MobileVersion": "No",
                "MFAUsed": "Yes"
            },
            "eventType": "AwsConsoleSignIn"
        }),
    )
}

fn policy_change(account: &str, user: &str, name: &str) -> Value {
    record(
        account,
        1,
        "iam.amazonaws.com",
        name,
        json!({
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEDEMO",
            "arn": format!("arn:aws:iam::{account}:user/{user}"),
            "accountId": account,
            "userName": user
        }),
        json!({
            "sourceIPAddress": IAM_SOURCE_IP,
            "requestParameters": {
                "userName": user,
                "policyName": "allow-everything",
                "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"
            }
        }),
    )
}

fn access_denied(account: &str, n: usize) -> Value {
    record(
        account,
        10 + n,
        "secretsmanager.amazonaws.com",
        "GetSecretValue",
        json!({
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEDEMO:ci",
            "arn": format!("arn:aws:sts::{account}:assumed-role/ci-deployer/ci"),
            "accountId": account
        }),
        json!({
            "sourceIPAddress": "192.0.2.50",
            "errorCode": "AccessDenied",
            "errorMessage": format!("User: arn:aws:sts::{account}:assumed-role/ci-deployer/ci is not authorized to perform: secretsmanager:GetSecretValue"),
            "requestParameters": { "secretId": format!("prod/db-{n}") },
            "readOnly": true
        }),
    )
}

/// Puts records on a member's default event bus, as CloudTrail does.
async fn put_events(
    factory: &shared::aws::ClientFactory,
    account: &str,
    records: &[Value],
) -> Result<(), HarnessError> {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    let events = factory
        .for_account(account)
        .await
        .map_err(aws_err)?
        .eventbridge();
    for chunk in records.chunks(10) {
        let entries: Vec<PutEventsRequestEntry> = chunk
            .iter()
            .map(|r| {
                let source = r["eventSource"]
                    .as_str()
                    .and_then(|s| s.split('.').next())
                    .unwrap_or("aws");
                let detail_type = if r["eventType"] == "AwsConsoleSignIn" {
                    "AWS Console Sign In via CloudTrail"
                } else {
                    "AWS API Call via CloudTrail"
                };
                PutEventsRequestEntry::builder()
                    .source(format!("aws.{source}"))
                    .detail_type(detail_type)
                    .detail(r.to_string())
                    .build()
            })
            .collect();
        let out = events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws_err)?;
        if out.failed_entry_count() > 0 {
            return Err(HarnessError::Aws(format!(
                "PutEvents in {account}: {} entries failed",
                out.failed_entry_count()
            )));
        }
    }
    Ok(())
}

/// The agent configuration of the demo: `infra/examples/agent.toml` with the operations
/// endpoint on a free port.
fn agent_config(dir: &Path) -> Result<PathBuf, HarnessError> {
    let example = workspace_root().join("infra/examples/agent.toml");
    let text = std::fs::read_to_string(&example)
        .map_err(|e| io_err(&format!("cannot read {}", example.display()), e))?;
    let text = text.replace(r#"listen = "127.0.0.1:9464""#, r#"listen = "127.0.0.1:0""#);
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).map_err(|e| io_err("cannot write agent.toml", e))?;
    Ok(path)
}

/// Runs the whole story in `dir` (created if missing) against `emu`.
pub async fn run_story(
    emu: &Emulator,
    dir: &Path,
    narrator: &dyn Narrator,
) -> Result<Outcome, HarnessError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create the demo directory", e))?;
    let factory = emu.factory().await?;

    narrator.step("An organisation: a management account and three members");
    let org = crate::create_org(&factory, 3).await?;
    narrator.detail(&format!("organisation {}", org.id));
    narrator.detail(&format!("management {}", org.management));
    for m in &org.members {
        narrator.detail(&format!("member     {m}"));
    }

    narrator.step("hub enroll (infra/examples/hub.toml)");
    let hub_toml = dir.join("hub.toml");
    std::fs::copy(workspace_root().join("infra/examples/hub.toml"), &hub_toml)
        .map_err(|e| io_err("cannot copy hub.toml", e))?;
    let started = Instant::now();
    let (code, stdout, stderr) = hub(emu, dir, &["enroll", "--output", "json"])?;
    let enroll: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    if code != Some(0) {
        return Err(HarnessError::Aws(format!(
            "hub enroll exited {code:?}: {stdout}\n{stderr}"
        )));
    }
    let results = enroll["results"].as_array().map(Vec::len).unwrap_or(0);
    narrator.detail(&format!(
        "{results} account/region results, {} write calls, {:.1}s",
        enroll["writes"],
        started.elapsed().as_secs_f64()
    ));

    narrator.step("agent run (infra/examples/agent.toml): stdout sink + a webhook receiver");
    let receiver = Receiver::start()
        .await
        .map_err(|e| io_err("cannot start the webhook receiver", e))?;
    let config = agent_config(dir)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state).map_err(|e| io_err("cannot create the state dir", e))?;
    let stdout_path = dir.join("agent.stdout");
    let log_path = dir.join("agent.log");
    let out_file =
        std::fs::File::create(&stdout_path).map_err(|e| io_err("cannot create agent.stdout", e))?;
    let log_file =
        std::fs::File::create(&log_path).map_err(|e| io_err("cannot create agent.log", e))?;
    let child = Command::new(bin("agent"))
        .args(["--config", &config.display().to_string(), "run"])
        .envs(emu.env())
        .env("ORGWATCH_STATE_DIR", &state)
        .env("ORGWATCH_CALL_LOG", dir.join(CALL_LOG))
        .env("ORGWATCH_WEBHOOK_URL", receiver.url("/orgwatch"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(log_file)
        .spawn()
        .map_err(|e| io_err("cannot start the agent", e))?;
    let mut agent = Process { child };
    narrator.detail(&format!("agent log: {}", log_path.display()));

    let root_account = org.members[0].clone();
    let iam_accounts = [org.members[1].clone(), org.members[2].clone()];

    narrator.step("The story: CloudTrail events in three member accounts");
    narrator.detail(&format!(
        "{root_account}: the root user signs in to the console from {ROOT_SOURCE_IP}"
    ));
    put_events(&factory, &root_account, &[root_sign_in(&root_account)]).await?;
    for (i, account) in iam_accounts.iter().enumerate() {
        let (user, name) = if i == 0 {
            ("mallory", "PutUserPolicy")
        } else {
            ("trent", "AttachUserPolicy")
        };
        narrator.detail(&format!("{account}: {user} calls iam:{name}"));
        put_events(&factory, account, &[policy_change(account, user, name)]).await?;
    }
    narrator.detail(&format!(
        "{}: a burst of 5 AccessDenied errors (ci-deployer reading secrets)",
        iam_accounts[0]
    ));
    let burst: Vec<Value> = (0..5).map(|n| access_denied(&iam_accounts[0], n)).collect();
    put_events(&factory, &iam_accounts[0], &burst).await?;

    narrator.step("CloudWatch evaluates the metric filters and alarms (emulator stand-in)");
    let mut evaluator =
        AlarmEvaluator::new(factory.clone(), &org.members, &[crate::REGION.to_string()]).await?;
    let transitions = evaluator.evaluate(now_ms()).await?;
    for t in &transitions {
        narrator.detail(&format!(
            "{} {} -> {} (sum {})",
            t.account, t.alarm_name, t.new_state, t.value
        ));
    }

    narrator.step("A duplicate: SNS delivers one alarm notification twice");
    if let Some(t) = transitions
        .iter()
        .find(|t| t.account == root_account && t.new_state == "ALARM")
        && let Some(topic) = t.published_to.first()
    {
        factory
            .home()
            .sns()
            .publish()
            .topic_arn(topic)
            .message(&t.message)
            .send()
            .await
            .map_err(aws_err)?;
        narrator.detail(&format!("{} published again", t.alarm_name));
    }

    narrator.step("Waiting for the agent's notifications (grouped for 10s)");
    let expected_rules = ["root-activity", "cis-4.4", "cis-4.1"];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(90) {
        let notifications = receiver
            .accepted()
            .iter()
            .filter_map(crate::Received::json)
            .collect::<Vec<_>>();
        let have = |rule: &str| {
            notifications.iter().any(|n| {
                n["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["rule_id"] == rule))
            })
        };
        if expected_rules.iter().all(|r| have(r)) {
            break;
        }
        if !agent.running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Time for a wrongly repeated notification to show up before we count.
    tokio::time::sleep(Duration::from_secs(3)).await;

    narrator.step("Five minutes on, nothing more happened: CloudWatch returns the alarms to OK");
    let metrics = agent_metrics_addr(&log_path);
    let before = alerts_total(metrics);
    // The stand-in evaluates at a later clock: every window is empty, as it would be.
    let ok = evaluator.evaluate(now_ms() + 301_000).await?;
    for t in &ok {
        narrator.detail(&format!(
            "{} {} -> {}",
            t.account, t.alarm_name, t.new_state
        ));
    }
    // Resolutions join groups already notified, which wait `group.interval` (5m) before
    // the next notification; stopping the agent flushes them. Stop once it has them all.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) && agent.running() {
        if alerts_total(metrics)
            .zip(before)
            .is_some_and(|(n, b)| n >= b + ok.len() as u64)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let transitions = [transitions, ok].concat();

    narrator.step("Stopping the agent (SIGTERM: pending groups flushed, then exit)");
    let agent_exit = agent.terminate(Duration::from_secs(40));
    let notifications: Vec<Value> = receiver
        .accepted()
        .iter()
        .filter_map(crate::Received::json)
        .collect();

    narrator.step("hub status: the coverage table");
    let (status_code, status_table, _) = hub(emu, dir, &["status"])?;
    let stdout_lines = std::fs::read_to_string(&stdout_path)
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);

    Ok(Outcome {
        org,
        enroll,
        transitions,
        notifications,
        stdout_lines,
        status_table,
        status_code,
        agent_exit,
        dir: dir.to_path_buf(),
    })
}

/// The agent's operations address, from its start-up log line (`listen=ADDR`).
fn agent_metrics_addr(log: &Path) -> Option<std::net::SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find(|l| l.contains("agent running"))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))?
        .parse()
        .ok()
}

/// `orgwatch_agent_alerts_total` from the agent's `/metrics`: the sum over its series (one
/// per rule and severity; none before the first alert).
fn alerts_total(addr: Option<std::net::SocketAddr>) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    if !body.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(
        body.lines()
            .filter_map(|l| l.strip_prefix("orgwatch_agent_alerts_total"))
            .filter(|r| r.starts_with(' ') || r.starts_with('{'))
            .filter_map(|r| r.rsplit(' ').next()?.trim().parse::<u64>().ok())
            .sum(),
    )
}

/// One notification as terminal lines: title, accounts, and who / what / where per alert.
pub fn render(notification: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let accounts: Vec<&str> = notification["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let status = if notification["status"] == "resolved" {
        "RESOLVED "
    } else {
        ""
    };
    out.push(format!(
        "{status}[{}] {} — {} account{}: {}",
        notification["severity"]
            .as_str()
            .unwrap_or("?")
            .to_uppercase(),
        notification["title"].as_str().unwrap_or("?"),
        accounts.len(),
        if accounts.len() == 1 { "" } else { "s" },
        accounts.join(", ")
    ));
    for a in notification["alerts"].as_array().into_iter().flatten() {
        let actor = &a["actor"];
        let via = a["origin"]["kind"].as_str().unwrap_or("?");
        let mut line = format!(
            "    {} {} {} via {via}",
            a["rule_id"].as_str().unwrap_or("?"),
            a["account"].as_str().unwrap_or("?"),
            a["region"].as_str().unwrap_or("?"),
        );
        if actor.is_object() {
            line.push_str(&format!(
                ": {} did {} from {} ({})",
                actor["principal"].as_str().unwrap_or("?"),
                actor["event_name"].as_str().unwrap_or("?"),
                actor["source_ip"].as_str().unwrap_or("?"),
                actor["user_agent"].as_str().unwrap_or("?"),
            ));
        }
        if a["enrichment"]["status"] == "found" {
            line.push_str(&format!(
                " [enriched: {} matching event(s) in the alarm window]",
                a["enrichment"]["matched"]
            ));
        }
        out.push(line);
    }
    out
}
