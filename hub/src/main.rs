//! `hub`: reconcile an AWS Organization to the declared monitoring state.

mod apply;
mod cli;
mod commands;
mod compliance;
mod config;
mod desired;
mod diff;
mod discover;
mod exit;
mod input;
mod model;
mod observe;
mod preflight;
mod report;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::reconcile::Mode;
use crate::exit::ExitStatus;

fn main() -> ExitCode {
    // Every hub command is a printing command (results on stdout).
    shared::pipe::end_quietly_on_closed_pipe();
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let status = if e.use_stderr() {
                ExitStatus::Usage
            } else {
                ExitStatus::Success
            };
            let _ = e.print();
            return status.into();
        }
    };
    shared::logging::init(cli.global.log_format, cli.global.verbose, cli.global.quiet);
    cli.global.output = cli.global.format.output();
    if cli.global.format.compliance().is_some() && !matches!(cli.command, Command::Status(_)) {
        eprintln!(
            "error: --output {} is a compliance report of hub status; this command prints table or json",
            cli.global.format.name()
        );
        return ExitStatus::Usage.into();
    }
    let status = match &cli.command {
        Command::Rules(cmd) => commands::rules::run(&cli.global, cmd),
        Command::Replay(args) => commands::replay::run(&cli.global, args),
        Command::Plan(args) => reconcile(&cli.global, args, Mode::Plan),
        Command::Enroll(args) => reconcile(&cli.global, args, Mode::Enroll),
        Command::Status(args) => reconcile(&cli.global, args, Mode::Status),
        Command::Offboard(args) => reconcile(&cli.global, args, Mode::Offboard),
        Command::Policy(args) => commands::policy::run(&cli.global, args),
        Command::Validate => validate(&cli.global),
        Command::Doctor(args) => doctor(&cli.global, &args.account),
        Command::Watch(args) => match prepare(&cli.global, &[]) {
            Ok((config, rules, runtime)) => {
                runtime.block_on(watch::run(&cli.global, args, rules, config))
            }
            Err(status) => status,
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "hub", &mut std::io::stdout());
            ExitStatus::Success
        }
    };
    status.into()
}

/// `hub validate`: the configuration, the pack and its deployed form, offline.
fn validate(global: &cli::GlobalArgs) -> ExitStatus {
    let path = &global.config;
    let mut problems: Vec<String> = Vec::new();
    let mut summary = None;
    match config::HubConfig::load(path) {
        Err(errors) => {
            problems.extend(errors.iter().map(ToString::to_string));
            // The pack selection is read on its own too, so that its problems come in the
            // same run.
            if let Err(e) = commands::rules::pack_for_path(path) {
                problems.extend(e.lines().map(str::to_string));
            }
        }
        Ok(config) => match commands::pack::load(&config, path) {
            Err(p) => problems.extend(p),
            Ok(pack) => {
                if let Err(p) = commands::pack::deployments(&config, &pack) {
                    problems.extend(p);
                }
                for f in pack.verify().failures() {
                    problems.push(format!("{}: {f}", path.display()));
                }
                summary = Some((
                    pack.len(),
                    config.monitoring.delivery.as_str(),
                    config.hub.regions.len(),
                ));
            }
        },
    }
    // One list in the file's order (`path:line:col: ...`; unlocated ones last), each
    // problem once: the configuration and the pack read on its own can both name one.
    let at = |p: &String| {
        let mut parts = p
            .strip_prefix(&format!("{}:", path.display()))
            .unwrap_or("")
            .splitn(3, ':');
        match (parts.next().map(str::parse), parts.next().map(str::parse)) {
            (Some(Ok(line)), Some(Ok(col))) => (line, col),
            _ => (usize::MAX, usize::MAX),
        }
    };
    problems.sort_by_key(at);
    let mut seen = std::collections::BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    let valid = problems.is_empty();
    match global.output {
        cli::Output::Json => {
            let doc = serde_json::json!({
                "schema_version": commands::rules::SCHEMA_VERSION,
                "config": path.display().to_string(),
                "valid": valid,
                "errors": problems,
            });
            println!("{doc}");
        }
        cli::Output::Table => {
            if valid {
                if let Some((rules, delivery, regions)) = summary {
                    let plural = |n: usize, one: &str, many: &str| {
                        format!("{n} {}", if n == 1 { one } else { many })
                    };
                    println!(
                        "{}: valid ({}, {delivery} delivery, {})",
                        path.display(),
                        plural(rules, "rule", "rules"),
                        plural(regions, "region", "regions")
                    );
                }
            } else {
                for p in &problems {
                    eprintln!("error: {p}");
                }
                eprintln!(
                    "{}: {} problem{}",
                    path.display(),
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                );
            }
        }
    }
    if valid {
        ExitStatus::Success
    } else {
        ExitStatus::Usage
    }
}

