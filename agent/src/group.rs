//! Group: Alertmanager-style batching of alerts into notifications, per sink.
//!
//! Alerts with the same values of the `by` labels, routed to the same sink, form a group.
//! A new group is notified `wait` after its first alert; later alerts are notified at most
//! every `interval`; a group whose alerts are all notified is re-sent after `repeat` while
//! any of them still fires. A resolved alert replaces its firing one and is removed once
//! notified, so resolution closes the group.
//!
//! Each alert carries the ack tokens of the messages that reported it. A notification
//! lists only alerts not yet notified (so each alert is delivered once), with their tokens;
//! [`Grouper::completed`] hands the tokens back when the sink accepted or gave up. A copy of
//! an alert that arrives while its notification is in flight waits for that outcome
//! instead of being sent again.
//!
//! Synchronous; time is an argument.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::config::{GroupLabel, GroupSpec};
use crate::dedupe::Incident;
use crate::fingerprint::Fingerprint;
use crate::model::{Alert, AlertState};

/// The values of the `by` labels of a group, in `by` order.
pub type Labels = Vec<(GroupLabel, String)>;

/// The labels of `alert` for grouping by `by`.
pub fn labels(by: &[GroupLabel], alert: &Alert) -> Labels {
    by.iter()
        .map(|l| {
            let v = match l {
                GroupLabel::Rule => alert.rule_id.clone(),
                GroupLabel::Severity => alert.severity.to_string(),
                GroupLabel::Account => alert.account.clone(),
                GroupLabel::Region => alert.region.clone(),
            };
            (*l, v)
        })
        .collect()
}

/// One alert in a notification.
#[derive(Debug, Clone)]
pub struct Notified {
    pub alert: Alert,
    pub incident: Incident,
    pub fingerprint: Fingerprint,
}

/// What a sink is asked to deliver.
#[derive(Debug, Clone)]
pub struct Notification<T> {
    /// Unique per grouper; pass it back to [`Grouper::completed`].
    pub id: u64,
    pub sink: usize,
    pub labels: Labels,
    pub alerts: Vec<Notified>,
    /// A reminder about alerts already notified (`repeat`); carries no tokens.
    pub repeat: bool,
    pub tokens: Vec<T>,
}

