//! Two agent replicas sharing the DynamoDB dedupe store: alerts/s per agent when every
//! DynamoDB call takes 20 ms longer (a loopback relay in front of the emulator holds back
//! each answer), and the ratio to the same run at 0 ms. Target: latency costs at most 2x
//! (a store awaited once per alert inside the loop costs 10x and more).
//!
//! `cargo bench -p orgwatch-tests --bench replicas` (alerts: `ORGWATCH_BENCH_ALERTS`,
//! default 4000; latency: `ORGWATCH_BENCH_LATENCY_MS`, default 20).
//!
//! In process: each replica is the agent's own runtime (`agent::runtime::run`) over an
//! in-memory queue, with the real DynamoDB store and a webhook sink on loopback. The alerts
//! are distinct alarms (4 rules x many accounts); half of them reach both replicas
//! (SNS delivers at least once), so the claims contend as in production. The figure is the
//! time until the webhook has every distinct alert, once. The emulator (moto, in Python) is
//! slower than DynamoDB, so the 0 ms run is a lower bound of the real throughput; what the
//! bench shows is how much the added latency costs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::classify::PackCatalog;
use agent::dedupe::{DynamoStore, Store};
use agent::metrics::Metrics;
use agent::runtime::{Pipeline, run};
use agent::sinks::Sink;
use agent::source::memory::MemorySource;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use orgwatch_tests::proxy::Latency;
use orgwatch_tests::{Emulator, Receiver};
use shared::aws::ClientFactory;

type Error = Box<dyn std::error::Error>;

/// An alarm notification as SNS delivers it to the queue.
fn alarm(i: usize) -> String {
    // Four rules of distinct incidents (root-activity and cis-4.3 are one incident: the
    // event and the alarm of a root sign-in).
    let rules = ["cis-4.1", "cis-4.4", "cis-4.5", "cis-4.6"];
    let account = format!("{:012}", 200_000_000_000u64 + (i / rules.len()) as u64);
    let name = format!("orgwatch-{}", rules[i % rules.len()]);
    let message = serde_json::json!({
        "AlarmName": name, "AWSAccountId": account, "NewStateValue": "ALARM",
        "OldStateValue": "OK", "NewStateReason": "Threshold Crossed",
        "StateChangeTime": "2024-05-01T12:05:00.000+0000",
        "Region": "US East (N. Virginia)",
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}"),
    });
    serde_json::json!({
        "Type": "Notification", "MessageId": format!("bench-{i}"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orgwatch-alerts",
        "Message": message.to_string(), "Timestamp": "2024-05-01T12:05:01.000Z"
    })
    .to_string()
}

async fn table(factory: &ClientFactory, name: &str) -> Result<(), Error> {
    factory
        .home()
        .dynamodb()
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(())
}

fn pipeline(hook: &str, store: Store) -> Result<Pipeline, Error> {
    let text = format!(
        "[source]\nqueue = \"bench\"\nmax_in_flight = 20000\nvisibility = \"30s\"\n[group]\nby = [\"rule\"]\nwait = \"1s\"\ninterval = \"1s\"\n[[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{hook}\"\n"
    );
    let path = Path::new("bench-agent.toml");
    let raw = agent::config::parse(path, &text).map_err(|e| e.to_string())?;
    let cfg = agent::config::validate(&raw, path, &text, &|_| None)
        .map_err(|e| format!("bench configuration: {e:?}"))?;
    let http = agent::sinks::http::HttpClient::new();
    let sinks = cfg
        .sinks
        .iter()
        .map(|s| Sink::build(s, &http, None).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new(cfg.sinks.iter().map(|s| s.name.clone())));
    Ok(Pipeline {
        config: cfg,
        store,
        catalog: Arc::new(PackCatalog::builtin()?),
        sinks,
        metrics,
        drain: Duration::from_secs(5),
        enricher: None,
    })
}

/// Distinct alerts the receiver has, and how many alerts it was sent in all.
fn delivered(r: &Receiver) -> (usize, usize) {
    let all = sent(r);
    let n = all.len();
    let distinct: std::collections::BTreeSet<_> = all.into_iter().map(|(_, f)| f).collect();
    (distinct.len(), n)
}

/// (replica, fingerprint) of every alert the receiver was sent (each replica posts to a
/// path of its own).
fn sent(r: &Receiver) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for q in r.accepted() {
        let Some(doc) = q.json() else { continue };
        for a in doc["alerts"].as_array().into_iter().flatten() {
            all.push((q.path.clone(), a["fingerprint"].to_string()));
        }
    }
    all
}

