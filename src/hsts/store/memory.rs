//! [`MemoryStore`]: the in-process HSTS store, a [`DashMap`] of learned and manual entries over
//! the immutable preload index. Matching as in RFC 6797 §8.2 and Chromium (see the module above).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use dashmap::DashMap;
use tokio::sync::Notify;

use super::bound::{Bound, Limits, Sites, Victim};
use super::index::PreloadSet;
use super::{now_unix, HstsStore, Source, StoreError, StoredEntry};
use crate::hsts::host::{is_ip_literal, is_never_noted, normalize_host, self_and_superdomains};
use crate::hsts::learn::StsUpdate;
use crate::hsts::preload::PreloadEntry;

/// A learned or manual entry as the map holds it; the key is the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dynamic {
    include_subdomains: bool,
    expires_at: u64,
    source: Source,
    /// For learned entries, when a header last taught it (see `bound.rs`); 0 for manual.
    observed: u64,
}

impl Dynamic {
    /// Whether two values say the same thing (the observation time aside): a header that
    /// repeats what the store holds is no change the file must see.
    fn same_policy(&self, other: &Dynamic) -> bool {
        (self.include_subdomains, self.expires_at, self.source)
            == (other.include_subdomains, other.expires_at, other.source)
    }
}

/// The entry that matched, borrowing its domain from the queried host: no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Matched<'h> {
    domain: &'h str,
    include_subdomains: bool,
    expires_at: Option<u64>,
    source: Source,
}

impl Matched<'_> {
    fn to_entry(self) -> StoredEntry {
        StoredEntry {
            domain: self.domain.to_owned(),
            include_subdomains: self.include_subdomains,
            expires_at: self.expires_at,
            source: self.source,
        }
    }
}

/// The in-process store: a [`DashMap`] of learned and manual entries over an immutable
/// preload set.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Hashed with foldhash (seeded per process) rather than SipHash: every request looks up
    /// its host and each superdomain here (issue 15).
    dynamic: DashMap<Box<str>, Dynamic, hashbrown::DefaultHashBuilder>,
    /// One index per `--preload` file, built once; never written after construction, so
    /// reads take no lock at all. Kept apart so that an entry exempts a name only against
    /// entries of its own file (issue 11 item 3): a pins-only entry of one list must never
    /// switch off another list's force-https superdomain.
    preload: PreloadSet,
    /// The learned entries by site, for the bounds; taken by every change to the map (never
    /// by lookups), always before a map shard.
    sites: Mutex<Sites>,
    /// Learned entries evicted by the bounds since start.
    evictions: AtomicU64,
    changed: Notify,
    generation: AtomicU64,
}

impl MemoryStore {
    /// An empty store with no preload list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store over the entries of ONE preload list (for a name listed twice, the later entry
    /// wins, as within one Chromium file). Names are normalized; IP literals and invalid names
    /// are skipped. For several `--preload` files, use [`MemoryStore::with_preload_lists`].
    pub fn with_preload(entries: Vec<PreloadEntry>) -> Self {
        Self::with_preload_lists(vec![entries])
    }

    /// A store over several preload lists, one `Vec` per file. A host is enforced when ANY
    /// list enforces it, each list deciding by its own most specific entry (Chromium's rule
    /// within one list). So across files the strictest wins whatever the order (force-https
    /// over none, includeSubDomains over not), and a pins-only entry exempts a name only
    /// against an entry of the same file (issue 11 item 3).
    pub fn with_preload_lists(lists: Vec<Vec<PreloadEntry>>) -> Self {
        MemoryStore {
            preload: PreloadSet::build(lists),
            ..Self::default()
        }
    }

