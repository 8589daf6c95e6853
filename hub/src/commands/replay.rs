//! `hub replay`: backtest the detection pack over archived CloudTrail log files, local or in
//! the central bucket, and summarise what each rule would have caught, per account.
//!
//! Files are processed in parallel (bounded): S3 objects are fetched asynchronously, up to
//! `--concurrency` at once; reading local files, decompressing and evaluating run on one
//! evaluator thread per core (at most `--concurrency`). When every rule of the pack is a
//! JSON pattern, records are scanned for the pack's paths instead of parsed into a DOM
//! ([`Evaluator`]); memory is a few buffers per evaluator, whatever the archive's size. A
//! progress bar is drawn on stderr only when stderr is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value as Json, json};
use shared::aws::{AwsFailure, AwsOptions, ClientFactory};
use shared::pattern::Event;
use shared::pattern::select::{Bound, BoundSet, Field, Selector, SelectorBuilder, Unsupported};
use shared::rules::input::{Item, ReadError, ScanBuffers, for_each_event, for_each_scanned};
use shared::rules::{Pack, unwrap_envelope};
use tokio::task::JoinSet;

use super::rules::{SCHEMA_VERSION, pack_for, table};
use crate::cli::{GlobalArgs, Output, ReplayArgs};
use crate::exit::ExitStatus;
use crate::input::walk;

// ---------------------------------------------------------------------------------------
// Dates (UTC calendar days), without a date library.

/// A calendar day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Day {
    /// `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        let mut it = s.split('-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        Day::from_parts(y, m, d)
    }

    fn from_parts(y: &str, m: &str, d: &str) -> Option<Day> {
        if ![y, m, d]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let day = Day {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
            day: d.parse().ok()?,
        };
        (day.month >= 1 && day.month <= 12 && day.day >= 1 && day.day <= days_in_month(day))
            .then_some(day)
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn from_days(z: i64) -> Day {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Day { year, month, day }
    }

    /// Today, UTC.
    pub fn today() -> Day {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Day::from_days((secs / 86_400) as i64)
    }

    fn next(self) -> Day {
        Day::from_days(self.to_days() + 1)
    }

    fn text(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(d: Day) -> u32 {
    match d.month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (d.year % 4 == 0 && d.year % 100 != 0) || d.year % 400 == 0 => 29,
        _ => 28,
    }
}

/// The days of events to count, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub since: Option<Day>,
    pub until: Option<Day>,
}

impl Range {
    pub fn is_all(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    pub fn contains(&self, day: Day) -> bool {
        self.since.is_none_or(|s| day >= s) && self.until.is_none_or(|u| day <= u)
    }

    /// Whether an event time (`2024-05-14T09:21:07Z`) falls in the range; events without
    /// a readable time only count when the range is unbounded.
    fn contains_time(&self, time: Option<&str>) -> bool {
        if self.is_all() {
            return true;
        }
        time.and_then(|t| t.get(..10))
            .and_then(Day::parse)
            .is_some_and(|d| self.contains(d))
    }
}

/// The `YYYY/MM/DD` of a CloudTrail log file's path or key, if it has one.
pub fn day_of_path(path: &str) -> Option<Day> {
    let parts: Vec<&str> = path.split(['/', '\\']).collect();
    parts.windows(3).rev().find_map(|w| {
        (w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2)
            .then(|| Day::from_parts(w[0], w[1], w[2]))
            .flatten()
    })
}

/// The account id in a central-bucket key (`.../<account>/CloudTrail/...`).
pub fn account_of_path(path: &str) -> Option<&str> {
    let mut prev: Option<&str> = None;
    for part in path.split(['/', '\\']) {
        if part == "CloudTrail" {
            return prev.filter(|p| shared::naming::is_account_id(p));
        }
        prev = Some(part);
    }
    None
}

fn is_log_file(name: &str) -> bool {
    (name.ends_with(".json.gz") || name.ends_with(".json") || name.ends_with(".jsonl"))
        && !name.contains("CloudTrail-Digest")
}

// ---------------------------------------------------------------------------------------
// The summary.

/// What one rule found in one account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: String,
    pub account: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub sample_event_id: String,
}

impl Finding {
    fn add(&mut self, time: &str, event_id: &str) {
        self.count += 1;
        if self.first_seen.is_empty() || time < self.first_seen.as_str() {
            self.first_seen = time.to_string();
            self.sample_event_id = event_id.to_string();
        }
        if time > self.last_seen.as_str() {
            self.last_seen = time.to_string();
        }
    }

