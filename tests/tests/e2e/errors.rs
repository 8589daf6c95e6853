//! AWS errors a person can act on (issue #13 item 3): the real binaries, with no
//! credentials at all and with an endpoint where nothing listens, print the operation,
//! what went wrong and a hint — never the SDK's Debug structs — and `-v` adds the full
//! chain.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, bin};

use super::hub::write_config;

/// The SDK's Debug text, which only `-v` may print.
const DEBUG_TEXT: &[&str] = &[
    "DispatchFailure(",
    "ConnectorError {",
    "CredentialsNotLoaded(",
];

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("orgwatch-e2e-errors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).expect("temp dir");
    dir
}

/// Runs a binary with nothing of this machine's AWS set-up: the environment cleared, HOME
/// an empty directory (no `~/.aws`), instance metadata off, and `endpoint` as the endpoint
/// override. `keys` adds static credentials.
fn run(program: &str, dir: &Path, endpoint: &str, keys: bool, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(bin(program));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .stdin(Stdio::null());
    if keys {
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_no_debug_text(stderr: &str) {
    for debug in DEBUG_TEXT {
        assert!(
            !stderr.contains(debug),
            "Debug text {debug:?} without -v:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn without_credentials_hub_status_and_agent_dlq_say_how_to_sign_in() {
    let emu = Emulator::start().expect("emulator");
    let dir = temp_dir("no-credentials");
    let config = write_config(&dir, "eventbridge");
    let config = config.display().to_string();

    let (code, stderr) = run(
        "hub",
        &dir,
        emu.url(),
        false,
        &["status", "--config", &config],
    );
    // README, exit codes: 1 when the organisation cannot be read.
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "error: cannot read the organisation: GetCallerIdentity in us-east-1: no credentials found in chain"
        ),
        "{stderr}"
    );
    for hint in [
        "  hint: ",
        "aws sso login --profile",
        "AWS_PROFILE",
        "--profile",
        "AWS_ACCESS_KEY_ID",
    ] {
        assert!(stderr.contains(hint), "hint lacks {hint:?}:\n{stderr}");
    }
    assert_no_debug_text(&stderr);
    assert!(!stderr.contains("full error:"), "{stderr}");

    // The profile asked for is named in the hint.
    let (code, stderr) = run(
        "hub",
        &dir,
        emu.url(),
        false,
        &["status", "--profile", "security", "--config", &config],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("aws sso login --profile security"),
        "{stderr}"
    );
    assert_no_debug_text(&stderr);

    // -v: the whole chain, as the SDK gives it, under the hint.
    let (code, stderr) = run(
        "hub",
        &dir,
        emu.url(),
        false,
        &["-v", "status", "--config", &config],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("  hint: "), "{stderr}");
    assert!(
        stderr.contains("full error: dispatch failure")
            && stderr.contains("Ec2InstanceMetadata")
            && stderr.contains("DispatchFailure(DispatchFailure { source: ConnectorError {"),
        "-v prints the full chain:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    agent_without_credentials(&emu);
}

#[tokio::test]
async fn an_endpoint_where_nothing_listens_is_named_with_the_override() {
    // A loopback port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = temp_dir("unreachable");
    let config = write_config(&dir, "eventbridge");
    let config = config.display().to_string();

    let (code, stderr) = run(
        "hub",
        &dir,
        &endpoint,
        true,
        &["status", "--config", &config],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("GetCallerIdentity in us-east-1: tcp connect error: Connection refused"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  hint: nothing answers at 127.0.0.1:{port}"))
            && stderr.contains("AWS_ENDPOINT_URL"),
        "the hint names the endpoint and the override:\n{stderr}"
    );
    assert_no_debug_text(&stderr);
    assert!(!stderr.contains("hyper_util"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `agent dlq list` with no credentials: the same form as the hub's.
fn agent_without_credentials(emu: &Emulator) {
    let dir = temp_dir("agent-no-credentials");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[source]
queue = "orgwatch-alerts"
[dedupe]
window = "15m"
path = "{db}"
[[sink]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[route]]
match = {{}}
sinks = ["hook"]
[enrich]
enabled = false
"#,
            db = dir.join("agent.db").display()
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let (code, stderr) = run(
        "agent",
        &dir,
        emu.url(),
        false,
        &["--config", &config, "dlq", "list"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("queue orgwatch-alerts: GetQueueUrl: no credentials found in chain"),
        "{stderr}"
    );
    assert!(stderr.contains("aws sso login"), "{stderr}");
    assert_no_debug_text(&stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
