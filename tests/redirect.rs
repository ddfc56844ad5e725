//! Redirect audit and rewrite over real sockets, under both policies, and the traffic log
//! under concurrency. Each finding kind is shown appearing where it should and not where it
//! should not.

mod common;

use common::*;
use serde_json::Value;

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn every_3xx_and_method_under_both_policies() {
    let origin = Origin::http().await;
    for policy in ["log", "rewrite"] {
        let proxy = start_proxy(None, |o| o.redirect_policy = Some(policy.into())).await;
        let client = proxy.client();
        let mut expected = Vec::new();
        for code in [301u16, 302, 303, 307, 308] {
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE"] {
                let url = format!(
                    "http://origin.test:{}/status/{code}?location=%2Fnext",
                    origin.port()
                );
                let response = client
                    .request(method.parse().unwrap(), &url)
                    .body(if method == "GET" || method == "HEAD" {
                        ""
                    } else {
                        "field=1"
                    })
                    .send()
                    .await
                    .unwrap();
                // RFC 9110 §15.4.2/§15.4.3: only 301/302 after a non-GET/HEAD are ambiguous.
                let ambiguous = matches!(code, 301 | 302) && !matches!(method, "GET" | "HEAD");
                let sent = match (ambiguous, policy, code) {
                    (true, "rewrite", 301) => 308,
                    (true, "rewrite", 302) => 307,
                    _ => code,
                };
                assert_eq!(response.status().as_u16(), sent, "{policy} {method} {code}");
                assert_eq!(
                    response.headers()["location"],
                    "/next",
                    "relative Location passes unchanged"
                );
                expected.push((method, code, sent, ambiguous));
            }
        }
        let records = proxy.records().await;
        assert_eq!(records.len(), expected.len());
        for (record, (method, code, sent, ambiguous)) in records.iter().zip(&expected) {
            assert_eq!(record["method"], *method);
            assert_eq!(record["status"], *sent, "{policy} {method} {code}");
            let found = finding_kinds(record);
            if *ambiguous {
                assert_eq!(
                    found,
                    vec!["method_change_risk"],
                    "{policy} {method} {code}"
                );
                let detail = record["findings"][0]["detail"].as_str().unwrap();
                assert!(
                    detail.contains("303") && detail.contains("307") || detail.contains("308"),
                    "{detail}"
                );
            } else {
                assert!(found.is_empty(), "{policy} {method} {code}: {found:?}");
            }
            if *sent != *code {
                assert_eq!(record["rewritten_from"], *code);
            } else {
                assert!(record.get("rewritten_from").is_none(), "{record}");
            }
        }
    }
}

#[tokio::test]
async fn a_following_client_keeps_post_and_body_only_after_a_rewrite() {
    let origin = Origin::http().await;
    for (policy, method_seen, body_seen) in [("rewrite", "POST", "name=alice"), ("log", "GET", "")]
    {
        let proxy = start_proxy(None, |o| o.redirect_policy = Some(policy.into())).await;
        let client = proxy
            .client_builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap();
        let target = format!("/landing-{policy}");
        let url = format!(
            "http://origin.test:{}/status/302?location={}",
            origin.port(),
            enc(&target)
        );
        let response = client.post(url).body("name=alice").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let landing = origin
            .seen()
            .into_iter()
            .find(|s| s.path == target)
            .unwrap();
        assert_eq!(landing.method, method_seen, "{policy}");
        assert_eq!(
            String::from_utf8_lossy(&landing.body),
            body_seen,
            "{policy}"
        );
    }
}

#[tokio::test]
async fn https_to_http_on_an_hsts_host_is_rewritten_and_reported() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    let sts = format!("https://secure.test:{}/sts?v=max-age%3D3600", secure.port());
    proxy.get(sts).await;

    // To an HSTS-known host: finding, and the Location moved to https.
    let to_known = format!("http://secure.test:{}/after", secure.port());
    let response = proxy
        .get(format!(
            "https://secure.test:{}/status/302?location={}",
            secure.port(),
            enc(&to_known)
        ))
        .await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        format!("https://secure.test:{}/after", secure.port()).as_str()
    );
    // To a host that is not known: finding only, Location unchanged.
    let to_other = "http://other.test/after";
    let response = proxy
        .get(format!(
            "https://secure.test:{}/status/302?location={}",
            secure.port(),
            enc(to_other)
        ))
        .await;
    assert_eq!(response.headers()["location"], to_other);
    // https → https: no finding.
    let to_https = "https://other.test/after";
    proxy
        .get(format!(
            "https://secure.test:{}/status/302?location={}",
            secure.port(),
            enc(to_https)
        ))
        .await;

    let records = proxy.records().await;
    assert_eq!(
        finding_kinds(&records[0]),
        Vec::<String>::new(),
        "learning STS is no finding"
    );
    assert_eq!(finding_kinds(&records[1]), vec!["https_downgrade"]);
    assert_eq!(finding_kinds(&records[2]), vec!["https_downgrade"]);
    assert!(finding_kinds(&records[3]).is_empty());
}

