//! The store a fleet instance serves from: its local copy, writing every local change
//! through to Redis without waiting.
//!
//! Reads (`is_enforced`, `lookup`) go straight to the local copy: the request path never
//! touches the network. Changes the proxy or the operator make here are applied locally and
//! queued for Redis; changes that come *from* Redis are applied to the local copy underneath
//! this wrapper (see [`super::sync`]), so they are never published again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::queue::{Pushed, Write, WriteQueue};
use super::script::OpKind;
use crate::hsts::learn::StsUpdate;
use crate::hsts::store::{normalize_host, HstsStore, StoreError, StoredEntry as Entry};
use crate::metrics::BackendMetrics;

/// A local store whose changes are written through to the shared one.
pub struct WriteThrough {
    local: Arc<dyn HstsStore>,
    queue: Arc<WriteQueue>,
    metrics: BackendMetrics,
    /// Set once the first write of an outage was dropped, so the warning is logged once.
    warned_drop: Arc<AtomicBool>,
}

impl WriteThrough {
    pub(super) fn new(
        local: Arc<dyn HstsStore>,
        queue: Arc<WriteQueue>,
        metrics: BackendMetrics,
        warned_drop: Arc<AtomicBool>,
    ) -> Self {
        WriteThrough {
            local,
            queue,
            metrics,
            warned_drop,
        }
    }

    fn publish(&self, kind: OpKind, domain: &str, include_subdomains: bool, max_age: u64) {
        let write = Write {
            kind,
            domain: domain.to_owned(),
            include_subdomains,
            max_age,
            observed: Instant::now(),
        };
        enqueue(&self.queue, &self.metrics, &self.warned_drop, write);
    }
}

/// Queues one write, counting and (once per outage) reporting a dropped one.
pub(super) fn enqueue(
    queue: &WriteQueue,
    metrics: &BackendMetrics,
    warned_drop: &AtomicBool,
    write: Write,
) {
    if queue.push(write) == Pushed::DroppedOldest {
        metrics.dropped_writes.inc();
        if !warned_drop.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "shared HSTS store: write queue full; dropping the oldest writes (counted in strictproxy_hsts_backend_dropped_writes_total); the local copy keeps them"
            );
        }
    }
    metrics.queued_writes.set(queue.len() as i64);
}

impl HstsStore for WriteThrough {
    fn lookup(&self, host: &str) -> Option<Entry> {
        self.local.lookup(host)
    }

    fn is_enforced(&self, host: &str) -> bool {
        self.local.is_enforced(host)
    }

    fn apply(&self, update: &StsUpdate) -> bool {
        let changed = self.local.apply(update);
        if changed {
            if let Some(domain) = normalize_host(update.host()) {
                match update {
                    StsUpdate::Learn { policy, .. } if policy.max_age > 0 => self.publish(
                        OpKind::Learned,
                        &domain,
                        policy.include_subdomains,
                        policy.max_age,
                    ),
                    _ => self.publish(OpKind::Forget, &domain, false, 0),
                }
            }
        }
        changed
    }

    fn add_manual(
        &self,
        domain: &str,
        include_subdomains: bool,
        max_age: u64,
    ) -> Result<Entry, StoreError> {
        let entry = self.local.add_manual(domain, include_subdomains, max_age)?;
        self.publish(OpKind::Manual, &entry.domain, include_subdomains, max_age);
        Ok(entry)
    }

    fn remove(&self, domain: &str) -> bool {
        let removed = self.local.remove(domain);
        // Deleted fleet-wide even when this copy had nothing: another instance may have
        // learned it a moment ago.
        if let Some(normalized) = normalize_host(domain) {
            self.publish(OpKind::Delete, &normalized, false, 0);
        }
        removed
    }

    fn dynamic_entries(&self) -> Vec<Entry> {
        self.local.dynamic_entries()
    }

    fn counts(&self) -> (usize, usize, usize) {
        self.local.counts()
    }

    fn prune_expired(&self) -> usize {
        self.local.prune_expired()
    }

    fn changed(&self) -> &Notify {
        self.local.changed()
    }

    fn generation(&self) -> u64 {
        self.local.generation()
    }
}