    /// The same store with these bounds on learned entries (config `max_learned_entries`,
    /// `max_learned_per_site`; see `bound.rs` for the eviction rule). Call before use.
    pub fn with_limits(self, limits: Limits) -> Self {
        MemoryStore {
            sites: Mutex::new(Sites::new(limits)),
            ..self
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.sites().limits()
    }

    /// Learned entries evicted by the bounds since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn sites(&self) -> MutexGuard<'_, Sites> {
        // A panic while holding the lock leaves the bookkeeping at worst slightly off; the
        // map itself stays right, so keep going rather than poison every later change.
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes evicted entries out of the map, counts and (once a minute per site) warns.
    fn evict(&self, victims: Vec<Victim>) {
        for victim in victims {
            let removed = self
                .dynamic
                .remove_if(victim.domain.as_ref(), |_, d| d.source == Source::Learned);
            if removed.is_none() {
                continue;
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
            if victim.warn {
                let limits = self.sites().limits();
                let (bound, limit) = match victim.bound {
                    Bound::PerSite => ("max_learned_per_site", limits.max_learned_per_site),
                    Bound::Total => ("max_learned_entries", limits.max_learned_entries),
                };
                tracing::warn!(
                    site = %victim.site,
                    evicted = %victim.domain,
                    "HSTS store: {bound} ({limit}) reached; evicting the least recently observed \
                     learned entries of {} (warned once a minute per site)",
                    victim.site
                );
            }
        }
    }

    /// Puts back entries read from the store file. Preload-sourced, expired, missing-expiry
    /// and invalid entries are skipped. Does not signal a change: the file already says this.
    /// Returns how many entries were restored.
    pub fn restore(&self, entries: Vec<StoredEntry>) -> usize {
        self.restore_at(entries, now_unix())
    }

    /// [`MemoryStore::restore`] at a given time.
    pub fn restore_at(&self, mut entries: Vec<StoredEntry>, now: u64) -> usize {
        // Entries count as observed in the order of their expiry, the closest proxy for when
        // they were learned that the file keeps.
        entries.sort_by_key(|e| e.expires_at);
        let mut sites = self.sites();
        let mut victims = Vec::new();
        let mut restored: usize = 0;
        for entry in entries {
            let Some(expires_at) = entry.expires_at else {
                continue;
            };
            if entry.source == Source::Preload || expires_at <= now {
                continue;
            }
            let Some(domain) = normalize_host(&entry.domain) else {
                continue;
            };
            if is_ip_literal(&domain) {
                continue;
            }
            let mut value = Dynamic {
                include_subdomains: entry.include_subdomains,
                expires_at,
                source: entry.source,
                observed: 0,
            };
            let key: Box<str> = domain.into();
            if let Some(old) = self.dynamic.get(&key).map(|d| *d) {
                if old.source == Source::Learned {
                    sites.forget(&key, old.observed);
                }
            }
            if value.source == Source::Learned {
                let (seq, evict) = sites.admit(&key, now);
                value.observed = seq;
                victims.extend(evict);
            }
            self.dynamic.insert(key, value);
            restored += 1;
        }
        drop(sites);
        let evicted = victims.len();
        self.evict(victims);
        restored.saturating_sub(evicted)
    }

    /// How many preload entries force HTTPS (exemption-only entries are not counted).
    pub fn preload_len(&self) -> usize {
        self.preload.enforcing()
    }

    /// The matching walk of RFC 6797 §8.2 over the dynamic entries, then over the preload
    /// entries (Chromium's `GetDynamicSTSState || GetStaticSTSState`). A learned or manual
    /// entry therefore overrides a preloaded one for the same host, while a dynamic
    /// superdomain entry *without* includeSubDomains does not unprotect subdomains that a
    /// preloaded entry covers.
    fn find_at<'h>(&self, host: &'h str, now: u64) -> Option<Matched<'h>> {
        for (name, exact) in self_and_superdomains(host) {
            if let Some(d) = self.dynamic.get(name) {
                if d.expires_at > now && (exact || d.include_subdomains) {
                    return Some(Matched {
                        domain: name,
                        include_subdomains: d.include_subdomains,
                        expires_at: Some(d.expires_at),
                        source: d.source,
                    });
                }
            }
        }
        let (domain, p) = self.preload.decide(host)?;
        Some(Matched {
            domain,
            include_subdomains: p.include_subdomains,
            expires_at: None,
            source: Source::Preload,
        })
    }

    /// [`HstsStore::lookup`] at a given time.
    pub fn lookup_at(&self, host: &str, now: u64) -> Option<StoredEntry> {
        if is_ip_literal(host) {
            return None;
        }
        let host = normalize_host(host)?;
        self.find_at(&host, now).map(Matched::to_entry)
    }

    /// [`HstsStore::is_enforced`] at a given time.
    pub fn is_enforced_at(&self, host: &str, now: u64) -> bool {
        if is_ip_literal(host) {
            return false;
        }
        normalize_host(host).is_some_and(|h| self.find_at(&h, now).is_some())
    }

