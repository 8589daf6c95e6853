//! One function per command.

use crate::exit::ExitStatus;

/// Prints `value` as pretty JSON on stdout: Success, or Failure (said on stderr) when it
/// cannot be serialised — a pipeline never reads an empty stdout as a result.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> ExitStatus {
    emit(serde_json::to_string_pretty(value))
}

/// [`print_json`] on one line.
pub fn print_json_line<T: serde::Serialize + ?Sized>(value: &T) -> ExitStatus {
    emit(serde_json::to_string(value))
}

fn emit(text: serde_json::Result<String>) -> ExitStatus {
    match text {
        Ok(s) => {
            println!("{s}");
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("error: cannot print JSON: {e}");
            ExitStatus::Failure
        }
    }
}

/// The async runtime the AWS commands run on; `None` (said on stderr) when it cannot start.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

pub mod doctor;
pub mod pack;
pub mod policy;
pub mod reconcile;
pub mod replay;
pub mod rules;
