//! Fingerprints: which alerts are the same incident.
//!
//! An incident is one rule firing in one account and region. Its [`IncidentKey`] is a pure
//! function of the alert; the alarm path and the event path of the same CloudTrail event
//! give the same key, and so does the same alarm state change delivered twice.
//!
//! Time separates incidents of one key: alerts whose own time (alarm `StateChangeTime`,
//! CloudTrail `eventTime`) lies within the dedupe window of an incident's start belong to
//! it. The [`DedupeStore`](crate::dedupe::DedupeStore) remembers the starts; the
//! [`Fingerprint`] is the key plus the start, so every copy of an incident — redelivered,
//! seen through both paths, or reported again while it is open — carries the same one.
//! PagerDuty's `dedup_key` is this fingerprint, so trigger and resolve meet.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::model::Alert;

/// One rule in one account and region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentKey(pub [u8; 16]);

/// One incident: an [`IncidentKey`] and the time it started (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 16]);

/// The incident key of an alert.
pub fn incident_key(alert: &Alert) -> IncidentKey {
    key_of(&alert.rule_id, &alert.account, &alert.region)
}

/// The incident key of (rule, account, region).
pub fn key_of(rule_id: &str, account: &str, region: &str) -> IncidentKey {
    let mut h = Sha256::new();
    for part in [rule_id, account, region] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    IncidentKey(truncate(&h.finalize()))
}

/// The fingerprint of the incident of `key` that started at `start_ms`.
pub fn fingerprint(key: &IncidentKey, start_ms: i64) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(key.0);
    h.update(start_ms.to_be_bytes());
    Fingerprint(truncate(&h.finalize()))
}

fn truncate(digest: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = *d;
    }
    out
}

fn hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Display for IncidentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classified, classify, test_catalog};
    use crate::decode::{decode, fixtures};

    const A: &str = "111122223333";

    fn alerts(body: serde_json::Value) -> Vec<Alert> {
        match classify(&decode(&body.to_string()).unwrap(), &test_catalog()) {
            Classified::Alerts(a) => a,
            Classified::Ignored(r) => panic!("{r}"),
        }
    }

    #[test]
    fn same_alarm_state_change_twice_is_one_key_and_time() {
        let body = fixtures::alarm(
            "orgwatch-root-activity",
            A,
            "ALARM",
            "2024-05-01T12:05:00.000+0000",
        );
        let once = alerts(fixtures::sns(&body.to_string()));
        let twice = alerts(body);
        assert_eq!(incident_key(&once[0]), incident_key(&twice[0]));
        assert_eq!(once[0].at_ms, twice[0].at_ms);
        let k = incident_key(&once[0]);
        assert_eq!(
            fingerprint(&k, once[0].at_ms),
            fingerprint(&k, twice[0].at_ms)
        );
    }

    #[test]
    fn alarm_and_event_paths_of_one_event_share_the_key() {
        let record = fixtures::root_sign_in(A, "ev-1", "2024-05-01T12:00:00Z");
        let event = alerts(fixtures::eventbridge(&record, None));
        let alarm = alerts(fixtures::alarm(
            "orgwatch-root-activity",
            A,
            "ALARM",
            "2024-05-01T12:05:00.000+0000",
        ));
        let root_event = event.iter().find(|a| a.rule_id == "root-activity").unwrap();
        assert_eq!(incident_key(root_event), incident_key(&alarm[0]));
    }

    #[test]
    fn keys_differ_by_rule_account_and_region() {
        let base = key_of("root-activity", A, "us-east-1");
        for other in [
            key_of("cis-4.3", A, "us-east-1"),
            key_of("root-activity", "444455556666", "us-east-1"),
            key_of("root-activity", A, "eu-west-1"),
            // Length-prefixed parts: no ambiguity from concatenation.
            key_of("root-activity1", "11122223333", "us-east-1"),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(fingerprint(&base, 0), fingerprint(&base, 1));
        assert_eq!(fingerprint(&base, 7).to_string().len(), 32);
    }
}