    /// [`HstsStore::apply`] at a given time.
    ///
    /// A learned header replaces a learned entry; it never touches a manual entry (the
    /// operator's explicit choice outranks a site's header) and never a preload entry
    /// (`max-age=0` only forgets dynamic state, as in Chromium).
    pub fn apply_at(&self, update: &StsUpdate, now: u64) -> bool {
        let (host, policy) = match update {
            StsUpdate::Learn { host, policy } => (host, Some(policy)),
            StsUpdate::Forget { host } => (host, None),
        };
        // Normalize first, so that `LOCALHOST.` or a full-width spelling is caught too.
        let Some(domain) = normalize_host(host) else {
            return false;
        };
        if is_never_noted(&domain) {
            return false;
        }
        let mut sites = self.sites();
        let mut victims = Vec::new();
        let changed = match policy {
            Some(policy) if policy.max_age > 0 => {
                let mut value = Dynamic {
                    include_subdomains: policy.include_subdomains,
                    expires_at: now.saturating_add(policy.max_age),
                    source: Source::Learned,
                    observed: 0,
                };
                match self.dynamic.entry(domain.into()) {
                    dashmap::Entry::Occupied(mut slot) => {
                        let old = *slot.get();
                        let manual_in_force = old.source == Source::Manual && old.expires_at > now;
                        if manual_in_force {
                            false
                        } else {
                            value.observed = if old.source == Source::Learned {
                                sites.touch(slot.key(), old.observed)
                            } else {
                                // An expired manual entry gives way to the header.
                                let (seq, evict) = sites.admit(slot.key(), now);
                                victims = evict;
                                seq
                            };
                            let changed = !old.same_policy(&value);
                            slot.insert(value);
                            changed
                        }
                    }
                    dashmap::Entry::Vacant(slot) => {
                        let (seq, evict) = sites.admit(slot.key(), now);
                        victims = evict;
                        value.observed = seq;
                        slot.insert(value);
                        true
                    }
                }
            }
            // max-age=0, or Forget: RFC 6797 §6.1.1 "cease to regard the host as a Known HSTS Host".
            _ => match self
                .dynamic
                .remove_if(domain.as_ref(), |_, d| d.source == Source::Learned)
            {
                Some((key, old)) => {
                    sites.forget(&key, old.observed);
                    true
                }
                None => false,
            },
        };
        drop(sites);
        // The map's entry guard is gone: removing victims cannot deadlock on its shard.
        let evicted = !victims.is_empty();
        self.evict(victims);
        if changed || evicted {
            self.signal_change();
        }
        changed
    }

    /// [`HstsStore::add_manual`] at a given time. Replaces a learned entry for the same domain.
    pub fn add_manual_at(
        &self,
        domain: &str,
        include_subdomains: bool,
        max_age: u64,
        now: u64,
    ) -> Result<StoredEntry, StoreError> {
        if is_ip_literal(domain) {
            return Err(StoreError::IpLiteral(domain.to_owned()));
        }
        let normalized =
            normalize_host(domain).ok_or_else(|| StoreError::InvalidDomain(domain.to_owned()))?;
        if max_age == 0 {
            return Err(StoreError::ZeroMaxAge(domain.to_owned()));
        }
        let value = Dynamic {
            include_subdomains,
            expires_at: now.saturating_add(max_age),
            source: Source::Manual,
            observed: 0,
        };
        let entry = StoredEntry {
            domain: normalized.clone().into_owned(),
            include_subdomains,
            expires_at: Some(value.expires_at),
            source: Source::Manual,
        };
        let mut sites = self.sites();
        if let Some(old) = self.dynamic.insert(normalized.into(), value) {
            if old.source == Source::Learned {
                sites.forget(&entry.domain, old.observed);
            }
        }
        drop(sites);
        self.signal_change();
        Ok(entry)
    }

    /// [`HstsStore::remove`] at a given time.
    pub fn remove_at(&self, domain: &str, now: u64) -> bool {
        let Some(domain) = normalize_host(domain) else {
            return false;
        };
        let mut sites = self.sites();
        let removed = self.dynamic.remove(domain.as_ref());
        if let Some((key, old)) = &removed {
            if old.source == Source::Learned {
                sites.forget(key, old.observed);
            }
        }
        drop(sites);
        match removed {
            Some((_, removed)) => {
                self.signal_change();
                removed.expires_at > now
            }
            None => false,
        }
    }

