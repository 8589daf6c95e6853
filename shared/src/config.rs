//! Helpers every configuration file shares: TOML parsing with errors that name the file,
//! line and column, and `${VAR}` expansion.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column (in characters); `None` when the problem has no position
    /// (unreadable file, or a check across several keys).
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error at a byte offset of `text`.
    pub fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            position: Some(line_col(text, offset)),
            message: message.into(),
        }
    }

    /// An error about the whole file.
    pub fn file(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            position: None,
            message: message.into(),
        }
    }
}

/// 1-based (line, column) of a byte offset; columns count characters.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses TOML into `T` (whose structs should `deny_unknown_fields`), locating errors: the
/// first problem only (see [`parse_toml_all`] for every one).
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| located(path, text, &e))
}

/// The byte offset in `text` of the value at `keys` (`["monitoring", "pack"]`), or of
/// its string element equal to `entry` when it is an array that holds one; `None` when
/// the text does not parse or has no such key. For problems found after parsing, so they
/// too are given at file:line:col.
pub fn locate(text: &str, keys: &[&str], entry: Option<&str>) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let (last, parents) = keys.split_last()?;
    let mut table = root.get_ref();
    for k in parents {
        match table.get(*k)?.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    let value = table.get(*last)?;
    if let (Some(entry), toml::de::DeValue::Array(items)) = (entry, value.get_ref())
        && let Some(item) = items
            .iter()
            .find(|i| matches!(i.get_ref(), toml::de::DeValue::String(s) if s.as_ref() == entry))
    {
        return Some(item.span().start);
    }
    Some(value.span().start)
}

/// Rounds of [`parse_toml_all`] at most: each finds one problem and sets it aside.
const MAX_PROBLEMS: usize = 64;

/// Parses TOML into `T` and reports every problem of the file in one run, not only the
/// first: each syntax error; then each unknown key, wrong type or unknown value that
/// serde finds, one at a time, with the offending entry set aside (removed from the parsed
/// document, whose positions stay those of the text) before the next try. Unknown keys
/// and values carry "did you mean" for a near miss.
///
/// Returns `T` as parsed without the entries set aside (when the rest parses), so checks
/// beyond types can run and add their problems too; with any problem returned, the
/// caller must still refuse the file. A missing required key ends the search (nothing can
/// stand in for it).
pub fn parse_toml_all<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> (Option<T>, Vec<ConfigError>) {
    parse_toml_all_expanded(path, text, None)
}

/// What [`parse_toml_all_expanded`] expands: variables from `env`, in every string value
/// but those under the root keys `except` (whose text is read elsewhere, as written).
pub struct Expand<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub except: &'a [&'a str],
}

/// [`parse_toml_all`] with `${VAR}` and `${VAR:-default}` ([`expand_vars`]) expanded in
/// string values first, each problem located at its value and naming its key.
pub fn parse_toml_all_expanded<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    expand: Option<&Expand<'_>>,
) -> (Option<T>, Vec<ConfigError>) {
    let (mut root, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return (
            None,
            syntax.iter().map(|e| located(path, text, e)).collect(),
        );
    }
    let mut errors: Vec<ConfigError> = Vec::new();
    if let Some(x) = expand {
        let mut problems = Vec::new();
        for (k, v) in root.get_mut().iter_mut() {
            if !x.except.contains(&k.get_ref().as_ref()) {
                expand_in(v, k.get_ref(), x.env, &mut problems);
            }
        }
        errors.extend(
            problems
                .into_iter()
                .map(|(at, message)| ConfigError::at(path, text, at, message)),
        );
    }
    // Keys set aside: their absence is not a problem of its own.
    let mut aside: Vec<String> = Vec::new();
    let mut parsed = None;
    for _ in 0..MAX_PROBLEMS {
        let error = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(value) => {
                parsed = Some(value);
                break;
            }
            Err(e) => e,
        };
        let message = error.message();
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            if !aside.iter().any(|k| k == missing) {
                errors.push(located(path, text, &error));
            }
            break;
        }
        let problem = located(path, text, &error);
        if errors.contains(&problem) {
            break;
        }
        errors.push(problem);
        let Some(span) = error.span() else {
            break;
        };
        match set_aside(root.get_mut(), &span) {
            Some(key) => aside.push(key),
            None => break,
        }
    }
    sort(&mut errors);
    (parsed, errors)
}

