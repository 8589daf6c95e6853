//! `hub.toml`: what the organisation should look like. Parsed strictly (unknown keys are
//! errors that name the file, line and column), then validated as a whole.

use std::path::Path;

use serde::Deserialize;
use shared::config::{ConfigError, line_col};
use shared::naming;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    pub hub: HubSection,
    pub trail: TrailSection,
    #[serde(default)]
    pub monitoring: MonitoringSection,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub watch: WatchSection,
    #[serde(default)]
    pub guardrail: GuardrailSection,
    /// User rules, same fields as the built-in pack's rules. Parsed here only so that
    /// `deny_unknown_fields` accepts them: `commands::pack::load` reads them again from the
    /// file's text with `UserRules::from_toml`, which keeps their line and column.
    #[serde(default)]
    #[allow(dead_code)]
    pub rule: Vec<toml::Table>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Regions to monitor. Global-service events (IAM, STS, sign-in) arrive in us-east-1.
    pub regions: Vec<String>,
    /// Role assumed in member accounts.
    #[serde(default = "default_member_role")]
    pub member_role: String,
    /// External ID passed on `sts:AssumeRole`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Accounts to enroll; default: every ACTIVE account of the organisation.
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// Accounts never enrolled.
    #[serde(default)]
    pub exclude_accounts: Vec<String>,
    /// Only accounts under these organisational units (recursively).
    #[serde(default)]
    pub include_ous: Vec<String>,
    /// Account holding the bucket, topic, queue and bus; default: the hub's own account.
    #[serde(default)]
    pub central_account: Option<String>,
    /// Accounts processed at once (overridden by `--concurrency`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailSection {
    /// Organisation trail name.
    #[serde(default = "default_trail_name")]
    pub name: String,
    /// Central archive bucket.
    pub bucket: String,
    /// KMS key for SSE-KMS; default SSE-S3.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Days before archived log files expire (lifecycle rule).
    #[serde(default = "default_archive_days")]
    pub retention_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// A default-bus rule sends each account's CloudTrail events to its log group.
    Eventbridge,
    /// Each account has its own trail into the central bucket and its log group.
    Trail,
}

impl Delivery {
    /// The name hub.toml gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Eventbridge => "eventbridge",
            Delivery::Trail => "trail",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSection {
    #[serde(default = "default_delivery")]
    pub delivery: Delivery,
    /// Built-in rule ids or packs (`cis`, `seed`, `all`); default `["all"]`, CIS and
    /// root-activity (the seed pack's own rules are selected by `seed` or by id only).
    #[serde(default = "default_pack")]
    pub pack: Vec<String>,
    /// Built-in rule ids to leave out.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Retention of the member log groups.
    #[serde(default = "default_log_days")]
    pub log_retention_days: i32,
}

impl Default for MonitoringSection {
    fn default() -> Self {
        MonitoringSection {
            delivery: default_delivery(),
            pack: default_pack(),
            disable: Vec::new(),
            log_retention_days: default_log_days(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    #[serde(default = "default_alerts_name")]
    pub topic: String,
    #[serde(default = "default_alerts_name")]
    pub queue: String,
    /// Receives before a message moves to the dead-letter queue.
    #[serde(default = "default_max_receive")]
    pub max_receive_count: u32,
    /// The operations topic (one per monitored region): the alarms on the alert queue's
    /// dead-letter depth and oldest message's age notify it. Subscribe the people who run
    /// the agent to it (e-mail, pager).
    #[serde(default = "default_ops_topic")]
    pub ops_topic: String,
    /// Alarm when the oldest message of the alert queue is older than this many seconds:
    /// no agent is reading it.
    #[serde(default = "default_queue_age_alarm")]
    pub queue_age_alarm_secs: u32,
}

fn default_ops_topic() -> String {
    "orgwatch-ops".into()
}

fn default_queue_age_alarm() -> u32 {
    900
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            topic: default_alerts_name(),
            queue: default_alerts_name(),
            max_receive_count: default_max_receive(),
            ops_topic: default_ops_topic(),
            queue_age_alarm_secs: default_queue_age_alarm(),
        }
    }
}

/// `[watch]`: the control path `hub enroll` deploys for `hub watch` (organisation events
/// and tamper events into a control queue, and the lease table of its replicas).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// Deploy the control path (default true). Without it `hub watch` can only resync.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The control queue (central account, home region); its dead-letter queue is
    /// `<queue>-dlq`.
    #[serde(default = "default_control_queue")]
    pub queue: String,
    /// Receives of one control event before `hub watch` moves it to the dead-letter queue
    /// with the reason (and the queue's redrive policy, one later, if it cannot).
    #[serde(default = "default_control_receives")]
    pub max_receive_count: u32,
    /// DynamoDB table holding the lease that lets one `hub watch` replica act at a time.
    #[serde(default = "default_lease_table")]
    pub lease_table: String,
}

impl Default for WatchSection {
    fn default() -> Self {
        WatchSection {
            enabled: true,
            queue: default_control_queue(),
            max_receive_count: default_control_receives(),
            lease_table: default_lease_table(),
        }
    }
}

/// `[guardrail]`: the service control policy that denies changes to orgwatch's member
/// resources (`hub policy --for scp`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSection {
    /// `hub enroll` creates the SCP and attaches it (the management account's hub only).
    #[serde(default)]
    pub scp: bool,
    /// Where to attach it: the root (`r-...`, the default) or OUs (`ou-...`).
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_control_queue() -> String {
    naming::DEFAULT_CONTROL_QUEUE.to_string()
}
fn default_control_receives() -> u32 {
    5
}
fn default_lease_table() -> String {
    naming::DEFAULT_LEASE_TABLE.to_string()
}

fn default_member_role() -> String {
    naming::DEFAULT_MEMBER_ROLE.to_string()
}
fn default_concurrency() -> usize {
    8
}
fn default_trail_name() -> String {
    naming::PREFIX.to_string()
}
fn default_archive_days() -> u32 {
    365
}
fn default_delivery() -> Delivery {
    Delivery::Eventbridge
}
fn default_pack() -> Vec<String> {
    vec!["all".to_string()]
}
fn default_log_days() -> i32 {
    365
}
fn default_alerts_name() -> String {
    "orgwatch-alerts".to_string()
}
fn default_max_receive() -> u32 {
    5
}

/// `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`.
fn is_kms_key_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", p, "kms", region, account, resource]
        if p.starts_with("aws") && is_region(region) && naming::is_account_id(account)
            && resource.strip_prefix("key/").is_some_and(|id| !id.is_empty()))
}

