//! Evaluation without a DOM, for scanning archives (`hub replay`).
//!
//! The JSON selectors of a set of patterns (a whole pack) are compiled into one trie of
//! paths, a [`Selector`]. A [`Scanner`] reads a record's text once, from left to right:
//! where a key is on a path of the trie it keeps the value (a span of the text, not a copy)
//! and goes on into it; everything else it checks and skips. Patterns, bound to the trie
//! ([`Bound`]), are then evaluated over what was kept, with the same value tests as
//! [`super::Event`] (`eval.rs`): one source of truth for what a comparison means.
//!
//! # Faithful or nothing
//!
//! The verdict must be the one `Pattern::matches` gives on the record parsed by
//! serde_json, so the scanner declines ([`Unsupported`]) anything whose meaning it would
//! have to guess, and the caller takes the plain path for that file: invalid JSON (the plain
//! path names the error), a key given twice where the trie looks (serde_json keeps the
//! last), an escaped key where the trie looks, a `\u` escape of a surrogate, numbers
//! serde_json might find out of range, nesting deeper than [`MAX_DEPTH`], a root that is
//! not an object, and a root `Records` key (a CloudTrail file inside a record).
//!
//! What is kept is per trie node a list of values: a condition holds when any value of its
//! node satisfies it, which is the semantics of wildcard selectors (`[*]`, `.*`), and
//! `NOT EXISTS` holds when the list is empty. The scanner allocates nothing per record
//! once its buffers have grown.

use super::Pattern;
use super::compile::{JCond, JExpr, JTest, Program, Step, StrMatch, ValueTest};
use super::eval::{num_test, value_test};

/// Deeper records are declined (serde_json refuses more than 128 levels).
pub const MAX_DEPTH: usize = 100;
/// A value may stand at this many trie nodes at once (wildcards overlapping exact keys).
const MAX_TARGETS: usize = 8;
const NONE: u32 = u32::MAX;

/// The scanner declined the input; evaluate it the plain way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported;

#[derive(Clone, Debug, Default)]
struct Node {
    /// Steps from the record's root.
    depth: u32,
    keys: Vec<(Box<[u8]>, u32)>,
    /// `keys`, hashed (built by `SelectorBuilder::build`).
    key_table: Table,
    /// The string literals the bound patterns compare this node's values with, by id.
    literals: Vec<Box<[u8]>>,
    literal_table: Table,
    index: Vec<(usize, u32)>,
    /// `.*`: every value of an object and every element of an array.
    any_key: Option<u32>,
    /// `[*]`: every element of an array.
    any_index: Option<u32>,
}

impl Node {
    fn has_children(&self) -> bool {
        !self.keys.is_empty()
            || !self.index.is_empty()
            || self.any_key.is_some()
            || self.any_index.is_some()
    }
}

/// The paths of a set of patterns, as one trie. Node 0 is the record's root.
#[derive(Clone, Debug)]
pub struct Selector {
    nodes: Vec<Node>,
    /// `detail-type` and `detail` of an EventBridge envelope, when the selector looks
    /// inside envelopes.
    envelope: Option<(u32, u32)>,
}

/// Builds a [`Selector`] and binds patterns to it.
#[derive(Debug)]
pub struct SelectorBuilder {
    nodes: Vec<Node>,
    envelope: Option<(u32, u32)>,
}

/// A pattern bound to a selector's trie.
#[derive(Clone, Debug)]
pub struct Bound(BExpr);

#[derive(Clone, Debug)]
enum BExpr {
    True,
    And(Vec<BExpr>),
    Or(Vec<BExpr>),
    /// The node of the condition's path in the record itself and inside an envelope's
    /// `detail`.
    Cond {
        at: [u32; 2],
        test: BTest,
    },
}

impl BExpr {
    /// A rough static cost: literal ids and presence tests 1, numbers 2, globs 3, regexes 20.
    fn cost(&self) -> u32 {
        match self {
            BExpr::True => 0,
            BExpr::And(items) | BExpr::Or(items) => items.iter().map(BExpr::cost).sum(),
            BExpr::Cond { test, .. } => match test {
                BTest::Lit { .. } | BTest::OneOf { .. } => 1,
                BTest::Other(JTest::Value(ValueTest::Num { .. })) => 2,
                BTest::Other(JTest::Value(ValueTest::Regex { .. })) => 20,
                BTest::Other(JTest::Value(_)) => 3,
                BTest::Other(_) => 1,
            },
        }
    }
}

/// A condition's test. Equality with string literals is decided on literal ids, found
/// once per kept string while scanning; the rest is `eval.rs`'s own tests.
#[derive(Clone, Debug)]
enum BTest {
    /// `= "literal"` (`!=` when `negate`), on strings; numbers compare by their text.
    Lit {
        negate: bool,
        ids: [u32; 2],
        test: ValueTest,
    },
    /// One of a set of literals (the compiled form of `= a || = b || ...`).
    OneOf {
        ids: [Box<[u64]>; 2],
        test: ValueTest,
    },
    Other(JTest),
}

