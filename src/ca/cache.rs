//! The cache of minted leaves: [`LeafCache`], a bounded decorator over any [`LeafIssuer`], and
//! the generic bounded LRU map it (and the interceptor's config cache) is built on.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::SystemTime;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use rustls::sign::CertifiedKey;

use super::{CaError, LeafIssuer, LEAF_REFRESH_AFTER};

/// A bounded concurrent map with approximate least-recently-used eviction. Hits take only the
/// shard's read lock and bump an atomic stamp; eviction runs on inserts that overflow, one
/// thread at a time, and frees a tenth of the capacity at once so its O(n) scan is amortised.
pub(super) struct BoundedMap<V> {
    map: DashMap<String, Slot<V>>,
    capacity: usize,
    clock: AtomicU64,
    evicting: Mutex<()>,
}

struct Slot<V> {
    value: V,
    last_used: AtomicU64,
}

impl<V: Clone> BoundedMap<V> {
    pub(super) fn new(capacity: usize) -> Self {
        BoundedMap {
            map: DashMap::new(),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            evicting: Mutex::new(()),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The value for `key` if present and `usable`.
    pub(super) fn get(&self, key: &str, usable: impl Fn(&V) -> bool) -> Option<V> {
        let slot = self.map.get(key)?;
        if !usable(&slot.value) {
            return None;
        }
        slot.last_used.store(self.tick(), Ordering::Relaxed);
        Some(slot.value.clone())
    }

    /// Stores `value` unless another thread stored a usable one meanwhile, in which case that
    /// one is kept and returned, so concurrent misses for a host all end up with one value.
    pub(super) fn insert(&self, key: &str, value: V, usable: impl Fn(&V) -> bool) -> V {
        let stored = match self.map.entry(key.to_owned()) {
            Entry::Occupied(mut occupied) => {
                if !usable(&occupied.get().value) {
                    occupied.get_mut().value = value;
                }
                occupied
                    .get()
                    .last_used
                    .store(self.tick(), Ordering::Relaxed);
                occupied.get().value.clone()
            }
            Entry::Vacant(vacant) => {
                let slot = Slot {
                    value,
                    last_used: AtomicU64::new(self.tick()),
                };
                vacant.insert(slot).value.clone()
            }
        };
        if self.map.len() > self.capacity {
            self.evict();
        }
        stored
    }

    fn evict(&self) {
        // One evictor at a time; the others carry on (the map may briefly hold a few entries
        // over capacity, one per concurrent insert).
        let _guard = match self.evicting.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let len = self.map.len();
        if len <= self.capacity {
            return;
        }
        let keep = self.capacity - self.capacity / 10;
        let remove = len - keep;
        let mut stamps: Vec<(u64, String)> = self
            .map
            .iter()
            .map(|e| (e.value().last_used.load(Ordering::Relaxed), e.key().clone()))
            .collect();
        if remove < stamps.len() {
            stamps.select_nth_unstable_by_key(remove, |(stamp, _)| *stamp);
            stamps.truncate(remove);
        }
        for (stamp, key) in stamps {
            // Spare an entry touched since the scan: it is in use again.
            self.map.remove_if(&key, |_, slot| {
                slot.last_used.load(Ordering::Relaxed) == stamp
            });
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// A cached leaf and when it was minted.
#[derive(Clone)]
struct CachedLeaf {
    leaf: Arc<CertifiedKey>,
    minted: SystemTime,
}

impl CachedLeaf {
    /// Wall-clock age, so a laptop that slept for weeks still re-mints (a monotonic clock stops
    /// during suspend on Linux).
    fn fresh(&self) -> bool {
        SystemTime::now()
            .duration_since(self.minted)
            .map(|age| age < LEAF_REFRESH_AFTER)
            // The clock went backwards: the leaf's backdate still covers small steps.
            .unwrap_or(true)
    }
}

/// A bounded per-host cache of leaves over any [`LeafIssuer`]: a repeated CONNECT mints nothing.
/// Concurrent; the hit path takes no global lock.
pub struct LeafCache {
    inner: Arc<dyn LeafIssuer>,
    leaves: BoundedMap<CachedLeaf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafCache")
            .field("capacity", &self.leaves.capacity)
            .field("len", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl LeafCache {
    /// A cache of at most `capacity` leaves (at least one) in front of `inner`.
    pub fn new(inner: Arc<dyn LeafIssuer>, capacity: usize) -> LeafCache {
        LeafCache {
            inner,
            leaves: BoundedMap::new(capacity),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The leaf for `name`, minted on the first request and again after [`LEAF_REFRESH_AFTER`].
    pub fn get(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        if let Some(cached) = self.leaves.get(name, CachedLeaf::fresh) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(cached.leaf);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let minted = CachedLeaf {
            leaf: self.inner.issue(name)?,
            minted: SystemTime::now(),
        };
        Ok(self.leaves.insert(name, minted, CachedLeaf::fresh).leaf)
    }

    /// Makes the cached leaf for `name` look minted at `minted`, to test the refresh.
    #[cfg(test)]
    pub(super) fn set_minted_for_test(&self, name: &str, minted: SystemTime) {
        if let Some(mut slot) = self.leaves.map.get_mut(name) {
            slot.value.minted = minted;
        }
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to mint.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Leaves held now.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether no leaf is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most leaves held at once.
    pub fn capacity(&self) -> usize {
        self.leaves.capacity
    }
}

/// The cache is itself an issuer, so decorators compose.
impl LeafIssuer for LeafCache {
    fn issue(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::test_ca as new_ca;
    use crate::ca::LocalCa;
    use std::time::Duration;

    /// Counts calls, to prove what the cache does not forward.
    struct Counting {
        ca: LocalCa,
        calls: AtomicU64,
    }

    impl LeafIssuer for Counting {
        fn issue(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.ca.issue(name)
        }
    }

    fn counting() -> (tempfile::TempDir, Arc<Counting>) {
        let (dir, ca) = new_ca();
        let issuer = Arc::new(Counting {
            ca,
            calls: AtomicU64::new(0),
        });
        (dir, issuer)
    }

    #[test]
    fn second_get_is_a_hit_with_the_same_arc() {
        let (_dir, issuer) = counting();
        let cache = LeafCache::new(issuer.clone(), 10);
        let first = cache.get("secure.test").unwrap();
        let second = cache.get("secure.test").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 1, 1));
        assert_eq!(issuer.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn capacity_bound_holds_and_evicts_the_least_recently_used() {
        let (_dir, issuer) = counting();
        let cache = LeafCache::new(issuer.clone(), 3);
        for name in ["a.test", "b.test", "c.test"] {
            cache.get(name).unwrap();
        }
        cache.get("a.test").unwrap(); // a is now more recent than b
        cache.get("d.test").unwrap();
        assert_eq!(cache.len(), 3);
        let misses = cache.misses();
        cache.get("a.test").unwrap();
        assert_eq!(cache.misses(), misses, "a was used recently and is kept");
        cache.get("b.test").unwrap();
        assert_eq!(cache.misses(), misses + 1, "b was the least recently used");

        for i in 0..50 {
            cache.get(&format!("host{i}.test")).unwrap();
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn large_caches_evict_a_batch_and_stay_bounded() {
        let (_dir, issuer) = counting();
        let cache = LeafCache::new(issuer, 20);
        for i in 0..100 {
            cache.get(&format!("host{i}.test")).unwrap();
            assert!(cache.len() <= 20);
        }
        // The most recent host survives every eviction.
        let misses = cache.misses();
        cache.get("host99.test").unwrap();
        assert_eq!(cache.misses(), misses);
    }

    #[test]
    fn concurrent_gets_share_one_leaf() {
        let (_dir, issuer) = counting();
        let cache = Arc::new(LeafCache::new(issuer, 10));
        let leaves: Vec<_> = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || cache.get("same.test").unwrap())
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert!(leaves.iter().all(|l| Arc::ptr_eq(l, &leaves[0])));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn stale_leaves_are_minted_again() {
        let (_dir, issuer) = counting();
        let cache = LeafCache::new(issuer.clone(), 10);
        let first = cache.get("old.test").unwrap();
        // Age the entry past the refresh horizon.
        cache.leaves.map.get_mut("old.test").unwrap().value.minted =
            SystemTime::now() - LEAF_REFRESH_AFTER - Duration::from_secs(1);
        let second = cache.get("old.test").unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(issuer.calls.load(Ordering::SeqCst), 2);
        let third = cache.get("old.test").unwrap();
        assert!(Arc::ptr_eq(&second, &third));
    }
}
