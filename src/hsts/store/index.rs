//! The preload set, packed: built once at start and then only read, so lookups take no lock.

use crate::hsts::host::{is_ip_literal, normalize_host};
use crate::hsts::preload::PreloadEntry;

/// A preload entry as the map holds it; the key is the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Preloaded {
    pub(super) include_subdomains: bool,
    pub(super) force_https: bool,
}

/// The preload set, built once and then only read. A 150,000-entry list held as a map of
/// boxed strings costs one allocation per name plus a 24-byte slot each (~11 MiB); here every
/// name lives in one string and the table holds 8 bytes per slot: where the name starts, its
/// length and the two flags (~5 MiB), which keeps the idle proxy under 20 MiB with the list.
#[derive(Default)]
pub(super) struct PreloadIndex {
    names: String,
    table: hashbrown::HashTable<u64>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for PreloadIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreloadIndex")
            .field("entries", &self.table.len())
            .finish()
    }
}

const FLAG_INCLUDE_SUBDOMAINS: u64 = 1;
const FLAG_FORCE_HTTPS: u64 = 2;

impl PreloadIndex {
    pub(super) fn with_capacity(entries: usize) -> Self {
        PreloadIndex {
            names: String::with_capacity(entries * 18),
            table: hashbrown::HashTable::with_capacity(entries),
            hasher: Default::default(),
        }
    }

    /// Packs `start` (32 bits), `len` (16 bits; DNS names are at most 253 octets) and flags.
    fn pack(start: usize, len: usize, value: Preloaded) -> u64 {
        let mut flags = 0;
        if value.include_subdomains {
            flags |= FLAG_INCLUDE_SUBDOMAINS;
        }
        if value.force_https {
            flags |= FLAG_FORCE_HTTPS;
        }
        ((start as u64) << 32) | ((len as u64 & 0xffff) << 16) | flags
    }

    fn name_of(names: &str, packed: u64) -> &str {
        let start = (packed >> 32) as usize;
        let len = ((packed >> 16) & 0xffff) as usize;
        names.get(start..start + len).unwrap_or("")
    }

    fn value_of(packed: u64) -> Preloaded {
        Preloaded {
            include_subdomains: packed & FLAG_INCLUDE_SUBDOMAINS != 0,
            force_https: packed & FLAG_FORCE_HTTPS != 0,
        }
    }

    /// Adds `name` (normalized); a name listed again takes the later flags.
    pub(super) fn insert(&mut self, name: &str, value: Preloaded) {
        use std::hash::BuildHasher;
        // Names past these bounds cannot be DNS names; normalization already refuses them.
        if name.len() > 0xffff || self.names.len() + name.len() > u32::MAX as usize {
            return;
        }
        let hash = self.hasher.hash_one(name);
        let names = &self.names;
        if let Some(existing) = self
            .table
            .find_mut(hash, |&packed| Self::name_of(names, packed) == name)
        {
            *existing = (*existing & !(FLAG_INCLUDE_SUBDOMAINS | FLAG_FORCE_HTTPS))
                | (Self::pack(0, 0, value) & 0xffff);
            return;
        }
        let packed = Self::pack(self.names.len(), name.len(), value);
        self.names.push_str(name);
        let (names, hasher) = (&self.names, &self.hasher);
        self.table
            .insert_unique(hash, packed, |&p| hasher.hash_one(Self::name_of(names, p)));
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        let (names, hasher) = (&self.names, &self.hasher);
        self.table.shrink_to_fit(|&p| {
            use std::hash::BuildHasher;
            hasher.hash_one(Self::name_of(names, p))
        });
    }

