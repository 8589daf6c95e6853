//! Words for people: counts with the right plural ("1 file", "2 files").

/// `n` and its noun: `one` for 1, else `many` ("0 files", "1 file", "2 files").
pub fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(super::plural(1u64, "file", "files"), "1 file");
        assert_eq!(super::plural(0u64, "file", "files"), "0 files");
        assert_eq!(super::plural(2u32, "match", "matches"), "2 matches");
    }
}
