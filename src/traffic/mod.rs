//! The JSON-lines traffic log (`--traffic-log FILE`): one JSON object a line for every exchange
//! — plain, intercepted, tunnelled, or answered by the proxy itself — with its findings.
//!
//! This file holds the record (its fields are the contract of design.md) and the header
//! redaction; [`writer`] holds the background writer that puts records in the file.

use crate::finding::Finding;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use time::OffsetDateTime;

mod headers;
mod writer;
pub use headers::HeaderList;
pub use writer::{TrafficLog, DEFAULT_MAX_QUEUED};

/// Errors of the traffic log. Only opening it can fail visibly; everything after that is
/// reported through `tracing` by the writer and never reaches a request.
#[derive(Debug, Error)]
pub enum TrafficError {
    /// The file could not be opened for appending (missing directory, permissions): a
    /// configuration problem of the proxy's operator.
    #[error("cannot open the traffic log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// [`TrafficLog::open`] was called outside a tokio runtime (a bug in the caller).
    #[error("the traffic log writer needs a tokio runtime: {0}")]
    NoRuntime(#[from] tokio::runtime::TryCurrentError),
}

/// What the proxy did with an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Relayed to the upstream and back (plain or intercepted).
    Forwarded,
    /// Answered by the proxy with a `307 Internal Redirect` to https (RFC 6797 §8.3, as Chromium).
    HstsInternalRedirect,
    /// A CONNECT relayed blindly (passthrough): only the bytes are known.
    Tunnel,
    /// Failed: the proxy answered with an error of its own (400, 502, 504, …).
    Error,
    /// A page the proxy served itself (the CA download page, the admin API).
    Local,
    /// Forwarded in clear to a host the operator exempted from HSTS (`--hsts-exempt`).
    HstsExempt,
}

impl Action {
    /// Every action, in declaration order (for reports).
    pub const ALL: [Action; 6] = [
        Action::Forwarded,
        Action::HstsInternalRedirect,
        Action::Tunnel,
        Action::Error,
        Action::Local,
        Action::HstsExempt,
    ];

    /// The contract name, as written in the traffic log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Forwarded => "forwarded",
            Action::HstsInternalRedirect => "hsts_internal_redirect",
            Action::Tunnel => "tunnel",
            Action::Error => "error",
            Action::Local => "local",
            Action::HstsExempt => "hsts_exempt",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the traffic log. Field names and order are the contract of design.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrafficRecord {
    /// When the request arrived, written as RFC 3339 in UTC with milliseconds.
    #[serde(with = "rfc3339_millis")]
    pub ts: OffsetDateTime,
    /// The client's address, `ip:port`.
    pub client: String,
    /// The request method (`CONNECT` for a tunnel).
    pub method: String,
    /// The absolute request URL (for a tunnel, what the CONNECT named).
    pub url: String,
    /// The status sent to the client (after any rewrite); 0 when no response was sent.
    pub status: u16,
    /// From the request's arrival to the response's end, in milliseconds (3 decimals).
    #[serde(serialize_with = "millis3")]
    pub duration_ms: f64,
    /// Body bytes received from the client (for a tunnel: bytes client → upstream).
    pub request_bytes: u64,
    /// Body bytes sent to the client (for a tunnel: bytes upstream → client).
    pub response_bytes: u64,
    pub action: Action,
    /// What the proxy noticed, as `{"kind", "detail"}` objects (always present, maybe empty).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// The upstream's original status when the proxy rewrote it; omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_from: Option<u16>,
    /// The raw `Strict-Transport-Security` field of the response, when it had one; omitted
    /// otherwise. The report reads it to tell which hosts are ready for the preload list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<String>,
    /// Increasing per process, the same in the log, the console and `GET /exchanges`; 0 in
    /// logs written before it existed.
    #[serde(default)]
    pub id: u64,
    /// The client's protocol, as HAR writes it (`HTTP/1.1`, `HTTP/2`); omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    /// The upstream address actually connected to; omitted when none was (a local answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ip: Option<String>,
    /// The request's fields as the client sent them, `[name, value]` in wire order, credentials
    /// redacted (see [`header_pairs`]).
    #[serde(default)]
    pub request_headers: HeaderList,
    /// The response's fields as sent to the client, likewise.
    #[serde(default)]
    pub response_headers: HeaderList,
}

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The fields whose values are credentials: never written out unless the operator opts out
/// (config `redact_credentials = false`). HAR exporters (Chrome DevTools "sanitized HAR") mask
/// the same four.
pub static CREDENTIAL_FIELDS: [http::HeaderName; 4] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::header::SET_COOKIE,
];

