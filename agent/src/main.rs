//! `agent`: consume the central alert queue, decode, deduplicate, group and deliver.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::logging::LogFormat;

/// mimalloc instead of glibc's malloc: the pipeline allocates and frees many small strings
/// per alert, and the pipeline bench (which uses the same allocator) spent a third of its
/// time in glibc's malloc, free and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a second SIGTERM/SIGINT during the drain (128 + SIGINT, as shells report an
/// interrupted program).
const FORCED_EXIT: i32 = 130;

const EXIT_CODES: &str = "\
Exit codes:
  0  clean shutdown (SIGTERM/SIGINT after draining), or a valid configuration
  1  runtime failure (the queue cannot be reached at start, a sink's healthcheck failed,
     the dedupe store cannot be reached)
  2  usage or configuration error (also: test-sink of a sink not configured, silence
     expire of an id no silence has)
  health: 0 the agent answered 200, 1 it did not (or cannot be reached), 2 bad config
130  a second SIGTERM/SIGINT during the drain: stopped at once (unacknowledged messages
     return to the queue after their visibility timeout)";

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
    /// Named profile of ~/.aws/config and ~/.aws/credentials (as the AWS CLI's `--profile`;
    /// default: `AWS_PROFILE`, else `default`).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
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
    /// The dead-letter queue of every configured queue: what is there and why, and moving
    /// it back after a fix.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Send one clearly marked test notification to the sink NAME and report its answer
    /// (exit 0 when it took it, 1 when it did not, 2 for a sink that is not configured). A
    /// heartbeat sink is called once.
    TestSink {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Ask a running agent's /healthz (or /readyz with --ready) and exit 0 when it answers
    /// 200, 1 otherwise: the container image's HEALTHCHECK (distroless has no shell or
    /// curl). The address is the configuration's `server.listen` (an unspecified address
    /// such as 0.0.0.0 is asked on loopback) unless --address.
    Health {
        /// HOST:PORT to ask instead (e.g. `hub watch`'s 127.0.0.1:9108).
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<std::net::SocketAddr>,
        /// Ask /readyz (consuming, not draining) instead of /healthz (the process is up).
        #[arg(long)]
        ready: bool,
    },
    /// Silences, as Alertmanager's: keep the alerts a matcher selects from every sink for a
    /// while. Kept in the dedupe store (`dedupe.store`), so every replica sharing it applies
    /// them; a running agent reads them every `dedupe.silence_refresh`.
    #[command(subcommand)]
    Silence(SilenceCommand),
}

#[derive(Debug, Subcommand)]
enum SilenceCommand {
    /// Silence the alerts every --match selects (a key given twice matches either value),
    /// for --for, saying why; prints the new silence's id and its end. Exit 0, 1 (the store
    /// cannot be reached), 2 (a bad argument: each one named).
    Add {
        /// KEY=VALUE, KEY one of rule, severity, account, region (as a route's `match`);
        /// at least one (a silence of every alert is refused).
        #[arg(long = "match", value_name = "KEY=VALUE")]
        matches: Vec<String>,
        /// How long, e.g. "2h", "30m", "1d12h" (at most 30 days).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why, and for what (required, as in Alertmanager).
        #[arg(long, value_name = "TEXT")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
    },
    /// The active and pending silences (--all: the ended ones still stored too). Exit 0, 1.
    List {
        #[arg(long)]
        all: bool,
    },
    /// End silence ID now; it stays listed (--all) as expired for five days. Exit 0 (ended,
    /// or ended already), 1 (the store cannot be reached), 2 (no silence has that id).
    Expire {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count the dead-lettered messages by reason (`orgwatch.reason`), per region.
    List,
    /// Move dead-lettered messages back to their queue (all, or those whose reason contains
    /// --reason); the dedupe store keeps sinks that already had an incident from a repeat.
    Redrive {
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
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
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            runtime.block_on(run(&cli.global))
        }
        Command::Dlq(cmd) => {
            shared::pipe::end_quietly_on_closed_pipe();
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            runtime.block_on(dlq(&cli.global, &cmd))
        }
        Command::Silence(cmd) => {
            shared::pipe::end_quietly_on_closed_pipe();
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            runtime.block_on(silence(&cli.global, &cmd))
        }
        Command::TestSink { name } => {
            shared::pipe::end_quietly_on_closed_pipe();
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            runtime.block_on(test_sink(&cli.global, &name))
        }
        Command::Validate => {
            // A printing command: a closed reader ends it quietly (`run` keeps SIGPIPE
            // ignored and handles a closed stdout sink as a failing sink).
            shared::pipe::end_quietly_on_closed_pipe();
            validate(&cli.global)
        }
        Command::Health { address, ready } => {
            shared::pipe::end_quietly_on_closed_pipe();
            health(&cli.global, address, ready)
        }
    }
}

