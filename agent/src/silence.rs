//! Silences, as in Alertmanager: an operator's "not now" for the alerts a matcher selects,
//! for a bounded while, with a comment and an author.
//!
//! A silence matches alerts exactly as a route does ([`crate::route::matches`] over the same
//! [`Matcher`]: `rule`, `severity`, `account`, `region`; every given key must hold, a key
//! with several values holds for any of them). It is *active* from `starts_at_ms` (inclusive)
//! until `ends_at_ms` (exclusive); `agent silence expire` ends it now, and it stays stored,
//! expired, for [`KEEP_EXPIRED`] (Alertmanager keeps expired silences for its retention
//! too), so `silence list --all` still shows what was silenced, by whom and why.
//!
//! Silences live in the dedupe store ([`crate::dedupe::SilenceStore`]), so every replica
//! sharing a DynamoDB table sees the same ones; the running agent reads them every
//! `dedupe.silence_refresh` and at start, and the core applies them with [`silencing`], a
//! pure function of the alert, the silences and the time.
//!
//! A silence applies to an alert at the time the agent handles it, firing or resolved alike:
//! a resolution (an alarm's OK) that arrives after the silence ended is delivered even when
//! its ALARM was silenced, so the team learns that the alarm fired during the silence (a
//! PagerDuty resolve of a key it never saw is a no-op).
//!
//! Everything here is pure: the parsing of `--match KEY=VALUE`, the matching, and the
//! changes to a list of silences every store applies ([`insert`], [`expire`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Matcher;
use crate::model::{Alert, Severity, format_timestamp};
use crate::route::matches;

/// The longest a silence may last (`--for`): past that, fix the rule or the route.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);
/// How long an ended silence stays stored (Alertmanager's default retention, 120 h).
pub const KEEP_EXPIRED: Duration = Duration::from_secs(5 * 86_400);
/// Silences stored at most, active and ended (the DynamoDB store keeps them in one item,
/// of at most 400 KB).
pub const MAX_STORED: usize = 500;
/// The longest comment, in characters.
pub const MAX_COMMENT: usize = 1000;
/// Values of one silence's matcher at most, over every key.
pub const MAX_VALUES: usize = 64;

/// The keys a silence (and a route) matches on.
pub const KEYS: &[&str] = &["rule", "severity", "account", "region"];

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// A random UUID (version 4).
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    /// Unix milliseconds.
    pub starts_at_ms: i64,
    /// Unix milliseconds; set to the time of `silence expire` when ended early.
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

/// Where a silence is at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Starts later.
    Pending,
    Active,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Expired => "expired",
        }
    }
}

impl Silence {
    pub fn status(&self, now_ms: i64) -> Status {
        if now_ms < self.starts_at_ms {
            Status::Pending
        } else if now_ms < self.ends_at_ms {
            Status::Active
        } else {
            Status::Expired
        }
    }

    /// The matcher as `key=value` words (`rule=cis-4.3 account=111122223333,444455556666`).
    pub fn describe(&self) -> String {
        describe(&self.matcher)
    }

    /// The JSON document of `silence add|list|expire --output json`.
    pub fn to_json(&self, now_ms: i64) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "status": self.status(now_ms),
            "match": self.matcher,
            "starts_at": format_timestamp(self.starts_at_ms),
            "ends_at": format_timestamp(self.ends_at_ms),
            "created_by": self.created_by,
            "comment": self.comment,
        })
    }
}

/// `key=value` words of a matcher, in key order.
pub fn describe(m: &Matcher) -> String {
    let severity: Vec<String> = m.severity.iter().map(|s| s.to_string()).collect();
    [
        ("rule", &m.rule),
        ("severity", &severity),
        ("account", &m.account),
        ("region", &m.region),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", v.join(",")))
    .collect::<Vec<_>>()
    .join(" ")
}

/// The first silence active at `now_ms` whose matcher holds for `alert` (in stored order,
/// which is the order they were added), if any. Pure: the caller passes the time.
pub fn silencing<'a>(alert: &Alert, silences: &'a [Silence], now_ms: i64) -> Option<&'a Silence> {
    silences
        .iter()
        .find(|s| s.status(now_ms) == Status::Active && matches(&s.matcher, alert))
}

/// Forgets silences that ended more than [`KEEP_EXPIRED`] before `now_ms`.
pub fn prune(list: &mut Vec<Silence>, now_ms: i64) {
    let keep = i64::try_from(KEEP_EXPIRED.as_millis()).unwrap_or(i64::MAX);
    list.retain(|s| s.ends_at_ms > now_ms.saturating_sub(keep));
}

