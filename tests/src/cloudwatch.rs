//! **Emulator only.** The piece of CloudWatch the emulator lacks: it stores metric filters
//! and alarms but never evaluates them (see `../shared/EMULATOR.md`). [`AlarmEvaluator`]
//! does what CloudWatch would, for orgwatch's alarms:
//!
//! 1. reads the new events of every member's orgwatch log group,
//! 2. evaluates each metric filter of the group with `shared::pattern` (the same engine the
//!    agent and `hub rules test` use) and records one datapoint per match, at the event's
//!    timestamp, with the filter's metric value,
//! 3. for each orgwatch alarm, sums the datapoints of its metric over its evaluation window
//!    (`Period` x `EvaluationPeriods`, statistic `Sum`, missing data not breaching), compares
//!    with the threshold, and on a state change calls `SetAlarmState` and publishes the JSON
//!    CloudWatch publishes to every action of the new state (`AlarmActions` for ALARM,
//!    `OKActions` for OK).
//!
//! It is used by the end-to-end tests and the demo; it is never part of `hub` or `agent`,
//! which only ever see what AWS itself would produce. It evaluates the `Sum` statistic and
//! the four threshold comparison operators only — what orgwatch's alarms use.

use std::collections::{HashMap, HashSet};

use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
use serde_json::{Value, json};
use shared::aws::{ClientFactory, Clients};
use shared::naming;
use shared::pattern::{Event, Pattern};

use crate::{HarnessError, aws_err};

/// One alarm state change the evaluator made (and published).
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub account: String,
    pub region: String,
    pub alarm_name: String,
    /// `ALARM` or `OK`.
    pub new_state: String,
    /// The metric's sum over the evaluation window.
    pub value: f64,
    /// SNS topics the notification was published to.
    pub published_to: Vec<String>,
    /// The notification as published (the JSON CloudWatch sends).
    pub message: String,
}

type MetricKey = (String, String, String, String); // account, region, namespace, metric

/// Evaluates the orgwatch metric filters and alarms of some accounts, as CloudWatch would.
pub struct AlarmEvaluator {
    factory: ClientFactory,
    home_account: String,
    targets: Vec<(String, String)>,
    seen: HashSet<(String, String, String, String)>,
    datapoints: HashMap<MetricKey, Vec<(i64, f64)>>,
}

impl AlarmEvaluator {
    /// Watches `accounts` x `regions`. `factory` must hold credentials that can assume the
    /// member role and publish to the alarms' topics (the hub's, in the emulator).
    pub async fn new(
        factory: ClientFactory,
        accounts: &[String],
        regions: &[String],
    ) -> Result<AlarmEvaluator, HarnessError> {
        let home_account = factory.home_account().await.map_err(aws_err)?;
        let targets = accounts
            .iter()
            .flat_map(|a| regions.iter().map(move |r| (a.clone(), r.clone())))
            .collect();
        Ok(AlarmEvaluator {
            factory,
            home_account,
            targets,
            seen: HashSet::new(),
            datapoints: HashMap::new(),
        })
    }

    async fn clients(&self, account: &str, region: &str) -> Result<Clients, HarnessError> {
        let clients = if account == self.home_account {
            self.factory.home()
        } else {
            self.factory.for_account(account).await.map_err(aws_err)?
        };
        Ok(clients.in_region(region))
    }