impl<T> Notification<T> {
    /// Distinct accounts, in order of appearance.
    pub fn accounts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for n in &self.alerts {
            if !out.contains(&n.alert.account.as_str()) {
                out.push(&n.alert.account);
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    InFlight(u64),
    Done,
}

#[derive(Debug)]
struct Member<T> {
    notified: Notified,
    status: Status,
    tokens: Vec<T>,
    touched: Instant,
}

#[derive(Debug)]
struct Group<T> {
    members: BTreeMap<u64, Member<T>>,
    index: HashMap<(Fingerprint, AlertState), u64>,
    due: Instant,
    last_sent: Option<Instant>,
}

/// The grouper of one agent.
#[derive(Debug)]
pub struct Grouper<T> {
    spec: GroupSpec,
    /// How long a notified firing alert stays in its group (the dedupe window).
    retain: Duration,
    groups: BTreeMap<(usize, Labels), Group<T>>,
    in_flight: HashMap<u64, (usize, Labels)>,
    next_seq: u64,
    next_id: u64,
}

impl<T: Clone> Grouper<T> {
    pub fn new(spec: GroupSpec, retain: Duration) -> Grouper<T> {
        Grouper {
            spec,
            retain,
            groups: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_seq: 0,
            next_id: 1,
        }
    }

    /// Alerts held (pending, in flight or retained).
    pub fn len(&self) -> usize {
        self.groups.values().map(|g| g.members.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Adds an alert that the store says `sink` has not yet accepted, with the token of its
    /// message. Returns false, keeping no token, when this grouper saw the sink accept it
    /// already: a copy (a redelivered message, the alarm of an event) whose store answer
    /// was read before that delivery was recorded and arrived after it. The copy is a
    /// duplicate, to be settled at once, never sent again.
    #[must_use]
    pub fn add(
        &mut self,
        sink: usize,
        alert: Alert,
        incident: Incident,
        token: T,
        now: Instant,
    ) -> bool {
        let key = (sink, labels(&self.spec.by, &alert));
        let fp = incident.fingerprint();
        let state = alert.state;
        let wait = self.spec.wait;
        let interval = self.spec.interval;
        let group = self.groups.entry(key).or_insert_with(|| Group {
            members: BTreeMap::new(),
            index: HashMap::new(),
            due: now + wait,
            last_sent: None,
        });
        if let Some(seq) = group.index.get(&(fp, state)).copied()
            && let Some(m) = group.members.get_mut(&seq)
        {
            m.touched = now;
            if m.status == Status::Done {
                // Accepted: a failed delivery leaves no member behind (see `completed`), so
                // a copy of a delivered alert is a duplicate whatever a store read earlier
                // said.
                return false;
            }
            m.tokens.push(token);
            // The event path knows who did it; the alarm path does not: keep the richer copy.
            if m.status == Status::Pending
                && m.notified.alert.actor.is_none()
                && alert.actor.is_some()
            {
                m.notified.alert.actor = alert.actor;
            }
            // An enriched alarm confirming a pending event: keep what the log group showed.
            if m.status == Status::Pending
                && m.notified.alert.enrichment.is_none()
                && alert.enrichment.is_some()
            {
                m.notified.alert.enrichment = alert.enrichment;
            }
            return true;
        }
        if state == AlertState::Resolved {
            // The resolution replaces the firing alert, unless that is in flight.
            let firing = group
                .index
                .get(&(fp, AlertState::Firing))
                .copied()
                .filter(|seq| {
                    group
                        .members
                        .get(seq)
                        .is_some_and(|m| !matches!(m.status, Status::InFlight(_)))
                });
            if let Some(seq) = firing
                && let Some(m) = group.members.remove(&seq)
            {
                group.index.remove(&(fp, AlertState::Firing));
                if m.status == Status::Pending {
                    // Never notified: fold its tokens into the resolution.
                    self.next_seq += 1;
                    let seq = self.next_seq;
                    let mut tokens = m.tokens;
                    tokens.push(token);
                    group.index.insert((fp, state), seq);
                    group.members.insert(
                        seq,
                        Member {
                            notified: Notified {
                                alert,
                                incident,
                                fingerprint: fp,
                            },
                            status: Status::Pending,
                            tokens,
                            touched: now,
                        },
                    );
                    group.due = group
                        .due
                        .min(next_due(group.last_sent, now, wait, interval));
                    return true;
                }
            }
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        group.index.insert((fp, state), seq);
        group.members.insert(
            seq,
            Member {
                notified: Notified {
                    alert,
                    incident,
                    fingerprint: fp,
                },
                status: Status::Pending,
                tokens: vec![token],
                touched: now,
            },
        );
        if group.last_sent.is_some() {
            group.due = group
                .due
                .min(next_due(group.last_sent, now, wait, interval));
        }
        true
    }

    /// The notifications due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Notification<T>> {
        let mut out = Vec::new();
        let retain = self.retain;
        let (interval, repeat) = (self.spec.interval, self.spec.repeat);
        let mut empty = Vec::new();
        for (key, group) in self.groups.iter_mut() {
            // Forget notified alerts: resolutions at once, firing ones after the window.
            let stale: Vec<u64> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.status == Status::Done
                        && (m.notified.alert.state == AlertState::Resolved
                            || now.saturating_duration_since(m.touched) >= retain)
                })
                .map(|(s, _)| *s)
                .collect();
            for s in stale {
                if let Some(m) = group.members.remove(&s) {
                    group
                        .index
                        .remove(&(m.notified.fingerprint, m.notified.alert.state));
                }
            }
            if group.members.is_empty() {
                empty.push(key.clone());
                continue;
            }
            if group.due > now {
                continue;
            }
            let pending: Vec<u64> = group
                .members
                .iter()
                .filter(|(_, m)| m.status == Status::Pending)
                .map(|(s, _)| *s)
                .collect();
            let id = self.next_id;
            if !pending.is_empty() {
                self.next_id += 1;
                let mut alerts = Vec::with_capacity(pending.len());
                let mut tokens = Vec::new();
                for s in pending {
                    if let Some(m) = group.members.get_mut(&s) {
                        m.status = Status::InFlight(id);
                        alerts.push(m.notified.clone());
                        tokens.extend(m.tokens.iter().cloned());
                    }
                }
                self.in_flight.insert(id, key.clone());
                out.push(Notification {
                    id,
                    sink: key.0,
                    labels: key.1.clone(),
                    alerts,
                    repeat: false,
                    tokens,
                });
                group.last_sent = Some(now);
                group.due = now + interval;
            } else if group.last_sent.is_some_and(|t| now >= t + repeat)
                && group.members.values().all(|m| m.status == Status::Done)
            {
                self.next_id += 1;
                let alerts: Vec<Notified> = group
                    .members
                    .values()
                    .filter(|m| m.notified.alert.state == AlertState::Firing)
                    .map(|m| m.notified.clone())
                    .collect();
                group.last_sent = Some(now);
                group.due = now + repeat;
                if !alerts.is_empty() {
                    out.push(Notification {
                        id,
                        sink: key.0,
                        labels: key.1.clone(),
                        alerts,
                        repeat: true,
                        tokens: Vec::new(),
                    });
                }
            } else {
                group.due = match group.last_sent {
                    Some(t) => (t + repeat).max(now + interval),
                    None => now + interval,
                };
            }
        }
        for k in empty {
            self.groups.remove(&k);
        }
        out
    }

    /// Makes every group with unsent alerts due now (used when draining on shutdown).
    pub fn flush(&mut self, now: Instant) {
        for g in self.groups.values_mut() {
            if g.members.values().any(|m| m.status == Status::Pending) {
                g.due = now;
            }
        }
    }

    /// The earliest time anything may become due (for sleeping until then).
    pub fn next_due(&self) -> Option<Instant> {
        self.groups.values().map(|g| g.due).min()
    }

    /// The outcome of notification `id`: returns every token waiting on it (those it was
    /// sent with and copies that arrived meanwhile). On failure the alerts leave the group;
    /// their messages come back from the queue and are added again.
    pub fn completed(&mut self, id: u64, delivered: bool, now: Instant) -> Vec<T> {
        let Some(key) = self.in_flight.remove(&id) else {
            return Vec::new();
        };
        let Some(group) = self.groups.get_mut(&key) else {
            return Vec::new();
        };
        let mut tokens = Vec::new();
        let seqs: Vec<u64> = group
            .members
            .iter()
            .filter(|(_, m)| m.status == Status::InFlight(id))
            .map(|(s, _)| *s)
            .collect();
        for s in seqs {
            if delivered {
                if let Some(m) = group.members.get_mut(&s) {
                    m.status = Status::Done;
                    m.touched = now;
                    tokens.append(&mut m.tokens);
                }
            } else if let Some(mut m) = group.members.remove(&s) {
                group
                    .index
                    .remove(&(m.notified.fingerprint, m.notified.alert.state));
                tokens.append(&mut m.tokens);
            }
        }
        tokens
    }
}

fn next_due(
    last_sent: Option<Instant>,
    now: Instant,
    wait: Duration,
    interval: Duration,
) -> Instant {
    match last_sent {
        Some(t) => (t + interval).max(now),
        None => now + wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::key_of;
    use crate::model::Severity;

    const S: Duration = Duration::from_secs(1);

    fn spec() -> GroupSpec {
        GroupSpec {
            by: vec![GroupLabel::Rule],
            wait: 30 * S,
            interval: 300 * S,
            repeat: 3600 * S,
        }
    }

    fn alert(rule: &str, account: &str, state: AlertState) -> (Alert, Incident) {
        let a = Alert {
            state,
            ..crate::model::test_alert(rule, Severity::High, account, "us-east-1")
        };
        let inc = Incident {
            key: key_of(rule, account, "us-east-1"),
            start_ms: 0,
            new: true,
        };
        (a, inc)
    }

    fn add(
        g: &mut Grouper<u32>,
        rule: &str,
        account: &str,
        state: AlertState,
        token: u32,
        now: Instant,
    ) -> bool {
        let (a, i) = alert(rule, account, state);
        g.add(0, a, i, token, now)
    }

    #[test]
    fn a_copy_of_an_accepted_alert_is_a_duplicate_not_sent_again() {
        let t0 = Instant::now();
        let mut g = Grouper::new(spec(), 900 * S);
        assert!(add(
            &mut g,
            "root",
            "111111111111",
            AlertState::Firing,
            1,
            t0
        ));
        let first = g.due(t0 + 30 * S);
        assert_eq!(g.completed(first[0].id, true, t0 + 31 * S), [1]);
        // The copy's store answer was read before the delivery was recorded.
        assert!(!add(
            &mut g,
            "root",
            "111111111111",
            AlertState::Firing,
            2,
            t0 + 32 * S
        ));
        assert!(g.due(t0 + 400 * S).is_empty(), "not sent again");
        // A failed delivery leaves nothing behind: its copy is sent.
        assert!(add(
            &mut g,
            "root",
            "222222222222",
            AlertState::Firing,
            3,
            t0 + 401 * S
        ));
        let failed = g.due(t0 + 700 * S);
        assert_eq!(g.completed(failed[0].id, false, t0 + 701 * S), [3]);
        assert!(add(
            &mut g,
            "root",
            "222222222222",
            AlertState::Firing,
            4,
            t0 + 702 * S
        ));
        assert_eq!(g.due(t0 + 1100 * S).len(), 1);
    }

    #[test]
    fn three_accounts_within_wait_are_one_notification() {
        let t0 = Instant::now();
        let mut g = Grouper::new(spec(), 900 * S);
        add(&mut g, "root", "111111111111", AlertState::Firing, 1, t0);
        add(
            &mut g,
            "root",
            "222222222222",
            AlertState::Firing,
            2,
            t0 + 10 * S,
        );
        add(
            &mut g,
            "root",
            "333333333333",
            AlertState::Firing,
            3,
            t0 + 20 * S,
        );
        add(
            &mut g,
            "cis-4.3",
            "111111111111",
            AlertState::Firing,
            4,
            t0 + 20 * S,
        );
        assert!(g.due(t0 + 29 * S).is_empty(), "nothing before wait");
        let out = g.due(t0 + 30 * S);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].accounts(),
            ["111111111111", "222222222222", "333333333333"]
        );
        assert_eq!(out[0].tokens, [1, 2, 3]);
        let out2 = g.due(t0 + 50 * S);
        assert_eq!(out2.len(), 1, "the other rule's group waits for itself");
        assert_eq!(out2[0].tokens, [4]);
        assert_eq!(g.completed(out[0].id, true, t0 + 31 * S), [1, 2, 3]);
        assert_eq!(g.completed(out[0].id, true, t0 + 31 * S), Vec::<u32>::new());
    }

    #[test]
    fn later_alerts_wait_for_interval_and_copies_are_not_resent() {
        let t0 = Instant::now();
        let mut g = Grouper::new(spec(), 900 * S);
        add(&mut g, "root", "111111111111", AlertState::Firing, 1, t0);
        let first = g.due(t0 + 30 * S);
        assert_eq!(first.len(), 1);
        // A copy while in flight joins the flight; a new account waits for interval.
        add(
            &mut g,
            "root",
            "111111111111",
            AlertState::Firing,
            2,
            t0 + 31 * S,
        );
        add(
            &mut g,
            "root",
            "222222222222",
            AlertState::Firing,
            3,
            t0 + 40 * S,
        );
        assert_eq!(g.completed(first[0].id, true, t0 + 41 * S), [1, 2]);
        assert!(g.due(t0 + 329 * S).is_empty());
        let second = g.due(t0 + 330 * S);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].accounts(), ["222222222222"]);
        assert_eq!(g.completed(second[0].id, true, t0 + 331 * S), [3]);
        // Repeat re-sends what still fires, without tokens.
        assert!(g.due(t0 + 600 * S).is_empty());
        let rep = g.due(t0 + 330 * S + 3600 * S);
        assert!(
            rep.is_empty(),
            "alerts retained 900s only: nothing left to repeat"
        );
        assert!(g.is_empty());
    }

    #[test]
    fn repeat_reminds_while_firing() {
        let t0 = Instant::now();
        let mut g = Grouper::new(spec(), 10_000 * S);
        add(&mut g, "root", "111111111111", AlertState::Firing, 1, t0);
        let n = g.due(t0 + 30 * S);
        g.completed(n[0].id, true, t0 + 30 * S);
        assert!(g.due(t0 + 3000 * S).is_empty());
        let rep = g.due(t0 + 3630 * S);
        assert_eq!(rep.len(), 1);
        assert!(rep[0].repeat && rep[0].tokens.is_empty());
    }

    #[test]
    fn resolution_closes_the_group() {
        let t0 = Instant::now();
        let mut g = Grouper::new(spec(), 10_000 * S);
        add(&mut g, "root", "111111111111", AlertState::Firing, 1, t0);
        let n = g.due(t0 + 30 * S);
        g.completed(n[0].id, true, t0 + 30 * S);
        add(
            &mut g,
            "root",
            "111111111111",
            AlertState::Resolved,
            2,
            t0 + 60 * S,
        );
        let r = g.due(t0 + 330 * S);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].alerts[0].alert.state, AlertState::Resolved);
        assert_eq!(g.completed(r[0].id, true, t0 + 331 * S), [2]);
        assert!(g.due(t0 + 332 * S).is_empty());
        assert!(g.is_empty(), "the group is closed");
        // A resolution before the firing alert was ever sent replaces it.
        add(&mut g, "x", "111111111111", AlertState::Firing, 3, t0);
        add(&mut g, "x", "111111111111", AlertState::Resolved, 4, t0 + S);
        let r = g.due(t0 + 30 * S);
        assert_eq!(r[0].alerts.len(), 1);
        assert_eq!(r[0].alerts[0].alert.state, AlertState::Resolved);
        assert_eq!(r[0].tokens, [3, 4]);
    }

    #[test]
    fn a_failed_delivery_returns_tokens_and_forgets_the_alerts() {
        let t0 = Instant::now();
        let mut g = Grouper::new(spec(), 900 * S);
        add(&mut g, "root", "111111111111", AlertState::Firing, 1, t0);
        let n = g.due(t0 + 30 * S);
        assert_eq!(g.completed(n[0].id, false, t0 + 40 * S), [1]);
        // The message comes back and is added again: a new notification after interval.
        add(
            &mut g,
            "root",
            "111111111111",
            AlertState::Firing,
            5,
            t0 + 100 * S,
        );
        let again = g.due(t0 + 330 * S);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].tokens, [5]);
    }

    #[test]
    fn groups_are_per_sink_and_by_labels() {
        let t0 = Instant::now();
        let mut g: Grouper<u32> = Grouper::new(
            GroupSpec {
                by: vec![GroupLabel::Rule, GroupLabel::Account],
                ..spec()
            },
            900 * S,
        );
        for (sink, account, token) in [
            (0, "111111111111", 1),
            (1, "111111111111", 2),
            (0, "222222222222", 3),
        ] {
            let (a, i) = alert("root", account, AlertState::Firing);
            assert!(g.add(sink, a, i, token, t0));
        }
        let mut out: Vec<_> = g
            .due(t0 + 30 * S)
            .into_iter()
            .map(|n| (n.sink, n.tokens))
            .collect();
        out.sort();
        assert_eq!(out, vec![(0, vec![1]), (0, vec![3]), (1, vec![2])]);
    }
}
