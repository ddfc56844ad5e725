//! The exchange feed: the last `console_history` finished exchanges kept in memory, and a
//! broadcast of each new one, for the web console (`GET /exchanges`, `GET /events`).
//!
//! It sits below the proxy and the admin API: the proxy publishes every record here (the same
//! record the traffic log writes, so the console works with or without `--traffic-log`), the
//! admin only reads. Publishing never waits for a reader: the broadcast channel is bounded and
//! a reader that falls behind is told how many records it missed (tokio's `Lagged`) instead of
//! slowing the proxy down.

use crate::finding::FindingKind;
use crate::traffic::TrafficRecord;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::broadcast;

/// The default ring size (config `console_history`).
pub const DEFAULT_HISTORY: usize = 1_000;

/// Distinct (kind, host) pairs tallied since start; past this, new pairs are only counted in
/// their kind's total, so a flood of random host names cannot grow memory without bound.
const MAX_TALLIES: usize = 10_000;

/// Exchange ids kept per (kind, host) pair, newest last, for the console's links.
const IDS_PER_TALLY: usize = 20;

/// The findings of one kind on one host since start.
#[derive(Clone, Debug, Serialize)]
pub struct FindingTally {
    pub kind: FindingKind,
    pub host: String,
    pub count: u64,
    /// The latest finding's sentence (it ends with what to fix).
    pub detail: String,
    /// The ids of the latest exchanges that had it, oldest first.
    pub exchanges: VecDeque<u64>,
}

/// Every finding since start: totals by kind and tallies by kind and host.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FindingSummary {
    pub by_kind: BTreeMap<FindingKind, u64>,
    pub by_host: Vec<FindingTally>,
    /// Pairs not tallied because [`MAX_TALLIES`] was reached (still in `by_kind`).
    pub untallied: u64,
}

/// How many records a slow `/events` reader may be behind before it skips some. At 200
/// exchanges a second this is five seconds of traffic.
const BROADCAST_CAPACITY: usize = 1_024;

/// A shared handle: cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    history: usize,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<TrafficRecord>>,
}

struct Ring {
    next_id: u64,
    records: VecDeque<Arc<TrafficRecord>>,
    by_kind: BTreeMap<FindingKind, u64>,
    tallies: BTreeMap<(FindingKind, String), FindingTally>,
    untallied: u64,
}

impl Ring {
    fn tally(&mut self, record: &TrafficRecord) {
        if record.findings.is_empty() {
            return;
        }
        let host = host_of(&record.url);
        for finding in &record.findings {
            *self.by_kind.entry(finding.kind).or_default() += 1;
            let key = (finding.kind, host.clone());
            if !self.tallies.contains_key(&key) && self.tallies.len() >= MAX_TALLIES {
                self.untallied += 1;
                continue;
            }
            let tally = self.tallies.entry(key).or_insert_with(|| FindingTally {
                kind: finding.kind,
                host: host.clone(),
                count: 0,
                detail: String::new(),
                exchanges: VecDeque::new(),
            });
            tally.count += 1;
            tally.detail.clone_from(&finding.detail);
            if tally.exchanges.back() != Some(&record.id) {
                if tally.exchanges.len() >= IDS_PER_TALLY {
                    tally.exchanges.pop_front();
                }
                tally.exchanges.push_back(record.id);
            }
        }
    }
}

