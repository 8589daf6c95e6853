//! The one place exit codes are decided.

use std::process::ExitCode;

/// How a `hub` command ended. Mapped to numbers only in [`ExitStatus::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked (and, for `status`, nothing drifted).
    Success,
    /// The command ran but something failed: an account, unreadable input, a fixture.
    Failure,
    /// Bad flags, configuration or pattern: nothing was done.
    Usage,
    /// `status` found resources missing or different from the declared state.
    Drift,
    /// `plan --detailed-exitcode` found changes to make (Terraform's convention).
    Changes,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Drift => 3,
            ExitStatus::Changes => 2,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}