/// Adds `s` to a store's list (after pruning): refused when its id is taken or the store is
/// full. Every store applies this one change.
pub fn insert(list: &mut Vec<Silence>, s: Silence, now_ms: i64) -> Result<(), String> {
    prune(list, now_ms);
    if list.iter().any(|x| x.id == s.id) {
        return Err(format!("a silence with id {} exists already", s.id));
    }
    if list.len() >= MAX_STORED {
        return Err(format!(
            "{MAX_STORED} silences are stored already (ended ones are kept {} days): expire some with `agent silence expire ID`",
            KEEP_EXPIRED.as_secs() / 86_400
        ));
    }
    list.push(s);
    Ok(())
}

/// What `silence expire` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// It was pending or active and has now ended (the silence as it now is).
    Ended(Silence),
    /// It had ended already (nothing changed).
    AlreadyEnded(Silence),
    NotFound,
}

/// Ends silence `id` at `now_ms` in a store's list (after pruning); it stays stored, expired.
pub fn expire(list: &mut Vec<Silence>, id: &str, now_ms: i64) -> Expired {
    prune(list, now_ms);
    let Some(s) = list.iter_mut().find(|s| s.id == id) else {
        return Expired::NotFound;
    };
    if s.status(now_ms) == Status::Expired {
        return Expired::AlreadyEnded(s.clone());
    }
    // A pending one ends before it began: it never silenced anything.
    s.starts_at_ms = s.starts_at_ms.min(now_ms);
    s.ends_at_ms = now_ms;
    Expired::Ended(s.clone())
}

