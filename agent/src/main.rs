//! `agent`: consume the central alert queue, decode, deduplicate, group and deliver.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::logging::LogFormat;

const EXIT_CODES: &str = "\
Exit codes:
  0  clean shutdown (SIGTERM/SIGINT after draining), or a valid configuration
  1  runtime failure (the queue cannot be reached at start, a sink's healthcheck failed)
  2  usage or configuration error";

/// Consume orgwatch's central SQS queue and deliver each incident once, grouped across
/// accounts, to Slack, PagerDuty, webhooks and other destinations.
#[derive(Debug, Parser)]
#[command(name = "agent", version, after_help = EXIT_CODES, after_long_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "ORGWATCH_AGENT_CONFIG",
        default_value = "agent.toml"
    )]
    config: PathBuf,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service until SIGTERM.
    Run,
    /// Check the configuration (syntax, keys, values, references, ${VAR}s) and exit 0 or 2.
    #[command(alias = "check")]
    Validate,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    shared::logging::init(cli.global.log_format, cli.global.verbose, cli.global.quiet);
    match cli.command {
        Command::Run => {
            tracing::error!(config = %cli.global.config.display(), "the agent pipeline is not implemented yet");
            ExitCode::from(1)
        }
        Command::Validate => validate(&cli.global),
    }
}

/// `agent validate`: every problem on stderr (or in the JSON result), exit 0 or 2.
fn validate(global: &GlobalArgs) -> ExitCode {
    let path = &global.config;
    let result = agent::config::load(path);
    match global.output {
        Output::Json => {
            let errors: Vec<String> = match &result {
                Ok(_) => Vec::new(),
                Err(errs) => errs.iter().map(ToString::to_string).collect(),
            };
            let doc = serde_json::json!({
                "schema_version": 1,
                "config": path.display().to_string(),
                "valid": errors.is_empty(),
                "errors": errors,
            });
            println!("{doc}");
        }
        Output::Table => match &result {
            Ok(cfg) => println!(
                "{}: valid ({} sinks, {} routes)",
                path.display(),
                cfg.sinks.len(),
                cfg.routes.len()
            ),
            Err(errs) => {
                for e in errs {
                    eprintln!("error: {e}");
                }
                eprintln!("{}: {} problem(s)", path.display(), errs.len());
            }
        },
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
