//! SNS publish: the notification document as the message, the summary as the subject.

use aws_sdk_sns::error::ProvideErrorMetadata;

use super::{Outcome, payload};
use crate::group::Notification;

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
        let result = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(payload::document(n).to_string())
            .send()
            .await;
        match result {
            Ok(_) => Outcome::Delivered,
            Err(e) => {
                let code = e.code().unwrap_or("").to_string();
                let text = aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
                match code.as_str() {
                    "NotFound"
                    | "InvalidParameter"
                    | "AuthorizationError"
                    | "InvalidParameterValue" => Outcome::Reject(format!("{code}: {text}")),
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
            .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
    }
}
