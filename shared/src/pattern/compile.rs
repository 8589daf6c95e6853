//! [`Ast`] -> [`Program`]: the checks that need meaning (AWS's regex subset
//! and quotas, wildcard-selector quota, field names in compound conditions),
//! then a flat matcher with every wildcard and regex compiled once.

use regex::{Regex, RegexBuilder};

use super::ast::*;
use super::error::{Error, ErrorKind, Span};

/// AWS: "a limit of 2 regex for each filter pattern".
pub const MAX_REGEXES: usize = 2;
/// AWS: "up to three wildcard selectors in a filter pattern".
pub const MAX_WILDCARD_SELECTORS: usize = 3;

#[derive(Clone, Debug)]
pub enum Program {
    MatchAll,
    Terms(TermsProg),
    Json(JExpr),
    Space(SpaceProg),
}

#[derive(Clone, Debug)]
pub enum TermsProg {
    /// A standalone `%regex%`.
    Regex(Regex),
    /// All `required` appear and no `excluded` appears (`?` terms ignored
    /// when any of these exist, as AWS documents).
    AllOf {
        required: Vec<String>,
        excluded: Vec<String>,
    },
    /// Only `?` terms: any of them appears.
    AnyOf(Vec<String>),
}

#[derive(Clone, Debug)]
pub enum JExpr {
    And(Vec<JExpr>),
    Or(Vec<JExpr>),
    Cond(Box<JCond>),
}

#[derive(Clone, Debug)]
pub struct JCond {
    pub path: Vec<Step>,
    pub test: JTest,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
    AnyKey,
    AnyIndex,
}

#[derive(Clone, Debug)]
pub enum JTest {
    Value(ValueTest),
    IsNull,
    IsTrue,
    IsFalse,
    NotExists,
}

/// A comparison against one value (a JSON string/number, or a field's text).
#[derive(Clone, Debug)]
pub enum ValueTest {
    Str {
        negate: bool,
        m: StrMatch,
    },
    Num {
        op: CmpOp,
        n: f64,
    },
    Regex {
        negate: bool,
        re: Regex,
    },
    /// Equal to one of these (sorted) strings: `$.p = a || $.p = b || ...`
    /// merged into one lookup.
    OneOf(Vec<String>),
}

