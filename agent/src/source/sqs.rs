//! The SQS source: long polling in batches of up to 10, batch deletes, visibility renewal.
//!
//! Poison messages are not moved by the agent: `dead_letter` logs the message id and the
//! reason and makes the message visible again at once, so the queue's redrive policy moves
//! it to the DLQ after `maxReceiveCount` receives. That needs no permission on the DLQ and
//! cannot lose or duplicate the message (a send-then-delete could do either on a crash);
//! the reason is in the agent's log, keyed by message id.

use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Envelope, Source, SourceError};

pub struct SqsSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    long_poll: Duration,
    visibility: Duration,
}

fn err(e: impl std::error::Error) -> SourceError {
    SourceError(DisplayErrorContext(&e).to_string())
}

impl SqsSource {
    /// Resolves `queue` (a name in the client's account, or a URL).
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue: &str,
        long_poll: Duration,
        visibility: Duration,
    ) -> Result<SqsSource, SourceError> {
        let queue_url = if queue.contains("://") {
            queue.to_string()
        } else {
            client
                .get_queue_url()
                .queue_name(queue)
                .send()
                .await
                .map_err(|e| SourceError(format!("queue {queue}: {}", DisplayErrorContext(&e))))?
                .queue_url
                .ok_or_else(|| SourceError(format!("queue {queue}: GetQueueUrl returned no URL")))?
        };
        Ok(SqsSource {
            client,
            queue_url,
            long_poll,
            visibility,
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl Source for SqsSource {
    async fn receive(&self, max: usize) -> Result<Vec<Envelope>, SourceError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(secs(self.long_poll))
            .visibility_timeout(secs(self.visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(err)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let attrs = m.attributes.as_ref();
                let attr = |k: MessageSystemAttributeName| {
                    attrs
                        .and_then(|a| a.get(&k))
                        .and_then(|v| v.parse::<i64>().ok())
                };
                Some(Envelope {
                    message_id: m.message_id.clone().unwrap_or_default(),
                    body: m.body.clone().unwrap_or_default(),
                    token: m.receipt_handle.clone()?,
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(1),
                    sent_ms: attr(MessageSystemAttributeName::SentTimestamp),
                })
            })
            .collect())
    }

    async fn ack(&self, tokens: Vec<String>) -> Result<(), SourceError> {
        for chunk in tokens.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(t)
                        .build()
                        .map_err(err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(err)?;
            if let Some(f) = out.failed.first() {
                return Err(SourceError(format!(
                    "{} of {} deletes failed, e.g. {}: {}",
                    out.failed.len(),
                    chunk.len(),
                    f.code,
                    f.message.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(())
    }

    async fn extend(&self, tokens: Vec<String>, by: Duration) -> Result<(), SourceError> {
        for chunk in tokens.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(t)
                        .visibility_timeout(secs(by))
                        .build()
                        .map_err(err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    async fn dead_letter(&self, token: String, _reason: String) -> Result<(), SourceError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(token)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }
}
