//! Log events out of files: CloudTrail log files (`{"Records": [...]}`), JSON lines, a
//! single (pretty-printed) JSON event, or plain text lines; gzip-compressed or not (told
//! apart by the gzip magic bytes, not by the file name).
//!
//! One reader for `hub rules test`, `hub replay` and the benchmarks, so that what is
//! measured is what runs.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use serde_json::Value as Json;

use crate::pattern::select::{Record, Scanner, Selector, Unsupported};

/// The first two bytes of every gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One log event read from a file.
#[derive(Clone, Copy, Debug)]
pub enum Item<'a> {
    /// A JSON object (a CloudTrail record, or any other JSON log event).
    Record(&'a Json),
    /// A line that is not JSON (an unstructured log event).
    Text(&'a str),
}

/// Why a file could not be read. `line` is 1-based, in the decompressed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ReadError {}

/// A JSON error as `invalid JSON at column C: reason` (the line is reported separately).
fn json_error(line: usize, e: &serde_json::Error) -> ReadError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text);
    error(
        Some(line),
        format!("invalid JSON at column {}: {reason}", e.column()),
    )
}

fn error(line: Option<usize>, message: impl Into<String>) -> ReadError {
    ReadError {
        line,
        message: message.into(),
    }
}

/// The bytes, decompressed when they start with the gzip magic.
pub fn decompress(bytes: &[u8]) -> Result<Cow<'_, [u8]>, ReadError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(8));
    inflate(bytes, &mut out).map_err(|e| error(None, format!("invalid gzip data: {e}")))?;
    Ok(Cow::Owned(out))
}

/// Every gzip member of `bytes`, decompressed into `out` (emptied first): the one inflate
/// of both readers.
fn inflate(bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(out)
        .map(drop)
}

