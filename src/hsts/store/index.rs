//! The preload set, packed: built once at start and then only read, so lookups take no lock.

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

    pub(super) fn count(&self, keep: impl Fn(&Preloaded) -> bool) -> usize {
        self.table
            .iter()
            .filter(|&&packed| keep(&Self::value_of(packed)))
            .count()
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