    /// [`HstsStore::dynamic_entries`] at a given time.
    pub fn dynamic_entries_at(&self, now: u64) -> Vec<StoredEntry> {
        let mut entries: Vec<StoredEntry> = self
            .dynamic
            .iter()
            .filter(|item| item.value().expires_at > now)
            .map(|item| StoredEntry {
                domain: item.key().to_string(),
                include_subdomains: item.value().include_subdomains,
                expires_at: Some(item.value().expires_at),
                source: item.value().source,
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.domain.cmp(&b.domain));
        entries
    }

    /// [`HstsStore::counts`] at a given time.
    pub fn counts_at(&self, now: u64) -> (usize, usize, usize) {
        let (mut learned, mut manual) = (0, 0);
        for item in self.dynamic.iter() {
            if item.value().expires_at > now {
                match item.value().source {
                    Source::Learned => learned += 1,
                    Source::Manual => manual += 1,
                    Source::Preload => {}
                }
            }
        }
        (learned, manual, self.preload.enforcing())
    }

    /// [`HstsStore::prune_expired`] at a given time. Pruning is not a change the file must
    /// see: `persist::load` drops expired entries anyway.
    pub fn prune_expired_at(&self, now: u64) -> usize {
        let mut sites = self.sites();
        let mut pruned = 0;
        self.dynamic.retain(|key, d| {
            let keep = d.expires_at > now;
            if !keep {
                pruned += 1;
                if d.source == Source::Learned {
                    sites.forget(key, d.observed);
                }
            }
            keep
        });
        pruned
    }

    fn signal_change(&self) {
        self.generation.fetch_add(1, Ordering::Release);
        self.changed.notify_one();
    }
}

impl HstsStore for MemoryStore {
    fn lookup(&self, host: &str) -> Option<StoredEntry> {
        self.lookup_at(host, now_unix())
    }

    fn is_enforced(&self, host: &str) -> bool {
        self.is_enforced_at(host, now_unix())
    }

    fn apply(&self, update: &StsUpdate) -> bool {
        self.apply_at(update, now_unix())
    }

    fn add_manual(
        &self,
        domain: &str,
        include_subdomains: bool,
        max_age: u64,
    ) -> Result<StoredEntry, StoreError> {
        self.add_manual_at(domain, include_subdomains, max_age, now_unix())
    }

    fn remove(&self, domain: &str) -> bool {
        self.remove_at(domain, now_unix())
    }

    fn dynamic_entries(&self) -> Vec<StoredEntry> {
        self.dynamic_entries_at(now_unix())
    }

    fn counts(&self) -> (usize, usize, usize) {
        self.counts_at(now_unix())
    }

    fn prune_expired(&self) -> usize {
        self.prune_expired_at(now_unix())
    }