/// A top-level string field of the record (such as `eventTime`), bound to the trie.
#[derive(Clone, Copy, Debug)]
pub struct Field([u32; 2]);

impl SelectorBuilder {
    /// With `envelope`, every path is also looked up inside an EventBridge envelope's
    /// `detail`, and a record that is an envelope (a string `detail-type` and an object
    /// `detail`, as `rules::unwrap_envelope` says) is evaluated on its `detail`.
    pub fn new(envelope: bool) -> SelectorBuilder {
        let mut b = SelectorBuilder {
            nodes: vec![Node::default()],
            envelope: None,
        };
        if envelope {
            let kind = b.insert(0, &[Step::Key("detail-type".into())]);
            let detail = b.insert(0, &[Step::Key("detail".into())]);
            b.envelope = Some((kind, detail));
        }
        b
    }

    fn insert(&mut self, from: u32, path: &[Step]) -> u32 {
        let mut at = from;
        for step in path {
            let node = &self.nodes[at as usize];
            let found = match step {
                Step::Key(k) => node
                    .keys
                    .iter()
                    .find(|(key, _)| **key == *k.as_bytes())
                    .map(|e| e.1),
                Step::Index(i) => node.index.iter().find(|e| e.0 == *i).map(|e| e.1),
                Step::AnyKey => node.any_key,
                Step::AnyIndex => node.any_index,
            };
            at = match found {
                Some(n) => n,
                None => {
                    let n = self.nodes.len() as u32;
                    let depth = self.nodes[at as usize].depth + 1;
                    self.nodes.push(Node {
                        depth,
                        ..Node::default()
                    });
                    let node = &mut self.nodes[at as usize];
                    match step {
                        Step::Key(k) => node.keys.push((k.as_bytes().into(), n)),
                        Step::Index(i) => node.index.push((*i, n)),
                        Step::AnyKey => node.any_key = Some(n),
                        Step::AnyIndex => node.any_index = Some(n),
                    }
                    n
                }
            };
        }
        at
    }

    fn place(&mut self, path: &[Step]) -> [u32; 2] {
        let root = self.insert(0, path);
        let detail = match self.envelope {
            Some((_, detail)) => self.insert(detail, path),
            None => root,
        };
        [root, detail]
    }

    /// Binds a pattern: `None` when it is not a JSON pattern (terms and space-delimited
    /// patterns need the record's text; the caller takes the plain path).
    pub fn pattern(&mut self, p: &Pattern) -> Option<Bound> {
        match &p.program {
            Program::MatchAll => Some(Bound(BExpr::True)),
            Program::Json(e) => Some(Bound(self.expr(e))),
            Program::Terms(_) | Program::Space(_) => None,
        }
    }

    fn expr(&mut self, e: &JExpr) -> BExpr {
        match e {
            JExpr::And(items) => {
                // Conditions are pure, so a conjunction may test its cheapest parts first.
                let mut items: Vec<BExpr> = items.iter().map(|i| self.expr(i)).collect();
                items.sort_by_key(BExpr::cost);
                BExpr::And(items)
            }
            JExpr::Or(items) => BExpr::Or(items.iter().map(|i| self.expr(i)).collect()),
            JExpr::Cond(c) => {
                let JCond { path, test } = c.as_ref();
                let at = self.place(path);
                let test = match test {
                    JTest::Value(
                        t @ ValueTest::Str {
                            negate,
                            m: StrMatch::Exact(e),
                        },
                    ) => BTest::Lit {
                        negate: *negate,
                        ids: at.map(|n| self.literal(n, e)),
                        test: t.clone(),
                    },
                    JTest::Value(t @ ValueTest::OneOf(set)) => BTest::OneOf {
                        ids: at.map(|n| {
                            let ids: Vec<u32> = set.iter().map(|e| self.literal(n, e)).collect();
                            let words = ids.iter().max().map_or(0, |&m| m as usize / 64 + 1);
                            let mut bits = vec![0u64; words];
                            for id in ids {
                                bits[id as usize / 64] |= 1 << (id % 64);
                            }
                            bits.into_boxed_slice()
                        }),
                        test: t.clone(),
                    },
                    other => BTest::Other(other.clone()),
                };
                BExpr::Cond { at, test }
            }
        }
    }

    /// Binds a top-level field, read as a string.
    pub fn field(&mut self, key: &str) -> Field {
        Field(self.place(&[Step::Key(key.into())]))
    }

    /// The id of a literal among those compared with node `n`'s values.
    fn literal(&mut self, n: u32, text: &str) -> u32 {
        let lits = &mut self.nodes[n as usize].literals;
        match lits.iter().position(|l| **l == *text.as_bytes()) {
            Some(i) => i as u32,
            None => {
                lits.push(text.as_bytes().into());
                (lits.len() - 1) as u32
            }
        }
    }

