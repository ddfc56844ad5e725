//! HSTS over real sockets: learning through interception, the 307 Internal Redirect without
//! the origin seeing the request, includeSubDomains, max-age=0, STS over plain HTTP, an
//! untrusted origin teaching nothing, persistence across a restart, the admin API and the
//! `hsts` subcommands.

mod common;

use common::*;
use std::time::Duration;

/// Teaches the proxy `value` from the HTTPS origin at `host`.
async fn learn(proxy: &TestProxy, host: &str, origin: &Origin, value: &str) -> reqwest::Response {
    let url = format!(
        "https://{host}:{}/sts?v={}",
        origin.port(),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
    );
    proxy.get(url).await
}

#[tokio::test]
async fn learned_host_gets_a_307_internal_redirect_without_reaching_the_origin() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;

    // Before learning, plain HTTP is forwarded.
    let before = proxy
        .get(format!("http://secure.test:{}/before", plain.port()))
        .await;
    assert_eq!(before.status(), 200);

    assert_eq!(
        learn(&proxy, "secure.test", &secure, "max-age=3600")
            .await
            .status(),
        200
    );

    // The exact bytes of the answer, as Chromium sends them.
    let request = format!(
        "GET http://secure.test:{port}/page?q=1 HTTP/1.1\r\nHost: secure.test:{port}\r\nOrigin: http://app.test\r\n\r\n",
        port = plain.port()
    );
    let response = raw_exchange(proxy.addr(), request.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 307 Internal Redirect\r\n"),
        "{response}"
    );
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "location: https://secure.test:{}/page?q=1\r\n",
            plain.port()
        )),
        "{response}"
    );
    assert!(
        lower.contains("non-authoritative-reason: hsts\r\n"),
        "{response}"
    );
    assert!(
        lower.contains("cross-origin-resource-policy: cross-origin\r\n"),
        "{response}"
    );
    assert!(
        lower.contains("access-control-allow-origin: http://app.test\r\n"),
        "{response}"
    );
    assert!(
        lower.contains("access-control-allow-credentials: true\r\n"),
        "{response}"
    );
    assert!(lower.contains("content-length: 0\r\n"), "{response}");
    assert_eq!(
        plain.count("/page"),
        0,
        "the origin must not see the request"
    );

    let records = proxy.records().await;
    let redirect = records
        .iter()
        .find(|r| r["url"].as_str().unwrap().ends_with("/page?q=1"))
        .unwrap();
    assert_eq!(redirect["action"], "hsts_internal_redirect");
    assert_eq!(redirect["status"], 307);
}

#[tokio::test]
async fn port_80_is_dropped_and_ws_becomes_wss() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    learn(&proxy, "secure.test", &secure, "max-age=3600").await;
    let response = raw_exchange(
        proxy.addr(),
        b"GET http://secure.test/a HTTP/1.1\r\nHost: secure.test\r\n\r\n",
    )
    .await;
    assert!(
        response
            .to_ascii_lowercase()
            .contains("location: https://secure.test/a\r\n"),
        "{response}"
    );
    let response = raw_exchange(
        proxy.addr(),
        b"GET ws://secure.test:8080/chat HTTP/1.1\r\nHost: secure.test:8080\r\n\r\n",
    )
    .await;
    assert!(
        response
            .to_ascii_lowercase()
            .contains("location: wss://secure.test:8080/chat\r\n"),
        "{response}"
    );
}

#[tokio::test]
async fn include_subdomains_reaches_subdomains_and_plain_entries_do_not() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    learn(&proxy, "sub.secure.test", &secure, "max-age=3600").await;
    // Without includeSubDomains, a deeper host is not covered (RFC 6797 §8.2).
    let deep = proxy
        .get(format!("http://deep.sub.secure.test:{}/", plain.port()))
        .await;
    assert_eq!(deep.status(), 200);
    learn(
        &proxy,
        "secure.test",
        &secure,
        "max-age=3600; includeSubDomains",
    )
    .await;
    let deep = proxy
        .get(format!("http://deep.sub.secure.test:{}/", plain.port()))
        .await;
    assert_eq!(deep.status(), 307);
    assert_eq!(deep.headers()["non-authoritative-reason"], "HSTS");
}

#[tokio::test]
async fn max_age_zero_clears_the_entry() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    let url = format!("http://secure.test:{}/", plain.port());
    learn(&proxy, "secure.test", &secure, "max-age=3600").await;
    assert_eq!(proxy.get(&url).await.status(), 307);
    learn(&proxy, "secure.test", &secure, "max-age=0").await;
    assert_eq!(proxy.get(&url).await.status(), 200);
}

