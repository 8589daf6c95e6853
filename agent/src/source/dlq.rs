//! `agent dlq list` and `agent dlq redrive`: the dead-letter queue is not a grave. What the
//! agent dead-letters carries its reason (`orgwatch.reason`); what the queue's redrive
//! policy moved has none. After a fix (a sink's credentials, a route), redrive moves the
//! messages back to their queue, where the dedupe store keeps every sink that already took
//! an incident from getting it twice.
//!
//! Receive-and-send rather than StartMessageMoveTask (SQS API reference): a move task takes
//! every message, and a redrive by reason must leave the others. Messages looked at and not
//! moved are made visible again at once (ChangeMessageVisibility 0).

use std::collections::BTreeMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use shared::aws::AwsFailure;

use super::SourceError;

/// The reason of a message the redrive policy moved (the agent never saw it fail).
pub const NO_REASON: &str = "(none: moved by the queue's redrive policy)";

/// One dead-lettered message.
#[derive(Debug, Clone)]
pub struct Dead {
    pub body: String,
    pub reason: String,
    receipt: String,
    attributes: BTreeMap<String, MessageAttributeValue>,
}

/// A failed SQS call, in the one structured form (`shared::aws::errors`).
fn err<E>(operation: &str, e: aws_sdk_sqs::error::SdkError<E>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    SourceError(AwsFailure::new(operation, e).to_string())
}

/// Every message of `dlq` now visible, kept invisible for `hold_secs` while the caller
/// decides (each at most once per call: received messages stay invisible meanwhile).
pub async fn receive_all(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    hold_secs: i32,
) -> Result<Vec<Dead>, SourceError> {
    let mut out = Vec::new();
    loop {
        let got = client
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(hold_secs)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| err("ReceiveMessage", e))?
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return Ok(out);
        }
        for m in got {
            let (Some(body), Some(receipt)) = (m.body, m.receipt_handle) else {
                continue;
            };
            let attributes: BTreeMap<String, MessageAttributeValue> = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .collect();
            let reason = attributes
                .get("orgwatch.reason")
                .and_then(|v| v.string_value.clone())
                .unwrap_or_else(|| NO_REASON.to_string());
            out.push(Dead {
                body,
                reason,
                receipt,
                attributes,
            });
        }
    }
}

/// How many messages per reason.
pub fn by_reason(dead: &[Dead]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in dead {
        *out.entry(d.reason.clone()).or_default() += 1;
    }
    out
}

/// Makes messages visible again now.
pub async fn release(client: &aws_sdk_sqs::Client, dlq: &str, dead: &[Dead]) {
    for d in dead {
        if let Err(e) = client
            .change_message_visibility()
            .queue_url(dlq)
            .receipt_handle(&d.receipt)
            .visibility_timeout(0)
            .send()
            .await
        {
            tracing::warn!(error = %err("ChangeMessageVisibility", e), "a message stays invisible until its visibility timeout ends");
        }
    }
}

/// Sends `d` back to `queue` (body unchanged, the agent's attributes kept, the reason
/// renamed `orgwatch.redriven_reason`), then deletes it from `dlq`.
pub async fn redrive_one(
    client: &aws_sdk_sqs::Client,
    dlq: &str,
    queue: &str,
    d: &Dead,
) -> Result<(), SourceError> {
    let mut send = client.send_message().queue_url(queue).message_body(&d.body);
    for (k, v) in &d.attributes {
        let k = if k == "orgwatch.reason" {
            "orgwatch.redriven_reason"
        } else {
            k
        };
        send = send.message_attributes(k, v.clone());
    }
    send.send().await.map_err(|e| err("SendMessage", e))?;
    client
        .delete_message()
        .queue_url(dlq)
        .receipt_handle(&d.receipt)
        .send()
        .await
        .map_err(|e| err("DeleteMessage", e))?;
    Ok(())
}