    /// One evaluation round at `now_ms`: reads new log events, evaluates filters and alarms,
    /// and returns the state changes made (each already published).
    pub async fn evaluate(&mut self, now_ms: i64) -> Result<Vec<Transition>, HarnessError> {
        let mut out = Vec::new();
        for (account, region) in self.targets.clone() {
            let clients = self.clients(&account, &region).await?;
            self.read_logs(&clients, &account, &region).await?;
            for alarm in orgwatch_alarms(&clients).await? {
                if let Some(t) = self
                    .evaluate_alarm(&clients, &account, &region, &alarm, now_ms)
                    .await?
                {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }

    async fn read_logs(
        &mut self,
        clients: &Clients,
        account: &str,
        region: &str,
    ) -> Result<(), HarnessError> {
        let logs = clients.logs();
        let filters = match logs
            .describe_metric_filters()
            .log_group_name(naming::LOG_GROUP)
            .send()
            .await
        {
            Ok(out) => out.metric_filters.unwrap_or_default(),
            // No log group (yet, or any more): nothing to evaluate.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(aws_err(e)),
        };
        let mut compiled = Vec::new();
        for f in &filters {
            let text = f.filter_pattern().unwrap_or_default();
            let pattern = Pattern::parse(text).map_err(|e| {
                HarnessError::Aws(format!(
                    "metric filter {} in {account}/{region} has a pattern the engine rejects: {e}",
                    f.filter_name().unwrap_or_default()
                ))
            })?;
            for t in f.metric_transformations() {
                let value = t.metric_value().parse::<f64>().unwrap_or(1.0);
                compiled.push((
                    pattern.clone(),
                    t.metric_namespace().to_string(),
                    t.metric_name().to_string(),
                    value,
                ));
            }
        }
        let mut token: Option<String> = None;
        loop {
            let out = match logs
                .filter_log_events()
                .log_group_name(naming::LOG_GROUP)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(aws_err(e)),
            };
            for ev in out.events() {
                let id = (
                    account.to_string(),
                    region.to_string(),
                    ev.log_stream_name().unwrap_or_default().to_string(),
                    format!(
                        "{}/{}",
                        ev.event_id().unwrap_or_default(),
                        ev.timestamp().unwrap_or_default()
                    ),
                );
                if !self.seen.insert(id) {
                    continue;
                }
                let message = ev.message().unwrap_or_default();
                let event = Event::from_message(message);
                for (pattern, namespace, metric, value) in &compiled {
                    if pattern.matches(&event) {
                        self.datapoints
                            .entry((
                                account.to_string(),
                                region.to_string(),
                                namespace.clone(),
                                metric.clone(),
                            ))
                            .or_default()
                            .push((ev.timestamp().unwrap_or_default(), *value));
                    }
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(()),
            }
        }
    }

    async fn evaluate_alarm(
        &self,
        clients: &Clients,
        account: &str,
        region: &str,
        alarm: &MetricAlarm,
        now_ms: i64,
    ) -> Result<Option<Transition>, HarnessError> {
        let name = alarm.alarm_name().unwrap_or_default();
        let period = i64::from(alarm.period().unwrap_or(300).max(1));
        let periods = i64::from(alarm.evaluation_periods().unwrap_or(1).max(1));
        let threshold = alarm.threshold().unwrap_or(1.0);
        let key = (
            account.to_string(),
            region.to_string(),
            alarm.namespace().unwrap_or_default().to_string(),
            alarm.metric_name().unwrap_or_default().to_string(),
        );
        let from = now_ms - period * periods * 1000;
        let points: Vec<f64> = self
            .datapoints
            .get(&key)
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| *t > from && *t <= now_ms)
                    .map(|(_, v)| *v)
                    .collect()
            })
            .unwrap_or_default();
        let sum: f64 = points.iter().sum();
        // Missing data is not breaching: no datapoint, no alarm.
        let breaching = !points.is_empty()
            && compare(
                alarm
                    .comparison_operator()
                    .map(|c| c.as_str())
                    .unwrap_or("GreaterThanOrEqualToThreshold"),
                sum,
                threshold,
            );
        let new_state = if breaching {
            StateValue::Alarm
        } else {
            StateValue::Ok
        };
        let old_state = alarm.state_value().cloned().unwrap_or(StateValue::Ok);
        if old_state == new_state {
            return Ok(None);
        }
        let reason = if breaching {
            format!(
                "Threshold Crossed: {} datapoint{} [{sum} ({})] {} the threshold ({threshold}).",
                points.len(),
                if points.len() == 1 { "" } else { "s" },
                format_time(now_ms, "%d/%m/%y %H:%M:%S"),
                operator_words(
                    alarm
                        .comparison_operator()
                        .map(|c| c.as_str())
                        .unwrap_or("")
                )
            )
        } else {
            format!(
                "Threshold Crossed: no datapoints were received for {periods} period{} and {periods} missing datapoint{} {} treated as [NonBreaching].",
                if periods == 1 { "" } else { "s" },
                if periods == 1 { "" } else { "s" },
                if periods == 1 { "was" } else { "were" },
            )
        };
        clients
            .cloudwatch()
            .set_alarm_state()
            .alarm_name(name)
            .state_value(new_state.clone())
            .state_reason(&reason)
            .send()
            .await
            .map_err(aws_err)?;
        let actions: Vec<String> = if breaching {
            alarm.alarm_actions().to_vec()
        } else {
            alarm.ok_actions().to_vec()
        };
        let message = alarm_message(
            alarm,
            account,
            region,
            new_state.as_str(),
            old_state.as_str(),
            &reason,
            now_ms,
        )
        .to_string();
        let subject = format!(
            "{}: \"{name}\" in {}",
            new_state.as_str(),
            region_display_name(region)
        );
        let mut published_to = Vec::new();
        for topic in actions {
            let Some((topic_region, topic_account)) = arn_region_account(&topic) else {
                continue;
            };
            let topic_clients = self.clients(topic_account, topic_region).await?;
            topic_clients
                .sns()
                .publish()
                .topic_arn(&topic)
                .subject(&subject)
                .message(&message)
                .send()
                .await
                .map_err(aws_err)?;
            published_to.push(topic);
        }
        Ok(Some(Transition {
            account: account.to_string(),
            region: region.to_string(),
            alarm_name: name.to_string(),
            new_state: new_state.as_str().to_string(),
            value: sum,
            published_to,
            message,
        }))
    }
}

