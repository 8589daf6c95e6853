//! Sinks: where notifications go. Each sink has its own rate limit (governor) and retries
//! with exponential backoff and full jitter, so one failing destination backs off without
//! holding up the others (each runs in its own task; see the runtime).
//!
//! A delivery attempt ends in an [`Outcome`]: `Delivered`, `Retry(reason)` (transient:
//! timeouts, 429, 5xx) or `Reject(reason)` (the destination refused the content itself).
//!
//! The retry loop ([`Sink::deliver_with_retry`], about thirty lines) is written here rather
//! than taken from `backon` or tower's `retry` layer, because its rules are the part those
//! leave to the caller, and with a library they would live in closures around it:
//! * its budget is `retry_for` of wall time, attempts included, and it stops *before* a
//!   sleep that would end past it (backon's `with_total_delay` counts only the sleeps);
//!   the runtime then keeps the message in flight and the core tries it again later, so
//!   ending early is the designed hand-over, not a failure;
//! * a `Retry-After` sets a floor under the next delay, `max(backoff, Retry-After)`, capped
//!   at [`MAX_RETRY_AFTER`], and one past the budget ends the loop at once (backon's
//!   `adjust` could do it, holding a second copy of the budget);
//! * an attempt has three results, not a `Result`: `Reject` ends without retrying and
//!   tells the runtime to dead-letter;
//! * full jitter, uniform in `[0, min(30 s, 500 ms * 2^n)]` ([`backoff`], a pure function
//!   with its own test; AWS Architecture Blog, "Exponential Backoff And Jitter"); backon's
//!   jitter adds `[0, delay)` on top of the exponential delay, never going below it;
//! * each attempt reports its outcome and duration to the caller (the per-sink retry
//!   counter and delivery-latency histogram).
//!
//! tower's `retry` would also put a `Service` layer in every sink, which STYLE.md asks us
//! not to copy from vector.

pub mod file;
pub mod heartbeat;
pub mod http;
pub mod pagerduty;
pub mod payload;
pub mod proxy;
pub mod slack;
pub mod sns;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{RateLimiter, middleware::NoOpMiddleware};

use crate::config::{SinkKind, SinkSpec};
use crate::group::Notification;

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry(String),
    /// Retry, not before this long (an HTTP `Retry-After`).
    RetryAfter(String, Duration),
    Reject(String),
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) | Outcome::RetryAfter(..) => "retry",
            Outcome::Reject(_) => "reject",
        }
    }
}

/// The notification `agent test-sink` sends: one informational alert of the rule
/// `orgwatch-test` in account 000000000000, titled and explained as a test, so nobody acts
/// on it.
pub fn test_notification() -> Notification<u64> {
    use crate::model::{Alert, AlertState, Origin, Severity};
    let now_ms = crate::runtime::now_ms();
    let alert = Alert {
        rule_id: "orgwatch-test".into(),
        title: "orgwatch test notification: no action needed".into(),
        severity: Severity::Info,
        account: "000000000000".into(),
        region: "us-east-1".into(),
        state: AlertState::Firing,
        at_ms: now_ms,
        origin: Origin::Event {
            event_id: format!("orgwatch-test-{now_ms}"),
        },
        actor: None,
        remediation: Some(
            "Sent by `agent test-sink` to check this destination; nothing happened in any account."
                .into(),
        ),
        enrichment: None,
    };
    let incident = crate::dedupe::Incident {
        key: crate::fingerprint::incident_key(&alert),
        start_ms: now_ms,
        new: true,
    };
    Notification {
        id: 0,
        sink: 0,
        labels: crate::group::labels(&crate::config::GroupSpec::default().by, &alert),
        alerts: vec![crate::group::Notified {
            fingerprint: incident.fingerprint(),
            alert,
            incident,
        }],
        repeat: false,
        tokens: Vec::new(),
    }
}

/// The longest `Retry-After` honoured: a longer one waits this, then tries (and the
/// runtime keeps the message in flight past `retry_for`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The final result of delivering one notification, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Delivered {
        attempts: u32,
    },
    /// Rejected (`permanent`: the destination refused it and always will), or still
    /// failing after `retry_for` (the runtime tries again later).
    Failed {
        attempts: u32,
        reason: String,
        permanent: bool,
    },
}