    pub fn build(mut self) -> Selector {
        for node in &mut self.nodes {
            node.key_table = Table::new(node.keys.iter().map(|(k, n)| (&k[..], *n)));
            node.literal_table = Table::new(
                node.literals
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (&l[..], i as u32)),
            );
        }
        Selector {
            nodes: self.nodes,
            envelope: self.envelope,
        }
    }
}

/// A small open-addressing hash table from byte strings to ids, for the keys and the
/// literals of one trie node. The hash reads the length and the first and last eight
/// bytes, and for strings of up to 16 bytes (most keys and literals) those three decide
/// equality too: one multiply and no byte loop or `memcmp` per lookup.
#[derive(Clone, Debug, Default)]
struct Table {
    slots: Box<[u32]>,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    len: usize,
    head: u64,
    tail: u64,
    bytes: Box<[u8]>,
    value: u32,
}

/// The first eight bytes (zero-padded), without a call to `memcpy`.
#[inline]
fn load8(b: &[u8]) -> u64 {
    if let Some(w) = b.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate() {
        v |= u64::from(x) << (8 * i);
    }
    v
}

/// Length, first and last eight bytes (overlapping when shorter than 16).
#[inline]
fn summary(k: &[u8]) -> (usize, u64, u64) {
    (k.len(), load8(k), load8(&k[k.len().saturating_sub(8)..]))
}

#[inline]
fn hash((len, head, tail): (usize, u64, u64)) -> usize {
    let h = (head ^ tail.rotate_left(29) ^ (len as u64).wrapping_mul(0x2545_F491_4F6C_DD1D))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize
}

impl Table {
    fn new<'k>(entries: impl Iterator<Item = (&'k [u8], u32)>) -> Table {
        let entries: Vec<Entry> = entries
            .map(|(k, value)| {
                let (len, head, tail) = summary(k);
                Entry {
                    len,
                    head,
                    tail,
                    bytes: k.into(),
                    value,
                }
            })
            .collect();
        if entries.is_empty() {
            return Table::default();
        }
        let size = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![NONE; size].into_boxed_slice();
        for (i, e) in entries.iter().enumerate() {
            let mut at = hash((e.len, e.head, e.tail)) & (size - 1);
            while slots[at] != NONE {
                at = (at + 1) & (size - 1);
            }
            slots[at] = i as u32;
        }
        Table { slots, entries }
    }

    #[inline]
    fn get(&self, k: &[u8]) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let sum = summary(k);
        let mask = self.slots.len() - 1;
        let mut at = hash(sum) & mask;
        loop {
            let e = self.entries.get(*self.slots.get(at)? as usize)?;
            if (e.len, e.head, e.tail) == sum && (e.len <= 16 || *e.bytes == *k) {
                return Some(e.value);
            }
            at = (at + 1) & mask;
        }
    }
}

/// A kept value: its kind and where its text is.
#[derive(Clone, Copy, Debug)]
struct Val {
    kind: Kind,
    /// Byte span in the record text, or in the scanner's arena for unescaped strings.
    start: u32,
    end: u32,
    /// For a string: the id of the node's literal it equals, or `NONE`.
    lit: u32,
    /// The next value of the same node, or `NONE`.
    next: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    True,
    False,
    Number,
    /// A string without escapes: the span is its content in the text.
    Str,
    /// A string with escapes: the span is its unescaped content in the arena.
    Unescaped,
    Object,
    Array,
}

/// Reusable buffers for scanning records; one per thread.
#[derive(Debug, Default)]
pub struct Scanner {
    heads: Vec<u32>,
    /// Per node: the object in which an exact key last led to it (duplicate keys).
    marks: Vec<u32>,
    vals: Vec<Val>,
    arena: String,
    objects: u32,
    keys: Vec<(usize, usize)>,
}

/// One scanned record: what the selector kept of it.
#[derive(Debug)]
pub struct Record<'s> {
    scanner: &'s Scanner,
    text: &'s str,
    view: usize,
}

