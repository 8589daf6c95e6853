//! One queue per region, read as one source: the hub creates a topic and a queue in every
//! monitored region (alarms publish to their own region's topic), so the agent consumes
//! each (`[source] regions`). Receives take the regions in turn; a message's token names
//! its region's queue, so acks, renewals and dead-letters go back to the queue it came
//! from. The dedupe store and the grouper behind are shared: an incident seen in two
//! regions is still one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Envelope, Source, SourceError};

pub struct Regional<S> {
    /// (region, its queue's source).
    sources: Vec<(String, S)>,
    next: AtomicUsize,
}

impl<S: Source> Regional<S> {
    pub fn new(sources: Vec<(String, S)>) -> Regional<S> {
        Regional {
            sources,
            next: AtomicUsize::new(0),
        }
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|(r, _)| r.as_str())
    }

    /// `(source index, the source's own token)` of a token this source gave out.
    fn split(token: &str) -> Result<(usize, &str), SourceError> {
        token
            .split_once(':')
            .and_then(|(i, t)| i.parse().ok().map(|i| (i, t)))
            .ok_or_else(|| SourceError(format!("not a token of this source: {token:?}")))
    }

    /// Tokens grouped by the source they belong to.
    fn by_source(&self, tokens: Vec<String>) -> Result<Vec<Vec<String>>, SourceError> {
        let mut out = vec![Vec::new(); self.sources.len()];
        for t in &tokens {
            let (i, own) = Self::split(t)?;
            out.get_mut(i)
                .ok_or_else(|| SourceError(format!("no source {i} for token {t:?}")))?
                .push(own.to_string());
        }
        Ok(out)
    }
}

impl<S: Source> Source for Regional<S> {
    async fn receive(&self, max: usize) -> Result<Vec<Envelope>, SourceError> {
        if self.sources.is_empty() {
            return Ok(Vec::new());
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len();
        let (region, source) = &self.sources[i];
        let got = source
            .receive(max)
            .await
            .map_err(|e| SourceError(format!("{region}: {}", e.0)))?;
        Ok(got
            .into_iter()
            .map(|e| Envelope {
                token: format!("{i}:{}", e.token),
                ..e
            })
            .collect())
    }

    async fn ack(&self, tokens: Vec<String>) -> Result<(), SourceError> {
        let mut first_error = None;
        for (i, own) in self.by_source(tokens)?.into_iter().enumerate() {
            if own.is_empty() {
                continue;
            }
            let (region, source) = &self.sources[i];
            if let Err(e) = source.ack(own).await {
                first_error.get_or_insert(SourceError(format!("{region}: {}", e.0)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn extend(&self, tokens: Vec<String>, by: Duration) -> Result<(), SourceError> {
        let mut first_error = None;
        for (i, own) in self.by_source(tokens)?.into_iter().enumerate() {
            if own.is_empty() {
                continue;
            }
            let (region, source) = &self.sources[i];
            if let Err(e) = source.extend(own, by).await {
                first_error.get_or_insert(SourceError(format!("{region}: {}", e.0)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn dead_letter(&self, envelope: Envelope, reason: String) -> Result<(), SourceError> {
        let (i, own) = Self::split(&envelope.token)?;
        let own = own.to_string();
        let (_, source) = self
            .sources
            .get(i)
            .ok_or_else(|| SourceError(format!("no source {i} for a dead letter")))?;
        source
            .dead_letter(
                Envelope {
                    token: own,
                    ..envelope
                },
                reason,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::MemorySource;

    #[tokio::test]
    async fn every_region_is_read_and_acks_go_back_to_their_queue() {
        let new = || MemorySource::new(Duration::from_secs(30), 5);
        let (a, b) = (new(), new());
        a.send("from a");
        b.send("from b");
        let r = Regional::new(vec![("us-east-1".into(), a), ("eu-west-1".into(), b)]);
        let mut got = Vec::new();
        for _ in 0..2 {
            got.extend(r.receive(10).await.expect("receive"));
        }
        let mut bodies: Vec<&str> = got.iter().map(|e| e.body.as_str()).collect();
        bodies.sort();
        assert_eq!(bodies, ["from a", "from b"]);
        r.ack(got.iter().map(|e| e.token.clone()).collect())
            .await
            .expect("ack");
        assert_eq!(r.sources[0].1.acked().len(), 1);
        assert_eq!(r.sources[1].1.acked().len(), 1);
        assert!(r.ack(vec!["no-index".into()]).await.is_err());
    }
}
