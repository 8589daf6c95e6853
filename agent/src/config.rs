//! `agent.toml`: the raw file as written, a pure [`validate`] that reports every problem at
//! once with its file:line:column, and the validated [`Config`] the runtime is built from.
//!
//! The raw structs keep the position of every value that needs checking beyond its type
//! (durations, rates, URLs, sink references), so that each problem names its line and
//! column. Sinks are one flat table in the file (`type = "webhook"` plus that type's keys)
//! and become the typed [`SinkKind`] enum during validation; a key that does not apply to
//! the sink's type is reported with its position, which a serde-tagged enum cannot do.
//!
//! Secrets (sink URLs, HMAC secrets, PagerDuty routing keys) are [`Secret`]s after
//! validation: their `Debug` prints `***`, and error messages name the key, never the value.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared::config::{ConfigError, expand_vars};
use shared::rules::{Selection, check_selected};
use toml::Spanned;

use crate::model::Severity;

/// A value that must never appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

// ---------------------------------------------------------------------------------------
// The file as written.

/// `agent.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub source: RawSource,
    #[serde(default)]
    pub dedupe: RawDedupe,
    #[serde(default)]
    pub group: RawGroup,
    /// Destinations. Without any, alerts go to stdout.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<RawSink>,
    /// Ordered routes; the first match wins unless it says `continue = true`.
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    /// Where alerts that match no route go. Without it: every sink when there are no
    /// routes, else nowhere (they are logged and counted as unrouted).
    #[serde(default)]
    pub default_route: Option<RawDefaultRoute>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub enrich: RawEnrich,
    #[serde(default)]
    pub classify: RawClassify,
    #[serde(default)]
    pub rules: RawRules,
}

/// `[rules]`: the rule manifest `hub enroll` writes in the central bucket, what the agent
/// classifies by.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// `s3://BUCKET/orgwatch/rules.json` (the hub's `trail.bucket`).
    #[serde(default)]
    pub manifest: Option<Spanned<String>>,
    /// The bucket's region; default: the agent's region.
    #[serde(default)]
    pub region: Option<String>,
    /// How often the manifest is checked for a change (default "5m", at least "10s").
    #[serde(default)]
    pub poll: Option<Spanned<String>>,
}

/// `[classify]`: the detection pack the agent evaluates (the hub's `monitoring.pack` and
/// `monitoring.disable`, with the same meaning).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassify {
    /// Built-in rule ids and packs (`"cis"`, `"seed"`, `"all"`); default `["all"]`.
    #[serde(default)]
    pub pack: Option<Vec<Spanned<String>>>,
    /// Built-in rule ids to leave out.
    #[serde(default)]
    pub disable: Option<Vec<Spanned<String>>>,
}

/// `[source]`: the central SQS queue.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Queue name (in the agent's own account) or queue URL.
    pub queue: Spanned<String>,
    /// Region of the queue; default from the AWS chain.
    #[serde(default)]
    pub region: Option<String>,
    /// Regions whose queue named `queue` is consumed (the hub creates a topic and a queue
    /// per monitored region); default: `region` alone.
    #[serde(default)]
    pub regions: Option<Spanned<Vec<String>>>,
    /// Start even when the queue has no redrive policy (default false).
    #[serde(default)]
    pub allow_no_redrive: Option<bool>,
    /// Concurrent long-poll receivers (default 2).
    #[serde(default)]
    pub concurrency: Option<Spanned<u32>>,
    /// Long-poll wait per receive (default "20s", at most "20s").
    #[serde(default)]
    pub long_poll: Option<Spanned<String>>,
    /// Visibility timeout given to in-flight messages, renewed at half of it (default "60s").
    #[serde(default)]
    pub visibility: Option<Spanned<String>>,
    /// Messages held in flight at most (default 1000); receiving pauses beyond it.
    #[serde(default)]
    pub max_in_flight: Option<Spanned<u32>>,
}

/// `[dedupe]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedupe {
    /// Alerts of one rule in one account and region within this window are one incident
    /// (default "15m").
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    /// `file` (default) or `dynamodb`.
    #[serde(default)]
    pub store: Option<Spanned<String>>,
    /// File of the `file` store (default `/var/lib/orgwatch/agent.db`).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Table of the `dynamodb` store.
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// How long delivery records are kept, so that late redeliveries are still recognised
    /// (default "24h"; at least the window).
    #[serde(default)]
    pub retention: Option<Spanned<String>>,
    /// How often the running agent reads the silences from the store (default "30s"; at
    /// least "1s").
    #[serde(default)]
    pub silence_refresh: Option<Spanned<String>>,
}

/// `[group]`, as in Alertmanager.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Labels alerts are grouped by: `rule`, `severity`, `account`, `region` (default `["rule"]`).
    #[serde(default)]
    pub by: Option<Spanned<Vec<String>>>,
    /// Wait before the first notification of a new group (default "30s").
    #[serde(default)]
    pub wait: Option<Spanned<String>>,
    /// Wait before notifying a group again about new alerts (default "5m").
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// Re-send a group whose alerts are all already notified after this long (default "4h").
    #[serde(default)]
    pub repeat: Option<Spanned<String>>,
}

/// One `[[sink]]` table: `name`, `type`, and the keys of that type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Steady delivery rate, e.g. "5/s", "100/m" (default per type).
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    /// Keep retrying a failing delivery this long before releasing the message back to the
    /// queue (default "5m").
    #[serde(default)]
    pub retry_for: Option<Spanned<String>>,
    /// Timeout of one delivery attempt (default "10s").
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// webhook, slack, pagerduty: endpoint URL (a secret for slack).
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// webhook, slack, pagerduty: allow plain HTTP to a non-loopback host.
    #[serde(default)]
    pub allow_http: Option<Spanned<bool>>,
    /// webhook: HMAC-SHA256 key for the signature header.
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
    /// webhook: name of the signature header (default `X-Orgwatch-Signature`).
    #[serde(default)]
    pub signature_header: Option<Spanned<String>>,
    /// pagerduty: Events API v2 integration (routing) key.
    #[serde(default)]
    pub routing_key: Option<Spanned<String>>,
    /// file: JSON-lines file to append to.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// sns: topic to publish to.
    #[serde(default)]
    pub topic_arn: Option<Spanned<String>>,
    /// heartbeat: how often the URL is called while the pipeline is healthy (default "60s").
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    /// heartbeat: "GET" (default) or "POST".
    #[serde(default)]
    pub method: Option<Spanned<String>>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    pub sinks: Spanned<Vec<String>>,
    /// Keep evaluating later routes after this one matched.
    #[serde(rename = "continue", default)]
    pub continue_: bool,
}

/// `[default_route]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultRoute {
    pub sinks: Spanned<Vec<String>>,
}