    pub(super) fn get(&self, name: &str) -> Option<Preloaded> {
        use std::hash::BuildHasher;
        if self.table.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(name);
        self.table
            .find(hash, |&packed| Self::name_of(&self.names, packed) == name)
            .map(|&packed| Self::value_of(packed))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, Preloaded)> + '_ {
        self.table
            .iter()
            .map(|&packed| (Self::name_of(&self.names, packed), Self::value_of(packed)))
    }

    /// Chromium's static-state decision within this one list: the most specific entry that
    /// covers `host` (the host itself, or a superdomain with include_subdomains) decides, and
    /// only a force-https one enforces. Returns that entry's domain and flags.
    pub(super) fn decide<'h>(&self, host: &'h str) -> Option<(&'h str, Preloaded)> {
        if self.table.is_empty() {
            return None;
        }
        let (domain, p) =
            crate::hsts::host::self_and_superdomains(host).find_map(|(name, exact)| {
                self.get(name)
                    .filter(|p| exact || p.include_subdomains)
                    .map(|p| (name, p))
            })?;
        p.force_https.then_some((domain, p))
    }

    #[cfg(test)]
    pub(super) fn count(&self, keep: impl Fn(&Preloaded) -> bool) -> usize {
        self.table
            .iter()
            .filter(|&&packed| keep(&Self::value_of(packed)))
            .count()
    }
}

/// The preload lists, one index per `--preload` file (see
/// `MemoryStore::with_preload_lists` for why they stay apart).
#[derive(Debug, Default)]
pub(super) struct PreloadSet {
    lists: Vec<PreloadIndex>,
    /// Distinct names some list forces to HTTPS.
    enforcing: usize,
}

impl PreloadSet {
    /// Normalizes the names (IP literals and invalid names skipped) and indexes each list.
    pub(super) fn build(lists: Vec<Vec<PreloadEntry>>) -> Self {
        let mut indexes: Vec<PreloadIndex> = Vec::with_capacity(lists.len());
        for entries in lists {
            let mut index = PreloadIndex::with_capacity(entries.len());
            for entry in entries {
                let Some(domain) = normalize_host(&entry.name) else {
                    continue;
                };
                if is_ip_literal(&domain) {
                    continue;
                }
                let value = Preloaded {
                    include_subdomains: entry.include_subdomains,
                    force_https: entry.force_https,
                };
                index.insert(&domain, value);
            }
            index.shrink_to_fit();
            if !index.is_empty() {
                indexes.push(index);
            }
        }
        // Distinct names: a name forced by two lists counts once.
        let mut enforcing = 0;
        for (i, index) in indexes.iter().enumerate() {
            enforcing += index
                .iter()
                .filter(|(name, p)| {
                    p.force_https
                        && !indexes[..i]
                            .iter()
                            .any(|earlier| earlier.get(name).is_some_and(|e| e.force_https))
                })
                .count();
        }
        PreloadSet {
            lists: indexes,
            enforcing,
        }
    }

    /// How many distinct names some list forces to HTTPS.
    pub(super) fn enforcing(&self) -> usize {
        self.enforcing
    }

    /// The entry that enforces HTTPS for `host` (normalized), if any list does.
    pub(super) fn decide<'h>(&self, host: &'h str) -> Option<(&'h str, Preloaded)> {
        // Within each list the most specific entry that covers the host decides, and only a
        // force-https one enforces (Chromium's preload decoder keeps the deepest match).
        // Across lists the strictest answer wins: the most specific enforcing entry, and of
        // two for the same domain the one with includeSubDomains.
        let mut best: Option<(&'h str, Preloaded)> = None;
        for index in &self.lists {
            if let Some((domain, p)) = index.decide(host) {
                let better = match best {
                    None => true,
                    Some((d, b)) => {
                        domain.len() > d.len()
                            || (domain.len() == d.len()
                                && p.include_subdomains
                                && !b.include_subdomains)
                    }
                };
                if better {
                    best = Some((domain, p));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_index_keeps_the_later_flags_and_exact_names() {
        let mut index = PreloadIndex::with_capacity(4);
        let sub = Preloaded {
            include_subdomains: true,
            force_https: true,
        };
        let exempt = Preloaded {
            include_subdomains: false,
            force_https: false,
        };
        index.insert("a.test", sub);
        index.insert("b.a.test", exempt);
        // A name listed again takes the later entry's flags (its text is stored once).
        index.insert("a.test", exempt);
        index.shrink_to_fit();
        assert_eq!(index.get("a.test"), Some(exempt));
        assert_eq!(index.get("b.a.test"), Some(exempt));
        assert_eq!(index.get("a.tes"), None);
        assert_eq!(index.get("xa.test"), None);
        assert_eq!(index.names, "a.testb.a.test");
        assert_eq!(index.count(|p| p.force_https), 0);
    }
}
