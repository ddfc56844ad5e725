//! The bound on learned entries (issue 11 item 5): a site with a wildcard certificate can make
//! the proxy learn one entry per random subdomain, so memory and the store file would grow
//! without end. Firefox met the same HSTS cache-flooding attack and stopped at a fixed size;
//! a bound that evicts the oldest entries *anywhere* would then let one site push every other
//! site's entries out, which is the attack itself. So the bound is per site first:
//!
//! - a *site* is the registrable domain (eTLD+1, from the Public Suffix List through the
//!   `psl` crate); a name that is itself a public suffix is its own site;
//! - past `max_learned_per_site`, the newcomer's own site gives up its least recently observed
//!   learned entry, so a flooding site only churns through its own entries;
//! - past `max_learned_entries` (all sites), the site holding the MOST learned entries gives
//!   up its least recently observed one (the newcomer's own site when it is among the
//!   largest). A site with few entries is never evicted while a bigger one exists, so to
//!   push out a small site an attacker must first own more registrable domains, each at
//!   least as large — paid registrations, not free subdomains;
//! - manual and preload entries are never counted and never evicted.
//!
//! "Observed" is when a header last taught or refreshed the entry; entries restored from the
//! store file count as observed in the order of their expiry.
//!
//! Every eviction is counted ([`super::MemoryStore::evictions`]) and warned about at most
//! once per site per minute.

use std::collections::{BTreeSet, HashMap};

/// The bounds on learned entries (config `max_learned_entries`, `max_learned_per_site`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// All learned entries together.
    pub max_learned_entries: usize,
    /// Learned entries of one registrable domain (eTLD+1).
    pub max_learned_per_site: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_learned_entries: 100_000,
            max_learned_per_site: 1_000,
        }
    }
}

/// The site a domain belongs to: its registrable domain (eTLD+1) by the Public Suffix List,
/// or the domain itself when it is a public suffix (or has no registrable part).
pub fn site_of(domain: &str) -> &str {
    psl::domain_str(domain).unwrap_or(domain)
}

/// Which bound made an eviction, for the warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bound {
    PerSite,
    Total,
}

/// The learned entries by site, in the order they were last observed. Guarded by the
/// store's mutex; it mirrors exactly the learned entries of the map.
#[derive(Debug, Default)]
pub(super) struct Sites {
    limits: Limits,
    /// Observation sequence: larger is more recent.
    seq: u64,
    sites: HashMap<Box<str>, Site>,
    /// `(learned entries, site)`, to find the largest site without a scan.
    by_size: BTreeSet<(usize, Box<str>)>,
    total: usize,
}

#[derive(Debug, Default)]
struct Site {
    /// `(observed, domain)`, least recently observed first.
    lru: BTreeSet<(u64, Box<str>)>,
    /// Unix seconds of the last eviction warning for this site.
    warned_at: Option<u64>,
}

/// An entry to take out of the map because a bound was reached.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Victim {
    pub domain: Box<str>,
    pub site: Box<str>,
    pub bound: Bound,
    /// Whether this is the first eviction for the site in the last minute (warn then).
    pub warn: bool,
}