/// A string comparison with `*` wildcards.
#[derive(Clone, Debug)]
pub enum StrMatch {
    /// Only wildcards: any value.
    Any,
    Exact(String),
    /// `parts` split at each `*` (at least two parts).
    Glob(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct SpaceProg {
    pub fields: Vec<SField>,
    pub has_ellipsis: bool,
}

#[derive(Clone, Debug)]
pub enum SField {
    Ellipsis,
    One(Option<FPred>),
}

#[derive(Clone, Debug)]
pub enum FPred {
    And(Vec<FPred>),
    Or(Vec<FPred>),
    Test(ValueTest),
}

pub fn compile(text: &str, ast: &Ast) -> Result<Program, Error> {
    check_regex_quota(text, ast)?;
    match ast {
        Ast::MatchAll { .. } => Ok(Program::MatchAll),
        Ast::Terms { terms, .. } => compile_terms(text, terms),
        Ast::Json { expr, .. } => {
            check_wildcard_quota(text, expr)?;
            Ok(Program::Json(compile_json(text, expr)?))
        }
        Ast::Space { fields, .. } => compile_space(text, fields),
    }
}

fn regex_lits(ast: &Ast) -> Vec<&RegexLit> {
    let mut out = Vec::new();
    match ast {
        Ast::MatchAll { .. } => {}
        Ast::Terms { terms, .. } => {
            for t in terms {
                if let TermValue::Regex(r) = &t.value {
                    out.push(r);
                }
            }
        }
        Ast::Json { expr, .. } => expr.for_each_cond(&mut |c| {
            if let Test::Compare {
                value: Value::Regex(r),
                ..
            } = &c.test
            {
                out.push(r);
            }
        }),
        Ast::Space { fields, .. } => {
            for f in fields {
                if let Field::Named { cond: Some(e), .. } = f {
                    e.for_each_compare(&mut |c| {
                        if let FieldExpr::Compare {
                            value: Value::Regex(r),
                            ..
                        } = c
                        {
                            out.push(r);
                        }
                    });
                }
            }
        }
    }
    out
}

fn check_regex_quota(text: &str, ast: &Ast) -> Result<(), Error> {
    let lits = regex_lits(ast);
    if lits.len() > MAX_REGEXES {
        return Err(Error::new(
            ErrorKind::TooManyRegexes { max: MAX_REGEXES },
            text,
            lits[MAX_REGEXES].span,
        )
        .with_aux(lits[0].span));
    }
    Ok(())
}

fn check_wildcard_quota(text: &str, expr: &JsonExpr) -> Result<(), Error> {
    let mut spans = Vec::new();
    expr.for_each_cond(&mut |c| {
        if c.selector.segments.iter().any(Segment::is_wildcard) {
            spans.push(c.selector.span);
        }
    });
    if spans.len() > MAX_WILDCARD_SELECTORS {
        return Err(Error::new(
            ErrorKind::TooManyWildcardSelectors {
                max: MAX_WILDCARD_SELECTORS,
            },
            text,
            spans[MAX_WILDCARD_SELECTORS],
        )
        .with_aux(spans[0]));
    }
    Ok(())
}

// ------------------------------------------------------------------- terms

fn compile_terms(text: &str, terms: &[Term]) -> Result<Program, Error> {
    if let Some(t) = terms
        .iter()
        .find(|t| matches!(t.value, TermValue::Regex(_)))
    {
        if terms.len() > 1 || t.op != TermOp::Include {
            return Err(Error::new(ErrorKind::RegexNotStandalone, text, t.span));
        }
        if let TermValue::Regex(r) = &t.value {
            return Ok(Program::Terms(TermsProg::Regex(compile_regex(text, r)?)));
        }
    }
    let needle = |v: &TermValue| -> String {
        match v {
            TermValue::Word(w) => w.clone(),
            TermValue::Quoted(raw) => {
                let s: String = unescape(raw)
                    .into_iter()
                    .map(|p| match p {
                        Piece::Char(c) => c,
                        Piece::Star => '*',
                        Piece::EscapedStar => '*',
                    })
                    .collect();
                // AWS: `" "` matches everything.
                if s.trim().is_empty() {
                    String::new()
                } else {
                    s
                }
            }
            TermValue::Regex(_) => String::new(),
        }
    };
    let mut required = Vec::new();
    let mut excluded = Vec::new();
    let mut optional = Vec::new();
    for t in terms {
        let n = needle(&t.value);
        match t.op {
            TermOp::Include => required.push(n),
            TermOp::Exclude => excluded.push(n),
            TermOp::Optional => optional.push(n),
        }
    }
    Ok(Program::Terms(
        if required.is_empty() && excluded.is_empty() {
            TermsProg::AnyOf(optional)
        } else {
            TermsProg::AllOf { required, excluded }
        },
    ))
}

// --------------------------------------------------------------------- JSON

fn compile_json(text: &str, e: &JsonExpr) -> Result<JExpr, Error> {
    Ok(match e {
        JsonExpr::Or { items, .. } => JExpr::Or(merge_equalities(
            items
                .iter()
                .map(|i| compile_json(text, i))
                .collect::<Result<_, _>>()?,
        )),
        JsonExpr::And { items, .. } => JExpr::And(
            items
                .iter()
                .map(|i| compile_json(text, i))
                .collect::<Result<_, _>>()?,
        ),
        JsonExpr::Paren { inner, .. } => compile_json(text, inner)?,
        JsonExpr::Cond(c) => {
            let path = c
                .selector
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Key(k) => Step::Key(k.clone()),
                    Segment::QuotedKey { name, .. } => Step::Key(name.clone()),
                    Segment::Index(i) => Step::Index(*i),
                    Segment::AnyKey => Step::AnyKey,
                    Segment::AnyIndex => Step::AnyIndex,
                })
                .collect();
            let test = match &c.test {
                Test::Compare { op, value } => JTest::Value(value_test(text, *op, value)?),
                Test::IsNull => JTest::IsNull,
                Test::IsTrue => JTest::IsTrue,
                Test::IsFalse => JTest::IsFalse,
                Test::NotExists => JTest::NotExists,
            };
            JExpr::Cond(Box::new(JCond { path, test }))
        }
    })
}