    fn changed(&self) -> &Notify {
        &self.changed
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn evictions(&self) -> u64 {
        MemoryStore::evictions(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::store::Limits;

    use crate::hsts::header::StsPolicy;

    const NOW: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn learn(host: &str, max_age: u64, include_subdomains: bool) -> StsUpdate {
        StsUpdate::Learn {
            host: host.to_owned(),
            policy: StsPolicy {
                max_age,
                include_subdomains,
                preload: false,
            },
        }
    }

    fn preload(list: &[(&str, bool)]) -> MemoryStore {
        MemoryStore::with_preload(
            list.iter()
                .map(|&(name, include_subdomains)| {
                    PreloadEntry::force_https(name, include_subdomains)
                })
                .collect(),
        )
    }

    /// RFC 6797 §8.2 matching, one row per case.
    #[test]
    fn matching_table() {
        let mut list: Vec<PreloadEntry> = [
            ("preload-sub.test", true),
            ("preload-exact.test", false),
            ("dev", true), // a whole TLD is preloaded in Chromium's list
            ("google.test", true),
            ("apis.google.test", true),
        ]
        .into_iter()
        .map(|(name, sub)| PreloadEntry::force_https(name, sub))
        .collect();
        // Entries without force-https (pins-only in Chromium's list) exempt their names.
        for (name, include_subdomains) in [("chart.apis.google.test", true), ("only.dev", false)] {
            list.push(PreloadEntry {
                name: name.into(),
                include_subdomains,
                force_https: false,
            });
        }
        let store = MemoryStore::with_preload(list);
        for u in [
            learn("learned.test", DAY, false),
            learn("learned-sub.test", DAY, true),
            learn("deep.a.b.walk.test", DAY, false),
            learn("walk.test", DAY, true),
        ] {
            assert!(store.apply_at(&u, NOW));
        }
        // (host, deciding domain, source)
        #[rustfmt::skip]
        let rows: &[(&str, Option<(&str, Source)>)] = &[
            // Congruent match (§8.2).
            ("learned.test", Some(("learned.test", Source::Learned))),
            // Superdomain without includeSubDomains does not cover subdomains (§8.2).
            ("www.learned.test", None),
            // Superdomain match with includeSubDomains (§8.2).
            ("www.learned-sub.test", Some(("learned-sub.test", Source::Learned))),
            ("a.b.c.learned-sub.test", Some(("learned-sub.test", Source::Learned))),
            // The nearest applicable entry decides.
            ("deep.a.b.walk.test", Some(("deep.a.b.walk.test", Source::Learned))),
            ("x.deep.a.b.walk.test", Some(("walk.test", Source::Learned))),
            // Preload entries, exact and with subdomains.
            ("preload-sub.test", Some(("preload-sub.test", Source::Preload))),
            ("x.y.preload-sub.test", Some(("preload-sub.test", Source::Preload))),
            ("preload-exact.test", Some(("preload-exact.test", Source::Preload))),
            ("www.preload-exact.test", None),
            // A TLD entry covers every name under it.
            ("my.app.dev", Some(("dev", Source::Preload))),
            // The most specific preload entry decides, and a non-force-https one exempts
            // (Chromium: "chart.apis.google.com is *not* HSTS").
            ("apis.google.test", Some(("apis.google.test", Source::Preload))),
            ("x.apis.google.test", Some(("apis.google.test", Source::Preload))),
            ("chart.apis.google.test", None),
            ("x.chart.apis.google.test", None),
            // An exemption without include_subdomains only exempts its own name.
            ("only.dev", None),
            ("sub.only.dev", Some(("dev", Source::Preload))),
            // Case, trailing dot and Unicode are normalized first.
            ("WWW.Learned-Sub.TEST.", Some(("learned-sub.test", Source::Learned))),
            // No entry.
            ("unknown.test", None),
            ("test", None),
            // Never for IP literals, whatever the store holds (§8.3).
            ("127.0.0.1", None),
            ("[::1]", None),
            // A suffix string is not a superdomain: label boundaries matter.
            ("notlearned-sub.test", None),
        ];
        for &(host, expected) in rows {
            let got = store.lookup_at(host, NOW);
            let got = got.as_ref().map(|e| (e.domain.as_str(), e.source));
            assert_eq!(got, expected, "lookup({host:?})");
            assert_eq!(
                store.is_enforced_at(host, NOW),
                expected.is_some(),
                "is_enforced({host:?})"
            );
        }
    }

    #[test]
    fn punycode_entries_match_unicode_and_ascii_queries() {
        let store = MemoryStore::new();
        assert!(store.apply_at(&learn("bücher.de", DAY, true), NOW));
        let entry = store.lookup_at("xn--bcher-kva.de", NOW).unwrap();
        assert_eq!(entry.domain, "xn--bcher-kva.de");
        assert!(store.is_enforced_at("shop.BÜCHER.de", NOW));
        assert!(store.is_enforced_at("shop.xn--bcher-kva.de.", NOW));
    }

    #[test]
    fn entries_expire() {
        let store = MemoryStore::new();
        store.apply_at(&learn("exp.test", 100, true), NOW);
        let entry = store.lookup_at("exp.test", NOW).unwrap();
        assert_eq!(entry.expires_at, Some(NOW + 100));
        // Still known one second before expiry; gone at the expiry instant (§8.1.1).
        assert!(store.is_enforced_at("a.exp.test", NOW + 99));
        assert!(!store.is_enforced_at("a.exp.test", NOW + 100));
        assert!(store.lookup_at("exp.test", NOW + 100).is_none());
        assert_eq!(store.counts_at(NOW + 100), (0, 0, 0));
        assert!(store.dynamic_entries_at(NOW + 100).is_empty());
        // Pruning removes it for good.
        assert_eq!(store.prune_expired_at(NOW + 100), 1);
        assert_eq!(store.counts_at(NOW), (0, 0, 0));
    }

    #[test]
    fn relearning_refreshes_expiry_and_flags() {
        let store = MemoryStore::new();
        assert!(store.apply_at(&learn("r.test", 100, false), NOW));
        // The same header again at the same second is not a change (no needless write).
        assert!(!store.apply_at(&learn("r.test", 100, false), NOW));
        // Later, it moves the expiry (§8.1.1: update the cached expiry).
        assert!(store.apply_at(&learn("r.test", 100, true), NOW + 50));
        let e = store.lookup_at("r.test", NOW + 50).unwrap();
        assert_eq!(
            (e.expires_at, e.include_subdomains),
            (Some(NOW + 150), true)
        );
    }

    #[test]
    fn max_age_zero_forgets_learned_but_never_preload() {
        let store = preload(&[("pre.test", true)]);
        assert!(store.apply_at(&learn("pre.test", DAY, false), NOW));
        assert!(store.apply_at(&learn("other.test", DAY, false), NOW));
        // max-age=0 from the site: its learned entry goes (§6.1.1) ...
        assert!(store.apply_at(&learn("other.test", 0, false), NOW));
        assert!(!store.is_enforced_at("other.test", NOW));
        // ... and for a preloaded host only the learned override goes; the preload stays.
        assert!(store.apply_at(&learn("pre.test", 0, false), NOW));
        let e = store.lookup_at("pre.test", NOW).unwrap();
        assert_eq!(e.source, Source::Preload);
        assert!(store.is_enforced_at("www.pre.test", NOW));
        // Forget with nothing to forget is no change.
        let forget = StsUpdate::Forget {
            host: "pre.test".into(),
        };
        assert!(!store.apply_at(&forget, NOW));
        assert_eq!(
            store.lookup_at("pre.test", NOW).unwrap().source,
            Source::Preload
        );
    }

    #[test]
    fn learned_and_manual_override_preload_for_the_same_host() {
        let store = preload(&[("site.test", true)]);
        let e = store.lookup_at("site.test", NOW).unwrap();
        assert_eq!((e.source, e.expires_at), (Source::Preload, None));

        // A learned entry for the same host is what lookup reports (Chromium: dynamic first).
        store.apply_at(&learn("site.test", DAY, false), NOW);
        let e = store.lookup_at("site.test", NOW).unwrap();
        assert_eq!(
            (e.source, e.expires_at, e.include_subdomains),
            (Source::Learned, Some(NOW + DAY), false)
        );
        // Its lack of includeSubDomains does not unprotect subdomains the preload covers:
        // Chromium falls through to the static state too.
        let sub = store.lookup_at("www.site.test", NOW).unwrap();
        assert_eq!(sub.source, Source::Preload);

        // A manual entry replaces the learned one.
        store
            .add_manual_at("site.test", true, 10 * DAY, NOW)
            .unwrap();
        let e = store.lookup_at("site.test", NOW).unwrap();
        assert_eq!(
            (e.source, e.expires_at),
            (Source::Manual, Some(NOW + 10 * DAY))
        );
        // Once the dynamic entry expires, the preload decides again.
        let e = store.lookup_at("site.test", NOW + 10 * DAY).unwrap();
        assert_eq!(e.source, Source::Preload);
    }

    #[test]
    fn dynamic_state_is_consulted_before_a_preload_exemption() {
        let store = MemoryStore::with_preload(vec![
            PreloadEntry::force_https("apis.example", true),
            PreloadEntry {
                name: "chart.apis.example".into(),
                include_subdomains: true,
                force_https: false,
            },
        ]);
        assert!(!store.is_enforced_at("chart.apis.example", NOW));
        // The site itself asks for HSTS on the whole tree: Chromium's dynamic state wins.
        store.apply_at(&learn("apis.example", DAY, true), NOW);
        let e = store.lookup_at("chart.apis.example", NOW).unwrap();
        assert_eq!(
            (e.domain.as_str(), e.source),
            ("apis.example", Source::Learned)
        );
        // Exemption-only entries are not counted as preload entries.
        assert_eq!(store.counts_at(NOW), (1, 0, 1));
    }

    #[test]
    fn headers_do_not_override_manual_entries() {
        let store = MemoryStore::new();
        store.add_manual_at("ops.test", true, DAY, NOW).unwrap();
        assert!(!store.apply_at(&learn("ops.test", 10, false), NOW));
        assert!(!store.apply_at(&learn("ops.test", 0, false), NOW));
        let e = store.lookup_at("www.ops.test", NOW).unwrap();
        assert_eq!((e.source, e.domain.as_str()), (Source::Manual, "ops.test"));
        // Once the manual entry has expired, the site's header is learned again.
        assert!(store.apply_at(&learn("ops.test", 10, false), NOW + DAY));
        assert_eq!(
            store.lookup_at("ops.test", NOW + DAY).unwrap().source,
            Source::Learned
        );
    }

    #[test]
    fn never_noted_hosts_are_not_learned() {
        let store = MemoryStore::new();
        for host in [
            "127.0.0.1",
            "[::1]",
            "localhost",
            "dev.localhost",
            "",
            "a..b",
        ] {
            assert!(!store.apply_at(&learn(host, DAY, true), NOW), "{host:?}");
        }
        assert_eq!(store.counts_at(NOW), (0, 0, 0));
        assert_eq!(store.generation(), 0);
    }

    #[test]
    fn manual_add_validates_and_remove_only_touches_dynamic() {
        let store = preload(&[("pre.test", false)]);
        let e = store.add_manual_at("Manual.Test.", false, 60, NOW).unwrap();
        assert_eq!(
            e,
            StoredEntry {
                domain: "manual.test".into(),
                include_subdomains: false,
                expires_at: Some(NOW + 60),
                source: Source::Manual,
            }
        );
        assert_eq!(
            store.add_manual_at("10.1.2.3", false, 60, NOW),
            Err(StoreError::IpLiteral("10.1.2.3".into()))
        );
        assert_eq!(
            store.add_manual_at("bad..name", false, 60, NOW),
            Err(StoreError::InvalidDomain("bad..name".into()))
        );
        assert_eq!(
            store.add_manual_at("z.test", false, 0, NOW),
            Err(StoreError::ZeroMaxAge("z.test".into()))
        );
        store.apply_at(&learn("l.test", 60, false), NOW);
        assert_eq!(store.counts_at(NOW), (1, 1, 1));

        assert!(store.remove_at("MANUAL.test", NOW));
        assert!(store.remove_at("l.test", NOW));
        assert!(!store.remove_at("l.test", NOW));
        // Preload entries cannot be removed.
        assert!(!store.remove_at("pre.test", NOW));
        assert!(store.is_enforced_at("pre.test", NOW));
        assert_eq!(store.counts_at(NOW), (0, 0, 1));
    }

    #[test]
    fn changes_bump_generation_and_notify() {
        let store = MemoryStore::new();
        let g0 = store.generation();
        store.apply_at(&learn("g.test", 60, false), NOW);
        assert_eq!(store.generation(), g0 + 1);
        // A stored permit means a waiter that arrives later is still woken.
        let waited = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    store.changed().notified(),
                )
                .await
            });
        assert!(waited.is_ok());
        // No-ops do not count as changes.
        store.apply_at(&learn("g.test", 60, false), NOW);
        assert!(!store.remove_at("none.test", NOW));
        assert_eq!(store.generation(), g0 + 1);
    }

