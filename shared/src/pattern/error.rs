//! The one error shape of the pattern engine: kind, original pattern, span.
//!
//! Every error is built through [`Error::new`] (parser and compiler call it
//! through small helpers), so spans are always computed the same way: byte
//! offsets into the pattern, 1-based lines, and 1-based columns counted in
//! characters.

use std::fmt;

/// A location in the pattern text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Byte offset from the start of the pattern.
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters (not bytes).
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text and
    /// moved back to a character boundary).
    pub fn at(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        Position {
            offset,
            line,
            column,
        }
    }
}

/// A half-open range `[start, end)` of the pattern text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    /// The span of bytes `start..end` of `text`.
    pub fn new(text: &str, start: usize, end: usize) -> Span {
        let start = Position::at(text, start);
        let end = Position::at(text, end.max(start.offset));
        Span { start, end }
    }

    /// The span covering one character at byte `offset` (empty at the end).
    pub fn char_at(text: &str, offset: usize) -> Span {
        let start = Position::at(text, offset);
        let len = text[start.offset..]
            .chars()
            .next()
            .map_or(0, char::len_utf8);
        Span::new(text, start.offset, start.offset + len)
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.start.offset >= self.end.offset
    }
}

/// Why a pattern was rejected. One variant per reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The pattern is longer than AWS's 1024-character limit (checked first).
    TooLong { chars: usize, max: usize },
    /// A JSON pattern's `{` has no matching `}`.
    UnclosedBrace,
    /// A space-delimited pattern's `[` has no matching `]`.
    UnclosedBracket,
    /// A `(` has no matching `)`; the span is the `(`.
    UnclosedParen,
    /// A `)` has no matching `(`.
    UnmatchedParen,
    /// A `"` string is not terminated.
    UnclosedQuote,
    /// A `%regex%` is not terminated.
    UnclosedRegex,
    /// Text follows the closing `}` or `]` of a pattern.
    TrailingInput,
    /// `{ }`, `( )` or `[ ]` with nothing inside.
    Empty,
    /// A JSON condition was expected (a selector starting with `$.` or a `(`).
    ExpectedCondition,
    /// A property selector is malformed (e.g. `$a`, `$.`, `$.a..b`, `$.a[x]`).
    InvalidSelector,
    /// More than one wildcard (`*`, `[*]`) in one property selector.
    MultipleWildcardsInSelector,
    /// More than three wildcard selectors in one pattern.
    TooManyWildcardSelectors { max: usize },
    /// After a selector: expected `=`, `!=`, `<`, `<=`, `>`, `>=`, `IS` or `NOT EXISTS`.
    ExpectedOperator,
    /// An operator is not followed by a value.
    ExpectedValue,
    /// `<`, `<=`, `>`, `>=` need a number (sign, digits, decimals, exponent).
    ExpectedNumber,
    /// An unquoted value contains a character that requires double quotes.
    UnquotedValueCharacter,
    /// `IS` must be followed by `NULL`, `TRUE` or `FALSE`.
    ExpectedIsOperand,
    /// `IS NOT` is not supported by CloudWatch Logs.
    IsNotUnsupported,
    /// `EXISTS` is only supported as `NOT EXISTS`.
    ExistsUnsupported,
    /// `NOT` must be followed by `EXISTS`.
    ExpectedExists,
    /// Two conditions are not joined by `&&` or `||`.
    ExpectedLogicalOperator,
    /// A single `&` or `|` (write `&&` / `||`).
    InvalidLogicalOperator,
    /// Parentheses nest deeper than the supported limit.
    NestingTooDeep { max: usize },
    /// An unquoted term contains a character other than a letter, digit or `_`.
    UnquotedTermCharacter,
    /// A `?` or `-` is not directly followed by a term.
    DanglingTermOperator,
    /// A `%regex%` in an unstructured pattern must be the whole pattern.
    RegexNotStandalone,
    /// `%%`: a regex with nothing inside.
    EmptyRegex,
    /// A regex uses a character outside AWS's supported set (e.g. `(`, `!`).
    RegexUnsupportedCharacter,
    /// A regex contains a multi-byte (non-ASCII) character.
    RegexMultiByte,
    /// A regex escape other than an escaped operator/symbol, `\d \D \s \S \w \W` or `\xhh`.
    RegexInvalidEscape,
    /// The regex is malformed (e.g. a repetition with nothing to repeat).
    InvalidRegex { reason: String },
    /// More than two regexes in one pattern; `aux_span` is the first one.
    TooManyRegexes { max: usize },
    /// A space-delimited field was expected (a name, `...`, or a condition).
    ExpectedField,
    /// A space-delimited field name is not made of letters, digits and `_`.
    InvalidFieldName,
    /// Space-delimited fields must be separated by `,`.
    ExpectedComma,
    /// A compound field condition names another field; `aux_span` is the field's name.
    FieldNameMismatch,
    /// `with_selector_prefix` needs a JSON pattern.
    NotJsonPattern,
    /// `with_selector_prefix` got a prefix that is not `name(.name)*`.
    InvalidSelectorPrefix,
}

