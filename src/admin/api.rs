//! The JSON API of the admin listener: the HSTS store (query, add, delete, a paged search),
//! the exchange ring and the findings tally, metrics and the CA.

use super::{error, json_response, with_type, AdminBody, AdminContext};
use crate::hsts::exempt::Exemptions;
use crate::hsts::host::normalize_host;
use crate::hsts::interop;
use crate::hsts::store::{now_unix, HstsStore, StoredEntry};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

/// Largest PUT body accepted: an entry is a few dozen bytes.
const MAX_BODY: usize = 16 * 1024;

/// `GET /exchanges` without `limit`.
const DEFAULT_EXCHANGES: usize = 100;

/// A page of `GET /hsts?q=…` without `limit`, and the most one page may hold.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutEntry {
    #[serde(default)]
    include_subdomains: bool,
    max_age: u64,
}

/// Routes every API path (the guard already passed).
pub async fn route(ctx: &AdminContext, req: Request<Incoming>, path: &str) -> Response<AdminBody> {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("");
    match (method, path) {
        (Method::GET, "/hsts" | "/hsts/") => list_hsts(ctx, query),
        (Method::GET, "/exchanges") => {
            let limit = param(query, "limit")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(DEFAULT_EXCHANGES);
            let newest = ctx.feed.newest(limit);
            let records: Vec<&crate::traffic::TrafficRecord> =
                newest.iter().map(AsRef::as_ref).collect();
            json_response(StatusCode::OK, &records)
        }
        (Method::GET, "/findings") => json_response(StatusCode::OK, &ctx.feed.findings()),
        (Method::GET, "/metrics") => with_type(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            (ctx.metrics)(),
        ),
        (Method::GET, "/ca.pem") => download(
            with_type("application/x-pem-file", ctx.ca.pem.clone()),
            "strictproxy-ca.pem",
        ),
        (Method::GET, "/ca.crt") => download(
            with_type("application/x-x509-ca-cert", ctx.ca.der.clone()),
            "strictproxy-ca.crt",
        ),
        (Method::GET, "/ca") => json_response(
            StatusCode::OK,
            &json!({
                "sha256": fingerprint(&ctx.ca.der),
                "pem": "/ca.pem",
                "der": "/ca.crt",
                "intro": crate::install_guide::INTRO,
                "platforms": crate::install_guide::PLATFORMS,
            }),
        ),
        (method, path) if path.starts_with("/hsts/") => {
            // An internationalized name arrives percent-encoded (UTF-8) in the path.
            let raw = percent_encoding::percent_decode_str(&path["/hsts/".len()..])
                .decode_utf8_lossy()
                .into_owned();
            let Some(host) = normalize_host(&raw).map(|h| h.into_owned()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("`{raw}` is not a valid host name"),
                );
            };
            match method {
                Method::GET => json_response(StatusCode::OK, &host_status(ctx.hsts.as_ref(), &ctx.exemptions, &host)),
                Method::PUT => put_entry(ctx, &host, req).await,
                Method::DELETE => {
                    if ctx.hsts.remove(&host) {
                        json_response(StatusCode::OK, &json!({"deleted": host}))
                    } else {
                        error(
                            StatusCode::NOT_FOUND,
                            &format!("no learned or manual HSTS entry for {host}"),
                        )
                    }
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET, PUT or DELETE on /hsts/{host}",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such admin endpoint; try /, /hsts, /hsts/{host}, /exchanges, /events, /findings, /metrics, /ca.pem",
        ),
    }
}

/// `{"host", "enforced", "entry"}` for a normalized host: what `GET /hsts/{host}` and
/// `strictproxy hsts query` print. `entry` is the one that decided, maybe a superdomain's.
/// What `GET /hsts/{host}` and `strictproxy hsts query` answer: whether the proxy upgrades
/// `host`, the entry that decides it (maybe a superdomain's), and, for a host the operator
/// exempted with `--hsts-exempt`, why it is not enforced although an entry covers it.
pub fn host_status(
    store: &dyn HstsStore,
    exemptions: &Exemptions,
    host: &str,
) -> serde_json::Value {
    let entry = store.lookup(host);
    match exemptions.matches(host) {
        Some(pattern) => json!({
            "host": host,
            "enforced": false,
            "entry": entry,
            "exempt": pattern,
            "reason": format!("exempted by the operator (--hsts-exempt {pattern}): never upgraded to https"),
        }),
        None => json!({"host": host, "enforced": entry.is_some(), "entry": entry}),
    }
}

/// `GET /hsts`: the whole array as always; a page when asked for one (the console's list);
/// another file format with `format=`.
fn list_hsts(ctx: &AdminContext, query: &str) -> Response<AdminBody> {
    if let Some(format) = param(query, "format") {
        // The same files `strictproxy hsts export` writes: curl's `--hsts` cache, wget's
        // `--hsts-file`, Chromium's preload JSON.
        return match format.parse::<interop::Format>() {
            Ok(format) => with_type(
                "text/plain; charset=utf-8",
                interop::export_store(ctx.hsts.as_ref(), format, now_unix()),
            ),
            Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
        };
    }
    let entries = ctx.hsts.dynamic_entries();
    let paged = ["q", "offset", "limit"]
        .iter()
        .any(|name| param(query, name).is_some());
    if !paged {
        return json_response(StatusCode::OK, &entries);
    }
    let q = param(query, "q").unwrap_or_default();
    let offset = param(query, "offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit = param(query, "limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PAGE)
        .min(MAX_PAGE);
    let (learned, manual, preload) = ctx.hsts.counts();
    json_response(
        StatusCode::OK,
        &page(
            entries,
            &q,
            offset,
            limit,
            json!({"learned": learned, "manual": manual, "preload": preload}),
        ),
    )
}

/// Entries whose domain contains `q` (case-insensitive), `limit` of them from `offset`.
fn page(
    entries: Vec<StoredEntry>,
    q: &str,
    offset: usize,
    limit: usize,
    counts: serde_json::Value,
) -> serde_json::Value {
    let q = q.trim().to_ascii_lowercase();
    let matched: Vec<StoredEntry> = entries
        .into_iter()
        .filter(|e| q.is_empty() || e.domain.contains(&q))
        .collect();
    let shown: Vec<&StoredEntry> = matched.iter().skip(offset).take(limit).collect();
    json!({
        "total": matched.len(),
        "offset": offset,
        "limit": limit,
        "entries": shown,
        "counts": counts,
    })
}

async fn put_entry(ctx: &AdminContext, host: &str, req: Request<Incoming>) -> Response<AdminBody> {
    let bytes: Bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {err}"),
            )
        }
    };
    let entry: PutEntry = match serde_json::from_slice(&bytes) {
        Ok(entry) => entry,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"include_subdomains\": bool, \"max_age\": seconds}}: {err}"),
            )
        }
    };
    match ctx
        .hsts
        .add_manual(host, entry.include_subdomains, entry.max_age)
    {
        Ok(entry) => json_response(StatusCode::OK, &entry),
        Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

fn download(mut response: Response<AdminBody>, filename: &'static str) -> Response<AdminBody> {
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The SHA-256 fingerprint of a certificate's DER, as browsers show it (`AB:CD:…`).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A query parameter, percent-decoded.
pub fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::store::Source;

    fn entry(domain: &str) -> StoredEntry {
        StoredEntry {
            domain: domain.into(),
            include_subdomains: false,
            expires_at: Some(1),
            source: Source::Learned,
        }
    }

    #[test]
    fn pages_filter_then_cut() {
        let all: Vec<StoredEntry> = (0..30).map(|i| entry(&format!("h{i:02}.test"))).collect();
        let p = page(all.clone(), "", 10, 5, json!({}));
        assert_eq!(p["total"], 30);
        assert_eq!(p["entries"].as_array().unwrap().len(), 5);
        assert_eq!(p["entries"][0]["domain"], "h10.test");
        let p = page(all.clone(), "H2", 0, 50, json!({}));
        assert_eq!(p["total"], 10, "h20…h29, case-insensitive");
        let p = page(all, "", 28, 5, json!({}));
        assert_eq!(
            p["entries"].as_array().unwrap().len(),
            2,
            "the last page is short"
        );
    }

    #[test]
    fn fingerprint_is_colon_separated_upper_hex() {
        // SHA-256 of the empty string.
        assert!(fingerprint(b"").starts_with("E3:B0:C4:42:98:FC"));
        assert_eq!(fingerprint(b"").len(), 32 * 3 - 1);
    }

    #[test]
    fn params_are_decoded() {
        assert_eq!(param("q=a%2Eb&limit=5", "q").as_deref(), Some("a.b"));
        assert_eq!(param("q=", "q").as_deref(), Some(""));
        assert!(param("", "q").is_none());
    }
}