/// A route's `match = { ... }`; every given key must match, each against one value or a list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub rule: Option<OneOrMany>,
    #[serde(default)]
    pub severity: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub account: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub region: Option<OneOrMany>,
}

/// `"x"` or `["x", "y"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[server]`: the operations endpoint (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Listen address (default `127.0.0.1:9464`).
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
}

/// `[enrich]`: who / what / where for alarms, from the member accounts' log groups.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrich {
    /// Look up the CloudTrail events behind each firing alarm (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Role assumed in member accounts (default `orgwatch-agent-reader`, the read-only role of
    /// the member stack).
    #[serde(default)]
    pub member_role: Option<Spanned<String>>,
    /// External ID passed on `sts:AssumeRole` (`${VAR}` expanded).
    #[serde(default)]
    pub external_id: Option<Spanned<String>>,
    /// Log group read in member accounts (default `/orgwatch/cloudtrail`).
    #[serde(default)]
    pub log_group: Option<Spanned<String>>,
    /// Give up on one alarm's lookup after this (default "10s"); the alert goes out without.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// Log events examined per alarm at most (default 2000).
    #[serde(default)]
    pub max_events: Option<Spanned<u32>>,
    /// Also searched before the alarm's evaluation window, for log delivery delay
    /// (default "5m").
    #[serde(default)]
    pub lookback: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------
// The validated configuration.

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceSpec,
    pub dedupe: DedupeSpec,
    pub group: GroupSpec,
    pub sinks: Vec<SinkSpec>,
    pub routes: Vec<RouteSpec>,
    /// Indexes into `sinks` for alerts no route matched.
    pub default_sinks: Vec<usize>,
    pub listen: SocketAddr,
    pub enrich: EnrichSpec,
    pub classify: ClassifySpec,
    /// `[rules] manifest`: classify by the rules the hub deployed.
    pub manifest: Option<ManifestSpec>,
}

/// `[rules]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSpec {
    pub bucket: String,
    pub key: String,
    pub region: Option<String>,
    pub poll: Duration,
}

impl ManifestSpec {
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// `s3://bucket/key` into its parts (S3 user guide, "General purpose bucket naming rules":
/// 3 to 63 lowercase letters, digits, dots and hyphens).
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3://BUCKET/KEY URL"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url:?} names no object (s3://BUCKET/KEY)"))?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok {
        return Err(format!("{bucket:?} is not a valid S3 bucket name"));
    }
    if key.is_empty() || key.ends_with('/') {
        return Err(format!("{url:?} names no object (s3://BUCKET/KEY)"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// `[classify]`, validated: every id is a known built-in rule or pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifySpec {
    pub pack: Vec<String>,
    pub disable: Vec<String>,
    /// `pack` was written in the file (with a manifest, it then overrides the deployed
    /// selection).
    pub explicit_pack: bool,
}

impl Default for ClassifySpec {
    fn default() -> Self {
        ClassifySpec {
            pack: vec![shared::rules::PACK_ALL.to_string()],
            disable: Vec::new(),
            explicit_pack: false,
        }
    }
}

impl ClassifySpec {
    /// The selected built-in rules.
    pub fn pack(&self) -> Result<shared::rules::Pack, shared::rules::PackError> {
        shared::rules::Pack::from_config(
            &self.pack,
            &self.disable,
            &shared::rules::UserRules::none(),
        )
    }
}

/// `[enrich]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichSpec {
    pub enabled: bool,
    pub member_role: String,
    pub external_id: Option<String>,
    pub log_group: String,
    pub timeout: Duration,
    pub max_events: usize,
    pub lookback: Duration,
}

impl Default for EnrichSpec {
    fn default() -> Self {
        EnrichSpec {
            enabled: true,
            // The read-only role of the member stack, never the hub's powerful member role.
            member_role: shared::naming::AGENT_MEMBER_ROLE.to_string(),
            external_id: None,
            log_group: shared::naming::LOG_GROUP.to_string(),
            timeout: Duration::from_secs(10),
            max_events: 2000,
            lookback: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub queue: String,
    pub region: Option<String>,
    /// The regions whose queue is read; empty: `region` (or the AWS chain's) alone.
    pub regions: Vec<String>,
    pub allow_no_redrive: bool,
    pub concurrency: usize,
    pub long_poll: Duration,
    pub visibility: Duration,
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct DedupeSpec {
    pub window: Duration,
    pub retention: Duration,
    pub store: StoreSpec,
    /// How often the silences are read from the store.
    pub silence_refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    File { path: PathBuf },
    DynamoDb { table: String },
}

/// A label alerts can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupLabel {
    Rule,
    Severity,
    Account,
    Region,
}

impl GroupLabel {
    fn parse(s: &str) -> Option<GroupLabel> {
        Some(match s {
            "rule" => GroupLabel::Rule,
            "severity" => GroupLabel::Severity,
            "account" => GroupLabel::Account,
            "region" => GroupLabel::Region,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub by: Vec<GroupLabel>,
    pub wait: Duration,
    pub interval: Duration,
    pub repeat: Duration,
}

impl Default for GroupSpec {
    fn default() -> Self {
        GroupSpec {
            by: vec![GroupLabel::Rule],
            wait: Duration::from_secs(30),
            interval: Duration::from_secs(300),
            repeat: Duration::from_secs(4 * 3600),
        }
    }
}

/// A steady rate: `count` per `per`, with a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// The governor quota of this rate.
    pub fn quota(self) -> governor::Quota {
        let period = self.per / self.count.get();
        governor::Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

/// A validated sink.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub rate: Rate,
    pub retry_for: Duration,
    pub timeout: Duration,
    pub kind: SinkKind,
}

/// What a sink delivers to, by type.
#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File {
        path: PathBuf,
    },
    Webhook {
        url: Secret,
        secret: Option<Secret>,
        signature_header: String,
    },
    Slack {
        url: Secret,
    },
    PagerDuty {
        url: Secret,
        routing_key: Secret,
    },
    Sns {
        topic_arn: String,
    },
    /// A dead-man's switch, called every `interval` while the pipeline is healthy; it takes
    /// no alerts (no route may name it).
    Heartbeat {
        url: Secret,
        post: bool,
        interval: Duration,
    },
}

impl SinkKind {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Slack { .. } => "slack",
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Sns { .. } => "sns",
            SinkKind::Heartbeat { .. } => "heartbeat",
        }
    }

    /// Whether alerts can be routed to it.
    pub fn takes_alerts(&self) -> bool {
        !matches!(self, SinkKind::Heartbeat { .. })
    }
}

/// A validated route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub matcher: Matcher,
    /// Indexes into [`Config::sinks`].
    pub sinks: Vec<usize>,
    pub continue_: bool,
}

/// Conditions of a route (and of a silence, which stores it as JSON); an empty list means
/// "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region: Vec<String>,
}