/// `agent health`: one HTTP/1.0 GET of /healthz or /readyz, 3 s at most.
fn health(global: &GlobalArgs, address: Option<std::net::SocketAddr>, ready: bool) -> ExitCode {
    use std::io::{Read, Write};
    let addr = match address {
        Some(a) => a,
        None => match agent::config::load(&global.config) {
            Ok(c) => agent::ops::probe_address(c.listen),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return ExitCode::from(2);
            }
        },
    };
    let path = if ready { "/readyz" } else { "/healthz" };
    let timeout = std::time::Duration::from_secs(3);
    let answer = std::net::TcpStream::connect_timeout(&addr, timeout).and_then(|mut s| {
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut buf = Vec::new();
        s.take(4096).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    });
    match answer {
        Ok(text) => {
            let status = text.lines().next().unwrap_or_default();
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
            if status.split_whitespace().nth(1) == Some("200") {
                println!("{addr}{path}: {body}");
                ExitCode::SUCCESS
            } else {
                eprintln!("error: {addr}{path} answered {status:?}: {body}");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {addr}{path}: {e} (is the agent running, listening there?)");
            ExitCode::from(1)
        }
    }
}

/// The async runtime of the commands that talk to AWS; exit 1 when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the async runtime");
            ExitCode::from(1)
        })
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
                eprintln!(
                    "{}: {}",
                    path.display(),
                    shared::text::plural(errs.len() as u64, "problem", "problems")
                );
            }
        },
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// The configuration of a one-shot command; its problems on stderr and exit 2.
fn load_config(global: &GlobalArgs) -> Result<agent::config::Config, ExitCode> {
    agent::config::load(&global.config).map_err(|errs| {
        for e in errs {
            eprintln!("error: {e}");
        }
        ExitCode::from(2)
    })
}

/// The AWS access of a one-shot command (the queue's region, the agent's session name);
/// exit 1 when it cannot be configured.
async fn cli_factory(
    global: &GlobalArgs,
    cfg: &agent::config::Config,
) -> Result<shared::aws::ClientFactory, ExitCode> {
    shared::aws::ClientFactory::new(shared::aws::AwsOptions {
        region: cfg.source.region.clone(),
        profile: global.profile.clone(),
        session_name: shared::naming::AGENT_SESSION_NAME.to_string(),
        ..shared::aws::AwsOptions::default()
    })
    .await
    .map_err(|e| {
        eprintln!("error: cannot configure AWS access: {e}");
        ExitCode::from(1)
    })
}

/// `agent test-sink NAME`: one delivery attempt of a test notification (Alertmanager's
/// `amtool` sends test alerts the same way), its outcome printed.
async fn test_sink(global: &GlobalArgs, name: &str) -> ExitCode {
    use agent::sinks::Outcome;
    let cfg = match load_config(global) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(spec) = cfg.sinks.iter().find(|s| s.name == name) else {
        let names: Vec<&str> = cfg.sinks.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "error: no sink is named {name:?} in {} (sinks: {})",
            global.config.display(),
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let http = agent::sinks::http::HttpClient::new();
    let outcome = if let agent::config::SinkKind::Heartbeat {
        url,
        post,
        interval,
    } = &spec.kind
    {
        agent::sinks::heartbeat::Heartbeat {
            url: url.clone(),
            post: *post,
            interval: *interval,
            timeout: spec.timeout,
            http: http.clone(),
        }
        .beat("test")
        .await
    } else {
        let aws = if matches!(spec.kind, agent::config::SinkKind::Sns { .. }) {
            match cli_factory(global, &cfg).await {
                Ok(f) => Some(f.home()),
                Err(code) => return code,
            }
        } else {
            None
        };
        let sink = match agent::sinks::Sink::build(spec, &http, aws.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        match sink.healthcheck().await {
            Err(e) => Outcome::Reject(format!("healthcheck: {e}")),
            Ok(()) => sink.deliver(&agent::sinks::test_notification()).await,
        }
    };
    let (status, reason) = match &outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Retry(r) | Outcome::RetryAfter(r, _) => {
            ("failed, would be retried", Some(r.clone()))
        }
        Outcome::Reject(r) => ("rejected", Some(r.clone())),
    };
    match global.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "schema_version": 1,
                "sink": spec.name,
                "type": spec.kind.type_name(),
                "outcome": outcome.kind(),
                "reason": reason,
            })
        ),
        Output::Table => match &reason {
            None => println!("{} ({}): {status}", spec.name, spec.kind.type_name()),
            Some(r) => println!("{} ({}): {status}: {r}", spec.name, spec.kind.type_name()),
        },
    }
    if outcome == Outcome::Delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The silences of the configured store: the file beside the file store's database (the
