//! Rules in `eventbridge` delivery: each log event is the EventBridge envelope with the
//! CloudTrail record under `detail`, so every JSON selector gets a `detail.` prefix. The
//! prefix is applied by the pattern engine (parse, rewrite, print compactly), never by
//! string replacement. A result over 1,024 characters is split into filters that together
//! match exactly the events the original matches.

use std::fmt;

use serde_json::{Value as Json, json};

use super::MAX_PATTERN_CHARS;
use crate::pattern::ast::{Ast, JsonExpr};
use crate::pattern::{Error, ErrorKind, Pattern, PatternKind};

/// The selector prefix of the CloudTrail record inside an EventBridge envelope.
pub const DETAIL_PREFIX: &str = "detail";

/// Most filters one rule may be split into. CloudWatch Logs allows a few metric filters per
/// log group; a rule needing more should be written as several rules.
pub const MAX_PARTS: usize = 4;

/// Why a rule cannot be expressed as EventBridge-delivery filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// Space-delimited patterns address fields of a text line, which the envelope is not.
    SpaceDelimited,
    /// The prefixed pattern is too long and has no top-level `||` (directly, or inside one
    /// `&&` operand) to split on, or needs more than [`MAX_PARTS`] filters.
    TooLong { chars: usize },
    /// The engine rejected a rewritten part.
    Pattern(Box<Error>),
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::SpaceDelimited => write!(
                f,
                "space-delimited patterns cannot be applied to EventBridge envelopes"
            ),
            SplitError::TooLong { chars } => write!(
                f,
                "with `{DETAIL_PREFIX}.` selectors the pattern is {chars} characters and cannot be split into at most {MAX_PARTS} filters of {MAX_PATTERN_CHARS}"
            ),
            SplitError::Pattern(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SplitError {}

/// See [`super::Rule::eventbridge_filters`].
pub(crate) fn filters(pattern: &Pattern) -> Result<Vec<String>, SplitError> {
    match pattern.kind() {
        PatternKind::MatchAll | PatternKind::Terms => Ok(vec![pattern.as_str().to_string()]),
        PatternKind::SpaceDelimited => Err(SplitError::SpaceDelimited),
        PatternKind::Json => {
            let mut out = Vec::new();
            split_into(pattern, &mut out)?;
            Ok(out)
        }
    }
}

/// Prefixes `pattern`, or splits it and recurses, appending the finished filters to `out`.
fn split_into(pattern: &Pattern, out: &mut Vec<String>) -> Result<(), SplitError> {
    match pattern.with_selector_prefix(DETAIL_PREFIX) {
        Ok(p) => {
            let text = p.to_compact_string();
            let chars = text.chars().count();
            if chars > MAX_PATTERN_CHARS {
                return Err(SplitError::TooLong { chars });
            }
            if out.len() >= MAX_PARTS {
                return Err(SplitError::TooLong { chars });
            }
            out.push(text);
            Ok(())
        }
        Err(e) => {
            let ErrorKind::TooLong { chars, .. } = e.kind() else {
                return Err(SplitError::Pattern(Box::new(e)));
            };
            let chars = *chars;
            let Some((a, b)) = halves(pattern) else {
                return Err(SplitError::TooLong { chars });
            };
            for half in [a, b] {
                let p = Pattern::parse(&half).map_err(|e| SplitError::Pattern(Box::new(e)))?;
                split_into(&p, out)?;
            }
            if out.len() > MAX_PARTS {
                return Err(SplitError::TooLong { chars });
            }
            Ok(())
        }
    }
}

/// Strips redundant parentheses around an expression.
fn strip(mut e: &JsonExpr) -> &JsonExpr {
    while let JsonExpr::Paren { inner, .. } = e {
        e = inner;
    }
    e
}

fn span_text<'t>(text: &'t str, e: &JsonExpr) -> &'t str {
    let span = match e {
        JsonExpr::Or { span, .. } | JsonExpr::And { span, .. } | JsonExpr::Paren { span, .. } => {
            *span
        }
        JsonExpr::Cond(c) => c.span,
    };
    text.get(span.start.offset..span.end.offset).unwrap_or("")
}

/// Two patterns that together match exactly what `pattern` matches:
/// * `{ x1 || ... || xn }` -> `{ x1 || ... || xk }`, `{ xk+1 || ... || xn }`;
/// * `{ A && (x1 || ... || xn) && B }` -> `{ A && (x1 || ... || xk) && B }` and
///   `{ A && (xk+1 || ... || xn) && B }` (distributing && over ||), using the `||` operand
///   with the most alternatives.
///
/// Parts are built from the source text of the operands, so they keep the pattern's own
/// spelling (the engine re-parses them).
fn halves(pattern: &Pattern) -> Option<(String, String)> {
    let Ast::Json { expr, .. } = pattern.ast() else {
        return None;
    };
    let text = pattern.as_str();
    match strip(expr) {
        JsonExpr::Or { items, .. } if items.len() >= 2 => {
            let mid = items.len() / 2;
            let join = |part: &[JsonExpr]| {
                let body: Vec<&str> = part.iter().map(|e| span_text(text, e)).collect();
                format!("{{ {} }}", body.join(" || "))
            };
            Some((join(&items[..mid]), join(&items[mid..])))
        }
        JsonExpr::And { items, .. } => {
            let (at, alternatives) = items
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match strip(e) {
                    JsonExpr::Or { items, .. } if items.len() >= 2 => Some((i, items)),
                    _ => None,
                })
                .max_by_key(|(_, alts)| alts.len())?;
            let mid = alternatives.len() / 2;
            let build = |part: &[JsonExpr]| {
                let alts: Vec<&str> = part.iter().map(|e| span_text(text, e)).collect();
                let operands: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        if i == at {
                            format!("({})", alts.join(" || "))
                        } else {
                            span_text(text, e).to_string()
                        }
                    })
                    .collect();
                format!("{{ {} }}", operands.join(" && "))
            };
            Some((build(&alternatives[..mid]), build(&alternatives[mid..])))
        }
        _ => None,
    }
}

/// The EventBridge envelope CloudTrail events arrive in (`detail` = the record), as the
/// `eventbridge` delivery writes it to the member log group.
pub fn envelope(record: &Json) -> Json {
    let s = |k: &str| record.get(k).and_then(Json::as_str).unwrap_or_default();
    let detail_type = match s("eventType") {
        "AwsConsoleSignIn" => "AWS Console Sign In via CloudTrail",
        "AwsServiceEvent" => "AWS Service Event via CloudTrail",
        "AwsConsoleAction" => "AWS Console Action via CloudTrail",
        _ => "AWS API Call via CloudTrail",
    };
    let service = s("eventSource")
        .strip_suffix(".amazonaws.com")
        .unwrap_or(s("eventSource"));
    json!({
        "version": "0",
        "id": s("eventID"),
        "detail-type": detail_type,
        "source": format!("aws.{service}"),
        "account": s("recipientAccountId"),
        "time": s("eventTime"),
        "region": s("awsRegion"),
        "resources": [],
        "detail": record,
    })
}
