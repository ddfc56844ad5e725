//! `report --junit OUT.xml`: the findings as a JUnit XML report, in the Ant/Jenkins format that
//! Jenkins, GitLab and GitHub test reporters display.
//!
//! One testsuite per finding kind (every kind, so that a clean run shows eight green suites),
//! one testcase per host of the log and kind, and in it one `<failure>` per finding with the
//! exchange's method and URL and the sentence that says what to fix. With `--fail-on`, the
//! findings of kinds it does not name are reported as `<skipped>` (listed, but not red), so that
//! the JUnit report and the exit status tell the same story.

use super::gate::Gate;
use super::log::write_private;
use super::{Occurrence, Report, ReportError};
use crate::finding::FindingKind;
use std::fmt::Write as _;
use std::path::Path;

/// The JUnit XML text for a report; `gate` is the `--fail-on` outcome, if any.
pub fn junit_xml(report: &Report, gate: Option<&Gate>) -> String {
    let mut hosts: Vec<&str> = report.hosts.iter().map(String::as_str).collect();
    if hosts.is_empty() {
        // A testsuite with no testcase shows as "no tests" rather than green.
        hosts.push("(no exchanges)");
    }
    let mut suites = String::new();
    let (mut all_tests, mut all_failures, mut all_skipped) = (0, 0, 0);
    for kind in FindingKind::ALL {
        let gated = gate.is_none_or(|g| g.gates(kind));
        let by_host = report.occurrences.get(&kind);
        let (mut failures, mut skipped) = (0, 0);
        let mut cases = String::new();
        for host in &hosts {
            let found: &[Occurrence] = by_host
                .and_then(|h| h.get(*host))
                .map_or(&[], Vec::as_slice);
            let _ = write!(
                cases,
                "    <testcase classname=\"strictproxy.{kind}\" name=\"{}\" time=\"0\"",
                escape(host)
            );
            if found.is_empty() {
                cases.push_str("/>\n");
                continue;
            }
            cases.push_str(">\n");
            if gated {
                failures += 1;
                for o in found {
                    let _ = writeln!(
                        cases,
                        "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                        escape(&format!("{} {}", o.method, o.url)),
                        escape(&format!(
                            "{} {} at {}\n{}",
                            o.method,
                            o.url,
                            crate::traffic::format_ts(o.ts).unwrap_or_default(),
                            o.detail
                        ))
                    );
                }
            } else {
                skipped += 1;
                let _ = writeln!(
                    cases,
                    "      <skipped message=\"{}\"/>",
                    escape(&format!(
                        "{} {kind} finding{} (not in --fail-on)",
                        found.len(),
                        if found.len() == 1 { "" } else { "s" }
                    ))
                );
                let lines: Vec<String> = found
                    .iter()
                    .map(|o| format!("{} {}: {}", o.method, o.url, o.detail))
                    .collect();
                let _ = writeln!(
                    cases,
                    "      <system-out>{}</system-out>",
                    escape(&lines.join("\n"))
                );
            }
            cases.push_str("    </testcase>\n");
        }
        let tests = hosts.len();
        let _ = write!(
            suites,
            "  <testsuite name=\"strictproxy.{kind}\" tests=\"{tests}\" failures=\"{failures}\" \
             errors=\"0\" skipped=\"{skipped}\" time=\"0\">\n{cases}  </testsuite>\n"
        );
        all_tests += tests;
        all_failures += failures;
        all_skipped += skipped;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"strictproxy\" \
         tests=\"{all_tests}\" failures=\"{all_failures}\" errors=\"0\" skipped=\"{all_skipped}\" \
         time=\"0\">\n{suites}</testsuites>\n"
    )
}

/// Writes [`junit_xml`] to `path`, mode 0600 (it quotes URLs).
pub fn write_junit(report: &Report, gate: Option<&Gate>, path: &Path) -> Result<(), ReportError> {
    write_private(path, junit_xml(report, gate).as_bytes()).map_err(|source| {
        ReportError::WriteJunit {
            path: path.to_owned(),
            source,
        }
    })
}

/// Escapes text for XML 1.0 content and attribute values. Characters XML 1.0 cannot carry at
/// all (C0 controls but tab, newline and carriage return; U+FFFE, U+FFFF) become U+FFFD, since
/// a Location or a URL from the wire may hold anything.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept as character references: a raw newline in an attribute reads as a space.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        #[rustfmt::skip]
        let rows = [
            ("plain", "plain"),
            // XML 1.0 §2.4: & and < always, > for "]]>", quotes for attributes.
            ("a&b<c>d\"e'f", "a&amp;b&lt;c&gt;d&quot;e&apos;f"),
            ("]]>", "]]&gt;"),
            // Line breaks kept as references (attribute-value normalization, §3.3.3).
            ("a\nb\r\tc", "a&#10;b&#13;&#9;c"),
            // §2.2: C0 controls other than tab/LF/CR are not XML characters at all.
            ("a\u{0}b\u{1b}c\u{FFFF}", "a\u{FFFD}b\u{FFFD}c\u{FFFD}"),
            ("café → ok", "café → ok"),
        ];
        for (input, expected) in rows {
            assert_eq!(escape(input), expected, "{input:?}");
        }
    }
}
