//! Decode: one SQS message body into what it reports, or the reason it cannot be read.
//!
//! Accepted shapes, each either bare (SNS raw delivery, EventBridge -> SQS) or inside an
//! SNS notification envelope (`{"Type":"Notification","Message":"<json>",...}`):
//!
//! * a CloudWatch alarm notification (`AlarmName`, `NewStateValue`, `StateChangeTime`, ...);
//! * an EventBridge event whose `detail` is a CloudTrail record;
//! * a bare CloudTrail record.
//!
//! The account always comes from the payload (`AWSAccountId`, `account`,
//! `recipientAccountId`, or an ARN in it) — never from the topic or queue it came through.
//! Pure: no I/O.

use serde_json::Value;

use crate::model::{Actor, parse_timestamp};

/// Bodies larger than SQS allows are refused before parsing: 1 MiB (SQS developer guide,
/// "Amazon SQS message quotas": the maximum message size is 1 MiB, raised from 256 KiB in
/// 2025).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An SNS notification's `Message` is at most 256 KiB (SNS developer guide, "Amazon SNS
/// message publishing"); a larger one in an SNS-shaped envelope was not sent by SNS.
pub const MAX_SNS_MESSAGE_BYTES: usize = 256 * 1024;

/// What a message reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Alarm(AlarmNotification),
    Event(CloudTrailEvent),
}

/// A CloudWatch alarm state change, as CloudWatch publishes it to SNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmNotification {
    pub alarm_name: String,
    pub alarm_arn: Option<String>,
    pub account: String,
    /// Region code (from the alarm ARN; CloudWatch's `Region` is a display name).
    pub region: String,
    pub new_state: String,
    pub old_state: Option<String>,
    pub reason: Option<String>,
    /// `StateChangeTime` in Unix milliseconds.
    pub state_change_ms: i64,
    /// The alarm's metric and evaluation window, from `Trigger` (absent for alarms on
    /// metric math or composite alarms).
    pub metric: Option<AlarmMetric>,
}

/// What an alarm watches: the metric and the window it evaluates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlarmMetric {
    pub namespace: String,
    pub name: String,
    pub period_secs: u32,
    pub evaluation_periods: u32,
}

impl AlarmMetric {
    /// How far back from its state change the alarm looked.
    pub fn window_ms(&self) -> i64 {
        i64::from(self.period_secs) * i64::from(self.evaluation_periods.max(1)) * 1000
    }
}

fn alarm_metric(v: &Value) -> Option<AlarmMetric> {
    let t = v.get("Trigger")?;
    let number = |key: &str| {
        t.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    Some(AlarmMetric {
        namespace: t.get("Namespace")?.as_str()?.to_string(),
        name: t.get("MetricName")?.as_str()?.to_string(),
        period_secs: number("Period")?,
        evaluation_periods: number("EvaluationPeriods").unwrap_or(1),
    })
}

/// A CloudTrail record, from an EventBridge event or bare.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudTrailEvent {
    /// The CloudTrail record itself (what the rules' patterns are written against).
    pub record: Value,
    pub account: String,
    pub region: String,
    pub event_id: String,
    pub event_time_ms: i64,
}

impl CloudTrailEvent {
    /// Who did what, from where.
    pub fn actor(&self) -> Actor {
        actor_of(&self.record)
    }
}

/// Who / what / where of a CloudTrail record.
pub fn actor_of(record: &Value) -> Actor {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let identity = record.get("userIdentity");
    let principal = s(identity.and_then(|i| i.get("arn"))).or_else(|| {
        let kind = s(identity.and_then(|i| i.get("type")))?;
        match s(identity.and_then(|i| i.get("userName"))) {
            Some(name) => Some(format!("{kind}:{name}")),
            None => Some(kind),
        }
    });
    Actor {
        principal,
        event_name: s(record.get("eventName")),
        event_source: s(record.get("eventSource")),
        source_ip: s(record.get("sourceIPAddress")),
        user_agent: s(record.get("userAgent")),
        event_id: s(record.get("eventID")),
        event_time: s(record.get("eventTime")),
    }
}

