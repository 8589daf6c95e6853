//! `hub`: reconcile an AWS Organization to the declared monitoring state.

mod cli;
mod commands;
mod exit;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    let status = match &cli.command {
        Command::Rules(cmd) => commands::rules::run(&cli.global, cmd),
    };
    status.into()
}