/// Merges the alternatives of an `||` that test the same selector for
/// equality with an exact string (the shape of most CIS rules) into one
/// condition with a sorted set: one selector walk instead of many. Exact
/// because `||` has no side effects and "any selected node equals one of the
/// strings" is the disjunction of "any selected node equals s" over s.
fn merge_equalities(items: Vec<JExpr>) -> Vec<JExpr> {
    let mut out: Vec<JExpr> = Vec::with_capacity(items.len());
    for item in items {
        let exact = match &item {
            JExpr::Cond(c) => match &c.test {
                JTest::Value(ValueTest::Str {
                    negate: false,
                    m: StrMatch::Exact(s),
                }) => Some((c.path.clone(), s.clone())),
                _ => None,
            },
            _ => None,
        };
        let Some((path, value)) = exact else {
            out.push(item);
            continue;
        };
        let existing = out.iter_mut().find_map(|o| match o {
            JExpr::Cond(c) if c.path == path => match &mut c.test {
                JTest::Value(ValueTest::OneOf(set)) => Some(set),
                _ => None,
            },
            _ => None,
        });
        match existing {
            Some(set) => {
                if let Err(at) = set.binary_search(&value) {
                    set.insert(at, value);
                }
            }
            None => out.push(JExpr::Cond(Box::new(JCond {
                path,
                test: JTest::Value(ValueTest::OneOf(vec![value])),
            }))),
        }
    }
    out
}

fn value_test(text: &str, op: CmpOp, v: &Value) -> Result<ValueTest, Error> {
    let negate = op == CmpOp::Ne;
    Ok(match v {
        Value::Number { text: n, span } => match n.parse::<f64>() {
            Ok(n) if n.is_finite() => ValueTest::Num { op, n },
            _ => return Err(Error::new(ErrorKind::ExpectedNumber, text, *span)),
        },
        Value::Bare { text: s, .. } => ValueTest::Str {
            negate,
            m: str_match(s.chars().map(|c| {
                if c == '*' {
                    Piece::Star
                } else {
                    Piece::Char(c)
                }
            })),
        },
        Value::Quoted { raw, .. } => ValueTest::Str {
            negate,
            m: str_match(unescape(raw).into_iter()),
        },
        Value::Regex(r) => ValueTest::Regex {
            negate,
            re: compile_regex(text, r)?,
        },
    })
}

enum Piece {
    Char(char),
    Star,
    EscapedStar,
}

/// Decodes a quoted string: `\"` -> `"`, `\\` -> `\`, `\*` -> a literal `*`;
/// any other backslash is kept as written; an unescaped `*` is a wildcard.
fn unescape(raw: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.peek() {
                Some('"') | Some('\\') => {
                    out.extend(it.next().map(Piece::Char));
                }
                Some('*') => {
                    it.next();
                    out.push(Piece::EscapedStar);
                }
                _ => out.push(Piece::Char('\\')),
            },
            '*' => out.push(Piece::Star),
            c => out.push(Piece::Char(c)),
        }
    }
    out
}