    fn merge(&mut self, other: Finding) {
        self.count += other.count;
        if self.first_seen.is_empty()
            || (!other.first_seen.is_empty() && other.first_seen < self.first_seen)
        {
            self.first_seen = other.first_seen;
            self.sample_event_id = other.sample_event_id;
        }
        if other.last_seen > self.last_seen {
            self.last_seen = other.last_seen;
        }
    }
}

/// The result of one file (or all of them): findings by (rule index, account).
#[derive(Debug, Default)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
    pub events: u64,
    pub findings: HashMap<(usize, String), Finding>,
}

impl Tally {
    /// The tally of one file, before its events.
    fn of_file(bytes: &[u8]) -> Tally {
        Tally {
            files: 1,
            bytes: bytes.len() as u64,
            ..Tally::default()
        }
    }

    /// One match of rule `i` in `account` (the rule's id is filled in by `name_rules`).
    fn found(&mut self, i: usize, account: &str, time: &str, event_id: &str) {
        let key = (i, account.to_string());
        match self.findings.get_mut(&key) {
            Some(f) => f.add(time, event_id),
            None => {
                let mut f = Finding {
                    account: account.to_string(),
                    ..Finding::default()
                };
                f.add(time, event_id);
                self.findings.insert(key, f);
            }
        }
    }

    fn name_rules(&mut self, pack: &Pack) {
        let rules = pack.rules();
        for ((i, _), f) in self.findings.iter_mut() {
            if let Some(rule) = rules.get(*i) {
                f.rule.clone_from(&rule.id);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.events += other.events;
        for (k, f) in other.findings {
            match self.findings.get_mut(&k) {
                Some(mine) => mine.merge(f),
                None => {
                    self.findings.insert(k, f);
                }
            }
        }
    }

    /// Findings in pack order, then by account.
    pub fn sorted(&self) -> Vec<&Finding> {
        let mut keys: Vec<&(usize, String)> = self.findings.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.findings.get(k))
            .collect()
    }
}

/// The pack and, when every rule is a JSON pattern, the same pack bound to one selector, so
/// that records are scanned for the few dozen paths the pack reads instead of being parsed
/// into a DOM (`shared::pattern::select`). Files the scanner declines take the plain path.
pub struct Evaluator {
    pack: Arc<Pack>,
    scan: Option<Scan>,
}

struct Scan {
    selector: Selector,
    rules: BoundSet,
    time: Field,
    account: Field,
    id: Field,
}

impl Evaluator {
    pub fn new(pack: Arc<Pack>) -> Evaluator {
        let mut b = SelectorBuilder::new(true);
        let rules: Option<Vec<Bound>> =
            pack.rules().iter().map(|r| b.pattern(&r.pattern)).collect();
        let scan = rules.map(|rules| {
            let (time, account, id) = (
                b.field("eventTime"),
                b.field("recipientAccountId"),
                b.field("eventID"),
            );
            let selector = b.build();
            Scan {
                rules: BoundSet::new(&selector, rules),
                selector,
                time,
                account,
                id,
            }
        });
        Evaluator { pack, scan }
    }

    /// Every file parsed into a DOM.
    pub fn plain(pack: Arc<Pack>) -> Evaluator {
        Evaluator { pack, scan: None }
    }

    /// Whether files are scanned rather than parsed (false when a rule needs the text).
    pub fn scans(&self) -> bool {
        self.scan.is_some()
    }

    /// Evaluates the pack over one file's bytes (gzip or not), as [`tally_plain`] does;
    /// `buffers` are the calling thread's, reused from file to file.
    pub fn tally_file(
        &self,
        buffers: &mut ScanBuffers,
        bytes: &[u8],
        path_account: Option<&str>,
        range: &Range,
    ) -> Result<Tally, ReadError> {
        match self.tally_scanned(buffers, bytes, path_account, range) {
            Some(t) => Ok(t),
            None => tally_plain(&self.pack, bytes, path_account, range),
        }
    }

