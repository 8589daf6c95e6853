//! The heartbeat sink: a dead-man's switch (Healthchecks.io, Cronitor, Dead Man's Snitch,
//! PagerDuty's heartbeat monitors). Every `interval` the agent calls the URL, but only while
//! the pipeline is healthy, so the service alerts when the calls stop: the agent died, lost
//! its credentials, or cannot read its queue. It takes no alerts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Outcome;
use super::http::HttpClient;
use crate::metrics::Metrics;

pub struct Heartbeat {
    pub url: crate::config::Secret,
    pub post: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub http: HttpClient,
}

/// Whether the pipeline is healthy at `now_ms`: the last receive succeeded (no failure
/// since) and was recent — within three long polls and a margin, since an idle queue answers
/// every long poll (SQS ReceiveMessage returns after WaitTimeSeconds with no messages).
pub fn healthy(
    last_receive_ms: i64,
    receive_failures: u64,
    now_ms: i64,
    long_poll: Duration,
) -> bool {
    let recent =
        i64::try_from((long_poll * 3 + Duration::from_secs(30)).as_millis()).unwrap_or(i64::MAX);
    receive_failures == 0 && last_receive_ms > 0 && now_ms.saturating_sub(last_receive_ms) <= recent
}

impl Heartbeat {
    /// One call of the URL: a GET, or a POST saying `status` (`ok`; `test` from
    /// `agent test-sink`).
    pub async fn beat(&self, status: &str) -> Outcome {
        if self.post {
            let body = serde_json::json!({"status": status, "source": "orgwatch-agent"})
                .to_string()
                .into_bytes();
            self.http
                .post_json(self.url.expose(), &[], body, self.timeout)
                .await
        } else {
            self.http.get(self.url.expose(), self.timeout).await
        }
    }

    /// Calls the URL every interval while [`healthy`]; runs until the agent exits.
    pub async fn run(self, name: String, metrics: Arc<Metrics>, long_poll: Duration) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ok = healthy(
                metrics.last_receive_ms.load(Ordering::Relaxed),
                metrics.receive_failures.load(Ordering::Relaxed),
                crate::runtime::now_ms(),
                long_poll,
            );
            if !ok {
                tracing::warn!(sink = %name, "the pipeline is not healthy (receives failing or stalled): heartbeat withheld");
                Metrics::inc(&metrics.heartbeats_withheld);
                continue;
            }
            match self.beat("ok").await {
                Outcome::Delivered => Metrics::inc(&metrics.heartbeats_sent),
                other => {
                    Metrics::inc(&metrics.heartbeats_failed);
                    tracing::warn!(sink = %name, outcome = other.kind(), reason = ?other, "heartbeat call failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_while_receives_succeed_and_are_recent() {
        let poll = Duration::from_secs(20);
        let now = 1_000_000_000;
        assert!(healthy(now - 5_000, 0, now, poll));
        // Three long polls and 30 s: 90 s.
        assert!(healthy(now - 90_000, 0, now, poll));
        assert!(!healthy(now - 90_001, 0, now, poll), "stalled");
        assert!(!healthy(now - 1_000, 1, now, poll), "receives failing");
        assert!(!healthy(0, 0, now, poll), "never received");
    }
}
