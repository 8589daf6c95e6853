//! SNS publish: the notification document as the message, the summary as the subject.
//!
//! SNS takes at most 256 KiB per message (SNS developer guide, "Amazon SNS message
//! publishing": "the maximum message size is 256 KB", attributes and subject included): a
//! group too large for it is sent with as many alerts as fit and `more_alerts` counting
//! the rest. A FIFO topic (`.fifo`) needs a MessageGroupId and, without content-based
//! deduplication, a MessageDeduplicationId (Publish): the notification's group and a digest
//! of the document.

use aws_sdk_sns::error::ProvideErrorMetadata;
use serde_json::Value;
use sha2::Digest;

use super::{Outcome, payload};
use crate::group::Notification;

/// SNS's limit, less room for the subject and the request's own fields.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 - 2 * 1024;

/// The notification document, cut to fit `max` bytes: alerts dropped from the end, their
/// number in `more_alerts`.
pub fn fitted(mut doc: Value, max: usize) -> String {
    let mut text = doc.to_string();
    let total = doc["alerts"].as_array().map_or(0, Vec::len);
    while text.len() > max {
        let Some(alerts) = doc["alerts"].as_array_mut() else {
            break;
        };
        if alerts.len() <= 1 {
            // One alert still too large: its enrichment (the events behind it) goes.
            if let Some(first) = alerts.first_mut()
                && first.get("enrichment").is_some_and(|e| !e.is_null())
            {
                first["enrichment"] = Value::Null;
            } else {
                break;
            }
        } else {
            let keep = (alerts.len() / 2).max(1);
            alerts.truncate(keep);
        }
        let kept = doc["alerts"].as_array().map_or(0, Vec::len);
        doc["more_alerts"] = Value::from(total - kept);
        text = doc.to_string();
    }
    text
}

pub struct Sns {
    pub client: aws_sdk_sns::Client,
    pub topic_arn: String,
}

impl Sns {
    pub async fn deliver<T>(&self, n: &Notification<T>) -> Outcome {
        let subject: String = payload::summary(n)
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let message = fitted(payload::document(n), MAX_MESSAGE_BYTES);
        let mut publish = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject);
        if self.topic_arn.ends_with(".fifo") {
            let digest: String = sha2::Sha256::digest(message.as_bytes())
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            publish = publish
                .message_group_id("orgwatch")
                .message_deduplication_id(digest);
        }
        let result = publish.message(message).send().await;
        match result {
            Ok(_) => Outcome::Delivered,
            Err(e) => {
                let code = e.code().unwrap_or("").to_string();
                let text = shared::aws::AwsFailure::new("Publish", e).to_string();
                match code.as_str() {
                    "NotFound"
                    | "InvalidParameter"
                    | "AuthorizationError"
                    | "InvalidParameterValue" => Outcome::Reject(text),
                    _ => Outcome::Retry(text),
                }
            }
        }
    }

    /// One `GetTopicAttributes` call.
    pub async fn healthcheck(&self) -> Result<(), String> {
        self.client
            .get_topic_attributes()
            .topic_arn(&self.topic_arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| shared::aws::AwsFailure::new("GetTopicAttributes", e).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_notification_too_large_for_sns_keeps_what_fits_and_counts_the_rest() {
        let alerts: Vec<Value> = (0..400)
            .map(|i| json!({"fingerprint": i, "enrichment": {"events": ["x".repeat(2000)]}}))
            .collect();
        let doc = json!({"schema_version": 1, "alerts": alerts});
        let text = fitted(doc.clone(), MAX_MESSAGE_BYTES);
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let out: Value = serde_json::from_str(&text).expect("JSON");
        let kept = out["alerts"].as_array().map_or(0, Vec::len);
        assert!(kept > 0 && kept < 400);
        assert_eq!(out["more_alerts"].as_u64(), Some(400 - kept as u64));
        // Small documents are untouched.
        let small = json!({"alerts": [{"fingerprint": 1}]});
        assert_eq!(fitted(small.clone(), MAX_MESSAGE_BYTES), small.to_string());
        // One huge alert loses its enrichment, not itself.
        let one = json!({"alerts": [{"fingerprint": 1, "enrichment": "y".repeat(300_000)}]});
        let out: Value = serde_json::from_str(&fitted(one, MAX_MESSAGE_BYTES)).expect("JSON");
        assert_eq!(out["alerts"][0]["fingerprint"], 1);
        assert!(out["alerts"][0]["enrichment"].is_null());
    }
}
