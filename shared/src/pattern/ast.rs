//! The pattern as written: every node keeps its span, and `Display` prints it
//! back in canonical form (round-trip: `parse(print(ast)) == ast`, spans
//! aside). Values keep their source text (quoted strings keep their escapes),
//! so printing never changes meaning.

use std::fmt;

use super::error::Span;

/// A whole filter pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    /// Empty or whitespace-only: matches every event.
    MatchAll { span: Span },
    /// Unstructured terms, e.g. `ERROR -ARGUMENTS`, `?ERROR ?WARN`, `%regex%`.
    Terms { terms: Vec<Term>, span: Span },
    /// `{ ... }`.
    Json { expr: JsonExpr, span: Span },
    /// `[ ... ]`.
    Space { fields: Vec<Field>, span: Span },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermOp {
    /// `term`: must appear.
    Include,
    /// `?term`: any of the optional terms must appear.
    Optional,
    /// `-term`: must not appear.
    Exclude,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub op: TermOp,
    pub value: TermValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TermValue {
    /// Letters, digits and `_`.
    Word(String),
    /// `"..."`, the text between the quotes as written (escapes kept).
    Quoted(String),
    Regex(RegexLit),
}

/// `%...%`: the source between the percent signs, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct RegexLit {
    pub source: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum JsonExpr {
    /// `a || b || ...` (two or more).
    Or {
        items: Vec<JsonExpr>,
        span: Span,
    },
    /// `a && b && ...` (two or more).
    And {
        items: Vec<JsonExpr>,
        span: Span,
    },
    /// `( inner )`, kept so that printing reproduces the grouping.
    Paren {
        inner: Box<JsonExpr>,
        span: Span,
    },
    Cond(Condition),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub selector: Selector,
    pub test: Test,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Compare { op: CmpOp, value: Value },
    IsNull,
    IsTrue,
    IsFalse,
    NotExists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An unquoted number in AWS's number syntax: `[+-]digits[.digits][e[+-]digits]`.
    Number {
        text: String,
        span: Span,
    },
    /// An unquoted string (may contain `*` wildcards).
    Bare {
        text: String,
        span: Span,
    },
    /// A double-quoted string, the text between the quotes as written.
    Quoted {
        raw: String,
        span: Span,
    },
    Regex(RegexLit),
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Number { span, .. } | Value::Bare { span, .. } | Value::Quoted { span, .. } => {
                *span
            }
            Value::Regex(r) => r.span,
        }
    }
}

/// `$.a.b[0]`, `$.a[*]`, `$.*`, `$.['dotted.name']`.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub segments: Vec<Segment>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    /// `.name`
    Key(String),
    /// `['name']` (written `.['name']` when `dotted`).
    QuotedKey { name: String, dotted: bool },
    /// `[N]`
    Index(usize),
    /// `.*`
    AnyKey,
    /// `[*]`
    AnyIndex,
}

impl Segment {
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Segment::AnyKey | Segment::AnyIndex)
    }
}

