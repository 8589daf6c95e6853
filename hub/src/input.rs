//! Where `hub rules test` and `hub replay` read log events from: files, directories
//! (recursively) and stdin. Decoding the bytes (gzip, CloudTrail files, JSON lines, text)
//! is `shared::rules::input`'s job.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use shared::rules::input::{Item, ReadError, for_each_event};

/// An input named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// Files as given; none, or `-`, is stdin.
    pub fn from_args(files: &[PathBuf]) -> Vec<Source> {
        if files.is_empty() {
            return vec![Source::Stdin];
        }
        files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    Source::Stdin
                } else {
                    Source::File(f.clone())
                }
            })
            .collect()
    }

    /// How messages name it.
    pub fn label(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_string(),
            Source::File(p) => p.display().to_string(),
        }
    }

    pub fn read(&self) -> Result<Vec<u8>, InputError> {
        let mut bytes = Vec::new();
        let result = match self {
            Source::Stdin => std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ()),
            Source::File(p) => std::fs::read(p).map(|b| bytes = b),
        };
        result.map_err(|e| InputError::new(self.label(), None, format!("cannot read: {e}")))?;
        Ok(bytes)
    }
}

/// An input that could not be read, located as `name:line: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub source: String,
    pub line: Option<usize>,
    pub message: String,
}

impl InputError {
    pub fn new(source: String, line: Option<usize>, message: String) -> InputError {
        InputError {
            source,
            line,
            message,
        }
    }

    pub fn from_read(source: String, e: ReadError) -> InputError {
        InputError::new(source, e.line, e.message)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for InputError {}

/// Reads every event of one source, calling `f(line, event)`.
pub fn read_events(source: &Source, f: impl FnMut(usize, Item<'_>)) -> Result<usize, InputError> {
    let bytes = source.read()?;
    for_each_event(&bytes, f).map_err(|e| InputError::from_read(source.label(), e))
}

/// Every regular file under `path` (itself when it is a file), sorted, with its size.
pub fn walk(path: &Path) -> Result<Vec<(PathBuf, u64)>, InputError> {
    let label = || path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| InputError::new(label(), None, format!("cannot read: {e}")))?;
    if meta.is_file() {
        return Ok(vec![(path.to_path_buf(), meta.len())]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            InputError::new(dir.display().to_string(), None, format!("cannot list: {e}"))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                InputError::new(dir.display().to_string(), None, format!("cannot list: {e}"))
            })?;
            let p = entry.path();
            let meta = std::fs::metadata(&p).map_err(|e| {
                InputError::new(p.display().to_string(), None, format!("cannot read: {e}"))
            })?;
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push((p, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_from_args() {
        assert_eq!(Source::from_args(&[]), vec![Source::Stdin]);
        assert_eq!(
            Source::from_args(&["-".into(), "a.json".into()]),
            vec![Source::Stdin, Source::File("a.json".into())]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("orgwatch-input-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).expect("mkdir");
        let bad = dir.join("a/b/bad.json");
        std::fs::write(&bad, "{\"a\":1}\n{oops}\n").expect("write");
        std::fs::write(dir.join("a/good.json"), "{\"a\":1}\n").expect("write");
        let err = read_events(&Source::File(bad.clone()), |_, _| {}).expect_err("bad");
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: invalid JSON at column 2", bad.display())),
            "{err}"
        );
        let files: Vec<PathBuf> = walk(&dir)
            .expect("walk")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(files, vec![bad, dir.join("a/good.json")]);
        let missing = read_events(&Source::File(dir.join("nope")), |_, _| {}).expect_err("missing");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
