//! decode -> classify -> dedupe -> group over generated messages, in process, one core.
//! Prints alerts/s and the memory per tracked fingerprint (targets: >= 200,000 alerts/s with
//! the default file store, <= 256 B), once with the in-memory store and twice with the
//! default embedded file store (redb), asked once per received batch of 10 (SQS's largest
//! receive, what the agent's batcher does at the least) and per 100 (what it gathers when
//! the queue is busy: every message waiting, up to 256). The file store keeps placements in
//! memory and writes them back with the next delivery's record or every 4,096 keys, so its
//! commits are not per batch. For it, whose state lives on disk, the figure is the file's
//! bytes per tracked fingerprint. The bench uses the agent binary's allocator (mimalloc),
//! after one unreported warm-up run. A fingerprint is one incident;
//! a key (rule, account, region) holds up to `MAX_INCIDENTS_PER_KEY` of them.
//! A third run drives the agent's own core (`agent::core::Core`: decode, classify, route,
//! group, settle) with the in-memory store answering its Prepare effects inline, as the
//! runtime's tasks would: the cost of the decisions themselves.
//! `cargo bench -p orgwatch-agent --bench pipeline`.

use std::path::PathBuf;

/// The agent binary's allocator (`agent/src/main.rs`), so the bench measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use agent::classify::{Classified, PackCatalog, classify};
use agent::config::GroupSpec;
use agent::decode::decode;
use agent::dedupe::{FileStore, LocalStore, MemoryStore};
use agent::fingerprint::incident_key;
use agent::group::Grouper;
use std::sync::Arc;

/// The agent's core over `messages`: every Prepare answered from `store` at once, the
/// groups sent after their wait, every notification completed as delivered.
fn run_core(messages: &[String], catalog: Arc<PackCatalog>, store: &dyn LocalStore) -> Run {
    use agent::core::{Clock, Completion, Core, Effect, Outcome, Prepared, Settings};
    let text = "[source]\nqueue = \"q\"\n[group]\nwait = \"1s\"\ninterval = \"1s\"\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n";
    let path = std::path::Path::new("bench.toml");
    let cfg = agent::config::parse(path, text)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            agent::config::validate(&raw, path, text, &|_| None).map_err(|e| format!("{e:?}"))
        })
        .unwrap_or_else(|e| fail("bench configuration", e));
    let window = cfg.dedupe.window;
    let mut core: Core<()> = Core::new(
        Arc::new(cfg),
        Settings {
            visibility: Duration::from_secs(60),
            claim_lease: Duration::from_secs(120),
            retention: Duration::from_secs(86_400),
        },
        catalog,
        Arc::new(agent::metrics::Metrics::default()),
    );
    let t0 = Instant::now();
    let clock = |secs: u64| Clock {
        now: t0 + Duration::from_secs(secs),
        wall_ms: 1_700_000_000_000 + 1000 * secs as i64,
    };
    let start = Instant::now();
    let (mut alerts, mut store_errors, mut acked, mut notifications) = (0, 0, 0, 0);
    for (i, body) in messages.iter().enumerate() {
        let env = agent::source::Envelope {
            message_id: format!("m-{i}"),
            body: body.clone(),
            token: format!("t-{i}"),
            receive_count: 1,
            sent_ms: None,
        };
        for effect in core.on_received(env, (), clock(0)) {
            match effect {
                Effect::Prepare {
                    id, alerts: routed, ..
                } => {
                    let mut adds = Vec::new();
                    for r in routed {
                        alerts += 1;
                        match store.remember(
                            &incident_key(&r.alert),
                            r.alert.at_ms,
                            r.alert.state,
                            window,
                            0,
                        ) {
                            Ok(inc) => {
                                adds.extend(r.sinks.iter().map(|s| (*s, r.alert.clone(), inc)))
                            }
                            Err(_) => store_errors += 1,
                        }
                    }
                    let done = core.on_prepared(
                        id,
                        Prepared::Ready {
                            adds,
                            held_until: None,
                        },
                        clock(0),
                    );
                    acked += done.iter().filter(|e| matches!(e, Effect::Ack(_))).count();
                }
                Effect::Ack(t) => acked += t.len(),
                _ => {}
            }
        }
    }
    for effect in core.on_tick(clock(2)) {
        if let Effect::Send(n) = effect {
            notifications += 1;
            for e in core.on_completed(
                Completion {
                    id: n.id,
                    outcome: Outcome::Delivered,
                },
                clock(2),
            ) {
                if let Effect::Ack(t) = e {
                    acked += t.len();
                }
            }
        }
    }
    if core.in_flight() > 0 || acked == 0 {
        eprintln!("core: {} still in flight, {acked} acked", core.in_flight());
        store_errors += 1;
    }
    Run {
        alerts,
        notifications,
        secs: start.elapsed().as_secs_f64(),
        store_errors,
    }
}

