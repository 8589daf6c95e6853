//! The SQS source: long polling in batches of up to 10, batch deletes, visibility renewal.
//!
//! Poison messages: when the queue has a redrive policy, `dead_letter` sends the body to the
//! dead-letter queue at once, with the reason and the original message id and receive count
//! as message attributes (`orgwatch.reason`, `orgwatch.message_id`,
//! `orgwatch.receive_count`), then deletes the original. Send first, delete second: a crash
//! in between can leave a second copy in the DLQ, never lose the message. If the send fails
//! (no permission on the DLQ, no redrive policy), the message is made visible again and the
//! queue's redrive policy moves it after `maxReceiveCount` receives; the reason is then only
//! in the agent's log, keyed by message id.

use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use shared::aws::AwsFailure;

use super::{Envelope, Source, SourceError};

pub struct SqsSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    /// The dead-letter queue of the redrive policy, when there is one.
    dlq_url: Option<String>,
    /// The redrive policy's maxReceiveCount.
    max_receives: Option<u32>,
    long_poll: Duration,
    visibility: Duration,
}

/// Message attribute values are at most 256 KiB in all; reasons are kept short.
const MAX_REASON_CHARS: usize = 1000;

/// A failed SQS call, in the one structured form (`shared::aws::errors`).
fn err<E>(operation: &'static str) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| SourceError(AwsFailure::new(operation, e).to_string())
}

/// A request that could not be built.
fn build_err(e: impl std::fmt::Display) -> SourceError {
    SourceError(e.to_string())
}

impl SqsSource {
    /// Resolves `queue` (a name in the client's account, or a URL).
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        queue: &str,
        long_poll: Duration,
        visibility: Duration,
        allow_no_redrive: bool,
    ) -> Result<SqsSource, SourceError> {
        let queue_url = if queue.contains("://") {
            queue.to_string()
        } else {
            client
                .get_queue_url()
                .queue_name(queue)
                .send()
                .await
                .map_err(|e| {
                    SourceError(format!(
                        "queue {queue}: {}",
                        AwsFailure::new("GetQueueUrl", e)
                    ))
                })?
                .queue_url
                .ok_or_else(|| SourceError(format!("queue {queue}: GetQueueUrl returned no URL")))?
        };
        // A queue that cannot be read is an error now, not a receive loop failing forever
        // behind a "ready" endpoint; and without a redrive policy an undecodable message
        // would come back at once, forever (SQS developer guide, "Using dead-letter
        // queues": the redrive policy moves a message after maxReceiveCount receives).
        let dlq_url = dead_letter_queue(&client, &queue_url).await.map_err(|e| {
            SourceError(format!(
                "queue {queue_url}: cannot read its attributes (sqs:GetQueueAttributes): {}",
                e.0
            ))
        })?;
        let (dlq_url, max_receives) = match dlq_url {
            Some((u, n)) => (Some(u), Some(n)),
            None => (None, None),
        };
        if dlq_url.is_none() && !allow_no_redrive {
            return Err(SourceError(format!(
                "queue {queue_url} has no redrive policy: a message no sink can take would come back forever; give it a dead-letter queue (hub enroll does), or set source.allow_no_redrive = true"
            )));
        }
        Ok(SqsSource {
            client,
            queue_url,
            dlq_url,
            max_receives,
            long_poll,
            visibility,
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The redrive policy's maxReceiveCount, when there is one.
    pub fn max_receives(&self) -> Option<u32> {
        self.max_receives
    }

    /// The dead-letter queue messages with reasons go to.
    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    async fn send_to_dlq(&self, dlq: &str, envelope: &DeadLetter<'_>) -> Result<(), SourceError> {
        let text = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(build_err)
        };
        let reason: String = envelope.reason.chars().take(MAX_REASON_CHARS).collect();
        let mut send = self
            .client
            .send_message()
            .queue_url(dlq)
            .message_body(envelope.body)
            .message_attributes("orgwatch.reason", text(&reason)?)
            .message_attributes(
                "orgwatch.receive_count",
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(envelope.receive_count.to_string())
                    .build()
                    .map_err(build_err)?,
            );
        if !envelope.message_id.is_empty() {
            send = send.message_attributes("orgwatch.message_id", text(envelope.message_id)?);
        }
        send.send().await.map_err(err("SendMessage"))?;
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(envelope.token)
            .send()
            .await
            .map_err(err("DeleteMessage"))?;
        Ok(())
    }
}

/// What `dead_letter` moves.
struct DeadLetter<'a> {
    token: &'a str,
    body: &'a str,
    message_id: &'a str,
    receive_count: u32,
    reason: &'a str,
}

/// The URL of the queue's dead-letter queue and its maxReceiveCount, from its redrive
/// policy.
async fn dead_letter_queue(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<Option<(String, u32)>, SourceError> {
    let out = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(err("GetQueueAttributes"))?;
    let Some(policy) = out
        .attributes
        .as_ref()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
    else {
        return Ok(None);
    };
    let policy: serde_json::Value = serde_json::from_str(policy)
        .map_err(|e| SourceError(format!("the queue's RedrivePolicy is not JSON: {e}")))?;
    let Some(arn) = policy.get("deadLetterTargetArn").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    // A number, or a number as text (both appear: SQS returns what was set).
    let max_receives = match policy.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .unwrap_or(1);
    // arn:aws:sqs:<region>:<account>:<name>
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
        return Err(SourceError(format!(
            "deadLetterTargetArn {arn:?} is not a queue ARN"
        )));
    };
    let url = client
        .get_queue_url()
        .queue_name(*name)
        .queue_owner_aws_account_id(*account)
        .send()
        .await
        .map_err(|e| {
            SourceError(format!(
                "dead-letter queue {name}: {}",
                AwsFailure::new("GetQueueUrl", e)
            ))
        })?
        .queue_url;
    Ok(url.map(|u| (u, max_receives)))
}

