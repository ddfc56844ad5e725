//! The HSTS store: which hosts are Known HSTS Hosts, and whether a request must be upgraded.
//!
//! Matching follows RFC 6797 §8.2 and Chromium's `TransportSecurityState`: the host itself,
//! then each superdomain nearest first, where a superdomain counts only if its entry has
//! `includeSubDomains`. Entries come from three sources:
//!
//! - `learned`: from a `Strict-Transport-Security` header on a verified TLS response;
//! - `manual`: added by the operator (`strictproxy hsts add`, the admin API);
//! - `preload`: imported once at start from Chromium-format lists (`--preload`).
//!
//! Learned and manual entries ("dynamic", in Chromium's words) live in a [`DashMap`], so
//! lookups from many connections never contend on one lock. Preload entries live in an
//! immutable `HashMap` built once, so 150,000 of them cost one hash probe per label.
//!
//! As in Chromium's `TransportSecurityState::GetSTSState`, the dynamic state is consulted
//! first and the preload ("static") state only when no dynamic entry applies. Within the
//! preload state the most specific matching entry decides, even one that does not force
//! HTTPS: that is how the list exempts a name under a preloaded domain (its own comment:
//! "chart.apis.google.com is *not* HSTS because the certificate doesn't match").
//!
//! The store is behind the [`HstsStore`] trait so that a shared backend (for example Redis
//! with pub/sub invalidation, for a fleet of proxies) can sit beside [`MemoryStore`].

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::learn::StsUpdate;

mod bound;
mod index;
mod memory;

pub use bound::{site_of, Limits};
pub use memory::MemoryStore;
// The host-name rules moved to `hsts::host`; these re-exports keep older call sites working.
pub use super::host::{is_ip_literal, is_never_noted, normalize_host};

/// Where an entry came from. Serialized in lowercase, as the admin API and the store file show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Noted from a `Strict-Transport-Security` header (RFC 6797 §8.1).
    Learned,
    /// From a preload list (`--preload`); never expires, never removed by a header.
    Preload,
    /// Added by the operator.
    Manual,
}

/// One HSTS entry as the store reports it (learned, manual or preload), as the admin API and the store file serialize it:
/// `{"domain", "include_subdomains", "expires_at", "source"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The normalized domain name (lowercase, no trailing dot, A-labels).
    pub domain: String,
    /// Whether the entry also covers every subdomain (RFC 6797 §6.1.2).
    pub include_subdomains: bool,
    /// Unix seconds at which the entry expires; `None` for preload entries, which never do.
    pub expires_at: Option<u64>,
    /// Where the entry came from.
    pub source: Source,
}

impl StoredEntry {
    /// An entry is expired once its expiry time is reached (RFC 6797 §8.1.1: the host stays
    /// known for max-age seconds from when the header was received).
    pub fn is_expired_at(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Errors of the operator-facing store operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The name is not a domain name HSTS can apply to.
    #[error("`{0}` is not a valid domain name")]
    InvalidDomain(String),
    /// HSTS never applies to IP addresses (RFC 6797 §8.1.1, §8.3).
    #[error("`{0}` is an IP address; HSTS applies to domain names only (RFC 6797 §8.1.1)")]
    IpLiteral(String),
    /// A manual entry needs a lifetime; removing is a separate operation.
    #[error("max-age must be greater than 0 for `{0}`; to remove an entry, delete it")]
    ZeroMaxAge(String),
}

/// The store interface the proxy, the admin API and the persister use.
///
/// Hosts may be passed in any form a request carries (upper case, trailing dot, Unicode);
/// they are normalized with [`super::host::normalize_host`].
pub trait HstsStore: Send + Sync {
    /// The entry that decides whether `host` is a Known HSTS Host: an unexpired entry for the
    /// host itself, else the nearest superdomain entry with `includeSubDomains` (§8.2).
    fn lookup(&self, host: &str) -> Option<StoredEntry>;
    /// Whether a plain-HTTP request to `host` must be upgraded. Never allocates for an
    /// already-normalized host: this is on every request's path.
    fn is_enforced(&self, host: &str) -> bool;
    /// Applies what [`super::learn::observe`] decided. Returns whether the store changed.
    fn apply(&self, update: &StsUpdate) -> bool;
    /// Adds or replaces a manual entry that lasts `max_age` seconds. IP literals are refused
    /// (HSTS never applies to them); `localhost` is allowed, as the operator's explicit choice.
    fn add_manual(
        &self,
        domain: &str,
        include_subdomains: bool,
        max_age: u64,
    ) -> Result<StoredEntry, StoreError>;
    /// Removes the learned or manual entry for exactly `domain`. Preload entries cannot be
    /// removed. Returns false when there was no such (unexpired) entry.
    fn remove(&self, domain: &str) -> bool;
    /// The unexpired learned and manual entries, sorted by domain (what the store file holds).
    fn dynamic_entries(&self) -> Vec<StoredEntry>;
    /// Unexpired `(learned, manual, preload)` entry counts, for metrics.
    fn counts(&self) -> (usize, usize, usize);
    /// Drops expired learned and manual entries; returns how many went.
    fn prune_expired(&self) -> usize;
    /// Signalled (`notify_one`) after every change to the dynamic entries. Meant for one
    /// consumer, the persister; others should compare [`HstsStore::generation`].
    fn changed(&self) -> &Notify;
    /// A counter that increases with every change to the dynamic entries.
    fn generation(&self) -> u64;
    /// Learned entries evicted by the bounds on learned entries since start (for the
    /// `strictproxy_hsts_evictions_total` metric). A backend without bounds reports 0.
    fn evictions(&self) -> u64 {
        0
    }
}

/// Seconds since the Unix epoch, from the system clock (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_json_shape_matches_the_admin_contract() {
        let learned = StoredEntry {
            domain: "example.com".into(),
            include_subdomains: true,
            expires_at: Some(1_700_000_000),
            source: Source::Learned,
        };
        assert_eq!(
            serde_json::to_value(&learned).unwrap(),
            serde_json::json!({"domain": "example.com", "include_subdomains": true,
                               "expires_at": 1_700_000_000u64, "source": "learned"})
        );
        let pre = StoredEntry {
            domain: "dev".into(),
            include_subdomains: true,
            expires_at: None,
            source: Source::Preload,
        };
        assert_eq!(
            serde_json::to_value(&pre).unwrap(),
            serde_json::json!({"domain": "dev", "include_subdomains": true,
                               "expires_at": null, "source": "preload"})
        );
        let manual: StoredEntry = serde_json::from_str(
            r#"{"domain":"m.test","include_subdomains":false,"expires_at":5,"source":"manual"}"#,
        )
        .unwrap();
        assert_eq!(manual.source, Source::Manual);
    }
}
