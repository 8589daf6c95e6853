//! A parser and evaluator of the CloudWatch Logs filter-pattern language, as
//! AWS documents it in "Filter pattern syntax for metric filters, subscription
//! filters, filter log events, and Live Tail".
//!
//! # Three kinds of pattern
//!
//! * **Unstructured terms** (`ERROR -ARGUMENTS`, `"INTERNAL SERVER ERROR"`,
//!   `?ERROR ?WARN`, `%regex%`): each term is a case-sensitive substring of
//!   the event text. Plain terms must all appear, `-term`s must not appear;
//!   `?term`s match when any appears, and are ignored when the pattern also
//!   has plain or `-` terms (as AWS documents). Unquoted terms are letters,
//!   digits and `_`; anything else must be in double quotes. A `%regex%` must
//!   be the whole pattern. An empty pattern, and a quoted term of only
//!   whitespace (`" "`), match every event.
//! * **JSON** (`{ $.a.b = "x" && ($.c > 5 || $.d NOT EXISTS) }`): selectors
//!   `$.name`, `.name`, `[N]`, `[*]`, `.*`, `['dotted.name']` (one wildcard
//!   per selector, three per pattern); operators `=`/`!=` with strings
//!   (quoted or bare, `*` wildcards anywhere) or `%regex%`; `= != < > <= >=`
//!   with numbers (sign, decimals, exponent); `IS NULL`, `IS TRUE`,
//!   `IS FALSE`, `NOT EXISTS`. Precedence `()` > `&&` > `||`.
//! * **Space-delimited** (`[ip, user, ..., status_code = 4*, bytes > 1000]`):
//!   event fields split at whitespace, with `"..."` and `[...]` as single
//!   fields. Without `...` the last pattern field takes the rest of the line
//!   (so `[w1=ERROR, w2]` matches any line starting with `ERROR`); `...`
//!   stands for any number of fields. A field condition may combine tests on
//!   that field with `&&` and `||`.
//!
//! # Semantics decided from the documentation
//!
//! * A comparison (`=`, `!=`, numeric) holds only on a *value node* (string
//!   or number). On a missing property, an object, an array, a boolean or
//!   null it is false, `!=` included: use `NOT EXISTS` to match absence.
//! * With a wildcard selector the condition holds when any selected node
//!   satisfies it (`NOT EXISTS`: when none is selected).
//! * A number on the right compares numerically with JSON numbers and with
//!   strings that are themselves numbers; other strings never match it. A
//!   string on the right compares with strings, and with numbers by their
//!   decimal text.
//! * A regex matches anywhere in the value (use `^`/`$` to anchor); a
//!   wildcard string must match the whole value.
//! * A JSON pattern never matches an event that is not a JSON object.
//!
//! # Limits
//!
//! 1024 characters (checked first), two regexes per pattern, three wildcard
//! selectors per pattern, and [`parse::MAX_DEPTH`] levels of parentheses.
//!
//! # Two stages
//!
//! As in regex-syntax, text first becomes a faithful [`ast::Ast`] with a span
//! on every node, used for errors and for printing (round-trip:
//! `parse(print(ast)) == ast`). It is then compiled into a flat matcher
//! (`compile`) where wildcards and regexes are built once; checks that need
//! meaning (AWS's regex subset and quotas) run there, still with the
//! original spans. Evaluation (`eval`) walks that matcher over an [`Event`]
//! that parses the log event at most once for any number of patterns.

// `Error` deliberately has regex-syntax's shape (kind, pattern, span, aux
// span), which is larger than clippy's default for `Result::Err`; errors are
// built once per rejected pattern, never on the evaluation path.
#![allow(clippy::result_large_err)]

pub mod ast;
mod compile;
mod error;
mod eval;
pub mod parse;
pub mod select;

#[cfg(test)]
mod tests;

use std::fmt;

pub use error::{Error, ErrorKind, Position, Span};
pub use eval::Event;

/// The kind of a filter pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// Empty or whitespace-only: matches every event.
    MatchAll,
    /// Unstructured terms or a standalone regex.
    Terms,
    /// `{ ... }`
    Json,
    /// `[ ... ]`
    SpaceDelimited,
}

/// A parsed and compiled filter pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    ast: ast::Ast,
    program: compile::Program,
}

