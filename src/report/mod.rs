//! `strictproxy report FILE`: what a QA run's traffic log says, in one page, and the CI gate.
//!
//! [`summarize`] reads the JSON-lines log (see [`crate::traffic`]) and counts the exchanges by
//! action and status, groups every finding by kind and host, and lists the hosts that sent
//! `Strict-Transport-Security` with their preload-eligibility verdict ([`preload`]). The
//! summary prints as text, JSON or markdown ([`text`]); [`gate`] turns `--fail-on` into an exit
//! status, [`junit`] writes the findings as a JUnit XML report for CI test reporters, and
//! [`write_har`] the exchanges as HAR 1.2 for the tools QA teams already use. [`run`] is the
//! whole subcommand.
//!
//! A log may be cut mid-line (a crash, a full disk, a rotation): unparsable lines are skipped and
//! counted, naming the first, so that one bad line never hides a whole run.

mod cli;
pub mod gate;
mod har;
pub mod junit;
mod log;
pub mod preload;
pub mod text;

pub use cli::{run, ReportArgs};
pub use har::{write_har, write_har_with};
pub use log::response_header;
pub use preload::{
    preload_eligibility, preload_verdict, Observed, PreloadVerdict, PRELOAD_MIN_MAX_AGE,
};

use crate::finding::{Finding, FindingKind};
use crate::traffic::Action;
use log::parse_log;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use thiserror::Error;
use time::OffsetDateTime;

/// Errors of the report. Bad lines are not errors (they are skipped and counted); a log in which
/// no line parses is, since it is most likely not a traffic log at all.
#[derive(Debug, Error)]
pub enum ReportError {
    /// None of the log's non-empty lines is a traffic record.
    #[error(
        "not a traffic log: none of its {lines} non-empty lines is a traffic record \
         (line {first_line}: {error})"
    )]
    NoRecords {
        lines: usize,
        first_line: usize,
        error: String,
    },
    /// The traffic log could not be read.
    #[error("cannot read traffic log {}: {source}", path.display())]
    ReadLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The HAR file could not be written.
    #[error("cannot write the HAR file {}: {source}", path.display())]
    WriteHar {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The JUnit file could not be written.
    #[error("cannot write the JUnit file {}: {source}", path.display())]
    WriteJunit {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The summary could not be printed.
    #[error("cannot print the report: {0}")]
    Print(#[source] io::Error),
    /// `--fail-on` named no known finding kind.
    #[error(
        "unknown finding kind {0:?} in --fail-on: expected \"all\" or a comma-separated list of \
         {kinds}",
        kinds = kinds_list()
    )]
    UnknownKind(String),
    /// `--format` named no known format.
    #[error("unknown report format {0:?}: expected \"text\", \"json\" or \"markdown\"")]
    UnknownFormat(String),
}

impl ReportError {
    /// A mistake on the command line (exit status 2, as for any usage error), not a failed run.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ReportError::UnknownKind(_) | ReportError::UnknownFormat(_)
        )
    }
}

fn kinds_list() -> String {
    FindingKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first line that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number in the log.
    pub line: usize,
    pub error: String,
}

/// A host that sent `Strict-Transport-Security`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsHost {
    /// The last field received over https (or over http, if it never came over https).
    pub value: String,
    /// How many different values the host sent over https during the run.
    pub distinct_values: usize,
    /// Responses with STS over plain HTTP (ignored by browsers).
    pub over_http: usize,
    pub verdict: PreloadVerdict,
}

/// The findings of one kind for one host: each distinct sentence with how often it came.
pub type HostFindings = BTreeMap<String, usize>;

/// One finding where it happened: the exchange's method and URL, for the JUnit report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub ts: OffsetDateTime,
    pub method: String,
    pub url: String,
    /// The sentence that says what to fix.
    pub detail: String,
}

/// The summary of a traffic log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Records read.
    pub records: usize,
    /// Lines that did not parse, and the first of them.
    pub skipped: usize,
    pub first_skipped: Option<SkippedLine>,
    /// The earliest and the latest `ts`.
    pub first_ts: Option<OffsetDateTime>,
    pub last_ts: Option<OffsetDateTime>,
    pub by_action: BTreeMap<Action, usize>,
    pub by_status: BTreeMap<u16, usize>,
    /// Status rewrites, `(from, to)` → count.
    pub rewritten: BTreeMap<(u16, u16), usize>,
    /// Every finding, by kind, then by host of the request.
    pub findings: BTreeMap<FindingKind, BTreeMap<String, HostFindings>>,
    /// Every finding, by kind, then by host, one entry per finding in log order.
    pub occurrences: BTreeMap<FindingKind, BTreeMap<String, Vec<Occurrence>>>,
    /// Every host the log names.
    pub hosts: BTreeSet<String>,
    /// The hosts that sent `Strict-Transport-Security`.
    pub sts_hosts: BTreeMap<String, StsHost>,
}