impl Sites {
    pub(super) fn new(limits: Limits) -> Self {
        Sites {
            limits: Limits {
                max_learned_entries: limits.max_learned_entries.max(1),
                max_learned_per_site: limits.max_learned_per_site.max(1),
            },
            ..Sites::default()
        }
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    /// How many learned entries are tracked.
    #[cfg(test)]
    pub(super) fn total(&self) -> usize {
        self.total
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn resize(&mut self, site: &str, before: usize, after: usize) {
        if before > 0 {
            self.by_size.remove(&(before, Box::from(site)));
        }
        if after > 0 {
            self.by_size.insert((after, Box::from(site)));
        }
    }

    /// A learned entry seen again: it becomes the most recently observed. Returns its new
    /// observation number.
    pub(super) fn touch(&mut self, domain: &str, observed: u64) -> u64 {
        let seq = self.next_seq();
        if let Some(site) = self.sites.get_mut(site_of(domain)) {
            site.lru.remove(&(observed, Box::from(domain)));
            site.lru.insert((seq, Box::from(domain)));
        }
        seq
    }

    /// A learned entry left the map (max-age=0, deleted, replaced by a manual entry, expired).
    pub(super) fn forget(&mut self, domain: &str, observed: u64) {
        let site_name = site_of(domain);
        let Some(site) = self.sites.get_mut(site_name) else {
            return;
        };
        let before = site.lru.len();
        if !site.lru.remove(&(observed, Box::from(domain))) {
            return;
        }
        let after = site.lru.len();
        if after == 0 {
            self.sites.remove(site_name);
        }
        self.total -= 1;
        self.resize(site_name, before, after);
    }

    /// A new learned entry for `domain`: records it and returns its observation number and
    /// the entries to evict so that both bounds hold (see the module doc for the rule).
    pub(super) fn admit(&mut self, domain: &str, now: u64) -> (u64, Vec<Victim>) {
        let own = site_of(domain);
        let mut victims = Vec::new();
        let own_len = self.sites.get(own).map_or(0, |s| s.lru.len());
        if own_len >= self.limits.max_learned_per_site {
            victims.extend(self.evict_from(own, Bound::PerSite, now));
        } else if self.total >= self.limits.max_learned_entries {
            let largest = self.by_size.last().map(|(n, s)| (*n, s.clone()));
            if let Some((largest_len, largest)) = largest {
                // The newcomer's own site pays first when it is among the largest.
                let from: Box<str> = if own_len >= largest_len {
                    Box::from(own)
                } else {
                    largest
                };
                victims.extend(self.evict_from(&from, Bound::Total, now));
            }
        }
        let seq = self.next_seq();
        let site = self.sites.entry(Box::from(own)).or_default();
        let before = site.lru.len();
        site.lru.insert((seq, Box::from(domain)));
        let after = site.lru.len();
        self.total += after - before;
        self.resize(own, before, after);
        (seq, victims)
    }

    fn evict_from(&mut self, site_name: &str, bound: Bound, now: u64) -> Option<Victim> {
        let site = self.sites.get_mut(site_name)?;
        let before = site.lru.len();
        let (_, domain) = site.lru.pop_first()?;
        let warn = site.warned_at.is_none_or(|t| now.saturating_sub(t) >= 60);
        if warn {
            site.warned_at = Some(now);
        }
        let after = site.lru.len();
        if after == 0 {
            self.sites.remove(site_name);
        }
        self.total -= 1;
        self.resize(site_name, before, after);
        Some(Victim {
            domain,
            site: Box::from(site_name),
            bound,
            warn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_of_table() {
        #[rustfmt::skip]
        let rows: &[(&str, &str)] = &[
            // eTLD+1 by the Public Suffix List.
            ("a.b.example.com", "example.com"),
            ("example.com", "example.com"),
            ("x.example.co.uk", "example.co.uk"),
            // A private-section suffix: each project is its own site.
            ("one.github.io", "one.github.io"),
            ("a.two.github.io", "two.github.io"),
            // Unknown TLDs follow the default rule `*`.
            ("r1.flood.test", "flood.test"),
            // A public suffix is its own site.
            ("co.uk", "co.uk"),
            ("test", "test"),
        ];
        for &(domain, site) in rows {
            assert_eq!(site_of(domain), site, "{domain}");
        }
    }

    #[test]
    fn per_site_bound_evicts_the_same_sites_oldest() {
        let mut sites = Sites::new(Limits {
            max_learned_entries: 100,
            max_learned_per_site: 2,
        });
        let (a, v) = sites.admit("a.one.test", 0);
        assert!(v.is_empty());
        let (_, v) = sites.admit("b.one.test", 0);
        assert!(v.is_empty());
        sites.admit("x.two.test", 0);
        // a.one.test seen again: b.one.test is now the oldest of one.test.
        sites.touch("a.one.test", a);
        let (_, v) = sites.admit("c.one.test", 0);
        assert_eq!(
            v,
            [Victim {
                domain: "b.one.test".into(),
                site: "one.test".into(),
                bound: Bound::PerSite,
                warn: true,
            }]
        );
        // Within the minute the site is not warned about again.
        let (_, v) = sites.admit("d.one.test", 30);
        assert_eq!((v[0].domain.as_ref(), v[0].warn), ("a.one.test", false));
        let (_, v) = sites.admit("e.one.test", 90);
        assert!(v[0].warn);
        assert_eq!(sites.total(), 3);
    }

    #[test]
    fn total_bound_evicts_from_the_largest_site() {
        let mut sites = Sites::new(Limits {
            max_learned_entries: 4,
            max_learned_per_site: 10,
        });
        for d in ["a.big.test", "b.big.test", "c.big.test", "x.small.test"] {
            assert!(sites.admit(d, 0).1.is_empty());
        }
        // A newcomer from a third site: the largest site (big.test) pays, not small.test.
        let (_, v) = sites.admit("n.new.test", 0);
        assert_eq!(
            (v[0].domain.as_ref(), v[0].bound),
            ("a.big.test", Bound::Total)
        );
        // big.test (2) and new.test (1) ...; a newcomer of the largest site pays itself.
        let (_, v) = sites.admit("d.big.test", 0);
        assert_eq!(v[0].domain.as_ref(), "b.big.test");
        // Forgetting frees room.
        let (seq, _) = sites.admit("m.new.test", 0);
        sites.forget("m.new.test", seq);
        assert_eq!(sites.total(), 3);
        assert!(sites.admit("y.small.test", 0).1.is_empty());
    }
}
