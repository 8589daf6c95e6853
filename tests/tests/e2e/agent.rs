//! The agent end to end: the real `agent` binary consumes the central queue in the emulator
//! and delivers to webhook receivers in this test.
//!
//! The emulator never turns a metric filter into an alarm notification, so the tests
//! publish the exact JSON CloudWatch would publish to the central topic (SNS -> SQS works
//! in the emulator as in AWS, envelope included); raw CloudTrail events are sent to the
//! queue as the central EventBridge rule would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orgwatch_tests::{Emulator, Receiver, bin};
use serde_json::{Value, json};

const QUEUE: &str = "orgwatch-alerts";
const SECRET: &str = "webhook-test-secret";

/// The central topic, queue and DLQ (redrive after `max_receives`), subscribed as the hub
/// sets them up.
struct Central {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    queue_url: String,
    dlq_url: String,
}

async fn central(emu: &Emulator, max_receives: u32) -> Central {
    central_in(emu, "us-east-1", max_receives).await
}

/// [`central`] in `region` (the hub creates the topic and queue in every monitored region).
async fn central_in(emu: &Emulator, region: &str, max_receives: u32) -> Central {
    let factory = emu.factory().await.expect("factory");
    let home = factory.home().in_region(region);
    let (sqs, sns) = (home.sqs(), home.sns());
    let dlq_url = sqs
        .create_queue()
        .queue_name(shared::naming::dead_letter_queue(QUEUE))
        .send()
        .await
        .expect("create dlq")
        .queue_url
        .expect("dlq url");
    let dlq_arn = queue_arn(&sqs, &dlq_url).await;
    let redrive =
        json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string()});
    let queue_url = sqs
        .create_queue()
        .queue_name(QUEUE)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive.to_string(),
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "30",
        )
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let topic_arn = sns
        .create_topic()
        .name(QUEUE)
        .send()
        .await
        .expect("create topic")
        .topic_arn
        .expect("topic arn");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(&sqs, &queue_url).await)
        .send()
        .await
        .expect("subscribe");
    Central {
        sqs,
        sns,
        topic_arn,
        queue_url,
        dlq_url,
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn")
}

impl Central {
    /// Publishes a CloudWatch alarm notification, as CloudWatch does.
    async fn alarm(&self, rule: &str, account: &str, state: &str, time: &str) {
        let name = shared::naming::alarm_name(rule);
        let body = json!({
            "AlarmName": name,
            "AlarmDescription": format!("orgwatch rule {rule}"),
            "AWSAccountId": account,
            "AlarmConfigurationUpdatedTimestamp": "2024-05-01T00:00:00.000+0000",
            "NewStateValue": state,
            "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (01/05/24 12:00:00)] was greater than or equal to the threshold (1.0) (minimum 1 datapoint for OK -> ALARM transition).",
            "StateChangeTime": time,
            "Region": "US East (N. Virginia)",
            "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}"),
            "OldStateValue": if state == "ALARM" { "OK" } else { "ALARM" },
            "OKActions": [],
            "AlarmActions": [self.topic_arn],
            "InsufficientDataActions": [],
            "Trigger": {
                "MetricName": name, "Namespace": "orgwatch", "StatisticType": "Statistic",
                "Statistic": "SUM", "Unit": null, "Dimensions": [], "Period": 300,
                "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 1.0, "TreatMissingData": "notBreaching",
                "EvaluateLowSampleCountPercentile": ""
            }
        });
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(format!("ALARM: \"{name}\" in US East (N. Virginia)"))
            .message(body.to_string())
            .send()
            .await
            .expect("publish");
    }

    /// Sends a body straight to the queue (as EventBridge, or anything else, could).
    async fn send_raw(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    /// Every message of the DLQ: (body, the agent's `orgwatch.reason` attribute).
    async fn dlq_messages(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive dlq")
                .messages
                .unwrap_or_default();
            if got.is_empty() {
                return out;
            }
            out.extend(got.into_iter().filter_map(|m| {
                let reason = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("orgwatch.reason"))
                    .and_then(|v| v.string_value.clone());
                Some((m.body?, reason))
            }));
        }
    }

    async fn queue_depth(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default();
        let get = |k: A| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// A root console sign-in as the central EventBridge rule delivers it (no `account`, as
/// in the emulator).
fn root_sign_in_event(account: &str, event_id: &str, time: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("evb-{event_id}"),
        "detail-type": "AWS Console Sign In via CloudTrail",
        "source": "aws.signin",
        "time": time,
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {"type": "Root", "principalId": account,
                "arn": format!("arn:aws:iam::{account}:root"), "accountId": account},
            "eventTime": time,
            "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.23",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "requestParameters": null,
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"},
            "eventID": event_id,
            "readOnly": false,
            "eventType": "AwsConsoleSignIn",
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management"
        }
    })
}