/// Why a message cannot be decoded. Each reason is logged with the message id; the message
/// then goes to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("body is {0} bytes, more than the 1 MiB SQS allows")]
    TooLarge(usize),
    #[error("SNS Message is {0} bytes, more than the 256 KiB SNS allows")]
    SnsTooLarge(usize),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("SNS envelope of type {0:?}, expected \"Notification\"")]
    SnsType(String),
    #[error("SNS envelope has no string Message")]
    SnsNoMessage,
    #[error("SNS Message is not JSON: {0}")]
    SnsMessageNotJson(String),
    #[error(
        "unrecognised message: not a CloudWatch alarm notification, an EventBridge event with a CloudTrail record, or a CloudTrail record"
    )]
    UnknownShape,
    #[error("{0} is missing or not a string")]
    Missing(&'static str),
    #[error("{field} {value:?} is not a timestamp")]
    BadTime { field: &'static str, value: String },
    #[error("no 12-digit account id in the payload (looked at {0})")]
    NoAccount(&'static str),
    #[error("no region in the payload (looked at {0})")]
    NoRegion(&'static str),
    /// A CloudTrail-shaped event that AWS did not send: its `source` is not an AWS
    /// service's (EventBridge refuses `aws.*` sources from PutEvents callers, so every
    /// genuine CloudTrail event has one), or its envelope's account is not the record's.
    #[error("refused as forged: {0}")]
    Forged(String),
}

impl DecodeError {
    /// True for an event refused because AWS did not send it.
    pub fn is_forged(&self) -> bool {
        matches!(self, DecodeError::Forged(_))
    }
}

/// Decodes one message body.
pub fn decode(body: &str) -> Result<Decoded, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge(body.len()));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let value = unwrap_sns(value)?;
    decode_value(value)
}

/// The message inside an SNS envelope, or the value itself when it is not one.
fn unwrap_sns(value: Value) -> Result<Value, DecodeError> {
    let is_envelope = value.get("Type").is_some_and(Value::is_string)
        && value.get("TopicArn").is_some()
        && value.get("MessageId").is_some();
    if !is_envelope {
        return Ok(value);
    }
    let kind = value
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "Notification" {
        return Err(DecodeError::SnsType(kind.to_string()));
    }
    let message = value
        .get("Message")
        .and_then(Value::as_str)
        .ok_or(DecodeError::SnsNoMessage)?;
    if message.len() > MAX_SNS_MESSAGE_BYTES {
        return Err(DecodeError::SnsTooLarge(message.len()));
    }
    serde_json::from_str(message).map_err(|e| DecodeError::SnsMessageNotJson(e.to_string()))
}

fn decode_value(value: Value) -> Result<Decoded, DecodeError> {
    if !value.is_object() {
        return Err(DecodeError::UnknownShape);
    }
    if value.get("AlarmName").is_some() && value.get("NewStateValue").is_some() {
        return decode_alarm(&value).map(Decoded::Alarm);
    }
    if value.get("detail-type").and_then(Value::as_str) == Some(ALARM_STATE_CHANGE) {
        return decode_alarm_event(&value).map(Decoded::Alarm);
    }
    if value.get("detail-type").is_some()
        && let Some(detail) = value.get("detail")
    {
        if !is_cloudtrail_record(detail) {
            return Err(DecodeError::UnknownShape);
        }
        check_sent_by_aws(&value, detail)?;
        return decode_record(detail, Some(&value)).map(Decoded::Event);
    }
    if is_cloudtrail_record(&value) {
        return decode_record(&value, None).map(Decoded::Event);
    }
    Err(DecodeError::UnknownShape)
}

/// An EventBridge event carrying a CloudTrail record is AWS's only when its source is an
/// AWS service's (`aws.*`: EventBridge API reference, PutEvents, and user guide, "Events
/// from AWS services") and its envelope account, when it has one, is the record's
/// `recipientAccountId` (CloudTrail puts the event on the bus of the account it recorded).
fn check_sent_by_aws(envelope: &Value, record: &Value) -> Result<(), DecodeError> {
    match envelope.get("source").and_then(Value::as_str) {
        Some(s) if s.starts_with("aws.") => {}
        other => {
            return Err(DecodeError::Forged(format!(
                "source {} is not an AWS service's (aws.*), which every CloudTrail event has",
                other.map_or("(none)".to_string(), |s| format!("{s:?}"))
            )));
        }
    }
    let account = envelope.get("account").and_then(Value::as_str);
    let recipient = record.get("recipientAccountId").and_then(Value::as_str);
    if let (Some(a), Some(r)) = (account, recipient)
        && a != r
    {
        return Err(DecodeError::Forged(format!(
            "the event came from account {a}, but its CloudTrail record is account {r}'s"
        )));
    }
    Ok(())
}

fn is_cloudtrail_record(v: &Value) -> bool {
    v.is_object()
        && v.get("eventName").is_some_and(Value::is_string)
        && v.get("eventSource").is_some()
}

fn str_field<'a>(v: &'a Value, key: &'static str) -> Result<&'a str, DecodeError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::Missing(key))
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// `(region, account)` of an ARN (`arn:partition:service:region:account:resource`).
pub fn arn_parts(arn: &str) -> Option<(&str, &str)> {
    let mut it = arn.splitn(6, ':');
    if it.next()? != "arn" {
        return None;
    }
    let _partition = it.next()?;
    let _service = it.next()?;
    let region = it.next()?;
    let account = it.next()?;
    it.next()?;
    Some((region, account))
}

