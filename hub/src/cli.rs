//! Command-line definitions (clap only; behaviour lives in `commands`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::logging::LogFormat;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (status: everything is as declared)
  1  failure: an account failed, or input could not be read
  2  usage or configuration error (bad flag, bad config file, bad pattern)
  3  drift: `hub status` found something missing or changed
  plan --detailed-exitcode: 0 no changes, 2 changes to make, 1 error (as Terraform)";

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
    /// Result format on stdout. csv, ocsf and html are compliance reports of `hub status`.
    #[arg(long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Table or JSON, as `format` asks (a compliance report is a table run underneath).
    #[arg(skip)]
    pub output: Output,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// AWS region of the hub's own calls (default: from the AWS chain).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Named profile of ~/.aws/config and ~/.aws/credentials (as the AWS CLI's `--profile`;
    /// default: `AWS_PROFILE`, else `default`).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// How results are printed on stdout, as the commands see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Human-readable tables.
    #[default]
    Table,
    /// One JSON document with a `schema_version`.
    Json,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// One JSON document with a `schema_version`.
    Json,
    /// hub status: one row per account, region and rule (RFC 4180), for spreadsheets.
    Csv,
    /// hub status: OCSF 1.5 Compliance Findings (a JSON array), for security lakes and
    /// Security Hub.
    Ocsf,
    /// hub status: a self-contained HTML coverage report (accounts x rules heat map,
    /// drift list) to open in a browser.
    Html,
}

impl Format {
    /// The compliance report this asks for, `None` for a table or JSON.
    pub fn compliance(self) -> Option<crate::compliance::Format> {
        match self {
            Format::Table | Format::Json => None,
            Format::Csv => Some(crate::compliance::Format::Csv),
            Format::Ocsf => Some(crate::compliance::Format::Ocsf),
            Format::Html => Some(crate::compliance::Format::Html),
        }
    }

    pub fn output(self) -> Output {
        match self {
            Format::Json => Output::Json,
            _ => Output::Table,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Ocsf => "ocsf",
            Format::Html => "html",
        }
    }
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
    /// Check the configuration offline, as `agent validate` does: hub.toml (every problem
    /// with file:line:col), the detection pack it selects and its `[[rule]]` tables, each
    /// rule's filter in the delivery mode's form (1,024 characters), and every rule's
    /// fixtures. Talks to no AWS API; exit 0 when valid, 2 otherwise.
    Validate,
    /// Check what AWS requires before the first write (who the hub is, CloudTrail trusted
    /// access, quotas, each account's member role and member stack) and say how to fix
    /// what is missing. Reads only; exit 0 when ready, 1 otherwise.
    Doctor(DoctorArgs),
    /// Keep the organisation as declared, event by event: enroll accounts as they join,
    /// offboard those that leave, repair what someone changed (from the control queue
    /// `hub enroll` deploys), with a periodic resync as the safety net. Runs until SIGTERM;
    /// `/healthz` and `/metrics` on --listen.
    Watch(WatchArgs),
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
    /// hub.central_account when that is not the hub's own), kms-key (the key policy statements CloudTrail
    /// and the log readers need when trail.kms_key_id is set), or scp (the service control policy,
    /// minified, that denies every principal of member accounts but the member role and the
    /// StackSets execution roles deleting, disabling or changing orgwatch's resources).
    #[arg(long = "for", value_name = "WHO", value_parser = ["hub", "agent", "member", "agent-member", "central", "kms-key", "scp"])]
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
    /// (`{"Records": [...]}`, gzip or not), or stdin. Exit 0 whether or not anything
    /// matched, 1 when an input cannot be read (the others are still tested), 2 for a bad
    /// pattern, rule id or configuration. JSON: `{"schema_version", "total", "matches"}`.
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
    /// plan: exit 0 when there is nothing to change, 2 when there is, 1 on an error (as
    /// `terraform plan -detailed-exitcode`).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// offboard: do not ask (needed when stdin is not a terminal: scripts and pipelines).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// plan/enroll/status: read every EventBridge rule's targets (ListTargetsByRule) rather
    /// than take the rules one ListRuleNamesByTarget lists under their declared target as
    /// declared: finds a role or id changed on a target that still points where it should.
    #[arg(long)]
    pub deep: bool,
}

