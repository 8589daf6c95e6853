//! `infra/`: the IAM policies, the member-role template, the deployment files and the
//! shell completions are what the code says they are.

use std::process::{Command, Stdio};

use orgwatch_tests::{bin, workspace_root};
use serde_json::Value;

fn hub(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin("hub"))
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("run hub");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn policy(who: &str) -> Value {
    let (code, out, err) = hub(&[
        "--config",
        "infra/examples/hub.toml",
        "policy",
        "--for",
        who,
    ]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).expect("policy JSON")
}

#[test]
fn infra_iam_files_are_the_policies_hub_prints() {
    for who in ["hub", "agent", "member", "agent-member", "central"] {
        let path = workspace_root().join(format!("infra/iam/{who}.json"));
        let text = std::fs::read_to_string(&path).expect("infra/iam file");
        let file: Value = serde_json::from_str(&text).expect("infra/iam JSON");
        assert_eq!(
            file,
            policy(who),
            "{} differs from the code; regenerate it with\n  hub --config infra/examples/hub.toml policy --for {who} > infra/iam/{who}.json",
            path.display()
        );
        let statements = file["Statement"].as_array().expect("statements");
        assert!(!statements.is_empty());
        for s in statements {
            assert_eq!(s["Effect"], "Allow");
            let actions: Vec<&str> = s["Action"]
                .as_array()
                .expect("actions")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                actions.iter().all(|a| !a.ends_with(":*") && *a != "*"),
                "no wildcard actions: {s}"
            );
        }
    }
    // The archive is the hub's alone: the agent reads one object of it, the rule manifest,
    // and nothing else.
    let agent = policy("agent");
    for s in agent["Statement"].as_array().expect("statements") {
        let text = s.to_string();
        if text.contains("s3:") {
            assert_eq!(s["Action"], serde_json::json!(["s3:GetObject"]), "{s}");
            assert_eq!(
                s["Resource"],
                serde_json::json!([format!(
                    "arn:aws:s3:::acme-orgwatch-cloudtrail/{}",
                    shared::naming::RULE_MANIFEST_KEY
                )]),
                "{s}"
            );
        }
    }
    assert!(
        policy("hub")
            .to_string()
            .contains("arn:aws:s3:::acme-orgwatch-cloudtrail")
    );
    // A bad principal is a usage error.
    let (code, _, _) = hub(&["policy", "--for", "everyone"]);
    assert_eq!(code, Some(2));
}

#[test]
fn the_member_role_template_creates_exactly_the_member_policy() {
    let path = workspace_root().join("infra/cloudformation/member-role.yaml");
    let text = std::fs::read_to_string(&path).expect("template");
    let doc: Value = serde_norway::from_str(&text).expect("the template is valid YAML");
    assert_eq!(doc["AWSTemplateFormatVersion"], "2010-09-09");
    assert_eq!(
        doc["Parameters"]["HubAccountId"]["AllowedPattern"],
        "^[0-9]{12}$"
    );
    assert_eq!(doc["Parameters"]["ExternalId"]["Default"], "");
    assert!(doc["Conditions"]["HasExternalId"].is_object());
    let role = &doc["Resources"]["MemberRole"];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert!(
        trust["Principal"]["AWS"]["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.contains("${HubAccountId}")),
        "{trust}"
    );
    assert_eq!(trust["Condition"]["Fn::If"][0], "HasExternalId");
    // Each role's policy is exactly the hub's, in the stack's own partition.
    for (resource, who) in [
        ("MemberRole", "member"),
        ("AgentReaderRole", "agent-member"),
    ] {
        let policies = doc["Resources"][resource]["Properties"]["Policies"]
            .as_array()
            .expect("policies");
        assert_eq!(
            unwrap_sub(&policies[0]["PolicyDocument"]),
            in_stack_partition(&policy(who)),
            "{resource}'s policy differs from `hub policy --for {who}`"
        );
    }
    // In the central account only, the member role also keeps the central resources.
    let central = &doc["Resources"]["CentralPolicy"];
    assert_eq!(central["Type"], "AWS::IAM::Policy");
    assert_eq!(central["Condition"], "IsCentralAccount");
    assert_eq!(
        central["Properties"]["Roles"],
        serde_json::json!([{"Ref": "MemberRole"}])
    );
    assert_eq!(
        unwrap_sub(&central["Properties"]["PolicyDocument"]),
        in_stack_partition(&policy("central")),
        "the central policy differs from `hub policy --for central`"
    );
    assert_eq!(
        doc["Resources"]["MemberRole"]["Properties"]["Policies"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        doc["Resources"]["AgentReaderRole"]["Properties"]["Policies"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // No hard-coded partition anywhere in the template: GovCloud and China stacks work.
    assert!(!text.contains("arn:aws:"), "use ${{AWS::Partition}}");
    for (resource, name) in [
        ("AgentReaderRole", "orgwatch-agent-reader"),
        ("TrailLogsRole", "orgwatch-cloudtrail-logs"),
        ("ForwardRole", "orgwatch-events-forward"),
    ] {
        let props = &doc["Resources"][resource]["Properties"];
        assert_eq!(props["RoleName"], name, "{resource}");
        assert_eq!(props["Policies"][0]["PolicyName"], name, "{resource}");
    }
    assert!(doc["Outputs"]["RoleArn"].is_object());
}

/// `{"Fn::Sub": "text"}` -> `"text"`, everywhere in `v`.
fn unwrap_sub(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => m["Fn::Sub"].clone(),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), unwrap_sub(x))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(unwrap_sub).collect()),
        other => other.clone(),
    }
}