/// Where the configuration file is: `--config`, else `$ORGWATCH_AGENT_CONFIG`, else
/// `./agent.toml` (clap applies that order).
pub const DEFAULT_PATH: &str = "agent.toml";
/// Default file of the `file` dedupe store.
pub const DEFAULT_STORE_PATH: &str = "/var/lib/orgwatch/agent.db";
/// Default operations listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// The listen address when the file gives none (the container image's way to listen on
/// all interfaces without a config of its own).
pub const LISTEN_ENV: &str = "ORGWATCH_LISTEN";
/// Default webhook signature header.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Orgwatch-Signature";
/// PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

const SINK_TYPES: &[&str] = &[
    "stdout",
    "file",
    "webhook",
    "slack",
    "pagerduty",
    "sns",
    "heartbeat",
];

// ---------------------------------------------------------------------------------------
// Parsing of units.

/// Durations: the one grammar of the agent's configuration, its silences and the hub's
/// flags (`humantime`'s, with the units ms, s, m, h and d; see there).
pub use shared::time::parse_duration;

/// Parses a rate such as `"5/s"`, `"100/m"` or `"1000/h"`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let invalid = || format!("invalid rate {text:?}: expected N/s, N/m or N/h, e.g. \"5/s\"");
    let (n, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
    let n: u32 = n.trim().parse().map_err(|_| invalid())?;
    let count = NonZeroU32::new(n).ok_or_else(|| format!("invalid rate {text:?}: must be > 0"))?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(invalid()),
    };
    Ok(Rate { count, per })
}

/// True for a loopback host name or address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks an endpoint URL: absolute, http(s), and HTTPS unless loopback or `allow_http`.
/// Messages never contain the URL (it may carry a token).
pub fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|_| "is not a valid URL".to_string())?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "must be an absolute URL with a host".to_string())?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http || is_loopback_host(host) => Ok(()),
        Some("http") => Err(format!(
            "must use https (plain http is allowed only to loopback, or with allow_http = true); host {host}"
        )),
        _ => Err("must be an http(s) URL".to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// Validation.

/// Parses `text` (the contents of `path`): syntax, types and unknown keys, located.
pub fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    shared::config::parse_toml(path, text)
}

/// Reads, parses and validates a configuration file against the process environment.
/// Every problem of the file comes in one run, in the file's order: each type or
/// unknown-key problem (with "did you mean"), then the checks beyond types on the rest.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![ConfigError::file(path, format!("cannot read: {e}"))])?;
    check(path, &text, &|k| std::env::var(k).ok())
}

/// [`load`] of a text already read.
pub fn check(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let (raw, mut errors) = shared::config::parse_toml_all::<RawConfig>(path, text);
    let Some(raw) = raw else {
        return Err(errors);
    };
    match validate(&raw, path, text, env) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            shared::config::sort(&mut errors);
            Err(errors)
        }
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err_at(&mut self, offset: usize, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.path, self.text, offset, message));
    }

    fn duration(&mut self, key: &str, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.err_at(s.span().start, format!("{key}: {e}"));
                    default
                }
            },
        }
    }

    /// `${VAR}` expansion; the message names the key and the variable, never the value.
    fn expand(&mut self, key: &str, v: &Spanned<String>) -> Option<String> {
        match expand_vars(v.get_ref(), self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err_at(v.span().start, format!("{key}: {e}"));
                None
            }
        }
    }
}