/// running agent holds the database's lock, not this file's), or the DynamoDB table every
/// replica shares. (The memory store is no configuration's: it lives in one process, which
/// this command could not reach.) Exit 1 when the table cannot be used.
async fn silence_store(
    global: &GlobalArgs,
    cfg: &agent::config::Config,
) -> Result<Box<dyn agent::dedupe::SilenceStore>, ExitCode> {
    use agent::config::StoreSpec;
    match &cfg.dedupe.store {
        StoreSpec::File { path } => Ok(Box::new(agent::dedupe::SilenceFile::new(
            agent::dedupe::silences_path(path),
        ))),
        StoreSpec::DynamoDb { table } => {
            let factory = cli_factory(global, cfg).await?;
            agent::dedupe::DynamoStore::connect(
                factory.home().dynamodb(),
                table,
                cfg.dedupe.retention,
            )
            .await
            .map(|s| Box::new(s) as Box<dyn agent::dedupe::SilenceStore>)
            .map_err(|e| {
                eprintln!("error: {e}");
                ExitCode::from(1)
            })
        }
    }
}

/// The rule ids `--match rule=` is checked against: every built-in rule and the
/// configuration's own.
fn known_rules(cfg: &agent::config::Config) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for pack in [shared::rules::Pack::every_builtin(), cfg.classify.pack()]
        .into_iter()
        .flatten()
    {
        for r in pack.rules() {
            if !ids.contains(&r.id) {
                ids.push(r.id.clone());
            }
        }
    }
    ids
}

/// `agent silence add|list|expire`.
async fn silence(global: &GlobalArgs, cmd: &SilenceCommand) -> ExitCode {
    use agent::silence::{Expired, Request, Silence, Status};
    let cfg = match load_config(global) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let now = agent::runtime::now_ms();
    let row = |s: &Silence| {
        format!(
            "{:<36}  {:<7}  {:<24}  {:<24}  {}  {}: {}",
            s.id,
            s.status(now).as_str(),
            agent::model::format_timestamp(s.starts_at_ms),
            agent::model::format_timestamp(s.ends_at_ms),
            s.describe(),
            s.created_by,
            s.comment
        )
    };
    match cmd {
        SilenceCommand::Add {
            matches,
            duration,
            comment,
            author,
        } => {
            let user = author
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .unwrap_or_else(|| "unknown".into());
            let rules = known_rules(&cfg);
            let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
            let req = Request {
                matches,
                duration,
                comment,
                author: &user,
            };
            let silence = match agent::silence::build(&req, &rules, now) {
                Ok((s, warnings)) => {
                    for w in warnings {
                        eprintln!("warning: {w}");
                    }
                    s
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let store = match silence_store(global, &cfg).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Err(e) = store.add_silence(&silence, now).await {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
            match global.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"schema_version": 1, "silence": silence.to_json(now)})
                ),
                Output::Table => println!(
                    "{}  until {}  {}",
                    silence.id,
                    agent::model::format_timestamp(silence.ends_at_ms),
                    silence.describe()
                ),
            }
            eprintln!(
                "a running agent applies it within {:?} (dedupe.silence_refresh)",
                cfg.dedupe.silence_refresh
            );
            ExitCode::SUCCESS
        }
        SilenceCommand::List { all } => {
            let store = match silence_store(global, &cfg).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let stored = match store.silences().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            let shown: Vec<&Silence> = stored
                .iter()
                .filter(|s| *all || s.status(now) != Status::Expired)
                .collect();
            match global.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "schema_version": 1,
                        "silences": shown.iter().map(|s| s.to_json(now)).collect::<Vec<_>>(),
                    })
                ),
                Output::Table if shown.is_empty() => println!(
                    "no {}silences",
                    if *all { "" } else { "active or pending " }
                ),
                Output::Table => {
                    println!(
                        "{:<36}  {:<7}  {:<24}  {:<24}  MATCH  CREATED BY: COMMENT",
                        "ID", "STATUS", "STARTS", "ENDS"
                    );
                    for s in shown {
                        println!("{}", row(s));
                    }
                }
            }
            ExitCode::SUCCESS
        }
        SilenceCommand::Expire { id } => {
            let store = match silence_store(global, &cfg).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let id = id.trim();
            let (silence, ended) = match store.expire_silence(id, now).await {
                Ok(Expired::Ended(s)) => (s, true),
                Ok(Expired::AlreadyEnded(s)) => (s, false),
                Ok(Expired::NotFound) => {
                    eprintln!(
                        "error: no silence has the id {id:?} (agent silence list --all shows every stored one)"
                    );
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            match global.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "schema_version": 1,
                        "silence": silence.to_json(now),
                        "expired_now": ended,
                    })
                ),
                Output::Table if ended => println!(
                    "{}  expired at {}",
                    silence.id,
                    agent::model::format_timestamp(silence.ends_at_ms)
                ),
                Output::Table => println!(
                    "{}  had ended already, at {}",
                    silence.id,
                    agent::model::format_timestamp(silence.ends_at_ms)
                ),
            }
            ExitCode::SUCCESS
        }
    }
}

