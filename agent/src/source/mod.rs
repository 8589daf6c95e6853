//! Sources: where messages come from. `receive` returns envelopes with an ack token;
//! `ack` deletes many at once; `extend` renews visibility while a message is in flight;
//! `dead_letter` records why a message cannot be processed and hands it to the DLQ path.

pub mod dlq;
pub mod memory;
pub mod regional;
pub mod sqs;

use std::future::Future;
use std::time::Duration;

/// One received message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub message_id: String,
    pub body: String,
    /// Opaque token for ack / extend / dead_letter (SQS: the receipt handle).
    pub token: String,
    /// How many times the queue has delivered it (1 the first time).
    pub receive_count: u32,
    /// When it was sent to the queue, Unix milliseconds, when known.
    pub sent_ms: Option<i64>,
}

/// A failure to talk to the source.
#[derive(Debug, thiserror::Error)]
#[error("source: {0}")]
pub struct SourceError(pub String);

pub trait Source: Send + Sync + 'static {
    /// Waits (long poll) for up to `max` messages.
    fn receive(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Envelope>, SourceError>> + Send;
    /// Deletes these messages.
    fn ack(&self, tokens: Vec<String>) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Keeps these messages invisible for `by` from now.
    fn extend(
        &self,
        tokens: Vec<String>,
        by: Duration,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Gives up on a message that can never be processed: it reaches the dead-letter queue
    /// with its reason (for SQS: sent there with the reason as an attribute, else through the
    /// queue's redrive policy).
    fn dead_letter(
        &self,
        envelope: Envelope,
        reason: String,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}