#[tokio::test]
async fn sts_over_plain_http_is_ignored_with_a_finding() {
    let plain = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let url = format!("http://plain.test:{}/sts?v=max-age%3D3600", plain.port());
    assert_eq!(proxy.get(&url).await.status(), 200);
    let again = proxy
        .get(format!("http://plain.test:{}/again", plain.port()))
        .await;
    assert_eq!(
        again.status(),
        200,
        "STS over http must not be learned (RFC 6797 §8.1)"
    );
    let records = proxy.records().await;
    assert_eq!(records[0]["findings"][0]["kind"], "sts_over_http");
    assert_eq!(records[1]["findings"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn invalid_sts_is_a_finding_and_teaches_nothing() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    learn(&proxy, "secure.test", &secure, "max-age=3600; max-age=60").await;
    let response = proxy
        .get(format!("http://secure.test:{}/", plain.port()))
        .await;
    assert_eq!(response.status(), 200);
    let records = proxy.records().await;
    assert_eq!(records[0]["findings"][0]["kind"], "sts_invalid");
}

/// Issue 11 item 7: a repeated unknown directive is accepted, as Chromium and Firefox do;
/// only a repeated max-age or includeSubDomains voids the field.
#[tokio::test]
async fn a_repeated_unknown_directive_is_learned_like_the_browsers_do() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    learn(
        &proxy,
        "secure.test",
        &secure,
        "preload; includeSubDomains; preload; max-age=12345678; preload",
    )
    .await;
    let response = proxy
        .get(format!("http://sub.secure.test:{}/", plain.port()))
        .await;
    assert_eq!(response.status(), 307);
    let records = proxy.records().await;
    assert_eq!(records[0]["findings"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_untrusted_origin_teaches_nothing() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await; // the origin's CA is not trusted
    assert_eq!(
        learn(&proxy, "secure.test", &secure, "max-age=3600")
            .await
            .status(),
        502
    );
    let response = proxy
        .get(format!("http://secure.test:{}/", plain.port()))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn ip_literals_are_never_upgraded() {
    let plain = Origin::http().await;
    let admin_proxy = start_proxy(None, |_| {}).await;
    // Even a manual attempt cannot make an IP literal HSTS-known.
    let admin = admin_proxy.proxy.admin_addr.unwrap();
    let put = reqwest::Client::new()
        .put(format!("http://{admin}/hsts/127.0.0.1"))
        .header("content-type", "application/json")
        .body(r#"{"include_subdomains":false,"max_age":3600}"#)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_client_error(), "{}", put.status());
    let response = admin_proxy
        .get(format!("http://127.0.0.1:{}/ip", plain.port()))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_restart_keeps_what_was_learned() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hsts.json");
    let mut o = overrides(dir.path(), Some(&ca));
    o.hsts_store = Some(store.clone());
    let first = start_proxy_in(tempfile::tempdir().unwrap(), o.clone()).await;
    learn(
        &first,
        "secure.test",
        &secure,
        "max-age=3600; includeSubDomains",
    )
    .await;
    // The store file reflects the change within 2 seconds (debounced write).
    let mut written = false;
    for _ in 0..40 {
        if std::fs::read_to_string(&store).is_ok_and(|t| t.contains("secure.test")) {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "the store file was not written within 2 s");
    first.proxy.shutdown().await;

    let second = start_proxy_in(tempfile::tempdir().unwrap(), o).await;
    let response = second
        .client()
        .get(format!("http://sub.secure.test:{}/", plain.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
}

#[tokio::test]
async fn admin_api_round_trip() {
    let proxy = start_proxy(None, |_| {}).await;
    let admin = format!("http://{}", proxy.proxy.admin_addr.unwrap());
    let http = reqwest::Client::new();

    let put = http
        .put(format!("{admin}/hsts/Manual.Test"))
        .header("content-type", "application/json")
        .body(r#"{"include_subdomains": true, "max_age": 600}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let query: serde_json::Value = http
        .get(format!("{admin}/hsts/a.b.manual.test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(query["host"], "a.b.manual.test");
    assert_eq!(query["enforced"], true);
    assert_eq!(query["entry"]["domain"], "manual.test");
    assert_eq!(query["entry"]["include_subdomains"], true);
    assert_eq!(query["entry"]["source"], "manual");
    let expires = query["entry"]["expires_at"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expires > now + 590 && expires <= now + 601,
        "{expires} vs {now}"
    );

    let list: serde_json::Value = http
        .get(format!("{admin}/hsts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    let unknown: serde_json::Value = http
        .get(format!("{admin}/hsts/unknown.test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["enforced"], false);
    assert!(unknown["entry"].is_null());

    let delete = http
        .delete(format!("{admin}/hsts/manual.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 200);
    let again = http
        .delete(format!("{admin}/hsts/manual.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    let bad = http
        .put(format!("{admin}/hsts/x.test"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // An internationalized name, percent-encoded in the path, is stored as its A-label.
    let idn = http
        .put(format!("{admin}/hsts/b%C3%BCcher.test"))
        .header("content-type", "application/json")
        .body(r#"{"include_subdomains": false, "max_age": 600}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(idn.status(), 200);
    let entry: serde_json::Value = idn.json().await.unwrap();
    assert_eq!(entry["domain"], "xn--bcher-kva.test");
    let query: serde_json::Value = http
        .get(format!("{admin}/hsts/xn--bcher-kva.test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(query["enforced"], true);

    let ca = http
        .get(format!("{admin}/ca.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn hsts_subcommands_round_trip_on_the_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hsts.json");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_strictproxy"))
            .args(args)
            .arg("--hsts-store")
            .arg(&store)
            .arg("--ca-dir")
            .arg(dir.path().join("ca"))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "hsts",
        "add",
        "cli.test",
        "--include-subdomains",
        "--max-age",
        "1000",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = run(&["hsts", "query", "www.cli.test"]);
    let query: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(query["enforced"], true);
    assert_eq!(query["entry"]["domain"], "cli.test");
    let (_, out, _) = run(&["hsts", "list"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["domain"], "cli.test");
    assert_eq!(list[0]["source"], "manual");
    let (code, _, _) = run(&["hsts", "delete", "cli.test"]);
    assert_eq!(code, Some(0));
    let (code, _, err) = run(&["hsts", "delete", "cli.test"]);
    assert_eq!(code, Some(1), "{err}");
    let (_, out, _) = run(&["hsts", "query", "cli.test"]);
    let query: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(query["enforced"], false);
}
