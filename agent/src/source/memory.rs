//! An in-memory source with SQS-like semantics (visibility timeout, redelivery, receive
//! counts, a dead-letter list after `max_receives`): the second implementation of
//! [`Source`], for tests of the runtime.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Envelope, Source, SourceError};

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    body: String,
    receives: u32,
    invisible_until: Option<Instant>,
    token: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Msg>,
    dead: Vec<(String, String)>,
    acked: Vec<String>,
    next: u64,
}

/// Messages in memory.
#[derive(Debug)]
pub struct MemorySource {
    state: Mutex<State>,
    visibility: Duration,
    max_receives: u32,
}

impl MemorySource {
    pub fn new(visibility: Duration, max_receives: u32) -> MemorySource {
        MemorySource {
            state: Mutex::new(State::default()),
            visibility,
            max_receives,
        }
    }

    pub fn send(&self, body: impl Into<String>) -> String {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.next += 1;
        let id = format!("m-{}", s.next);
        s.queue.push_back(Msg {
            id: id.clone(),
            body: body.into(),
            receives: 0,
            invisible_until: None,
            token: None,
        });
        id
    }

    /// Ids of deleted messages.
    pub fn acked(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.acked.clone())
            .unwrap_or_default()
    }

    /// (id, body) of dead-lettered messages.
    pub fn dead(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .map(|s| s.dead.clone())
            .unwrap_or_default()
    }

    /// Messages still in the queue (visible or not).
    pub fn remaining(&self) -> usize {
        self.state.lock().map(|s| s.queue.len()).unwrap_or(0)
    }
}

impl Source for MemorySource {
    async fn receive(&self, max: usize) -> Result<Vec<Envelope>, SourceError> {
        for _ in 0..20 {
            {
                let mut s = self
                    .state
                    .lock()
                    .map_err(|_| SourceError("poisoned".into()))?;
                let now = Instant::now();
                let max_receives = self.max_receives;
                // Redrive: messages received too often move to the dead list.
                let mut dead = Vec::new();
                s.queue.retain(|m| {
                    let visible = m.invisible_until.is_none_or(|t| t <= now);
                    if visible && m.receives >= max_receives {
                        dead.push((m.id.clone(), m.body.clone()));
                        false
                    } else {
                        true
                    }
                });
                s.dead.extend(dead);
                let mut out = Vec::new();
                let mut next = s.next;
                for m in s.queue.iter_mut() {
                    if out.len() >= max {
                        break;
                    }
                    if m.invisible_until.is_none_or(|t| t <= now) {
                        next += 1;
                        m.receives += 1;
                        m.invisible_until = Some(now + self.visibility);
                        let token = format!("{}#{next}", m.id);
                        m.token = Some(token.clone());
                        out.push(Envelope {
                            message_id: m.id.clone(),
                            body: m.body.clone(),
                            token,
                            receive_count: m.receives,
                            sent_ms: None,
                        });
                    }
                }
                s.next = next;
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Vec::new())
    }

    async fn ack(&self, tokens: Vec<String>) -> Result<(), SourceError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| SourceError("poisoned".into()))?;
        let mut acked = Vec::new();
        s.queue.retain(|m| {
            let hit = m.token.as_ref().is_some_and(|t| tokens.contains(t));
            if hit {
                acked.push(m.id.clone());
            }
            !hit
        });
        s.acked.extend(acked);
        Ok(())
    }

    async fn extend(&self, tokens: Vec<String>, by: Duration) -> Result<(), SourceError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| SourceError("poisoned".into()))?;
        let until = Instant::now() + by;
        for m in s.queue.iter_mut() {
            if m.token.as_ref().is_some_and(|t| tokens.contains(t)) {
                m.invisible_until = Some(until);
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, envelope: Envelope, _reason: String) -> Result<(), SourceError> {
        let token = envelope.token;
        let mut s = self
            .state
            .lock()
            .map_err(|_| SourceError("poisoned".into()))?;
        for m in s.queue.iter_mut() {
            if m.token.as_deref() == Some(token.as_str()) {
                m.invisible_until = None;
            }
        }
        Ok(())
    }
}