    /// The scanned path alone: `None` when the pack cannot be scanned or the scanner
    /// declines the file.
    fn tally_scanned(
        &self,
        buffers: &mut ScanBuffers,
        bytes: &[u8],
        path_account: Option<&str>,
        range: &Range,
    ) -> Option<Tally> {
        let scan = self.scan.as_ref()?;
        let mut t = scan.tally(buffers, bytes, path_account, range).ok()?;
        t.name_rules(&self.pack);
        Some(t)
    }
}

impl Scan {
    fn tally(
        &self,
        buffers: &mut ScanBuffers,
        bytes: &[u8],
        path_account: Option<&str>,
        range: &Range,
    ) -> Result<Tally, Unsupported> {
        let mut tally = Tally::of_file(bytes);
        for_each_scanned(bytes, buffers, &self.selector, |record| {
            let time = record.str(self.time);
            if !range.contains_time(time) {
                return;
            }
            tally.events += 1;
            self.rules.for_each_match(record, |i| {
                let account = record
                    .str(self.account)
                    .or(path_account)
                    .unwrap_or("unknown");
                tally.found(
                    i,
                    account,
                    time.unwrap_or(""),
                    record.str(self.id).unwrap_or(""),
                );
            });
        })?;
        Ok(tally)
    }
}

/// Evaluates the pack over one file's bytes (gzip or not), parsing every record into a
/// DOM: the reference semantics, and the path for what the scanner declines.
/// `path_account` is the account the file's path names, used when a record has no
/// `recipientAccountId`.
pub fn tally_plain(
    pack: &Pack,
    bytes: &[u8],
    path_account: Option<&str>,
    range: &Range,
) -> Result<Tally, ReadError> {
    let mut tally = Tally::of_file(bytes);
    let rules = pack.rules();
    for_each_event(bytes, |_, item| {
        let (event, record) = match item {
            Item::Record(v) => {
                let v = unwrap_envelope(v);
                (Event::from_value(v), Some(v))
            }
            Item::Text(t) => (Event::from_message(t), None),
        };
        let field = |k: &str| record.and_then(|r| r.get(k)).and_then(Json::as_str);
        if !range.contains_time(field("eventTime")) {
            return;
        }
        tally.events += 1;
        for (i, rule) in rules.iter().enumerate() {
            if !rule.matches(&event) {
                continue;
            }
            let account = field("recipientAccountId")
                .or(path_account)
                .unwrap_or("unknown");
            tally.found(
                i,
                account,
                field("eventTime").unwrap_or(""),
                field("eventID").unwrap_or(""),
            );
        }
    })?;
    tally.name_rules(pack);
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// Sources and work.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{s}: no bucket name"));
            }
            Ok(Target::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            })
        }
        None => Ok(Target::Local(PathBuf::from(s))),
    }
}

/// One object of the central bucket to process (local files are (path, size) pairs, read
/// by the evaluators themselves).
#[derive(Clone, Debug)]
struct S3Object {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    size: u64,
}

impl S3Object {
    /// Fetched, for an evaluator.
    async fn fetch(self) -> Fetched {
        let get = async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .send()
                .await
                .map_err(|e| AwsFailure::new("GetObject", e).to_string())?;
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| AwsFailure::from_error("GetObject", &e).to_string())?;
            Ok(body.into_bytes().to_vec())
        };
        let bytes = get.await;
        Fetched {
            label: format!("s3://{}/{}", self.bucket, self.key),
            size: self.size,
            path_account: account_of_path(&self.key).map(String::from),
            bytes,
        }
    }
}

/// Every object under `prefix`, paginated.
async fn list_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, u64)>, String> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            format!(
                "s3://{bucket}/{prefix}: {}",
                AwsFailure::new("ListObjectsV2", e)
            )
        })?;
        for o in page.contents() {
            if let Some(key) = o.key() {
                out.push((key.to_string(), o.size().unwrap_or(0).max(0) as u64));
            }
        }
    }
    Ok(out)
}

/// The "directories" directly under `prefix`.
async fn list_dirs(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, String> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            format!(
                "s3://{bucket}/{prefix}: {}",
                AwsFailure::new("ListObjectsV2", e)
            )
        })?;
        out.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string)),
        );
    }
    Ok(out)
}