/// Validates a parsed configuration. Pure: no network, no files; the environment for
/// `${VAR}` comes from `env`. Reports every problem found, each located when possible.
pub fn validate(
    raw: &RawConfig,
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker {
        path,
        text,
        env,
        errors: Vec::new(),
    };

    // [source]
    let queue = c
        .expand("source.queue", &raw.source.queue)
        .unwrap_or_default();
    if queue.trim().is_empty() {
        c.err_at(
            raw.source.queue.span().start,
            "source.queue: must not be empty",
        );
    } else if queue.contains("://") {
        if let Err(e) = check_url(&queue, true) {
            c.err_at(raw.source.queue.span().start, format!("source.queue: {e}"));
        }
    } else if !queue
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
        || queue.len() > 80
    {
        c.err_at(
            raw.source.queue.span().start,
            "source.queue: a queue name has at most 80 characters: letters, digits, '-', '_' (and .fifo)",
        );
    }
    let regions: Vec<String> = match &raw.source.regions {
        None => Vec::new(),
        Some(list) => {
            let at = list.span().start;
            let mut seen = std::collections::BTreeSet::new();
            for r in list.get_ref() {
                let parts: Vec<&str> = r.split('-').collect();
                let well_formed = parts.len() >= 3
                    && parts.iter().all(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    });
                if !well_formed {
                    c.err_at(at, format!("source.regions: {r:?} is not a region"));
                } else if !seen.insert(r.clone()) {
                    c.err_at(at, format!("source.regions: {r:?} is listed twice"));
                }
            }
            if list.get_ref().is_empty() {
                c.err_at(
                    at,
                    "source.regions: list at least one region, or leave it out",
                );
            }
            if queue.contains("://") {
                c.err_at(
                    at,
                    "source.regions: a queue URL names one queue in one region; give the queue's name to read it in several",
                );
            }
            list.get_ref().clone()
        }
    };
    let concurrency = match &raw.source.concurrency {
        None => 2,
        Some(n) if *n.get_ref() == 0 || *n.get_ref() > 64 => {
            c.err_at(
                n.span().start,
                "source.concurrency: must be between 1 and 64",
            );
            2
        }
        Some(n) => *n.get_ref() as usize,
    };
    let long_poll = c.duration(
        "source.long_poll",
        &raw.source.long_poll,
        Duration::from_secs(20),
    );
    if long_poll > Duration::from_secs(20)
        && let Some(s) = &raw.source.long_poll
    {
        c.err_at(s.span().start, "source.long_poll: SQS waits at most 20s");
    }
    let visibility = c.duration(
        "source.visibility",
        &raw.source.visibility,
        Duration::from_secs(60),
    );
    if (visibility < Duration::from_secs(10) || visibility > Duration::from_secs(43200))
        && let Some(s) = &raw.source.visibility
    {
        c.err_at(
            s.span().start,
            "source.visibility: must be between 10s and 12h",
        );
    }
    let max_in_flight = match &raw.source.max_in_flight {
        None => 1000,
        Some(n) if *n.get_ref() < 10 => {
            c.err_at(n.span().start, "source.max_in_flight: must be at least 10");
            1000
        }
        Some(n) => *n.get_ref() as usize,
    };

    // [dedupe]
    let d = &raw.dedupe;
    let window = c.duration("dedupe.window", &d.window, Duration::from_secs(900));
    if window.is_zero()
        && let Some(s) = &d.window
    {
        c.err_at(s.span().start, "dedupe.window: must be more than 0");
    }
    let retention = c.duration("dedupe.retention", &d.retention, Duration::from_secs(86400));
    if retention < window
        && let Some(s) = &d.retention
    {
        c.err_at(
            s.span().start,
            "dedupe.retention: must be at least dedupe.window",
        );
    }
    let silence_refresh = c.duration(
        "dedupe.silence_refresh",
        &d.silence_refresh,
        Duration::from_secs(30),
    );
    if silence_refresh < Duration::from_secs(1)
        && let Some(s) = &d.silence_refresh
    {
        c.err_at(
            s.span().start,
            "dedupe.silence_refresh: must be at least \"1s\"",
        );
    }
    let store_kind = d
        .store
        .as_ref()
        .map(|s| s.get_ref().as_str())
        .unwrap_or("file");
    let store = match store_kind {
        "file" => {
            if let Some(t) = &d.table {
                c.err_at(
                    t.span().start,
                    "dedupe.table: applies only to store = \"dynamodb\"",
                );
            }
            let path = match &d.path {
                Some(p) => c.expand("dedupe.path", p).unwrap_or_default(),
                None => DEFAULT_STORE_PATH.to_string(),
            };
            if path.is_empty()
                && let Some(p) = &d.path
            {
                c.err_at(p.span().start, "dedupe.path: must not be empty");
            }
            StoreSpec::File {
                path: PathBuf::from(path),
            }
        }
        "dynamodb" => {
            if let Some(p) = &d.path {
                c.err_at(
                    p.span().start,
                    "dedupe.path: applies only to store = \"file\"",
                );
            }
            let table = match &d.table {
                Some(t) => c.expand("dedupe.table", t).unwrap_or_default(),
                None => {
                    let at = d.store.as_ref().map(|s| s.span().start).unwrap_or(0);
                    c.err_at(at, "dedupe.table: required with store = \"dynamodb\"");
                    String::new()
                }
            };
            StoreSpec::DynamoDb { table }
        }
        other => {
            let at = d.store.as_ref().map(|s| s.span().start).unwrap_or(0);
            c.err_at(
                at,
                match shared::suggest::nearest(other, ["file", "dynamodb"]) {
                    Some(near) => {
                        format!("dedupe.store: unknown store {other:?}; did you mean {near:?}?")
                    }
                    None => format!(
                        "dedupe.store: unknown store {other:?}; expected \"file\" or \"dynamodb\""
                    ),
                },
            );
            StoreSpec::File {
                path: PathBuf::from(DEFAULT_STORE_PATH),
            }
        }
    };

    // [group]
    let g = &raw.group;
    let defaults = GroupSpec::default();
    let mut by = Vec::new();
    if let Some(list) = &g.by {
        for name in list.get_ref() {
            match GroupLabel::parse(name) {
                Some(l) if !by.contains(&l) => by.push(l),
                Some(_) => c.err_at(list.span().start, format!("group.by: {name:?} is listed twice")),
                None => c.err_at(
                    list.span().start,
                    match shared::suggest::nearest(name, ["rule", "severity", "account", "region"]) {
                        Some(near) => format!("group.by: unknown label {name:?}; did you mean {near:?}?"),
                        None => format!(
                            "group.by: unknown label {name:?}; expected rule, severity, account or region"
                        ),
                    },
                ),
            }
        }
    } else {
        by = defaults.by.clone();
    }
    let group = GroupSpec {
        by,
        wait: c.duration("group.wait", &g.wait, defaults.wait),
        interval: c.duration("group.interval", &g.interval, defaults.interval),
        repeat: c.duration("group.repeat", &g.repeat, defaults.repeat),
    };
    if group.interval.is_zero()
        && let Some(s) = &g.interval
    {
        c.err_at(s.span().start, "group.interval: must be more than 0");
    }
    if group.repeat < group.interval
        && let Some(s) = &g.repeat
    {
        c.err_at(
            s.span().start,
            "group.repeat: must be at least group.interval",
        );
    }

    // [[sink]]
    let mut sinks: Vec<SinkSpec> = Vec::new();
    let mut names = BTreeSet::new();
    for raw_sink in &raw.sinks {
        if !names.insert(raw_sink.name.get_ref().clone()) {
            c.err_at(
                raw_sink.name.span().start,
                format!("sink {:?}: the name is used twice", raw_sink.name.get_ref()),
            );
        }
        if let Some(s) = validate_sink(&mut c, raw_sink) {
            sinks.push(s);
        }
    }
    if raw.sinks.is_empty() {
        // Not a stdout sink in its place: an agent whose alerts reach no one must not look
        // configured (a forgotten [[sink]] would leave every alert in a container log).
        c.err_at(
            0,
            "no [[sink]]: the alerts would reach no one; add one (type = \"stdout\" prints them)",
        );
    }
    let resolve = |c: &mut Checker<'_>, key: &str, list: &Spanned<Vec<String>>| -> Vec<usize> {
        let mut out = Vec::new();
        if list.get_ref().is_empty() {
            c.err_at(list.span().start, format!("{key}: lists no sink"));
        }
        for name in list.get_ref() {
            match raw.sinks.iter().position(|s| s.name.get_ref() == name) {
                Some(i) if raw.sinks[i].kind.get_ref() == "heartbeat" => c.err_at(
                    list.span().start,
                    format!("{key}: sink {name:?} is a heartbeat: it takes no alerts"),
                ),
                Some(i) if !out.contains(&i) => out.push(i),
                Some(_) => {}
                None => c.err_at(
                    list.span().start,
                    format!(
                        "{key}: no sink is named {name:?}{}",
                        shared::suggest::hint(
                            name,
                            raw.sinks.iter().map(|s| s.name.get_ref().as_str())
                        )
                    ),
                ),
            }
        }
        out
    };

    // [[route]]
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let key = format!("route[{}].sinks", i + 1);
        let sinks_idx = resolve(&mut c, &key, &r.sinks);
        let mut severity = Vec::new();
        if let Some(s) = &r.matcher.severity {
            for v in s.get_ref().clone().into_vec() {
                match v.parse::<Severity>() {
                    Ok(sev) => severity.push(sev),
                    Err(e) => c.err_at(
                        s.span().start,
                        format!("route[{}].match.severity: {e}", i + 1),
                    ),
                }
            }
        }
        let mut account = Vec::new();
        if let Some(a) = &r.matcher.account {
            for v in a.get_ref().clone().into_vec() {
                if !shared::naming::is_account_id(&v) {
                    c.err_at(
                        a.span().start,
                        format!(
                            "route[{}].match.account: {v:?} is not a 12-digit account id",
                            i + 1
                        ),
                    );
                }
                account.push(v);
            }
        }
        routes.push(RouteSpec {
            matcher: Matcher {
                rule: r
                    .matcher
                    .rule
                    .clone()
                    .map(OneOrMany::into_vec)
                    .unwrap_or_default(),
                severity,
                account,
                region: r
                    .matcher
                    .region
                    .clone()
                    .map(OneOrMany::into_vec)
                    .unwrap_or_default(),
            },
            sinks: sinks_idx,
            continue_: r.continue_,
        });
    }
    let default_sinks = match &raw.default_route {
        Some(d) => resolve(&mut c, "default_route.sinks", &d.sinks),
        None if raw.routes.is_empty() => (0..sinks.len())
            .filter(|i| sinks[*i].kind.takes_alerts())
            .collect(),
        None => Vec::new(),
    };

    // [server]: the file's listen address, else $ORGWATCH_LISTEN (the container image sets
    // 0.0.0.0:9464, where a published port reaches it), else loopback.
    let from_env = (c.env)(LISTEN_ENV).filter(|v| !v.trim().is_empty());
    let (listen_text, source) = match (&raw.server.listen, &from_env) {
        (Some(s), _) => (s.get_ref().as_str(), "server.listen".to_string()),
        (None, Some(v)) => (
            v.as_str(),
            format!("${LISTEN_ENV} (server.listen is not set)"),
        ),
        (None, None) => (DEFAULT_LISTEN, "server.listen".to_string()),
    };
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let at = raw
                .server
                .listen
                .as_ref()
                .map(|s| s.span().start)
                .unwrap_or(0);
            c.err_at(
                at,
                format!("{source}: {listen_text:?} is not an address such as 127.0.0.1:9464"),
            );
            SocketAddr::from(([127, 0, 0, 1], 9464))
        }
    };

    // [enrich]
    let e = &raw.enrich;
    let defaults = EnrichSpec::default();
    let member_role = match &e.member_role {
        None => defaults.member_role.clone(),
        Some(r) => {
            let name = c.expand("enrich.member_role", r).unwrap_or_default();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+=,.@_-".contains(ch))
            {
                c.err_at(
                    r.span().start,
                    "enrich.member_role: a role name has 1-64 characters: letters, digits and +=,.@_-",
                );
            }
            name
        }
    };
    let external_id = e
        .external_id
        .as_ref()
        .and_then(|x| c.expand("enrich.external_id", x));
    let log_group = match &e.log_group {
        None => defaults.log_group.clone(),
        Some(g) => {
            let name = c.expand("enrich.log_group", g).unwrap_or_default();
            if name.is_empty() || name.len() > 512 {
                c.err_at(
                    g.span().start,
                    "enrich.log_group: a log group name has 1-512 characters",
                );
            }
            name
        }
    };
    let enrich_timeout = c.duration("enrich.timeout", &e.timeout, defaults.timeout);
    if enrich_timeout.is_zero()
        && let Some(s) = &e.timeout
    {
        c.err_at(s.span().start, "enrich.timeout: must be more than 0");
    }
    let max_events = match &e.max_events {
        None => defaults.max_events,
        Some(n) if *n.get_ref() == 0 || *n.get_ref() > 100_000 => {
            c.err_at(
                n.span().start,
                "enrich.max_events: must be between 1 and 100000",
            );
            defaults.max_events
        }
        Some(n) => *n.get_ref() as usize,
    };
    let lookback = c.duration("enrich.lookback", &e.lookback, defaults.lookback);
    let enrich = EnrichSpec {
        enabled: e.enabled.unwrap_or(true),
        member_role,
        external_id,
        log_group,
        timeout: enrich_timeout,
        max_events,
        lookback,
    };

    // [classify]: any built-in id, the seed pack's own included.
    let known: Vec<String> = match shared::rules::Pack::every_builtin() {
        Ok(p) => p.rules().iter().map(|r| r.id.clone()).collect(),
        Err(e) => {
            c.errors.push(ConfigError::file(
                path,
                format!("the built-in detection pack does not load: {e}"),
            ));
            Vec::new()
        }
    };
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut ids = |list: Selection, key: &str, entries: &Option<Vec<Spanned<String>>>| {
        let entries = entries.as_ref()?;
        for id in entries {
            if let Err(e) = check_selected(list, key, id.get_ref(), &known) {
                c.err_at(id.span().start, e);
            }
        }
        Some(entries.iter().map(|id| id.get_ref().clone()).collect())
    };
    let defaults = ClassifySpec::default();
    let classify = ClassifySpec {
        explicit_pack: raw.classify.pack.is_some(),
        pack: ids(Selection::Pack, "classify.pack", &raw.classify.pack).unwrap_or(defaults.pack),
        disable: ids(
            Selection::Disable,
            "classify.disable",
            &raw.classify.disable,
        )
        .unwrap_or_default(),
    };

    let poll = c.duration("rules.poll", &raw.rules.poll, Duration::from_secs(300));
    if let Some(p) = &raw.rules.poll
        && poll < Duration::from_secs(10)
    {
        c.err_at(p.span().start, "rules.poll: at least \"10s\"");
    }
    let manifest = match &raw.rules.manifest {
        None => None,
        Some(url) => match parse_s3_url(url.get_ref()) {
            Ok((bucket, key)) => Some(ManifestSpec {
                bucket,
                key,
                region: raw.rules.region.clone(),
                poll,
            }),
            Err(e) => {
                c.err_at(url.span().start, format!("rules.manifest: {e}"));
                None
            }
        },
    };

    if c.errors.is_empty() {
        Ok(Config {
            source: SourceSpec {
                queue,
                region: raw.source.region.clone(),
                regions,
                allow_no_redrive: raw.source.allow_no_redrive.unwrap_or(false),
                concurrency,
                long_poll,
                visibility,
                max_in_flight,
            },
            dedupe: DedupeSpec {
                window,
                retention,
                store,
                silence_refresh,
            },
            group,
            sinks,
            routes,
            default_sinks,
            listen,
            enrich,
            classify,
            manifest,
        })
    } else {
        if c.errors.iter().all(|e| e.position.is_some()) {
            c.errors.sort_by_key(|e| e.position);
        }
        Err(c.errors)
    }
}