fn is_region_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn decode_alarm(v: &Value) -> Result<AlarmNotification, DecodeError> {
    let alarm_name = str_field(v, "AlarmName")?.to_string();
    let new_state = str_field(v, "NewStateValue")?.to_string();
    let time = str_field(v, "StateChangeTime")?;
    let state_change_ms = parse_timestamp(time).ok_or_else(|| DecodeError::BadTime {
        field: "StateChangeTime",
        value: time.chars().take(64).collect(),
    })?;
    let alarm_arn = opt_str(v, "AlarmArn");
    let arn = alarm_arn.as_deref().and_then(arn_parts);
    let account = v
        .get("AWSAccountId")
        .and_then(Value::as_str)
        .filter(|a| shared::naming::is_account_id(a))
        .or_else(|| {
            arn.map(|(_, a)| a)
                .filter(|a| shared::naming::is_account_id(a))
        })
        .ok_or(DecodeError::NoAccount("AWSAccountId, AlarmArn"))?
        .to_string();
    let region = arn
        .map(|(r, _)| r)
        .filter(|r| is_region_code(r))
        .or_else(|| {
            v.get("Region")
                .and_then(Value::as_str)
                .filter(|r| is_region_code(r))
        })
        .ok_or(DecodeError::NoRegion("AlarmArn, Region"))?
        .to_string();
    Ok(AlarmNotification {
        alarm_name,
        alarm_arn,
        account,
        region,
        new_state,
        old_state: opt_str(v, "OldStateValue"),
        reason: opt_str(v, "NewStateReason"),
        state_change_ms,
        metric: alarm_metric(v),
    })
}

/// The `detail-type` of the event CloudWatch sends to EventBridge when an alarm changes state
/// (CloudWatch user guide, "Alarm events and EventBridge"), the shape an alarm arrives in
/// when it is routed through EventBridge instead of an SNS action.
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";