/// A policy of `hub policy` (partition `aws`) as a stack writes it.
fn in_stack_partition(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("arn:aws:", "arn:${AWS::Partition}:")),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), in_stack_partition(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(in_stack_partition).collect()),
        other => other.clone(),
    }
}

#[test]
fn deployment_files_are_hardened_and_the_pipeline_fails_on_errors() {
    let root = workspace_root().join("infra/deploy");
    let unit = std::fs::read_to_string(root.join("orgwatch-agent.service")).expect("unit");
    for key in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "StateDirectory=orgwatch",
        "LoadCredential=agent.toml:/etc/orgwatch/agent.toml",
        "ExecStartPre=/usr/local/bin/agent --config %d/agent.toml validate",
        "ExecStart=/usr/local/bin/agent --config %d/agent.toml --log-format json run",
    ] {
        assert!(unit.contains(key), "the unit lacks {key:?}");
    }
    let watch = std::fs::read_to_string(root.join("orgwatch-hub-watch.service")).expect("unit");
    for key in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "KillSignal=SIGTERM",
        "LoadCredential=hub.toml:/etc/orgwatch/hub.toml",
        "ExecStart=/usr/local/bin/hub --config %d/hub.toml --log-format json watch --listen 127.0.0.1:9108",
    ] {
        assert!(watch.contains(key), "the hub watch unit lacks {key:?}");
    }
    let (code, help, _) = hub(&["watch", "--help"]);
    assert_eq!(code, Some(0));
    assert!(
        help.contains("--listen") && help.contains("--resync"),
        "{help}"
    );
    let container = std::fs::read_to_string(root.join("Containerfile")).expect("Containerfile");
    assert!(container.contains("EXPOSE 9464 9108"));
    assert!(container.matches("FROM ").count() >= 2, "multi-stage");
    assert!(container.contains("USER 65532"), "non-root");
    assert!(container.contains("--locked"));
    // Inside the image the agent listens where a published port reaches it.
    assert!(container.contains("ENV ORGWATCH_LISTEN=0.0.0.0:9464"));
    // The health check runs without a shell, with a subcommand the agent has.
    assert!(container.contains("CMD [\"/usr/local/bin/agent\", \"health\"]"));
    let out = Command::new(bin("agent"))
        .args(["health", "--help"])
        .output()
        .expect("agent health --help");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--address"));
    let ignore = std::fs::read_to_string(root.join("../../.containerignore"))
        .expect(".containerignore at the build context's root");
    for path in ["target", ".venv", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim_matches('/') == path),
            ".containerignore lacks {path}"
        );
    }

    let text = std::fs::read_to_string(root.join("enroll-account.yml")).expect("workflow");
    let flow: Value = serde_norway::from_str(&text).expect("the workflow is valid YAML");
    assert_eq!(
        flow["permissions"]["id-token"], "write",
        "OIDC, no stored keys"
    );
    let steps = flow["jobs"]["enroll"]["steps"].as_array().expect("steps");
    let run = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("hub enroll"))
        .expect("a step runs hub enroll");
    assert!(
        run.contains("--account \"$NEW_ACCOUNT\" --output json"),
        "{run}"
    );
    assert!(
        run.contains("set -o pipefail"),
        "a non-zero exit fails the job: {run}"
    );
    // The flags it uses exist.
    let (code, help, _) = hub(&["enroll", "--help"]);
    assert_eq!(code, Some(0));
    assert!(help.contains("--account") && help.contains("--output"));
}

#[test]
fn completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = hub(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        for sub in [
            "plan", "enroll", "status", "offboard", "rules", "replay", "policy",
        ] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let (code, _, _) = hub(&["completions", "tcsh"]);
    assert_eq!(code, Some(2));
}

