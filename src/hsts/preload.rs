//! Import of Chromium's HSTS preload list (`--preload FILE`, repeatable).
//!
//! The format is Chromium's `net/http/transport_security_state_static.json`: a JSON object
//! whose `entries` array holds objects with `name`, `policy`, `mode` and
//! `include_subdomains` (plus pinning and Expect-CT fields this proxy ignores), with
//! whole-line `//` comments that plain JSON does not allow. Only `"mode": "force-https"`
//! entries mean HSTS; the rest (pins-only, Expect-CT-only) never upgrade a request. They are
//! still imported, marked `force_https: false`, because Chromium lets the most specific
//! entry decide: a pins-only entry exempts its name from a preloaded superdomain (the list's
//! own example: `chart.apis.google.com` under `apis.google.com`).
//!
//! A pins file (`transport_security_state_static_pins.json`, where Chromium now keeps the
//! `pinsets` and entries with `pins` but no `mode`) holds no HSTS at all: loaded as a preload
//! list, its entries would only exempt names. It is refused ([`PreloadError::PinsFile`]):
//! a file with `pinsets` or mode-less entries and not one force-https entry.
//!
//! Comment lines are blanked rather than removed, so a JSON error still points at the right
//! line and column of the user's file.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use std::fmt::Write as _;

use serde::Deserialize;

use super::host::{is_ip_literal, normalize_host};

/// One preload entry, with its name normalized (lowercase, A-labels, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreloadEntry {
    pub name: String,
    /// The entry also covers every subdomain (`include_subdomains`).
    pub include_subdomains: bool,
    /// `"mode": "force-https"`: the entry makes its hosts HSTS. When false the entry only
    /// exempts its hosts from a preloaded superdomain, as in Chromium.
    pub force_https: bool,
}

impl PreloadEntry {
    /// An entry that forces HTTPS, as a `"mode": "force-https"` line does.
    pub fn force_https(name: impl Into<String>, include_subdomains: bool) -> Self {
        PreloadEntry {
            name: name.into(),
            include_subdomains,
            force_https: true,
        }
    }
}

/// Why a preload list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    /// The file could not be read.
    #[error("cannot read preload list {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is Chromium's pins list, not its HSTS list: it has `pinsets` or entries
    /// without `mode`, and no force-https entry. Loading it would only exempt names.
    #[error("{}is a pins file (like Chromium's transport_security_state_static_pins.json: \
             `pinsets` and entries without `mode`), not an HSTS preload list: it has no \
             \"mode\": \"force-https\" entry, so it could only exempt hosts from HSTS; \
             pass transport_security_state_static.json instead",
            path.as_ref().map(|p| format!("preload list {} ", p.display())).unwrap_or_else(|| "the preload list ".to_owned()))]
    PinsFile { path: Option<PathBuf> },
    /// The text is not a Chromium preload list. `path` is absent for [`parse_preload`].
    #[error("{}line {line}, column {column}: {message} (expected Chromium's transport_security_state_static.json format)",
            path.as_ref().map(|p| format!("preload list {}: ", p.display())).unwrap_or_default())]
    Format {
        path: Option<PathBuf>,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow)]
    entries: Vec<RawEntry<'a>>,
    /// Only whether it is there: the mark of a pins file.
    #[serde(default)]
    pinsets: Option<serde::de::IgnoredAny>,
}

/// The fields this import reads; serde skips the others (pins, expect_ct, …).
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    include_subdomains: bool,
    #[serde(default, borrow)]
    mode: Option<Cow<'a, str>>,
}

/// Parses the text of a preload list. Entries whose name is not a valid domain name (or is
/// an IP literal) are skipped with a warning, so one bad line does not lose the list.
pub fn parse_preload(text: &str) -> Result<Vec<PreloadEntry>, PreloadError> {
    parse(text, None)
}

/// Reads and parses a preload list file; errors name the file and the line and column.
pub fn load_preload_file(path: &Path) -> Result<Vec<PreloadEntry>, PreloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| PreloadError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, Some(path))
}

