//! One lazily parsed view per log event, shared by every pattern evaluated
//! on it: the JSON tree is parsed at most once (on first use by a JSON
//! pattern), the text is rendered at most once (when an already-parsed record
//! meets a term or space-delimited pattern), and the space-delimited fields
//! are split at most once.

use std::cell::OnceCell;

use serde_json::Value as Json;

use super::ast::CmpOp;
use super::compile::*;

/// One log event. Not `Sync`: evaluate one event on one thread (it is `Send`).
#[derive(Debug)]
pub struct Event<'a> {
    message: Option<&'a str>,
    value: Option<&'a Json>,
    parsed: OnceCell<Option<Json>>,
    rendered: OnceCell<String>,
    tokens: OnceCell<Vec<Token>>,
}

/// One space-delimited field of the event text: `content` without the
/// surrounding quotes or brackets; `start` is where the raw field begins.
#[derive(Clone, Copy, Debug)]
struct Token {
    start: usize,
    content: (usize, usize),
}

impl<'a> Event<'a> {
    /// An event given as its message text; JSON is parsed on first use by a
    /// JSON pattern, once.
    pub fn from_message(message: &'a str) -> Event<'a> {
        Event {
            message: Some(message),
            value: None,
            parsed: OnceCell::new(),
            rendered: OnceCell::new(),
            tokens: OnceCell::new(),
        }
    }

    /// An already-parsed record; its text is rendered (compact JSON) on first
    /// use by a term or space-delimited pattern, once.
    pub fn from_value(value: &'a Json) -> Event<'a> {
        Event {
            message: None,
            value: Some(value),
            parsed: OnceCell::new(),
            rendered: OnceCell::new(),
            tokens: OnceCell::new(),
        }
    }

    /// The event text.
    pub fn text(&self) -> &str {
        match (self.message, self.value) {
            (Some(m), _) => m,
            (None, Some(v)) => self
                .rendered
                .get_or_init(|| serde_json::to_string(v).unwrap_or_default()),
            (None, None) => "",
        }
    }

    /// The event as a JSON object, or `None` when it is not one.
    pub fn json(&self) -> Option<&Json> {
        let v = match self.value {
            Some(v) => Some(v),
            None => self
                .parsed
                .get_or_init(|| {
                    let m = self.message.unwrap_or_default();
                    // Cheap rejection of non-JSON text before invoking the parser.
                    if !m.trim_start().starts_with('{') {
                        return None;
                    }
                    serde_json::from_str::<Json>(m).ok()
                })
                .as_ref(),
        };
        v.filter(|v| v.is_object())
    }

    fn tokens(&self) -> &[Token] {
        self.tokens.get_or_init(|| tokenize(self.text()))
    }
}

/// Splits on whitespace; `"..."` and `[...]` are single fields.
fn tokenize(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let close = match b[i] {
            b'"' => Some(b'"'),
            b'[' => Some(b']'),
            _ => None,
        };
        match close {
            Some(close) => {
                let from = i + 1;
                let to = b[from..]
                    .iter()
                    .position(|&c| c == close)
                    .map_or(b.len(), |p| from + p);
                out.push(Token {
                    start,
                    content: (from, to),
                });
                i = (to + 1).min(b.len());
            }
            None => {
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                out.push(Token {
                    start,
                    content: (start, i),
                });
            }
        }
    }
    out
}

pub(crate) fn eval(program: &Program, event: &Event<'_>) -> bool {
    match program {
        Program::MatchAll => true,
        Program::Terms(t) => eval_terms(t, event.text()),
        Program::Json(e) => event.json().is_some_and(|root| eval_json(e, root)),
        Program::Space(s) => eval_space(s, event),
    }
}

fn eval_terms(t: &TermsProg, text: &str) -> bool {
    match t {
        TermsProg::Regex(re) => re.is_match(text),
        TermsProg::AllOf { required, excluded } => {
            required.iter().all(|n| text.contains(n.as_str()))
                && !excluded.iter().any(|n| text.contains(n.as_str()))
        }
        TermsProg::AnyOf(optional) => optional.iter().any(|n| text.contains(n.as_str())),
    }
}

fn eval_json(e: &JExpr, root: &Json) -> bool {
    match e {
        JExpr::And(items) => items.iter().all(|i| eval_json(i, root)),
        JExpr::Or(items) => items.iter().any(|i| eval_json(i, root)),
        JExpr::Cond(c) => match &c.test {
            JTest::NotExists => !any_node(root, &c.path, &mut |_| true),
            JTest::IsNull => any_node(root, &c.path, &mut Json::is_null),
            JTest::IsTrue => any_node(root, &c.path, &mut |v| v.as_bool() == Some(true)),
            JTest::IsFalse => any_node(root, &c.path, &mut |v| v.as_bool() == Some(false)),
            JTest::Value(t) => any_node(root, &c.path, &mut |v| json_value_test(t, v)),
        },
    }
}

/// Whether any node selected by `path` satisfies `f`.
fn any_node<'v>(v: &'v Json, path: &[Step], f: &mut dyn FnMut(&'v Json) -> bool) -> bool {
    let Some((step, rest)) = path.split_first() else {
        return f(v);
    };
    match (step, v) {
        (Step::Key(k), Json::Object(m)) => m.get(k).is_some_and(|c| any_node(c, rest, f)),
        (Step::Index(i), Json::Array(a)) => a.get(*i).is_some_and(|c| any_node(c, rest, f)),
        (Step::AnyKey, Json::Object(m)) => m.values().any(|c| any_node(c, rest, f)),
        (Step::AnyKey | Step::AnyIndex, Json::Array(a)) => a.iter().any(|c| any_node(c, rest, f)),
        _ => false,
    }
}

/// A comparison applies to value nodes (strings and numbers) only; on
/// objects, arrays, booleans and null it is false, for `!=` too.
fn json_value_test(t: &ValueTest, v: &Json) -> bool {
    match v {
        Json::String(s) => value_test(t, s),
        Json::Number(n) => num_test(t, n),
        _ => false,
    }
}

/// A comparison against a JSON number: numerically for a number on the right, else by the
/// number's decimal text.
pub(crate) fn num_test(t: &ValueTest, n: &serde_json::Number) -> bool {
    match t {
        ValueTest::Num { op, n: want } => n.as_f64().is_some_and(|x| cmp(*op, x, *want)),
        _ => value_test(t, &n.to_string()),
    }
}

/// A comparison against a text value (a JSON string, a rendered JSON number,
/// or a space-delimited field).
pub(crate) fn value_test(t: &ValueTest, s: &str) -> bool {
    match t {
        ValueTest::Str { negate, m } => str_match(m, s) != *negate,
        ValueTest::Regex { negate, re } => re.is_match(s) != *negate,
        ValueTest::Num { op, n } => parse_number(s).is_some_and(|x| cmp(*op, x, *n)),
        ValueTest::OneOf(set) => set.binary_search_by(|v| v.as_str().cmp(s)).is_ok(),
    }
}

fn parse_number(s: &str) -> Option<f64> {
    if super::parse::is_number(s) {
        s.parse::<f64>().ok()
    } else {
        None
    }
}

fn cmp(op: CmpOp, x: f64, y: f64) -> bool {
    match op {
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
    }
}

fn str_match(m: &StrMatch, s: &str) -> bool {
    match m {
        StrMatch::Any => true,
        StrMatch::Exact(e) => s == e,
        StrMatch::Glob(parts) => glob(parts, s),
    }
}

/// `parts` are the pieces between `*`s (at least two): the first is a
/// prefix, the last a suffix, the middle ones must appear in order between.
fn glob(parts: &[String], s: &str) -> bool {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return true;
    };
    let (b, f, l) = (s.as_bytes(), first.as_bytes(), last.as_bytes());
    // The first and last bytes reject most values before a call to memcmp.
    if s.len() < first.len() + last.len()
        || f.first().is_some_and(|c| Some(c) != b.first())
        || l.last().is_some_and(|c| Some(c) != b.last())
        || !s.starts_with(first.as_str())
        || !s.ends_with(last.as_str())
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p.as_str()) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn eval_space(p: &SpaceProg, event: &Event<'_>) -> bool {
    let text = event.text();
    let tokens = event.tokens();
    let field_ok = |f: &SField, t: &str| match f {
        SField::Ellipsis | SField::One(None) => true,
        SField::One(Some(pred)) => field_pred(pred, t),
    };
    let content = |t: &Token| &text[t.content.0..t.content.1];
    let n = p.fields.len();
    if !p.has_ellipsis {
        // Fields bind the event's fields in order; the last binds the rest
        // of the line (so `[w1=ERROR, w2]` matches any line starting with ERROR).
        if tokens.len() < n || n == 0 {
            return false;
        }
        for (f, t) in p.fields[..n - 1].iter().zip(tokens) {
            if !field_ok(f, content(t)) {
                return false;
            }
        }
        let last = &tokens[n - 1];
        let last_text = if tokens.len() == n {
            content(last)
        } else {
            text[last.start..].trim_end()
        };
        return field_ok(&p.fields[n - 1], last_text);
    }
    // With `...`: each other field binds exactly one event field; `...` binds
    // any number. `reach[t]`: the fields so far can consume exactly t tokens.
    let m = tokens.len();
    let mut reach = vec![false; m + 1];
    reach[0] = true;
    for f in &p.fields {
        let mut next = vec![false; m + 1];
        match f {
            SField::Ellipsis => {
                if let Some(first) = reach.iter().position(|&r| r) {
                    next[first..].iter_mut().for_each(|x| *x = true);
                }
            }
            _ => {
                for t in 0..m {
                    if reach[t] && field_ok(f, content(&tokens[t])) {
                        next[t + 1] = true;
                    }
                }
            }
        }
        if !next.iter().any(|&r| r) {
            return false;
        }
        reach = next;
    }
    reach[m]
}