/// The `.../CloudTrail/<region>/` prefixes under `prefix`, found by walking the layout
/// level by level (`AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/`). `None` when the
/// prefix already points inside a region (then the caller lists it whole).
async fn region_prefixes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Option<Vec<String>>, String> {
    const MAX_DEPTH: usize = 6;
    if let Some(i) = prefix.find("CloudTrail/") {
        let rest = &prefix[i + "CloudTrail/".len()..];
        // At or below a region: nothing to discover.
        if !rest.is_empty() {
            return Ok(None);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![(prefix.to_string(), 0usize)];
    while let Some((p, depth)) = queue.pop() {
        if p.ends_with("/CloudTrail/") || p == "CloudTrail/" {
            out.extend(list_dirs(s3, bucket, &p).await?);
            continue;
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for child in list_dirs(s3, bucket, &p).await? {
            // Digest and Insights files are not events.
            let last = child.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            if last.starts_with("CloudTrail-") {
                continue;
            }
            queue.push((child, depth + 1));
        }
    }
    out.sort();
    Ok(Some(out))
}

/// The date prefixes (`YYYY/MM/DD/`, `YYYY/MM/` or `YYYY/`) covering `since..=until`,
/// coarser when the range is long so that the listing stays a few calls per region.
fn date_prefixes(since: Day, until: Day) -> Vec<String> {
    let days = until.to_days() - since.to_days() + 1;
    let mut out = Vec::new();
    let mut d = since;
    while d <= until {
        let p = if days <= 62 {
            format!("{:04}/{:02}/{:02}/", d.year, d.month, d.day)
        } else if days <= 3 * 366 {
            format!("{:04}/{:02}/", d.year, d.month)
        } else {
            format!("{:04}/", d.year)
        };
        if out.last() != Some(&p) {
            out.push(p);
        }
        d = d.next();
    }
    out
}

/// The log files of an S3 target in the range; the listing is pruned by key prefix when
/// the range has a start.
async fn list_s3(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    range: &Range,
) -> Result<Vec<(String, u64)>, String> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let keys = match range.since {
        None => list_all(s3, bucket, &prefix).await?,
        Some(since) => match region_prefixes(s3, bucket, &prefix).await? {
            None => list_all(s3, bucket, &prefix).await?,
            Some(regions) => {
                let until = range.until.unwrap_or_else(Day::today).max(since);
                let dates = date_prefixes(since, until);
                tracing::debug!(
                    regions = regions.len(),
                    prefixes = dates.len(),
                    "listing by date prefix"
                );
                let mut keys = Vec::new();
                for region in &regions {
                    for date in &dates {
                        keys.extend(list_all(s3, bucket, &format!("{region}{date}")).await?);
                    }
                }
                keys
            }
        },
    };
    Ok(keys
        .into_iter()
        .filter(|(k, _)| is_log_file(k))
        .filter(|(k, _)| day_of_path(k).is_none_or(|d| range.contains(d)))
        .collect())
}

// ---------------------------------------------------------------------------------------
// The command.

/// How the run went, for printing.
struct Outcome {
    tally: Tally,
    errors: Vec<(String, String)>,
}

pub fn run(global: &GlobalArgs, args: &ReplayArgs) -> ExitStatus {
    let day = |flag: &str, v: &Option<String>| -> Result<Option<Day>, String> {
        match v {
            None => Ok(None),
            Some(s) => Day::parse(s)
                .map(Some)
                .ok_or_else(|| format!("--{flag} {s:?}: expected a date as YYYY-MM-DD")),
        }
    };
    let range = match (day("since", &args.since), day("until", &args.until)) {
        (Ok(since), Ok(until)) => Range { since, until },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitStatus::Usage;
        }
    };
    if let (Some(s), Some(u)) = (range.since, range.until)
        && s > u
    {
        eprintln!("error: --since {} is after --until {}", s.text(), u.text());
        return ExitStatus::Usage;
    }
    if args.concurrency == 0 {
        eprintln!("error: --concurrency must be at least 1");
        return ExitStatus::Usage;
    }
    let mut targets = Vec::new();
    for s in &args.sources {
        match parse_target(s) {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitStatus::Usage;
            }
        }
    }
    let pack = match pack_for(global) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Usage;
        }
    };
    // The plain path alone, for measuring one against the other (the replay bench).
    let eval = Arc::new(match std::env::var_os("ORGWATCH_REPLAY_PLAIN") {
        Some(_) => Evaluator::plain(pack),
        None => Evaluator::new(pack),
    });
    tracing::debug!(scanned = eval.scans(), "evaluator");
    let Some(runtime) = super::runtime() else {
        return ExitStatus::Failure;
    };
    let started = Instant::now();
    let outcome = match runtime.block_on(replay(global, args, &targets, range, eval)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Failure;
        }
    };
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(
        files = outcome.tally.files,
        events = outcome.tally.events,
        mb = format!("{:.1}", outcome.tally.bytes as f64 / 1e6),
        mb_per_s = format!("{:.1}", outcome.tally.bytes as f64 / 1e6 / secs),
        events_per_s = format!("{:.0}", outcome.tally.events as f64 / secs),
        "replay done"
    );
    for (source, e) in &outcome.errors {
        eprintln!("error: {source}: {e}");
    }
    let printed = print(global.output, &outcome, &range);
    if !outcome.errors.is_empty() {
        ExitStatus::Failure
    } else {
        printed
    }
}