impl ErrorKind {
    /// The variant name, as used by the test tables (`error = "UnclosedParen"`).
    pub fn name(&self) -> &'static str {
        use ErrorKind::*;
        match self {
            TooLong { .. } => "TooLong",
            UnclosedBrace => "UnclosedBrace",
            UnclosedBracket => "UnclosedBracket",
            UnclosedParen => "UnclosedParen",
            UnmatchedParen => "UnmatchedParen",
            UnclosedQuote => "UnclosedQuote",
            UnclosedRegex => "UnclosedRegex",
            TrailingInput => "TrailingInput",
            Empty => "Empty",
            ExpectedCondition => "ExpectedCondition",
            InvalidSelector => "InvalidSelector",
            MultipleWildcardsInSelector => "MultipleWildcardsInSelector",
            TooManyWildcardSelectors { .. } => "TooManyWildcardSelectors",
            ExpectedOperator => "ExpectedOperator",
            ExpectedValue => "ExpectedValue",
            ExpectedNumber => "ExpectedNumber",
            UnquotedValueCharacter => "UnquotedValueCharacter",
            ExpectedIsOperand => "ExpectedIsOperand",
            IsNotUnsupported => "IsNotUnsupported",
            ExistsUnsupported => "ExistsUnsupported",
            ExpectedExists => "ExpectedExists",
            ExpectedLogicalOperator => "ExpectedLogicalOperator",
            InvalidLogicalOperator => "InvalidLogicalOperator",
            NestingTooDeep { .. } => "NestingTooDeep",
            UnquotedTermCharacter => "UnquotedTermCharacter",
            DanglingTermOperator => "DanglingTermOperator",
            RegexNotStandalone => "RegexNotStandalone",
            EmptyRegex => "EmptyRegex",
            RegexUnsupportedCharacter => "RegexUnsupportedCharacter",
            RegexMultiByte => "RegexMultiByte",
            RegexInvalidEscape => "RegexInvalidEscape",
            InvalidRegex { .. } => "InvalidRegex",
            TooManyRegexes { .. } => "TooManyRegexes",
            ExpectedField => "ExpectedField",
            InvalidFieldName => "InvalidFieldName",
            ExpectedComma => "ExpectedComma",
            FieldNameMismatch => "FieldNameMismatch",
            NotJsonPattern => "NotJsonPattern",
            InvalidSelectorPrefix => "InvalidSelectorPrefix",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            TooLong { chars, max } => {
                write!(f, "pattern is {chars} characters long; the limit is {max}")
            }
            UnclosedBrace => write!(f, "unclosed '{{': a JSON pattern must end with '}}'"),
            UnclosedBracket => write!(
                f,
                "unclosed '[': a space-delimited pattern must end with ']'"
            ),
            UnclosedParen => write!(f, "unclosed '('"),
            UnmatchedParen => write!(f, "')' without a matching '('"),
            UnclosedQuote => write!(f, "unclosed '\"'"),
            UnclosedRegex => write!(f, "unclosed regex: expected a closing '%'"),
            TrailingInput => write!(f, "unexpected text after the end of the pattern"),
            Empty => write!(f, "empty expression"),
            ExpectedCondition => write!(
                f,
                "expected a condition: a property selector starting with '$.' or '('"
            ),
            InvalidSelector => write!(
                f,
                "invalid property selector (expected '$.' followed by names of letters, digits, '-' or '_', [N], [*], * or ['name'])"
            ),
            MultipleWildcardsInSelector => {
                write!(f, "only one wildcard is allowed in a property selector")
            }
            TooManyWildcardSelectors { max } => write!(
                f,
                "at most {max} wildcard selectors are allowed in a filter pattern"
            ),
            ExpectedOperator => write!(
                f,
                "expected an operator: =, !=, <, <=, >, >=, IS or NOT EXISTS"
            ),
            ExpectedValue => write!(f, "expected a value after the operator"),
            ExpectedNumber => write!(f, "expected a number after a numeric operator"),
            UnquotedValueCharacter => {
                write!(f, "this character is only allowed inside double quotes")
            }
            ExpectedIsOperand => write!(f, "expected NULL, TRUE or FALSE after IS"),
            IsNotUnsupported => write!(f, "IS NOT is not supported"),
            ExistsUnsupported => write!(f, "EXISTS is not supported; only NOT EXISTS is"),
            ExpectedExists => write!(f, "expected EXISTS after NOT"),
            ExpectedLogicalOperator => write!(f, "expected '&&' or '||' between conditions"),
            InvalidLogicalOperator => write!(f, "invalid logical operator; use '&&' or '||'"),
            NestingTooDeep { max } => write!(f, "parentheses nest deeper than {max} levels"),
            UnquotedTermCharacter => write!(
                f,
                "terms with characters other than letters, digits and '_' must be enclosed in double quotes"
            ),
            DanglingTermOperator => write!(f, "'?' or '-' must be directly followed by a term"),
            RegexNotStandalone => write!(
                f,
                "a regex in an unstructured pattern must be the whole pattern"
            ),
            EmptyRegex => write!(f, "empty regex"),
            RegexUnsupportedCharacter => write!(
                f,
                "unsupported character in regex (use \\xhh for other symbols)"
            ),
            RegexMultiByte => write!(f, "multi-byte characters are not supported in a regex"),
            RegexInvalidEscape => write!(f, "unsupported escape sequence in regex"),
            InvalidRegex { reason } => write!(f, "invalid regex: {reason}"),
            TooManyRegexes { max } => {
                write!(f, "at most {max} regexes are allowed in a filter pattern")
            }
            ExpectedField => write!(f, "expected a field name, '...' or a field condition"),
            InvalidFieldName => write!(f, "field names may only contain letters, digits and '_'"),
            ExpectedComma => write!(f, "expected ',' between fields"),
            FieldNameMismatch => write!(
                f,
                "a compound condition may only refer to the field it is written in"
            ),
            NotJsonPattern => write!(f, "selector prefixes apply only to JSON patterns"),
            InvalidSelectorPrefix => write!(
                f,
                "invalid selector prefix (expected names of letters, digits, '-' or '_' joined by '.')"
            ),
        }
    }
}