/// A header map as `[name, value]` pairs in wire order (`HeaderMap` keeps insertion order per
/// name and across names as received), credential values replaced by [`REDACTED`] when
/// `redact`. Values that are not UTF-8 are kept lossily: a record is for reading.
pub fn header_pairs(headers: &http::HeaderMap, redact: bool) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = headers::shown(name, value, redact).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// The HAR spelling of an HTTP version.
pub fn version_name(version: http::Version) -> Option<&'static str> {
    match version {
        http::Version::HTTP_09 => Some("HTTP/0.9"),
        http::Version::HTTP_10 => Some("HTTP/1.0"),
        http::Version::HTTP_11 => Some("HTTP/1.1"),
        http::Version::HTTP_2 => Some("HTTP/2"),
        http::Version::HTTP_3 => Some("HTTP/3"),
        _ => None,
    }
}

impl TrafficRecord {
    /// A duration as the log writes it: milliseconds, rounded to 3 decimals (microseconds).
    pub fn duration_ms_of(d: Duration) -> f64 {
        round3(d.as_secs_f64() * 1000.0)
    }
}

fn round3(ms: f64) -> f64 {
    if ms.is_finite() && ms >= 0.0 {
        (ms * 1000.0).round() / 1000.0
    } else {
        // NaN would be written as `null` and break every reader of the line.
        0.0
    }
}

fn millis3<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(*ms))
}

/// A timestamp as the log writes it: RFC 3339, UTC, milliseconds ("2024-05-01T10:00:00.123Z").
/// Fails only for years outside 0000–9999.
pub fn format_ts(ts: OffsetDateTime) -> Result<String, time::error::Format> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    ts.to_offset(time::UtcOffset::UTC).format(&format)
}