    #[test]
    fn dynamic_entries_are_sorted_unexpired_and_restorable() {
        let store = preload(&[("p.test", true)]);
        store.apply_at(&learn("b.test", 60, true), NOW);
        store.apply_at(&learn("short.test", 1, false), NOW);
        store.add_manual_at("a.test", false, 120, NOW).unwrap();
        let entries = store.dynamic_entries_at(NOW + 1);
        let names: Vec<_> = entries.iter().map(|e| e.domain.as_str()).collect();
        assert_eq!(names, ["a.test", "b.test"]);

        let copy = MemoryStore::new();
        let mut input = entries.clone();
        // Junk that restore must skip: preload-sourced, expired, no expiry, invalid name, IP.
        for (domain, expires_at, source) in [
            ("p.test", None, Source::Preload),
            ("old.test", Some(NOW), Source::Learned),
            ("noexp.test", None, Source::Learned),
            ("bad..test", Some(NOW + 60), Source::Learned),
            ("10.0.0.1", Some(NOW + 60), Source::Manual),
        ] {
            input.push(StoredEntry {
                domain: domain.into(),
                include_subdomains: false,
                expires_at,
                source,
            });
        }
        assert_eq!(copy.restore_at(input, NOW + 1), 2);
        assert_eq!(copy.dynamic_entries_at(NOW + 1), entries);
        assert_eq!(copy.generation(), 0);
    }

