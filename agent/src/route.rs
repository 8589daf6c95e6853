//! Route: which sinks an alert goes to. Ordered routes, first match wins unless it says
//! `continue`; alerts no route matches take the default route. Pure.

use crate::config::{Matcher, RouteSpec};
use crate::model::Alert;

/// True when every condition of `m` holds for `alert` (an empty condition holds always).
pub fn matches(m: &Matcher, alert: &Alert) -> bool {
    (m.rule.is_empty() || m.rule.contains(&alert.rule_id))
        && (m.severity.is_empty() || m.severity.contains(&alert.severity))
        && (m.account.is_empty() || m.account.contains(&alert.account))
        && (m.region.is_empty() || m.region.contains(&alert.region))
}

/// The sinks (indexes) `alert` goes to, without repeats, in route order.
pub fn route(alert: &Alert, routes: &[RouteSpec], default: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut matched = false;
    for r in routes {
        if !matches(&r.matcher, alert) {
            continue;
        }
        matched = true;
        for s in &r.sinks {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        if !r.continue_ {
            break;
        }
    }
    if !matched {
        out = default.to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Severity, test_alert as alert};

    fn r(
        rule: &[&str],
        sev: &[Severity],
        account: &[&str],
        region: &[&str],
        sinks: &[usize],
        cont: bool,
    ) -> RouteSpec {
        RouteSpec {
            matcher: Matcher {
                rule: rule.iter().map(|s| s.to_string()).collect(),
                severity: sev.to_vec(),
                account: account.iter().map(|s| s.to_string()).collect(),
                region: region.iter().map(|s| s.to_string()).collect(),
            },
            sinks: sinks.to_vec(),
            continue_: cont,
        }
    }

    #[test]
    fn ordered_routes_with_continue_and_default() {
        use Severity::*;
        const A: &str = "111122223333";
        const B: &str = "444455556666";
        let routes = vec![
            r(&[], &[Critical], &[], &[], &[0], true), // pager for critical, keep going
            r(&["root-activity"], &[], &[], &[], &[1], false), // security channel for root
            r(&[], &[], &[B], &[], &[2], false),       // account B's team
            r(&[], &[], &[], &["eu-west-1"], &[3, 1], false), // EU region
        ];
        let default = [4];
        let table = [
            (alert("root-activity", Critical, A, "us-east-1"), vec![0, 1]),
            (alert("root-activity", High, B, "us-east-1"), vec![1]),
            (alert("cis-4.3", Critical, B, "us-east-1"), vec![0, 2]),
            (alert("cis-4.3", Medium, B, "us-east-1"), vec![2]),
            (alert("cis-4.3", Medium, A, "eu-west-1"), vec![3, 1]),
            (alert("cis-4.3", Medium, A, "us-east-1"), vec![4]),
            (alert("cis-4.3", Critical, A, "us-east-1"), vec![0]),
        ];
        for (a, want) in table {
            assert_eq!(
                route(&a, &routes, &default),
                want,
                "{} {} {} {}",
                a.rule_id,
                a.severity,
                a.account,
                a.region
            );
        }
        assert_eq!(
            route(&alert("x", Low, A, "us-east-1"), &[], &[0, 1]),
            vec![0, 1]
        );
        assert!(route(&alert("x", Low, A, "us-east-1"), &routes[1..2], &[]).is_empty());
    }
}