fn format_error(path: Option<&Path>, e: &serde_json::Error) -> PreloadError {
    // serde_json's message ends with " at line L column C"; the error reports those itself.
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    PreloadError::Format {
        path: path.map(Path::to_owned),
        line: e.line(),
        column: e.column(),
        message,
    }
}

fn parse(text: &str, path: Option<&Path>) -> Result<Vec<PreloadEntry>, PreloadError> {
    // A UTF-8 byte order mark, as editors on Windows add, is not JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json = blank_comment_lines(text);
    let list: List<'_> = serde_json::from_str(&json).map_err(|e| format_error(path, &e))?;
    // Fail-safe (issue 11 item 3): a pins file only exempts; refuse it rather than let it
    // switch HSTS off for every name it lists.
    let pins_marks = list.pinsets.is_some() || list.entries.iter().any(|raw| raw.mode.is_none());
    let forces = list
        .entries
        .iter()
        .any(|raw| raw.mode.as_deref() == Some("force-https"));
    if pins_marks && !forces {
        return Err(PreloadError::PinsFile {
            path: path.map(Path::to_owned),
        });
    }

    let mut entries = Vec::with_capacity(list.entries.len());
    let mut skipped = 0usize;
    for raw in list.entries {
        match normalize_host(&raw.name) {
            Some(name) if !is_ip_literal(&name) => entries.push(PreloadEntry {
                name: name.into_owned(),
                include_subdomains: raw.include_subdomains,
                // Chromium's generator: force-https is the only mode that means HSTS.
                force_https: raw.mode.as_deref() == Some("force-https"),
            }),
            _ => {
                skipped += 1;
                // Name the first few; a wholly broken list should not flood the log.
                if skipped <= 5 {
                    tracing::warn!(name = %raw.name, "preload entry skipped: not a valid domain name");
                }
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, "preload list had entries with invalid names");
    }
    Ok(entries)
}

/// Blanks every line whose first non-blank characters are `//`, keeping the newline so that
/// line numbers stay right. A JSON string cannot span lines, so such a line is never inside
/// one. Borrows when there is nothing to blank.
fn blank_comment_lines(text: &str) -> Cow<'_, str> {
    let is_comment = |line: &str| line.trim_start().starts_with("//");
    if !text.lines().any(is_comment) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if is_comment(line) {
            // Keep "\r\n" or "\n" so the next line's number is unchanged.
            let ending = if line.ends_with("\r\n") {
                "\r\n"
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
    }
    Cow::Owned(out)
}

/// A synthetic list of `n` entries in the same format as Chromium's (comment lines, pinsets,
/// `policy` fields, one pins-only entry in ten), for scale tests and `benches/hsts.rs`:
/// today's real list holds about 150,000 entries. Entry `i` is `site{i}.example`, with
/// include_subdomains when `i` is even; every tenth (`i % 10 == 9`) is `pins{i}.example`.
pub fn synthetic_list(n: usize) -> String {
    let mut text = String::with_capacity(n * 100);
    text.push_str("// Synthetic HSTS preload list.\n{\n  \"pinsets\": [],\n  \"entries\": [\n");
    for i in 0..n {
        if i % 1000 == 0 {
            let _ = writeln!(text, "    // Block {}.", i / 1000);
        }
        let sep = if i + 1 == n { "" } else { "," };
        let _ = match i % 10 {
            // Some pins-only entries, which never apply.
            9 => writeln!(
                text,
                "    {{ \"name\": \"pins{i}.example\", \"include_subdomains\": true, \"pins\": \"test\" }}{sep}"
            ),
            _ => writeln!(
                text,
                "    {{ \"name\": \"site{i}.example\", \"policy\": \"bulk-1-year\", \"mode\": \"force-https\", \"include_subdomains\": {} }}{sep}",
                i % 2 == 0
            ),
        };
    }
    text.push_str("  ]\n}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, include_subdomains, force_https)
    fn names(entries: &[PreloadEntry]) -> Vec<(&str, bool, bool)> {
        entries
            .iter()
            .map(|e| (e.name.as_str(), e.include_subdomains, e.force_https))
            .collect()
    }

    #[test]
    fn parses_the_chromium_format_with_comments() {
        let text = r#"// Copyright (c) 2012 The Chromium Authors.
// "entries" is a list of objects.
{
  "pinsets": [
    { "name": "test", "static_spki_hashes": [ "TestSPKI" ] }
  ],

  "entries": [
    // Pins-only: never upgrades (Chromium's generator needs mode force-https for HSTS).
    { "name": "pinningtest.appspot.com", "include_subdomains": true, "pins": "test" },
    { "name": "preloaded-expect-ct.badssl.com", "expect_ct": true },
      // An indented comment.
    { "name": "google", "include_subdomains": true, "mode": "force-https", "pins": "google" },
    { "name": "gmail.com", "mode": "force-https", "pins": "google" },
    {
      "name": "0xAA55.me",
      "policy": "bulk-18-weeks",
      "mode": "force-https",
      "include_subdomains": true
    },
    { "name": "bücher.example", "policy": "custom", "mode": "force-https" },
    { "name": "url//in.name.example", "mode": "force-https" },
    { "name": "10.0.0.1", "mode": "force-https" },
    { "name": "other-mode.example", "mode": "something-else" }
  ],
  "domain_ids": [ "NOT_PINNED" ]
}
"#;
        let entries = parse_preload(text).unwrap();
        assert_eq!(
            names(&entries),
            [
                // Pins-only and Expect-CT-only entries do not force HTTPS.
                ("pinningtest.appspot.com", true, false),
                ("preloaded-expect-ct.badssl.com", false, false),
                ("google", true, true),
                ("gmail.com", false, true),
                // Upper case normalized; policy is accepted and ignored.
                ("0xaa55.me", true, true),
                ("xn--bcher-kva.example", false, true),
                // Invalid names and IP literals are skipped; other modes do not force.
                ("other-mode.example", false, false),
            ]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        // Line numbers survive comment blanking.
        let text = "// c1\n// c2\n{\n  \"entries\": [\n    { \"name\": 5 }\n  ]\n}\n";
        let err = parse_preload(text).unwrap_err();
        match &err {
            PreloadError::Format { line, path, .. } => {
                assert_eq!(*line, 5);
                assert!(path.is_none());
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(text.starts_with("line 5, column "), "{text}");
        assert!(!text.contains(" at line "), "position said once: {text}");
        // Not an object with entries.
        assert!(matches!(
            parse_preload("[]"),
            Err(PreloadError::Format { .. })
        ));
        assert!(matches!(
            parse_preload("{\"pinsets\": []}"),
            Err(PreloadError::Format { .. })
        ));
        // A trailing-comment style the real list never uses is not accepted either.
        assert!(parse_preload("{\"entries\": []} // trailing").is_err());
        // CRLF files and a byte order mark are fine.
        let crlf = "\u{feff}// c\r\n{\"entries\": [\r\n// c\r\n{\"name\": \"a.test\", \"mode\": \"force-https\"}]}\r\n";
        assert_eq!(
            names(&parse_preload(crlf).unwrap()),
            [("a.test", false, true)]
        );
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = load_preload_file(&missing).unwrap_err();
        assert!(matches!(err, PreloadError::Io { .. }));
        assert!(err.to_string().contains("missing.json"), "{err}");

        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            "// header\n{\n  \"entries\": [ { \"name\": \"a\", } ]\n}\n",
        )
        .unwrap();
        let err = load_preload_file(&bad).unwrap_err().to_string();
        assert!(err.starts_with("preload list "), "{err}");
        assert!(err.contains("bad.json: line 3, column"), "{err}");
        assert!(!err.contains(" at line "), "position said once: {err}");
    }
}