/// An alarm state change from EventBridge: `detail.alarmName`, `detail.state` and
/// `detail.previousState` (each `value`, `reason`, `timestamp`), the alarm's ARN in
/// `resources`, and the account and region of the envelope. Only CloudWatch sends it: any
/// other `source` is refused as forged, like a CloudTrail event from a PutEvents caller.
fn decode_alarm_event(v: &Value) -> Result<AlarmNotification, DecodeError> {
    match v.get("source").and_then(Value::as_str) {
        Some("aws.cloudwatch") => {}
        other => {
            return Err(DecodeError::Forged(format!(
                "an alarm state change from source {}, not aws.cloudwatch",
                other.map_or("(none)".to_string(), |s| format!("{s:?}"))
            )));
        }
    }
    let detail = v.get("detail").ok_or(DecodeError::Missing("detail"))?;
    let alarm_name = str_field(detail, "alarmName")
        .map_err(|_| DecodeError::Missing("detail.alarmName"))?
        .to_string();
    let state = detail
        .get("state")
        .ok_or(DecodeError::Missing("detail.state"))?;
    let new_state = str_field(state, "value")
        .map_err(|_| DecodeError::Missing("detail.state.value"))?
        .to_string();
    let (field, time) = match opt_str(state, "timestamp") {
        Some(t) => ("detail.state.timestamp", t),
        None => ("time", str_field(v, "time")?.to_string()),
    };
    let state_change_ms = parse_timestamp(&time).ok_or_else(|| DecodeError::BadTime {
        field,
        value: time.chars().take(64).collect(),
    })?;
    let alarm_arn = v
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|r| r.contains(":alarm:"))
        .map(str::to_string);
    let arn = alarm_arn.as_deref().and_then(arn_parts);
    let envelope_account = v
        .get("account")
        .and_then(Value::as_str)
        .filter(|a| shared::naming::is_account_id(a));
    if let (Some(e), Some((_, a))) = (envelope_account, arn)
        && e != a
    {
        return Err(DecodeError::Forged(format!(
            "the alarm state change came from account {e}, but its alarm is account {a}'s"
        )));
    }
    let account = envelope_account
        .or_else(|| {
            arn.map(|(_, a)| a)
                .filter(|a| shared::naming::is_account_id(a))
        })
        .ok_or(DecodeError::NoAccount("account, resources[] alarm ARN"))?
        .to_string();
    let region = v
        .get("region")
        .and_then(Value::as_str)
        .or(arn.map(|(r, _)| r))
        .filter(|r| is_region_code(r))
        .ok_or(DecodeError::NoRegion("region, resources[] alarm ARN"))?
        .to_string();
    Ok(AlarmNotification {
        alarm_name,
        alarm_arn,
        account,
        region,
        new_state,
        old_state: detail
            .get("previousState")
            .and_then(|p| opt_str(p, "value")),
        reason: opt_str(state, "reason"),
        state_change_ms,
        metric: event_alarm_metric(detail),
    })
}

/// The metric of a single-metric alarm, from `detail.configuration.metrics`: the one entry
/// with a `metricStat` whose data the alarm evaluates. Metric math and anomaly detection
/// alarms (an `expression` returns the data) have none, as in an SNS notification. The event
/// does not say how many periods are evaluated: one is assumed.
fn event_alarm_metric(detail: &Value) -> Option<AlarmMetric> {
    let metrics = detail.get("configuration")?.get("metrics")?.as_array()?;
    let returned: Vec<&Value> = metrics
        .iter()
        .filter(|m| m.get("returnData").and_then(Value::as_bool) != Some(false))
        .collect();
    let [only] = returned.as_slice() else {
        return None;
    };
    let stat = only.get("metricStat")?;
    let metric = stat.get("metric")?;
    Some(AlarmMetric {
        namespace: metric.get("namespace")?.as_str()?.to_string(),
        name: metric.get("name")?.as_str()?.to_string(),
        period_secs: stat
            .get("period")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())?,
        evaluation_periods: 1,
    })
}