    /// Issue 11 item 5: a flood of 20,000 learned subdomains of one site (a wildcard
    /// certificate, one header per random name) stays within the per-site bound, evicts
    /// only that site's own oldest entries, and never another site's, a manual or a preload
    /// entry.
    #[test]
    fn a_learning_flood_evicts_only_the_flooding_sites_own_entries() {
        let store = preload(&[("pre.flood.test", false)]);
        assert_eq!(store.limits(), Limits::default());
        store.apply_at(&learn("victim.test", DAY, true), NOW);
        store.apply_at(&learn("www.victim.test", DAY, false), NOW);
        store
            .add_manual_at("ops.flood.test", false, DAY, NOW)
            .unwrap();
        store.apply_at(&learn("flood.test", DAY, false), NOW);
        for i in 0..20_000 {
            assert!(store.apply_at(&learn(&format!("r{i}.flood.test"), DAY, false), NOW));
            // The victim site keeps being seen now and then; that changes nothing.
            if i % 5_000 == 0 {
                store.apply_at(&learn("victim.test", DAY, true), NOW);
            }
        }
        let (learned, manual, preload) = store.counts_at(NOW);
        // 1,000 of flood.test, 2 of victim.test: memory stays bounded.
        assert_eq!((learned, manual, preload), (1_002, 1, 1));
        assert_eq!(store.dynamic.len(), 1_003);
        assert_eq!(store.sites().total(), 1_002);
        assert_eq!(store.evictions(), 20_001 - 1_000);
        // Another site, the manual and the preload entries are untouched.
        for host in [
            "victim.test",
            "www.victim.test",
            "ops.flood.test",
            "pre.flood.test",
        ] {
            assert!(store.is_enforced_at(host, NOW), "{host}");
        }
        // The flood's own oldest went first, flood.test itself included; the newest stayed.
        assert!(!store.is_enforced_at("flood.test", NOW));
        assert!(!store.is_enforced_at("r0.flood.test", NOW));
        assert!(!store.is_enforced_at("r18999.flood.test", NOW));
        assert!(store.is_enforced_at("r19000.flood.test", NOW));
        assert!(store.is_enforced_at("r19999.flood.test", NOW));
    }