impl Report {
    /// The number of findings of one kind.
    pub fn finding_count(&self, kind: FindingKind) -> usize {
        self.findings
            .get(&kind)
            .map_or(0, |hosts| hosts.values().flat_map(|d| d.values()).sum())
    }
}

/// Reads a traffic log and summarizes it.
pub fn summarize(log_text: &str) -> Result<Report, ReportError> {
    let parsed = parse_log(log_text)?;
    let mut report = Report {
        records: parsed.records.len(),
        skipped: parsed.skipped,
        first_skipped: parsed.first_skipped,
        ..Report::default()
    };
    let mut sts: BTreeMap<String, StsSeen> = BTreeMap::new();
    for rec in &parsed.records {
        report.first_ts = Some(report.first_ts.map_or(rec.ts, |t| t.min(rec.ts)));
        report.last_ts = Some(report.last_ts.map_or(rec.ts, |t| t.max(rec.ts)));
        *report.by_action.entry(rec.action).or_default() += 1;
        *report.by_status.entry(rec.status).or_default() += 1;
        if let Some(from) = rec.rewritten_from {
            *report.rewritten.entry((from, rec.status)).or_default() += 1;
        }
        let host = host_of(&rec.url);
        report.hosts.insert(host.clone());
        for Finding { kind, detail } in &rec.findings {
            *report
                .findings
                .entry(*kind)
                .or_default()
                .entry(host.clone())
                .or_default()
                .entry(detail.clone())
                .or_default() += 1;
            report
                .occurrences
                .entry(*kind)
                .or_default()
                .entry(host.clone())
                .or_default()
                .push(Occurrence {
                    ts: rec.ts,
                    method: rec.method.clone(),
                    url: rec.url.clone(),
                    detail: detail.clone(),
                });
        }
        if let Some(value) = &rec.sts {
            let seen = sts.entry(host).or_default();
            if is_secure_url(&rec.url) {
                if !seen.secure_values.iter().any(|v| v == value) {
                    seen.secure_values.push(value.clone());
                }
                seen.last_secure = Some(value.clone());
            } else {
                seen.over_http += 1;
                seen.last_plain = Some(value.clone());
            }
        }
    }
    report.sts_hosts = sts
        .into_iter()
        .filter_map(|(host, seen)| {
            let observed = Observed::from_log(&host, &parsed.records);
            seen.into_host(&host, &observed).map(|h| (host, h))
        })
        .collect();
    Ok(report)
}

#[derive(Default)]
struct StsSeen {
    secure_values: Vec<String>,
    last_secure: Option<String>,
    last_plain: Option<String>,
    over_http: usize,
}

impl StsSeen {
    fn into_host(self, host: &str, observed: &Observed) -> Option<StsHost> {
        let (value, verdict) = match (self.last_secure, self.last_plain) {
            (Some(value), _) => {
                let verdict = preload_eligibility(host, &value, observed);
                (value, verdict)
            }
            (None, Some(value)) => (value, PreloadVerdict::OverHttpOnly),
            (None, None) => return None,
        };
        Some(StsHost {
            value,
            distinct_values: self.secure_values.len(),
            over_http: self.over_http,
            verdict,
        })
    }
}

/// The host a record is about: the request URL's host, or, for a CONNECT's authority-form
/// (RFC 9112 §3.2.3), the host before the port.
fn host_of(url: &str) -> String {
    let parsed = if url.contains("://") {
        url::Url::parse(url)
    } else {
        url::Url::parse(&format!("https://{url}"))
    };
    parsed
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "(no host)".to_owned())
}

