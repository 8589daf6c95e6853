use super::*;
use crate::commands::reconcile::{Mode, Outcome, Report};
use crate::config::HubConfig;
use crate::desired::{OrgFacts, RuleDeploy};
use crate::diff::{Change, FieldDiff};

const A: &str = "111122223333";
const B: &str = "444455556666";
const C: &str = "777788889999";

fn config_for(delivery: &str) -> HubConfig {
    let text = format!(
        "[hub]\nregions = [\"us-east-1\", \"eu-west-1\"]\n[trail]\nbucket = \"acme-trail\"\n[monitoring]\ndelivery = \"{delivery}\"\n"
    );
    shared::config::parse_toml(std::path::Path::new("t.toml"), &text).expect("config")
}

fn config() -> HubConfig {
    config_for("trail")
}

fn rules(config: &HubConfig) -> Vec<RuleDeploy> {
    let pack = shared::rules::Pack::builtin().expect("pack");
    crate::commands::pack::deployments(config, &pack).expect("deployments")
}

fn org() -> OrgFacts {
    OrgFacts {
        org_id: Some("o-abc".into()),
        management_account: "123456789012".into(),
        central_account: "123456789012".into(),
        hub_account: "123456789012".into(),
        root_id: Some("r-abcd".into()),
    }
}

/// A member region where everything declared is as declared.
fn clean(config: &HubConfig, rules: &[RuleDeploy], account: &str, region: &str) -> Outcome {
    let declared = crate::desired::member(config, &org(), rules, account, region);
    let mut o = Outcome::failed(account, region, "member", String::new());
    o.status = "ok";
    o.error = None;
    o.coverage = declared.keys().cloned().collect();
    o
}

fn report(results: Vec<Outcome>, rules: &[RuleDeploy]) -> Report {
    Report {
        schema_version: 1,
        command: Mode::Status,
        setup: "organization",
        organization_id: Some("o-abc".into()),
        central_account: "123456789012".into(),
        delivery: crate::config::Delivery::Trail,
        rules: rules.iter().map(|r| r.id.clone()).collect(),
        results,
        writes: 0,
        calls: 0,
        calls_by_account: Default::default(),
        calls_by_operation: Default::default(),
        warnings: Vec::new(),
    }
}

/// A: all as declared. B: cis-4.3's alarm deleted, cis-4.10's filter changed (which must
/// not fail cis-4.1, whose name is its prefix). C: could not be read. eu-west-1 receives
/// no events with trail delivery, so it is not checked.
fn fixture(config: &HubConfig, rules: &[RuleDeploy]) -> Report {
    let mut b = clean(config, rules, B, "us-east-1");
    let alarm = ResourceKey::new(
        B,
        "us-east-1",
        Kind::Alarm,
        shared::naming::alarm_name("cis-4.3"),
    );
    let filter = ResourceKey::new(
        B,
        "us-east-1",
        Kind::MetricFilter,
        shared::naming::metric_filter_name("cis-4.10", 0),
    );
    b.coverage.retain(|k| k != &alarm && k != &filter);
    b.status = "drift";
    b.changes = vec![
        Change {
            key: alarm,
            action: Action::Create,
            desired: None,
            observed: None,
        },
        Change {
            key: filter,
            action: Action::Update {
                fields: vec![FieldDiff {
                    field: "pattern".into(),
                    observed: "{ $.x = 1 }".into(),
                    desired: "{ $.y = <2> }".into(),
                }],
            },
            desired: None,
            observed: None,
        },
    ];
    let mut not_member = clean(config, rules, "123456789012", "us-east-1");
    not_member.scope = "central";
    report(
        vec![
            not_member,
            clean(config, rules, A, "us-east-1"),
            clean(config, rules, A, "eu-west-1"),
            b,
            Outcome::failed(
                C,
                "-",
                "member",
                "cannot assume <role>: AccessDenied".into(),
            ),
        ],
        rules,
    )
}

fn index(c: &Compliance<'_>, id: &str) -> usize {
    c.rules.iter().position(|r| r.id() == id).expect("rule")
}

#[test]
fn each_member_account_and_rule_gets_the_verdict_its_resources_give() {
    let config = config();
    let rules = rules(&config);
    let r = fixture(&config, &rules);
    let c = Compliance::of(&r, &rules, &["us-east-1".to_string()], 0);
    let n = rules.len();
    // Three member accounts, us-east-1 only (and C's unreadable account as a whole).
    assert_eq!(c.checks.len(), 3 * n, "{:#?}", c.checks);
    let verdict = |account: &str, id: &str| {
        c.checks
            .iter()
            .find(|k| k.account == account && k.rule == index(&c, id))
            .map(|k| (k.verdict, k.reason.clone()))
            .expect("check")
    };
    for r in &rules {
        assert_eq!(verdict(A, &r.id).0, Verdict::Pass, "{}", r.id);
        assert_eq!(verdict(C, &r.id).0, Verdict::Unknown, "{}", r.id);
    }
    assert_eq!(
        verdict(B, "cis-4.3"),
        (
            Verdict::Fail,
            "alarm orgwatch-cis-4.3 is missing".to_string()
        )
    );
    assert_eq!(
        verdict(B, "cis-4.10"),
        (
            Verdict::Fail,
            "metric-filter orgwatch-cis-4.10 differs (pattern)".to_string()
        )
    );
    assert_eq!(verdict(B, "cis-4.1").0, Verdict::Pass);
    assert_eq!(c.count(Verdict::Fail), 2);
    assert_eq!(c.count(Verdict::Unknown), n);
    assert!(verdict(C, "cis-4.3").1.contains("AccessDenied"));

    let accounts = c.accounts();
    assert_eq!(
        accounts.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![A, B, C]
    );
    assert_eq!(accounts[1].1[index(&c, "cis-4.3")].verdict, Verdict::Fail);
    assert_eq!(c.drift.len(), 2);
    // Sorted by key: the metric filter's kind comes before the alarm's.
    assert_eq!(c.drift[1].key.kind, Kind::Alarm);
    assert_eq!(
        c.drift[0].fields,
        vec!["pattern: { $.x = 1 } -> { $.y = <2> }".to_string()]
    );
}

