//! `hub policy --for hub|agent|member|agent-member|central|kms-key|scp`: the
//! least-privilege policies of `shared::iam` (and the key policy statements of an SSE-KMS
//! archive, and the service control policy of `shared::guardrail`), scoped to the names of
//! the configuration when there is one. The partition (`aws`, `aws-cn`, `aws-us-gov`) comes
//! from `--region`, else the configuration's home region. Like the others, the SCP is the
//! bare document whatever `--output` says; it is printed on one line, because AWS counts
//! the characters of an SCP as submitted (at most `guardrail::SCP_MAX_CHARS`).

use shared::guardrail;
use shared::iam::{Names, Principal, policy};
use shared::naming;

use crate::cli::{GlobalArgs, PolicyArgs};
use crate::config::HubConfig;
use crate::exit::ExitStatus;

pub fn run(global: &GlobalArgs, args: &PolicyArgs) -> ExitStatus {
    let mut names = Names::default();
    // The configuration names the bucket, trail, topic, queue and member role; without a
    // file, the policy uses the defaults (and a bucket pattern).
    let config = if global.config.exists() {
        match HubConfig::load(&global.config) {
            Ok(c) => Some(c),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return ExitStatus::Usage;
            }
        }
    } else {
        None
    };
    let region = global
        .region
        .clone()
        .or_else(|| config.as_ref().map(|c| c.home_region().to_string()))
        .unwrap_or_else(|| "us-east-1".to_string());
    names.partition = naming::partition(&region).to_string();
    if let Some(c) = &config {
        names.bucket = c.trail.bucket.clone();
        names.trail = c.trail.name.clone();
        names.topic = c.alerts.topic.clone();
        names.ops_topic = c.alerts.ops_topic.clone();
        names.queue = c.alerts.queue.clone();
        names.member_role = c.hub.member_role.clone();
        names.kms_key = c.trail.kms_key_id.clone();
        names.control_queue = c.watch.queue.clone();
        names.lease_table = c.watch.lease_table.clone();
        names.guardrail = c.guardrail.scp;
    }
    if let Some(t) = &args.dedupe_table {
        names.table = t.clone();
    }
    names.sns_topics = args.sns_topics.clone();
    if args.principal == "kms-key" {
        return kms_key(config.as_ref(), args, &region, &names);
    }
    if args.principal == "scp" {
        // Minified: the console would strip the white space, the API and CLI keep it.
        return super::print_json_line(&guardrail::scp(&names));
    }
    let Some(principal) = Principal::parse(&args.principal) else {
        eprintln!(
            "error: --for {:?}: expected hub, agent, member, agent-member, central, kms-key or scp",
            args.principal
        );
        return ExitStatus::Usage;
    };
    super::print_json(&policy(principal, &names))
}

fn kms_key(
    config: Option<&HubConfig>,
    args: &PolicyArgs,
    region: &str,
    names: &Names,
) -> ExitStatus {
    let Some(management) = args
        .management_account
        .as_deref()
        .filter(|a| naming::is_account_id(a))
    else {
        eprintln!(
            "error: --for kms-key needs --management-account ID (12 digits): the organisation trail belongs to the management account, and the key policy names its ARN"
        );
        return ExitStatus::Usage;
    };
    let mut readers: Vec<String> = std::iter::once(management.to_string())
        .chain(config.and_then(|c| c.hub.central_account.clone()))
        .collect();
    readers.dedup();
    let account_trails =
        config.is_some_and(|c| c.monitoring.delivery == crate::config::Delivery::Trail);
    super::print_json(&crate::desired::kms_key_policy(
        region,
        management,
        &names.trail,
        &readers,
        account_trails,
    ))
}
