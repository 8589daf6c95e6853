//! `hub rules ...` and `hub replay`: the real binary on real files, and `replay` over the
//! central bucket in the emulator (listing, date pruning, GetObject, gzip), checked against
//! the same files replayed from a local directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, bin};
use serde_json::{Value, json};
use shared::pattern::Pattern;
use shared::rules::{Pack, envelope};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `hub` in `dir` (so no stray hub.toml is picked up) with `env`, feeding `stdin`.
fn hub_in(dir: &Path, args: &[&str], env: &[(&'static str, String)], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(bin("hub"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("ORGWATCH_HUB_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hub");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for hub");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn hub(dir: &Path, args: &[&str]) -> Run {
    hub_in(dir, args, &[], None)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("orgwatch-e2e-rules-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// A fixture record of the built-in pack.
fn fixture(rule: &str, name_part: &str) -> Value {
    let pack = Pack::builtin().expect("built-in pack");
    let rule = pack.get(rule).expect("rule");
    rule.fixtures
        .iter()
        .find(|f| f.name.contains(name_part))
        .unwrap_or_else(|| panic!("{}: no fixture like {name_part:?}", rule.id))
        .event
        .clone()
}

fn lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

// ---------------------------------------------------------------------------------------
// rules test

#[test]
fn rules_test_reads_json_lines_cloudtrail_files_and_stdin() {
    let dir = TempDir::new("test");
    let root_login = fixture("cis-4.3", "root console sign-in");
    let quiet = fixture("cis-4.14", "VPCs described");
    let org_change = envelope(&fixture("cis-4.15", "SCP detached"));
    let refused = fixture("cis-4.1", "EC2 DescribeInstances refused");
    let head_bucket = fixture("cis-4.1", "HeadBucket");
    let events = lines(&[root_login, quiet, org_change]);
    std::fs::write(dir.0.join("events.jsonl"), &events).expect("write");
    // Gzip is detected from the bytes, not the name.
    let trail = json!({"Records": [refused, head_bucket]}).to_string();
    std::fs::write(dir.0.join("trail.log"), gzip(trail.as_bytes())).expect("write");

    let all = hub(
        &dir.0,
        &[
            "rules",
            "test",
            "--output",
            "json",
            "events.jsonl",
            "trail.log",
        ],
    );
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert_eq!(
        all.stdout.trim(),
        r#"{"schema_version":1,"total":5,"matches":[{"index":0,"rule":"root-activity"},{"index":0,"rule":"cis-4.3"},{"index":2,"rule":"cis-4.15"},{"index":3,"rule":"cis-4.1"}]}"#
    );

    let one = hub(
        &dir.0,
        &[
            "rules",
            "test",
            "--rule",
            "cis-4.1",
            "--output",
            "json",
            "events.jsonl",
            "trail.log",
        ],
    );
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(
        one.json(),
        json!({"schema_version": 1, "total": 5, "matches": [{"index": 3, "rule": "cis-4.1"}]})
    );

    // An ad-hoc pattern sees events as they are (the envelope is not unwrapped).
    let adhoc = hub(
        &dir.0,
        &[
            "rules",
            "test",
            "--pattern",
            r#"{ $.eventName = "HeadBucket" || $.detail.eventName = "DetachPolicy" }"#,
            "--output",
            "json",
            "events.jsonl",
            "trail.log",
        ],
    );
    assert_eq!(adhoc.code, 0, "{}", adhoc.stderr);
    assert_eq!(
        adhoc.json(),
        json!({"schema_version": 1, "total": 5, "matches": [{"index": 2, "rule": "pattern"}, {"index": 4, "rule": "pattern"}]})
    );

    // stdin, and the table.
    let piped = hub_in(&dir.0, &["rules", "test"], &[], Some(events.as_bytes()));
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    let table: Vec<&str> = piped.stdout.lines().collect();
    assert!(table[0].starts_with("EVENT  RULE"), "{}", piped.stdout);
    assert!(table[1].contains("root-activity") && table[1].contains("<stdin>:1"));
    assert!(table[3].contains("cis-4.15") && table[3].contains("<stdin>:3"));
    assert_eq!(table.last(), Some(&"3 events read, 3 matches"));
}

#[test]
fn rules_test_exit_codes() {
    let dir = TempDir::new("codes");
    let bad = "{ $.eventName = HeadBucket && }";
    let column = Pattern::parse(bad).expect_err("bad pattern").column();
    let run = hub(&dir.0, &["rules", "test", "--pattern", bad]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("invalid pattern (column {column})")),
        "{}",
        run.stderr
    );
    let caret = format!("{}^", " ".repeat(column - 1));
    assert!(
        run.stderr.lines().any(|l| l == caret),
        "no caret under column {column}:\n{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let unknown = hub(&dir.0, &["rules", "test", "--rule", "cis-9.9"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);

    let good = lines(&[fixture("cis-4.3", "root console sign-in")]);
    std::fs::write(
        dir.0.join("bad.jsonl"),
        format!("{good}{{\"eventName\": oops}}\n"),
    )
    .expect("write");
    let unreadable = hub(&dir.0, &["rules", "test", "--output", "json", "bad.jsonl"]);
    assert_eq!(unreadable.code, 1, "{}", unreadable.stderr);
    assert!(
        unreadable
            .stderr
            .contains("bad.jsonl:2: invalid JSON at column"),
        "{}",
        unreadable.stderr
    );
    // What was read before the fault is still reported.
    assert_eq!(unreadable.json()["total"], 1);

    let missing = hub(&dir.0, &["rules", "test", "nope.json"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("nope.json: cannot read"),
        "{}",
        missing.stderr
    );
}

// ---------------------------------------------------------------------------------------
// rules list / show / verify

#[test]
fn rules_list_show_and_verify() {
    let dir = TempDir::new("verify");
    let list = hub(&dir.0, &["rules", "list", "--output", "json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let doc = list.json();
    assert_eq!(doc["schema_version"], 1);
    let ids: Vec<&str> = doc["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 17);
    assert_eq!(ids[0], "root-activity");
    assert!(ids.contains(&"cis-4.15") && ids.contains(&"orgwatch-tamper"));
    assert!(ids.iter().all(|id| !id.starts_with("seed-")), "{ids:?}");
    assert_eq!(doc["rules"][0]["covers"], json!(["cis-4.3"]));
    assert_eq!(doc["rules"][0]["packs"], json!(["seed", "all"]));

    // The seed pack: the recipe's nine alarms, its own two rules included.
    let seed_config = dir.0.join("seed.toml");
    std::fs::write(&seed_config, "[monitoring]\npack = [\"seed\"]\n").expect("write config");
    let seed_config = seed_config.to_string_lossy().to_string();
    let seed = hub(
        &dir.0,
        &[
            "rules",
            "list",
            "--config",
            &seed_config,
            "--output",
            "json",
        ],
    );
    assert_eq!(seed.code, 0, "{}", seed.stderr);
    let seed_ids: Vec<String> = seed.json()["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        seed_ids,
        [
            "root-activity",
            "cis-4.2",
            "cis-4.4",
            "cis-4.7",
            "cis-4.10",
            "cis-4.11",
            "cis-4.13",
            "seed-api-without-mfa",
            "seed-kms-decrypt-failures"
        ]
    );
    let table = hub(&dir.0, &["rules", "list", "--config", &seed_config]);
    assert!(
        table
            .stdout
            .lines()
            .next()
            .is_some_and(|h| h.contains("PACKS"))
    );
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("seed-api-without-mfa ") && l.contains(" seed ")),
        "{}",
        table.stdout
    );
    let seed_verify = hub(&dir.0, &["rules", "verify", "--config", &seed_config]);
    assert_eq!(seed_verify.code, 0, "{}", seed_verify.stdout);
    assert!(
        seed_verify.stdout.starts_with("9 rules, "),
        "{}",
        seed_verify.stdout
    );

    let root = hub(&dir.0, &["rules", "show", "root-activity"]);
    assert_eq!(root.code, 0, "{}", root.stderr);
    assert!(
        root.stdout
            .lines()
            .any(|l| l.starts_with("covers:") && l.ends_with(" cis-4.3")),
        "{}",
        root.stdout
    );

    let show = hub(&dir.0, &["rules", "show", "cis-4.13"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("$.eventSource = ec2.amazonaws.com"));
    assert!(show.stdout.contains("CloudWatch.13"));
    assert_eq!(hub(&dir.0, &["rules", "show", "nope"]).code, 2);

    let verify = hub(&dir.0, &["rules", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.starts_with("17 rules, "), "{}", verify.stdout);
    assert!(
        verify.stdout.trim_end().ends_with("all pass"),
        "{}",
        verify.stdout
    );

    // A configuration with a user rule whose fixture is wrong: listed, and verify fails.
    let config = dir.0.join("custom.toml");
    std::fs::write(
        &config,
        r#"[monitoring]
pack = ["root-activity"]

[[rule]]
id = "iam-user-created"
title = "IAM user created"
severity = "medium"
pattern = '{ ($.eventSource = iam.amazonaws.com) && ($.eventName = CreateUser) }'
metric_name = "IAMUserCreated"

[[rule.fixture]]
name = "deleted"
matches = true
event = '{"eventSource": "iam.amazonaws.com", "eventName": "DeleteUser"}'
"#,
    )
    .expect("write config");
    let custom = config.to_string_lossy().to_string();
    let list = hub(&dir.0, &["rules", "list", "--config", &custom]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    let failing = hub(&dir.0, &["rules", "verify", "--config", &custom]);
    assert_eq!(failing.code, 1, "{}", failing.stdout);
    assert!(
        failing.stdout.contains(&format!(
            "FAIL {custom}:14:10: rule \"iam-user-created\": fixture \"deleted\" should match but does not (trail delivery)"
        )),
        "{}",
        failing.stdout
    );

    // A bad pattern in the configuration: exit 2, located in the file.
    std::fs::write(&config, "[[rule]]\nid = \"x\"\ntitle = \"t\"\nseverity = \"low\"\npattern = '{ $.a = }'\nmetric_name = \"X\"\n")
        .expect("write config");
    let bad = hub(&dir.0, &["rules", "list", "--config", &custom]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains(&format!("{custom}:5:"))
            && bad.stderr.contains("rule \"x\": invalid pattern"),
        "{}",
        bad.stderr
    );
    // An explicit --config that does not exist is an error, not the built-in pack.
    assert_eq!(
        hub(&dir.0, &["rules", "list", "--config", "missing.toml"]).code,
        2
    );
}

// ---------------------------------------------------------------------------------------
// replay

const ORG: &str = "o-test123456";
const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const DAYS: [u32; 3] = [13, 14, 15];

/// One archived log file: a root console sign-in, a refused EC2 call and a quiet event,
/// stamped with the file's account, region and day.
fn log_file(account: &str, region: &str, month: u32, day: u32) -> Vec<u8> {
    let hour = if region == "us-east-1" { 8 } else { 17 };
    let stamp = |mut v: Value, n: u32| {
        v["recipientAccountId"] = json!(account);
        v["awsRegion"] = json!(region);
        v["eventTime"] = json!(format!("2024-{month:02}-{day:02}T{hour:02}:{n:02}:00Z"));
        v["eventID"] = json!(format!("evt-{account}-{region}-{day}-{n}"));
        v
    };
    let records = vec![
        stamp(fixture("cis-4.3", "root console sign-in"), 1),
        stamp(fixture("cis-4.1", "EC2 DescribeInstances refused"), 2),
        stamp(fixture("cis-4.14", "VPCs described"), 3),
    ];
    gzip(json!({"Records": records}).to_string().as_bytes())
}

fn key(account: &str, region: &str, month: u32, day: u32) -> String {
    format!(
        "AWSLogs/{ORG}/{account}/CloudTrail/{region}/2024/{month:02}/{day:02}/{account}_CloudTrail_{region}_2024{month:02}{day:02}T0000Z_abcdef{day}.json.gz"
    )
}

/// Every archive file: 2 accounts x 2 regions x 3 days in May, one in June, one digest.
fn archive() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            for day in DAYS {
                out.push((
                    key(account, region, 5, day),
                    log_file(account, region, 5, day),
                ));
            }
        }
    }
    out.push((
        key(ACCOUNTS[0], REGIONS[0], 6, 1),
        log_file(ACCOUNTS[0], REGIONS[0], 6, 1),
    ));
    out.push((
        format!(
            "AWSLogs/{ORG}/{}/CloudTrail-Digest/us-east-1/2024/05/14/digest.json.gz",
            ACCOUNTS[0]
        ),
        gzip(b"{\"digestStartTime\": \"2024-05-14T00:00:00Z\"}"),
    ));
    out
}

fn findings(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {} {}",
                f["rule"].as_str().unwrap_or(""),
                f["account"].as_str().unwrap_or(""),
                f["count"],
                f["first_seen"].as_str().unwrap_or(""),
                f["last_seen"].as_str().unwrap_or(""),
                f["sample_event_id"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

fn expected_may_14_15() -> Vec<String> {
    let mut want = Vec::new();
    for rule in ["root-activity", "cis-4.1", "cis-4.3"] {
        let n = if rule == "cis-4.1" { 2 } else { 1 };
        for account in ACCOUNTS {
            want.push(format!(
                "{rule} {account} 4 2024-05-14T08:0{n}:00Z 2024-05-15T17:0{n}:00Z evt-{account}-us-east-1-14-{n}"
            ));
        }
    }
    want
}

#[tokio::test]
async fn replay_over_the_central_bucket_and_a_local_copy_agree() {
    let emu = Emulator::start().expect("emulator");
    let factory = emu.factory().await.expect("factory");
    let s3 = factory.home().s3();
    let bucket = "orgwatch-archive-e2e";
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
    let files = archive();
    for (key, body) in &files {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.clone().into())
            .send()
            .await
            .expect("put object");
    }
    s3.put_object()
        .bucket(bucket)
        .key("AWSLogs/o-broken/111122223333/CloudTrail/us-east-1/2024/05/14/broken.json.gz")
        .body(b"{\"Records\": [".to_vec().into())
        .send()
        .await
        .expect("put broken");

    let dir = TempDir::new("replay");
    let env = emu.env();
    let target = format!("s3://{bucket}/AWSLogs/{ORG}");

    // Two days: 2 accounts x 2 regions x 2 days; the 13th, June and the digest are pruned.
    let ranged = hub_in(
        &dir.0,
        &[
            "replay",
            &target,
            "--since",
            "2024-05-14",
            "--until",
            "2024-05-15",
            "--output",
            "json",
        ],
        &env,
        None,
    );
    assert_eq!(ranged.code, 0, "{}", ranged.stderr);
    let doc = ranged.json();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["files"], 8);
    assert_eq!(doc["events"], 24);
    assert_eq!(doc["errors"], json!([]));
    assert_eq!(findings(&doc), expected_may_14_15());

    // Everything: 13 log files (the digest is skipped), 39 events.
    let whole = hub_in(
        &dir.0,
        &[
            "replay",
            &format!("s3://{bucket}/AWSLogs/{ORG}/"),
            "--output",
            "json",
        ],
        &env,
        None,
    );
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let doc = whole.json();
    assert_eq!(doc["files"], 13);
    assert_eq!(doc["events"], 39);
    let root: Vec<String> = findings(&doc)
        .into_iter()
        .filter(|f| f.starts_with("root-activity 111122223333 "))
        .collect();
    assert_eq!(
        root,
        vec![format!(
            "root-activity 111122223333 7 2024-05-13T08:01:00Z 2024-06-01T08:01:00Z evt-111122223333-us-east-1-13-1"
        )]
    );

    // The same files from a local directory give the same summary.
    let local = dir.0.join("archive");
    for (key, body) in &files {
        let path = local.join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write");
    }
    let local_run = hub(
        &dir.0,
        &[
            "replay",
            "archive",
            "--since",
            "2024-05-14",
            "--until",
            "2024-05-15",
            "--output",
            "json",
        ],
    );
    assert_eq!(local_run.code, 0, "{}", local_run.stderr);
    assert_eq!(findings(&local_run.json()), expected_may_14_15());
    assert_eq!(local_run.json()["files"], 8);

    // The table; without --until the range runs to today, so June is in.
    let table = hub_in(
        &dir.0,
        &["replay", &target, "--since", "2024-05-15"],
        &env,
        None,
    );
    assert_eq!(table.code, 0, "{}", table.stderr);
    let rows: Vec<&str> = table.stdout.lines().collect();
    assert!(rows[0].starts_with("RULE "), "{}", table.stdout);
    assert!(rows[0].contains("SAMPLE EVENT ID"));
    assert_eq!(
        rows.last(),
        Some(&"5 files, 15 events, 15 matches"),
        "{}",
        table.stdout
    );

    // An unreadable object: reported with its key, exit 1, the rest still summarised.
    let broken = hub_in(
        &dir.0,
        &[
            "replay",
            &format!("s3://{bucket}/AWSLogs/o-broken"),
            "--output",
            "json",
        ],
        &env,
        None,
    );
    assert_eq!(broken.code, 1, "{}", broken.stderr);
    assert!(
        broken.stderr.contains("broken.json.gz"),
        "{}",
        broken.stderr
    );
    assert_eq!(broken.json()["errors"].as_array().map(Vec::len), Some(1));

    // Bad dates are usage errors.
    assert_eq!(
        hub(&dir.0, &["replay", "archive", "--since", "2024-5-1"]).code,
        2
    );
    assert_eq!(
        hub(
            &dir.0,
            &[
                "replay",
                "archive",
                "--since",
                "2024-05-15",
                "--until",
                "2024-05-14"
            ]
        )
        .code,
        2
    );
}
