//! The admin listener from outside, over raw sockets: the Host, Origin and content-type rules
//! (issue 11 item 8, issue 13 item 6), the exchange feed (`/exchanges`, `/events`) and the
//! traffic log's new fields (headers with credentials redacted; the file private).

mod common;

use common::{raw_exchange, start_proxy, Origin, TestProxy};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

async fn request(admin: SocketAddr, head: &str, body: &str) -> String {
    let text = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(admin, text.as_bytes()).await
}

/// A GET through the proxy with credentials, so the record has something to redact.
async fn traffic(proxy: &TestProxy, url: &str) {
    let response = proxy
        .client()
        .get(url)
        .header("authorization", "Bearer s3cret")
        .header("cookie", "sid=abc")
        .header("x-trace", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
}

#[tokio::test]
async fn foreign_host_and_origin_are_refused_for_every_method() {
    let proxy = start_proxy(None, |_| {}).await;
    let admin = proxy.proxy.admin_addr.unwrap();
    let port = admin.port();
    let put = r#"{"include_subdomains": false, "max_age": 60}"#;
    // (request head, body, expected status) — one row per rule.
    let rows: Vec<(String, &str, u16)> = vec![
        // The admin's own address and its loopback spellings.
        (format!("GET /hsts HTTP/1.1\r\nHost: {admin}"), "", 200),
        (format!("GET /hsts HTTP/1.1\r\nHost: localhost:{port}"), "", 200),
        (format!("GET /hsts HTTP/1.1\r\nHost: [::1]:{port}"), "", 200),
        // DNS rebinding: a page's own name pointed at 127.0.0.1 (reads refused too).
        (format!("GET /hsts HTTP/1.1\r\nHost: evil.test:{port}"), "", 403),
        (format!("GET /exchanges HTTP/1.1\r\nHost: evil.test:{port}"), "", 403),
        (format!("GET / HTTP/1.1\r\nHost: evil.test:{port}"), "", 403),
        (format!("DELETE /hsts/a.test HTTP/1.1\r\nHost: evil.test:{port}"), "", 403),
        ("GET /hsts HTTP/1.1\r\nHost: localhost".to_string(), "", 403),
        // A foreign Origin, whatever the method.
        (format!("GET /hsts HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://evil.test"), "", 403),
        (format!("GET /events HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://evil.test"), "", 403),
        (format!("GET /exchanges HTTP/1.1\r\nHost: {admin}\r\nOrigin: null"), "", 403),
        (
            format!("PUT /hsts/a.test HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://evil.test\r\nContent-Type: application/json"),
            put,
            403,
        ),
        // The console's own origin.
        (format!("GET /hsts HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://{admin}"), "", 200),
        // Writes need JSON: the form and text types a page may send without a preflight.
        (
            format!("PUT /hsts/a.test HTTP/1.1\r\nHost: {admin}\r\nContent-Type: text/plain"),
            put,
            415,
        ),
        (
            format!("POST /hsts/a.test HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/x-www-form-urlencoded"),
            put,
            415,
        ),
        (format!("PUT /hsts/a.test HTTP/1.1\r\nHost: {admin}"), put, 415),
        (
            format!("PUT /hsts/a.test HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json"),
            put,
            200,
        ),
        // A bodiless DELETE without an Origin (curl, scripts).
        (format!("DELETE /hsts/a.test HTTP/1.1\r\nHost: {admin}"), "", 200),
        // Fetch Metadata: another site's <img>/<script> pointing here.
        (
            format!("GET /exchanges HTTP/1.1\r\nHost: {admin}\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors"),
            "",
            403,
        ),
    ];
    for (head, body, expected) in rows {
        let response = request(admin, &head, body).await;
        assert_eq!(status_of(&response), expected, "{head}\n→ {response}");
        if expected == 403 {
            assert!(body_of(&response).contains("error"), "{response}");
        }
    }
    // Nothing refused reached the store: only the one allowed PUT, then its DELETE.
    assert!(proxy.proxy.shared.hsts.dynamic_entries().is_empty());
}

#[tokio::test]
async fn exchanges_are_newest_first_with_headers_redacted_and_logged_alike() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let admin = proxy.proxy.admin_addr.unwrap();
    for i in 0..3 {
        traffic(
            &proxy,
            &format!("http://plain.test:{}/n/{i}", origin.port()),
        )
        .await;
    }
    let response = request(
        admin,
        &format!("GET /exchanges?limit=2 HTTP/1.1\r\nHost: {admin}"),
        "",
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    let list: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list[0]["url"].as_str().unwrap().ends_with("/n/2"),
        "newest first"
    );
    assert!(list[0]["id"].as_u64().unwrap() > list[1]["id"].as_u64().unwrap());
    let headers = &list[0]["request_headers"];
    assert!(
        headers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == &serde_json::json!(["authorization", "[redacted]"])),
        "{headers}"
    );
    assert!(headers
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == &serde_json::json!(["cookie", "[redacted]"])));
    assert!(headers
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == &serde_json::json!(["x-trace", "kept"])));
    assert!(!list[0].to_string().contains("s3cret"));
    assert_eq!(list[0]["http_version"], "HTTP/1.1");
    assert_eq!(list[0]["server_ip"], "127.0.0.1");
    assert!(list[0]["response_headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[0] == "content-length"));

    // The traffic log holds the same records, ids included, and never the secret.
    let records = proxy.records().await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[2]["id"], list[0]["id"]);
    assert_eq!(records[2]["request_headers"], list[0]["request_headers"]);
    let text = std::fs::read_to_string(&proxy.traffic_log).unwrap();
    assert!(!text.contains("s3cret") && !text.contains("sid=abc"));
    assert!(text.contains("[redacted]"));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_traffic_log_is_created_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    // The default umask of most systems; the file must not follow it.
    let previous = umask(0o022);
    let proxy = start_proxy(None, |_| {}).await;
    umask(previous);
    let mode = std::fs::metadata(&proxy.traffic_log)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[cfg(target_os = "linux")]
fn umask(mask: u32) -> u32 {
    // The shell's `umask` cannot set ours; libc's can, and it is linked anyway.
    extern "C" {
        fn umask(mask: u32) -> u32;
    }
    // SAFETY: umask only swaps this process's file-creation mask.
    unsafe { umask(mask) }
}

#[tokio::test]
async fn events_stream_each_exchange_and_resume_after_last_event_id() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let admin = proxy.proxy.admin_addr.unwrap();
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(
            format!("GET /events HTTP/1.1\r\nHost: {admin}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "strictproxy exchange feed").await;
    let head = String::from_utf8_lossy(&seen).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );

    let url = format!("http://plain.test:{}/live", origin.port());
    let sent = Instant::now();
    traffic(&proxy, &url).await;
    read_until(&mut stream, &mut seen, &url).await;
    println!(
        "event arrived {:?} after the request was sent",
        sent.elapsed()
    );
    let text = String::from_utf8_lossy(&seen).to_string();
    let event = text.split("\n\n").find(|e| e.contains("/live")).unwrap();
    assert!(event.contains("event: exchange\n"), "{event}");
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(record["url"], url.as_str());
    assert_eq!(record["status"], 200);
    assert!(!data.contains("s3cret"));
    let id = record["id"].as_u64().unwrap();
    assert!(event.contains(&format!("id: {id}\n")), "{event}");

    // A reconnect with Last-Event-ID gets what it missed from the ring.
    traffic(
        &proxy,
        &format!("http://plain.test:{}/missed", origin.port()),
    )
    .await;
    let mut again = tokio::net::TcpStream::connect(admin).await.unwrap();
    again
        .write_all(
            format!("GET /events HTTP/1.1\r\nHost: {admin}\r\nLast-Event-ID: {id}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen2 = Vec::new();
    read_until(&mut again, &mut seen2, "/missed").await;
    assert!(
        !String::from_utf8_lossy(&seen2).contains("/live\""),
        "nothing before the id"
    );
}

/// Reads from an event stream until `needle` has arrived (at most 5 s).
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    while common::find(seen, needle.as_bytes()).is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within 5 s: {}",
                    String::from_utf8_lossy(seen)
                )
            })
            .unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn redact_credentials_false_keeps_them_and_console_history_bounds_the_ring() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |o| {
        o.redact_credentials = Some(false);
        o.console_history = Some(2);
    })
    .await;
    let admin = proxy.proxy.admin_addr.unwrap();
    for i in 0..3 {
        traffic(
            &proxy,
            &format!("http://plain.test:{}/k/{i}", origin.port()),
        )
        .await;
    }
    let response = request(
        admin,
        &format!("GET /exchanges?limit=10 HTTP/1.1\r\nHost: {admin}"),
        "",
    )
    .await;
    let list: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "console_history = 2");
    assert!(list[0]["request_headers"]
        .to_string()
        .contains("Bearer s3cret"));
    let log = std::fs::read_to_string(&proxy.traffic_log).unwrap_or_default();
    let records = proxy.records().await;
    assert_eq!(records.len(), 3, "{log}");
    assert!(records[0]["request_headers"]
        .to_string()
        .contains("sid=abc"));
}