enum Driver {
    Stdout,
    File(file::JsonLines),
    Webhook(webhook::Webhook),
    Slack(slack::Slack),
    PagerDuty(pagerduty::PagerDuty),
    Sns(sns::Sns),
    Heartbeat,
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware>;

/// A built sink.
pub struct Sink {
    pub name: String,
    pub type_name: &'static str,
    retry_for: Duration,
    limiter: Arc<Limiter>,
    driver: Driver,
}

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Full jitter: a uniform delay in [0, min(MAX, INITIAL * 2^attempt)].
pub fn backoff(attempt: u32) -> Duration {
    let cap = INITIAL_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    cap.mul_f64(fastrand::f64())
}

impl Sink {
    /// Builds a validated sink. `aws` gives the clients `sns` sinks publish with: in the
    /// topic's own region (SNS API reference, Publish: a topic is addressed in its region's
    /// endpoint; an ARN of another region fails there).
    pub fn build(
        spec: &SinkSpec,
        http: &http::HttpClient,
        aws: Option<&shared::aws::Clients>,
    ) -> Result<Sink, String> {
        if let SinkKind::Webhook { url, .. }
        | SinkKind::Slack { url }
        | SinkKind::PagerDuty { url, .. }
        | SinkKind::Heartbeat { url, .. } = &spec.kind
        {
            http.check_url(&format!("sink {}", spec.name), url.expose())?;
        }
        let driver = match &spec.kind {
            // Run beside the pipeline (`heartbeat`), never routed to.
            SinkKind::Heartbeat { .. } => Driver::Heartbeat,
            SinkKind::Stdout => Driver::Stdout,
            SinkKind::File { path } => Driver::File(file::JsonLines { path: path.clone() }),
            SinkKind::Webhook {
                url,
                secret,
                signature_header,
            } => Driver::Webhook(webhook::Webhook {
                url: url.clone(),
                secret: secret.clone(),
                signature_header: signature_header.clone(),
                http: http.clone(),
                timeout: spec.timeout,
            }),
            SinkKind::Slack { url } => Driver::Slack(slack::Slack {
                url: url.clone(),
                http: http.clone(),
                timeout: spec.timeout,
            }),
            SinkKind::PagerDuty { url, routing_key } => Driver::PagerDuty(pagerduty::PagerDuty {
                url: url.clone(),
                routing_key: routing_key.clone(),
                http: http.clone(),
                timeout: spec.timeout,
            }),
            SinkKind::Sns { topic_arn } => {
                let aws = aws.ok_or_else(|| format!("sink {}: no AWS clients", spec.name))?;
                let region = topic_arn
                    .split(':')
                    .nth(3)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| aws.region());
                Driver::Sns(sns::Sns {
                    client: aws.in_region(&region).sns(),
                    topic_arn: topic_arn.clone(),
                })
            }
        };
        Ok(Sink {
            name: spec.name.clone(),
            type_name: spec.kind.type_name(),
            retry_for: spec.retry_for,
            limiter: Arc::new(RateLimiter::direct(spec.rate.quota())),
            driver,
        })
    }

    /// Checks the destination without sending an alert (SNS: GetTopicAttributes; file:
    /// open for append). HTTP destinations have no side-effect-free check and pass.
    pub async fn healthcheck(&self) -> Result<(), String> {
        match &self.driver {
            Driver::File(f) => f.healthcheck(),
            Driver::Sns(s) => s.healthcheck().await,
            _ => Ok(()),
        }
    }

    /// One attempt, after waiting for the rate limiter.
    pub async fn deliver<T>(&self, n: &Notification<T>) -> Outcome {
        self.deliver_timed(n).await.0
    }

    /// One attempt, after waiting for the rate limiter, and how long it took at the
    /// destination (the wait for the limiter not included).
    async fn deliver_timed<T>(&self, n: &Notification<T>) -> (Outcome, Duration) {
        self.limiter.until_ready().await;
        let started = Instant::now();
        let outcome = match &self.driver {
            Driver::Stdout => file::stdout(n),
            Driver::File(f) => f.deliver(n).await,
            Driver::Webhook(w) => w.deliver(n).await,
            Driver::Slack(s) => s.deliver(n).await,
            Driver::PagerDuty(p) => p.deliver(n).await,
            Driver::Sns(s) => s.deliver(n).await,
            Driver::Heartbeat => {
                Outcome::Reject("a heartbeat sink takes no alerts (no route may name it)".into())
            }
        };
        (outcome, started.elapsed())
    }

    /// Attempts until delivered, rejected, or `retry_for` has passed. `on_attempt` is
    /// told each attempt's outcome and how long the destination took (the runtime's
    /// per-sink retry counter and delivery-latency histogram).
    pub async fn deliver_with_retry<T>(
        &self,
        n: &Notification<T>,
        on_attempt: impl Fn(&Outcome, Duration),
    ) -> Final {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (outcome, took) = self.deliver_timed(n).await;
            on_attempt(&outcome, took);
            let (reason, at_least) = match outcome {
                Outcome::Delivered => return Final::Delivered { attempts },
                Outcome::Reject(reason) => {
                    return Final::Failed {
                        attempts,
                        reason,
                        permanent: true,
                    };
                }
                Outcome::Retry(reason) => (reason, Duration::ZERO),
                Outcome::RetryAfter(reason, d) => (reason, d.min(MAX_RETRY_AFTER)),
            };
            let delay = backoff(attempts - 1).max(at_least);
            if started.elapsed() + delay > self.retry_for {
                return Final::Failed {
                    attempts,
                    reason: format!("still failing after {attempts} attempts: {reason}"),
                    permanent: false,
                };
            }
            tracing::warn!(sink = %self.name, attempts, ?delay, %reason, "delivery failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 0..40 {
            let cap = INITIAL_BACKOFF
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_BACKOFF);
            for _ in 0..20 {
                assert!(backoff(attempt) <= cap);
            }
        }
        // Jitter: not always the same value.
        let samples: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(5)).collect();
        assert!(samples.len() > 1);
    }
}