impl Record<'_> {
    fn values(&self, node: u32) -> impl Iterator<Item = &Val> {
        let vals = &self.scanner.vals;
        let mut at = self
            .scanner
            .heads
            .get(node as usize)
            .copied()
            .unwrap_or(NONE);
        std::iter::from_fn(move || {
            let v = vals.get(at as usize)?;
            at = v.next;
            Some(v)
        })
    }

    fn str_of(&self, v: &Val) -> &str {
        let (s, e) = (v.start as usize, v.end as usize);
        match v.kind {
            Kind::Unescaped => self.scanner.arena.get(s..e).unwrap_or(""),
            _ => self.text.get(s..e).unwrap_or(""),
        }
    }

    /// Whether the bound pattern matches the record.
    pub fn matches(&self, b: &Bound) -> bool {
        self.eval(&b.0)
    }

    fn eval(&self, e: &BExpr) -> bool {
        match e {
            BExpr::True => true,
            BExpr::And(items) => items.iter().all(|i| self.eval(i)),
            BExpr::Or(items) => items.iter().any(|i| self.eval(i)),
            BExpr::Cond { at, test } => {
                let mut vals = self.values(at[self.view]);
                match test {
                    BTest::Lit { negate, ids, test } => vals.any(|v| match v.kind {
                        Kind::Str | Kind::Unescaped => (v.lit == ids[self.view]) != *negate,
                        _ => self.value_test(test, v),
                    }),
                    BTest::OneOf { ids, test } => vals.any(|v| match v.kind {
                        Kind::Str | Kind::Unescaped => {
                            let bits = &ids[self.view];
                            let (word, bit) = (v.lit as usize / 64, v.lit % 64);
                            bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
                        }
                        _ => self.value_test(test, v),
                    }),
                    BTest::Other(JTest::NotExists) => vals.next().is_none(),
                    BTest::Other(JTest::IsNull) => vals.any(|v| v.kind == Kind::Null),
                    BTest::Other(JTest::IsTrue) => vals.any(|v| v.kind == Kind::True),
                    BTest::Other(JTest::IsFalse) => vals.any(|v| v.kind == Kind::False),
                    BTest::Other(JTest::Value(t)) => vals.any(|v| self.value_test(t, v)),
                }
            }
        }
    }

    /// As `eval::json_value_test`: comparisons hold on strings and numbers only.
    fn value_test(&self, t: &ValueTest, v: &Val) -> bool {
        match v.kind {
            Kind::Str | Kind::Unescaped => value_test(t, self.str_of(v)),
            Kind::Number => match self.str_of(v).parse::<serde_json::Number>() {
                Ok(n) => num_test(t, &n),
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// The field's value when it is a string (`record.get(key).and_then(as_str)`).
    pub fn str(&self, f: Field) -> Option<&str> {
        self.values(f.0[self.view])
            .find(|v| matches!(v.kind, Kind::Str | Kind::Unescaped))
            .map(|v| self.str_of(v))
    }
}

/// Byte classes inside a string: 0 plain, 1 `"`, 2 `\`, 3 a control character.
const STR_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 3;
        i += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 2;
    t
};

struct Cursor<'t> {
    b: &'t [u8],
    i: usize,
}

type Scan<T> = Result<T, Unsupported>;

impl Cursor<'_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Scan<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// At a `"`: the content's span and whether it has escapes. Escapes are checked
    /// (only those serde_json accepts the same way are let through).
    fn string(&mut self) -> Scan<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while none of them is special.
            while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                let x = u64::from_le_bytes(w);
                if special(x) {
                    break;
                }
                self.i += 8;
            }
            let &c = self.b.get(self.i).ok_or(Unsupported)?;
            match STR_CLASS[c as usize] {
                0 => self.i += 1,
                1 => {
                    let end = self.i;
                    self.i += 1;
                    return Ok((start, end, escaped));
                }
                2 => {
                    escaped = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let code = self.hex4(self.i + 2)?;
                            if (0xD800..0xE000).contains(&code) {
                                return Err(Unsupported);
                            }
                            self.i += 6;
                        }
                        _ => return Err(Unsupported),
                    }
                }
                _ => return Err(Unsupported),
            }
        }
    }

    fn hex4(&self, at: usize) -> Scan<u32> {
        let digits = self.b.get(at..at + 4).ok_or(Unsupported)?;
        let mut v = 0u32;
        for &d in digits {
            let x = (d as char).to_digit(16).ok_or(Unsupported)?;
            v = v * 16 + x;
        }
        Ok(v)
    }

    /// A number as JSON writes it; declined when serde_json could find it out of range.
    fn number(&mut self) -> Scan<(usize, usize)> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err(Unsupported),
        }
        if self.i - int > 20 {
            return Err(Unsupported);
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let from = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == from {
                return Err(Unsupported);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let from = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == from || self.i - from > 2 {
                return Err(Unsupported);
            }
        }
        Ok((start, self.i))
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// At `open` (`{` or `[`): consumes it and the whitespace after; false when the
    /// container is empty (its `close` consumed too).
    fn open(&mut self, open: u8, close: u8) -> Scan<bool> {
        self.eat(open)?;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// After a member: true at `,` (another follows, whitespace skipped), false at `close`
    /// (consumed).
    fn next(&mut self, close: u8) -> Scan<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.ws();
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(Unsupported),
        }
    }

    /// Checks and skips one value (after whitespace) that no path looks into.
    fn skip(&mut self, depth: usize) -> Scan<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(Unsupported);
                }
                let mut more = self.open(b'{', b'}')?;
                while more {
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.skip(depth + 1)?;
                    more = self.next(b'}')?;
                }
                Ok(())
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(Unsupported);
                }
                let mut more = self.open(b'[', b']')?;
                while more {
                    self.skip(depth + 1)?;
                    more = self.next(b']')?;
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(Unsupported),
        }
    }
}