impl ReconcileArgs {
    /// A flag given to a command it does nothing for is an error, not silently ignored:
    /// `--adopt` is for plan and enroll, `--delete-archive` for offboard,
    /// `--detailed-exitcode` for plan.
    pub fn misplaced_flag(&self, command: &str) -> Option<String> {
        let misplaced = [
            ("--adopt", self.adopt, ["plan", "enroll"].as_slice()),
            (
                "--delete-archive",
                self.delete_archive,
                ["offboard"].as_slice(),
            ),
            (
                "--detailed-exitcode",
                self.detailed_exitcode,
                ["plan"].as_slice(),
            ),
            ("--yes", self.yes, ["offboard"].as_slice()),
            ("--deep", self.deep, ["plan", "enroll", "status"].as_slice()),
        ];
        misplaced
            .into_iter()
            .find(|(_, given, for_)| *given && !for_.contains(&command))
            .map(|(flag, _, for_)| {
                format!(
                    "{flag} does nothing for hub {command} (it is for hub {})",
                    for_.join(" and hub ")
                )
            })
    }
}

/// Options of `watch`. Durations are written `90s`, `5m`, `6h`, `1d` (or seconds).
#[derive(Clone, Debug, Args)]
pub struct WatchArgs {
    /// Address of `/healthz` and `/metrics`.
    #[arg(long, default_value = "127.0.0.1:9108")]
    pub listen: std::net::SocketAddr,
    /// Full reconcile of every account and the central resources, at start and then this
    /// often: what a lost event can cost at most.
    #[arg(long, default_value = "6h", value_parser = duration)]
    pub resync: std::time::Duration,
    /// The organisation's accounts are compared with the enrolled ones this often
    /// (`ListAccounts`): joins and leaves recorded where no rule sees them.
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub membership: std::time::Duration,
    /// Events arriving within this window after the first are handled as one burst (one
    /// reconcile per account).
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub coalesce: std::time::Duration,
    /// Long-poll wait of each receive.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub poll: std::time::Duration,
    /// Lifetime of the lease; a standby replica takes over at most this long after the
    /// active one dies.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub lease_ttl: std::time::Duration,
    /// Visibility timeout of received events, extended while their reconcile runs: how
    /// soon a crashed replica's events come back.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub visibility: std::time::Duration,
    /// Skip the resync at start (the first one runs after --resync).
    #[arg(long)]
    pub no_initial_resync: bool,
}

/// `90s`, `5m`, `6h`, `1d`, `250ms`, `1h30m`, or a number of seconds: the flags' parser
/// (`shared::time::parse_duration_or_seconds`: the agent's grammar, plus bare seconds,
/// which these flags have always taken).
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    shared::time::parse_duration_or_seconds(s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(duration("5m"), Ok(std::time::Duration::from_secs(300)));
        assert_eq!(duration("6h"), Ok(std::time::Duration::from_secs(21_600)));
        assert_eq!(duration("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(duration("7"), Ok(std::time::Duration::from_secs(7)));
        assert_eq!(duration("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert!(duration("soon").is_err());
        assert!(duration("5w").is_err());
    }
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    fn args(adopt: bool, delete_archive: bool, detailed_exitcode: bool) -> ReconcileArgs {
        ReconcileArgs {
            account: Vec::new(),
            concurrency: None,
            delete_archive,
            adopt,
            detailed_exitcode,
            yes: false,
            deep: false,
        }
    }

    #[test]
    fn flags_that_do_nothing_for_a_command_are_refused() {
        assert_eq!(args(true, false, true).misplaced_flag("plan"), None);
        assert_eq!(args(true, false, false).misplaced_flag("enroll"), None);
        assert_eq!(args(false, true, false).misplaced_flag("offboard"), None);
        let why = args(true, false, false)
            .misplaced_flag("status")
            .unwrap_or_default();
        assert!(why.contains("--adopt does nothing for hub status"), "{why}");
        assert!(args(false, true, false).misplaced_flag("plan").is_some());
        assert!(args(false, false, true).misplaced_flag("enroll").is_some());
        let yes = ReconcileArgs {
            yes: true,
            ..args(false, false, false)
        };
        assert_eq!(yes.misplaced_flag("offboard"), None);
        assert!(yes.misplaced_flag("enroll").is_some());
        let deep = ReconcileArgs {
            deep: true,
            ..args(false, false, false)
        };
        for command in ["plan", "enroll", "status"] {
            assert_eq!(deep.misplaced_flag(command), None, "{command}");
        }
        // Offboard reads every target anyway: --deep would do nothing.
        assert!(deep.misplaced_flag("offboard").is_some());
    }
}
