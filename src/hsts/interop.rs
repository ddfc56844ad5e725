//! HSTS state shared with other tools (issue 14 item 3): export the store as, and import it
//! from, curl's HSTS cache, wget's HSTS database, Chromium's preload JSON and strictproxy's
//! own JSON. Pure text in, text out; [`export_store`] and [`import_into`] are the one-line
//! bridges to a store for the CLI and the admin API.
//!
//! The formats, as the real tools read and write them (checked by `tests/interop.rs` against
//! the installed curl and wget):
//!
//! - **curl** (`curl --hsts FILE`, libcurl's `lib/hsts.c`): one `host "YYYYMMDD HH:MM:SS"`
//!   line per entry, the expiry in UTC, a leading `.` on the host for includeSubDomains,
//!   `"unlimited"` for no expiry, `#` comment lines. curl applies an entry to every port.
//! - **wget** (`wget --hsts-file=FILE`, wget's `src/hsts.c`): three `#` header lines, then
//!   `host<TAB>port<TAB>include_subdomains<TAB>created<TAB>max_age` (Unix seconds). Port 0
//!   is the default port; wget keys other entries by their explicit port, which HSTS itself
//!   does not have (RFC 6797 §8.2 matches host names only), so on import they are skipped and
//!   counted. wget refuses a database others may write to: write it with mode 0600.
//! - **chromium-preload**: `{"entries": [{"name", "policy", "mode": "force-https",
//!   "include_subdomains"}]}`, what `--preload` reads, so a team can pin what one proxy learned
//!   for other instances. Entries without force-https are not imported.
//! - **json**: the admin API's `GET /hsts` array of `{"domain", "include_subdomains",
//!   "expires_at", "source"}`; the store file (`{"version": 1, "entries": [...]}`) imports too.
//!
//! An entry without expiry (a preload entry, curl's `"unlimited"`) gets one year, the longest
//! max-age the proxy honours (Chromium's cap). Expired entries are skipped both ways. An
//! import either yields every entry or an [`ImportError`] naming the line: nothing is
//! half-imported.

use std::fmt::Write as _;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::header::{StsPolicy, MAX_AGE_CAP};
use super::host::{is_ip_literal, normalize_host};
use super::learn::StsUpdate;
use super::preload::{parse_preload, PreloadError};
use super::store::{HstsStore, StoredEntry};

/// The file formats of `strictproxy hsts export|import --format` and `GET /hsts?format=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// curl's HSTS cache (`curl --hsts FILE`).
    Curl,
    /// wget's HSTS database (`wget --hsts-file=FILE`, `~/.wget-hsts`).
    Wget,
    /// Chromium's preload list JSON (what `--preload` reads).
    ChromiumPreload,
    /// strictproxy's own JSON (the admin API's `/hsts`).
    Json,
}

impl Format {
    /// Every format, in the order the help lists them.
    pub const ALL: [Format; 4] = [
        Format::Curl,
        Format::Wget,
        Format::ChromiumPreload,
        Format::Json,
    ];

    /// The name on the command line and in `?format=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Curl => "curl",
            Format::Wget => "wget",
            Format::ChromiumPreload => "chromium-preload",
            Format::Json => "json",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown HSTS format `{0}`: expected curl, wget, chromium-preload or json")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// One imported entry: a normalized domain and the seconds it stays known from now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedEntry {
    pub domain: String,
    pub include_subdomains: bool,
    /// Seconds from the import's `now` (at least 1, at most a year).
    pub max_age: u64,
}

/// What a file held, ready for [`import_into`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub entries: Vec<ImportedEntry>,
    /// Entries whose expiry had passed.
    pub skipped_expired: usize,
    /// wget entries for a non-default port (HSTS has no ports).
    pub skipped_ports: usize,
    /// Chromium preload entries that do not force HTTPS (pins-only and the like).
    pub skipped_not_enforcing: usize,
}

