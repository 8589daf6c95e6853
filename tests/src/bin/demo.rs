//! `scripts/demo`: the whole orgwatch flow against a local AWS emulator, narrated.
//! See `orgwatch_tests::demo` for the story; nothing here talks to AWS.

use std::process::ExitCode;
use std::time::Instant;

use orgwatch_tests::Emulator;
use orgwatch_tests::demo::{Narrator, render, run_story};

struct Terminal {
    started: Instant,
}

impl Narrator for Terminal {
    fn step(&self, text: &str) {
        println!(
            "\n\x1b[1m==> {text}\x1b[0m  \x1b[2m(+{:.0}s)\x1b[0m",
            self.started.elapsed().as_secs_f64()
        );
    }
    fn detail(&self, text: &str) {
        println!("    {text}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let started = Instant::now();
    let narrator = Terminal { started };
    narrator.step("Starting the AWS emulator (moto, loopback only)");
    let emu = match Emulator::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(1);
        }
    };
    narrator.detail(emu.url());
    let dir = std::env::temp_dir().join(format!("orgwatch-demo-{}", std::process::id()));
    let outcome = match run_story(&emu, &dir, &narrator).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("demo: {e}\n(files in {})", dir.display());
            return ExitCode::from(1);
        }
    };
    narrator.step(&format!(
        "What the security team received: {} notification(s) on the webhook, {} on stdout",
        outcome.notifications.len(),
        outcome.stdout_lines
    ));
    for n in &outcome.notifications {
        for line in render(n) {
            println!("    {line}");
        }
    }
    narrator.step(&format!(
        "hub status (exit {})",
        outcome
            .status_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into())
    ));
    for line in outcome.status_table.lines() {
        println!("    {line}");
    }
    drop(emu);
    let grouped = outcome
        .notifications
        .iter()
        .any(|n| n["accounts"].as_array().is_some_and(|a| a.len() > 1));
    let enriched = outcome.notifications.iter().any(|n| {
        n["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|a| {
                a["enrichment"]["status"] == "found" && a["actor"]["principal"].is_string()
            })
        })
    });
    narrator.step(&format!(
        "Done in {:.0}s: agent exited {}, emulator stopped; files in {}",
        started.elapsed().as_secs_f64(),
        outcome
            .agent_exit
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into()),
        outcome.dir.display()
    ));
    if grouped && enriched && outcome.status_code == Some(0) && outcome.agent_exit == Some(0) {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "demo: expected a grouped notification ({grouped}), an enriched alarm ({enriched}), hub status 0 and a clean agent exit"
        );
        ExitCode::from(1)
    }
}
