//! `hub rules ...`

use crate::cli::{GlobalArgs, RulesCommand};
use crate::exit::ExitStatus;

pub fn run(_global: &GlobalArgs, command: &RulesCommand) -> ExitStatus {
    tracing::error!(?command, "not implemented yet");
    ExitStatus::Failure
}
