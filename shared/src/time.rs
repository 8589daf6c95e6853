//! Timestamps, without a date-time dependency: the forms AWS uses in events and logs
//! (RFC 3339 with `Z` or an offset, with or without fractions), as Unix milliseconds.
//! And durations as people write them (`30s`, `1h30m`), on `humantime`.

use std::time::Duration;

/// The units a duration may be written in, as every message lists them.
const UNITS: &str = "ms, s, m, h or d";

/// Parses a duration such as `"500ms"`, `"30s"`, `"15m"`, `"4h"`, `"1d"`, `"1h30m"` or
/// `"1h 30m"`: the one grammar of the agent's configuration, silences and the hub's flags.
///
/// The grammar (numbers, fractions such as `1.5h`, spaces, compound spans, overflow) is
/// `humantime::parse_duration`'s. On top of it, the units are limited to the symbols
/// `ms`, `s`, `m`, `h` and `d`, one spelling per unit as the docs and messages write them:
/// humantime's months (`M`, 30.44 days) and years are approximations a capital letter
/// away from minutes, nothing here is timed in weeks or below a millisecond, and its long
/// spellings (`2 hours`) were never accepted here. A number needs its unit: in a
/// configuration file `window = "15"` could mean seconds or minutes
/// ([`parse_duration_or_seconds`] is for the command-line flags that took bare seconds).
///
/// Errors name the text and list the units, e.g. `invalid duration "15x": unknown unit
/// "x" (ms, s, m, h or d)`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use humantime::DurationError as E;
    let invalid = |why: String| format!("invalid duration {text:?}: {why}");
    let d = humantime::parse_duration(text).map_err(|e| match e {
        E::Empty => invalid(format!("empty; expected a number followed by {UNITS}")),
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            invalid(format!("missing unit ({UNITS})"))
        }
        E::UnknownUnit { unit, .. } => invalid(format!("unknown unit {unit:?} ({UNITS})")),
        E::NumberOverflow => invalid("number too large".to_string()),
        E::InvalidCharacter(_) | E::NumberExpected(_) => {
            invalid(format!("expected a number followed by {UNITS}"))
        }
    })?;
    // humantime's units are its runs of letters (and `µ`).
    let units = text
        .split(|c: char| !(c.is_alphabetic() || c == 'µ'))
        .filter(|u| !u.is_empty());
    for unit in units {
        if !ALLOWED_UNITS.contains(&unit) {
            return Err(invalid(format!("unknown unit {unit:?} ({UNITS})")));
        }
    }
    Ok(d)
}

/// The unit symbols accepted, one per unit (humantime also reads `sec`, `minutes`, `hours`,
/// ...; the configuration, the docs and the messages use these only).
const ALLOWED_UNITS: &[&str] = &["ms", "s", "m", "h", "d"];

/// [`parse_duration`], or a bare number of seconds (`"90"`): the hub's command-line flags
/// (`--resync`, `--lease-ttl`, ...), which have always taken one, as `sleep(1)` does.
pub fn parse_duration_or_seconds(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration {text:?}: number too large"));
    }
    parse_duration(text).map_err(|e| format!("{e}; a bare number is seconds"))
}

/// Parses `2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.123Z`, `...+0000`, `...+00:00` and
/// other offsets, to Unix milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n];
        let mut ms = String::from(&digits[..n.min(3)]);
        while ms.len() < 3 {
            ms.push('0');
        }
        millis = ms.parse().ok()?;
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let oh: i64 = digits[..2].parse().ok()?;
            let om: i64 = digits[2..].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs * 1000 + millis)
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

// Howard Hinnant's days-from-civil algorithm (public domain description).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let secs = Duration::from_secs;
        for (text, want) in [
            ("500ms", Ok(Duration::from_millis(500))),
            ("30s", Ok(secs(30))),
            ("15m", Ok(secs(900))),
            ("4h", Ok(secs(14400))),
            ("1d", Ok(secs(86400))),
            ("1h30m", Ok(secs(5400))),
            ("1d12h", Ok(secs(129_600))),
            ("1h 30m", Ok(secs(5400))),
            (" 90s ", Ok(secs(90))),
            ("1.5h", Ok(secs(5400))),
            (
                "2 hours",
                Err(r#"invalid duration "2 hours": unknown unit "hours" (ms, s, m, h or d)"#),
            ),
            ("0s", Ok(Duration::ZERO)),
            (
                "15",
                Err(r#"invalid duration "15": missing unit (ms, s, m, h or d)"#),
            ),
            (
                "15x",
                Err(r#"invalid duration "15x": unknown unit "x" (ms, s, m, h or d)"#),
            ),
            (
                "1w",
                Err(r#"invalid duration "1w": unknown unit "w" (ms, s, m, h or d)"#),
            ),
            (
                "1M",
                Err(r#"invalid duration "1M": unknown unit "M" (ms, s, m, h or d)"#),
            ),
            (
                "1h 2y",
                Err(r#"invalid duration "1h 2y": unknown unit "y" (ms, s, m, h or d)"#),
            ),
            (
                "10us",
                Err(r#"invalid duration "10us": unknown unit "us" (ms, s, m, h or d)"#),
            ),
            (
                "soon",
                Err(r#"invalid duration "soon": expected a number followed by ms, s, m, h or d"#),
            ),
            (
                "m",
                Err(r#"invalid duration "m": expected a number followed by ms, s, m, h or d"#),
            ),
            (
                "-1s",
                Err(r#"invalid duration "-1s": expected a number followed by ms, s, m, h or d"#),
            ),
            (
                "",
                Err(
                    r#"invalid duration "": empty; expected a number followed by ms, s, m, h or d"#,
                ),
            ),
            (
                "99999999999999999999d",
                Err(r#"invalid duration "99999999999999999999d": number too large"#),
            ),
        ] {
            assert_eq!(
                parse_duration(text),
                want.map_err(str::to_string),
                "{text:?}"
            );
        }
        // The hub's flags: the same, and a bare number is seconds.
        assert_eq!(parse_duration_or_seconds("7"), Ok(secs(7)));
        assert_eq!(
            parse_duration_or_seconds("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse_duration_or_seconds("6h"), Ok(secs(21_600)));
        assert_eq!(
            parse_duration_or_seconds("5w"),
            Err(
                r#"invalid duration "5w": unknown unit "w" (ms, s, m, h or d); a bare number is seconds"#
                    .to_string()
            )
        );
        assert!(parse_duration_or_seconds("").is_err());
    }

    #[test]
    fn timestamps() {
        for (text, want) in [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-05-01T12:00:00Z", Some(1_714_564_800_000)),
            ("2024-05-01T12:00:00.123Z", Some(1_714_564_800_123)),
            ("2024-05-01T12:00:00.1+0000", Some(1_714_564_800_100)),
            ("2024-05-01T14:00:00.000+0200", Some(1_714_564_800_000)),
            ("2024-05-01T10:30:00-01:30", Some(1_714_564_800_000)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2024-13-01T00:00:00Z", None),
            ("2024-05-01", None),
            ("yesterday at noon", None),
            ("2024-05-01T12:00:00+0", None),
        ] {
            assert_eq!(parse_timestamp(text), want, "{text}");
        }
        assert_eq!(
            format_timestamp(1_714_564_800_123),
            "2024-05-01T12:00:00.123Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_timestamp(&format_timestamp(1_709_164_800_000)),
            Some(1_709_164_800_000)
        );
    }
}