/// A new random id: a version 4 UUID (RFC 9562) from 122 random bits.
pub fn new_id() -> String {
    let mut n = fastrand::u128(..);
    n = (n & !(0xf << 76)) | (0x4 << 76); // version 4
    n = (n & !(0x3 << 62)) | (0x2 << 62); // variant 10
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The stored form of a list of silences (the file store's file, the DynamoDB item's
/// `doc`): versioned, so a later agent can read what an earlier one wrote.
#[derive(Debug, Serialize, Deserialize)]
pub struct Document {
    pub schema_version: u32,
    pub silences: Vec<Silence>,
}

/// The version of [`Document`] written.
pub const DOCUMENT_VERSION: u32 = 1;

impl Document {
    pub fn encode(silences: &[Silence]) -> String {
        serde_json::json!({"schema_version": DOCUMENT_VERSION, "silences": silences}).to_string()
    }

    /// Decodes a stored document; `what` names it in the error.
    pub fn decode(what: &str, text: &str) -> Result<Vec<Silence>, String> {
        let doc: Document = serde_json::from_str(text)
            .map_err(|e| format!("{what}: not a silences document: {e}"))?;
        if doc.schema_version > DOCUMENT_VERSION {
            return Err(format!(
                "{what}: schema_version {} is newer than this agent reads ({DOCUMENT_VERSION}): upgrade the agent",
                doc.schema_version
            ));
        }
        Ok(doc.silences)
    }
}

// ---------------------------------------------------------------------------------------
// The command line: `--match KEY=VALUE`, `--for DURATION`, `--comment TEXT`.

/// What `agent silence add` was given, before it is a [`Silence`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub matches: &'a [String],
    pub duration: &'a str,
    pub comment: &'a str,
    pub author: &'a str,
}

/// Builds the silence `agent silence add` asks for, starting at `now_ms`, with a new id;
/// every problem at once, each naming its argument. `known_rules`: rule ids a `rule=` value
/// is checked against; a value outside them is not refused (a custom rule of the hub's
/// manifest may have it) but answered with a warning.
pub fn build(
    req: &Request<'_>,
    known_rules: &[&str],
    now_ms: i64,
) -> Result<(Silence, Vec<String>), Vec<String>> {
    let mut errors = Vec::new();
    let (matcher, warnings) = match parse_matchers(req.matches, known_rules) {
        Ok(m) => m,
        Err(mut e) => {
            errors.append(&mut e);
            (Matcher::default(), Vec::new())
        }
    };
    let duration = match crate::config::parse_duration(req.duration) {
        Ok(d) if d.is_zero() => {
            errors.push(format!("--for {:?}: must be more than 0", req.duration));
            Duration::ZERO
        }
        Ok(d) if d > MAX_DURATION => {
            errors.push(format!(
                "--for {:?}: at most {} days (a longer silence hides a rule: disable it in the configuration instead)",
                req.duration,
                MAX_DURATION.as_secs() / 86_400
            ));
            Duration::ZERO
        }
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("--for: {e}"));
            Duration::ZERO
        }
    };
    let comment = req.comment.trim();
    if comment.is_empty() {
        errors.push("--comment: required, and not blank (say why, and for what)".into());
    } else if comment.chars().count() > MAX_COMMENT {
        errors.push(format!("--comment: at most {MAX_COMMENT} characters"));
    }
    let author = req.author.trim();
    if author.is_empty() {
        errors.push("--author: must not be blank".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    Ok((
        Silence {
            id: new_id(),
            matcher,
            starts_at_ms: now_ms,
            ends_at_ms: now_ms.saturating_add(ms),
            created_by: author.to_string(),
            comment: comment.to_string(),
        },
        warnings,
    ))
}

/// Parses `--match KEY=VALUE` arguments into a matcher (a repeated key: any of its values).
/// At least one is required: a silence of everything would hide every alert, which is what
/// stopping the agent is for. Returns the matcher and warnings, or every problem.
pub fn parse_matchers(
    args: &[String],
    known_rules: &[&str],
) -> Result<(Matcher, Vec<String>), Vec<String>> {
    let mut m = Matcher::default();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if args.is_empty() {
        errors.push(
            "--match: at least one KEY=VALUE is required (keys: rule, severity, account, region); a silence of every alert is refused"
                .to_string(),
        );
    }
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            errors.push(format!(
                "--match {arg:?}: expected KEY=VALUE, e.g. --match rule=cis-4.3 (keys: {})",
                KEYS.join(", ")
            ));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            errors.push(format!("--match {arg:?}: the value is empty"));
            continue;
        }
        match key {
            "rule" => {
                if !known_rules.is_empty() && !known_rules.contains(&value) {
                    let hint = shared::suggest::nearest(value, known_rules.iter().copied())
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default();
                    warnings.push(format!(
                        "--match {arg:?}: no rule the agent knows has the id {value:?}{hint}; the silence matches it as written (a custom rule of the hub's manifest may)"
                    ));
                }
                push_new(&mut m.rule, value.to_string());
            }
            "severity" => match value.parse::<Severity>() {
                Ok(s) => {
                    if !m.severity.contains(&s) {
                        m.severity.push(s);
                    }
                }
                // The severity's own error says "did you mean" for a near miss.
                Err(e) => errors.push(format!("--match {arg:?}: {e}")),
            },
            "account" => {
                if shared::naming::is_account_id(value) {
                    push_new(&mut m.account, value.to_string());
                } else {
                    errors.push(format!(
                        "--match {arg:?}: {value:?} is not a 12-digit account id"
                    ));
                }
            }
            "region" => {
                if is_region_name(value) {
                    push_new(&mut m.region, value.to_string());
                } else {
                    errors.push(format!(
                        "--match {arg:?}: {value:?} is not a region name such as us-east-1"
                    ));
                }
            }
            other => {
                let hint = shared::suggest::nearest(other, KEYS.iter().copied())
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default();
                errors.push(format!(
                    "--match {arg:?}: unknown key {other:?}{hint}; keys: {}",
                    KEYS.join(", ")
                ));
            }
        }
    }
    let values = m.rule.len() + m.severity.len() + m.account.len() + m.region.len();
    if values > MAX_VALUES {
        errors.push(format!("--match: at most {MAX_VALUES} values in all"));
    }
    if errors.is_empty() {
        Ok((m, warnings))
    } else {
        Err(errors)
    }
}

