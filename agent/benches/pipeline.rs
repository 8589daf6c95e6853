//! decode -> classify -> dedupe -> group over generated messages, in process, one core.
//! Prints alerts/s and the memory per tracked fingerprint (targets: >= 50,000 alerts/s,
//! <= 256 B). `cargo bench -p orgwatch-agent --bench pipeline`.

use std::time::{Duration, Instant};

use agent::classify::{Classified, PackCatalog, classify};
use agent::config::GroupSpec;
use agent::decode::decode;
use agent::dedupe::{DedupeStore, MemoryStore};
use agent::fingerprint::incident_key;
use agent::group::Grouper;

fn message(i: usize) -> String {
    let account = format!("{:012}", 100_000_000_000u64 + (i % 5000) as u64);
    let rule = ["root-activity", "cis-4.3", "cis-4.1", "cis-4.4"][i % 4];
    let name = format!("orgwatch-{rule}");
    let alarm = serde_json::json!({
        "AlarmName": name, "AWSAccountId": account, "NewStateValue": "ALARM",
        "OldStateValue": "OK", "NewStateReason": "Threshold Crossed",
        "StateChangeTime": format!("2024-05-01T{:02}:{:02}:00.000+0000", (i / 60) % 24, i % 60),
        "Region": "US East (N. Virginia)",
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}"),
    });
    serde_json::json!({
        "Type": "Notification", "MessageId": format!("m-{i}"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orgwatch-alerts",
        "Message": alarm.to_string(), "Timestamp": "2024-05-01T12:00:01.000Z"
    })
    .to_string()
}

fn main() {
    let n = 200_000;
    let messages: Vec<String> = (0..n).map(message).collect();
    let catalog = match PackCatalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot load the pack: {e}");
            std::process::exit(1);
        }
    };
    let store = MemoryStore::default();
    let mut grouper: Grouper<usize> = Grouper::new(GroupSpec::default(), Duration::from_secs(900));
    let window = Duration::from_secs(900);
    let start = Instant::now();
    let mut alerts = 0usize;
    for (i, body) in messages.iter().enumerate() {
        let Ok(decoded) = decode(body) else { continue };
        let Classified::Alerts(list) = classify(&decoded, &catalog) else {
            continue;
        };
        for alert in list {
            alerts += 1;
            let key = incident_key(&alert);
            let Ok(inc) = store.remember(&key, alert.at_ms, alert.state, window, 0) else {
                continue;
            };
            if inc.new {
                grouper.add(0, alert, inc, i, start);
            }
        }
    }
    let notifications = grouper.due(start + Duration::from_secs(60));
    let secs = start.elapsed().as_secs_f64();
    println!(
        "pipeline: {alerts} alerts in {secs:.2}s on one core = {:.0} alerts/s ({} notifications)",
        alerts as f64 / secs,
        notifications.len()
    );
    println!(
        "dedupe memory: {} keys, {:.0} bytes per tracked fingerprint (in-memory store, approx.)",
        store.len(),
        store.approx_bytes() as f64 / store.len().max(1) as f64
    );
}