/// Calls `f(line, event)` for every log event in `bytes` (gzip or not) and returns how many
/// there were. A line starting with `{` must be valid JSON (else the error names the line);
/// an object with a `Records` array stands for its records; other non-empty lines are plain
/// text events. A document whose first line is an incomplete JSON value is read as one
/// JSON document (a pretty-printed event or CloudTrail file, or an array of events).
pub fn for_each_event(
    bytes: &[u8],
    mut f: impl FnMut(usize, Item<'_>),
) -> Result<usize, ReadError> {
    let data = decompress(bytes)?;
    let text = std::str::from_utf8(&data).map_err(|e| {
        let line = data[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        error(Some(line), "not UTF-8 text")
    })?;
    let mut count = 0;
    let mut first = true;
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let was_first = std::mem::replace(&mut first, false);
        if !trimmed.starts_with('{') {
            f(lineno, Item::Text(line));
            count += 1;
            continue;
        }
        match serde_json::from_str::<Json>(trimmed) {
            Ok(v) => count += emit(lineno, &v, &mut f),
            Err(e) if was_first && e.is_eof() => {
                // A JSON document spread over several lines.
                let v = serde_json::from_str::<Json>(text).map_err(|e| json_error(e.line(), &e))?;
                return Ok(emit(lineno, &v, &mut f));
            }
            Err(e) => return Err(json_error(lineno, &e)),
        }
    }
    Ok(count)
}

/// Buffers reused from file to file by [`for_each_scanned`]: one per thread.
#[derive(Debug, Default)]
pub struct ScanBuffers {
    inflated: Vec<u8>,
    scanner: Scanner,
}

/// As [`for_each_event`], without a DOM: every record of `bytes` (gzip or not) is scanned
/// by `selector` and handed to `f` as what the selector kept of it. Declines
/// ([`Unsupported`]) whatever is not JSON objects one per line (CloudTrail files or JSON
/// lines) and whatever the scanner declines (see [`crate::pattern::select`]), bad gzip or
/// UTF-8 included; `f` may have been called for some records by then, so the caller
/// discards what it gathered and reads the file with [`for_each_event`], which gives the
/// same events or names the error.
pub fn for_each_scanned(
    bytes: &[u8],
    buffers: &mut ScanBuffers,
    selector: &Selector,
    mut f: impl FnMut(&Record<'_>),
) -> Result<usize, Unsupported> {
    let ScanBuffers { inflated, scanner } = buffers;
    let data: &[u8] = if bytes.starts_with(&GZIP_MAGIC) {
        inflate(bytes, inflated).map_err(|_| Unsupported)?;
        inflated
    } else {
        bytes
    };
    let text = std::str::from_utf8(data).map_err(|_| Unsupported)?;
    let mut count = 0;
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        count += scanner.for_each_record(selector, trimmed, &mut f)?;
    }
    Ok(count)
}

/// Emits one parsed value: a CloudTrail file's records, an array's elements, or itself.
fn emit(line: usize, v: &Json, f: &mut impl FnMut(usize, Item<'_>)) -> usize {
    match v {
        Json::Object(map) => match map.get("Records") {
            Some(Json::Array(records)) => {
                for r in records {
                    f(line, Item::Record(r));
                }
                records.len()
            }
            _ => {
                f(line, Item::Record(v));
                1
            }
        },
        Json::Array(items) => {
            for r in items {
                f(line, Item::Record(r));
            }
            items.len()
        }
        other => {
            f(line, Item::Record(other));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read(bytes: &[u8]) -> Result<Vec<(usize, String)>, ReadError> {
        let mut out = Vec::new();
        for_each_event(bytes, |line, item| {
            out.push((
                line,
                match item {
                    Item::Record(v) => v.to_string(),
                    Item::Text(t) => format!("text:{t}"),
                },
            ))
        })
        .map(|n| {
            assert_eq!(n, out.len());
            out
        })
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn cloudtrail_files_expand_their_records() {
        let file = br#"{"Records":[{"eventID":"a"},{"eventID":"b"}]}"#;
        let want = vec![
            (1, r#"{"eventID":"a"}"#.to_string()),
            (1, r#"{"eventID":"b"}"#.to_string()),
        ];
        assert_eq!(read(file).expect("plain"), want);
        assert_eq!(read(&gzip(file)).expect("gzip"), want);
    }

    #[test]
    fn json_lines_and_text_lines() {
        let text = b"{\"a\":1}\r\n\n  plain text line\n{\"Records\":[{\"b\":2}]}\n";
        assert_eq!(
            read(text).expect("lines"),
            vec![
                (1, r#"{"a":1}"#.to_string()),
                (3, "text:  plain text line".to_string()),
                (4, r#"{"b":2}"#.to_string()),
            ]
        );
    }

    #[test]
    fn pretty_printed_documents() {
        let doc = b"{\n  \"Records\": [\n    {\"eventID\": \"a\"}\n  ]\n}\n";
        assert_eq!(
            read(doc).expect("doc"),
            vec![(1, r#"{"eventID":"a"}"#.into())]
        );
        let one = b"{\n  \"eventID\": \"x\"\n}";
        assert_eq!(
            read(one).expect("one"),
            vec![(1, r#"{"eventID":"x"}"#.into())]
        );
    }

    #[test]
    fn bad_json_names_the_line() {
        let text = b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n";
        let err = read(text).expect_err("bad line 2");
        assert_eq!(err.line, Some(2), "{err}");
        assert_eq!(
            err.to_string(),
            "line 2: invalid JSON at column 5: EOF while parsing a value"
        );
        let doc = b"{\n  \"a\": [1,\n}\n";
        assert_eq!(read(doc).expect_err("bad doc").line, Some(3));
    }

    #[test]
    fn bad_gzip_and_bad_utf8() {
        let mut broken = gzip(b"{\"a\":1}");
        broken.truncate(12);
        let err = read(&broken).expect_err("truncated");
        assert!(err.message.contains("gzip"), "{err}");
        let err = read(b"ok\n\xff\xfe\n").expect_err("latin-1");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn empty_input_has_no_events() {
        assert_eq!(read(b"").expect("empty"), vec![]);
        assert_eq!(read(&gzip(b"\n\n")).expect("blank"), vec![]);
    }
}
