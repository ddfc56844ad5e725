//! The operator's HSTS exemptions (`--hsts-exempt PATTERN`, config `hsts_exempt`): hosts the
//! proxy never upgrades to https, for an http-only lab or device. This is the ONLY way a host
//! escapes HSTS (issue 11 item 4): nothing a client sends, nothing in a preload file, nothing
//! learned can exempt one. A pattern is an exact host (`printer.lan`) or `*.domain`, which
//! matches the domain and every subdomain, as `--passthrough` does. Patterns and hosts are
//! compared in the one normalized spelling of `host::normalize_host`.

use super::host::normalize_host;

/// The exemptions, normalized once at start.
#[derive(Clone, Debug, Default)]
pub struct Exemptions {
    /// (normalized domain, whether subdomains match, the pattern as the operator wrote it)
    patterns: Vec<(String, bool, String)>,
}

impl Exemptions {
    /// Builds the list; a pattern that names no valid host is skipped with a warning (the
    /// config check refuses those before the proxy starts).
    pub fn new(patterns: &[String]) -> Exemptions {
        let patterns = patterns
            .iter()
            .filter_map(|pattern| {
                let (domain, wildcard) = match pattern.trim().strip_prefix("*.") {
                    Some(domain) => (domain, true),
                    None => (pattern.trim(), false),
                };
                match normalize_host(domain) {
                    Some(domain) => Some((domain.into_owned(), wildcard, pattern.clone())),
                    None => {
                        tracing::warn!("hsts_exempt: `{pattern}` is not a host name; ignored");
                        None
                    }
                }
            })
            .collect();
        Exemptions { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, as written (for the banner).
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|(_, _, pattern)| pattern.as_str())
    }

    /// The pattern that exempts `host`, if any.
    pub fn matches(&self, host: &str) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        let host = normalize_host(host)?;
        self.patterns
            .iter()
            .find(|(domain, wildcard, _)| {
                host.as_ref() == domain
                    || (*wildcard
                        && host
                            .strip_suffix(domain.as_str())
                            .is_some_and(|rest| rest.ends_with('.')))
            })
            .map(|(_, _, pattern)| pattern.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_patterns() {
        let exemptions = Exemptions::new(&[
            "Printer.LAN".to_string(),
            "*.lab.test".to_string(),
            "bücher.test".to_string(),
            "not a host".to_string(),
        ]);
        #[rustfmt::skip]
        let rows = [
            ("printer.lan", Some("Printer.LAN")),
            ("PRINTER.lan.", Some("Printer.LAN")),     // one root dot is the same host
            ("sub.printer.lan", None),                 // exact means exact
            ("lab.test", Some("*.lab.test")),          // like --passthrough: the domain too
            ("a.lab.test", Some("*.lab.test")),
            ("a.b.Lab.Test", Some("*.lab.test")),
            ("evillab.test", None),                    // a label boundary, not a suffix
            ("lab.test.evil", None),
            ("xn--bcher-kva.test", Some("bücher.test")), // compared as A-labels
            ("bücher.test", Some("bücher.test")),
            ("printer.lan..", None),                   // an empty label is no host
            ("other.test", None),
        ];
        for (host, expected) in rows {
            assert_eq!(exemptions.matches(host), expected, "{host}");
        }
        assert_eq!(exemptions.patterns().count(), 3);
        assert!(Exemptions::new(&[]).matches("printer.lan").is_none());
    }
}
