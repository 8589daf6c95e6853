//! `hub watch`: from a tamper event to its account converged, for 20 events one after the
//! other on the emulator. Prints the median, p95 and maximum of two figures: the wall time
//! from PutEvents to the deleted alarm being back (what an operator sees), and the watch's
//! own `latency_ms` (the event's time to the reconcile's end, from its JSON log).
//!
//! `cargo bench -p orgwatch-tests --bench watch` (events: `ORGWATCH_BENCH_EVENTS`, default
//! 20). The figures include `hub watch`'s coalescing window (`--coalesce 1s` here, 3 s by
//! default) and long-poll; on AWS add EventBridge's delivery of CloudTrail events (seconds).

use std::time::{Duration, Instant};

use orgwatch_tests::Emulator;
use orgwatch_tests::watch::{
    Watcher, delete_alarm_call, has_alarm_and_filter, member, put_records,
};

type Error = Box<dyn std::error::Error>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, mut xs: Vec<Duration>) {
    xs.sort();
    println!(
        "{name:<28} n={:<3} median {:>7.2?}  p95 {:>7.2?}  max {:>7.2?}",
        xs.len(),
        percentile(&xs, 50.0),
        percentile(&xs, 95.0),
        xs.last().copied().unwrap_or_default()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let events: usize = std::env::var("ORGWATCH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let emu = Emulator::start()?;
    let org = emu.create_org(1).await?;
    let f = emu.factory().await?;
    let dir = std::env::temp_dir().join(format!("orgwatch-bench-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        "[hub]\nregions = [\"us-east-1\", \"eu-west-1\"]\n[trail]\nbucket = \"bench-orgwatch-cloudtrail\"\n",
    )?;
    let enroll = std::process::Command::new(orgwatch_tests::bin("hub"))
        .args(["enroll", "--quiet", "--output", "json", "--config"])
        .arg(&config)
        .envs(emu.env())
        .output()?;
    if !enroll.status.success() {
        return Err(format!(
            "hub enroll failed: {}",
            String::from_utf8_lossy(&enroll.stderr)
        )
        .into());
    }
    let w = Watcher::start(&emu, &config, &dir.join("watch.log"), &["--coalesce", "1s"]);
    let started = Instant::now();
    while w.lines("resync done").is_empty() {
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("hub watch did not start:\n{}", w.log()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let account = org.members[0].clone();
    let mut wall = Vec::new();
    for n in 0..events {
        let region = if n % 2 == 0 { "us-east-1" } else { "eu-west-1" };
        let c = member(&f, &account, region).await;
        c.cloudwatch()
            .delete_alarms()
            .alarm_names("orgwatch-cis-4.3")
            .send()
            .await?;
        let t = Instant::now();
        put_records(&c, &[delete_alarm_call(&account, region, n)]).await;
        loop {
            if has_alarm_and_filter(&f, &account, region).await.0 {
                break;
            }
            if t.elapsed() > Duration::from_secs(120) {
                return Err(format!("event {n} not converged:\n{}", w.log()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wall.push(t.elapsed());
    }
    let own: Vec<Duration> = w
        .lines("converged")
        .iter()
        .filter(|v| v["fields"]["action"] == "reconcile")
        .filter_map(|v| v["fields"]["latency_ms"].as_u64())
        .map(Duration::from_millis)
        .collect();
    println!("hub watch, {events} tamper events one after the other (emulator, --coalesce 1s)");
    report("put -> alarm back", wall);
    report("event time -> converged", own);
    Ok(())
}