/// Alerts sent more than once: by the same replica, and by both.
fn repeats(r: &Receiver) -> (usize, usize) {
    let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (who, f) in sent(r) {
        by.entry(f).or_default().push(who);
    }
    let mut same = 0;
    let mut both = 0;
    for who in by.values().filter(|w| w.len() > 1) {
        if who.iter().all(|w| *w == who[0]) {
            same += 1;
        } else {
            both += 1;
        }
    }
    (same, both)
}

struct Figures {
    secs: f64,
    per_agent: [usize; 2],
    duplicates: usize,
}

async fn once(
    emu: &Emulator,
    upstream: SocketAddr,
    alerts: usize,
    delay: Duration,
) -> Result<Figures, Error> {
    let relay = Latency::start(upstream, delay).await?;
    let mut options = emu.aws_options();
    options.endpoint_url = Some(relay.url());
    let factory = ClientFactory::new(options).await?;
    let name = format!("bench-replicas-{}ms", delay.as_millis());
    table(&factory, &name).await?;
    let hook = Receiver::start().await?;
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let mut sources = Vec::new();
    let mut tasks = Vec::new();
    let mut metrics = Vec::new();
    let mut counts = [0usize; 2];
    for (replica, count) in counts.iter_mut().enumerate() {
        let store =
            DynamoStore::connect(factory.home().dynamodb(), &name, Duration::from_secs(3600))
                .await?;
        // The visibility the configuration names (the SQS source asks for it on receive).
        let source = Arc::new(MemorySource::new(Duration::from_secs(30), 10));
        for i in (0..alerts).filter(|i| i % 2 == replica || i % 4 == 3 - replica) {
            source.send(alarm(i));
            *count += 1;
        }
        let p = pipeline(&hook.url(&format!("/hook/{replica}")), Arc::new(store))?;
        sources.push(source.clone());
        metrics.push(p.metrics.clone());
        tasks.push(tokio::spawn(run(source, p, shutdown.clone())));
    }
    let started = Instant::now();
    let limit = Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if delivered(&hook).0 >= alerts {
            break;
        }
        if started.elapsed() > limit {
            let state: Vec<String> = (0..2)
                .map(|r| {
                    let m = &metrics[r];
                    format!(
                        "replica {r}: {} left in its queue, {} dead-lettered, {} store failures, {} held back, {} acked",
                        sources[r].remaining(),
                        sources[r].dead().len(),
                        m.store_failures.get(),
                        m.held_elsewhere.get(),
                        m.acked.get()
                    )
                })
                .collect();
            return Err(format!(
                "{} of {alerts} alerts delivered after {limit:?}; {}",
                delivered(&hook).0,
                state.join("; ")
            )
            .into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = shutdown_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let (distinct, sent) = delivered(&hook);
    let (same, both) = repeats(&hook);
    if same + both > 0 {
        eprintln!("repeated alerts: {same} by one replica, {both} by both");
    }
    Ok(Figures {
        secs,
        per_agent: counts,
        duplicates: sent - distinct,
    })
}

fn main() -> Result<(), Error> {
    let alerts: usize = std::env::var("ORGWATCH_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let latency_ms: u64 = std::env::var("ORGWATCH_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let emu = Emulator::start()?;
        let upstream: SocketAddr = emu
            .url()
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| format!("emulator address {}: {e}", emu.url()))?;
        let mut rates = Vec::new();
        for delay in [Duration::ZERO, Duration::from_millis(latency_ms)] {
            let f = once(&emu, upstream, alerts, delay).await?;
            let per_agent: Vec<String> = f
                .per_agent
                .iter()
                .map(|n| format!("{:.0}", *n as f64 / f.secs))
                .collect();
            println!(
                "replicas, DynamoDB +{} ms a call: {alerts} distinct alerts ({} + {} messages) delivered in {:.2}s = {} alerts/s per agent, {} duplicates",
                delay.as_millis(),
                f.per_agent[0],
                f.per_agent[1],
                f.secs,
                per_agent.join(" and "),
                f.duplicates
            );
            rates.push(alerts as f64 / f.secs);
            if f.duplicates > 0 {
                return Err(format!("{} alerts delivered more than once", f.duplicates).into());
            }
        }
        println!(
            "replicas: {latency_ms} ms of latency costs {:.2}x (target: at most 2x)",
            rates[0] / rates[1]
        );
        Ok(())
    })
}
