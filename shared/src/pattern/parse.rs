//! Recursive-descent parser: pattern text -> [`Ast`].
//!
//! The 1024-character limit is checked before anything else, and JSON
//! parentheses are limited to [`MAX_DEPTH`] levels. All syntax characters are
//! ASCII, so the parser scans bytes; it only slices the text at ASCII
//! delimiters or at the end, which are always character boundaries.

use super::ast::*;
use super::error::{Error, ErrorKind, Span};

/// AWS's limit on a filter pattern, in characters.
pub const MAX_LEN: usize = 1024;
/// Deepest nesting of parentheses we accept.
pub const MAX_DEPTH: usize = 64;

pub fn parse(text: &str) -> Result<Ast, Error> {
    let chars = text.chars().count();
    if chars > MAX_LEN {
        let start = text
            .char_indices()
            .nth(MAX_LEN)
            .map_or(text.len(), |(i, _)| i);
        return Err(Error::new(
            ErrorKind::TooLong {
                chars,
                max: MAX_LEN,
            },
            text,
            Span::new(text, start, text.len()),
        ));
    }
    let mut p = Parser {
        text,
        b: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    match p.peek() {
        None => Ok(Ast::MatchAll {
            span: Span::new(text, 0, text.len()),
        }),
        Some(b'{') => p.json(),
        Some(b'[') => p.space(),
        Some(_) => p.terms(),
    }
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_selector_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Characters allowed in an unquoted value (anything else needs quotes).
fn is_bare_value_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'*' | b':' | b'/' | b'+')
}

/// AWS's number syntax: optional sign, digits, optional `.digits`, optional
/// exponent `e[+-]digits`.
pub fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

impl<'a> Parser<'a> {
    fn err(&self, kind: ErrorKind, start: usize, end: usize) -> Error {
        Error::new(kind, self.text, Span::new(self.text, start, end))
    }

    /// An error on the character at `at` (or the empty span at the end).
    fn err_at(&self, kind: ErrorKind, at: usize) -> Error {
        Error::new(kind, self.text, Span::char_at(self.text, at))
    }

