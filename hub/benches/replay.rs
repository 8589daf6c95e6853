//! `hub replay` at the limit: the real binary (this bench's release build) over a generated
//! archive of gzip-compressed CloudTrail log files in the central bucket's layout, against
//! gzip's own `zcat` decompressing the same files in the same run.
//!
//! `cargo bench -p orgwatch-hub --bench replay` prints, for the first corpus size:
//! * `zcat` MB/s (raw, decompressed bytes per second; output to /dev/null), on one core;
//! * `hub replay --concurrency 1` MB/s raw on one core, the scanned path and the plain
//!   path (`ORGWATCH_REPLAY_PLAIN=1`, a DOM per record), each with its ratio to zcat
//!   (target: scanned >= 1.0);
//! * `hub replay --concurrency 2` on two cores and its scaling over one (target >= 1.8),
//!   beside two zcat processes on the two cores (the scaling this machine gives);
//!
//! and for every size the peak RSS of `hub replay` (target: independent of the archive's
//! size). The findings of every run must be the same (the bench fails otherwise). Cores are
//! pinned with `taskset` when it is there. Best of `--rounds` runs, interleaved.
//!
//! Options (after `--`): `--records N,M` (default 200000,50000), `--per-file N` (default
//! 500: 400 files of about 0.5 MB raw each at 200,000 records), `--rounds N` (default 3).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../shared/benches/corpus.rs"]
mod corpus;

type Error = Box<dyn std::error::Error>;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// One finished command: wall time, peak RSS in KiB, and what it printed.
struct Ran {
    wall: Duration,
    peak_kib: i64,
    stdout: Vec<u8>,
}

/// `program`, pinned to `cores` with taskset when `pin` (taskset execs it: the same
/// process, so its rusage is the program's).
fn pinned(program: impl AsRef<std::ffi::OsStr>, cores: &str, pin: bool) -> Command {
    if pin {
        let mut t = Command::new("taskset");
        t.arg("-c").arg(cores).arg(program);
        t
    } else {
        Command::new(program)
    }
}

/// Runs `command` and reaps it with wait4, for its own peak RSS; its output is kept when
/// `keep`, else it goes to /dev/null.
fn run(mut command: Command, keep: bool) -> Result<Ran, Error> {
    let out =
        std::env::temp_dir().join(format!("orgwatch-replay-bench-{}.out", std::process::id()));
    let stdout = match keep {
        true => Stdio::from(std::fs::File::create(&out)?),
        false => Stdio::null(),
    };
    let started = Instant::now();
    let child = command.stdout(stdout).stderr(Stdio::inherit()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, written by the kernel; the child is ours and reaped once
    // (its std handle is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    drop(child);
    if reaped != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()).into());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{:?} failed (status {status})", command.get_program()).into());
    }
    let stdout = if keep {
        std::fs::read(&out)?
    } else {
        Vec::new()
    };
    let _ = std::fs::remove_file(&out);
    Ok(Ran {
        wall,
        peak_kib: usage.ru_maxrss,
        stdout,
    })
}

/// Two zcat processes at once, one per core, each on half the files: how well this machine
/// scales two independent processes (a VM's neighbours share its cores' caches).
fn zcat_on_two_cores(files: &[PathBuf], pin: bool) -> Result<Duration, Error> {
    let (a, b) = files.split_at(files.len() / 2);
    let started = Instant::now();
    let mut children = Vec::new();
    for (core, half) in [("0", a), ("1", b)] {
        let mut zcat = pinned("zcat", core, pin);
        children.push(zcat.arg("--").args(half).stdout(Stdio::null()).spawn()?);
    }
    for mut child in children {
        if !child.wait()?.success() {
            return Err("zcat failed".into());
        }
    }
    Ok(started.elapsed())
}

/// The `.json.gz` files under `dir`, sorted.
fn log_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".json.gz") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the corpus as log files under `dir`; returns the raw bytes.
fn write_corpus(dir: &Path, records: usize, per_file: usize) -> Result<u64, Error> {
    let _ = std::fs::remove_dir_all(dir);
    let records = corpus::records(records, 0x0067_7761_7463_6821);
    let mut raw = 0u64;
    for (key, gz) in corpus::log_files(&records, per_file) {
        let path = dir.join(&key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut inflated)?;
        raw += inflated.len() as u64;
        std::fs::write(&path, gz)?;
    }
    Ok(raw)
}