/// Why a file could not be imported. Nothing of it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportError {
    /// 1-based line of the file.
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> ImportError {
    ImportError {
        line,
        message: message.into(),
    }
}

/// Writes `entries` (as [`HstsStore::dynamic_entries`] gives them) in `format`. Expired
/// entries are left out.
pub fn export(entries: &[StoredEntry], format: Format, now: u64) -> String {
    let live = entries.iter().filter(|e| !e.is_expired_at(now));
    let mut out = String::new();
    match format {
        Format::Curl => {
            out.push_str("# Your HSTS cache. https://curl.se/docs/hsts.html\n");
            out.push_str("# Exported by strictproxy for curl --hsts.\n");
            for e in live {
                let dot = if e.include_subdomains { "." } else { "" };
                let expiry = e
                    .expires_at
                    .map_or_else(|| "unlimited".to_owned(), curl_date);
                let _ = writeln!(out, "{dot}{} \"{expiry}\"", e.domain);
            }
        }
        Format::Wget => {
            // wget's own header (src/hsts.c), so wget and people recognise the file.
            out.push_str("# HSTS 1.0 Known Hosts database for GNU Wget.\n");
            out.push_str("# Edit at your own risk.\n");
            out.push_str("# <hostname>\t<port>\t<incl. subdomains>\t<created>\t<max-age>\n");
            for e in live {
                let max_age = e.expires_at.map_or(MAX_AGE_CAP, |t| t.saturating_sub(now));
                let _ = writeln!(
                    out,
                    "{}\t0\t{}\t{now}\t{max_age}",
                    e.domain,
                    u8::from(e.include_subdomains)
                );
            }
        }
        Format::ChromiumPreload => {
            #[derive(Serialize)]
            struct Out<'a> {
                name: &'a str,
                policy: &'static str,
                mode: &'static str,
                include_subdomains: bool,
            }
            let entries: Vec<Out<'_>> = live
                .map(|e| Out {
                    name: &e.domain,
                    policy: "custom",
                    mode: "force-https",
                    include_subdomains: e.include_subdomains,
                })
                .collect();
            out = serde_json::to_string_pretty(&serde_json::json!({ "entries": entries }))
                .unwrap_or_default();
            out.push('\n');
        }
        Format::Json => {
            let entries: Vec<&StoredEntry> = live.collect();
            out = serde_json::to_string_pretty(&entries).unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

/// [`export`] of a store's learned and manual entries.
pub fn export_store(store: &dyn HstsStore, format: Format, now: u64) -> String {
    export(&store.dynamic_entries(), format, now)
}

/// Reads `text` in `format`. Every line is checked before anything is returned, so a
/// malformed line means nothing is imported.
pub fn import(text: &str, format: Format, now: u64) -> Result<Imported, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Curl => import_curl(text, now),
        Format::Wget => import_wget(text, now),
        Format::ChromiumPreload => import_chromium(text),
        Format::Json => import_json(text, now),
    }
}

/// Puts imported entries into `store`: as manual entries, or as learned ones (as if each
/// site had sent the header now) when `as_learned`. Returns how many the store took (a
/// learned entry never replaces a manual one, and `localhost` is never learned).
pub fn import_into(store: &dyn HstsStore, imported: &Imported, as_learned: bool) -> usize {
    imported
        .entries
        .iter()
        .filter(|e| {
            if as_learned {
                store.apply(&StsUpdate::Learn {
                    host: e.domain.clone(),
                    policy: StsPolicy {
                        max_age: e.max_age,
                        include_subdomains: e.include_subdomains,
                        preload: false,
                    },
                })
            } else {
                store
                    .add_manual(&e.domain, e.include_subdomains, e.max_age)
                    .is_ok()
            }
        })
        .count()
}

/// A host as a file names it → the store's domain, or why not.
fn domain(raw: &str, line: usize) -> Result<String, ImportError> {
    if is_ip_literal(raw) {
        return Err(error(
            line,
            format!("`{raw}` is an IP address; HSTS applies to domain names only"),
        ));
    }
    normalize_host(raw)
        .map(|d| d.into_owned())
        .ok_or_else(|| error(line, format!("`{raw}` is not a valid domain name")))
}

