//! `hub watch` as the tests and benches drive it: the process (JSON logs, `/metrics`), and
//! the CloudTrail records AWS would deliver to EventBridge, put on the bus AWS would put
//! them on (the emulator emits no CloudTrail events).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::{Value, json};
use shared::aws::{ClientFactory, Clients};

use crate::{Emulator, bin};

/// A `hub watch` process (JSON logs into a file); killed when dropped.
pub struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    pub fn start(emu: &Emulator, config: &Path, log: &Path, extra: &[&str]) -> Watcher {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("watch log");
        // Test defaults, each unless `extra` gives the flag itself.
        let defaults = [
            ("--listen", "127.0.0.1:0"),
            ("--coalesce", "5s"),
            ("--poll", "1s"),
            ("--lease-ttl", "6s"),
            ("--visibility", "15s"),
            ("--membership", "1h"),
        ];
        let mut args: Vec<&str> = vec!["watch"];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        let child = Command::new(bin("hub"))
            .args(["--log-format", "json", "--config"])
            .arg(config)
            .args(args)
            .args(extra)
            .envs(emu.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start hub watch");
        Watcher {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines with this message.
    pub fn lines(&self, message: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .collect()
    }

    pub fn metrics_addr(&self) -> Option<String> {
        self.lines("operations endpoint")
            .first()
            .and_then(|v| v["fields"]["listen"].as_str().map(str::to_string))
    }

    /// `/metrics`, or empty when it does not answer.
    pub fn metrics(&self) -> String {
        let Some(addr) = self.metrics_addr() else {
            return String::new();
        };
        http_get(&addr, "/metrics").unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The value of a metric line (`name{labels} value`, labels as written), summed over
/// lines that start with `prefix`.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

pub async fn wait_for(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    f().await
}

pub fn now_iso() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let t = shared::time::format_timestamp(ms);
    // CloudTrail's eventTime has whole seconds.
    format!("{}Z", &t[..19])
}

/// `CreateAccountResult` as CloudTrail delivers it to the management account's default
/// bus in us-east-1 (Organizations API reference, CreateAccount and CreateAccountStatus).
pub fn create_account_result(management: &str, account: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"accountId": management, "invokedBy": "AWS Internal"},
        "eventTime": now_iso(),
        "eventSource": "organizations.amazonaws.com",
        "eventName": "CreateAccountResult",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "requestParameters": null,
        "responseElements": null,
        "eventID": format!("c1a0{account}-0000-4000-8000-000000000000"),
        "readOnly": false,
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "recipientAccountId": management,
        "serviceEventDetails": {"createAccountStatus": {
            "id": format!("car-{account}"),
            "state": "SUCCEEDED",
            "accountName": "vended",
            "accountId": account,
        }},
        "eventCategory": "Management"
    })
}

/// An Organizations API call recorded in the management account.
pub fn organizations_call(management: &str, name: &str, account: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": format!("arn:aws:sts::{management}:assumed-role/Admin/alice"),
            "accountId": management
        },
        "eventTime": now_iso(),
        "eventSource": "organizations.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.10",
        "userAgent": "aws-cli/2.15.30",
        "requestParameters": {"accountId": account},
        "responseElements": null,
        "eventID": format!("0e9a{account}-0000-4000-8000-{:012}", name.len()),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": management,
        "eventCategory": "Management"
    })
}

pub const MALLORY: &str = "mallory";

/// A call on orgwatch's resources by someone other than the hub, as CloudTrail records it
/// in the member (`requestParameters` as the CloudWatch and CloudWatch Logs API references
/// name them).
pub fn tamper_call(
    account: &str,
    region: &str,
    source: &str,
    name: &str,
    params: Value,
    n: usize,
) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROAEXAMPLE:{MALLORY}"),
            "arn": format!("arn:aws:sts::{account}:assumed-role/OrganizationAccountAccessRole/{MALLORY}"),
            "accountId": account,
            "sessionContext": {"sessionIssuer": {
                "type": "Role",
                "arn": format!("arn:aws:iam::{account}:role/OrganizationAccountAccessRole"),
                "accountId": account,
                "userName": "OrganizationAccountAccessRole"
            }}
        },
        "eventTime": now_iso(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.66",
        "userAgent": "aws-cli/2.15.30",
        "requestParameters": params,
        "responseElements": null,
        "eventID": format!("7a3e{account}-0000-4000-8000-{n:012}"),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management"
    })
}

pub fn delete_alarm_call(account: &str, region: &str, n: usize) -> Value {
    tamper_call(
        account,
        region,
        "monitoring.amazonaws.com",
        "DeleteAlarms",
        json!({"alarmNames": ["orgwatch-cis-4.3"]}),
        n,
    )
}

pub fn delete_filter_call(account: &str, region: &str, n: usize) -> Value {
    tamper_call(
        account,
        region,
        "logs.amazonaws.com",
        "DeleteMetricFilter",
        json!({"logGroupName": "/orgwatch/cloudtrail", "filterName": "orgwatch-cis-4.3"}),
        n,
    )
}

/// PutEvents of CloudTrail records on `c`'s default bus, with the source and detail-type
/// CloudTrail gives them.
pub async fn put_records(c: &Clients, records: &[Value]) {
    for chunk in records.chunks(10) {
        let entries: Vec<PutEventsRequestEntry> = chunk
            .iter()
            .map(|r| {
                let service = r["eventSource"]
                    .as_str()
                    .and_then(|s| s.split('.').next())
                    .unwrap_or("aws");
                let detail_type = if r["eventType"] == "AwsServiceEvent" {
                    "AWS Service Event via CloudTrail"
                } else {
                    "AWS API Call via CloudTrail"
                };
                PutEventsRequestEntry::builder()
                    .source(format!("aws.{service}"))
                    .detail_type(detail_type)
                    .detail(r.to_string())
                    .build()
            })
            .collect();
        let out = c
            .eventbridge()
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .expect("PutEvents");
        assert_eq!(out.failed_entry_count(), 0, "{out:?}");
    }
}

pub async fn member(f: &ClientFactory, account: &str, region: &str) -> Clients {
    f.for_account(account)
        .await
        .expect("member clients")
        .in_region(region)
}

pub async fn has_alarm_and_filter(f: &ClientFactory, account: &str, region: &str) -> (bool, bool) {
    let c = member(f, account, region).await;
    let alarm = c
        .cloudwatch()
        .describe_alarms()
        .alarm_names("orgwatch-cis-4.3")
        .send()
        .await
        .map(|o| !o.metric_alarms().is_empty())
        .unwrap_or(false);
    let filter = c
        .logs()
        .describe_metric_filters()
        .log_group_name("/orgwatch/cloudtrail")
        .filter_name_prefix("orgwatch-cis-4.3")
        .send()
        .await
        .map(|o| {
            o.metric_filters()
                .iter()
                .any(|m| m.filter_name() == Some("orgwatch-cis-4.3"))
        })
        .unwrap_or(false);
    (alarm, filter)
}

pub async fn tamper(f: &ClientFactory, account: &str, region: &str) {
    let c = member(f, account, region).await;
    c.cloudwatch()
        .delete_alarms()
        .alarm_names("orgwatch-cis-4.3")
        .send()
        .await
        .expect("delete alarm");
    c.logs()
        .delete_metric_filter()
        .log_group_name("/orgwatch/cloudtrail")
        .filter_name("orgwatch-cis-4.3")
        .send()
        .await
        .expect("delete filter");
    assert_eq!(
        has_alarm_and_filter(f, account, region).await,
        (false, false)
    );
}