/// The findings without the sample event id (which of two events of the same second is
/// the sample depends on the order files finish in).
fn findings(stdout: &[u8]) -> Result<(u64, Vec<Value>), Error> {
    let doc: Value = serde_json::from_slice(stdout)?;
    let events = doc["events"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    for f in doc["findings"].as_array().cloned().unwrap_or_default() {
        let mut f = f;
        if let Some(m) = f.as_object_mut() {
            m.remove("sample_event_id");
        }
        out.push(f);
    }
    Ok((events, out))
}

fn main() -> Result<(), Error> {
    // The corpus is written by a child process (this bench again), so that the bench holds
    // no records when it starts `hub replay`: a forked child's peak RSS counts the pages it
    // shares with its parent until it execs.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-corpus") {
        let (Some(dir), Some(n), Some(per)) = (args.get(i + 1), args.get(i + 2), args.get(i + 3))
        else {
            return Err("--write-corpus DIR RECORDS PER_FILE".into());
        };
        let raw = write_corpus(Path::new(dir), n.parse()?, per.parse()?)?;
        println!("{raw}");
        return Ok(());
    }
    let sizes: Vec<usize> = arg("--records", "200000,50000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let per_file: usize = arg("--per-file", "500").parse().unwrap_or(500);
    let rounds: usize = arg("--rounds", "3").parse().unwrap_or(3).max(1);
    let hub = PathBuf::from(env!("CARGO_BIN_EXE_hub"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replay-bench");
    let pin = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !pin {
        println!("(taskset not found: runs are not pinned to cores)");
    }
    let replay = |dir: &Path, concurrency: &str, plain: bool, cores: &str| {
        let mut c = pinned(&hub, cores, pin);
        c.arg("replay")
            .arg(dir)
            .args(["--output", "json", "--quiet", "--concurrency", concurrency])
            .env("RUST_LOG", "warn");
        if plain {
            c.env("ORGWATCH_REPLAY_PLAIN", "1");
        }
        c
    };
    let mut reference: Option<(u64, Vec<Value>)> = None;
    let mut peaks = Vec::new();
    for (n, &records) in sizes.iter().enumerate() {
        let dir = tmp.join(records.to_string());
        let out = Command::new(std::env::current_exe()?)
            .arg("--write-corpus")
            .arg(&dir)
            .args([records.to_string(), per_file.to_string()])
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("writing the corpus failed ({})", out.status).into());
        }
        let raw: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        let files = log_files(&dir)?;
        let compressed: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "corpus: {records} CloudTrail records in {} gzip files, {:.1} MB raw, {:.1} MB compressed",
            files.len(),
            raw as f64 / 1e6,
            compressed as f64 / 1e6
        );
        let mut best = [Duration::MAX; 5];
        let mut peak = 0i64;
        for _ in 0..rounds {
            if n == 0 {
                let mut zcat = pinned("zcat", "0", pin);
                zcat.arg("--").args(&files);
                let z = run(zcat, false)?;
                best[0] = best[0].min(z.wall);
                best[4] = best[4].min(zcat_on_two_cores(&files, pin)?);
                let plain = run(replay(&dir, "1", true, "0"), true)?;
                best[2] = best[2].min(plain.wall);
                let two = run(replay(&dir, "2", false, "0,1"), true)?;
                best[3] = best[3].min(two.wall);
                for r in [&plain, &two] {
                    let got = findings(&r.stdout)?;
                    if let Some(want) = &reference
                        && *want != got
                    {
                        return Err("the runs' findings differ".into());
                    }
                    reference.get_or_insert(got);
                }
            }
            let one = run(replay(&dir, "1", false, "0"), true)?;
            best[1] = best[1].min(one.wall);
            peak = peak.max(one.peak_kib);
            let got = findings(&one.stdout)?;
            if got.0 != records as u64 {
                return Err(format!("{} events counted of {records}", got.0).into());
            }
            if n == 0 {
                if reference.as_ref().is_some_and(|want| *want != got) {
                    return Err("the scanned path's findings differ from the plain path's".into());
                }
                if got.1.len() < 10 {
                    return Err("the corpus must exercise the pack".into());
                }
            }
        }
        peaks.push((records, peak));
        if n == 0 {
            let mbs = |d: Duration| raw as f64 / 1e6 / d.as_secs_f64();
            let (zcat, one, plain, two) = (mbs(best[0]), mbs(best[1]), mbs(best[2]), mbs(best[3]));
            let zcat_two = mbs(best[4]);
            let matches: u64 = reference
                .as_ref()
                .map(|(_, f)| f.iter().filter_map(|f| f["count"].as_u64()).sum())
                .unwrap_or(0);
            println!("  {matches} rule matches, the same in every run");
            println!("  zcat, one core:                      {zcat:>7.1} MB/s raw");
            println!(
                "  hub replay, one core, scanned:       {one:>7.1} MB/s raw  ratio to zcat {:.2} (target >= 1.0: {})",
                one / zcat,
                if one >= zcat { "met" } else { "NOT met" }
            );
            println!(
                "  hub replay, one core, plain (DOM):   {plain:>7.1} MB/s raw  ratio to zcat {:.2}",
                plain / zcat
            );
            println!(
                "  hub replay, two cores, scanned:      {two:>7.1} MB/s raw  scaling {:.2} (target >= 1.8: {})",
                two / one,
                if two / one >= 1.8 { "met" } else { "NOT met" }
            );
            println!(
                "  two zcat processes, one per core:    {zcat_two:>7.1} MB/s raw  scaling {:.2} (what this machine gives two independent processes)",
                zcat_two / zcat
            );
        }
    }
    for (records, peak) in &peaks {
        println!(
            "  peak RSS of hub replay --concurrency 1 over {records} records: {:.1} MB",
            *peak as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
