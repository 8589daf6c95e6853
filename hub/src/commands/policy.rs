//! `hub policy --for hub|agent|member`: the least-privilege policies of `shared::iam`,
//! scoped to the names of the configuration when there is one.

use shared::iam::{Names, Principal, policy};

use crate::cli::{GlobalArgs, PolicyArgs};
use crate::config::HubConfig;
use crate::exit::ExitStatus;

pub fn run(global: &GlobalArgs, args: &PolicyArgs) -> ExitStatus {
    let Some(principal) = Principal::parse(&args.principal) else {
        eprintln!(
            "error: --for {:?}: expected hub, agent or member",
            args.principal
        );
        return ExitStatus::Usage;
    };
    let mut names = Names::default();
    // The configuration names the bucket, trail, topic, queue and member role; without a
    // file, the policy uses the defaults (and a bucket pattern).
    if global.config.exists() {
        match HubConfig::load(&global.config) {
            Ok(c) => {
                names.bucket = c.trail.bucket.clone();
                names.trail = c.trail.name.clone();
                names.topic = c.alerts.topic.clone();
                names.queue = c.alerts.queue.clone();
                names.member_role = c.hub.member_role.clone();
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return ExitStatus::Usage;
            }
        }
    }
    if let Some(t) = &args.dedupe_table {
        names.table = t.clone();
    }
    super::print_json(&policy(principal, &names))
}