fn str_match(pieces: impl Iterator<Item = Piece>) -> StrMatch {
    let mut parts = vec![String::new()];
    for p in pieces {
        match p {
            Piece::Star => parts.push(String::new()),
            Piece::Char(c) => parts.last_mut().into_iter().for_each(|s| s.push(c)),
            Piece::EscapedStar => parts.last_mut().into_iter().for_each(|s| s.push('*')),
        }
    }
    if parts.len() == 1 {
        StrMatch::Exact(parts.pop().unwrap_or_default())
    } else if parts.iter().all(String::is_empty) {
        StrMatch::Any
    } else {
        StrMatch::Glob(parts)
    }
}

// ---------------------------------------------------------- space-delimited

fn compile_space(text: &str, fields: &[Field]) -> Result<Program, Error> {
    let mut out = Vec::with_capacity(fields.len());
    let mut has_ellipsis = false;
    for f in fields {
        out.push(match f {
            Field::Ellipsis { .. } => {
                has_ellipsis = true;
                SField::Ellipsis
            }
            Field::Blank { .. } => SField::One(None),
            Field::Named { cond: None, .. } => SField::One(None),
            Field::Named {
                name,
                cond: Some(e),
                ..
            } => {
                let mut first_span = None;
                let mut mismatch = None;
                e.for_each_compare(&mut |c| {
                    if let FieldExpr::Compare {
                        name: n, name_span, ..
                    } = c
                    {
                        first_span.get_or_insert(*name_span);
                        if n != name && mismatch.is_none() {
                            mismatch = Some(*name_span);
                        }
                    }
                });
                if let Some(span) = mismatch {
                    let mut err = Error::new(ErrorKind::FieldNameMismatch, text, span);
                    if let Some(aux) = first_span {
                        err = err.with_aux(aux);
                    }
                    return Err(err);
                }
                SField::One(Some(field_pred(text, e)?))
            }
        });
    }
    Ok(Program::Space(SpaceProg {
        fields: out,
        has_ellipsis,
    }))
}

fn field_pred(text: &str, e: &FieldExpr) -> Result<FPred, Error> {
    Ok(match e {
        FieldExpr::Or { items, .. } => FPred::Or(
            items
                .iter()
                .map(|i| field_pred(text, i))
                .collect::<Result<_, _>>()?,
        ),
        FieldExpr::And { items, .. } => FPred::And(
            items
                .iter()
                .map(|i| field_pred(text, i))
                .collect::<Result<_, _>>()?,
        ),
        FieldExpr::Compare { op, value, .. } => FPred::Test(value_test(text, *op, value)?),
    })
}

// -------------------------------------------------------------------- regex

/// Symbols AWS allows in a regex besides letters, digits and operators.
const SYMBOLS: &[u8] = b":_#=@/;,- ";
/// AWS's regex operators.
const OPERATORS: &[u8] = b"^$?[]{}|\\*+.";

/// Checks a `%regex%` against AWS's documented subset and translates it to
/// the `regex` crate's syntax (ASCII classes for `\d \w \s`).
pub fn compile_regex(text: &str, lit: &RegexLit) -> Result<Regex, Error> {
    let translated = translate_regex(text, lit)?;
    RegexBuilder::new(&translated)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| {
            let reason = match e {
                regex::Error::Syntax(s) => s
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error:"))
                    .map_or("malformed regex".to_string(), |l| {
                        l.trim_start_matches("error:").trim().to_string()
                    }),
                regex::Error::CompiledTooBig(_) => "regex is too large".to_string(),
                _ => "malformed regex".to_string(),
            };
            Error::new(ErrorKind::InvalidRegex { reason }, text, lit.span)
        })
}

