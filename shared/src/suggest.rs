//! "Did you mean ...?": the nearest of a set of known words to one that is not known, for
//! configuration keys, enum values, rule ids and sink names.

/// The candidate nearest to `word` by edit distance (Damerau: a swap of two neighbours
/// counts once), when it is near enough to be a slip rather than a different word: at
/// most 1 edit for words up to 4 characters, 2 up to 8, else 3. Case is ignored (so
/// `Regions` finds `regions`); ties go to the first candidate.
pub fn nearest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let w: Vec<char> = word.to_lowercase().chars().collect();
    let limit = match w.len() {
        0 => return None,
        1..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let cl: Vec<char> = c.to_lowercase().chars().collect();
        let d = distance(&w, &cl);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `; did you mean `x`?` for [`nearest`], or nothing.
pub fn hint<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    nearest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Optimal string alignment distance.
fn distance(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_different_words_are_not() {
        let keys = ["regions", "member_role", "external_id", "concurrency"];
        let table = [
            ("member_rol", Some("member_role")),
            ("memebr_role", Some("member_role")),
            ("Regions", Some("regions")),
            ("regions", None), // known already
            ("region", Some("regions")),
            ("concurency", Some("concurrency")),
            ("colour", None),
            ("", None),
        ];
        for (word, want) in table {
            assert_eq!(nearest(word, keys), want, "{word}");
        }
        assert_eq!(
            nearest("evntbridge", ["eventbridge", "trail"]),
            Some("eventbridge")
        );
        assert_eq!(nearest("cis-4.99", ["cis-4.9", "cis-4.1"]), Some("cis-4.9"));
        assert_eq!(
            hint("trial", ["eventbridge", "trail"]),
            "; did you mean `trail`?"
        );
        assert_eq!(hint("x", ["eventbridge", "trail"]), "");
    }
}