    fn span(&self, start: usize) -> Span {
        Span::new(self.text, start, self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.b.get(self.pos + n).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        self.b[self.pos..].starts_with(s.as_bytes())
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn eat_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    // ---------------------------------------------------------------- terms

    fn terms(&mut self) -> Result<Ast, Error> {
        let start = self.pos;
        let mut terms = Vec::new();
        loop {
            self.skip_ws();
            let Some(c) = self.peek() else { break };
            let tstart = self.pos;
            let op = match c {
                b'?' => TermOp::Optional,
                b'-' => TermOp::Exclude,
                _ => TermOp::Include,
            };
            if op != TermOp::Include {
                self.pos += 1;
                if self.peek().is_none_or(is_ws) {
                    return Err(self.err_at(ErrorKind::DanglingTermOperator, tstart));
                }
            }
            let value = match self.peek() {
                Some(b'"') => TermValue::Quoted(self.quoted()?.0),
                Some(b'%') => TermValue::Regex(self.regex()?),
                Some(c) if is_word(c) => TermValue::Word(self.eat_while(is_word).to_string()),
                _ => return Err(self.err_at(ErrorKind::UnquotedTermCharacter, self.pos)),
            };
            if self.peek().is_some_and(|c| !is_ws(c)) {
                return Err(self.err_at(ErrorKind::UnquotedTermCharacter, self.pos));
            }
            terms.push(Term {
                op,
                value,
                span: self.span(tstart),
            });
        }
        Ok(Ast::Terms {
            terms,
            span: self.span(start),
        })
    }

    /// `"..."` at `pos`; returns the raw text between the quotes and its span.
    fn quoted(&mut self) -> Result<(String, Span), Error> {
        let open = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.err_at(ErrorKind::UnclosedQuote, open)),
                Some(b'\\') => self.pos = (self.pos + 2).min(self.b.len()),
                Some(b'"') => break,
                Some(_) => self.pos += 1,
            }
        }
        // A trailing backslash may have skipped past the end: re-check.
        if self.pos >= self.b.len() {
            return Err(self.err_at(ErrorKind::UnclosedQuote, open));
        }
        let raw = self.text[open + 1..self.pos].to_string();
        self.pos += 1;
        Ok((raw, self.span(open)))
    }

    /// `%...%` at `pos`.
    fn regex(&mut self) -> Result<RegexLit, Error> {
        let open = self.pos;
        self.pos += 1;
        while self.peek().is_some_and(|c| c != b'%') {
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Err(self.err_at(ErrorKind::UnclosedRegex, open));
        }
        let source = self.text[open + 1..self.pos].to_string();
        self.pos += 1;
        Ok(RegexLit {
            source,
            span: self.span(open),
        })
    }

    // ----------------------------------------------------------------- JSON

    fn json(&mut self) -> Result<Ast, Error> {
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        match self.peek() {
            None => return Err(self.err_at(ErrorKind::UnclosedBrace, open)),
            Some(b'}') => return Err(self.err(ErrorKind::Empty, open, self.pos + 1)),
            _ => {}
        }
        let expr = self.or()?;
        self.skip_ws();
        match self.peek() {
            Some(b'}') => self.pos += 1,
            None => return Err(self.err_at(ErrorKind::UnclosedBrace, open)),
            Some(_) => return Err(self.after_operand()),
        }
        let span = self.span(open);
        self.skip_ws();
        if self.pos < self.b.len() {
            return Err(self.err(ErrorKind::TrailingInput, self.pos, self.b.len()));
        }
        Ok(Ast::Json { expr, span })
    }

    /// The error for an unexpected character after a complete operand.
    fn after_operand(&self) -> Error {
        match self.peek() {
            Some(b')') => self.err_at(ErrorKind::UnmatchedParen, self.pos),
            Some(b'&' | b'|') => self.err_at(ErrorKind::InvalidLogicalOperator, self.pos),
            _ => self.err_at(ErrorKind::ExpectedLogicalOperator, self.pos),
        }
    }

    fn or(&mut self) -> Result<JsonExpr, Error> {
        let start = self.pos;
        let mut items = vec![self.and()?];
        loop {
            self.skip_ws();
            if !self.starts_with("||") {
                break;
            }
            self.pos += 2;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            JsonExpr::Or {
                items,
                span: self.span(start),
            }
        })
    }

    fn and(&mut self) -> Result<JsonExpr, Error> {
        self.skip_ws();
        let start = self.pos;
        let mut items = vec![self.primary()?];
        loop {
            self.skip_ws();
            if !self.starts_with("&&") {
                break;
            }
            self.pos += 2;
            items.push(self.primary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            JsonExpr::And {
                items,
                span: self.span(start),
            }
        })
    }

    fn primary(&mut self) -> Result<JsonExpr, Error> {
        self.skip_ws();
        match self.peek() {
            Some(b'(') => {
                let open = self.pos;
                if self.depth >= MAX_DEPTH {
                    return Err(self.err_at(ErrorKind::NestingTooDeep { max: MAX_DEPTH }, open));
                }
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b')') {
                    return Err(self.err(ErrorKind::Empty, open, self.pos + 1));
                }
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                self.skip_ws();
                match self.peek() {
                    Some(b')') => {
                        self.pos += 1;
                        Ok(JsonExpr::Paren {
                            inner: Box::new(inner),
                            span: self.span(open),
                        })
                    }
                    None | Some(b'}') => Err(self.err_at(ErrorKind::UnclosedParen, open)),
                    Some(_) => Err(self.after_operand()),
                }
            }
            Some(b'$') => self.condition().map(JsonExpr::Cond),
            Some(b')') if self.depth == 0 => Err(self.err_at(ErrorKind::UnmatchedParen, self.pos)),
            _ => Err(self.err_at(ErrorKind::ExpectedCondition, self.pos)),
        }
    }

    fn selector(&mut self) -> Result<Selector, Error> {
        let start = self.pos;
        self.pos += 1; // '$'
        let bad = |p: &Self| {
            p.err(
                ErrorKind::InvalidSelector,
                start,
                (p.pos + 1).min(p.b.len()),
            )
        };
        if self.peek() != Some(b'.') {
            return Err(bad(self));
        }
        let mut segments = Vec::new();
        let mut wildcard_at: Option<usize> = None;
        let mut first = true;
        loop {
            let seg_start = self.pos;
            let seg = match self.peek() {
                Some(b'.') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'*') => {
                            self.pos += 1;
                            Segment::AnyKey
                        }
                        Some(b'[') if self.peek_at(1) == Some(b'\'') => Segment::QuotedKey {
                            name: self.quoted_key(start)?,
                            dotted: true,
                        },
                        Some(c) if is_selector_ident(c) => {
                            Segment::Key(self.eat_while(is_selector_ident).to_string())
                        }
                        _ => return Err(bad(self)),
                    }
                }
                Some(b'[') if !first => {
                    if self.peek_at(1) == Some(b'\'') {
                        Segment::QuotedKey {
                            name: self.quoted_key(start)?,
                            dotted: false,
                        }
                    } else {
                        self.pos += 1;
                        let seg = if self.peek() == Some(b'*') {
                            self.pos += 1;
                            Segment::AnyIndex
                        } else {
                            let digits = self.eat_while(|c| c.is_ascii_digit());
                            match digits.parse::<usize>() {
                                Ok(n) => Segment::Index(n),
                                Err(_) => return Err(bad(self)),
                            }
                        };
                        if self.peek() != Some(b']') {
                            return Err(bad(self));
                        }
                        self.pos += 1;
                        seg
                    }
                }
                _ => break,
            };
            if seg.is_wildcard() {
                if wildcard_at.is_some() {
                    return Err(self.err(
                        ErrorKind::MultipleWildcardsInSelector,
                        seg_start,
                        self.pos,
                    ));
                }
                wildcard_at = Some(seg_start);
            }
            segments.push(seg);
            first = false;
        }
        // Something glued to the selector that cannot follow it.
        if let Some(c) = self.peek()
            && !is_ws(c)
            && !matches!(c, b'=' | b'!' | b'<' | b'>' | b')' | b'}' | b'&' | b'|')
        {
            return Err(bad(self));
        }
        Ok(Selector {
            segments,
            span: self.span(start),
        })
    }

    /// `['name']` at `pos` (which is the `[`).
    fn quoted_key(&mut self, sel_start: usize) -> Result<String, Error> {
        self.pos += 2;
        let name_start = self.pos;
        while self.peek().is_some_and(|c| c != b'\'') {
            self.pos += 1;
        }
        let name = &self.text[name_start..self.pos];
        if self.peek() != Some(b'\'') || self.peek_at(1) != Some(b']') || name.is_empty() {
            return Err(self.err(
                ErrorKind::InvalidSelector,
                sel_start,
                (self.pos + 1).min(self.b.len()),
            ));
        }
        self.pos += 2;
        Ok(name.to_string())
    }

    fn condition(&mut self) -> Result<Condition, Error> {
        let start = self.pos;
        let selector = self.selector()?;
        self.skip_ws();
        let test = if let Some(op) = self.cmp_op() {
            Test::Compare {
                op,
                value: self.value(op)?,
            }
        } else {
            let kw_start = self.pos;
            let word = self.eat_while(|c| c.is_ascii_alphabetic());
            match word {
                "IS" => {
                    self.skip_ws();
                    let w_start = self.pos;
                    match self.eat_while(|c| c.is_ascii_alphabetic()) {
                        "NULL" => Test::IsNull,
                        "TRUE" => Test::IsTrue,
                        "FALSE" => Test::IsFalse,
                        "NOT" => {
                            return Err(self.err(ErrorKind::IsNotUnsupported, kw_start, self.pos));
                        }
                        "" => return Err(self.err_at(ErrorKind::ExpectedIsOperand, w_start)),
                        _ => return Err(self.err(ErrorKind::ExpectedIsOperand, w_start, self.pos)),
                    }
                }
                "NOT" => {
                    self.skip_ws();
                    let w_start = self.pos;
                    match self.eat_while(|c| c.is_ascii_alphabetic()) {
                        "EXISTS" => Test::NotExists,
                        "" => return Err(self.err_at(ErrorKind::ExpectedExists, w_start)),
                        _ => return Err(self.err(ErrorKind::ExpectedExists, w_start, self.pos)),
                    }
                }
                "EXISTS" => return Err(self.err(ErrorKind::ExistsUnsupported, kw_start, self.pos)),
                "" => return Err(self.err_at(ErrorKind::ExpectedOperator, kw_start)),
                _ => return Err(self.err(ErrorKind::ExpectedOperator, kw_start, self.pos)),
            }
        };
        // Keywords must not run into the next token (`IS NULLx`).
        if matches!(
            test,
            Test::IsNull | Test::IsTrue | Test::IsFalse | Test::NotExists
        ) && self
            .peek()
            .is_some_and(|c| !is_ws(c) && !matches!(c, b')' | b'}' | b'&' | b'|'))
        {
            return Err(self.after_operand());
        }
        Ok(Condition {
            selector,
            test,
            span: self.span(start),
        })
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let (op, len) = match (self.peek(), self.peek_at(1)) {
            (Some(b'!'), Some(b'=')) => (CmpOp::Ne, 2),
            (Some(b'<'), Some(b'=')) => (CmpOp::Le, 2),
            (Some(b'>'), Some(b'=')) => (CmpOp::Ge, 2),
            (Some(b'<'), _) => (CmpOp::Lt, 1),
            (Some(b'>'), _) => (CmpOp::Gt, 1),
            (Some(b'='), _) => (CmpOp::Eq, 1),
            _ => return None,
        };
        self.pos += len;
        Some(op)
    }

    /// The value after a comparison operator (JSON and space-delimited).
    fn value(&mut self, op: CmpOp) -> Result<Value, Error> {
        self.skip_ws();
        let start = self.pos;
        let value = match self.peek() {
            Some(b'"') => {
                let (raw, span) = self.quoted()?;
                Value::Quoted { raw, span }
            }
            Some(b'%') => Value::Regex(self.regex()?),
            _ => {
                let text = self.eat_while(|c| {
                    !is_ws(c) && !matches!(c, b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',' | b'"')
                });
                // `&&` / `||` end a value even when glued to it.
                let text = match text.find("&&").into_iter().chain(text.find("||")).min() {
                    Some(i) => {
                        self.pos = start + i;
                        &text[..i]
                    }
                    None => text,
                };
                if text.is_empty() {
                    return Err(self.err_at(ErrorKind::ExpectedValue, start));
                }
                if let Some(i) = text.bytes().position(|c| !is_bare_value_char(c)) {
                    return Err(self.err_at(ErrorKind::UnquotedValueCharacter, start + i));
                }
                let span = self.span(start);
                if is_number(text) {
                    Value::Number {
                        text: text.to_string(),
                        span,
                    }
                } else {
                    Value::Bare {
                        text: text.to_string(),
                        span,
                    }
                }
            }
        };
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) && !matches!(value, Value::Number { .. }) {
            return Err(Error::new(
                ErrorKind::ExpectedNumber,
                self.text,
                value.span(),
            ));
        }
        Ok(value)
    }

    // ------------------------------------------------------- space-delimited

    fn space(&mut self) -> Result<Ast, Error> {
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            return Err(self.err(ErrorKind::Empty, open, self.pos + 1));
        }
        let mut fields = Vec::new();
        loop {
            self.skip_ws();
            if self.peek().is_none() {
                return Err(self.err_at(ErrorKind::UnclosedBracket, open));
            }
            fields.push(self.field()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(self.err_at(ErrorKind::UnclosedBracket, open)),
                Some(_) => return Err(self.err_at(ErrorKind::ExpectedComma, self.pos)),
            }
        }
        let span = self.span(open);
        self.skip_ws();
        if self.pos < self.b.len() {
            return Err(self.err(ErrorKind::TrailingInput, self.pos, self.b.len()));
        }
        Ok(Ast::Space { fields, span })
    }

    fn field(&mut self) -> Result<Field, Error> {
        let start = self.pos;
        match self.peek() {
            Some(b',' | b']') => Ok(Field::Blank {
                span: self.span(start),
            }),
            _ if self.starts_with("...") => {
                self.pos += 3;
                Ok(Field::Ellipsis {
                    span: self.span(start),
                })
            }
            Some(c) if is_word(c) => {
                let name = self.eat_while(is_word).to_string();
                let name_span = self.span(start);
                if let Some(c) = self.peek()
                    && !is_ws(c)
                    && !matches!(c, b',' | b']' | b'=' | b'!' | b'<' | b'>')
                {
                    return Err(self.err_at(ErrorKind::InvalidFieldName, self.pos));
                }
                self.skip_ws();
                if !matches!(self.peek(), Some(b'=' | b'!' | b'<' | b'>')) {
                    return Ok(Field::Named {
                        name,
                        cond: None,
                        span: name_span,
                    });
                }
                let cond = self.field_or(name.clone(), name_span)?;
                Ok(Field::Named {
                    name,
                    cond: Some(cond),
                    span: self.span(start),
                })
            }
            _ => Err(self.err_at(ErrorKind::ExpectedField, self.pos)),
        }
    }

    fn field_or(&mut self, name: String, name_span: Span) -> Result<FieldExpr, Error> {
        let start = name_span.start.offset;
        let mut items = vec![self.field_and(Some((name, name_span)))?];
        loop {
            self.skip_ws();
            if !self.starts_with("||") {
                break;
            }
            self.pos += 2;
            items.push(self.field_and(None)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            FieldExpr::Or {
                items,
                span: self.span(start),
            }
        })
    }

    fn field_and(&mut self, first: Option<(String, Span)>) -> Result<FieldExpr, Error> {
        self.skip_ws();
        let start = first.as_ref().map_or(self.pos, |(_, s)| s.start.offset);
        let mut items = vec![self.field_compare(first)?];
        loop {
            self.skip_ws();
            if !self.starts_with("&&") {
                break;
            }
            self.pos += 2;
            items.push(self.field_compare(None)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            FieldExpr::And {
                items,
                span: self.span(start),
            }
        })
    }

    fn field_compare(&mut self, name: Option<(String, Span)>) -> Result<FieldExpr, Error> {
        let (name, name_span) = match name {
            Some(n) => n,
            None => {
                self.skip_ws();
                let start = self.pos;
                let name = self.eat_while(is_word);
                if name.is_empty() {
                    return Err(self.err_at(ErrorKind::ExpectedField, start));
                }
                (name.to_string(), self.span(start))
            }
        };
        self.skip_ws();
        let Some(op) = self.cmp_op() else {
            return Err(self.err_at(ErrorKind::ExpectedOperator, self.pos));
        };
        let value = self.value(op)?;
        Ok(FieldExpr::Compare {
            name,
            name_span,
            op,
            value,
            span: Span::new(self.text, name_span.start.offset, self.pos),
        })
    }
}
