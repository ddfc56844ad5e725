//! The traffic log as HAR 1.2, which browser dev tools and HAR readers open.

use super::{parse_log, ReportError};
use crate::traffic::{Action, TrafficRecord};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::Path;
use time::OffsetDateTime;

/// is written as empty; the findings, the action and the client go into `_`-prefixed custom
/// fields, which the spec reserves for that.
pub fn write_har(log_text: &str, out: &Path) -> Result<usize, ReportError> {
    let parsed = parse_log(log_text)?;
    let entries: Vec<Value> = parsed.records.iter().map(har_entry).collect();
    let count = entries.len();
    let har = json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "strictproxy", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries,
        }
    });
    let write_err = |source| ReportError::WriteHar {
        path: out.to_owned(),
        source,
    };
    let file = std::fs::File::create(out).map_err(write_err)?;
    let mut writer = io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut writer, &har).map_err(|e| write_err(e.into()))?;
    writer.write_all(b"\n").map_err(write_err)?;
    writer.flush().map_err(write_err)?;
    Ok(count)
}

fn har_entry(rec: &TrafficRecord) -> Value {
    let url = har_url(rec);
    let query: Vec<Value> = url::Url::parse(&url)
        .map(|u| {
            u.query_pairs()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect()
        })
        .unwrap_or_default();
    let response_headers: Vec<Value> = rec
        .sts
        .iter()
        .map(|v| json!({ "name": "Strict-Transport-Security", "value": v }))
        .collect();
    let (status_text, redirect_url) = match rec.action {
        // What the proxy itself sends, as Chromium does (see hsts::upgrade).
        Action::HstsInternalRedirect => ("Internal Redirect".to_owned(), https_of(&url)),
        _ => (
            http::StatusCode::from_u16(rec.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned(),
            String::new(),
        ),
    };
    let mut entry = json!({
        "startedDateTime": har_ts(rec.ts),
        "time": rec.duration_ms,
        "request": {
            "method": rec.method,
            "url": url,
            "httpVersion": "",
            "headers": [],
            "queryString": query,
            "cookies": [],
            "headersSize": -1,
            "bodySize": rec.request_bytes,
        },
        "response": {
            "status": rec.status,
            "statusText": status_text,
            "httpVersion": "",
            "headers": response_headers,
            "cookies": [],
            "content": { "size": rec.response_bytes, "mimeType": "" },
            "redirectURL": redirect_url,
            "headersSize": -1,
            "bodySize": rec.response_bytes,
        },
        "cache": {},
        // Only the total is measured: it is all "wait" (send + wait + receive = time).
        "timings": { "send": 0, "wait": rec.duration_ms, "receive": 0 },
        "_action": rec.action,
        "_client": rec.client,
        "_findings": rec.findings,
    });
    if let (Some(from), Some(obj)) = (rec.rewritten_from, entry.as_object_mut()) {
        obj.insert("_rewrittenFrom".to_owned(), json!(from));
    }
    entry
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