fn message(i: usize) -> String {
    let account = format!("{:012}", 100_000_000_000u64 + (i % 5000) as u64);
    let rule = ["root-activity", "cis-4.3", "cis-4.1", "cis-4.4"][i % 4];
    let name = format!("orgwatch-{rule}");
    let alarm = serde_json::json!({
        "AlarmName": name, "AWSAccountId": account, "NewStateValue": "ALARM",
        "OldStateValue": "OK", "NewStateReason": "Threshold Crossed",
        "StateChangeTime": format!("2024-05-01T{:02}:{:02}:00.000+0000", (i / 60) % 24, i % 60),
        "Region": "US East (N. Virginia)",
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}"),
    });
    serde_json::json!({
        "Type": "Notification", "MessageId": format!("m-{i}"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orgwatch-alerts",
        "Message": alarm.to_string(), "Timestamp": "2024-05-01T12:00:01.000Z"
    })
    .to_string()
}

struct Run {
    alerts: usize,
    notifications: usize,
    secs: f64,
    store_errors: usize,
}

/// The stages over `messages`, the store asked once per `batch` messages (10: SQS's largest
/// receive, what the agent's batcher does at the least).
fn run(messages: &[String], catalog: &PackCatalog, store: &dyn LocalStore, batch: usize) -> Run {
    let window = Duration::from_secs(900);
    let mut grouper: Grouper<usize> = Grouper::new(GroupSpec::default(), window);
    let start = Instant::now();
    let mut alerts = 0usize;
    let mut store_errors = 0usize;
    for (b, batch) in messages.chunks(batch).enumerate() {
        let mut list = Vec::new();
        for body in batch {
            let Ok(decoded) = decode(body) else { continue };
            if let Classified::Alerts(a) = classify(&decoded, catalog) {
                list.extend(a);
            }
        }
        alerts += list.len();
        let items: Vec<_> = list
            .iter()
            .map(|a| (incident_key(a), a.at_ms, a.state))
            .collect();
        match store.remember_many(&items, window, 0) {
            Ok(placed) => {
                for (alert, inc) in list.into_iter().zip(placed) {
                    if inc.new {
                        let _ = grouper.add(0, alert, inc, b, start);
                    }
                }
            }
            Err(_) => store_errors += 1,
        }
    }
    let notifications = grouper.due(start + Duration::from_secs(60)).len();
    Run {
        alerts,
        notifications,
        secs: start.elapsed().as_secs_f64(),
        store_errors,
    }
}

fn report(label: &str, r: &Run) {
    println!(
        "pipeline ({label}): {} alerts in {:.2}s on one core = {:.0} alerts/s ({} notifications{})",
        r.alerts,
        r.secs,
        r.alerts as f64 / r.secs,
        r.notifications,
        if r.store_errors > 0 {
            format!(", {} STORE ERRORS", r.store_errors)
        } else {
            String::new()
        }
    );
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1);
}

fn main() {
    let n: usize = std::env::var("ORGWATCH_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let messages: Vec<String> = (0..n).map(message).collect();
    let catalog = PackCatalog::builtin().unwrap_or_else(|e| fail("cannot load the pack", e));

    // A warm-up, not reported: the first run would otherwise pay for the process's heap
    // growing (page faults on fresh memory), which the later runs reuse.
    let _ = run(&messages, &catalog, &MemoryStore::default(), 10);
    let memory = MemoryStore::default();
    let r = run(&messages, &catalog, &memory, 10);
    report("in-memory store", &r);
    let (keys, incidents) = (memory.len().max(1), memory.incidents().max(1));
    println!(
        "dedupe memory: {keys} keys, {incidents} tracked fingerprints (incidents); {:.0} bytes per \
         fingerprint, {:.0} per key (in-memory store, approx.)",
        memory.approx_bytes() as f64 / incidents as f64,
        memory.approx_bytes() as f64 / keys as f64
    );

    let path: PathBuf =
        std::env::temp_dir().join(format!("orgwatch-bench-{}.redb", std::process::id()));
    let file = FileStore::open(&path).unwrap_or_else(|e| fail("cannot open the file store", e));
    let r = run(&messages, &catalog, &file, 10);
    drop(file);
    report("file store, the default, asked per 10 messages", &r);
    match std::fs::metadata(&path) {
        Ok(m) => println!(
            "dedupe file: {} bytes on disk, {:.0} per fingerprint, {:.0} per key (no heap per \
             fingerprint)",
            m.len(),
            m.len() as f64 / incidents as f64,
            m.len() as f64 / keys as f64
        ),
        Err(e) => eprintln!("cannot stat {}: {e}", path.display()),
    }
    let _ = std::fs::remove_file(&path);
    let file = FileStore::open(&path).unwrap_or_else(|e| fail("cannot open the file store", e));
    let busy = run(&messages, &catalog, &file, 100);
    drop(file);
    let _ = std::fs::remove_file(&path);
    report("file store, the default, asked per 100 messages", &busy);
    let catalog =
        Arc::new(PackCatalog::builtin().unwrap_or_else(|e| fail("cannot load the pack", e)));
    let core = run_core(&messages, catalog, &MemoryStore::default());
    report("the agent's core, in-memory store", &core);
    if r.store_errors > 0 || busy.store_errors > 0 || core.store_errors > 0 {
        std::process::exit(1);
    }
}