/// The agent process; killed when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(emu: &Emulator, config: &Path, log: &Path) -> Agent {
        Agent::start_with(emu, config, log, &[])
    }

    /// [`Agent::start`] with more global options (e.g. `--log-format json`).
    fn start_with(emu: &Emulator, config: &Path, log: &Path, global: &[&str]) -> Agent {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("agent log");
        let child = Command::new(bin("agent"))
            .args(["--config", &config.display().to_string()])
            .args(global)
            .arg("run")
            .envs(emu.env())
            .env("RUST_LOG", "info,agent=debug")
            .env("WEBHOOK_SECRET", SECRET)
            // Every AWS call it makes, written at a clean exit (see `calls_granted`).
            .env("ORGWATCH_CALL_LOG", log.with_extension("calls"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start agent");
        Agent {
            child,
            log: log.to_path_buf(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(40) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// After a clean exit: every AWS call it made is one its policy grants (the emulator
    /// enforces none), and it made some.
    fn assert_calls_granted(&self) {
        let calls = std::fs::read_to_string(self.log.with_extension("calls")).unwrap_or_default();
        let (seen, ungranted) = orgwatch_tests::ungranted_calls(&calls);
        assert!(!seen.is_empty(), "no calls recorded:\n{}", self.log());
        assert!(
            ungranted.is_empty(),
            "calls no policy grants:\n{}",
            ungranted.join("\n")
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("orgwatch-e2e-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_config(
    dir: &Path,
    a: &Receiver,
    b: &Receiver,
    group_wait: &str,
    retry_for: &str,
) -> PathBuf {
    write_config_with(dir, a, b, group_wait, retry_for, "")
}

/// [`write_config`] with more `[source]` lines.
fn write_config_with(
    dir: &Path,
    a: &Receiver,
    b: &Receiver,
    group_wait: &str,
    retry_for: &str,
    source: &str,
) -> PathBuf {
    let text = format!(
        r#"[source]
queue = "{QUEUE}"
{source}
long_poll = "1s"
visibility = "30s"
[dedupe]
window = "15m"
path = "{db}"
[group]
by = ["rule"]
wait = "{group_wait}"
interval = "{group_wait}"
repeat = "4h"
[[sink]]
name = "hook-a"
type = "webhook"
url = "{url_a}"
secret = "${{WEBHOOK_SECRET}}"
rate = "50/s"
retry_for = "{retry_for}"
[[sink]]
name = "hook-b"
type = "webhook"
url = "{url_b}"
secret = "${{WEBHOOK_SECRET}}"
rate = "50/s"
retry_for = "{retry_for}"
[[route]]
match = {{}}
sinks = ["hook-a", "hook-b"]
[server]
listen = "127.0.0.1:0"
[enrich]
# These accounts exist only in the messages: there is no log group to read.
enabled = false
"#,
        db = dir.join("agent.db").display(),
        url_a = a.url("/a"),
        url_b = b.url("/b"),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Every alert a receiver accepted: (rule, fingerprint, account).
fn alerts(r: &Receiver) -> Vec<(String, String, String)> {
    r.accepted()
        .iter()
        .filter_map(Received::json)
        .flat_map(|doc| {
            doc["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    (
                        a["rule_id"].as_str().unwrap_or_default().to_string(),
                        a["fingerprint"].as_str().unwrap_or_default().to_string(),
                        a["account"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

use orgwatch_tests::Received;

/// The receiver got `total` distinct alerts (fingerprints), each exactly once, from
/// `total` distinct accounts.
fn assert_each_once(r: &Receiver, total: usize) {
    let got = alerts(r);
    let mut per_fp: BTreeMap<String, usize> = BTreeMap::new();
    for x in &got {
        *per_fp.entry(x.1.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_fp.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(per_fp.len(), total, "every alert once");
    let accounts: BTreeSet<&String> = got.iter().map(|x| &x.2).collect();
    assert_eq!(accounts.len(), total, "one alert per account");
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

/// `sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`, computed here independently.
fn hmac_sha256_hex(secret: &[u8], ts: u64, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("hmac key");
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + i as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_groups_dedupes_dead_letters_and_drains() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 2).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("group");
    let config = write_config(&dir, &a, &b, "3s", "5m");
    let mut agent = Agent::start(&emu, &config, &dir.join("agent.log"));

    // Three accounts fire the same rule within `wait`; the first alarm is delivered twice;
    // the raw event behind the first account's alarm arrives through the event path.
    let t = "2024-05-01T12:05:00.000+0000";
    let accounts = [account(1), account(2), account(3)];
    for acct in &accounts {
        c.alarm("root-activity", acct, "ALARM", t).await;
    }
    c.alarm("root-activity", &accounts[0], "ALARM", t).await;
    c.send_raw(&root_sign_in_event(&accounts[0], "ev-root-1", "2024-05-01T12:01:30Z").to_string())
        .await;

    // Malformed bodies with valid alerts between them.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut malformed: Vec<String> = vec![
        "{\"AlarmName\": \"orgwatch-root-activity\", \"NewStateVal".into(),
        "[1, 2, 3]".into(),
        json!({"hello": "world"}).to_string(),
        json!({"AlarmName": "orgwatch-cis-4.3", "NewStateValue": "ALARM"}).to_string(),
        format!("{{\"pad\": \"{}\"}}", "x".repeat(250 * 1024)),
        "null".into(),
    ];
    // 200 in all: the shapes above, then random printable bytes of random lengths.
    while malformed.len() < 200 {
        let len = 1 + (rng % 300) as usize;
        let bytes: String = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                char::from(b'!' + (rng % 90) as u8)
            })
            .collect();
        malformed.push(bytes);
    }
    for (i, body) in malformed.iter().enumerate() {
        c.send_raw(body).await;
        if i % 5 == 0 {
            c.alarm("cis-4.4", &account(100 + i), "ALARM", t).await;
        }
    }
    let valid_cis: BTreeSet<String> = (0..malformed.len())
        .filter(|i| i % 5 == 0)
        .map(|i| account(100 + i))
        .collect();

    let done = wait_until(Duration::from_secs(60), || {
        let got = alerts(&a);
        got.iter().filter(|x| x.0 == "root-activity").count() >= 3
            && got.iter().filter(|x| x.0 == "cis-4.4").count() >= valid_cis.len()
    })
    .await;
    assert!(done, "not delivered; agent log:\n{}", agent.log());
    // Wait a little more for anything that should not come.
    tokio::time::sleep(Duration::from_secs(4)).await;

    for r in [&a, &b] {
        let docs: Vec<Value> = r.accepted().iter().filter_map(Received::json).collect();
        let root: Vec<&Value> = docs
            .iter()
            .filter(|d| d["group"]["rule"] == "root-activity")
            .collect();
        assert_eq!(
            root.len(),
            1,
            "one notification for the root-activity group: {docs:#?}"
        );
        let listed: BTreeSet<&str> = root[0]["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            listed,
            accounts.iter().map(String::as_str).collect(),
            "{:#?}",
            root[0]
        );
        let first = root[0]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["account"] == accounts[0].as_str());
        let first = first.expect("the first account's alert");
        assert_eq!(
            first["actor"]["source_ip"], "198.51.100.23",
            "carries the event's source IP: {first:#}"
        );
        assert_eq!(
            first["actor"]["principal"],
            format!("arn:aws:iam::{}:root", accounts[0])
        );
        // The root sign-in event also matches cis-4.3, whose pattern is root-activity's:
        // it is the same incident, reported once under the more severe rule.
        assert!(
            alerts(r).iter().all(|x| x.0 != "cis-4.3"),
            "{:?}",
            alerts(r)
        );
        let cis: BTreeSet<String> = alerts(r)
            .into_iter()
            .filter(|x| x.0 == "cis-4.4")
            .map(|x| x.2)
            .collect();
        assert_eq!(
            cis, valid_cis,
            "every valid alert between the malformed ones"
        );
        // Every delivery is signed.
        for req in r.accepted() {
            let ts: u64 = req
                .header("x-orgwatch-timestamp")
                .and_then(|v| v.parse().ok())
                .expect("timestamp header");
            let sig = req
                .header("x-orgwatch-signature")
                .expect("signature header");
            assert_eq!(sig, hmac_sha256_hex(SECRET.as_bytes(), ts, &req.body));
        }
    }
    // No alert twice.
    let all = alerts(&a);
    let distinct: BTreeSet<_> = all.iter().map(|x| x.1.clone()).collect();
    assert_eq!(all.len(), distinct.len(), "{all:#?}");

    // The malformed bodies end in the DLQ, each with the reason it could not be decoded.
    let mut dead = Vec::new();
    let started = Instant::now();
    while dead.len() < malformed.len() && started.elapsed() < Duration::from_secs(60) {
        dead.extend(c.dlq_messages().await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bodies: BTreeSet<String> = dead.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(
        bodies,
        malformed.iter().cloned().collect(),
        "agent log:\n{}",
        agent.log()
    );
    let without: Vec<_> = dead.iter().filter(|(_, r)| r.is_none()).collect();
    assert!(
        without.is_empty(),
        "DLQ messages without a reason: {without:?}"
    );
    assert!(
        dead.iter()
            .any(|(_, r)| r.as_deref().is_some_and(|r| r.contains("not JSON"))),
        "{dead:?}"
    );
    let log = agent.log();
    assert!(log.contains("undecodable message"), "{log}");
    assert!(log.contains("body is not JSON"), "{log}");
    assert!(agent.running(), "the agent keeps running:\n{log}");
    assert_eq!(
        c.queue_depth().await,
        (0, 0),
        "everything valid was acknowledged"
    );

    // Graceful drain on SIGTERM: exit 0.
    assert_eq!(agent.terminate(), Some(0), "{}", agent.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_loses_nothing_and_does_not_delay_the_other() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("outage");
    let config = write_config(&dir, &a, &b, "1s", "10m");
    let _agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    a.set_status(500);
    let t = "2024-05-01T12:05:00.000+0000";
    let n = 6;
    for i in 0..n {
        c.alarm(&format!("cis-4.{}", 1 + i % 3), &account(i), "ALARM", t)
            .await;
    }
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&b).len() >= n).await,
        "hook-b got {:?}",
        alerts(&b)
    );
    let b_time = started.elapsed();
    assert!(alerts(&a).is_empty());
    assert!(
        a.requests().iter().all(|r| r.status == 500),
        "hook-a was tried during the outage"
    );
    // The outage ends: hook-a gets everything, once.
    a.set_status(200);
    assert!(wait_until(Duration::from_secs(60), || alerts(&a).len() >= n).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        a.requests().iter().filter(|r| r.status == 500).count() >= 1,
        "hook-a answered 500 at least once"
    );
    for r in [&a, &b] {
        let got = alerts(r);
        let fps: BTreeSet<_> = got.iter().map(|x| x.1.clone()).collect();
        assert_eq!((got.len(), fps.len()), (n, n), "{got:#?}");
    }
    assert!(b_time < Duration::from_secs(15), "hook-b waited {b_time:?}");
    assert!(
        wait_until(Duration::from_secs(10), || true).await && c.queue_depth().await == (0, 0),
        "acknowledged once both sinks had them"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_deliver_every_alert_exactly_once() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 10).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("kill");
    let config = write_config(&dir, &a, &b, "1s", "5m");
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&emu, &config, &log);
    let total = 1000;
    let t = "2024-05-01T12:05:00.000+0000";
    let started = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..total {
        c.alarm(&format!("cis-4.{}", 1 + i % 15), &account(i), "ALARM", t)
            .await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if i % 250 == 120 {
            // Kill at a random point, let it lie dead a moment, restart.
            tokio::time::sleep(Duration::from_millis(seed % 1500)).await;
            agent.kill();
            agent = Agent::start(&emu, &config, &log);
        }
    }
    let ok = wait_until(Duration::from_secs(240), || {
        alerts(&a).len() >= total && alerts(&b).len() >= total
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        ok,
        "a {} b {} of {total}; log:\n{}",
        alerts(&a).len(),
        alerts(&b).len(),
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in [&a, &b] {
        assert_each_once(r, total);
    }
    eprintln!(
        "{total} alerts through the emulator with 4 SIGKILLs: {:.1} alerts/s",
        total as f64 / elapsed.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const TABLE: &str = "orgwatch-agent-dedupe";

/// The dedupe table as the agent's documentation says to create it.
async fn dedupe_table(emu: &Emulator) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let db = emu.factory().await.expect("factory").home().dynamodb();
    db.create_table()
        .table_name(TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    db.update_time_to_live()
        .table_name(TABLE)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("ttl");
    db
}

/// A dedupe store that cannot start says which call failed, AWS's code and message, the
/// region and the table: not the SDK's debug text (issue #13, item 3).
#[tokio::test]
async fn a_missing_dedupe_table_is_named_with_the_call_and_aws_code() {
    let emu = Emulator::start().expect("emulator");
    let db = emu.factory().await.expect("factory").home().dynamodb();
    let err = match agent::dedupe::DynamoStore::connect(
        db,
        "no-such-table",
        std::time::Duration::from_secs(3600),
    )
    .await
    {
        Ok(_) => panic!("a missing table must be refused"),
        Err(e) => e.0,
    };
    for part in [
        "dedupe table \"no-such-table\"",
        "DescribeTable in us-east-1: ResourceNotFoundException",
    ] {
        assert!(err.contains(part), "{part:?} not in {err:?}");
    }
    for debug in ["ServiceError", "DispatchFailure", "{ source:"] {
        assert!(!err.contains(debug), "{debug:?} in {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_store_places_claims_and_records_like_one_store_for_two_replicas() {
    use agent::dedupe::{Claim, DedupeStore, DynamoStore, Incident};
    use agent::fingerprint::IncidentKey;
    use agent::fingerprint::key_of;
    use agent::model::AlertState;
    use agent::model::AlertState::{Firing, Resolved};

    // One alert or one delivery at a time, through the batch calls of the one trait.
    async fn remember(
        s: &DynamoStore,
        k: &IncidentKey,
        at: i64,
        state: AlertState,
        w: Duration,
        now: i64,
    ) -> Incident {
        let mut v = s
            .remember_many(&[(*k, at, state)], w, now)
            .await
            .expect("remember");
        assert_eq!(v.len(), 1);
        v.remove(0)
    }
    async fn claim(
        s: &DynamoStore,
        inc: &Incident,
        state: AlertState,
        sink: &str,
        lease: Duration,
        now: i64,
    ) -> Claim {
        let v = s
            .claim_many(&[(*inc, state, sink)], lease, now)
            .await
            .expect("claim");
        assert_eq!(v.len(), 1);
        v[0]
    }

    let emu = Emulator::start().expect("emulator");
    let db = dedupe_table(&emu).await;
    let hour = Duration::from_secs(3600);
    let a = DynamoStore::connect(db.clone(), TABLE, hour)
        .await
        .expect("store a");
    let b = DynamoStore::connect(db.clone(), TABLE, hour)
        .await
        .expect("store b");
    // A table with another key schema is refused with a clear message.
    let wrong = DynamoStore::connect(db.clone(), "no-such-table", hour).await;
    assert!(
        wrong
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("no-such-table")),
        "{:?}",
        wrong.err()
    );

    const MIN: i64 = 60_000;
    let w = Duration::from_secs(15 * 60);
    let k = key_of("root-activity", "111122223333", "us-east-1");
    // The same placement rules as the file store, whichever replica asks.
    let table = [
        (&a, 0, Firing, 0, true),
        (&b, 3 * MIN, Firing, 0, false),
        (&a, 3 * MIN, Firing, 0, false),
        (&b, 20 * MIN, Firing, 20 * MIN, true),
        (&a, 25 * MIN, Resolved, 20 * MIN, false),
        (&b, -5 * MIN, Firing, 0, false),
    ];
    for (store, at, state, start, new) in table {
        let inc = remember(store, &k, at, state, w, 1).await;
        assert_eq!((inc.start_ms, inc.new), (start, new), "at {at} {state:?}");
    }

    // Concurrent placements of one new incident from both replicas: one opens it.
    let k2 = key_of("cis-4.3", "111122223333", "us-east-1");
    let (ra, rb) = tokio::join!(
        remember(&a, &k2, 0, Firing, w, 1),
        remember(&b, &k2, 0, Firing, w, 1)
    );
    assert_eq!(ra.start_ms, rb.start_ms);
    assert!(
        ra.new ^ rb.new,
        "exactly one replica opens the incident: {ra:?} {rb:?}"
    );

    // Claims: one replica delivers; the other waits, then sees it delivered.
    let lease = Duration::from_secs(600);
    let inc = remember(&a, &k, 0, Firing, w, 2).await;
    assert_eq!(
        claim(&a, &inc, Firing, "hook", lease, 10).await,
        Claim::Mine
    );
    assert_eq!(
        claim(&a, &inc, Firing, "hook", lease, 11).await,
        Claim::Mine,
        "re-entrant"
    );
    assert_eq!(
        claim(&b, &inc, Firing, "hook", lease, 12).await,
        Claim::Held {
            until_ms: 11 + lease.as_millis() as i64
        },
        "held until the holder's lease ends"
    );
    assert_eq!(
        claim(&b, &inc, Firing, "pager", lease, 12).await,
        Claim::Mine,
        "per sink"
    );
    assert_eq!(
        claim(&b, &inc, Resolved, "hook", lease, 12).await,
        Claim::Mine,
        "per state"
    );
    a.record_delivery(&[(inc, Firing)], "hook", 20)
        .await
        .expect("record");
    assert_eq!(
        claim(&b, &inc, Firing, "hook", lease, 30).await,
        Claim::Delivered
    );
    assert_eq!(
        claim(&a, &inc, Firing, "hook", lease, 30).await,
        Claim::Delivered
    );
    // A claim whose owner died expires: the other replica takes over.
    let later = remember(&b, &k, 20 * MIN, Firing, w, 40).await;
    assert_eq!(
        claim(&a, &later, Firing, "hook", Duration::from_millis(5), 50).await,
        Claim::Mine
    );
    assert_eq!(
        claim(&b, &later, Firing, "hook", lease, 52).await,
        Claim::Held { until_ms: 55 }
    );
    assert_eq!(
        claim(&b, &later, Firing, "hook", lease, 60).await,
        Claim::Mine,
        "lease expired"
    );

    // Batches: 120 distinct keys (more than one transaction's 100 actions), each twice, in
    // one call, are placed as one by one would be; a second batch joins them.
    let keys: Vec<IncidentKey> = (0..120)
        .map(|i| key_of("cis-4.1", &format!("{:012}", 100_000 + i), "eu-west-1"))
        .collect();
    let batch: Vec<_> = keys
        .iter()
        .flat_map(|k| [(*k, 0, Firing), (*k, MIN, Firing)])
        .collect();
    let placed = a.remember_many(&batch, w, 100).await.expect("batch");
    assert_eq!(placed.len(), 240);
    for (i, inc) in placed.iter().enumerate() {
        assert_eq!(
            (inc.key, inc.start_ms, inc.new),
            (keys[i / 2], 0, i % 2 == 0),
            "{i}"
        );
    }
    let again = b.remember_many(&batch[..4], w, 101).await.expect("again");
    assert!(again.iter().all(|i| !i.new && i.start_ms == 0), "{again:?}");
    // Claims in one call: one held by the other replica, one delivered, one asked twice,
    // and 110 fresh ones (two transactions) come back in order, each with its answer.
    let (held, done) = (placed[0], placed[2]);
    assert_eq!(
        claim(&b, &held, Firing, "hook", lease, 100).await,
        Claim::Mine
    );
    a.record_delivery(&[(done, Firing)], "hook", 100)
        .await
        .expect("record");
    let mut asks = vec![
        (held, Firing, "hook"),
        (done, Firing, "hook"),
        (placed[4], Firing, "hook"),
        (placed[4], Firing, "hook"),
    ];
    asks.extend(
        placed[6..]
            .iter()
            .step_by(2)
            .take(110)
            .map(|i| (*i, Firing, "hook")),
    );
    let claims = a.claim_many(&asks, lease, 101).await.expect("claims");
    assert_eq!(claims.len(), asks.len());
    assert_eq!(
        claims[..4],
        [
            Claim::Held {
                until_ms: 100 + lease.as_millis() as i64
            },
            Claim::Delivered,
            Claim::Mine,
            Claim::Mine
        ]
    );
    assert!(claims[4..].iter().all(|c| *c == Claim::Mine), "{claims:?}");
    // The claims are real: the other replica sees them held.
    let theirs = b.claim_many(&asks[2..], lease, 102).await.expect("theirs");
    assert!(
        theirs.iter().all(|c| matches!(c, Claim::Held { .. })),
        "{theirs:?}"
    );
    // Recorded in one batch (more than BatchWriteItem's 25 a call), with a duplicate: every
    // one is then delivered, for both replicas.
    let recorded: Vec<(Incident, AlertState)> =
        asks[2..].iter().map(|(i, s, _)| (*i, *s)).collect();
    a.record_delivery(&recorded, "hook", 103)
        .await
        .expect("record many");
    for store in [&a, &b] {
        let now = store
            .claim_many(&asks[2..], lease, 104)
            .await
            .expect("after");
        assert!(now.iter().all(|c| *c == Claim::Delivered), "{now:?}");
    }
    // A release gives a failed delivery back at once, not at the lease's end.
    let failed = placed[238];
    assert_eq!(
        claim(&a, &failed, Firing, "hook", lease, 110).await,
        Claim::Mine
    );
    a.release(&[(failed, Firing)], "hook")
        .await
        .expect("release");
    assert_eq!(
        claim(&b, &failed, Firing, "hook", lease, 111).await,
        Claim::Mine
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_queue_with_the_dynamodb_store_deliver_exactly_once() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 10).await;
    dedupe_table(&emu).await;
    let a = Receiver::start().await.expect("receiver a");
    let b = Receiver::start().await.expect("receiver b");
    let dir = temp_dir("replicas");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let text = std::fs::read_to_string(&config).expect("config");
    let db_line = format!("path = \"{}\"", dir.join("agent.db").display());
    assert!(text.contains(&db_line));
    let text = text.replace(
        &db_line,
        &format!("store = \"dynamodb\"\ntable = \"{TABLE}\""),
    );
    std::fs::write(&config, text).expect("write config");
    let mut one = Agent::start(&emu, &config, &dir.join("one.log"));
    let mut two = Agent::start(&emu, &config, &dir.join("two.log"));

    // 150 alarms, each published twice (SNS redelivery, a second CloudWatch notification):
    // the copies land on either replica.
    let total = 150;
    let t = "2024-05-01T12:05:00.000+0000";
    for round in 0..2 {
        for i in 0..total {
            c.alarm(&format!("cis-4.{}", 1 + i % 15), &account(i), "ALARM", t)
                .await;
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let ok = wait_until(Duration::from_secs(180), || {
        alerts(&a).len() >= total && alerts(&b).len() >= total
    })
    .await;
    assert!(
        ok,
        "a {} b {} of {total}\none:\n{}\ntwo:\n{}",
        alerts(&a).len(),
        alerts(&b).len(),
        one.log(),
        two.log()
    );
    // Long enough for a held copy to come back (visibility 30s) and be recognised.
    tokio::time::sleep(Duration::from_secs(35)).await;
    for r in [&a, &b] {
        assert_each_once(r, total);
    }
    // Both replicas did part of the work.
    for (name, agent) in [("one", &one), ("two", &two)] {
        assert!(
            agent.log().contains("delivered"),
            "replica {name} delivered nothing:\n{}",
            agent.log()
        );
    }
    assert!(one.running() && two.running());
    assert_eq!(one.terminate(), Some(0), "{}", one.log());
    assert_eq!(two.terminate(), Some(0), "{}", two.log());
    // The DynamoDB store's batch calls (BatchGetItem, TransactWriteItems, BatchWriteItem)
    // are all granted by the agent's DedupeTable statement.
    one.assert_calls_granted();
    two.assert_calls_granted();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_regions_queue_is_read() {
    let emu = Emulator::start().expect("emulator");
    let east = central_in(&emu, "us-east-1", 5).await;
    let west = central_in(&emu, "eu-west-1", 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("regions");
    let config = write_config_with(
        &dir,
        &a,
        &b,
        "1s",
        "10m",
        r#"regions = ["us-east-1", "eu-west-1"]"#,
    );
    let _agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    let t = "2024-05-01T12:05:00.000+0000";
    east.alarm("cis-4.1", &account(0), "ALARM", t).await;
    west.alarm("cis-4.2", &account(1), "ALARM", t).await;
    assert!(
        wait_until(Duration::from_secs(30), || alerts(&a).len() >= 2).await,
        "hook-a got {:?}",
        alerts(&a)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_each_once(&a, 2);
    assert!(
        wait_until(Duration::from_secs(10), || true).await
            && east.queue_depth().await == (0, 0)
            && west.queue_depth().await == (0, 0),
        "each region's message was deleted from its own queue"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// DeleteMessageBatch answers per entry: a failed entry in one chunk of ten must not stop
/// the deletes of the next chunks (the first version returned at the first failure, and
/// later chunks came back as duplicates), and the failed entry is retried once, then said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_finish_every_chunk_whatever_one_entry_answers() {
    use agent::source::Source;
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    for i in 0..15 {
        c.send_raw(&format!("message {i}")).await;
    }
    let factory = emu.factory().await.expect("factory");
    let source = agent::source::sqs::SqsSource::connect(
        factory.home().sqs(),
        QUEUE,
        Duration::from_secs(1),
        Duration::from_secs(30),
        false,
    )
    .await
    .expect("source");
    let mut tokens = Vec::new();
    while tokens.len() < 15 {
        let got = source.receive(10).await.expect("receive");
        assert!(!got.is_empty(), "only {} received", tokens.len());
        tokens.extend(got.into_iter().map(|e| e.token));
    }
    // One bad handle first: the first chunk has a failed entry.
    tokens.insert(0, "not-a-receipt-handle".to_string());
    let err = source
        .ack(tokens)
        .await
        .expect_err("the bad handle is reported");
    assert!(err.0.contains("1 of 16 deletes failed twice"), "{err}");
    assert_eq!(
        c.queue_depth().await,
        (0, 0),
        "every good message was deleted"
    );
}

/// With `max_receive_count = 2`, a 10 s visibility and a sink giving up after 5 s, a
/// webhook down for a minute would have every message received twice and dead-lettered by
/// the redrive policy. The agent keeps them in flight and tries again: everything is
/// delivered once the sink is back, and nothing reaches the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_for_a_minute_loses_nothing_to_the_redrive_policy() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 2).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("redrive");
    let config = write_config(&dir, &a, &b, "1s", "5s");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(r#"visibility = "30s""#, r#"visibility = "10s""#),
    )
    .expect("config");
    let mut agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    a.set_status(503);
    let t = "2024-05-01T12:05:00.000+0000";
    let n = 3;
    for i in 0..n {
        c.alarm(&format!("cis-4.{}", 1 + i), &account(i), "ALARM", t)
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&b).len() >= n).await,
        "{}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(alerts(&a).is_empty());
    assert!(
        c.dlq_messages().await.is_empty(),
        "dead-lettered during the outage:\n{}",
        agent.log()
    );
    a.set_status(200);
    assert!(
        wait_until(Duration::from_secs(120), || alerts(&a).len() >= n).await,
        "{}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_each_once(&a, n);
    assert_each_once(&b, n);
    assert!(c.dlq_messages().await.is_empty(), "{}", agent.log());
    assert!(
        wait_until(Duration::from_secs(15), || true).await && c.queue_depth().await == (0, 0),
        "every message was deleted"
    );
    assert!(agent.running());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A queue without a redrive policy would return an undecodable message at once, forever:
/// the agent refuses it at start with the fix, unless told otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_without_a_redrive_policy_is_refused_unless_allowed() {
    let emu = Emulator::start().expect("emulator");
    let factory = emu.factory().await.expect("factory");
    let sqs = factory.home().sqs();
    sqs.create_queue()
        .queue_name("bare")
        .send()
        .await
        .expect("queue");
    let connect = |allow| {
        agent::source::sqs::SqsSource::connect(
            sqs.clone(),
            "bare",
            Duration::from_secs(1),
            Duration::from_secs(30),
            allow,
        )
    };
    let err = connect(false).await.err().expect("refused");
    assert!(err.0.contains("no redrive policy"), "{err}");
    assert!(connect(true).await.is_ok());
    let err = agent::source::sqs::SqsSource::connect(
        sqs.clone(),
        "missing",
        Duration::from_secs(1),
        Duration::from_secs(30),
        true,
    )
    .await
    .err()
    .expect("no such queue");
    assert!(err.0.contains("missing"), "{err}");
}

fn agent_cli(emu: &Emulator, config: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(bin("agent"))
        .args([
            "--config",
            &config.display().to_string(),
            "--output",
            "json",
        ])
        .args(args)
        .envs(emu.env())
        .env("WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("run agent");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A sink that rejects (a 4xx) dead-letters the message with the reason; `agent dlq list`
/// shows it; once the sink is fixed, `agent dlq redrive` moves it back and it is delivered,
/// to that sink only (the other had it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_listed_and_redriven_after_the_fix() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("dlq");
    let config = write_config(&dir, &a, &b, "1s", "5s");
    let agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    a.set_status(400);
    c.alarm(
        "cis-4.3",
        &account(7),
        "ALARM",
        "2024-05-01T12:05:00.000+0000",
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&b).len() == 1).await,
        "{}",
        agent.log()
    );
    let mut listed = Value::Null;
    for _ in 0..40 {
        let (code, doc, err) = agent_cli(&emu, &config, &["dlq", "list"]);
        assert_eq!(code, 0, "{err}");
        if doc["queues"][0]["total"] == 1 {
            listed = doc;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reasons = listed["queues"][0]["reasons"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        reasons
            .keys()
            .any(|r| r.contains("rejected by a sink") && r.contains("hook-a")),
        "{listed:#}\n{}",
        agent.log()
    );
    // Rejected after one receive and one attempt: a 4xx is not bounced through the queue
    // max_receive_count times.
    assert_eq!(a.requests().len(), 1, "{}", agent.log());
    // Listing moved nothing; a redrive by another reason moves nothing either.
    let (code, doc, _) = agent_cli(
        &emu,
        &config,
        &["dlq", "redrive", "--reason", "undecodable"],
    );
    assert_eq!((code, doc["queues"][0]["redriven"].as_u64()), (0, Some(0)));
    a.set_status(200);
    let (code, doc, err) = agent_cli(&emu, &config, &["dlq", "redrive", "--reason", "rejected"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["queues"][0]["redriven"], 1, "{doc:#}");
    assert!(
        wait_until(Duration::from_secs(30), || alerts(&a).len() == 1).await,
        "{}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_each_once(&a, 1);
    assert_each_once(&b, 1);
    assert!(c.dlq_messages().await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `sns` sink whose topic is in another region than the agent's: published through
/// that region's endpoint (the first version used the agent's own region, where the topic
/// does not exist, and failed its healthcheck at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_sink_publishes_to_a_topic_in_another_region() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let factory = emu.factory().await.expect("factory");
    let west = factory.home().in_region("eu-west-1");
    let topic = west
        .sns()
        .create_topic()
        .name("secops")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("topic arn");
    let inbox = west
        .sqs()
        .create_queue()
        .queue_name("secops-inbox")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    west.sns()
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn(&west.sqs(), &inbox).await)
        .send()
        .await
        .expect("subscribe");
    let dir = temp_dir("sns-region");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[source]
queue = "{QUEUE}"
long_poll = "1s"
[dedupe]
path = "{db}"
[group]
by = ["rule"]
wait = "1s"
interval = "1s"
[enrich]
enabled = false
[[sink]]
name = "secops"
type = "sns"
topic_arn = "{topic}"
[[route]]
match = {{}}
sinks = ["secops"]
[server]
listen = "127.0.0.1:0"
"#,
            db = dir.join("agent.db").display()
        ),
    )
    .expect("config");
    let mut agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    c.alarm(
        "cis-4.1",
        &account(3),
        "ALARM",
        "2024-05-01T12:05:00.000+0000",
    )
    .await;
    let mut got = Vec::new();
    let started = Instant::now();
    while got.is_empty() && started.elapsed() < Duration::from_secs(30) {
        got = west
            .sqs()
            .receive_message()
            .queue_url(&inbox)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
    }
    assert!(agent.running(), "{}", agent.log());
    assert_eq!(got.len(), 1, "{}", agent.log());
    let envelope: Value =
        serde_json::from_str(got[0].body().unwrap_or_default()).expect("SNS envelope");
    let doc: Value = serde_json::from_str(envelope["Message"].as_str().unwrap_or_default())
        .expect("notification");
    assert_eq!(doc["alerts"][0]["rule_id"], "cis-4.1", "{doc:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replicas hold back a message whose incident another replica is delivering until that
/// claim ends, so its queue must allow three receives before the redrive policy: an agent
/// with the shared store refuses a queue that allows two, at start, saying what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_refuse_a_redrive_policy_too_short_for_held_messages() {
    let emu = Emulator::start().expect("emulator");
    let _c = central(&emu, 2).await;
    dedupe_table(&emu).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("short-redrive");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let text = std::fs::read_to_string(&config).expect("config");
    let db_line = format!("path = \"{}\"", dir.join("agent.db").display());
    std::fs::write(
        &config,
        text.replace(
            &db_line,
            &format!("store = \"dynamodb\"\ntable = \"{TABLE}\""),
        ),
    )
    .expect("config");
    let mut agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    let started = Instant::now();
    while agent.running() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!agent.running(), "{}", agent.log());
    assert!(
        agent.log().contains("needs maxReceiveCount of at least 3"),
        "{}",
        agent.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 429 with `Retry-After` is waited out before the next attempt (the sink's own
/// back-off would try again within a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_says_retry_after_is_given_that_long() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("retry-after");
    let config = write_config(&dir, &a, &b, "1s", "2m");
    let agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    a.set_status(429);
    a.set_retry_after(4);
    c.alarm(
        "cis-4.1",
        &account(5),
        "ALARM",
        "2024-05-01T12:05:00.000+0000",
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || !a.requests().is_empty()).await,
        "{}",
        agent.log()
    );
    a.set_status(200);
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&a).len() == 1).await,
        "{}",
        agent.log()
    );
    let reqs = a.requests();
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(waited >= Duration::from_secs(4), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(10), "retried after {waited:?}");
    assert!(
        agent.log().contains("delivery failed; retrying"),
        "a failing sink is said at WARN"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// #15 item 10: the agent's AWS clients and its sinks honour the proxy variables. The SDK's
/// default HTTP client leaves proxies off; behind an egress proxy nothing would be read or
/// delivered. Here every request goes through a loopback proxy: the emulator's and a webhook's
/// forwarded in absolute form with the proxy's credentials, an https:// sink tunnelled with
/// CONNECT (the TLS inside fails against a plain receiver; the CONNECT is what is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_clients_and_the_sinks_go_through_the_proxy_the_environment_names() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let proxy = orgwatch_tests::proxy::Proxy::start().await.expect("proxy");
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("proxy");
    let config = write_config(&dir, &a, &b, "1s", "2m");
    let text = std::fs::read_to_string(&config).expect("config");
    let tls_b = b.url("/b").replacen("http://", "https://", 1);
    std::fs::write(&config, text.replace(&b.url("/b"), &tls_b)).expect("write config");
    let proxy_url = proxy
        .url()
        .replacen("http://", "http://orgwatch:s3cret@", 1);
    let file = std::fs::File::create(dir.join("agent.log")).expect("log");
    let child = Command::new(bin("agent"))
        .args(["--config", &config.display().to_string(), "run"])
        .envs(emu.env())
        .env("RUST_LOG", "info,agent=debug")
        .env("WEBHOOK_SECRET", SECRET)
        .env("HTTP_PROXY", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start agent");
    let agent = Agent {
        child,
        log: dir.join("agent.log"),
    };
    c.alarm(
        "cis-4.1",
        &account(7),
        "ALARM",
        "2024-05-01T12:05:00.000+0000",
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(30), || alerts(&a).len() == 1).await,
        "{}",
        agent.log()
    );
    let emulator = emu.url().trim_start_matches("http://").to_string();
    let hook_a = a.url("").trim_start_matches("http://").to_string();
    let hook_b = b.url("").trim_start_matches("http://").to_string();
    assert!(
        wait_until(Duration::from_secs(20), || proxy
            .asked()
            .iter()
            .any(|x| x.method == "CONNECT" && x.authority == hook_b))
        .await,
        "the https:// sink was not tunnelled: {:?}",
        proxy.asked()
    );
    let asked = proxy.asked();
    let basic = "Basic b3Jnd2F0Y2g6czNjcmV0";
    for (what, authority, method) in [
        ("the emulator (SQS)", &emulator, "POST"),
        ("the http:// sink", &hook_a, "POST"),
        ("the https:// sink", &hook_b, "CONNECT"),
    ] {
        let seen: Vec<_> = asked.iter().filter(|x| &x.authority == authority).collect();
        assert!(!seen.is_empty(), "{what} bypassed the proxy: {asked:?}");
        assert!(
            seen.iter()
                .all(|x| x.method == method && x.proxy_authorization.as_deref() == Some(basic)),
            "{what}: {seen:?}"
        );
    }
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// #15: a replica killed while it holds claims (its deliveries in progress) loses nothing.
/// The other replica finds the claims held, keeps the messages invisible until the dead
/// holder's lease ends (not a visibility timeout at a time: each return would be a receive the
/// redrive policy counts), then claims and delivers them once; nothing reaches the DLQ. The
/// lease is short here: group 1 s + 1 s, a sink's retry_for 20 s and timeout 10 s, + 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_claims_loses_nothing_to_the_dlq() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 3).await;
    dedupe_table(&emu).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("replica-dies");
    let config = write_config(&dir, &a, &b, "1s", "20s");
    let text = std::fs::read_to_string(&config).expect("config");
    let db_line = format!("path = \"{}\"", dir.join("agent.db").display());
    let text = text
        .replace(
            &db_line,
            &format!("store = \"dynamodb\"\ntable = \"{TABLE}\""),
        )
        .replace(r#"visibility = "30s""#, r#"visibility = "10s""#);
    std::fs::write(&config, text).expect("config");
    a.set_status(503);
    b.set_status(503);
    let mut one = Agent::start(&emu, &config, &dir.join("one.log"));
    let n = 4;
    let t = "2024-05-01T12:05:00.000+0000";
    for i in 0..n {
        c.alarm(&format!("cis-4.{}", 1 + i), &account(i), "ALARM", t)
            .await;
    }
    // Replica one has claimed the deliveries and is retrying them.
    assert!(
        wait_until(Duration::from_secs(30), || !a.requests().is_empty()
            && !b.requests().is_empty())
        .await,
        "{}",
        one.log()
    );
    // Killed well into its claims' lease (it is still retrying: retry_for 20 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    one.kill();
    let killed = Instant::now();
    a.set_status(200);
    b.set_status(200);
    let mut two = Agent::start(&emu, &config, &dir.join("two.log"));
    assert!(
        wait_until(Duration::from_secs(180), || alerts(&a).len() >= n
            && alerts(&b).len() >= n)
        .await,
        "a {} b {} of {n}\ntwo:\n{}",
        alerts(&a).len(),
        alerts(&b).len(),
        two.log()
    );
    let took = killed.elapsed();
    assert!(
        two.log().contains("another replica is delivering it"),
        "the messages came back while one's claims were live: {}",
        two.log()
    );
    // Delivered when the dead replica's lease ended (about 92 s after its claims, which
    // came about 10 s before the kill: ~84 s), not a whole lease after replica two first saw
    // the claims (up to 10 s after the kill: ~100 s).
    eprintln!("delivered {took:?} after the kill");
    assert!(took < Duration::from_secs(92), "took {took:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_each_once(&a, n);
    assert_each_once(&b, n);
    assert!(
        c.dlq_messages().await.is_empty(),
        "dead-lettered:\n{}",
        two.log()
    );
    assert!(two.running());
    assert_eq!(two.terminate(), Some(0), "{}", two.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// #12 item 3: an alarm routed through EventBridge arrives as the documented "CloudWatch
/// Alarm State Change" event (source aws.cloudwatch), not an SNS notification: it is the
/// same alarm, its resolution resolves it, and one from another source is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_state_change_from_eventbridge_is_delivered_as_an_alarm() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("alarm-event");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    let account = account(3);
    let name = shared::naming::alarm_name("cis-4.3");
    let event = |state: &str, source: &str, at: &str| {
        json!({
            "version": "0",
            "id": format!("evt-{state}-{source}"),
            "detail-type": "CloudWatch Alarm State Change",
            "source": source,
            "account": account,
            "time": at,
            "region": "us-east-1",
            "resources": [format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}")],
            "detail": {
                "alarmName": name,
                "configuration": {"metrics": [{"id": "m1", "returnData": true, "metricStat": {
                    "metric": {"name": name, "namespace": "orgwatch", "dimensions": {}},
                    "period": 300, "stat": "Sum"}}]},
                "previousState": {"value": if state == "ALARM" { "OK" } else { "ALARM" },
                    "timestamp": "2024-05-01T12:00:00.000+0000", "reason": "earlier"},
                "state": {"value": state, "timestamp": at.replace('Z', ".000+0000"),
                    "reason": "Threshold Crossed: 1 datapoint was greater than or equal to the threshold (1.0)"}
            }
        })
        .to_string()
    };
    c.send_raw(&event("ALARM", "custom.forger", "2024-05-01T12:04:00Z"))
        .await;
    c.send_raw(&event("ALARM", "aws.cloudwatch", "2024-05-01T12:05:00Z"))
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || !alerts(&a).is_empty()).await,
        "{}",
        agent.log()
    );
    c.send_raw(&event("OK", "aws.cloudwatch", "2024-05-01T12:20:00Z"))
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || a
            .accepted()
            .iter()
            .filter_map(Received::json)
            .any(|d| d.to_string().contains("resolved")))
        .await,
        "{}",
        agent.log()
    );
    let got = alerts(&a);
    assert!(
        got.iter()
            .all(|(rule, _, acct)| rule == "root-activity" && acct == &account),
        "{got:?}"
    );
    let dead = c.dlq_messages().await;
    assert_eq!(dead.len(), 1, "the forged one only: {dead:?}");
    assert!(
        dead[0]
            .1
            .as_deref()
            .is_some_and(|r| r.contains("not aws.cloudwatch")),
        "{dead:?}"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `/metrics` text of a running agent (its operations address from the "agent running"
/// log line), or empty.
fn agent_metrics(agent: &Agent) -> String {
    let log = agent.log();
    let addr = log
        .lines()
        .find(|l| l.contains("agent running"))
        .and_then(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["fields"]["listen"].as_str().map(str::to_string))
                .or_else(|| {
                    l.split("listen=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .map(str::to_string)
                })
        });
    addr.and_then(|a| orgwatch_tests::watch::http_get(&a, "/metrics"))
        .unwrap_or_default()
}

/// #12 item 4: the watcher is watched. A heartbeat sink calls its URL every interval while
/// receives succeed (a dead-man's switch alerts when the calls stop), takes no alerts, and
/// /metrics says when the last receive succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_sink_is_called_while_the_pipeline_is_healthy() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b, beat) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("heartbeat");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "[[sink]]\nname = \"beat\"\ntype = \"heartbeat\"\nurl = \"{}\"\ninterval = \"1s\"\n",
        beat.url("/ping/orgwatch")
    ));
    std::fs::write(&config, text).expect("config");
    let agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    c.alarm(
        "cis-4.1",
        &account(1),
        "ALARM",
        "2024-05-01T12:05:00.000+0000",
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || beat.requests().len() >= 3).await,
        "{}",
        agent.log()
    );
    let pings = beat.requests();
    assert!(
        pings
            .iter()
            .all(|p| p.method == "GET" && p.path == "/ping/orgwatch" && p.body.is_empty()),
        "{pings:?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&a).len() == 1).await,
        "{}",
        agent.log()
    );
    assert!(alerts(&beat).is_empty(), "the heartbeat takes no alerts");
    let metrics = agent_metrics(&agent);
    let last =
        orgwatch_tests::watch::metric(&metrics, "orgwatch_agent_last_receive_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    assert!(
        last > 0.0 && now - last < 30.0,
        "last receive {last}, now {now}:\n{metrics}"
    );
    assert!(
        orgwatch_tests::watch::metric(&metrics, "orgwatch_agent_heartbeats_sent_total") >= 3.0,
        "{metrics}"
    );
    // #13 item 11: the labelled series (prometheus-client): the alert by rule and
    // severity, hook-a's delivery, and the delivery-latency histogram that timed it.
    let rule = orgwatch_tests::watch::metric(
        &metrics,
        "orgwatch_agent_alerts_total{rule=\"cis-4.1\",severity=\"",
    );
    assert!(rule >= 1.0, "{metrics}");
    assert!(
        orgwatch_tests::watch::metric(
            &metrics,
            "orgwatch_agent_sink_delivered_total{sink=\"hook-a\"}"
        ) >= 1.0,
        "{metrics}"
    );
    let timed = orgwatch_tests::watch::metric(
        &metrics,
        "orgwatch_agent_delivery_duration_seconds_count{sink=\"hook-a\"}",
    );
    assert!(timed >= 1.0, "{metrics}");
    assert!(
        metrics.contains(
            "orgwatch_agent_delivery_duration_seconds_bucket{sink=\"hook-a\",le=\"+Inf\"}"
        ),
        "{metrics}"
    );
    // `agent health`, the image's HEALTHCHECK: 0 while the agent answers, 1 once it is gone.
    let addr = agent
        .log()
        .lines()
        .find(|l| l.contains("agent running"))
        .and_then(|l| l.split("listen=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
        .expect("the agent's listen address");
    let health = |extra: &[&str]| {
        Command::new(bin("agent"))
            .args([
                "--config",
                &config.display().to_string(),
                "health",
                "--address",
                &addr,
            ])
            .args(extra)
            .output()
            .expect("agent health")
    };
    let up = health(&[]);
    assert_eq!(
        up.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(String::from_utf8_lossy(&up.stdout).contains("/healthz: ok"));
    let ready = health(&["--ready"]);
    assert_eq!(
        ready.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    drop(agent);
    let down = health(&[]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("is the agent running"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// #13 item 6: `agent test-sink NAME` sends one clearly marked test notification and says what
/// the sink answered; a sink that refuses it, or a name that is not configured, is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sink_sends_one_marked_notification_and_reports_the_answer() {
    let emu = Emulator::start().expect("emulator");
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("test-sink");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let (code, doc, err) = agent_cli(&emu, &config, &["test-sink", "hook-a"]);
    assert_eq!(code, 0, "{doc:#}\n{err}");
    assert_eq!(doc["outcome"], "delivered", "{doc:#}");
    let got = a.accepted();
    assert_eq!(got.len(), 1);
    let body = got[0].json().expect("json");
    assert_eq!(body["alerts"][0]["rule_id"], "orgwatch-test", "{body:#}");
    assert!(
        body["title"]
            .as_str()
            .is_some_and(|t| t.contains("test notification")),
        "{body:#}"
    );
    assert!(
        got[0].header("x-orgwatch-signature").is_some(),
        "signed like any delivery"
    );
    assert!(b.requests().is_empty(), "only the named sink");
    b.set_status(400);
    let (code, doc, _) = agent_cli(&emu, &config, &["test-sink", "hook-b"]);
    assert_eq!(
        (code, doc["outcome"].as_str()),
        (1, Some("reject")),
        "{doc:#}"
    );
    assert!(
        doc["reason"].as_str().is_some_and(|r| r.contains("400")),
        "{doc:#}"
    );
    let (code, _, err) = agent_cli(&emu, &config, &["test-sink", "nobody"]);
    assert_eq!(code, 2);
    assert!(err.contains("hook-a, hook-b"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two replicas placing and claiming overlapping batches at the same time (as their
/// batchers do under load): every delivery is claimed by exactly one of them, and both
/// place each alert in the same incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_of_two_replicas_claim_each_delivery_once() {
    use agent::dedupe::{Claim, DedupeStore, DynamoStore, Incident};
    use agent::fingerprint::{IncidentKey, key_of};
    use agent::model::AlertState::Firing;
    use std::sync::Arc;

    let emu = Emulator::start().expect("emulator");
    let db = dedupe_table(&emu).await;
    let hour = Duration::from_secs(3600);
    let w = Duration::from_secs(900);
    let keys: Vec<IncidentKey> = (0..600)
        .map(|i| key_of("cis-4.1", &format!("{:012}", 300_000 + i), "us-east-1"))
        .collect();
    // Replica 0 has keys 0..400, replica 1 has 200..600 (in the other order): 200 in
    // common. Each works in batches of 50, all of its batches in flight at once.
    let mut tasks = Vec::new();
    for (replica, range) in [(0usize, 0..400usize), (1, 200..600)] {
        let store = Arc::new(
            DynamoStore::connect(db.clone(), TABLE, hour)
                .await
                .expect("store"),
        );
        let mut mine: Vec<IncidentKey> = range.map(|i| keys[i]).collect();
        if replica == 1 {
            mine.reverse();
        }
        for batch in mine.chunks(50) {
            let (store, batch) = (store.clone(), batch.to_vec());
            tasks.push(tokio::spawn(async move {
                let alerts: Vec<_> = batch.iter().map(|k| (*k, 0, Firing)).collect();
                let placed: Vec<Incident> =
                    store.remember_many(&alerts, w, 1).await.expect("remember");
                let asks: Vec<_> = placed.iter().map(|i| (*i, Firing, "hook")).collect();
                let claims = store.claim_many(&asks, hour, 2).await.expect("claim");
                (replica, placed, claims)
            }));
        }
    }
    // Per key: (replica, incident start, opened it, claim).
    type Seen = Vec<(usize, i64, bool, Claim)>;
    let mut by_key: BTreeMap<[u8; 16], Seen> = BTreeMap::new();
    for t in tasks {
        let (replica, placed, claims) = t.await.expect("task");
        for (inc, claim) in placed.into_iter().zip(claims) {
            by_key
                .entry(inc.key.0)
                .or_default()
                .push((replica, inc.start_ms, inc.new, claim));
        }
    }
    assert_eq!(by_key.len(), 600);
    for (key, seen) in &by_key {
        let mine = seen.iter().filter(|s| s.3 == Claim::Mine).count();
        assert_eq!(mine, 1, "{key:?}: {seen:?}");
        assert_eq!(
            seen.iter().filter(|s| s.2).count(),
            1,
            "one opens it: {seen:?}"
        );
        assert!(seen.iter().all(|s| s.1 == 0), "{seen:?}");
        if seen.len() == 2 {
            assert!(
                seen.iter().any(|s| matches!(s.3, Claim::Held { .. })),
                "the other waits: {seen:?}"
            );
        }
    }
}

/// SIGTERM drains (outstanding deliveries may finish); a second one during the drain stops
/// the agent at once, with exit code 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_the_drain_stops_the_agent_at_once() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    // Sink a is down and the delivery keeps being retried: the drain would wait for it.
    a.set_status(503);
    let dir = temp_dir("second-signal");
    let config = write_config(&dir, &a, &b, "1s", "5m");
    let mut agent = Agent::start(&emu, &config, &dir.join("agent.log"));
    c.alarm(
        "cis-4.3",
        &account(3),
        "ALARM",
        "2024-05-01T12:05:00.000+0000",
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(30), || !a.requests().is_empty()).await,
        "{}",
        agent.log()
    );
    let signal = |child: &Agent| {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.child.id() as i32, libc::SIGTERM);
        }
    };
    signal(&agent);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.running(), "still draining:\n{}", agent.log());
    let sent = Instant::now();
    signal(&agent);
    let mut code = None;
    while sent.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = agent.child.try_wait() {
            code = status.code();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, Some(130), "{}", agent.log());
    assert!(
        agent.log().contains("second signal while draining"),
        "{}",
        agent.log()
    );
}

/// #13 item 6: `agent silence add` (the real binary, writing the file store's silences
/// while the agent runs) keeps a matching alert from every sink: it is counted in /metrics,
/// logged at INFO with the silence in the JSON log, and its message is acknowledged; an
/// alert the silence does not match is delivered; after `agent silence expire ID` the next
/// matching alert is delivered. Bad arguments and unknown ids are refused with exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_keeps_matching_alerts_from_the_sinks_until_it_is_expired() {
    let emu = Emulator::start().expect("emulator");
    let c = central(&emu, 5).await;
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("silence");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "window = \"15m\"\n",
        "window = \"15m\"\nsilence_refresh = \"1s\"\n",
    );
    std::fs::write(&config, text).expect("config");
    let (quiet, loud) = (account(1), account(2));

    // Refused: each bad argument named, nothing stored.
    let out = Command::new(bin("agent"))
        .args(["--config", &config.display().to_string(), "silence", "add"])
        .args(["--match", "rul=cis-4.1", "--match", "account=12345"])
        .args(["--for", "31d", "--comment", "x"])
        .envs(emu.env())
        .env("WEBHOOK_SECRET", SECRET)
        .output()
        .expect("agent silence add");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown key \"rul\" (did you mean \"rule\"?)"),
        "{err}"
    );
    assert!(
        err.contains("\"12345\" is not a 12-digit account id"),
        "{err}"
    );
    assert!(err.contains("--for \"31d\": at most 30 days"), "{err}");
    let (code, _, err) = agent_cli(
        &emu,
        &config,
        &["silence", "add", "--for", "1h", "--comment", "everything"],
    );
    assert_eq!(code, 2, "a silence of every alert is refused: {err}");

    let mut agent = Agent::start_with(
        &emu,
        &config,
        &dir.join("agent.log"),
        &["--log-format", "json"],
    );
    let rule_match = "rule=cis-4.1".to_string();
    let account_match = format!("account={quiet}");
    let (code, doc, err) = agent_cli(
        &emu,
        &config,
        &[
            "silence",
            "add",
            "--match",
            &rule_match,
            "--match",
            &account_match,
            "--for",
            "2h",
            "--comment",
            "planned change CHG-42",
            "--author",
            "alice",
        ],
    );
    assert_eq!(code, 0, "{doc:#}\n{err}");
    assert_eq!(doc["schema_version"], 1, "{doc:#}");
    let id = doc["silence"]["id"].as_str().expect("id").to_string();
    assert_eq!(doc["silence"]["status"], "active", "{doc:#}");
    assert_eq!(
        doc["silence"]["match"],
        json!({"rule": ["cis-4.1"], "account": [quiet]})
    );
    assert_eq!(doc["silence"]["created_by"], "alice");
    let (code, doc, _) = agent_cli(&emu, &config, &["silence", "list"]);
    assert_eq!(code, 0);
    assert_eq!(doc["silences"].as_array().map(Vec::len), Some(1), "{doc:#}");
    assert_eq!(doc["silences"][0]["id"], id.as_str());
    // The running agent has read it (it says so) before the alerts are sent.
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .log()
            .contains("silence in effect"))
        .await,
        "{}",
        agent.log()
    );
    c.alarm("cis-4.1", &quiet, "ALARM", "2024-05-01T12:05:00.000+0000")
        .await;
    c.alarm("cis-4.1", &loud, "ALARM", "2024-05-01T12:05:00.000+0000")
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&a).len() == 1
            && alerts(&b).len() == 1)
        .await,
        "{}",
        agent.log()
    );
    let logged = |what: &str| -> Vec<Value> {
        agent
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == what)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || !logged(
            "silenced: not sent to the sinks"
        )
        .is_empty())
        .await,
        "{}",
        agent.log()
    );
    let silenced = logged("silenced: not sent to the sinks");
    assert_eq!(silenced.len(), 1, "{silenced:?}");
    let f = &silenced[0]["fields"];
    assert_eq!(f["silence_id"], id.as_str(), "{f}");
    assert_eq!(
        (&f["rule"], &f["account"], &f["region"]),
        (&json!("cis-4.1"), &json!(quiet), &json!("us-east-1"))
    );
    assert_eq!(silenced[0]["level"], "INFO", "{silenced:?}");
    for r in [&a, &b] {
        assert_eq!(
            alerts(r)[0].2,
            loud,
            "only the alert the silence does not match"
        );
    }
    let metrics = agent_metrics(&agent);
    assert_eq!(
        orgwatch_tests::watch::metric(&metrics, "orgwatch_agent_alerts_silenced_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        orgwatch_tests::watch::metric(&metrics, "orgwatch_agent_silences_active"),
        1.0,
        "{metrics}"
    );
    // Acknowledged as handled: nothing left in the queue, nothing dead-lettered.
    assert!(
        wait_until(Duration::from_secs(20), || orgwatch_tests::watch::metric(
            &agent_metrics(&agent),
            "orgwatch_agent_messages_acked_total"
        ) >= 2.0)
        .await,
        "{}",
        agent_metrics(&agent)
    );
    assert_eq!(c.queue_depth().await, (0, 0));

    // Expired: kept (listed with --all), and the next matching alert is delivered.
    let (code, doc, err) = agent_cli(&emu, &config, &["silence", "expire", &id]);
    assert_eq!(
        (code, doc["expired_now"].as_bool()),
        (0, Some(true)),
        "{doc:#}\n{err}"
    );
    let (code, _, err) = agent_cli(&emu, &config, &["silence", "expire", "no-such-id"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no silence has the id \"no-such-id\""),
        "{err}"
    );
    let (_, doc, _) = agent_cli(&emu, &config, &["silence", "list"]);
    assert_eq!(doc["silences"], json!([]), "{doc:#}");
    let (_, doc, _) = agent_cli(&emu, &config, &["silence", "list", "--all"]);
    assert_eq!(doc["silences"][0]["status"], "expired", "{doc:#}");
    assert!(
        wait_until(Duration::from_secs(20), || !logged("silence ended")
            .is_empty())
        .await,
        "{}",
        agent.log()
    );
    c.alarm("cis-4.1", &quiet, "ALARM", "2024-05-01T12:30:00.000+0000")
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&a).len() == 2
            && alerts(&b).len() == 2)
        .await,
        "{}",
        agent.log()
    );
    assert_eq!(alerts(&a)[1].2, quiet);
    assert_eq!(
        orgwatch_tests::watch::metric(
            &agent_metrics(&agent),
            "orgwatch_agent_alerts_silenced_total"
        ),
        1.0
    );
    assert_eq!(agent.terminate(), Some(0), "{}", agent.log());
    agent.assert_calls_granted();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The silences in the shared DynamoDB table: what one replica (or `agent silence` with
/// the `dynamodb` store) adds, another reads; concurrent adds both survive (the write is
/// conditioned on the version read); expire ends it for every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_store_shares_silences_between_replicas() {
    use agent::dedupe::{DynamoStore, SilenceStore};
    use agent::silence::{Expired, Silence, Status};

    let emu = Emulator::start().expect("emulator");
    let db = dedupe_table(&emu).await;
    let hour = Duration::from_secs(3600);
    let one = DynamoStore::connect(db.clone(), TABLE, hour)
        .await
        .expect("store one");
    let two = DynamoStore::connect(db.clone(), TABLE, hour)
        .await
        .expect("store two");
    let now = agent::runtime::now_ms();
    let silence = |id: &str, rule: &str| Silence {
        id: id.into(),
        matcher: agent::config::Matcher {
            rule: vec![rule.into()],
            ..Default::default()
        },
        starts_at_ms: now,
        ends_at_ms: now + 3_600_000,
        created_by: "alice".into(),
        comment: "maintenance".into(),
    };
    assert!(two.silences().await.expect("none yet").is_empty());
    one.add_silence(&silence("s1", "cis-4.1"), now)
        .await
        .expect("add");
    // Both replicas add at once: neither change is lost.
    let (s2, s3) = (silence("s2", "cis-4.2"), silence("s3", "cis-4.3"));
    let (x, y) = tokio::join!(one.add_silence(&s2, now), two.add_silence(&s3, now));
    x.expect("add s2");
    y.expect("add s3");
    let mut ids: Vec<String> = two
        .silences()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    assert!(
        one.add_silence(&silence("s1", "x"), now).await.is_err(),
        "id taken"
    );
    assert_eq!(
        two.expire_silence("nope", now).await.expect("expire"),
        Expired::NotFound
    );
    assert!(matches!(
        two.expire_silence("s1", now + 1).await.expect("expire"),
        Expired::Ended(_)
    ));
    let seen = one.silences().await.expect("list");
    let s1 = seen.iter().find(|s| s.id == "s1").expect("still stored");
    assert_eq!(s1.status(now + 1), Status::Expired);

    // `agent silence` with `store = "dynamodb"`: the replicas see what it adds.
    let (a, b) = (
        Receiver::start().await.expect("receiver"),
        Receiver::start().await.expect("receiver"),
    );
    let dir = temp_dir("silence-dynamodb");
    let config = write_config(&dir, &a, &b, "1s", "1m");
    let text = std::fs::read_to_string(&config).expect("config");
    let db_line = format!("path = \"{}\"", dir.join("agent.db").display());
    let text = text.replace(
        &db_line,
        &format!("store = \"dynamodb\"\ntable = \"{TABLE}\""),
    );
    std::fs::write(&config, text).expect("write config");
    let (code, doc, err) = agent_cli(
        &emu,
        &config,
        &[
            "silence",
            "add",
            "--match",
            "severity=low",
            "--for",
            "30m",
            "--comment",
            "noisy",
        ],
    );
    assert_eq!(code, 0, "{doc:#}\n{err}");
    let id = doc["silence"]["id"].as_str().expect("id").to_string();
    assert!(
        one.silences()
            .await
            .expect("list")
            .iter()
            .any(|s| s.id == id)
    );
    let (code, doc, err) = agent_cli(&emu, &config, &["silence", "list"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        doc["silences"].as_array().map(Vec::len),
        Some(3),
        "s2, s3 and the new one: {doc:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