fn push_new(list: &mut Vec<String>, v: String) {
    if !list.contains(&v) {
        list.push(v);
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`: two letters, words, a
/// number.
fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertState, test_alert as alert};

    const A: &str = "111122223333";
    const B: &str = "444455556666";
    const HOUR: i64 = 3_600_000;

    fn silence(id: &str, args: &[&str], starts: i64, ends: i64) -> Silence {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (matcher, _) = parse_matchers(&args, &[]).unwrap();
        Silence {
            id: id.into(),
            matcher,
            starts_at_ms: starts,
            ends_at_ms: ends,
            created_by: "alice".into(),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn an_alert_is_silenced_by_an_active_matching_silence_only() {
        use Severity::*;
        let now = 10 * HOUR;
        let silences = [
            silence(
                "rule-and-account",
                &["rule=cis-4.3", &format!("account={A}")],
                0,
                20 * HOUR,
            ),
            // Two values of a key: either.
            silence(
                "two-accounts",
                &[
                    "rule=cis-4.1",
                    &format!("account={A}"),
                    &format!("account={B}"),
                ],
                0,
                20 * HOUR,
            ),
            silence("ended", &["rule=cis-4.5"], 0, now),
            silence("later", &["rule=cis-4.6"], now + 1, 20 * HOUR),
            silence(
                "severity-region",
                &["severity=low", "region=eu-west-1"],
                0,
                20 * HOUR,
            ),
        ];
        // (alert, the silence expected)
        let table = [
            (
                alert("cis-4.3", High, A, "us-east-1"),
                Some("rule-and-account"),
            ),
            (alert("cis-4.3", High, B, "us-east-1"), None), // another account
            (alert("cis-4.2", High, A, "us-east-1"), None), // another rule
            (alert("cis-4.1", High, A, "us-east-1"), Some("two-accounts")),
            (alert("cis-4.1", High, B, "eu-west-1"), Some("two-accounts")),
            (alert("cis-4.1", High, "999988887777", "us-east-1"), None),
            (alert("cis-4.5", High, A, "us-east-1"), None), // ended at `now`: exclusive
            (alert("cis-4.6", High, A, "us-east-1"), None), // not started yet
            (
                alert("cis-4.9", Low, B, "eu-west-1"),
                Some("severity-region"),
            ),
            (alert("cis-4.9", Low, B, "us-east-1"), None),
            (alert("cis-4.9", Medium, B, "eu-west-1"), None),
        ];
        for (a, want) in table {
            assert_eq!(
                silencing(&a, &silences, now).map(|s| s.id.as_str()),
                want,
                "{} {} {} {}",
                a.rule_id,
                a.severity,
                a.account,
                a.region
            );
        }
        // The same silences an hour before `ended` ended, and once `later` began.
        let a = alert("cis-4.5", High, A, "us-east-1");
        assert_eq!(
            silencing(&a, &silences, now - HOUR).map(|s| s.id.as_str()),
            Some("ended")
        );
        let a = alert("cis-4.6", High, A, "us-east-1");
        assert_eq!(
            silencing(&a, &silences, now + 1).map(|s| s.id.as_str()),
            Some("later")
        );
        // A resolution is silenced like a firing alert.
        let mut ok = alert("cis-4.3", High, A, "us-east-1");
        ok.state = AlertState::Resolved;
        assert!(silencing(&ok, &silences, now).is_some());
        assert!(silencing(&ok, &[], now).is_none());
    }

    #[test]
    fn statuses_follow_the_start_and_end() {
        let s = silence("s", &["rule=x"], 100, 200);
        assert_eq!(s.status(99), Status::Pending);
        assert_eq!(s.status(100), Status::Active);
        assert_eq!(s.status(199), Status::Active);
        assert_eq!(s.status(200), Status::Expired);
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matchers_parse_like_routes_and_every_problem_names_its_argument() {
        let (m, warnings) = parse_matchers(
            &strings(&[
                "rule=cis-4.3",
                "account=111122223333",
                "account=444455556666",
                "account=111122223333",
                "severity=HIGH",
                "region=eu-west-1",
            ]),
            &["cis-4.3"],
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(m.rule, ["cis-4.3"]);
        assert_eq!(m.account, ["111122223333", "444455556666"], "repeats once");
        assert_eq!(m.severity, [Severity::High]);
        assert_eq!(m.region, ["eu-west-1"]);
        assert_eq!(
            describe(&m),
            "rule=cis-4.3 severity=high account=111122223333,444455556666 region=eu-west-1"
        );

        let errs = parse_matchers(
            &strings(&[
                "rul=cis-4.3",
                "severity=hgh",
                "account=11112222333",
                "region=us-east1",
                "cis-4.3",
                "rule=",
                "colour=red",
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "--match \"rul=cis-4.3\": unknown key \"rul\" (did you mean \"rule\"?); keys: rule, severity, account, region",
                "--match \"severity=hgh\": unknown severity \"hgh\"; did you mean \"high\"?",
                "--match \"account=11112222333\": \"11112222333\" is not a 12-digit account id",
                "--match \"region=us-east1\": \"us-east1\" is not a region name such as us-east-1",
                "--match \"cis-4.3\": expected KEY=VALUE, e.g. --match rule=cis-4.3 (keys: rule, severity, account, region)",
                "--match \"rule=\": the value is empty",
                "--match \"colour=red\": unknown key \"colour\"; keys: rule, severity, account, region",
            ]
        );
        let errs = parse_matchers(&[], &[]).unwrap_err();
        assert!(errs[0].contains("at least one"), "{errs:?}");
        // A rule id no rule has: a warning with the near miss, not an error.
        let (m, warnings) =
            parse_matchers(&strings(&["rule=cis-43"]), &["cis-4.3", "cis-4.1"]).unwrap();
        assert_eq!(m.rule, ["cis-43"]);
        assert!(
            warnings[0].contains("(did you mean \"cis-4.3\"?)"),
            "{warnings:?}"
        );
        for region in ["us-gov-west-1", "ap-southeast-5", "eu-central-2"] {
            assert!(is_region_name(region), "{region}");
        }
    }

    #[test]
    fn a_silence_needs_a_bounded_duration_and_a_comment() {
        let m = strings(&["rule=cis-4.3"]);
        let req = |d: &'static str, c: &'static str| Request {
            matches: &m,
            duration: d,
            comment: c,
            author: "alice",
        };
        let (s, _) = build(&req("2h", "patching"), &[], 1_000).unwrap();
        assert_eq!((s.starts_at_ms, s.ends_at_ms), (1_000, 1_000 + 2 * HOUR));
        assert_eq!(s.created_by, "alice");
        assert_eq!(s.id.len(), 36);
        assert_eq!(&s.id[14..15], "4", "a version 4 UUID: {}", s.id);
        assert_ne!(
            s.id,
            build(&req("2h", "patching"), &[], 1_000).unwrap().0.id
        );
        assert!(build(&req("30d", "x"), &[], 0).is_ok());
        let errs = build(&req("31d", " "), &[], 0).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("--for \"31d\": at most 30 days"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("--comment: required"), "{errs:?}");
        assert!(build(&req("0s", "x"), &[], 0).unwrap_err()[0].contains("more than 0"));
        assert!(
            build(&req("2 hours", "x"), &[], 0).unwrap_err()[0]
                .starts_with("--for: invalid duration")
        );
    }

    #[test]
    fn expiring_ends_now_keeps_it_stored_and_old_ones_are_pruned() {
        let now = 100 * HOUR;
        let mut list = vec![
            silence("a", &["rule=x"], 0, now + HOUR),
            silence("old", &["rule=x"], 0, now - 5 * 24 * HOUR - 1),
        ];
        assert_eq!(expire(&mut list, "nope", now), Expired::NotFound);
        assert_eq!(list.len(), 1, "ended more than five days ago: forgotten");
        match expire(&mut list, "a", now) {
            Expired::Ended(s) => assert_eq!(s.ends_at_ms, now),
            other => panic!("{other:?}"),
        }
        assert_eq!(list[0].status(now), Status::Expired);
        assert!(matches!(
            expire(&mut list, "a", now + 1),
            Expired::AlreadyEnded(_)
        ));
        // A pending one ends before it begins.
        list.push(silence("p", &["rule=x"], now + HOUR, now + 2 * HOUR));
        match expire(&mut list, "p", now) {
            Expired::Ended(s) => assert_eq!((s.starts_at_ms, s.ends_at_ms), (now, now)),
            other => panic!("{other:?}"),
        }
        assert!(
            insert(&mut list, silence("a", &["rule=y"], now, now + 1), now).is_err(),
            "id taken"
        );
        insert(&mut list, silence("b", &["rule=y"], now, now + 1), now).unwrap();
        assert_eq!(list.len(), 3);
        let text = Document::encode(&list);
        assert_eq!(Document::decode("f", &text).unwrap(), list);
        assert!(
            Document::decode("f", r#"{"schema_version": 9, "silences": []}"#)
                .unwrap_err()
                .contains("newer")
        );
    }

    #[test]
    fn near_misses_of_keys_are_named() {
        let errors = parse_matchers(
            &["acount=111122223333".into(), "regoin=us-east-1".into()],
            &[],
        )
        .err()
        .unwrap_or_default();
        assert!(
            errors[0].contains("(did you mean \"account\"?)"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("(did you mean \"region\"?)"),
            "{errors:?}"
        );
    }
}