/// Whether a record's STS field came over a secure transport: only then do browsers heed it
/// (RFC 6797 §8.1). Tunnels never carry one (the proxy cannot see inside them).
fn is_secure_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("wss://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::Path;

    /// A small QA run: every action, a rewrite, findings on two hosts, four STS senders, a line
    /// cut by a crash and a blank line.
    const LOG: &str = r#"{"ts":"2024-05-01T10:00:00.000Z","client":"127.0.0.1:5001","method":"GET","url":"https://shop.test/","status":200,"duration_ms":12.5,"request_bytes":0,"response_bytes":5120,"action":"forwarded","findings":[],"sts":"max-age=31536000; includeSubDomains; preload"}
{"ts":"2024-05-01T10:00:01.000Z","client":"127.0.0.1:5001","method":"POST","url":"https://shop.test/login?next=%2Fcart&x=1","status":307,"duration_ms":30.25,"request_bytes":64,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"POST https://shop.test/login answered 302 → use 303"}],"rewritten_from":302}
{"ts":"2024-05-01T10:00:02.000Z","client":"127.0.0.1:5001","method":"POST","url":"https://shop.test/login","status":307,"duration_ms":28,"request_bytes":64,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"POST https://shop.test/login answered 302 → use 303"}],"rewritten_from":302}
{"ts":"2024-05-01T10:00:03.000Z","client":"127.0.0.1:5002","method":"GET","url":"http://news.test/","status":307,"duration_ms":0.1,"request_bytes":0,"response_bytes":0,"action":"hsts_internal_redirect","findings":[]}
{"ts":"2024-05-01T10:00:04.000Z","client":"127.0.0.1:5002","method":"GET","url":"https://news.test/","status":302,"duration_ms":5,"request_bytes":0,"response_bytes":0,"action":"forwarded","findings":[{"kind":"https_downgrade","detail":"GET https://news.test/ answered 302 with Location http://cdn.test/"}],"sts":"max-age=86400"}

