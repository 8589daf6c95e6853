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

/// The client factory of the commands that talk to AWS: the region from `--region`, else
/// the configuration's home region, and the configured member role and external ID;
/// `None` (said on stderr) when it cannot be built.
pub async fn factory(
    global: &crate::cli::GlobalArgs,
    config: &crate::config::HubConfig,
) -> Option<shared::aws::ClientFactory> {
    let options = shared::aws::AwsOptions {
        region: global
            .region
            .clone()
            .or_else(|| Some(config.home_region().to_string())),
        member_role: config.hub.member_role.clone(),
        external_id: config.hub.external_id.clone(),
        profile: global.profile.clone(),
        ..shared::aws::AwsOptions::default()
    };
    match shared::aws::ClientFactory::new(options).await {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("error: {e}");
            None
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