/// The host of a logged URL (an absolute URL, or `host:port` for a CONNECT).
pub fn host_of(url: &str) -> String {
    let parsed = if url.contains("://") {
        url::Url::parse(url)
    } else {
        url::Url::parse(&format!("https://{url}/"))
    };
    parsed
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

impl Feed {
    /// A feed that keeps the last `history` records (0 keeps none; the broadcast still runs).
    pub fn new(history: usize) -> Feed {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Feed {
            inner: Arc::new(Inner {
                history,
                ring: Mutex::new(Ring {
                    next_id: 1,
                    records: VecDeque::with_capacity(history.min(4_096)),
                    by_kind: BTreeMap::new(),
                    tallies: BTreeMap::new(),
                    untallied: 0,
                }),
                tx,
            }),
        }
    }

    /// Gives `record` the next id, keeps it in the ring (dropping the oldest past the bound)
    /// and announces it. The id is taken under the ring's lock, so the ring is in id order.
    pub fn publish(&self, mut record: TrafficRecord) -> Arc<TrafficRecord> {
        let mut ring = self.lock();
        record.id = ring.next_id;
        ring.next_id += 1;
        ring.tally(&record);
        let record = Arc::new(record);
        if self.inner.history > 0 {
            if ring.records.len() >= self.inner.history {
                ring.records.pop_front();
            }
            ring.records.push_back(record.clone());
        }
        // Sent under the lock so subscribers see records in id order; an error only means
        // that nobody listens.
        let _ = self.inner.tx.send(record.clone());
        record
    }

    /// The newest `limit` records, newest first.
    pub fn newest(&self, limit: usize) -> Vec<Arc<TrafficRecord>> {
        self.lock()
            .records
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Records with an id above `after`, oldest first (a reconnecting `/events` reader's
    /// `Last-Event-ID`), at most `limit`.
    pub fn since(&self, after: u64, limit: usize) -> Vec<Arc<TrafficRecord>> {
        let ring = self.lock();
        let newer = ring.records.iter().rev().take_while(|r| r.id > after);
        let mut out: Vec<_> = newer.take(limit).cloned().collect();
        out.reverse();
        out
    }

    /// Every finding since start, by kind and by host (most frequent first).
    pub fn findings(&self) -> FindingSummary {
        let ring = self.lock();
        let mut by_host: Vec<FindingTally> = ring.tallies.values().cloned().collect();
        by_host.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.host.cmp(&b.host)));
        FindingSummary {
            by_kind: ring.by_kind.clone(),
            by_host,
            untallied: ring.untallied,
        }
    }

    /// A receiver of every record published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TrafficRecord>> {
        self.inner.tx.subscribe()
    }

    /// The configured ring size.
    pub fn history(&self) -> usize {
        self.inner.history
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // The ring holds no invariant a panic could break halfway.
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new(DEFAULT_HISTORY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(url: &str) -> TrafficRecord {
        serde_json::from_value(serde_json::json!({
            "ts": "2024-05-01T10:00:00.000Z", "client": "127.0.0.1:1", "method": "GET",
            "url": url, "status": 200, "duration_ms": 1.0, "request_bytes": 0,
            "response_bytes": 0, "action": "forwarded", "findings": []
        }))
        .unwrap()
    }

    #[test]
    fn ring_keeps_the_newest_with_increasing_ids() {
        let feed = Feed::new(3);
        for i in 0..5 {
            feed.publish(rec(&format!("http://a.test/{i}")));
        }
        let newest = feed.newest(10);
        let ids: Vec<u64> = newest.iter().map(|r| r.id).collect();
        assert_eq!(ids, [5, 4, 3], "newest first, bounded");
        assert_eq!(newest[0].url, "http://a.test/4");
        assert_eq!(feed.newest(1).len(), 1);
        let since: Vec<u64> = feed.since(3, 10).iter().map(|r| r.id).collect();
        assert_eq!(since, [4, 5], "oldest first");
        assert!(feed.since(5, 10).is_empty());
    }

    #[test]
    fn findings_are_tallied_by_kind_and_host_since_start() {
        use crate::finding::Finding;
        let feed = Feed::new(1);
        for i in 0..3 {
            let mut r = rec(&format!("http://a.test/{i}"));
            r.findings = vec![Finding::new(
                FindingKind::MethodChangeRisk,
                format!("n{i} → use 303"),
            )];
            feed.publish(r);
        }
        let mut r = rec("b.test:443");
        r.findings = vec![Finding::new(FindingKind::StsInvalid, "x")];
        feed.publish(r);
        let summary = feed.findings();
        assert_eq!(
            summary.by_kind[&FindingKind::MethodChangeRisk],
            3,
            "beyond the ring's 1"
        );
        assert_eq!(summary.by_host[0].host, "a.test");
        assert_eq!(summary.by_host[0].count, 3);
        assert_eq!(summary.by_host[0].detail, "n2 → use 303");
        assert_eq!(Vec::from(summary.by_host[0].exchanges.clone()), [1, 2, 3]);
        assert_eq!(summary.by_host[1].host, "b.test");
    }

    #[test]
    fn zero_history_keeps_nothing_but_still_broadcasts() {
        let feed = Feed::new(0);
        let mut rx = feed.subscribe();
        feed.publish(rec("http://a.test/"));
        assert!(feed.newest(10).is_empty());
        assert_eq!(rx.try_recv().unwrap().id, 1);
    }

    #[test]
    fn a_slow_reader_never_blocks_the_publisher() {
        let feed = Feed::new(10);
        let mut rx = feed.subscribe();
        for i in 0..(BROADCAST_CAPACITY + 50) {
            feed.publish(rec(&format!("http://a.test/{i}")));
        }
        // The reader learns it lagged, then continues with the oldest record still held.
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(50))
        ));
        assert_eq!(rx.try_recv().unwrap().id, 51);
    }
}