/// Retention values CloudWatch Logs accepts.
const LOG_RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl HubConfig {
    /// Reads, parses and validates a config file, reporting every problem found.
    pub fn load(path: &Path) -> Result<HubConfig, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![ConfigError::file(path, format!("cannot read: {e}"))])?;
        HubConfig::check(path, &text, &|k| std::env::var(k).ok())
    }

    /// [`HubConfig::load`] of a text already read: every problem in one run, in the
    /// file's order (each type or unknown-key problem with "did you mean", then the checks
    /// beyond types on the rest).
    ///
    /// `${VAR}` and `${VAR:-default}` in string values are expanded from `env` first, as in
    /// agent.toml; not in `[[rule]]` tables, whose patterns are read as written.
    pub fn check(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HubConfig, Vec<ConfigError>> {
        let expand = shared::config::Expand {
            env,
            except: &["rule"],
        };
        let (config, mut errors) =
            shared::config::parse_toml_all_expanded::<HubConfig>(path, text, Some(&expand));
        let Some(config) = config else {
            return Err(errors);
        };
        if let Err(mut more) = config.validate(path, text) {
            errors.append(&mut more);
        }
        shared::config::sort(&mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Checks that need more than types. Positions point at the key when it can be found.
    pub fn validate(&self, path: &Path, text: &str) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |key: &str, message: String| {
            let position = find_key(text, key).map(|o| line_col(text, o));
            errors.push(ConfigError {
                path: path.to_path_buf(),
                position,
                message,
            });
        };
        if self.hub.regions.is_empty() {
            err(
                "regions",
                "hub.regions: at least one region is required".into(),
            );
        }
        for r in &self.hub.regions {
            if !is_region(r) {
                err(
                    "regions",
                    format!("hub.regions: {r:?} is not an AWS region name"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.hub.regions {
            if !seen.insert(r) {
                err("regions", format!("hub.regions: {r:?} is listed twice"));
            }
        }
        for (key, list) in [
            ("accounts", self.hub.accounts.as_deref().unwrap_or_default()),
            ("exclude_accounts", &self.hub.exclude_accounts[..]),
        ] {
            for a in list {
                if !naming::is_account_id(a) {
                    err(
                        key,
                        format!("hub.{key}: {a:?} is not a 12-digit account id"),
                    );
                }
            }
        }
        if let Some(a) = &self.hub.central_account
            && !naming::is_account_id(a)
        {
            err(
                "central_account",
                format!("hub.central_account: {a:?} is not a 12-digit account id"),
            );
        }
        for ou in &self.hub.include_ous {
            if !(ou.starts_with("ou-") || ou.starts_with("r-")) {
                err(
                    "include_ous",
                    format!("hub.include_ous: {ou:?} is not an OU or root id (ou-... / r-...)"),
                );
            }
        }
        if self.hub.member_role.is_empty() || self.hub.member_role.contains('/') {
            err(
                "member_role",
                "hub.member_role: a role name (not an ARN) is required".into(),
            );
        }
        if self.hub.concurrency == 0 {
            err("concurrency", "hub.concurrency must be at least 1".into());
        }
        if !is_bucket_name(&self.trail.bucket) {
            err(
                "bucket",
                format!(
                    "trail.bucket: {:?} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
                    self.trail.bucket
                ),
            );
        }
        if !is_resource_name(&self.trail.name, 128) {
            err(
                "name",
                format!(
                    "trail.name: {:?} is not a valid trail name",
                    self.trail.name
                ),
            );
        }
        if let Some(key) = &self.trail.kms_key_id
            && !is_kms_key_arn(key)
        {
            // CloudTrail's GetTrail answers with the key's ARN whatever form CreateTrail was
            // given, and the key policy names the trail by ARN: a key ARN is the one form
            // that compares equal on every run (CloudTrail API reference, Trail.KmsKeyId).
            err(
                "kms_key_id",
                format!(
                    "trail.kms_key_id: {key:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID)"
                ),
            );
        }
        if self.trail.retention_days == 0 {
            err(
                "retention_days",
                "trail.retention_days must be at least 1".into(),
            );
        }
        if !LOG_RETENTION_DAYS.contains(&self.monitoring.log_retention_days) {
            err(
                "log_retention_days",
                format!(
                    "monitoring.log_retention_days: {} is not one CloudWatch Logs accepts ({LOG_RETENTION_DAYS:?})",
                    self.monitoring.log_retention_days
                ),
            );
        }
        if self.alerts.ops_topic == self.alerts.topic {
            err(
                "ops_topic",
                format!(
                    "alerts.ops_topic: {:?} is also alerts.topic: the operations topic reaches the people who run orgwatch, not the agent",
                    self.alerts.ops_topic
                ),
            );
        }
        // CloudWatch evaluates the age alarm per minute (PutMetricAlarm Period 60); an
        // hour is the most a silent agent should go unnoticed.
        if !(60..=86_400).contains(&self.alerts.queue_age_alarm_secs) {
            err(
                "queue_age_alarm_secs",
                "alerts.queue_age_alarm_secs must be 60..=86400".into(),
            );
        }
        for (key, name) in [
            ("topic", &self.alerts.topic),
            ("queue", &self.alerts.queue),
            ("ops_topic", &self.alerts.ops_topic),
        ] {
            if !is_resource_name(name, 80) {
                err(
                    key,
                    format!(
                        "alerts.{key}: {name:?} must be 1-80 letters, digits, hyphens or underscores"
                    ),
                );
            }
        }
        if !(1..=1000).contains(&self.alerts.max_receive_count) {
            err(
                "max_receive_count",
                "alerts.max_receive_count must be 1..=1000".into(),
            );
        }
        for t in &self.guardrail.targets {
            if !(t.starts_with("r-") || t.starts_with("ou-")) {
                err(
                    "targets",
                    format!("guardrail.targets: {t:?} is not a root or OU id (r-... / ou-...)"),
                );
            }
        }
        // DLQ names add "-dlq" (4 characters) within SQS's 80.
        if !is_resource_name(&self.watch.queue, 76) {
            err(
                "queue",
                format!(
                    "watch.queue: {:?} must be 1-76 letters, digits, hyphens or underscores (its dead-letter queue adds -dlq)",
                    self.watch.queue
                ),
            );
        }
        if self.watch.queue == self.alerts.queue {
            err(
                "queue",
                format!(
                    "watch.queue: {:?} is also alerts.queue: the control queue is hub watch's, the alerts queue the agent's",
                    self.watch.queue
                ),
            );
        }
        if !(2..=1000).contains(&self.watch.max_receive_count) {
            err(
                "max_receive_count",
                "watch.max_receive_count must be 2..=1000".into(),
            );
        }
        // DynamoDB table names: 3-255 of letters, digits, _ - . (DynamoDB developer guide,
        // "Supported data types and naming rules").
        if !(3..=255).contains(&self.watch.lease_table.len())
            || !self
                .watch
                .lease_table
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            err(
                "lease_table",
                format!(
                    "watch.lease_table: {:?} is not a DynamoDB table name (3-255 letters, digits, _ - .)",
                    self.watch.lease_table
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The region of the central bucket and the organisation trail: the first listed.
    pub fn home_region(&self) -> &str {
        self.hub
            .regions
            .first()
            .map(String::as_str)
            .unwrap_or("us-east-1")
    }
}

fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_resource_name(n: &str, max: usize) -> bool {
    !n.is_empty()
        && n.len() <= max
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[hub]
regions = ["us-east-1", "eu-west-1"]
member_role = "OrganizationAccountAccessRole"
[trail]
name = "orgwatch"
bucket = "acme-orgwatch-cloudtrail"
[monitoring]
delivery = "trail"
pack = ["cis"]
[alerts]
topic = "orgwatch-alerts"
queue = "orgwatch-alerts"
"#;

    fn parse(text: &str) -> Result<HubConfig, Vec<ConfigError>> {
        let path = Path::new("hub.toml");
        let c: HubConfig = shared::config::parse_toml(path, text).map_err(|e| vec![e])?;
        c.validate(path, text)?;
        Ok(c)
    }

    #[test]
    fn variables_expand_in_hub_toml_but_not_in_rules() {
        let text = GOOD
            .replace(
                "bucket = \"acme-orgwatch-cloudtrail\"",
                "bucket = \"${TRAIL_BUCKET}\"",
            )
            .replace(
                "regions = [\"us-east-1\", \"eu-west-1\"]",
                "regions = [\"${HOME_REGION:-us-east-1}\", \"eu-west-1\"]\nexternal_id = \"${MISSING}\"",
            )
            + "[[rule]]\nid = \"a\"\ntitle = \"t\"\nseverity = \"low\"\npattern = '{ $.x = \"${NOT_A_VAR}\" }'\nmetric_name = \"A\"\n";
        let env = |k: &str| (k == "TRAIL_BUCKET").then(|| "from-env".to_string());
        let errors = HubConfig::check(Path::new("hub.toml"), &text, &env).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        // Only the unset variable without a default; the rule's pattern is not expanded.
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with(
                "hub.toml:4:15: hub.external_id: environment variable MISSING is not set"
            ),
            "{shown:?}"
        );
        let ok = text.replace("external_id = \"${MISSING}\"\n", "");
        let c = HubConfig::check(Path::new("hub.toml"), &ok, &env).expect("valid");
        assert_eq!(c.trail.bucket, "from-env");
        assert_eq!(c.hub.regions, ["us-east-1", "eu-west-1"]);
        assert_eq!(c.rule.len(), 1);
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.monitoring.delivery, Delivery::Trail);
        assert_eq!(c.home_region(), "us-east-1");
        assert_eq!(c.hub.concurrency, 8);
        assert_eq!(c.alerts.max_receive_count, 5);
    }

    #[test]
    fn the_shipped_example_parses() {
        let c =
            parse(include_str!("../../infra/examples/hub.toml")).expect("infra/examples/hub.toml");
        assert_eq!(c.monitoring.pack, vec!["cis", "root-activity"]);
    }

    #[test]
    fn unknown_keys_name_line_and_column() {
        let text = GOOD.replace("[alerts]\n", "[alerts]\ncolour = 1\n");
        let errs = parse(&text).unwrap_err();
        assert_eq!(errs.len(), 1);
        let shown = errs[0].to_string();
        assert!(
            shown.starts_with("hub.toml:12:1: unknown field `colour`"),
            "{shown}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = GOOD
            .replace("\"eu-west-1\"", "\"Europe\"")
            .replace("acme-orgwatch-cloudtrail", "Bad_Bucket")
            .replace("[monitoring]\n", "[monitoring]\nlog_retention_days = 42\n");
        let errs = parse(&text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{shown:#?}");
        assert!(
            shown[0].starts_with("hub.toml:3:1: hub.regions: \"Europe\""),
            "{shown:#?}"
        );
        assert!(
            shown[1].contains("trail.bucket: \"Bad_Bucket\""),
            "{shown:#?}"
        );
        assert!(shown[2].contains("log_retention_days: 42"), "{shown:#?}");
    }

    #[test]
    fn bad_delivery_mode_is_located() {
        let text = GOOD.replace("delivery = \"trail\"", "delivery = \"carrier-pigeon\"");
        let errs = parse(&text).unwrap_err();
        assert_eq!(errs[0].position, Some((9, 12)), "{}", errs[0]);
        assert!(
            errs[0].message.contains("unknown variant `carrier-pigeon`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn account_ids_are_checked() {
        let text = GOOD.replace("member_role", "accounts = [\"1234\"]\nmember_role");
        let errs = parse(&text).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("\"1234\" is not a 12-digit account id")
        );
    }
}
