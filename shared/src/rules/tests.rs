use std::path::Path;

use serde_json::{Value as Json, json};

use super::*;
use crate::pattern::{Event, Pattern};

fn builtin() -> Pack {
    match Pack::builtin() {
        Ok(p) => p,
        Err(e) => panic!("built-in pack does not load:\n{e}"),
    }
}

/// Every built-in rule, the seed pack's own included.
fn every() -> Pack {
    match Pack::every_builtin() {
        Ok(p) => p,
        Err(e) => panic!("built-in rules do not load:\n{e}"),
    }
}

fn selected(pack: &[&str], disable: &[&str]) -> Vec<String> {
    let pack: Vec<String> = pack.iter().map(|s| s.to_string()).collect();
    let disable: Vec<String> = disable.iter().map(|s| s.to_string()).collect();
    Pack::from_config(&pack, &disable, &UserRules::none())
        .unwrap_or_else(|e| panic!("{e}"))
        .rules()
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

fn user(text: &str) -> UserRules {
    match UserRules::from_toml(Path::new("hub.toml"), text) {
        Ok(u) => u,
        Err(e) => panic!("user rules do not parse:\n{e}"),
    }
}

fn load_err(pack: &[&str], disable: &[&str], text: &str) -> PackError {
    let pack: Vec<String> = pack.iter().map(|s| s.to_string()).collect();
    let disable: Vec<String> = disable.iter().map(|s| s.to_string()).collect();
    match Pack::from_config(&pack, &disable, &user(text)) {
        Ok(p) => panic!(
            "expected errors, loaded {:?}",
            p.rules().iter().map(|r| &r.id).collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

fn fixture<'a>(rule: &'a Rule, name_part: &str) -> &'a Fixture {
    rule.fixtures
        .iter()
        .find(|f| f.name.contains(name_part))
        .unwrap_or_else(|| panic!("{}: no fixture named like {name_part:?}", rule.id))
}

// ---------------------------------------------------------------------------------------
// The built-in pack.

#[test]
fn builtin_pack_has_cis_4_1_to_4_15_root_activity_and_orgwatch_tamper() {
    let pack = builtin();
    let ids: Vec<&str> = pack.rules().iter().map(|r| r.id.as_str()).collect();
    let mut want = vec!["root-activity".to_string()];
    want.extend((1..=15).map(|n| format!("cis-4.{n}")));
    want.push("orgwatch-tamper".to_string());
    assert_eq!(ids, want);
    assert!(pack.rules().iter().all(|r| r.origin.is_builtin()));
    assert!(
        pack.rules()
            .iter()
            .all(|r| r.namespace == naming::METRIC_NAMESPACE)
    );
}

#[test]
fn every_builtin_is_the_default_pack_and_the_seed_rules() {
    let ids: Vec<String> = every().rules().iter().map(|r| r.id.clone()).collect();
    let mut want = selected(&["all"], &[]);
    want.extend([
        "seed-api-without-mfa".into(),
        "seed-kms-decrypt-failures".into(),
    ]);
    assert_eq!(ids, want);
    assert!(every().rules().iter().all(|r| r.origin.is_builtin()));
}

#[test]
fn builtin_fixtures_all_pass_in_both_delivery_forms() {
    let report = every().verify();
    let failures: Vec<String> = report.failures().map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(report.fixture_count() >= 18 * 4);
    // root-activity's covering of cis-4.3 was checked on cis-4.3's matching fixtures.
    let root = report
        .rules
        .iter()
        .find(|r| r.rule == "root-activity")
        .expect("root-activity report");
    let cis_4_3 = every();
    let cis_4_3 = cis_4_3.get("cis-4.3").expect("4.3");
    assert_eq!(root.covered_fixtures, cis_4_3.positive_fixtures().count());
    assert!(root.covered_fixtures >= 2);
}

#[test]
fn every_builtin_rule_has_two_matches_and_two_close_misses() {
    for rule in every().rules() {
        let yes = rule.positive_fixtures().count();
        let no = rule.negative_fixtures().count();
        assert!(yes >= 2 && no >= 2, "{}: {yes} matching, {no} not", rule.id);
        for f in &rule.fixtures {
            // Realistic CloudTrail records: the fields every record has.
            for key in [
                "eventVersion",
                "eventTime",
                "eventSource",
                "eventName",
                "eventID",
            ] {
                assert!(
                    f.event.get(key).is_some(),
                    "{} / {}: no {key}",
                    rule.id,
                    f.name
                );
            }
            let loc = f.location.as_ref().expect("built-in fixtures are located");
            assert!(loc.path.starts_with(BUILTIN_DIR), "{loc}");
        }
    }
}

#[test]
fn every_builtin_rule_is_complete() {
    for rule in every().rules() {
        assert!(!rule.title.is_empty(), "{}", rule.id);
        assert!(!rule.description.is_empty(), "{}", rule.id);
        assert!(!rule.remediation.is_empty(), "{}", rule.id);
        assert!(rule.pattern.as_str().starts_with('{'), "{}", rule.id);
        if rule.forward {
            assert!(rule.severity >= Severity::High, "{} forwards", rule.id);
            let eb = rule
                .eventbridge_pattern
                .as_ref()
                .expect("forwarding pattern");
            assert!(
                eb.get("detail").is_some() || eb.get("source").is_some(),
                "{}: {eb}",
                rule.id
            );
        }
    }
}

#[test]
fn every_pattern_fits_the_aws_limit() {
    for rule in every().rules() {
        let n = rule.pattern.as_str().chars().count();
        assert!(n <= MAX_PATTERN_CHARS, "{}: {n} characters", rule.id);
    }
}

/// The `detail.`-prefixed compact form of each rule; the ones over 1,024 characters are
/// split. This pins which rules are split, so a pattern change that moves one across the
/// limit is noticed (`--nocapture` prints the sizes).
#[test]
fn eventbridge_filters_fit_and_only_the_long_rules_are_split() {
    let mut split = Vec::new();
    for rule in every().rules() {
        let single = rule.pattern.with_selector_prefix("detail");
        let filters = rule
            .eventbridge_filters()
            .unwrap_or_else(|e| panic!("{}: {e}", rule.id));
        for f in &filters {
            assert!(f.chars().count() <= MAX_PATTERN_CHARS, "{}: {f}", rule.id);
            assert!(f.contains("$.detail."), "{}: {f}", rule.id);
            assert!(!f.contains("$.eventName"), "{}: {f}", rule.id);
        }
        eprintln!(
            "{:>14} original {:>4} chars, detail-prefixed compact {:>4} chars in {} filter(s)",
            rule.id,
            rule.pattern.as_str().chars().count(),
            filters.iter().map(|f| f.chars().count()).sum::<usize>(),
            filters.len()
        );
        match single {
            Ok(p) => {
                assert_eq!(filters, vec![p.to_compact_string()], "{}", rule.id);
            }
            Err(_) => {
                assert!(filters.len() >= 2, "{}", rule.id);
                split.push(rule.id.clone());
            }
        }
    }
    // Printed compactly, every built-in fits in one filter (the longest, cis-4.15, is 940
    // characters); the splitting itself is tested on synthetic patterns below.
    assert_eq!(split, Vec::<String>::new());
}

/// Security Hub checks CloudWatch.1-14 against the CIS texts. The texts below are the ones
/// the Security Hub user guide prints; ours must mean exactly the same (same syntax tree,
/// compared through the compact printer), except where noted.
#[test]
fn patterns_mean_what_security_hub_checks() {
    let security_hub: &[(&str, &str, &str)] = &[
        (
            "cis-4.2",
            "CloudWatch.3",
            r#"{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") && ($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }"#,
        ),
        (
            "cis-4.3",
            "CloudWatch.1",
            r#"{$.userIdentity.type="Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType !="AwsServiceEvent"}"#,
        ),
        (
            "cis-4.4",
            "CloudWatch.4",
            "{($.eventName=DeleteGroupPolicy) || ($.eventName=DeleteRolePolicy) || ($.eventName=DeleteUserPolicy) || ($.eventName=PutGroupPolicy) || ($.eventName=PutRolePolicy) || ($.eventName=PutUserPolicy) || ($.eventName=CreatePolicy) || ($.eventName=DeletePolicy) || ($.eventName=CreatePolicyVersion) || ($.eventName=DeletePolicyVersion) || ($.eventName=AttachRolePolicy) || ($.eventName=DetachRolePolicy) || ($.eventName=AttachUserPolicy) || ($.eventName=DetachUserPolicy) || ($.eventName=AttachGroupPolicy) || ($.eventName=DetachGroupPolicy)}",
        ),
        (
            "cis-4.5",
            "CloudWatch.5",
            "{($.eventName=CreateTrail) || ($.eventName=UpdateTrail) || ($.eventName=DeleteTrail) || ($.eventName=StartLogging) || ($.eventName=StopLogging)}",
        ),
        (
            "cis-4.6",
            "CloudWatch.6",
            r#"{($.eventName=ConsoleLogin) && ($.errorMessage="Failed authentication")}"#,
        ),
        (
            "cis-4.7",
            "CloudWatch.7",
            "{($.eventSource=kms.amazonaws.com) && (($.eventName=DisableKey) || ($.eventName=ScheduleKeyDeletion))}",
        ),
        (
            "cis-4.8",
            "CloudWatch.8",
            "{($.eventSource=s3.amazonaws.com) && (($.eventName=PutBucketAcl) || ($.eventName=PutBucketPolicy) || ($.eventName=PutBucketCors) || ($.eventName=PutBucketLifecycle) || ($.eventName=PutBucketReplication) || ($.eventName=DeleteBucketPolicy) || ($.eventName=DeleteBucketCors) || ($.eventName=DeleteBucketLifecycle) || ($.eventName=DeleteBucketReplication))}",
        ),
        (
            "cis-4.9",
            "CloudWatch.9",
            "{($.eventSource=config.amazonaws.com) && (($.eventName=StopConfigurationRecorder) || ($.eventName=DeleteDeliveryChannel) || ($.eventName=PutDeliveryChannel) || ($.eventName=PutConfigurationRecorder))}",
        ),
        (
            "cis-4.10",
            "CloudWatch.10",
            "{($.eventName=AuthorizeSecurityGroupIngress) || ($.eventName=AuthorizeSecurityGroupEgress) || ($.eventName=RevokeSecurityGroupIngress) || ($.eventName=RevokeSecurityGroupEgress) || ($.eventName=CreateSecurityGroup) || ($.eventName=DeleteSecurityGroup)}",
        ),
        (
            "cis-4.11",
            "CloudWatch.11",
            "{($.eventName=CreateNetworkAcl) || ($.eventName=CreateNetworkAclEntry) || ($.eventName=DeleteNetworkAcl) || ($.eventName=DeleteNetworkAclEntry) || ($.eventName=ReplaceNetworkAclEntry) || ($.eventName=ReplaceNetworkAclAssociation)}",
        ),
        (
            "cis-4.12",
            "CloudWatch.12",
            "{($.eventName=CreateCustomerGateway) || ($.eventName=DeleteCustomerGateway) || ($.eventName=AttachInternetGateway) || ($.eventName=CreateInternetGateway) || ($.eventName=DeleteInternetGateway) || ($.eventName=DetachInternetGateway)}",
        ),
        (
            "cis-4.14",
            "CloudWatch.14",
            "{($.eventName=CreateVpc) || ($.eventName=DeleteVpc) || ($.eventName=ModifyVpcAttribute) || ($.eventName=AcceptVpcPeeringConnection) || ($.eventName=CreateVpcPeeringConnection) || ($.eventName=DeleteVpcPeeringConnection) || ($.eventName=RejectVpcPeeringConnection) || ($.eventName=AttachClassicLinkVpc) || ($.eventName=DetachClassicLinkVpc) || ($.eventName=DisableVpcClassicLink) || ($.eventName=EnableVpcClassicLink)}",
        ),
    ];
    let pack = builtin();
    for (id, control, text) in security_hub {
        let rule = pack.get(id).expect(id);
        assert_eq!(rule.security_hub.as_deref(), Some(*control), "{id}");
        let theirs = Pattern::parse(text).expect("Security Hub text parses");
        assert_eq!(
            rule.pattern.to_compact_string(),
            theirs.to_compact_string(),
            "{id} differs from {control}"
        );
    }
    // CIS v1.4/v3 4.13 adds the event source to the v1.2 text Security Hub prints.
    let r413 = pack.get("cis-4.13").expect("4.13");
    assert_eq!(r413.security_hub.as_deref(), Some("CloudWatch.13"));
    assert!(
        r413.pattern
            .as_str()
            .starts_with("{ ($.eventSource = ec2.amazonaws.com) && ("),
        "{}",
        r413.pattern.as_str()
    );
    // 4.15 has no Security Hub control.
    assert_eq!(pack.get("cis-4.15").expect("4.15").security_hub, None);
    // root-activity is the recipe's rule: the CIS 4.3 text, with console actions of the
    // root user (invokedBy signin.amazonaws.com) let in; it covers 4.3.
    let root = pack.get("root-activity").expect("root");
    let want = Pattern::parse(
        r#"{$.userIdentity.type="Root" && ($.userIdentity.invokedBy NOT EXISTS || $.userIdentity.invokedBy="signin.amazonaws.com") && $.eventType !="AwsServiceEvent"}"#,
    )
    .expect("parses");
    assert_eq!(root.pattern.to_compact_string(), want.to_compact_string());
    assert_eq!(root.covers, vec!["cis-4.3"]);
    assert!(
        pack.rules()
            .iter()
            .filter(|r| r.id != "root-activity")
            .all(|r| r.covers.is_empty())
    );
}

/// CloudTrail records the root user's actions in the AWS Management Console with
/// `userIdentity.invokedBy` = "signin.amazonaws.com" (the CloudTrail user guide's
/// userIdentity examples). root-activity counts and forwards them; cis-4.3, the CIS text,
/// does not; an AWS service acting for root stays out of both.
#[test]
fn root_console_actions_are_root_activity() {
    let pack = builtin();
    let root = pack.get("root-activity").expect("root");
    let cis = pack.get("cis-4.3").expect("4.3");
    let console = fixture(root, "in the console (invokedBy signin.amazonaws.com)");
    assert!(console.matches);
    assert_eq!(
        console.event["userIdentity"]["invokedBy"],
        "signin.amazonaws.com"
    );
    let service = fixture(root, "AWS service acting for the root user");
    assert!(!service.matches);
    assert_eq!(
        service.event["userIdentity"]["invokedBy"],
        "config.amazonaws.com"
    );

    let matching = |f: &Fixture| -> Vec<String> {
        let trail = f.message();
        let trail = pack
            .matching(&Event::from_message(&trail))
            .map(|r| r.id.clone())
            .filter(|id| id == "root-activity" || id == "cis-4.3")
            .collect::<Vec<_>>();
        // The same in eventbridge delivery, through each rule's derived filters.
        let wrapped = envelope(&f.event).to_string();
        let wrapped = Event::from_message(&wrapped);
        let eb: Vec<String> = [root, cis]
            .iter()
            .filter(|r| {
                r.eventbridge_filters()
                    .expect("filters")
                    .iter()
                    .any(|p| Pattern::parse(p).expect("parses").matches(&wrapped))
            })
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(trail, eb, "{}", f.name);
        trail
    };
    assert_eq!(matching(console), vec!["root-activity"]);
    assert!(matching(service).is_empty());
    // And it is forwarded: its envelope matches the forwarding pattern.
    let forward = root
        .eventbridge_pattern
        .as_ref()
        .expect("forwarding pattern");
    assert_eq!(
        eventbridge_match(forward, &envelope(&console.event)),
        Ok(true)
    );
    assert_eq!(
        eventbridge_match(forward, &envelope(&service.event)),
        Ok(false)
    );
}

/// Every forwarding rule's EventBridge pattern agrees with its fixtures: a record that must
/// match the filter pattern is forwarded, and a close miss is not (console actions that are
/// not API calls too: "AWS Console Action via CloudTrail", which the hub's member and central
/// rules admit, `CLOUDTRAIL_DETAIL_TYPES` in hub/src/desired.rs).
#[test]
fn forwarding_patterns_agree_with_the_fixtures() {
    const NOT_FORWARDED: &[(&str, &str)] = &[];
    let mut forwarded = 0;
    let mut problems = Vec::new();
    for rule in every().rules() {
        let Some(pattern) = &rule.eventbridge_pattern else {
            continue;
        };
        forwarded += 1;
        // As the hub sends it (hub/src/desired.rs `only_from_aws`: compact, with the `aws.`
        // source prefix added): EventBridge takes at most 4,096 characters (API reference,
        // PutRule, EventPattern).
        let mut sent = pattern.clone();
        if let Json::Object(m) = &mut sent {
            m.entry("source").or_insert(json!([{"prefix": "aws."}]));
        }
        let chars = sent.to_string().chars().count();
        assert!(
            chars <= 4096,
            "{}: forwarding pattern of {chars} characters",
            rule.id
        );
        for f in &rule.fixtures {
            let gap = NOT_FORWARDED.contains(&(rule.id.as_str(), f.name.as_str()));
            if gap {
                assert_eq!(f.event["eventType"], "AwsConsoleAction", "{}", f.name);
            }
            match eventbridge_match(pattern, &envelope(&f.event)) {
                Ok(m) if m == (f.matches && !gap) => {}
                Ok(m) => problems.push(format!(
                    "{} / {}: forwarding pattern {} it",
                    rule.id,
                    f.name,
                    if m { "matches" } else { "does not match" }
                )),
                Err(e) => problems.push(format!("{} / {}: {e}", rule.id, f.name)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(forwarded >= 6);
}

/// EventBridge event-pattern matching, for the operators the built-in rules use and a few
/// more, as EventBridge documents them ("Comparison operators for use in event patterns in
/// Amazon EventBridge"): each array is a list of alternatives; `$or` (at any level) takes
/// objects, any of which may match; a field other than `{"exists": false}` matches only
/// when the event has it; an array in the event matches when any element does.
fn eventbridge_match(pattern: &Json, event: &Json) -> Result<bool, String> {
    let Json::Object(fields) = pattern else {
        return Err(format!("not an object: {pattern}"));
    };
    for (key, want) in fields {
        let ok = if key == "$or" {
            let alternatives = want.as_array().ok_or("$or takes an array")?;
            let mut any = false;
            for alt in alternatives {
                any |= eventbridge_match(alt, event)?;
            }
            any
        } else {
            let value = event.get(key);
            match want {
                Json::Object(_) => match value {
                    Some(v @ Json::Object(_)) => eventbridge_match(want, v)?,
                    // Nothing under it: only `exists: false` leaves could match.
                    _ => eventbridge_match(want, &Json::Object(Default::default()))?,
                },
                Json::Array(alternatives) => {
                    let mut any = false;
                    for alt in alternatives {
                        any |= eventbridge_leaf(alt, value)?;
                    }
                    any
                }
                other => return Err(format!("{key}: a value must be an array: {other}")),
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn eventbridge_leaf(want: &Json, value: Option<&Json>) -> Result<bool, String> {
    let Json::Object(op) = want else {
        return Ok(match value {
            Some(Json::Array(items)) => items.contains(want),
            Some(v) => v == want,
            None => false,
        });
    };
    let Some((name, arg)) = op.iter().next().filter(|_| op.len() == 1) else {
        return Err(format!("one operator per object: {want}"));
    };
    if name == "exists" {
        return Ok(arg.as_bool().ok_or("exists takes a boolean")? == value.is_some());
    }
    let Some(value) = value else {
        return Ok(false);
    };
    if let Json::Array(items) = value {
        let mut any = false;
        for item in items {
            any |= eventbridge_leaf(want, Some(item))?;
        }
        return Ok(any);
    }
    let text = value.as_str();
    Ok(match name.as_str() {
        "prefix" => text
            .zip(arg.as_str())
            .is_some_and(|(t, p)| t.starts_with(p)),
        "suffix" => text.zip(arg.as_str()).is_some_and(|(t, p)| t.ends_with(p)),
        "equals-ignore-case" => text
            .zip(arg.as_str())
            .is_some_and(|(t, p)| t.eq_ignore_ascii_case(p)),
        "wildcard" => {
            let pattern = arg.as_str().ok_or("wildcard takes a string")?;
            // Checked even when the value is not a string: EventBridge rejects the pattern.
            let wildcard = Wildcard::parse(pattern)?;
            text.is_some_and(|t| wildcard.matches(t))
        }
        "anything-but" => match arg {
            Json::Array(list) => !list.contains(value),
            // `{"anything-but": {"wildcard": [...]}}`: none of the wildcards matches.
            Json::Object(inner)
                if inner.len() == 1 && inner.get("wildcard").is_some_and(Json::is_array) =>
            {
                let mut any = false;
                for pattern in inner["wildcard"].as_array().into_iter().flatten() {
                    let pattern = pattern.as_str().ok_or("wildcard takes strings")?;
                    let wildcard = Wildcard::parse(pattern)?;
                    any |= text.is_some_and(|t| wildcard.matches(t));
                }
                !any
            }
            Json::Object(_) => !eventbridge_leaf(arg, Some(value))?,
            scalar => scalar != value,
        },
        other => return Err(format!("operator {other:?} is not supported here")),
    })
}

/// An EventBridge `wildcard` value, as the operators page documents it: `*` matches any run
/// of characters (none included) and may appear any number of times, but not twice in a
/// row; `\*` is a literal star and `\\` a literal backslash; a backslash before anything
/// else is invalid. EventBridge rejects invalid values when the rule is created, so they are
/// errors here, never a silent mismatch.
#[derive(Debug)]
struct Wildcard(Vec<WildcardPart>);

#[derive(Debug, PartialEq)]
enum WildcardPart {
    Star,
    Char(char),
}

impl Wildcard {
    fn parse(pattern: &str) -> Result<Wildcard, String> {
        let mut parts = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => parts.push(WildcardPart::Char(e)),
                    Some(e) => {
                        return Err(format!("wildcard {pattern:?}: invalid escape \\{e}"));
                    }
                    None => return Err(format!("wildcard {pattern:?}: trailing backslash")),
                },
                '*' if parts.last() == Some(&WildcardPart::Star) => {
                    return Err(format!("wildcard {pattern:?}: consecutive wildcards"));
                }
                '*' => parts.push(WildcardPart::Star),
                c => parts.push(WildcardPart::Char(c)),
            }
        }
        Ok(Wildcard(parts))
    }

    /// Whether the whole of `text` matches (the usual two-pointer glob match: on a mismatch,
    /// let the last star take one more character).
    fn matches(&self, text: &str) -> bool {
        let parts = &self.0;
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut last_star: Option<(usize, usize)> = None;
        while t < text.len() {
            match parts.get(p) {
                Some(WildcardPart::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(WildcardPart::Star) => {
                    last_star = Some((p, t));
                    p += 1;
                }
                _ => match last_star {
                    Some((star, taken)) => {
                        last_star = Some((star, taken + 1));
                        p = star + 1;
                        t = taken + 1;
                    }
                    None => return false,
                },
            }
        }
        parts[p..].iter().all(|part| *part == WildcardPart::Star)
    }
}

#[test]
fn eventbridge_wildcards_match_as_documented() {
    let m = |pattern: &str, text: &str| {
        Wildcard::parse(pattern)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(text)
    };
    // The operators page's examples.
    assert!(m("*.png", "image.png") && m("*.png", ".png"));
    assert!(!m("*.png", "image.png.txt") && !m("*.png", "image.PNG"));
    assert!(m("*/lib/*", "/usr/lib/libc.so") && !m("*/lib/*", "/usr/bin/ls"));
    assert!(m("Simple*Service", "SimpleQueueService") && m("Simple*Service", "SimpleService"));
    assert!(!m("Simple*Service", "SimpleServices") && !m("Simple*Service", "xSimpleService"));
    // `*` takes any run, none included; the rest must match the whole value.
    assert!(m("*", "") && m("*", "anything") && m("", "") && !m("", "x"));
    assert!(m("a*b*c", "abc") && m("a*b*c", "a-b-b-c") && !m("a*b*c", "a-b-c-d"));
    assert!(m("*ab*ab", "xabyabab") && !m("*ab*ab", "xabyaba"));
    assert!(m("orgwatch-*", "orgwatch-") && m("orgwatch-*", "orgwatch-cis-4.3"));
    assert!(!m("orgwatch-*", "my-orgwatch-x") && !m("orgwatch-*", "orgwatch"));
    // Escapes: `\*` is a literal star, `\\` a literal backslash.
    assert!(m(r"a\*b", "a*b") && !m(r"a\*b", "axb") && !m(r"a\*b", "ab"));
    assert!(m(r"a\\b", r"a\b") && !m(r"a\\b", "ab"));
    assert!(m(r"\**", "*x") && !m(r"\**", "x*"));
    // Patterns EventBridge rejects.
    for bad in ["a**b", "**", r"a\b", r"a\", r"\"] {
        assert!(Wildcard::parse(bad).is_err(), "{bad:?}");
    }
    // The hub's sessions: any partition and account, exactly that role and session name.
    let hub = format!(
        "arn:*:sts::*:assumed-role/{}/{}",
        naming::DEFAULT_MEMBER_ROLE,
        naming::HUB_SESSION_NAME
    );
    for arn in [
        "arn:aws:sts::222233334444:assumed-role/orgwatch-member/orgwatch-hub",
        "arn:aws-us-gov:sts::222233334444:assumed-role/orgwatch-member/orgwatch-hub",
    ] {
        assert!(m(&hub, arn), "{arn}");
    }
    for arn in [
        "arn:aws:sts::222233334444:assumed-role/orgwatch-member/carol",
        "arn:aws:sts::222233334444:assumed-role/ops-automation/orgwatch-hub",
        "arn:aws:sts::222233334444:assumed-role/orgwatch-member/orgwatch-hub2",
        "arn:aws:iam::222233334444:role/orgwatch-member",
    ] {
        assert!(!m(&hub, arn), "{arn}");
    }

    // As operators, on values of every kind.
    let leaf = |want: Json, value: Option<Json>| eventbridge_leaf(&want, value.as_ref());
    let w = json!({"wildcard": "orgwatch-*"});
    assert_eq!(leaf(w.clone(), Some(json!("orgwatch-cis-4.3"))), Ok(true));
    assert_eq!(leaf(w.clone(), Some(json!("billing-alarm"))), Ok(false));
    assert_eq!(
        leaf(w.clone(), Some(json!(["billing", "orgwatch-x"]))),
        Ok(true)
    );
    assert_eq!(leaf(w.clone(), Some(json!(7))), Ok(false));
    assert_eq!(leaf(w, None), Ok(false));
    assert!(leaf(json!({"wildcard": "a**"}), Some(json!("a"))).is_err());
    assert!(leaf(json!({"wildcard": 1}), Some(json!("a"))).is_err());
    let not_lib = json!({"anything-but": {"wildcard": "*/lib/*"}});
    assert_eq!(leaf(not_lib.clone(), Some(json!("/usr/lib/x"))), Ok(false));
    assert_eq!(leaf(not_lib.clone(), Some(json!("/usr/bin/x"))), Ok(true));
    // Like every operator but `exists`, anything-but needs the field.
    assert_eq!(leaf(not_lib, None), Ok(false));
    let neither = json!({"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}});
    assert_eq!(leaf(neither.clone(), Some(json!("/usr/bin/x"))), Ok(false));
    assert_eq!(leaf(neither, Some(json!("/usr/share/x"))), Ok(true));
    assert!(
        leaf(
            json!({"anything-but": {"wildcard": ["a**"]}}),
            Some(json!("b"))
        )
        .is_err()
    );

    // `$or` nested below the top level, as the forwarding patterns use it.
    let pattern = json!({"detail": {"userIdentity": {"$or": [
        {"type": [{"anything-but": "AssumedRole"}]},
        {"arn": [{"anything-but": {"wildcard": hub}}]},
    ]}}});
    let who = |identity: Json| {
        eventbridge_match(&pattern, &json!({"detail": {"userIdentity": identity}}))
    };
    let session = |name: &str| json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::222233334444:assumed-role/{name}")});
    assert_eq!(who(session("orgwatch-member/orgwatch-hub")), Ok(false));
    assert_eq!(who(session("orgwatch-member/carol")), Ok(true));
    assert_eq!(who(session("ops-automation/orgwatch-hub")), Ok(true));
    assert_eq!(
        who(
            json!({"type": "IAMUser", "arn": "arn:aws:iam::222233334444:user/:sts::222233334444:assumed-role/orgwatch-member/orgwatch-hub"})
        ),
        Ok(true)
    );
}

#[test]
fn cis_4_15_lists_every_organizations_write_event() {
    let pack = builtin();
    let rule = pack.get("cis-4.15").expect("4.15");
    for name in [
        "AcceptHandshake",
        "AttachPolicy",
        "CancelHandshake",
        "CreateAccount",
        "CreateOrganization",
        "CreateOrganizationalUnit",
        "CreatePolicy",
        "DeclineHandshake",
        "DeleteOrganization",
        "DeleteOrganizationalUnit",
        "DeletePolicy",
        "DetachPolicy",
        "DisablePolicyType",
        "EnableAllFeatures",
        "EnablePolicyType",
        "InviteAccountToOrganization",
        "LeaveOrganization",
        "MoveAccount",
        "RemoveAccountFromOrganization",
        "UpdateOrganizationalUnit",
        "UpdatePolicy",
    ] {
        let event = json!({
            "eventSource": "organizations.amazonaws.com",
            "eventName": name,
            "eventID": "x",
        })
        .to_string();
        assert!(rule.pattern.matches_message(&event), "{name}");
        let other = event.replace("organizations.amazonaws.com", "iam.amazonaws.com");
        assert!(!rule.pattern.matches_message(&other), "{name} from IAM");
    }
}

/// orgwatch-tamper, in all three forms (trail pattern, EventBridge-delivery filter,
/// forwarding pattern), on every call that deletes, disables or changes one of the resources
/// `naming` gives orgwatch in a member account: each counts when a person makes it, none when
/// the hub's own session does, none on a resource of another name, and no read counts.
#[test]
fn orgwatch_tamper_sees_every_change_to_orgwatch_resources_but_the_hubs() {
    let pack = builtin();
    let rule = pack.get("orgwatch-tamper").expect("orgwatch-tamper");
    assert_eq!(rule.severity, Severity::Critical);
    assert!(rule.forward);
    let forward = rule
        .eventbridge_pattern
        .as_ref()
        .expect("forwarding pattern");
    let filters: Vec<Pattern> = rule
        .eventbridge_filters()
        .expect("filters")
        .iter()
        .map(|f| Pattern::parse(f).expect("parses"))
        .collect();
    assert_eq!(filters.len(), 1);

    let hub_session = format!(
        "assumed-role/{}/{}",
        naming::DEFAULT_MEMBER_ROLE,
        naming::HUB_SESSION_NAME
    );
    let hub_arn = format!("arn:*:sts::*:{hub_session}");
    assert!(rule.pattern.as_str().contains(&hub_arn));
    assert!(forward.to_string().contains(&hub_arn));

    let account = "222233334444";
    let trail_arn = naming::arn::trail("eu-west-1", account, naming::MEMBER_TRAIL);
    let log_group = naming::LOG_GROUP;
    let alarm = naming::alarm_name("cis-4.3");
    let filter = naming::metric_filter_name("cis-4.3", 0);
    let forward_rule = naming::forward_rule_name("root-activity");
    // The member stack's inline policy of the member role (infra/cloudformation/member-role.yaml).
    let member_policy = "orgwatch-member";
    let roles = [
        naming::TRAIL_LOGS_ROLE,
        naming::FORWARD_ROLE,
        naming::AGENT_MEMBER_ROLE,
    ];
    let mut changes: Vec<(&str, &str, Json)> = vec![
        (
            "monitoring",
            "DeleteAlarms",
            json!({"alarmNames": ["billing-alarm", alarm]}),
        ),
        (
            "monitoring",
            "DisableAlarmActions",
            json!({"alarmNames": [alarm]}),
        ),
        (
            "monitoring",
            "PutMetricAlarm",
            json!({"alarmName": alarm, "threshold": 100000}),
        ),
        (
            "monitoring",
            "SetAlarmState",
            json!({"alarmName": alarm, "stateValue": "OK", "stateReason": "x"}),
        ),
        (
            "logs",
            "DeleteMetricFilter",
            json!({"logGroupName": log_group, "filterName": filter}),
        ),
        (
            "logs",
            "PutMetricFilter",
            json!({"logGroupName": log_group, "filterName": filter, "filterPattern": "{ $.x = 1 }"}),
        ),
        ("logs", "DeleteLogGroup", json!({"logGroupName": log_group})),
        (
            "logs",
            "PutRetentionPolicy",
            json!({"logGroupName": log_group, "retentionInDays": 1}),
        ),
        (
            "logs",
            "DeleteRetentionPolicy",
            json!({"logGroupName": log_group}),
        ),
        (
            "logs",
            "DeleteSubscriptionFilter",
            json!({"logGroupName": log_group, "filterName": "x"}),
        ),
        (
            "logs",
            "DeleteLogStream",
            json!({"logGroupName": log_group, "logStreamName": "s"}),
        ),
        (
            "logs",
            "AssociateKmsKey",
            json!({"logGroupName": log_group, "kmsKeyId": "arn:aws:kms:eu-west-1:222233334444:key/1"}),
        ),
        (
            "logs",
            "DisassociateKmsKey",
            json!({"logGroupName": log_group}),
        ),
        (
            "logs",
            "DeleteResourcePolicy",
            json!({"policyName": naming::LOG_RESOURCE_POLICY}),
        ),
        (
            "logs",
            "PutResourcePolicy",
            json!({"policyName": naming::LOG_RESOURCE_POLICY, "policyDocument": "{}"}),
        ),
        (
            "events",
            "DeleteRule",
            json!({"name": naming::EVENTS_TO_LOGS_RULE}),
        ),
        ("events", "DisableRule", json!({"name": forward_rule})),
        (
            "events",
            "PutRule",
            json!({"name": forward_rule, "eventPattern": "{}"}),
        ),
        (
            "events",
            "RemoveTargets",
            json!({"rule": forward_rule, "ids": [naming::BUS_TARGET_ID]}),
        ),
        (
            "events",
            "PutTargets",
            json!({"rule": naming::EVENTS_TO_LOGS_RULE, "targets": []}),
        ),
        (
            "events",
            "DeleteRule",
            json!({"name": naming::CENTRAL_BUS_RULE, "eventBusName": naming::CENTRAL_BUS}),
        ),
        (
            "cloudtrail",
            "StopLogging",
            json!({"name": naming::MEMBER_TRAIL}),
        ),
        ("cloudtrail", "StopLogging", json!({"name": trail_arn})),
        ("cloudtrail", "DeleteTrail", json!({"name": trail_arn})),
        (
            "cloudtrail",
            "UpdateTrail",
            json!({"name": naming::MEMBER_TRAIL, "s3BucketName": "elsewhere"}),
        ),
        (
            "cloudtrail",
            "PutEventSelectors",
            json!({"trailName": naming::MEMBER_TRAIL, "eventSelectors": []}),
        ),
        (
            "cloudtrail",
            "PutInsightSelectors",
            json!({"trailName": trail_arn, "insightSelectors": []}),
        ),
        (
            "iam",
            "PutRolePolicy",
            json!({"roleName": "OrgWatchMember", "policyName": member_policy, "policyDocument": "{}"}),
        ),
        (
            "iam",
            "DeleteRolePolicy",
            json!({"roleName": naming::DEFAULT_MEMBER_ROLE, "policyName": member_policy}),
        ),
    ];
    for role in roles {
        for (name, extra) in [
            ("DeleteRole", json!({})),
            ("DeleteRolePolicy", json!({"policyName": role})),
            (
                "PutRolePolicy",
                json!({"policyName": "x", "policyDocument": "{}"}),
            ),
            ("UpdateAssumeRolePolicy", json!({"policyDocument": "{}"})),
            (
                "AttachRolePolicy",
                json!({"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
            ),
            (
                "DetachRolePolicy",
                json!({"policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}),
            ),
            ("DeleteRolePermissionsBoundary", json!({})),
            (
                "PutRolePermissionsBoundary",
                json!({"permissionsBoundary": "arn:aws:iam::aws:policy/ReadOnlyAccess"}),
            ),
            ("UpdateRole", json!({"maxSessionDuration": 43200})),
        ] {
            let mut params = extra;
            params["roleName"] = json!(role);
            changes.push(("iam", name, params));
        }
    }
    let reads: Vec<(&str, &str, Json)> = vec![
        (
            "monitoring",
            "DescribeAlarms",
            json!({"alarmNames": [alarm]}),
        ),
        (
            "monitoring",
            "DescribeAlarmHistory",
            json!({"alarmName": alarm}),
        ),
        (
            "logs",
            "DescribeMetricFilters",
            json!({"logGroupName": log_group}),
        ),
        (
            "logs",
            "CreateLogStream",
            json!({"logGroupName": log_group, "logStreamName": "s"}),
        ),
        ("events", "DescribeRule", json!({"name": forward_rule})),
        ("events", "ListTargetsByRule", json!({"rule": forward_rule})),
        ("events", "EnableRule", json!({"name": forward_rule})),
        ("cloudtrail", "GetTrailStatus", json!({"name": trail_arn})),
        (
            "cloudtrail",
            "StartLogging",
            json!({"name": naming::MEMBER_TRAIL}),
        ),
        (
            "cloudtrail",
            "GetEventSelectors",
            json!({"trailName": naming::MEMBER_TRAIL}),
        ),
        ("iam", "GetRole", json!({"roleName": naming::FORWARD_ROLE})),
        (
            "iam",
            "GetRolePolicy",
            json!({"roleName": naming::FORWARD_ROLE, "policyName": naming::FORWARD_ROLE}),
        ),
    ];

    let record = |source: &str, name: &str, params: &Json, identity: Json| {
        json!({
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": "2024-06-03T08:00:00Z",
            "eventSource": format!("{source}.amazonaws.com"),
            "eventName": name,
            "awsRegion": "eu-west-1",
            "sourceIPAddress": "198.51.100.42",
            "requestParameters": params,
            "eventID": "00000000-0000-4000-8000-000000000000",
            "readOnly": name.starts_with("Describe") || name.starts_with("Get") || name.starts_with("List"),
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management",
        })
    };
    let session = |role_and_session: &str| {
        json!({
            "type": "AssumedRole",
            "principalId": "AROAVRK3KXMPLEEXAMPLE:x",
            "arn": format!("arn:aws:sts::{account}:assumed-role/{role_and_session}"),
            "accountId": account,
        })
    };
    let person = session("AWSReservedSSO_AdministratorAccess_5f2a0c7e9b1d3a48/alice@example.com");
    let hub = session(&format!(
        "{}/{}",
        naming::DEFAULT_MEMBER_ROLE,
        naming::HUB_SESSION_NAME
    ));
    // The three forms agree on every record; the answer is the trail pattern's.
    let matches = |record: &Json| -> bool {
        let trail = rule.pattern.matches_message(&record.to_string());
        let wrapped = envelope(record);
        let text = wrapped.to_string();
        let delivered = filters.iter().any(|p| p.matches_message(&text));
        let forwarded = eventbridge_match(forward, &wrapped).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (trail, trail),
            (delivered, forwarded),
            "forms disagree on {record}"
        );
        trail
    };
    for (source, name, params) in &changes {
        let by_person = record(source, name, params, person.clone());
        assert!(matches(&by_person), "{name} {params} by a person");
        // As a data event it would not be a management call.
        let mut data = by_person.clone();
        data["managementEvent"] = json!(false);
        data["eventCategory"] = json!("Data");
        assert!(!matches(&data), "{name} {params} as a data event");
        assert!(
            !matches(&record(source, name, params, hub.clone())),
            "{name} {params} by the hub"
        );
        // The same call on resources that are not orgwatch's.
        let other: Json =
            serde_json::from_str(&params.to_string().replace("orgwatch", "acme")).expect("json");
        assert!(
            !matches(&record(source, name, &other, person.clone())),
            "{name} {other}"
        );
    }
    for (source, name, params) in &reads {
        assert!(
            !matches(&record(source, name, params, person.clone())),
            "{name} {params}"
        );
    }
}

/// The literal CIS v1.4/v3 text of 4.1 groups as `A || (B && C && D)`: its exclusions
/// only apply to AccessDenied*. Ours applies them to both error codes.
#[test]
fn cis_4_1_corrected_grouping_differs_from_the_literal_text() {
    let literal = Pattern::parse(
        r#"{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") && ($.sourceIPAddress != "delivery.logs.amazonaws.com") && ($.eventName != "HeadBucket") }"#,
    )
    .expect("literal CIS text parses");
    let pack = builtin();
    let rule = pack.get("cis-4.1").expect("4.1");
    let diff = fixture(rule, "literal CIS grouping");
    assert!(!diff.matches);
    let text = diff.event.to_string();
    assert!(literal.matches_message(&text), "literal text must match it");
    assert!(!rule.pattern.matches_message(&text), "ours must not");
    // On every other fixture the two agree.
    for f in rule.fixtures.iter().filter(|f| f.name != diff.name) {
        let text = f.event.to_string();
        assert_eq!(
            literal.matches_message(&text),
            f.matches,
            "literal text on {}",
            f.name
        );
    }
}

#[test]
fn matching_evaluates_the_pack_on_one_event() {
    let pack = builtin();
    let root_login = fixture(pack.get("cis-4.3").expect("4.3"), "root console sign-in")
        .event
        .to_string();
    let event = Event::from_message(&root_login);
    let ids: Vec<&str> = pack.matching(&event).map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["root-activity", "cis-4.3"]);

    // A console action of the root user is root activity, outside the CIS text.
    let console = fixture(pack.get("root-activity").expect("root"), "in the console")
        .event
        .to_string();
    let ids: Vec<&str> = pack
        .matching(&Event::from_message(&console))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, vec!["root-activity"]);

    // The same record already parsed.
    let value: Json = serde_json::from_str(&root_login).expect("json");
    let ids: Vec<&str> = pack
        .matching(&Event::from_value(&value))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, vec!["root-activity", "cis-4.3"]);

    let quiet = json!({"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets"}).to_string();
    assert_eq!(pack.matching(&Event::from_message(&quiet)).count(), 0);
    assert_eq!(pack.matching(&Event::from_message("not json")).count(), 0);
}

#[test]
fn envelopes_wrap_and_unwrap() {
    let record = json!({
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "eventType": "AwsConsoleSignIn",
        "eventID": "e-1",
        "eventTime": "2024-05-14T07:58:40Z",
        "awsRegion": "us-east-1",
        "recipientAccountId": "111122223333",
    });
    let env = envelope(&record);
    assert_eq!(env["detail-type"], "AWS Console Sign In via CloudTrail");
    assert_eq!(env["source"], "aws.signin");
    assert_eq!(env["account"], "111122223333");
    assert_eq!(unwrap_envelope(&env), &record);
    assert_eq!(unwrap_envelope(&record), &record);
}

// ---------------------------------------------------------------------------------------
// Selection and user rules.

const USER_RULE: &str = r#"
[hub]
regions = ["us-east-1"]

[[rule]]
id = "iam-user-created"
title = "IAM user created"
severity = "medium"
pattern = '{ ($.eventSource = iam.amazonaws.com) && ($.eventName = CreateUser) }'
metric_name = "IAMUserCreated"

[[rule.fixture]]
name = "created"
matches = true
event = '{"eventSource": "iam.amazonaws.com", "eventName": "CreateUser"}'

[[rule.fixture]]
name = "deleted"
matches = false
event = '{"eventSource": "iam.amazonaws.com", "eventName": "DeleteUser"}'
"#;

#[test]
fn pack_selection_disable_and_user_rules() {
    let ids = |pack: &[&str], disable: &[&str], text: &str| -> Vec<String> {
        let pack: Vec<String> = pack.iter().map(|s| s.to_string()).collect();
        let disable: Vec<String> = disable.iter().map(|s| s.to_string()).collect();
        Pack::from_config(&pack, &disable, &user(text))
            .unwrap_or_else(|e| panic!("{e}"))
            .rules()
            .iter()
            .map(|r| r.id.clone())
            .collect()
    };
    let cis = ids(&["cis"], &[], "");
    assert_eq!(cis.len(), 15);
    assert!(!cis.contains(&"root-activity".to_string()));
    assert_eq!(ids(&["all"], &[], "").len(), 17);
    assert_eq!(
        ids(&["root-activity", "cis-4.3"], &[], ""),
        vec!["root-activity", "cis-4.3"]
    );
    let some = ids(&["all"], &["cis-4.1", "cis-4.6"], USER_RULE);
    assert_eq!(some.len(), 16);
    assert!(!some.contains(&"cis-4.1".to_string()));
    assert_eq!(some.last().map(String::as_str), Some("iam-user-created"));
    assert!(ids(&[], &[], "").is_empty());

    // A disabled built-in can be replaced by a user rule with the same id.
    let replaced = USER_RULE.replace("iam-user-created", "cis-4.1");
    let pack = Pack::from_config(&["all".into()], &["cis-4.1".into()], &user(&replaced))
        .unwrap_or_else(|e| panic!("{e}"));
    let rule = pack.get("cis-4.1").expect("user 4.1");
    assert_eq!(rule.origin, Origin::Config("hub.toml".into()));
    assert!(pack.verify().is_ok());
}

/// `"seed"` is the nine alarms of the single-account recipe, CIS rules wherever one means
/// the same; its two own rules are not in `"all"`.
#[test]
fn seed_pack_is_the_nine_alarms_of_the_recipe() {
    let seed = selected(&["seed"], &[]);
    assert_eq!(
        seed,
        vec![
            "root-activity",
            "cis-4.2",
            "cis-4.4",
            "cis-4.7",
            "cis-4.10",
            "cis-4.11",
            "cis-4.13",
            "seed-api-without-mfa",
            "seed-kms-decrypt-failures",
        ]
    );
    let mut listed: Vec<&str> = SEED_RULES.to_vec();
    listed.sort_unstable();
    let mut got: Vec<&str> = seed.iter().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(listed, got);

    // "all" (the default): CIS, root-activity and orgwatch-tamper, no seed-* rule.
    let all = selected(&["all"], &[]);
    assert_eq!(all.len(), 17);
    assert!(
        all.iter().all(|id| !id.starts_with(SEED_ONLY_PREFIX)),
        "{all:?}"
    );
    // Seed-only rules come in by "seed" or by id, and combine with the others.
    assert_eq!(selected(&["all", "seed"], &[]).len(), 19);
    assert_eq!(
        selected(&["cis", "seed-kms-decrypt-failures"], &[])
            .last()
            .map(String::as_str),
        Some("seed-kms-decrypt-failures")
    );
    assert_eq!(
        selected(&["seed"], &["seed-api-without-mfa", "cis-4.2"]).len(),
        7
    );
    // Every built-in seed-* rule is in the seed pack.
    for rule in every().rules() {
        if rule.id.starts_with(SEED_ONLY_PREFIX) {
            assert!(SEED_RULES.contains(&rule.id.as_str()), "{}", rule.id);
            assert_eq!(packs_of(&rule.id), vec![PACK_SEED], "{}", rule.id);
        }
    }
    assert_eq!(packs_of("cis-4.2"), vec![PACK_CIS, PACK_SEED, PACK_ALL]);
    assert_eq!(packs_of("cis-4.3"), vec![PACK_CIS, PACK_ALL]);
    assert_eq!(packs_of("root-activity"), vec![PACK_SEED, PACK_ALL]);
    assert_eq!(packs_of("orgwatch-tamper"), vec![PACK_ALL]);
}

#[test]
fn pack_names_are_checked_in_one_place() {
    let known = ["root-activity", "cis-4.3", "seed-api-without-mfa"];
    for entry in ["all", "cis", "seed", "seed-api-without-mfa"] {
        assert_eq!(
            check_selected(Selection::Pack, "classify.pack", entry, &known),
            Ok(())
        );
    }
    let err = check_selected(Selection::Pack, "monitoring.pack", "seeds", &known)
        .expect_err("unknown pack");
    assert_eq!(
        err,
        "monitoring.pack: unknown built-in rule or pack \"seeds\"; did you mean `seed`? (known: cis, seed, all, root-activity, cis-4.3, seed-api-without-mfa)"
    );
    // Packs are not rule ids: `disable` takes ids only.
    assert!(check_selected(Selection::Disable, "monitoring.disable", "seed", &known).is_err());
    assert_eq!(
        check_selected(
            Selection::Disable,
            "monitoring.disable",
            "seed-api-without-mfa",
            &known
        ),
        Ok(())
    );
}

#[test]
fn user_rule_defaults() {
    let pack = Pack::from_config(&[], &[], &user(USER_RULE)).unwrap_or_else(|e| panic!("{e}"));
    let r = &pack.rules()[0];
    assert_eq!(r.namespace, naming::METRIC_NAMESPACE);
    assert_eq!(r.threshold, 1.0);
    assert_eq!(r.period_secs, 300);
    assert_eq!(r.evaluation_periods, 1);
    assert_eq!(r.statistic, Statistic::Sum);
    assert_eq!(r.comparison, Comparison::GreaterThanOrEqualToThreshold);
    assert_eq!(r.treat_missing_data, MissingData::NotBreaching);
    assert!(!r.forward);
    assert_eq!(r.security_hub, None);
    assert_eq!(r.fixtures.len(), 2);
}

#[test]
fn tables_parsed_elsewhere_are_accepted_without_positions() {
    let doc: toml::Table = toml::from_str(USER_RULE).expect("toml");
    let tables: Vec<toml::Table> = doc["rule"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_table().expect("table").clone())
        .collect();
    let rules =
        UserRules::from_tables(Path::new("hub.toml"), &tables).unwrap_or_else(|e| panic!("{e}"));
    let pack = Pack::from_config(&[], &[], &rules).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pack.rules()[0].id, "iam-user-created");
    assert!(pack.verify().is_ok());

    let mut bad = tables[0].clone();
    bad.insert("colour".into(), toml::Value::String("red".into()));
    let err = UserRules::from_tables(Path::new("hub.toml"), &[bad]).expect_err("unknown key");
    assert!(err.to_string().contains("rule #1"), "{err}");
    assert!(err.to_string().contains("colour"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Errors: every problem at once, each located.

#[test]
fn bad_pattern_is_located_in_the_file_with_a_caret() {
    let text = "[[rule]]\nid = \"x\"\ntitle = \"t\"\nseverity = \"low\"\npattern = '{ $.a = 1 && ($.b = 2 }'\nmetric_name = \"X\"\n";
    let err = load_err(&[], &[], text);
    assert_eq!(err.problems.len(), 1, "{err}");
    let p = &err.problems[0];
    // `(` is the 25th character of line 5 (the 14th of the pattern).
    assert_eq!(p.position, Some((5, 25)), "{err}");
    assert_eq!(
        err.to_string(),
        "hub.toml:5:25: rule \"x\": invalid pattern (column 14 of the pattern): unclosed '('\n\
         { $.a = 1 && ($.b = 2 }\n             ^\nerror: unclosed '('"
    );
}

#[test]
fn bad_pattern_in_a_multiline_string_is_located() {
    let text = "[[rule]]\nid = \"x\"\ntitle = \"t\"\nseverity = \"low\"\npattern = '''\n{ $.a = 1 &&& $.b = 2 }'''\nmetric_name = \"X\"\n";
    let err = load_err(&[], &[], text);
    assert_eq!(err.problems.len(), 1, "{err}");
    let e = Pattern::parse("{ $.a = 1 &&& $.b = 2 }").expect_err("bad");
    assert_eq!(err.problems[0].position, Some((6, e.column())), "{err}");
}

#[test]
fn bad_pattern_in_a_basic_string_with_escapes_points_at_the_string() {
    let text = "[[rule]]\nid = \"x\"\ntitle = \"t\"\nseverity = \"low\"\npattern = \"{ $.a = \\\"b\\\" && }\"\nmetric_name = \"X\"\n";
    let err = load_err(&[], &[], text);
    assert_eq!(err.problems[0].position, Some((5, 11)), "{err}");
    assert!(
        err.to_string().contains("rule \"x\": invalid pattern"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[[rule]]
id = "a"
title = "first"
severity = "low"
pattern = '{ $.eventName = A }'
metric_name = "Same"
period_secs = 90
forward = true

[[rule.fixture]]
name = "broken"
matches = true
event = '{"eventName": '

[[rule]]
id = "a"
title = "second"
severity = "high"
pattern = '{ $.eventName = B }'
metric_name = "Same"
evaluation_periods = 0
eventbridge_pattern = '[1]'
security_hub = "Config.1"

[[rule]]
id = "bad id!"
title = "third"
severity = "low"
pattern = '{ $.eventName = C }'
metric_name = "C"
threshold = nan
"#;
    let err = load_err(&["all", "nope"], &["cis-9.9"], text);
    let shown = err.to_string();
    let expect = [
        "hub.toml: monitoring.pack: unknown built-in rule or pack \"nope\"",
        "hub.toml: monitoring.disable: unknown built-in rule \"cis-9.9\"",
        "hub.toml:8:15: rule \"a\": period_secs must be a multiple of 60",
        "hub.toml:9:11: rule \"a\": forward = true needs an eventbridge_pattern",
        "hub.toml:14:23: rule \"a\": fixture \"broken\" is not valid JSON",
        "hub.toml:17:6: rule \"a\": duplicate rule id (first defined at hub.toml:3:6)",
        "hub.toml:21:15: rule \"a\": metric orgwatch/Same is already used by rule \"a\"",
        "hub.toml:22:22: rule \"a\": evaluation_periods must be at least 1",
        "hub.toml:24:16: rule \"a\": security_hub must name a control",
        "hub.toml:23:23: rule \"a\": eventbridge_pattern must be a JSON object",
        "hub.toml:27:6: rule \"bad id!\": invalid id",
        "hub.toml:32:13: rule \"bad id!\": threshold must be a finite number",
    ];
    for line in expect {
        assert!(shown.contains(line), "missing {line:?} in:\n{shown}");
    }
    assert_eq!(err.problems.len(), expect.len(), "{shown}");
}

/// A user rule that covers another, with its fixtures (the covered rule's fixture that
/// must match is `hit`).
fn covering(covers: &str, pattern: &str) -> String {
    format!(
        r#"
[[rule]]
id = "iam-users"
title = "IAM user changes"
severity = "high"
pattern = '{pattern}'
metric_name = "IAMUsers"
covers = {covers}

[[rule]]
id = "iam-user-created"
title = "IAM user created"
severity = "medium"
pattern = '{{ ($.eventSource = iam.amazonaws.com) && ($.eventName = CreateUser) }}'
metric_name = "IAMUserCreated"

[[rule.fixture]]
name = "hit"
matches = true
event = '{{"eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "eventID": "1"}}'

[[rule.fixture]]
name = "miss"
matches = false
event = '{{"eventSource": "iam.amazonaws.com", "eventName": "GetUser", "eventID": "2"}}'
"#
    )
}

const BROAD: &str = "{ ($.eventSource = iam.amazonaws.com) && ($.eventName = *User) }";

#[test]
fn covers_is_loaded_and_verified() {
    let pack = Pack::from_config(&[], &[], &user(&covering(r#"["iam-user-created"]"#, BROAD)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pack.get("iam-users").expect("rule").covers,
        vec!["iam-user-created"]
    );
    let report = pack.verify();
    assert!(
        report.is_ok(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(report.rules[0].covered_fixtures, 1);

    // A covering rule that misses an event the covered rule matches: both forms fail,
    // located at the covered rule's fixture.
    let narrow = "{ ($.eventSource = iam.amazonaws.com) && ($.eventName = DeleteUser) }";
    let pack = Pack::from_config(
        &[],
        &[],
        &user(&covering(r#"["iam-user-created"]"#, narrow)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shown: Vec<String> = pack.verify().failures().map(|f| f.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "hub.toml:20:10: rule \"iam-users\" covers \"iam-user-created\", but does not match its fixture \"hit\" (trail delivery)",
            "hub.toml:20:10: rule \"iam-users\" covers \"iam-user-created\", but does not match its fixture \"hit\" (eventbridge delivery)",
        ]
    );
}

#[test]
fn covers_an_unselected_builtin_is_verified_against_the_builtin() {
    // root-activity alone still covers cis-4.3: checked on cis-4.3's own fixtures.
    let pack = Pack::from_config(&["root-activity".into()], &[], &UserRules::none())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(pack.get("cis-4.3").is_none());
    let report = pack.verify();
    assert!(
        report.is_ok(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    assert!(report.rules[0].covered_fixtures >= 2);

    // A user rule claiming to cover a built-in it does not: cis-4.3's fixtures say so.
    let text = covering(r#"["cis-4.3"]"#, BROAD);
    let pack = Pack::from_config(&[], &[], &user(&text)).unwrap_or_else(|e| panic!("{e}"));
    let failures: Vec<FixtureFailure> = pack.verify().failures().cloned().collect();
    assert!(!failures.is_empty());
    for f in &failures {
        assert_eq!(
            (f.rule.as_str(), f.covered.as_deref()),
            ("iam-users", Some("cis-4.3"))
        );
        let loc = f.location.as_ref().expect("located");
        assert!(loc.path.ends_with("cis-4.3.toml"), "{loc}");
    }
}

#[test]
fn bad_covers_are_located() {
    let cases = [
        (
            r#"["cis-9.9"]"#,
            "hub.toml:8:11: rule \"iam-users\": covers unknown rule \"cis-9.9\" (not a built-in rule, nor a rule of this configuration)",
        ),
        (
            r#"["iam-users"]"#,
            "hub.toml:8:11: rule \"iam-users\": a rule cannot cover itself",
        ),
        (
            r#"["iam-user-created", "iam-user-created"]"#,
            "hub.toml:8:31: rule \"iam-users\": covers \"iam-user-created\" twice",
        ),
    ];
    for (covers, want) in cases {
        let err = load_err(&[], &[], &covering(covers, BROAD));
        assert_eq!(err.to_string(), want, "{covers}");
    }
    // Round in a circle: each claim is reported where it is made.
    let text = covering(r#"["iam-user-created"]"#, BROAD).replace(
        "metric_name = \"IAMUserCreated\"\n",
        "metric_name = \"IAMUserCreated\"\ncovers = [\"iam-users\"]\n",
    );
    let err = load_err(&[], &[], &text);
    let shown = err.to_string();
    assert_eq!(err.problems.len(), 2, "{shown}");
    assert!(
        shown.contains("hub.toml:8:11: rule \"iam-users\": covers \"iam-user-created\", which covers \"iam-users\""),
        "{shown}"
    );
    assert!(
        shown.contains("hub.toml:16:11: rule \"iam-user-created\": covers \"iam-users\", which covers \"iam-user-created\""),
        "{shown}"
    );
}

#[test]
fn user_rule_cannot_take_a_selected_builtin_id() {
    let text = USER_RULE.replace("iam-user-created", "cis-4.2");
    let err = load_err(&["cis"], &[], &text);
    assert!(
        err.to_string()
            .contains("duplicate rule id (first defined at shared/rules/cis-4.2.toml:5:6)"),
        "{err}"
    );
}

#[test]
fn structural_toml_errors_are_located() {
    let err = UserRules::from_toml(
        Path::new("hub.toml"),
        "[[rule]]\nid = \"x\"\ntitle = \"t\"\nseverity = \"urgent\"\n",
    )
    .expect_err("bad severity");
    assert_eq!(err.problems[0].position.map(|p| p.0), Some(4), "{err}");
    assert!(err.to_string().contains("urgent"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Verification can fail.

#[test]
fn verify_reports_wrong_expectations_in_both_forms() {
    let text = USER_RULE.replace("matches = false", "matches = true");
    let pack = Pack::from_config(&[], &[], &user(&text)).unwrap_or_else(|e| panic!("{e}"));
    let report = pack.verify();
    assert!(!report.is_ok());
    let shown: Vec<String> = report.failures().map(|f| f.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "hub.toml:20:10: rule \"iam-user-created\": fixture \"deleted\" should match but does not (trail delivery)",
            "hub.toml:20:10: rule \"iam-user-created\": fixture \"deleted\" should match but does not (eventbridge delivery)",
        ]
    );
}

#[test]
fn verify_reports_rules_that_cannot_run_under_eventbridge() {
    let text = "[[rule]]\nid = \"sp\"\ntitle = \"t\"\nseverity = \"low\"\npattern = '[ip, user, status = 5*]'\nmetric_name = \"S\"\n[[rule.fixture]]\nname = \"line\"\nmatches = true\nevent = '\"10.0.0.1 bob 503\"'\n";
    // A plain-text fixture is checked as a line, and passes.
    let pack = Pack::from_config(&[], &[], &user(text)).unwrap_or_else(|e| panic!("{e}"));
    assert!(pack.verify().is_ok());
    // A record cannot be checked in EventBridge form: a space-delimited pattern has no
    // meaning on the envelope.
    let text = text.replace(
        r#"event = '"10.0.0.1 bob 503"'"#,
        r#"event = '{"eventName": "x"}'"#,
    );
    let text = text.replace("matches = true", "matches = false");
    let pack = Pack::from_config(&[], &[], &user(&text)).unwrap_or_else(|e| panic!("{e}"));
    let failures: Vec<_> = pack.verify().failures().cloned().collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].form, Form::Eventbridge);
    assert!(failures[0].error.is_some());
}

// ---------------------------------------------------------------------------------------
// Splitting long patterns for EventBridge delivery.

fn rule_with(pattern: &str) -> Rule {
    let text = format!(
        "[[rule]]\nid = \"long\"\ntitle = \"t\"\nseverity = \"low\"\npattern = '{pattern}'\nmetric_name = \"L\"\n"
    );
    let pack = Pack::from_config(&[], &[], &user(&text)).unwrap_or_else(|e| panic!("{e}"));
    pack.rules()[0].clone()
}

fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("SomeRatherLongEventName{i:03}"))
        .collect()
}

/// Every split filter fits, and `any(filters)` agrees with the original on events that
/// hit each alternative, each neighbour, and none.
fn assert_equivalent_split(rule: &Rule, events: &[Json]) {
    let filters = rule.eventbridge_filters().unwrap_or_else(|e| panic!("{e}"));
    assert!(filters.len() >= 2, "expected a split: {filters:?}");
    let compiled: Vec<Pattern> = filters
        .iter()
        .map(|f| {
            assert!(f.chars().count() <= MAX_PATTERN_CHARS, "{f}");
            Pattern::parse(f).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut hits = 0;
    for record in events {
        let plain = rule.pattern.matches_message(&record.to_string());
        let wrapped = envelope(record).to_string();
        let split = compiled.iter().any(|p| p.matches_message(&wrapped));
        assert_eq!(plain, split, "{record}");
        hits += usize::from(plain);
    }
    assert!(
        hits > 0 && hits < events.len(),
        "events must exercise both outcomes"
    );
}

#[test]
fn top_level_or_is_split_in_two() {
    let names = names(21);
    let pattern = format!(
        "{{ {} }}",
        names
            .iter()
            .map(|n| format!("($.eventName = \"{n}\")"))
            .collect::<Vec<_>>()
            .join(" || ")
    );
    assert!(pattern.len() <= MAX_PATTERN_CHARS);
    let rule = rule_with(&pattern);
    let mut events: Vec<Json> = names
        .iter()
        .map(|n| json!({"eventName": n, "eventSource": "x.amazonaws.com"}))
        .collect();
    events.push(json!({"eventName": "Other"}));
    events.push(json!({"eventSource": "x.amazonaws.com"}));
    assert_equivalent_split(&rule, &events);
}

#[test]
fn and_of_or_is_distributed() {
    let names = names(20);
    let pattern = format!(
        "{{ ($.eventSource = x.amazonaws.com) && ({}) && ($.readOnly IS FALSE) }}",
        names
            .iter()
            .map(|n| format!("($.eventName = {n})"))
            .collect::<Vec<_>>()
            .join(" || ")
    );
    assert!(pattern.len() <= MAX_PATTERN_CHARS, "{}", pattern.len());
    let rule = rule_with(&pattern);
    let filters = rule.eventbridge_filters().unwrap_or_else(|e| panic!("{e}"));
    for f in &filters {
        assert!(f.contains("$.detail.eventSource"), "{f}");
        assert!(f.contains("$.detail.readOnly"), "{f}");
    }
    let mut events = Vec::new();
    for n in &names {
        events.push(json!({"eventName": n, "eventSource": "x.amazonaws.com", "readOnly": false}));
        events.push(json!({"eventName": n, "eventSource": "y.amazonaws.com", "readOnly": false}));
        events.push(json!({"eventName": n, "eventSource": "x.amazonaws.com", "readOnly": true}));
    }
    events.push(json!({"eventName": "Other", "eventSource": "x.amazonaws.com", "readOnly": false}));
    assert_equivalent_split(&rule, &events);
}

#[test]
fn unsplittable_long_pattern_is_an_error() {
    // One condition with a long value: nothing to split on.
    let value = "v".repeat(1000);
    let rule = rule_with(&format!("{{ $.a.b.c.d.e.f = \"{value}\" }}"));
    match rule.eventbridge_filters() {
        Err(SplitError::TooLong { chars }) => assert!(chars > MAX_PATTERN_CHARS),
        other => panic!("{other:?}"),
    }
}

#[test]
fn term_patterns_pass_through_unchanged() {
    let rule = rule_with("ConsoleLogin -Success");
    assert_eq!(
        rule.eventbridge_filters().expect("terms"),
        vec!["ConsoleLogin -Success"]
    );
}

#[test]
fn the_tamper_rule_leaves_out_the_hub_sessions_of_the_configured_member_role() {
    let record = |arn: &str| {
        serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "AssumedRole", "arn": arn},
            "eventSource": "monitoring.amazonaws.com",
            "eventName": "DeleteAlarms",
            "managementEvent": true,
            "requestParameters": {"alarmNames": ["orgwatch-root-activity"]},
            "recipientAccountId": "222233334444"
        })
        .to_string()
    };
    let ours = "arn:aws:sts::222233334444:assumed-role/OrganizationAccountAccessRole/orgwatch-hub";
    let default = "arn:aws:sts::222233334444:assumed-role/orgwatch-member/orgwatch-hub";
    let carol = "arn:aws:sts::222233334444:assumed-role/OrganizationAccountAccessRole/carol";

    // As shipped, the default role's (the member stack's) hub sessions are left out and
    // another role's are not.
    let shipped = Pack::builtin().expect("pack");
    let tamper = shipped.get("orgwatch-tamper").expect("tamper rule");
    assert!(!tamper.pattern.matches_message(&record(default)));
    assert!(tamper.pattern.matches_message(&record(ours)));

    let pack = Pack::builtin()
        .expect("pack")
        .for_member_role("OrganizationAccountAccessRole")
        .expect("a role name");
    let tamper = pack.get("orgwatch-tamper").expect("tamper rule");
    assert!(
        !tamper.pattern.matches_message(&record(ours)),
        "the hub's own change"
    );
    assert!(
        tamper.pattern.matches_message(&record(default)),
        "someone else's"
    );
    assert!(
        tamper.pattern.matches_message(&record(carol)),
        "another session"
    );
    let eb = tamper
        .eventbridge_pattern
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    assert!(
        eb.contains("assumed-role/OrganizationAccountAccessRole/orgwatch-hub")
            && !eb.contains("orgwatch-member/orgwatch-hub"),
        "{eb}"
    );
    // The fixtures follow, so `rules verify` proves the rule on the sessions it will see.
    let report = pack.verify();
    assert!(
        report.is_ok(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    // Other rules are untouched; what is not a role name is refused.
    assert_eq!(
        pack.get("cis-4.3").map(|r| r.pattern.as_str().to_string()),
        shipped
            .get("cis-4.3")
            .map(|r| r.pattern.as_str().to_string())
    );
    assert!(
        Pack::builtin()
            .expect("pack")
            .for_member_role("a\" || $.x = \"")
            .is_err()
    );
}