/// Problems in the order of the file (those without a position last).
pub fn sort(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, usize::MAX)));
}

/// Expands the variables of every string under `value` (whose key is `key`, dotted).
fn expand_in(
    value: &mut toml::Spanned<toml::de::DeValue<'_>>,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(usize, String)>,
) {
    let at = value.span().start;
    match value.get_mut() {
        toml::de::DeValue::String(s) if s.contains('$') => match expand_vars(s, env) {
            Ok(v) => *s = std::borrow::Cow::Owned(v),
            Err(e) => problems.push((at, format!("{key}: {e}"))),
        },
        toml::de::DeValue::Table(t) => {
            for (k, v) in t.iter_mut() {
                expand_in(v, &format!("{key}.{}", k.get_ref()), env, problems);
            }
        }
        toml::de::DeValue::Array(a) => {
            for v in a.iter_mut() {
                expand_in(v, key, env, problems);
            }
        }
        _ => {}
    }
}

/// A toml error as a [`ConfigError`], with a suggestion for an unknown key or value.
fn located(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    // toml's message repeats the location and a snippet; keep only the reason.
    let message = suggest_known(e.message().trim());
    match e.span() {
        Some(span) => ConfigError::at(path, text, span.start, message),
        None => ConfigError::file(path, message),
    }
}

/// serde's `unknown field `x`, expected one of `a`, `b`` (or `unknown variant ...`) with
/// "did you mean `a`?" when `x` is a near miss of one of them, in place of the list.
fn suggest_known(message: &str) -> String {
    for lead in ["unknown field `", "unknown variant `"] {
        let Some(rest) = message.strip_prefix(lead) else {
            continue;
        };
        let Some((word, tail)) = rest.split_once('`') else {
            continue;
        };
        let known: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        if let Some(near) = crate::suggest::nearest(word, known.iter().copied()) {
            let what = &lead[..lead.len() - 2];
            return format!("{what} `{word}`; did you mean `{near}`?");
        }
    }
    message.to_string()
}

/// Removes the innermost entry (key and value) whose text holds `span`, and names its key;
/// `None` when there is none.
fn set_aside(table: &mut toml::de::DeTable<'_>, span: &std::ops::Range<usize>) -> Option<String> {
    let holds = |r: std::ops::Range<usize>| r.start <= span.start && span.end <= r.end;
    let keys: Vec<_> = table.keys().cloned().collect();
    for key in &keys {
        if let Some(v) = table.get_mut(key) {
            let inner = match v.get_mut() {
                toml::de::DeValue::Table(t) => set_aside(t, span),
                toml::de::DeValue::Array(a) => set_aside_in(a, span),
                _ => None,
            };
            if inner.is_some() {
                return inner;
            }
        }
    }
    let hit = keys.into_iter().find(|k| {
        holds(k.span())
            || table
                .get(k)
                .is_some_and(|v| holds(v.span()) || holds(k.span().start..v.span().end))
    });
    let k = hit?;
    table.remove(&k)?;
    Some(k.get_ref().to_string())
}

/// [`set_aside`] within the tables of an array. An element itself cannot be taken out (a
/// toml `DeArray` has no remove), so a wrong element sets aside the whole key that holds
/// the array, in [`set_aside`].
fn set_aside_in(
    array: &mut toml::de::DeArray<'_>,
    span: &std::ops::Range<usize>,
) -> Option<String> {
    array.iter_mut().find_map(|item| match item.get_mut() {
        toml::de::DeValue::Table(t) => set_aside(t, span),
        toml::de::DeValue::Array(a) => set_aside_in(a, span),
        _ => None,
    })
}

/// Reads and parses a TOML file.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
    parse_toml(path, &text)
}