/// One comma-separated field of a space-delimited pattern.
// Built once per pattern; boxing the condition would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// `...`: any number of event fields.
    Ellipsis { span: Span },
    /// Nothing between two commas (or before `]`): one unnamed field.
    Blank { span: Span },
    /// `name` or `name op value [&&/|| name op value ...]`.
    Named {
        name: String,
        cond: Option<FieldExpr>,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum FieldExpr {
    Or {
        items: Vec<FieldExpr>,
        span: Span,
    },
    And {
        items: Vec<FieldExpr>,
        span: Span,
    },
    Compare {
        name: String,
        name_span: Span,
        op: CmpOp,
        value: Value,
        span: Span,
    },
}

// ---------------------------------------------------------------------------
// Span erasure, for comparing trees that were printed and re-parsed.

impl Ast {
    /// A copy with every span reset, so that two trees can be compared for
    /// structure alone.
    pub fn without_spans(&self) -> Ast {
        let z = Span::default();
        match self {
            Ast::MatchAll { .. } => Ast::MatchAll { span: z },
            Ast::Terms { terms, .. } => Ast::Terms {
                terms: terms
                    .iter()
                    .map(|t| Term {
                        op: t.op,
                        value: match &t.value {
                            TermValue::Regex(r) => TermValue::Regex(r.without_spans()),
                            v => v.clone(),
                        },
                        span: z,
                    })
                    .collect(),
                span: z,
            },
            Ast::Json { expr, .. } => Ast::Json {
                expr: expr.without_spans(),
                span: z,
            },
            Ast::Space { fields, .. } => Ast::Space {
                fields: fields.iter().map(Field::without_spans).collect(),
                span: z,
            },
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Ast::MatchAll { span }
            | Ast::Terms { span, .. }
            | Ast::Json { span, .. }
            | Ast::Space { span, .. } => *span,
        }
    }
}

impl RegexLit {
    fn without_spans(&self) -> RegexLit {
        RegexLit {
            source: self.source.clone(),
            span: Span::default(),
        }
    }
}

impl Value {
    fn without_spans(&self) -> Value {
        let z = Span::default();
        match self {
            Value::Number { text, .. } => Value::Number {
                text: text.clone(),
                span: z,
            },
            Value::Bare { text, .. } => Value::Bare {
                text: text.clone(),
                span: z,
            },
            Value::Quoted { raw, .. } => Value::Quoted {
                raw: raw.clone(),
                span: z,
            },
            Value::Regex(r) => Value::Regex(r.without_spans()),
        }
    }
}

impl JsonExpr {
    pub fn span(&self) -> Span {
        match self {
            JsonExpr::Or { span, .. }
            | JsonExpr::And { span, .. }
            | JsonExpr::Paren { span, .. } => *span,
            JsonExpr::Cond(c) => c.span,
        }
    }

    fn without_spans(&self) -> JsonExpr {
        let z = Span::default();
        match self {
            JsonExpr::Or { items, .. } => JsonExpr::Or {
                items: items.iter().map(JsonExpr::without_spans).collect(),
                span: z,
            },
            JsonExpr::And { items, .. } => JsonExpr::And {
                items: items.iter().map(JsonExpr::without_spans).collect(),
                span: z,
            },
            JsonExpr::Paren { inner, .. } => JsonExpr::Paren {
                inner: Box::new(inner.without_spans()),
                span: z,
            },
            JsonExpr::Cond(c) => JsonExpr::Cond(Condition {
                selector: Selector {
                    segments: c.selector.segments.clone(),
                    span: z,
                },
                test: match &c.test {
                    Test::Compare { op, value } => Test::Compare {
                        op: *op,
                        value: value.without_spans(),
                    },
                    t => t.clone(),
                },
                span: z,
            }),
        }
    }

    /// Calls `f` on every condition, left to right.
    pub fn for_each_cond<'a>(&'a self, f: &mut dyn FnMut(&'a Condition)) {
        match self {
            JsonExpr::Or { items, .. } | JsonExpr::And { items, .. } => {
                for i in items {
                    i.for_each_cond(f);
                }
            }
            JsonExpr::Paren { inner, .. } => inner.for_each_cond(f),
            JsonExpr::Cond(c) => f(c),
        }
    }

    /// Mutable variant of [`JsonExpr::for_each_cond`].
    pub fn for_each_cond_mut(&mut self, f: &mut dyn FnMut(&mut Condition)) {
        match self {
            JsonExpr::Or { items, .. } | JsonExpr::And { items, .. } => {
                for i in items {
                    i.for_each_cond_mut(f);
                }
            }
            JsonExpr::Paren { inner, .. } => inner.for_each_cond_mut(f),
            JsonExpr::Cond(c) => f(c),
        }
    }
}

impl Field {
    fn without_spans(&self) -> Field {
        let z = Span::default();
        match self {
            Field::Ellipsis { .. } => Field::Ellipsis { span: z },
            Field::Blank { .. } => Field::Blank { span: z },
            Field::Named { name, cond, .. } => Field::Named {
                name: name.clone(),
                cond: cond.as_ref().map(FieldExpr::without_spans),
                span: z,
            },
        }
    }
}

impl FieldExpr {
    fn without_spans(&self) -> FieldExpr {
        let z = Span::default();
        match self {
            FieldExpr::Or { items, .. } => FieldExpr::Or {
                items: items.iter().map(FieldExpr::without_spans).collect(),
                span: z,
            },
            FieldExpr::And { items, .. } => FieldExpr::And {
                items: items.iter().map(FieldExpr::without_spans).collect(),
                span: z,
            },
            FieldExpr::Compare {
                name, op, value, ..
            } => FieldExpr::Compare {
                name: name.clone(),
                name_span: z,
                op: *op,
                value: value.without_spans(),
                span: z,
            },
        }
    }

    /// Calls `f` on every comparison, left to right.
    pub fn for_each_compare<'a>(&'a self, f: &mut dyn FnMut(&'a FieldExpr)) {
        match self {
            FieldExpr::Or { items, .. } | FieldExpr::And { items, .. } => {
                for i in items {
                    i.for_each_compare(f);
                }
            }
            c @ FieldExpr::Compare { .. } => f(c),
        }
    }
}

// ---------------------------------------------------------------------------
// Printing.

/// How much whitespace the printer emits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `{ $.a = 1 && $.b = "x" }`
    Pretty,
    /// `{$.a=1&&$.b="x"}`
    Compact,
}

