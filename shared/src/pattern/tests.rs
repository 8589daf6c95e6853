//! Table-driven tests (testdata/pattern/*.toml), round trips, the CIS pack
//! with its EventBridge form, exact error kinds/spans/rendering, and a
//! deterministic no-panic property test.

use serde::Deserialize;

use super::ast::Ast;
use super::{Error, Event, Pattern, PatternKind};

const TABLES: &[(&str, &str)] = &[
    (
        "aws_docs.toml",
        include_str!("../../testdata/pattern/aws_docs.toml"),
    ),
    (
        "json.toml",
        include_str!("../../testdata/pattern/json.toml"),
    ),
    (
        "terms.toml",
        include_str!("../../testdata/pattern/terms.toml"),
    ),
    (
        "space_delimited.toml",
        include_str!("../../testdata/pattern/space_delimited.toml"),
    ),
    (
        "errors.toml",
        include_str!("../../testdata/pattern/errors.toml"),
    ),
];

const CIS: &str = include_str!("../../testdata/pattern/cis.toml");

#[derive(Deserialize)]
struct Table {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    pattern: String,
    event: Option<String>,
    expect: Option<bool>,
    error: Option<String>,
    column: Option<usize>,
}

#[derive(Deserialize)]
struct CisTable {
    records: std::collections::BTreeMap<String, String>,
    rule: Vec<CisRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CisRule {
    id: String,
    pattern: String,
    #[serde(rename = "match")]
    matches: Vec<String>,
}

fn load(name: &str, text: &str) -> Table {
    match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn same_tree(a: &Ast, b: &Ast) -> bool {
    a.without_spans() == b.without_spans()
}

/// parse(Display(p)) and parse(to_compact_string(p)) give an equal tree and
/// the same verdict on `events`.
fn check_round_trip(p: &Pattern, events: &[&str]) -> Result<(), String> {
    for printed in [p.to_string(), p.to_compact_string()] {
        let q = Pattern::parse(&printed)
            .map_err(|e| format!("reprint {printed:?} of {:?} fails:\n{e}", p.as_str()))?;
        if !same_tree(p.ast(), q.ast()) {
            return Err(format!(
                "reprint {printed:?} of {:?} parses to a different tree",
                p.as_str()
            ));
        }
        for ev in events {
            if p.matches_message(ev) != q.matches_message(ev) {
                return Err(format!(
                    "reprint {printed:?} of {:?} differs on {ev:?}",
                    p.as_str()
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn tables() {
    let mut failures = Vec::new();
    let mut rows = 0;
    for (name, text) in TABLES {
        let table = load(name, text);
        assert!(!table.case.is_empty(), "{name} has no rows");
        for (i, c) in table.case.iter().enumerate() {
            rows += 1;
            let at = format!("{name} row {} ({:?})", i + 1, c.pattern);
            match (Pattern::parse(&c.pattern), &c.error) {
                (Ok(p), None) => {
                    let events: Vec<&str> = c.event.iter().map(String::as_str).collect();
                    if let Err(e) = check_round_trip(&p, &events) {
                        failures.push(format!("{at}: {e}"));
                    }
                    match (&c.event, c.expect) {
                        (Some(ev), Some(want)) => {
                            let got = p.matches_message(ev);
                            if got != want {
                                failures.push(format!("{at}: on {ev:?} got {got}, want {want}"));
                            }
                            // The same verdict through an already-parsed record.
                            if p.kind() == PatternKind::Json
                                && let Ok(v) = serde_json::from_str::<serde_json::Value>(ev)
                            {
                                let got = p.matches(&Event::from_value(&v));
                                if got != want {
                                    failures.push(format!("{at}: from_value got {got}"));
                                }
                            }
                        }
                        (None, None) => {}
                        _ => failures.push(format!("{at}: needs both event and expect")),
                    }
                }
                (Ok(_), Some(kind)) => failures.push(format!("{at}: parsed, want {kind}")),
                (Err(e), None) => failures.push(format!("{at}: unexpected error:\n{e}")),
                (Err(e), Some(kind)) => {
                    let got = (e.kind.name(), e.column());
                    let want = (kind.as_str(), c.column.unwrap_or(0));
                    if got != want {
                        failures.push(format!("{at}: got {got:?}, want {want:?}\n{e}"));
                    }
                }
            }
        }
    }
    assert!(rows > 300, "only {rows} table rows");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn envelope(record: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": "111122223333",
        "time": "2024-05-01T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    })
}

#[test]
fn cis_pack_matches_records_and_eventbridge_envelopes() {
    let table: CisTable = match toml::from_str(CIS) {
        Ok(t) => t,
        Err(e) => panic!("cis.toml: {e}"),
    };
    assert!(table.rule.len() >= 15);
    let records: Vec<(String, serde_json::Value)> = table
        .records
        .iter()
        .map(|(k, v)| match serde_json::from_str(v) {
            Ok(v) => (k.clone(), v),
            Err(e) => panic!("record {k}: {e}"),
        })
        .collect();
    let mut failures = Vec::new();
    for rule in &table.rule {
        for m in &rule.matches {
            assert!(
                table.records.contains_key(m),
                "{}: unknown record {m}",
                rule.id
            );
        }
        let p = match Pattern::parse(&rule.pattern) {
            Ok(p) => p,
            Err(e) => panic!("{}:\n{e}", rule.id),
        };
        assert_eq!(p.kind(), PatternKind::Json);
        let texts: Vec<&str> = table.records.values().map(String::as_str).collect();
        if let Err(e) = check_round_trip(&p, &texts) {
            failures.push(format!("{}: {e}", rule.id));
        }
        let prefixed = match p.with_selector_prefix("detail") {
            Ok(q) => q,
            Err(e) => panic!("{}:\n{e}", rule.id),
        };
        assert!(prefixed.as_str().len() <= 1024);
        assert!(
            !prefixed.as_str().contains("$.eventName"),
            "{}",
            prefixed.as_str()
        );
        for (name, record) in &records {
            let want = rule.matches.contains(name);
            let got = p.matches(&Event::from_value(record));
            let got_text = p.matches_message(&table.records[name]);
            let env = envelope(record);
            let got_env = prefixed.matches(&Event::from_value(&env));
            let got_env_text = prefixed.matches_message(&env.to_string());
            // The unprefixed rule must not fire on the envelope.
            let stray = p.matches(&Event::from_value(&env));
            if (got, got_text, got_env, got_env_text, stray) != (want, want, want, want, false) {
                failures.push(format!(
                    "{} on {name}: record {got}/{got_text}, envelope {got_env}/{got_env_text}, unprefixed on envelope {stray}; want {want}",
                    rule.id
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn selector_prefix_output() {
    let p = Pattern::parse(
        r#"{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != "AwsServiceEvent" }"#,
    )
    .unwrap();
    let q = p.with_selector_prefix("detail").unwrap();
    assert_eq!(
        q.as_str(),
        r#"{$.detail.userIdentity.type="Root"&&$.detail.userIdentity.invokedBy NOT EXISTS&&$.detail.eventType!="AwsServiceEvent"}"#
    );
    let p = Pattern::parse("{ $.['a.b'][0] = 1 || $.* = %x% }").unwrap();
    assert_eq!(
        p.with_selector_prefix("detail.inner").unwrap().as_str(),
        "{$.detail.inner.['a.b'][0]=1||$.detail.inner.*=%x%}"
    );
    let e = Pattern::parse("ERROR")
        .unwrap()
        .with_selector_prefix("detail")
        .unwrap_err();
    assert_eq!(e.kind.name(), "NotJsonPattern");
    let e = Pattern::parse("{ $.a = 1 }")
        .unwrap()
        .with_selector_prefix("de tail")
        .unwrap_err();
    assert_eq!((e.kind.name(), e.column()), ("InvalidSelectorPrefix", 3));
    let e = Pattern::parse("{ $.a = 1 }")
        .unwrap()
        .with_selector_prefix("a..b")
        .unwrap_err();
    assert_eq!((e.kind.name(), e.column()), ("InvalidSelectorPrefix", 3));
    // Too long once prefixed: the limit still applies.
    let conds: Vec<String> = (0..80).map(|i| format!("$.e={i:03}")).collect();
    let long = format!("{{{}}}", conds.join("||"));
    assert!(long.chars().count() <= 1024);
    let e = Pattern::parse(&long)
        .unwrap()
        .with_selector_prefix("detail")
        .err();
    assert_eq!(e.map(|e| e.kind.name()), Some("TooLong"));
}

#[test]
fn display_and_compact_forms() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{($.a="x")||($.b=1)&&$.c IS NULL}"#,
            r#"{ ($.a = "x") || ($.b = 1) && $.c IS NULL }"#,
            r#"{($.a="x")||($.b=1)&&$.c IS NULL}"#,
        ),
        (
            "[ip,  user , ..., code = 4* && code != 403,]",
            "[ip, user, ..., code = 4* && code != 403, ]",
            "[ip,user,...,code=4*&&code!=403,]",
        ),
        (
            "  ?ERROR   -\"a b\"  ",
            "?ERROR -\"a b\"",
            "?ERROR -\"a b\"",
        ),
        ("   ", "", ""),
        (
            "{ $.['x.y'].z[*] NOT EXISTS }",
            "{ $.['x.y'].z[*] NOT EXISTS }",
            "{$.['x.y'].z[*] NOT EXISTS}",
        ),
    ];
    for (src, pretty, compact) in cases {
        let p = Pattern::parse(src).unwrap();
        assert_eq!(p.to_string(), *pretty, "{src}");
        assert_eq!(p.to_compact_string(), *compact, "{src}");
        assert_eq!(p.as_str(), *src);
    }
}

#[test]
fn kinds() {
    let cases: &[(&str, PatternKind)] = &[
        ("", PatternKind::MatchAll),
        (" \n ", PatternKind::MatchAll),
        ("\"\"", PatternKind::Terms),
        ("%x%", PatternKind::Terms),
        (" { $.a = 1 }", PatternKind::Json),
        ("[a]", PatternKind::SpaceDelimited),
    ];
    for (src, kind) in cases {
        assert_eq!(Pattern::parse(src).unwrap().kind(), *kind, "{src:?}");
    }
}

/// Exact kinds and spans (byte offsets) for a few representative errors.
#[test]
fn error_spans() {
    type Range = (usize, usize);
    let cases: &[(&str, &str, Range, Option<Range>)] = &[
        ("{ $.a = 1", "UnclosedBrace", (0, 1), None),
        ("{ $.a IS NOT NULL }", "IsNotUnsupported", (6, 12), None),
        ("{ $.a EXISTS }", "ExistsUnsupported", (6, 12), None),
        ("{ $.a > abc }", "ExpectedNumber", (8, 11), None),
        ("{ $.a..b = 1 }", "InvalidSelector", (2, 7), None),
        (
            "{ $.a[*].b.* = 1 }",
            "MultipleWildcardsInSelector",
            (10, 12),
            None,
        ),
        (
            "{ $.a = %a% || $.b = %b% || $.c = %c% }",
            "TooManyRegexes",
            (34, 37),
            Some((8, 11)),
        ),
        (
            "[a = 1 && b = 2, b]",
            "FieldNameMismatch",
            (10, 11),
            Some((1, 2)),
        ),
        ("é \"x", "UnquotedTermCharacter", (0, 2), None),
        ("ok \"é", "UnclosedQuote", (3, 4), None),
        ("%a(%", "RegexUnsupportedCharacter", (2, 3), None),
        ("ERROR %a%", "RegexNotStandalone", (6, 9), None),
    ];
    for (src, kind, (s, e), aux) in cases {
        let err = Pattern::parse(src).unwrap_err();
        assert_eq!(err.kind.name(), *kind, "{src}");
        assert_eq!(
            (err.span.start.offset, err.span.end.offset),
            (*s, *e),
            "{src}\n{err}"
        );
        assert_eq!(
            err.aux_span.map(|a| (a.start.offset, a.end.offset)),
            *aux,
            "{src}"
        );
        assert_eq!(err.pattern, *src);
    }
}

#[test]
fn columns_count_characters() {
    // 'é' is two bytes but one column.
    let err = Pattern::parse("{ $.é = 1 }").unwrap_err();
    assert_eq!(err.kind.name(), "InvalidSelector");
    let err = Pattern::parse("\"é\" foo.").unwrap_err();
    assert_eq!((err.span.start.offset, err.column()), (8, 8));
    let err = Pattern::parse("{ $.a = 1 &&\n  $.b = }").unwrap_err();
    assert_eq!(
        (err.kind.name(), err.line(), err.column()),
        ("ExpectedValue", 2, 9)
    );
}

#[test]
fn rendered_error_text() {
    let err = Pattern::parse(
        r#"{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed IS NOT "Yes") }"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        concat!(
            r#"{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed IS NOT "Yes") }"#,
            "\n",
            "                                                                   ^^^^^^\n",
            "error: IS NOT is not supported"
        )
    );
    assert_eq!(err.column(), 68);
    assert_eq!(err.reason(), "IS NOT is not supported");

    let err = Pattern::parse("{ $.a = %x% || $.b = %y% || $.c = %z% }").unwrap_err();
    assert_eq!(
        err.to_string(),
        "{ $.a = %x% || $.b = %y% || $.c = %z% }\n        ---                       ^^^\nerror: at most 2 regexes are allowed in a filter pattern"
    );
}

#[test]
fn length_limit_is_checked_first() {
    let ok = format!("\"{}\"", "a".repeat(1022));
    assert_eq!(ok.chars().count(), 1024);
    assert!(Pattern::parse(&ok).is_ok());
    // 1025 characters of an otherwise broken pattern: TooLong wins.
    let long = format!("{{ ${}", "é".repeat(1022));
    let err = Pattern::parse(&long).unwrap_err();
    assert_eq!(err.kind.name(), "TooLong");
    assert_eq!(err.column(), 1025);
    assert!(err.reason().contains("1025"));
    // Characters, not bytes: 1024 two-byte characters are fine.
    let multibyte = format!("\"{}\"", "é".repeat(1022));
    assert!(Pattern::parse(&multibyte).is_ok());
}

#[test]
fn nesting_is_limited() {
    let deep = |n: usize| format!("{{ {}$.a = 1{} }}", "(".repeat(n), ")".repeat(n));
    assert!(Pattern::parse(&deep(super::parse::MAX_DEPTH)).is_ok());
    let err = Pattern::parse(&deep(super::parse::MAX_DEPTH + 1)).unwrap_err();
    assert_eq!(err.kind.name(), "NestingTooDeep");
    assert_eq!(err.column(), 3 + super::parse::MAX_DEPTH);
    // Far beyond the limit (but under 1024 chars): still an error, no overflow.
    let err = Pattern::parse(&format!("{{{}", "(".repeat(1000))).unwrap_err();
    assert_eq!(err.kind.name(), "NestingTooDeep");
}

#[test]
fn one_event_many_patterns() {
    let record = r#"{"eventName":"ConsoleLogin","userIdentity":{"type":"Root"},"eventType":"AwsConsoleSignIn"}"#;
    let patterns: Vec<Pattern> = [
        r#"{ $.eventName = "ConsoleLogin" }"#,
        r#"{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS }"#,
        "ConsoleLogin",
        "[a, ...]",
        r#"{ $.eventName = "Other" }"#,
    ]
    .iter()
    .map(|s| Pattern::parse(s).unwrap())
    .collect();
    let event = Event::from_message(record);
    let got: Vec<bool> = patterns.iter().map(|p| p.matches(&event)).collect();
    assert_eq!(got, [true, true, true, true, false]);
    let value: serde_json::Value = serde_json::from_str(record).unwrap();
    let event = Event::from_value(&value);
    let got: Vec<bool> = patterns.iter().map(|p| p.matches(&event)).collect();
    assert_eq!(got, [true, true, true, true, false]);
    // The text is rendered once and then reused.
    let t1 = event.text().as_ptr();
    assert_eq!(t1, event.text().as_ptr());
}

#[test]
fn pattern_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Pattern>();
    fn check_err<T: std::error::Error + Send + Sync + 'static>() {}
    check_err::<Error>();
}

// ------------------------------------------------------------ no-panic

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "$",
    ".",
    "$.",
    "*",
    "[*]",
    "[0]",
    "['a.b']",
    "'",
    "=",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "&&",
    "||",
    "&",
    "|",
    "%",
    "\"",
    "\\",
    ",",
    "?",
    "-",
    "...",
    " ",
    " ",
    " ",
    "\n",
    "\t",
    "a",
    "b",
    "x",
    "eventName",
    "ERROR",
    "0",
    "1",
    "42",
    "-3.5",
    "1e3",
    "e",
    "+",
    ":",
    "/",
    "@",
    "#",
    "^",
    "é",
    "IS",
    "NOT",
    "EXISTS",
    "NULL",
    "TRUE",
    "FALSE",
    "{m",
    "\\d",
    "\\x3A",
    "{2,3}",
    "[a-z]",
    "[^c]",
];

const FUZZ_EVENTS: &[&str] = &[
    r#"{"a":[1,"x",{"b":null}],"c":"v","d":true,"eventName":"ERROR","e":{"f":[[0,1],[2]]}}"#,
    r#"ERROR 404 [10/Oct/2000 x] "GET / HTTP" 5 -3.5"#,
    "",
    "{not json",
];

fn seeds() -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in TABLES {
        for c in load(name, text).case {
            out.push(c.pattern);
        }
    }
    let cis: CisTable = toml::from_str(CIS).unwrap();
    out.extend(cis.rule.into_iter().map(|r| r.pattern));
    out
}

fn mutate(rng: &mut XorShift, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let piece = PIECES[rng.below(PIECES.len())];
                for (i, c) in piece.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            2 if at < chars.len() => {
                let piece = PIECES[rng.below(PIECES.len())];
                if let Some(c) = piece.chars().next() {
                    chars[at] = c;
                }
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

fn random_pattern(rng: &mut XorShift) -> String {
    let mut s = String::new();
    match rng.below(4) {
        0 => s.push('{'),
        1 => s.push('['),
        _ => {}
    }
    for _ in 0..rng.below(24) {
        s.push_str(PIECES[rng.below(PIECES.len())]);
    }
    if rng.below(2) == 0 {
        s.push(if s.starts_with('[') { ']' } else { '}' });
    }
    s
}

#[test]
fn no_panic_on_generated_input() {
    let seeds = seeds();
    let events: Vec<Event<'_>> = FUZZ_EVENTS.iter().map(|m| Event::from_message(m)).collect();
    let value: serde_json::Value = serde_json::from_str(FUZZ_EVENTS[0]).unwrap();
    let value_event = Event::from_value(&value);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut err) = (0usize, 0usize);
    let mut problems = Vec::new();
    for i in 0..200_000 {
        let input = if i % 2 == 0 {
            random_pattern(&mut rng)
        } else {
            let seed = rng.below(seeds.len());
            mutate(&mut rng, &seeds[seed])
        };
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match Pattern::parse(&input) {
                    Ok(p) => {
                        let verdicts: Vec<bool> = events.iter().map(|e| p.matches(e)).collect();
                        let _ = p.matches(&value_event);
                        let _ = p.with_selector_prefix("detail");
                        let again = check_round_trip(&p, FUZZ_EVENTS);
                        let _ = verdicts;
                        again.map(|()| true)
                    }
                    Err(e) => {
                        let _ = e.to_string();
                        assert!(e.span.start.offset <= e.span.end.offset);
                        assert!(e.span.end.offset <= input.len());
                        Ok(false)
                    }
                }
            }));
        match outcome {
            Ok(Ok(true)) => ok += 1,
            Ok(Ok(false)) => err += 1,
            Ok(Err(msg)) => problems.push(msg),
            Err(_) => problems.push(format!("panic on {input:?}")),
        }
        if problems.len() > 20 {
            break;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The generator must exercise both outcomes substantially.
    assert!(ok > 10_000 && err > 10_000, "ok {ok}, err {err}");
}

#[test]
fn regex_use_is_found_in_every_kind_of_pattern() {
    for (text, regex) in [
        (r#"{ $.eventName = %^Delete.*% }"#, true),
        (r#"{ ($.a = 1) && (($.b = 2) || ($.c = %x+%)) }"#, true),
        (r#"{ $.eventName = "%not a regex%" }"#, false),
        (r#"{ $.eventName = DeleteTrail }"#, false),
        ("%ERROR [0-9]+%", true),
        ("ERROR", false),
        ("[ip, user, status = %4[0-9]{2}%]", true),
        ("[ip, user, status = 404]", false),
        ("", false),
    ] {
        let p = Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(p.uses_regex(), regex, "{text}");
    }
}

// ------------------------------------------------------------ the scanned path (select)

use super::select::{BoundSet, Scanner, SelectorBuilder, Unsupported};

/// Each pattern's verdict on `text` through one selector built for all of them: `Err`
/// when the scanner declines, `Ok(None)` for a CloudTrail file (several records).
fn scanned(patterns: &[&Pattern], text: &str, envelope: bool) -> Result<Vec<bool>, Unsupported> {
    let mut b = SelectorBuilder::new(envelope);
    let bound: Vec<_> = patterns
        .iter()
        .map(|p| b.pattern(p).expect("a JSON pattern binds"))
        .collect();
    let sel = b.build();
    let set = BoundSet::new(&sel, bound.clone());
    let mut out = Vec::new();
    let n = Scanner::new().for_each_record(&sel, text, |r| {
        out = bound.iter().map(|b| r.matches(b)).collect();
        // The index lets through every rule that matches, and only those are reported.
        let mut indexed = vec![false; bound.len()];
        set.for_each_match(r, |i| indexed[i] = true);
        assert_eq!(indexed, out, "the indexed set on {text:?}");
    })?;
    assert_eq!(n, 1, "one record in {text:?}");
    Ok(out)
}

fn binds(p: &Pattern) -> bool {
    matches!(p.kind(), PatternKind::Json | PatternKind::MatchAll)
}

#[test]
fn tables_agree_on_the_scanned_path() {
    let (mut scanned_rows, mut declined) = (0, 0);
    let mut failures = Vec::new();
    for (name, text) in TABLES {
        for (i, c) in load(name, text).case.iter().enumerate() {
            let (Ok(p), Some(ev), Some(want)) = (Pattern::parse(&c.pattern), &c.event, c.expect)
            else {
                continue;
            };
            if !binds(&p) {
                continue;
            }
            let at = format!("{name} row {} ({:?} on {ev:?})", i + 1, c.pattern);
            let valid = serde_json::from_str::<serde_json::Value>(ev)
                .is_ok_and(|v| v.is_object() && v.get("Records").is_none());
            match scanned(&[&p], ev, false) {
                Ok(got) => {
                    scanned_rows += 1;
                    if !valid {
                        failures.push(format!("{at}: accepted what serde_json refuses"));
                    } else if got != [want] {
                        failures.push(format!("{at}: got {got:?}, want {want}"));
                    }
                }
                Err(Unsupported) => declined += 1,
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        scanned_rows > 100,
        "only {scanned_rows} rows scanned ({declined} declined)"
    );
}

#[test]
fn the_cis_pack_agrees_on_the_scanned_path_with_and_without_envelopes() {
    let table: CisTable = toml::from_str(CIS).expect("cis.toml");
    let patterns: Vec<Pattern> = table
        .rule
        .iter()
        .map(|r| Pattern::parse(&r.pattern).expect("parses"))
        .collect();
    let all: Vec<&Pattern> = patterns.iter().collect();
    let mut checked = 0;
    for (name, text) in &table.records {
        let record: serde_json::Value = serde_json::from_str(text).expect("record");
        let want: Vec<bool> = table
            .rule
            .iter()
            .map(|r| r.matches.contains(name))
            .collect();
        // One selector for the whole pack, as `hub replay` builds it.
        assert_eq!(scanned(&all, text, false), Ok(want.clone()), "{name}");
        assert_eq!(scanned(&all, text, true), Ok(want.clone()), "{name}");
        let env = envelope(&record).to_string();
        assert_eq!(scanned(&all, &env, true), Ok(want), "{name} in an envelope");
        // Without envelopes the rules look at the envelope itself, as the plain path does.
        let plain: Vec<bool> = patterns
            .iter()
            .map(|p| p.matches(&Event::from_value(&envelope(&record))))
            .collect();
        assert_eq!(scanned(&all, &env, false), Ok(plain), "{name}");
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn the_scanner_declines_what_it_would_have_to_guess() {
    let p = Pattern::parse(r#"{ $.a = "x" || $.b.* = 1 }"#).expect("parses");
    let declined = [
        r#"{"a":"y","a":"x"}"#,    // a looked-at key twice: serde_json keeps the last
        r#"{"b":{"k":2,"k":1}}"#,  // twice under a wildcard
        r#"{"\u0061":"x"}"#,       // an escaped key where the trie looks
        r#"{"a":"\ud83d\ude00"}"#, // a surrogate pair
        r#"{"c":"\ud800"}"#,       // a lone surrogate, even where nothing looks
        r#"{"c":1e400}"#,          // out of range for serde_json
        r#"{"c":123456789012345678901234}"#,
        r#"{"c":[1,]}"#, // invalid JSON: the plain path names the error
        r#"{"c":"tab	inside"}"#,
        r#"{"a":"x"} trailing"#,
        r#"{"Records":{"a":"x"}}"#, // a root Records key
        r#"{"Records":[{"a":"x"}],"more":1}"#,
        "[1,2]",
        "plain text",
    ];
    for text in declined {
        assert_eq!(scanned(&[&p], text, false), Err(Unsupported), "{text}");
    }
    let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
    assert_eq!(
        scanned(&[&p], &format!(r#"{{"c":{deep}}}"#), false),
        Err(Unsupported)
    );
    // What is only skipped may repeat keys and use any escape but surrogates.
    for (text, want) in [
        (r#"{"c":1,"c":2,"a":"x"}"#, true),
        (r#"{"c":"\"\\\/\b\f\n\r\t\u00e9","a":"\u0078"}"#, true),
        (r#"{"a":"\u0079","b":{"k":1.0}}"#, true),
        (r#"{"a":"\u0079","b":{"k":"1"}}"#, true),
        (r#"{"a":"\u0079","b":[{"k":1}]}"#, false),
        (r#"  { "a" : "x" }  "#, true),
    ] {
        let slow = p.matches_message(text);
        assert_eq!(slow, want, "plain path on {text}");
        assert_eq!(scanned(&[&p], text, false), Ok(vec![want]), "{text}");
    }
}

/// Random JSON text over a small vocabulary, so that generated patterns select something:
/// nested objects and arrays, every kind of value, escapes, repeated keys, and now and
/// then a defect.
fn random_json(rng: &mut XorShift, depth: usize, out: &mut String) {
    const KEYS: &[&str] = &["a", "b", "c", "x", "eventName", "a.b", "d", "e", "f"];
    const STRINGS: &[&str] = &[
        "x", "v", "ERROR", "", "1", "42", "-3.5", "1e3", "a\\\"b", "\\u00e9", "tab\\t", "ab*ba",
    ];
    const SCALARS: &[&str] = &[
        "0",
        "1",
        "42",
        "-3.5",
        "1e3",
        "1E+2",
        "-0",
        "0.0",
        "true",
        "false",
        "null",
        "12345678901234567890",
    ];
    let pick = rng.below(10);
    if depth < 4 && pick < 3 {
        out.push('{');
        for i in 0..rng.below(5) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(if rng.below(6) == 0 { " \"" } else { "\"" });
            out.push_str(KEYS[rng.below(KEYS.len())]);
            out.push_str("\":");
            random_json(rng, depth + 1, out);
        }
        out.push('}');
    } else if depth < 4 && pick < 5 {
        out.push('[');
        for i in 0..rng.below(4) {
            if i > 0 {
                out.push_str(if rng.below(50) == 0 { ",," } else { "," });
            }
            random_json(rng, depth + 1, out);
        }
        out.push(']');
    } else if pick < 8 {
        out.push('"');
        out.push_str(STRINGS[rng.below(STRINGS.len())]);
        out.push('"');
    } else {
        out.push_str(SCALARS[rng.below(SCALARS.len())]);
    }
}

#[test]
fn generated_patterns_agree_on_generated_records() {
    let seeds = seeds();
    let mut rng = XorShift(0x0DDB_A11C_AFE5_EED5);
    let mut patterns = Vec::new();
    while patterns.len() < 400 {
        let input = if rng.below(2) == 0 {
            random_pattern(&mut rng)
        } else {
            let seed = rng.below(seeds.len());
            mutate(&mut rng, &seeds[seed])
        };
        if let Ok(p) = Pattern::parse(&input)
            && binds(&p)
        {
            patterns.push(p);
        }
    }
    let (mut agreed, mut declined, mut positive) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for group in patterns.chunks(20) {
        let group: Vec<&Pattern> = group.iter().collect();
        for _ in 0..300 {
            let mut text = String::from("{");
            for i in 0..1 + rng.below(6) {
                if i > 0 {
                    text.push(',');
                }
                const ROOT: &[&str] = &["a", "b", "c", "x", "eventName", "a.b", "d"];
                text.push('"');
                text.push_str(ROOT[rng.below(ROOT.len())]);
                text.push_str("\":");
                random_json(&mut rng, 1, &mut text);
            }
            text.push('}');
            let want: Option<Vec<bool>> = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .map(|v| {
                    group
                        .iter()
                        .map(|p| p.matches(&Event::from_value(&v)))
                        .collect()
                });
            match (scanned(&group, &text, false), want) {
                (Ok(got), Some(want)) => {
                    agreed += 1;
                    positive += got.iter().filter(|&&m| m).count();
                    if got != want {
                        for ((p, g), w) in group.iter().zip(&got).zip(&want) {
                            if g != w {
                                failures.push(format!("{p} on {text}: scanned {g}, plain {w}"));
                            }
                        }
                    }
                }
                (Ok(_), None) => failures.push(format!("accepted invalid JSON {text}")),
                (Err(Unsupported), _) => declined += 1,
            }
            if failures.len() > 20 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        agreed > 3_000 && positive > 1_000,
        "agreed {agreed}, declined {declined}, positive {positive}"
    );
}