#[test]
fn a_rule_passes_in_an_account_only_when_it_holds_in_every_region_that_receives_events() {
    let config = config_for("eventbridge");
    let rules = rules(&config);
    let mut eu = clean(&config, &rules, A, "eu-west-1");
    let alarm = ResourceKey::new(
        A,
        "eu-west-1",
        Kind::Alarm,
        shared::naming::alarm_name("cis-4.3"),
    );
    eu.coverage.retain(|k| k != &alarm);
    let r = report(vec![clean(&config, &rules, A, "us-east-1"), eu], &rules);
    let both = ["us-east-1".to_string(), "eu-west-1".to_string()];
    let c = Compliance::of(&r, &rules, &both, 0);
    let cell = &c.accounts()[0].1[index(&c, "cis-4.3")];
    assert_eq!(cell.verdict, Verdict::Fail);
    assert_eq!(cell.checks.len(), 2);
    assert_eq!(cell.checks[0].reason, "alarm orgwatch-cis-4.3 was not seen");
}

#[test]
fn csv_has_a_header_and_one_row_per_check() {
    let config = config();
    let rules = rules(&config);
    let r = fixture(&config, &rules);
    let c = Compliance::of(&r, &rules, &["us-east-1".to_string()], 1_764_633_600_000);
    let text = Format::Csv.render(&c);
    // Rows end in CRLF; remediation texts hold quoted line breaks.
    let records = text.split("\r\n").filter(|l| !l.is_empty()).count();
    assert_eq!(records, 1 + c.checks.len());
    assert!(
        text.starts_with(
            "generated_at,organization_id,account_id,region,standard,control,rule_id,"
        )
    );
    let row = text
        .split("\r\n")
        .find(|l| l.contains(B) && l.contains(",cis-4.3,"))
        .expect("row");
    assert!(
        row.starts_with(&format!(
            "2025-12-02T00:00:00.000Z,o-abc,{B},us-east-1,CIS AWS Foundations Benchmark v3.0.0,4.3,cis-4.3,Usage of the root user,high,CloudWatch.1,FAIL,alarm orgwatch-cis-4.3 is missing,"
        )),
        "{row}"
    );
}

#[test]
fn ocsf_findings_carry_what_the_compliance_finding_class_requires() {
    let config = config();
    let rules = rules(&config);
    let r = fixture(&config, &rules);
    let c = Compliance::of(&r, &rules, &["us-east-1".to_string()], 1_764_633_600_000);
    let v: serde_json::Value = serde_json::from_str(&Format::Ocsf.render(&c)).expect("json");
    let findings = v.as_array().expect("array");
    assert_eq!(findings.len(), c.checks.len());
    let f = findings
        .iter()
        .find(|f| f["cloud"]["account"]["uid"] == B && f["metadata"]["event_code"] == "cis-4.3")
        .expect("finding");
    assert_eq!(f["class_uid"], 2003);
    assert_eq!(f["type_uid"], 200301);
    assert_eq!(f["severity_id"], 4);
    assert_eq!(f["time"], 1_764_633_600_000_i64);
    assert_eq!(f["compliance"]["status_id"], 3);
    assert_eq!(f["compliance"]["control"], "4.3");
    assert_eq!(f["compliance"]["standards"][0], CIS_BENCHMARK);
    assert_eq!(f["status_detail"], "alarm orgwatch-cis-4.3 is missing");
    assert_eq!(
        f["resources"][1]["uid"],
        format!("arn:aws:cloudwatch:us-east-1:{B}:alarm:orgwatch-cis-4.3")
    );
    assert_eq!(f["cloud"]["org"]["uid"], "o-abc");
    let unknown = findings
        .iter()
        .find(|f| f["cloud"]["account"]["uid"] == C)
        .expect("finding");
    assert_eq!(unknown["compliance"]["status_id"], 0);
}

#[test]
fn html_escapes_what_it_shows_and_has_one_row_per_account() {
    let config = config();
    let rules = rules(&config);
    let r = fixture(&config, &rules);
    let c = Compliance::of(&r, &rules, &["us-east-1".to_string()], 0);
    let html = Format::Html.render(&c);
    assert_eq!(html.matches("<tr class=\"account\"").count(), 3);
    assert!(html.contains("1 of 3 accounts fully covered"), "{html}");
    // The error text and the field values arrive as text, not markup.
    assert!(html.contains("cannot assume &lt;role&gt;: AccessDenied"));
    assert!(html.contains("{ $.y = &lt;2&gt; }"));
    assert!(!html.contains("<role>") && !html.contains("<2>"));
    assert!(html.contains(CIS_BENCHMARK));
    // Nothing is loaded from elsewhere.
    for tag in ["<script", "<link", "<img", "@import", "url("] {
        assert!(!html.contains(tag), "{tag}");
    }
    assert!(html.contains(
        "href=\"https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/orgwatch-cis-4.3\""
    ));
}
