//! `hub status --output html`: a self-contained coverage report a person opens in a
//! browser: accounts x rules heat map, the drift list, what could not be read, when it
//! was generated and which CIS version the rules implement. One file: inline CSS, no
//! script, nothing loaded from anywhere. Every value is escaped.

use std::fmt::Write;

use super::{Cell, Compliance, Verdict};
use crate::model::Kind;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem; color: #1b1f23; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #57606a; margin: 0.2rem 0; }
.summary span { display: inline-block; margin-right: 1.5rem; font-weight: 600; }
table { border-collapse: collapse; margin-top: 0.8rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; font-size: 0.85rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
#coverage td { text-align: center; min-width: 3.2rem; font-weight: 600; }
td.pass { background: #c8e6c9; color: #1b5e20; }
td.fail { background: #ef9a9a; color: #7f0000; }
td.unknown { background: #e0e0e0; color: #424242; }
.legend span { display: inline-block; padding: 0.1rem 0.6rem; margin-right: 0.6rem; border: 1px solid #d0d7de; }
code { font-size: 0.85rem; }
a { color: inherit; }
";

pub fn render(c: &Compliance<'_>) -> String {
    let mut h = String::new();
    let generated = shared::time::format_timestamp(c.generated_at_ms);
    let scope = match c.organization_id {
        Some(org) => format!(
            "organization {} (central account {})",
            esc(org),
            esc(c.central_account)
        ),
        None => format!("standalone account {}", esc(c.central_account)),
    };
    let accounts = c.accounts();
    let covered = accounts
        .iter()
        .filter(|(_, cells)| cells.iter().all(|cell| cell.verdict == Verdict::Pass))
        .count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"generator\" content=\"orgwatch {version}\">\n\
         <title>orgwatch coverage report {generated}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>orgwatch coverage report</h1>\n\
         <p class=\"meta\">{scope}; delivery <code>{delivery}</code></p>\n\
         <p class=\"meta\">Generated at <time datetime=\"{generated}\">{generated}</time>. \
         The <code>cis-*</code> rules implement the {cis} (Monitoring); a rule passes in an \
         account when its metric filters and alarm exist as declared in every region that \
         receives the account's CloudTrail events.</p>\n\
         <p class=\"summary\"><span id=\"accounts-covered\">{covered} of {total} accounts fully covered</span>\
         <span>{pass} checks pass</span><span>{fail} fail</span><span>{unknown} unknown</span></p>\n\
         <p class=\"legend\"><span class=\"pass\" style=\"background:#c8e6c9\">PASS</span>\
         <span style=\"background:#ef9a9a\">FAIL</span><span style=\"background:#e0e0e0\">UNKNOWN (not readable)</span></p>\n",
        version = env!("CARGO_PKG_VERSION"),
        delivery = esc(c.delivery),
        cis = esc(super::CIS_BENCHMARK),
        total = accounts.len(),
        pass = c.count(Verdict::Pass),
        fail = c.count(Verdict::Fail),
        unknown = c.count(Verdict::Unknown),
    );

    h.push_str(
        "<h2>Coverage: accounts x rules</h2>\n<table id=\"coverage\">\n<thead><tr><th>Account</th>",
    );
    for r in &c.rules {
        let _ = write!(
            h,
            "<th title=\"{title} ({severity})\">{id}</th>",
            title = esc(&r.rule.title),
            severity = r.rule.deployed.severity.as_str(),
            id = esc(r.id()),
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (account, cells) in &accounts {
        let _ = write!(
            h,
            "<tr class=\"account\" data-account=\"{a}\"><th>{a}</th>",
            a = esc(account)
        );
        for (cell, rule) in cells.iter().zip(&c.rules) {
            cell_html(&mut h, cell, rule.id());
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");

    h.push_str("<h2>Rules</h2>\n<table id=\"rules\">\n<thead><tr><th>Rule</th><th>Standard</th><th>Control</th><th>Title</th><th>Severity</th><th>Security Hub</th></tr></thead>\n<tbody>\n");
    for r in &c.rules {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r.id()),
            esc(r.standard()),
            esc(r.control.unwrap_or("-")),
            esc(&r.rule.title),
            r.rule.deployed.severity.as_str(),
            esc(r.rule.deployed.security_hub.as_deref().unwrap_or("-")),
        );
    }
    h.push_str("</tbody>\n</table>\n");

    let _ = writeln!(h, "<h2>Drift ({})</h2>", c.drift.len());
    if c.drift.is_empty() {
        h.push_str("<p id=\"drift\">Everything is as declared.</p>\n");
    } else {
        h.push_str("<table id=\"drift\">\n<thead><tr><th>Account</th><th>Region</th><th>Kind</th><th>Name</th><th>Drift</th><th>Fields (observed -&gt; declared)</th></tr></thead>\n<tbody>\n");
        for d in &c.drift {
            let link = (d.key.kind == Kind::Alarm)
                .then(|| shared::naming::console::alarm(&d.key.region, &d.key.name))
                .flatten();
            let name = match link {
                Some(url) => format!("<a href=\"{}\">{}</a>", esc(&url), esc(&d.key.name)),
                None => esc(&d.key.name),
            };
            let fields: Vec<String> = d.fields.iter().map(|f| esc(f)).collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{name}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.key.account),
                esc(&d.key.region),
                d.key.kind,
                esc(&d.what),
                fields.join("<br>"),
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    if !c.failures.is_empty() {
        let _ = write!(
            h,
            "<h2>Not readable ({})</h2>\n<ul id=\"failures\">\n",
            c.failures.len()
        );
        for (account, region, why) in &c.failures {
            let _ = writeln!(h, "<li>{} {}: {}</li>", esc(account), esc(region), esc(why));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn cell_html(h: &mut String, cell: &Cell<'_>, rule: &str) {
    let (class, mark) = match cell.verdict {
        Verdict::Pass => ("pass", "PASS"),
        Verdict::Fail => ("fail", "FAIL"),
        Verdict::Unknown => ("unknown", "?"),
    };
    let detail: Vec<String> = cell
        .checks
        .iter()
        .map(|k| {
            if k.reason.is_empty() {
                format!("{}: {}", k.region, k.verdict.as_str())
            } else {
                format!("{}: {} ({})", k.region, k.verdict.as_str(), k.reason)
            }
        })
        .collect();
    // A failing cell links to its alarm in the first failing region's console.
    let link = cell
        .checks
        .iter()
        .find(|k| k.verdict == Verdict::Fail)
        .and_then(|k| shared::naming::console::alarm(&k.region, &shared::naming::alarm_name(rule)));
    let _ = write!(
        h,
        "<td class=\"{class}\" data-rule=\"{}\" title=\"{}\">",
        esc(rule),
        esc(&detail.join("\n"))
    );
    match link {
        Some(url) => {
            let _ = write!(h, "<a href=\"{}\">{mark}</a>", esc(&url));
        }
        None => h.push_str(mark),
    }
    h.push_str("</td>");
}

/// Text for HTML content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
