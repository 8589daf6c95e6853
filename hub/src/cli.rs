//! Command-line definitions (clap only; behaviour lives in `commands`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::logging::LogFormat;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (status: everything is as declared)
  1  failure: an account failed, or input could not be read
  2  usage or configuration error (bad flag, bad config file, bad pattern)
  3  drift: `hub status` found something missing or changed";

/// Watch a whole AWS Organization for root-user activity and the other CIS monitoring
/// events: set up the organisation trail, the central bucket, topic and queue, and the
/// metric filters and alarms of the detection pack in every member account.
#[derive(Debug, Parser)]
#[command(name = "hub", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "ORGWATCH_HUB_CONFIG",
        default_value = "hub.toml"
    )]
    pub config: PathBuf,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// AWS region of the hub's own calls (default: from the AWS chain).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// How results are printed on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    Table,
    /// One JSON document with a `schema_version`.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `enroll` would change, per account and region. Changes nothing.
    Plan(ReconcileArgs),
    /// Converge the organisation to the declared state (a second run writes nothing).
    Enroll(ReconcileArgs),
    /// Drift detection: exit 0 when everything is as declared, 3 otherwise.
    Status(ReconcileArgs),
    /// Remove what orgwatch created (only that); the archive bucket stays unless
    /// --delete-archive.
    Offboard(ReconcileArgs),
    /// Work with the detection pack: list, show, test patterns, verify fixtures.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Backtest the detection pack over archived CloudTrail log files: what each rule would
    /// have caught, per account.
    Replay(ReplayArgs),
    /// Print the least-privilege IAM policy of the hub, the agent or the member role,
    /// derived from the calls orgwatch makes (names from the configuration, if present).
    Policy(PolicyArgs),
    /// Check what AWS requires before the first write (who the hub is, CloudTrail trusted
    /// access, quotas, each account's member role and member stack) and say how to fix
    /// what is missing. Reads only; exit 0 when ready, 1 otherwise.
    Doctor(DoctorArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Options of `policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Whose policy: hub, agent, member (the hub's role in members), agent-member (the
    /// agent's read-only role in members), central (the member role's extra policy in
    /// hub.central_account when that is not the hub's own), or kms-key (the key policy statements CloudTrail
    /// and the log readers need when trail.kms_key_id is set).
    #[arg(long = "for", value_name = "WHO", value_parser = ["hub", "agent", "member", "agent-member", "central", "kms-key"])]
    pub principal: String,
    /// The agent's DynamoDB dedupe table (default: any table named orgwatch-*).
    #[arg(long, value_name = "TABLE")]
    pub dedupe_table: Option<String>,
    /// Topic ARN of one of the agent's `sns` sinks (repeatable); without any, the agent
    /// may publish nowhere.
    #[arg(long = "sns-topic", value_name = "ARN")]
    pub sns_topics: Vec<String>,
    /// kms-key: the organisation's management account, which owns the organisation trail.
    #[arg(long, value_name = "ID")]
    pub management_account: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List the rules of the configured pack.
    List,
    /// Show one rule in full.
    Show {
        /// Rule id, e.g. cis-4.3.
        id: String,
    },
    /// Match log events against rules or a pattern. Reads JSON lines, CloudTrail log files
    /// (`{"Records": [...]}`, gzip or not), or stdin.
    Test {
        /// Only this rule.
        #[arg(long, conflicts_with = "pattern")]
        rule: Option<String>,
        /// An ad-hoc filter pattern instead of the pack.
        #[arg(long)]
        pattern: Option<String>,
        /// Input files; none or `-` reads stdin.
        files: Vec<PathBuf>,
    },
    /// Run every rule's fixtures; exit 1 on any failure.
    Verify,
}

/// Options of plan, enroll, status and offboard.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Only this account (repeatable). Central resources are then only checked.
    #[arg(long, value_name = "ID")]
    pub account: Vec<String>,
    /// Accounts processed at once (default: hub.concurrency, 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// offboard: also delete the archive bucket and every log file in it.
    #[arg(long)]
    pub delete_archive: bool,
    /// plan/enroll: take over resources that have orgwatch's names but not its
    /// `orgwatch:managed=true` tag (tag them, then converge them). Without it they are
    /// conflicts: left untouched, and their account fails.
    #[arg(long)]
    pub adopt: bool,
}

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this account (repeatable); the organisation-wide checks always run.
    #[arg(long, value_name = "ID")]
    pub account: Vec<String>,
}

/// Options of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Log files, directories (searched recursively) or s3://BUCKET/PREFIX in the central
    /// bucket layout (AWSLogs/<org-id>/<account>/CloudTrail/<region>/YYYY/MM/DD/).
    #[arg(required = true, value_name = "PATH|s3://BUCKET/PREFIX")]
    pub sources: Vec<String>,
    /// First day of events to count (YYYY-MM-DD, UTC); also prunes S3 listings by key prefix.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Last day of events to count (YYYY-MM-DD, UTC, inclusive).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Files fetched and evaluated at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}
