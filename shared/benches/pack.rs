//! Throughput of the detection pack over a generated CloudTrail corpus (`corpus.rs`).
//!
//! `cargo bench -p orgwatch-shared --bench pack` prints events/s, on one thread, for two
//! paths:
//! * the plain path: (a) serde_json parsing alone and (b) parsing plus evaluating the whole
//!   built-in pack on the DOM;
//! * the scanned path `hub replay` takes (`shared::pattern::select`): (a) scanning each
//!   record for the pack's paths alone (which includes finding the id of each kept string
//!   among the pack's literals) and (b) scanning plus evaluating the pack on what was
//!   kept. Target: (b)/(a) >= 0.95, evaluation nearly free beside the scan.
//!
//! then MB/s over gzip-compressed CloudTrail log files for (c) decompress + read and
//! (d) decompress + read + evaluate, through the same readers `hub replay` uses, both paths.
//! `hub replay` itself, against gzip's zcat, is measured by `cargo bench -p orgwatch-tests
//! --bench replay`.
//!
//! Options (after `--`): `--events N` (default 120000), `--rounds N` (default 3, best kept),
//! `--profile-scan` (only scan + evaluate, `--rounds` times: for a profiler).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::pattern::Event;
use shared::pattern::select::{Bound, BoundSet, Scanner, SelectorBuilder};
use shared::rules::Pack;
use shared::rules::input::{Item, ScanBuffers, for_each_event, for_each_scanned};

mod corpus;