fn entry(domain: String, include_subdomains: bool, max_age: u64) -> ImportedEntry {
    ImportedEntry {
        domain,
        include_subdomains,
        max_age: max_age.clamp(1, MAX_AGE_CAP),
    }
}

/// `YYYYMMDD HH:MM:SS` in UTC, as curl writes and reads it.
const CURL_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day] [hour]:[minute]:[second]");

fn curl_date(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(CURL_DATE).ok())
        // Past year 9999 (or unrepresentable): as good as no expiry.
        .unwrap_or_else(|| "unlimited".to_owned())
}

fn import_curl(text: &str, now: u64) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (host, rest) = line
            .split_once([' ', '\t'])
            .ok_or_else(|| error(n, "expected `host \"YYYYMMDD HH:MM:SS\"`"))?;
        let rest = rest.trim();
        let date = rest
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(date, _)| date)
            .ok_or_else(|| error(n, format!("expected a quoted expiry after `{host}`")))?;
        let (include_subdomains, host) = match host.strip_prefix('.') {
            Some(h) => (true, h),
            None => (false, host),
        };
        let domain = domain(host, n)?;
        let max_age = if date == "unlimited" {
            MAX_AGE_CAP
        } else {
            let expires = time::PrimitiveDateTime::parse(date, CURL_DATE)
                .map_err(|e| {
                    error(
                        n,
                        format!(
                            "bad expiry `{date}` ({e}); expected YYYYMMDD HH:MM:SS or unlimited"
                        ),
                    )
                })?
                .assume_utc()
                .unix_timestamp();
            let expires = u64::try_from(expires).unwrap_or(0);
            if expires <= now {
                out.skipped_expired += 1;
                continue;
            }
            expires - now
        };
        out.entries.push(entry(domain, include_subdomains, max_age));
    }
    Ok(out)
}

fn import_wget(text: &str, now: u64) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [host, port, include, created, max_age] = fields[..] else {
            return Err(error(
                n,
                format!(
                    "expected 5 fields (host, port, include_subdomains, created, max_age), got {}",
                    fields.len()
                ),
            ));
        };
        let number = |field: &str, what: &str| {
            field
                .parse::<u64>()
                .map_err(|_| error(n, format!("{what} must be a number, got `{field}`")))
        };
        let port = number(port, "port")?;
        let include = match include {
            "0" => false,
            "1" => true,
            other => {
                return Err(error(
                    n,
                    format!("include_subdomains must be 0 or 1, got `{other}`"),
                ))
            }
        };
        let created = number(created, "created")?;
        let max_age = number(max_age, "max_age")?;
        let domain = domain(host, n)?;
        // wget's 0 is the default port; 443 is it spelled out.
        if port != 0 && port != 443 {
            out.skipped_ports += 1;
            continue;
        }
        let expires = created.saturating_add(max_age);
        if expires <= now {
            out.skipped_expired += 1;
            continue;
        }
        out.entries.push(entry(domain, include, expires - now));
    }
    Ok(out)
}

fn import_chromium(text: &str) -> Result<Imported, ImportError> {
    // A list whose only entries are pins is refused by the preload parser (issue 11 item 3);
    // here it would import nothing, so say why instead.
    let entries = parse_preload(text).map_err(|e| match e {
        PreloadError::Format {
            line,
            column,
            message,
            ..
        } => error(line, format!("column {column}: {message}")),
        other => error(1, other.to_string()),
    })?;
    let mut out = Imported::default();
    for e in entries {
        if e.force_https {
            out.entries
                .push(entry(e.name, e.include_subdomains, MAX_AGE_CAP));
        } else {
            out.skipped_not_enforcing += 1;
        }
    }
    Ok(out)
}