async fn orgwatch_alarms(clients: &Clients) -> Result<Vec<MetricAlarm>, HarnessError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = clients
            .cloudwatch()
            .describe_alarms()
            .alarm_name_prefix(naming::RULE_RESOURCE_PREFIX)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(aws_err)?;
        out.extend(page.metric_alarms().iter().cloned());
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

fn compare(operator: &str, value: f64, threshold: f64) -> bool {
    match operator {
        "GreaterThanThreshold" => value > threshold,
        "LessThanThreshold" => value < threshold,
        "LessThanOrEqualToThreshold" => value <= threshold,
        _ => value >= threshold,
    }
}

fn operator_words(operator: &str) -> &'static str {
    match operator {
        "GreaterThanThreshold" => "was greater than",
        "LessThanThreshold" => "was less than",
        "LessThanOrEqualToThreshold" => "was less than or equal to",
        _ => "was greater than or equal to",
    }
}

/// `(region, account)` of an ARN.
fn arn_region_account(arn: &str) -> Option<(&str, &str)> {
    let mut it = arn.splitn(6, ':');
    (it.next()? == "arn").then_some(())?;
    let _partition = it.next()?;
    let _service = it.next()?;
    let region = it.next()?;
    let account = it.next()?;
    Some((region, account))
}

/// CloudWatch's `Region` field is the region's display name.
pub fn region_display_name(code: &str) -> &str {
    match code {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "eu-west-1" => "EU (Ireland)",
        "eu-west-2" => "EU (London)",
        "eu-central-1" => "EU (Frankfurt)",
        "ap-southeast-2" => "Asia Pacific (Sydney)",
        other => other,
    }
}

/// The JSON CloudWatch publishes to SNS on an alarm state change.
fn alarm_message(
    alarm: &MetricAlarm,
    account: &str,
    region: &str,
    new_state: &str,
    old_state: &str,
    reason: &str,
    now_ms: i64,
) -> Value {
    let updated = alarm
        .alarm_configuration_updated_timestamp()
        .map(|t| t.to_millis().unwrap_or(now_ms))
        .unwrap_or(now_ms);
    json!({
        "AlarmName": alarm.alarm_name(),
        "AlarmDescription": alarm.alarm_description(),
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": format_time(updated, "iso"),
        "NewStateValue": new_state,
        "NewStateReason": reason,
        "StateChangeTime": format_time(now_ms, "iso"),
        "Region": region_display_name(region),
        "AlarmArn": alarm.alarm_arn(),
        "OldStateValue": old_state,
        "OKActions": alarm.ok_actions(),
        "AlarmActions": alarm.alarm_actions(),
        "InsufficientDataActions": alarm.insufficient_data_actions(),
        "Trigger": {
            "MetricName": alarm.metric_name(),
            "Namespace": alarm.namespace(),
            "StatisticType": "Statistic",
            "Statistic": alarm.statistic().map(|s| s.as_str().to_ascii_uppercase()),
            "Unit": null,
            "Dimensions": [],
            "Period": alarm.period(),
            "EvaluationPeriods": alarm.evaluation_periods(),
            "DatapointsToAlarm": alarm.datapoints_to_alarm().or(alarm.evaluation_periods()),
            "ComparisonOperator": alarm.comparison_operator().map(|c| c.as_str()),
            "Threshold": alarm.threshold(),
            "TreatMissingData": alarm.treat_missing_data(),
            "EvaluateLowSampleCountPercentile": ""
        }
    })
}

/// `2026-11-28T18:32:37.123+0000` (CloudWatch's form) for `"iso"`, else
/// `28/11/26 18:32:37` (the form inside a state reason).
fn format_time(ms: i64, form: &str) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if form == "iso" {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}+0000")
    } else {
        format!("{d:02}/{m:02}/{:02} {hh:02}:{mm:02}:{ss:02}", y % 100)
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_as_cloudwatch_does() {
        // 2026-11-28T18:32:37.123Z
        let ms = 1_795_890_757_123;
        assert_eq!(format_time(ms, "iso"), "2026-11-28T18:32:37.123+0000");
        assert_eq!(format_time(ms, "reason"), "28/11/26 18:32:37");
        assert_eq!(format_time(0, "iso"), "1970-01-01T00:00:00.000+0000");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn operators_compare_as_cloudwatch_does() {
        assert!(compare("GreaterThanOrEqualToThreshold", 1.0, 1.0));
        assert!(!compare("GreaterThanThreshold", 1.0, 1.0));
        assert!(compare("LessThanThreshold", 0.0, 1.0));
        assert!(compare("LessThanOrEqualToThreshold", 1.0, 1.0));
        assert!(!compare("LessThanOrEqualToThreshold", 2.0, 1.0));
    }

    #[test]
    fn topic_arns_name_their_region_and_account() {
        assert_eq!(
            arn_region_account("arn:aws:sns:eu-west-1:123456789012:orgwatch-alerts"),
            Some(("eu-west-1", "123456789012"))
        );
        assert_eq!(arn_region_account("not-an-arn"), None);
    }
}