#[tokio::test]
async fn cross_origin_body_replay_is_reported_only_for_bodies_sent_elsewhere() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |o| o.redirect_policy = Some("rewrite".into())).await;
    let client = proxy.client();
    let base = format!("http://origin.test:{}", origin.port());
    let elsewhere = enc("http://other.test/collect");
    let same = enc("/collect");
    let cases = [
        ("POST", 307, elsewhere.as_str(), true),
        ("PUT", 308, elsewhere.as_str(), true),
        ("PATCH", 307, elsewhere.as_str(), true),
        ("POST", 307, same.as_str(), false),
        ("GET", 307, elsewhere.as_str(), false),
        ("POST", 303, elsewhere.as_str(), false),
    ];
    for (method, code, location, _) in &cases {
        let response = client
            .request(
                method.parse().unwrap(),
                format!("{base}/status/{code}?location={location}"),
            )
            .body("password=hunter2")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            *code,
            "passes unchanged under rewrite"
        );
    }
    let records = proxy.records().await;
    for (record, (method, code, _, expected)) in records.iter().zip(&cases) {
        let found = finding_kinds(record);
        if *expected {
            assert_eq!(found, vec!["cross_origin_body_replay"], "{method} {code}");
            assert!(record["findings"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("303"));
        } else {
            assert!(found.is_empty(), "{method} {code}: {found:?}");
        }
    }
}

#[tokio::test]
async fn missing_and_bad_locations() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let client = proxy.client();
    let base = format!("http://origin.test:{}", origin.port());
    let urls = [
        format!("{base}/status/302"), // missing_location
        format!("{base}/status/304"), // 304 needs none
        format!("{base}/status/301?location={}", enc("http://[oops/")), // bad_location
        format!("{base}/status/301?location={}", enc("https://fine.test/")),
    ];
    for url in &urls {
        client.get(url).send().await.unwrap();
    }
    let records = proxy.records().await;
    assert_eq!(finding_kinds(&records[0]), vec!["missing_location"]);
    assert!(finding_kinds(&records[1]).is_empty());
    assert_eq!(finding_kinds(&records[2]), vec!["bad_location"]);
    assert!(finding_kinds(&records[3]).is_empty());
}

#[tokio::test]
async fn a_redirect_loop_is_found_and_a_straight_chain_is_not() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let client = proxy
        .client_builder()
        .redirect(reqwest::redirect::Policy::limited(6))
        .build()
        .unwrap();
    // A straight chain: 302 → 302 → 200.
    let end = enc("/done");
    let middle = enc(&format!("/status/302?location={end}"));
    let straight = client
        .get(format!(
            "http://origin.test:{}/status/302?location={middle}",
            origin.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(straight.status(), 200);
    let records = proxy.records().await;
    assert!(
        records.iter().all(|r| finding_kinds(r).is_empty()),
        "{records:?}"
    );

    // A loop: /cycle/0/2 → /cycle/1/2 → /cycle/0/2 …
    let looped = client
        .get(format!("http://origin.test:{}/cycle/0/2", origin.port()))
        .send()
        .await;
    assert!(looped.is_err(), "reqwest gives up on a loop");
    let records = proxy.records().await;
    let loops: Vec<_> = records
        .iter()
        .filter(|r| finding_kinds(r).contains(&"redirect_loop".to_string()))
        .collect();
    assert!(!loops.is_empty(), "{records:#?}");
    assert!(loops[0]["detail"].is_null());
    assert!(loops[0]["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("/cycle/"));
}

#[tokio::test]
async fn the_log_holds_every_exchange_of_50_concurrent_clients() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = proxy.client();
        let url = format!("http://origin.test:{}/client/{i}", origin.port());
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                let response = client
                    .post(&url)
                    .body(format!("{i}-{j}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let text = {
        proxy.proxy.flush().await;
        std::fs::read_to_string(&proxy.traffic_log).unwrap()
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 500);
    for line in lines {
        let record: Value = serde_json::from_str(line).expect("each line is one JSON object");
        for field in [
            "ts",
            "client",
            "method",
            "url",
            "status",
            "duration_ms",
            "request_bytes",
            "response_bytes",
            "action",
            "findings",
        ] {
            assert!(record.get(field).is_some(), "{field} missing in {line}");
        }
        time::OffsetDateTime::parse(
            record["ts"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("ts is RFC 3339");
    }
}

/// Issue 11 item 13: under `--redirect-policy rewrite`, a 302 answering a POST whose Location
/// is not UTF-8 (`caf\xe9`, on another host) must reach the client as the upstream's 302, not
/// as a 307 that makes it re-post the credentials to another origin. The origin is raw bytes
/// on a socket, since no HTTP library writes such a field.
#[tokio::test]
async fn unparsable_location_is_never_rewritten() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ANSWER: &[u8] = b"HTTP/1.1 302 Found\r\nLocation: http://idp.other.test/login/caf\xe9\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                // Read the head and the body it announces, then answer with the exact bytes.
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = find(&data, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().unwrap().extend_from_slice(&data);
                let _ = stream.write_all(ANSWER).await;
                let _ = stream.shutdown().await;
            });
        }
    });

    let proxy = start_proxy(None, |o| o.redirect_policy = Some("rewrite".into())).await;
    let form = "user=alice&password=hunter2";
    let request = format!(
        "POST http://origin.test:{port}/login HTTP/1.1\r\nHost: origin.test:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 302 "),
        "the upstream's 302 is passed on, not a 307 that replays the form: {text}"
    );
    assert!(
        find(&response, b"http://idp.other.test/login/caf\xe9\r\n").is_some(),
        "the Location bytes pass unchanged: {text}"
    );
    assert!(
        find(&received.lock().unwrap(), form.as_bytes()).is_some(),
        "the origin got the form"
    );

    let records = proxy.records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["status"], 302, "{record}");
    assert!(record.get("rewritten_from").is_none(), "{record}");
    let mut kinds = finding_kinds(record);
    kinds.sort();
    assert_eq!(kinds, ["bad_location", "method_change_risk"], "{record}");
    let detail = record["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "method_change_risk")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("not rewritten to 307"), "{detail}");
}