/// Entries as the admin API and the store file write them; `source` is not needed.
#[derive(Deserialize)]
struct JsonEntry {
    domain: String,
    #[serde(default)]
    include_subdomains: bool,
    #[serde(default)]
    expires_at: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonFile {
    List(Vec<JsonEntry>),
    StoreFile { entries: Vec<JsonEntry> },
}

fn import_json(text: &str, now: u64) -> Result<Imported, ImportError> {
    let file: JsonFile = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.clone(), |at| message[..at].to_owned());
        error(e.line().max(1), message)
    })?;
    let entries = match file {
        JsonFile::List(entries) | JsonFile::StoreFile { entries } => entries,
    };
    let mut out = Imported::default();
    for e in entries {
        // serde keeps no positions past parsing: the line is where the name first appears.
        let line = text
            .find(&format!("\"{}\"", e.domain))
            .map_or(1, |at| text[..at].lines().count().max(1));
        let domain = domain(&e.domain, line)?;
        let max_age = match e.expires_at {
            None => MAX_AGE_CAP,
            Some(t) if t <= now => {
                out.skipped_expired += 1;
                continue;
            }
            Some(t) => t - now,
        };
        out.entries
            .push(entry(domain, e.include_subdomains, max_age));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::store::{MemoryStore, Source};

    const NOW: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    fn stored(domain: &str, sub: bool, expires_at: Option<u64>, source: Source) -> StoredEntry {
        StoredEntry {
            domain: domain.into(),
            include_subdomains: sub,
            expires_at,
            source,
        }
    }

    fn sample() -> Vec<StoredEntry> {
        vec![
            stored("a.test", true, Some(NOW + 3600), Source::Learned),
            stored("b.test", false, Some(NOW + 60), Source::Manual),
            stored("gone.test", false, Some(NOW), Source::Learned),
            stored("pre.test", true, None, Source::Preload),
        ]
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert_eq!("CURL".parse::<Format>(), Ok(Format::Curl));
        assert!("har"
            .parse::<Format>()
            .unwrap_err()
            .to_string()
            .contains("chromium-preload"));
    }

    #[test]
    fn curl_export_is_curls_cache_format() {
        let text = export(&sample(), Format::Curl, NOW);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // Leading dot for includeSubDomains, UTC expiry, "unlimited", expired left out.
        assert_eq!(
            lines,
            [
                ".a.test \"20231114 23:13:20\"",
                "b.test \"20231114 22:14:20\"",
                ".pre.test \"unlimited\"",
            ]
        );
    }

    #[test]
    fn wget_export_is_wgets_database_format() {
        let text = export(&sample(), Format::Wget, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HSTS 1.0 Known Hosts database for GNU Wget.");
        assert_eq!(
            lines[3..],
            [
                "a.test\t0\t1\t1700000000\t3600",
                "b.test\t0\t0\t1700000000\t60",
                "pre.test\t0\t1\t1700000000\t31536000",
            ]
        );
    }

    #[test]
    fn every_format_round_trips() {
        for format in Format::ALL {
            let text = export(&sample(), format, NOW);
            let got = import(&text, format, NOW).unwrap();
            let names: Vec<(&str, bool)> = got
                .entries
                .iter()
                .map(|e| (e.domain.as_str(), e.include_subdomains))
                .collect();
            assert_eq!(
                names,
                [("a.test", true), ("b.test", false), ("pre.test", true)],
                "{format}"
            );
            let ages: Vec<u64> = got.entries.iter().map(|e| e.max_age).collect();
            let expected = if format == Format::ChromiumPreload {
                [MAX_AGE_CAP; 3]
            } else {
                [3600, 60, MAX_AGE_CAP]
            };
            assert_eq!(ages, expected, "{format}");
        }
    }

    #[test]
    fn import_table() {
        #[rustfmt::skip]
        let rows: &[(Format, &str, Result<(usize, usize, usize), usize>)] = &[
            // (format, text, Ok((entries, expired, other ports)) or Err(line))
            (Format::Curl, "# c\n\n.x.test \"20991231 23:59:59\"\ny.test \"unlimited\"\n", Ok((2, 0, 0))),
            (Format::Curl, "old.test \"20200101 00:00:00\"\n", Ok((0, 1, 0))),
            (Format::Curl, "# c\nx.test 20991231\n", Err(2)),
            (Format::Curl, "x.test \"2099-12-31\"\n", Err(1)),
            (Format::Curl, "ok.test \"unlimited\"\nbad..test \"unlimited\"\n", Err(2)),
            (Format::Curl, "10.0.0.1 \"unlimited\"\n", Err(1)),
            (Format::Curl, "x.test\n", Err(1)),
            (Format::Wget, "# h\nx.test\t0\t1\t1699999000\t100000\n", Ok((1, 0, 0))),
            // Non-default ports are skipped and counted; 443 is the default spelled out.
            (Format::Wget, "x.test\t8443\t0\t1699999000\t100000\ny.test\t443\t0\t1699999000\t100000\n", Ok((1, 0, 1))),
            (Format::Wget, "x.test\t0\t0\t1600000000\t100\n", Ok((0, 1, 0))),
            (Format::Wget, "x.test\t0\t2\t1\t1\n", Err(1)),
            (Format::Wget, "# h\n# h\nx.test\t0\t0\t1\n", Err(3)),
            (Format::Wget, "x.test\tport\t0\t1\t1\n", Err(1)),
            (Format::ChromiumPreload, "{\"entries\": [{\"name\": \"x.test\", \"mode\": \"force-https\"}, {\"name\": \"p.test\", \"pins\": \"p\", \"mode\": \"none\"}]}", Ok((1, 0, 0))),
            (Format::ChromiumPreload, "{\n\"entries\": [\n{\"name\": 5}]}", Err(3)),
            (Format::Json, "[{\"domain\": \"x.test\", \"include_subdomains\": true, \"expires_at\": 1800000000, \"source\": \"learned\"}]", Ok((1, 0, 0))),
            (Format::Json, "{\"version\": 1, \"entries\": [{\"domain\": \"x.test\", \"expires_at\": 1}]}", Ok((0, 1, 0))),
            (Format::Json, "[\n{\"domain\": \"ok.test\"},\n{\"domain\": \"bad..test\"}\n]", Err(3)),
            (Format::Json, "[\n{\"domain\": \"x.test\",\n]", Err(3)),
        ];
        for (format, text, expected) in rows {
            let got = import(text, *format, NOW)
                .map(|i| (i.entries.len(), i.skipped_expired, i.skipped_ports))
                .map_err(|e| e.line);
            assert_eq!(&got, expected, "{format}: {text:?}");
        }
        let err = import("x.test 1\n", Format::Curl, NOW).unwrap_err();
        assert!(err.to_string().starts_with("line 1: "), "{err}");
    }

    #[test]
    fn import_into_makes_manual_or_learned_entries_and_nothing_half() {
        let text = export(&sample(), Format::Curl, NOW);
        let imported = import(&text, Format::Curl, NOW).unwrap();
        let store = MemoryStore::new();
        assert_eq!(import_into(&store, &imported, false), 3);
        assert_eq!(store.lookup("x.a.test").unwrap().source, Source::Manual);
        let learned = MemoryStore::new();
        assert_eq!(import_into(&learned, &imported, true), 3);
        assert_eq!(learned.counts(), (3, 0, 0));
        // A bad line anywhere: the whole file is refused, so nothing is imported.
        let bad = format!("{text}bad..test \"unlimited\"\n");
        assert!(import(&bad, Format::Curl, NOW).is_err());
        // export_store writes what the store holds.
        let out = export_store(&store, Format::Json, crate::hsts::store::now_unix());
        let back: Vec<StoredEntry> = serde_json::from_str(&out).unwrap();
        assert_eq!(back.len(), 3);
    }
}