/// A rejected pattern: what is wrong, where, and the pattern itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The original pattern text.
    pub pattern: String,
    /// Where the fault is.
    pub span: Span,
    /// A second location, for kinds that refer back (e.g. the first regex).
    pub aux_span: Option<Span>,
}

impl Error {
    /// The one constructor: every error is built here.
    pub fn new(kind: ErrorKind, pattern: &str, span: Span) -> Error {
        Error {
            kind,
            pattern: pattern.to_string(),
            span,
            aux_span: None,
        }
    }

    pub fn with_aux(mut self, aux: Span) -> Error {
        self.aux_span = Some(aux);
        self
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// 1-based column (in characters) of the start of the fault.
    pub fn column(&self) -> usize {
        self.span.start.column
    }

    /// 1-based line of the start of the fault.
    pub fn line(&self) -> usize {
        self.span.start.line
    }

    /// The reason alone, without the pattern and caret (for `file:line:col: reason`).
    pub fn reason(&self) -> String {
        self.kind.to_string()
    }
}

/// Renders the pattern, a caret line under the fault (and `-` under the
/// auxiliary span when it is on the same line), then `error: <reason>`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.pattern.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            writeln!(f, "{line}")?;
            let lineno = i + 1;
            let mut marks: Vec<char> = Vec::new();
            let mut mark = |span: &Span, c: char| {
                if span.start.line != lineno {
                    return;
                }
                let from = span.start.column - 1;
                let width = if span.end.line == span.start.line {
                    (span.end.column.saturating_sub(span.start.column)).max(1)
                } else {
                    (line.chars().count() + 1).saturating_sub(from).max(1)
                };
                if marks.len() < from + width {
                    marks.resize(from + width, ' ');
                }
                for m in &mut marks[from..from + width] {
                    if *m == ' ' {
                        *m = c;
                    }
                }
            };
            mark(&self.span, '^');
            if let Some(aux) = &self.aux_span {
                mark(aux, '-');
            }
            if !marks.is_empty() {
                let s: String = marks.into_iter().collect();
                writeln!(f, "{}", s.trim_end())?;
            }
        }
        write!(f, "error: {}", self.kind)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters() {
        let text = "ab\né{x";
        let p = Position::at(text, 5); // after "é" (2 bytes)
        assert_eq!(
            p,
            Position {
                offset: 5,
                line: 2,
                column: 2
            }
        );
        // Inside a multi-byte character: moved back to its start.
        assert_eq!(Position::at(text, 4).offset, 3);
        assert_eq!(Position::at(text, 99).offset, text.len());
    }

    #[test]
    fn renders_caret_and_reason() {
        let pattern = "{ $.a = 1 && ($.b = 2 }";
        let err = Error::new(
            ErrorKind::UnclosedParen,
            pattern,
            Span::char_at(pattern, 13),
        );
        assert_eq!(
            err.to_string(),
            "{ $.a = 1 && ($.b = 2 }\n             ^\nerror: unclosed '('"
        );
        assert_eq!(err.column(), 14);
        assert_eq!(err.reason(), "unclosed '('");
    }

    #[test]
    fn renders_aux_span_and_multiline() {
        let pattern = "{ $.a = %x%\n|| $.b = %y% }";
        let err = Error::new(ErrorKind::EmptyRegex, pattern, Span::new(pattern, 20, 23))
            .with_aux(Span::new(pattern, 8, 11));
        assert_eq!(
            err.to_string(),
            "{ $.a = %x%\n        ---\n|| $.b = %y% }\n        ^^^\nerror: empty regex"
        );
        assert_eq!(err.line(), 2);
        assert_eq!(err.column(), 9);
    }
}