/// systemd checks the units as it would load them: every key known, every value parsed,
/// every command executable (the binaries are this build's, put where the units name them).
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let root = orgwatch_tests::workspace_root().join("infra/deploy");
    let dir = std::env::temp_dir().join(format!("orgwatch-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (unit, bin) in [
        ("orgwatch-agent.service", "agent"),
        ("orgwatch-hub-watch.service", "hub"),
    ] {
        let text = std::fs::read_to_string(root.join(unit)).expect("unit");
        let built = orgwatch_tests::bin(bin);
        let text = text.replace(
            &format!("/usr/local/bin/{bin}"),
            &built.display().to_string(),
        );
        let path = dir.join(unit);
        std::fs::write(&path, text).expect("write unit");
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd package) runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // It reports unknown keys and unparsable values as warnings, with exit code 0.
        let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains(unit)).collect();
        assert!(
            out.status.success() && about_unit.is_empty(),
            "{unit}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hub validate` checks hub.toml offline, as `agent validate` does agent.toml: the shipped
/// example is valid; a broken file's problems come in one run, located, with exit 2.
#[test]
fn hub_validate_checks_the_configuration_offline() {
    let (code, out, err) = hub(&["--config", "infra/examples/hub.toml", "validate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("valid (") && out.contains("rules"), "{out}");

    let dir = std::env::temp_dir().join(format!("orgwatch-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("hub.toml");
    std::fs::write(
        &bad,
        "[hub]\nregions = [\"us-east-1\"]\nmember_role = \"arn:aws:iam::1:role/x\"\n[trail]\nname = \"orgwatch\"\nbucket = \"x\"\n[monitoring]\npack = [\"cis-4.99\"]\n[alerts]\ntopic = \"t\"\nqueue = \"q\"\n",
    )
    .expect("write");
    let path = bad.display().to_string();
    let (code, out, err) = hub(&["--config", &path, "--output", "json", "validate"]);
    assert_eq!(code, Some(2), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["valid"], false);
    let errors: Vec<&str> = doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (what, located) in [
        ("hub.member_role", true),
        ("trail.bucket", true),
        ("cis-4.99", false),
    ] {
        let e = errors
            .iter()
            .find(|e| e.contains(what))
            .unwrap_or_else(|| panic!("no problem about {what}: {errors:?}"));
        if located {
            assert!(e.starts_with(&format!("{path}:")), "{e}");
        }
    }
    let (code, _, err) = hub(&["--config", &path, "validate"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("problems"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broken configuration is reported whole in one run, in the file's order: every
/// unknown key, wrong type, unknown value and failed check, each at file:line:col, near
/// misses with "did you mean". (Before, serde stopped at the first: a broken hub.toml took
/// six runs to fix, an agent.toml four.)
#[test]
fn one_run_reports_every_problem_of_a_broken_file_with_suggestions() {
    let dir = std::env::temp_dir().join(format!("orgwatch-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let hub_toml = dir.join("hub.toml");
    std::fs::write(
        &hub_toml,
        r#"[hub]
regions = ["us-east-1", "mars-1"]
member_rol = "OrganizationAccountAccessRole"
concurrency = "8"
[trail]
name = "orgwatch"
bucket = "acme-orgwatch-cloudtrail"
[monitoring]
delivery = "evntbridge"
pack = ["cis", "cis-4.99"]
[alerts]
topik = "orgwatch-alerts"
queue = "orgwatch-alerts"
"#,
    )
    .expect("write");
    let path = hub_toml.display().to_string();
    let (code, out, err) = hub(&["--config", &path, "--output", "json", "validate"]);
    assert_eq!(code, Some(2), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    let errors: Vec<String> = doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(|s| s.replacen(&format!("{path}:"), "", 1)))
        .collect();
    let want = [
        "2:1: hub.regions: \"mars-1\" is not an AWS region name",
        "3:1: unknown field `member_rol`; did you mean `member_role`?",
        "4:15: invalid type: string \"8\", expected usize",
        "9:12: unknown variant `evntbridge`; did you mean `eventbridge`?",
        "10:16: monitoring.pack: unknown built-in rule or pack \"cis-4.99\"; did you mean `cis-4.9`?",
        "12:1: unknown field `topik`; did you mean `topic`?",
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  want {want}\n{errors:#?}");
    }

    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        r#"[source]
queue = "orgwatch-alerts"
regions = ["us-east-1"]
[dedupe]
windw = "15m"
store = "fil"
[group]
by = ["rul"]
[[sink]]
name = "console"
type = "stdot"
[[route]]
match = { severity = "hihg" }
sinks = ["consol"]
"#,
    )
    .expect("write");
    let out = Command::new(bin("agent"))
        .args(["--config"])
        .arg(&agent_toml)
        .args(["--output", "json", "validate"])
        .stdin(Stdio::null())
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let apath = agent_toml.display().to_string();
    let errors: Vec<String> = doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(|s| s.replacen(&format!("{apath}:"), "", 1)))
        .collect();
    let want = [
        "5:1: unknown field `windw`; did you mean `window`?",
        "6:9: dedupe.store: unknown store \"fil\"; did you mean \"file\"?",
        "8:6: group.by: unknown label \"rul\"; did you mean \"rule\"?",
        "11:8: sink \"console\": unknown type \"stdot\"; did you mean \"stdout\"?",
        "13:22: route[1].match.severity: unknown severity \"hihg\"; did you mean \"high\"?",
        "14:9: route[1].sinks: no sink is named \"consol\"; did you mean `console`?",
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  want {want}\n{errors:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