fn default_rate(kind: &str) -> Rate {
    let (n, per) = match kind {
        // Slack incoming webhooks: about one message per second.
        "slack" => (1, 1),
        // PagerDuty Events API v2: 120 events per minute per integration key.
        "pagerduty" => (120, 60),
        "webhook" => (10, 1),
        "sns" => (30, 1),
        _ => (1000, 1),
    };
    Rate {
        count: NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
        per: Duration::from_secs(per),
    }
}

fn validate_sink(c: &mut Checker<'_>, s: &RawSink) -> Option<SinkSpec> {
    let name = s.name.get_ref().clone();
    let kind = s.kind.get_ref().as_str();
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        c.err_at(
            s.name.span().start,
            format!("sink {name:?}: names use letters, digits, '-' and '_'"),
        );
    }
    if !SINK_TYPES.contains(&kind) {
        c.err_at(
            s.kind.span().start,
            match shared::suggest::nearest(kind, SINK_TYPES.iter().copied()) {
                Some(near) => {
                    format!("sink {name:?}: unknown type {kind:?}; did you mean {near:?}?")
                }
                None => format!(
                    "sink {name:?}: unknown type {kind:?}; expected one of {}",
                    SINK_TYPES.join(", ")
                ),
            },
        );
        return None;
    }
    let label = format!("sink {name:?}");
    // Keys that apply to each type.
    let applies: &[&str] = match kind {
        "stdout" => &[],
        "file" => &["path"],
        "webhook" => &["url", "allow_http", "secret", "signature_header"],
        "slack" => &["url", "allow_http"],
        "pagerduty" => &["url", "allow_http", "routing_key"],
        "heartbeat" => &["url", "allow_http", "interval", "method"],
        _ => &["topic_arn"],
    };
    let present: [(&str, Option<usize>); 9] = [
        ("url", s.url.as_ref().map(|v| v.span().start)),
        ("allow_http", s.allow_http.as_ref().map(|v| v.span().start)),
        ("secret", s.secret.as_ref().map(|v| v.span().start)),
        (
            "signature_header",
            s.signature_header.as_ref().map(|v| v.span().start),
        ),
        (
            "routing_key",
            s.routing_key.as_ref().map(|v| v.span().start),
        ),
        ("path", s.path.as_ref().map(|v| v.span().start)),
        ("topic_arn", s.topic_arn.as_ref().map(|v| v.span().start)),
        ("interval", s.interval.as_ref().map(|v| v.span().start)),
        ("method", s.method.as_ref().map(|v| v.span().start)),
    ];
    for (key, at) in present {
        if let Some(at) = at
            && !applies.contains(&key)
        {
            c.err_at(
                at,
                format!("{label}: `{key}` does not apply to a {kind} sink"),
            );
        }
    }
    let rate = match &s.rate {
        None => default_rate(kind),
        Some(r) => parse_rate(r.get_ref()).unwrap_or_else(|e| {
            c.err_at(r.span().start, format!("{label}: rate: {e}"));
            default_rate(kind)
        }),
    };
    let retry_for = c.duration(
        &format!("{label}: retry_for"),
        &s.retry_for,
        Duration::from_secs(300),
    );
    let timeout = c.duration(
        &format!("{label}: timeout"),
        &s.timeout,
        Duration::from_secs(10),
    );
    let allow_http = s.allow_http.as_ref().is_some_and(|b| *b.get_ref());
    let required =
        |c: &mut Checker<'_>, key: &str, v: &Option<Spanned<String>>| -> Option<String> {
            match v {
                Some(v) => {
                    let out = c.expand(&format!("{label}: {key}"), v)?;
                    if out.is_empty() {
                        c.err_at(v.span().start, format!("{label}: {key} is empty"));
                        return None;
                    }
                    Some(out)
                }
                None => {
                    c.err_at(
                        s.kind.span().start,
                        format!("{label}: `{key}` is required for a {kind} sink"),
                    );
                    None
                }
            }
        };
    let url = |c: &mut Checker<'_>, default: Option<&str>| -> Option<Secret> {
        let value = match (&s.url, default) {
            (None, Some(d)) => d.to_string(),
            _ => required(c, "url", &s.url)?,
        };
        if let Err(e) = check_url(&value, allow_http) {
            let at = s
                .url
                .as_ref()
                .map(|u| u.span().start)
                .unwrap_or(s.kind.span().start);
            c.err_at(at, format!("{label}: url {e}"));
            return None;
        }
        Some(Secret::new(value))
    };
    let kind = match kind {
        "stdout" => SinkKind::Stdout,
        "file" => SinkKind::File {
            path: PathBuf::from(required(c, "path", &s.path)?),
        },
        "webhook" => {
            let u = url(c, None);
            let secret = match &s.secret {
                Some(v) => Some(Secret::new(c.expand(&format!("{label}: secret"), v)?)),
                None => None,
            };
            let signature_header = s
                .signature_header
                .as_ref()
                .map(|h| h.get_ref().clone())
                .unwrap_or_else(|| DEFAULT_SIGNATURE_HEADER.to_string());
            if hyper::header::HeaderName::from_bytes(signature_header.as_bytes()).is_err() {
                let at = s
                    .signature_header
                    .as_ref()
                    .map(|h| h.span().start)
                    .unwrap_or(0);
                c.err_at(
                    at,
                    format!("{label}: signature_header is not a valid header name"),
                );
            }
            SinkKind::Webhook {
                url: u?,
                secret,
                signature_header,
            }
        }
        "slack" => SinkKind::Slack { url: url(c, None)? },
        "pagerduty" => {
            let u = url(c, Some(PAGERDUTY_EVENTS_URL));
            let key = required(c, "routing_key", &s.routing_key);
            SinkKind::PagerDuty {
                url: u?,
                routing_key: Secret::new(key?),
            }
        }
        "heartbeat" => {
            let u = url(c, None);
            let interval = c.duration(
                &format!("{label}: interval"),
                &s.interval,
                Duration::from_secs(60),
            );
            if interval < Duration::from_secs(1)
                && let Some(i) = &s.interval
            {
                c.err_at(
                    i.span().start,
                    format!("{label}: interval: at least \"1s\""),
                );
            }
            let post = match s.method.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("GET") => false,
                Some("POST") => true,
                Some(other) => {
                    let at = s.method.as_ref().map(|m| m.span().start).unwrap_or(0);
                    c.err_at(
                        at,
                        format!("{label}: method {other:?}: expected \"GET\" or \"POST\""),
                    );
                    false
                }
            };
            SinkKind::Heartbeat {
                url: u?,
                post,
                interval,
            }
        }
        _ => {
            let arn = required(c, "topic_arn", &s.topic_arn)?;
            if !arn.starts_with("arn:") || arn.split(':').count() != 6 {
                let at = s.topic_arn.as_ref().map(|t| t.span().start).unwrap_or(0);
                c.err_at(at, format!("{label}: topic_arn is not an SNS topic ARN"));
            }
            SinkKind::Sns { topic_arn: arn }
        }
    };
    Some(SinkSpec {
        name,
        rate,
        retry_for,
        timeout,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration `text` (with a stdout sink after it when it has none: a
    /// configuration without one is refused, see `no_sink_is_refused`).
    fn check(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let text = if text.contains("[[sink]]") {
            text.to_string()
        } else {
            format!("{text}\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n")
        };
        check_as_written(&text, env)
    }

    fn check_as_written(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let path = Path::new("agent.toml");
        let raw = parse(path, text).map_err(|e| vec![e.to_string()])?;
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        validate(&raw, path, text, &lookup)
            .map_err(|errs| errs.iter().map(ToString::to_string).collect())
    }

    const EXAMPLE: &str = r#"
[source]
queue = "orgwatch-alerts"
[dedupe]
window = "15m"
store = "file"
path = "/var/lib/orgwatch/agent.db"
[group]
by = ["rule"]
wait = "30s"
interval = "5m"
repeat = "4h"
[[sink]]
name = "security-webhook"
type = "webhook"
url = "${ORGWATCH_WEBHOOK_URL}"
secret = "${HOOK_SECRET}"
rate = "5/s"
[[route]]
match = { severity = "high" }
sinks = ["security-webhook"]
"#;

    #[test]
    fn the_issue_example_validates() {
        let cfg = check(
            EXAMPLE,
            &[
                (
                    "ORGWATCH_WEBHOOK_URL",
                    "https://hooks.example.com/x?token=abc",
                ),
                ("HOOK_SECRET", "s3cr3t"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.source.queue, "orgwatch-alerts");
        assert_eq!(cfg.dedupe.window, Duration::from_secs(900));
        assert_eq!(
            cfg.group,
            GroupSpec {
                by: vec![GroupLabel::Rule],
                wait: Duration::from_secs(30),
                interval: Duration::from_secs(300),
                repeat: Duration::from_secs(14400)
            }
        );
        assert_eq!(cfg.sinks.len(), 1);
        assert_eq!(cfg.sinks[0].rate.count.get(), 5);
        assert_eq!(cfg.routes[0].matcher.severity, vec![Severity::High]);
        assert_eq!(cfg.routes[0].sinks, vec![0]);
        // Secrets never show in Debug output.
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("token=abc"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_keys_are_located() {
        let text =
            "[source]\nqueue = \"q\"\n[[sink]]\nname = \"a\"\ntype = \"stdout\"\ncolour = 1\n";
        let errs = check(text, &[]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("agent.toml:6:1: unknown field `colour`"),
            "{errs:?}"
        );
    }

    #[test]
    fn source_regions_name_regions_of_a_queue_name() {
        let text = "[source]\nqueue = \"q\"\nregions = [\"us-east-1\", \"eu-west-1\"]\n";
        let cfg = check(text, &[]).unwrap();
        assert_eq!(cfg.source.regions, ["us-east-1", "eu-west-1"]);
        assert!(
            check("[source]\nqueue = \"q\"\n", &[])
                .unwrap()
                .source
                .regions
                .is_empty()
        );
        let errs = check(
            "[source]\nqueue = \"https://sqs.us-east-1.amazonaws.com/111122223333/q\"\nregions = [\"us-east-1\"]\n",
            &[],
        )
        .unwrap_err();
        assert!(errs[0].contains("a queue URL names one queue"), "{errs:?}");
        let errs = check(
            "[source]\nqueue = \"q\"\nregions = [\"us-east-1\", \"us-east-1\", \"Mars\"]\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("agent.toml:3:11: source.regions"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_classify_pack_is_checked_like_the_hubs() {
        let cfg = check("[source]\nqueue = \"q\"\n", &[]).unwrap();
        assert_eq!(cfg.classify, ClassifySpec::default());
        assert!(cfg.classify.pack().unwrap().get("cis-4.3").is_some());
        let text = "[source]\nqueue = \"q\"\n[classify]\npack = [\"cis\", \"root-activity\"]\ndisable = [\"cis-4.9\"]\n";
        let cfg = check(text, &[]).unwrap();
        let pack = cfg.classify.pack().unwrap();
        assert!(pack.get("root-activity").is_some() && pack.get("cis-4.9").is_none());
        let text = "[source]\nqueue = \"q\"\n[classify]\npack = [\"cis\", \"root\"]\ndisable = [\"all\"]\n";
        let errs = check(text, &[]).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "agent.toml:4:16: classify.pack: unknown built-in rule or pack \"root\""
            ),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("agent.toml:5:12: classify.disable: unknown built-in rule \"all\""),
            "{errs:?}"
        );
        // The seed pack and its own rules, by name and by id, as in hub.toml.
        let text = "[source]\nqueue = \"q\"\n[classify]\npack = [\"seed\"]\ndisable = [\"seed-api-without-mfa\"]\n";
        let pack = check(text, &[]).unwrap().classify.pack().unwrap();
        assert_eq!(pack.len(), 8);
        assert!(pack.get("seed-kms-decrypt-failures").is_some());
        assert!(pack.get("seed-api-without-mfa").is_none() && pack.get("cis-4.3").is_none());
        let text =
            "[source]\nqueue = \"q\"\n[classify]\npack = [\"cis\", \"seed-api-without-mfa\"]\n";
        let pack = check(text, &[]).unwrap().classify.pack().unwrap();
        assert_eq!(pack.len(), 16);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"[source]
queue = "orgwatch-alerts"
long_poll = "30s"
[dedupe]
window = "15x"
store = "dynamodb"
[group]
by = ["rule", "colour"]
wait = "soon"
[[sink]]
name = "hook"
type = "webhook"
url = "http://hooks.example.com/x"
routing_key = "k"
rate = "5 per second"
[[sink]]
name = "pd"
type = "pagerduty"
[[sink]]
name = "hook"
type = "carrier-pigeon"
[[route]]
match = { severity = "urgent", account = "42" }
sinks = ["hook", "nobody"]
"#;
        let errs = check(text, &[]).unwrap_err();
        let expected = [
            "agent.toml:3:13: source.long_poll: SQS waits at most 20s",
            "agent.toml:5:10: dedupe.window: invalid duration \"15x\": unknown unit \"x\" (ms, s, m, h or d)",
            "agent.toml:6:9: dedupe.table: required with store = \"dynamodb\"",
            "agent.toml:8:6: group.by: unknown label \"colour\"; expected rule, severity, account or region",
            "agent.toml:9:8: group.wait: invalid duration \"soon\": expected a number followed by ms, s, m, h or d",
            "agent.toml:13:7: sink \"hook\": url must use https (plain http is allowed only to loopback, or with allow_http = true); host hooks.example.com",
            "agent.toml:14:15: sink \"hook\": `routing_key` does not apply to a webhook sink",
            "agent.toml:15:8: sink \"hook\": rate: invalid rate \"5 per second\": expected N/s, N/m or N/h, e.g. \"5/s\"",
            "agent.toml:18:8: sink \"pd\": `routing_key` is required for a pagerduty sink",
            "agent.toml:20:8: sink \"hook\": the name is used twice",
            "agent.toml:21:8: sink \"hook\": unknown type \"carrier-pigeon\"; expected one of stdout, file, webhook, slack, pagerduty, sns, heartbeat",
            "agent.toml:23:22: route[1].match.severity: unknown severity \"urgent\"; expected info, low, medium, high or critical",
            "agent.toml:23:42: route[1].match.account: \"42\" is not a 12-digit account id",
            "agent.toml:24:9: route[1].sinks: no sink is named \"nobody\"",
        ];
        assert_eq!(errs, expected);
    }

    #[test]
    fn missing_variables_name_the_variable_not_a_value() {
        let errs = check(EXAMPLE, &[("HOOK_SECRET", "s3cr3t")]).unwrap_err();
        assert_eq!(
            errs,
            vec![
                "agent.toml:16:7: sink \"security-webhook\": url: environment variable ORGWATCH_WEBHOOK_URL is not set"
            ]
        );
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_or_when_asked() {
        for (url, allow, ok) in [
            ("https://hooks.example.com/a", false, true),
            ("http://127.0.0.1:8080/a", false, true),
            ("http://[::1]:8080/a", false, true),
            ("http://localhost/a", false, true),
            ("http://hooks.example.com/a", false, false),
            ("http://hooks.example.com/a", true, true),
            ("ftp://hooks.example.com/a", true, false),
            ("/relative", true, false),
        ] {
            assert_eq!(
                check_url(url, allow).is_ok(),
                ok,
                "{url} allow_http={allow}"
            );
        }
    }

    #[test]
    fn durations_and_rates() {
        for (text, want) in [
            ("500ms", Some(Duration::from_millis(500))),
            ("30s", Some(Duration::from_secs(30))),
            ("15m", Some(Duration::from_secs(900))),
            ("4h", Some(Duration::from_secs(14400))),
            ("1d", Some(Duration::from_secs(86400))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("0s", Some(Duration::ZERO)),
            ("15", None),
            ("m", None),
            ("", None),
            ("-1s", None),
            ("1w", None),
        ] {
            assert_eq!(parse_duration(text).ok(), want, "{text:?}");
        }
        for (text, want) in [
            ("5/s", Some((5, 1))),
            ("100/m", Some((100, 60))),
            ("1000/h", Some((1000, 3600))),
            ("0/s", None),
            ("5", None),
            ("5/d", None),
            ("x/s", None),
        ] {
            let got = parse_rate(text)
                .ok()
                .map(|r| (r.count.get(), r.per.as_secs()));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn the_listen_address_comes_from_the_file_then_orgwatch_listen_then_loopback() {
        let base = "[source]\nqueue = \"q\"\n";
        let env = [(LISTEN_ENV, "0.0.0.0:9464")];
        assert_eq!(
            check(base, &env).unwrap().listen.to_string(),
            "0.0.0.0:9464"
        );
        let file = format!("{base}[server]\nlisten = \"127.0.0.1:9000\"\n");
        assert_eq!(
            check(&file, &env).unwrap().listen.to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(check(base, &[]).unwrap().listen.to_string(), DEFAULT_LISTEN);
        let errs = check(base, &[(LISTEN_ENV, "everywhere")]).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("$ORGWATCH_LISTEN") && e.contains("\"everywhere\"")),
            "{errs:?}"
        );
    }

    #[test]
    fn no_sink_is_refused() {
        let errs = check_as_written("[source]\nqueue = \"q\"\n", &[]).unwrap_err();
        assert_eq!(
            errs,
            [
                "agent.toml:1:1: no [[sink]]: the alerts would reach no one; add one (type = \"stdout\" prints them)"
            ]
        );
        // With one, unrouted alerts go to every sink that takes alerts, and the defaults.
        let cfg = check("[source]\nqueue = \"q\"\n", &[]).unwrap();
        assert_eq!(cfg.sinks.len(), 1);
        assert!(matches!(cfg.sinks[0].kind, SinkKind::Stdout));
        assert_eq!(cfg.default_sinks, vec![0]);
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            cfg.dedupe.store,
            StoreSpec::File {
                path: PathBuf::from(DEFAULT_STORE_PATH)
            }
        );
    }

    #[test]
    fn a_heartbeat_sink_is_never_routed_to() {
        let hb = "[[sink]]\nname = \"beat\"\ntype = \"heartbeat\"\nurl = \"https://hc.example/ping/abc\"\ninterval = \"30s\"\n";
        let out = "[[sink]]\nname = \"out\"\ntype = \"stdout\"\n";
        let cfg = check(&format!("[source]\nqueue = \"q\"\n{hb}{out}"), &[]).unwrap();
        assert!(matches!(
            cfg.sinks[0].kind,
            SinkKind::Heartbeat { post: false, interval, .. } if interval == Duration::from_secs(30)
        ));
        assert_eq!(cfg.default_sinks, vec![1], "every sink but the heartbeat");
        let routed = format!(
            "[source]\nqueue = \"q\"\n{hb}{out}[[route]]\nmatch = {{}}\nsinks = [\"beat\", \"out\"]\n"
        );
        let errs = check(&routed, &[]).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("\"beat\" is a heartbeat: it takes no alerts")),
            "{errs:?}"
        );
        let bad = "[source]\nqueue = \"q\"\n[[sink]]\nname = \"beat\"\ntype = \"heartbeat\"\nurl = \"https://hc.example/p\"\nmethod = \"PUT\"\nrate = \"1/s\"\n";
        let errs = check(bad, &[]).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("method \"PUT\"")),
            "{errs:?}"
        );
        let post = "[source]\nqueue = \"q\"\n[[sink]]\nname = \"beat\"\ntype = \"heartbeat\"\nurl = \"https://hc.example/p\"\nmethod = \"POST\"\n";
        let cfg = check(post, &[]).unwrap();
        assert!(matches!(
            cfg.sinks[0].kind,
            SinkKind::Heartbeat { post: true, .. }
        ));
    }

    #[test]
    fn sink_names_are_unique_and_routes_resolve() {
        let text = "[source]\nqueue = \"q\"\n[[sink]]\nname = \"a\"\ntype = \"stdout\"\n[[sink]]\nname = \"b\"\ntype = \"file\"\npath = \"/tmp/x\"\n[[route]]\nmatch = { rule = [\"cis-4.3\", \"root\"] }\nsinks = [\"b\"]\ncontinue = true\n[default_route]\nsinks = [\"a\"]\n";
        let cfg = check(text, &[]).unwrap();
        assert_eq!(cfg.routes[0].sinks, vec![1]);
        assert!(cfg.routes[0].continue_);
        assert_eq!(cfg.routes[0].matcher.rule, vec!["cis-4.3", "root"]);
        assert_eq!(cfg.default_sinks, vec![0]);
        let dup = text.replace("name = \"b\"", "name = \"a\"");
        let errs = check(&dup, &[]).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("the name is used twice")),
            "{errs:?}"
        );
    }
}