/// The region in a queue URL's host: `https://sqs.<region>.amazonaws.com/...` (also
/// `.amazonaws.com.cn`) or the legacy `https://<region>.queue.amazonaws.com/...`; `None`
/// for a name or another host (an endpoint override).
pub fn region_of_url(queue: &str) -> Option<String> {
    let host = queue.split("://").nth(1)?.split('/').next()?;
    let host = host.split(':').next()?;
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs", region, "amazonaws", "com", ..] => region,
        [region, "queue", "amazonaws", "com", ..] => region,
        _ => return None,
    };
    (region.split('-').count() >= 3).then(|| region.to_string())
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// Which batch call a chunk goes through.
#[derive(Clone, Copy)]
enum Batch {
    Delete,
    Renew(Duration),
}

/// The tokens of `chunk` that `failed` names (by entry id, the index in the chunk), each
/// with why.
fn failed_entries(
    chunk: &[String],
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<(String, String)> {
    failed
        .iter()
        .filter_map(|f| {
            let t = f.id.parse::<usize>().ok().and_then(|i| chunk.get(i))?;
            Some((
                t.clone(),
                format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")),
            ))
        })
        .collect()
}

impl SqsSource {
    /// One batch call over every chunk of ten (DeleteMessageBatch or
    /// ChangeMessageVisibilityBatch); the tokens it did not take, each with why.
    async fn batches(&self, tokens: &[String], call: Batch) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for chunk in tokens.chunks(10) {
            let out = match call {
                Batch::Delete => {
                    let entries: Result<Vec<_>, _> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(t)
                                .build()
                        })
                        .collect();
                    match entries {
                        Ok(entries) => self
                            .client
                            .delete_message_batch()
                            .queue_url(&self.queue_url)
                            .set_entries(Some(entries))
                            .send()
                            .await
                            .map(|o| failed_entries(chunk, &o.failed))
                            .map_err(|e| AwsFailure::new("DeleteMessageBatch", e).to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Batch::Renew(by) => {
                    let entries: Result<Vec<_>, _> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            ChangeMessageVisibilityBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(t)
                                .visibility_timeout(secs(by))
                                .build()
                        })
                        .collect();
                    match entries {
                        Ok(entries) => self
                            .client
                            .change_message_visibility_batch()
                            .queue_url(&self.queue_url)
                            .set_entries(Some(entries))
                            .send()
                            .await
                            .map(|o| failed_entries(chunk, &o.failed))
                            .map_err(|e| {
                                AwsFailure::new("ChangeMessageVisibilityBatch", e).to_string()
                            }),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            match out {
                Ok(f) => failed.extend(f),
                Err(why) => failed.extend(chunk.iter().map(|t| (t.clone(), why.clone()))),
            }
        }
        failed
    }

    /// [`Self::batches`], then once more for the entries that failed; an error names how
    /// many failed twice. Each entry's result is reported on its own (SQS API reference,
    /// DeleteMessageBatch and ChangeMessageVisibilityBatch: a batch can succeed with
    /// failed entries), so every chunk is sent whatever an earlier one answered.
    async fn batches_retried(
        &self,
        tokens: &[String],
        call: Batch,
        what: &str,
    ) -> Result<(), SourceError> {
        let failed = self.batches(tokens, call).await;
        if failed.is_empty() {
            return Ok(());
        }
        let retry: Vec<String> = failed.into_iter().map(|(t, _)| t).collect();
        let still = self.batches(&retry, call).await;
        match still.first() {
            None => Ok(()),
            Some((_, why)) => Err(SourceError(format!(
                "{} of {} {what} failed twice, e.g. {why}",
                still.len(),
                tokens.len()
            ))),
        }
    }
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
            .map_err(err("ReceiveMessage"))?;
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
        self.batches_retried(&tokens, Batch::Delete, "deletes")
            .await
            .map_err(|e| {
                SourceError(format!(
                    "{}; those messages come back and the dedupe store suppresses the repeat",
                    e.0
                ))
            })
    }

    async fn extend(&self, tokens: Vec<String>, by: Duration) -> Result<(), SourceError> {
        self.batches_retried(&tokens, Batch::Renew(by), "visibility renewals")
            .await
    }

    async fn dead_letter(&self, envelope: Envelope, reason: String) -> Result<(), SourceError> {
        if let Some(dlq) = &self.dlq_url {
            let moved = self
                .send_to_dlq(
                    dlq,
                    &DeadLetter {
                        token: &envelope.token,
                        body: &envelope.body,
                        message_id: &envelope.message_id,
                        receive_count: envelope.receive_count,
                        reason: &reason,
                    },
                )
                .await;
            match moved {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(message_id = %envelope.message_id, error = %e, "cannot move the message to the dead-letter queue; it goes there by redrive")
                }
            }
        }
        let token = envelope.token;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(token)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(err("ChangeMessageVisibility"))?;
        Ok(())
    }
}

#[cfg(test)]
mod url_tests {
    use super::region_of_url;

    #[test]
    fn a_queue_urls_region_is_in_its_host() {
        assert_eq!(
            region_of_url("https://sqs.eu-west-1.amazonaws.com/111122223333/orgwatch-alerts")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_url("https://us-west-2.queue.amazonaws.com/111122223333/q").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region_of_url("https://sqs.cn-north-1.amazonaws.com.cn/111122223333/q").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region_of_url("http://127.0.0.1:4566/111122223333/q"), None);
        assert_eq!(region_of_url("orgwatch-alerts"), None);
    }
}