/// Whether any of the eight bytes is `"`, `\` or below 0x20 (the classic SWAR tests; a
/// false positive can only follow a true one, and the byte loop sorts it out).
#[inline]
fn special(x: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let below_space = x.wrapping_sub(LO * 0x20) & !x & HI;
    (below_space | zero(x ^ (LO * b'"' as u64)) | zero(x ^ (LO * b'\\' as u64))) != 0
}

/// The nodes a value stands at.
#[derive(Clone, Copy)]
struct Targets {
    n: [u32; MAX_TARGETS],
    len: usize,
}

impl Targets {
    const EMPTY: Targets = Targets {
        n: [0; MAX_TARGETS],
        len: 0,
    };

    fn push(&mut self, node: u32) -> Scan<()> {
        let slot = self.n.get_mut(self.len).ok_or(Unsupported)?;
        *slot = node;
        self.len += 1;
        Ok(())
    }

    fn as_slice(&self) -> &[u32] {
        &self.n[..self.len]
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Scans `text` as one line of a log file and calls `f` for each record: the records
    /// of a CloudTrail file (`{"Records":[...]}`), or the line itself as one record.
    /// Returns how many records there were; on [`Unsupported`], `f` may have been called
    /// for some of them already, so the caller must discard what it gathered.
    pub fn for_each_record(
        &mut self,
        sel: &Selector,
        text: &str,
        mut f: impl FnMut(&Record<'_>),
    ) -> Result<usize, Unsupported> {
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        c.ws();
        let open = c.i;
        c.eat(b'{')?;
        c.ws();
        let mut cloudtrail = false;
        if c.peek() == Some(b'"') {
            let (s, e, _) = c.string()?;
            if &c.b[s..e] == b"Records" {
                c.ws();
                c.eat(b':')?;
                c.ws();
                cloudtrail = c.peek() == Some(b'[');
            }
        }
        let mut count = 0;
        if !cloudtrail {
            c.i = open;
            self.record(sel, &mut c, text, &mut f)?;
            count = 1;
        } else {
            let mut more = c.open(b'[', b']')?;
            while more {
                self.record(sel, &mut c, text, &mut f)?;
                count += 1;
                more = c.next(b']')?;
            }
            c.ws();
            // Other keys after `Records`: the plain path knows what they mean.
            c.eat(b'}')?;
        }
        c.ws();
        if c.i != c.b.len() {
            return Err(Unsupported);
        }
        Ok(count)
    }

    fn record(
        &mut self,
        sel: &Selector,
        c: &mut Cursor<'_>,
        text: &str,
        f: &mut impl FnMut(&Record<'_>),
    ) -> Scan<()> {
        if c.peek() != Some(b'{') {
            return Err(Unsupported);
        }
        let n = sel.nodes.len();
        self.heads.clear();
        self.heads.resize(n, NONE);
        self.marks.clear();
        self.marks.resize(n, NONE);
        self.vals.clear();
        self.arena.clear();
        self.keys.clear();
        self.objects = 0;
        let mut root = Targets::EMPTY;
        root.push(0)?;
        self.value(sel, c, root, 0)?;
        // Offsets are u32: a record of 4 GiB is left to the plain path.
        if c.i > u32::MAX as usize {
            return Err(Unsupported);
        }
        let mut record = Record {
            scanner: self,
            text,
            view: 0,
        };
        if let Some((kind, detail)) = sel.envelope
            && record
                .values(kind)
                .any(|v| matches!(v.kind, Kind::Str | Kind::Unescaped))
            && record.values(detail).any(|v| v.kind == Kind::Object)
        {
            record.view = 1;
        }
        f(&record);
        Ok(())
    }

    /// A value standing at each of `targets`. A string (its content at `start..end` of
    /// `text`, or of the arena when unescaped) gets the id of the literal it equals at
    /// each node.
    fn keep(
        &mut self,
        sel: &Selector,
        text: &[u8],
        targets: &[u32],
        kind: Kind,
        (start, end): (usize, usize),
    ) {
        let content = match kind {
            Kind::Str => text.get(start..end),
            Kind::Unescaped => self.arena.as_bytes().get(start..end),
            _ => None,
        };
        for &t in targets {
            let (Some(head), Some(node)) =
                (self.heads.get_mut(t as usize), sel.nodes.get(t as usize))
            else {
                continue;
            };
            self.vals.push(Val {
                kind,
                start: start as u32,
                end: end as u32,
                lit: content
                    .and_then(|c| node.literal_table.get(c))
                    .unwrap_or(NONE),
                next: *head,
            });
            *head = (self.vals.len() - 1) as u32;
        }
    }

    /// One value standing at `targets` (after whitespace).
    fn value(
        &mut self,
        sel: &Selector,
        c: &mut Cursor<'_>,
        targets: Targets,
        depth: usize,
    ) -> Scan<()> {
        let t = targets.as_slice();
        if t.is_empty() {
            return c.skip(depth);
        }
        match c.peek() {
            Some(b'"') => {
                let (s, e, escaped) = c.string()?;
                if escaped {
                    let span = self.unescape(&c.b[s..e])?;
                    self.keep(sel, c.b, t, Kind::Unescaped, span);
                } else {
                    self.keep(sel, c.b, t, Kind::Str, (s, e));
                }
            }
            Some(open @ (b'{' | b'[')) => {
                let kind = if open == b'{' {
                    Kind::Object
                } else {
                    Kind::Array
                };
                self.keep(sel, c.b, t, kind, (c.i, c.i));
                if depth >= MAX_DEPTH {
                    return Err(Unsupported);
                }
                if !t.iter().any(|&n| sel.nodes[n as usize].has_children()) {
                    c.skip(depth)?;
                } else if kind == Kind::Object {
                    self.object(sel, c, targets, depth)?;
                } else {
                    self.array(sel, c, targets, depth)?;
                }
            }
            Some(first @ (b't' | b'f' | b'n')) => {
                let (word, kind): (&[u8], Kind) = match first {
                    b't' => (b"true", Kind::True),
                    b'f' => (b"false", Kind::False),
                    _ => (b"null", Kind::Null),
                };
                c.literal(word)?;
                self.keep(sel, c.b, t, kind, (0, 0));
            }
            Some(b'-' | b'0'..=b'9') => {
                let span = c.number()?;
                self.keep(sel, c.b, t, Kind::Number, span);
            }
            _ => return Err(Unsupported),
        }
        Ok(())
    }

    fn object(
        &mut self,
        sel: &Selector,
        c: &mut Cursor<'_>,
        targets: Targets,
        depth: usize,
    ) -> Scan<()> {
        let id = self.objects;
        self.objects += 1;
        let wildcard = targets
            .as_slice()
            .iter()
            .any(|&n| sel.nodes[n as usize].any_key.is_some());
        let keys_from = self.keys.len();
        if !c.open(b'{', b'}')? {
            return Ok(());
        }
        loop {
            let (s, e, escaped) = c.string()?;
            if escaped {
                return Err(Unsupported);
            }
            let key = &c.b[s..e];
            if depth == 0 && key == b"Records" {
                return Err(Unsupported);
            }
            if wildcard {
                // serde_json keeps the last of a key given twice: a wildcard would see both.
                if self.keys[keys_from..]
                    .iter()
                    .any(|&(a, b)| &c.b[a..b] == key)
                {
                    return Err(Unsupported);
                }
                self.keys.push((s, e));
            }
            let mut next = Targets::EMPTY;
            for &n in targets.as_slice() {
                let node = &sel.nodes[n as usize];
                if let Some(child) = node.key_table.get(key) {
                    let mark = self.marks.get_mut(child as usize).ok_or(Unsupported)?;
                    if *mark == id {
                        return Err(Unsupported);
                    }
                    *mark = id;
                    next.push(child)?;
                }
                if let Some(child) = node.any_key {
                    next.push(child)?;
                }
            }
            c.ws();
            c.eat(b':')?;
            c.ws();
            self.value(sel, c, next, depth + 1)?;
            if !c.next(b'}')? {
                self.keys.truncate(keys_from);
                return Ok(());
            }
        }
    }

    fn array(
        &mut self,
        sel: &Selector,
        c: &mut Cursor<'_>,
        targets: Targets,
        depth: usize,
    ) -> Scan<()> {
        if !c.open(b'[', b']')? {
            return Ok(());
        }
        let mut i = 0usize;
        loop {
            let mut next = Targets::EMPTY;
            for &n in targets.as_slice() {
                let node = &sel.nodes[n as usize];
                if let Some(&(_, child)) = node.index.iter().find(|e| e.0 == i) {
                    next.push(child)?;
                }
                if let Some(child) = node.any_index {
                    next.push(child)?;
                }
                if let Some(child) = node.any_key {
                    next.push(child)?;
                }
            }
            self.value(sel, c, next, depth + 1)?;
            i += 1;
            if !c.next(b']')? {
                return Ok(());
            }
        }
    }

    /// The content of a checked string with escapes, unescaped into the arena.
    fn unescape(&mut self, raw: &[u8]) -> Scan<(usize, usize)> {
        let from = self.arena.len();
        let mut i = 0;
        while i < raw.len() {
            let plain = raw[i..]
                .iter()
                .position(|&b| b == b'\\')
                .unwrap_or(raw.len() - i);
            let run = std::str::from_utf8(&raw[i..i + plain]).map_err(|_| Unsupported)?;
            self.arena.push_str(run);
            i += plain;
            if i >= raw.len() {
                break;
            }
            let ch = match raw.get(i + 1) {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => {
                    let hex = raw.get(i + 2..i + 6).ok_or(Unsupported)?;
                    let hex = std::str::from_utf8(hex).map_err(|_| Unsupported)?;
                    let code = u32::from_str_radix(hex, 16).map_err(|_| Unsupported)?;
                    i += 4;
                    char::from_u32(code).ok_or(Unsupported)?
                }
                _ => return Err(Unsupported),
            };
            self.arena.push(ch);
            i += 2;
        }
        if self.arena.len() > u32::MAX as usize {
            return Err(Unsupported);
        }
        Ok((from, self.arena.len()))
    }
}

/// Rules, bound together and indexed by what they require: a rule whose condition (or a
/// conjunct of it) is `$.path = literal` or one of a set of literals is looked at only
/// when the record's value at that path is one of them (or a number, which compares by
/// its text); a rule that needs some value at one of a few paths (any comparison or `IS`
/// test does) only when one of them has a value. A pack's rules mostly start with
/// `$.eventName = ...`, so a record meets a few table lookups and the handful of rules
/// that can match it.
#[derive(Clone, Debug)]
pub struct BoundSet {
    rules: Vec<Bound>,
    /// Rules without a required literal.
    always: Vec<u64>,
    /// Per view (record, envelope detail): per node, the rules each literal lets in.
    index: [Vec<Keyed>; 2],
    /// Per view: per node, the rules any value there lets in.
    present: [Vec<(u32, Vec<u64>)>; 2],
}

#[derive(Clone, Debug)]
struct Keyed {
    node: u32,
    by_lit: Vec<Vec<u64>>,
    /// Every rule keyed at this node (for values that are not strings).
    any: Vec<u64>,
}

/// Sets in words of 64 rules; larger sets evaluate every rule.
const INDEXED_WORDS: usize = 8;

/// What a rule needs of a record before it can match.
#[derive(Clone, Debug)]
enum Req {
    /// The value at a node is one of these literals (per view), or a number.
    Lits { at: [u32; 2], lits: [Vec<u32>; 2] },
    /// Some node of these has a value (comparisons and `IS` tests are false on a missing
    /// property). `positive`: only `=` tests, which hold on few values, where `!=` and
    /// `IS TRUE` hold on most.
    Present { at: Vec<[u32; 2]>, positive: bool },
}

impl Req {
    fn nodes(&self) -> Vec<[u32; 2]> {
        match self {
            Req::Lits { at, .. } => vec![*at],
            Req::Present { at, .. } => at.clone(),
        }
    }

    fn positive(&self) -> bool {
        match self {
            Req::Lits { .. } => true,
            Req::Present { positive, .. } => *positive,
        }
    }

    /// Which of two conjuncts' requirements to index by: literals before presence; of
    /// literals, the node the pack compares with the most of them (the field it tells the
    /// most values apart by: `eventName` rather than `eventSource`); of presence, `=` before
    /// `!=`, then the deepest paths (`requestParameters.roleName` is rarer than
    /// `eventName`), then the fewest.
    fn rank(&self, sel: &Selector) -> (u8, usize, u32, i64) {
        let node = |n: u32| sel.nodes.get(n as usize);
        match self {
            Req::Lits { at, .. } => (2, node(at[0]).map_or(0, |n| n.literals.len()), 0, 0),
            Req::Present { at, positive } => (
                u8::from(*positive),
                0,
                at.iter()
                    .map(|a| node(a[0]).map_or(0, |n| n.depth))
                    .min()
                    .unwrap_or(0),
                -(at.len() as i64),
            ),
        }
    }
}

fn required(e: &BExpr, sel: &Selector) -> Option<Req> {
    match e {
        BExpr::Cond {
            at,
            test: BTest::Lit {
                negate: false, ids, ..
            },
        } => Some(Req::Lits {
            at: *at,
            lits: ids.map(|id| vec![id]),
        }),
        BExpr::Cond {
            at,
            test: BTest::OneOf { ids, .. },
        } => {
            let list = |bits: &[u64]| -> Vec<u32> {
                (0..bits.len() * 64)
                    .filter(|&i| bits[i / 64] & (1 << (i % 64)) != 0)
                    .map(|i| i as u32)
                    .collect()
            };
            Some(Req::Lits {
                at: *at,
                lits: [list(&ids[0]), list(&ids[1])],
            })
        }
        BExpr::Cond {
            test: BTest::Other(JTest::NotExists),
            ..
        } => None,
        BExpr::Cond { at, test } => Some(Req::Present {
            at: vec![*at],
            positive: matches!(
                test,
                BTest::Other(JTest::Value(
                    ValueTest::Str { negate: false, .. }
                        | ValueTest::Regex { negate: false, .. }
                        | ValueTest::Num {
                            op: super::ast::CmpOp::Eq,
                            ..
                        }
                ))
            ),
        }),
        // Every alternative must require something: literals at one node join into one
        // set; anything else becomes the presence of any of their nodes.
        BExpr::Or(items) => {
            let reqs: Vec<Req> = items
                .iter()
                .map(|i| required(i, sel))
                .collect::<Option<_>>()?;
            let first = reqs.first()?.clone();
            if let Req::Lits { at, mut lits } = first
                && reqs
                    .iter()
                    .all(|r| matches!(r, Req::Lits { at: other, .. } if *other == at))
            {
                for r in &reqs[1..] {
                    if let Req::Lits { lits: more, .. } = r {
                        for (l, m) in lits.iter_mut().zip(more) {
                            l.extend(m);
                        }
                    }
                }
                return Some(Req::Lits { at, lits });
            }
            let mut at: Vec<[u32; 2]> = reqs.iter().flat_map(Req::nodes).collect();
            at.sort_unstable();
            at.dedup();
            Some(Req::Present {
                at,
                positive: reqs.iter().all(Req::positive),
            })
        }
        BExpr::And(items) => items
            .iter()
            .filter_map(|i| required(i, sel))
            .max_by_key(|r| r.rank(sel)),
        BExpr::True => None,
    }
}

impl BoundSet {
    /// `rules`, bound to `selector`.
    pub fn new(selector: &Selector, rules: Vec<Bound>) -> BoundSet {
        let words = rules.len().div_ceil(64);
        let mut always = vec![0u64; words];
        let mut index: [Vec<Keyed>; 2] = [Vec::new(), Vec::new()];
        let mut present: [Vec<(u32, Vec<u64>)>; 2] = [Vec::new(), Vec::new()];
        for (i, rule) in rules.iter().enumerate() {
            let bit = |set: &mut Vec<u64>| set[i / 64] |= 1 << (i % 64);
            match required(&rule.0, selector) {
                None => bit(&mut always),
                Some(Req::Present { at, .. }) => {
                    for (view, present) in present.iter_mut().enumerate() {
                        for a in &at {
                            let p = match present.iter().position(|p| p.0 == a[view]) {
                                Some(p) => p,
                                None => {
                                    present.push((a[view], vec![0; words]));
                                    present.len() - 1
                                }
                            };
                            bit(&mut present[p].1);
                        }
                    }
                }
                Some(Req::Lits { at, lits }) => {
                    for (view, keyed) in index.iter_mut().enumerate() {
                        let k = match keyed.iter().position(|k| k.node == at[view]) {
                            Some(p) => p,
                            None => {
                                keyed.push(Keyed {
                                    node: at[view],
                                    by_lit: Vec::new(),
                                    any: vec![0; words],
                                });
                                keyed.len() - 1
                            }
                        };
                        let k = &mut keyed[k];
                        bit(&mut k.any);
                        for &lit in &lits[view] {
                            let lit = lit as usize;
                            if k.by_lit.len() <= lit {
                                k.by_lit.resize(lit + 1, vec![0; words]);
                            }
                            bit(&mut k.by_lit[lit]);
                        }
                    }
                }
            }
        }
        BoundSet {
            rules,
            always,
            index,
            present,
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Calls `f(i)` for every rule `i` that matches the record, in order.
    pub fn for_each_match(&self, record: &Record<'_>, mut f: impl FnMut(usize)) {
        let words = self.always.len();
        if words > INDEXED_WORDS {
            for (i, rule) in self.rules.iter().enumerate() {
                if record.matches(rule) {
                    f(i);
                }
            }
            return;
        }
        let mut candidates = [0u64; INDEXED_WORDS];
        candidates[..words].copy_from_slice(&self.always);
        let or = |c: &mut [u64; INDEXED_WORDS], set: &[u64]| {
            for (c, s) in c.iter_mut().zip(set) {
                *c |= s;
            }
        };
        for keyed in &self.index[record.view] {
            for v in record.values(keyed.node) {
                match v.kind {
                    Kind::Str | Kind::Unescaped => {
                        if let Some(set) = keyed.by_lit.get(v.lit as usize) {
                            or(&mut candidates, set);
                        }
                    }
                    Kind::Number => or(&mut candidates, &keyed.any),
                    _ => {}
                }
            }
        }
        for (node, set) in &self.present[record.view] {
            if record.values(*node).next().is_some() {
                or(&mut candidates, set);
            }
        }
        for (w, &word) in candidates[..words].iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if self.rules.get(i).is_some_and(|r| record.matches(r)) {
                    f(i);
                }
            }
        }
    }
}