/// `agent dlq list|redrive`.
async fn dlq(global: &GlobalArgs, cmd: &DlqCommand) -> ExitCode {
    use agent::source::dlq;
    let cfg = match load_config(global) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let factory = match cli_factory(global, &cfg).await {
        Ok(f) => f,
        Err(code) => return code,
    };
    let mut report = Vec::new();
    let mut failed = false;
    for region in queue_regions(&cfg, &factory) {
        let client = factory.home().in_region(&region).sqs();
        let source = match agent::source::sqs::SqsSource::connect(
            client.clone(),
            &cfg.source.queue,
            cfg.source.long_poll,
            cfg.source.visibility,
            true,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {region}: {e}");
                failed = true;
                continue;
            }
        };
        let Some(dlq_url) = source.dlq_url().map(str::to_string) else {
            eprintln!(
                "error: {region}: queue {} has no redrive policy, so no dead-letter queue",
                source.queue_url()
            );
            failed = true;
            continue;
        };
        let dead = match dlq::receive_all(&client, &dlq_url, 60).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {region}: {dlq_url}: {e}");
                failed = true;
                continue;
            }
        };
        let reasons = dlq::by_reason(&dead);
        let mut moved = 0usize;
        match cmd {
            DlqCommand::List => dlq::release(&client, &dlq_url, &dead).await,
            DlqCommand::Redrive { reason } => {
                let (take, keep): (Vec<_>, Vec<_>) = dead
                    .into_iter()
                    .partition(|d| reason.as_deref().is_none_or(|r| d.reason.contains(r)));
                for d in &take {
                    match dlq::redrive_one(&client, &dlq_url, source.queue_url(), d).await {
                        Ok(()) => moved += 1,
                        Err(e) => {
                            eprintln!("error: {region}: {e}");
                            failed = true;
                        }
                    }
                }
                dlq::release(&client, &dlq_url, &keep).await;
            }
        }
        report.push(serde_json::json!({
            "region": region,
            "queue": source.queue_url(),
            "dead_letter_queue": dlq_url,
            "reasons": reasons,
            "total": reasons.values().sum::<usize>(),
            "redriven": moved,
        }));
    }
    match global.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"schema_version": 1, "queues": report})
        ),
        Output::Table => {
            for q in &report {
                println!(
                    "{}  {}  {}{}",
                    q["region"].as_str().unwrap_or_default(),
                    q["dead_letter_queue"].as_str().unwrap_or_default(),
                    shared::text::plural(q["total"].as_u64().unwrap_or(0), "message", "messages"),
                    match cmd {
                        DlqCommand::Redrive { .. } => format!(", {} moved back", q["redriven"]),
                        DlqCommand::List => String::new(),
                    }
                );
                if let Some(reasons) = q["reasons"].as_object() {
                    for (reason, n) in reasons {
                        println!("  {n:>6}  {reason}");
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The regions whose queue is read: `[source] regions`, else the queue URL's, else
/// `region` or the AWS chain's.
fn queue_regions(cfg: &agent::config::Config, factory: &shared::aws::ClientFactory) -> Vec<String> {
    if cfg.source.regions.is_empty() {
        // A queue URL says its region in its host (sqs.<region>.amazonaws.com, or the
        // legacy <region>.queue.amazonaws.com); otherwise `region` or the AWS chain's.
        vec![
            agent::source::sqs::region_of_url(&cfg.source.queue)
                .unwrap_or_else(|| factory.region()),
        ]
    } else {
        cfg.source.regions.clone()
    }
}

/// `agent run`: validate, build (queue, store, pack, sinks, ops endpoint), then consume until
/// SIGTERM/SIGINT and drain.
async fn run(global: &GlobalArgs) -> ExitCode {
    use std::sync::Arc;
    use std::time::Duration;

    use agent::config::StoreSpec;
    use agent::dedupe::{DynamoStore, FileStore, Store};

    let mut cfg = match agent::config::load(&global.config) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                tracing::error!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    let factory = match shared::aws::ClientFactory::new(shared::aws::AwsOptions {
        region: cfg.source.region.clone(),
        session_name: shared::naming::AGENT_SESSION_NAME.to_string(),
        member_role: cfg.enrich.member_role.clone(),
        external_id: cfg.enrich.external_id.clone(),
        profile: global.profile.clone(),
        ..shared::aws::AwsOptions::default()
    })
    .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure AWS access");
            return ExitCode::from(1);
        }
    };
    let home = factory.home();
    let store = match &cfg.dedupe.store {
        StoreSpec::File { path } => match FileStore::open(path) {
            Ok(s) => Arc::new(s) as Store,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the dedupe store");
                return ExitCode::from(1);
            }
        },
        StoreSpec::DynamoDb { table } => {
            match DynamoStore::connect(home.dynamodb(), table, cfg.dedupe.retention).await {
                Ok(s) => Arc::new(s) as Store,
                Err(e) => {
                    tracing::error!(error = %e, "cannot use the dedupe table");
                    return ExitCode::from(1);
                }
            }
        }
    };
    // One queue per region of `[source] regions` (the hub creates one in every monitored
    // region), or the one queue of `region` / the AWS chain.
    let regions = queue_regions(&cfg, &factory);
    let mut queues = Vec::new();
    for region in &regions {
        match agent::source::sqs::SqsSource::connect(
            home.in_region(region).sqs(),
            &cfg.source.queue,
            cfg.source.long_poll,
            cfg.source.visibility,
            cfg.source.allow_no_redrive,
        )
        .await
        {
            Ok(s) => queues.push((region.clone(), s)),
            Err(e) => {
                tracing::error!(region = %region, error = %e, "cannot reach the queue");
                return ExitCode::from(1);
            }
        }
    }
    // With replicas (the shared store), a message whose incident another replica is
    // delivering is held back until that claim ends, then received again: one receive for
    // the first look and one after the claim, so a redrive policy must allow a third
    // before it dead-letters a live alert.
    if store.shared() {
        for (region, q) in &queues {
            if let Some(n) = q.max_receives().filter(|n| *n < 3) {
                tracing::error!(
                    region = %region,
                    queue = %q.queue_url(),
                    max_receive_count = n,
                    "with several replicas (dedupe.store = \"dynamodb\") the queue's redrive policy needs maxReceiveCount of at least 3: a message held back while another replica delivers its incident is received twice before it is done (set alerts.max_receive_count in hub.toml and run hub enroll)"
                );
                return ExitCode::from(1);
            }
        }
    }
    let queue_urls: Vec<String> = queues
        .iter()
        .map(|(_, s)| s.queue_url().to_string())
        .collect();
    let source = Arc::new(agent::source::regional::Regional::new(queues));
    // Every region keeps a receiver long-polling it.
    cfg.source.concurrency = cfg.source.concurrency.max(regions.len());
    // The rules: what the hub deployed (`[rules] manifest`), unless `[classify] pack` says
    // otherwise; without a manifest, the agent's own `[classify]` selection.
    let mut manifest_reader = None;
    let first: Arc<dyn agent::classify::RuleCatalog> = match &cfg.manifest {
        Some(spec) if !cfg.classify.explicit_pack => {
            let region = spec.region.clone().unwrap_or_else(|| home.region());
            let mut reader =
                agent::manifest::ManifestReader::new(home.in_region(&region).s3(), spec.clone());
            let url = reader.url();
            let loaded = match reader.fetch().await {
                Ok(Some(m)) => agent::manifest::catalog(&m, &url, &cfg.classify).map(|c| (c, m)),
                Ok(None) => Err(format!("{url}: no manifest")),
                Err(e) => Err(e),
            };
            match loaded {
                Ok((c, m)) => {
                    tracing::info!(manifest = %url, rules = m.rules.len(), "classifying by the rules the hub deployed");
                    manifest_reader = Some(reader);
                    Arc::new(c)
                }
                Err(e) => {
                    tracing::error!(manifest = %url, error = %e, "cannot load the rule manifest (written by hub enroll; the agent needs s3:GetObject on it: hub policy --for agent)");
                    return ExitCode::from(1);
                }
            }
        }
        other => {
            if other.is_some() {
                tracing::warn!(
                    "[classify] pack is set: it overrides the rule manifest, and the agent classifies by its own selection of built-in rules"
                );
            }
            match cfg.classify.pack() {
                Ok(pack) => Arc::new(agent::classify::PackCatalog::new(pack)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the detection pack");
                    return ExitCode::from(1);
                }
            }
        }
    };
    let swap = Arc::new(agent::classify::SwapCatalog::new(first));
    let catalog: Arc<dyn agent::classify::RuleCatalog> = swap.clone();
    let enricher: Option<Arc<dyn agent::enrich::Enricher>> = if cfg.enrich.enabled {
        Some(Arc::new(agent::enrich::LogsEnricher::new(
            factory.clone(),
            cfg.enrich.log_group.clone(),
            agent::enrich::Limits {
                timeout: cfg.enrich.timeout,
                max_events: cfg.enrich.max_events,
                lookback: cfg.enrich.lookback,
            },
            catalog.clone(),
        )))
    } else {
        None
    };
    let http = agent::sinks::http::HttpClient::new();
    let mut sinks = Vec::new();
    for spec in &cfg.sinks {
        let sink = match agent::sinks::Sink::build(spec, &http, Some(&home)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a sink");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = sink.healthcheck().await {
            tracing::error!(sink = %spec.name, error = %e, "sink healthcheck failed");
            return ExitCode::from(1);
        }
        sinks.push(Arc::new(sink));
    }
    let metrics = Arc::new(agent::metrics::Metrics::new(
        cfg.sinks.iter().map(|s| s.name.clone()),
    ));
    for spec in &cfg.sinks {
        if let agent::config::SinkKind::Heartbeat {
            url,
            post,
            interval,
        } = &spec.kind
        {
            let beat = agent::sinks::heartbeat::Heartbeat {
                url: url.clone(),
                post: *post,
                interval: *interval,
                timeout: spec.timeout,
                http: http.clone(),
            };
            tokio::spawn(beat.run(spec.name.clone(), metrics.clone(), cfg.source.long_poll));
        }
    }
    if let (Some(reader), Some(spec)) = (manifest_reader, &cfg.manifest) {
        tokio::spawn(agent::manifest::poll(
            reader,
            cfg.classify.clone(),
            swap,
            metrics.clone(),
            spec.poll,
        ));
    }
    let ops = Arc::new(agent::ops::OpsState {
        ready: Default::default(),
        metrics: metrics.clone(),
    });
    let listen = match agent::ops::serve(cfg.listen, ops.clone()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(listen = %cfg.listen, error = %e, "cannot listen");
            return ExitCode::from(1);
        }
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ops_signal = ops.clone();
    tokio::spawn(async move {
        let mut signals = shared::ops::Signals::new();
        signals.recv().await;
        ops_signal
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = tx.send(true);
        // A second signal does not wait for the drain: what is not acknowledged comes back
        // from the queue after its visibility timeout and is recognised by the dedupe store.
        signals.recv().await;
        tracing::warn!(
            "second signal while draining: stopping now; unacknowledged messages return to the queue"
        );
        std::process::exit(FORCED_EXIT);
    });
    tracing::info!(queue = %queue_urls.join(","), %listen, sinks = sinks.len(), "agent running");
    ops.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let pipeline = agent::runtime::Pipeline {
        config: cfg,
        store,
        catalog,
        sinks,
        metrics,
        drain: Duration::from_secs(30),
        enricher,
    };
    agent::runtime::run(source, pipeline, rx).await;
    factory.calls().append_call_log("agent");
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