/// Expands `${VAR}` from `lookup`, and `${VAR:-default}` (the default when VAR is unset or
/// empty, as in the shell); `$$` is a literal `$`. An unset variable without a default is
/// an error naming the variable (the value itself is never echoed: it may be a secret).
pub fn expand_vars(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(t) = tail.strip_prefix('$') {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix('{') {
            let end = t
                .find('}')
                .ok_or_else(|| "unterminated ${ in value".to_string())?;
            let (name, default) = match t[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (&t[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name ${{{name}}}"));
            }
            let v = match (
                lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_string(),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            };
            out.push_str(&v);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn unknown_key_is_located() {
        let text = "name = \"x\"\n\ncolour = 3\n";
        let err = parse_toml::<Demo>(Path::new("demo.toml"), text).unwrap_err();
        assert_eq!(err.position, Some((3, 1)));
        let shown = err.to_string();
        assert!(
            shown.starts_with("demo.toml:3:1: unknown field `colour`"),
            "{shown}"
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let text = "name = \"x\"\ncount = \"many\"\n";
        let err = parse_toml::<Demo>(Path::new("d.toml"), text).unwrap_err();
        assert_eq!(err.position, Some((2, 9)));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        hub: Hub,
        #[serde(default)]
        rule: Vec<Rule>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Hub {
        regions: Vec<String>,
        #[serde(default)]
        member_role: Option<String>,
        #[serde(default)]
        concurrency: Option<u32>,
        #[serde(default)]
        delivery: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Eventbridge,
        Trail,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        id: String,
        #[serde(default)]
        threshold: Option<f64>,
    }

    #[test]
    fn every_type_and_key_problem_of_a_file_comes_in_one_run_with_suggestions() {
        let text = "\
[hub]
regions = [\"us-east-1\"]
member_rol = \"OrganizationAccountAccessRole\"
concurrency = \"8\"
delivery = \"evntbridge\"

[[rule]]
id = \"a\"
treshold = 2

[[rule]]
id = \"b\"
threshold = \"two\"

[extra]
x = 1
";
        let (parsed, errors) = parse_toml_all::<Outer>(Path::new("h.toml"), text);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "h.toml:3:1: unknown field `member_rol`; did you mean `member_role`?",
                "h.toml:4:15: invalid type: string \"8\", expected u32",
                "h.toml:5:12: unknown variant `evntbridge`; did you mean `eventbridge`?",
                "h.toml:9:1: unknown field `treshold`; did you mean `threshold`?",
                "h.toml:13:13: invalid type: string \"two\", expected f64",
                "h.toml:15:2: unknown field `extra`, expected `hub` or `rule`",
            ],
        );
        // What is left parses: its own checks can run.
        let parsed = parsed.expect("the rest parses");
        assert_eq!(parsed.hub.regions, ["us-east-1"]);
        assert_eq!(parsed.rule.len(), 2);
    }

    #[test]
    fn a_missing_required_key_ends_the_search_and_syntax_errors_come_alone() {
        let (parsed, errors) = parse_toml_all::<Outer>(Path::new("h.toml"), "[hub]\nregion = []\n");
        assert!(parsed.is_none());
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(shown[0], "h.toml:1:1: missing field `regions`");
        assert_eq!(
            shown[1],
            "h.toml:2:1: unknown field `region`; did you mean `regions`?"
        );
        // A wrong type of a required key is one problem, not also a missing key.
        let (_, errors) = parse_toml_all::<Outer>(Path::new("h.toml"), "[hub]\nregions = 5\n");
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            ["h.toml:2:11: invalid type: integer `5`, expected a sequence"]
        );
        let (parsed, errors) = parse_toml_all::<Outer>(Path::new("h.toml"), "[hub\nregions = [\n");
        assert!(parsed.is_none());
        assert!(
            !errors.is_empty() && errors.iter().all(|e| e.position.is_some()),
            "{errors:?}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé = 1", 6), (2, 3));
        assert_eq!(line_col("", 10), (1, 1));
    }

    #[test]
    fn variables_expand() {
        let env = |k: &str| (k == "HOOK").then(|| "https://x".to_string());
        assert_eq!(expand_vars("${HOOK}/a", env).unwrap(), "https://x/a");
        assert_eq!(expand_vars("cost $$5 $x", env).unwrap(), "cost $5 $x");
        assert_eq!(
            expand_vars("${NOPE}", env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(expand_vars("${bad-name}", env).is_err());
        // A default, used when the variable is unset or empty.
        let empty = |k: &str| (k == "EMPTY").then(String::new);
        assert_eq!(expand_vars("${NOPE:-us-east-1}", env).unwrap(), "us-east-1");
        assert_eq!(expand_vars("${HOOK:-x}/a", env).unwrap(), "https://x/a");
        assert_eq!(expand_vars("${EMPTY:-d}", empty).unwrap(), "d");
        assert_eq!(expand_vars("${EMPTY}", empty).unwrap(), "");
        assert_eq!(expand_vars("${NOPE:-}", env).unwrap(), "");
        assert!(expand_vars("${HOOK", env).is_err());
    }
}