fn translate_regex(text: &str, lit: &RegexLit) -> Result<String, Error> {
    let src = lit.source.as_str();
    let base = lit.span.start.offset + 1;
    let err = |kind: ErrorKind, at: usize, len: usize| {
        Error::new(kind, text, Span::new(text, base + at, base + at + len))
    };
    if src.is_empty() {
        return Err(Error::new(ErrorKind::EmptyRegex, text, lit.span));
    }
    if let Some((i, c)) = src.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(err(ErrorKind::RegexMultiByte, i, c.len_utf8()));
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 8);
    let mut in_class = false;
    let mut class_start = 0usize; // index in `b` right after `[` / `[^`
    let mut class_open = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            out.push(c as char);
            i += 1;
            continue;
        }
        if !SYMBOLS.contains(&c) && !OPERATORS.contains(&c) {
            return Err(err(ErrorKind::RegexUnsupportedCharacter, i, 1));
        }
        match c {
            b'\\' => {
                let Some(&e) = b.get(i + 1) else {
                    return Err(err(ErrorKind::RegexInvalidEscape, i, 1));
                };
                let class = |neg: &str, pos: &str, named: &str| {
                    if in_class {
                        if neg.is_empty() {
                            pos.to_string()
                        } else {
                            format!("[:^{named}:]")
                        }
                    } else if neg.is_empty() {
                        format!("[{pos}]")
                    } else {
                        format!("[^{pos}]")
                    }
                };
                let piece = match e {
                    b'd' => class("", "0-9", "digit"),
                    b'D' => class("^", "0-9", "digit"),
                    b'w' => class("", "0-9A-Za-z_", "word"),
                    b'W' => class("^", "0-9A-Za-z_", "word"),
                    b's' => class("", "\\t\\n\\x0B\\x0C\\r ", "space"),
                    b'S' => class("^", "\\t\\n\\x0B\\x0C\\r ", "space"),
                    b'x' => {
                        let hex = b
                            .get(i + 2..i + 4)
                            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                        match hex {
                            Some(h) => {
                                let h = String::from_utf8_lossy(h);
                                i += 2;
                                format!("\\x{h}")
                            }
                            None => return Err(err(ErrorKind::RegexInvalidEscape, i, 2)),
                        }
                    }
                    e if e.is_ascii_alphanumeric() => {
                        return Err(err(ErrorKind::RegexInvalidEscape, i, 2));
                    }
                    e if SYMBOLS.contains(&e) || OPERATORS.contains(&e) => {
                        regex::escape(&(e as char).to_string())
                    }
                    e if e.is_ascii() => {
                        return Err(err(ErrorKind::RegexUnsupportedCharacter, i + 1, 1));
                    }
                    _ => return Err(err(ErrorKind::RegexMultiByte, i + 1, 1)),
                };
                out.push_str(&piece);
                i += 2;
            }
            b'[' if !in_class => {
                in_class = true;
                class_open = i;
                out.push('[');
                i += 1;
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = i;
            }
            b']' if in_class && i > class_start => {
                in_class = false;
                out.push(']');
                i += 1;
            }
            b'-' if in_class => {
                // A range between two members; anything else is a literal '-'
                // (this also keeps Rust's `--` set difference from appearing).
                let prev_ok = i > class_start && b[i - 1] != b'-';
                let next_ok = b.get(i + 1).is_some_and(|&n| n != b']' && n != b'-');
                out.push_str(if prev_ok && next_ok { "-" } else { "\\-" });
                i += 1;
            }
            _ if in_class => {
                out.push_str(&regex::escape(&(c as char).to_string()));
                i += 1;
            }
            b'{' => {
                let (rep, len) = repetition(&b[i..]).ok_or_else(|| {
                    err(
                        ErrorKind::InvalidRegex {
                            reason: "malformed repetition; expected {m}, {m,}, {,n} or {m,n}"
                                .to_string(),
                        },
                        i,
                        1,
                    )
                })?;
                out.push_str(&rep);
                i += len;
            }
            b'}' | b']' => {
                out.push('\\');
                out.push(c as char);
                i += 1;
            }
            b'^' | b'$' | b'?' | b'|' | b'*' | b'+' | b'.' => {
                out.push(c as char);
                i += 1;
            }
            _ => {
                // Remaining symbols are literals.
                out.push_str(&regex::escape(&(c as char).to_string()));
                i += 1;
            }
        }
    }
    if in_class {
        return Err(err(
            ErrorKind::InvalidRegex {
                reason: "unclosed character class".to_string(),
            },
            class_open,
            1,
        ));
    }
    Ok(out)
}