async fn replay(
    global: &GlobalArgs,
    args: &ReplayArgs,
    targets: &[Target],
    range: Range,
    eval: Arc<Evaluator>,
) -> Result<Outcome, String> {
    let mut local: Vec<(PathBuf, u64)> = Vec::new();
    let mut remote: Vec<S3Object> = Vec::new();
    let mut errors = Vec::new();
    let mut s3: Option<aws_sdk_s3::Client> = None;
    for target in targets {
        match target {
            // A file named on the command line is always read; in a directory, only log
            // files (not digests) of the range.
            Target::Local(path) => match walk(path) {
                Ok(files) if path.is_file() => local.extend(files),
                Ok(files) => local.extend(files.into_iter().filter(|(p, _)| {
                    let s = p.to_string_lossy();
                    is_log_file(&s) && day_of_path(&s).is_none_or(|d| range.contains(d))
                })),
                Err(e) => errors.push((path.display().to_string(), e.to_string())),
            },
            Target::S3 { bucket, prefix } => {
                let client = match &s3 {
                    Some(c) => c.clone(),
                    None => {
                        let factory = ClientFactory::new(AwsOptions {
                            region: global.region.clone(),
                            profile: global.profile.clone(),
                            ..AwsOptions::default()
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                        let c = factory.home().s3();
                        s3 = Some(c.clone());
                        c
                    }
                };
                let keys = list_s3(&client, bucket, prefix, &range).await?;
                tracing::debug!(bucket, prefix, files = keys.len(), "listed");
                remote.extend(keys.into_iter().map(|(key, size)| S3Object {
                    client: client.clone(),
                    bucket: bucket.clone(),
                    key,
                    size,
                }));
            }
        }
    }

    let total: u64 = local
        .iter()
        .map(|(_, n)| n)
        .chain(remote.iter().map(|o| &o.size))
        .sum();
    let bar = progress_bar(global, total, local.len() + remote.len());
    // Evaluation runs on its own threads, one per core at most, each with its own buffers
    // and tally: a file is read (local) or handed over (fetched from S3) and evaluated on
    // the same thread, with no task hops per file. Measured against one blocking task per
    // file, this is what lets two cores do nearly twice the work of one.
    let evaluators = args
        .concurrency
        .min(std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Local files are taken from a shared list by the evaluators themselves (no hand-over
    // per file); S3 objects are fetched here, up to `--concurrency` at once, and handed
    // over as they arrive.
    let (tx, rx) = tokio::sync::mpsc::channel::<Fetched>(args.concurrency);
    let queue = Arc::new(Queue {
        local,
        next: AtomicUsize::new(0),
        fetched: std::sync::Mutex::new(rx),
    });
    let workers: Vec<_> = (0..evaluators)
        .map(|_| {
            let (queue, eval, bar) = (queue.clone(), eval.clone(), bar.clone());
            std::thread::spawn(move || evaluate(&queue, &eval, &range, &bar))
        })
        .collect();
    let mut fetching = JoinSet::new();
    for s3 in remote {
        if fetching.len() >= args.concurrency
            && let Some(done) = fetching.join_next().await
        {
            hand_over(done, &tx, &mut errors).await;
        }
        fetching.spawn(s3.fetch());
    }
    while let Some(done) = fetching.join_next().await {
        hand_over(done, &tx, &mut errors).await;
    }
    drop(tx);
    let mut tally = Tally::default();
    let joined = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "an evaluator thread panicked".to_string())
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| e.to_string())?;
    for done in joined {
        match done {
            Ok((t, errs)) => {
                tally.merge(t);
                errors.extend(errs);
            }
            Err(e) => errors.push(("<evaluator>".to_string(), e)),
        }
    }
    bar.finish_and_clear();
    // The evaluators report in the order they finish; sources in order read better.
    errors.sort();
    Ok(Outcome { tally, errors })
}

/// Passes a fetched object to the evaluators (or records why its task failed).
async fn hand_over(
    done: Result<Fetched, tokio::task::JoinError>,
    tx: &tokio::sync::mpsc::Sender<Fetched>,
    errors: &mut Vec<(String, String)>,
) {
    match done {
        Ok(object) => {
            if let Err(e) = tx.send(object).await {
                errors.push((e.0.label, "no evaluator is left to read it".to_string()));
            }
        }
        Err(e) => errors.push(("<task>".to_string(), e.to_string())),
    }
}

/// What the evaluators take files from: the local files, then what is fetched.
struct Queue {
    local: Vec<(PathBuf, u64)>,
    next: AtomicUsize,
    fetched: std::sync::Mutex<tokio::sync::mpsc::Receiver<Fetched>>,
}

/// A file for an evaluator: its label, size, the account its path names, and its bytes
/// (or why they could not be had).
struct Fetched {
    label: String,
    size: u64,
    path_account: Option<String>,
    bytes: Result<Vec<u8>, String>,
}

/// One evaluator thread: takes files until the queue closes, and returns its tally and the
/// files it could not read.
fn evaluate(
    queue: &Queue,
    eval: &Evaluator,
    range: &Range,
    bar: &indicatif::ProgressBar,
) -> (Tally, Vec<(String, String)>) {
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    let mut buffers = ScanBuffers::default();
    loop {
        let file = match queue.local.get(queue.next.fetch_add(1, Ordering::Relaxed)) {
            Some((path, size)) => {
                let label = path.display().to_string();
                Some(Fetched {
                    path_account: account_of_path(&label).map(String::from),
                    label,
                    size: *size,
                    bytes: std::fs::read(path).map_err(|e| format!("cannot read: {e}")),
                })
            }
            None => match queue.fetched.lock() {
                Ok(mut rx) => rx.blocking_recv(),
                Err(_) => None,
            },
        };
        let Some(Fetched {
            label,
            size,
            path_account,
            bytes,
        }) = file
        else {
            break;
        };
        let result = bytes.and_then(|b| {
            eval.tally_file(&mut buffers, &b, path_account.as_deref(), range)
                .map_err(|e| e.to_string())
        });
        bar.inc(size);
        match result {
            Ok(t) => tally.merge(t),
            Err(e) => errors.push((label, e)),
        }
    }
    (tally, errors)
}

fn progress_bar(global: &GlobalArgs, bytes: u64, files: usize) -> indicatif::ProgressBar {
    if global.quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(bytes);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(shared::text::plural(files as u64, "file", "files"));
    bar
}

fn print(output: Output, outcome: &Outcome, range: &Range) -> ExitStatus {
    let t = &outcome.tally;
    let findings = t.sorted();
    match output {
        Output::Json => {
            let doc = json!({
                "schema_version": SCHEMA_VERSION,
                "since": range.since.map(Day::text),
                "until": range.until.map(Day::text),
                "files": t.files,
                "bytes": t.bytes,
                "events": t.events,
                "findings": findings,
                "errors": outcome.errors.iter().map(|(s, e)| json!({"source": s, "error": e})).collect::<Vec<_>>(),
            });
            super::print_json(&doc)
        }
        Output::Table => {
            if !findings.is_empty() {
                let rows: Vec<Vec<String>> = findings
                    .iter()
                    .map(|f| {
                        vec![
                            f.rule.clone(),
                            f.account.clone(),
                            f.count.to_string(),
                            f.first_seen.clone(),
                            f.last_seen.clone(),
                            f.sample_event_id.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "RULE",
                            "ACCOUNT",
                            "COUNT",
                            "FIRST SEEN",
                            "LAST SEEN",
                            "SAMPLE EVENT ID"
                        ],
                        &rows
                    )
                );
            }
            let matches: u64 = findings.iter().map(|f| f.count).sum();
            println!(
                "{}, {}, {}",
                shared::text::plural(t.files, "file", "files"),
                shared::text::plural(t.events, "event", "events"),
                shared::text::plural(matches, "match", "matches")
            );
            ExitStatus::Success
        }
    }
}

/// The benches' generated CloudTrail corpus, for the test that compares the two paths.
#[cfg(test)]
#[path = "../../../shared/benches/corpus.rs"]
mod corpus;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_count() {
        assert_eq!(
            Day::parse("2024-02-29"),
            Some(Day {
                year: 2024,
                month: 2,
                day: 29
            })
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024-01-01x",
            "",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        for s in ["1970-01-01", "2000-02-29", "2024-12-31", "2100-03-01"] {
            let d = Day::parse(s).expect(s);
            assert_eq!(Day::from_days(d.to_days()), d, "{s}");
            assert_eq!(d.text(), s);
        }
        assert_eq!(Day::parse("1970-01-02").map(Day::to_days), Some(1));
        assert_eq!(
            Day::parse("2024-02-28").map(|d| d.next().next().text()),
            Some("2024-03-01".to_string())
        );
        assert!(Day::today() > Day::parse("2024-01-01").expect("day"));
    }

    #[test]
    fn paths_name_day_and_account() {
        let key = "AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2024/05/14/111122223333_CloudTrail_eu-west-1_20240514T0925Z_x.json.gz";
        assert_eq!(day_of_path(key), Day::parse("2024-05-14"));
        assert_eq!(account_of_path(key), Some("111122223333"));
        assert_eq!(account_of_path("logs/CloudTrail/x.json"), None);
        assert_eq!(day_of_path("events.json"), None);
        assert!(is_log_file(key));
        assert!(!is_log_file(
            "AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2024/05/14/x.json.gz"
        ));
    }

    #[test]
    fn date_prefixes_get_coarser_with_longer_ranges() {
        let d = |s| Day::parse(s).expect(s);
        assert_eq!(
            date_prefixes(d("2024-02-28"), d("2024-03-01")),
            vec!["2024/02/28/", "2024/02/29/", "2024/03/01/"]
        );
        assert_eq!(
            date_prefixes(d("2024-01-15"), d("2024-05-01")),
            vec!["2024/01/", "2024/02/", "2024/03/", "2024/04/", "2024/05/"]
        );
        assert_eq!(
            date_prefixes(d("2019-06-01"), d("2024-05-01")),
            vec!["2019/", "2020/", "2021/", "2022/", "2023/", "2024/"]
        );
    }

    #[test]
    fn ranges_filter_event_times() {
        let r = Range {
            since: Day::parse("2024-05-14"),
            until: Day::parse("2024-05-15"),
        };
        assert!(r.contains_time(Some("2024-05-14T00:00:00Z")));
        assert!(r.contains_time(Some("2024-05-15T23:59:59Z")));
        assert!(!r.contains_time(Some("2024-05-16T00:00:00Z")));
        assert!(!r.contains_time(None));
        let all = Range {
            since: None,
            until: None,
        };
        assert!(all.contains_time(None));
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("s3://central/AWSLogs/o-1"),
            Ok(Target::S3 {
                bucket: "central".into(),
                prefix: "AWSLogs/o-1".into()
            })
        );
        assert_eq!(
            parse_target("s3://central"),
            Ok(Target::S3 {
                bucket: "central".into(),
                prefix: "".into()
            })
        );
        assert!(parse_target("s3:///x").is_err());
        assert_eq!(
            parse_target("logs/2024"),
            Ok(Target::Local("logs/2024".into()))
        );
    }

    #[test]
    fn tally_counts_per_rule_and_account() {
        let pack = Pack::builtin().expect("pack");
        let rec = |id: &str, acct: &str, time: &str, user: &str| {
            json!({"eventID": id, "recipientAccountId": acct, "eventTime": time,
                   "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
                   "eventType": "AwsConsoleSignIn",
                   "userIdentity": {"type": user}})
        };
        let file = json!({"Records": [
            rec("b", "111122223333", "2024-05-14T10:00:00Z", "Root"),
            rec("a", "111122223333", "2024-05-14T09:00:00Z", "Root"),
            rec("c", "444455556666", "2024-05-13T09:00:00Z", "Root"),
            rec("d", "444455556666", "2024-05-14T09:00:00Z", "IAMUser"),
        ]})
        .to_string();
        let all = Range {
            since: None,
            until: None,
        };
        let t = tally_plain(&pack, file.as_bytes(), None, &all).expect("tally");
        assert_eq!(t.events, 4);
        let found = rows(&t);
        let row = |r: &str, a: &str, n, first: &str, last: &str, id: &str| {
            (r.into(), a.into(), n, first.into(), last.into(), id.into())
        };
        assert_eq!(
            found,
            vec![
                row(
                    "root-activity",
                    "111122223333",
                    2,
                    "2024-05-14T09:00:00Z",
                    "2024-05-14T10:00:00Z",
                    "a"
                ),
                row(
                    "root-activity",
                    "444455556666",
                    1,
                    "2024-05-13T09:00:00Z",
                    "2024-05-13T09:00:00Z",
                    "c"
                ),
                row(
                    "cis-4.3",
                    "111122223333",
                    2,
                    "2024-05-14T09:00:00Z",
                    "2024-05-14T10:00:00Z",
                    "a"
                ),
                row(
                    "cis-4.3",
                    "444455556666",
                    1,
                    "2024-05-13T09:00:00Z",
                    "2024-05-13T09:00:00Z",
                    "c"
                ),
            ]
        );
        // The range drops the 13th; merging two tallies adds up.
        let r = Range {
            since: Day::parse("2024-05-14"),
            until: None,
        };
        let mut t = tally_plain(&pack, file.as_bytes(), None, &r).expect("tally");
        assert_eq!(t.events, 3);
        t.merge(tally_plain(&pack, file.as_bytes(), Some("999999999999"), &r).expect("tally"));
        assert_eq!(t.files, 2);
        let root = t
            .findings
            .get(&(0, "111122223333".to_string()))
            .expect("root finding");
        assert_eq!(root.count, 4);
        assert!(!t.findings.contains_key(&(0, "444455556666".to_string())));
    }

    /// Findings as comparable rows.
    fn rows(t: &Tally) -> Vec<(String, String, u64, String, String, String)> {
        t.sorted()
            .into_iter()
            .map(|f| {
                (
                    f.rule.clone(),
                    f.account.clone(),
                    f.count,
                    f.first_seen.clone(),
                    f.last_seen.clone(),
                    f.sample_event_id.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn the_scanned_path_counts_what_the_plain_path_counts_on_the_bench_corpus() {
        let pack = Arc::new(Pack::builtin().expect("pack"));
        let eval = Evaluator::new(pack.clone());
        let mut buffers = ScanBuffers::default();
        assert!(eval.scans(), "the built-in pack is all JSON patterns");
        let mut records = super::corpus::records(6_000, 0x5EED);
        // What the generator does not make: root sign-ins, EventBridge envelopes, records
        // without recipientAccountId, escaped strings, numbers where strings are expected.
        for (i, r) in records.iter_mut().enumerate() {
            match i % 50 {
                0 => r["userIdentity"] = json!({"type": "Root", "principalId": "111122223333"}),
                1 => {
                    let detail = r.take();
                    *r = json!({"version": "0", "detail-type": "AWS API Call via CloudTrail",
                                "source": "aws.iam", "detail": detail});
                }
                2 => {
                    r.as_object_mut().map(|m| m.remove("recipientAccountId"));
                }
                3 => r["userAgent"] = json!("quote \" and \u{1} and é"),
                4 => r["eventName"] = json!(42),
                5 => r["eventTime"] = json!("2024-05-14T10:00:00Z\n"),
                _ => {}
            }
        }
        let files = super::corpus::log_files(&records, 200);
        let ranges = [
            Range {
                since: None,
                until: None,
            },
            Range {
                since: Day::parse("2024-05-10"),
                until: Day::parse("2024-05-20"),
            },
        ];
        let (mut total, mut found) = (Tally::default(), 0);
        for (key, bytes) in &files {
            let account = account_of_path(key);
            for range in &ranges {
                let scanned = eval
                    .tally_scanned(&mut buffers, bytes, account, range)
                    .unwrap_or_else(|| panic!("the scanner declined {key}"));
                let plain = tally_plain(&pack, bytes, account, range).expect("plain");
                assert_eq!(scanned.events, plain.events, "{key}");
                assert_eq!(rows(&scanned), rows(&plain), "{key}");
                found += plain.findings.len();
            }
            total.merge(
                eval.tally_file(&mut buffers, bytes, account, &ranges[0])
                    .expect("tally"),
            );
        }
        assert_eq!(total.events, 6_000);
        assert!(
            found > 100,
            "only {found} findings: the corpus must exercise the pack"
        );
        let rules: std::collections::BTreeSet<&str> =
            total.sorted().iter().map(|f| f.rule.as_str()).collect();
        assert!(rules.len() >= 8, "rules that fired: {rules:?}");
    }

    #[test]
    fn files_the_scanner_declines_are_read_the_plain_way() {
        let pack = Arc::new(Pack::builtin().expect("pack"));
        let eval = Evaluator::new(pack.clone());
        let mut buffers = ScanBuffers::default();
        let all = Range {
            since: None,
            until: None,
        };
        let root = r#"{"eventID":"e","recipientAccountId":"111122223333","eventTime":"2024-05-14T10:00:00Z","eventName":"ConsoleLogin","userIdentity":{"type":"Root"},"eventType":"AwsConsoleSignIn"}"#;
        for (what, text) in [
            (
                "a key given twice",
                root.replace(r#""eventID":"e","#, r#""eventID":"x","eventID":"e","#),
            ),
            (
                "an escaped key",
                root.replace(r#""eventID""#, r#""event\u0049D""#),
            ),
            (
                "a pretty-printed document",
                format!("{{\n\"Records\": [{root}]\n}}"),
            ),
            ("a text line", format!("{root}\nnot json\n")),
        ] {
            assert!(
                eval.tally_scanned(&mut buffers, text.as_bytes(), None, &all)
                    .is_none(),
                "{what}"
            );
            let got = eval
                .tally_file(&mut buffers, text.as_bytes(), None, &all)
                .expect(what);
            let want = tally_plain(&pack, text.as_bytes(), None, &all).expect(what);
            assert_eq!(rows(&got), rows(&want), "{what}");
            assert!(
                !want.findings.is_empty(),
                "{what}: the root sign-in is found"
            );
        }
        // Invalid JSON: the plain path names the line.
        let err = eval
            .tally_file(
                &mut buffers,
                format!("{root}\n{{\"a\":\n").as_bytes(),
                None,
                &all,
            )
            .expect_err("invalid");
        assert_eq!(err.line, Some(2), "{err}");
        // JSON lines are scanned.
        let lines = format!("{root}\n\n{root}\n");
        let t = eval
            .tally_scanned(&mut buffers, lines.as_bytes(), None, &all)
            .expect("JSON lines scan");
        assert_eq!(t.events, 2);
    }
}