fn field_pred(p: &FPred, s: &str) -> bool {
    match p {
        FPred::And(items) => items.iter().all(|i| field_pred(i, s)),
        FPred::Or(items) => items.iter().any(|i| field_pred(i, s)),
        FPred::Test(t) => value_test(t, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_quoted_and_bracketed_fields() {
        let s = r#"127.0.0.1 Prod frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#;
        let got: Vec<&str> = tokenize(s)
            .iter()
            .map(|t| &s[t.content.0..t.content.1])
            .collect();
        assert_eq!(
            got,
            [
                "127.0.0.1",
                "Prod",
                "frank",
                "10/Oct/2000:13:25:15 -0700",
                "GET /index.html HTTP/1.0",
                "404",
                "1534"
            ]
        );
        // Unterminated quote: the rest of the line.
        let s = "a \"b c";
        assert_eq!(tokenize(s).len(), 2);
    }

    #[test]
    fn glob_matching() {
        let g = |p: &str| -> Vec<String> { p.split('*').map(String::from).collect() };
        assert!(glob(&g("*Event"), "PutEvent"));
        assert!(glob(&g("Event*"), "EventId"));
        assert!(glob(&g("Ev*ent"), "Event"));
        assert!(!glob(&g("ab*ba"), "aba"));
        assert!(glob(&g("*.html*"), "GET /index.html HTTP/1.0"));
        assert!(glob(&g("a*b*c"), "aXbYc"));
        assert!(!glob(&g("a*b*c"), "aXcYb"));
    }

    #[test]
    fn json_is_parsed_once_and_only_for_objects() {
        let e = Event::from_message("not json");
        assert!(e.json().is_none());
        let e = Event::from_message("[1,2]");
        assert!(e.json().is_none());
        let e = Event::from_message(r#" {"a":1}"#);
        let first = e.json().map(|v| v as *const Json);
        let second = e.json().map(|v| v as *const Json);
        assert!(first.is_some() && first == second);
    }
}