/// `{m}`, `{m,}`, `{,n}`, `{m,n}` (spaces allowed) at the start of `b`.
/// Returns the Rust form and the number of bytes consumed.
fn repetition(b: &[u8]) -> Option<(String, usize)> {
    let mut i = 1;
    let skip = |i: &mut usize| {
        while b.get(*i) == Some(&b' ') {
            *i += 1;
        }
    };
    let num = |i: &mut usize| -> Option<Option<u32>> {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        if *i == start {
            return Some(None);
        }
        std::str::from_utf8(&b[start..*i])
            .ok()?
            .parse::<u32>()
            .ok()
            .map(Some)
    };
    skip(&mut i);
    let m = num(&mut i)?;
    skip(&mut i);
    let rep = if b.get(i) == Some(&b',') {
        i += 1;
        skip(&mut i);
        let n = num(&mut i)?;
        skip(&mut i);
        match (m, n) {
            (None, None) => return None,
            (Some(m), None) => format!("{{{m},}}"),
            (None, Some(n)) => format!("{{0,{n}}}"),
            (Some(m), Some(n)) => format!("{{{m},{n}}}"),
        }
    } else {
        format!("{{{}}}", m?)
    };
    if b.get(i) != Some(&b'}') {
        return None;
    }
    Some((rep, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(src: &str) -> (String, RegexLit) {
        let text = format!("%{src}%");
        let span = Span::new(&text, 0, text.len());
        (
            text.clone(),
            RegexLit {
                source: src.to_string(),
                span,
            },
        )
    }

    #[test]
    fn translates_the_documented_subset() {
        let cases: &[(&str, &str)] = &[
            ("AUTHORIZED", "AUTHORIZED"),
            ("a{3, 5}", "a{3,5}"),
            ("a{,5}", "a{0,5}"),
            ("a{2,}", "a{2,}"),
            ("\\d\\D", "[0-9][^0-9]"),
            ("[\\d\\W]", "[0-9[:^word:]]"),
            ("10\\.10", "10\\.10"),
            ("\\x3A", "\\x3A"),
            ("[abcx-z]", "[abcx-z]"),
            ("[-a]", "[\\-a]"),
            ("^starting|^shutting down", "^starting|^shutting down"),
            ("\\[.\\]", "\\[.\\]"),
            ("a#b", "a\\#b"),
        ];
        for (src, want) in cases {
            let (text, l) = lit(src);
            assert_eq!(translate_regex(&text, &l).as_deref(), Ok(*want), "{src}");
        }
    }

    #[test]
    fn rejects_outside_the_subset() {
        let cases: &[(&str, &str, usize)] = &[
            ("(a)", "RegexUnsupportedCharacter", 2),
            ("something!", "RegexUnsupportedCharacter", 11),
            ("caf\u{e9}", "RegexMultiByte", 5),
            ("\\b", "RegexInvalidEscape", 2),
            ("\\(", "RegexUnsupportedCharacter", 3),
            ("\\x4", "RegexInvalidEscape", 2),
            ("a{x}", "InvalidRegex", 3),
            ("[abc", "InvalidRegex", 2),
            ("", "EmptyRegex", 1),
        ];
        for (src, kind, col) in cases {
            let (text, l) = lit(src);
            let e = translate_regex(&text, &l).unwrap_err();
            assert_eq!((e.kind.name(), e.column()), (*kind, *col), "{src}");
        }
    }

    #[test]
    fn reports_rust_regex_failures_on_the_literal() {
        let (text, l) = lit("*abc");
        let e = compile_regex(&text, &l).unwrap_err();
        assert_eq!(e.kind.name(), "InvalidRegex");
        assert_eq!((e.span.start.offset, e.span.end.offset), (0, 6));
    }
}
