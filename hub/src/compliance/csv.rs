//! `hub status --output csv`: one row per member account, region and rule, for
//! spreadsheets. RFC 4180: comma-separated, CRLF line ends, a header row, fields with a
//! comma, quote or line break quoted, quotes doubled.

use super::{Compliance, RuleInfo};

const HEADER: [&str; 14] = [
    "generated_at",
    "organization_id",
    "account_id",
    "region",
    "standard",
    "control",
    "rule_id",
    "title",
    "severity",
    "security_hub_control",
    "status",
    "reason",
    "resources",
    "remediation",
];

pub fn render(c: &Compliance<'_>) -> String {
    let generated = shared::time::format_timestamp(c.generated_at_ms);
    let mut out = String::new();
    line(&mut out, HEADER.iter().map(|h| h.to_string()));
    for check in &c.checks {
        let Some(info) = c.rules.get(check.rule) else {
            continue;
        };
        let RuleInfo { rule, control } = info;
        let resources: Vec<String> = check
            .resources
            .iter()
            .map(|k| format!("{} {}", k.kind, k.name))
            .collect();
        line(
            &mut out,
            [
                generated.clone(),
                c.organization_id.unwrap_or("").to_string(),
                check.account.clone(),
                check.region.clone(),
                info.standard().to_string(),
                control.unwrap_or("").to_string(),
                rule.id.clone(),
                rule.title.clone(),
                rule.deployed.severity.as_str().to_string(),
                rule.deployed.security_hub.clone().unwrap_or_default(),
                check.verdict.as_str().to_string(),
                check.reason.clone(),
                resources.join("; "),
                rule.deployed.remediation.trim().to_string(),
            ],
        );
    }
    out
}

fn line(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, &f);
    }
    out.push_str("\r\n");
}

/// One field, quoted when it must be. A field a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return; OWASP's "CSV
/// injection") gets a leading `'`, so error text or a resource name from an account
/// cannot run in the reader's spreadsheet.
fn field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for ch in value.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_when_they_must_be_and_formulas_are_defused() {
        let table = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1", "\"'+1\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("", ""),
        ];
        for (value, want) in table {
            let mut out = String::new();
            field(&mut out, value);
            assert_eq!(out, want, "{value:?}");
        }
    }
}
