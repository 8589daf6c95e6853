//! `hub watch` against an emulated organisation: events emitted where AWS emits them (the
//! emulator emits no CloudTrail events, so the tests put them with PutEvents, in AWS's
//! shape, on the bus and in the account and region AWS would), and what the watch makes of
//! them, read back through the SDK, the JSON logs and `/metrics`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orgwatch_tests::watch::*;
use orgwatch_tests::{Emulator, Org, bin};
use serde_json::Value;
use shared::aws::ClientFactory;

use super::hub::{count_member_resources, hub};

const BUCKET: &str = "acme-orgwatch-cloudtrail";

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("orgwatch-e2e-watch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("hub.toml");
    let text = format!(
        r#"[hub]
regions = ["us-east-1", "eu-west-1"]
[trail]
bucket = "{BUCKET}"
[monitoring]
pack = ["cis", "root-activity", "orgwatch-tamper"]
[watch]
max_receive_count = 3
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// An agent on the alerts queue printing its notifications (stdout sink) into a file;
/// killed when dropped.
struct AgentProcess {
    child: Child,
    out: PathBuf,
}

impl AgentProcess {
    fn start(emu: &Emulator, dir: &Path) -> AgentProcess {
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"[source]
queue = "orgwatch-alerts"
long_poll = "1s"
[dedupe]
window = "15m"
path = "{db}"
[group]
by = ["rule"]
wait = "2s"
interval = "2s"
[enrich]
enabled = false
[[sink]]
name = "console"
type = "stdout"
[[route]]
match = {{}}
sinks = ["console"]
[server]
listen = "127.0.0.1:0"
"#,
                db = dir.join("agent.db").display()
            ),
        )
        .expect("agent config");
        let out = dir.join("notifications.jsonl");
        let child = Command::new(bin("agent"))
            .args(["--config", &config.display().to_string(), "run"])
            .envs(emu.env())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("notifications file"))
            .stderr(std::fs::File::create(dir.join("agent.log")).expect("agent log"))
            .spawn()
            .expect("start agent");
        AgentProcess { child, out }
    }

    /// The alerts of every notification so far.
    fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Converged `hub watch` work items for `account` with `action`, from the JSON logs.
fn converged(w: &Watcher, account: &str, action: &str) -> usize {
    w.lines("converged")
        .iter()
        .filter(|v| v["fields"]["account"] == account && v["fields"]["action"] == action)
        .count()
}