{"ts":"2024-05-01T10:00:05.000Z","client":"127.0.0.1:5003","method":"CONNECT","url":"bank.test:443","status":200,"duration_ms":900,"request_bytes":800,"response_bytes":9000,"action":"tunnel","findings":[]}
{"ts":"2024-05-01T10:00:06.000Z","client":"127.0.0.1:5003","method":"GET","url":"http://plain.test/","status":200,"duration_ms":3,"request_bytes":0,"response_bytes":10,"action":"forwarded","findings":[{"kind":"sts_over_http","detail":"ignored"}],"sts":"max-age=31536000"}
{"ts":"2024-05-01T10:00:07.000Z","client":"127.0.0.1:5003","method":"GET","url":"https://bad.test/","status":502,"duration_ms":40,"request_bytes":0,"response_bytes":0,"action":"error","findings":[]}
{"ts":"2024-05-01T10:00:08.000Z","client":"127.0.0.1:5003","method":"GET","url":"https://odd.test/","status":200,"duration_ms":2,"request_bytes":0,"response_bytes":1,"action":"forwarded","findings":[],"sts":"includeSubDomains"}
{"ts":"2024-05-01T10:00:09.000Z","client":"127.0.0.1:5003","method":"GET","url":"http://127.0.0.1:8080/ca.pem","status":200,"duration_ms":1,"request_bytes":0,"response_bytes":1200,"action":"local","findings":[]}
{"ts":"2024-05-01T10:00:10.000Z","client":"127.0.0.1:5003","method":"GE
"#;

    #[test]
    fn counts_and_grouping() {
        let r = summarize(LOG).unwrap();
        assert_eq!(r.records, 10);
        assert_eq!(r.skipped, 1);
        assert_eq!(r.first_skipped.as_ref().map(|s| s.line), Some(12));
        assert_eq!(
            r.first_ts,
            Some(time::macros::datetime!(2024-05-01 10:00:00 UTC))
        );
        assert_eq!(
            r.last_ts,
            Some(time::macros::datetime!(2024-05-01 10:00:09 UTC))
        );

        let actions: Vec<(Action, usize)> = r.by_action.iter().map(|(a, n)| (*a, *n)).collect();
        assert_eq!(
            actions,
            [
                (Action::Forwarded, 6),
                (Action::HstsInternalRedirect, 1),
                (Action::Tunnel, 1),
                (Action::Error, 1),
                (Action::Local, 1),
            ]
        );
        let statuses: Vec<(u16, usize)> = r.by_status.iter().map(|(s, n)| (*s, *n)).collect();
        assert_eq!(statuses, [(200, 5), (302, 1), (307, 3), (502, 1)]);
        assert_eq!(r.rewritten.get(&(302, 307)), Some(&2));

        // Grouped by kind, then host; identical sentences counted, not repeated.
        let mcr = &r.findings[&FindingKind::MethodChangeRisk];
        assert_eq!(mcr.len(), 1);
        assert_eq!(mcr["shop.test"].values().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(r.finding_count(FindingKind::MethodChangeRisk), 2);
        assert!(r.findings[&FindingKind::HttpsDowngrade].contains_key("news.test"));
        assert!(r.findings[&FindingKind::StsOverHttp].contains_key("plain.test"));
        assert_eq!(r.finding_count(FindingKind::RedirectLoop), 0);

        // STS senders and their preload verdicts.
        let verdicts: Vec<(&str, &PreloadVerdict)> = r
            .sts_hosts
            .iter()
            .map(|(h, s)| (h.as_str(), &s.verdict))
            .collect();
        assert_eq!(verdicts.len(), 4);
        assert_eq!(verdicts[0].0, "news.test");
        assert_eq!(
            verdicts[0].1,
            &PreloadVerdict::NotReady(vec![
                "max-age 86400 < 31536000".into(),
                "no includeSubDomains".into(),
                "no preload".into()
            ])
        );
        assert!(matches!(
            verdicts[1],
            ("odd.test", PreloadVerdict::Invalid(_))
        ));
        assert_eq!(verdicts[2], ("plain.test", &PreloadVerdict::OverHttpOnly));
        assert_eq!(verdicts[3], ("shop.test", &PreloadVerdict::Ready));
    }

    #[test]
    fn preload_requirements() {
        #[rustfmt::skip]
        let rows: &[(&str, Option<&[&str]>)] = &[
            // hstspreload.org: max-age ≥ 1 year, includeSubDomains, preload.
            ("max-age=31536000; includeSubDomains; preload", Some(&[])),
            ("max-age=63072000; includeSubDomains; preload", Some(&[])), // capped at one year: still ready
            ("max-age=31535999; includeSubDomains; preload", Some(&["max-age 31535999 < 31536000"])),
            ("max-age=31536000; preload", Some(&["no includeSubDomains"])),
            ("max-age=31536000; includeSubDomains", Some(&["no preload"])),
            ("includeSubDomains; preload", None), // RFC 6797 §6.1.1: max-age is required
        ];
        for (value, missing) in rows {
            let verdict = preload_verdict(value);
            match missing {
                Some([]) => assert_eq!(verdict, PreloadVerdict::Ready, "{value}"),
                Some(m) => assert_eq!(
                    verdict,
                    PreloadVerdict::NotReady(m.iter().map(|s| s.to_string()).collect()),
                    "{value}"
                ),
                None => assert!(matches!(verdict, PreloadVerdict::Invalid(_)), "{value}"),
            }
        }
    }

    #[test]
    fn text_report_says_it_all() {
        let text = summarize(LOG).unwrap().to_string();
        for expected in [
            "Traffic report: 10 exchanges, 2024-05-01T10:00:00Z → 2024-05-01T10:00:09Z",
            "Skipped 1 unparsable line (first: line 12:",
            "  forwarded                      6",
            "  hsts_internal_redirect         1",
            "  307 Temporary Redirect         3",
            "  (2 rewritten 302 → 307 by --redirect-policy rewrite)",
            "Findings: 4",
            "  method_change_risk (2)\n    shop.test (2)\n      2× POST https://shop.test/login answered 302 → use 303",
            "Hosts that sent Strict-Transport-Security: 4",
            "  shop.test: preload-ready\n    max-age=31536000; includeSubDomains; preload",
            "  news.test: not preload-ready: max-age 86400 < 31536000, no includeSubDomains, no preload",
            "  plain.test: sent over plain HTTP only",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn empty_log_is_an_empty_report_and_garbage_is_an_error() {
        let r = summarize("").unwrap();
        assert_eq!(r.records, 0);
        assert!(r.to_string().contains("Findings: 0"));
        let err = summarize("hello\nworld\n").unwrap_err();
        assert!(
            matches!(
                err,
                ReportError::NoRecords {
                    lines: 2,
                    first_line: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn har_output_parses_and_has_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.har");
        assert_eq!(write_har(LOG, &out).unwrap(), 10);
        let har: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let log = &har["log"];
        assert_eq!(log["version"], "1.2");
        assert_eq!(log["creator"]["name"], "strictproxy");
        let entries = log["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 10);

        let login = &entries[1];
        assert_eq!(login["startedDateTime"], "2024-05-01T10:00:01.000Z");
        assert_eq!(login["time"], 30.25);
        assert_eq!(login["request"]["method"], "POST");
        assert_eq!(login["request"]["bodySize"], 64);
        assert_eq!(login["request"]["headersSize"], -1);
        assert_eq!(
            login["request"]["queryString"],
            json!([{"name": "next", "value": "/cart"}, {"name": "x", "value": "1"}])
        );
        assert_eq!(login["response"]["status"], 307);
        assert_eq!(login["response"]["statusText"], "Temporary Redirect");
        assert_eq!(login["response"]["content"]["size"], 0);
        assert_eq!(
            login["timings"],
            json!({"send": 0, "wait": 30.25, "receive": 0})
        );
        assert_eq!(login["cache"], json!({}));
        assert_eq!(login["_findings"][0]["kind"], "method_change_risk");
        assert_eq!(login["_rewrittenFrom"], 302);

        let internal = &entries[3];
        assert_eq!(internal["response"]["statusText"], "Internal Redirect");
        assert_eq!(internal["response"]["redirectURL"], "https://news.test/");
        assert_eq!(internal["_action"], "hsts_internal_redirect");
        assert_eq!(
            entries[0]["response"]["headers"],
            json!([{"name": "Strict-Transport-Security", "value": "max-age=31536000; includeSubDomains; preload"}])
        );
        assert_eq!(entries[5]["request"]["url"], "https://bank.test:443/");

        // Every entry has the fields HAR 1.2 requires.
        for e in entries {
            for key in [
                "startedDateTime",
                "time",
                "request",
                "response",
                "cache",
                "timings",
            ] {
                assert!(e.get(key).is_some(), "{key} missing");
            }
            for key in [
                "method",
                "url",
                "httpVersion",
                "headers",
                "queryString",
                "cookies",
                "headersSize",
                "bodySize",
            ] {
                assert!(e["request"].get(key).is_some(), "request.{key} missing");
            }
            for key in [
                "status",
                "statusText",
                "httpVersion",
                "headers",
                "cookies",
                "content",
                "redirectURL",
                "headersSize",
                "bodySize",
            ] {
                assert!(e["response"].get(key).is_some(), "response.{key} missing");
            }
        }
    }

    #[test]
    fn har_write_error_names_the_file() {
        let err = write_har(LOG, Path::new("/nonexistent-dir/x.har")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.har"), "{err}");
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of("https://Shop.Test:8443/x"), "shop.test");
        assert_eq!(host_of("bank.test:443"), "bank.test"); // CONNECT authority-form
        assert_eq!(host_of("http://[::1]:8080/"), "[::1]");
        assert_eq!(host_of("not a url"), "(no host)");
    }

    /// The preload verdict reads the traffic: the site's own answer to http://host/ and
    /// https://www.host/, with the headers newer logs carry (hstspreload.org's rules).
    #[test]
    fn preload_verdict_reads_the_traffic() {
        const STS: &str = "max-age=31536000; includeSubDomains; preload";
        let line = |url: &str, status: u16, action: &str, extra: &str| {
            format!(
                r#"{{"ts":"2024-05-01T10:00:00.000Z","client":"127.0.0.1:1","method":"GET","url":"{url}","status":{status},"duration_ms":1,"request_bytes":0,"response_bytes":0,"action":"{action}","findings":[]{extra}}}"#
            )
        };
        let sts = format!(r#","sts":"{STS}""#);
        let log = [
            // good.test: redirects http→https on the same host, www answers over https.
            line("https://good.test/", 200, "forwarded", &sts),
            line(
                "http://good.test/",
                301,
                "forwarded",
                r#","response_headers":[["Location","https://good.test/"]]"#,
            ),
            line("https://www.good.test/", 200, "forwarded", ""),
            // bad.test: http root goes to www first, and www over https failed.
            line("https://bad.test/", 200, "forwarded", &sts),
            line(
                "http://bad.test/",
                301,
                "forwarded",
                r#","response_headers":[["location","https://www.bad.test/"]]"#,
            ),
            line("https://www.bad.test/", 502, "error", ""),
            // old.test: an older log without headers, and the proxy's own internal redirect:
            // neither says what the site does, so neither rule is judged.
            line("https://old.test/", 200, "forwarded", &sts),
            line("http://old.test/", 301, "forwarded", ""),
            line("http://old.test/", 307, "hsts_internal_redirect", ""),
            // sub.good.test: not a registrable domain.
            line("https://sub.good.test/", 200, "forwarded", &sts),
        ]
        .join("\n");
        let r = summarize(&log).unwrap();
        let verdict = |host: &str| r.sts_hosts[host].verdict.clone();
        assert_eq!(verdict("good.test"), PreloadVerdict::Ready);
        assert_eq!(verdict("old.test"), PreloadVerdict::Ready);
        assert_eq!(
            verdict("bad.test"),
            PreloadVerdict::NotReady(vec![
                "http://bad.test/ redirected to https://www.bad.test/, not to https://bad.test/ first".into(),
                "www.bad.test did not answer over HTTPS".into(),
            ])
        );
        assert_eq!(
            verdict("sub.good.test"),
            PreloadVerdict::NotReady(vec![
                "not a registrable domain: submit good.test, which covers sub.good.test".into()
            ])
        );
    }
}