    #[test]
    fn the_total_bound_takes_from_the_largest_site_and_frees_on_removal() {
        let store = MemoryStore::new().with_limits(Limits {
            max_learned_entries: 10,
            max_learned_per_site: 8,
        });
        store.apply_at(&learn("small.test", DAY, false), NOW);
        store.apply_at(&learn("other.example", DAY, false), NOW);
        for i in 0..8 {
            store.apply_at(&learn(&format!("r{i}.big.test"), DAY, false), NOW);
        }
        assert_eq!(store.counts_at(NOW).0, 10);
        // A newcomer: the largest site pays (big.test, 8 entries), not the small ones.
        store.apply_at(&learn("new.example.org", DAY, false), NOW);
        assert_eq!(store.counts_at(NOW).0, 10);
        assert!(!store.is_enforced_at("r0.big.test", NOW));
        for host in [
            "small.test",
            "other.example",
            "new.example.org",
            "r7.big.test",
        ] {
            assert!(store.is_enforced_at(host, NOW), "{host}");
        }
        // max-age=0, delete, a manual entry over a learned one and expiry all free room.
        store.apply_at(&learn("small.test", 0, false), NOW);
        assert!(store.remove_at("other.example", NOW));
        store.add_manual_at("r7.big.test", false, DAY, NOW).unwrap();
        assert_eq!(store.sites().total(), 7);
        store.apply_at(&learn("short.test", 10, false), NOW);
        assert_eq!(store.prune_expired_at(NOW + 10), 1);
        assert_eq!(store.sites().total(), 7);
        assert_eq!(store.evictions(), 1);
    }

    #[test]
    fn restore_applies_the_bounds_oldest_first() {
        let store = MemoryStore::new().with_limits(Limits {
            max_learned_entries: 100,
            max_learned_per_site: 2,
        });
        let entry = |domain: &str, expires_at: u64, source: Source| StoredEntry {
            domain: domain.into(),
            include_subdomains: false,
            expires_at: Some(NOW + expires_at),
            source,
        };
        let restored = store.restore_at(
            vec![
                entry("c.site.test", 30, Source::Learned),
                entry("a.site.test", 10, Source::Learned),
                entry("b.site.test", 20, Source::Learned),
                entry("m.site.test", 5, Source::Manual),
            ],
            NOW,
        );
        assert_eq!(restored, 3);
        assert!(!store.is_enforced_at("a.site.test", NOW));
        for host in ["b.site.test", "c.site.test", "m.site.test"] {
            assert!(store.is_enforced_at(host, NOW), "{host}");
        }
    }

    #[test]
    fn the_store_works_as_a_trait_object() {
        let store: std::sync::Arc<dyn HstsStore> = std::sync::Arc::new(MemoryStore::new());
        assert!(store.apply(&learn("dyn.test", 60, true)));
        assert!(store.is_enforced("x.dyn.test"));
        assert_eq!(store.lookup("dyn.test").unwrap().source, Source::Learned);
        assert_eq!(store.counts(), (1, 0, 0));
        assert!(store.remove("dyn.test"));
        assert!(store.dynamic_entries().is_empty());
    }

    /// Counts heap allocations made by the current thread, to pin the "no allocation on the
    /// lookup hot path" requirement.
    mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
        }

        pub struct Counting;

        // SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
        // const-initialized thread-local Cell, which neither allocates nor re-enters.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
                System.alloc(layout)
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                System.dealloc(ptr, layout)
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
                System.realloc(ptr, layout, new_size)
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn count() -> u64 {
            ALLOCATIONS.with(Cell::get)
        }
    }

    #[test]
    fn is_enforced_does_not_allocate_for_normalized_hosts() {
        let store = preload(&[("pre.test", true)]);
        store.apply_at(&learn("learned.test", DAY, true), NOW);
        let hosts = [
            "pre.test",
            "a.b.c.pre.test",
            "learned.test",
            "www.learned.test",
            "miss.example.org",
            "127.0.0.1",
        ];
        let before = alloc_count::count();
        let mut hits = 0;
        for host in hosts {
            hits += usize::from(store.is_enforced_at(host, NOW));
        }
        assert_eq!(alloc_count::count() - before, 0);
        assert_eq!(hits, 4);
    }
}
