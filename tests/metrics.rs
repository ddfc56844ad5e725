//! The admin `/metrics` endpoint scraped after real traffic and read with a Prometheus
//! text-format parser (prometheus-parse), not string matching: every line must parse, and the
//! families must count what happened.

mod common;

use common::*;
use prometheus_parse::{Scrape, Value};

fn value_of(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_scrape_cleanly_and_count_what_happened() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    let client = proxy.client();
    // A learn over HTTPS, a 307 Internal Redirect, a finding, an upstream error.
    client
        .get(format!(
            "https://secure.test:{}/sts?v=max-age%3D600",
            secure.port()
        ))
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://secure.test:{}/", plain.port()))
        .send()
        .await
        .unwrap();
    client
        .post(format!(
            "http://origin.test:{}/status/302?location=%2Fx",
            plain.port()
        ))
        .body("a=1")
        .send()
        .await
        .unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = free.local_addr().unwrap().port();
    drop(free);
    client
        .get(format!("http://origin.test:{dead}/"))
        .send()
        .await
        .unwrap();

    let admin = proxy.proxy.admin_addr.unwrap();
    let response = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    // Every line is a comment (HELP/TYPE/EOF) or a sample the parser understands.
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = prometheus_parse::LineInfo::parse(line);
        assert!(
            !matches!(parsed, prometheus_parse::LineInfo::Ignored) || line == "# EOF",
            "unparsable metrics line: {line}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();

    let forwarded = value_of(
        &scrape,
        "strictproxy_requests_total",
        &[("action", "forwarded"), ("status", "200")],
    );
    assert_eq!(forwarded, Some(1.0), "{text}");
    assert_eq!(
        value_of(
            &scrape,
            "strictproxy_requests_total",
            &[("action", "hsts_internal_redirect"), ("status", "307")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(&scrape, "strictproxy_hsts_internal_redirects_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "strictproxy_findings_total",
            &[("kind", "method_change_risk")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "strictproxy_upstream_errors_total",
            &[("cause", "refused")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "strictproxy_hsts_entries",
            &[("source", "learned")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(&scrape, "strictproxy_leaf_cache_misses_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "strictproxy_client_tls_handshakes_total",
            &[("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert!(value_of(&scrape, "strictproxy_open_connections", &[]).is_some());
    let count = value_of(&scrape, "strictproxy_request_duration_seconds_count", &[]);
    assert_eq!(count, Some(4.0), "{text}");
}