/// `ts` as RFC 3339, UTC, millisecond precision ("2024-05-01T10:00:00.123Z"): sortable as text,
/// and what HAR's `startedDateTime` and most log tools expect.
mod rfc3339_millis {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(ts: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(*ts).map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::FindingKind;
    use std::collections::HashSet;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;
    use time::macros::datetime;

    fn rec(url: &str) -> TrafficRecord {
        TrafficRecord {
            ts: OffsetDateTime::now_utc(),
            client: "127.0.0.1:50000".into(),
            method: "GET".into(),
            url: url.into(),
            status: 200,
            duration_ms: 1.5,
            request_bytes: 0,
            response_bytes: 10,
            action: Action::Forwarded,
            findings: vec![],
            rewritten_from: None,
            sts: None,
            id: 0,
            http_version: None,
            server_ip: None,
            request_headers: HeaderList::default(),
            response_headers: HeaderList::default(),
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn line_format_matches_the_contract() {
        let mut r = rec("https://shop.test/login");
        r.ts = datetime!(2024-05-01 12:00:00.123456789 +02:00);
        r.method = "POST".into();
        r.status = 307;
        r.duration_ms = 12.345_678;
        r.request_bytes = 42;
        r.findings = vec![Finding::new(FindingKind::MethodChangeRisk, "use 303")];
        r.rewritten_from = Some(302);
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"ts":"2024-05-01T10:00:00.123Z","client":"127.0.0.1:50000","method":"POST","url":"https://shop.test/login","status":307,"duration_ms":12.346,"request_bytes":42,"response_bytes":10,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"use 303"}],"rewritten_from":302,"id":0,"request_headers":[],"response_headers":[]}"#
        );
        let back: TrafficRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.ts, datetime!(2024-05-01 10:00:00.123 UTC));
        assert_eq!(back.rewritten_from, Some(302));

        // Optional fields are omitted when absent, present when set.
        let mut plain = rec("http://a.test/");
        plain.sts = Some("max-age=60".into());
        plain.action = Action::HstsInternalRedirect;
        let v: serde_json::Value = serde_json::to_value(&plain).unwrap();
        assert!(v.get("rewritten_from").is_none());
        assert_eq!(v["sts"], "max-age=60");
        assert_eq!(v["findings"], serde_json::json!([]));
        assert_eq!(v["action"], "hsts_internal_redirect");
    }

    #[test]
    fn new_fields_are_written_and_old_lines_still_parse() {
        let mut r = rec("https://a.test/");
        r.id = 7;
        r.http_version = Some("HTTP/2".into());
        r.server_ip = Some("127.0.0.1".into());
        r.request_headers = vec![("host".into(), "a.test".into())].into();
        r.response_headers = vec![("set-cookie".into(), REDACTED.into())].into();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["http_version"], "HTTP/2");
        assert_eq!(v["server_ip"], "127.0.0.1");
        assert_eq!(
            v["request_headers"],
            serde_json::json!([["host", "a.test"]])
        );
        assert_eq!(
            v["response_headers"],
            serde_json::json!([["set-cookie", "[redacted]"]])
        );
        // A line from before these fields existed.
        let old = r#"{"ts":"2024-05-01T10:00:00.123Z","client":"127.0.0.1:1","method":"GET","url":"http://a.test/","status":200,"duration_ms":1.0,"request_bytes":0,"response_bytes":0,"action":"forwarded","findings":[]}"#;
        let back: TrafficRecord = serde_json::from_str(old).unwrap();
        assert_eq!(back.id, 0);
        assert!(back.request_headers.is_empty() && back.http_version.is_none());
    }

    #[test]
    fn header_pairs_keep_wire_order_and_redact_credentials() {
        use http::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        h.append("host", HeaderValue::from_static("a.test"));
        h.append("authorization", HeaderValue::from_static("Bearer s3cret"));
        h.append("x-one", HeaderValue::from_static("1"));
        h.append("cookie", HeaderValue::from_static("sid=abc"));
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.append(
            "proxy-authorization",
            HeaderValue::from_static("Basic eA=="),
        );
        h.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let pairs = |redact| -> Vec<(String, String)> { header_pairs(&h, redact) };
        let p = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        // One row per field: the four credential fields are masked, others kept verbatim.
        assert_eq!(
            pairs(true),
            vec![
                p("host", "a.test"),
                p("authorization", REDACTED),
                p("x-one", "1"),
                p("cookie", REDACTED),
                p("set-cookie", REDACTED),
                p("set-cookie", REDACTED),
                p("proxy-authorization", REDACTED),
                p("x-bytes", "caf\u{fffd}"),
            ]
        );
        // redact_credentials = false: the operator's explicit choice.
        assert_eq!(pairs(false)[1], p("authorization", "Bearer s3cret"));
        assert_eq!(pairs(false)[5], p("set-cookie", "b=2"));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[tokio::test]
    async fn the_file_is_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o022) };
        let log = TrafficLog::open(&path);
        unsafe { libc::umask(old) };
        let log = log.unwrap();
        log.record(rec("https://a.test/"));
        log.flush().await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn durations_are_rounded_to_microseconds() {
        assert_eq!(
            TrafficRecord::duration_ms_of(Duration::from_micros(1_234_567)),
            1234.567
        );
        assert_eq!(
            TrafficRecord::duration_ms_of(Duration::from_nanos(1_500)),
            0.002
        );
        let mut r = rec("x");
        r.duration_ms = f64::NAN;
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["duration_ms"], 0.0, "never null");
    }

    #[test]
    fn actions_use_contract_names() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_give_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.jsonl");
        let log = TrafficLog::open(&path).unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        let mut r = rec(&format!("https://t{t}.test/{i}"));
                        // Long, varied lines make a torn or interleaved write visible.
                        r.findings =
                            vec![Finding::new(FindingKind::RedirectLoop, "x".repeat(i * 7))];
                        log.record(r);
                        if i % 10 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        log.flush().await;
        let lines = lines(&path);
        assert_eq!(lines.len(), 5000);
        let urls: HashSet<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<TrafficRecord>(l).unwrap().url)
            .collect();
        assert_eq!(urls.len(), 5000, "every record is there once");
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn flush_waits_for_every_earlier_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let log = TrafficLog::open(&path).unwrap();
        log.flush().await; // nothing queued: resolves at once
        assert_eq!(lines(&path).len(), 0);
        for i in 0..1000 {
            log.record(rec(&format!("https://a.test/{i}")));
        }
        log.flush().await;
        let got = lines(&path);
        assert_eq!(got.len(), 1000);
        let last: TrafficRecord = serde_json::from_str(&got[999]).unwrap();
        assert_eq!(last.url, "https://a.test/999", "in the order given");
    }

    #[tokio::test]
    async fn lines_reach_the_file_within_a_second_without_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let log = TrafficLog::open(&path).unwrap();
        log.record(rec("https://a.test/"));
        let deadline = Instant::now() + Duration::from_secs(1);
        // Polling against the contract's deadline; the writer is expected to be far quicker.
        while lines(&path).is_empty() {
            assert!(Instant::now() < deadline, "line not in the file after 1 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn reopen_after_rename_writes_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let rotated = dir.path().join("t.jsonl.1");
        let log = TrafficLog::open(&path).unwrap();
        log.record(rec("https://a.test/before"));
        log.flush().await;
        std::fs::rename(&path, &rotated).unwrap();
        // Until the reopen, the writer still appends to the renamed file (as any logger would).
        log.record(rec("https://a.test/still-old"));
        log.reopen();
        log.record(rec("https://a.test/after"));
        log.flush().await;
        let old = lines(&rotated);
        let new = lines(&path);
        assert_eq!(old.len(), 2);
        assert!(old[1].contains("still-old"));
        assert_eq!(new.len(), 1);
        assert!(new[0].contains("/after"));
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let log = TrafficLog::open_with_queue(&path, 4).unwrap();
            // A current-thread runtime: the writer cannot run before we yield.
            for i in 0..10 {
                log.record(rec(&format!("https://a.test/{i}")));
            }
            assert_eq!(log.dropped(), 6);
            log.flush().await;
            assert_eq!(lines(&path).len(), 4);
            // Room again once the writer caught up.
            log.record(rec("https://a.test/late"));
            log.flush().await;
            assert_eq!(lines(&path).len(), 5);
        });
    }

    #[test]
    fn open_errors_are_clear() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _enter = rt.enter();
        let err = TrafficLog::open(Path::new("/nonexistent-dir/t.jsonl"))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent-dir/t.jsonl"),
            "{err}"
        );
        drop(_enter);
        let err = TrafficLog::open(Path::new("/tmp/x.jsonl")).err().unwrap();
        assert!(matches!(err, TrafficError::NoRuntime(_)));
    }

    /// Counts ERROR events, to check that a write error is reported once.
    struct CountErrors(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountErrors {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::ERROR {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn write_errors_are_reported_once_and_do_not_stop_the_log() {
        use tracing_subscriber::layer::SubscriberExt;
        let errors = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountErrors(errors.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Every write to /dev/full fails with ENOSPC.
            let log = TrafficLog::open(Path::new("/dev/full")).unwrap();
            for round in 0..3 {
                log.record(rec(&format!("https://a.test/{round}")));
                log.flush().await;
            }
            log.reopen();
            log.record(rec("https://a.test/after-reopen"));
            log.flush().await;
        });
        assert_eq!(errors.load(Ordering::SeqCst), 1);
    }
}
