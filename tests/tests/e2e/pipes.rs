//! Printing commands into a closed pipe (`hub plan | head -1`) end quietly, as Unix tools
//! do: no panic ("failed printing to stdout: Broken pipe"), no exit 101.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, bin, workspace_root};

/// Runs `program args` with stdout a pipe whose reader is already closed.
fn into_closed_pipe(program: &str, args: &[&str], env: &[(&'static str, String)]) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(bin(program))
        .args(args)
        .current_dir(workspace_root())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{program} {args:?}: {stderr}"
    );
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0),
        "{program} {args:?} ended with {:?}: {stderr}",
        out.status
    );
}

#[test]
fn printing_commands_end_quietly_when_the_reader_is_gone() {
    let example = ["--config", "infra/examples/hub.toml"];
    for args in [
        &["rules", "list"][..],
        &["rules", "show", "cis-4.3"],
        &["policy", "--for", "hub"],
        &["completions", "bash"],
        &["rules", "verify"],
        &["validate"],
    ] {
        let mut all: Vec<&str> = example.to_vec();
        all.extend_from_slice(args);
        into_closed_pipe("hub", &all, &[]);
    }
    into_closed_pipe(
        "agent",
        &[
            "--config",
            "infra/examples/agent.toml",
            "validate",
            "--output",
            "json",
        ],
        &[
            (
                "ORGWATCH_SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T0/B0/x".into(),
            ),
            (
                "ORGWATCH_PAGERDUTY_ROUTING_KEY",
                "0123456789abcdef0123456789abcdef".into(),
            ),
        ],
    );
}

#[tokio::test]
async fn plan_into_a_closed_pipe_ends_quietly() {
    let emu = Emulator::start().expect("emulator");
    emu.create_org(1).await.expect("organisation");
    into_closed_pipe(
        "hub",
        &["--config", "infra/examples/hub.toml", "plan"],
        &emu.env(),
    );
    // The compliance reports too (status exits 3 for drift; what matters is no panic).
    for format in ["csv", "ocsf", "html"] {
        into_closed_pipe(
            "hub",
            &[
                "--config",
                "infra/examples/hub.toml",
                "status",
                "--output",
                format,
            ],
            &emu.env(),
        );
    }
}