impl Pattern {
    /// Parses and compiles `text`.
    pub fn parse(text: &str) -> Result<Pattern, Error> {
        let ast = parse::parse(text)?;
        let program = compile::compile(text, &ast)?;
        Ok(Pattern {
            text: text.to_string(),
            ast,
            program,
        })
    }

    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The syntax tree.
    pub fn ast(&self) -> &ast::Ast {
        &self.ast
    }

    pub fn kind(&self) -> PatternKind {
        match self.ast {
            ast::Ast::MatchAll { .. } => PatternKind::MatchAll,
            ast::Ast::Terms { .. } => PatternKind::Terms,
            ast::Ast::Json { .. } => PatternKind::Json,
            ast::Ast::Space { .. } => PatternKind::SpaceDelimited,
        }
    }

    /// Whether the pattern matches the event.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        eval::eval(&self.program, event)
    }

    /// Convenience for one message: `matches(&Event::from_message(message))`.
    pub fn matches_message(&self, message: &str) -> bool {
        self.matches(&Event::from_message(message))
    }

    /// For EventBridge delivery: the same pattern with every JSON selector
    /// prefixed (`$.userIdentity.type` -> `$.detail.userIdentity.type` for
    /// prefix `detail`), printed compactly. Fails if this is not a JSON
    /// pattern, if the prefix is not `name(.name)*`, or if the result exceeds
    /// the 1024-character limit (`ErrorKind::TooLong`).
    pub fn with_selector_prefix(&self, prefix: &str) -> Result<Pattern, Error> {
        let ast::Ast::Json { expr, span } = &self.ast else {
            return Err(Error::new(
                ErrorKind::NotJsonPattern,
                &self.text,
                Span::new(&self.text, 0, self.text.len()),
            ));
        };
        let mut keys = Vec::new();
        let mut offset = 0;
        for part in prefix.split('.') {
            let bad = part
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                .map(|(i, _)| offset + i);
            if part.is_empty() || bad.is_some() {
                let at = bad.unwrap_or(offset);
                return Err(Error::new(
                    ErrorKind::InvalidSelectorPrefix,
                    prefix,
                    Span::char_at(prefix, at),
                ));
            }
            keys.push(ast::Segment::Key(part.to_string()));
            offset += part.len() + 1;
        }
        let mut expr = expr.clone();
        expr.for_each_cond_mut(&mut |c| {
            c.selector.segments.splice(0..0, keys.iter().cloned());
        });
        let prefixed = ast::Ast::Json { expr, span: *span };
        Pattern::parse(&compact(&prefixed))
    }

    /// The pattern printed with minimal whitespace; it parses to an equal tree.
    pub fn to_compact_string(&self) -> String {
        compact(&self.ast)
    }

    /// True when the pattern uses a `%regex%` anywhere. CloudWatch Logs allows only a few
    /// such filters per log group (CloudWatch Logs user guide, "Filter pattern syntax for
    /// metric filters": regular expressions; quotas).
    pub fn uses_regex(&self) -> bool {
        fn json(e: &ast::JsonExpr) -> bool {
            match e {
                ast::JsonExpr::Or { items, .. } | ast::JsonExpr::And { items, .. } => {
                    items.iter().any(json)
                }
                ast::JsonExpr::Paren { inner, .. } => json(inner),
                ast::JsonExpr::Cond(c) => matches!(
                    &c.test,
                    ast::Test::Compare {
                        value: ast::Value::Regex(_),
                        ..
                    }
                ),
            }
        }
        fn field(e: &ast::FieldExpr) -> bool {
            match e {
                ast::FieldExpr::Or { items, .. } | ast::FieldExpr::And { items, .. } => {
                    items.iter().any(field)
                }
                ast::FieldExpr::Compare { value, .. } => matches!(value, ast::Value::Regex(_)),
            }
        }
        match &self.ast {
            ast::Ast::MatchAll { .. } => false,
            ast::Ast::Terms { terms, .. } => terms
                .iter()
                .any(|t| matches!(t.value, ast::TermValue::Regex(_))),
            ast::Ast::Json { expr, .. } => json(expr),
            ast::Ast::Space { fields, .. } => fields
                .iter()
                .any(|f| matches!(f, ast::Field::Named { cond: Some(c), .. } if field(c))),
        }
    }
}

fn compact(ast: &ast::Ast) -> String {
    ast::Printer {
        ast,
        style: ast::Style::Compact,
    }
    .to_string()
}

/// Prints the syntax tree (canonical spacing); it parses to an equal tree.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ast.fmt(f)
    }
}
