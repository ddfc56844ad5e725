//! The traffic log as HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>), which
//! browser dev tools and HAR readers open.
//!
//! Everything the log knows goes where HAR puts it: the HTTP version, both header lists (newer
//! logs), the query string, `redirectURL` from `Location`, `serverIPAddress`, the sizes and the
//! time. strictproxy's own data (action, findings, rewritten status) goes under `_strictproxy`,
//! a custom field as the spec allows (names starting with `_`). Credential headers are
//! redacted unless the caller asks otherwise; a value the log already redacted stays redacted.

use super::log::{response_header, write_private};
use super::{parse_log, ReportError};
use crate::traffic::{Action, TrafficRecord, CREDENTIAL_FIELDS, REDACTED};
use serde_json::{json, Value};
use std::path::Path;
use time::OffsetDateTime;

/// Writes the log as HAR 1.2 to `out` with credentials redacted, and returns the number of
/// entries.
pub fn write_har(log_text: &str, out: &Path) -> Result<usize, ReportError> {
    write_har_with(log_text, out, true)
}

/// Writes the log as HAR 1.2 to `out` (mode 0600: it holds URLs and headers), redacting
/// credential headers when `redact` is set, and returns the number of entries.
pub fn write_har_with(log_text: &str, out: &Path, redact: bool) -> Result<usize, ReportError> {
    let parsed = parse_log(log_text)?;
    let har = har_log(&parsed.records, redact);
    let count = parsed.records.len();
    let write_err = |source| ReportError::WriteHar {
        path: out.to_owned(),
        source,
    };
    let mut text = serde_json::to_string_pretty(&har).map_err(|e| write_err(e.into()))?;
    text.push('\n');
    write_private(out, text.as_bytes()).map_err(write_err)?;
    Ok(count)
}

/// The HAR document for parsed log lines.
pub fn har_log(records: &[TrafficRecord], redact: bool) -> Value {
    let entries: Vec<Value> = records.iter().map(|l| har_entry(l, redact)).collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "strictproxy", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries,
        }
    })
}

fn har_entry(rec: &TrafficRecord, redact: bool) -> Value {
    let url = har_url(rec);
    let query: Vec<Value> = url::Url::parse(&url)
        .map(|u| {
            u.query_pairs()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect()
        })
        .unwrap_or_default();
    let request_headers = headers(&rec.request_headers.pairs(), redact);
    let mut response_headers = headers(&rec.response_headers.pairs(), redact);
    // An older log has no headers but may have the STS field: show that one.
    if rec.response_headers.is_empty() {
        if let Some(v) = &rec.sts {
            response_headers.push(json!({ "name": "Strict-Transport-Security", "value": v }));
        }
    }
    let location = response_header(rec, "location").unwrap_or_default();
    let (status_text, redirect_url) = match rec.action {
        // What the proxy itself sends, as Chromium does (see hsts::upgrade).
        Action::HstsInternalRedirect => ("Internal Redirect".to_owned(), https_of(&url)),
        _ => (
            http::StatusCode::from_u16(rec.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned(),
            location.into_owned(),
        ),
    };
    let mime_type = response_header(rec, "content-type").unwrap_or_default();
    let http_version = rec.http_version.as_deref().unwrap_or("");
    let mut entry = json!({
        "startedDateTime": har_ts(rec.ts),
        "time": rec.duration_ms,
        "request": {
            "method": rec.method,
            "url": url,
            "httpVersion": http_version,
            "headers": request_headers,
            "queryString": query,
            "cookies": request_cookies(&rec.request_headers.pairs(), redact),
            "headersSize": -1,
            "bodySize": rec.request_bytes,
        },
        "response": {
            "status": rec.status,
            "statusText": status_text,
            "httpVersion": http_version,
            "headers": response_headers,
            "cookies": response_cookies(&rec.response_headers.pairs(), redact),
            "content": { "size": rec.response_bytes, "mimeType": mime_type },
            "redirectURL": redirect_url,
            "headersSize": -1,
            "bodySize": rec.response_bytes,
        },
        "cache": {},
        // Only the total is measured: it is all "wait" (send + wait + receive = time).
        "timings": { "send": 0, "wait": rec.duration_ms, "receive": 0 },
        "_strictproxy": {
            "id": rec.id,
            "client": rec.client,
            "action": rec.action,
            "findings": rec.findings,
            "rewritten_from": rec.rewritten_from,
        },
        // The flat fields of earlier versions, kept for the readers that use them.
        "_action": rec.action,
        "_client": rec.client,
        "_findings": rec.findings,
    });
    if let Some(obj) = entry.as_object_mut() {
        if let Some(from) = rec.rewritten_from {
            obj.insert("_rewrittenFrom".to_owned(), json!(from));
        }
        // Optional in the spec, but readers such as haralyzer expect it; Chromium's DevTools
        // writes "" when no server was reached (here: the proxy's own answers, older logs).
        obj.insert(
            "serverIPAddress".to_owned(),
            json!(rec.server_ip.as_deref().unwrap_or("")),
        );
    }
    entry
}

fn is_credential(name: &str) -> bool {
    // The traffic log's own list (Chrome DevTools' "sanitized HAR" masks the same four).
    CREDENTIAL_FIELDS
        .iter()
        .any(|c| c.as_str().eq_ignore_ascii_case(name))
}

/// A header value as the HAR shows it.
fn shown<'a>(name: &str, value: &'a str, redact: bool) -> &'a str {
    if redact && is_credential(name) {
        REDACTED
    } else {
        value
    }
}

fn headers(pairs: &[(String, String)], redact: bool) -> Vec<Value> {
    pairs
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": shown(name, value, redact) }))
        .collect()
}

/// `Cookie: a=1; b=2` as HAR cookies (RFC 6265 §4.2). Redacted (or already redacted in the
/// log), the names are not known either: no cookies are listed.
fn request_cookies(pairs: &[(String, String)], redact: bool) -> Vec<Value> {
    if redact {
        return Vec::new();
    }
    pairs
        .iter()
        .filter(|(n, v)| n.eq_ignore_ascii_case("cookie") && v != REDACTED)
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// Each `Set-Cookie` as a HAR cookie: its name and value (RFC 6265 §4.1), attributes left out.
fn response_cookies(pairs: &[(String, String)], redact: bool) -> Vec<Value> {
    if redact {
        return Vec::new();
    }
    pairs
        .iter()
        .filter(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v != REDACTED)
        .filter_map(|(_, v)| v.split(';').next()?.trim().split_once('='))
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// HAR wants absolute URLs; a CONNECT's authority-form target is shown as the https origin it
/// almost always carries.
fn har_url(rec: &TrafficRecord) -> String {
    if !rec.url.contains("://") && rec.method.eq_ignore_ascii_case("CONNECT") {
        format!("https://{}/", rec.url)
    } else {
        rec.url.clone()
    }
}

/// The https URL an internal redirect pointed to: the proxy's own mapping (RFC 6797 §8.3).
fn https_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| crate::hsts::upgrade::upgrade_url(&u))
        .map(String::from)
        .unwrap_or_default()
}

fn har_ts(ts: OffsetDateTime) -> String {
    // The same text as the log's `ts`: HAR asks for ISO 8601.
    crate::traffic::format_ts(ts).unwrap_or_else(|_| super::text::show_ts(ts))
}