fn decode_record(record: &Value, envelope: Option<&Value>) -> Result<CloudTrailEvent, DecodeError> {
    let account_candidates = [
        envelope
            .and_then(|e| e.get("account"))
            .and_then(Value::as_str),
        record.get("recipientAccountId").and_then(Value::as_str),
    ];
    let from_arn = || {
        let envelope_arns = envelope
            .and_then(|e| e.get("resources"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let identity_arn = record
            .get("userIdentity")
            .and_then(|i| i.get("arn"))
            .and_then(Value::as_str);
        envelope_arns
            .chain(identity_arn)
            .filter_map(arn_parts)
            .map(|(_, a)| a)
            .find(|a| shared::naming::is_account_id(a))
    };
    let account = account_candidates
        .into_iter()
        .flatten()
        .find(|a| shared::naming::is_account_id(a))
        .or_else(from_arn)
        .ok_or(DecodeError::NoAccount(
            "account, recipientAccountId, resources[] ARNs, userIdentity.arn",
        ))?
        .to_string();
    let region = envelope
        .and_then(|e| e.get("region"))
        .and_then(Value::as_str)
        .or_else(|| record.get("awsRegion").and_then(Value::as_str))
        .filter(|r| is_region_code(r))
        .ok_or(DecodeError::NoRegion("region, awsRegion"))?
        .to_string();
    let event_id = str_field(record, "eventID")?.to_string();
    let time = str_field(record, "eventTime")?;
    let event_time_ms = parse_timestamp(time).ok_or_else(|| DecodeError::BadTime {
        field: "eventTime",
        value: time.chars().take(64).collect(),
    })?;
    Ok(CloudTrailEvent {
        record: record.clone(),
        account,
        region,
        event_id,
        event_time_ms,
    })
}

/// Test fixtures shared by the unit tests of several stages.
#[cfg(test)]
pub mod fixtures {
    use serde_json::{Value, json};

    /// The JSON CloudWatch publishes for an alarm state change.
    pub fn alarm(name: &str, account: &str, state: &str, time: &str) -> Value {
        json!({
            "AlarmName": name,
            "AlarmDescription": "orgwatch rule",
            "AWSAccountId": account,
            "AlarmConfigurationUpdatedTimestamp": "2024-05-01T00:00:00.000+0000",
            "NewStateValue": state,
            "NewStateReason": "Threshold Crossed: 1 datapoint [1.0 (01/05/24 12:00:00)] was greater than or equal to the threshold (1.0).",
            "StateChangeTime": time,
            "Region": "US East (N. Virginia)",
            "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}"),
            "OldStateValue": if state == "ALARM" { "OK" } else { "ALARM" },
            "OKActions": [],
            "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:orgwatch-alerts"],
            "InsufficientDataActions": [],
            "Trigger": {
                "MetricName": name,
                "Namespace": "orgwatch",
                "StatisticType": "Statistic",
                "Statistic": "SUM",
                "Unit": null,
                "Dimensions": [],
                "Period": 300,
                "EvaluationPeriods": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 1.0,
                "TreatMissingData": "notBreaching",
                "EvaluateLowSampleCountPercentile": ""
            }
        })
    }

    /// The event CloudWatch puts on EventBridge when alarm `name` changes state, in the shape
    /// the CloudWatch user guide documents ("Alarm events and EventBridge") for a
    /// single-metric alarm: `metrics` holds one `metricStat`.
    pub fn alarm_state_change(name: &str, account: &str, state: &str, time: &str) -> Value {
        json!({
            "version": "0",
            "id": "5b1f9a0e-7d2c-4f3b-9a61-0c8e2d4b7f10",
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": account,
            "time": "2024-05-01T12:05:01Z",
            "region": "eu-west-1",
            "resources": [format!("arn:aws:cloudwatch:eu-west-1:{account}:alarm:{name}")],
            "detail": {
                "alarmName": name,
                "configuration": {
                    "description": "orgwatch rule",
                    "metrics": [{
                        "id": "m1",
                        "metricStat": {
                            "metric": {"name": name, "namespace": "orgwatch", "dimensions": {}},
                            "period": 300,
                            "stat": "Sum"
                        },
                        "returnData": true
                    }]
                },
                "previousState": {
                    "reason": "Threshold Crossed: no datapoints were received for 1 period",
                    "timestamp": "2024-05-01T11:00:00.000+0000",
                    "value": if state == "ALARM" { "OK" } else { "ALARM" }
                },
                "state": {
                    "reason": "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (01/05/24 12:00:00)] was greater than or equal to the threshold (1.0)",
                    "reasonData": "{\"version\":\"1.0\",\"recentDatapoints\":[1.0],\"threshold\":1.0}",
                    "timestamp": time,
                    "value": state
                }
            }
        })
    }

    /// A root console sign-in as CloudTrail records it.
    pub fn root_sign_in(account: &str, event_id: &str, time: &str) -> Value {
        json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "Root",
                "principalId": account,
                "arn": format!("arn:aws:iam::{account}:root"),
                "accountId": account
            },
            "eventTime": time,
            "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "Mozilla/5.0",
            "requestParameters": null,
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"MFAUsed": "No"},
            "eventID": event_id,
            "readOnly": false,
            "eventType": "AwsConsoleSignIn",
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management"
        })
    }

    /// An EventBridge event carrying a CloudTrail record.
    pub fn eventbridge(record: &Value, account: Option<&str>) -> Value {
        let mut e = json!({
            "version": "0",
            "id": "6f87d04b-9f74-4f04-a780-7acf4b0a9b38",
            "detail-type": "AWS Console Sign In via CloudTrail",
            "source": "aws.signin",
            "time": record["eventTime"],
            "region": "us-east-1",
            "resources": [],
            "detail": record
        });
        if let Some(a) = account {
            e["account"] = json!(a);
        }
        e
    }

    /// An SNS notification envelope around `message`.
    pub fn sns(message: &str) -> Value {
        json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:orgwatch-alerts",
            "Subject": "ALARM: \"orgwatch-root-activity\" in US East (N. Virginia)",
            "Message": message,
            "Timestamp": "2024-05-01T12:00:01.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use serde_json::json;

    const A: &str = "111122223333";
    const T: &str = "2024-05-01T12:00:00.000+0000";

    fn ok(body: &str) -> Decoded {
        decode(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[test]
    fn alarm_notifications_raw_and_in_sns() {
        let alarm = alarm("orgwatch-root-activity", A, "ALARM", T).to_string();
        let wrapped = sns(&alarm).to_string();
        for body in [&alarm, &wrapped] {
            let Decoded::Alarm(a) = ok(body) else {
                panic!("not an alarm")
            };
            assert_eq!(a.alarm_name, "orgwatch-root-activity");
            assert_eq!(a.account, A);
            assert_eq!(a.region, "us-east-1");
            assert_eq!(a.new_state, "ALARM");
            assert_eq!(a.old_state.as_deref(), Some("OK"));
            assert_eq!(a.state_change_ms, 1_714_564_800_000);
        }
    }

    #[test]
    fn cloudtrail_records_bare_in_eventbridge_and_in_sns() {
        let record = root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        let with_account = eventbridge(&record, Some(A)).to_string();
        // The emulator's EventBridge deliveries have no `account`: recipientAccountId serves.
        let without_account = eventbridge(&record, None).to_string();
        let bare = record.to_string();
        let in_sns = sns(&with_account).to_string();
        for body in [&with_account, &without_account, &bare, &in_sns] {
            let Decoded::Event(e) = ok(body) else {
                panic!("not an event")
            };
            assert_eq!(e.account, A);
            assert_eq!(e.region, "us-east-1");
            assert_eq!(e.event_id, "ev-1");
            assert_eq!(e.event_time_ms, 1_714_564_800_000);
            assert_eq!(e.record["eventName"], "ConsoleLogin");
            let actor = e.actor();
            assert_eq!(
                actor.principal.as_deref(),
                Some("arn:aws:iam::111122223333:root")
            );
            assert_eq!(actor.source_ip.as_deref(), Some("203.0.113.7"));
        }
    }

    #[test]
    fn account_comes_from_the_payload_in_order() {
        // The envelope's account; then recipientAccountId; then ARNs. (An envelope whose
        // account differs from the record's recipientAccountId is refused as forged.)
        let mut record = root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        record
            .as_object_mut()
            .map(|o| o.remove("recipientAccountId"));
        let Decoded::Event(e) = ok(&eventbridge(&record, Some("999988887777")).to_string()) else {
            panic!()
        };
        assert_eq!(e.account, "999988887777");
        let Decoded::Event(e) = ok(&record.to_string()) else {
            panic!()
        };
        assert_eq!(e.account, A, "from userIdentity.arn");
        record["userIdentity"] = json!({"type": "AWSService"});
        assert_eq!(
            decode(&record.to_string()),
            Err(DecodeError::NoAccount(
                "account, recipientAccountId, resources[] ARNs, userIdentity.arn"
            ))
        );
        // An alarm without AWSAccountId takes it from its ARN; without either it fails.
        let mut a = alarm("orgwatch-x", A, "ALARM", T);
        a.as_object_mut().map(|o| o.remove("AWSAccountId"));
        let Decoded::Alarm(al) = ok(&a.to_string()) else {
            panic!()
        };
        assert_eq!(al.account, A);
        a.as_object_mut().map(|o| o.remove("AlarmArn"));
        assert_eq!(
            decode(&a.to_string()),
            Err(DecodeError::NoAccount("AWSAccountId, AlarmArn"))
        );
    }

    #[test]
    fn events_aws_did_not_send_are_refused_as_forged() {
        let record = root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        // Genuine: an aws.* source and the record's own account.
        assert!(matches!(
            ok(&eventbridge(&record, Some(A)).to_string()),
            Decoded::Event(_)
        ));
        // Someone's own source, relayed through a rule of theirs or put on the bus.
        let mut fake = eventbridge(&record, Some(A));
        fake["source"] = json!("com.attacker");
        let err = decode(&fake.to_string()).unwrap_err();
        assert!(err.is_forged(), "{err}");
        assert!(
            err.to_string()
                .contains("\"com.attacker\" is not an AWS service's"),
            "{err}"
        );
        fake.as_object_mut().map(|o| o.remove("source"));
        assert!(decode(&fake.to_string()).unwrap_err().is_forged());
        // Another account's root sign-in, sent from this account.
        let err = decode(&eventbridge(&record, Some("999988887777")).to_string()).unwrap_err();
        assert!(err.is_forged(), "{err}");
        assert!(err.to_string().contains(&format!("account {A}'s")), "{err}");
        // Bare records and alarms are not EventBridge events: nothing to compare.
        assert!(matches!(ok(&record.to_string()), Decoded::Event(_)));
        assert!(!DecodeError::UnknownShape.is_forged());
    }

    #[test]
    fn alarm_state_changes_from_eventbridge_are_alarms() {
        let t = "2024-05-01T12:05:00.000+0000";
        let ev = fixtures::alarm_state_change("cis-4.3", "111122223333", "ALARM", t);
        let want = AlarmNotification {
            alarm_name: "cis-4.3".into(),
            alarm_arn: Some("arn:aws:cloudwatch:eu-west-1:111122223333:alarm:cis-4.3".into()),
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            new_state: "ALARM".into(),
            old_state: Some("OK".into()),
            reason: Some("Threshold Crossed: 1 out of the last 1 datapoints [1.0 (01/05/24 12:00:00)] was greater than or equal to the threshold (1.0)".into()),
            state_change_ms: parse_timestamp(t).unwrap(),
            metric: Some(AlarmMetric {
                namespace: "orgwatch".into(),
                name: "cis-4.3".into(),
                period_secs: 300,
                evaluation_periods: 1,
            }),
        };
        assert_eq!(ok(&ev.to_string()), Decoded::Alarm(want.clone()));
        // Through SNS (an EventBridge rule with an SNS target) it is the same alarm.
        let sns = fixtures::sns(&ev.to_string()).to_string();
        assert_eq!(ok(&sns), Decoded::Alarm(want.clone()));
        // Back to OK: a resolution.
        let ok_ev = fixtures::alarm_state_change("cis-4.3", "111122223333", "OK", t);
        let Decoded::Alarm(a) = ok(&ok_ev.to_string()) else {
            panic!("not an alarm")
        };
        assert_eq!(
            (a.new_state.as_str(), a.old_state.as_deref()),
            ("OK", Some("ALARM"))
        );

        // A metric math alarm (documented shape: an `expression` returns the data, the
        // metricStat entries do not) and an anomaly detection alarm (a metricStat and a band
        // expression both return data) have no single metric, as in SNS.
        let mut math = ev.clone();
        math["detail"]["configuration"]["metrics"] = serde_json::json!([
            {"expression": "SUM(METRICS())", "id": "e1", "label": "Total", "returnData": true},
            {"id": "m1", "metricStat": {"metric": {"name": "A", "namespace": "N"}, "period": 60, "stat": "Sum"}, "returnData": false},
            {"id": "m2", "metricStat": {"metric": {"name": "B", "namespace": "N"}, "period": 60, "stat": "Sum"}, "returnData": false}
        ]);
        let mut band = ev.clone();
        band["detail"]["configuration"]["metrics"] = serde_json::json!([
            {"id": "m1", "metricStat": {"metric": {"name": "A", "namespace": "N"}, "period": 60, "stat": "Average"}, "returnData": true},
            {"id": "ad1", "expression": "ANOMALY_DETECTION_BAND(m1, 2)", "returnData": true}
        ]);
        // Without a state timestamp, the event's time is the state change's.
        band["detail"]["state"]
            .as_object_mut()
            .unwrap()
            .remove("timestamp");
        for (what, v, at) in [
            ("metric math", math, parse_timestamp(t).unwrap()),
            (
                "anomaly band",
                band,
                parse_timestamp("2024-05-01T12:05:01Z").unwrap(),
            ),
        ] {
            let Decoded::Alarm(a) = ok(&v.to_string()) else {
                panic!("{what}: not an alarm")
            };
            assert_eq!(a.metric, None, "{what}");
            assert_eq!(a.state_change_ms, at, "{what}");
            assert_eq!(a.alarm_name, "cis-4.3", "{what}");
        }
    }

    #[test]
    fn alarm_state_changes_not_from_cloudwatch_are_forged() {
        let t = "2024-05-01T12:05:00.000+0000";
        let mut ev = fixtures::alarm_state_change("cis-4.3", "111122223333", "ALARM", t);
        ev["source"] = "custom.fake".into();
        let err = decode(&ev.to_string()).unwrap_err();
        assert!(err.is_forged(), "{err}");
        let mut ev = fixtures::alarm_state_change("cis-4.3", "111122223333", "ALARM", t);
        ev["account"] = "444455556666".into();
        let err = decode(&ev.to_string()).unwrap_err();
        assert!(err.is_forged(), "{err}");
        assert!(err.to_string().contains("111122223333"), "{err}");
        let mut ev = fixtures::alarm_state_change("cis-4.3", "111122223333", "ALARM", t);
        ev["detail"].as_object_mut().unwrap().remove("state");
        assert_eq!(
            decode(&ev.to_string()),
            Err(DecodeError::Missing("detail.state"))
        );
    }

    #[test]
    fn bodies_up_to_sqs_one_mib_are_read() {
        // An alarm notification padded past the old 256 KiB: SQS takes 1 MiB now.
        let mut alarm = fixtures::alarm(
            "orgwatch-cis-4.1",
            "111122223333",
            "ALARM",
            "2024-05-01T12:00:00.000+0000",
        );
        alarm["AlarmDescription"] = Value::String("d".repeat(400 * 1024));
        let body = alarm.to_string();
        assert!(body.len() > 256 * 1024 && body.len() < MAX_BODY_BYTES);
        assert!(
            matches!(decode(&body), Ok(Decoded::Alarm(_))),
            "{:?}",
            decode(&body).err()
        );
    }

    #[test]
    fn undecodable_bodies_have_reasons() {
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "body is not JSON"),
            ("{\"AlarmName\": ".into(), "body is not JSON"),
            ("\u{1}\u{2}garbage".into(), "body is not JSON"),
            (big, "more than the 1 MiB"),
            (
                sns(&"x".repeat(MAX_SNS_MESSAGE_BYTES + 1)).to_string(),
                "more than the 256 KiB SNS allows",
            ),
            ("[1,2,3]".into(), "unrecognised message"),
            ("{\"hello\": \"world\"}".into(), "unrecognised message"),
            (sns("not json").to_string(), "SNS Message is not JSON"),
            (
                json!({"Type": "SubscriptionConfirmation", "TopicArn": "t", "MessageId": "m"}).to_string(),
                "SNS envelope of type \"SubscriptionConfirmation\"",
            ),
            (
                json!({"AlarmName": "a", "NewStateValue": "ALARM", "AWSAccountId": A}).to_string(),
                "StateChangeTime is missing",
            ),
            (
                alarm("a", A, "ALARM", "noon").to_string(),
                "StateChangeTime \"noon\" is not a timestamp",
            ),
            (
                json!({"detail-type": "x", "source": "aws.ec2", "detail": {"state": "running"}}).to_string(),
                "unrecognised message",
            ),
            (
                json!({"eventName": "ConsoleLogin", "eventSource": "signin.amazonaws.com", "recipientAccountId": A, "awsRegion": "us-east-1", "eventTime": "2024-05-01T12:00:00Z"}).to_string(),
                "eventID is missing",
            ),
            (
                json!({"eventName": "ConsoleLogin", "eventSource": "s", "recipientAccountId": A, "awsRegion": "Mars", "eventID": "e", "eventTime": "2024-05-01T12:00:00Z"}).to_string(),
                "no region",
            ),
        ];
        for (body, want) in cases {
            let err = decode(&body).expect_err(&body.chars().take(80).collect::<String>());
            assert!(
                err.to_string().contains(want),
                "{err} does not contain {want:?}"
            );
        }
    }
}
