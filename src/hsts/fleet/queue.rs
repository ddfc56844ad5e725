//! The bounded queue of writes waiting for Redis.
//!
//! A change is queued at once and written by the sync task, so the request that caused it
//! never waits on the network. While Redis is away the queue holds what must be replayed; past
//! its bound the oldest write is dropped (the newest observations matter most, and a dropped
//! write is only a change the other instances learn later or not at all: the local copy keeps
//! it). Drops are counted; the first of an outage is logged once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::script::OpKind;

/// One write for the shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub kind: OpKind,
    /// The normalized domain.
    pub domain: String,
    pub include_subdomains: bool,
    /// Seconds, from the moment of `observed`.
    pub max_age: u64,
    /// When the change happened here; the script turns the time since into Redis's clock.
    pub observed: Instant,
}

/// What [`WriteQueue::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: its oldest write was dropped to make room.
    DroppedOldest,
}

/// A bounded FIFO shared by the store wrapper (producer) and the sync task (consumer).
#[derive(Debug)]
pub struct WriteQueue {
    writes: Mutex<VecDeque<Write>>,
    bound: usize,
    ready: Notify,
    /// Writes ever pushed, and writes finished with (sent, refused or dropped): equal when
    /// nothing is waiting or in flight.
    pushed: AtomicU64,
    settled: AtomicU64,
}

impl WriteQueue {
    pub fn new(bound: usize) -> Self {
        WriteQueue {
            writes: Mutex::new(VecDeque::new()),
            bound: bound.max(1),
            ready: Notify::new(),
            pushed: AtomicU64::new(0),
            settled: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Write>> {
        // A panic while holding this lock cannot leave the deque half-updated.
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a write at the back, dropping the oldest when full.
    pub fn push(&self, write: Write) -> Pushed {
        let outcome = {
            let mut writes = self.lock();
            let outcome = if writes.len() >= self.bound {
                writes.pop_front();
                Pushed::DroppedOldest
            } else {
                Pushed::Queued
            };
            writes.push_back(write);
            self.pushed.fetch_add(1, Ordering::AcqRel);
            if outcome == Pushed::DroppedOldest {
                self.settle(1);
            }
            outcome
        };
        self.ready.notify_one();
        outcome
    }

    /// Takes up to `max` writes from the front.
    pub fn take(&self, max: usize) -> Vec<Write> {
        let mut writes = self.lock();
        let n = writes.len().min(max);
        writes.drain(..n).collect()
    }

    /// Puts writes that could not be sent back at the front, in their order, keeping the
    /// bound (the oldest go first). Returns how many were dropped.
    pub fn requeue(&self, batch: Vec<Write>) -> usize {
        let mut writes = self.lock();
        for write in batch.into_iter().rev() {
            writes.push_front(write);
        }
        let excess = writes.len().saturating_sub(self.bound);
        writes.drain(..excess);
        self.settle(excess);
        excess
    }

    /// Marks `n` taken writes as finished with.
    pub fn settle(&self, n: usize) {
        self.settled.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// How many writes were pushed so far; pass it to [`WriteQueue::settled_up_to`].
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Acquire)
    }

    /// Whether every write pushed before `mark` was finished with.
    pub fn settled_up_to(&self, mark: u64) -> bool {
        self.settled.load(Ordering::Acquire) >= mark
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves after the next push (or at once if a push happened since the last wait).
    pub async fn ready(&self) {
        self.ready.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(domain: &str) -> Write {
        Write {
            kind: OpKind::Learned,
            domain: domain.into(),
            include_subdomains: false,
            max_age: 60,
            observed: Instant::now(),
        }
    }

    fn domains(q: &WriteQueue) -> Vec<String> {
        q.take(usize::MAX).into_iter().map(|w| w.domain).collect()
    }

    #[test]
    fn bounded_fifo_drops_the_oldest() {
        let q = WriteQueue::new(2);
        assert_eq!(q.push(w("a")), Pushed::Queued);
        assert_eq!(q.push(w("b")), Pushed::Queued);
        assert_eq!(q.push(w("c")), Pushed::DroppedOldest);
        assert_eq!(q.len(), 2);
        assert_eq!(domains(&q), ["b", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn requeue_keeps_order_and_bound() {
        let q = WriteQueue::new(3);
        for d in ["a", "b", "c"] {
            q.push(w(d));
        }
        let batch = q.take(2);
        q.push(w("d"));
        q.push(w("e"));
        // a, b go back in front of c, d, e; the two oldest (a, b) no longer fit.
        assert_eq!(q.requeue(batch), 2);
        assert_eq!(domains(&q), ["c", "d", "e"]);
        let q = WriteQueue::new(5);
        q.push(w("x"));
        let batch = q.take(1);
        q.push(w("y"));
        assert_eq!(q.requeue(batch), 0);
        assert_eq!(domains(&q), ["x", "y"]);
    }
}