/// The configuration, the rules it deploys and a runtime, for the commands that talk to
/// AWS; `Err` is the exit status after the problems were said.
fn prepare(
    global: &cli::GlobalArgs,
    accounts: &[String],
) -> Result<
    (
        config::HubConfig,
        Vec<desired::RuleDeploy>,
        tokio::runtime::Runtime,
    ),
    ExitStatus,
> {
    let config = match config::HubConfig::load(&global.config) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Err(ExitStatus::Usage);
        }
    };
    for a in accounts {
        if !shared::naming::is_account_id(a) {
            eprintln!("error: --account {a:?}: expected a 12-digit account id");
            return Err(ExitStatus::Usage);
        }
    }
    let rules = match commands::pack::load(&config, &global.config)
        .and_then(|pack| commands::pack::deployments(&config, &pack))
    {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            return Err(ExitStatus::Usage);
        }
    };
    let Some(runtime) = commands::runtime() else {
        return Err(ExitStatus::Failure);
    };
    Ok((config, rules, runtime))
}

fn reconcile(global: &cli::GlobalArgs, args: &cli::ReconcileArgs, mode: Mode) -> ExitStatus {
    let command = match mode {
        Mode::Plan => "plan",
        Mode::Enroll => "enroll",
        Mode::Status => "status",
        Mode::Offboard => "offboard",
    };
    if let Some(why) = args.misplaced_flag(command) {
        eprintln!("error: {why}");
        return ExitStatus::Usage;
    }
    if mode == Mode::Offboard && !args.yes && !confirm_offboard(args) {
        return ExitStatus::Usage;
    }
    match prepare(global, &args.account) {
        Ok((config, rules, runtime)) => {
            runtime.block_on(commands::reconcile::run(global, args, mode, rules, config))
        }
        Err(status) => status,
    }
}

/// `hub offboard` deletes what orgwatch created: like `terraform destroy`, it asks on a
/// terminal (the answer must be `yes`) and refuses without `--yes` elsewhere, so a script
/// that meant `plan` cannot take an organisation's monitoring down by accident.
fn confirm_offboard(args: &cli::ReconcileArgs) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    let scope = if args.account.is_empty() {
        "every enrolled account and the central resources".to_string()
    } else {
        format!(
            "{} {}",
            if args.account.len() == 1 {
                "account"
            } else {
                "accounts"
            },
            args.account.join(", ")
        )
    };
    let archive = if args.delete_archive {
        ", and the archive bucket with every log file in it"
    } else {
        " (the archive bucket stays)"
    };
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: hub offboard removes orgwatch's resources from {scope}{archive}; stdin is not a terminal, so pass --yes to confirm"
        );
        return false;
    }
    eprint!(
        "hub offboard removes orgwatch's resources from {scope}{archive}: monitoring stops there.\nType yes to go on: "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let read = std::io::stdin().lock().read_line(&mut answer);
    if read.is_ok() && answer.trim() == "yes" {
        true
    } else {
        eprintln!("error: not confirmed; nothing was changed");
        false
    }
}

fn doctor(global: &cli::GlobalArgs, accounts: &[String]) -> ExitStatus {
    match prepare(global, accounts) {
        Ok((config, rules, runtime)) => {
            runtime.block_on(commands::doctor::run(global, accounts, rules, config))
        }
        Err(status) => status,
    }
}