/// Runs every case once per round, interleaved (so that load from other processes hits
/// all cases alike), and keeps each case's best time and its last result.
fn interleaved(rounds: usize, cases: &mut [&mut dyn FnMut() -> usize]) -> Vec<(Duration, usize)> {
    let mut out = vec![(Duration::MAX, 0); cases.len()];
    for _ in 0..rounds {
        for (case, slot) in cases.iter_mut().zip(out.iter_mut()) {
            let t = Instant::now();
            let v = case();
            slot.0 = slot.0.min(t.elapsed());
            slot.1 = v;
        }
    }
    out
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = arg("--events", 120_000);
    let rounds = arg("--rounds", 3).max(1);
    let pack = match Pack::builtin() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("built-in pack: {e}");
            std::process::exit(1);
        }
    };
    let mut b = SelectorBuilder::new(true);
    let bound: Option<Vec<Bound>> = pack.rules().iter().map(|r| b.pattern(&r.pattern)).collect();
    let Some(bound) = bound else {
        eprintln!("the built-in pack has a rule that is not a JSON pattern");
        std::process::exit(1);
    };
    let selector = b.build();
    let bound = BoundSet::new(&selector, bound);
    let records = corpus::records(n, 0x0067_7761_7463_6821);
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    let bytes: usize = lines.iter().map(String::len).sum();
    println!(
        "corpus: {n} CloudTrail records, {:.1} MB of JSON, {} rules in the built-in pack",
        bytes as f64 / 1e6,
        pack.len()
    );

    // (a) parse only; (b) parse (lazily, once per event) + evaluate every rule;
    // evaluation alone on already-parsed records, for reference.
    let mut parse_only = || {
        let mut keys = 0usize;
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            keys += v.as_object().map_or(0, |m| m.len());
        }
        black_box(keys)
    };
    let mut parse_eval = || {
        let mut matched = 0usize;
        for l in &lines {
            let event = Event::from_message(l);
            matched += pack.matching(&event).count();
        }
        black_box(matched)
    };
    let mut eval_only = || {
        let mut matched = 0usize;
        for v in &records {
            matched += pack.matching(&Event::from_value(v)).count();
        }
        black_box(matched)
    };
    let mut scanner = Scanner::new();
    let mut scan_only = || {
        let mut count = 0usize;
        for l in &lines {
            count += scanner
                .for_each_record(&selector, l, |r| {
                    black_box(r);
                })
                .unwrap_or(0);
        }
        black_box(count)
    };
    let mut scanner = Scanner::new();
    let mut scan_eval = || {
        let mut matched = 0usize;
        for l in &lines {
            let _ = scanner.for_each_record(&selector, l, |r| {
                bound.for_each_match(r, |_| matched += 1);
            });
        }
        black_box(matched)
    };
    if std::env::args().any(|a| a == "--profile-scan") {
        // For a profiler: only the scanned path, many rounds.
        for _ in 0..rounds {
            black_box(scan_eval());
        }
        return;
    }
    let times = interleaved(
        rounds,
        &mut [
            &mut parse_only,
            &mut parse_eval,
            &mut eval_only,
            &mut scan_only,
            &mut scan_eval,
        ],
    );
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let ratio = |(a, _): (Duration, usize), (b, _): (Duration, usize)| rate(b) / rate(a);
    let plain = ratio(times[0], times[1]);
    let scanned = ratio(times[3], times[4]);
    println!("plain path (serde_json DOM):");
    println!(
        "  (a) parse only:             {:>10.0} events/s",
        rate(times[0].0)
    );
    println!(
        "  (b) parse + evaluate pack:  {:>10.0} events/s  ({} rule matches)",
        rate(times[1].0),
        times[1].1
    );
    println!("  ratio (b)/(a): {plain:.2}");
    println!(
        "      evaluate only (parsed):  {:>10.0} events/s",
        rate(times[2].0)
    );
    println!("scanned path (hub replay):");
    println!(
        "  (a) scan only:              {:>10.0} events/s",
        rate(times[3].0)
    );
    println!(
        "  (b) scan + evaluate pack:   {:>10.0} events/s  ({} rule matches)",
        rate(times[4].0),
        times[4].1
    );
    println!(
        "  ratio (b)/(a): {scanned:.2} (target >= 0.95: {})",
        if scanned >= 0.95 { "met" } else { "NOT met" }
    );
    if times[1].1 != times[4].1 {
        eprintln!(
            "the scanned path found {} matches, the plain path {}",
            times[4].1, times[1].1
        );
        std::process::exit(1);
    }

    // Replay: gzip-compressed CloudTrail files of 1,000 records each.
    let files: Vec<Vec<u8>> = corpus::log_files(&records, 1000)
        .into_iter()
        .map(|(_, gz)| gz)
        .collect();
    let gz: usize = files.iter().map(Vec::len).sum();
    let mut decode_only = || {
        let mut count = 0usize;
        for f in &files {
            count += for_each_event(f, |_, item| {
                black_box(&item);
            })
            .unwrap_or(0);
        }
        black_box(count)
    };
    let mut decode_eval = || {
        let mut matched = 0usize;
        for f in &files {
            let _ = for_each_event(f, |_, item| {
                let event = match item {
                    Item::Record(v) => Event::from_value(v),
                    Item::Text(t) => Event::from_message(t),
                };
                matched += pack.matching(&event).count();
            });
        }
        black_box(matched)
    };
    let mut buffers = ScanBuffers::default();
    let mut scan_files = || {
        let mut count = 0usize;
        for f in &files {
            count += for_each_scanned(f, &mut buffers, &selector, |r| {
                black_box(r);
            })
            .unwrap_or(0);
        }
        black_box(count)
    };
    let mut buffers = ScanBuffers::default();
    let mut scan_files_eval = || {
        let mut matched = 0usize;
        for f in &files {
            let _ = for_each_scanned(f, &mut buffers, &selector, |r| {
                bound.for_each_match(r, |_| matched += 1);
            });
        }
        black_box(matched)
    };
    let times = interleaved(
        rounds,
        &mut [
            &mut decode_only,
            &mut decode_eval,
            &mut scan_files,
            &mut scan_files_eval,
        ],
    );
    let mbs = |d: Duration, b: usize| b as f64 / 1e6 / d.as_secs_f64();
    println!(
        "replay over {} gzip files ({:.1} MB compressed, {:.1} MB of JSON), one thread:",
        files.len(),
        gz as f64 / 1e6,
        bytes as f64 / 1e6
    );
    for (label, (d, _)) in [
        ("plain   (c) decompress + parse:           ", times[0]),
        ("plain   (d) decompress + parse + evaluate:", times[1]),
        ("scanned (c) decompress + scan:            ", times[2]),
        ("scanned (d) decompress + scan + evaluate: ", times[3]),
    ] {
        println!(
            "{label} {:>7.1} MB/s compressed, {:>7.1} MB/s JSON, {:>9.0} events/s",
            mbs(d, gz),
            mbs(d, bytes),
            rate(d)
        );
    }
}
