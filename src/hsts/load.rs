//! Building the HSTS store at start: the `--preload` lists, then the `--hsts-store` file.
//!
//! The proxy and the offline `strictproxy hsts …` subcommands both start from here, so that
//! they see the same store.

use std::path::Path;
use std::sync::Arc;

use super::persist;
use super::preload::{self, PreloadEntry, PreloadError};
use super::store::{HstsStore, Limits, MemoryStore};
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
    let lists = load_preload_files(&config.preload)?;
    let store = MemoryStore::with_preload_lists(lists).with_limits(Limits {
        max_learned_entries: config.max_learned_entries,
        max_learned_per_site: config.max_learned_per_site,
    });
    if let Some(path) = &config.hsts_store {
        let outcome = persist::load(path);
        if let Some(warning) = &outcome.warning {
            tracing::warn!("{warning}");
        }
        store.restore(outcome.entries);
    }
    Ok(Arc::new(store))
}

/// Reads every `--preload` file, one list per file (see [`MemoryStore::with_preload_lists`]
/// for how they combine). A pins file is refused with an error naming it.
pub fn load_preload_files<P: AsRef<Path>>(
    paths: &[P],
) -> Result<Vec<Vec<PreloadEntry>>, LoadError> {
    let mut preloaded = Vec::with_capacity(paths.len());
    for path in paths {
        let path = path.as_ref();
        let entries = preload::load_preload_file(path)?;
        let force_https = entries.iter().filter(|e| e.force_https).count();
        tracing::info!(
            "preload list {}: {force_https} force-https entries",
            path.display()
        );
        preloaded.push(entries);
    }
    Ok(preloaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::preload::{load_preload_file, parse_preload, synthetic_list, PreloadError};
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

    /// A pins file in the shape of Chromium's transport_security_state_static_pins.json.
    const PINS_FILE: &str = r#"// Pins only: no HSTS in here.
{
  "pinsets": [ { "name": "google", "static_spki_hashes": [ "GoogleBackup2048" ] } ],
  "entries": [
    { "name": "google", "include_subdomains": true, "pins": "google" },
    { "name": "accounts.google.com", "include_subdomains": true, "pins": "google" },
    { "name": "mail.google.com", "include_subdomains": true, "pins": "google" }
  ]
}
"#;

    /// A second, legitimate list: force-https entries and pins-only entries of its own.
    const SECOND_LIST: &str = r#"{
  "entries": [
    { "name": "gmail.com", "include_subdomains": true, "mode": "force-https" },
    { "name": "chart.apis.google.com", "mode": "force-https" },
    { "name": "own.example", "include_subdomains": true, "mode": "force-https" },
    { "name": "exempt.own.example", "pins": "own" },
    { "name": "mail.google.com", "include_subdomains": true, "pins": "google" },
    { "name": "x.anything.google", "pins": "google" }
  ]
}
"#;

    #[test]
    fn a_pins_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path().join("transport_security_state_static_pins.json");
        std::fs::write(&pins, PINS_FILE).unwrap();
        let err = load_preload_files(&[&pins]).unwrap_err().to_string();
        assert!(err.contains(&pins.display().to_string()), "{err}");
        assert!(err.contains("is a pins file"), "{err}");
        assert!(
            err.contains("transport_security_state_static_pins.json"),
            "{err}"
        );
        // Whichever position it has among the files.
        let second = dir.path().join("second.json");
        std::fs::write(&second, SECOND_LIST).unwrap();
        assert!(load_preload_files(&[&second, &pins]).is_err());
        assert!(load_preload_files(&[&pins, &second]).is_err());
        // Either mark alone is enough: pinsets, or an entry without mode.
        for text in [
            r#"{"pinsets": [], "entries": []}"#,
            r#"{"entries": [{"name": "a.test", "pins": "x"}]}"#,
            r#"{"entries": [{"name": "a.test", "expect_ct": true}]}"#,
        ] {
            assert!(
                matches!(
                    parse_preload(text),
                    Err(PreloadError::PinsFile { path: None })
                ),
                "{text}"
            );
        }
        // An empty list without pins marks, or one with a force-https entry, is a list.
        assert_eq!(parse_preload(r#"{"entries": []}"#).unwrap(), []);
        assert!(parse_preload(
            r#"{"pinsets": [], "entries": [{"name": "a.test", "mode": "force-https"}]}"#
        )
        .is_ok());
    }

    /// (host, enforced) rows shared by both file orders.
    fn assert_strictest(store: &MemoryStore, rows: &[(&str, bool)], order: &str) {
        for &(host, enforced) in rows {
            assert_eq!(store.is_enforced(host), enforced, "{order}: {host}");
        }
    }

    #[test]
    fn several_lists_strictest_wins_in_both_orders() {
        let a = parse_preload(
            r#"{"entries": [
                {"name": "gmail.com", "mode": "force-https"},
                {"name": "google.test", "include_subdomains": true, "mode": "force-https"},
                {"name": "chart.google.test", "include_subdomains": true, "pins": "p"},
                {"name": "shared.test", "include_subdomains": true, "mode": "force-https"},
                {"name": "x.shared.test", "include_subdomains": true, "pins": "p"}
            ]}"#,
        )
        .unwrap();
        let b = parse_preload(
            r#"{"entries": [
                {"name": "gmail.com", "include_subdomains": true, "mode": "force-https"},
                {"name": "mail.google.test", "include_subdomains": true, "pins": "p"},
                {"name": "shared.test", "include_subdomains": true, "mode": "force-https"},
                {"name": "x.shared.test", "include_subdomains": true, "pins": "p"},
                {"name": "only-b.test", "mode": "force-https"}
            ]}"#,
        )
        .unwrap();
        #[rustfmt::skip]
        let rows: &[(&str, bool)] = &[
            // includeSubDomains over not: b's gmail.com covers subdomains whatever the order.
            ("gmail.com", true),
            ("www.gmail.com", true),
            // A's own exemption works against A's own entry ...
            ("chart.google.test", false),
            ("y.chart.google.test", false),
            // ... but b's pins-only entry does not exempt from a's google.test.
            ("mail.google.test", true),
            ("z.mail.google.test", true),
            // Both lists exempt the same name under their own entries: exempt.
            ("x.shared.test", false),
            ("shared.test", true),
            ("only-b.test", true),
            ("other.test", false),
        ];
        let ab = MemoryStore::with_preload_lists(vec![a.clone(), b.clone()]);
        let ba = MemoryStore::with_preload_lists(vec![b, a]);
        assert_strictest(&ab, rows, "a, b");
        assert_strictest(&ba, rows, "b, a");
        // The reported entry is the same in both orders, and distinct names count once.
        for host in ["www.gmail.com", "mail.google.test"] {
            assert_eq!(ab.lookup(host), ba.lookup(host), "{host}");
        }
        assert!(ab.lookup("www.gmail.com").unwrap().include_subdomains);
        assert_eq!(ab.counts(), (0, 0, 4));
        assert_eq!(ba.counts(), (0, 0, 4));
    }

    /// The real list with a second one, in both orders: the second list's pins-only entries
    /// never exempt a name the real list forces, and its force-https entries add to it.
    #[test]
    fn real_list_with_a_second_list_in_both_orders() {
        let Some(real) = real_list() else {
            eprintln!(
                "skipped: shared/hsts/transport_security_state_static.2016-08.json not present"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let second = dir.path().join("second.json");
        std::fs::write(&second, SECOND_LIST).unwrap();
        let pins = dir.path().join("transport_security_state_static_pins.json");
        std::fs::write(&pins, PINS_FILE).unwrap();
        for paths in [[&real, &pins], [&pins, &real]] {
            let err = load_preload_files(&paths).unwrap_err().to_string();
            assert!(
                err.contains(&pins.display().to_string()) && err.contains("pins file"),
                "{err}"
            );
        }
        #[rustfmt::skip]
        let rows: &[(&str, bool)] = &[
            // The real list's google entries stay in force despite the second's pins.
            ("mail.google.com", true),
            ("x.mail.google.com", true),
            ("accounts.google.com", true),
            ("anything.google", true),
            ("x.anything.google", true),
            // force-https over none: the second list forces what the real one exempts ...
            ("chart.apis.google.com", true),
            // ... but not the subdomains, which the real list exempts with includeSubDomains.
            ("x.chart.apis.google.com", false),
            // includeSubDomains over not: the real gmail.com has none, the second has.
            ("gmail.com", true),
            ("x.gmail.com", true),
            // The second list's own exemption against its own entry.
            ("own.example", true),
            ("y.own.example", true),
            ("exempt.own.example", false),
            ("example.com", false),
        ];
        for (order, paths) in [
            ("real, second", [&real, &second]),
            ("second, real", [&second, &real]),
        ] {
            let lists = load_preload_files(&paths).unwrap();
            let store = MemoryStore::with_preload_lists(lists);
            assert_strictest(&store, rows, order);
            // 13,138 from the real list, plus own.example (gmail.com and chart.apis.google.com
            // are counted once).
            assert_eq!(store.counts(), (0, 0, 13_140), "{order}");
        }
    }
}
