//! `hub enroll` at organisation scale: API calls per account for a first enroll and for a
//! re-run (whose writes must be 0), and wall time at `--concurrency 1` and `8`.
//!
//! `cargo bench -p orgwatch-tests --bench enroll` (members: `ORGWATCH_BENCH_MEMBERS`,
//! default 20; concurrencies: `ORGWATCH_BENCH_CONCURRENCY`, default `1,8`; deliveries:
//! `ORGWATCH_BENCH_DELIVERY`, default `eventbridge,trail`; `ORGWATCH_BENCH_OPERATIONS=1`
//! also prints every run's calls per `Service:Operation`). Per delivery mode it prints
//! the calls per managed resource of a first enroll and the reads per resource of a
//! re-run, beside the seed's Terraform module's figures for the same resources.
//!
//! Each concurrency gets a fresh emulator and organisation, so every figure is a first
//! enroll of the same organisation: N members plus the management account (which is also
//! the central account) in two regions, the built-in pack. The real
//! `hub` binary runs (the debug build the end-to-end tests use: the time is spent in the
//! per-account rate limiters sized to AWS's quotas and in the emulator, not in the hub).
//! The emulator answers faster than AWS for most calls and the limiters are the same, so
//! the wall times are a lower bound of what AWS would give.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orgwatch_tests::{Emulator, bin, managed_resources};
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn config(dir: &Path, delivery: &str) -> Result<std::path::PathBuf, Error> {
    let path = dir.join("hub.toml");
    let regions = REGIONS.map(|r| format!("{r:?}")).join(", ");
    std::fs::write(
        &path,
        format!(
            r#"[hub]
regions = [{regions}]
[trail]
name = "orgwatch"
bucket = "bench-orgwatch-cloudtrail"
[monitoring]
delivery = "{delivery}"
pack = ["cis", "root-activity"]
[alerts]
topic = "orgwatch-alerts"
queue = "orgwatch-alerts"
"#
        ),
    )?;
    Ok(path)
}

/// One `hub enroll`: its report and how long it took.
struct Run {
    wall: Duration,
    report: Value,
}

fn enroll(emu: &Emulator, config: &Path, concurrency: usize) -> Result<Run, Error> {
    let started = Instant::now();
    let out = Command::new(bin("hub"))
        .args(["enroll", "--quiet", "--output", "json", "--concurrency"])
        .arg(concurrency.to_string())
        .arg("--config")
        .arg(config)
        .envs(emu.env())
        .output()?;
    let wall = started.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "hub enroll printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if !out.status.success() {
        return Err(format!("hub enroll failed ({}): {report:#}", out.status).into());
    }
    Ok(Run { wall, report })
}

/// The seed's Terraform module on the same resources, as issue #14 measured it (calls per
/// resource for `terraform apply` from scratch, and for `terraform plan` with no change):
/// Terraform cannot run here (no provider download), so the figures are quoted.
const TERRAFORM: (f64, f64) = (3.9, 2.3);

/// (min, median, max) of the member accounts' counts.
fn spread(report: &Value, members: &[String], field: &str) -> (u64, u64, u64) {
    let mut v: Vec<u64> = members
        .iter()
        .map(|m| report["calls_by_account"][m][field].as_u64().unwrap_or(0))
        .collect();
    v.sort_unstable();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    (at(0), at(v.len() / 2), at(v.len().saturating_sub(1)))
}

struct Row {
    label: String,
    delivery: String,
    concurrency: usize,
    run: Run,
}

fn main() -> Result<(), Error> {
    let members: usize = std::env::var("ORGWATCH_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let concurrencies: Vec<usize> = std::env::var("ORGWATCH_BENCH_CONCURRENCY")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8]);
    let deliveries: Vec<String> = std::env::var("ORGWATCH_BENCH_DELIVERY")
        .unwrap_or_else(|_| "eventbridge,trail".into())
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    let operations = std::env::var_os("ORGWATCH_BENCH_OPERATIONS").is_some();
    let hub = bin("hub");
    eprintln!("hub: {}", hub.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("orgwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let mut rows = Vec::new();
    let mut org_members = BTreeMap::new();
    for delivery in &deliveries {
        let config = config(&dir, delivery)?;
        for &c in &concurrencies {
            let emu = Emulator::start()?;
            let org = runtime.block_on(emu.create_org(members))?;
            eprintln!("{delivery}, concurrency {c}: first enroll of {members} members...");
            let first = enroll(&emu, &config, c)?;
            eprintln!("  {:.1}s; re-run...", first.wall.as_secs_f64());
            let rerun = enroll(&emu, &config, c)?;
            let writes = rerun.report["writes"].as_u64().unwrap_or(u64::MAX);
            if writes != 0 {
                return Err(format!("the re-run made {writes} write calls (must be 0)").into());
            }
            org_members.insert(
                (delivery.clone(), c),
                (org.management.clone(), org.members.clone()),
            );
            for (label, run) in [("first enroll", first), ("re-run", rerun)] {
                if operations {
                    println!(
                        "{delivery}, concurrency {c}, {label}: calls by operation {:#}",
                        run.report["calls_by_operation"]
                    );
                }
                rows.push(Row {
                    label: label.into(),
                    delivery: delivery.clone(),
                    concurrency: c,
                    run,
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let rules = rows
        .first()
        .and_then(|r| r.run.report["rules"].as_array().map(Vec::len))
        .unwrap_or(0);
    println!(
        "hub enroll: {members} members + the management/central account x {} regions, {rules} rules",
        REGIONS.len()
    );
    println!(
        "{:<12} {:<13} {:>5} {:>8} {:>9} {:>7} {:>7} {:>9} {:>24} {:>15} {:>20}",
        "delivery",
        "run",
        "conc",
        "wall s",
        "resources",
        "calls",
        "writes",
        "per res.",
        "calls/member min/med/max",
        "writes/member",
        "central calls/writes"
    );
    for r in &rows {
        let Some((management, members)) = org_members.get(&(r.delivery.clone(), r.concurrency))
        else {
            continue;
        };
        let rep = &r.run.report;
        let (cmin, cmed, cmax) = spread(rep, members, "calls");
        let (wmin, wmed, wmax) = spread(rep, members, "writes");
        let central = &rep["calls_by_account"][management];
        let (calls, writes) = (
            rep["calls"].as_u64().unwrap_or(0),
            rep["writes"].as_u64().unwrap_or(0),
        );
        let n = managed_resources(rep).max(1) as f64;
        // First enroll: every call per resource; re-run: reads per resource.
        let per = if r.label == "re-run" {
            (calls - writes) as f64 / n
        } else {
            calls as f64 / n
        };
        println!(
            "{:<12} {:<13} {:>5} {:>8.1} {:>9} {:>7} {:>7} {:>9.2} {:>24} {:>15} {:>20}",
            r.delivery,
            r.label,
            r.concurrency,
            r.run.wall.as_secs_f64(),
            managed_resources(rep),
            calls,
            writes,
            per,
            format!("{cmin}/{cmed}/{cmax}"),
            format!("{wmin}/{wmed}/{wmax}"),
            format!(
                "{}/{}",
                central["calls"].as_u64().unwrap_or(0),
                central["writes"].as_u64().unwrap_or(0)
            ),
        );
    }
    println!(
        "per res.: calls per managed resource for a first enroll (target <= 1.2; the seed's Terraform module: {}), reads per resource for a re-run (target <= 0.5, and 0 writes; Terraform plan: {})",
        TERRAFORM.0, TERRAFORM.1
    );
    println!(
        "(per member: both regions; the management account is also enrolled as a member, and its figures include the central resources)"
    );
    Ok(())
}