pub(crate) struct Printer<'a> {
    pub ast: &'a Ast,
    pub style: Style,
}

impl fmt::Display for Ast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Printer {
            ast: self,
            style: Style::Pretty,
        }
        .fmt(f)
    }
}

impl fmt::Display for Printer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compact = self.style == Style::Compact;
        match self.ast {
            Ast::MatchAll { .. } => Ok(()),
            Ast::Terms { terms, .. } => {
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write_term(f, t)?;
                }
                Ok(())
            }
            Ast::Json { expr, .. } => {
                if compact {
                    f.write_str("{")?;
                    write_json(f, expr, true)?;
                    f.write_str("}")
                } else {
                    f.write_str("{ ")?;
                    write_json(f, expr, false)?;
                    f.write_str(" }")
                }
            }
            Ast::Space { fields, .. } => {
                f.write_str("[")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if compact { "," } else { ", " })?;
                    }
                    match field {
                        Field::Ellipsis { .. } => f.write_str("...")?,
                        Field::Blank { .. } => {}
                        Field::Named { name, cond, .. } => match cond {
                            None => f.write_str(name)?,
                            Some(c) => write_field_expr(f, c, compact)?,
                        },
                    }
                }
                f.write_str("]")
            }
        }
    }
}

fn write_term(f: &mut fmt::Formatter<'_>, t: &Term) -> fmt::Result {
    match t.op {
        TermOp::Include => {}
        TermOp::Optional => f.write_str("?")?,
        TermOp::Exclude => f.write_str("-")?,
    }
    match &t.value {
        TermValue::Word(w) => f.write_str(w),
        TermValue::Quoted(raw) => write!(f, "\"{raw}\""),
        TermValue::Regex(r) => write!(f, "%{}%", r.source),
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Number { text, .. } | Value::Bare { text, .. } => f.write_str(text),
        Value::Quoted { raw, .. } => write!(f, "\"{raw}\""),
        Value::Regex(r) => write!(f, "%{}%", r.source),
    }
}

fn write_json(f: &mut fmt::Formatter<'_>, e: &JsonExpr, compact: bool) -> fmt::Result {
    match e {
        JsonExpr::Or { items, .. } | JsonExpr::And { items, .. } => {
            let op = match (e, compact) {
                (JsonExpr::Or { .. }, true) => "||",
                (JsonExpr::Or { .. }, false) => " || ",
                (_, true) => "&&",
                (_, false) => " && ",
            };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                write_json(f, item, compact)?;
            }
            Ok(())
        }
        JsonExpr::Paren { inner, .. } => {
            f.write_str("(")?;
            write_json(f, inner, compact)?;
            f.write_str(")")
        }
        JsonExpr::Cond(c) => {
            write!(f, "{}", c.selector)?;
            match &c.test {
                Test::Compare { op, value } => {
                    if compact {
                        f.write_str(op.as_str())?;
                    } else {
                        write!(f, " {} ", op.as_str())?;
                    }
                    write_value(f, value)
                }
                Test::IsNull => f.write_str(" IS NULL"),
                Test::IsTrue => f.write_str(" IS TRUE"),
                Test::IsFalse => f.write_str(" IS FALSE"),
                Test::NotExists => f.write_str(" NOT EXISTS"),
            }
        }
    }
}

fn write_field_expr(f: &mut fmt::Formatter<'_>, e: &FieldExpr, compact: bool) -> fmt::Result {
    match e {
        FieldExpr::Or { items, .. } | FieldExpr::And { items, .. } => {
            let op = match (e, compact) {
                (FieldExpr::Or { .. }, true) => "||",
                (FieldExpr::Or { .. }, false) => " || ",
                (_, true) => "&&",
                (_, false) => " && ",
            };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                write_field_expr(f, item, compact)?;
            }
            Ok(())
        }
        FieldExpr::Compare {
            name, op, value, ..
        } => {
            f.write_str(name)?;
            if compact {
                f.write_str(op.as_str())?;
            } else {
                write!(f, " {} ", op.as_str())?;
            }
            write_value(f, value)
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.segments {
            match s {
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::QuotedKey { name, dotted } => {
                    if *dotted {
                        f.write_str(".")?;
                    }
                    write!(f, "['{name}']")?;
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::AnyKey => f.write_str(".*")?,
                Segment::AnyIndex => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}
