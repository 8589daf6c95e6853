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

/// Parses TOML into `T` (whose structs should `deny_unknown_fields`), locating errors.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // toml's message repeats the location and a snippet; keep only the reason.
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => ConfigError::at(path, text, span.start, message),
            None => ConfigError::file(path, message),
        }
    })
}

/// Reads and parses a TOML file.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
    parse_toml(path, &text)
}

/// Expands `${VAR}` from `lookup`; `$$` is a literal `$`. Unset variables are an error
/// naming the variable (the value itself is never echoed: it may be a secret).
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
            let name = &t[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name ${{{name}}}"));
            }
            let v =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
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
        assert!(expand_vars("${HOOK", env).is_err());
    }
}
