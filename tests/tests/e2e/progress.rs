//! `hub`'s progress on stderr: a bar over accounts on a terminal, plain log lines otherwise;
//! results on stdout either way. The terminal is a real pseudo-terminal (openpty).

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use orgwatch_tests::{Emulator, bin};

use super::hub::{tempfile_dir, write_config};

/// Runs `hub status --output json` with stderr on a pseudo-terminal: (exit code, stdout,
/// everything written to the terminal).
fn status_on_a_terminal(
    emu: &Emulator,
    config: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    status_on_a_terminal_with(emu, config, extra, &[])
}

/// [`status_on_a_terminal`] with more environment variables.
fn status_on_a_terminal_with(
    emu: &Emulator,
    config: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two file descriptors into the given integers; the name buffer
    // and terminal settings are optional (null).
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(bin("hub"))
        .args(["status", "--output", "json", "--config"])
        .arg(config)
        .args(extra)
        .envs(emu.env())
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("run hub");
    let mut terminal = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Reading the master ends with EIO once the child (the last holder of the slave)
        // has exited.
        while let Ok(n) = terminal.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout).expect("stdout");
    }
    let status = child.wait().expect("wait");
    let tty = reader.join().expect("reader");
    (status.code().unwrap_or(-1), stdout, tty)
}

#[tokio::test]
async fn a_terminal_gets_a_bar_over_accounts_and_stdout_keeps_the_results() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(2).await.expect("organisation");
    let dir = tempfile_dir::Dir::new();
    let config = write_config(dir.path(), "eventbridge");
    // Accounts: the two members, the management account, and the central step.
    let total = org.members.len() + 2;

    let (code, stdout, tty) = status_on_a_terminal(&emu, &config, &[]);
    assert_eq!(code, 3, "status before enroll is drift: {tty}");
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}): {stdout}"));
    assert_eq!(report["schema_version"], 1);
    assert!(
        tty.contains(&format!("/{total} accounts")) && tty.contains("0 failed"),
        "no progress bar on the terminal: {tty:?}"
    );
    assert!(!tty.contains("done"), "log lines instead of a bar: {tty:?}");

    // --quiet: nothing but errors, so no bar.
    let (code, stdout, tty) = status_on_a_terminal(&emu, &config, &["--quiet"]);
    assert_eq!(code, 3);
    assert!(serde_json::from_str::<serde_json::Value>(&stdout).is_ok());
    assert!(!tty.contains("accounts"), "{tty:?}");

    // JSON logs: machine-readable lines, no bar.
    let (_, _, tty) = status_on_a_terminal(&emu, &config, &["--log-format", "json"]);
    assert!(!tty.contains(&format!("/{total} accounts")), "{tty:?}");
    assert!(
        tty.contains("\"message\"") || tty.contains("\"fields\""),
        "{tty:?}"
    );

    // Colour (SGR escape sequences) only on a terminal, and never with NO_COLOR set
    // (no-color.org); the bar's cursor movements are not colour.
    let sgr = |t: &str| {
        t.match_indices("\u{1b}[").any(|(i, _)| {
            t[i + 2..]
                .chars()
                .find(|c| !c.is_ascii_digit() && *c != ';')
                == Some('m')
        })
    };
    let (_, _, tty) = status_on_a_terminal(&emu, &config, &["-v"]);
    assert!(sgr(&tty), "a terminal gets coloured log levels: {tty:?}");
    let (_, _, tty) = status_on_a_terminal_with(&emu, &config, &["-v"], &[("NO_COLOR", "1")]);
    assert!(!sgr(&tty), "NO_COLOR: {tty:?}");

    // Not a terminal: plain log lines, one per account and region, no escape codes.
    let out = Command::new(bin("hub"))
        .args(["status", "--output", "json", "--config"])
        .arg(&config)
        .envs(emu.env())
        .output()
        .expect("run hub");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("accounts,"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    let regions = 2;
    // central and members per region, and the organisation (trusted access, trail) once
    let expected = (org.members.len() + 2) * regions + 1;
    assert!(
        stderr.contains(&format!("{expected}/{expected} done")),
        "{stderr}"
    );
}
