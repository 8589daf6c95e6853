//! The generated IAM policies and the CloudFormation templates pass the validators AWS
//! users run on them: parliament (no HIGH or CRITICAL finding, no action given a resource
//! type or condition key the Service Authorization Reference does not list for it) and
//! cfn-lint (no error). `scripts/test` installs both into `.venv` (pinned, like the
//! emulator); `scripts/lib/policy-check.py` says what fails and why.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use orgwatch_tests::{bin, workspace_root};

fn venv_tool(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the validators into .venv",
        path.display()
    );
    path
}

/// Every policy `hub policy` prints, for the example configuration and for variants that
/// switch on the optional statements (SSE-KMS archive, SNS sinks) and other partitions.
fn generated_policies(dir: &std::path::Path) -> Vec<PathBuf> {
    let kms_config = dir.join("hub-kms.toml");
    let example = std::fs::read_to_string(workspace_root().join("infra/examples/hub.toml"))
        .expect("example config");
    std::fs::write(
        &kms_config,
        example.replace(
            "[trail]\n",
            "[trail]\nkms_key_id = \"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"\n",
        ),
    )
    .expect("write config");
    let example = workspace_root().join("infra/examples/hub.toml");
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    // The guardrail SCP is an identity-style policy of Deny statements: parliament checks
    // its actions and resource types (size and the absent Principal: shared::guardrail).
    for who in ["hub", "agent", "member", "agent-member", "central", "scp"] {
        runs.push((who.into(), vec!["--for".into(), who.into()]));
        runs.push((
            format!("{who}-gov"),
            vec![
                "--region".into(),
                "us-gov-west-1".into(),
                "--for".into(),
                who.into(),
            ],
        ));
    }
    runs.push((
        "agent-sns".into(),
        vec![
            "--for".into(),
            "agent".into(),
            "--sns-topic".into(),
            "arn:aws:sns:us-east-1:111122223333:secops".into(),
            "--dedupe-table".into(),
            "orgwatch-agent".into(),
        ],
    ));
    let mut out = Vec::new();
    for (name, args) in runs {
        out.push(print_policy(dir, &name, &example, &args));
    }
    out.push(print_policy(
        dir,
        "hub-kms",
        &kms_config,
        &["--for".into(), "hub".into()],
    ));
    out.push(print_policy(
        dir,
        "kms-key",
        &kms_config,
        &[
            "--for".into(),
            "kms-key".into(),
            "--management-account".into(),
            "111122223333".into(),
        ],
    ));
    out
}

fn print_policy(
    dir: &std::path::Path,
    name: &str,
    config: &std::path::Path,
    args: &[String],
) -> PathBuf {
    let out = Command::new(bin("hub"))
        .arg("--config")
        .arg(config)
        .arg("policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hub policy");
    assert!(
        out.status.success(),
        "hub policy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, &out.stdout).expect("write policy");
    path
}

#[test]
fn parliament_finds_nothing_serious_in_any_generated_policy() {
    let dir = std::env::temp_dir().join(format!("orgwatch-validators-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut files = generated_policies(&dir);
    // The committed files are what users deploy.
    for who in ["hub", "agent", "member", "agent-member", "central"] {
        files.push(workspace_root().join(format!("infra/iam/{who}.json")));
    }
    // The key policy is a resource policy: parliament reads it as one.
    let out = Command::new(venv_tool("python"))
        .arg(workspace_root().join("scripts/lib/policy-check.py"))
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .expect("run parliament");
    let report = String::from_utf8_lossy(&out.stdout);
    let failing: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("\"fails\": true"))
        .collect();
    assert!(
        out.status.success() && failing.is_empty(),
        "parliament ({}):\n{}\n{}",
        out.status,
        failing.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    // It did look: the hub's policy always draws the known, accepted MEDIUM findings
    // (it manages resource policies and assumes roles).
    assert!(
        report.contains("PERMISSIONS_MANAGEMENT_ACTIONS"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cfn_lint_finds_no_error_in_the_templates() {
    let templates: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("infra/cloudformation"))
        .expect("templates")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    assert!(!templates.is_empty());
    let out = Command::new(venv_tool("cfn-lint"))
        .args(&templates)
        .stdin(Stdio::null())
        .output()
        .expect("run cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