async fn enrolled_org(members: usize) -> (Emulator, Org, ClientFactory, PathBuf, PathBuf) {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(members).await.expect("organisation");
    let f = emu.factory().await.expect("factory");
    let dir = temp_dir(&format!("{}", org.members.len()));
    let config = write_config(&dir);
    let first = hub(&emu, &config, &["enroll"]);
    assert_eq!(first.code, 0, "{:#}\n{}", first.json, first.stderr);
    (emu, org, f, dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_enrolls_new_accounts_repairs_tampering_and_forgets_leavers() {
    let (emu, org, f, dir, config) = enrolled_org(2).await;
    let mgmt = org.management.clone();
    let mut w = Watcher::start(&emu, &config, &dir.join("watch.log"), &[]);
    let agent = AgentProcess::start(&emu, &dir);
    assert!(
        wait_for(Duration::from_secs(90), async || !w
            .lines("resync done")
            .is_empty())
        .await,
        "no resync at start:\n{}",
        w.log()
    );

    // 1. A vended account: the StackSet deploys the member stack into it (automatic
    // deployment), Organizations reports CreateAccountResult; no hub enroll is run.
    let created = f
        .home()
        .organizations()
        .create_account()
        .account_name("vended")
        .email("vended@example.com")
        .send()
        .await
        .expect("create account");
    let new = created
        .create_account_status
        .and_then(|s| s.account_id)
        .expect("account id");
    orgwatch_tests::deploy_member_stack(emu.url(), &mgmt, &mgmt, std::slice::from_ref(&new))
        .expect("member stack");
    let started = Instant::now();
    put_records(
        &f.home().in_region("us-east-1"),
        &[create_account_result(&mgmt, &new)],
    )
    .await;
    let ok = wait_for(Duration::from_secs(60), async || {
        hub(&emu, &config, &["status", "--account", &new]).code == 0
    })
    .await;
    assert!(
        ok,
        "the new account was not enrolled within 60 s:\n{}",
        w.log()
    );
    eprintln!("new account enrolled in {:?}", started.elapsed());
    assert_eq!(converged(&w, &new, "enroll"), 1, "{}", w.log());

    // 2. Tampering in a member: an alarm and a metric filter deleted, the calls emitted on
    // that member's default bus in that region. The watch repairs both. (us-east-1: the
    // agent here reads the home region's alerts queue only; reading every region's is
    // issue 15.)
    let victim = org.members[0].clone();
    tamper(&f, &victim, "us-east-1").await;
    put_records(
        &member(&f, &victim, "us-east-1").await,
        &[
            delete_alarm_call(&victim, "us-east-1", 1),
            delete_filter_call(&victim, "us-east-1", 2),
        ],
    )
    .await;
    let ok = wait_for(Duration::from_secs(60), async || {
        has_alarm_and_filter(&f, &victim, "us-east-1").await == (true, true)
    })
    .await;
    assert!(ok, "tampering not repaired within 60 s:\n{}", w.log());
    let repaired: Vec<String> = w
        .lines("repaired")
        .iter()
        .filter(|v| v["fields"]["account"] == victim.as_str())
        .map(|v| format!("{} {}", v["fields"]["kind"], v["fields"]["name"]))
        .collect();
    assert!(
        repaired
            .iter()
            .any(|r| r.contains("alarm") && r.contains("orgwatch-cis-4.3"))
            && repaired
                .iter()
                .any(|r| r.contains("metric-filter") && r.contains("orgwatch-cis-4.3")),
        "{repaired:?}"
    );
    let reported = w.lines("tampering reported");
    assert!(
        reported.iter().any(|v| v["fields"]["principal"]
            .as_str()
            .is_some_and(|p| p.ends_with(MALLORY))
            && v["fields"]["call"] == "monitoring:DeleteAlarms"),
        "{reported:?}"
    );

    // The same events reached the alerts queue: the agent reports the tampering once,
    // naming the account, the principal and the call.
    let tamper_alerts = || {
        agent
            .alerts()
            .into_iter()
            .filter(|a| a["rule_id"] == "orgwatch-tamper" && a["account"] == victim.as_str())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(Duration::from_secs(30), async || !tamper_alerts()
            .is_empty())
        .await,
        "no orgwatch-tamper notification: {:?}",
        agent.alerts()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = tamper_alerts();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0]["actor"]["principal"]
            .as_str()
            .is_some_and(|p| p.ends_with(MALLORY)),
        "{got:#?}"
    );
    assert!(
        ["DeleteAlarms", "DeleteMetricFilter"]
            .contains(&got[0]["actor"]["event_name"].as_str().unwrap_or_default()),
        "{got:#?}"
    );
    assert_eq!(got[0]["severity"], "critical");

    // 2b. A role swapped on a forwarding target that still points at the central bus: one
    // ListRuleNamesByTarget cannot tell, so a PutTargets call makes the repair read every
    // target, and the role is put back.
    let rule = shared::naming::forward_rule_name("root-activity");
    let vc = member(&f, &victim, "us-east-1").await;
    let target = orgwatch_tests::first_target(&vc, &rule)
        .await
        .expect("a forwarding target");
    let ours = target.role_arn().map(str::to_string);
    let swapped = format!("arn:aws:iam::{victim}:role/someone-elses");
    orgwatch_tests::swap_target_role(&vc, &rule, &target, &swapped).await;
    put_records(
        &vc,
        &[tamper_call(
            &victim,
            "us-east-1",
            "events.amazonaws.com",
            "PutTargets",
            serde_json::json!({"rule": rule, "targets": [{"id": target.id(), "arn": target.arn(), "roleArn": swapped}]}),
            3,
        )],
    )
    .await;
    let ok = wait_for(Duration::from_secs(60), async || {
        orgwatch_tests::first_target(&vc, &rule)
            .await
            .and_then(|t| t.role_arn().map(str::to_string))
            == ours
    })
    .await;
    assert!(
        ok,
        "the swapped role was not put back within 60 s:\n{}",
        w.log()
    );

    // 3. A burst: 50 tamper events about one account within 5 s are one reconcile.
    let burst = org.members[1].clone();
    let before = converged(&w, &burst, "reconcile");
    let records: Vec<Value> = (0..50)
        .map(|n| delete_alarm_call(&burst, "us-east-1", 100 + n))
        .collect();
    let t = Instant::now();
    put_records(&member(&f, &burst, "us-east-1").await, &records).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    let ok = wait_for(Duration::from_secs(60), async || {
        converged(&w, &burst, "reconcile") > before
    })
    .await;
    assert!(ok, "{}", w.log());
    // Anything still in flight would have arrived by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        converged(&w, &burst, "reconcile") - before,
        1,
        "50 events, one reconcile:\n{}",
        w.log()
    );
    let events = w
        .lines("converged")
        .iter()
        .filter(|v| v["fields"]["account"] == burst.as_str())
        .map(|v| v["fields"]["events"].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(events, 50, "{}", w.log());
    let m = w.metrics();
    assert!(
        metric(
            &m,
            "orgwatch_watch_events_total{decision=\"act\",trigger=\"tampered\"}"
        ) >= 52.0,
        "{m}"
    );

    // 4. An account leaves: its orgwatch resources are removed (its role still answers),
    // and later events about it reconcile nothing.
    let leaver = org.members[1].clone();
    assert!(count_member_resources(&f, &leaver, "us-east-1").await.1 > 0);
    f.home()
        .organizations()
        .remove_account_from_organization()
        .account_id(&leaver)
        .send()
        .await
        .expect("remove account");
    put_records(
        &f.home().in_region("us-east-1"),
        &[organizations_call(
            &mgmt,
            "RemoveAccountFromOrganization",
            &leaver,
        )],
    )
    .await;
    let ok = wait_for(Duration::from_secs(60), async || {
        converged(&w, &leaver, "offboard") > 0
    })
    .await;
    assert!(ok, "the leaver was not offboarded:\n{}", w.log());
    assert_eq!(converged(&w, &leaver, "offboard"), 1, "{}", w.log());
    for region in ["us-east-1", "eu-west-1"] {
        assert_eq!(
            count_member_resources(&f, &leaver, region).await,
            (0, 0, 0),
            "{region}"
        );
    }
    // Its forward rules went with the rest, so nothing more arrives about it; and a call
    // recorded there now reconciles nothing.
    let reconciles = converged(&w, &leaver, "reconcile");
    put_records(
        &member(&f, &leaver, "us-east-1").await,
        &[delete_alarm_call(&leaver, "us-east-1", 999)],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        converged(&w, &leaver, "reconcile"),
        reconciles,
        "{}",
        w.log()
    );
    assert_eq!(count_member_resources(&f, &leaver, "us-east-1").await.1, 0);

    // SIGTERM drains and exits 0.
    assert_eq!(w.terminate(), Some(0), "{}", w.log());
    assert!(!w.lines("stopped").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_acts_and_a_killed_ones_events_come_back_to_the_other() {
    let (emu, org, f, dir, config) = enrolled_org(1).await;
    let victim = org.members[0].clone();
    let mut first = Watcher::start(&emu, &config, &dir.join("first.log"), &[]);
    assert!(
        wait_for(Duration::from_secs(90), async || !first
            .lines("resync done")
            .is_empty())
        .await,
        "{}",
        first.log()
    );
    let mut second = Watcher::start(
        &emu,
        &config,
        &dir.join("second.log"),
        &["--no-initial-resync"],
    );
    assert!(
        wait_for(Duration::from_secs(30), async || !second
            .lines("lease held by another replica: waiting")
            .is_empty())
        .await,
        "{}",
        second.log()
    );
    assert_eq!(metric(&first.metrics(), "orgwatch_watch_lease_held "), 1.0);
    assert_eq!(metric(&second.metrics(), "orgwatch_watch_lease_held "), 0.0);

    // Every alarm of a region deleted: a reconcile long enough (CloudWatch's 3 TPS for
    // PutMetricAlarm) to be killed in the middle of.
    let c = member(&f, &victim, "us-east-1").await;
    let names: Vec<String> = c
        .cloudwatch()
        .describe_alarms()
        .send()
        .await
        .expect("alarms")
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_string))
        .collect();
    assert!(names.len() > 10, "{names:?}");
    c.cloudwatch()
        .delete_alarms()
        .set_alarm_names(Some(names.clone()))
        .send()
        .await
        .expect("delete alarms");
    put_records(&c, &[delete_alarm_call(&victim, "us-east-1", 7)]).await;
    assert!(
        wait_for(Duration::from_secs(30), async || !first
            .lines("tampering reported")
            .is_empty())
        .await,
        "{}",
        first.log()
    );
    first.kill();
    let killed = Instant::now();
    assert!(
        first.lines("converged").is_empty(),
        "the reconcile finished before the kill:\n{}",
        first.log()
    );

    // The other replica takes the lease once it expires, and the event comes back when
    // its visibility timeout ends.
    assert!(
        wait_for(Duration::from_secs(30), async || !second
            .lines("lease taken: this replica acts")
            .is_empty())
        .await,
        "{}",
        second.log()
    );
    eprintln!("lease taken over {:?} after the kill", killed.elapsed());
    assert!(killed.elapsed() < Duration::from_secs(6 + 2 + 5));
    // The redelivered event is the other replica's to reconcile (whatever the killed one
    // had repaired before it died).
    let ok = wait_for(Duration::from_secs(60), async || {
        converged(&second, &victim, "reconcile") >= 1
    })
    .await;
    assert!(ok, "the event did not come back:\n{}", second.log());
    let ok = wait_for(Duration::from_secs(10), async || {
        let now = c
            .cloudwatch()
            .describe_alarms()
            .send()
            .await
            .map(|o| o.metric_alarms().len())
            .unwrap_or(0);
        now == names.len()
    })
    .await;
    assert!(ok, "not converged after the takeover:\n{}", second.log());
    assert_eq!(
        hub(&emu, &config, &["status", "--account", &victim]).code,
        0
    );
    assert_eq!(second.terminate(), Some(0), "{}", second.log());
}

/// The guardrail SCP as a resource: planned, created and attached to the root, reported by
/// status when it drifts, repaired, and removed by offboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardrail_scp_is_planned_attached_checked_and_removed() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(1).await.expect("organisation");
    let f = emu.factory().await.expect("factory");
    let orgs = f.home().organizations();
    let root = orgs.list_roots().send().await.expect("roots").roots()[0]
        .id()
        .expect("root id")
        .to_string();
    // AttachPolicy needs SCPs enabled on the root (PolicyTypeNotEnabledException); the
    // emulator does not check, the organisation's owner turns them on.
    orgs.enable_policy_type()
        .root_id(&root)
        .policy_type(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("enable SCPs");
    let dir = temp_dir("guardrail");
    let config = write_config(&dir);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}[guardrail]\nscp = true\n")).expect("config");

    let plan = hub(&emu, &config, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let planned: Vec<String> = super::hub::changes(&plan)
        .into_iter()
        .filter(|c| c.contains(" scp "))
        .collect();
    assert_eq!(
        planned,
        vec![format!(
            "{} us-east-1 scp orgwatch-guardrail create",
            org.management
        )]
    );
    let enroll = hub(&emu, &config, &["enroll"]);
    assert_eq!(enroll.code, 0, "{:#}\n{}", enroll.json, enroll.stderr);

    let id = orgs
        .list_policies()
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("policies")
        .policies()
        .iter()
        .find(|p| p.name() == Some("orgwatch-guardrail"))
        .and_then(|p| p.id())
        .expect("the SCP")
        .to_string();
    let content = orgs
        .describe_policy()
        .policy_id(&id)
        .send()
        .await
        .expect("describe")
        .policy()
        .and_then(|p| p.content())
        .expect("content")
        .to_string();
    assert!(content.len() <= 5120, "{}", content.len());
    let doc: Value = serde_json::from_str(&content).expect("JSON");
    assert!(doc["Statement"].as_array().is_some_and(|s| {
        s.iter()
            .all(|s| s["Effect"] == "Deny" && s.get("Principal").is_none())
    }));
    let targets = |orgs: aws_sdk_organizations::Client, id: String| async move {
        orgs.list_targets_for_policy()
            .policy_id(id)
            .send()
            .await
            .expect("targets")
            .targets()
            .iter()
            .filter_map(|t| t.target_id().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(targets(orgs.clone(), id.clone()).await, vec![root.clone()]);
    assert_eq!(hub(&emu, &config, &["status"]).code, 0);

    // Someone detaches it: status says so, enroll attaches it again.
    orgs.detach_policy()
        .policy_id(&id)
        .target_id(&root)
        .send()
        .await
        .expect("detach");
    let status = hub(&emu, &config, &["status"]);
    assert_eq!(status.code, 3, "{:#}", status.json);
    assert!(
        super::hub::changes(&status)
            .iter()
            .any(|c| c.contains("scp orgwatch-guardrail update targets")),
        "{:?}",
        super::hub::changes(&status)
    );
    assert_eq!(hub(&emu, &config, &["enroll"]).code, 0);
    assert_eq!(targets(orgs.clone(), id.clone()).await, vec![root.clone()]);

    // Offboarding detaches and deletes it.
    let off = hub(&emu, &config, &["offboard", "--yes"]);
    assert_eq!(off.code, 0, "{:#}\n{}", off.json, off.stderr);
    let left = orgs
        .list_policies()
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("policies");
    assert!(
        left.policies()
            .iter()
            .all(|p| p.name() != Some("orgwatch-guardrail"))
    );
}
