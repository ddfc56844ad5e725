//! Building the HSTS store at start: the `--preload` lists, then the `--hsts-store` file.
//!
//! The proxy and the offline `strictproxy hsts …` subcommands both start from here, so that
//! they see the same store.

use std::path::Path;
use std::sync::Arc;

use super::persist;
use super::preload::{self, PreloadEntry, PreloadError};
use super::store::{HstsStore, MemoryStore};
use crate::config::Config;

/// Why the HSTS store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A preload list could not be read or parsed.
    #[error(transparent)]
    Preload(#[from] PreloadError),
}

/// Loads the HSTS store: the preload lists, then what was persisted.
pub fn load_hsts(config: &Config) -> Result<Arc<dyn HstsStore>, LoadError> {
    let preloaded = load_preload_files(&config.preload)?;
    let store = MemoryStore::with_preload(preloaded);
    if let Some(path) = &config.hsts_store {
        let outcome = persist::load(path);
        if let Some(warning) = &outcome.warning {
            tracing::warn!("{warning}");
        }
        store.restore(outcome.entries);
    }
    Ok(Arc::new(store))
}

/// Reads every `--preload` file, in order, into one list.
pub fn load_preload_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PreloadEntry>, LoadError> {
    let mut preloaded = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let entries = preload::load_preload_file(path)?;
        let force_https = entries.iter().filter(|e| e.force_https).count();
        tracing::info!(
            "preload list {}: {force_https} force-https entries",
            path.display()
        );
        preloaded.extend(entries);
    }
    Ok(preloaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::preload::{load_preload_file, parse_preload, synthetic_list};
    use crate::hsts::store::Source;

    /// The real list from shared/, beside the crate (main) or two levels up (a worktree).
    fn real_list() -> Option<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        ["../shared", "../../shared"]
            .iter()
            .map(|s| {
                dir.join(s)
                    .join("hsts/transport_security_state_static.2016-08.json")
            })
            .find(|p| p.exists())
    }

    /// The real August 2016 list: 13,399 entries with comments, pins-only entries and one
    /// upper-case name. Skipped when shared/ is not beside the crate.
    #[test]
    fn real_2016_list() {
        let Some(path) = real_list() else {
            eprintln!(
                "skipped: shared/hsts/transport_security_state_static.2016-08.json not present"
            );
            return;
        };
        let entries = load_preload_file(&path).unwrap();
        assert_eq!(entries.len(), 13_399);
        // 13,139 lines carry "mode": "force-https"; the pins-only and expect-* ones do not.
        assert_eq!(entries.iter().filter(|e| e.force_https).count(), 13_139);
        // "0xAA55.me" and "0xaa55.me" are both listed: one host once normalized.
        let store = MemoryStore::with_preload(entries);
        assert_eq!(store.counts(), (0, 0, 13_138));
        let rows: &[(&str, Option<(&str, bool)>)] = &[
            // The gTLD entry covers every name under it.
            ("google", Some(("google", true))),
            ("anything.google", Some(("google", true))),
            ("mail.google.com", Some(("mail.google.com", true))),
            ("x.mail.google.com", Some(("mail.google.com", true))),
            // gmail.com has no include_subdomains.
            ("gmail.com", Some(("gmail.com", false))),
            ("x.gmail.com", None),
            // Pins-only entries never upgrade ...
            ("pinningtest.appspot.com", None),
            ("android.com", None),
            ("www.android.com", None),
            ("www.google.com", None),
            // ... and exempt their names from a preloaded superdomain, as in Chromium.
            ("apis.google.com", Some(("apis.google.com", true))),
            ("x.apis.google.com", Some(("apis.google.com", true))),
            ("chart.apis.google.com", None),
            // The one upper-case name, normalized.
            ("0xaa55.me", Some(("0xaa55.me", true))),
            ("www.0xAA55.me", Some(("0xaa55.me", true))),
            // The last entry of the file.
            (
                "hstspreload.appspot.com",
                Some(("hstspreload.appspot.com", true)),
            ),
            ("example.com", None),
        ];
        for &(host, expected) in rows {
            let got = store.lookup(host);
            if let Some(e) = &got {
                assert_eq!((e.source, e.expires_at), (Source::Preload, None));
            }
            let got = got
                .as_ref()
                .map(|e| (e.domain.as_str(), e.include_subdomains));
            assert_eq!(got, expected, "{host}");
        }
    }

    #[test]
    fn synthetic_150k_list_loads_fast_and_matches() {
        let text = synthetic_list(150_000);
        let start = std::time::Instant::now();
        let entries = parse_preload(&text).unwrap();
        let store = MemoryStore::with_preload(entries);
        let elapsed = start.elapsed();
        assert_eq!(store.preload_len(), 135_000); // one in ten is pins-only
        assert!(store.is_enforced("site0.example"));
        assert!(store.is_enforced("a.b.site149998.example"));
        assert!(!store.is_enforced("a.site1.example")); // odd: no include_subdomains
        assert!(!store.is_enforced("pins9.example"));
        // The requirement is "well under a second" for an optimized build (see benches/hsts.rs
        // for the figure); an unoptimized test build only gets a loose bound.
        let limit = if cfg!(debug_assertions) { 10.0 } else { 0.5 };
        assert!(
            elapsed.as_secs_f64() < limit,
            "loading 150k entries took {elapsed:?}"
        );
    }
}
