//! README.md's configuration reference against the real configuration structs: every key
//! it documents exists, and every key the binaries accept is documented.
//!
//! The accepted keys come from the binaries themselves: a `__probe` key is put into each
//! table of an otherwise valid file, and the strict parser's error lists the keys that
//! table accepts (`unknown field `__probe`, expected one of ...`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use orgwatch_tests::{bin, workspace_root};

const HUB_TEMPLATE: &str = r#"{root}
[hub]
{hub}
regions = ["us-east-1"]
[trail]
{trail}
bucket = "probe-bucket"
[monitoring]
{monitoring}
[alerts]
{alerts}
[[rule]]
{rule}
id = "probe-1"
title = "probe"
severity = "low"
pattern = '{ $.eventName = "Probe" }'
metric_name = "Probe"
[[rule.fixture]]
{rule.fixture}
name = "probe"
matches = true
event = '{"eventName": "Probe"}'
"#;

const AGENT_TEMPLATE: &str = r#"{root}
[source]
{source}
queue = "probe"
[dedupe]
{dedupe}
[group]
{group}
[enrich]
{enrich}
[classify]
{classify}
[rules]
{rules}
[server]
{server}
[[sink]]
{sink}
name = "out"
type = "stdout"
[[route]]
{route}
sinks = ["out"]
match = { {route.match} }
[default_route]
{default_route}
sinks = ["out"]
"#;

/// The dotted keys of a README section's reference tables (rows starting `| `key` |`).
fn documented(section: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("## {section}"))
        .unwrap_or_else(|| panic!("README.md has no section `## {section}`"));
    let body = &readme[start + 3..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

/// The keys directly under `table` ("" = the root) among dotted `keys`.
fn children(keys: &BTreeSet<String>, table: &str) -> BTreeSet<String> {
    keys.iter()
        .filter_map(|k| {
            if table.is_empty() {
                Some(k.as_str())
            } else {
                k.strip_prefix(table).and_then(|r| r.strip_prefix('.'))
            }
        })
        .filter_map(|rest| rest.split('.').next())
        .map(str::to_string)
        .collect()
}

/// The keys `table` accepts, from the binary's error for a `__probe` key in it.
fn accepted(
    binary: &str,
    args: &[&str],
    template: &str,
    tables: &[&str],
    table: &str,
) -> BTreeSet<String> {
    let mut text = template.to_string();
    for t in tables {
        let fill = if *t == table { "__probe = 1" } else { "" };
        text = text.replace(&format!("{{{t}}}"), fill);
    }
    let dir = std::env::temp_dir().join(format!("orgwatch-e2e-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{binary}-{}.toml", table.replace('.', "-")));
    std::fs::write(&path, &text).expect("write probe");
    let out = Command::new(bin(binary))
        .arg("--config")
        .arg(&path)
        .args(args)
        // Never reach anything: a configuration error stops before any AWS call.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "probe")
        .env("AWS_SECRET_ACCESS_KEY", "probe")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stderr
        .lines()
        .find(|l| l.contains("unknown field `__probe`"))
        .unwrap_or_else(|| {
            panic!(
                "{binary}: no unknown-field error for [{table}] (exit {:?}):\n{text}\n{stderr}",
                out.status.code()
            )
        });
    assert_eq!(
        out.status.code(),
        Some(2),
        "{binary}: a bad key is a usage error"
    );
    let expected = line
        .split_once("unknown field `__probe`")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn check(section: &str, binary: &str, args: &[&str], template: &str, tables: &[&str]) {
    let keys = documented(section);
    assert!(
        !keys.is_empty(),
        "README.md `## {section}` documents no keys"
    );
    let mut problems = BTreeMap::new();
    for table in tables {
        let name = if *table == "root" { "" } else { table };
        let have = accepted(binary, args, template, tables, table);
        let documented = children(&keys, name);
        let missing: Vec<_> = have.difference(&documented).cloned().collect();
        let unknown: Vec<_> = documented.difference(&have).cloned().collect();
        if !missing.is_empty() || !unknown.is_empty() {
            problems.insert(
                table.to_string(),
                format!("undocumented: {missing:?}; documented but not accepted: {unknown:?}"),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "README.md `## {section}` and the {binary} configuration disagree:\n{problems:#?}"
    );
}

#[test]
fn readme_hub_toml_reference_matches_the_config_structs() {
    check(
        "hub.toml reference",
        "hub",
        &["plan"],
        HUB_TEMPLATE,
        &[
            "root",
            "hub",
            "trail",
            "monitoring",
            "alerts",
            "rule",
            "rule.fixture",
        ],
    );
}

#[test]
fn readme_agent_toml_reference_matches_the_config_structs() {
    check(
        "agent.toml reference",
        "agent",
        &["validate"],
        AGENT_TEMPLATE,
        &[
            "root",
            "source",
            "dedupe",
            "group",
            "enrich",
            "classify",
            "rules",
            "server",
            "sink",
            "route",
            "route.match",
            "default_route",
        ],
    );
}
